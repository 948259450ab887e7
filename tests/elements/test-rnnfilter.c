/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnnfilter through GstHarness and whole pipelines.
 *
 * Expected numbers come from the PyTorch fixtures (<builddir>/tests/forward,
 * see tests/core/gen-fixtures.py) or from invariants (frame counts, a fresh
 * element on the same data, exact sample-count timestamps), never from an
 * earlier run of the element itself.
 */
#include "test-common.h"
#include "element-rig.h"
#include "tsan-glib.h"
#include "../../plugins/gstrnnelements.h"
#include "../../plugins/gstrnnfilter.h"

#include <gst/gst.h>
#include <gst/check/gstharness.h>
#include <glib/gstdio.h>

#define TOL 1e-6

static gchar *tmp_dir;

/* ---- fixtures ---------------------------------------------------------- */

static gchar *
fixture_path (const char *name, const char *suffix)
{
  gchar *file = g_strconcat (name, suffix, NULL);
  gchar *path = g_test_build_filename (G_TEST_BUILT, "forward", file, NULL);

  g_free (file);
  return path;
}

static gchar *
model_path (const char *name)
{
  return fixture_path (name, ".safetensors");
}

typedef struct
{
  GBytes *bytes;
  RnnSafetensors *st;
} Expected;

static Expected *
expected_open (const char *name)
{
  Expected *e = g_new0 (Expected, 1);
  gchar *path = fixture_path (name, ".expected.safetensors");
  GError *err = NULL;
  gchar *data;
  gsize size;

  g_assert_true (g_file_get_contents (path, &data, &size, &err));
  g_assert_no_error (err);
  e->bytes = g_bytes_new_take (data, size);
  e->st = rnn_safetensors_parse (g_bytes_get_data (e->bytes, NULL), size,
      path, &err);
  g_assert_no_error (err);
  g_free (path);
  return e;
}

static void
expected_free (Expected *e)
{
  rnn_safetensors_free (e->st);
  g_bytes_unref (e->bytes);
  g_free (e);
}

/* y_T<T> as [rows][O]. */
static float *
expected_y (Expected *e, guint T, guint *rows, guint *cols)
{
  gchar *key = g_strdup_printf ("y_T%u", T);
  const RnnStTensor *t = rnn_safetensors_find (e->st, key);
  GError *err = NULL;
  float *y;

  g_assert_nonnull (t);
  g_assert_cmpuint (t->ndim, ==, 2);
  y = g_new (float, t->numel);
  g_assert_true (rnn_safetensors_read_f32 (t, y, &err));
  g_assert_no_error (err);
  *rows = t->shape[0];
  *cols = t->shape[1];
  g_free (key);
  return y;
}

static guint *
expected_steps (Expected *e, guint *n)
{
  const char *s = rnn_safetensors_get_meta (e->st, "steps_T1000");
  gchar **parts;
  guint *steps;

  g_assert_nonnull (s);
  parts = g_strsplit (s, ",", -1);
  *n = g_strv_length (parts);
  steps = g_new (guint, *n);
  for (guint i = 0; i < *n; i++)
    steps[i] = (guint) g_ascii_strtoull (parts[i], NULL, 10);
  g_strfreev (parts);
  return steps;
}

static RnnModel *
load_model (const char *path)
{
  GError *err = NULL;
  RnnModel *m = rnn_model_load (path, &err);

  g_assert_no_error (err);
  return m;
}

static gchar *
save_model (RnnModel *m, const char *file)
{
  gchar *path = g_build_filename (tmp_dir, file, NULL);
  GError *err = NULL;

  g_assert_true (rnn_model_save (m, path, &err));
  g_assert_no_error (err);
  return path;
}

/* A fixture model with other framing metadata (same parameters, same slab
 * layout), saved under tmp_dir. */
static gchar *
derive_model (const char *name, const char *tag, guint frame_size,
    guint output_frame_size, guint window, guint sample_rate)
{
  gchar *src = model_path (name), *file, *path;
  RnnModel *m = load_model (src), *d;
  RnnConfig cfg = *rnn_model_get_config (m);
  GError *err = NULL;
  gsize n_src, n_dst;
  const float *p_src;
  float *p_dst;

  cfg.frame_size = frame_size;
  cfg.output_frame_size = output_frame_size;
  cfg.window = window;
  cfg.sample_rate = sample_rate;
  d = rnn_model_new (&cfg, &err);
  g_assert_no_error (err);
  p_src = rnn_model_peek_params (m, &n_src);
  p_dst = rnn_model_get_params (d, &n_dst);
  g_assert_cmpuint (n_src, ==, n_dst);
  memcpy (p_dst, p_src, n_src * sizeof (float));
  rnn_model_seal (d);

  file = g_strdup_printf ("%s-%s.safetensors", name, tag);
  path = save_model (d, file);
  g_free (file);
  g_free (src);
  rnn_model_unref (m);
  rnn_model_unref (d);
  return path;
}

/* A tiny LSTM whose weights are all zero: every output is head.bias, i.e.
 * @value on each of @O outputs, whatever the input. */
static RnnModel *
constant_model (float value, guint O)
{
  RnnConfig cfg;
  GError *err = NULL;
  RnnModel *m;
  const RnnParamInfo *info;
  float *p;
  gint idx;

  rnn_config_init (&cfg);
  cfg.has_head = TRUE;
  cfg.output_size = O;
  cfg.head_activation = RNN_HEAD_ACT_NONE;
  m = rnn_model_new (&cfg, &err);
  g_assert_no_error (err);
  idx = rnn_model_find_tensor (m, "head.bias");
  g_assert_cmpint (idx, >=, 0);
  info = rnn_model_get_tensor_info (m, idx);
  p = rnn_model_get_params (m, NULL);
  for (guint o = 0; o < O; o++)
    p[info->offset + o] = value;
  rnn_model_seal (m);
  return m;
}

static gchar *
constant_model_file (const char *file, float value, guint O)
{
  RnnModel *m = constant_model (value, O);
  gchar *path = save_model (m, file);

  rnn_model_unref (m);
  return path;
}

/* ---- a harnessed rnnfilter ------------------------------------------- */

/* A started rnnfilter with @model, caps set unless @rate is 0.  Trailing
 * arguments: property name/value pairs, NULL-terminated. */
static Rig *
rig_new (const char *model, guint rate, guint channels, const char *first_prop,
    ...)
{
  Rig *r;
  va_list args;

  va_start (args, first_prop);
  r = rig_open ("rnnfilter", model, first_prop, args);
  va_end (args);
  rig_start (r, rate, channels);
  return r;
}

static GstFlowReturn
rig_push (Rig *r, const float *x, guint frames)
{
  return rig_push_flags (r, x, frames, 0);
}

/* Pushes @frames frames in buffers of @chunk frames. */
static void
rig_push_chunked (Rig *r, const float *x, guint frames, guint chunk)
{
  for (guint k = 0; k < frames; k += chunk) {
    guint n = MIN (chunk, frames - k);

    g_assert_cmpint (rig_push (r, x + (gsize) k * r->channels, n), ==,
        GST_FLOW_OK);
  }
}

/* Pops every message of @types; returns them (GstMessage*). */
static GPtrArray *
bus_collect (GstBus *bus, GstMessageType types)
{
  GPtrArray *msgs = g_ptr_array_new_with_free_func (
      (GDestroyNotify) gst_message_unref);
  GstMessage *m;

  while ((m = gst_bus_pop_filtered (bus, types)))
    g_ptr_array_add (msgs, m);
  return msgs;
}

static gchar *
message_text (GstMessage *m)
{
  GError *err = NULL;
  gchar *dbg = NULL, *text;

  if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR)
    gst_message_parse_error (m, &err, &dbg);
  else
    gst_message_parse_warning (m, &err, &dbg);
  text = g_strdup_printf ("%s | %s", err->message, dbg ? dbg : "");
  g_error_free (err);
  g_free (dbg);
  return text;
}

/* Plays @pipeline until EOS or an error (at most a minute) and returns that
 * message; @started: what setting PLAYING returned.  The pipeline is back
 * in NULL. */
static GstMessage *
pipeline_end (GstElement *pipeline, GstStateChangeReturn *started)
{
  GstBus *bus = gst_element_get_bus (pipeline);
  GstMessage *m;

  *started = gst_element_set_state (pipeline, GST_STATE_PLAYING);
  m = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
      GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  g_assert_nonnull (m);
  gst_element_set_state (pipeline, GST_STATE_NULL);
  gst_object_unref (bus);
  return m;
}

/* Runs @pipeline to EOS; fails on an error. */
static void
run_pipeline (GstElement *pipeline)
{
  GstStateChangeReturn started;
  GstMessage *m = pipeline_end (pipeline, &started);

  g_assert_cmpint (started, !=, GST_STATE_CHANGE_FAILURE);
  if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR) {
    gchar *text = message_text (m);
    g_error ("pipeline error: %s", text);
  }
  gst_message_unref (m);
}

/* ---- inputs ------------------------------------------------------------ */

/* [frames][C] with frame k channel c = fixture_input (T, k, c): the fixture
 * sequence of length T with I = C inputs per step. */
static float *
seq_vector (guint T, guint frames, guint C)
{
  float *x = g_new (float, (gsize) frames * C);

  for (guint k = 0; k < frames; k++)
    for (guint c = 0; c < C; c++)
      x[(gsize) k * C + c] = fixture_input (T, k, c);
  return x;
}

/* A mono stream carrying the fixture sequence of T steps with @fs inputs per
 * step, one input per frame (frame t·fs + f = input f of step t). */
static float *
seq_framed (guint T, guint fs)
{
  float *x = g_new (float, (gsize) T * fs);

  for (guint t = 0; t < T; t++)
    for (guint f = 0; f < fs; f++)
      x[(gsize) t * fs + f] = fixture_input (T, t, f);
  return x;
}

/* Runs @x ([frames][C]) through a fresh element in one buffer + EOS. */
static GArray *
run_once (const char *model, guint rate, guint C, const float *x,
    guint frames, const char *first_prop, ...)
{
  Rig *r;
  va_list args;
  GArray *out;

  va_start (args, first_prop);
  r = rig_open ("rnnfilter", model, first_prop, args);
  va_end (args);
  rig_start (r, rate, C);
  if (frames)
    g_assert_cmpint (rig_push (r, x, frames), ==, GST_FLOW_OK);
  rig_eos (r);
  out = rig_pull_all (r, NULL);
  rig_free (r);
  return out;
}

static void
assert_close (const float *got, const float *want, gsize n, const char *what)
{
  double d = max_abs_diff (got, want, n);

  if (!(d <= TOL))
    g_error ("%s: max |diff| %g > %g", what, d, TOL);
}

/* ---- parity with PyTorch ---------------------------------------------- */

/* A vector-mode model (I channels per frame, one frame per step) on the
 * fixture sequences of 1, 17 and 1000 steps. */
static void
check_parity_vector (const char *name, guint I, gboolean bidirectional)
{
  gchar *path = model_path (name);
  Expected *e = expected_open (name);
  const guint Ts[] = { 1, 17, 1000 };

  for (guint k = 0; k < G_N_ELEMENTS (Ts); k++) {
    const guint T = Ts[k];
    guint rows, O, n_steps = 0, *steps = NULL;
    float *want = expected_y (e, T, &rows, &O);
    float *x = seq_vector (T, T, I);
    gchar *what = g_strdup_printf ("%s T=%u", name, T);
    GArray *out;

    /* bidirectional: one window of T, or a longer window that EOS cuts
     * short (processed as a shorter sequence) */
    if (bidirectional)
      out = run_once (path, 48000, I, x, T, "window", T == 17 ? 100 : T, NULL);
    else
      out = run_once (path, 48000, I, x, T, NULL);
    g_assert_cmpuint (out->len, ==, (gsize) T * O);
    if (T == 1000) {
      steps = expected_steps (e, &n_steps);
      g_assert_cmpuint (n_steps, ==, rows);
      for (guint i = 0; i < n_steps; i++)
        assert_close (&g_array_index (out, float, (gsize) steps[i] * O),
            want + (gsize) i * O, O, what);
    } else {
      g_assert_cmpuint (rows, ==, T);
      assert_close ((float *) out->data, want, (gsize) T * O, what);
    }
    g_array_unref (out);
    g_free (steps);
    g_free (what);
    g_free (want);
    g_free (x);
  }
  expected_free (e);
  g_free (path);
}

static const char *cells[] = { "rnn_tanh", "rnn_relu", "lstm", "gru" };

/* n-threads splits the channels of an independent stream over threads: the
 * same bytes as one thread, in buffers big enough to be split. */
static void
test_threads (void)
{
  gchar *path = model_path ("lstm_L1_uni_I1_H33_none");
  const guint C = 8, frames = 4800;
  float *x = seq_vector (frames, frames, C);
  GArray *one = run_once (path, 48000, C, x, frames, "channel-mode",
      GST_RNN_FILTER_CHANNEL_MODE_INDEPENDENT, NULL);
  GArray *three = run_once (path, 48000, C, x, frames, "channel-mode",
      GST_RNN_FILTER_CHANNEL_MODE_INDEPENDENT, "n-threads", 3, NULL);

  g_assert_cmpuint (one->len, ==, (gsize) frames * C * 33);
  g_assert_cmpmem (one->data, one->len * sizeof (float), three->data,
      three->len * sizeof (float));
  g_array_unref (one);
  g_array_unref (three);
  g_free (x);
  g_free (path);
}

/* weight-precision=float16: the element runs exactly what the core runs
 * with RNN_WEIGHTS_F16 (bit for bit), which is not what it runs by
 * default; a model beyond float16's range is refused with a message. */
static void
test_weight_precision (void)
{
  const char *name = "lstm_L2_uni_I1_H33_softmax";
  gchar *path = model_path (name);
  const guint T = 500;
  float *x = seq_vector (T, T, 1);
  RnnModel *m = load_model (path);
  const guint O = rnn_model_get_output_size (m);
  GError *err = NULL;
  GArray *half, *full;
  float *want = g_new (float, (gsize) T * O);
  RnnForward *fw = rnn_forward_new ();
  RnnState *st;

  g_assert_true (rnn_model_set_weight_precision (m, RNN_WEIGHTS_F16, &err));
  g_assert_no_error (err);
  st = rnn_state_new (m, 1);
  rnn_forward (fw, m, st, x, T, 1, want);
  half = run_once (path, 48000, 1, x, T, "weight-precision", 1, NULL);
  full = run_once (path, 48000, 1, x, T, NULL);
  g_assert_cmpuint (half->len, ==, (gsize) T * O);
  g_assert_cmpmem (half->data, half->len * sizeof (float), want,
      (gsize) T * O * sizeof (float));
  g_assert_true (memcmp (full->data, want, (gsize) T * O * sizeof (float)) != 0);
  /* close to the float32 outputs all the same */
  g_assert_cmpfloat (max_abs_diff ((float *) half->data, (float *) full->data,
          (gsize) T * O), <, 1e-3);
  g_array_unref (half);
  g_array_unref (full);
  rnn_state_free (st);
  rnn_forward_free (fw);
  g_free (want);

  /* a recurrent weight of 1e5 cannot be float16: a clear error at start */
  float *p = rnn_model_get_params (m, NULL);
  p[rnn_model_get_tensor_info (m,
          rnn_model_find_tensor (m, "rnn.weight_hh_l1"))->offset] = 1e5f;
  gchar *big = save_model (m, "f16-out-of-range.safetensors");
  gchar *desc = g_strdup_printf ("audiotestsrc num-buffers=2 ! "
      "audio/x-raw,format=F32LE,rate=48000,channels=1 ! rnnfilter "
      "model-location=\"%s\" weight-precision=float16 ! fakesink", big);
  GstElement *pipe = gst_parse_launch (desc, &err);
  g_assert_no_error (err);
  GstStateChangeReturn started;
  GstMessage *msg = pipeline_end (pipe, &started);
  g_assert_cmpint (GST_MESSAGE_TYPE (msg), ==, GST_MESSAGE_ERROR);
  gchar *text = message_text (msg);
  g_assert_nonnull (strstr (text, "float16"));
  g_assert_nonnull (strstr (text, "weight_hh of layer 1"));
  g_free (text);
  gst_message_unref (msg);
  gst_object_unref (pipe);
  g_free (desc);
  g_free (big);
  rnn_model_unref (m);
  g_free (x);
  g_free (path);
}

static void
test_parity_unidirectional (void)
{
  for (guint c = 0; c < G_N_ELEMENTS (cells); c++) {
    const char *fmt[] = { "%s_L2_uni_I1_H33_softmax", "%s_L1_uni_I1_H33_none",
      "%s_L3_uni_I5_H8_linear", "%s_L1_uni_I5_H8_linear_norm",
      "%s_L1_uni_I5_H8_sigmoid",
    };

    for (guint f = 0; f < G_N_ELEMENTS (fmt); f++) {
      gchar *name = g_strdup_printf (fmt[f], cells[c]);

      check_parity_vector (name, strstr (name, "_I5_") ? 5 : 1, FALSE);
      g_free (name);
    }
  }
}

static void
test_parity_bidirectional (void)
{
  for (guint c = 0; c < G_N_ELEMENTS (cells); c++) {
    const char *fmt[] = { "%s_L2_bi_I5_H8_softmax", "%s_L1_bi_I1_H33_linear",
      "%s_L3_bi_I1_H8_none",
    };

    for (guint f = 0; f < G_N_ELEMENTS (fmt); f++) {
      gchar *name = g_strdup_printf (fmt[f], cells[c]);

      check_parity_vector (name, strstr (name, "_I5_") ? 5 : 1, TRUE);
      g_free (name);
    }
  }
}

/* frame_size 5 on an I=5 model: a mono stream, five frames per step, with
 * F_out = 1 (3 output channels at rate/5) and F_out = 3 (mono at 3·rate/5);
 * both give y row-major.  Also a bidirectional one with window metadata. */
static void
test_parity_frame_size (void)
{
  struct
  {
    const char *name;
    guint f_out, window;
  } cases[] = {
    {"lstm_L2_uni_I5_H8_linear", 1, 0},
    {"lstm_L2_uni_I5_H8_linear", 3, 0},
    {"gru_L1_uni_I5_H8_softmax", 3, 0},
    {"rnn_tanh_L2_bi_I5_H8_linear", 1, 17},
    {"gru_L2_bi_I5_H8_softmax", 3, 17},
  };

  for (guint k = 0; k < G_N_ELEMENTS (cases); k++) {
    gchar *tag = g_strdup_printf ("fs5-fo%u-w%u", cases[k].f_out,
        cases[k].window);
    gchar *path = derive_model (cases[k].name, tag, 5, cases[k].f_out,
        cases[k].window, 0);
    Expected *e = expected_open (cases[k].name);
    guint rows, O;
    float *want = expected_y (e, 17, &rows, &O);
    float *x = seq_framed (17, 5);
    Rig *r = rig_new (path, 48000, 1, NULL);
    GArray *out;

    g_assert_cmpint (rig_push (r, x, 17 * 5), ==, GST_FLOW_OK);
    rig_eos (r);
    out = rig_pull_all (r, NULL);
    g_assert_cmpuint (rig_out_channels (r), ==, O / cases[k].f_out);
    g_assert_cmpuint (rig_out_rate (r), ==, 48000 / 5 * cases[k].f_out);
    g_assert_cmpuint (out->len, ==, 17 * O);
    assert_close ((float *) out->data, want, 17 * O, tag);

    g_array_unref (out);
    rig_free (r);
    g_free (x);
    g_free (want);
    expected_free (e);
    g_free (path);
    g_free (tag);
  }
}

/* A single-channel model on three channels, batched: channel 0 carries the
 * T=17 sequence, channel 1 the T=1000 one, channel 2 the T=1 one (then
 * zeros); each channel's outputs must be that sequence's torch outputs. */
static void
check_independent (const char *name, const char *path, guint fs,
    GstRnnFilterChannelMode mode)
{
  Expected *e = expected_open (name);
  const guint C = 3, T = 1000, frames = T * fs;
  guint rows17, rows1000, rows1, O, n_steps, *steps;
  float *y17 = expected_y (e, 17, &rows17, &O);
  float *y1000 = expected_y (e, 1000, &rows1000, &O);
  float *y1 = expected_y (e, 1, &rows1, &O);
  float *x = g_new0 (float, (gsize) frames * C);
  GArray *out;
  float *row;

  for (guint t = 0; t < T; t++)
    for (guint f = 0; f < fs; f++) {
      gsize k = (gsize) t * fs + f;

      x[k * C + 0] = t < 17 ? fixture_input (17, t, f) : 0.0f;
      x[k * C + 1] = fixture_input (1000, t, f);
      x[k * C + 2] = t < 1 ? fixture_input (1, t, f) : 0.0f;
    }
  out = run_once (path, 16000, C, x, frames, "channel-mode", mode, NULL);
  g_assert_cmpuint (out->len, ==, (gsize) T * C * O);
  row = g_new (float, O);

  for (guint t = 0; t < 17; t++) {
    memcpy (row, &g_array_index (out, float, ((gsize) t * C + 0) * O),
        O * sizeof (float));
    assert_close (row, y17 + (gsize) t * O, O, "channel 0 (T=17)");
  }
  steps = expected_steps (e, &n_steps);
  for (guint i = 0; i < n_steps; i++) {
    memcpy (row, &g_array_index (out, float, ((gsize) steps[i] * C + 1) * O),
        O * sizeof (float));
    assert_close (row, y1000 + (gsize) i * O, O, "channel 1 (T=1000)");
  }
  memcpy (row, &g_array_index (out, float, 2 * O), O * sizeof (float));
  assert_close (row, y1, O, "channel 2 (T=1)");

  g_free (row);
  g_free (steps);
  g_array_unref (out);
  g_free (x);
  g_free (y1);
  g_free (y17);
  g_free (y1000);
  expected_free (e);
}

static void
test_parity_independent (void)
{
  const char *names[] = { "gru_L2_uni_I1_H33_softmax", "lstm_L3_uni_I1_H8_none",
    "rnn_relu_L1_uni_I1_H33_linear",
  };
  gchar *path;

  for (guint k = 0; k < G_N_ELEMENTS (names); k++) {
    path = model_path (names[k]);
    check_independent (names[k], path, 1, k == 0 ?
        GST_RNN_FILTER_CHANNEL_MODE_INDEPENDENT :
        GST_RNN_FILTER_CHANNEL_MODE_AUTO);
    g_free (path);
  }
  /* five frames per step, one channel per frame */
  path = derive_model ("lstm_L2_uni_I5_H8_linear", "fs5", 5, 1, 0, 0);
  check_independent ("lstm_L2_uni_I5_H8_linear", path, 5,
      GST_RNN_FILTER_CHANNEL_MODE_AUTO);
  g_free (path);
}

/* Bidirectional, independent: both channels hold one T=17 window. */
static void
test_parity_independent_bidirectional (void)
{
  const char *name = "lstm_L2_bi_I1_H33_linear";
  gchar *path = model_path (name);
  Expected *e = expected_open (name);
  guint rows, O;
  float *want = expected_y (e, 17, &rows, &O);
  float *mono = seq_vector (17, 17, 1), *x = g_new (float, 34), *row;
  GArray *out;

  for (guint t = 0; t < 17; t++)
    x[2 * t] = x[2 * t + 1] = mono[t];
  out = run_once (path, 8000, 2, x, 17, "window", 17, NULL);
  g_assert_cmpuint (out->len, ==, 17 * 2 * O);
  row = g_new (float, O);
  for (guint b = 0; b < 2; b++)
    for (guint t = 0; t < 17; t++) {
      memcpy (row, &g_array_index (out, float, ((gsize) t * 2 + b) * O),
          O * sizeof (float));
      assert_close (row, want + (gsize) t * O, O, "bidirectional channel");
    }
  g_free (row);
  g_array_unref (out);
  g_free (x);
  g_free (mono);
  g_free (want);
  expected_free (e);
  g_free (path);
}

/* ---- invariants -------------------------------------------------------- */

static guint64
ceil_div (guint64 a, guint64 b)
{
  return (a + b - 1) / b;
}

typedef struct
{
  gchar *path;
  guint C, f_in, f_out, out_channels;
  const char *prop;             /* optional property */
  guint prop_value;
} Setup;

static Setup *
setups (guint *n)
{
  static Setup s[5];

  s[0] = (Setup) { model_path ("lstm_L2_uni_I1_H33_linear"), 1, 1, 1, 3 };
  s[1] = (Setup) {
  derive_model ("gru_L2_uni_I5_H8_linear", "fs5-fo3", 5, 3, 0, 0), 1, 5, 3, 1};
  s[2] = (Setup) {
  derive_model ("gru_L2_bi_I5_H8_softmax", "fs5-w17", 5, 1, 17, 0), 1, 5, 1,
        3};
  s[3] = (Setup) { model_path ("gru_L1_uni_I1_H33_softmax"), 2, 1, 1, 6 };
  s[4] = (Setup) { model_path ("rnn_tanh_L2_bi_I1_H8_linear"), 1, 1, 1, 3,
    "window", 100 };
  *n = G_N_ELEMENTS (s);
  return s;
}

static void
setups_free (Setup *s, guint n)
{
  for (guint i = 0; i < n; i++)
    g_free (s[i].path);
}

static Rig *
setup_rig (const Setup *s, guint rate)
{
  return s->prop ? rig_new (s->path, rate, s->C, s->prop, s->prop_value, NULL)
      : rig_new (s->path, rate, s->C, NULL);
}

/* The same stream cut into buffers of 1, 7, 480 and 4096 frames gives the
 * same bytes. */
static void
test_buffer_size_invariance (void)
{
  const guint sizes[] = { 4096, 1, 7, 480 };
  const guint frames = 10007;
  guint n;
  Setup *s = setups (&n);

  for (guint i = 0; i < n; i++) {
    float *x = g_new (float, (gsize) frames * s[i].C);
    GArray *ref = NULL;

    for (guint k = 0; k < frames * s[i].C; k++)
      x[k] = fixture_input (999, k / s[i].C, k % s[i].C);
    for (guint j = 0; j < G_N_ELEMENTS (sizes); j++) {
      Rig *r = setup_rig (&s[i], 48000);
      GArray *out;

      rig_push_chunked (r, x, frames, sizes[j]);
      rig_eos (r);
      out = rig_pull_all (r, NULL);
      g_assert_cmpuint (out->len, ==,
          ceil_div ((guint64) frames * s[i].f_out, s[i].f_in) *
          s[i].out_channels);
      if (!ref) {
        ref = out;
      } else {
        g_assert_cmpuint (out->len, ==, ref->len);
        if (memcmp (out->data, ref->data, out->len * sizeof (float)) != 0)
          g_error ("%s: buffers of %u frames change the output", s[i].path,
              sizes[j]);
        g_array_unref (out);
      }
      rig_free (r);
    }
    g_array_unref (ref);
    g_free (x);
  }
  setups_free (s, n);
}

/* frames out = ⌈frames in · F_out / F_in⌉ per stretch between drains,
 * partial steps and windows included; a DISCONT drains the stretch. */
static void
test_sample_conservation (void)
{
  const guint lengths[] = { 0, 1, 4, 5, 6, 84, 85, 86, 99, 100, 101, 1001 };
  guint n;
  Setup *s = setups (&n);

  for (guint i = 0; i < n; i++) {
    for (guint j = 0; j < G_N_ELEMENTS (lengths); j++) {
      const guint N = lengths[j], N2 = 333;
      float *x = g_new0 (float, (gsize) (N + N2 + 1) * s[i].C);
      Rig *r = setup_rig (&s[i], 48000);
      GArray *out;
      guint64 want;

      for (guint k = 0; k < (N + N2) * s[i].C; k++)
        x[k] = fixture_input (5, k, 0);
      if (N)
        rig_push_chunked (r, x, N, 7);
      g_assert_cmpint (rig_push_flags (r, x + (gsize) N * s[i].C, N2,
              GST_BUFFER_FLAG_DISCONT), ==, GST_FLOW_OK);
      rig_eos (r);
      out = rig_pull_all (r, NULL);
      want = ceil_div ((guint64) N * s[i].f_out, s[i].f_in)
          + ceil_div ((guint64) N2 * s[i].f_out, s[i].f_in);
      g_assert_cmpuint (out->len, ==, want * s[i].out_channels);
      g_array_unref (out);
      rig_free (r);
      g_free (x);
    }
  }
  setups_free (s, n);
}

/* ---- state resets ------------------------------------------------------ */

typedef enum
{
  TRIGGER_NONE,
  TRIGGER_FLUSH,
  TRIGGER_STREAM_START,
  TRIGGER_DISCONT,
  TRIGGER_DISCONT_DISABLED,
  TRIGGER_SIGNAL,
} Trigger;

#define RESET_MODEL "lstm_L2_uni_I1_H33_linear"

/* Pushes frames [0, 500) of the T=1000 fixture sequence, the trigger, then
 * frames [500, 1000); returns the output of the second half and whether its
 * first buffer is DISCONT. */
static GArray *
run_with_trigger (Trigger trigger, gboolean *first_discont)
{
  gchar *path = model_path (RESET_MODEL);
  float *x = seq_vector (1000, 1000, 1);
  Rig *r = trigger == TRIGGER_DISCONT_DISABLED ?
      rig_new (path, 16000, 1, "reset-on-discont", FALSE, NULL) :
      rig_new (path, 16000, 1, NULL);
  GPtrArray *bufs = g_ptr_array_new_with_free_func (
      (GDestroyNotify) gst_buffer_unref);
  GstBufferFlags flags = 0;
  GArray *out;
  GstSegment segment;

  rig_push_chunked (r, x, 500, 100);
  g_array_unref (rig_pull_all (r, NULL));

  gst_segment_init (&segment, GST_FORMAT_TIME);
  switch (trigger) {
    case TRIGGER_FLUSH:
      g_assert_true (gst_harness_push_event (r->h,
              gst_event_new_flush_start ()));
      g_assert_true (gst_harness_push_event (r->h,
              gst_event_new_flush_stop (TRUE)));
      g_assert_true (gst_harness_push_event (r->h,
              gst_event_new_segment (&segment)));
      break;
    case TRIGGER_STREAM_START:
      g_assert_true (gst_harness_push_event (r->h,
              gst_event_new_stream_start ("another-stream")));
      g_assert_true (gst_harness_push_event (r->h,
              gst_event_new_segment (&segment)));
      break;
    case TRIGGER_DISCONT:
    case TRIGGER_DISCONT_DISABLED:
      flags = GST_BUFFER_FLAG_DISCONT;
      break;
    case TRIGGER_SIGNAL:
      g_signal_emit_by_name (r->e, "reset");
      break;
    case TRIGGER_NONE:
      break;
  }
  g_assert_cmpint (rig_push_flags (r, x + 500, 100, flags), ==, GST_FLOW_OK);
  rig_push_chunked (r, x + 600, 400, 100);
  out = rig_pull_all (r, bufs);
  g_assert_cmpuint (bufs->len, >, 0);
  *first_discont = GST_BUFFER_IS_DISCONT (g_ptr_array_index (bufs, 0));
  for (guint i = 1; i < bufs->len; i++)
    g_assert_false (GST_BUFFER_IS_DISCONT (g_ptr_array_index (bufs, i)));

  g_ptr_array_unref (bufs);
  rig_free (r);
  g_free (x);
  g_free (path);
  return out;
}

/* The second half alone through a fresh element. */
static GArray *
fresh_second_half (void)
{
  gchar *path = model_path (RESET_MODEL);
  float *x = seq_vector (1000, 1000, 1);
  GArray *out = run_once (path, 16000, 1, x + 500, 500, NULL);

  g_free (x);
  g_free (path);
  return out;
}

static void
check_trigger (Trigger trigger, gboolean resets)
{
  GArray *fresh = fresh_second_half (), *out;
  gboolean discont;
  gboolean same;

  out = run_with_trigger (trigger, &discont);
  g_assert_cmpuint (out->len, ==, fresh->len);
  same = memcmp (out->data, fresh->data, out->len * sizeof (float)) == 0;
  if (resets) {
    g_assert_true (same);
    g_assert_true (discont);
  } else {
    g_assert_false (same);
  }
  g_array_unref (out);
  g_array_unref (fresh);
}

/* Without a trigger the state carries: the second half continues the torch
 * run over all 1000 steps. */
static void
test_reset_none (void)
{
  Expected *e = expected_open (RESET_MODEL);
  guint rows, O, n_steps, *steps;
  float *want = expected_y (e, 1000, &rows, &O);
  gboolean discont;
  GArray *out = run_with_trigger (TRIGGER_NONE, &discont);
  guint checked = 0;

  g_assert_false (discont);
  steps = expected_steps (e, &n_steps);
  for (guint i = 0; i < n_steps; i++) {
    if (steps[i] < 500)
      continue;
    assert_close (&g_array_index (out, float, (gsize) (steps[i] - 500) * O),
        want + (gsize) i * O, O, "carried state");
    checked++;
  }
  g_assert_cmpuint (checked, >=, 10);
  check_trigger (TRIGGER_NONE, FALSE);
  g_free (steps);
  g_free (want);
  g_array_unref (out);
  expected_free (e);
}

static void
test_reset_flush_stop (void)
{
  check_trigger (TRIGGER_FLUSH, TRUE);
}

static void
test_reset_stream_start (void)
{
  check_trigger (TRIGGER_STREAM_START, TRUE);
}

static void
test_reset_discont (void)
{
  check_trigger (TRIGGER_DISCONT, TRUE);
}

static void
test_reset_discont_disabled (void)
{
  gboolean discont;
  Expected *e = expected_open (RESET_MODEL);
  guint rows, O, n_steps, *steps;
  float *want = expected_y (e, 1000, &rows, &O);
  GArray *out = run_with_trigger (TRIGGER_DISCONT_DISABLED, &discont);

  /* the state carries through the DISCONT: torch's continuous run */
  steps = expected_steps (e, &n_steps);
  for (guint i = 0; i < n_steps; i++)
    if (steps[i] >= 500)
      assert_close (&g_array_index (out, float, (gsize) (steps[i] - 500) * O),
          want + (gsize) i * O, O, "reset-on-discont=false");
  g_assert_true (discont);      /* a time discontinuity is still one */
  check_trigger (TRIGGER_DISCONT_DISABLED, FALSE);
  g_free (steps);
  g_free (want);
  g_array_unref (out);
  expected_free (e);
}

static void
test_reset_signal (void)
{
  check_trigger (TRIGGER_SIGNAL, TRUE);
}

/* ---- time ---------------------------------------------------------------- */

/* Output PTS / duration / offsets follow the output sample count exactly
 * from a non-zero start at 44.1 kHz (durations that do not divide), also
 * with F_in = 5, F_out = 3 and input buffers that split steps. */
static void
test_timestamps (void)
{
  struct
  {
    const char *name;
    guint f_in, f_out, rate, chunk;
  } cases[] = {
    {"gru_L1_uni_I1_H8_linear", 1, 1, 44100, 100},
    {"gru_L1_uni_I5_H8_linear", 5, 3, 44100, 441},
    {"lstm_L1_bi_I5_H8_linear", 5, 1, 44100, 333},
  };

  for (guint k = 0; k < G_N_ELEMENTS (cases); k++) {
    const guint frames = 44100 * 3 + 17;
    gchar *path = cases[k].f_in == 1 ? model_path (cases[k].name)
        : derive_model (cases[k].name, "ts", cases[k].f_in, cases[k].f_out,
        strstr (cases[k].name, "_bi_") ? 50 : 0, 0);
    Rig *r = rig_new (path, cases[k].rate, 1, NULL);
    GPtrArray *bufs = g_ptr_array_new_with_free_func (
        (GDestroyNotify) gst_buffer_unref);
    float *x = g_new0 (float, frames);
    guint out_rate = cases[k].rate * cases[k].f_out / cases[k].f_in;
    guint O = rig_out_channels (r);
    guint64 pos = 0;
    GArray *out;

    r->start = 3600 * GST_SECOND + 12345;       /* an hour in */
    rig_push_chunked (r, x, frames, cases[k].chunk);
    rig_eos (r);
    out = rig_pull_all (r, bufs);
    g_assert_cmpuint (rig_out_rate (r), ==, out_rate);
    g_assert_cmpuint (bufs->len, >, 1);
    for (guint i = 0; i < bufs->len; i++) {
      GstBuffer *b = g_ptr_array_index (bufs, i);
      guint64 n = gst_buffer_get_size (b) / (O * sizeof (float));
      GstClockTime pts = r->start + frames_time (pos, out_rate);
      GstClockTime end = r->start + frames_time (pos + n, out_rate);

      g_assert_cmpuint (GST_BUFFER_PTS (b), ==, pts);
      g_assert_cmpuint (GST_BUFFER_DURATION (b), ==, end - pts);
      g_assert_cmpuint (GST_BUFFER_OFFSET_END (b) - GST_BUFFER_OFFSET (b), ==,
          n);
      if (i > 0) {
        GstBuffer *p = g_ptr_array_index (bufs, i - 1);
        g_assert_cmpuint (GST_BUFFER_PTS (p) + GST_BUFFER_DURATION (p), ==,
            GST_BUFFER_PTS (b));
        g_assert_cmpuint (GST_BUFFER_OFFSET_END (p), ==, GST_BUFFER_OFFSET (b));
      }
      pos += n;
    }
    g_assert_cmpuint (pos, ==,
        ceil_div ((guint64) frames * cases[k].f_out, cases[k].f_in));

    g_array_unref (out);
    g_ptr_array_unref (bufs);
    g_free (x);
    rig_free (r);
    g_free (path);
  }
}

/* A DISCONT with a gap takes a new time base from the buffer. */
static void
test_timestamps_discont (void)
{
  gchar *path = model_path ("gru_L1_uni_I1_H8_linear");
  Rig *r = rig_new (path, 44100, 1, NULL);
  GPtrArray *bufs = g_ptr_array_new_with_free_func (
      (GDestroyNotify) gst_buffer_unref);
  float x[1000] = { 0 };
  GstBuffer *b;

  rig_push (r, x, 1000);
  r->start = 7 * GST_SECOND;            /* a jump in time */
  rig_push_flags (r, x, 500, GST_BUFFER_FLAG_DISCONT);
  g_array_unref (rig_pull_all (r, bufs));
  g_assert_cmpuint (bufs->len, ==, 2);
  b = g_ptr_array_index (bufs, 1);
  g_assert_cmpuint (GST_BUFFER_PTS (b), ==, 7 * GST_SECOND
      + frames_time (1000, 44100));
  g_assert_true (GST_BUFFER_IS_DISCONT (b));
  g_ptr_array_unref (bufs);
  rig_free (r);
  g_free (path);
}

static GstClockTime
ceil_time (guint64 frames, guint rate)
{
  return (frames * GST_SECOND + rate - 1) / rate;
}

/* Upstream's latency plus ⌈(F_in·W − 1) / rate⌉ (W = window or 1), and a
 * latency message when it changes. */
static void
test_latency (void)
{
  const GstClockTime up = 10 * GST_MSECOND;
  gchar *uni = model_path ("gru_L1_uni_I1_H8_linear");
  gchar *fs5 = derive_model ("gru_L1_uni_I5_H8_linear", "lat", 5, 1, 0, 0);
  gchar *bi = model_path ("gru_L1_bi_I1_H8_linear");
  float x[200] = { 0 };
  GPtrArray *msgs;
  Rig *r;

  r = rig_new (uni, 44100, 1, NULL);
  gst_harness_set_upstream_latency (r->h, up);
  g_assert_cmpuint (gst_harness_query_latency (r->h), ==, up);
  rig_free (r);

  r = rig_new (fs5, 44100, 1, NULL);
  gst_harness_set_upstream_latency (r->h, up);
  g_assert_cmpuint (gst_harness_query_latency (r->h), ==,
      up + ceil_time (4, 44100));
  rig_free (r);

  r = rig_new (bi, 48000, 1, "window", 17, NULL);
  gst_harness_set_upstream_latency (r->h, up);
  g_assert_cmpuint (gst_harness_query_latency (r->h), ==,
      up + ceil_time (16, 48000));
  msgs = bus_collect (r->bus, GST_MESSAGE_LATENCY);
  g_assert_cmpuint (msgs->len, >=, 1);
  g_ptr_array_unref (msgs);
  /* a new window takes effect at the next buffer */
  g_object_set (r->e, "window", 34, NULL);
  rig_push (r, x, 200);
  msgs = bus_collect (r->bus, GST_MESSAGE_LATENCY);
  g_assert_cmpuint (msgs->len, ==, 1);
  g_ptr_array_unref (msgs);
  g_assert_cmpuint (gst_harness_query_latency (r->h), ==,
      up + ceil_time (33, 48000));
  rig_free (r);

  g_free (uni);
  g_free (fs5);
  g_free (bi);
}

/* ---- models changing while playing ------------------------------------- */

#define VALUE_A 0.25f
#define VALUE_B -0.5f

typedef struct
{
  GstElement *e;
  gchar *a, *b, *bad;
  gint done;
} Swapper;

static gpointer
swapper_thread (gpointer data)
{
  Swapper *s = data;

  for (guint i = 0; i < 100; i++) {
    const gchar *path = i == 50 ? s->bad : (i % 2 ? s->b : s->a);

    g_object_set (s->e, "model-location", path, NULL);
    g_usleep (1000);
  }
  g_atomic_int_set (&s->done, 1);
  return NULL;
}

/* The value of a constant-model buffer, or NAN if not constant. */
static float
buffer_value (GstBuffer *b)
{
  GstMapInfo map;
  float v = NAN;

  g_assert_true (gst_buffer_map (b, &map, GST_MAP_READ));
  if (map.size >= sizeof (float)) {
    const float *f = (const float *) map.data;
    v = f[0];
    for (gsize i = 1; i < map.size / sizeof (float); i++)
      if (f[i] != v)
        v = NAN;
  }
  gst_buffer_unmap (b, &map);
  return v;
}

/* Pushes 480-frame buffers until the output is @want (or 10 s pass). */
static gboolean
wait_for_value (Rig *r, const float *x, float want)
{
  gint64 until = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;

  while (g_get_monotonic_time () < until) {
    GstBuffer *b;
    gboolean hit = FALSE;

    rig_push (r, x, 480);
    while ((b = gst_harness_try_pull (r->h))) {
      hit = buffer_value (b) == want;
      gst_buffer_unref (b);
    }
    if (hit)
      return TRUE;
    g_usleep (5000);
  }
  return FALSE;
}

/* Waits up to 10 s for a warning containing @needle. */
static gboolean
wait_for_warning (GstBus *bus, const char *needle)
{
  gint64 until = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;

  while (g_get_monotonic_time () < until) {
    GstMessage *m = gst_bus_timed_pop_filtered (bus, 100 * GST_MSECOND,
        GST_MESSAGE_WARNING);

    if (m) {
      gchar *text = message_text (m);
      gboolean hit = strstr (text, needle) != NULL;

      g_test_message ("warning: %s", text);
      g_free (text);
      gst_message_unref (m);
      if (hit)
        return TRUE;
    }
  }
  return FALSE;
}

static gchar *
garbage_file (const char *file)
{
  gchar *path = g_build_filename (tmp_dir, file, NULL);
  const gchar junk[] = "\x10\x00\x00\x00\x00\x00\x00\x00{\"not\": a model";

  g_assert_true (g_file_set_contents (path, junk, sizeof (junk), NULL));
  return path;
}

/* 100 swaps from another thread while 10 s of 48 kHz audio flows in
 * 480-frame buffers. */
static void
test_hot_swap (void)
{
  Swapper s = { 0 };
  float x[480];
  GThread *thread;
  Rig *r;
  GPtrArray *bufs = g_ptr_array_new_with_free_func (
      (GDestroyNotify) gst_buffer_unref);
  guint n_a = 0, n_b = 0;

  for (guint i = 0; i < 480; i++)
    x[i] = fixture_input (480, i, 0);
  s.a = constant_model_file ("swap-a.safetensors", VALUE_A, 1);
  s.b = constant_model_file ("swap-b.safetensors", VALUE_B, 1);
  s.bad = garbage_file ("swap-bad.safetensors");
  r = rig_new (s.a, 48000, 1, NULL);
  s.e = r->e;

  thread = g_thread_new ("swapper", swapper_thread, &s);
  for (guint i = 0; i < 1000; i++) {
    g_assert_cmpint (rig_push (r, x, 480), ==, GST_FLOW_OK);
    g_usleep (100);
  }
  g_thread_join (thread);
  g_array_unref (rig_pull_all (r, bufs));

  /* nothing lost or duplicated, every buffer from one model */
  g_assert_cmpuint (bufs->len, ==, 1000);
  for (guint i = 0; i < bufs->len; i++) {
    GstBuffer *b = g_ptr_array_index (bufs, i);
    float v = buffer_value (b);

    g_assert_cmpuint (gst_buffer_get_size (b), ==, 480 * sizeof (float));
    g_assert_cmpuint (GST_BUFFER_PTS (b), ==, frames_time (480 * i, 48000));
    g_assert_cmpuint (GST_BUFFER_OFFSET (b), ==, 480 * i);
    if (v == VALUE_A)
      n_a++;
    else if (v == VALUE_B)
      n_b++;
    else
      g_error ("buffer %u is not from one model (first value %g)", i,
          (double) v);
  }
  g_test_message ("%u buffers from model A, %u from model B", n_a, n_b);
  g_assert_cmpuint (n_a, >, 0);
  g_assert_cmpuint (n_b, >, 0);
  /* the bad file warned and changed nothing; the last swap (B) wins */
  g_assert_true (wait_for_warning (r->bus, s.bad));
  g_assert_true (wait_for_value (r, x, VALUE_B));

  g_ptr_array_unref (bufs);
  rig_free (r);
  g_free (s.a);
  g_free (s.b);
  g_free (s.bad);
}

/* A model that fails to load, or does not fit the caps, keeps the old one. */
static void
test_swap_rejects (void)
{
  gchar *a = constant_model_file ("keep-a.safetensors", VALUE_A, 1);
  gchar *bad = garbage_file ("keep-bad.safetensors");
  gchar *wide = constant_model_file ("keep-wide.safetensors", VALUE_B, 2);
  gchar *missing = g_build_filename (tmp_dir, "no-such.safetensors", NULL);
  const gchar *paths[] = { bad, wide, missing };
  const gchar *needles[] = { bad, "does not fit", missing };
  float x[480] = { 0 };
  Rig *r = rig_new (a, 48000, 1, NULL);

  for (guint k = 0; k < G_N_ELEMENTS (paths); k++) {
    GArray *out;

    g_object_set (r->e, "model-location", paths[k], NULL);
    g_assert_true (wait_for_warning (r->bus, needles[k]));
    for (guint i = 0; i < 5; i++)
      rig_push (r, x, 480);
    out = rig_pull_all (r, NULL);
    g_assert_cmpuint (out->len, >, 0);
    for (guint i = 0; i < out->len; i++)
      g_assert_cmpfloat (g_array_index (out, float, i), ==, VALUE_A);
    g_array_unref (out);
  }
  rig_free (r);
  g_free (a);
  g_free (bad);
  g_free (wide);
  g_free (missing);
}

/* A model of the same state shape swapped in mid-stream keeps the state:
 * the linear and softmax fixtures of one group share the rnn and head
 * weights, so after the swap the output is torch's softmax run over the
 * whole sequence. */
static void
test_swap_keeps_state (void)
{
  gchar *lin = model_path ("gru_L2_uni_I1_H33_linear");
  gchar *soft = model_path ("gru_L2_uni_I1_H33_softmax");
  Expected *e = expected_open ("gru_L2_uni_I1_H33_softmax");
  guint rows, O, n_steps, *steps;
  float *want = expected_y (e, 1000, &rows, &O);
  float *x = seq_vector (1000, 1000, 1);
  Rig *r = rig_new (lin, 16000, 1, NULL);
  GPtrArray *bufs = g_ptr_array_new_with_free_func (
      (GDestroyNotify) gst_buffer_unref);
  GArray *out;

  rig_push_chunked (r, x, 500, 100);
  g_array_unref (rig_pull_all (r, NULL));
  g_object_set (r->e, "model-location", soft, NULL);
  g_usleep (G_USEC_PER_SEC);    /* the loader has plenty of time */
  rig_push_chunked (r, x + 500, 500, 100);
  out = rig_pull_all (r, bufs);
  g_assert_false (GST_BUFFER_IS_DISCONT (g_ptr_array_index (bufs, 0)));
  steps = expected_steps (e, &n_steps);
  for (guint i = 0; i < n_steps; i++)
    if (steps[i] >= 500)
      assert_close (&g_array_index (out, float, (gsize) (steps[i] - 500) * O),
          want + (gsize) i * O, O, "state carried over the swap");

  g_free (steps);
  g_array_unref (out);
  g_ptr_array_unref (bufs);
  rig_free (r);
  g_free (x);
  g_free (want);
  expected_free (e);
  g_free (lin);
  g_free (soft);
}

/* LSTM(1, 1), no head, whose only weights feed the cell input g from x and
 * h, with the learned initial state (@h0, @c0): per step
 * i = f = o = 1/2, g = tanh(x + h), c' = (c + g) / 2, h' = tanh(c') / 2. */
static RnnModel *
initial_state_model (float h0, float c0)
{
  RnnConfig cfg;
  GError *err = NULL;
  RnnModel *m;
  float *p;

  rnn_config_init (&cfg);
  cfg.has_h0 = cfg.has_c0 = TRUE;
  m = rnn_model_new (&cfg, &err);
  g_assert_no_error (err);
  p = rnn_model_get_params (m, NULL);
  /* gate rows i, f, g, o: row 2 is g */
  p[rnn_model_get_tensor_info (m,
          rnn_model_find_tensor (m, "rnn.weight_ih_l0"))->offset + 2] = 1.0f;
  p[rnn_model_get_tensor_info (m,
          rnn_model_find_tensor (m, "rnn.weight_hh_l0"))->offset + 2] = 1.0f;
  p[rnn_model_get_tensor_info (m, rnn_model_find_tensor (m, "rnn.h0"))->offset]
      = h0;
  p[rnn_model_get_tensor_info (m, rnn_model_find_tensor (m, "rnn.c0"))->offset]
      = c0;
  rnn_model_seal (m);
  return m;
}

/* @model's outputs for @x ([T][C], C independent streams) from its own
 * initial state, by the core. */
static float *
fresh_outputs (RnnModel *model, const float *x, guint T, guint C)
{
  RnnForward *fw = rnn_forward_new ();
  RnnState *st = rnn_state_new (model, C);
  float *y = g_new (float, (gsize) T * C);

  rnn_forward (fw, model, st, x, T, C, y);
  rnn_state_free (st);
  rnn_forward_free (fw);
  return y;
}

/* Two models with the same weights and different learned initial states:
 * swapped mid-stream the state carries over (the output continues the old
 * model's sequence), and every reset after the swap (a DISCONT buffer, the
 * reset signal, a flush) starts from the NEW model's rnn.h0 / rnn.c0. */
static void
test_swap_initial_state (void)
{
  const guint C = 2, T = 64;
  RnnModel *a = initial_state_model (0.8f, -0.4f);
  RnnModel *b = initial_state_model (-0.7f, 0.9f);
  gchar *pa = save_model (a, "h0-a.safetensors");
  gchar *pb = save_model (b, "h0-b.safetensors");
  float *x = g_new (float, (gsize) 2 * T * C), *want;
  GPtrArray *bufs = g_ptr_array_new_with_free_func (
      (GDestroyNotify) gst_buffer_unref);
  Rig *r = rig_new (pa, 48000, C, NULL);
  GArray *out;
  double c, h;

  for (guint k = 0; k < 2 * T * C; k++)
    x[k] = 0.9f * sinf (0.37f * k + 0.2f);

  /* T frames with A, T more after the swap to B: A's sequence throughout */
  g_assert_cmpint (rig_push (r, x, T), ==, GST_FLOW_OK);
  g_array_unref (rig_pull_all (r, NULL));
  g_object_set (r->e, "model-location", pb, NULL);
  g_usleep (G_USEC_PER_SEC);    /* the loader has plenty of time */
  g_assert_cmpint (rig_push (r, x + (gsize) T * C, T), ==, GST_FLOW_OK);
  out = rig_pull_all (r, bufs);
  g_assert_false (GST_BUFFER_IS_DISCONT (g_ptr_array_index (bufs, 0)));
  want = fresh_outputs (a, x, 2 * T, C);
  g_assert_cmpuint (out->len, ==, (gsize) T * C);
  assert_close ((float *) out->data, want + (gsize) T * C, (gsize) T * C,
      "state carried over the swap");
  g_free (want);
  g_array_unref (out);

  /* the first step after a reset, by hand from B's h0 = -0.7, c0 = 0.9 */
  c = (0.9 + tanh (x[0] - 0.7)) / 2;
  h = tanh (c) / 2;
  want = fresh_outputs (b, x, T, C);
  g_assert_cmpfloat (fabs (want[0] - h), <, 1e-6);

  for (guint how = 0; how < 3; how++) {
    GstBufferFlags flags = 0;

    if (how == 0)
      flags = GST_BUFFER_FLAG_DISCONT;
    else if (how == 1)
      g_signal_emit_by_name (r->e, "reset");
    else {
      GstSegment segment;

      gst_segment_init (&segment, GST_FORMAT_TIME);
      g_assert_true (gst_harness_push_event (r->h,
              gst_event_new_flush_start ()));
      g_assert_true (gst_harness_push_event (r->h,
              gst_event_new_flush_stop (TRUE)));
      g_assert_true (gst_harness_push_event (r->h,
              gst_event_new_segment (&segment)));
    }
    g_assert_cmpint (rig_push_flags (r, x, T, flags), ==, GST_FLOW_OK);
    out = rig_pull_all (r, NULL);
    g_assert_cmpuint (out->len, ==, (gsize) T * C);
    assert_close ((float *) out->data, want, (gsize) T * C,
        how == 0 ? "after a DISCONT: B from its own initial state"
        : how == 1 ? "after the reset signal: B from its own initial state"
        : "after a flush: B from its own initial state");
    g_array_unref (out);
  }

  g_free (want);
  g_ptr_array_unref (bufs);
  rig_free (r);
  g_free (x);
  g_free (pa);
  g_free (pb);
  rnn_model_unref (a);
  rnn_model_unref (b);
}

/* reload-on-change picks up an atomic rewrite (temporary file + rename),
 * with no main loop running in the application. */
static void
test_reload_on_change (void)
{
  gchar *path = constant_model_file ("watched.safetensors", VALUE_A, 1);
  RnnModel *b = constant_model (VALUE_B, 1), *a = constant_model (VALUE_A, 1);
  float x[480] = { 0 };
  GError *err = NULL;
  Rig *r = rig_new (path, 48000, 1, "reload-on-change", TRUE, NULL);

  g_assert_true (wait_for_value (r, x, VALUE_A));
  g_assert_true (rnn_model_save (b, path, &err));
  g_assert_no_error (err);
  g_assert_true (wait_for_value (r, x, VALUE_B));
  /* and again, back */
  g_assert_true (rnn_model_save (a, path, &err));
  g_assert_no_error (err);
  g_assert_true (wait_for_value (r, x, VALUE_A));

  rig_free (r);
  rnn_model_unref (a);
  rnn_model_unref (b);
  g_free (path);
}

/* ---- bad samples --------------------------------------------------------- */

static guint
count_warnings (GstBus *bus, const char *needle)
{
  GPtrArray *msgs = bus_collect (bus, GST_MESSAGE_WARNING);
  guint n = 0;

  for (guint i = 0; i < msgs->len; i++) {
    gchar *text = message_text (g_ptr_array_index (msgs, i));

    g_test_message ("warning: %s", text);
    if (strstr (text, needle))
      n++;
    g_free (text);
  }
  g_ptr_array_unref (msgs);
  return n;
}

/* Non-finite values act as 0.0 and never poison the state; one warning per
 * run of bad values. */
static void
test_non_finite (void)
{
  gchar *path = model_path ("lstm_L2_uni_I1_H33_linear");
  float *x = seq_vector (1000, 2400, 1), *clean = seq_vector (1000, 2400, 1);
  GArray *got, *want;
  Rig *r;
  struct
  {
    guint from, to;
    float v;
  } runs[] = {
    {100, 105, NAN},            /* in buffer 0 */
    {530, 531, INFINITY},       /* in buffer 1 */
    {1430, 1450, -INFINITY},    /* from buffer 2 into buffer 3 */
    {2000, 2010, NAN},          /* two runs in buffer 4: one warning */
    {2020, 2030, NAN},
  };

  for (guint k = 0; k < G_N_ELEMENTS (runs); k++)
    for (guint i = runs[k].from; i < runs[k].to; i++) {
      x[i] = runs[k].v;
      clean[i] = 0.0f;
    }

  r = rig_new (path, 48000, 1, NULL);
  rig_push_chunked (r, x, 2400, 480);
  rig_eos (r);
  got = rig_pull_all (r, NULL);
  g_assert_cmpuint (count_warnings (r->bus, "Non-finite"), ==, 4);
  rig_free (r);

  r = rig_new (path, 48000, 1, NULL);
  rig_push_chunked (r, clean, 2400, 480);
  rig_eos (r);
  want = rig_pull_all (r, NULL);
  g_assert_cmpuint (count_warnings (r->bus, "Non-finite"), ==, 0);
  rig_free (r);

  g_assert_cmpuint (got->len, ==, want->len);
  for (guint i = 0; i < got->len; i++)
    g_assert_true (isfinite (g_array_index (got, float, i)));
  g_assert_cmpmem (got->data, got->len * sizeof (float), want->data,
      want->len * sizeof (float));

  g_array_unref (got);
  g_array_unref (want);
  g_free (x);
  g_free (clean);
  g_free (path);
}

/* A run that ends with its buffer is closed by the next value, even when
 * that buffer is all finite (which the element copies without looking at
 * each value): a later run in a third buffer is a new run and warns again,
 * and the outputs are those of the input with zeros in the runs. */
static void
test_non_finite_run_at_buffer_end (void)
{
  gchar *path = model_path ("lstm_L2_uni_I1_H33_linear");
  float *x = seq_vector (1440, 1440, 1), *clean = seq_vector (1440, 1440, 1);
  GArray *got, *want;
  Rig *r;

  for (guint i = 470; i < 480; i++)     /* the last ten of buffer 0 */
    x[i] = NAN, clean[i] = 0.0f;
  for (guint i = 960; i < 965; i++)     /* the first five of buffer 2; buffer
                                         * 1 is all finite */
    x[i] = NAN, clean[i] = 0.0f;

  r = rig_new (path, 48000, 1, NULL);
  rig_push_chunked (r, x, 1440, 480);
  rig_eos (r);
  got = rig_pull_all (r, NULL);
  g_assert_cmpuint (count_warnings (r->bus, "Non-finite"), ==, 2);
  rig_free (r);

  want = run_once (path, 48000, 1, clean, 1440, NULL);
  g_assert_cmpuint (got->len, ==, want->len);
  g_assert_cmpmem (got->data, got->len * sizeof (float), want->data,
      want->len * sizeof (float));

  g_array_unref (got);
  g_array_unref (want);
  g_free (x);
  g_free (clean);
  g_free (path);
}

/* A dead channel (all NaN) in independent mode is one run: one warning;
 * the other channel is unaffected. */
static void
test_non_finite_channel (void)
{
  gchar *path = model_path ("gru_L1_uni_I1_H33_linear");
  float *x = g_new (float, 2 * 4800), *mono = seq_vector (4800, 4800, 1);
  GArray *got, *ref;
  Rig *r;

  for (guint k = 0; k < 4800; k++) {
    x[2 * k] = NAN;
    x[2 * k + 1] = mono[k];
  }
  r = rig_new (path, 48000, 2, NULL);
  rig_push_chunked (r, x, 4800, 480);
  rig_eos (r);
  got = rig_pull_all (r, NULL);
  g_assert_cmpuint (count_warnings (r->bus, "Non-finite"), ==, 1);
  rig_free (r);

  ref = run_once (path, 48000, 1, mono, 4800, NULL);
  g_assert_cmpuint (got->len, ==, 2 * ref->len);
  for (guint k = 0; k < 4800; k++)
    g_assert_cmpmem (&g_array_index (got, float, k * 6 + 3), 3 * sizeof (float),
        &g_array_index (ref, float, k * 3), 3 * sizeof (float));

  g_array_unref (got);
  g_array_unref (ref);
  g_free (x);
  g_free (mono);
  g_free (path);
}

/* ---- messages ------------------------------------------------------------ */

static void
test_messages (void)
{
  const char *name = "gru_L1_uni_I5_H8_softmax";
  gchar *path = model_path (name);
  Expected *e = expected_open (name);
  guint rows, O;
  float *want = expected_y (e, 17, &rows, &O);
  float *x = seq_vector (17, 17, 5);
  Rig *r = rig_new (path, 1000, 5, "message-interval", 4, NULL);
  GPtrArray *msgs;

  r->start = GST_SECOND;
  rig_push_chunked (r, x, 17, 5);
  rig_eos (r);
  g_array_unref (rig_pull_all (r, NULL));
  msgs = bus_collect (r->bus, GST_MESSAGE_ELEMENT);
  g_assert_cmpuint (msgs->len, ==, 4);  /* steps 3, 7, 11, 15 */
  for (guint i = 0; i < msgs->len; i++) {
    const GstStructure *s =
        gst_message_get_structure (g_ptr_array_index (msgs, i));
    const guint t = 4 * i + 3;
    const float *y = want + (gsize) t * O;
    const GValue *values;
    GValueArray *arr;
    guint64 ts;
    gint cls, best = 0;
    gdouble conf;
    float got[16];

    g_assert_true (gst_structure_has_name (s, "rnnfilter-output"));
    g_assert_true (gst_structure_get_uint64 (s, "timestamp", &ts));
    g_assert_cmpuint (ts, ==, GST_SECOND + frames_time (t, 1000));
    /* a GValueArray of doubles, as level posts, readable from PyGObject */
    values = gst_structure_get_value (s, "values");
    G_GNUC_BEGIN_IGNORE_DEPRECATIONS;
    g_assert_true (G_VALUE_HOLDS (values, g_value_array_get_type ()));
    arr = g_value_get_boxed (values);
    g_assert_cmpuint (arr->n_values, ==, O);
    for (guint o = 0; o < O; o++) {
      got[o] = g_value_get_double (g_value_array_get_nth (arr, o));
      if (y[o] > y[best])
        best = o;
    }
    G_GNUC_END_IGNORE_DEPRECATIONS;
    assert_close (got, y, O, "message values");
    g_assert_true (gst_structure_get_int (s, "class", &cls));
    g_assert_cmpint (cls, ==, best);
    g_assert_true (gst_structure_get_double (s, "confidence", &conf));
    g_assert_cmpfloat_with_epsilon (conf, y[best], TOL);
    g_assert_false (gst_structure_has_field (s, "channel"));
  }
  g_ptr_array_unref (msgs);
  rig_free (r);
  g_free (x);
  g_free (want);
  expected_free (e);
  g_free (path);
}

/* Independent mode: one message per channel; no class without softmax. */
static void
test_messages_independent (void)
{
  gchar *path = model_path ("lstm_L1_uni_I1_H8_linear");
  float x[2 * 100] = { 0 };
  Rig *r = rig_new (path, 100, 2, "message-interval", 10, NULL);
  GPtrArray *msgs;
  guint per_channel[2] = { 0, 0 };

  rig_push_chunked (r, x, 100, 33);
  msgs = bus_collect (r->bus, GST_MESSAGE_ELEMENT);
  g_assert_cmpuint (msgs->len, ==, 20);
  for (guint i = 0; i < msgs->len; i++) {
    const GstStructure *s =
        gst_message_get_structure (g_ptr_array_index (msgs, i));
    gint ch;

    g_assert_true (gst_structure_has_name (s, "rnnfilter-output"));
    g_assert_true (gst_structure_get_int (s, "channel", &ch));
    g_assert_true (ch == 0 || ch == 1);
    per_channel[ch]++;
    g_assert_false (gst_structure_has_field (s, "class"));
    G_GNUC_BEGIN_IGNORE_DEPRECATIONS;
    g_assert_cmpuint (((GValueArray *) g_value_get_boxed
            (gst_structure_get_value (s, "values")))->n_values, ==, 3);
    G_GNUC_END_IGNORE_DEPRECATIONS;
  }
  g_assert_cmpuint (per_channel[0], ==, 10);
  g_assert_cmpuint (per_channel[1], ==, 10);
  g_ptr_array_unref (msgs);
  rig_free (r);
  g_free (path);
}

/* ---- refusals ------------------------------------------------------------ */

/* Caps the model cannot take: the CAPS event is refused, buffers are
 * not-negotiated and the error says what the model needs. */
static void
check_refused (const char *model, guint rate, guint channels,
    const char *needle, const char *first_prop, ...)
{
  Rig *r;
  va_list args;
  gchar *caps = caps_string (rate, channels);
  GstCaps *refused;
  GstSegment segment;
  float x[64] = { 0 };
  GstMessage *m;
  gchar *text;
  guint errors = 1;

  va_start (args, first_prop);
  r = rig_open ("rnnfilter", model, first_prop, args);
  va_end (args);
  rig_start (r, 0, channels);   /* the caps are pushed below */
  r->rate = rate;

  /* a sticky event counts as handled even when refused: the buffer tells */
  refused = gst_caps_from_string (caps);
  gst_harness_push_event (r->h, gst_event_new_caps (refused));
  gst_caps_unref (refused);
  gst_segment_init (&segment, GST_FORMAT_TIME);
  gst_harness_push_event (r->h, gst_event_new_segment (&segment));
  g_assert_cmpint (rig_push (r, x, 64 / channels), ==,
      GST_FLOW_NOT_NEGOTIATED);
  /* the pad offers the refused caps again with every buffer: still one
   * negotiation, one error */
  g_assert_cmpint (rig_push (r, x, 64 / channels), ==,
      GST_FLOW_NOT_NEGOTIATED);
  m = gst_bus_pop_filtered (r->bus, GST_MESSAGE_ERROR);
  g_assert_nonnull (m);
  text = message_text (m);
  g_test_message ("error: %s", text);
  if (!strstr (text, needle))
    g_error ("error \"%s\" does not say \"%s\"", text, needle);
  g_free (text);
  gst_message_unref (m);
  /* exactly one error for the one refused negotiation */
  while ((m = gst_bus_pop_filtered (r->bus, GST_MESSAGE_ERROR))) {
    text = message_text (m);
    g_test_message ("another error: %s", text);
    g_free (text);
    gst_message_unref (m);
    errors++;
  }
  g_assert_cmpuint (errors, ==, 1);
  rig_free (r);
  g_free (caps);
}

static void
test_not_negotiated (void)
{
  gchar *vec = model_path ("gru_L1_uni_I5_H8_linear");
  gchar *mono = model_path ("gru_L1_uni_I1_H8_linear");
  gchar *sr = derive_model ("gru_L1_uni_I1_H8_linear", "sr16k", 1, 1, 0, 16000);
  gchar *fs4 = derive_model ("gru_L2_uni_I5_H8_linear", "fs5", 5, 1, 0, 0);

  check_refused (vec, 48000, 2, "model expects 5 channels, stream has 2",
      NULL);
  check_refused (vec, 48000, 1, "needs a single-channel model",
      "channel-mode", GST_RNN_FILTER_CHANNEL_MODE_INDEPENDENT, NULL);
  check_refused (mono, 48000, 2, "model expects 1 channel, stream has 2",
      "channel-mode", GST_RNN_FILTER_CHANNEL_MODE_VECTOR, NULL);
  check_refused (sr, 48000, 1, "16000 Hz", NULL);
  check_refused (fs4, 44101, 1, "not a whole number", NULL);

  g_free (vec);
  g_free (mono);
  g_free (sr);
  g_free (fs4);
}

/* Caps queries answer what the model takes. */
static void
test_caps_query (void)
{
  gchar *fs5 = derive_model ("gru_L2_uni_I5_H8_linear", "fs5-q", 5, 3, 0, 0);
  gchar *sr = derive_model ("gru_L1_uni_I5_H8_linear", "sr8k", 1, 1, 0, 8000);
  GstElement *e = gst_element_factory_make ("rnnfilter", NULL);
  GstPad *sink = gst_element_get_static_pad (e, "sink");
  GstPad *src = gst_element_get_static_pad (e, "src");
  GstCaps *caps, *want;

  g_object_set (e, "model-location", fs5, NULL);
  /* independent-capable: channels scale by C_out = 1, rate by 3/5 */
  want = gst_caps_from_string ("audio/x-raw, format=F32LE, "
      "layout=interleaved, rate=28800, channels=2");
  caps = gst_pad_query_caps (src, want);
  g_assert_false (gst_caps_is_empty (caps));
  gst_caps_unref (caps);
  gst_caps_unref (want);
  caps = gst_pad_query_caps (sink, NULL);
  want = gst_caps_from_string ("audio/x-raw, format=F32LE, "
      "layout=interleaved, rate=48000, channels=2");
  g_assert_true (gst_caps_can_intersect (caps, want));
  gst_caps_unref (want);
  want = gst_caps_from_string ("audio/x-raw, format=F32LE, "
      "layout=interleaved, rate=44101, channels=2");
  g_assert_false (gst_caps_can_intersect (caps, want));
  gst_caps_unref (want);
  gst_caps_unref (caps);

  /* NULL state: the new model is loaded for the query */
  g_object_set (e, "model-location", sr, NULL);
  caps = gst_pad_query_caps (sink, NULL);
  want = gst_caps_from_string ("audio/x-raw, format=F32LE, "
      "layout=interleaved, rate=8000, channels=5");
  g_assert_true (gst_caps_can_intersect (caps, want));
  g_assert_true (gst_caps_is_fixed (caps) || gst_caps_get_size (caps) >= 1);
  gst_caps_unref (want);
  want = gst_caps_from_string ("audio/x-raw, rate=48000");
  g_assert_false (gst_caps_can_intersect (caps, want));
  gst_caps_unref (want);
  want = gst_caps_from_string ("audio/x-raw, channels=2");
  g_assert_false (gst_caps_can_intersect (caps, want));
  gst_caps_unref (want);
  gst_caps_unref (caps);

  gst_object_unref (sink);
  gst_object_unref (src);
  gst_object_unref (e);
  g_free (fs5);
  g_free (sr);
}

/* A model with one output per input channel keeps the channel positions;
 * one with three outputs per channel makes unpositioned channels. */
static void
test_caps_positions (void)
{
  gchar *one = model_path ("gru_L1_uni_I1_H1_none");
  gchar *three = model_path ("gru_L1_uni_I1_H8_linear");
  const char *in = "audio/x-raw, format=F32LE, layout=interleaved, "
      "rate=48000, channels=2, channel-mask=(bitmask)0x3";
  GstStructure *s;
  GstCaps *caps;
  guint64 mask;
  Rig *r;

  r = rig_new (one, 0, 2, NULL);
  gst_harness_set_src_caps_str (r->h, in);
  caps = gst_pad_get_current_caps (r->h->sinkpad);
  s = gst_caps_get_structure (caps, 0);
  g_assert_true (gst_structure_get (s, "channel-mask", GST_TYPE_BITMASK,
          &mask, NULL));
  g_assert_cmphex (mask, ==, 0x3);
  gst_caps_unref (caps);
  rig_free (r);

  r = rig_new (three, 0, 2, NULL);
  gst_harness_set_src_caps_str (r->h, in);
  caps = gst_pad_get_current_caps (r->h->sinkpad);
  s = gst_caps_get_structure (caps, 0);
  g_assert_true (gst_structure_get (s, "channel-mask", GST_TYPE_BITMASK,
          &mask, NULL));
  g_assert_cmphex (mask, ==, 0);
  gst_caps_unref (caps);
  rig_free (r);
  g_free (one);
  g_free (three);
}

/* No model, or a model that cannot be read: the state change fails with an
 * error naming the file and the reason. */
static void
check_start_fails (const char *location, GQuark domain, gint code,
    const char *needle)
{
  GstElement *e = gst_element_factory_make ("rnnfilter", NULL);
  GstBus *bus = gst_bus_new ();
  GstMessage *m;
  GError *err = NULL;
  gchar *dbg = NULL;

  gst_element_set_bus (e, bus);
  if (location)
    g_object_set (e, "model-location", location, NULL);
  g_assert_cmpint (gst_element_set_state (e, GST_STATE_PAUSED), ==,
      GST_STATE_CHANGE_FAILURE);
  m = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  g_assert_nonnull (m);
  gst_message_parse_error (m, &err, &dbg);
  g_test_message ("error: %s", err->message);
  g_assert_error (err, domain, code);
  if (!strstr (err->message, needle))
    g_error ("error \"%s\" does not name \"%s\"", err->message, needle);
  g_error_free (err);
  g_free (dbg);
  gst_message_unref (m);
  gst_element_set_state (e, GST_STATE_NULL);
  gst_element_set_bus (e, NULL);
  gst_object_unref (e);
  gst_object_unref (bus);
}

static void
test_start_fails (void)
{
  gchar *missing = g_build_filename (tmp_dir, "missing.safetensors", NULL);
  gchar *corrupt = garbage_file ("corrupt.safetensors");
  gchar *bi = model_path ("gru_L1_bi_I1_H8_linear");

  check_start_fails (NULL, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
      "model-location");
  check_start_fails (missing, GST_RESOURCE_ERROR,
      GST_RESOURCE_ERROR_NOT_FOUND, missing);
  check_start_fails (corrupt, GST_RESOURCE_ERROR,
      GST_RESOURCE_ERROR_OPEN_READ, corrupt);
  check_start_fails (bi, GST_LIBRARY_ERROR, GST_LIBRARY_ERROR_SETTINGS,
      "window");
  g_free (missing);
  g_free (corrupt);
  g_free (bi);
}

/* ---- pipelines ----------------------------------------------------------- */

static void
on_handoff (GstElement *sink, GstBuffer *buf, GstPad *pad, gpointer data)
{
  guint64 *bytes = data;

  *bytes += gst_buffer_get_size (buf);
}

static void
test_pipeline_audiotestsrc (void)
{
  struct
  {
    const char *caps;
    guint out_channels;
  } cases[] = {
    {"audio/x-raw, channels=1", 3},
    {"audio/x-raw, channels=2", 6},     /* independent */
  };
  gchar *path = model_path ("lstm_L1_uni_I1_H33_softmax");

  for (guint k = 0; k < G_N_ELEMENTS (cases); k++) {
    gchar *desc = g_strdup_printf ("audiotestsrc num-buffers=20 "
        "samplesperbuffer=480 ! %s ! audioconvert ! rnnfilter "
        "model-location=\"%s\" ! fakesink name=sink signal-handoffs=true",
        cases[k].caps, path);
    GError *err = NULL;
    GstElement *pipeline = gst_parse_launch (desc, &err);
    GstElement *sink;
    guint64 bytes = 0;

    g_assert_no_error (err);
    sink = gst_bin_get_by_name (GST_BIN (pipeline), "sink");
    g_signal_connect (sink, "handoff", G_CALLBACK (on_handoff), &bytes);
    run_pipeline (pipeline);
    g_assert_cmpuint (bytes, ==,
        20 * 480 * cases[k].out_channels * sizeof (float));
    gst_object_unref (sink);
    gst_object_unref (pipeline);
    g_free (desc);
  }
  g_free (path);
}

/* filesrc ! rawaudioparse ! rnnfilter ! filesink: the frame count of the
 * file, and the same bytes as the element fed in one buffer. */
static void
test_pipeline_filesrc (void)
{
  const guint frames = 10007, C = 2;
  gchar *model = derive_model ("lstm_L2_uni_I5_H8_linear", "fs5-pipe", 5, 1,
      0, 0);
  gchar *in = g_build_filename (tmp_dir, "in.raw", NULL);
  gchar *out = g_build_filename (tmp_dir, "out.raw", NULL);
  float *x = g_new (float, frames * C);
  gchar *desc, *data;
  gsize size;
  GError *err = NULL;
  GstElement *pipeline;
  GArray *ref;

  for (guint k = 0; k < frames * C; k++)
    x[k] = fixture_input (77, k / C, k % C);
  g_assert_true (g_file_set_contents (in, (const gchar *) x,
          frames * C * sizeof (float), NULL));
  desc = g_strdup_printf ("filesrc location=\"%s\" blocksize=4000 ! "
      "rawaudioparse use-sink-caps=false format=pcm pcm-format=f32le "
      "sample-rate=48000 num-channels=%u ! rnnfilter model-location=\"%s\" ! "
      "filesink location=\"%s\"", in, C, model, out);
  pipeline = gst_parse_launch (desc, &err);
  g_assert_no_error (err);
  run_pipeline (pipeline);
  gst_object_unref (pipeline);

  g_assert_true (g_file_get_contents (out, &data, &size, NULL));
  /* ⌈10007 / 5⌉ steps, 3 outputs per channel */
  g_assert_cmpuint (size, ==, ceil_div (frames, 5) * C * 3 * sizeof (float));
  ref = run_once (model, 48000, C, x, frames, NULL);
  g_assert_cmpmem (data, size, ref->data, ref->len * sizeof (float));

  g_array_unref (ref);
  g_free (data);
  g_free (desc);
  g_free (x);
  g_free (in);
  g_free (out);
  g_free (model);
}

/* ---- main ---------------------------------------------------------------- */

int
main (int argc, char **argv)
{
  int ret;

  g_test_init (&argc, &argv, NULL);
  gst_init (&argc, &argv);
  g_assert_true (GST_ELEMENT_REGISTER (rnnfilter, NULL));
  tmp_dir = g_dir_make_tmp ("test-rnnfilter-XXXXXX", NULL);
  g_assert_nonnull (tmp_dir);

  g_test_add_func ("/rnnfilter/parity/unidirectional",
      test_parity_unidirectional);
  g_test_add_func ("/rnnfilter/parity/bidirectional",
      test_parity_bidirectional);
  g_test_add_func ("/rnnfilter/parity/frame-size", test_parity_frame_size);
  g_test_add_func ("/rnnfilter/parity/weight-precision", test_weight_precision);
  g_test_add_func ("/rnnfilter/parity/threads", test_threads);
  g_test_add_func ("/rnnfilter/parity/independent", test_parity_independent);
  g_test_add_func ("/rnnfilter/parity/independent-bidirectional",
      test_parity_independent_bidirectional);
  g_test_add_func ("/rnnfilter/buffer-size-invariance",
      test_buffer_size_invariance);
  g_test_add_func ("/rnnfilter/sample-conservation",
      test_sample_conservation);
  g_test_add_func ("/rnnfilter/reset/none", test_reset_none);
  g_test_add_func ("/rnnfilter/reset/flush-stop", test_reset_flush_stop);
  g_test_add_func ("/rnnfilter/reset/stream-start", test_reset_stream_start);
  g_test_add_func ("/rnnfilter/reset/discont", test_reset_discont);
  g_test_add_func ("/rnnfilter/reset/discont-disabled",
      test_reset_discont_disabled);
  g_test_add_func ("/rnnfilter/reset/signal", test_reset_signal);
  g_test_add_func ("/rnnfilter/time/timestamps", test_timestamps);
  g_test_add_func ("/rnnfilter/time/discont", test_timestamps_discont);
  g_test_add_func ("/rnnfilter/time/latency", test_latency);
  g_test_add_func ("/rnnfilter/model/hot-swap", test_hot_swap);
  g_test_add_func ("/rnnfilter/model/swap-rejects", test_swap_rejects);
  g_test_add_func ("/rnnfilter/model/swap-keeps-state", test_swap_keeps_state);
  g_test_add_func ("/rnnfilter/model/swap-initial-state",
      test_swap_initial_state);
  g_test_add_func ("/rnnfilter/model/reload-on-change", test_reload_on_change);
  g_test_add_func ("/rnnfilter/non-finite/runs", test_non_finite);
  g_test_add_func ("/rnnfilter/non-finite/run-ending-with-its-buffer",
      test_non_finite_run_at_buffer_end);
  g_test_add_func ("/rnnfilter/non-finite/dead-channel",
      test_non_finite_channel);
  g_test_add_func ("/rnnfilter/messages/softmax", test_messages);
  g_test_add_func ("/rnnfilter/messages/independent",
      test_messages_independent);
  g_test_add_func ("/rnnfilter/caps/not-negotiated", test_not_negotiated);
  g_test_add_func ("/rnnfilter/caps/query", test_caps_query);
  g_test_add_func ("/rnnfilter/caps/positions", test_caps_positions);
  g_test_add_func ("/rnnfilter/start-fails", test_start_fails);
  g_test_add_func ("/rnnfilter/pipeline/audiotestsrc",
      test_pipeline_audiotestsrc);
  g_test_add_func ("/rnnfilter/pipeline/filesrc", test_pipeline_filesrc);

  ret = g_test_run ();
  remove_tree (tmp_dir);
  g_free (tmp_dir);
  return ret;
}
