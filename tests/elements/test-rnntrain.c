/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnntrain through GstHarness and whole pipelines.
 *
 * Expected values come from invariants and from models whose output is
 * known exactly (an identity network as init-model, epochs=0 to evaluate
 * only), from the core library run by hand on the same data, or from
 * rnnfilter playing the written model — never from an earlier run of the
 * element itself.  Learning itself is measured by tests/elements/train-acceptance.sh;
 * here the training runs are small and only check plumbing.
 */
#include "test-common.h"
#include "tsan-glib.h"
#include "element-rig.h"
#include "rnn-train.h"
#include "rnn-dataset.h"
#include "../../plugins/gstrnnelements.h"
#include "../../plugins/gstrnntrain.h"

#include <gst/gst.h>
#include <gst/check/gstharness.h>
#include <glib/gstdio.h>
#include <gio/gio.h>
#include <signal.h>
#include <unistd.h>

#define RATE 8000

static gchar *tmp_dir;

static gchar *
tmp_path (const char *file)
{
  return g_build_filename (tmp_dir, file, NULL);
}

/* ---- data ----------------------------------------------------------------- */

/* Deterministic test signal in [-1, 1): the fixture hash. */
static float *
signal_new (gsize n, guint32 salt)
{
  float *x = g_new (float, n);
  for (gsize i = 0; i < n; i++)
    x[i] = fixture_input (salt, (guint32) i, 0);
  return x;
}

/* A learnable target: a one-pole low-pass of @x. */
static float *
lowpass_new (const float *x, gsize n)
{
  float *y = g_new (float, n);
  float s = 0.0f;
  for (gsize i = 0; i < n; i++) {
    s = 0.6f * s + 0.4f * x[i];
    y[i] = s;
  }
  return y;
}

/* ---- models ----------------------------------------------------------------- */

static void
set_tensor (RnnModel *m, const char *name, const float *v)
{
  gsize n;
  float *p = rnn_model_get_params (m, &n);
  gint i = rnn_model_find_tensor (m, name);
  g_assert_cmpint (i, >=, 0);
  const RnnParamInfo *ti = rnn_model_get_tensor_info (m, (guint) i);
  memcpy (p + ti->offset, v, ti->numel * sizeof (float));
}

/* y = x exactly, for @n inputs (frame size @f): ReLU units relu(x) and
 * relu(-x), no recurrence, head relu(x) - relu(-x). */
static gchar *
identity_model (const char *file, guint n, guint f_in, guint n_out, guint f_out)
{
  RnnConfig cfg;
  GError *err = NULL;

  rnn_config_init (&cfg);
  cfg.cell = RNN_CELL_RNN_RELU;
  cfg.input_size = n;
  cfg.hidden_size = 2 * n;
  cfg.has_head = TRUE;
  cfg.output_size = n_out;
  cfg.frame_size = f_in;
  cfg.output_frame_size = f_out;
  cfg.sample_rate = RATE;
  RnnModel *m = rnn_model_new (&cfg, &err);
  g_assert_no_error (err);
  float *wih = g_new0 (float, 2 * n * n), *hw = g_new0 (float, n_out * 2 * n);
  for (guint i = 0; i < n; i++) {
    wih[(2 * i) * n + i] = 1.0f;
    wih[(2 * i + 1) * n + i] = -1.0f;
  }
  /* output k is input n - n_out + k: the last n_out inputs */
  for (guint k = 0; k < n_out; k++) {
    const guint i = n - n_out + k;
    hw[k * 2 * n + 2 * i] = 1.0f;
    hw[k * 2 * n + 2 * i + 1] = -1.0f;
  }
  set_tensor (m, "rnn.weight_ih_l0", wih);
  set_tensor (m, "head.weight", hw);
  rnn_model_seal (m);
  gchar *path = tmp_path (file);
  g_assert_true (rnn_model_save (m, path, &err));
  g_assert_no_error (err);
  rnn_model_unref (m);
  g_free (wih);
  g_free (hw);
  return path;
}

static RnnModel *
load_model (const char *path)
{
  GError *err = NULL;
  RnnModel *m = rnn_model_load (path, &err);
  g_assert_no_error (err);
  return m;
}

static gboolean
model_finite (const RnnModel *m)
{
  gsize n;
  const float *p = rnn_model_peek_params (m, &n);
  for (gsize i = 0; i < n; i++)
    if (!isfinite (p[i]))
      return FALSE;
  return TRUE;
}

/* ---- the rig: rnntrain with a harness per input ------------------------- */

/* rnntrain with @c_in channels at @rate_in on its sink pad and, if
 * @target, a harnessed target pad of @c_tgt channels at @rate_tgt.
 * Trailing arguments: property name/value pairs, NULL-terminated. */
static Rig *
rig_new (gboolean target, guint c_in, guint c_tgt, guint rate_in,
    guint rate_tgt, const char *first_prop, ...)
{
  Rig *r;
  va_list args;

  va_start (args, first_prop);
  r = rig_open ("rnntrain", NULL, first_prop, args);
  va_end (args);
  r->c_tgt = c_tgt;
  r->h = gst_harness_new_with_element (r->e, "sink", "src");
  if (target)
    r->ht = gst_harness_new_with_element (r->e, "target", NULL);
  r->rate = rate_in;
  r->channels = c_in;
  gchar *c = caps_string (rate_in, c_in);
  gst_harness_set_src_caps_str (r->h, c);
  g_free (c);
  if (target) {
    c = caps_string (rate_tgt, c_tgt);
    gst_harness_set_src_caps_str (r->ht, c);
    g_free (c);
  }
  return r;
}

static GstBuffer *
make_buffer (const float *data, gsize frames, guint channels, guint64 frame0)
{
  GstBuffer *buf = gst_buffer_new_memdup (data, frames * channels * sizeof (float));
  const GstClockTime t0 = gst_util_uint64_scale_round (frame0, GST_SECOND, RATE);
  const GstClockTime t1 = gst_util_uint64_scale_round (frame0 + frames, GST_SECOND, RATE);
  GST_BUFFER_PTS (buf) = t0;
  GST_BUFFER_DURATION (buf) = t1 - t0;
  return buf;
}

/* One input's pushes, run on a thread of its own: one thread feeding both
 * pads of an aggregator can block on one pad while the aggregator waits
 * for the other (the reason a tee needs a queue per branch). */
typedef struct
{
  GstHarness *h;
  const float *data;
  gsize n, chunk;
  guint64 frame0;
  guint channels;
} Feed;

static gpointer
feed_thread (gpointer p)
{
  Feed *f = p;

  for (gsize i = 0; i < f->n; i += f->chunk) {
    const gsize k = MIN (f->chunk, f->n - i);
    gst_harness_push (f->h, make_buffer (f->data + i * f->channels, k,
            f->channels, f->frame0 + i));
  }
  gst_harness_push_event (f->h, gst_event_new_eos ());
  return NULL;
}

/* Pushes @nx frames of @x (from frame @x0) on the sink and @nt frames of
 * @t (from frame @t0) on the target, in buffers of @cx and @ct frames,
 * each followed by EOS. */
static void
rig_push (Rig *r, const float *x, gsize nx, guint64 x0, gsize cx,
    const float *t, gsize nt, guint64 t0, gsize ct)
{
  Feed fx = { r->h, x, nx, cx, x0, r->channels };
  Feed ft = { r->ht, t, nt, ct, t0, r->c_tgt };
  GThread *th = r->ht ? g_thread_new ("feed-target", feed_thread, &ft) : NULL;

  feed_thread (&fx);
  if (th)
    g_thread_join (th);
}

static GPtrArray *warnings;     /* gchar*: warnings seen by wait_done () */

/* Waits for rnntrain-done (returned, a copy) or an error (NULL; its text in
 * *error_text when given). */
static GstStructure *
wait_done (GstBus *bus, gchar **error_text)
{
  const gint64 deadline = g_get_monotonic_time () + 120 * G_USEC_PER_SEC;

  while (g_get_monotonic_time () < deadline) {
    GstMessage *m = gst_bus_timed_pop_filtered (bus, 100 * GST_MSECOND,
        GST_MESSAGE_ELEMENT | GST_MESSAGE_ERROR | GST_MESSAGE_WARNING);
    if (!m)
      continue;
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_WARNING) {
      GError *err = NULL;
      gst_message_parse_warning (m, &err, NULL);
      g_test_message ("warning: %s", err->message);
      g_ptr_array_add (warnings, g_strdup (err->message));
      g_error_free (err);
      gst_message_unref (m);
      continue;
    }
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR) {
      GError *err = NULL;
      gchar *dbg = NULL;
      gst_message_parse_error (m, &err, &dbg);
      g_test_message ("error: %s (%s)", err->message, dbg ? dbg : "");
      if (error_text)
        *error_text = g_strdup (err->message);
      g_error_free (err);
      g_free (dbg);
      gst_message_unref (m);
      return NULL;
    }
    const GstStructure *s = gst_message_get_structure (m);
    if (gst_structure_has_name (s, "rnntrain-done")) {
      GstStructure *c = gst_structure_copy (s);
      gst_message_unref (m);
      return c;
    }
    gst_message_unref (m);
  }
  g_error ("timed out waiting for rnntrain-done");
  return NULL;
}

/* The first error's message, waiting up to 5 s. */
static gchar *
wait_error (GstBus *bus)
{
  GstMessage *m = gst_bus_timed_pop_filtered (bus, 5 * GST_SECOND,
      GST_MESSAGE_ERROR);
  GError *err = NULL;
  gchar *text;

  if (!m)
    return NULL;
  gst_message_parse_error (m, &err, NULL);
  text = g_strdup (err->message);
  g_test_message ("error: %s", text);
  g_error_free (err);
  gst_message_unref (m);
  return text;
}

/* Warnings with @needle that wait_done () saw since the last call. */
static guint
count_warnings (const char *needle)
{
  guint n = 0;

  for (guint i = 0; i < warnings->len; i++)
    if (strstr (g_ptr_array_index (warnings, i), needle))
      n++;
  g_ptr_array_set_size (warnings, 0);
  return n;
}

static double
get_double (const GstStructure *s, const char *field)
{
  double v = NAN;
  g_assert_true (gst_structure_get_double (s, field, &v));
  return v;
}

static guint64
meta_u64 (const RnnModel *m, const char *key)
{
  const char *v = rnn_model_get_meta (m, key);
  g_assert_nonnull (v);
  return g_ascii_strtoull (v, NULL, 10);
}

/* Runs a whole offline training on the rig and returns rnntrain-done. */
static GstStructure *
rig_train (Rig *r, const float *x, gsize nx, guint64 x0, gsize cx,
    const float *t, gsize nt, guint64 t0, gsize ct)
{
  rig_push (r, x, nx, x0, cx, t, nt, t0, ct);
  return wait_done (r->bus, NULL);
}

/* ---- properties and pads --------------------------------------------------- */

static void
check_enum_default (GstElement *e, const char *prop, const char *nick)
{
  GParamSpec *ps = g_object_class_find_property (G_OBJECT_GET_CLASS (e), prop);
  g_assert_nonnull (ps);
  g_assert_true (G_IS_PARAM_SPEC_ENUM (ps));
  GEnumValue *v = g_enum_get_value (G_PARAM_SPEC_ENUM (ps)->enum_class,
      G_PARAM_SPEC_ENUM (ps)->default_value);
  g_assert_cmpstr (v->value_nick, ==, nick);
}

static void
check_enum_nicks (GstElement *e, const char *prop, const char *const *nicks)
{
  GParamSpec *ps = g_object_class_find_property (G_OBJECT_GET_CLASS (e), prop);
  GEnumClass *ec = G_PARAM_SPEC_ENUM (ps)->enum_class;
  guint n = 0;
  for (; nicks[n]; n++)
    g_assert_nonnull (g_enum_get_value_by_nick (ec, nicks[n]));
  g_assert_cmpuint (ec->n_values, ==, n);
}

static void
test_properties (void)
{
  GstElement *e = gst_element_factory_make ("rnntrain", NULL);
  gchar *loc, *init;
  guint hidden, layers, fs, ofs, classes, epochs, seq, batch, seed, ckpt, ahead;
  gboolean bidi, norm;
  gdouble lr, mom, wd, clip, vf;
  guint64 maxmem;

  g_object_get (e, "model-location", &loc, "init-model", &init,
      "hidden-size", &hidden, "num-layers", &layers, "bidirectional", &bidi,
      "frame-size", &fs, "output-frame-size", &ofs, "num-classes", &classes,
      "learning-rate", &lr, "momentum", &mom, "weight-decay", &wd,
      "clip-norm", &clip, "epochs", &epochs, "seq-length", &seq,
      "batch-size", &batch, "validation-fraction", &vf, "seed", &seed,
      "normalize", &norm, "checkpoint-interval", &ckpt,
      "predict-ahead", &ahead, "max-memory", &maxmem, NULL);
  g_assert_null (loc);
  g_assert_null (init);
  g_assert_cmpuint (hidden, ==, 32);
  g_assert_cmpuint (layers, ==, 1);
  g_assert_false (bidi);
  g_assert_cmpuint (fs, ==, 1);
  g_assert_cmpuint (ofs, ==, 1);
  g_assert_cmpuint (classes, ==, 2);
  g_assert_cmpfloat (lr, ==, 0.0);
  g_assert_cmpfloat (mom, ==, 0.0);
  g_assert_cmpfloat (wd, ==, 0.0);
  g_assert_cmpfloat (clip, ==, 1.0);
  g_assert_cmpuint (epochs, ==, 10);
  g_assert_cmpuint (seq, ==, 64);
  g_assert_cmpuint (batch, ==, 32);
  g_assert_cmpfloat (vf, ==, 0.1);
  g_assert_cmpuint (seed, ==, 0);
  g_assert_true (norm);
  g_assert_cmpuint (ckpt, ==, 100);
  g_assert_cmpuint (ahead, ==, 1);
  g_assert_cmpuint (maxmem, ==, G_GUINT64_CONSTANT (256) << 20);
  guint skip;
  gdouble pre;
  g_object_get (e, "skip", &skip, "pre-emphasis", &pre, NULL);
  g_assert_cmpuint (skip, ==, 0);
  g_assert_cmpfloat (pre, ==, 0.0);

  check_enum_default (e, "cell", "lstm");
  check_enum_default (e, "head-activation", "none");
  check_enum_default (e, "loss", "mse");
  check_enum_default (e, "optimizer", "adam");
  check_enum_default (e, "mode", "offline");
  check_enum_nicks (e, "cell",
      (const char *const[]) {"rnn-tanh", "rnn-relu", "lstm", "gru", NULL});
  check_enum_nicks (e, "head-activation",
      (const char *const[]) {"none", "softmax", "sigmoid", "tanh", NULL});
  check_enum_nicks (e, "loss",
      (const char *const[]) {"mse", "cross-entropy", "esr", NULL});
  check_enum_nicks (e, "optimizer", (const char *const[]) {"sgd", "adam", NULL});
  check_enum_nicks (e, "mode", (const char *const[]) {"offline", "online", NULL});

  /* set and read back, enums by nick as gst-launch does */
  gst_util_set_object_arg (G_OBJECT (e), "cell", "gru");
  gst_util_set_object_arg (G_OBJECT (e), "loss", "cross-entropy");
  gst_util_set_object_arg (G_OBJECT (e), "mode", "online");
  g_object_set (e, "hidden-size", 7, "learning-rate", 0.25, NULL);
  GstRnnTrainCell cell;
  GstRnnTrainLoss loss;
  GstRnnTrainMode mode;
  g_object_get (e, "cell", &cell, "loss", &loss, "mode", &mode,
      "hidden-size", &hidden, "learning-rate", &lr, NULL);
  g_assert_cmpint (cell, ==, GST_RNN_TRAIN_CELL_GRU);
  g_assert_cmpint (loss, ==, GST_RNN_TRAIN_LOSS_CROSS_ENTROPY);
  g_assert_cmpint (mode, ==, GST_RNN_TRAIN_MODE_ONLINE);
  g_assert_cmpuint (hidden, ==, 7);
  g_assert_cmpfloat (lr, ==, 0.25);
  gst_object_unref (e);
}

static void
test_pads (void)
{
  GstElement *e = gst_element_factory_make ("rnntrain", NULL);
  GstPadTemplate *tt = gst_element_get_pad_template (e, "target");
  GstPadTemplate *st = gst_element_get_pad_template (e, "sink");

  g_assert_nonnull (tt);
  g_assert_cmpint (GST_PAD_TEMPLATE_PRESENCE (tt), ==, GST_PAD_REQUEST);
  g_assert_cmpint (GST_PAD_TEMPLATE_PRESENCE (st), ==, GST_PAD_ALWAYS);
  GstPad *sink = gst_element_get_static_pad (e, "sink");
  g_assert_nonnull (sink);
  gst_object_unref (sink);

  GstPad *t = gst_element_request_pad_simple (e, "target");
  g_assert_nonnull (t);
  g_assert_cmpstr (GST_PAD_NAME (t), ==, "target");
  gst_element_release_request_pad (e, t);
  gst_object_unref (t);
  /* and again after release */
  t = gst_element_request_pad_simple (e, "target");
  g_assert_nonnull (t);
  gst_element_release_request_pad (e, t);
  gst_object_unref (t);
  gst_object_unref (e);
}

/* ---- caps --------------------------------------------------------------------- */

static void
expect_refusal (Rig *r, const char *needle)
{
  float x[64 * 4] = { 0 };
  gchar *text;

  /* the caps are checked when the aggregator handles them (or at the
   * first buffer); push one so the refusal surfaces */
  gst_harness_push (r->h, make_buffer (x, 64, r->channels, 0));
  if (r->ht) {
    float t[64 * 4] = { 0 };
    gst_harness_push (r->ht, make_buffer (t, 64, r->c_tgt, 0));
  }
  text = wait_error (r->bus);
  g_assert_nonnull (text);
  if (!strstr (text, needle))
    g_error ("error \"%s\" does not mention \"%s\"", text, needle);
  g_free (text);
}

static void
test_caps_rate_mismatch (void)
{
  gchar *out = tmp_path ("rate.safetensors");
  Rig *r = rig_new (TRUE, 1, 1, 8000, 16000, "model-location", out, NULL);
  expect_refusal (r, "different sample rates");
  rig_free (r);
  g_free (out);
}

static void
test_caps_cross_entropy_channels (void)
{
  gchar *out = tmp_path ("ce.safetensors");
  Rig *r = rig_new (TRUE, 1, 2, RATE, RATE, "model-location", out,
      "loss", GST_RNN_TRAIN_LOSS_CROSS_ENTROPY, NULL);
  expect_refusal (r, "one-channel");
  rig_free (r);
  g_free (out);
}

static void
test_caps_cross_entropy_no_target (void)
{
  gchar *out = tmp_path ("ce2.safetensors");
  Rig *r = rig_new (FALSE, 1, 1, RATE, RATE, "model-location", out,
      "loss", GST_RNN_TRAIN_LOSS_CROSS_ENTROPY, NULL);
  expect_refusal (r, "target pad");
  rig_free (r);
  g_free (out);
}

static void
test_caps_model_channels (void)
{
  gchar *init = identity_model ("id1.safetensors", 1, 1, 1, 1);
  gchar *out = tmp_path ("shape.safetensors");
  Rig *r = rig_new (TRUE, 2, 1, RATE, RATE, "model-location", out,
      "init-model", init, NULL);
  expect_refusal (r, "2 channels");
  rig_free (r);
  g_free (out);
  g_free (init);
}

static void
test_caps_output_rate (void)
{
  gchar *out = tmp_path ("fr.safetensors");
  Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out,
      "frame-size", 3, NULL);
  expect_refusal (r, "not a whole number");
  rig_free (r);
  g_free (out);
}

static void
test_no_location (void)
{
  Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, NULL);
  expect_refusal (r, "model-location");
  rig_free (r);
}

/* ---- alignment, framing, predict-ahead ------------------------------------------ */

/* Identity model, epochs=0: the reported loss is the mean squared
 * difference of the pairs the element formed, so it is exactly 0 iff the
 * sink and target frames were paired by running time. */
static void
test_align_running_time (void)
{
  const gsize N = 3000, lead = 37;
  float *x = signal_new (N, 1);
  gchar *init = identity_model ("id-align.safetensors", 1, 1, 1, 1);
  gchar *out = tmp_path ("align.safetensors");

  /* the target starts 37 frames later, in other buffer sizes */
  for (guint variant = 0; variant < 3; variant++) {
    Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out,
        "init-model", init, "epochs", 0, "validation-fraction", 0.0, NULL);
    const guint64 shift = variant == 2 ? 1 : 0;  /* deliberately off by one */
    GstStructure *done = rig_train (r, x, N, 0, variant ? 100 : 333,
        x + lead + shift, N - lead - shift, lead, variant ? 64 : 1000);
    g_assert_nonnull (done);
    const double loss = get_double (done, "loss");
    g_test_message ("variant %u: loss %g", variant, loss);
    if (variant < 2)
      g_assert_cmpfloat (loss, ==, 0.0);
    else
      g_assert_cmpfloat (loss, >, 0.01);
    RnnModel *m = load_model (out);
    g_assert_cmpuint (meta_u64 (m, "train_steps"), ==, N - lead - shift);
    rnn_model_unref (m);
    gst_structure_free (done);
    rig_free (r);
  }
  g_free (x);
  g_free (init);
  g_free (out);
}

/* The same through the segment: the target's buffers carry timestamps in a
 * segment starting at 5 s, so their running time starts at 0 again. */
static void
test_align_segment (void)
{
  const gsize N = 2000;
  float *x = signal_new (N, 2);
  gchar *init = identity_model ("id-seg.safetensors", 1, 1, 1, 1);
  gchar *out = tmp_path ("seg.safetensors");
  Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out,
      "init-model", init, "epochs", 0, "validation-fraction", 0.0, NULL);
  GstSegment seg;

  gst_segment_init (&seg, GST_FORMAT_TIME);
  seg.start = 5 * GST_SECOND;
  seg.time = 5 * GST_SECOND;
  seg.position = seg.start;
  g_assert_true (gst_harness_push_event (r->ht, gst_event_new_segment (&seg)));
  /* frame 5 s × rate in that segment is running-time frame 0 */
  GstStructure *done = rig_train (r, x, N, 0, 256, x, N, 5 * RATE, 100);
  g_assert_nonnull (done);
  g_assert_cmpfloat (get_double (done, "loss"), ==, 0.0);
  RnnModel *m = load_model (out);
  g_assert_cmpuint (meta_u64 (m, "train_steps"), ==, N);
  rnn_model_unref (m);
  gst_structure_free (done);
  rig_free (r);
  g_free (x);
  g_free (init);
  g_free (out);
}

/* Without a target: step t (frame size F, output frame size F) learns the
 * frames of step t + k. */
static void
test_predict_ahead (void)
{
  const gsize N = 2400;
  float *x = signal_new (N, 3);
  gchar *out = tmp_path ("ahead.safetensors");

  for (guint f = 1; f <= 2; f++) {
    gchar *file = g_strdup_printf ("id-ahead%u.safetensors", f);
    gchar *init = identity_model (file, f, f, f, f);
    const guint k = 3;
    Rig *r = rig_new (FALSE, 1, 1, RATE, RATE, "model-location", out,
        "init-model", init, "epochs", 0, "validation-fraction", 0.0,
        "predict-ahead", k, NULL);
    GstStructure *done = rig_train (r, x, N, 0, 500, NULL, 0, 0, 0);
    g_assert_nonnull (done);

    /* steps 0 .. N/f - k - 1; output j of step t is frame t·f + j against
     * frame (t + k)·f + j */
    const gsize steps = N / f - k;
    double sum = 0.0;
    for (gsize t = 0; t < steps; t++)
      for (guint j = 0; j < f; j++) {
        const double d = (double) (x[t * f + j] - x[(t + k) * f + j]);
        sum += d * d;
      }
    const double expect = sum / (steps * f);
    const double loss = get_double (done, "loss");
    g_test_message ("frame size %u: loss %.9g, expected %.9g", f, loss, expect);
    g_assert_cmpfloat (fabs (loss - expect), <=, 1e-6 * expect);
    RnnModel *m = load_model (out);
    g_assert_cmpuint (meta_u64 (m, "train_steps"), ==, steps);
    g_assert_cmpstr (rnn_model_get_meta (m, "train_target"), ==, "predict-ahead");
    rnn_model_unref (m);
    gst_structure_free (done);
    rig_free (r);
    g_free (init);
    g_free (file);
  }
  g_free (x);
  g_free (out);
}

/* frame-size 4, output-frame-size 2: the model sees 4 frames and is scored
 * on the last 2 target frames of the span. */
static void
test_framing_output_frames (void)
{
  const gsize N = 4000;
  float *x = signal_new (N, 4);
  gchar *init = identity_model ("id-frames.safetensors", 4, 4, 2, 2);
  gchar *out = tmp_path ("frames.safetensors");
  Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out,
      "init-model", init, "epochs", 0, "validation-fraction", 0.0, NULL);
  GstStructure *done = rig_train (r, x, N, 0, 300, x, N, 0, 170);

  g_assert_nonnull (done);
  g_assert_cmpfloat (get_double (done, "loss"), ==, 0.0);
  RnnModel *m = load_model (out);
  g_assert_cmpuint (meta_u64 (m, "train_steps"), ==, N / 4);
  g_assert_cmpuint (rnn_model_get_config (m)->frame_size, ==, 4);
  g_assert_cmpuint (rnn_model_get_config (m)->output_frame_size, ==, 2);
  rnn_model_unref (m);
  gst_structure_free (done);
  rig_free (r);
  g_free (x);
  g_free (init);
  g_free (out);
}

/* ---- the src pad -------------------------------------------------------------------- */

/* src carries the (initial) model's predictions for the paired steps, with
 * exact timestamps from the first paired frame. */
static void
test_src_predictions (void)
{
  const gsize N = 1500, lead = 100;
  float *x = signal_new (N, 5);
  RnnConfig cfg;
  GError *err = NULL;

  rnn_config_init (&cfg);
  cfg.hidden_size = 4;
  cfg.has_head = TRUE;
  cfg.output_size = 1;
  cfg.sample_rate = RATE;
  RnnModel *init = rnn_model_new (&cfg, &err);
  g_assert_no_error (err);
  rnn_train_init_params (init, 7);
  gchar *init_path = tmp_path ("src-init.safetensors");
  g_assert_true (rnn_model_save (init, init_path, &err));
  gchar *out = tmp_path ("src.safetensors");

  Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out,
      "init-model", init_path, "epochs", 0, NULL);
  /* sink from frame 100, target from frame 0: pairs start at 100 */
  GstStructure *done = rig_train (r, x + lead, N - lead, lead, 128, x, N, 0, 200);
  g_assert_nonnull (done);

  const gsize steps = N - lead;
  float *y = g_new (float, steps), *expect = g_new (float, steps);
  gsize got = 0;
  GstClockTime next = gst_util_uint64_scale_round (lead, GST_SECOND, RATE);
  GstBuffer *buf;
  while ((buf = gst_harness_try_pull (r->h))) {
    const gsize n = gst_buffer_get_size (buf) / sizeof (float);
    g_assert_cmpuint (GST_BUFFER_PTS (buf), ==, next);
    g_assert_cmpuint (got + n, <=, steps);
    gst_buffer_extract (buf, 0, y + got, n * sizeof (float));
    got += n;
    next = gst_util_uint64_scale_round (lead + got, GST_SECOND, RATE);
    g_assert_cmpuint (GST_BUFFER_PTS (buf) + GST_BUFFER_DURATION (buf), ==, next);
    gst_buffer_unref (buf);
  }
  g_assert_cmpuint (got, ==, steps);
  RnnState *st = rnn_state_new (init, 1);
  RnnForward *fw = rnn_forward_new ();
  rnn_forward (fw, init, st, x + lead, steps, 1, expect);
  g_assert_cmpfloat (max_abs_diff (y, expect, steps), <=, 1e-6);
  GstCaps *caps = gst_pad_get_current_caps (r->h->sinkpad);
  GstStructure *s = gst_caps_get_structure (caps, 0);
  gint rate, channels;
  g_assert_true (gst_structure_get_int (s, "rate", &rate));
  g_assert_true (gst_structure_get_int (s, "channels", &channels));
  g_assert_cmpint (rate, ==, RATE);
  g_assert_cmpint (channels, ==, 1);
  gst_caps_unref (caps);

  rnn_forward_free (fw);
  rnn_state_free (st);
  gst_structure_free (done);
  rig_free (r);
  rnn_model_unref (init);
  g_free (y);
  g_free (expect);
  g_free (x);
  g_free (init_path);
  g_free (out);
}

/* ---- determinism and spooling ------------------------------------------------------ */

static GBytes *
file_bytes (const char *path)
{
  gchar *data;
  gsize len;
  GError *err = NULL;
  g_assert_true (g_file_get_contents (path, &data, &len, &err));
  return g_bytes_new_take (data, len);
}

static GBytes *
train_small (guint seed, guint64 max_memory, gsize chunk, const char *file)
{
  const gsize N = 6000;
  float *x = signal_new (N, 6), *t = lowpass_new (x, N);
  gchar *out = tmp_path (file);
  Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out,
      "hidden-size", 6, "epochs", 3, "seq-length", 40, "batch-size", 8,
      "seed", seed, "max-memory", max_memory, "learning-rate", 0.01, NULL);
  GstStructure *done = rig_train (r, x, N, 0, chunk, t, N, 0, chunk + 13);
  g_assert_nonnull (done);
  GBytes *b = file_bytes (out);
  gst_structure_free (done);
  rig_free (r);
  g_free (x);
  g_free (t);
  g_free (out);
  return b;
}

static void
test_determinism (void)
{
  GBytes *a = train_small (3, 1 << 20, 256, "det-a.safetensors");
  GBytes *b = train_small (3, 1 << 20, 256, "det-b.safetensors");
  GBytes *c = train_small (3, 0, 997, "det-c.safetensors");     /* spooled */
  GBytes *d = train_small (3, 40000, 64, "det-d.safetensors");  /* half */
  GBytes *e = train_small (4, 1 << 20, 256, "det-e.safetensors");

  g_assert_true (g_bytes_equal (a, b));
  g_assert_true (g_bytes_equal (a, c));
  g_assert_true (g_bytes_equal (a, d));
  g_assert_false (g_bytes_equal (a, e));
  g_bytes_unref (a);
  g_bytes_unref (b);
  g_bytes_unref (c);
  g_bytes_unref (d);
  g_bytes_unref (e);
}

static void
test_recording (void)
{
  const gsize rec = 5, n = 1000;
  float *data = g_new (float, n * rec), *back = g_new (float, n * rec);
  GError *err = NULL;

  for (gsize i = 0; i < n * rec; i++)
    data[i] = (float) i * 0.5f;
  for (guint64 limit = 0; limit <= 3 * 4000; limit += 4000) {
    RnnRecording *r = rnn_recording_new (rec, limit);
    for (gsize i = 0; i < n; i += 37)
      g_assert_true (rnn_recording_append (r, data + i * rec, MIN (37, n - i), &err));
    g_assert_no_error (err);
    g_assert_cmpuint (rnn_recording_get_length (r), ==, n);
    g_assert_cmpuint (rnn_recording_get_n_in_memory (r), ==, MIN (n, limit / (rec * 4)));
    g_assert_cmpuint (rnn_recording_get_spooled_bytes (r), ==,
        (n - rnn_recording_get_n_in_memory (r)) * rec * 4);
    /* reads across the memory / file boundary */
    for (gsize first = 0; first < n; first += 91) {
      const gsize k = MIN (250, n - first);
      memset (back, 0, k * rec * sizeof (float));
      g_assert_true (rnn_recording_read (r, first, k, back, &err));
      g_assert_cmpmem (back, k * rec * sizeof (float), data + first * rec,
          k * rec * sizeof (float));
    }
    rnn_recording_free (r);
  }
  g_free (data);
  g_free (back);
}

/* ---- divergence and bad data ---------------------------------------------------------- */

static void
test_non_finite_loss (void)
{
  const gsize N = 1600;
  float *x = signal_new (N, 8), *t = lowpass_new (x, N);
  gchar *out = tmp_path ("diverge.safetensors");
  Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out,
      "cell", GST_RNN_TRAIN_CELL_RNN_TANH, "hidden-size", 4, "epochs", 2,
      "seq-length", 20, "batch-size", 4, "optimizer",
      GST_RNN_TRAIN_OPTIMIZER_SGD, "learning-rate", 1e4, "clip-norm", 0.0, NULL);
  GstStructure *done = rig_train (r, x, N, 0, 400, t, N, 0, 400);

  g_assert_nonnull (done);
  g_assert_cmpuint (count_warnings ("halved the learning rate"), >=, 1);
  RnnModel *m = load_model (out);
  g_assert_true (model_finite (m));
  g_assert_cmpuint (meta_u64 (m, "train_rollbacks"), >=, 1);
  const double lr = g_ascii_strtod (rnn_model_get_meta (m, "train_final_learning_rate"), NULL);
  g_test_message ("final learning rate %g after %s rollbacks", lr,
      rnn_model_get_meta (m, "train_rollbacks"));
  g_assert_cmpfloat (lr, <, 1e4);
  g_assert_true (isfinite (get_double (done, "loss")));
  rnn_model_unref (m);
  gst_structure_free (done);
  rig_free (r);
  g_free (x);
  g_free (t);
  g_free (out);
}

/* A diverging run (learning rate 1e3, no clipping) in every mode and with
 * both optimizers.  Invariant (docs/design.md §4): rnntrain never writes a model
 * with non-finite weights, and says so when it rolls back.  Every write is
 * checked as it happens: a bus sync handler runs on the streaming thread
 * right after the element wrote the file and posted rnntrain-progress
 * (each online checkpoint) or rnntrain-done (the final write), before it
 * can write again, and loads the file there. */
typedef struct
{
  const gchar *path;
  guint writes_seen;            /* loads attempted: the file existed */
  guint loads_ok;               /* loaded and all weights finite */
  guint progress, done;
  guint64 last_updates;         /* of the last checkpoint */
  gboolean updates_monotonic;   /* never goes back */
  guint n_failures;
  GString *failures;            /* the first few */
} WriteCheck;

static GstBusSyncReply
check_write (GstBus *bus, GstMessage *msg, gpointer data)
{
  WriteCheck *wc = data;
  const GstStructure *s;

  if (GST_MESSAGE_TYPE (msg) != GST_MESSAGE_ELEMENT)
    return GST_BUS_PASS;
  s = gst_message_get_structure (msg);
  if (gst_structure_has_name (s, "rnntrain-progress"))
    wc->progress++;
  else if (gst_structure_has_name (s, "rnntrain-done"))
    wc->done++;
  else
    return GST_BUS_PASS;
  if (!g_file_test (wc->path, G_FILE_TEST_EXISTS))
    return GST_BUS_PASS;      /* offline: epochs before the one write */

  GError *err = NULL;
  RnnModel *m = rnn_model_load (wc->path, &err);
  wc->writes_seen++;
  if (!m) {
    if (wc->n_failures++ < 3)
      g_string_append_printf (wc->failures, "write %u does not load: %s\n",
          wc->writes_seen, err->message);
    g_error_free (err);
    return GST_BUS_PASS;
  }
  if (!model_finite (m)) {
    if (wc->n_failures++ < 3)
      g_string_append_printf (wc->failures,
          "write %u has non-finite weights\n", wc->writes_seen);
  } else {
    wc->loads_ok++;
  }
  const char *u = rnn_model_get_meta (m, "train_updates");
  if (u && gst_structure_has_name (s, "rnntrain-progress")) {
    const guint64 v = g_ascii_strtoull (u, NULL, 10);
    if (wc->progress > 1 && v < wc->last_updates)
      wc->updates_monotonic = FALSE;
    wc->last_updates = v;
  }
  rnn_model_unref (m);
  return GST_BUS_PASS;
}

typedef struct
{
  GstRnnTrainMode mode;
  GstRnnTrainOptimizer optimizer;
} DivergeCase;

static void
test_diverge (gconstpointer p)
{
  const DivergeCase *dc = p;
  const gboolean online = dc->mode == GST_RNN_TRAIN_MODE_ONLINE;
  const gsize N = 4000;
  const guint T = 20, B = 2;
  float *x = signal_new (N, 21), *t = lowpass_new (x, N);
  gchar *name = g_strdup_printf ("diverge-%s-%s.safetensors",
      online ? "online" : "offline",
      dc->optimizer == GST_RNN_TRAIN_OPTIMIZER_ADAM ? "adam" : "sgd");
  gchar *out = tmp_path (name);
  WriteCheck wc = { out, 0, 0, 0, 0, 0, TRUE, 0, g_string_new (NULL) };

  /* a ReLU RNN: unbounded activations, so a step of 1e3 overflows */
  Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out,
      "mode", dc->mode, "optimizer", dc->optimizer,
      "cell", GST_RNN_TRAIN_CELL_RNN_RELU, "hidden-size", 6, "epochs", 3,
      "seq-length", T, "batch-size", B, "checkpoint-interval", 1,
      "learning-rate", 1e3, "clip-norm", 0.0, "seed", 5, NULL);
  gst_bus_set_sync_handler (r->bus, check_write, &wc, NULL);
  GstStructure *done = rig_train (r, x, N, 0, 200, t, N, 0, 200);
  gst_bus_set_sync_handler (r->bus, NULL, NULL, NULL);
  const guint n_diverged = count_warnings ("diverged");

  g_assert_nonnull (done);
  g_test_message ("%s: %u writes checked, %u loaded with finite weights, "
      "%u progress messages, %u diverged warnings", name, wc.writes_seen,
      wc.loads_ok, wc.progress, n_diverged);
  if (wc.failures->len)
    g_test_message ("%s", wc.failures->str);
  g_assert_cmpuint (wc.done, ==, 1);
  g_assert_cmpstr (wc.failures->str, ==, "");
  g_assert_cmpuint (wc.n_failures, ==, 0);
  g_assert_cmpuint (wc.loads_ok, ==, wc.writes_seen);
  g_assert_cmpuint (n_diverged, >=, 1);
  if (online) {
    /* a checkpoint after every update that did not roll back and at EOS,
     * each followed by rnntrain-progress (rnntrain-done reads the last one
     * again): a file behind every message, and some update got through */
    g_assert_cmpuint (wc.writes_seen, ==, wc.progress + wc.done);
    g_assert_cmpuint (wc.progress, >=, 2);
    g_assert_true (wc.updates_monotonic);
  } else {
    g_assert_cmpuint (wc.writes_seen, ==, 1);
  }

  /* and the file left behind */
  RnnModel *m = load_model (out);
  g_assert_true (model_finite (m));
  g_assert_cmpuint (meta_u64 (m, "train_rollbacks"), >=, 1);
  g_test_message ("%s rollbacks, final learning rate %s",
      rnn_model_get_meta (m, "train_rollbacks"),
      rnn_model_get_meta (m, "train_final_learning_rate"));
  g_assert_true (isfinite (get_double (done, "loss")));
  rnn_model_unref (m);

  gst_structure_free (done);
  rig_free (r);
  g_string_free (wc.failures, TRUE);
  g_free (x);
  g_free (t);
  g_free (out);
  g_free (name);
}

static const DivergeCase diverge_cases[] = {
  { GST_RNN_TRAIN_MODE_OFFLINE, GST_RNN_TRAIN_OPTIMIZER_SGD },
  { GST_RNN_TRAIN_MODE_OFFLINE, GST_RNN_TRAIN_OPTIMIZER_ADAM },
  { GST_RNN_TRAIN_MODE_ONLINE, GST_RNN_TRAIN_OPTIMIZER_SGD },
  { GST_RNN_TRAIN_MODE_ONLINE, GST_RNN_TRAIN_OPTIMIZER_ADAM },
};

static void
test_non_finite_input (void)
{
  const gsize N = 2000;
  float *x = signal_new (N, 9), *t = lowpass_new (x, N);
  gchar *out = tmp_path ("nan.safetensors");

  for (gsize i = 500; i < 520; i++)
    x[i] = NAN;
  t[900] = INFINITY;
  Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out,
      "hidden-size", 4, "epochs", 1, "seq-length", 20, NULL);
  GstStructure *done = rig_train (r, x, N, 0, 250, t, N, 0, 250);
  g_assert_nonnull (done);
  g_assert_cmpuint (count_warnings ("Non-finite"), >=, 1);
  RnnModel *m = load_model (out);
  g_assert_true (model_finite (m));
  g_assert_true (isfinite (get_double (done, "loss")));
  rnn_model_unref (m);
  gst_structure_free (done);
  rig_free (r);
  g_free (x);
  g_free (t);
  g_free (out);
}

static void
test_cross_entropy_bad_class (void)
{
  const gsize N = 500;
  float *x = signal_new (N, 10), *c = g_new0 (float, N);
  gchar *out = tmp_path ("badclass.safetensors");
  gchar *text = NULL;

  c[300] = 2.5f;
  Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out,
      "loss", GST_RNN_TRAIN_LOSS_CROSS_ENTROPY, "num-classes", 3, NULL);
  rig_push (r, x, N, 0, 100, c, N, 0, 100);
  g_assert_null (wait_done (r->bus, &text));
  g_assert_nonnull (strstr (text, "not a class index"));
  g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
  g_free (text);
  rig_free (r);
  g_free (x);
  g_free (c);
  g_free (out);
}

/* ---- round trips through rnnfilter ---------------------------------------------------- */

/* Plays @x (n frames) through rnnfilter with @model; returns the output. */
static float *
filter_run (const char *model, const float *x, gsize n, gsize *n_out,
    guint out_channels)
{
  GstElement *e = gst_element_factory_make ("rnnfilter", NULL);
  g_object_set (e, "model-location", model, NULL);
  GstHarness *h = gst_harness_new_with_element (e, "sink", "src");
  gchar *caps = caps_string (RATE, 1);
  float *y = g_new0 (float, (n + 1) * out_channels);
  gsize got = 0;
  GstBuffer *buf;

  gst_object_unref (e);
  gst_harness_set_src_caps_str (h, caps);
  for (gsize i = 0; i < n; i += 500)
    gst_harness_push (h, make_buffer (x + i, MIN (500, n - i), 1, i));
  gst_harness_push_event (h, gst_event_new_eos ());
  while ((buf = gst_harness_try_pull (h))) {
    const gsize k = gst_buffer_get_size (buf) / sizeof (float);
    g_assert_cmpuint (got + k, <=, n * out_channels);
    gst_buffer_extract (buf, 0, y + got, k * sizeof (float));
    got += k;
    gst_buffer_unref (buf);
  }
  *n_out = got / out_channels;
  gst_harness_teardown (h);
  g_free (caps);
  return y;
}

/* The validation loss rnntrain reports is the MSE of rnnfilter playing the
 * written model over the held-out tail (unidirectional: warmed up on the
 * seq-length steps before it). */
static void
round_trip (gboolean bidirectional)
{
  const gsize N = 6000, T = 50;
  const double vf = 0.25;
  float *x = signal_new (N, 11), *t = lowpass_new (x, N);
  gchar *out = tmp_path (bidirectional ? "rt-bi.safetensors" : "rt.safetensors");
  Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out,
      "cell", bidirectional ? GST_RNN_TRAIN_CELL_GRU : GST_RNN_TRAIN_CELL_LSTM,
      "bidirectional", bidirectional, "hidden-size", 8, "epochs", 3,
      "seq-length", (guint) T, "batch-size", 8, "validation-fraction", vf,
      "learning-rate", 0.01, NULL);
  GstStructure *done = rig_train (r, x, N, 0, 256, t, N, 0, 256);
  g_assert_nonnull (done);
  const double val = get_double (done, "val-loss");
  const gsize n_val = (gsize) floor (N * vf), n_tr = N - n_val;

  RnnModel *m = load_model (out);
  g_assert_cmpuint (meta_u64 (m, "train_validation_steps"), ==, n_val);
  g_assert_cmpuint (rnn_model_get_config (m)->sample_rate, ==, RATE);
  if (bidirectional)
    g_assert_cmpuint (rnn_model_get_config (m)->window, ==, T);
  g_assert_nonnull (rnn_model_get_input_mean (m));
  rnn_model_unref (m);

  const gsize start = bidirectional ? n_tr : n_tr - T;
  gsize n_out;
  float *y = filter_run (out, x + start, N - start, &n_out, 1);
  g_assert_cmpuint (n_out, ==, N - start);
  double sum = 0.0;
  for (gsize i = n_tr; i < N; i++) {
    const double d = (double) y[i - start] - t[i];
    sum += d * d;
  }
  const double mse = sum / n_val;
  g_test_message ("%s: rnntrain val-loss %.9g, rnnfilter MSE %.9g",
      bidirectional ? "bidirectional GRU" : "LSTM", val, mse);
  g_assert_cmpfloat (fabs (mse - val), <=, 1e-4 * val);

  g_free (y);
  gst_structure_free (done);
  rig_free (r);
  g_free (x);
  g_free (t);
  g_free (out);
}

static void
test_round_trip (void)
{
  round_trip (FALSE);
}

static void
test_round_trip_bidirectional (void)
{
  round_trip (TRUE);
}

/* Classification: the class is whether the input is positive.  Trained
 * with cross-entropy, played by rnnfilter (softmax, 2 channels). */
static void
test_cross_entropy_learns (void)
{
  const gsize N = 6000;
  float *x = signal_new (N, 12), *c = g_new (float, N);
  gchar *out = tmp_path ("ce-learn.safetensors");

  for (gsize i = 0; i < N; i++)
    c[i] = x[i] > 0 ? 1.0f : 0.0f;
  c[10] = -1.0f;                /* unlabelled */
  Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out,
      "cell", GST_RNN_TRAIN_CELL_GRU, "hidden-size", 4, "epochs", 3,
      "seq-length", 20, "batch-size", 8, "loss",
      GST_RNN_TRAIN_LOSS_CROSS_ENTROPY, "num-classes", 2, "head-activation",
      GST_RNN_TRAIN_HEAD_ACTIVATION_SOFTMAX, "learning-rate", 0.02, NULL);
  GstStructure *done = rig_train (r, x, N, 0, 300, c, N, 0, 300);
  g_assert_nonnull (done);

  float *held = signal_new (2000, 13);
  gsize n_out, right = 0;
  float *p = filter_run (out, held, 2000, &n_out, 2);
  g_assert_cmpuint (n_out, ==, 2000);
  for (gsize i = 0; i < n_out; i++)
    right += (p[2 * i + 1] > p[2 * i]) == (held[i] > 0);
  g_test_message ("accuracy %.4f, loss %g", right / (double) n_out,
      get_double (done, "loss"));
  g_assert_cmpfloat (right / (double) n_out, >=, 0.95);

  g_free (p);
  g_free (held);
  gst_structure_free (done);
  rig_free (r);
  g_free (x);
  g_free (c);
  g_free (out);
}

/* ---- the layers around the stack, skip, esr, pre-emphasis --------------- */

/* Fine-tuning a model with pre and post layers, a learned initial state and
 * a skip (the PyTorch-made fixture layers/lstm_all: pre elu(4), LSTM 2x6,
 * post softmax(5), linear head, skip 1, h0 and c0): the held-out loss
 * drops below the model's own (an epochs=0 run measures it), every
 * pre/post/head/recurrent tensor moves, h0 and c0 stay bit for bit, and
 * the file loads back as a version-2 model with its skip. */
static void
test_init_model_layers (void)
{
  const gsize N = 6000;
  float *x = signal_new (N, 61), *lp = lowpass_new (x, N), *t = g_new (float, N);
  gchar *init = g_test_build_filename (G_TEST_BUILT, "layers", "lstm_all.safetensors", NULL);
  gchar *out0 = tmp_path ("layers0.safetensors"), *out = tmp_path ("layers.safetensors");
  double val[2];

  for (gsize i = 0; i < N; i++)
    t[i] = x[i] + 0.5f * lp[i];
  for (guint run = 0; run < 2; run++) {
    Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", run ? out : out0,
        "init-model", init, "epochs", run ? 6 : 0, "seq-length", 50,
        "batch-size", 8, "learning-rate", 0.01, "validation-fraction", 0.25,
        "loss", GST_RNN_TRAIN_LOSS_ESR, NULL);
    GstStructure *done = rig_train (r, x, N, 0, 500, t, N, 0, 500);
    g_assert_nonnull (done);
    val[run] = get_double (done, "val-loss");
    gst_structure_free (done);
    rig_free (r);
  }
  g_test_message ("held-out ESR of the fixture model %.4g, after 6 epochs %.4g",
      val[0], val[1]);
  g_assert_cmpfloat (val[1], <, 0.5 * val[0]);

  RnnModel *a = load_model (init), *b = load_model (out);
  const RnnConfig *cb = rnn_model_get_config (b);
  g_assert_cmpuint (cb->skip, ==, 1);
  g_assert_cmpuint (cb->n_pre, ==, 1);
  g_assert_cmpuint (cb->n_post, ==, 1);
  g_assert_true (cb->has_h0 && cb->has_c0);
  g_assert_cmpstr (rnn_model_get_meta (b, "train_loss_function"), ==, "esr");
  const gsize LDH = (gsize) cb->num_layers * cb->hidden_size;
  g_assert_cmpmem (rnn_model_get_h0 (a), LDH * sizeof (float),
      rnn_model_get_h0 (b), LDH * sizeof (float));
  g_assert_cmpmem (rnn_model_get_c0 (a), LDH * sizeof (float),
      rnn_model_get_c0 (b), LDH * sizeof (float));
  const float *pa = rnn_model_peek_params (a, NULL), *pb = rnn_model_peek_params (b, NULL);
  for (guint i = 0; i < rnn_model_get_n_tensors (b); i++) {
    const RnnParamInfo *ti = rnn_model_get_tensor_info (b, i);
    if (g_str_equal (ti->name, "rnn.h0") || g_str_equal (ti->name, "rnn.c0"))
      continue;
    g_assert_true (memcmp (pa + ti->offset, pb + ti->offset,
            ti->numel * sizeof (float)) != 0);
  }
  /* the file says version 2 and skip 1 */
  gchar *bytes;
  g_assert_true (g_file_get_contents (out, &bytes, NULL, NULL));
  g_assert_nonnull (strstr (bytes + 8, "\"version\":\"2\""));
  g_assert_nonnull (strstr (bytes + 8, "\"skip\":\"1\""));
  g_free (bytes);
  rnn_model_unref (a);
  rnn_model_unref (b);
  g_free (x);
  g_free (lp);
  g_free (t);
  g_free (init);
  g_free (out0);
  g_free (out);
}

/* A fresh model with skip=1 loss=esr pre-emphasis=0.95 on an effect whose
 * output is its input plus a coloured part: the model is written with its
 * skip and the settings are recorded, and rnnfilter playing it over the
 * held-out tail (warmed up on the seq-length steps before it) gives an ESR
 * far below that of the dry signal. */
static void
test_skip_esr_pre_emphasis (void)
{
  const gsize N = 8000, T = 50;
  const double vf = 0.25;
  float *x = signal_new (N, 62), *lp = lowpass_new (x, N), *t = g_new (float, N);
  gchar *out = tmp_path ("skip-esr.safetensors");

  for (gsize i = 0; i < N; i++)
    t[i] = x[i] + 0.5f * lp[i];
  Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out,
      "hidden-size", 8, "epochs", 4, "seq-length", (guint) T, "batch-size", 8,
      "validation-fraction", vf, "learning-rate", 0.01, "skip", 1,
      "loss", GST_RNN_TRAIN_LOSS_ESR, "pre-emphasis", 0.95, NULL);
  GstStructure *done = rig_train (r, x, N, 0, 500, t, N, 0, 500);
  g_assert_nonnull (done);
  gst_structure_free (done);
  rig_free (r);

  RnnModel *m = load_model (out);
  g_assert_cmpuint (rnn_model_get_config (m)->skip, ==, 1);
  g_assert_cmpstr (rnn_model_get_meta (m, "train_loss_function"), ==, "esr");
  g_assert_cmpfloat (g_ascii_strtod (rnn_model_get_meta (m, "train_pre_emphasis"),
          NULL), ==, 0.95);
  rnn_model_unref (m);

  /* the held-out ESR, from rnnfilter's output */
  const gsize n_val = (gsize) floor (N * vf), n_tr = N - n_val, start = n_tr - T;
  gsize n_out;
  float *y = filter_run (out, x + start, N - start, &n_out, 1);
  g_assert_cmpuint (n_out, ==, N - start);
  double e2 = 0.0, y2 = 0.0, dry = 0.0;
  for (gsize i = n_tr; i < N; i++) {
    const double d = (double) y[i - start] - t[i];
    e2 += d * d;
    y2 += (double) t[i] * t[i];
    dry += ((double) x[i] - t[i]) * ((double) x[i] - t[i]);
  }
  g_test_message ("held-out ESR %.4g (the dry signal's: %.4g)", e2 / y2, dry / y2);
  g_assert_cmpfloat (e2 / y2, <, 0.5 * dry / y2);
  g_free (y);
  g_free (x);
  g_free (lp);
  g_free (t);
  g_free (out);
}

/* The skip is for frame sizes 1 and skip 1 or the output count; with
 * cross-entropy there is nothing to add it to.  Each refusal names it. */
static void
test_skip_refused (void)
{
  gchar *out = tmp_path ("skip-bad.safetensors");
  Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out,
      "skip", 1, "frame-size", 2, NULL);
  expect_refusal (r, "frame-size=1");
  rig_free (r);
  r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out, "skip", 2, NULL);
  expect_refusal (r, "does not fit 1 input");
  rig_free (r);
  r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out, "skip", 1,
      "loss", GST_RNN_TRAIN_LOSS_CROSS_ENTROPY, NULL);
  expect_refusal (r, "cross-entropy");
  rig_free (r);
  r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out,
      "pre-emphasis", 0.9, "loss", GST_RNN_TRAIN_LOSS_CROSS_ENTROPY, NULL);
  expect_refusal (r, "pre-emphasis");
  rig_free (r);
  g_free (out);
}

/* ---- online mode with a running rnnfilter -------------------------------- */

/* A model of the shape rnntrain will write, that outputs 0.25 always. */
static void
constant_model (const char *path)
{
  RnnConfig cfg;
  GError *err = NULL;

  rnn_config_init (&cfg);
  cfg.hidden_size = 8;
  cfg.has_head = TRUE;
  cfg.output_size = 1;
  cfg.has_input_norm = TRUE;
  cfg.sample_rate = RATE;
  RnnModel *m = rnn_model_new (&cfg, &err);
  const float b = 0.25f;
  set_tensor (m, "head.bias", &b);
  rnn_model_seal (m);
  g_assert_true (rnn_model_save (m, path, &err));
  g_assert_no_error (err);
  rnn_model_unref (m);
}

/* Pushes @n frames of @x through the filter harness, returns the output. */
static float *
filter_block (GstHarness *h, const float *x, gsize n, guint64 *pos)
{
  float *y = g_new (float, n);
  gsize got = 0;

  gst_harness_push (h, make_buffer (x, n, 1, *pos));
  *pos += n;
  while (got < n) {
    GstBuffer *buf = gst_harness_pull (h);
    g_assert_nonnull (buf);
    const gsize k = gst_buffer_get_size (buf) / sizeof (float);
    g_assert_cmpuint (got + k, <=, n);
    gst_buffer_extract (buf, 0, y + got, k * sizeof (float));
    got += k;
    gst_buffer_unref (buf);
  }
  return y;
}

static gboolean
all_equal (const float *y, gsize n, float v)
{
  for (gsize i = 0; i < n; i++)
    if (y[i] != v)
      return FALSE;
  return TRUE;
}

static void
test_online_reload (void)
{
  const gsize N = 12000, block = 400;
  float *x = signal_new (N, 14), *t = lowpass_new (x, N);
  float *probe = signal_new (block, 15);
  gchar *path = tmp_path ("online.safetensors");
  guint64 fpos = 0;
  guint changed_while_training = 0, progress = 0;

  constant_model (path);
  GstElement *fe = gst_element_factory_make ("rnnfilter", NULL);
  g_object_set (fe, "model-location", path, "reload-on-change", TRUE, NULL);
  GstHarness *f = gst_harness_new_with_element (fe, "sink", "src");
  gchar *caps = caps_string (RATE, 1);
  gst_object_unref (fe);
  gst_harness_set_src_caps_str (f, caps);
  float *y = filter_block (f, probe, block, &fpos);
  g_assert_true (all_equal (y, block, 0.25f));
  g_free (y);

  /* the trainer: 2 windows of 50 steps per update, a checkpoint every 5
   * updates = every 500 steps */
  Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", path,
      "mode", GST_RNN_TRAIN_MODE_ONLINE, "hidden-size", 8, "seq-length", 50,
      "batch-size", 2, "checkpoint-interval", 5, "learning-rate", 0.01, NULL);
  for (gsize i = 0; i < N; i += block) {
    /* one buffer per pad: with equal buffers every aggregate takes both */
    gst_harness_push (r->ht, make_buffer (t + i, block, 1, i));
    gst_harness_push (r->h, make_buffer (x + i, block, 1, i));
    /* the running filter: does it play something else than 0.25 yet? */
    y = filter_block (f, probe, block, &fpos);
    if (!all_equal (y, block, 0.25f))
      changed_while_training++;
    g_free (y);
    g_usleep (5000);
  }
  gst_harness_push_event (r->h, gst_event_new_eos ());
  gst_harness_push_event (r->ht, gst_event_new_eos ());

  /* checkpoints were posted as training went */
  GstMessage *m;
  GstStructure *done = NULL;
  while (!done && (m = gst_bus_timed_pop_filtered (r->bus, 30 * GST_SECOND,
              GST_MESSAGE_ELEMENT))) {
    const GstStructure *s = gst_message_get_structure (m);
    if (gst_structure_has_name (s, "rnntrain-progress"))
      progress++;
    if (gst_structure_has_name (s, "rnntrain-done"))
      done = gst_structure_copy (s);
    gst_message_unref (m);
  }
  g_assert_nonnull (done);
  g_test_message ("%u checkpoints; the filter played a new model in %u of %"
      G_GSIZE_FORMAT " blocks during training", progress, changed_while_training,
      N / block);
  g_assert_cmpuint (progress, >=, 20);
  g_assert_cmpuint (changed_while_training, >=, 1);

  /* after the last write the filter plays exactly the final model */
  RnnModel *final = load_model (path);
  g_assert_cmpuint (meta_u64 (final, "train_updates"), ==, N / 100);
  float *expect = g_new (float, block);
  RnnState *st = rnn_state_new (final, 1);
  RnnForward *fw = rnn_forward_new ();
  rnn_forward (fw, final, st, probe, block, 1, expect);
  gboolean match = FALSE;
  for (guint tries = 0; tries < 100 && !match; tries++) {
    g_signal_emit_by_name (f->element, "reset");
    y = filter_block (f, probe, block, &fpos);
    match = max_abs_diff (y, expect, block) <= 1e-5;
    g_free (y);
    if (!match)
      g_usleep (50000);
  }
  g_assert_true (match);

  rnn_forward_free (fw);
  rnn_state_free (st);
  rnn_model_unref (final);
  g_free (expect);
  gst_structure_free (done);
  rig_free (r);
  gst_harness_teardown (f);
  g_free (caps);
  g_free (probe);
  g_free (x);
  g_free (t);
  g_free (path);
}

/* The target pad released mid-stream, while the aggregate thread works
 * (it zeroed the lane's channel count under that thread once: a data race
 * under TSan, and a NULL pad popped afterwards): the pairs made so far
 * still train, and the sink's EOS ends the run with a model written. */
static void
test_release_target (void)
{
  const gsize N = 4000, block = 200;
  float *x = signal_new (N, 16), *t = lowpass_new (x, N);
  gchar *out = tmp_path ("released.safetensors");
  Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out,
      "hidden-size", 4, "epochs", 1, "seq-length", 20, NULL);

  for (gsize i = 0; i < N / 2; i += block) {
    gst_harness_push (r->ht, make_buffer (t + i, block, 1, i));
    gst_harness_push (r->h, make_buffer (x + i, block, 1, i));
  }
  gst_harness_teardown (r->ht);         /* releases the target pad */
  r->ht = NULL;
  g_assert_null (gst_element_get_static_pad (r->e, "target"));
  for (gsize i = N / 2; i < N; i += block)
    gst_harness_push (r->h, make_buffer (x + i, block, 1, i));
  gst_harness_push_event (r->h, gst_event_new_eos ());

  GstStructure *done = wait_done (r->bus, NULL);
  g_assert_nonnull (done);
  RnnModel *m = load_model (out);
  g_assert_true (model_finite (m));
  /* it trained on pairs: at most the frames both pads brought */
  g_assert_cmpuint (meta_u64 (m, "train_steps"), >, 0);
  g_assert_cmpuint (meta_u64 (m, "train_steps"), <=, N / 2);
  rnn_model_unref (m);
  gst_structure_free (done);
  rig_free (r);
  g_free (x);
  g_free (t);
  g_free (out);
}

/* ---- whole pipelines ------------------------------------------------------------------- */

/* gst-launch syntax to a PLAYING pipeline; @bus: its bus. */
static GstElement *
launch (const gchar *desc, GstBus **bus)
{
  GError *err = NULL;
  GstElement *p = gst_parse_launch (desc, &err);

  g_assert_no_error (err);
  *bus = gst_element_get_bus (p);
  gst_element_set_state (p, GST_STATE_PLAYING);
  return p;
}

/* Both pads fed by one tee, the sink branch's queue small and the target
 * branch free to run ahead: rnntrain must keep taking data from the lane
 * that is behind.  (Draining the faster pad instead leaves the aggregator
 * waiting for that pad while the tee is blocked on the other branch's
 * full queue: a deadlock, as models/recipes/effect-lstm.py's pipeline
 * would show.)
 * Runs to EOS within the timeout, with every frame paired. */
static void
test_pipeline_tee_unequal_branches (void)
{
  gchar *out = tmp_path ("unequal.safetensors");
  gchar *desc = g_strdup_printf ("audiotestsrc wave=white-noise num-buffers=3000 "
      "samplesperbuffer=64 ! audio/x-raw,format=F32LE,rate=8000,channels=1 ! "
      "tee name=s s. ! queue max-size-buffers=2 max-size-bytes=0 max-size-time=0 ! "
      "rnntrain name=t model-location=%s epochs=0 hidden-size=2 seq-length=16 "
      "! fakesink s. ! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 ! "
      "audioamplify amplification=0.5 ! t.target", out);
  GstBus *bus;
  GstElement *p = launch (desc, &bus);
  GstMessage *m = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
      GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  g_assert_nonnull (m);         /* NULL: stalled for a minute */
  g_assert_cmpint (GST_MESSAGE_TYPE (m), ==, GST_MESSAGE_EOS);
  gst_message_unref (m);
  gst_element_set_state (p, GST_STATE_NULL);
  g_assert_true (g_file_test (out, G_FILE_TEST_EXISTS));
  gst_object_unref (bus);
  gst_object_unref (p);
  g_free (desc);
  g_free (out);
}

static void
test_pipeline_tee_target (void)
{
  gchar *out = tmp_path ("pipe.safetensors");
  gchar *desc = g_strdup_printf ("audiotestsrc wave=white-noise num-buffers=20 "
      "samplesperbuffer=400 ! audio/x-raw,format=F32LE,rate=8000,channels=1 ! "
      "tee name=s s. ! queue ! rnntrain name=t model-location=%s epochs=2 "
      "hidden-size=4 seq-length=32 ! fakesink s. ! queue ! audioamplify "
      "amplification=0.5 ! t.target", out);
  GstBus *bus;
  GstElement *p = launch (desc, &bus);
  guint n_progress = 0, n_epoch = 0, start = 0, complete = 0;
  gboolean done = FALSE, eos = FALSE;

  while (!eos) {
    GstMessage *m = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
        GST_MESSAGE_EOS | GST_MESSAGE_ERROR | GST_MESSAGE_ELEMENT |
        GST_MESSAGE_PROGRESS);
    g_assert_nonnull (m);
    switch (GST_MESSAGE_TYPE (m)) {
      case GST_MESSAGE_ERROR:
        g_error ("pipeline error");
        break;
      case GST_MESSAGE_EOS:
        eos = TRUE;
        break;
      case GST_MESSAGE_PROGRESS:{
        GstProgressType type;
        gchar *text = NULL;
        gst_message_parse_progress (m, &type, NULL, &text);
        n_progress++;
        if (type == GST_PROGRESS_TYPE_CONTINUE) {
          /* human units, never nanoseconds */
          g_assert_nonnull (strstr (text, " elapsed, about "));
          g_assert_nonnull (strstr (text, "(ESR "));
        }
        g_free (text);
        start += type == GST_PROGRESS_TYPE_START;
        complete += type == GST_PROGRESS_TYPE_COMPLETE;
        break;
      }
      case GST_MESSAGE_ELEMENT:{
        const GstStructure *s = gst_message_get_structure (m);
        if (gst_structure_has_name (s, "rnntrain-progress")) {
          guint epoch, epochs;
          guint64 eta;
          g_assert_true (gst_structure_get (s, "epoch", G_TYPE_UINT, &epoch,
                  "epochs", G_TYPE_UINT, &epochs, "eta", G_TYPE_UINT64, &eta, NULL));
          g_assert_true (isfinite (get_double (s, "loss")));
          g_assert_true (isfinite (get_double (s, "val-loss")));
          g_assert_true (isfinite (get_double (s, "val-esr")));
          g_assert_cmpfloat (get_double (s, "val-esr"), >, 0);
          guint64 elapsed = GST_CLOCK_TIME_NONE;
          g_assert_true (gst_structure_get_uint64 (s, "elapsed", &elapsed));
          g_assert_cmpuint (elapsed, >, 0);
          g_assert_cmpuint (elapsed, <, 600 * GST_SECOND);
          g_assert_cmpfloat (get_double (s, "steps-per-second"), >, 0);
          g_assert_cmpuint (epoch, ==, ++n_epoch);
          g_assert_cmpuint (epochs, ==, 2);
        } else if (gst_structure_has_name (s, "rnntrain-done")) {
          guint64 duration;
          g_assert_cmpstr (gst_structure_get_string (s, "model-location"), ==, out);
          g_assert_true (gst_structure_get_uint64 (s, "duration", &duration));
          g_assert_true (isfinite (get_double (s, "loss")));
          done = TRUE;
        }
        break;
      }
      default:
        break;
    }
    gst_message_unref (m);
  }
  g_assert_true (done);
  g_assert_cmpuint (n_epoch, ==, 2);
  g_assert_cmpuint (start, ==, 1);
  g_assert_cmpuint (complete, ==, 1);
  g_assert_cmpuint (n_progress, ==, 4);
  gst_element_set_state (p, GST_STATE_NULL);
  RnnModel *m = load_model (out);
  g_assert_cmpstr (rnn_model_get_meta (m, "train_target"), ==, "pad");
  rnn_model_unref (m);
  gst_object_unref (bus);
  gst_object_unref (p);
  g_free (desc);
  g_free (out);
}

/* The first warning with @needle on @bus within @secs, or NULL. */
static gchar *
pop_warning (GstBus *bus, const char *needle, guint secs)
{
  const gint64 deadline = g_get_monotonic_time () + secs * G_USEC_PER_SEC;

  while (g_get_monotonic_time () < deadline) {
    GstMessage *m = gst_bus_timed_pop_filtered (bus, 100 * GST_MSECOND,
        GST_MESSAGE_WARNING);
    if (!m)
      continue;
    GError *err = NULL;
    gst_message_parse_warning (m, &err, NULL);
    gst_message_unref (m);
    g_test_message ("warning: %s", err->message);
    if (strstr (err->message, needle)) {
      gchar *text = g_strdup (err->message);
      g_error_free (err);
      return text;
    }
    g_error_free (err);
  }
  return NULL;
}

/* A long training stops promptly when the pipeline is shut down, and the
 * epochs it finished are not lost: the best model so far is written and a
 * warning says so. */
static void
test_cancel (void)
{
  gchar *out = tmp_path ("cancel.safetensors");
  gchar *desc = g_strdup_printf ("audiotestsrc wave=white-noise num-buffers=10 "
      "samplesperbuffer=800 ! audio/x-raw,format=F32LE,rate=8000,channels=1 ! "
      "rnntrain model-location=%s epochs=100000 hidden-size=4 ! fakesink", out);
  GstBus *bus;
  GstElement *p = launch (desc, &bus);
  GstMessage *m;
  gboolean epoch = FALSE;

  /* the first epoch's message */
  while (!epoch && (m = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
              GST_MESSAGE_ELEMENT))) {
    epoch = gst_structure_has_name (gst_message_get_structure (m),
        "rnntrain-progress");
    gst_message_unref (m);
  }
  g_assert_true (epoch);
  const gint64 t0 = g_get_monotonic_time ();
  /* READY: the pipeline's bus drops its messages in NULL */
  gst_element_set_state (p, GST_STATE_READY);
  g_assert_cmpint (g_get_monotonic_time () - t0, <, 10 * G_USEC_PER_SEC);
  gchar *w = pop_warning (bus, "best model so far", 1);
  gst_element_set_state (p, GST_STATE_NULL);
  g_assert_nonnull (w);
  g_assert_nonnull (strstr (w, out));
  RnnModel *model = load_model (out);
  g_assert_cmpuint (meta_u64 (model, "train_epochs"), >=, 1);
  rnn_model_unref (model);
  g_free (w);
  gst_object_unref (bus);
  gst_object_unref (p);
  g_free (desc);
  g_free (out);
}

/* Stopped before EOS: online, the updates since the last checkpoint are
 * written (with a warning); offline, the warning says how much recording
 * was thrown away and that EOS (gst-launch-1.0 -e) trains on it. */
static void
test_stop_before_eos (void)
{
  const gsize N = 8000;
  float *x = signal_new (N, 31);
  gchar *out = tmp_path ("stop-online.safetensors");
  Rig *r = rig_new (FALSE, 1, 1, RATE, RATE, "model-location", out,
      "mode", GST_RNN_TRAIN_MODE_ONLINE, "hidden-size", 4, "seq-length", 50,
      "batch-size", 2, "checkpoint-interval", 1000, NULL);

  for (gsize i = 0; i < N; i += 400)
    gst_harness_push (r->h, make_buffer (x + i, 400, 1, i));
  g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
  gst_element_set_state (r->e, GST_STATE_NULL);
  gchar *w = pop_warning (r->bus, "wrote the last weights", 1);
  g_assert_nonnull (w);
  g_free (w);
  RnnModel *m = load_model (out);
  /* at most 7999 steps (buffers still queued are dropped): 79 updates */
  g_assert_cmpuint (meta_u64 (m, "train_updates"), >=, 1);
  g_assert_cmpuint (meta_u64 (m, "train_updates"), <=, 79);
  rnn_model_unref (m);
  rig_free (r);
  g_free (out);

  out = tmp_path ("stop-offline.safetensors");
  r = rig_new (FALSE, 1, 1, RATE, RATE, "model-location", out, "hidden-size",
      4, NULL);
  for (gsize i = 0; i < N; i += 400)
    gst_harness_push (r->h, make_buffer (x + i, 400, 1, i));
  gst_element_set_state (r->e, GST_STATE_NULL);
  w = pop_warning (r->bus, "discarded", 1);
  g_assert_nonnull (w);
  g_assert_true (strstr (w, " s (") != NULL);
  g_assert_nonnull (strstr (w, "gst-launch-1.0 -e"));
  g_free (w);
  g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
  rig_free (r);
  g_free (out);
  g_free (x);
}

/* A model-location that cannot be written is an error when the stream
 * starts, naming the path, before anything is recorded. */
static void
test_location_unwritable (void)
{
  gchar *out = tmp_path ("no-such-dir/m.safetensors");
  Rig *r = rig_new (FALSE, 1, 1, RATE, RATE, "model-location", out, NULL);
  float x[400] = { 0 };

  gst_harness_push (r->h, make_buffer (x, 400, 1, 0));
  gchar *e = wait_error (r->bus);
  g_assert_nonnull (e);
  g_assert_nonnull (strstr (e, out));
  g_free (e);
  rig_free (r);
  g_free (out);
}

/* Settings whose training memory is beyond the limit are an error when
 * the stream starts, with the arithmetic, not an abort. */
static void
test_memory_bound (void)
{
  for (int online = 0; online < 2; online++) {
    gchar *out = tmp_path ("memory.safetensors");
    Rig *r = rig_new (FALSE, 1, 1, RATE, RATE, "model-location", out,
        "mode", online ? GST_RNN_TRAIN_MODE_ONLINE : GST_RNN_TRAIN_MODE_OFFLINE,
        "seq-length", 65536, "batch-size", 65536, NULL);
    float x[400] = { 0 };

    gst_harness_push (r->h, make_buffer (x, 400, 1, 0));
    gchar *e = wait_error (r->bus);
    g_assert_nonnull (e);
    g_assert_nonnull (strstr (e, "seq-length 65536 x batch-size 65536"));
    g_assert_nonnull (strstr (e, "bytes"));
    g_free (e);
    rig_free (r);
    g_free (out);
  }
}

/* A target shorter or longer than the input is trained on where both are
 * present, and a warning gives both lengths. */
static void
test_target_length_mismatch (void)
{
  const gsize N = 8000, M = 6000;
  float *x = signal_new (N, 41), *y = lowpass_new (x, N);
  /* the element stops taking data once one pad has ended: the other
   * pad's length is what it took by then */
  const char *needles[] = {
    "The target (6000 frames, 0.750 s) is shorter than the input (",
    "is longer than the input (6000 frames, 0.750 s): trained on the 6000 "
        "frames (0.750 s) where both are present",
  };

  for (guint longer = 0; longer < 2; longer++) {
    gchar *out = tmp_path ("mismatch.safetensors");
    Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out,
        "epochs", 1, "hidden-size", 4, NULL);
    GstStructure *done = rig_train (r, x, longer ? M : N, 0, 400, y,
        longer ? N : M, 0, 400);
    g_assert_nonnull (done);
    g_assert_cmpuint (count_warnings (needles[longer]), ==, 1);
    gst_structure_free (done);
    rig_free (r);
    g_free (out);
  }
  g_free (x);
  g_free (y);
}

/* Without a target pad, the message at the start names the mode. */
static void
test_no_target_mode_message (void)
{
  const gsize N = 4000;
  float *x = signal_new (N, 43);
  gchar *out = tmp_path ("mode.safetensors");
  Rig *r = rig_new (FALSE, 1, 1, RATE, RATE, "model-location", out,
      "epochs", 1, "hidden-size", 4, "predict-ahead", 3, NULL);

  gst_harness_push (r->h, make_buffer (x, N, 1, 0));
  GstMessage *m = gst_bus_timed_pop_filtered (r->bus, 10 * GST_SECOND,
      GST_MESSAGE_INFO);
  g_assert_nonnull (m);
  GError *err = NULL;
  gst_message_parse_info (m, &err, NULL);
  g_test_message ("info: %s", err->message);
  g_assert_nonnull (strstr (err->message, "next-step prediction"));
  g_assert_nonnull (strstr (err->message, "3 steps ahead (predict-ahead)"));
  g_error_free (err);
  gst_message_unref (m);
  rig_free (r);
  g_free (out);
  g_free (x);
}

/* A requested target pad that gets nothing: at the input's EOS a warning
 * names it (the aggregator waits for it). */
static void
test_unfed_target (void)
{
  const gsize N = 4000;
  float *x = signal_new (N, 44);
  gchar *out = tmp_path ("unfed.safetensors");
  Rig *r = rig_new (TRUE, 1, 1, RATE, RATE, "model-location", out, NULL);

  gst_harness_push (r->h, make_buffer (x, N, 1, 0));
  gst_harness_push_event (r->h, gst_event_new_eos ());
  gchar *w = pop_warning (r->bus, "has received no data", 10);
  g_assert_nonnull (w);
  g_assert_nonnull (strstr (w, "target"));
  g_free (w);
  rig_free (r);
  g_free (out);
  g_free (x);
}

/* Sink at 16 kHz, target at 48 kHz through audioresample: the target pad
 * asks for the sink's rate, so audioresample converts and training runs. */
static void
test_target_resample (void)
{
  gchar *out = tmp_path ("resample.safetensors");
  gchar *desc = g_strdup_printf ("audiotestsrc num-buffers=20 "
      "samplesperbuffer=1600 ! audio/x-raw,format=F32LE,rate=16000,channels=1 "
      "! rnntrain name=t model-location=%s epochs=1 hidden-size=4 ! fakesink "
      "audiotestsrc wave=saw num-buffers=20 samplesperbuffer=4800 ! "
      "audio/x-raw,format=F32LE,rate=48000,channels=1 ! audioresample ! "
      "t.target", out);
  GstBus *bus;
  GstElement *p = launch (desc, &bus);
  GstMessage *m = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
      GST_MESSAGE_EOS | GST_MESSAGE_ERROR);

  g_assert_nonnull (m);
  if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR) {
    GError *err = NULL;
    gst_message_parse_error (m, &err, NULL);
    g_error ("pipeline error: %s", err->message);
  }
  gst_message_unref (m);
  gst_element_set_state (p, GST_STATE_NULL);
  RnnModel *model = load_model (out);
  g_assert_cmpuint (rnn_model_get_config (model)->sample_rate, ==, 16000);
  g_assert_cmpstr (rnn_model_get_meta (model, "train_target"), ==, "pad");
  rnn_model_unref (model);
  gst_object_unref (bus);
  gst_object_unref (p);
  g_free (desc);
  g_free (out);
}

/* One finite 1e20 among 100k samples: the warning names its value and
 * time, and the model's statistics stay those of the signal. */
static void
test_normalize_outlier (void)
{
  const gsize N = 100000;
  float *x = signal_new (N, 51);
  gchar *out = tmp_path ("outlier.safetensors");
  Rig *r = rig_new (FALSE, 1, 1, RATE, RATE, "model-location", out,
      "epochs", 0, "hidden-size", 4, "validation-fraction", 0.0, NULL);

  x[50000] = 1e20f;             /* 6.25 s at 8 kHz */
  GstStructure *done = rig_train (r, x, N, 0, 4000, NULL, 0, 0, 0);
  g_assert_nonnull (done);
  g_assert_cmpuint (count_warnings ("(the farthest: 1e+20 at 6.250 s"), ==, 1);
  RnnModel *m = load_model (out);
  g_test_message ("input.std %g", rnn_model_get_input_std (m)[0]);
  g_assert_cmpfloat (rnn_model_get_input_std (m)[0], <, 1.0);
  g_assert_cmpfloat (fabs (rnn_model_get_input_mean (m)[0]), <, 0.1);
  rnn_model_unref (m);
  gst_structure_free (done);
  rig_free (r);
  g_free (out);
  g_free (x);
}

/* A symbolic model-location: the model goes to the link's target, the
 * link stays. */
static void
test_symlink_location (void)
{
  const gsize N = 4000;
  float *x = signal_new (N, 61);
  gchar *target = tmp_path ("link-target.safetensors");
  gchar *link = tmp_path ("link.safetensors");
  Rig *r = rig_new (FALSE, 1, 1, RATE, RATE, "model-location", link,
      "epochs", 0, "hidden-size", 4, NULL);

  g_assert_true (g_file_set_contents (target, "old", -1, NULL));
  g_assert_cmpint (symlink (target, link), ==, 0);
  GstStructure *done = rig_train (r, x, N, 0, 400, NULL, 0, 0, 0);
  g_assert_nonnull (done);
  g_assert_true (g_file_test (link, G_FILE_TEST_IS_SYMLINK));
  RnnModel *m = load_model (target);
  rnn_model_unref (m);
  gst_structure_free (done);
  rig_free (r);
  g_unlink (link);
  g_unlink (target);
  g_free (link);
  g_free (target);
  g_free (x);
}

/* ---- gst-launch-1.0 ---------------------------------------------------------- */

/* gst-launch-1.0 with the plugin of this build tree, or NULL (the test is
 * skipped) when the tool or the plugin is missing. */
static gchar **
launch_argv (const char *const *args)
{
  gchar *tool = g_find_program_in_path ("gst-launch-1.0");
  gchar *timeout = g_find_program_in_path ("timeout");
  const char *bdir = g_getenv ("G_TEST_BUILDDIR");
  gchar *plugins = bdir ? g_build_filename (bdir, "..", "plugins", NULL) : NULL;

  if (TEST_UNDER_SANITIZER) {
    /* the instrumented plugin needs the sanitizer's runtime preloaded into
     * gst-launch-1.0, which this program does not do */
    g_test_skip ("gst-launch-1.0 cannot load a plugin built with a "
        "sanitizer without its runtime preloaded");
    g_free (tool);
    g_free (timeout);
    g_free (plugins);
    return NULL;
  }
  if (!tool || !timeout || !plugins
      || !g_file_test (plugins, G_FILE_TEST_IS_DIR)) {
    g_test_skip ("gst-launch-1.0, timeout(1) or the built plugin is missing");
    g_free (tool);
    g_free (timeout);
    g_free (plugins);
    return NULL;
  }
  g_setenv ("GST_PLUGIN_PATH", plugins, TRUE);
  gchar *reg = g_build_filename (bdir, "registry-rnntrain.bin", NULL);
  g_setenv ("GST_REGISTRY", reg, TRUE);
  g_free (reg);
  g_free (plugins);

  GPtrArray *a = g_ptr_array_new ();
  /* a stalled pipeline must fail the test, not hang it; --foreground so
   * that a SIGINT sent to timeout(1) reaches gst-launch-1.0 once (without
   * it, timeout forwards it to the child and to its process group, and
   * gst-launch-1.0 dies of the second one) */
  g_ptr_array_add (a, timeout);
  g_ptr_array_add (a, g_strdup ("--foreground"));
  g_ptr_array_add (a, g_strdup ("-s"));
  g_ptr_array_add (a, g_strdup ("KILL"));
  g_ptr_array_add (a, g_strdup ("60"));
  g_ptr_array_add (a, tool);
  for (guint i = 0; args[i]; i++)
    g_ptr_array_add (a, g_strdup (args[i]));
  g_ptr_array_add (a, NULL);
  return (gchar **) g_ptr_array_free (a, FALSE);
}

typedef struct
{
  GSubprocess *proc;
  guint delay_ms;
} Interrupt;

static gpointer
interrupt_thread (gpointer p)
{
  Interrupt *i = p;
  g_usleep (i->delay_ms * 1000);
  g_subprocess_send_signal (i->proc, SIGINT);
  return NULL;
}

/* Runs gst-launch-1.0 with @args; if @sigint_ms is not 0, sends SIGINT
 * @sigint_ms after gst-launch-1.0 says it sets the pipeline to PLAYING
 * (its SIGINT handler is in place by then; a fixed delay from the start
 * could arrive before it on a loaded machine and kill the process).
 * Returns its output (stdout and stderr) and its exit status in @status. */
static gchar *
run_launch (const char *const *args, guint sigint_ms, gint *status)
{
  gchar **argv = launch_argv (args);
  GError *err = NULL;
  gchar *out = NULL;

  if (!argv)
    return NULL;
  GSubprocess *proc = g_subprocess_newv ((const gchar * const *) argv,
      G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_MERGE, &err);
  g_assert_no_error (err);
  Interrupt in = { proc, sigint_ms };
  GThread *th = NULL;
  if (sigint_ms) {
    GDataInputStream *lines =
        g_data_input_stream_new (g_subprocess_get_stdout_pipe (proc));
    GString *text = g_string_new (NULL);
    gchar *line;
    while ((line = g_data_input_stream_read_line_utf8 (lines, NULL, NULL,
                &err))) {
      g_string_append_printf (text, "%s\n", line);
      if (!th && strstr (line, "Setting pipeline to PLAYING"))
        th = g_thread_new ("sigint", interrupt_thread, &in);
      g_free (line);
    }
    g_assert_no_error (err);
    g_object_unref (lines);
    g_assert_true (g_subprocess_wait (proc, NULL, &err));
    g_assert_no_error (err);
    out = g_string_free (text, FALSE);
  } else {
    g_assert_true (g_subprocess_communicate_utf8 (proc, NULL, NULL, &out,
            NULL, &err));
    g_assert_no_error (err);
  }
  if (th)
    g_thread_join (th);
  *status = g_subprocess_get_if_exited (proc) ?
      g_subprocess_get_exit_status (proc) : -1;
  g_test_message ("gst-launch-1.0 status %d, output:\n%s", *status, out);
  g_object_unref (proc);
  g_strfreev (argv);
  return out;
}

static guint
count_lines_with (const char *text, const char *needle)
{
  guint n = 0;
  for (const char *p = text; (p = strstr (p, needle)); p += strlen (needle))
    n++;
  return n;
}

/* Online training in gst-launch-1.0 with a sink that prerolls (the default
 * fakesink): the kill-train pipeline, on a bounded source.  gst-launch-1.0
 * sets PLAYING only once every progress it was told of has completed; the
 * first update fits in the first buffer, so a progress left open until EOS
 * would stall the sink in preroll and rnntrain in its push for good.  It
 * must run to EOS and write the model once per update. */
static void
test_launch_online_async_sink (void)
{
  gchar *out = tmp_path ("launch-online.safetensors");
  gchar *loc = g_strdup_printf ("model-location=%s", out);
  const char *const args[] = { "-m", "audiotestsrc", "wave=white-noise",
    "samplesperbuffer=512", "num-buffers=4", "!",
    "audio/x-raw,format=F32LE,rate=8000,channels=1", "!", "rnntrain",
    "mode=online", loc, "checkpoint-interval=1", "seq-length=8",
    "batch-size=1", "cell=lstm", "hidden-size=64", "num-layers=2", "!",
    "fakesink", NULL
  };
  gint status;
  gchar *text = run_launch (args, 0, &status);

  if (text) {
    /* 2048 frames, 2047 predict-ahead steps: 255 updates of 8 */
    const guint writes = count_lines_with (text, "rnntrain-progress");
    g_test_message ("%u model writes", writes);
    g_assert_cmpint (status, ==, 0);
    g_assert_nonnull (strstr (text, "Got EOS"));
    g_assert_cmpuint (writes, ==, 255);
    RnnModel *m = load_model (out);
    g_assert_cmpuint (meta_u64 (m, "train_updates"), ==, 255);
    rnn_model_unref (m);
  }
  g_free (text);
  g_free (loc);
  g_free (out);
}

/* Ctrl-C of a gst-launch-1.0 -e run: the EOS it sends ends the recording,
 * and the model is trained and written before gst-launch-1.0 exits. */
static void
test_launch_interrupt_eos (void)
{
  gchar *out = tmp_path ("launch-sigint.safetensors");
  gchar *loc = g_strdup_printf ("model-location=%s", out);
  const char *const args[] = { "-e", "audiotestsrc", "is-live=true",
    "wave=white-noise", "samplesperbuffer=400", "!",
    "audio/x-raw,format=F32LE,rate=8000,channels=1", "!", "rnntrain", loc,
    "hidden-size=4", "epochs=2", "!", "fakesink", NULL
  };
  gint status;
  gchar *text = run_launch (args, 1000, &status);

  if (text) {
    g_assert_cmpint (status, ==, 0);
    RnnModel *m = load_model (out);
    g_assert_cmpuint (meta_u64 (m, "train_epochs"), ==, 2);
    rnn_model_unref (m);
  }
  g_free (text);
  g_free (loc);
  g_free (out);
}

/* ---- main ------------------------------------------------------------------------------- */

int
main (int argc, char **argv)
{
  int ret;

  g_test_init (&argc, &argv, NULL);
  gst_init (&argc, &argv);
  g_assert_true (GST_ELEMENT_REGISTER (rnntrain, NULL));
  g_assert_true (GST_ELEMENT_REGISTER (rnnfilter, NULL));
  tmp_dir = g_dir_make_tmp ("test-rnntrain-XXXXXX", NULL);
  warnings = g_ptr_array_new_with_free_func (g_free);
  g_assert_nonnull (tmp_dir);

  g_test_add_func ("/rnntrain/properties", test_properties);
  g_test_add_func ("/rnntrain/pads", test_pads);
  g_test_add_func ("/rnntrain/caps/rate-mismatch", test_caps_rate_mismatch);
  g_test_add_func ("/rnntrain/caps/cross-entropy-channels",
      test_caps_cross_entropy_channels);
  g_test_add_func ("/rnntrain/caps/cross-entropy-no-target",
      test_caps_cross_entropy_no_target);
  g_test_add_func ("/rnntrain/caps/model-channels", test_caps_model_channels);
  g_test_add_func ("/rnntrain/caps/output-rate", test_caps_output_rate);
  g_test_add_func ("/rnntrain/caps/no-location", test_no_location);
  g_test_add_func ("/rnntrain/align/running-time", test_align_running_time);
  g_test_add_func ("/rnntrain/align/segment", test_align_segment);
  g_test_add_func ("/rnntrain/framing/predict-ahead", test_predict_ahead);
  g_test_add_func ("/rnntrain/framing/output-frames", test_framing_output_frames);
  g_test_add_func ("/rnntrain/src/predictions", test_src_predictions);
  g_test_add_func ("/rnntrain/recording/spool", test_recording);
  g_test_add_func ("/rnntrain/determinism", test_determinism);
  g_test_add_func ("/rnntrain/non-finite/loss", test_non_finite_loss);
  g_test_add_data_func ("/rnntrain/diverge/offline-sgd", &diverge_cases[0],
      test_diverge);
  g_test_add_data_func ("/rnntrain/diverge/offline-adam", &diverge_cases[1],
      test_diverge);
  g_test_add_data_func ("/rnntrain/diverge/online-sgd", &diverge_cases[2],
      test_diverge);
  g_test_add_data_func ("/rnntrain/diverge/online-adam", &diverge_cases[3],
      test_diverge);
  g_test_add_func ("/rnntrain/non-finite/input", test_non_finite_input);
  g_test_add_func ("/rnntrain/cross-entropy/bad-class",
      test_cross_entropy_bad_class);
  g_test_add_func ("/rnntrain/cross-entropy/learns", test_cross_entropy_learns);
  g_test_add_func ("/rnntrain/round-trip/rnnfilter", test_round_trip);
  g_test_add_func ("/rnntrain/round-trip/rnnfilter-bidirectional",
      test_round_trip_bidirectional);
  g_test_add_func ("/rnntrain/online/reload-on-change", test_online_reload);
  g_test_add_func ("/rnntrain/pads/release-target-mid-stream",
      test_release_target);
  g_test_add_func ("/rnntrain/pipeline/tee-target", test_pipeline_tee_target);
  g_test_add_func ("/rnntrain/pipeline/tee-unequal-branches",
      test_pipeline_tee_unequal_branches);
  g_test_add_func ("/rnntrain/pipeline/cancel", test_cancel);
  g_test_add_func ("/rnntrain/launch/online-async-sink",
      test_launch_online_async_sink);
  g_test_add_func ("/rnntrain/launch/interrupt-eos", test_launch_interrupt_eos);
  g_test_add_func ("/rnntrain/stop-before-eos", test_stop_before_eos);
  g_test_add_func ("/rnntrain/location/unwritable", test_location_unwritable);
  g_test_add_func ("/rnntrain/memory-bound", test_memory_bound);
  g_test_add_func ("/rnntrain/target/length-mismatch",
      test_target_length_mismatch);
  g_test_add_func ("/rnntrain/target/none-names-mode",
      test_no_target_mode_message);
  g_test_add_func ("/rnntrain/target/unfed", test_unfed_target);
  g_test_add_func ("/rnntrain/target/resample", test_target_resample);
  g_test_add_func ("/rnntrain/normalize/outlier", test_normalize_outlier);
  g_test_add_func ("/rnntrain/init-model/layers-skip-h0", test_init_model_layers);
  g_test_add_func ("/rnntrain/skip/esr-pre-emphasis", test_skip_esr_pre_emphasis);
  g_test_add_func ("/rnntrain/skip/refused", test_skip_refused);
  g_test_add_func ("/rnntrain/location/symlink", test_symlink_location);

  ret = g_test_run ();
  remove_tree (tmp_dir);
  g_free (tmp_dir);
  g_ptr_array_unref (warnings);
  return ret;
}
