/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnnfilter under stream faults, bad data, state changes and concurrent
 * control.
 *
 * Every case states the behaviour it expects in its comment.  Expected
 * numbers come from the core library run over the same samples
 * (rnn_forward), from a fresh element fed the same buffers, or from exact
 * frame and sample-count arithmetic, never from an earlier run of the
 * element itself.  Models are made here from a seeded generator.
 */
#include "test-common.h"
#include "element-rig.h"
#include "alloc-hook.h"
#include "tsan-glib.h"
#include "../../plugins/gstrnnelements.h"
#include "../../plugins/gstrnnfilter.h"

#include <gst/gst.h>
#include <gst/check/gstharness.h>
#include <glib/gstdio.h>
#include <float.h>

static gchar *tmp_dir;

/* ---- models -------------------------------------------------------------- */

typedef struct
{
  RnnModel *model;
  gchar *path;
} Model;

static guint32
rng_next (guint32 *s)
{
  guint32 x = *s;               /* xorshift32 */
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

/* A model with weights uniform in ±@scale (with @norm, input.mean in
 * ±@scale and input.std 0.01), saved under tmp_dir. */
static Model
make_model_full (const char *name, RnnCell cell, guint I, guint H, guint L,
    gboolean bidi, guint O, guint f_in, guint f_out, guint window,
    float scale, guint32 seed, gboolean norm)
{
  RnnConfig cfg;
  GError *err = NULL;
  Model m;
  float *p;
  gsize n;
  gchar *file;

  rnn_config_init (&cfg);
  cfg.cell = cell;
  cfg.input_size = I;
  cfg.hidden_size = H;
  cfg.num_layers = L;
  cfg.bidirectional = bidi;
  cfg.has_head = O > 0;
  cfg.output_size = O;
  cfg.frame_size = f_in;
  cfg.output_frame_size = f_out;
  cfg.window = window;
  cfg.has_input_norm = norm;
  m.model = rnn_model_new (&cfg, &err);
  g_assert_no_error (err);
  p = rnn_model_get_params (m.model, &n);
  for (gsize i = 0; i < n; i++)
    p[i] = ((float) (rng_next (&seed) >> 8) / 8388608.0f - 1.0f) * scale;
  if (norm) {
    const RnnParamInfo *std = rnn_model_get_tensor_info (m.model,
        rnn_model_find_tensor (m.model, "input.std"));

    for (gsize i = 0; i < std->numel; i++)
      p[std->offset + i] = 0.01f;
  }
  rnn_model_seal (m.model);
  file = g_strconcat (name, ".safetensors", NULL);
  m.path = g_build_filename (tmp_dir, file, NULL);
  g_free (file);
  g_assert_true (rnn_model_save (m.model, m.path, &err));
  g_assert_no_error (err);
  return m;
}

static Model
make_model (const char *name, RnnCell cell, guint I, guint H, guint L,
    gboolean bidi, guint O, guint f_in, guint f_out, guint window,
    float scale, guint32 seed)
{
  return make_model_full (name, cell, I, H, L, bidi, O, f_in, f_out, window,
      scale, seed, FALSE);
}

static void
model_clear (Model *m)
{
  g_clear_pointer (&m->model, rnn_model_unref);
  g_clear_pointer (&m->path, g_free);
}

/* The shipped model (LSTM 1 -> 8 -> 1, 48 kHz). */
static gchar *
softclip_path (void)
{
  return g_test_build_filename (G_TEST_DIST, "..", "models",
      "softclip-lstm8.safetensors", NULL);
}

/* The core over @frames interleaved frames of a vector-mode stream (B = 1),
 * continuing @state (NULL: a fresh one; bidirectional models: whole
 * windows of @window steps, the last one shorter).  A partial last step is
 * zero-padded and yields ⌈r·F_out/F_in⌉ frames, as the element documents.
 * Returns the interleaved output frames; *n_out receives their count. */
static float *
core_run (const RnnModel *model, RnnState *state, const float *x,
    guint64 frames, guint window, guint64 *n_out)
{
  const RnnConfig *cfg = rnn_model_get_config (model);
  const guint f_in = cfg->frame_size, f_out = cfg->output_frame_size;
  const guint I = cfg->input_size, O = rnn_model_get_output_size (model);
  const guint C_in = I / f_in;
  const guint64 T = (frames + f_in - 1) / f_in;
  const guint64 rest = frames % f_in;
  float *xp = g_new0 (float, T * I + 1), *y = g_new (float, T * O + 1);
  RnnForward *fw = rnn_forward_new ();
  RnnState *own = NULL;

  memcpy (xp, x, frames * C_in * sizeof (float));
  if (cfg->bidirectional) {
    for (guint64 t = 0; t < T; t += window) {
      guint n = (guint) MIN (window, T - t);
      rnn_forward (fw, model, NULL, xp + t * I, n, 1, y + t * O);
    }
  } else {
    if (!state)
      state = own = rnn_state_new (model, 1);
    if (T > 0)
      rnn_forward (fw, model, state, xp, (guint) T, 1, y);
  }
  *n_out = T * f_out;
  if (rest)
    *n_out -= f_out - (rest * f_out + f_in - 1) / f_in;
  if (own)
    rnn_state_free (own);
  rnn_forward_free (fw);
  g_free (xp);
  return y;
}

/* ---- a harnessed rnnfilter ---------------------------------------------- */

static GstPadProbeReturn
record_probe (GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  Rig *r = data;
  GstMiniObject *o = GST_PAD_PROBE_INFO_DATA (info);

  if (!g_atomic_int_get (&r->record))
    return GST_PAD_PROBE_OK;
  g_mutex_lock (&r->lock);
  g_ptr_array_add (r->seq, gst_mini_object_ref (o));
  g_mutex_unlock (&r->lock);
  return GST_PAD_PROBE_OK;
}

/* A started rnnfilter with @model, caps set unless @rate is 0, recording
 * what leaves its src pad from the first event on.  Trailing arguments:
 * property name/value pairs, NULL-terminated. */
static Rig *
rig_new (const char *model, guint rate, guint channels, const char *first,
    ...)
{
  Rig *r;
  GstPad *src;
  va_list args;

  va_start (args, first);
  r = rig_open ("rnnfilter", model, first, args);
  va_end (args);
  g_mutex_init (&r->lock);
  r->seq = g_ptr_array_new_with_free_func ((GDestroyNotify)
      gst_mini_object_unref);
  r->record = 1;
  src = gst_element_get_static_pad (r->e, "src");
  gst_pad_add_probe (src, GST_PAD_PROBE_TYPE_BUFFER |
      GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM, record_probe, r, NULL);
  gst_object_unref (src);
  rig_start (r, rate, channels);
  return r;
}

static void
rig_push (Rig *r, const float *x, guint frames)
{
  g_assert_cmpint (rig_push_bytes (r, x,
          (gsize) frames * r->channels * sizeof (float), 0, TRUE), ==,
      GST_FLOW_OK);
}

/* The recorded src pad sequence as a string: "B4" a buffer of 4 floats,
 * "G" a GAP, "C2" CAPS with 2 channels, "E" EOS; other events left out. */
static gchar *
rig_sequence (Rig *r)
{
  GString *s = g_string_new (NULL);

  g_mutex_lock (&r->lock);
  for (guint i = 0; i < r->seq->len; i++) {
    GstMiniObject *o = g_ptr_array_index (r->seq, i);

    if (GST_IS_BUFFER (o)) {
      g_string_append_printf (s, " B%" G_GSIZE_FORMAT,
          gst_buffer_get_size (GST_BUFFER (o)) / sizeof (float));
    } else if (GST_IS_EVENT (o)) {
      GstEvent *ev = GST_EVENT (o);
      GstCaps *caps;
      gint ch = 0;

      switch (GST_EVENT_TYPE (ev)) {
        case GST_EVENT_GAP:
          g_string_append (s, " G");
          break;
        case GST_EVENT_EOS:
          g_string_append (s, " E");
          break;
        case GST_EVENT_CAPS:
          gst_event_parse_caps (ev, &caps);
          gst_structure_get_int (gst_caps_get_structure (caps, 0),
              "channels", &ch);
          g_string_append_printf (s, " C%d", ch);
          break;
        default:
          break;
      }
    }
  }
  g_mutex_unlock (&r->lock);
  return g_strchug (g_string_free (s, FALSE));
}

static void
assert_seq (Rig *r, const char *want)
{
  gchar *got = rig_sequence (r);

  g_test_message ("src pad: %s", got);
  g_assert_cmpstr (got, ==, want);
  g_free (got);
}

/* Exactly equal floats (bit for bit: the element runs the core). */
static void
assert_same (const float *got, gsize n_got, const float *want, gsize n_want,
    const char *what)
{
  if (n_got != n_want)
    g_error ("%s: %" G_GSIZE_FORMAT " values, expected %" G_GSIZE_FORMAT,
        what, n_got, n_want);
  for (gsize i = 0; i < n_got; i++)
    if (memcmp (&got[i], &want[i], sizeof (float)) != 0)
      g_error ("%s: value %" G_GSIZE_FORMAT " is %.9g, expected %.9g", what,
          i, (double) got[i], (double) want[i]);
}

static float *
signal_frames (guint64 frames, guint C, guint32 seed)
{
  float *x = g_new (float, frames * C + 1);

  for (guint64 k = 0; k < frames * C; k++)
    x[k] = fixture_input (seed, (guint32) (k / C), (guint32) (k % C));
  return x;
}

static guint
count_messages (GstBus *bus, GstMessageType type, const char *needle)
{
  GstMessage *m;
  guint n = 0;

  while ((m = gst_bus_pop_filtered (bus, type))) {
    GError *err = NULL;
    gchar *dbg = NULL;

    if (type == GST_MESSAGE_ERROR)
      gst_message_parse_error (m, &err, &dbg);
    else
      gst_message_parse_warning (m, &err, &dbg);
    g_test_message ("%s: %s | %s", type == GST_MESSAGE_ERROR ? "error" :
        "warning", err->message, dbg ? dbg : "");
    if (!needle || strstr (err->message, needle) || (dbg && strstr (dbg,
                needle)))
      n++;
    g_error_free (err);
    g_free (dbg);
    gst_message_unref (m);
  }
  return n;
}

/* ---- flushing ------------------------------------------------------------ */

/* A flush (FLUSH_START, FLUSH_STOP, new SEGMENT) mid-stream, with frames
 * held for an incomplete step: the held frames are discarded (never
 * output), the state restarts from zero, and everything after the flush is
 * exactly what a fresh element makes of it, timestamps from the new
 * buffers, the first output buffer DISCONT. */
static void
test_flush_harness (void)
{
  Model m = make_model ("flush", RNN_CELL_LSTM, 4, 6, 1, FALSE, 2, 4, 2, 0,
      0.8f, 11);
  float *a = signal_frames (10, 1, 1), *b = signal_frames (64, 1, 2);
  float *want;
  guint64 n_want;
  GstSegment seg;
  GPtrArray *bufs = g_ptr_array_new_with_free_func ((GDestroyNotify)
      gst_buffer_unref);
  GArray *out;
  Rig *r = rig_new (m.path, 48000, 1, NULL);

  rig_push (r, a, 10);          /* 2 steps out, 2 frames held */
  out = rig_pull_all (r, NULL);
  g_assert_cmpuint (out->len, ==, 4);
  g_array_unref (out);

  g_assert_true (gst_harness_push_event (r->h, gst_event_new_flush_start ()));
  g_assert_true (gst_harness_push_event (r->h,
          gst_event_new_flush_stop (TRUE)));
  gst_segment_init (&seg, GST_FORMAT_TIME);
  g_assert_true (gst_harness_push_event (r->h, gst_event_new_segment (&seg)));
  r->start = 5 * GST_SECOND;
  r->frames_in = 0;
  rig_push (r, b, 64);
  rig_eos (r);
  out = rig_pull_all (r, bufs);

  want = core_run (m.model, NULL, b, 64, 0, &n_want);
  assert_same ((float *) out->data, out->len, want, n_want, "after a flush");
  g_assert_true (GST_BUFFER_IS_DISCONT (g_ptr_array_index (bufs, 0)));
  g_assert_cmpuint (GST_BUFFER_PTS (g_ptr_array_index (bufs, 0)), ==,
      5 * GST_SECOND);
  g_assert_cmpuint (count_messages (r->bus, GST_MESSAGE_ERROR, NULL), ==, 0);

  g_free (want);
  g_array_unref (out);
  g_ptr_array_unref (bufs);
  rig_free (r);
  g_free (a);
  g_free (b);
  model_clear (&m);
}

typedef struct
{
  GMutex lock;
  gboolean flushed;
  GPtrArray *in, *out;          /* buffers after the flush */
  guint before;                 /* output buffers before it */
} SeekLog;

static GstPadProbeReturn
seek_probe (GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  SeekLog *log = data;
  gboolean is_src = GST_PAD_DIRECTION (pad) == GST_PAD_SRC;

  g_mutex_lock (&log->lock);
  if (info->type & (GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM |
          GST_PAD_PROBE_TYPE_EVENT_FLUSH)) {
    GstEvent *ev = GST_PAD_PROBE_INFO_EVENT (info);

    if (GST_EVENT_TYPE (ev) == GST_EVENT_FLUSH_STOP && !is_src) {
      log->flushed = TRUE;
      g_ptr_array_set_size (log->in, 0);
      g_ptr_array_set_size (log->out, 0);
    }
  } else if (info->type & GST_PAD_PROBE_TYPE_BUFFER) {
    GstBuffer *b = GST_PAD_PROBE_INFO_BUFFER (info);

    if (log->flushed)
      g_ptr_array_add (is_src ? log->out : log->in, gst_buffer_ref (b));
    else if (is_src)
      log->before++;
  }
  g_mutex_unlock (&log->lock);
  return GST_PAD_PROBE_OK;
}

/* A flushing seek in a running pipeline (audiotestsrc ! rnnfilter !
 * fakesink) to [2 s, 3 s): no error; after the flush the element's output is
 * exactly that of a fresh element fed the same input buffers (state reset
 * by FLUSH_STOP), starts at the seek position with a DISCONT buffer, and has
 * as many frames as went in. */
static void
test_flush_seek_pipeline (void)
{
  gchar *model = softclip_path ();
  gchar *desc = g_strdup_printf ("audiotestsrc wave=pink-noise "
      "samplesperbuffer=441 ! audio/x-raw,format=F32LE,rate=48000,channels=1 "
      "! rnnfilter name=f model-location=\"%s\" ! fakesink sync=false", model);
  GError *err = NULL;
  GstElement *pipe = gst_parse_launch (desc, &err), *f;
  SeekLog log = { 0 };
  GstPad *sink, *src;
  GstBus *bus;
  GstMessage *msg;
  Rig *r;
  GArray *want, *got;
  guint64 frames_in = 0;

  g_assert_no_error (err);
  g_mutex_init (&log.lock);
  log.in = g_ptr_array_new_with_free_func ((GDestroyNotify) gst_buffer_unref);
  log.out = g_ptr_array_new_with_free_func ((GDestroyNotify) gst_buffer_unref);
  f = gst_bin_get_by_name (GST_BIN (pipe), "f");
  sink = gst_element_get_static_pad (f, "sink");
  src = gst_element_get_static_pad (f, "src");
  gst_pad_add_probe (sink, GST_PAD_PROBE_TYPE_BUFFER |
      GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM | GST_PAD_PROBE_TYPE_EVENT_FLUSH,
      seek_probe, &log, NULL);
  gst_pad_add_probe (src, GST_PAD_PROBE_TYPE_BUFFER, seek_probe, &log, NULL);

  bus = gst_element_get_bus (pipe);
  g_assert_cmpint (gst_element_set_state (pipe, GST_STATE_PLAYING), !=,
      GST_STATE_CHANGE_FAILURE);
  g_assert_cmpint (gst_element_get_state (pipe, NULL, NULL,
          10 * GST_SECOND), ==, GST_STATE_CHANGE_SUCCESS);
  /* mid-stream: some output has gone by */
  for (gint i = 0; i < 1000; i++) {
    guint n;

    g_mutex_lock (&log.lock);
    n = log.before;
    g_mutex_unlock (&log.lock);
    if (n >= 20)
      break;
    g_usleep (2000);
  }
  g_assert_true (gst_element_seek (pipe, 1.0, GST_FORMAT_TIME,
          GST_SEEK_FLAG_FLUSH | GST_SEEK_FLAG_ACCURATE, GST_SEEK_TYPE_SET,
          2 * GST_SECOND, GST_SEEK_TYPE_SET, 3 * GST_SECOND));
  msg = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
      GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  g_assert_nonnull (msg);
  g_assert_cmpint (GST_MESSAGE_TYPE (msg), ==, GST_MESSAGE_EOS);
  gst_message_unref (msg);
  gst_element_set_state (pipe, GST_STATE_NULL);

  g_assert_true (log.flushed);
  g_assert_cmpuint (log.in->len, >, 0);
  g_assert_cmpuint (log.out->len, >, 0);
  g_test_message ("%u output buffers before the seek, %u in / %u out after",
      log.before, log.in->len, log.out->len);
  g_assert_true (GST_BUFFER_IS_DISCONT (g_ptr_array_index (log.out, 0)));
  g_assert_cmpuint (GST_BUFFER_PTS (g_ptr_array_index (log.out, 0)), ==,
      GST_BUFFER_PTS (g_ptr_array_index (log.in, 0)));
  g_assert_cmpuint (GST_BUFFER_PTS (g_ptr_array_index (log.in, 0)), ==,
      2 * GST_SECOND);

  /* a fresh element on the same buffers */
  r = rig_new (model, 48000, 1, NULL);
  for (guint i = 0; i < log.in->len; i++) {
    GstBuffer *b = gst_buffer_copy (g_ptr_array_index (log.in, i));

    GST_BUFFER_FLAG_UNSET (b, GST_BUFFER_FLAG_DISCONT);
    frames_in += gst_buffer_get_size (b) / sizeof (float);
    g_assert_cmpint (gst_harness_push (r->h, b), ==, GST_FLOW_OK);
  }
  rig_eos (r);
  want = rig_pull_all (r, NULL);
  got = g_array_new (FALSE, FALSE, sizeof (float));
  for (guint i = 0; i < log.out->len; i++) {
    GstMapInfo map;

    gst_buffer_map (g_ptr_array_index (log.out, i), &map, GST_MAP_READ);
    g_array_append_vals (got, map.data, map.size / sizeof (float));
    gst_buffer_unmap (g_ptr_array_index (log.out, i), &map);
  }
  g_assert_cmpuint (got->len, ==, frames_in);
  assert_same ((float *) got->data, got->len, (float *) want->data, want->len,
      "after a flushing seek");

  g_array_unref (got);
  g_array_unref (want);
  rig_free (r);
  g_ptr_array_unref (log.in);
  g_ptr_array_unref (log.out);
  g_mutex_clear (&log.lock);
  gst_object_unref (bus);
  gst_object_unref (sink);
  gst_object_unref (src);
  gst_object_unref (f);
  gst_object_unref (pipe);
  g_free (desc);
  g_free (model);
}

/* ---- DISCONT ------------------------------------------------------------- */

/* A DISCONT buffer (reset-on-discont, the default) that jumps 1 s ahead
 * while 2 frames of a 4-frame step are held: the held frames are processed
 * first (zero-padded step, ⌈2·2/4⌉ = 1 output frame, on the old timeline);
 * then the state restarts: the output from the DISCONT buffer on is a fresh
 * element's, DISCONT, stamped with the new buffer's PTS. */
static void
test_discont (void)
{
  Model m = make_model ("discont", RNN_CELL_GRU, 4, 5, 2, FALSE, 2, 4, 2, 0,
      0.8f, 12);
  float *a = signal_frames (10, 1, 3), *b = signal_frames (40, 1, 4);
  float *want_a, *want_b;
  guint64 n_a, n_b;
  GPtrArray *bufs = g_ptr_array_new_with_free_func ((GDestroyNotify)
      gst_buffer_unref);
  GArray *out;
  GstBuffer *first_b;
  Rig *r = rig_new (m.path, 16000, 1, NULL);

  rig_push (r, a, 10);
  r->start = GST_SECOND;        /* 1 s ahead of where the stream was */
  g_assert_cmpint (rig_push_bytes (r, b, 40 * sizeof (float),
          GST_BUFFER_FLAG_DISCONT, TRUE), ==, GST_FLOW_OK);
  rig_eos (r);
  out = rig_pull_all (r, bufs);
  assert_seq (r, "C1 B4 B1 B20 E");

  want_a = core_run (m.model, NULL, a, 10, 0, &n_a);
  want_b = core_run (m.model, NULL, b, 40, 0, &n_b);
  g_assert_cmpuint (n_a, ==, 5);
  assert_same ((float *) out->data, 5, want_a, 5, "before the DISCONT");
  assert_same ((float *) out->data + 5, out->len - 5, want_b, n_b,
      "after the DISCONT");
  /* the padded step sits on the old timeline: output frame 4 at 8 kHz */
  g_assert_cmpuint (GST_BUFFER_PTS (g_ptr_array_index (bufs, 1)), ==,
      frames_time (4, 8000));
  first_b = g_ptr_array_index (bufs, 2);
  g_assert_true (GST_BUFFER_IS_DISCONT (first_b));
  g_assert_cmpuint (GST_BUFFER_PTS (first_b), ==,
      GST_SECOND + frames_time (10, 16000));

  g_free (want_a);
  g_free (want_b);
  g_array_unref (out);
  g_ptr_array_unref (bufs);
  rig_free (r);
  g_free (a);
  g_free (b);
  model_clear (&m);
}

/* ---- caps changes -------------------------------------------------------- */

/* Channels change mid-stream (1 -> 3, independent mode of a one-channel
 * model): the frames before the change leave with the old caps, then the
 * new src caps (3 channels), then what a fresh element makes of the 3-channel
 * stream: the state restarts for the new stream. */
static void
test_caps_channels (void)
{
  Model m = make_model ("caps-ch", RNN_CELL_LSTM, 1, 7, 1, FALSE, 1, 1, 1, 0,
      0.9f, 13);
  float *a = signal_frames (50, 1, 5), *b = signal_frames (30, 3, 6);
  GArray *out, *want;
  Rig *r = rig_new (m.path, 48000, 1, NULL), *fresh;
  gchar *caps = caps_string (48000, 3);

  rig_push (r, a, 50);
  gst_harness_set_src_caps_str (r->h, caps);
  r->channels = 3;
  rig_push (r, b, 30);
  rig_eos (r);
  out = rig_pull_all (r, NULL);
  assert_seq (r, "C1 B50 C3 B90 E");

  fresh = rig_new (m.path, 48000, 3, NULL);
  rig_push (fresh, b, 30);
  rig_eos (fresh);
  want = rig_pull_all (fresh, NULL);
  assert_same ((float *) out->data + 50, out->len - 50, (float *) want->data,
      want->len, "after the channel change");
  g_assert_cmpuint (count_messages (r->bus, GST_MESSAGE_ERROR, NULL), ==, 0);

  g_array_unref (out);
  g_array_unref (want);
  rig_free (fresh);
  rig_free (r);
  g_free (caps);
  g_free (a);
  g_free (b);
  model_clear (&m);
}

/* The rate changes mid-stream (48 kHz -> 44.1 kHz) with a model of 2 frames
 * per step: the odd frame held is processed first (a padded step) with the
 * old caps, the src rate follows (24 kHz -> 22.05 kHz) and the new stream
 * starts from zero state.  A rate the model refuses (one made for 48 kHz)
 * is an error that says why, not a crash. */
static void
test_caps_rate (void)
{
  Model m = make_model ("caps-rate", RNN_CELL_RNN_TANH, 2, 6, 1, FALSE, 1, 2,
      1, 0, 0.7f, 14);
  float *a = signal_frames (51, 1, 7), *b = signal_frames (40, 1, 8);
  float *want_a, *want_b;
  guint64 n_a, n_b;
  GArray *out;
  GstCaps *cur;
  gint rate = 0;
  Rig *r = rig_new (m.path, 48000, 1, NULL);
  gchar *caps = caps_string (44100, 1), *softclip = softclip_path ();

  rig_push (r, a, 51);
  gst_harness_set_src_caps_str (r->h, caps);
  rig_push (r, b, 40);
  rig_eos (r);
  out = rig_pull_all (r, NULL);
  assert_seq (r, "C1 B25 B1 C1 B20 E");
  cur = gst_pad_get_current_caps (r->h->sinkpad);
  gst_structure_get_int (gst_caps_get_structure (cur, 0), "rate", &rate);
  g_assert_cmpint (rate, ==, 22050);
  gst_caps_unref (cur);
  want_a = core_run (m.model, NULL, a, 51, 0, &n_a);
  want_b = core_run (m.model, NULL, b, 40, 0, &n_b);
  assert_same ((float *) out->data, n_a, want_a, n_a, "before the change");
  assert_same ((float *) out->data + n_a, out->len - n_a, want_b, n_b,
      "after the change");
  g_free (want_a);
  g_free (want_b);
  g_array_unref (out);
  rig_free (r);

  /* refused mid-stream */
  r = rig_new (softclip, 48000, 1, NULL);
  rig_push (r, a, 51);
  gst_harness_set_src_caps_str (r->h, caps);
  g_assert_cmpint (rig_push_bytes (r, b, 40 * sizeof (float), 0, TRUE), ==,
      GST_FLOW_NOT_NEGOTIATED);
  /* the pad offers the refused caps again with the next buffer: still one
   * negotiation, one error */
  g_assert_cmpint (rig_push_bytes (r, b, 40 * sizeof (float), 0, TRUE), ==,
      GST_FLOW_NOT_NEGOTIATED);
  g_assert_cmpuint (count_messages (r->bus, GST_MESSAGE_ERROR, NULL), ==, 1);
  rig_free (r);

  g_free (softclip);
  g_free (caps);
  g_free (a);
  g_free (b);
  model_clear (&m);
}

/* ---- EOS in the middle of things ---------------------------------------- */

/* Buffers cut in the middle of frames are joined (a frame split over two
 * buffers is one frame); at EOS the bytes short of a whole frame are dropped:
 * 2-channel frames of 8 bytes sent as 12 + 4 + 8 + 4 bytes give 3 frames,
 * the same as one 24-byte buffer. */
static void
test_eos_mid_frame (void)
{
  Model m = make_model ("mid-frame", RNN_CELL_GRU, 2, 4, 1, FALSE, 2, 1, 1,
      0, 0.9f, 15);
  float *x = signal_frames (4, 2, 9), *want;
  const gsize cuts[] = { 12, 4, 8, 4 };
  const guint8 *p = (const guint8 *) x;
  guint64 n_want;
  GArray *out;
  Rig *r = rig_new (m.path, 8000, 2, NULL);

  for (guint i = 0; i < G_N_ELEMENTS (cuts); i++) {
    g_assert_cmpint (rig_push_bytes (r, p, cuts[i], 0, FALSE), ==,
        GST_FLOW_OK);
    p += cuts[i];
  }
  rig_eos (r);
  out = rig_pull_all (r, NULL);
  want = core_run (m.model, NULL, x, 3, 0, &n_want);
  assert_same ((float *) out->data, out->len, want, n_want * 2,
      "frames split over buffers");
  g_assert_cmpuint (count_messages (r->bus, GST_MESSAGE_ERROR, NULL), ==, 0);

  g_free (want);
  g_array_unref (out);
  rig_free (r);
  g_free (x);
  model_clear (&m);
}

/* EOS after 2 frames of a 4-frame step: the step is zero-padded and yields
 * ⌈2·3/4⌉ = 2 of its 3 output frames: 10 frames in, ⌈10·3/4⌉ = 8 out, equal
 * to the core over the padded input. */
static void
test_eos_mid_step (void)
{
  Model m = make_model ("mid-step", RNN_CELL_LSTM, 4, 5, 1, FALSE, 3, 4, 3,
      0, 0.9f, 16);
  float *x = signal_frames (10, 1, 10), *want;
  guint64 n_want;
  GArray *out;
  Rig *r = rig_new (m.path, 16000, 1, NULL);

  rig_push (r, x, 7);
  rig_push (r, x + 7, 3);
  rig_eos (r);
  out = rig_pull_all (r, NULL);
  want = core_run (m.model, NULL, x, 10, 0, &n_want);
  g_assert_cmpuint (n_want, ==, 8);
  assert_same ((float *) out->data, out->len, want, n_want, "EOS mid-step");

  g_free (want);
  g_array_unref (out);
  rig_free (r);
  g_free (x);
  model_clear (&m);
}

/* EOS 4 frames into a window of 8 (bidirectional): the partial window runs
 * as a sequence of 4, both directions from zero: 20 frames in, 20 out, the
 * last 4 equal to the core over those 4 frames alone. */
static void
test_eos_mid_window (void)
{
  Model m = make_model ("mid-window", RNN_CELL_GRU, 1, 6, 2, TRUE, 1, 1, 1,
      8, 0.9f, 17);
  float *x = signal_frames (20, 1, 11), *want;
  guint64 n_want;
  GArray *out;
  Rig *r = rig_new (m.path, 100, 1, NULL);

  rig_push (r, x, 13);
  rig_push (r, x + 13, 7);
  rig_eos (r);
  out = rig_pull_all (r, NULL);
  assert_seq (r, "C1 B8 B8 B4 E");
  want = core_run (m.model, NULL, x, 20, 8, &n_want);
  assert_same ((float *) out->data, out->len, want, n_want, "EOS mid-window");

  g_free (want);
  g_array_unref (out);
  rig_free (r);
  g_free (x);
  model_clear (&m);
}

/* ---- GAP ------------------------------------------------------------------ */

/* A GAP while 2 frames of a 4-frame step are held: those frames leave
 * first (a padded step, as at EOS), then the GAP, never the other way
 * round.  The state carries over the gap: after it, the output continues
 * the core's run from the state the padded step left.  The data after the
 * gap is stamped from its own PTS.  A GAP with nothing held is forwarded
 * alone. */
static void
test_gap (void)
{
  Model m = make_model ("gap", RNN_CELL_LSTM, 4, 6, 1, FALSE, 2, 4, 2, 0,
      0.8f, 18);
  float *a = signal_frames (10, 1, 12), *b = signal_frames (16, 1, 13);
  float *want_a, *want_b;
  guint64 n_a, n_b;
  RnnState *state = rnn_state_new (m.model, 1);
  GPtrArray *bufs = g_ptr_array_new_with_free_func ((GDestroyNotify)
      gst_buffer_unref);
  GArray *out;
  Rig *r = rig_new (m.path, 48000, 1, NULL);

  rig_push (r, a, 10);
  g_assert_true (gst_harness_push_event (r->h,
          gst_event_new_gap (frames_time (10, 48000), GST_SECOND)));
  r->start = GST_SECOND;
  rig_push (r, b, 16);
  g_assert_true (gst_harness_push_event (r->h,
          gst_event_new_gap (GST_SECOND + frames_time (26, 48000),
              GST_SECOND)));
  rig_eos (r);
  out = rig_pull_all (r, bufs);
  assert_seq (r, "C1 B4 B1 G B8 G E");

  want_a = core_run (m.model, state, a, 10, 0, &n_a);
  want_b = core_run (m.model, state, b, 16, 0, &n_b);
  assert_same ((float *) out->data, n_a, want_a, n_a, "before the gap");
  assert_same ((float *) out->data + n_a, out->len - n_a, want_b, n_b,
      "after the gap (state carried)");
  g_assert_false (GST_BUFFER_IS_DISCONT (g_ptr_array_index (bufs, 2)));
  g_assert_cmpuint (GST_BUFFER_PTS (g_ptr_array_index (bufs, 2)), ==,
      GST_SECOND + frames_time (10, 48000));

  g_free (want_a);
  g_free (want_b);
  rnn_state_free (state);
  g_array_unref (out);
  g_ptr_array_unref (bufs);
  rig_free (r);
  g_free (a);
  g_free (b);
  model_clear (&m);
}

/* A GAP in the middle of a bidirectional window: the partial window leaves
 * before the GAP (a shorter sequence). */
static void
test_gap_window (void)
{
  Model m = make_model ("gap-window", RNN_CELL_RNN_TANH, 1, 5, 1, TRUE, 1, 1,
      1, 8, 0.9f, 19);
  float *x = signal_frames (11, 1, 14), *want;
  guint64 n_want;
  GArray *out;
  Rig *r = rig_new (m.path, 100, 1, NULL);

  rig_push (r, x, 11);
  g_assert_true (gst_harness_push_event (r->h,
          gst_event_new_gap (frames_time (11, 100), GST_SECOND)));
  out = rig_pull_all (r, NULL);
  assert_seq (r, "C1 B8 B3 G");
  want = core_run (m.model, NULL, x, 11, 8, &n_want);
  assert_same ((float *) out->data, out->len, want, n_want, "GAP mid-window");

  g_free (want);
  g_array_unref (out);
  rig_free (r);
  g_free (x);
  model_clear (&m);
}

/* ---- odd buffers ------------------------------------------------------- */

/* Zero-length buffers (first, between, last; with and without PTS) are
 * harmless: no output buffer of their own, no error, and the output is
 * bit-identical to the stream without them. */
static void
test_zero_length (void)
{
  gchar *model = softclip_path ();
  float *x = signal_frames (1000, 1, 15);
  GArray *got, *want;
  guint n_out = 0;
  Rig *r = rig_new (model, 48000, 1, NULL), *plain;

  g_assert_cmpint (rig_push_bytes (r, NULL, 0, 0, TRUE), ==, GST_FLOW_OK);
  g_assert_cmpint (rig_push_bytes (r, NULL, 0, 0, FALSE), ==, GST_FLOW_OK);
  for (guint i = 0; i < 10; i++) {
    rig_push (r, x + i * 100, 100);
    g_assert_cmpint (rig_push_bytes (r, NULL, 0, 0, i % 2), ==, GST_FLOW_OK);
  }
  rig_eos (r);
  got = rig_pull_all (r, NULL);
  g_mutex_lock (&r->lock);
  for (guint i = 0; i < r->seq->len; i++)
    n_out += GST_IS_BUFFER (g_ptr_array_index (r->seq, i));
  g_mutex_unlock (&r->lock);
  g_assert_cmpuint (n_out, ==, 10);
  g_assert_cmpuint (count_messages (r->bus, GST_MESSAGE_ERROR, NULL), ==, 0);

  plain = rig_new (model, 48000, 1, NULL);
  rig_push (plain, x, 1000);
  rig_eos (plain);
  want = rig_pull_all (plain, NULL);
  assert_same ((float *) got->data, got->len, (float *) want->data, want->len,
      "with zero-length buffers");

  g_array_unref (got);
  g_array_unref (want);
  rig_free (plain);
  rig_free (r);
  g_free (x);
  g_free (model);
}

/* Buffers without timestamps: the output is the same data, without PTS,
 * with durations and offsets from the frame count (contiguous).  When
 * timestamps start later, the time base is taken back from the first
 * stamped buffer, so every later output buffer carries exactly the PTS of
 * its first input frame. */
static void
test_no_timestamps (void)
{
  gchar *model = softclip_path ();
  float *x = signal_frames (960, 1, 16);
  GPtrArray *bufs = g_ptr_array_new_with_free_func ((GDestroyNotify)
      gst_buffer_unref);
  GArray *got, *want;
  guint64 offset = 0;
  Rig *r = rig_new (model, 48000, 1, NULL), *plain;

  for (guint i = 0; i < 4; i++)
    g_assert_cmpint (rig_push_bytes (r, x + i * 240, 240 * sizeof (float), 0,
            FALSE), ==, GST_FLOW_OK);
  rig_eos (r);
  got = rig_pull_all (r, bufs);
  for (guint i = 0; i < bufs->len; i++) {
    GstBuffer *b = g_ptr_array_index (bufs, i);

    g_assert_false (GST_BUFFER_PTS_IS_VALID (b));
    g_assert_cmpuint (GST_BUFFER_DURATION (b), ==,
        frames_time (offset + 240, 48000) - frames_time (offset, 48000));
    g_assert_cmpuint (GST_BUFFER_OFFSET (b), ==, offset);
    offset += 240;
    g_assert_cmpuint (GST_BUFFER_OFFSET_END (b), ==, offset);
  }
  plain = rig_new (model, 48000, 1, NULL);
  rig_push (plain, x, 960);
  rig_eos (plain);
  want = rig_pull_all (plain, NULL);
  assert_same ((float *) got->data, got->len, (float *) want->data, want->len,
      "without timestamps");
  g_array_unref (want);
  g_array_unref (got);
  g_ptr_array_set_size (bufs, 0);
  rig_free (plain);
  rig_free (r);

  /* unstamped, then stamped from frame 480 on (at 10 s + 10 ms) */
  r = rig_new (model, 48000, 1, NULL);
  r->start = 10 * GST_SECOND;
  for (guint i = 0; i < 4; i++)
    g_assert_cmpint (rig_push_bytes (r, x + i * 240, 240 * sizeof (float), 0,
            i >= 2), ==, GST_FLOW_OK);
  rig_eos (r);
  g_array_unref (rig_pull_all (r, bufs));
  g_assert_cmpuint (bufs->len, ==, 4);
  g_assert_false (GST_BUFFER_PTS_IS_VALID (g_ptr_array_index (bufs, 1)));
  for (guint i = 2; i < 4; i++)
    g_assert_cmpuint (GST_BUFFER_PTS (g_ptr_array_index (bufs, i)), ==,
        10 * GST_SECOND + frames_time (240 * i, 48000));
  rig_free (r);

  g_ptr_array_unref (bufs);
  g_free (x);
  g_free (model);
}

/* ---- state changes -------------------------------------------------------- */

static guint
count_dir (const char *path, gboolean list)
{
  GDir *d = g_dir_open (path, 0, NULL);
  const gchar *name;
  guint n = 0;

  if (!d)
    return 0;
  while ((name = g_dir_read_name (d))) {
    if (list) {
      gchar *f = g_build_filename (path, name, "comm", NULL), *comm = NULL;

      g_file_get_contents (f, &comm, NULL, NULL);
      g_test_message ("thread %s: %s", name, comm ? g_strchomp (comm) : "?");
      g_free (comm);
      g_free (f);
    }
    n++;
  }
  g_dir_close (d);
  return n;
}

/* NULL -> READY -> PAUSED -> PLAYING -> PAUSED -> READY -> NULL, 1000 times
 * (RNN_FAULT_CYCLES overrides, for slow runs under valgrind), in a live
 * pipeline with reload-on-change (a watch thread and an inotify descriptor
 * per start): every change succeeds, nothing is posted as an error, and
 * threads and file descriptors come back to where they were (give or take
 * two idle threads of GStreamer's and GLib's thread pools). */
static void
test_state_cycles (void)
{
  gchar *model = softclip_path ();
  gchar *desc = g_strdup_printf ("audiotestsrc is-live=true "
      "samplesperbuffer=48 ! audio/x-raw,format=F32LE,rate=48000,channels=1 "
      "! rnnfilter reload-on-change=true model-location=\"%s\" ! "
      "fakesink sync=false", model);
  const GstState path[] = { GST_STATE_READY, GST_STATE_PAUSED,
    GST_STATE_PLAYING, GST_STATE_PAUSED, GST_STATE_READY, GST_STATE_NULL
  };
  const gchar *env = g_getenv ("RNN_FAULT_CYCLES");
  guint cycles = env ? (guint) g_ascii_strtoull (env, NULL, 10) : 1000;
  GError *err = NULL;
  GstElement *pipe = gst_parse_launch (desc, &err);
  GstBus *bus = gst_element_get_bus (pipe);
  guint threads0, fds0, threads1, fds1;
  gint64 t0 = g_get_monotonic_time ();

  g_assert_no_error (err);
  /* warm-up cycles fill GStreamer's and GLib's pools of idle threads */
  for (guint c = 0; c < 10; c++) {
    for (guint k = 0; k < G_N_ELEMENTS (path); k++) {
      gst_element_set_state (pipe, path[k]);
      gst_element_get_state (pipe, NULL, NULL, GST_CLOCK_TIME_NONE);
    }
  }
  threads0 = count_dir ("/proc/self/task", FALSE);
  fds0 = count_dir ("/proc/self/fd", FALSE);
  for (guint c = 0; c < cycles; c++) {
    for (guint k = 0; k < G_N_ELEMENTS (path); k++) {
      GstStateChangeReturn ret = gst_element_set_state (pipe, path[k]);

      g_assert_cmpint (ret, !=, GST_STATE_CHANGE_FAILURE);
      ret = gst_element_get_state (pipe, NULL, NULL, 10 * GST_SECOND);
      if (ret == GST_STATE_CHANGE_FAILURE || ret == GST_STATE_CHANGE_ASYNC)
        g_error ("cycle %u: change to %s did not complete (%d)", c,
            gst_element_state_get_name (path[k]), ret);
    }
  }
  threads1 = count_dir ("/proc/self/task", TRUE);
  fds1 = count_dir ("/proc/self/fd", FALSE);
  g_test_message ("%u cycles in %.1f s; threads %u -> %u, fds %u -> %u",
      cycles, (g_get_monotonic_time () - t0) / 1e6, threads0, threads1, fds0,
      fds1);
  g_assert_cmpuint (count_messages (bus, GST_MESSAGE_ERROR, NULL), ==, 0);
  /* idle pooled threads (GstTaskPool, GLib's shared pool) come and go: a
   * leak would add one per cycle */
  g_assert_cmpuint (threads1, <=, threads0 + 2);
  g_assert_cmpuint (fds1, <=, fds0);

  gst_object_unref (bus);
  gst_object_unref (pipe);
  g_free (desc);
  g_free (model);
}

/* An element taken to NULL and started again is as good as new: the model
 * is read again at start (a file rewritten meanwhile is picked up), the
 * state and time base start from zero, and the output is exactly a fresh
 * element's. */
static void
test_reuse_after_null (void)
{
  Model a = make_model ("reuse", RNN_CELL_LSTM, 1, 6, 2, FALSE, 1, 1, 1, 0,
      0.9f, 20);
  Model b = make_model ("reuse-b", RNN_CELL_GRU, 1, 5, 1, FALSE, 1, 1, 1, 0,
      0.9f, 21);
  float *x = signal_frames (500, 1, 17), *want;
  guint64 n_want;
  GError *err = NULL;
  GPtrArray *bufs = g_ptr_array_new_with_free_func ((GDestroyNotify)
      gst_buffer_unref);
  GArray *out;
  gchar *caps = caps_string (48000, 1);
  Rig *r = rig_new (a.path, 48000, 1, NULL);

  for (guint round = 0; round < 3; round++) {
    const RnnModel *model = round == 0 ? a.model : b.model;

    if (round > 0) {
      g_assert_cmpint (gst_element_set_state (r->e, GST_STATE_NULL), ==,
          GST_STATE_CHANGE_SUCCESS);
      /* rewrite the file the element reads at start */
      g_assert_true (rnn_model_save (b.model, a.path, &err));
      g_assert_no_error (err);
      gst_harness_play (r->h);
      g_assert_true (gst_harness_push_event (r->h,
              gst_event_new_stream_start ("again")));
      gst_harness_set_src_caps_str (r->h, caps);
      r->frames_in = 0;
    }
    rig_push (r, x, 300);
    rig_push (r, x + 300, 200);
    out = rig_pull_all (r, bufs);
    want = core_run (model, NULL, x, 500, 0, &n_want);
    assert_same ((float *) out->data, out->len, want, n_want,
        "after reuse");
    g_assert_cmpuint (GST_BUFFER_PTS (g_ptr_array_index (bufs, 0)), ==, 0);
    g_assert_cmpuint (GST_BUFFER_OFFSET (g_ptr_array_index (bufs, 0)), ==, 0);
    g_free (want);
    g_array_unref (out);
    g_ptr_array_set_size (bufs, 0);
  }
  g_assert_cmpuint (count_messages (r->bus, GST_MESSAGE_ERROR, NULL), ==, 0);

  rig_free (r);
  g_ptr_array_unref (bufs);
  g_free (caps);
  g_free (x);
  model_clear (&a);
  model_clear (&b);
}

/* ---- bad data ------------------------------------------------------------- */

/* NaN, ±Inf, denormal and huge (±FLT_MAX, ±1e30) input through an LSTM, a
 * GRU, ReLU and tanh RNNs of 3 inputs, and an LSTM with input
 * normalisation: the output is always finite; non-finite
 * values act as 0.0 with one warning per run of them; denormals and huge
 * values are numbers like any other.  After the bad stretch the output
 * recovers: 4800 frames later it is within 1e-4 of the output of a stream
 * whose bad stretch was zeros (the state forgets). */
static void
test_bad_values (void)
{
  /* the last: an LSTM with input normalisation (std 0.01), where ±FLT_MAX
   * becomes ±Inf inside the model */
  const RnnCell cells[] = { RNN_CELL_LSTM, RNN_CELL_GRU, RNN_CELL_RNN_RELU,
    RNN_CELL_RNN_TANH, RNN_CELL_LSTM
  };
  const float bad[] = { NAN, INFINITY, -INFINITY, 1e-40f, -1e-45f, FLT_MAX,
    -FLT_MAX, 1e30f, -1e30f
  };
  const guint n = 9600, from = 2000, to = 2600;

  for (guint k = 0; k < G_N_ELEMENTS (cells); k++) {
    gchar *name = g_strdup_printf ("bad-%u", k);
    /* small recurrent weights: a stable model that forgets */
    Model m = make_model_full (name, cells[k], 3, 8, 2, FALSE, 3, 1, 1, 0,
        0.25f, 22 + k, k == G_N_ELEMENTS (cells) - 1);
    float *x = signal_frames (n, 3, 18), *zeroed = signal_frames (n, 3, 18);
    GArray *got, *ref;
    Rig *r;
    guint warnings;

    for (guint i = from * 3; i < to * 3; i++) {
      x[i] = bad[(i / 7) % G_N_ELEMENTS (bad)];
      zeroed[i] = 0.0f;
    }
    /* opposite huge values in one frame: +Inf - Inf inside the model */
    for (guint i = from + 100; i < from + 110; i++) {
      x[i * 3] = FLT_MAX;
      x[i * 3 + 1] = -FLT_MAX;
      x[i * 3 + 2] = i % 2 ? 1e30f : -1e30f;
    }
    r = rig_new (m.path, 48000, 3, NULL);
    for (guint i = 0; i < n; i += 480)
      rig_push (r, x + i * 3, 480);
    rig_eos (r);
    got = rig_pull_all (r, NULL);
    warnings = count_messages (r->bus, GST_MESSAGE_WARNING, "Non-finite");
    rig_free (r);
    r = rig_new (m.path, 48000, 3, NULL);
    for (guint i = 0; i < n; i += 480)
      rig_push (r, zeroed + i * 3, 480);
    rig_eos (r);
    ref = rig_pull_all (r, NULL);
    rig_free (r);

    g_assert_cmpuint (got->len, ==, ref->len);
    g_assert_cmpuint (got->len, ==, n * 3);
    /* the bad stretch lies within buffers 4 and 5: runs in each share one
     * warning per buffer */
    g_assert_cmpuint (warnings, >=, 1);
    g_assert_cmpuint (warnings, <=, 2);
    for (guint i = 0; i < got->len; i++)
      if (!isfinite (g_array_index (got, float, i)))
        g_error ("%s: output %u is %g", rnn_cell_to_string (cells[k]), i,
            (double) g_array_index (got, float, i));
    assert_same ((float *) got->data, from * 3, (float *) ref->data, from * 3,
        "before the bad stretch");
    {
      double d = max_abs_diff ((float *) got->data + (to + 4800) * 3,
          (float *) ref->data + (to + 4800) * 3, (n - to - 4800) * 3);

      g_test_message ("%s: max |diff| %.3g 4800 frames after the bad "
          "stretch", rnn_cell_to_string (cells[k]), d);
      g_assert_cmpfloat (d, <=, 1e-4);
    }
    g_array_unref (got);
    g_array_unref (ref);
    g_free (x);
    g_free (zeroed);
    model_clear (&m);
    g_free (name);
  }
}

/* ns per step through the element (harness, 480-frame buffers) for @x. */
static double
ns_per_step (const char *model, const float *x, guint frames, guint reps)
{
  Rig *r = rig_new (model, 48000, 1, NULL);
  gint64 t0;

  g_atomic_int_set (&r->record, 0);
  double best = G_MAXDOUBLE;

  for (guint rep = 0; rep < reps; rep++) {
    t0 = g_get_monotonic_time ();
    for (guint i = 0; i + 480 <= frames; i += 480) {
      GstBuffer *b;

      rig_push (r, x + i, 480);
      b = gst_harness_pull (r->h);
      gst_buffer_unref (b);
    }
    best = MIN (best, (g_get_monotonic_time () - t0) * 1e3 / frames);
  }
  rig_free (r);
  return best;
}

/* TRUE under valgrind or a sanitizer, where timings mean nothing. */
static gboolean
instrumented (void)
{
  gchar *maps = NULL;
  gboolean vg;

  if (!TEST_ALLOC_HOOK)         /* ASan or TSan */
    return TRUE;
  if (!g_file_get_contents ("/proc/self/maps", &maps, NULL, NULL))
    return FALSE;
  vg = strstr (maps, "vgpreload") != NULL;
  g_free (maps);
  return vg;
}

/* ns per step of the core alone (rnn_forward, 480 steps a call). */
static double
core_ns_per_step (const RnnModel *model, const float *x, guint frames,
    guint reps)
{
  RnnForward *fw = rnn_forward_new ();
  RnnState *state = rnn_state_new (model, 1);
  float *y = g_new (float, 480 * rnn_model_get_output_size (model));
  double best = G_MAXDOUBLE;

  for (guint rep = 0; rep < reps; rep++) {
    gint64 t0 = g_get_monotonic_time ();

    rnn_state_reset (state);
    for (guint i = 0; i + 480 <= frames; i += 480)
      rnn_forward (fw, model, state, x + i, 480, 1, y);
    best = MIN (best, (g_get_monotonic_time () - t0) * 1e3 / frames);
  }
  g_free (y);
  rnn_state_free (state);
  rnn_forward_free (fw);
  return best;
}

/* Denormal input costs what normal input costs (figures only; no test
 * asserts a wall-clock time): ns/step through the shipped LSTM (element)
 * and through the core alone for it and for a 2-layer LSTM of 64 with
 * small weights (whose state decays into the denormal range in silence),
 * for normal input, denormal input (|x| < FLT_MIN), and silence after a
 * signal (the state decays towards zero). */
static void
test_denormal_timing (void)
{
  gchar *model = softclip_path ();
  const guint frames = 48000;
  float *normal = signal_frames (frames, 1, 19);
  float *denormal = g_new (float, frames);
  float *silence = g_new0 (float, frames);
  double t_normal, t_denormal, t_silence;
  const guint reps = instrumented () ? 1 : 5;

  for (guint i = 0; i < frames; i++)
    denormal[i] = normal[i] * 1e-39f;   /* all subnormal or zero */
  memcpy (silence, normal, 4800 * sizeof (float));
  t_normal = ns_per_step (model, normal, frames, reps);
  t_denormal = ns_per_step (model, denormal, frames, reps);
  t_silence = ns_per_step (model, silence, frames, reps);
  g_test_message ("rnnfilter softclip-lstm8: %.1f ns/step normal input, "
      "%.1f denormal input (x%.2f), %.1f decaying silence (x%.2f)", t_normal,
      t_denormal, t_denormal / t_normal, t_silence, t_silence / t_normal);
  {
    GError *err = NULL;
    RnnModel *soft = rnn_model_load (model, &err);
    Model big = make_model ("denormal-64", RNN_CELL_LSTM, 1, 64, 2, FALSE, 1,
        1, 1, 0, 0.05f, 50);
    const RnnModel *models[] = { soft, big.model };
    const char *names[] = { "softclip-lstm8", "lstm 2x64" };

    g_assert_no_error (err);
    for (guint k = 0; k < 2; k++) {
      t_normal = core_ns_per_step (models[k], normal, frames, reps);
      t_denormal = core_ns_per_step (models[k], denormal, frames, reps);
      t_silence = core_ns_per_step (models[k], silence, frames, reps);
      g_test_message ("core %s: %.1f ns/step normal input, %.1f denormal "
          "input (x%.2f), %.1f decaying silence (x%.2f)", names[k], t_normal,
          t_denormal, t_denormal / t_normal, t_silence, t_silence / t_normal);
    }
    rnn_model_unref (soft);
    model_clear (&big);
  }
  g_free (normal);
  g_free (denormal);
  g_free (silence);
  g_free (model);
}

/* ---- allocations ---------------------------------------------------------- */

static GstFlowReturn (*parent_submit) (GstBaseTransform *, gboolean,
    GstBuffer *);
static GstFlowReturn (*parent_generate) (GstBaseTransform *, GstBuffer **);

static GstFlowReturn
counted_submit (GstBaseTransform *t, gboolean discont, GstBuffer *buf)
{
  GstFlowReturn ret;

  alloc_armed = 1;
  ret = parent_submit (t, discont, buf);
  alloc_armed = 0;
  return ret;
}

static GstFlowReturn
counted_generate (GstBaseTransform *t, GstBuffer **buf)
{
  GstFlowReturn ret;

  alloc_armed = 1;
  ret = parent_generate (t, buf);
  alloc_armed = 0;
  return ret;
}

/* Heap allocations per buffer in the steady state, counted at the element's
 * boundary: everything rnnfilter's submit_input_buffer and generate_output
 * do for a buffer (adapter, forward pass, output buffer from its pool,
 * metadata), with the caller's input buffer and GStreamer's pad machinery
 * and the harness's queue outside.  After a warm-up (pool filled to the
 * buffers in flight, scratch grown), 0 for 1000 buffers of 480 frames, in
 * vector, independent (2 channels) and framed (4 in, 2 out) layouts, and
 * for a bidirectional model.  The whole push (pads, base class, harness
 * queue) is counted too, for information. */
static void
test_steady_state_allocations (void)
{
  GstBaseTransformClass *klass;
  gchar *softclip = softclip_path ();
  Model framed = make_model ("alloc-framed", RNN_CELL_GRU, 4, 16, 2, FALSE,
      2, 4, 2, 0, 0.5f, 30);
  Model bidi = make_model ("alloc-bidi", RNN_CELL_LSTM, 1, 8, 1, TRUE, 1, 1,
      1, 96, 0.5f, 31);
  struct
  {
    const char *model;
    guint channels;
  } cases[] = {
    {softclip, 1}, {softclip, 2}, {framed.path, 1}, {bidi.path, 1},
  };
  float *x = signal_frames (480, 2, 20);

  if (!alloc_hook_works ()) {
    g_test_skip ("malloc is not ours to count (a sanitizer or valgrind)");
    goto out;
  }
  klass = g_type_class_ref (GST_TYPE_RNN_FILTER);
  parent_submit = klass->submit_input_buffer;
  parent_generate = klass->generate_output;
  klass->submit_input_buffer = counted_submit;
  klass->generate_output = counted_generate;

  for (guint k = 0; k < G_N_ELEMENTS (cases); k++) {
    Rig *r = rig_new (cases[k].model, 48000, cases[k].channels, NULL);
    GstBuffer *in[8];

    g_atomic_int_set (&r->record, 0);   /* the probe would keep buffers */
    gint element_allocs, chain_allocs;

    for (guint i = 0; i < 8; i++) {
      in[i] = gst_harness_create_buffer (r->h, 480 * r->channels * 4);
      gst_buffer_fill (in[i], 0, x, 480 * r->channels * 4);
    }
    /* warm-up: 2 buffers in flight at most */
    for (guint i = 0; i < 20; i++) {
      rig_push (r, x, 480);
      gst_buffer_unref (gst_harness_pull (r->h));
    }
    g_atomic_int_set (&alloc_count, 0);
    for (guint i = 0; i < 1000; i++) {
      /* the caller's buffer is made outside the count */
      GstBuffer *b = gst_buffer_ref (in[i % 8]);

      g_assert_cmpint (gst_harness_push (r->h, b), ==, GST_FLOW_OK);
      gst_buffer_unref (gst_harness_pull (r->h));
    }
    element_allocs = g_atomic_int_get (&alloc_count);

    /* the whole push, for information */
    g_atomic_int_set (&alloc_count, 0);
    for (guint i = 0; i < 1000; i++) {
      GstBuffer *b = gst_buffer_ref (in[i % 8]);

      alloc_armed = 1;
      gst_harness_push (r->h, b);
      b = gst_harness_pull (r->h);
      alloc_armed = 0;
      gst_buffer_unref (b);
    }
    chain_allocs = g_atomic_int_get (&alloc_count);
    g_test_message ("%s, %u channel%s: %d allocations in rnnfilter for 1000 "
        "buffers; %d in the whole push + pull", cases[k].model,
        cases[k].channels, cases[k].channels > 1 ? "s" : "", element_allocs,
        chain_allocs);
    g_assert_cmpint (element_allocs, ==, 0);
    for (guint i = 0; i < 8; i++)
      gst_buffer_unref (in[i]);
    rig_free (r);
  }
  klass->submit_input_buffer = parent_submit;
  klass->generate_output = parent_generate;
  g_type_class_unref (klass);
out:
  g_free (x);
  g_free (softclip);
  model_clear (&framed);
  model_clear (&bidi);
}

/* ---- concurrency ------------------------------------------------------- */

typedef struct
{
  GstElement *e;
  GstPad *src;
  const gchar *a, *b;
  gint stop;
} Meddler;

static gpointer
swap_thread (gpointer data)
{
  Meddler *m = data;

  for (guint i = 0; !g_atomic_int_get (&m->stop); i++) {
    g_object_set (m->e, "model-location", i % 2 ? m->b : m->a, NULL);
    g_usleep (500);
  }
  return NULL;
}

static gpointer
property_thread (gpointer data)
{
  Meddler *m = data;

  for (guint i = 0; !g_atomic_int_get (&m->stop); i++) {
    gchar *loc = NULL;
    guint interval;

    g_object_set (m->e, "reset-on-discont", i % 2, "window", i % 5,
        "message-interval", i % 3 ? 0 : 100, NULL);
    if (i % 7 == 0)
      g_signal_emit_by_name (m->e, "reset");
    if (i % 11 == 0)
      g_object_set (m->e, "reload-on-change", (i / 11) % 2, NULL);
    g_object_get (m->e, "model-location", &loc, "message-interval",
        &interval, NULL);
    g_free (loc);
    g_usleep (200);
  }
  return NULL;
}

static gpointer
query_thread (gpointer data)
{
  Meddler *m = data;

  while (!g_atomic_int_get (&m->stop)) {
    GstQuery *q = gst_query_new_latency ();
    GstCaps *caps;

    gst_pad_query (m->src, q);
    gst_query_unref (q);
    caps = gst_pad_query_caps (m->src, NULL);
    gst_caps_unref (caps);
    g_usleep (300);
  }
  return NULL;
}

/* Hot swaps between two models, property changes, reset signals, the
 * reload-on-change watch switched on and off, and latency and caps queries,
 * each from a thread of its own, while 2 s of 48 kHz audio stream: no
 * error, no frame lost or duplicated, every buffer computed by one model
 * (the two differ: one gives a constant 0.25, the other -0.5).  Run under
 * ThreadSanitizer by scripts/sanitize tsan. */
static void
test_concurrent_control (void)
{
  Model a = make_model ("conc-a", RNN_CELL_GRU, 1, 4, 1, FALSE, 1, 1, 1, 0,
      0.0f, 40);
  Model b = make_model ("conc-b", RNN_CELL_GRU, 1, 4, 1, FALSE, 1, 1, 1, 0,
      0.0f, 41);
  GThread *threads[3];
  Meddler md = { 0 };
  GPtrArray *bufs = g_ptr_array_new_with_free_func ((GDestroyNotify)
      gst_buffer_unref);
  float *x = signal_frames (480, 1, 21);
  guint n_a = 0, n_b = 0;
  GError *err = NULL;
  Rig *r;

  /* zero weights: the output is head.bias */
  rnn_model_get_params (a.model, NULL)[rnn_model_get_tensor_info (a.model,
          rnn_model_find_tensor (a.model, "head.bias"))->offset] = 0.25f;
  rnn_model_get_params (b.model, NULL)[rnn_model_get_tensor_info (b.model,
          rnn_model_find_tensor (b.model, "head.bias"))->offset] = -0.5f;
  g_assert_true (rnn_model_save (a.model, a.path, &err));
  g_assert_true (rnn_model_save (b.model, b.path, &err));
  g_assert_no_error (err);

  r = rig_new (a.path, 48000, 1, NULL);
  g_atomic_int_set (&r->record, 0);
  md.e = r->e;
  md.src = gst_element_get_static_pad (r->e, "src");
  md.a = a.path;
  md.b = b.path;
  threads[0] = g_thread_new ("swap", swap_thread, &md);
  threads[1] = g_thread_new ("props", property_thread, &md);
  threads[2] = g_thread_new ("query", query_thread, &md);
  for (guint i = 0; i < 200; i++) {
    GstBuffer *o;

    rig_push (r, x, 480);
    while ((o = gst_harness_try_pull (r->h)))
      g_ptr_array_add (bufs, o);
    g_usleep (100);
  }
  g_atomic_int_set (&md.stop, 1);
  for (guint i = 0; i < G_N_ELEMENTS (threads); i++)
    g_thread_join (threads[i]);
  rig_eos (r);
  g_array_unref (rig_pull_all (r, bufs));

  g_assert_cmpuint (bufs->len, ==, 200);
  for (guint i = 0; i < bufs->len; i++) {
    GstBuffer *o = g_ptr_array_index (bufs, i);
    GstMapInfo map;
    const float *v;

    g_assert_cmpuint (gst_buffer_get_size (o), ==, 480 * sizeof (float));
    g_assert_cmpuint (GST_BUFFER_OFFSET (o), ==, 480 * i);
    gst_buffer_map (o, &map, GST_MAP_READ);
    v = (const float *) map.data;
    for (guint k = 1; k < 480; k++)
      g_assert_cmpfloat (v[k], ==, v[0]);
    if (v[0] == 0.25f)
      n_a++;
    else if (v[0] == -0.5f)
      n_b++;
    else
      g_error ("buffer %u: %g is from neither model", i, (double) v[0]);
    gst_buffer_unmap (o, &map);
  }
  g_test_message ("%u buffers from model a, %u from model b", n_a, n_b);
  g_assert_cmpuint (count_messages (r->bus, GST_MESSAGE_ERROR, NULL), ==, 0);

  gst_object_unref (md.src);
  rig_free (r);
  g_ptr_array_unref (bufs);
  g_free (x);
  model_clear (&a);
  model_clear (&b);
}

/* ---- main ---------------------------------------------------------------- */

int
main (int argc, char **argv)
{
  int ret;

  g_test_init (&argc, &argv, NULL);
  g_setenv ("OPENBLAS_NUM_THREADS", "1", FALSE);
  gst_init (&argc, &argv);
  g_assert_true (GST_ELEMENT_REGISTER (rnnfilter, NULL));
  tmp_dir = g_dir_make_tmp ("test-rnnfilter-faults-XXXXXX", NULL);
  g_assert_nonnull (tmp_dir);

  g_test_add_func ("/rnnfilter/faults/flush/harness", test_flush_harness);
  g_test_add_func ("/rnnfilter/faults/flush/seek-pipeline",
      test_flush_seek_pipeline);
  g_test_add_func ("/rnnfilter/faults/discont", test_discont);
  g_test_add_func ("/rnnfilter/faults/caps/channels", test_caps_channels);
  g_test_add_func ("/rnnfilter/faults/caps/rate", test_caps_rate);
  g_test_add_func ("/rnnfilter/faults/eos/mid-frame", test_eos_mid_frame);
  g_test_add_func ("/rnnfilter/faults/eos/mid-step", test_eos_mid_step);
  g_test_add_func ("/rnnfilter/faults/eos/mid-window", test_eos_mid_window);
  g_test_add_func ("/rnnfilter/faults/gap/held-frames-first", test_gap);
  g_test_add_func ("/rnnfilter/faults/gap/mid-window", test_gap_window);
  g_test_add_func ("/rnnfilter/faults/zero-length-buffers", test_zero_length);
  g_test_add_func ("/rnnfilter/faults/no-timestamps", test_no_timestamps);
  g_test_add_func ("/rnnfilter/faults/state/cycles", test_state_cycles);
  g_test_add_func ("/rnnfilter/faults/state/reuse-after-null",
      test_reuse_after_null);
  g_test_add_func ("/rnnfilter/faults/bad-data/values", test_bad_values);
  g_test_add_func ("/rnnfilter/faults/bad-data/denormal-timing",
      test_denormal_timing);
  g_test_add_func ("/rnnfilter/faults/allocations/steady-state",
      test_steady_state_allocations);
  g_test_add_func ("/rnnfilter/faults/concurrency/control",
      test_concurrent_control);

  ret = g_test_run ();
  remove_tree (tmp_dir);
  g_free (tmp_dir);
  return ret;
}
