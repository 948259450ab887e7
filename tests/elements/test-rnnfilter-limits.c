/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnnfilter at its limits, through whole pipelines (gst_parse_launch): caps
 * it refuses and what the refusal says, multichannel models and remixing,
 * memory bounded by the properties, non-finite outputs, the message fields
 * and the bus backlog, and the file watch through a symbolic link.  The
 * element is compiled in and registered in process. */
#include "test-common.h"
#include "element-rig.h"
#include "../../plugins/gstrnnelements.h"

#include <gst/gst.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static gchar *tmp_dir;

static gchar *
shipped_model (const char *name)
{
  return g_test_build_filename (G_TEST_DIST, "..", "models", name, NULL);
}

/* Runs @desc (a gst-launch line; "%s" in it is replaced by @model) to EOS
 * or an error.  Returns the error's text, or NULL at EOS. */
static gchar *
run_pipeline (const char *desc)
{
  GError *err = NULL;
  GstElement *p = gst_parse_launch (desc, &err);
  GstBus *bus;
  GstMessage *m;
  gchar *text = NULL;

  g_assert_no_error (err);
  g_assert_nonnull (p);
  bus = gst_element_get_bus (p);
  gst_element_set_state (p, GST_STATE_PLAYING);
  m = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
      GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  g_assert_nonnull (m);
  if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR) {
    gchar *dbg = NULL;

    gst_message_parse_error (m, &err, &dbg);
    text = g_strdup_printf ("%s: %s", GST_OBJECT_NAME (m->src), err->message);
    g_test_message ("error: %s (%s)", text, dbg);
    g_clear_error (&err);
    g_free (dbg);
  }
  gst_message_unref (m);
  gst_element_set_state (p, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (p);
  return text;
}

static void
assert_says (const gchar *text, const char *needle)
{
  g_assert_nonnull (text);
  if (!strstr (text, needle))
    g_error ("\"%s\" does not say \"%s\"", text, needle);
}

/* ---- refusals ------------------------------------------------------------ */

/* A stream rnnfilter cannot take reaches it (rawaudioparse does not
 * negotiate): one error from rnnfilter says what the model needs, what
 * arrived and what converts it. */
static void
test_refusal_says_fix (void)
{
  gchar *imu = shipped_model ("imu-gru.safetensors");
  gchar *cls = shipped_model ("sound-classifier.safetensors");
  const char *fmt = "filesrc location=/dev/zero num-buffers=4 blocksize=4800 "
      "! rawaudioparse pcm-format=%s num-channels=%d sample-rate=%d "
      "! rnnfilter name=f model-location=\"%s\" ! fakesink";
  gchar *desc, *text;

  desc = g_strdup_printf (fmt, "f32le", 2, 100, imu);
  text = run_pipeline (desc);
  assert_says (text, "f: ");
  assert_says (text, "6 channels (taken in order, never remixed) at 100 Hz");
  assert_says (text, "the stream is F32LE, 2 channels at 100 Hz");
  assert_says (text, "6 independent channels");
  assert_says (text, "audiointerleave");
  g_free (text);
  g_free (desc);

  desc = g_strdup_printf (fmt, "f32le", 1, 44100, cls);
  text = run_pipeline (desc);
  assert_says (text, "f: ");
  assert_says (text, "at 16000 Hz");
  assert_says (text, "the stream is F32LE, 1 channel at 44100 Hz");
  assert_says (text, "audioconvert ! audioresample");
  g_free (text);
  g_free (desc);

  desc = g_strdup_printf (fmt, "s16le", 1, 16000, cls);
  text = run_pipeline (desc);
  assert_says (text, "f: ");
  assert_says (text, "not S16LE");
  assert_says (text, "the stream is S16LE, 1 channel at 16000 Hz");
  assert_says (text, "audioconvert ! audioresample");
  g_free (text);
  g_free (desc);

  g_free (imu);
  g_free (cls);
}

/* audioconvert never remixes a stream into a multichannel model: stereo
 * (or mono, or 8 channels) in front of the six-channel model is not
 * negotiated (it used to be upmixed to 5.1) and rnnfilter's one error says
 * what the model needs, what arrived and how to build it (audioconvert
 * hands the stream on unchanged instead of failing upstream unexplained);
 * six channels pass, unpositioned or positioned as they are. */
static void
test_no_remix (void)
{
  gchar *imu = shipped_model ("imu-gru.safetensors");
  const char *fmt = "audiotestsrc num-buffers=4 samplesperbuffer=50 "
      "! audio/x-raw,channels=%d,rate=100%s ! audioconvert "
      "! rnnfilter name=f model-location=\"%s\" ! fakesink";
  const gint refused[] = { 2, 1, 8 };
  gchar *desc, *text, *arrived;

  for (guint k = 0; k < G_N_ELEMENTS (refused); k++) {
    desc = g_strdup_printf (fmt, refused[k], "", imu);
    text = run_pipeline (desc);
    arrived = g_strdup_printf ("the stream is F32LE, %d channel%s at 100 Hz",
        refused[k], refused[k] == 1 ? "" : "s");
    assert_says (text, "f: model expects 6 channels");
    assert_says (text, "6 channels (taken in order, never remixed) at 100 Hz");
    assert_says (text, arrived);
    assert_says (text, "audiointerleave");
    g_free (arrived);
    g_free (text);
    g_free (desc);
  }

  desc = g_strdup_printf (fmt, 6, "", imu);
  text = run_pipeline (desc);
  g_assert_null (text);
  g_free (desc);
  desc = g_strdup_printf (fmt, 6, ",channel-mask=(bitmask)0x3f", imu);
  text = run_pipeline (desc);
  g_assert_null (text);
  g_free (desc);
  g_free (imu);
}

/* A source that picks its own caps (no converter between) still gets the
 * model's channel count from the caps query, also for a model whose
 * output has another count (5 channels in, 3 out). */
static void
test_source_picks_channels (void)
{
  gchar *path = g_build_filename (tmp_dir, "five-three.safetensors", NULL);
  const char *fmt = "audiotestsrc num-buffers=4 samplesperbuffer=50 %s"
      "! rnnfilter name=f model-location=\"%s\" ! fakesink name=out";
  const char *between[] = { "", "! queue " };
  RnnConfig cfg;
  GError *err = NULL;
  RnnModel *m;

  rnn_config_init (&cfg);
  cfg.input_size = 5;
  cfg.has_head = TRUE;
  cfg.output_size = 3;
  cfg.head_activation = RNN_HEAD_ACT_NONE;
  m = rnn_model_new (&cfg, &err);
  g_assert_no_error (err);
  g_assert_true (rnn_model_save (m, path, &err));
  g_assert_no_error (err);
  rnn_model_unref (m);

  for (guint k = 0; k < G_N_ELEMENTS (between); k++) {
    gchar *desc = g_strdup_printf (fmt, between[k], path);
    gchar *text = run_pipeline (desc);

    g_assert_null (text);
    g_free (desc);
  }
  g_unlink (path);
  g_free (path);
}

/* Runs @desc to EOS or an error; returns the error's text (NULL at EOS)
 * and puts the text of the first warning from the element named "f" (NULL
 * if none) in @warning.  The pipeline is returned in NULL state through
 * @pipeline when that is not NULL. */
static gchar *
run_for_warning (const char *desc, gchar **warning, GstElement **pipeline)
{
  GError *err = NULL;
  GstElement *p = gst_parse_launch (desc, &err);
  GstBus *bus;
  GstMessage *m;
  gchar *text = NULL;

  g_assert_no_error (err);
  g_assert_nonnull (p);
  *warning = NULL;
  bus = gst_element_get_bus (p);
  gst_element_set_state (p, GST_STATE_PLAYING);
  while ((m = gst_bus_timed_pop_filtered (bus, 60 * GST_SECOND,
              GST_MESSAGE_EOS | GST_MESSAGE_ERROR | GST_MESSAGE_WARNING))) {
    GstMessageType type = GST_MESSAGE_TYPE (m);

    if (type == GST_MESSAGE_WARNING && !*warning
        && g_str_equal (GST_OBJECT_NAME (m->src), "f")) {
      gst_message_parse_warning (m, &err, NULL);
      *warning = g_strdup (err->message);
      g_clear_error (&err);
    } else if (type == GST_MESSAGE_ERROR) {
      gst_message_parse_error (m, &err, NULL);
      text = g_strdup_printf ("%s: %s", GST_OBJECT_NAME (m->src),
          err->message);
      g_clear_error (&err);
    }
    gst_message_unref (m);
    if (type != GST_MESSAGE_WARNING)
      break;
  }
  g_test_message ("warning: %s; error: %s", *warning, text);
  gst_element_set_state (p, GST_STATE_NULL);
  gst_object_unref (bus);
  if (pipeline)
    *pipeline = p;
  else
    gst_object_unref (p);
  return text;
}

/* A capsfilter fixes a rate the model does not take in front of
 * audioconvert (no audioresample): the pipeline is built (rnnfilter lets
 * gst-launch's link check pass instead of failing it with a bare "could
 * not link"), and negotiation ends in rnnfilter's warning, which names the
 * model's rate, the rate offered and audioresample.  With audioresample it
 * plays; and once linked the sink pad answers exactly what the model
 * takes. */
static void
test_link_check (void)
{
  gchar *effect = shipped_model ("effect-lstm.safetensors");
  gchar *imu = shipped_model ("imu-gru.safetensors");
  const char *fmt = "audiotestsrc num-buffers=4 samplesperbuffer=441 "
      "! audio/x-raw,rate=44100,channels=%d ! audioconvert %s"
      "! rnnfilter name=f model-location=\"%s\" ! fakesink";
  gchar *desc, *text, *warning;
  GstElement *p, *f;
  GstPad *sink;
  GstCaps *caps, *offer;

  desc = g_strdup_printf (fmt, 1, "", effect);
  text = run_for_warning (desc, &warning, NULL);
  g_assert_nonnull (text);
  assert_says (warning, "model was made for 16000 Hz, stream has 44100 Hz");
  assert_says (warning, "1 channel (or several, one state each) at 16000 Hz");
  assert_says (warning, "offered at 44100 Hz, in any number of channels");
  assert_says (warning, "audioconvert ! audioresample");
  g_free (warning);
  g_free (text);
  g_free (desc);

  desc = g_strdup_printf (fmt, 2, "", imu);
  text = run_for_warning (desc, &warning, NULL);
  g_assert_nonnull (text);
  assert_says (warning, "6 channels (taken in order, never remixed) at 100 Hz");
  assert_says (warning, "offered at 44100 Hz");
  assert_says (warning, "audioresample");
  g_free (warning);
  g_free (text);
  g_free (desc);

  desc = g_strdup_printf (fmt, 1, "! audioresample ", effect);
  text = run_for_warning (desc, &warning, &p);
  g_assert_null (text);
  g_assert_null (warning);
  f = gst_bin_get_by_name (GST_BIN (p), "f");
  sink = gst_element_get_static_pad (f, "sink");
  g_assert_true (gst_pad_is_linked (sink));
  caps = gst_pad_query_caps (sink, NULL);
  offer = gst_caps_from_string ("audio/x-raw, rate=44100");
  g_assert_false (gst_caps_can_intersect (caps, offer));
  gst_caps_unref (offer);
  offer = gst_caps_from_string ("audio/x-raw, format=F32LE, "
      "layout=interleaved, rate=16000, channels=1");
  g_assert_true (gst_caps_can_intersect (caps, offer));
  gst_caps_unref (offer);
  gst_caps_unref (caps);
  gst_object_unref (sink);
  gst_object_unref (f);
  gst_object_unref (p);
  g_free (desc);

  g_free (effect);
  g_free (imu);
}

/* ---- memory -------------------------------------------------------------- */

/* A window far too large for the machine (17 GiB of scratch for the onset
 * model) is refused at caps time with the arithmetic and the property to
 * lower, never an abort; in a child limited to 3 GiB of address space so
 * that it fails the same way everywhere. */
static void
test_window_memory (void)
{
  if (!address_limit_usable ()) {
    g_test_skip ("RLIMIT_AS is not usable under ASan or valgrind");
    return;
  }
  gchar *bi = shipped_model ("onset-bigru.safetensors");
  const char *fmt = "audiotestsrc num-buffers=2 samplesperbuffer=800 "
      "! audio/x-raw,rate=8000,channels=1 ! audioconvert "
      "! rnnfilter name=f model-location=\"%s\" window=%u ! fakesink";

  if (g_test_subprocess ()) {
    struct rlimit lim = { 3ull << 30, 3ull << 30 };
    gchar *desc, *text;

    g_assert_cmpint (setrlimit (RLIMIT_AS, &lim), ==, 0);
    desc = g_strdup_printf (fmt, bi, 16777216u);
    text = run_pipeline (desc);
    assert_says (text, "f: a window of 16777216 steps");
    assert_says (text, "17.1");
    assert_says (text, "GiB");
    assert_says (text, "lower the window property");
    g_free (text);
    g_free (desc);
    /* a window that fits runs */
    desc = g_strdup_printf (fmt, bi, 100u);
    g_assert_null (run_pipeline (desc));
    g_free (desc);
    g_free (bi);
    return;
  }
  g_test_trap_subprocess (NULL, 60 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_free (bi);
}

/* A started rnnfilter rig on @model, a mono stream at @rate, and the
 * property name/value pairs from @first_prop on (NULL-terminated). */
static Rig *
start_rig (const char *model, guint rate, const char *first_prop, ...)
{
  va_list args;
  Rig *r;

  va_start (args, first_prop);
  r = rig_open ("rnnfilter", model, first_prop, args);
  va_end (args);
  rig_start (r, rate, 1);
  return r;
}

/* Fifty million channels of a one-channel model (a state and scratch per
 * channel): refused when the caps are set, saying to use fewer channels,
 * never an abort; in a child limited to 3 GiB of address space. */
static void
test_channels_memory (void)
{
  if (!address_limit_usable ()) {
    g_test_skip ("RLIMIT_AS is not usable under ASan or valgrind");
    return;
  }
  gchar *model = shipped_model ("softclip-lstm8.safetensors");

  if (g_test_subprocess ()) {
    struct rlimit lim = { 3ull << 30, 3ull << 30 };
    GstMessage *m;
    GError *err = NULL;
    Rig *r;

    g_assert_cmpint (setrlimit (RLIMIT_AS, &lim), ==, 0);
    r = start_rig (model, 0, NULL);
    gst_harness_set_src_caps_str (r->h, "audio/x-raw, format=F32LE, "
        "layout=interleaved, rate=48000, channels=50000000, "
        "channel-mask=(bitmask)0");
    m = gst_bus_pop_filtered (r->bus, GST_MESSAGE_ERROR);
    g_assert_nonnull (m);
    gst_message_parse_error (m, &err, NULL);
    g_test_message ("error: %s", err->message);
    assert_says (err->message, "50000000 streams of this model need");
    assert_says (err->message, "use fewer channels");
    g_clear_error (&err);
    gst_message_unref (m);
    rig_free (r);
    g_free (model);
    return;
  }
  g_test_trap_subprocess (NULL, 60 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_free (model);
}

/* ---- non-finite outputs -------------------------------------------------- */

/* A one-unit ReLU RNN whose input weight is 1e10: one input of 1e30 drives
 * h to +inf, and the head's outputs (weights 1, -1, 0) to +inf, -inf and
 * NaN.  Saved under tmp_dir. */
static gchar *
overflowing_model (void)
{
  static const char *names[] = { "rnn.weight_ih_l0", "head.weight" };
  static const float head[] = { 1.0f, -1.0f, 0.0f };
  RnnConfig cfg;
  GError *err = NULL;
  RnnModel *m;
  gchar *path = g_build_filename (tmp_dir, "overflow.safetensors", NULL);
  float *p;

  rnn_config_init (&cfg);
  cfg.cell = RNN_CELL_RNN_RELU;
  cfg.input_size = 1;
  cfg.hidden_size = 1;
  cfg.has_head = TRUE;
  cfg.output_size = 3;
  cfg.head_activation = RNN_HEAD_ACT_NONE;
  m = rnn_model_new (&cfg, &err);
  g_assert_no_error (err);
  p = rnn_model_get_params (m, NULL);
  for (guint k = 0; k < G_N_ELEMENTS (names); k++) {
    gint idx = rnn_model_find_tensor (m, names[k]);

    g_assert_cmpint (idx, >=, 0);
    for (guint i = 0; i < (k == 0 ? 1 : 3); i++)
      p[rnn_model_get_tensor_info (m, idx)->offset + i] = k == 0 ? 1e10f
          : head[i];
  }
  rnn_model_seal (m);
  g_assert_true (rnn_model_save (m, path, &err));
  g_assert_no_error (err);
  rnn_model_unref (m);
  return path;
}

/* Outputs that overflow leave as 0.0, with one warning for the run. */
static void
test_non_finite_output (void)
{
  gchar *path = overflowing_model ();
  const float zeros[8] = { 0 }, bad[4] = { 1e30f, 0, 0, 0 };
  GArray *out;
  Rig *r;
  GstMessage *m;
  guint warnings = 0;

  r = start_rig (path, 100, NULL);
  g_assert_cmpint (rig_push_flags (r, zeros, 8, 0), ==, GST_FLOW_OK);
  g_assert_cmpint (rig_push_flags (r, bad, 4, 0), ==, GST_FLOW_OK);
  g_assert_cmpint (rig_push_flags (r, zeros, 8, 0), ==, GST_FLOW_OK);
  rig_eos (r);
  out = rig_pull_all (r, NULL);
  g_assert_cmpuint (out->len, ==, 3 * 20);
  for (guint i = 0; i < out->len; i++) {
    float v = g_array_index (out, float, i);

    if (!isfinite (v))
      g_error ("output %u (step %u) is %g", i, i / 3, v);
  }
  /* the step of 1e30: +inf, -inf and NaN became zeros */
  for (guint o = 0; o < 3; o++)
    g_assert_cmpfloat (g_array_index (out, float, 3 * 8 + o), ==, 0.0f);
  while ((m = gst_bus_pop_filtered (r->bus, GST_MESSAGE_WARNING))) {
    GError *err = NULL;

    gst_message_parse_warning (m, &err, NULL);
    g_test_message ("warning: %s", err->message);
    assert_says (err->message, "Non-finite model output replaced by 0.0");
    warnings++;
    g_clear_error (&err);
    gst_message_unref (m);
  }
  g_assert_cmpuint (warnings, ==, 1);
  g_array_unref (out);
  rig_free (r);
  g_free (path);
}

/* ---- the bus backlog ---------------------------------------------------- */

typedef struct
{
  GMutex lock;
  GCond cond;
  gboolean done;
} Done;

/* Passes every message on to the bus queue and notes the end. */
static GstBusSyncReply
note_end (GstBus *bus, GstMessage *m, gpointer data)
{
  Done *d = data;

  if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_EOS
      || GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR) {
    g_mutex_lock (&d->lock);
    d->done = TRUE;
    g_cond_signal (&d->cond);
    g_mutex_unlock (&d->lock);
  }
  return GST_BUS_PASS;
}

/* message-interval=1 faster than real time with a bus nobody pops: the
 * messages waiting stay bounded (they used to pile up, one per step), and
 * one warning says that messages are skipped. */
static void
test_bus_backlog (void)
{
  gchar *model = shipped_model ("softclip-lstm8.safetensors");
  gchar *desc = g_strdup_printf ("audiotestsrc num-buffers=50 "
      "samplesperbuffer=1024 ! audio/x-raw,rate=48000,channels=1 "
      "! audioconvert ! rnnfilter model-location=\"%s\" message-interval=1 "
      "! fakesink", model);
  GError *err = NULL;
  GstElement *p = gst_parse_launch (desc, &err);
  GstBus *bus;
  GstMessage *m;
  Done d = { 0 };
  guint elements = 0, warnings = 0;
  gint64 deadline = g_get_monotonic_time () + 60 * G_TIME_SPAN_SECOND;

  g_assert_no_error (err);
  g_mutex_init (&d.lock);
  g_cond_init (&d.cond);
  bus = gst_element_get_bus (p);
  gst_bus_set_sync_handler (bus, note_end, &d, NULL);
  gst_element_set_state (p, GST_STATE_PLAYING);
  g_mutex_lock (&d.lock);
  while (!d.done)
    g_assert_true (g_cond_wait_until (&d.cond, &d.lock, deadline));
  g_mutex_unlock (&d.lock);

  while ((m = gst_bus_pop (bus))) {
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ELEMENT
        && gst_structure_has_name (gst_message_get_structure (m),
            "rnnfilter-output"))
      elements++;
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ERROR)
      g_error ("the pipeline failed");
    if (GST_MESSAGE_TYPE (m) == GST_MESSAGE_WARNING) {
      gst_message_parse_warning (m, &err, NULL);
      g_test_message ("warning: %s", err->message);
      assert_says (err->message, "The bus is not drained");
      g_clear_error (&err);
      warnings++;
    }
    gst_message_unref (m);
  }
  g_test_message ("%u rnnfilter-output messages were waiting", elements);
  g_assert_cmpuint (elements, <=, 1000);
  g_assert_cmpuint (elements, >=, 100);
  g_assert_cmpuint (warnings, ==, 1);

  gst_element_set_state (p, GST_STATE_NULL);
  gst_bus_set_sync_handler (bus, NULL, NULL, NULL);
  gst_object_unref (bus);
  gst_object_unref (p);
  g_mutex_clear (&d.lock);
  g_cond_clear (&d.cond);
  g_free (desc);
  g_free (model);
}

/* ---- the file watch through a symbolic link ---------------------------- */

/* A model whose weights are all zero but head.bias: it outputs @value,
 * whatever the input.  Saved as @path. */
static void
save_constant_model (const gchar *path, float value)
{
  RnnConfig cfg;
  GError *err = NULL;
  RnnModel *m;
  gint idx;

  rnn_config_init (&cfg);
  cfg.has_head = TRUE;
  cfg.output_size = 1;
  cfg.head_activation = RNN_HEAD_ACT_NONE;
  m = rnn_model_new (&cfg, &err);
  g_assert_no_error (err);
  idx = rnn_model_find_tensor (m, "head.bias");
  g_assert_cmpint (idx, >=, 0);
  rnn_model_get_params (m, NULL)[rnn_model_get_tensor_info (m,
          idx)->offset] = value;
  rnn_model_seal (m);
  g_assert_true (rnn_model_save (m, path, &err));
  g_assert_no_error (err);
  rnn_model_unref (m);
}

/* Pushes 480-frame buffers until the output is @want (or 10 s pass). */
static gboolean
wait_for_output (Rig *r, float want)
{
  static const float x[480];
  gint64 until = g_get_monotonic_time () + 10 * G_TIME_SPAN_SECOND;

  while (g_get_monotonic_time () < until) {
    GArray *out;
    gboolean hit;

    g_assert_cmpint (rig_push_flags (r, x, 480, 0), ==, GST_FLOW_OK);
    out = rig_pull_all (r, NULL);
    hit = out->len > 0 && g_array_index (out, float, out->len - 1) == want;
    g_array_unref (out);
    if (hit)
      return TRUE;
    g_usleep (5000);
  }
  return FALSE;
}

/* reload-on-change with model-location a symbolic link: rewriting the file
 * it points to reloads the model, and so does pointing the link elsewhere. */
static void
test_reload_through_symlink (void)
{
  gchar *real = g_build_filename (tmp_dir, "real.safetensors", NULL);
  gchar *other = g_build_filename (tmp_dir, "other.safetensors", NULL);
  gchar *link = g_build_filename (tmp_dir, "link.safetensors", NULL);
  gchar *tmp_link = g_build_filename (tmp_dir, "link.tmp", NULL);
  Rig *r;

  save_constant_model (real, 0.25f);
  save_constant_model (other, 0.75f);
  g_assert_cmpint (symlink ("real.safetensors", link), ==, 0);
  r = start_rig (link, 48000, "reload-on-change", TRUE, NULL);
  g_assert_true (wait_for_output (r, 0.25f));

  save_constant_model (real, -0.5f);
  g_assert_true (wait_for_output (r, -0.5f));

  /* the link now points to another file (renamed over atomically) */
  g_assert_cmpint (symlink ("other.safetensors", tmp_link), ==, 0);
  g_assert_cmpint (g_rename (tmp_link, link), ==, 0);
  g_assert_true (wait_for_output (r, 0.75f));
  /* ...which is watched from then on */
  save_constant_model (other, 0.125f);
  g_assert_true (wait_for_output (r, 0.125f));

  rig_free (r);
  g_unlink (link);
  g_unlink (real);
  g_unlink (other);
  g_free (real);
  g_free (other);
  g_free (link);
  g_free (tmp_link);
}

/* audioconvert without audioresample in front of a model made for another
 * rate: negotiation fails upstream of rnnfilter, whose caps query answered
 * nothing; rnnfilter's warning says what the model needs and what was
 * offered, and names audioresample. */
static void
test_missing_resample (void)
{
  gchar *model = shipped_model ("effect-lstm.safetensors");
  gchar *wav = g_build_filename (tmp_dir, "speech-22k.wav", NULL);
  gchar *make = g_strdup_printf ("audiotestsrc num-buffers=4 "
      "! audio/x-raw,format=S16LE,rate=22050,channels=1 ! wavenc "
      "! filesink location=\"%s\"", wav);
  /* as a user writes it: the WAV's caps appear once wavparse has read
   * its header, so the link is made while the stream starts */
  gchar *desc = g_strdup_printf ("filesrc location=\"%s\" ! wavparse "
      "! audioconvert ! rnnfilter name=f model-location=\"%s\" ! fakesink",
      wav, model);
  GError *err = NULL;
  GstElement *p;

  g_assert_null (run_pipeline (make));
  p = gst_parse_launch (desc, &err);
  GstBus *bus;
  GstMessage *m;
  gchar *warning = NULL;
  gboolean failed = FALSE;

  g_assert_no_error (err);
  bus = gst_element_get_bus (p);
  gst_element_set_state (p, GST_STATE_PLAYING);
  while ((m = gst_bus_timed_pop_filtered (bus, 30 * GST_SECOND,
              GST_MESSAGE_EOS | GST_MESSAGE_ERROR | GST_MESSAGE_WARNING))) {
    GstMessageType type = GST_MESSAGE_TYPE (m);

    if (type == GST_MESSAGE_WARNING && g_str_equal (GST_OBJECT_NAME (m->src),
            "f") && warning == NULL) {
      gst_message_parse_warning (m, &err, NULL);
      warning = g_strdup (err->message);
      g_clear_error (&err);
    }
    failed |= type == GST_MESSAGE_ERROR;
    gst_message_unref (m);
    if (type != GST_MESSAGE_WARNING)
      break;
  }
  g_assert_true (failed);
  g_test_message ("warning: %s", warning);
  assert_says (warning, "16000 Hz");
  assert_says (warning, "22050 Hz");
  assert_says (warning, "audioresample");
  gst_element_set_state (p, GST_STATE_NULL);
  gst_object_unref (bus);
  gst_object_unref (p);
  g_free (warning);
  g_unlink (wav);
  g_free (wav);
  g_free (make);
  g_free (desc);
  g_free (model);
}

/* ---- model files ---------------------------------------------------------- */

/* model-location naming a file of another kind: the error says what the
 * file is and what to do (convert it, or put the audio in the pipeline). */
static void
test_model_location_kind (void)
{
  gchar *wav = g_build_filename (tmp_dir, "take1.wav", NULL);
  gchar *pt = g_build_filename (tmp_dir, "amp.pt", NULL);
  static const guint8 wav_bytes[] = "RIFF\x24\x08\0\0WAVEfmt \x10\0\0\0"
      "\x01\0\x01\0\x80\xbb\0\0";
  static const guint8 pt_bytes[] = "PK\x03\x04\0\0\x08\x08\0\0\0\0\0\0"
      "\0\0\0\0\0\0\0\0\0\0\0\0\x0c\0\x17\0amp/data.pklFB\x13\0ZZZZ";
  const char *fmt = "audiotestsrc num-buffers=2 ! audioconvert "
      "! rnnfilter name=f model-location=\"%s\" ! fakesink";
  gchar *desc, *text;

  g_assert_true (g_file_set_contents (wav, (const char *) wav_bytes,
          sizeof (wav_bytes) - 1, NULL));
  g_assert_true (g_file_set_contents (pt, (const char *) pt_bytes,
          sizeof (pt_bytes) - 1, NULL));

  desc = g_strdup_printf (fmt, wav);
  text = run_pipeline (desc);
  assert_says (text, "WAV audio file");
  assert_says (text, "wavparse");
  g_free (text);
  g_free (desc);

  desc = g_strdup_printf (fmt, pt);
  text = run_pipeline (desc);
  assert_says (text, "PyTorch file");
  assert_says (text, "gst-rnn-convert --check");
  g_free (text);
  g_free (desc);

  g_unlink (wav);
  g_unlink (pt);
  g_free (wav);
  g_free (pt);
}

/* A valid model too large for the memory there is (an LSTM of 10000 units,
 * 1.6 GB, as a sparse file) named while a stream runs: refused with a
 * warning that names the size, and the old model keeps running; in a child
 * limited to 2 GiB of address space more than the stream needs. */
static void
test_hot_swap_too_large (void)
{
  if (!address_limit_usable ()) {
    g_test_skip ("RLIMIT_AS is not usable under ASan or valgrind");
    return;
  }
  gchar *model = shipped_model ("softclip-lstm8.safetensors");
  gchar *huge = g_build_filename (tmp_dir, "huge.safetensors", NULL);

  if (g_test_subprocess ()) {
    struct rlimit lim;
    float x[480];
    GArray *before, *after;
    GstMessage *m;
    GError *err = NULL;
    gchar *dbg = NULL;
    Rig *r;

    for (guint i = 0; i < 480; i++)
      x[i] = 0.5f * sinf (0.05f * i);
    write_sparse_model (huge, "lstm", 4, 1, 10000, 0, 0);
    r = start_rig (model, 48000, NULL);
    g_assert_cmpint (rig_push_flags (r, x, 480, 0), ==, GST_FLOW_OK);
    before = rig_pull_all (r, NULL);
    g_assert_cmpuint (before->len, ==, 480);
    /* 2 GiB more than the running stream uses: the model's 1.6 GB of
     * parameters and their packed copy cannot both be had */
    lim.rlim_cur = lim.rlim_max = address_space_now () + (2ull << 30);
    g_assert_cmpint (setrlimit (RLIMIT_AS, &lim), ==, 0);

    g_object_set (r->e, "model-location", huge, NULL);
    m = gst_bus_timed_pop_filtered (r->bus, 30 * GST_SECOND,
        GST_MESSAGE_WARNING | GST_MESSAGE_ERROR);
    g_assert_nonnull (m);
    g_assert_cmpint (GST_MESSAGE_TYPE (m), ==, GST_MESSAGE_WARNING);
    gst_message_parse_warning (m, &err, &dbg);
    g_test_message ("warning: %s (%s)", err->message, dbg);
    assert_says (err->message, "huge.safetensors");
    assert_says (err->message, "cannot allocate");
    assert_says (err->message, "keeping the previous one");
    g_clear_error (&err);
    g_free (dbg);
    gst_message_unref (m);

    /* the old model still runs: the same input, the same output as a fresh
     * stream of it would give after the first buffer */
    g_assert_cmpint (rig_push_flags (r, x, 480, 0), ==, GST_FLOW_OK);
    after = rig_pull_all (r, NULL);
    g_assert_cmpuint (after->len, ==, 480);
    for (guint i = 0; i < 480; i++)
      g_assert_true (isfinite (g_array_index (after, float, i)));
    g_assert_cmpfloat (fabs (g_array_index (after, float, 240)), >, 0.0);
    g_array_unref (before);
    g_array_unref (after);
    rig_free (r);
    g_unlink (huge);
    return;
  }
  g_test_trap_subprocess (NULL, 120 * G_USEC_PER_SEC,
      G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_free (model);
  g_free (huge);
}

int
main (int argc, char **argv)
{
  int ret;

  g_test_init (&argc, &argv, NULL);
  gst_init (&argc, &argv);
  g_assert_true (GST_ELEMENT_REGISTER (rnnfilter, NULL));
  tmp_dir = g_dir_make_tmp ("test-rnnfilter-limits-XXXXXX", NULL);
  g_assert_nonnull (tmp_dir);

  g_test_add_func ("/rnnfilter/limits/refusal-says-fix",
      test_refusal_says_fix);
  g_test_add_func ("/rnnfilter/limits/no-remix", test_no_remix);
  g_test_add_func ("/rnnfilter/limits/link-check", test_link_check);
  g_test_add_func ("/rnnfilter/limits/source-picks-channels",
      test_source_picks_channels);
  g_test_add_func ("/rnnfilter/limits/missing-resample",
      test_missing_resample);
  g_test_add_func ("/rnnfilter/limits/model-location-kind",
      test_model_location_kind);
  g_test_add_func ("/rnnfilter/limits/hot-swap-too-large",
      test_hot_swap_too_large);
  g_test_add_func ("/rnnfilter/limits/window-memory", test_window_memory);
  g_test_add_func ("/rnnfilter/limits/channels-memory", test_channels_memory);
  g_test_add_func ("/rnnfilter/limits/non-finite-output",
      test_non_finite_output);
  g_test_add_func ("/rnnfilter/limits/bus-backlog", test_bus_backlog);
  g_test_add_func ("/rnnfilter/limits/reload-through-symlink",
      test_reload_through_symlink);

  ret = g_test_run ();
  g_rmdir (tmp_dir);
  g_free (tmp_dir);
  return ret;
}
