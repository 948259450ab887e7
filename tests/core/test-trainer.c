/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The training loops (src/rnn-trainer.c) without a pipeline: offline
 * training learns a synthetic series, the same seed writes the same bytes,
 * a divergent learning rate rolls back and never writes non-finite weights,
 * online training checkpoints (docs/design.md §6). */
#include "rnn.h"
#include "rnn-trainer.h"

#include <glib/gstdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A noisy sine sampled once per step: the input is x(t) and the target is
 * x(t + 1).  The noise is a fixed hash so the series is the same everywhere. */
static float
series (guint t)
{
  guint32 u = t * 2654435761u + 12345u;
  u ^= u >> 15;
  u *= 2246822519u;
  u ^= u >> 13;
  const float noise = ((float) (u >> 20) - 2048.0f) / 2048.0f;
  return 2.0f + 1.5f * sinf (0.3f * (float) t) + 0.05f * noise;
}

/* Records [x][target][weight] for steps [0, n). */
static float *
make_records (guint n)
{
  float *r = g_new (float, (gsize) n * 3);
  for (guint t = 0; t < n; t++) {
    r[t * 3] = series (t);
    r[t * 3 + 1] = series (t + 1);
    r[t * 3 + 2] = 1.0f;
  }
  return r;
}

/* Mean of (target - c)^2 over steps [a, b). */
static double
constant_loss (const float *recs, guint a, guint b, double c)
{
  double s = 0.0;
  for (guint t = a; t < b; t++) {
    const double d = recs[t * 3 + 1] - c;
    s += d * d;
  }
  return s / (b - a);
}

static RnnModel *
fresh_model (RnnCell cell, guint seed)
{
  RnnConfig cfg;
  rnn_config_init (&cfg);
  cfg.cell = cell;
  cfg.hidden_size = 8;
  cfg.num_layers = 1;
  cfg.input_size = 1;
  cfg.has_head = TRUE;
  cfg.output_size = 1;
  cfg.has_input_norm = TRUE;
  RnnModel *m = rnn_model_new (&cfg, NULL);
  g_assert_nonnull (m);
  rnn_train_init_params (m, seed);
  return m;
}

typedef struct
{
  guint starts, epochs, warnings, completes, gave_up;
  double last_val, last_esr;
  gchar last_progress[1024];    /* the last CONTINUE's text */
  gboolean cancel_after_start;
  guint cancel_after_epochs;    /* > 0: cancel once this many epochs ran */
  gchar last_warning[1024];     /* the latest warning's text */
  /* optional hooks of a test */
  void (*on_epoch) (gpointer hook_data, guint epoch);
  void (*on_warning) (gpointer hook_data, const char *text);
  gpointer hook_data;
} Seen;

static void
seen_progress (gpointer user_data, RnnTrainerProgress kind, const char *text,
    int percent)
{
  Seen *s = user_data;
  if (kind == RNN_TRAINER_PROGRESS_CONTINUE) {
    g_strlcpy (s->last_progress, text, sizeof s->last_progress);
  }
  if (kind == RNN_TRAINER_PROGRESS_START)
    s->starts++;
  if (kind == RNN_TRAINER_PROGRESS_COMPLETE)
    s->completes++;
}

static void
seen_epoch (gpointer user_data, const RnnTrainerEpoch *e)
{
  Seen *s = user_data;
  s->epochs++;
  s->last_val = e->val_loss;
  s->last_esr = e->val_esr;
  if (s->on_epoch)
    s->on_epoch (s->hook_data, e->epoch);
}

static void
seen_warning (gpointer user_data, const char *text, const char *detail)
{
  Seen *s = user_data;
  g_test_message ("warning: %s", text);
  s->warnings++;
  if (strstr (text, "keeps diverging"))
    s->gave_up++;
  g_strlcpy (s->last_warning, text, sizeof s->last_warning);
  if (s->on_warning)
    s->on_warning (s->hook_data, text);
}

static gboolean
seen_cancelled (gpointer user_data)
{
  Seen *s = user_data;
  return (s->cancel_after_start && s->starts > 0)
      || (s->cancel_after_epochs > 0 && s->epochs >= s->cancel_after_epochs);
}

static const RnnTrainerCallbacks seen_callbacks = {
  seen_progress, seen_epoch, seen_warning, seen_cancelled
};

static gchar *
tmp_file (const char *name)
{
  static gchar *dir;
  if (!dir)
    dir = g_dir_make_tmp ("test-trainer-XXXXXX", NULL);
  g_assert_nonnull (dir);
  return g_build_filename (dir, name, NULL);
}

/* Trains offline on @n steps; returns the status, fills @rep and @seen. */
static RnnTrainerStatus
train (const RnnTrainerConfig *cfg, RnnModel *model, const float *recs,
    guint n, RnnTrainerReport *rep, Seen *seen)
{
  GError *err = NULL;
  RnnTrainer *t = rnn_trainer_new (cfg, model, &seen_callbacks, seen, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (rnn_trainer_get_record_size (t), ==, 3);
  /* in pieces, as a stream brings them */
  for (guint i = 0; i < n; i += 100)
    g_assert_true (rnn_trainer_add_records (t, recs + (gsize) i * 3,
            MIN (100, n - i), &err));
  RnnTrainerStatus st = rnn_trainer_finish (t, rep, &err);
  if (st == RNN_TRAINER_FAILED)
    g_test_message ("failed: %s", err->message);
  g_clear_error (&err);
  rnn_trainer_free (t);
  return st;
}

static void
offline_config (RnnTrainerConfig *cfg, const char *path)
{
  rnn_trainer_config_init (cfg);
  cfg->location = path;
  cfg->epochs = 8;
  cfg->seq_length = 16;
  cfg->batch_size = 4;
  cfg->validation_fraction = 0.2;
  cfg->learning_rate = 0.01;
  cfg->seed = 3;
  cfg->tool = "test-trainer";
  cfg->target = "pad";
}

static gboolean
all_finite (const RnnModel *m)
{
  gsize n;
  const float *p = rnn_model_peek_params (m, &n);
  for (gsize i = 0; i < n; i++)
    if (!isfinite (p[i]))
      return FALSE;
  return TRUE;
}

/* The validation loss of the written model must beat predicting the mean
 * of the validation targets (the best constant predictor, an upper bound
 * any model that learnt the sine beats by far: 20 times), and predicting
 * zero. */
static void
test_offline_learns (void)
{
  const guint n = 1000, n_val = 200;
  float *recs = make_records (n);
  gchar *path = tmp_file ("learns.safetensors");
  RnnTrainerConfig cfg;
  RnnTrainerReport rep;
  Seen seen = { 0 };

  offline_config (&cfg, path);
  g_assert_cmpint (train (&cfg, fresh_model (RNN_CELL_LSTM, 1), recs, n,
          &rep, &seen), ==, RNN_TRAINER_DONE);
  g_assert_cmpuint (seen.starts, ==, 1);
  g_assert_cmpuint (seen.epochs, ==, cfg.epochs);
  g_assert_cmpuint (seen.completes, ==, 1);
  g_assert_cmpuint (rep.epochs_run, ==, cfg.epochs);
  g_assert_cmpuint (rep.rollbacks, ==, 0);
  g_assert_true (isfinite (rep.loss) && isfinite (rep.val_loss));

  double mean = 0.0;
  for (guint t = n - n_val; t < n; t++)
    mean += recs[t * 3 + 1];
  mean /= n_val;
  const double zero = constant_loss (recs, n - n_val, n, 0.0);
  const double best_const = constant_loss (recs, n - n_val, n, mean);
  g_test_message ("val loss %g; predicting zero %g, the mean %g", rep.val_loss,
      zero, best_const);
  g_assert_cmpfloat (rep.val_loss, <, 0.05 * best_const);
  g_assert_cmpfloat (best_const, <, zero);

  /* the file holds the weights, the statistics and the provenance */
  GError *err = NULL;
  RnnModel *m = rnn_model_load (path, &err);
  g_assert_no_error (err);
  g_assert_true (all_finite (m));
  g_assert_nonnull (rnn_model_get_input_mean (m));
  g_assert_cmpfloat (fabs (rnn_model_get_input_mean (m)[0] - 2.0), <, 0.2);
  g_assert_cmpstr (rnn_model_get_meta (m, "train_mode"), ==, "offline");
  g_assert_cmpstr (rnn_model_get_meta (m, "train_tool"), ==, "test-trainer");
  g_assert_cmpstr (rnn_model_get_meta (m, "train_target"), ==, "pad");
  g_assert_cmpstr (rnn_model_get_meta (m, "train_steps"), ==, "800");
  g_assert_cmpstr (rnn_model_get_meta (m, "train_validation_steps"), ==, "200");
  rnn_model_unref (m);
  g_unlink (path);
  g_free (path);
  g_free (recs);
}

static GBytes *
read_bytes (const char *path)
{
  gchar *data;
  gsize len;
  GError *err = NULL;
  g_assert_true (g_file_get_contents (path, &data, &len, &err));
  return g_bytes_new_take (data, len);
}

/* Same model, settings and records: the same bytes.  Another seed (the
 * window order) gives other weights. */
static void
test_offline_reproducible (void)
{
  const guint n = 600;
  float *recs = make_records (n);
  gchar *p1 = tmp_file ("seed-a.safetensors");
  gchar *p2 = tmp_file ("seed-b.safetensors");
  gchar *p3 = tmp_file ("seed-c.safetensors");
  RnnTrainerConfig cfg;
  RnnTrainerReport rep;
  Seen seen = { 0 };

  offline_config (&cfg, p1);
  cfg.epochs = 3;
  g_assert_cmpint (train (&cfg, fresh_model (RNN_CELL_GRU, 5), recs, n, &rep,
          &seen), ==, RNN_TRAINER_DONE);
  cfg.location = p2;
  g_assert_cmpint (train (&cfg, fresh_model (RNN_CELL_GRU, 5), recs, n, &rep,
          &seen), ==, RNN_TRAINER_DONE);
  cfg.location = p3;
  cfg.seed = 4;
  g_assert_cmpint (train (&cfg, fresh_model (RNN_CELL_GRU, 5), recs, n, &rep,
          &seen), ==, RNN_TRAINER_DONE);

  GBytes *b1 = read_bytes (p1), *b2 = read_bytes (p2), *b3 = read_bytes (p3);
  g_assert_true (g_bytes_equal (b1, b2));
  g_assert_false (g_bytes_equal (b1, b3));
  g_bytes_unref (b1);
  g_bytes_unref (b2);
  g_bytes_unref (b3);
  g_unlink (p1);
  g_unlink (p2);
  g_unlink (p3);
  g_free (p1);
  g_free (p2);
  g_free (p3);
  g_free (recs);
}

/* A learning rate of 1e4 without clipping overflows: every overflow rolls
 * back to the last good weights and halves the rate, a warning says so,
 * training recovers (it does not give up: the weights it came back to are
 * finite) and what is written is finite. */
static void
test_diverge_rolls_back (gconstpointer data)
{
  const gboolean online = GPOINTER_TO_INT (data);
  const guint n = 800;
  float *recs = make_records (n);
  gchar *path = tmp_file (online ? "div-online.safetensors"
      : "div-offline.safetensors");
  RnnTrainerConfig cfg;
  RnnTrainerReport rep;
  Seen seen = { 0 };

  /* big inputs without normalisation make the overflow certain */
  for (guint t = 0; t < n; t++)
    recs[t * 3] *= 1e3f;
  offline_config (&cfg, path);
  cfg.online = online;
  cfg.normalize = FALSE;
  cfg.optimizer = RNN_OPTIMIZER_SGD;
  cfg.learning_rate = 1e4;
  cfg.clip_norm = 0.0;
  cfg.epochs = 2;
  cfg.checkpoint_interval = 2;
  RnnTrainerStatus st = train (&cfg, fresh_model (RNN_CELL_RNN_TANH, 2), recs,
      n, &rep, &seen);
  g_assert_cmpint (st, ==, RNN_TRAINER_DONE);
  g_test_message ("%u rollbacks, final learning rate %g", rep.rollbacks,
      rep.learning_rate);
  g_assert_cmpuint (rep.rollbacks, >=, 1);
  g_assert_cmpuint (seen.warnings, >=, 1);
  g_assert_cmpfloat (rep.learning_rate, <, 1e4);
  g_assert_cmpuint (seen.gave_up, ==, 0);
  g_assert_cmpuint (rep.rollbacks, <, RNN_TRAINER_MAX_ROLLBACKS);
  g_assert_true (isfinite (rep.loss));
  if (online)
    g_assert_cmpuint (rep.updates, >, 0);
  else
    g_assert_cmpuint (rep.epochs_run, ==, cfg.epochs);

  GError *err = NULL;
  RnnModel *m = rnn_model_load (path, &err);
  g_assert_no_error (err);
  g_assert_true (all_finite (m));
  g_assert_cmpuint (atoi (rnn_model_get_meta (m, "train_rollbacks")), >=, 1);
  rnn_model_unref (m);
  g_unlink (path);
  g_free (path);
  g_free (recs);
}

/* Online: every checkpoint-interval updates the model is written; the end
 * writes the rest.  Too little data writes nothing. */
static void
test_online_checkpoints (void)
{
  const guint n = 16 * 4 * 7 + 5;       /* 7 updates and a partial one */
  float *recs = make_records (n);
  gchar *path = tmp_file ("online.safetensors");
  RnnTrainerConfig cfg;
  RnnTrainerReport rep;
  Seen seen = { 0 };

  offline_config (&cfg, path);
  cfg.online = TRUE;
  cfg.checkpoint_interval = 3;
  g_assert_cmpint (train (&cfg, fresh_model (RNN_CELL_LSTM, 1), recs, n,
          &rep, &seen), ==, RNN_TRAINER_DONE);
  g_assert_cmpuint (rep.updates, ==, 7);
  g_assert_cmpuint (rep.checkpoints, ==, 3);    /* after 3, 6, and the end */
  g_assert_cmpuint (seen.epochs, ==, 3);
  g_assert_true (isfinite (rep.loss));
  g_assert_true (isnan (rep.val_loss));

  GError *err = NULL;
  RnnModel *m = rnn_model_load (path, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (rnn_model_get_meta (m, "train_mode"), ==, "online");
  g_assert_cmpstr (rnn_model_get_meta (m, "train_updates"), ==, "7");
  rnn_model_unref (m);
  g_unlink (path);

  Seen none = { 0 };
  g_assert_cmpint (train (&cfg, fresh_model (RNN_CELL_LSTM, 1), recs, 60,
          &rep, &none), ==, RNN_TRAINER_NOTHING);
  g_assert_cmpuint (none.warnings, ==, 1);
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  g_free (path);
  g_free (recs);
}

/* A cancelled offline run writes nothing and may run again. */
static void
test_offline_cancel (void)
{
  const guint n = 400;
  float *recs = make_records (n);
  gchar *path = tmp_file ("cancel.safetensors");
  RnnTrainerConfig cfg;
  RnnTrainerReport rep;
  Seen seen = { 0 };
  GError *err = NULL;

  offline_config (&cfg, path);
  seen.cancel_after_start = TRUE;
  RnnTrainer *t = rnn_trainer_new (&cfg, fresh_model (RNN_CELL_GRU, 1),
      &seen_callbacks, &seen, &err);
  g_assert_true (rnn_trainer_add_records (t, recs, n, &err));
  g_assert_cmpint (rnn_trainer_finish (t, &rep, &err), ==,
      RNN_TRAINER_CANCELLED);
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  seen.cancel_after_start = FALSE;
  g_assert_cmpint (rnn_trainer_finish (t, &rep, &err), ==, RNN_TRAINER_DONE);
  g_assert_no_error (err);
  g_assert_true (g_file_test (path, G_FILE_TEST_EXISTS));
  rnn_trainer_free (t);
  g_unlink (path);
  g_free (path);
  g_free (recs);
}

/* ---- stopping early, writing where asked ----------------------------------- */

/* A place the model cannot be written to is refused when the trainer is
 * made, before any data, with the path in the message. */
static void
test_location_probe (void)
{
  gchar *dir = tmp_file ("probe");
  gchar *missing = g_build_filename (dir, "no-such-dir", "m.safetensors", NULL);
  gchar *good = g_build_filename (dir, "m.safetensors", NULL);
  const char *unwritable = "/proc/m.safetensors";
  const char *bad[] = { missing, dir, unwritable };
  RnnTrainerConfig cfg;
  GError *err = NULL;

  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++) {
    offline_config (&cfg, bad[i]);
    g_assert_null (rnn_trainer_new (&cfg, fresh_model (RNN_CELL_GRU, 1), NULL,
            NULL, &err));
    g_assert_error (err, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_WRITE);
    g_test_message ("%s: %s", bad[i], err->message);
    g_assert_nonnull (strstr (err->message, bad[i]));
    g_clear_error (&err);
  }
  offline_config (&cfg, good);
  RnnTrainer *t = rnn_trainer_new (&cfg, fresh_model (RNN_CELL_GRU, 1), NULL,
      NULL, &err);
  g_assert_no_error (err);
  rnn_trainer_free (t);
  /* the probe leaves nothing behind */
  GDir *d = g_dir_open (dir, 0, NULL);
  g_assert_null (g_dir_read_name (d));
  g_dir_close (d);
  g_rmdir (dir);
  g_free (good);
  g_free (missing);
  g_free (dir);
}

/* A run cancelled after some epochs writes the best model so far and says
 * so. */
static void
test_offline_cancel_keeps_best (void)
{
  const guint n = 400;
  float *recs = make_records (n);
  gchar *path = tmp_file ("cancel-best.safetensors");
  RnnTrainerConfig cfg;
  RnnTrainerReport rep;
  Seen seen = { 0 };
  GError *err = NULL;

  offline_config (&cfg, path);
  seen.cancel_after_epochs = 2;
  RnnTrainer *t = rnn_trainer_new (&cfg, fresh_model (RNN_CELL_GRU, 1),
      &seen_callbacks, &seen, &err);
  g_assert_true (rnn_trainer_add_records (t, recs, n, &err));
  g_assert_cmpint (rnn_trainer_finish (t, &rep, &err), ==,
      RNN_TRAINER_CANCELLED);
  g_assert_cmpuint (seen.warnings, ==, 1);
  g_assert_nonnull (strstr (seen.last_warning, "best model so far"));
  g_assert_nonnull (strstr (seen.last_warning, path));
  RnnModel *m = rnn_model_load (path, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (rnn_model_get_meta (m, "train_epochs"), ==, "2");
  rnn_model_unref (m);
  /* nothing more to say when the stream is then stopped */
  g_assert_cmpint (rnn_trainer_abandon (t, 1e-3, &err), ==, RNN_TRAINER_DONE);
  g_assert_cmpuint (seen.warnings, ==, 1);
  rnn_trainer_free (t);
  g_unlink (path);
  g_free (path);
  g_free (recs);
}

/* Stopped before the end: online, the updates since the last checkpoint
 * are written; offline, the warning says what was recorded and thrown
 * away, and how to train on it. */
static void
test_abandon (void)
{
  float *recs = make_records (16 * 4 * 3 + 5);
  gchar *path = tmp_file ("abandon.safetensors");
  RnnTrainerConfig cfg;
  Seen seen = { 0 };
  GError *err = NULL;

  offline_config (&cfg, path);
  cfg.online = TRUE;
  cfg.checkpoint_interval = 100;
  RnnTrainer *t = rnn_trainer_new (&cfg, fresh_model (RNN_CELL_LSTM, 1),
      &seen_callbacks, &seen, &err);
  g_assert_true (rnn_trainer_add_records (t, recs, 16 * 4 * 3 + 5, &err));
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  g_assert_cmpint (rnn_trainer_abandon (t, 1e-3, &err), ==, RNN_TRAINER_DONE);
  g_assert_no_error (err);
  g_assert_nonnull (strstr (seen.last_warning, "wrote the last weights"));
  RnnModel *m = rnn_model_load (path, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (rnn_model_get_meta (m, "train_updates"), ==, "3");
  rnn_model_unref (m);
  rnn_trainer_free (t);
  g_unlink (path);

  offline_config (&cfg, path);
  t = rnn_trainer_new (&cfg, fresh_model (RNN_CELL_LSTM, 1), &seen_callbacks,
      &seen, &err);
  g_assert_true (rnn_trainer_add_records (t, recs, 100, &err));
  g_assert_cmpint (rnn_trainer_abandon (t, 0.05, &err), ==,
      RNN_TRAINER_NOTHING);
  g_test_message ("%s", seen.last_warning);
  g_assert_nonnull (strstr (seen.last_warning, "5.0 s"));
  g_assert_nonnull (strstr (seen.last_warning, "discarded"));
  g_assert_nonnull (strstr (seen.last_warning, "gst-launch-1.0 -e"));
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  rnn_trainer_free (t);
  g_free (path);
  g_free (recs);
}

/* A checkpoint that cannot be written (here the model's directory is
 * replaced by a file, as a lost mount or a full disk would refuse it) is a
 * warning: training goes on, the model written before stays whole, and
 * the next checkpoint writes again. */
typedef struct
{
  gchar *dir, *saved, *path;
  guint failed;
} Hidden;

static void
hide_dir (gpointer p, guint epoch)
{
  Hidden *h = p;
  if (epoch != 2)
    return;
  g_assert_cmpint (g_rename (h->dir, h->saved), ==, 0);
  g_assert_true (g_file_set_contents (h->dir, "not a directory", -1, NULL));
}

static void
restore_dir (gpointer p, const char *text)
{
  Hidden *h = p;
  GError *err = NULL;

  g_assert_nonnull (strstr (text, "retried at the next checkpoint"));
  h->failed++;
  /* the last good model is still whole */
  gchar *old = g_build_filename (h->saved, "m.safetensors", NULL);
  RnnModel *m = rnn_model_load (old, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (rnn_model_get_meta (m, "train_updates"), ==, "2");
  rnn_model_unref (m);
  g_free (old);
  g_assert_cmpint (g_unlink (h->dir), ==, 0);
  g_assert_cmpint (g_rename (h->saved, h->dir), ==, 0);
}

static void
test_online_write_failure (void)
{
  const guint n = 16 * 4 * 6;
  float *recs = make_records (n);
  Hidden h = { 0 };
  RnnTrainerConfig cfg;
  RnnTrainerReport rep;
  Seen seen = { 0 };

  h.dir = tmp_file ("ckdir");
  h.saved = tmp_file ("ckdir.saved");
  h.path = g_build_filename (h.dir, "m.safetensors", NULL);
  g_assert_cmpint (g_mkdir_with_parents (h.dir, 0755), ==, 0);
  seen.on_epoch = hide_dir;
  seen.on_warning = restore_dir;
  seen.hook_data = &h;
  offline_config (&cfg, h.path);
  cfg.online = TRUE;
  cfg.checkpoint_interval = 1;
  g_assert_cmpint (train (&cfg, fresh_model (RNN_CELL_LSTM, 1), recs, n,
          &rep, &seen), ==, RNN_TRAINER_DONE);
  g_assert_cmpuint (h.failed, ==, 1);
  g_assert_cmpuint (rep.updates, ==, 6);
  g_assert_cmpuint (rep.checkpoints, ==, 5);
  GError *err = NULL;
  RnnModel *m = rnn_model_load (h.path, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (rnn_model_get_meta (m, "train_updates"), ==, "6");
  rnn_model_unref (m);
  g_unlink (h.path);
  g_rmdir (h.dir);
  g_free (h.path);
  g_free (h.dir);
  g_free (h.saved);
  g_free (recs);
}

/* Settings whose training memory is beyond RNN_TRAINER_MAX_SCRATCH are
 * refused with the arithmetic, never an abort of a failed allocation. */
static void
test_memory_bound (void)
{
  RnnTrainerConfig cfg;
  GError *err = NULL;

  for (int online = 0; online < 2; online++) {
    offline_config (&cfg, "unused.safetensors");
    cfg.online = online;
    cfg.seq_length = 65536;
    cfg.batch_size = 65536;
    g_assert_null (rnn_trainer_new (&cfg, fresh_model (RNN_CELL_LSTM, 1),
            NULL, NULL, &err));
    g_assert_error (err, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_SETTINGS);
    g_test_message ("%s", err->message);
    g_assert_nonnull (strstr (err->message, "seq-length 65536"));
    g_assert_nonnull (strstr (err->message, "batch-size 65536"));
    g_assert_nonnull (strstr (err->message, "4.0 GiB"));
    gchar *limit = g_strdup_printf ("> %" G_GUINT64_FORMAT,
        (guint64) RNN_TRAINER_MAX_SCRATCH);
    g_assert_nonnull (strstr (err->message, limit));
    g_free (limit);
    g_clear_error (&err);
  }
  /* large but within the limit */
  offline_config (&cfg, "unused.safetensors");
  cfg.online = TRUE;
  cfg.seq_length = 4096;
  cfg.batch_size = 64;
  RnnTrainer *t = rnn_trainer_new (&cfg, fresh_model (RNN_CELL_LSTM, 1), NULL,
      NULL, &err);
  g_assert_no_error (err);
  rnn_trainer_free (t);
}

/* One finite 1e20 among 100k inputs does not wreck the normalisation: the
 * statistics are those of the other values, and a warning names the
 * outlier's value and step. */
static void
test_norm_outlier (void)
{
  const guint n = 100000, at = 50000;
  float *recs = make_records (n);
  gchar *path = tmp_file ("outlier.safetensors");
  RnnTrainerConfig cfg;
  RnnTrainerReport rep;
  Seen seen = { 0 };

  /* the statistics of the clean values */
  double mean = 0.0, sq = 0.0;
  for (guint i = 0; i < n; i++)
    if (i != at)
      mean += recs[i * 3];
  mean /= n - 1;
  for (guint i = 0; i < n; i++)
    if (i != at)
      sq += (recs[i * 3] - mean) * (recs[i * 3] - mean);
  const double sd = sqrt (sq / (n - 1));
  recs[at * 3] = 1e20f;

  offline_config (&cfg, path);
  cfg.epochs = 0;
  cfg.validation_fraction = 0.0;
  g_assert_cmpint (train (&cfg, fresh_model (RNN_CELL_GRU, 1), recs, n, &rep,
          &seen), ==, RNN_TRAINER_DONE);
  g_assert_cmpuint (seen.warnings, ==, 1);
  g_assert_nonnull (strstr (seen.last_warning, "1e+20"));
  g_assert_nonnull (strstr (seen.last_warning, "step 50000"));
  GError *err = NULL;
  RnnModel *m = rnn_model_load (path, &err);
  g_assert_no_error (err);
  g_test_message ("stored mean %g std %g; clean %g %g",
      rnn_model_get_input_mean (m)[0], rnn_model_get_input_std (m)[0], mean, sd);
  g_assert_cmpfloat_with_epsilon (rnn_model_get_input_mean (m)[0], mean, 1e-4);
  g_assert_cmpfloat_with_epsilon (rnn_model_get_input_std (m)[0], sd, 1e-4);
  rnn_model_unref (m);
  g_unlink (path);
  g_free (path);
  g_free (recs);
}

/* Progress a person can read: the validation ESR next to the loss,
 * elapsed time and time left in human units. */
static void
test_progress_text (void)
{
  const guint n = 1000, n_val = 200;
  float *recs = make_records (n);
  gchar *path = tmp_file ("progress.safetensors");
  RnnTrainerConfig cfg;
  RnnTrainerReport rep;
  Seen seen = { 0 };

  offline_config (&cfg, path);
  cfg.epochs = 2;
  g_assert_cmpint (train (&cfg, fresh_model (RNN_CELL_LSTM, 1), recs, n,
          &rep, &seen), ==, RNN_TRAINER_DONE);
  /* ESR = sum (y - yhat)^2 / sum y^2 over the held-out tail: the MSE
   * divided by the mean square of the targets */
  double y2 = 0.0;
  for (guint i = n - n_val; i < n; i++)
    y2 += (double) recs[i * 3 + 1] * recs[i * 3 + 1];
  y2 /= n_val;
  g_test_message ("val %g, ESR %g; last progress: %s", seen.last_val,
      seen.last_esr, seen.last_progress);
  g_assert_cmpfloat_with_epsilon (seen.last_esr, seen.last_val / y2,
      1e-6 * seen.last_val / y2);
  g_assert_nonnull (strstr (seen.last_progress, "(ESR "));
  g_assert_nonnull (strstr (seen.last_progress, "elapsed"));
  g_assert_nonnull (strstr (seen.last_progress, "left"));
  g_unlink (path);
  g_free (path);
  g_free (recs);

  const struct { guint64 ns; const char *text; } d[] = {
    { 400 * G_GUINT64_CONSTANT (1000000), "0.4 s" },
    { 42 * G_GUINT64_CONSTANT (1000000000), "42 s" },
    { 200 * G_GUINT64_CONSTANT (1000000000), "3 min 20 s" },
    { 7500 * G_GUINT64_CONSTANT (1000000000), "2 h 05 min" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (d); i++) {
    gchar *f = rnn_trainer_format_duration (d[i].ns);
    g_assert_cmpstr (f, ==, d[i].text);
    g_free (f);
  }
}

/* A symbolic link as model-location is written through: its target is
 * replaced by the model, the link stays a link (relative targets too). */
static void
test_symlink_location (void)
{
  const guint n = 400;
  float *recs = make_records (n);
  gchar *dir = tmp_file ("links");
  gchar *real_dir = g_build_filename (dir, "models", NULL);
  gchar *target = g_build_filename (real_dir, "real.safetensors", NULL);
  gchar *link = g_build_filename (dir, "current.safetensors", NULL);
  RnnTrainerConfig cfg;
  RnnTrainerReport rep;
  Seen seen = { 0 };
  GError *err = NULL;

  g_assert_cmpint (g_mkdir_with_parents (real_dir, 0755), ==, 0);
  g_assert_true (g_file_set_contents (target, "old", -1, NULL));
  g_assert_cmpint (symlink ("models/real.safetensors", link), ==, 0);
  offline_config (&cfg, link);
  cfg.epochs = 1;
  g_assert_cmpint (train (&cfg, fresh_model (RNN_CELL_GRU, 1), recs, n, &rep,
          &seen), ==, RNN_TRAINER_DONE);
  gchar *points = g_file_read_link (link, &err);
  g_assert_no_error (err);
  g_assert_cmpstr (points, ==, "models/real.safetensors");
  RnnModel *m = rnn_model_load (target, &err);
  g_assert_no_error (err);
  rnn_model_unref (m);
  /* nothing else was left in either directory */
  GDir *d = g_dir_open (real_dir, 0, NULL);
  g_assert_cmpstr (g_dir_read_name (d), ==, "real.safetensors");
  g_assert_null (g_dir_read_name (d));
  g_dir_close (d);
  g_unlink (link);
  g_unlink (target);
  g_rmdir (real_dir);
  g_rmdir (dir);
  g_free (points);
  g_free (link);
  g_free (target);
  g_free (real_dir);
  g_free (dir);
  g_free (recs);
}

/* Settings the model cannot train with are refused with a message. */
/* Validation with loss=esr and pre-emphasis on a model with a learned
 * initial state and a skip, against rnn_forward() of the written model:
 * the held-out tail runs as one stream from the initial state, warmed up
 * on the seq-length steps before it, in chunks of seq-length steps whose
 * first step carries no loss; the loss is the ESR of the whole tail
 * (sums over every chunk) after the filter 1 - a z^-1.  The windows are
 * short, so the initial state shows in the figure (from zeros instead it
 * is off by 1e-3). */
static void
test_esr_validation (void)
{
  const guint n = 1000, T = 3;
  const double a = 0.9;
  float *recs = make_records (n);
  gchar *path = tmp_file ("esr.safetensors");
  RnnTrainerConfig cfg;
  RnnTrainerReport rep;
  Seen seen = { 0 };

  RnnConfig mc;
  rnn_config_init (&mc);
  mc.cell = RNN_CELL_LSTM;
  mc.hidden_size = 8;
  mc.input_size = 1;
  mc.has_head = TRUE;
  mc.output_size = 1;
  mc.has_input_norm = TRUE;
  mc.has_h0 = mc.has_c0 = TRUE;
  mc.skip = 1;
  RnnModel *model = rnn_model_new (&mc, NULL);
  g_assert_nonnull (model);
  rnn_train_init_params (model, 5);
  float *p = rnn_model_get_params (model, NULL);
  for (guint k = 0; k < 2; k++) {
    const RnnParamInfo *ti = rnn_model_get_tensor_info (model,
        (guint) rnn_model_find_tensor (model, k ? "rnn.c0" : "rnn.h0"));
    for (gsize j = 0; j < ti->numel; j++)
      p[ti->offset + j] = 0.9f * sinf (1.7f * (float) (j + 8 * k));
  }
  rnn_model_seal (model);

  offline_config (&cfg, path);
  cfg.epochs = 0;                       /* evaluate only */
  cfg.seq_length = T;
  cfg.loss = RNN_LOSS_ESR;
  cfg.pre_emphasis = a;
  g_assert_cmpint (train (&cfg, model, recs, n, &rep, &seen), ==, RNN_TRAINER_DONE);

  /* the written model (with the statistics the trainer took) as rnnfilter
   * runs it */
  GError *err = NULL;
  RnnModel *m = rnn_model_load (path, &err);
  g_assert_no_error (err);
  g_assert_cmpuint (rnn_model_get_config (m)->skip, ==, 1);
  g_assert_cmpstr (rnn_model_get_meta (m, "train_loss_function"), ==, "esr");
  const guint n_val = 200, n_tr = n - n_val, start = n_tr - T;
  float *x = g_new (float, n - start), *y = g_new (float, n - start);
  for (guint t = start; t < n; t++)
    x[t - start] = recs[t * 3];
  RnnForward *fw = rnn_forward_new ();
  RnnState *st = rnn_state_new (m, 1);
  rnn_forward (fw, m, st, x, n - start, 1, y);
  double num = 0.0, den = 0.0, count = 0.0;
  for (guint t = n_tr; t < n; t++) {
    if ((t - n_tr) % T == 0)
      continue;                         /* a chunk's first step */
    const double ey = y[t - start] - a * y[t - 1 - start];
    const double et = recs[t * 3 + 1] - a * recs[(t - 1) * 3 + 1];
    num += (ey - et) * (ey - et);
    den += et * et;
    count += 1.0;
  }
  const double want = num / (den + 1e-8 * count);
  g_test_message ("validation ESR with pre-emphasis %.9g, from rnn_forward %.9g",
      rep.val_loss, want);
  g_assert_cmpfloat (fabs (rep.val_loss - want), <=, 1e-5 * want);

  rnn_state_free (st);
  rnn_forward_free (fw);
  rnn_model_unref (m);
  g_free (x);
  g_free (y);
  g_unlink (path);
  g_free (path);
  g_free (recs);
}

static void
test_bad_settings (void)
{
  RnnTrainerConfig cfg;
  GError *err = NULL;

  offline_config (&cfg, "unused.safetensors");
  cfg.loss = RNN_LOSS_CROSS_ENTROPY;    /* one output: no classes */
  g_assert_null (rnn_trainer_new (&cfg, fresh_model (RNN_CELL_LSTM, 1), NULL,
          NULL, &err));
  g_assert_error (err, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_SETTINGS);
  g_assert_nonnull (strstr (err->message, "loss=cross-entropy"));
  g_clear_error (&err);

  offline_config (&cfg, "unused.safetensors");
  cfg.seq_length = 0;
  g_assert_null (rnn_trainer_new (&cfg, fresh_model (RNN_CELL_LSTM, 1), NULL,
          NULL, &err));
  g_assert_error (err, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_SETTINGS);
  g_assert_nonnull (strstr (err->message, "seq-length"));
  g_clear_error (&err);

  offline_config (&cfg, "unused.safetensors");
  cfg.momentum = 2.0;
  cfg.optimizer = RNN_OPTIMIZER_SGD;
  g_assert_null (rnn_trainer_new (&cfg, fresh_model (RNN_CELL_LSTM, 1), NULL,
          NULL, &err));
  g_assert_error (err, RNN_TRAINER_ERROR, RNN_TRAINER_ERROR_SETTINGS);
  g_clear_error (&err);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/trainer/offline/learns", test_offline_learns);
  g_test_add_func ("/trainer/offline/reproducible", test_offline_reproducible);
  g_test_add_func ("/trainer/offline/cancel", test_offline_cancel);
  g_test_add_data_func ("/trainer/diverge/offline", GINT_TO_POINTER (FALSE),
      test_diverge_rolls_back);
  g_test_add_data_func ("/trainer/diverge/online", GINT_TO_POINTER (TRUE),
      test_diverge_rolls_back);
  g_test_add_func ("/trainer/online/checkpoints", test_online_checkpoints);
  g_test_add_func ("/trainer/bad-settings", test_bad_settings);
  g_test_add_func ("/trainer/offline/esr-pre-emphasis-validation", test_esr_validation);
  g_test_add_func ("/trainer/location/probe", test_location_probe);
  g_test_add_func ("/trainer/memory-bound", test_memory_bound);
  g_test_add_func ("/trainer/normalize/outlier", test_norm_outlier);
  g_test_add_func ("/trainer/progress-text", test_progress_text);
  g_test_add_func ("/trainer/location/symlink", test_symlink_location);
  g_test_add_func ("/trainer/offline/cancel-keeps-best",
      test_offline_cancel_keeps_best);
  g_test_add_func ("/trainer/abandon", test_abandon);
  g_test_add_func ("/trainer/online/write-failure", test_online_write_failure);
  return g_test_run ();
}
