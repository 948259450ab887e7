/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* gst-rnn numerical core: the training loops (docs/design.md §5). */
#include "rnn-trainer.h"
#include "rnn-dataset.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <glib/gstdio.h>

G_DEFINE_QUARK (rnn-trainer-error-quark, rnn_trainer_error)

struct _RnnTrainer
{
  RnnTrainerConfig cfg;         /* strings owned */
  RnnTrainerCallbacks cb;
  gpointer user_data;

  RnnModel *model;              /* private, sealed */
  gboolean need_norm;           /* normalisation statistics still to compute */
  gboolean bidirectional;
  guint f_in, c_in;             /* frames per step, channels per frame */
  guint n_in, n_tgt;
  gsize rec;                    /* record floats: n_in + n_tgt + 1 */

  RnnTrain *tr;
  RnnOptimizer *opt;
  float *grads;
  gsize n_params;
  float lr0;                    /* initial learning rate */
  float lr;                     /* learning rate in force */
  guint rollbacks;              /* total */
  RnnModel *snap_model;         /* last good weights */
  RnnOptimizer *snap_opt;
  float *bx, *bt, *bm, *wbuf;   /* batch scratch */
  gsize bx_cap, bt_cap, bm_cap, wbuf_cap;

  /* offline */
  RnnRecording *recording;
  gboolean offline_written;     /* a model of this recording was written */

  /* online */
  float *ob;                    /* [B*T][rec] the batch being gathered */
  gsize ob_len;
  RnnState *tstate;             /* carried training state (unidirectional) */
  guint64 updates;
  guint checkpoints;
  double ck_loss, ck_weight;    /* loss since the last checkpoint */
  double last_loss;
  guint64 ck_steps;
  gint64 ck_time;
  gint64 online_t0;             /* the first update */
  gboolean online_started;
  gboolean ck_dirty;            /* model changed since the last checkpoint */
  guint online_streak;          /* rollbacks since the last good update */
  gboolean online_stopped;      /* gave up after MAX_ROLLBACKS in a row */
};

void
rnn_trainer_config_init (RnnTrainerConfig *cfg)
{
  g_return_if_fail (cfg != NULL);
  memset (cfg, 0, sizeof *cfg);
  cfg->loss = RNN_LOSS_MSE;
  cfg->optimizer = RNN_OPTIMIZER_ADAM;
  cfg->clip_norm = 1.0;
  cfg->epochs = 10;
  cfg->seq_length = 64;
  cfg->batch_size = 32;
  cfg->validation_fraction = 0.1;
  cfg->normalize = TRUE;
  cfg->checkpoint_interval = 100;
  cfg->max_memory = G_GUINT64_CONSTANT (256) << 20;
}

/* ---- helpers ------------------------------------------------------------ */

/* Grows *@buf to hold at least @n elements of @size bytes.  FALSE (and
 * *@buf as it was) when the memory is not there. */
static gboolean
grow (gpointer *buf, gsize *cap, gsize n, gsize size)
{
  if (n <= *cap)
    return TRUE;
  gsize c = MAX (*cap, 64);
  while (c < n)
    c *= 2;
  gpointer b = g_try_realloc_n (*buf, c, size);
  if (!b)
    return FALSE;
  *buf = b;
  *cap = c;
  return TRUE;
}

static gchar *
format_double (double v)
{
  gchar buf[G_ASCII_DTOSTR_BUF_SIZE];
  return g_strdup (g_ascii_formatd (buf, sizeof buf, "%.9g", v));
}

static gboolean
params_finite (const RnnModel *m)
{
  gsize n;
  const float *p = rnn_model_peek_params (m, &n);
  for (gsize i = 0; i < n; i++)
    if (!isfinite (p[i]))
      return FALSE;
  return TRUE;
}

static void
progress (RnnTrainer *t, RnnTrainerProgress kind, const char *text, int percent)
{
  if (t->cb.progress)
    t->cb.progress (t->user_data, kind, text, percent);
}

static void
warning (RnnTrainer *t, const char *text, const char *detail)
{
  if (t->cb.warning)
    t->cb.warning (t->user_data, text, detail);
}

static void
epoch_done (RnnTrainer *t, const RnnTrainerEpoch *e)
{
  if (t->cb.epoch)
    t->cb.epoch (t->user_data, e);
}

gchar *
rnn_trainer_format_duration (guint64 ns)
{
  const double s = ns / 1e9;

  if (ns == G_MAXUINT64)
    return g_strdup ("unknown");
  if (s < 10)
    return g_strdup_printf ("%.1f s", s);
  guint64 sec = (guint64) (s + 0.5);
  if (sec < 60)
    return g_strdup_printf ("%" G_GUINT64_FORMAT " s", sec);
  if (sec < 3600)
    return g_strdup_printf ("%" G_GUINT64_FORMAT " min %02" G_GUINT64_FORMAT
        " s", sec / 60, sec % 60);
  return g_strdup_printf ("%" G_GUINT64_FORMAT " h %02" G_GUINT64_FORMAT
      " min", sec / 3600, (sec % 3600) / 60);
}

static gboolean
cancelled (RnnTrainer *t)
{
  return t->cb.cancelled && t->cb.cancelled (t->user_data);
}

/* ---- set-up --------------------------------------------------------------- */

static gboolean batch_scratch (RnnTrainer *t, guint T, guint B);
static gboolean check_scratch (const RnnTrainerConfig *cfg,
    const RnnModel *model, gsize rec, gsize n_in, gsize n_tgt, GError **error);

RnnTrainer *
rnn_trainer_new (const RnnTrainerConfig *cfg, RnnModel *model,
    const RnnTrainerCallbacks *callbacks, gpointer user_data, GError **error)
{
  GError *err = NULL;

  g_return_val_if_fail (cfg != NULL && model != NULL, NULL);

  if (cfg->seq_length == 0 || cfg->batch_size == 0
      || cfg->checkpoint_interval == 0) {
    g_set_error (error, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_SETTINGS,
        "seq-length, batch-size and checkpoint-interval must be at least 1 "
        "(they are %u, %u and %u).", cfg->seq_length, cfg->batch_size,
        cfg->checkpoint_interval);
    rnn_model_unref (model);
    return NULL;
  }
  if (cfg->location && !rnn_trainer_check_location (cfg->location, error)) {
    rnn_model_unref (model);
    return NULL;
  }
  if (!(cfg->pre_emphasis >= 0.0 && cfg->pre_emphasis < 1.0)
      || (cfg->pre_emphasis > 0.0 && cfg->loss == RNN_LOSS_CROSS_ENTROPY)) {
    g_set_error (error, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_SETTINGS,
        "pre-emphasis %g: it must be in [0, 1) and is for loss=mse or esr "
        "(set it to 0 for cross-entropy).", cfg->pre_emphasis);
    rnn_model_unref (model);
    return NULL;
  }
  if (!rnn_loss_check (cfg->loss, model, &err)) {
    g_set_error (error, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_SETTINGS,
        "The model cannot be trained with loss=%s: %s",
        rnn_loss_to_string (cfg->loss), err->message);
    g_error_free (err);
    rnn_model_unref (model);
    return NULL;
  }
  RnnOptimizerConfig oc;
  rnn_optimizer_config_init (&oc, cfg->optimizer);
  if (cfg->learning_rate > 0)
    oc.learning_rate = (float) cfg->learning_rate;
  oc.momentum = (float) cfg->momentum;
  oc.weight_decay = (float) cfg->weight_decay;
  RnnOptimizer *opt = rnn_optimizer_new (&oc,
      rnn_train_get_n_trainable (model), &err);
  if (!opt) {
    g_set_error (error, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_SETTINGS,
        "Invalid optimizer settings: %s", err->message);
    g_error_free (err);
    rnn_model_unref (model);
    return NULL;
  }

  RnnTrainer *t = g_new0 (RnnTrainer, 1);
  const RnnConfig *mc = rnn_model_get_config (model);
  t->cfg = *cfg;
  t->cfg.location = g_strdup (cfg->location);
  t->cfg.description = g_strdup (cfg->description);
  t->cfg.tool = g_strdup (cfg->tool);
  t->cfg.target = g_strdup (cfg->target);
  t->cfg.init_model = g_strdup (cfg->init_model);
  if (callbacks)
    t->cb = *callbacks;
  t->user_data = user_data;
  t->model = model;
  t->opt = opt;
  t->lr0 = t->lr = oc.learning_rate;
  t->need_norm = cfg->normalize && mc->has_input_norm;
  t->bidirectional = mc->bidirectional;
  t->f_in = mc->frame_size;
  t->n_in = mc->input_size;
  t->c_in = t->n_in / MAX (t->f_in, 1);
  t->n_tgt = cfg->loss == RNN_LOSS_CROSS_ENTROPY ? 1
      : rnn_model_get_output_size (model);
  t->rec = t->n_in + t->n_tgt + 1;
  t->tr = rnn_train_new ();
  rnn_model_get_params (t->model, &t->n_params);
  t->grads = g_new0 (float, t->n_params);
  t->last_loss = NAN;
  if (!check_scratch (cfg, t->model, t->rec, t->n_in, t->n_tgt, error)) {
    rnn_trainer_free (t);
    return NULL;
  }
  /* everything the loops use, at its largest, in allocations that may fail */
  const guint wb = cfg->online ? 1 : cfg->batch_size;
  gboolean ok = batch_scratch (t, cfg->seq_length, wb)
      && rnn_train_reserve (t->tr, t->model, cfg->seq_length, wb, NULL);
  if (ok && !cfg->online) {
    t->recording = rnn_recording_new (t->rec, cfg->max_memory);
  } else if (ok) {
    t->ob = g_try_malloc_n ((gsize) cfg->batch_size * cfg->seq_length,
        t->rec * sizeof (float));
    ok = t->ob != NULL;
    if (ok && !t->bidirectional)
      t->tstate = rnn_state_new (t->model, 1);
  }
  if (!ok) {
    g_set_error (error, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_SETTINGS,
        "Out of memory for training with seq-length %u and batch-size %u; "
        "lower them.", cfg->seq_length, cfg->batch_size);
    rnn_trainer_free (t);
    return NULL;
  }
  return t;
}

void
rnn_trainer_free (RnnTrainer *t)
{
  if (!t)
    return;
  g_free ((gchar *) t->cfg.location);
  g_free ((gchar *) t->cfg.description);
  g_free ((gchar *) t->cfg.tool);
  g_free ((gchar *) t->cfg.target);
  g_free ((gchar *) t->cfg.init_model);
  g_clear_pointer (&t->model, rnn_model_unref);
  g_clear_pointer (&t->tr, rnn_train_free);
  g_clear_pointer (&t->opt, rnn_optimizer_free);
  g_free (t->grads);
  g_clear_pointer (&t->snap_model, rnn_model_unref);
  g_clear_pointer (&t->snap_opt, rnn_optimizer_free);
  g_free (t->bx);
  g_free (t->bt);
  g_free (t->bm);
  g_free (t->wbuf);
  g_clear_pointer (&t->recording, rnn_recording_free);
  g_free (t->ob);
  g_clear_pointer (&t->tstate, rnn_state_free);
  g_free (t);
}

const RnnModel *
rnn_trainer_peek_model (const RnnTrainer *t)
{
  g_return_val_if_fail (t != NULL, NULL);
  return t->model;
}

gsize
rnn_trainer_get_record_size (const RnnTrainer *t)
{
  g_return_val_if_fail (t != NULL, 0);
  return t->rec;
}

/* ---- normalisation ---------------------------------------------------------- */

/* Sets input.mean / input.std of the model from channel statistics
 * (expanded over the frames of a step). */
static void
model_set_norm (RnnTrainer *t, const double *mean, const double *std)
{
  gsize n;
  float *p = rnn_model_get_params (t->model, &n);
  gint im = rnn_model_find_tensor (t->model, "input.mean");
  gint is = rnn_model_find_tensor (t->model, "input.std");

  g_return_if_fail (im >= 0 && is >= 0);
  float *pm = p + rnn_model_get_tensor_info (t->model, im)->offset;
  float *ps = p + rnn_model_get_tensor_info (t->model, is)->offset;
  for (guint f = 0; f < t->f_in; f++)
    for (guint c = 0; c < t->c_in; c++) {
      pm[f * t->c_in + c] = (float) mean[c];
      ps[f * t->c_in + c] = (float) std[c];
    }
  rnn_model_seal (t->model);
}

/* Normalisation statistics one outlier cannot wreck.  The mean and the
 * standard deviation of a channel come from its values within
 * NORM_OUTLIER_K robust standard deviations (1.4826 x the median absolute
 * deviation, from an evenly spaced sample of at most NORM_SAMPLE values)
 * of its median; values beyond are left out and named in a warning (how
 * many, the farthest one's value and time).  A channel whose MAD is 0
 * (mostly constant) keeps all its values. */
#define NORM_OUTLIER_K 100.0
#define NORM_SAMPLE 65536

typedef struct
{
  gsize stride;                 /* sample every stride-th value */
  float **sample;               /* [c_in][NORM_SAMPLE] */
  gsize *n_sample;
  double *med, *lo, *hi;        /* inlier bounds */
  double *sum, *sq, *mean;
  guint64 *cnt, *n_out, *worst_at;
  double *worst;
} Norm;

static Norm *
norm_new (RnnTrainer *t, gsize n_steps)
{
  Norm *nm = g_new0 (Norm, 1);
  const gsize n_vals = n_steps * t->f_in;
  const guint C = t->c_in;

  nm->stride = MAX ((n_vals + NORM_SAMPLE - 1) / NORM_SAMPLE, 1);
  nm->sample = g_new0 (float *, C);
  for (guint c = 0; c < C; c++)
    nm->sample[c] = g_new (float, MIN (n_vals, NORM_SAMPLE) + 1);
  nm->n_sample = g_new0 (gsize, C);
  nm->med = g_new0 (double, C);
  nm->lo = g_new0 (double, C);
  nm->hi = g_new0 (double, C);
  nm->sum = g_new0 (double, C);
  nm->sq = g_new0 (double, C);
  nm->mean = g_new0 (double, C);
  nm->cnt = g_new0 (guint64, C);
  nm->n_out = g_new0 (guint64, C);
  nm->worst_at = g_new0 (guint64, C);
  nm->worst = g_new0 (double, C);
  return nm;
}

static void
norm_free (RnnTrainer *t, Norm *nm)
{
  for (guint c = 0; c < t->c_in; c++)
    g_free (nm->sample[c]);
  g_free (nm->sample);
  g_free (nm->n_sample);
  g_free (nm->med);
  g_free (nm->lo);
  g_free (nm->hi);
  g_free (nm->sum);
  g_free (nm->sq);
  g_free (nm->mean);
  g_free (nm->cnt);
  g_free (nm->n_out);
  g_free (nm->worst_at);
  g_free (nm->worst);
  g_free (nm);
}

/* Pass 0 samples, pass 1 sums the inliers (and finds the outliers), pass 2
 * sums their squared deviations; over records [@first, @first + @n). */
static void
norm_visit (RnnTrainer *t, Norm *nm, int pass, const float *recs,
    gsize first, gsize n)
{
  for (gsize r = 0; r < n; r++) {
    const float *x = recs + r * t->rec;
    for (guint f = 0; f < t->f_in; f++) {
      const guint64 idx = (guint64) (first + r) * t->f_in + f;
      for (guint c = 0; c < t->c_in; c++) {
        const double v = x[f * t->c_in + c];
        if (pass == 0) {
          if (idx % nm->stride == 0 && nm->n_sample[c] < NORM_SAMPLE)
            nm->sample[c][nm->n_sample[c]++] = (float) v;
        } else if (v < nm->lo[c] || v > nm->hi[c]) {
          if (pass == 1) {
            if (nm->n_out[c]++ == 0
                || fabs (v - nm->med[c]) > fabs (nm->worst[c] - nm->med[c])) {
              nm->worst[c] = v;
              nm->worst_at[c] = idx;
            }
          }
        } else if (pass == 1) {
          nm->sum[c] += v;
          nm->cnt[c]++;
        } else {
          nm->sq[c] += (v - nm->mean[c]) * (v - nm->mean[c]);
        }
      }
    }
  }
}

static int
cmp_float (gconstpointer a, gconstpointer b)
{
  const float x = *(const float *) a, y = *(const float *) b;
  return (x > y) - (x < y);
}

static double
median_of (float *v, gsize n)
{
  if (n == 0)
    return 0.0;
  qsort (v, n, sizeof (float), cmp_float);
  return n % 2 ? v[n / 2] : 0.5 * ((double) v[n / 2 - 1] + v[n / 2]);
}

/* After pass 0: the median and the inlier bounds of every channel. */
static void
norm_bounds (RnnTrainer *t, Norm *nm)
{
  for (guint c = 0; c < t->c_in; c++) {
    float *v = nm->sample[c];
    const gsize n = nm->n_sample[c];
    const double med = median_of (v, n);
    for (gsize i = 0; i < n; i++)
      v[i] = (float) fabs (v[i] - med);
    const double sigma = 1.4826 * median_of (v, n);
    nm->med[c] = med;
    nm->lo[c] = sigma > 0 ? med - NORM_OUTLIER_K * sigma : -INFINITY;
    nm->hi[c] = sigma > 0 ? med + NORM_OUTLIER_K * sigma : INFINITY;
  }
}

/* After pass 1: the inliers' means (and the warning on outliers). */
static void
norm_means (RnnTrainer *t, Norm *nm)
{
  for (guint c = 0; c < t->c_in; c++) {
    nm->mean[c] = nm->cnt[c] ? nm->sum[c] / nm->cnt[c] : 0.0;
    if (!nm->n_out[c])
      continue;
    const guint64 step = nm->worst_at[c] / t->f_in;
    gchar *when = t->cfg.seconds_per_step > 0 ?
        g_strdup_printf ("at %.3f s (step %" G_GUINT64_FORMAT ")",
        (double) nm->worst_at[c] * t->cfg.seconds_per_step / t->f_in, step)
        : g_strdup_printf ("at step %" G_GUINT64_FORMAT, step);
    gchar *text = g_strdup_printf ("Input channel %u has %" G_GUINT64_FORMAT
        " value%s beyond %g robust standard deviations of its median %g "
        "(the farthest: %g %s); left out of the normalisation statistics "
        "(input.mean / input.std), which come from the other %"
        G_GUINT64_FORMAT " values.", c, nm->n_out[c],
        nm->n_out[c] == 1 ? "" : "s", NORM_OUTLIER_K, nm->med[c],
        nm->worst[c], when, nm->cnt[c]);
    warning (t, text, NULL);
    g_free (text);
    g_free (when);
  }
}

static void
norm_set (RnnTrainer *t, Norm *nm)
{
  double *sd = g_new (double, t->c_in);
  for (guint c = 0; c < t->c_in; c++) {
    double v = nm->cnt[c] ? sqrt (nm->sq[c] / nm->cnt[c]) : 1.0;
    if (!(v > 1e-12) || !isfinite (v))
      v = 1.0;                  /* a constant channel: leave it unscaled */
    sd[c] = v;
    if (!isfinite (nm->mean[c]))
      nm->mean[c] = 0.0;
  }
  model_set_norm (t, nm->mean, sd);
  g_free (sd);
}

/* Normalisation statistics from records [0, n) of an in-memory array. */
static void
norm_from_array (RnnTrainer *t, const float *recs, gsize n)
{
  Norm *nm = norm_new (t, n);

  for (int pass = 0; pass < 3; pass++) {
    norm_visit (t, nm, pass, recs, 0, n);
    if (pass == 0)
      norm_bounds (t, nm);
    else if (pass == 1)
      norm_means (t, nm);
  }
  norm_set (t, nm);
  norm_free (t, nm);
}

/* The same over records [0, n) of the recording, in chunks. */
static gboolean
norm_from_recording (RnnTrainer *t, gsize n, GError **error)
{
  const gsize chunk = 4096;
  Norm *nm = norm_new (t, n);
  float *buf = g_new (float, chunk * t->rec);
  gboolean ok = TRUE;

  for (int pass = 0; pass < 3 && ok; pass++) {
    for (gsize r = 0; r < n && ok; r += chunk) {
      const gsize k = MIN (chunk, n - r);
      ok = rnn_recording_read (t->recording, r, k, buf, error);
      if (ok)
        norm_visit (t, nm, pass, buf, r, k);
    }
    if (pass == 0)
      norm_bounds (t, nm);
    else if (pass == 1 && ok)
      norm_means (t, nm);
  }
  if (ok)
    norm_set (t, nm);
  g_free (buf);
  norm_free (t, nm);
  return ok;
}

/* Rebuilds the model with another bidirectional window. */
static void
model_set_window (RnnTrainer *t, guint window)
{
  RnnConfig cfg = *rnn_model_get_config (t->model);
  gsize n_src, n_dst;

  if (cfg.window == window)
    return;
  cfg.window = window;
  RnnModel *m = rnn_model_new (&cfg, NULL);
  g_return_if_fail (m != NULL);
  const float *src = rnn_model_peek_params (t->model, &n_src);
  float *dst = rnn_model_get_params (m, &n_dst);
  g_return_if_fail (n_src == n_dst);
  memcpy (dst, src, n_src * sizeof (float));
  for (const char *const *k = rnn_model_get_meta_keys (t->model); *k; k++)
    rnn_model_set_meta (m, *k, rnn_model_get_meta (t->model, *k));
  rnn_model_seal (m);
  rnn_model_unref (t->model);
  t->model = m;
}

/* ---- batches, steps, rollback ------------------------------------------------ */

/* Batch scratch for @T steps of @B windows.  rnn_trainer_new() reserves
 * the largest the settings ask for, so later calls allocate nothing. */
static gboolean
batch_scratch (RnnTrainer *t, guint T, guint B)
{
  const gsize TB = (gsize) T * B;
  return grow ((gpointer *) &t->bx, &t->bx_cap, TB * t->n_in, sizeof (float))
      && grow ((gpointer *) &t->bt, &t->bt_cap, TB * t->n_tgt, sizeof (float))
      && grow ((gpointer *) &t->bm, &t->bm_cap, TB, sizeof (float))
      && grow ((gpointer *) &t->wbuf, &t->wbuf_cap, (gsize) T * t->rec,
      sizeof (float));
}

/* The memory the settings make training take, refused beyond
 * RNN_TRAINER_MAX_SCRATCH with the arithmetic in the message. */
static gboolean
check_scratch (const RnnTrainerConfig *cfg, const RnnModel *model, gsize rec,
    gsize n_in, gsize n_tgt, GError **error)
{
  const guint T = cfg->seq_length, B = cfg->batch_size;
  const guint wb = cfg->online ? 1 : B;  /* windows per training pass */
  const guint64 gather = cfg->online ? (guint64) T * B * rec * sizeof (float) : 0;
  const guint64 batch = (guint64) T * wb * (n_in + n_tgt + 1) * sizeof (float)
      + (guint64) T * rec * sizeof (float);
  const guint64 work = rnn_train_workspace_bytes (model, T, wb);
  const guint64 total = gather + batch + work;

  if (total <= RNN_TRAINER_MAX_SCRATCH)
    return TRUE;
  gchar *gb = g_strdup_printf ("%.1f GiB", total / 1073741824.0);
  gchar *lim = g_strdup_printf ("%.1f GiB",
      RNN_TRAINER_MAX_SCRATCH / 1073741824.0);
  if (cfg->online)
    g_set_error (error, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_SETTINGS,
        "seq-length %u x batch-size %u needs %s of training memory, more "
        "than the limit of %s: the batch gathered for one update is %u x %u "
        "steps x %" G_GSIZE_FORMAT " floats x 4 = %" G_GUINT64_FORMAT
        " bytes, the training workspace of one window %" G_GUINT64_FORMAT
        " bytes and the batch scratch %" G_GUINT64_FORMAT " bytes (total %"
        G_GUINT64_FORMAT " > %" G_GUINT64_FORMAT ").  Lower seq-length or "
        "batch-size.", T, B, gb, lim, T, B, rec, gather, work, batch, total,
        (guint64) RNN_TRAINER_MAX_SCRATCH);
  else
    g_set_error (error, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_SETTINGS,
        "seq-length %u x batch-size %u needs %s of training memory, more "
        "than the limit of %s: the training workspace of a batch (%u steps "
        "x %u windows, the caches of every layer and step kept for the "
        "backward pass) is %" G_GUINT64_FORMAT " bytes and the batch "
        "scratch %" G_GUINT64_FORMAT " bytes (total %" G_GUINT64_FORMAT
        " > %" G_GUINT64_FORMAT ").  Lower seq-length or batch-size.", T, B,
        gb, lim, T, B, work, batch, total,
        (guint64) RNN_TRAINER_MAX_SCRATCH);
  g_free (gb);
  g_free (lim);
  return FALSE;
}

/* Scatters window @b of @B ([T][rec] records at @w) into the batch. */
static void
batch_put (RnnTrainer *t, const float *w, guint T, guint b, guint B)
{
  for (guint s = 0; s < T; s++) {
    const float *r = w + (gsize) s * t->rec;
    const gsize row = (gsize) s * B + b;
    memcpy (t->bx + row * t->n_in, r, t->n_in * sizeof (float));
    memcpy (t->bt + row * t->n_tgt, r + t->n_in, t->n_tgt * sizeof (float));
    t->bm[row] = r[t->n_in + t->n_tgt];
  }
}

static double
mask_sum (const float *mask, gsize n)
{
  double s = 0.0;
  for (gsize i = 0; i < n; i++)
    s += mask[i];
  return s;
}

/* Forward + loss (+ backward into t->grads, accumulating) of the batch in
 * bx/bt/bm.  Returns the loss; *weight receives the summed loss weight. */
static double
batch_run (RnnTrainer *t, RnnState *state, guint T, guint B,
    gboolean backward, double *weight)
{
  GError *err = NULL;
  double loss = NAN;

  rnn_train_forward (t->tr, NULL, state, t->bx, t->model, T, B);
  if (!rnn_train_loss_full (t->tr, &loss, t->bt, t->bm, t->cfg.loss,
          t->cfg.pre_emphasis, 0, &err)) {
    /* the records hold valid targets: this is a non-finite output */
    g_debug ("loss refused: %s", err->message);
    g_error_free (err);
    return NAN;
  }
  *weight = mask_sum (t->bm, (gsize) T * B);
  if (backward && isfinite (loss))
    rnn_train_backward (t->tr, t->grads, NULL, t->model);
  return loss;
}

/* Clips, checks and applies t->grads.  FALSE if the step would make the
 * model non-finite (nothing applied then, or the weights are bad). */
static gboolean
apply_step (RnnTrainer *t)
{
  const gsize nt = rnn_train_get_n_trainable (t->model);
  const float norm = rnn_clip_grad_norm (t->grads, nt, (float) t->cfg.clip_norm);

  if (!isfinite (norm))
    return FALSE;
  rnn_optimizer_step_model (t->opt, t->model, t->grads);
  return params_finite (t->model);
}

static void
snapshot_take (RnnTrainer *t)
{
  g_clear_pointer (&t->snap_model, rnn_model_unref);
  g_clear_pointer (&t->snap_opt, rnn_optimizer_free);
  t->snap_model = rnn_model_copy (t->model);
  t->snap_opt = rnn_optimizer_copy (t->opt);
}

/* Back to the last good weights with half the learning rate. */
static void
rollback (RnnTrainer *t, const gchar *where)
{
  const float old = t->lr;

  rnn_model_unref (t->model);
  t->model = rnn_model_copy (t->snap_model);
  rnn_optimizer_free (t->opt);
  t->opt = rnn_optimizer_copy (t->snap_opt);
  t->lr = old * 0.5f;
  rnn_optimizer_set_learning_rate (t->opt, t->lr);
  t->rollbacks++;
  if (t->tstate)
    rnn_state_reset (t->tstate);

  gchar *text = g_strdup_printf ("Training diverged (non-finite loss or "
      "weights) %s; restored the last good weights and halved the learning "
      "rate to %g.", where, t->lr);
  gchar *detail = g_strdup_printf ("learning rate %g -> %g, rollback %u",
      old, t->lr, t->rollbacks);
  warning (t, text, detail);
  g_free (text);
  g_free (detail);
}

/* ---- model files ---------------------------------------------------------- */

/* Writes the provenance metadata onto @m. */
static void
set_provenance (RnnTrainer *t, RnnModel *m, guint epochs_run,
    guint best_epoch, double loss, double val_loss, gsize n_train, gsize n_val)
{
  const RnnTrainerConfig *s = &t->cfg;
  gchar *v;

#define SET_STR(k, val) rnn_model_set_meta (m, k, val)
#define SET_FMT(k, ...) G_STMT_START { v = g_strdup_printf (__VA_ARGS__); \
    rnn_model_set_meta (m, k, v); g_free (v); } G_STMT_END
#define SET_DBL(k, d) G_STMT_START { v = format_double (d); \
    rnn_model_set_meta (m, k, v); g_free (v); } G_STMT_END

  if (!rnn_model_get_meta (m, "description") && s->description)
    SET_STR ("description", s->description);
  if (s->tool)
    SET_STR ("train_tool", s->tool);
  SET_STR ("train_mode", s->online ? "online" : "offline");
  SET_STR ("train_loss_function", rnn_loss_to_string (s->loss));
  if (s->pre_emphasis > 0.0)
    SET_DBL ("train_pre_emphasis", s->pre_emphasis);
  SET_STR ("train_optimizer",
      rnn_optimizer_kind_to_string (rnn_optimizer_get_config (t->opt)->kind));
  SET_DBL ("train_learning_rate", t->lr0);
  SET_DBL ("train_final_learning_rate", t->lr);
  SET_DBL ("train_momentum", s->momentum);
  SET_DBL ("train_weight_decay", s->weight_decay);
  SET_DBL ("train_clip_norm", s->clip_norm);
  SET_FMT ("train_seed", "%u", s->seed);
  SET_FMT ("train_seq_length", "%u", s->seq_length);
  SET_FMT ("train_batch_size", "%u", s->batch_size);
  SET_FMT ("train_epochs", "%u", epochs_run);
  SET_FMT ("train_best_epoch", "%u", best_epoch);
  SET_DBL ("train_loss", loss);
  SET_DBL ("train_val_loss", val_loss);
  SET_FMT ("train_steps", "%" G_GSIZE_FORMAT, n_train);
  SET_FMT ("train_validation_steps", "%" G_GSIZE_FORMAT, n_val);
  SET_FMT ("train_rollbacks", "%u", t->rollbacks);
  SET_STR ("train_normalize", rnn_model_get_input_mean (m) ? "true" : "false");
  if (s->target)
    SET_STR ("train_target", s->target);
  if (s->predict_ahead > 0)
    SET_FMT ("train_predict_ahead", "%u", s->predict_ahead);
  if (s->init_model)
    SET_STR ("train_init_model", s->init_model);

#undef SET_STR
#undef SET_FMT
#undef SET_DBL
}

/* The file a write to @location replaces: @location, or, when it is a
 * symbolic link, the file the link (and any link it leads to) names, so
 * that the write goes through the link instead of replacing it. */
static gchar *
resolve_location (const char *location)
{
  gchar *path = g_strdup (location);

  for (guint hops = 0; hops < 40; hops++) {
    gchar *target = g_file_read_link (path, NULL);
    if (!target)
      break;                    /* not a link (or missing): write here */
    if (!g_path_is_absolute (target)) {
      gchar *dir = g_path_get_dirname (path);
      gchar *abs = g_build_filename (dir, target, NULL);
      g_free (dir);
      g_free (target);
      target = abs;
    }
    g_free (path);
    path = target;
  }
  return path;
}

gboolean
rnn_trainer_check_location (const char *location, GError **error)
{
  g_return_val_if_fail (location != NULL, FALSE);

  gchar *path = resolve_location (location);
  gchar *dir = g_path_get_dirname (path);
  gchar *probe = NULL;
  gboolean ok = FALSE;
  const gchar *via = strcmp (path, location) != 0 ? " (the target of the "
      "symbolic link model-location)" : "";

  if (g_file_test (path, G_FILE_TEST_IS_DIR)) {
    g_set_error (error, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_WRITE,
        "%s%s is a directory: model-location must name a file, e.g. %s/"
        "model.safetensors.", path, via, path);
    goto out;
  }
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR)) {
    g_set_error (error, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_WRITE,
        "Cannot write %s%s: the directory %s does not exist; create it or "
        "choose another model-location.", path, via, dir);
    goto out;
  }
  /* a file beside it, as the atomic write will create */
  probe = g_strdup_printf ("%s.probe-XXXXXX", path);
  const int fd = g_mkstemp (probe);
  if (fd < 0) {
    const int e = errno;
    g_set_error (error, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_WRITE,
        "Cannot write %s%s: cannot create a file in %s (%s); choose a "
        "writable model-location.", path, via, dir, g_strerror (e));
    goto out;
  }
  g_close (fd, NULL);
  g_unlink (probe);
  ok = TRUE;
out:
  g_free (probe);
  g_free (dir);
  g_free (path);
  return ok;
}

/* rnn_model_save() writes through a temporary file and a rename; a
 * symbolic link is written through (its target is replaced). */
static gboolean
write_model (RnnTrainer *t, RnnModel *m, GError **error)
{
  GError *err = NULL;

  if (!params_finite (m)) {
    /* cannot happen: every step is checked */
    g_set_error (error, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_NOT_FINITE,
        "Refusing to write a model with non-finite weights.");
    return FALSE;
  }
  gchar *path = resolve_location (t->cfg.location);
  const gboolean ok = rnn_model_save (m, path, &err);
  g_free (path);
  if (!ok) {
    g_set_error_literal (error, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_WRITE,
        err->message);
    g_error_free (err);
    return FALSE;
  }
  g_debug ("wrote %s", t->cfg.location);
  return TRUE;
}

/* ---- offline ------------------------------------------------------------------ */

/* Reads records [@first, @first + @n) into wbuf. */
static gboolean
read_records (RnnTrainer *t, gsize first, gsize n, GError **error)
{
  GError *err = NULL;

  if (rnn_recording_read (t->recording, first, n, t->wbuf, &err))
    return TRUE;
  g_set_error_literal (error, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_READ,
      err->message);
  g_error_free (err);
  return FALSE;
}

/* The loss of the current model on records [@start, @start + @len) run as
 * one stream, as rnnfilter would run it: unidirectional models carry their
 * state from zero, warmed up on the @T steps before @start (no loss);
 * bidirectional models run windows of @T.  NaN if nothing carries loss. */
static gboolean
evaluate (RnnTrainer *t, gsize start, gsize len, guint T, double *out,
    double *esr, GError **error)
{
  double total = 0.0, wsum = 0.0, ysum = 0.0;
  /* loss=esr or pre-emphasis: the loss of the whole as the ratio of sums,
   * the ESR from the outputs */
  const gboolean sums = t->cfg.loss != RNN_LOSS_CROSS_ENTROPY
      && (t->cfg.loss == RNN_LOSS_ESR || t->cfg.pre_emphasis > 0.0);
  double num = 0.0, den = 0.0, e2 = 0.0, y2sum = 0.0;
  RnnState *state = NULL;
  gsize pos = start;

  *out = NAN;
  if (esr)
    *esr = NAN;
  if (len == 0)
    return TRUE;
  if (!t->bidirectional) {
    state = rnn_state_new (t->model, 1);
    pos = start >= T ? start - T : 0;
  }
  batch_scratch (t, T, 1);
  while (pos < start + len) {
    gsize n = MIN (T, start + len - pos);
    if (pos < start)
      n = MIN (n, start - pos);
    if (!read_records (t, pos, n, error)) {
      rnn_state_free (state);
      return FALSE;
    }
    batch_put (t, t->wbuf, n, 0, 1);
    if (pos < start) {
      rnn_train_forward (t->tr, NULL, state, t->bx, t->model, n, 1);
    } else {
      double w = 0.0;
      const double l = batch_run (t, state, n, 1, FALSE, &w);
      double a, b;
      if (sums && isfinite (l) && rnn_train_loss_sums (t->tr, &a, &b)) {
        num += a;
        den += b;
        const float *y = rnn_train_peek_output (t->tr);
        for (gsize i = 0; i < n * t->n_tgt; i++) {
          const double m = t->bm[i / t->n_tgt], tg = t->bt[i];
          e2 += m * ((double) y[i] - tg) * ((double) y[i] - tg);
          y2sum += m * tg * tg;
        }
      } else if (sums) {
        num = NAN;
      }
      if (w > 0) {
        total += l * w;
        wsum += w;
        /* the MSE's normalisation: weight x mean over the outputs */
        for (gsize r = 0; r < n; r++) {
          double y2 = 0.0;
          for (guint o = 0; o < t->n_tgt; o++) {
            const double y = t->bt[r * t->n_tgt + o];
            y2 += y * y;
          }
          ysum += t->bm[r] * y2 / t->n_tgt;
        }
      }
    }
    pos += n;
  }
  rnn_state_free (state);
  if (wsum > 0)
    *out = total / wsum;
  if (esr && wsum > 0 && ysum > 0 && t->cfg.loss == RNN_LOSS_MSE)
    *esr = total / ysum;
  if (sums) {
    *out = den > 0 ? num / den : NAN;
    if (esr)
      *esr = y2sum > 0 ? e2 / y2sum : NAN;
  }
  return TRUE;
}

static void
shuffle (GRand *rng, gsize *a, gsize n)
{
  for (gsize i = n; i > 1; i--) {
    const gsize j = (gsize) g_rand_int_range (rng, 0, (gint32) MIN (i, G_MAXINT32));
    const gsize s = a[i - 1];
    a[i - 1] = a[j];
    a[j] = s;
  }
}

/* Training was stopped after @epochs_run of its epochs: writes the best
 * model so far and says so, rather than throw the epochs away. */
static void
keep_best (RnnTrainer *t, RnnModel *best, guint epochs_run, guint best_epoch,
    double best_loss, double best_val, gsize n_tr, gsize n_val)
{
  GError *err = NULL;
  gchar *text;

  set_provenance (t, best, epochs_run, best_epoch, best_loss, best_val, n_tr,
      n_val);
  if (write_model (t, best, &err)) {
    t->offline_written = TRUE;
    text = g_strdup_printf ("Training stopped after epoch %u of %u: wrote the "
        "best model so far (epoch %u, loss %g, validation loss %g) to %s.",
        epochs_run, t->cfg.epochs, best_epoch, best_loss, best_val,
        t->cfg.location);
    warning (t, text, NULL);
  } else {
    text = g_strdup_printf ("Training stopped after epoch %u of %u and the "
        "best model so far could not be written to %s: %s", epochs_run,
        t->cfg.epochs, t->cfg.location, err->message);
    warning (t, text, NULL);
    g_error_free (err);
  }
  g_free (text);
}

/* Trains on the recording and writes the best model. */
static RnnTrainerStatus
train_offline (RnnTrainer *t, RnnTrainerReport *rep, GError **error)
{
  const RnnTrainerConfig *s = &t->cfg;
  const gsize n_all = rnn_recording_get_length (t->recording);
  gsize n_val = (gsize) floor ((double) n_all * s->validation_fraction);
  RnnTrainerStatus ret = RNN_TRAINER_DONE;
  gchar *text;

  if (n_val >= n_all)
    n_val = 0;
  const gsize n_tr = n_all - n_val;
  if (n_tr == 0) {
    warning (t, "Nothing to train on: no complete step was recorded; no "
        "model written.", NULL);
    return RNN_TRAINER_NOTHING;
  }
  const guint T = (guint) MIN ((gsize) s->seq_length, n_tr);
  const guint B = s->batch_size;
  if (t->bidirectional)
    model_set_window (t, T);

  if (t->need_norm) {
    GError *err = NULL;
    if (!norm_from_recording (t, n_tr, &err)) {
      g_set_error_literal (error, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_READ,
          err->message);
      g_error_free (err);
      return RNN_TRAINER_FAILED;
    }
    t->need_norm = FALSE;
  }

  gchar *what = s->target && strcmp (s->target, "predict-ahead") == 0 ?
      g_strdup_printf ("next-step prediction, the input %u step%s ahead "
      "(predict-ahead)", s->predict_ahead, s->predict_ahead == 1 ? "" : "s")
      : g_strdup_printf ("target: %s", s->target ? s->target : "given");
  text = g_strdup_printf ("Training %u epochs on %" G_GSIZE_FORMAT
      " steps (%" G_GSIZE_FORMAT " held out), %s", s->epochs, n_tr, n_val,
      what);
  g_free (what);
  progress (t, RNN_TRAINER_PROGRESS_START, text, -1);
  g_free (text);

  GRand *rng = g_rand_new_with_seed (s->seed ^ 0x5eed5eedu);
  const gsize max_windows = n_tr / T + 1;
  gsize *starts = g_new (gsize, max_windows);
  RnnModel *best = NULL;
  double best_loss = NAN, best_val = NAN, best_key = INFINITY;
  guint best_epoch = 0, epochs_run = 0, streak = 0;
  const gint64 t0 = g_get_monotonic_time ();

  if (s->epochs == 0) {
    double l, v;
    if (!evaluate (t, 0, n_tr, T, &l, NULL, error)
        || !evaluate (t, n_tr, n_val, T, &v, NULL, error)) {
      ret = RNN_TRAINER_FAILED;
      goto out;
    }
    best = rnn_model_copy (t->model);
    best_loss = l;
    best_val = v;
  }

  snapshot_take (t);
  for (guint epoch = 1; epoch <= s->epochs; epoch++) {
    const gint64 te = g_get_monotonic_time ();
    /* windows at a random phase, shuffled */
    gsize phase = n_tr > T ? (gsize) g_rand_int_range (rng, 0, (gint32) T) : 0;
    if (n_tr - phase < T)
      phase = 0;
    gsize nw = 0;
    for (gsize st = phase; st + T <= n_tr; st += T)
      starts[nw++] = st;
    shuffle (rng, starts, nw);

  restart:
    {
      double total = 0.0, wsum = 0.0;
      guint64 steps_done = 0;
      gboolean diverged = FALSE;

      gint64 last_note = g_get_monotonic_time ();
      batch_scratch (t, T, B);
      for (gsize i = 0; i < nw; i += B) {
        const guint b = (guint) MIN ((gsize) B, nw - i);
        if (cancelled (t)) {
          progress (t, RNN_TRAINER_PROGRESS_CANCELED, "Training cancelled", -1);
          ret = RNN_TRAINER_CANCELLED;
          if (epochs_run > 0)
            keep_best (t, best, epochs_run, best_epoch, best_loss, best_val,
                n_tr, n_val);
          goto out;
        }
        if (g_get_monotonic_time () - last_note > 5 * G_USEC_PER_SEC) {
          /* a long epoch: say that it is moving */
          const double done = (epoch - 1 + (double) i / nw) / s->epochs;
          text = g_strdup_printf ("Epoch %u/%u: %.0f %%", epoch, s->epochs,
              100.0 * i / nw);
          progress (t, RNN_TRAINER_PROGRESS_CONTINUE, text, (int) (100 * done));
          g_free (text);
          last_note = g_get_monotonic_time ();
        }
        for (guint j = 0; j < b; j++) {
          if (!read_records (t, starts[i + j], T, error)) {
            ret = RNN_TRAINER_FAILED;
            goto out;
          }
          batch_put (t, t->wbuf, T, j, b);
        }
        memset (t->grads, 0, t->n_params * sizeof (float));
        double w = 0.0;
        const double l = batch_run (t, NULL, T, b, TRUE, &w);
        if (!isfinite (l) || !apply_step (t)) {
          diverged = TRUE;
          break;
        }
        total += l * w;
        wsum += w;
        steps_done += (guint64) T * b;
      }
      if (diverged) {
        gchar *where = g_strdup_printf ("in epoch %u", epoch);
        rollback (t, where);
        g_free (where);
        if (++streak >= RNN_TRAINER_MAX_ROLLBACKS) {
          text = g_strdup_printf ("Training keeps diverging; stopped after %u "
              "rollbacks and kept the best model so far.", streak);
          warning (t, text, NULL);
          g_free (text);
          break;
        }
        goto restart;
      }
      streak = 0;

      const double loss = wsum > 0 ? total / wsum : NAN;
      double val, esr;
      if (!evaluate (t, n_tr, n_val, T, &val, &esr, error)) {
        ret = RNN_TRAINER_FAILED;
        goto out;
      }
      epochs_run = epoch;
      const double key = n_val > 0 ? val : loss;
      if (!best || key < best_key) {
        g_clear_pointer (&best, rnn_model_unref);
        best = rnn_model_copy (t->model);
        best_key = key;
        best_loss = loss;
        best_val = val;
        best_epoch = epoch;
      }
      snapshot_take (t);

      const gint64 now = g_get_monotonic_time ();
      const double secs = MAX ((now - te) / 1e6, 1e-9);
      const guint64 eta = (guint64) ((now - t0) / (double) epoch
          * (s->epochs - epoch) * 1000.0);
      const RnnTrainerEpoch e = { epoch, s->epochs, loss, val, esr,
        steps_done / secs, (guint64) (now - t0) * 1000, eta
      };
      epoch_done (t, &e);
      gchar *el = rnn_trainer_format_duration (e.elapsed_ns);
      gchar *left = rnn_trainer_format_duration (eta);
      gchar *v = isnan (val) ? g_strdup ("no validation")
          : isnan (esr) ? g_strdup_printf ("validation loss %g", val)
          : g_strdup_printf ("validation loss %g (ESR %.4g)", val, esr);
      text = g_strdup_printf ("Epoch %u/%u: loss %g, %s; %s elapsed, about "
          "%s left", epoch, s->epochs, loss, v, el, left);
      g_free (el);
      g_free (left);
      g_free (v);
      progress (t, RNN_TRAINER_PROGRESS_CONTINUE, text,
          (int) (100.0 * epoch / s->epochs));
      g_free (text);
      g_debug ("epoch %u/%u: loss %g val %g, %.0f steps/s",
          epoch, s->epochs, loss, val, steps_done / secs);
    }
  }

  if (!best)
    best = rnn_model_copy (t->snap_model);
  set_provenance (t, best, epochs_run, best_epoch, best_loss, best_val, n_tr, n_val);
  if (!write_model (t, best, error)) {
    ret = RNN_TRAINER_FAILED;
    goto out;
  }
  t->offline_written = TRUE;
  progress (t, RNN_TRAINER_PROGRESS_COMPLETE, "Training complete", -1);
  rep->loss = best_loss;
  rep->val_loss = best_val;
  rep->epochs_run = epochs_run;
  rep->best_epoch = best_epoch;

out:
  g_clear_pointer (&best, rnn_model_unref);
  g_free (starts);
  g_rand_free (rng);
  return ret;
}

/* ---- online ------------------------------------------------------------------- */

static gboolean
online_checkpoint (RnnTrainer *t, gboolean final, GError **error)
{
  const double loss = t->ck_weight > 0 ? t->ck_loss / t->ck_weight : t->last_loss;
  RnnModel *m = rnn_model_copy (t->model);
  gboolean ok;

  /* Online training runs as long as the stream: a progress that stayed
   * open would hold gst-launch-1.0 in PAUSED (it waits for START or
   * CONTINUE to be followed by COMPLETE before it goes to PLAYING), so the
   * sink would never leave preroll.  Each checkpoint is a progress of its
   * own, closed as soon as the model is written. */
  gchar *start = g_strdup_printf ("Writing checkpoint %u", t->checkpoints + 1);
  progress (t, RNN_TRAINER_PROGRESS_START, start, -1);
  g_free (start);
  set_provenance (t, m, t->checkpoints + 1, t->checkpoints + 1, loss, NAN,
      (gsize) (t->updates * t->cfg.batch_size * t->cfg.seq_length), 0);
  gchar *v = g_strdup_printf ("%" G_GUINT64_FORMAT, t->updates);
  rnn_model_set_meta (m, "train_updates", v);
  g_free (v);
  GError *err = NULL;
  ok = write_model (t, m, &err);
  rnn_model_unref (m);
  if (!ok) {
    progress (t, RNN_TRAINER_PROGRESS_CANCELED, "Checkpoint not written", -1);
    if (final) {
      g_propagate_error (error, err);
      return FALSE;
    }
    /* a full disk or a lost directory: the stream and the training go on,
     * the model on disk (written atomically) stays as it was */
    gchar *text = g_strdup_printf ("Could not write checkpoint %u to %s; "
        "the previous model is kept and the write is retried at the next "
        "checkpoint.", t->checkpoints + 1, t->cfg.location);
    warning (t, text, err->message);
    g_free (text);
    g_error_free (err);
    t->ck_dirty = TRUE;
    return TRUE;
  }
  t->checkpoints++;
  t->ck_dirty = FALSE;

  const gint64 now = g_get_monotonic_time ();
  const double secs = MAX ((now - t->ck_time) / 1e6, 1e-9);
  const RnnTrainerEpoch e = { t->checkpoints, 0, loss, NAN, NAN,
    t->ck_steps / secs, (guint64) (now - t->online_t0) * 1000, G_MAXUINT64
  };
  epoch_done (t, &e);
  {
    gchar *el = rnn_trainer_format_duration (e.elapsed_ns);
    gchar *text = g_strdup_printf ("%s %u after %" G_GUINT64_FORMAT
        " updates: loss %g; %s elapsed", final ?
        "Training complete: checkpoint" : "Checkpoint", t->checkpoints,
        t->updates, loss, el);
    g_free (el);
    progress (t, RNN_TRAINER_PROGRESS_COMPLETE, text, -1);
    g_free (text);
  }
  t->last_loss = loss;
  t->ck_loss = t->ck_weight = 0.0;
  t->ck_steps = 0;
  t->ck_time = now;
  /* no snapshot here: online_update () takes one before every step */
  return TRUE;
}

/* One update from the batch-size windows gathered in t->ob. */
static gboolean
online_update (RnnTrainer *t, GError **error)
{
  const guint T = t->cfg.seq_length, B = t->cfg.batch_size;
  double total = 0.0, wsum = 0.0;

  if (!t->online_started) {
    if (t->need_norm) {
      norm_from_array (t, t->ob, (gsize) B * T);
      t->need_norm = FALSE;
    }
    snapshot_take (t);
    t->ck_time = t->online_t0 = g_get_monotonic_time ();
    t->online_started = TRUE;
  }

  if (t->online_stopped)
    return TRUE;                /* gave up: the predictions still flow */

  memset (t->grads, 0, t->n_params * sizeof (float));
  batch_scratch (t, T, 1);
  gboolean ok = TRUE;
  for (guint b = 0; b < B && ok; b++) {
    double w = 0.0;
    batch_put (t, t->ob + (gsize) b * T * t->rec, T, 0, 1);
    const double l = batch_run (t, t->tstate, T, 1, TRUE, &w);
    if (!isfinite (l))
      ok = FALSE;
    total += l * w;
    wsum += w;
  }
  if (ok && B > 1) {
    const float scale = 1.0f / B;
    for (gsize i = 0; i < t->n_params; i++)
      t->grads[i] *= scale;
  }
  /* The weights that just gave a finite loss are the ones to come back to.
   * (A snapshot taken after the step, at the checkpoint, could hold weights
   * that are finite but overflow on the next data whatever the learning
   * rate: every later update would roll back to them.) */
  if (ok)
    snapshot_take (t);
  if (!ok || !apply_step (t)) {
    gchar *where = g_strdup_printf ("at update %" G_GUINT64_FORMAT,
        t->updates + 1);
    rollback (t, where);
    g_free (where);
    /* the last checkpoint may hold the weights just given up */
    t->ck_dirty = TRUE;
    if (++t->online_streak >= RNN_TRAINER_MAX_ROLLBACKS) {
      t->online_stopped = TRUE;
      gchar *text = g_strdup_printf ("Training keeps diverging; stopped "
          "updating after %u rollbacks in a row and kept the last good "
          "weights.", t->online_streak);
      warning (t, text, NULL);
      g_free (text);
      return online_checkpoint (t, FALSE, error);
    }
    return TRUE;
  }
  t->online_streak = 0;
  t->ck_dirty = TRUE;
  t->updates++;
  t->ck_loss += total;
  t->ck_weight += wsum;
  t->ck_steps += (guint64) B * T;
  if (t->updates % t->cfg.checkpoint_interval == 0)
    return online_checkpoint (t, FALSE, error);
  return TRUE;
}

/* ---- feeding and finishing ------------------------------------------------------- */

gboolean
rnn_trainer_add_records (RnnTrainer *t, const float *records, gsize n,
    GError **error)
{
  g_return_val_if_fail (t != NULL, FALSE);
  g_return_val_if_fail (records != NULL || n == 0, FALSE);

  if (!t->cfg.online) {
    GError *err = NULL;
    if (rnn_recording_append (t->recording, records, n, &err))
      return TRUE;
    g_set_error_literal (error, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_RECORD,
        err->message);
    g_error_free (err);
    return FALSE;
  }

  const gsize batch = (gsize) t->cfg.batch_size * t->cfg.seq_length;
  for (gsize i = 0; i < n; i++) {
    memcpy (t->ob + t->ob_len * t->rec, records + i * t->rec,
        t->rec * sizeof (float));
    if (++t->ob_len == batch) {
      t->ob_len = 0;
      if (!online_update (t, error))
        return FALSE;
    }
  }
  return TRUE;
}

void
rnn_trainer_break (RnnTrainer *t)
{
  g_return_if_fail (t != NULL);
  t->ob_len = 0;
  if (t->tstate)
    rnn_state_reset (t->tstate);
}

RnnTrainerStatus
rnn_trainer_finish (RnnTrainer *t, RnnTrainerReport *report, GError **error)
{
  RnnTrainerReport rep = { NAN, NAN, 0, 0, 0, 0, 0, 0.0f };
  RnnTrainerStatus ret;

  g_return_val_if_fail (t != NULL, RNN_TRAINER_FAILED);

  if (!t->cfg.online) {
    ret = train_offline (t, &rep, error);
  } else if (!t->online_started) {
    warning (t, "The stream ended before one update's worth of data "
        "(batch-size x seq-length steps); no model written.", NULL);
    ret = RNN_TRAINER_NOTHING;
  } else if ((t->ck_dirty || t->checkpoints == 0)
      && !online_checkpoint (t, TRUE, error)) {
    ret = RNN_TRAINER_FAILED;
  } else {
    rep.loss = t->last_loss;
    ret = RNN_TRAINER_DONE;
  }
  rep.updates = t->updates;
  rep.checkpoints = t->checkpoints;
  rep.rollbacks = t->rollbacks;
  rep.learning_rate = t->lr;
  if (report)
    *report = rep;
  return ret;
}

RnnTrainerStatus
rnn_trainer_abandon (RnnTrainer *t, double seconds_per_step, GError **error)
{
  gchar *text;

  g_return_val_if_fail (t != NULL, RNN_TRAINER_FAILED);

  if (t->cfg.online) {
    if (!t->online_started) {
      if (t->ob_len == 0)
        return RNN_TRAINER_NOTHING;
      text = g_strdup_printf ("Stopped before the first update: %.1f s of "
          "data (%" G_GSIZE_FORMAT " steps, less than batch-size x "
          "seq-length) were discarded; no model written.",
          t->ob_len * seconds_per_step, t->ob_len);
      warning (t, text, NULL);
      g_free (text);
      return RNN_TRAINER_NOTHING;
    }
    if (!t->ck_dirty && t->checkpoints > 0)
      return RNN_TRAINER_DONE;
    if (!online_checkpoint (t, TRUE, error))
      return RNN_TRAINER_FAILED;
    text = g_strdup_printf ("Stopped before the end of the stream: wrote the "
        "last weights (%" G_GUINT64_FORMAT " updates) to %s.", t->updates,
        t->cfg.location);
    warning (t, text, NULL);
    g_free (text);
    return RNN_TRAINER_DONE;
  }

  const gsize n = rnn_recording_get_length (t->recording);
  if (t->offline_written || n == 0)
    return t->offline_written ? RNN_TRAINER_DONE : RNN_TRAINER_NOTHING;
  text = g_strdup_printf ("Stopped before the end of the stream: the "
      "recording of %.1f s (%" G_GSIZE_FORMAT " steps) was discarded "
      "untrained and no model was written.  Offline training starts at EOS: "
      "end the stream with EOS (gst-launch-1.0 -e sends EOS on Ctrl-C) to "
      "train on what was recorded.", n * seconds_per_step, n);
  warning (t, text, NULL);
  g_free (text);
  return RNN_TRAINER_NOTHING;
}
