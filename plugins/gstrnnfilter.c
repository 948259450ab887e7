/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnnfilter: runs a recurrent network (RNN, LSTM, GRU; docs/design.md §4)
 * over an F32LE stream as a stateful filter.
 *
 * Data path (streaming thread only):
 *
 *   submit_input_buffer: pick up a pending model or reset, handle DISCONT,
 *     push the buffer into the adapter, run every complete step (or window)
 *     through the model, queue one output buffer;
 *   generate_output: hand the queued buffer to the base class.
 *
 * The adapter, the scratch tensors, running the steps, the output buffer
 * pool and the non-finite accounting are gstrnnstream.c.
 *
 * Everything the other threads touch (properties, the current and the
 * pending model, the negotiated layout, the latency) is under the object
 * lock; the streaming thread copies the settings once per buffer.  A model
 * named while running is loaded on the thread of a GstRnnLoader
 * (gstrnnloader.c, which also runs the file watch of reload-on-change) and
 * swapped in by the streaming thread at the start of a buffer, so every
 * buffer is computed wholly by one model.  How a model meets a stream (caps,
 * channels, rates, latency) is gstrnnlayout.c.
 */
/**
 * SECTION:element-rnnfilter
 * @title: rnnfilter
 *
 * Runs a recurrent neural network (Elman RNN, LSTM or GRU, stacked and
 * optionally bidirectional, with an optional dense head) stored in a gst-rnn
 * safetensors model over an interleaved 32-bit float stream.  One frame is
 * one time step (or `frame_size` frames are, see below) and the hidden state
 * carries from buffer to buffer.
 *
 * ## Frames, steps and channels
 *
 * With model input size I, output size O and the metadata `frame_size` F_in
 * and `output_frame_size` F_out, every step consumes F_in frames of
 * I / F_in channels and produces F_out frames of O / F_out channels; the
 * output rate is rate × F_out / F_in.  Input frame f of a step fills model
 * inputs [f·I/F_in, (f+1)·I/F_in).  A single-channel model on a C-channel
 * stream runs C independent states in one batched call (channel-mode
 * `independent`); output channel b·(O/F_out)+k is output k of input channel
 * b.
 *
 * ## End of stream
 *
 * At EOS (and at a GAP event, before new caps, and before a reset caused by
 * a DISCONT or a new stream) the frames left over are processed: a partial
 * step is padded with zeros and yields only ⌈r·F_out/F_in⌉ of its F_out
 * output frames (r = frames it really had), so a stream of N frames always
 * gives exactly ⌈N·F_out/F_in⌉ frames; a partial window of a bidirectional
 * model runs as a shorter sequence.  Bytes short of a whole frame are
 * dropped.  A GAP keeps the hidden state; the data after it takes a new
 * time base.
 *
 * ## Non-finite input
 *
 * A NaN or infinite input value is replaced by 0.0 before it reaches the
 * model, so it never enters the hidden state.  The first bad value of a run
 * (per channel) is reported with a warning message giving the number of
 * values replaced so far; runs beginning within one buffer share one
 * warning.  A model output that comes out non-finite (an overflow) is
 * replaced by 0.0 the same way, with its own count and warning.
 *
 * ## Changing the model while playing
 *
 * A new #GstRnnFilter:model-location, or with
 * #GstRnnFilter:reload-on-change a rewrite of the file, is loaded and
 * checked off the streaming thread and swapped in between two buffers; a
 * file that fails to load or does not fit the negotiated stream leaves the
 * running model in place and posts a warning.
 *
 * ## Example launch lines
 *
 * From the source tree (the models are in models/):
 * |[
 * gst-launch-1.0 audiotestsrc wave=saw freq=110 num-buffers=200 ! audio/x-raw,rate=48000,channels=1 ! audioconvert ! rnnfilter model-location=models/softclip-lstm8.safetensors ! audioconvert ! wavenc ! filesink location=softclip.wav
 * ]| the shipped soft-clip LSTM on a sawtooth, written to a WAV file.
 * |[
 * gst-launch-1.0 audiotestsrc num-buffers=200 ! audio/x-raw,rate=48000,channels=2 ! audioconvert ! rnnfilter model-location=models/softclip-lstm8.safetensors channel-mode=independent ! audioconvert ! autoaudiosink
 * ]| the single-channel model on both channels of a stereo stream, each with
 * its own state.
 * |[
 * gst-launch-1.0 -m audiotestsrc wave=white-noise num-buffers=50 ! audio/x-raw,rate=16000,channels=1 ! audioconvert ! rnnfilter model-location=models/sound-classifier.safetensors message-interval=25 ! fakesink
 * ]| a classifier (speech, tones, noise every 10 ms) posting its decision
 * every 0.25 s as an rnnfilter-output message.
 */
#include "gstrnnfilter.h"
#include "gstrnnelements.h"
#include "gstrnnlayout.h"
#include "gstrnnloader.h"
#include "gstrnnstream.h"

#include "rnn.h"

#include <string.h>

#if G_BYTE_ORDER != G_LITTLE_ENDIAN
#error "rnnfilter reads and writes F32LE samples in host order"
#endif

GST_DEBUG_CATEGORY (gst_rnn_filter_debug);
#define GST_CAT_DEFAULT gst_rnn_filter_debug

#define DEFAULT_MODEL_LOCATION    NULL
#define DEFAULT_RELOAD_ON_CHANGE  FALSE
#define DEFAULT_RESET_ON_DISCONT  TRUE
#define DEFAULT_WINDOW            0
#define DEFAULT_CHANNEL_MODE      GST_RNN_FILTER_CHANNEL_MODE_AUTO
#define DEFAULT_WEIGHT_PRECISION  GST_RNN_FILTER_WEIGHT_PRECISION_FLOAT32
#define DEFAULT_N_THREADS         1
#define MAX_N_THREADS             16
#define DEFAULT_MESSAGE_INTERVAL  0

enum
{
  PROP_0,
  PROP_MODEL_LOCATION,
  PROP_RELOAD_ON_CHANGE,
  PROP_RESET_ON_DISCONT,
  PROP_WINDOW,
  PROP_CHANNEL_MODE,
  PROP_MESSAGE_INTERVAL,
  PROP_WEIGHT_PRECISION,
  PROP_N_THREADS,
};

enum
{
  SIGNAL_RESET,
  LAST_SIGNAL,
};

static guint gst_rnn_filter_signals[LAST_SIGNAL];

#define RNN_CAPS \
    "audio/x-raw, format = (string) F32LE, layout = (string) interleaved, " \
    "rate = (int) [ 1, MAX ], channels = (int) [ 1, MAX ]"

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS (RNN_CAPS));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS (RNN_CAPS));

/* What the streaming thread copies once per buffer. */
typedef struct
{
  gboolean reset_on_discont;
  guint window;
  GstRnnFilterChannelMode channel_mode;
  guint message_interval;
} Settings;

struct _GstRnnFilter
{
  GstBaseTransform parent;

  /* properties, under the object lock */
  gchar *location;
  gboolean reload_on_change;
  gboolean reset_on_discont;
  guint window;
  GstRnnFilterChannelMode channel_mode;
  guint message_interval;
  GstRnnFilterWeightPrecision weight_precision;
  guint n_threads;

  /* shared with other threads, under the object lock.  Only the streaming
   * thread (and start/stop, which never run beside it) replaces @model
   * once started; @pending is what the loader thread validated last. */
  RnnModel *model;
  RnnModel *pending;
  gboolean reset_requested;
  gboolean started;
  gboolean negotiated;
  GstRnnLayout layout;
  GstClockTime latency;         /* our own share of the latency */
  GstRnnLoader *loader;         /* loads and watches between start and stop */

  /* held while the watch is changed and while stop() takes the loader away;
   * never taken with the object lock held */
  GMutex watch_lock;

  /* streaming state: the streaming thread's own */
  GstRnnStream stream;          /* gstrnnstream.c */
  GstBuffer *queued;            /* for generate_output */
  gchar *refused;               /* the caps refused last, and why */
};

#define gst_rnn_filter_parent_class parent_class
G_DEFINE_TYPE (GstRnnFilter, gst_rnn_filter, GST_TYPE_BASE_TRANSFORM);
GST_ELEMENT_REGISTER_DEFINE (rnnfilter, "rnnfilter", GST_RANK_NONE,
    GST_TYPE_RNN_FILTER);

/* rnn_model_load() and the weight-precision property: every model the
 * element runs comes through here. */
static RnnModel *
load_model (GstRnnFilter * self, const gchar * path, GError ** error)
{
  RnnModel *model = rnn_model_load (path, error);
  GstRnnFilterWeightPrecision precision;

  if (!model)
    return NULL;
  GST_OBJECT_LOCK (self);
  precision = self->weight_precision;
  GST_OBJECT_UNLOCK (self);
  if (precision == GST_RNN_FILTER_WEIGHT_PRECISION_FLOAT16
      && !rnn_model_set_weight_precision (model, RNN_WEIGHTS_F16, error)) {
    rnn_model_unref (model);
    return NULL;
  }
  return model;
}

static gchar *
describe_load_error (const gchar *path, const GError *err)
{
  if (g_str_has_prefix (err->message, path))
    return g_strdup (err->message);
  return g_strdup_printf ("%s: %s", path, err->message);
}

/* ---- caps ---------------------------------------------------------------- */

/* Copies the settings; the object lock is held. */
static void
read_settings (GstRnnFilter *self, Settings *s)
{
  s->reset_on_discont = self->reset_on_discont;
  s->window = self->window;
  s->channel_mode = self->channel_mode;
  s->message_interval = self->message_interval;
}

/* The current model, loading it from model-location if none is loaded yet
 * (caps can be asked for before start()).  NULL if there is none to load;
 * start() then reports why. */
static RnnModel *
gst_rnn_filter_ref_model (GstRnnFilter *self, Settings *s)
{
  RnnModel *model = NULL, *loaded;
  gchar *location = NULL;
  GError *err = NULL;

  GST_OBJECT_LOCK (self);
  if (self->model)
    model = rnn_model_ref (self->model);
  else
    location = g_strdup (self->location);
  if (s)
    read_settings (self, s);
  GST_OBJECT_UNLOCK (self);

  if (model || !location)
    return model;

  loaded = load_model (self, location, &err);
  if (!loaded) {
    GST_DEBUG_OBJECT (self, "no model for caps yet: %s", err->message);
    g_clear_error (&err);
    g_free (location);
    return NULL;
  }
  GST_OBJECT_LOCK (self);
  if (!self->model)
    self->model = rnn_model_ref (loaded);
  model = rnn_model_ref (self->model);
  GST_OBJECT_UNLOCK (self);
  rnn_model_unref (loaded);
  g_free (location);
  return model;
}

/* TRUE if the element linked to our sink pad is a GstBaseTransform (such as
 * audioconvert): one that converts what it receives into the first of our
 * structures that fits, rather than a source that picks one. */
static gboolean
upstream_is_transform (GstRnnFilter *self)
{
  GstPad *peer = gst_pad_get_peer (GST_BASE_TRANSFORM (self)->sinkpad);
  GstObject *parent = peer ? gst_pad_get_parent (peer) : NULL;
  gboolean is = parent && GST_IS_BASE_TRANSFORM (parent);

  if (parent)
    gst_object_unref (parent);
  if (peer)
    gst_object_unref (peer);
  return is;
}

/* Caps the model cannot take produce nothing here (see
 * gst_rnn_layout_transform_caps()), so upstream negotiation can convert; a
 * stream that arrives with such caps anyway is refused in the CAPS event with
 * a message saying why (see accept_caps). */
static GstCaps *
gst_rnn_filter_transform_caps (GstBaseTransform *trans,
    GstPadDirection direction, GstCaps *caps, GstCaps *filter)
{
  GstRnnFilter *self = GST_RNN_FILTER (trans);
  Settings s;
  RnnModel *model;
  GstCaps *result;
  /* what we take, asked by a converter linked upstream: see any_count */
  gboolean any_count = direction == GST_PAD_SRC
      && upstream_is_transform (self);

  model = gst_rnn_filter_ref_model (self, &s);
  if (!model) {
    GstPad *other = direction == GST_PAD_SINK ? trans->srcpad : trans->sinkpad;
    result = gst_pad_get_pad_template_caps (other);
  } else if (gst_caps_is_any (caps)) {
    GstCaps *templ = gst_pad_get_pad_template_caps (direction == GST_PAD_SINK ?
        trans->sinkpad : trans->srcpad);

    result = gst_rnn_layout_transform_caps (model, s.channel_mode, direction,
        templ, any_count);
    gst_caps_unref (templ);
  } else {
    result = gst_rnn_layout_transform_caps (model, s.channel_mode, direction,
        caps, any_count);
  }
  if (model)
    rnn_model_unref (model);

  if (filter) {
    GstCaps *tmp = gst_caps_intersect_full (filter, result,
        GST_CAPS_INTERSECT_FIRST);
    gst_caps_unref (result);
    result = tmp;
  }
  GST_LOG_OBJECT (self, "%s %" GST_PTR_FORMAT " -> %" GST_PTR_FORMAT,
      direction == GST_PAD_SINK ? "sink" : "src", caps, result);
  return result;
}

static GstCaps *
gst_rnn_filter_fixate_caps (GstBaseTransform *trans, GstPadDirection direction,
    GstCaps *caps, GstCaps *othercaps)
{
  return gst_rnn_layout_fixate_caps (othercaps);
}

/* The sink pad accepts every fixed raw audio caps: whether the model fits
 * (format, channels, rate) is checked when the CAPS event arrives, where a
 * refusal can say why and what converts it (the default would refuse it
 * silently before our event handler runs).  Caps queries still answer
 * exactly what the model takes. */
static gboolean
gst_rnn_filter_accept_caps (GstBaseTransform *trans, GstPadDirection direction,
    GstCaps *caps)
{
  if (direction != GST_PAD_SINK)
    return GST_BASE_TRANSFORM_CLASS (parent_class)->accept_caps (trans,
        direction, caps);
  return gst_caps_is_fixed (caps)
      && gst_structure_has_name (gst_caps_get_structure (caps, 0),
      "audio/x-raw");
}

/* ---- streaming helpers --------------------------------------------------- */

static void
gst_rnn_filter_update_latency (GstRnnFilter *self)
{
  GstClockTime latency;
  gboolean changed;

  GST_OBJECT_LOCK (self);
  latency = self->negotiated ? gst_rnn_layout_latency (&self->layout) : 0;
  changed = latency != self->latency;
  self->latency = latency;
  GST_OBJECT_UNLOCK (self);

  if (changed) {
    GST_DEBUG_OBJECT (self, "own latency now %" GST_TIME_FORMAT,
        GST_TIME_ARGS (latency));
    gst_element_post_message (GST_ELEMENT (self),
        gst_message_new_latency (GST_OBJECT (self)));
  }
}

static void
gst_rnn_filter_reset_stream (GstRnnFilter *self)
{
  gst_rnn_stream_reset (&self->stream);
  gst_buffer_replace (&self->queued, NULL);
}

/* Processes and pushes whatever the adapter holds, partial step and window
 * included, then forgets any stray bytes. */
static GstFlowReturn
gst_rnn_filter_drain (GstRnnFilter *self)
{
  if (!self->negotiated)
    return GST_FLOW_OK;
  return gst_rnn_stream_drain (&self->stream, self->model, &self->layout);
}

/* Installs @model (owned) if it fits the negotiated stream.  The hidden
 * state carries over when the new model has the same state shapes and
 * framing, else it restarts from the new model's initial state (and the
 * next buffer is DISCONT); later resets return to the new model's. */
static void
gst_rnn_filter_swap_model (GstRnnFilter *self, RnnModel *model,
    const Settings *s)
{
  GstRnnLayout nl, *l = &self->layout;
  RnnModel *old;
  gchar *why = NULL;

  if (self->negotiated) {
    if (!gst_rnn_layout_resolve_swap (&nl, l, model, s->channel_mode,
            s->window, &why)
        || !gst_rnn_stream_check_memory (model, &nl, &why)) {
      GST_ELEMENT_WARNING (self, STREAM, FORMAT,
          ("New model does not fit the stream, keeping the previous one: %s",
              why), (NULL));
      g_free (why);
      rnn_model_unref (model);
      return;
    }
    gst_rnn_stream_swap (&self->stream, model, l, &nl);
  } else {
    nl = *l;
    g_clear_pointer (&self->stream.state, rnn_state_free);
  }

  GST_INFO_OBJECT (self, "swapping in a new model (state %s)",
      self->negotiated && self->stream.state ? "kept" : "reset");
  GST_OBJECT_LOCK (self);
  old = self->model;
  self->model = model;
  self->layout = nl;
  GST_OBJECT_UNLOCK (self);
  if (old)
    rnn_model_unref (old);
  gst_rnn_filter_update_latency (self);
}

/* ---- the model loader (off the streaming thread) ------------------------- */

/* Loads @path for a swap at the next buffer (a GstRnnLoaderFunc). */
static void
gst_rnn_filter_load_func (const gchar *path, gpointer user_data)
{
  GstRnnFilter *self = user_data;
  GError *err = NULL;
  RnnModel *model, *drop = NULL;
  GstRnnLayout l, nl;
  gchar *why = NULL;
  gboolean negotiated;
  GstRnnFilterChannelMode mode;
  guint window;

  GST_DEBUG_OBJECT (self, "loading %s", path);
  model = load_model (self, path, &err);
  if (!model) {
    why = describe_load_error (path, err);
    GST_ELEMENT_WARNING (self, RESOURCE, OPEN_READ,
        ("Could not load model, keeping the previous one: %s", why), (NULL));
    g_free (why);
    g_clear_error (&err);
    return;
  }

  GST_OBJECT_LOCK (self);
  negotiated = self->negotiated;
  l = self->layout;
  mode = self->channel_mode;
  window = self->window;
  GST_OBJECT_UNLOCK (self);

  /* validate against the stream now, so a misfit is reported at once; the
   * streaming thread checks again when it swaps */
  if (negotiated
      && !gst_rnn_layout_resolve_swap (&nl, &l, model, mode, window, &why)) {
    GST_ELEMENT_WARNING (self, STREAM, FORMAT,
        ("Model %s does not fit the stream, keeping the previous one: %s",
            path, why), (NULL));
    g_free (why);
    rnn_model_unref (model);
    return;
  }

  GST_OBJECT_LOCK (self);
  drop = self->pending;
  self->pending = model;
  GST_OBJECT_UNLOCK (self);
  if (drop)
    rnn_model_unref (drop);
  GST_DEBUG_OBJECT (self, "%s loaded, swapping at the next buffer", path);
}

/* Makes the watch match the properties: one on model-location while
 * started with reload-on-change, none otherwise.  @watch_lock keeps stop()
 * from freeing the loader meanwhile. */
static void
gst_rnn_filter_update_watch (GstRnnFilter *self)
{
  GstRnnLoader *loader;
  gchar *path = NULL;
  GError *err = NULL;

  g_mutex_lock (&self->watch_lock);
  GST_OBJECT_LOCK (self);
  loader = self->loader;
  if (self->started && self->reload_on_change && self->location)
    path = g_strdup (self->location);
  GST_OBJECT_UNLOCK (self);

  if (loader && !gst_rnn_loader_watch (loader, path, &err)) {
    GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
        ("Cannot watch %s for changes: %s", path, err->message), (NULL));
    g_clear_error (&err);
  }
  g_mutex_unlock (&self->watch_lock);
  g_free (path);
}

/* ---- GstBaseTransform vfuncs --------------------------------------------- */

static gboolean
gst_rnn_filter_start (GstBaseTransform *trans)
{
  GstRnnFilter *self = GST_RNN_FILTER (trans);
  gchar *location, *why;
  GError *err = NULL;
  RnnModel *model, *old;
  const RnnConfig *cfg;
  guint window, n_threads;

  GST_OBJECT_LOCK (self);
  location = g_strdup (self->location);
  window = self->window;
  GST_OBJECT_UNLOCK (self);

  if (!location) {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
        ("No model: the model-location property is not set"), (NULL));
    return FALSE;
  }
  model = load_model (self, location, &err);
  if (!model) {
    gboolean exists = g_file_test (location, G_FILE_TEST_EXISTS);

    why = describe_load_error (location, err);
    if (exists)
      GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
          ("Could not load model \"%s\": %s", location, why), (NULL));
    else
      GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
          ("Model file \"%s\" not found: %s", location, why), (NULL));
    g_free (why);
    g_clear_error (&err);
    g_free (location);
    return FALSE;
  }
  cfg = rnn_model_get_config (model);
  if (cfg->bidirectional && window == 0 && cfg->window == 0) {
    GST_ELEMENT_ERROR (self, LIBRARY, SETTINGS,
        ("Model \"%s\" is bidirectional and has no window: set the window "
            "property", location), (NULL));
    rnn_model_unref (model);
    g_free (location);
    return FALSE;
  }
  g_free (location);

  self->stream.fw = rnn_forward_new ();
  GST_OBJECT_LOCK (self);
  n_threads = self->n_threads;
  GST_OBJECT_UNLOCK (self);
  if (!rnn_forward_set_threads (self->stream.fw, n_threads, &err)) {
    GST_ELEMENT_ERROR (self, RESOURCE, FAILED,
        ("Could not start %u threads: %s", n_threads - 1, err->message), (NULL));
    g_clear_error (&err);
    g_clear_pointer (&self->stream.fw, rnn_forward_free);
    rnn_model_unref (model);
    return FALSE;
  }
  self->stream.adapter = gst_adapter_new ();
  self->stream.bad.total = self->stream.bad_out.total = 0;
  self->stream.base_offset = 0;
  gst_rnn_filter_reset_stream (self);

  GST_OBJECT_LOCK (self);
  old = self->model;
  self->model = model;
  g_clear_pointer (&self->pending, rnn_model_unref);
  self->reset_requested = FALSE;
  self->negotiated = FALSE;
  self->latency = 0;
  self->started = TRUE;
  self->loader = gst_rnn_loader_new (gst_rnn_filter_load_func, self);
  GST_OBJECT_UNLOCK (self);
  if (old)
    rnn_model_unref (old);

  gst_rnn_filter_update_watch (self);
  return TRUE;
}

static gboolean
gst_rnn_filter_stop (GstBaseTransform *trans)
{
  GstRnnFilter *self = GST_RNN_FILTER (trans);
  GstRnnLoader *loader;
  RnnModel *model, *pending;

  g_mutex_lock (&self->watch_lock);
  GST_OBJECT_LOCK (self);
  self->started = FALSE;
  loader = self->loader;
  self->loader = NULL;
  GST_OBJECT_UNLOCK (self);
  g_mutex_unlock (&self->watch_lock);
  /* the watch ends, then the load under way */
  gst_rnn_loader_free (loader);

  GST_OBJECT_LOCK (self);
  model = self->model;
  pending = self->pending;
  self->model = self->pending = NULL;
  self->negotiated = FALSE;
  self->latency = 0;
  GST_OBJECT_UNLOCK (self);
  if (model)
    rnn_model_unref (model);
  if (pending)
    rnn_model_unref (pending);

  gst_buffer_replace (&self->queued, NULL);
  gst_rnn_stream_clear (&self->stream);
  g_clear_pointer (&self->refused, g_free);
  return TRUE;
}

/* Posts the NEGOTIATION error for @caps once.  A pad offers sticky caps
 * that were refused again with every later event and buffer (and
 * basetransform calls set_caps again each time); all of that is one
 * negotiation, and the error is not repeated while the same caps are
 * refused for the same reason.  New caps, a new stream or a stop start
 * afresh.  The text says what @model needs and how to convert; without
 * @model it is @why alone. */
static void
post_refusal (GstRnnFilter *self, GstCaps *caps, const gchar *why,
    const RnnModel *model, const Settings *s)
{
  gchar *text = model ? gst_rnn_layout_describe_refusal (model,
      s->channel_mode, caps, why) : g_strdup (why);
  gchar *key = g_strdup_printf ("%" GST_PTR_FORMAT "\n%s", caps, text);

  if (g_strcmp0 (key, self->refused) == 0) {
    GST_DEBUG_OBJECT (self, "caps refused again: %s", why);
    g_free (key);
    g_free (text);
    return;
  }
  GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, ("%s", text),
      ("caps %" GST_PTR_FORMAT, caps));
  g_free (self->refused);
  self->refused = key;
  g_free (text);
}

static gboolean
gst_rnn_filter_set_caps (GstBaseTransform *trans, GstCaps *incaps,
    GstCaps *outcaps)
{
  GstRnnFilter *self = GST_RNN_FILTER (trans);
  GstRnnLayout nl;
  Settings s;
  RnnModel *model;
  gint rate, channels, out_rate, out_channels;
  gchar *why = NULL;
  gboolean same;

  if (!gst_rnn_layout_parse_caps (incaps, &rate, &channels)
      || !gst_rnn_layout_parse_caps (outcaps, &out_rate, &out_channels)) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, (NULL),
        ("invalid caps %" GST_PTR_FORMAT " -> %" GST_PTR_FORMAT, incaps,
            outcaps));
    return FALSE;
  }
  model = gst_rnn_filter_ref_model (self, &s);
  if (!model) {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
        ("No model: set the model-location property"), (NULL));
    return FALSE;
  }
  if (!gst_rnn_layout_resolve (&nl, model, s.channel_mode, s.window, rate,
          channels, &why)
      || (why = gst_rnn_layout_check_output (&nl, out_rate, out_channels))) {
    post_refusal (self, incaps, why, model, &s);
    g_free (why);
    rnn_model_unref (model);
    return FALSE;
  }
  rnn_model_unref (model);

  same = self->negotiated && memcmp (&nl, &self->layout, sizeof (nl)) == 0;
  if (!same) {
    if (self->negotiated)
      gst_rnn_filter_drain (self);
    gst_buffer_replace (&self->queued, NULL);
    if (!gst_rnn_stream_configure (&self->stream, self->model, &nl, &why)) {
      GST_OBJECT_LOCK (self);
      self->negotiated = FALSE;
      GST_OBJECT_UNLOCK (self);
      post_refusal (self, incaps, why, NULL, &s);
      g_free (why);
      return FALSE;
    }
  }
  g_clear_pointer (&self->refused, g_free);

  GST_OBJECT_LOCK (self);
  self->layout = nl;
  self->negotiated = TRUE;
  GST_OBJECT_UNLOCK (self);
  GST_INFO_OBJECT (self, "%u ch at %u Hz -> %u ch at %u Hz, %s, B=%u, "
      "F_in=%u, F_out=%u, window=%u", nl.in_channels, nl.in_rate,
      nl.out_channels, nl.out_rate, nl.independent ? "independent" : "vector",
      nl.batch, nl.f_in, nl.f_out, nl.window);
  gst_rnn_filter_update_latency (self);
  return TRUE;
}

static gboolean
gst_rnn_filter_sink_event (GstBaseTransform *trans, GstEvent *event)
{
  GstRnnFilter *self = GST_RNN_FILTER (trans);

  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_CAPS:{
      GstCaps *caps;
      RnnModel *model;
      Settings s;
      gchar *why = NULL;

      /* say why a stream the model cannot take is refused */
      gst_event_parse_caps (event, &caps);
      model = gst_rnn_filter_ref_model (self, &s);
      if (model && !gst_rnn_layout_check_caps (model, s.channel_mode,
              s.window, caps, &why)) {
        post_refusal (self, caps, why, model, &s);
        g_free (why);
        rnn_model_unref (model);
        gst_event_unref (event);
        return FALSE;
      }
      if (model)
        rnn_model_unref (model);
      break;
    }
    case GST_EVENT_FLUSH_STOP:
      gst_rnn_filter_reset_stream (self);
      break;
    case GST_EVENT_STREAM_START:
      gst_rnn_filter_drain (self);
      gst_rnn_filter_reset_stream (self);
      g_clear_pointer (&self->refused, g_free);
      break;
    case GST_EVENT_EOS:
      gst_rnn_filter_drain (self);
      self->stream.need_base = TRUE;
      break;
    case GST_EVENT_GAP:
      /* Frames held for an incomplete step (or window) lie before the gap:
       * push them out first, as at EOS (a partial step zero-padded, a
       * partial window as a shorter sequence), so that the GAP never
       * overtakes them.  The hidden state carries on (a gap is not a
       * reset); the data after the gap takes a new time base. */
      if (gst_rnn_filter_drain (self) != GST_FLOW_OK)
        GST_DEBUG_OBJECT (self, "pushing the frames held before a GAP failed");
      self->stream.need_base = TRUE;
      break;
    default:
      break;
  }
  return GST_BASE_TRANSFORM_CLASS (parent_class)->sink_event (trans, event);
}

/* Upstream asked what we take (a CAPS query with a filter of what it can
 * give) and nothing fits: negotiation is about to fail upstream of us,
 * where no element knows why (audioconvert without audioresample in front
 * of a model made for another rate).  One warning says what the model needs
 * and what was offered. */
static void
warn_unmatched_query (GstRnnFilter *self, GstCaps *filter)
{
  Settings s;
  RnnModel *model = gst_rnn_filter_ref_model (self, &s);
  gchar *text, *key;

  if (!model)
    return;
  text = gst_rnn_layout_describe_offer (model, s.channel_mode, s.window,
      filter);
  rnn_model_unref (model);
  if (!text)
    return;
  key = g_strconcat ("query\n", text, NULL);
  if (g_strcmp0 (key, self->refused) != 0) {
    GST_ELEMENT_WARNING (self, CORE, NEGOTIATION, ("%s", text),
        ("no caps upstream offers fit: %" GST_PTR_FORMAT, filter));
    g_free (self->refused);
    self->refused = key;
  } else {
    g_free (key);
  }
  g_free (text);
}

/* A caps query without a filter on an unlinked pad (@pad) of an element in
 * a bin: a link being checked (gst_element_link(), gst-launch-1.0 building
 * its pipeline), which asks both pads and never tells us what the other
 * one gives.  Answering only what the model takes (on the source pad:
 * what it gives for what the sink pad is linked to) would fail the link
 * with gst-launch-1.0's bare "could not link"; so @result is followed by
 * any F32LE interleaved audio (the pad template): the link is made, and
 * negotiation, where upstream's offer is known, either converts to the
 * model's caps or fails with rnnfilter's message naming both
 * (warn_unmatched_query(), or the refusal of the CAPS event).  Once
 * linked, and outside a bin, the query answers exactly what the model
 * takes. */
static void
answer_link_check (GstRnnFilter *self, GstPad *pad, GstQuery *query,
    GstCaps *result)
{
  GstCaps *templ = gst_pad_get_pad_template_caps (pad);
  GstCaps *answer = gst_caps_copy (result);

  gst_caps_append (answer, templ);
  gst_query_set_caps_result (query, answer);
  gst_caps_unref (answer);
}

static gboolean
gst_rnn_filter_query (GstBaseTransform *trans, GstPadDirection direction,
    GstQuery *query)
{
  GstRnnFilter *self = GST_RNN_FILTER (trans);

  if (GST_QUERY_TYPE (query) == GST_QUERY_CAPS) {
    GstPad *pad = direction == GST_PAD_SINK ? trans->sinkpad : trans->srcpad;
    GstCaps *filter = NULL, *result = NULL;
    gboolean ret;

    ret = GST_BASE_TRANSFORM_CLASS (parent_class)->query (trans, direction,
        query);
    gst_query_parse_caps (query, &filter);
    gst_query_parse_caps_result (query, &result);
    if (!ret || !result)
      return ret;
    if (!filter && GST_OBJECT_PARENT (self) && !gst_pad_is_linked (pad))
      answer_link_check (self, pad, query, result);
    else if (direction == GST_PAD_SINK && gst_caps_is_empty (result))
      warn_unmatched_query (self, filter);
    return ret;
  }

  if (direction == GST_PAD_SRC && GST_QUERY_TYPE (query) == GST_QUERY_LATENCY) {
    GstClockTime min, max, own;
    gboolean live;

    if (!gst_pad_peer_query (trans->sinkpad, query))
      return FALSE;
    gst_query_parse_latency (query, &live, &min, &max);
    GST_OBJECT_LOCK (self);
    own = self->latency;
    GST_OBJECT_UNLOCK (self);
    min += own;
    if (GST_CLOCK_TIME_IS_VALID (max))
      max += own;
    GST_DEBUG_OBJECT (self, "latency: ours %" GST_TIME_FORMAT ", total min %"
        GST_TIME_FORMAT, GST_TIME_ARGS (own), GST_TIME_ARGS (min));
    gst_query_set_latency (query, live, min, max);
    return TRUE;
  }
  return GST_BASE_TRANSFORM_CLASS (parent_class)->query (trans, direction,
      query);
}

/* Our input buffers never reach downstream: don't forward upstream's
 * allocation query (with our sink caps) to it. */
static gboolean
gst_rnn_filter_propose_allocation (GstBaseTransform *trans,
    GstQuery *decide_query, GstQuery *query)
{
  return TRUE;
}

/* A new allocation answer (new caps, a reconfigure): the next output
 * buffer sets up a pool with the allocator and parameters it names. */
static gboolean
gst_rnn_filter_decide_allocation (GstBaseTransform *trans, GstQuery *query)
{
  GstRnnFilter *self = GST_RNN_FILTER (trans);

  gst_rnn_stream_release_pool (&self->stream);
  return GST_BASE_TRANSFORM_CLASS (parent_class)->decide_allocation (trans,
      query);
}

static GstFlowReturn
gst_rnn_filter_submit_input_buffer (GstBaseTransform *trans,
    gboolean is_discont, GstBuffer *inbuf)
{
  GstRnnFilter *self = GST_RNN_FILTER (trans);
  GstFlowReturn ret = GST_FLOW_OK;
  RnnModel *pending;
  gboolean negotiated, reset;
  Settings s;
  guint window;

  if (!gst_base_transform_reconfigure (trans)) {
    gst_buffer_unref (inbuf);
    return GST_PAD_IS_FLUSHING (trans->srcpad) ? GST_FLOW_FLUSHING
        : GST_FLOW_NOT_NEGOTIATED;
  }

  GST_OBJECT_LOCK (self);
  negotiated = self->negotiated;
  read_settings (self, &s);
  pending = self->pending;
  self->pending = NULL;
  reset = self->reset_requested;
  self->reset_requested = FALSE;
  GST_OBJECT_UNLOCK (self);

  if (!negotiated) {
    if (pending)
      rnn_model_unref (pending);
    gst_buffer_unref (inbuf);
    return GST_FLOW_NOT_NEGOTIATED;
  }
  self->stream.interval = s.message_interval;

  /* a buffer boundary: a new model, a new window */
  if (pending)
    gst_rnn_filter_swap_model (self, pending, &s);
  if (self->layout.bidirectional) {
    window = s.window ? s.window : rnn_model_get_config (self->model)->window;
    if (window != 0 && window != self->layout.window) {
      GstRnnLayout nl = self->layout;
      gchar *why = NULL;

      nl.window = window;
      if (!gst_rnn_stream_check_memory (self->model, &nl, &why)) {
        GST_ELEMENT_WARNING (self, RESOURCE, NO_SPACE_LEFT,
            ("Keeping the window of %u steps: %s", self->layout.window, why),
            (NULL));
        g_free (why);
        GST_OBJECT_LOCK (self);
        self->window = self->layout.window;
        GST_OBJECT_UNLOCK (self);
      } else {
        GST_DEBUG_OBJECT (self, "window %u -> %u", self->layout.window, window);
        GST_OBJECT_LOCK (self);
        self->layout.window = window;
        GST_OBJECT_UNLOCK (self);
        gst_rnn_filter_update_latency (self);
      }
    }
  }

  if (GST_BUFFER_IS_DISCONT (inbuf)) {
    if (s.reset_on_discont) {
      GST_DEBUG_OBJECT (self, "DISCONT: draining and resetting");
      ret = gst_rnn_filter_drain (self);
      gst_rnn_stream_reset_state (&self->stream);
    }
    self->stream.need_base = TRUE;
  }
  if (reset) {
    GST_DEBUG_OBJECT (self, "reset requested");
    gst_rnn_stream_reset_state (&self->stream);
  }
  if (ret != GST_FLOW_OK) {
    gst_buffer_unref (inbuf);
    return ret;
  }

  gst_rnn_stream_take_input (&self->stream, &self->layout, inbuf);
  gst_buffer_replace (&self->queued, NULL);
  return gst_rnn_stream_process (&self->stream, self->model, &self->layout,
      FALSE, &self->queued);
}

static GstFlowReturn
gst_rnn_filter_generate_output (GstBaseTransform *trans, GstBuffer **outbuf)
{
  GstRnnFilter *self = GST_RNN_FILTER (trans);

  *outbuf = self->queued;
  self->queued = NULL;
  return GST_FLOW_OK;
}

/* ---- the reset signal ---------------------------------------------------- */

static void
gst_rnn_filter_reset (GstRnnFilter *self)
{
  GST_OBJECT_LOCK (self);
  self->reset_requested = TRUE;
  GST_OBJECT_UNLOCK (self);
}

/* ---- GObject ------------------------------------------------------------- */

static void
gst_rnn_filter_set_property (GObject *object, guint prop_id,
    const GValue *value, GParamSpec *pspec)
{
  GstRnnFilter *self = GST_RNN_FILTER (object);

  switch (prop_id) {
    case PROP_MODEL_LOCATION:{
      RnnModel *cached = NULL;

      GST_OBJECT_LOCK (self);
      g_free (self->location);
      self->location = g_value_dup_string (value);
      if (self->loader)
        gst_rnn_loader_queue (self->loader, self->location);
      if (!self->started) {
        /* a model a caps query loaded before start() */
        cached = self->model;
        self->model = NULL;
      }
      GST_OBJECT_UNLOCK (self);
      if (cached)
        rnn_model_unref (cached);
      gst_rnn_filter_update_watch (self);
      break;
    }
    case PROP_RELOAD_ON_CHANGE:
      GST_OBJECT_LOCK (self);
      self->reload_on_change = g_value_get_boolean (value);
      GST_OBJECT_UNLOCK (self);
      gst_rnn_filter_update_watch (self);
      break;
    case PROP_RESET_ON_DISCONT:
      GST_OBJECT_LOCK (self);
      self->reset_on_discont = g_value_get_boolean (value);
      GST_OBJECT_UNLOCK (self);
      break;
    case PROP_WINDOW:
      GST_OBJECT_LOCK (self);
      self->window = g_value_get_uint (value);
      GST_OBJECT_UNLOCK (self);
      break;
    case PROP_CHANNEL_MODE:
      GST_OBJECT_LOCK (self);
      self->channel_mode = g_value_get_enum (value);
      GST_OBJECT_UNLOCK (self);
      gst_base_transform_reconfigure_sink (GST_BASE_TRANSFORM (self));
      break;
    case PROP_WEIGHT_PRECISION:
      GST_OBJECT_LOCK (self);
      self->weight_precision = g_value_get_enum (value);
      GST_OBJECT_UNLOCK (self);
      break;
    case PROP_N_THREADS:
      GST_OBJECT_LOCK (self);
      self->n_threads = g_value_get_uint (value);
      GST_OBJECT_UNLOCK (self);
      break;
    case PROP_MESSAGE_INTERVAL:
      GST_OBJECT_LOCK (self);
      self->message_interval = g_value_get_uint (value);
      GST_OBJECT_UNLOCK (self);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
}

static void
gst_rnn_filter_get_property (GObject *object, guint prop_id, GValue *value,
    GParamSpec *pspec)
{
  GstRnnFilter *self = GST_RNN_FILTER (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL_LOCATION:
      g_value_set_string (value, self->location);
      break;
    case PROP_RELOAD_ON_CHANGE:
      g_value_set_boolean (value, self->reload_on_change);
      break;
    case PROP_RESET_ON_DISCONT:
      g_value_set_boolean (value, self->reset_on_discont);
      break;
    case PROP_WINDOW:
      g_value_set_uint (value, self->window);
      break;
    case PROP_CHANNEL_MODE:
      g_value_set_enum (value, self->channel_mode);
      break;
    case PROP_MESSAGE_INTERVAL:
      g_value_set_uint (value, self->message_interval);
      break;
    case PROP_WEIGHT_PRECISION:
      g_value_set_enum (value, self->weight_precision);
      break;
    case PROP_N_THREADS:
      g_value_set_uint (value, self->n_threads);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_rnn_filter_finalize (GObject *object)
{
  GstRnnFilter *self = GST_RNN_FILTER (object);

  /* normally gone with stop() already */
  gst_rnn_loader_free (self->loader);
  g_mutex_clear (&self->watch_lock);
  g_free (self->location);
  g_clear_pointer (&self->model, rnn_model_unref);
  g_clear_pointer (&self->pending, rnn_model_unref);
  gst_buffer_replace (&self->queued, NULL);
  gst_rnn_stream_clear (&self->stream);
  g_free (self->refused);

  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_rnn_filter_class_init (GstRnnFilterClass *klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS (klass);

  GST_DEBUG_CATEGORY_INIT (gst_rnn_filter_debug, "rnnfilter", 0,
      "recurrent network filter");

  gobject_class->set_property = gst_rnn_filter_set_property;
  gobject_class->get_property = gst_rnn_filter_get_property;
  gobject_class->finalize = gst_rnn_filter_finalize;

  /**
   * GstRnnFilter:model-location:
   *
   * Path of the gst-rnn .safetensors model to run.  Required; read at the
   * READY to PAUSED change, which fails with an error naming the file if it
   * is missing or unreadable.
   *
   * May be changed while PLAYING: the new file is loaded and checked on the
   * loader thread and swapped in at a buffer boundary, so every buffer is
   * computed wholly by one model.  The hidden state carries over if the new
   * model has the same state shapes and framing, else it restarts from the
   * new model's initial state (rnn.h0, rnn.c0; zeros without them) and the
   * next output buffer is marked DISCONT.  Every later reset returns to the
   * new model's initial state.  A file that fails to load
   * or does not fit the negotiated caps leaves the old model running and
   * posts a warning saying why.
   */
  g_object_class_install_property (gobject_class, PROP_MODEL_LOCATION,
      g_param_spec_string ("model-location", "Model location",
          "Path of the gst-rnn .safetensors model to run",
          DEFAULT_MODEL_LOCATION,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));
  /**
   * GstRnnFilter:reload-on-change:
   *
   * Watch #GstRnnFilter:model-location while running and load the model
   * again whenever the file is rewritten (written in place or atomically
   * renamed over); when it is a symbolic link, the file it points to is
   * watched as well, and a link pointed elsewhere follows.  The new model
   * is swapped in as a change of #GstRnnFilter:model-location is.  The
   * watch runs on a thread of its own and needs no main loop.
   */
  g_object_class_install_property (gobject_class, PROP_RELOAD_ON_CHANGE,
      g_param_spec_boolean ("reload-on-change", "Reload on change",
          "Reload the model whenever its file is rewritten",
          DEFAULT_RELOAD_ON_CHANGE,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));
  /**
   * GstRnnFilter:reset-on-discont:
   *
   * On a DISCONT input buffer, process the frames still held (a partial step
   * zero-padded) and reset the hidden state to zero.  The state is also
   * reset on FLUSH_STOP, STREAM_START and the #GstRnnFilter::reset signal,
   * and by nothing else.
   */
  g_object_class_install_property (gobject_class, PROP_RESET_ON_DISCONT,
      g_param_spec_boolean ("reset-on-discont", "Reset on discont",
          "Reset the hidden state on a DISCONT buffer",
          DEFAULT_RESET_ON_DISCONT,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));
  /**
   * GstRnnFilter:window:
   *
   * Steps per window of a bidirectional model: each window is one sequence
   * starting from a zero state in both directions, and its output leaves
   * once the window is complete, which adds frame_size × window − 1 frames
   * of latency.  0 takes the model's `window` metadata.  Ignored for
   * unidirectional models.
   */
  g_object_class_install_property (gobject_class, PROP_WINDOW,
      g_param_spec_uint ("window", "Window",
          "Steps per window of a bidirectional model (0 = the model's)",
          0, RNN_MAX_WINDOW, DEFAULT_WINDOW,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));
  /**
   * GstRnnFilter:channel-mode:
   *
   * How the stream's channels map onto the model's input: `vector` (the
   * stream has the model's I / frame_size channels, one input vector per
   * step), `independent` (a single-channel model runs on each of the C
   * channels with its own state; output channel b × (O / output_frame_size)
   * + k is output k of channel b) or `auto`.  Applies at caps negotiation.
   */
  g_object_class_install_property (gobject_class, PROP_CHANNEL_MODE,
      g_param_spec_enum ("channel-mode", "Channel mode",
          "How the stream's channels map onto the model's input",
          GST_TYPE_RNN_FILTER_CHANNEL_MODE, DEFAULT_CHANNEL_MODE,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  /**
   * GstRnnFilter:weight-precision:
   *
   * `float32`: the model's weights.  `float16` (opt-in): the recurrent
   * weights rounded to float16 for inference, half the bytes read per step
   * (measured error against float32 PyTorch on the test fixtures, T = 1000:
   * LSTM 5e-5, GRU 1.1e-4, tanh RNN 7e-4).  Whether that is faster depends
   * on the CPU: at hidden sizes of 64 and more it measured 1.1-1.65x faster
   * on AMD Zen 3 and Zen 4 and 14-30 % slower on an Intel Sapphire Rapids;
   * below 64 it changes little.  Applies to the models loaded from then on,
   * at start and on hot swaps.
   */
  g_object_class_install_property (gobject_class, PROP_WEIGHT_PRECISION,
      g_param_spec_enum ("weight-precision", "Weight precision",
          "Precision of the recurrent weights used for inference; float16 "
          "halves the bytes read per step: faster at hidden sizes >= 64 on "
          "AMD Zen 3/4, slower on Intel Sapphire Rapids (docs/performance.md)",
          GST_TYPE_RNN_FILTER_WEIGHT_PRECISION, DEFAULT_WEIGHT_PRECISION,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  /**
   * GstRnnFilter:n-threads:
   *
   * Threads the channels of an independent-mode stream are split over, the
   * streaming thread included; 1 runs everything on the streaming thread.
   * The output is the same bits either way.  Buffers with little work stay
   * on one thread.
   */
  g_object_class_install_property (gobject_class, PROP_N_THREADS,
      g_param_spec_uint ("n-threads", "Threads",
          "Threads the channels of an independent-mode stream are split over",
          1, MAX_N_THREADS, DEFAULT_N_THREADS,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_READY));
  /**
   * GstRnnFilter:message-interval:
   *
   * Post an element message `rnnfilter-output` every N steps (0 = never)
   * with the fields `timestamp` (guint64, the PTS of the step), `values`
   * (a GValueArray of doubles, the O outputs, as the level element posts),
   * for softmax heads `class` (int, the argmax), `confidence` (double) and,
   * when the model has `labels` metadata, `label` (string), and in
   * independent mode `channel` (int; one message per channel).
   *
   * At most 1000 of these messages wait on the bus at a time: while that
   * many are not yet popped, new ones are skipped and counted, and one
   * warning says so; the backlog of an application that does not drain
   * the bus stays bounded.
   */
  g_object_class_install_property (gobject_class, PROP_MESSAGE_INTERVAL,
      g_param_spec_uint ("message-interval", "Message interval",
          "Post an rnnfilter-output message every N steps (0 = never)",
          0, G_MAXUINT, DEFAULT_MESSAGE_INTERVAL,
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
          GST_PARAM_MUTABLE_PLAYING));

  /**
   * GstRnnFilter::reset:
   * @rnnfilter: the element
   *
   * Action signal: reset the hidden state to zero before the next input
   * buffer is processed (frames held for an incomplete step stay).  The
   * next output buffer is marked DISCONT.  Safe from any thread.
   */
  gst_rnn_filter_signals[SIGNAL_RESET] =
      g_signal_new_class_handler ("reset", G_TYPE_FROM_CLASS (klass),
      G_SIGNAL_RUN_LAST | G_SIGNAL_ACTION, G_CALLBACK (gst_rnn_filter_reset),
      NULL, NULL, NULL, G_TYPE_NONE, 0);

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class,
      "Recurrent network filter", "Filter/Effect/Audio",
      "Runs an RNN, LSTM or GRU model over a float stream as a stateful "
      "filter",
      "gst-rnn developers");

  trans_class->start = GST_DEBUG_FUNCPTR (gst_rnn_filter_start);
  trans_class->stop = GST_DEBUG_FUNCPTR (gst_rnn_filter_stop);
  trans_class->transform_caps =
      GST_DEBUG_FUNCPTR (gst_rnn_filter_transform_caps);
  trans_class->fixate_caps = GST_DEBUG_FUNCPTR (gst_rnn_filter_fixate_caps);
  trans_class->accept_caps = GST_DEBUG_FUNCPTR (gst_rnn_filter_accept_caps);
  trans_class->set_caps = GST_DEBUG_FUNCPTR (gst_rnn_filter_set_caps);
  trans_class->sink_event = GST_DEBUG_FUNCPTR (gst_rnn_filter_sink_event);
  trans_class->query = GST_DEBUG_FUNCPTR (gst_rnn_filter_query);
  trans_class->propose_allocation =
      GST_DEBUG_FUNCPTR (gst_rnn_filter_propose_allocation);
  trans_class->decide_allocation =
      GST_DEBUG_FUNCPTR (gst_rnn_filter_decide_allocation);
  trans_class->submit_input_buffer =
      GST_DEBUG_FUNCPTR (gst_rnn_filter_submit_input_buffer);
  trans_class->generate_output =
      GST_DEBUG_FUNCPTR (gst_rnn_filter_generate_output);

  gst_type_mark_as_plugin_api (GST_TYPE_RNN_FILTER_CHANNEL_MODE, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_RNN_FILTER_WEIGHT_PRECISION, 0);
}

static void
gst_rnn_filter_init (GstRnnFilter *self)
{
  self->location = g_strdup (DEFAULT_MODEL_LOCATION);
  self->reload_on_change = DEFAULT_RELOAD_ON_CHANGE;
  self->reset_on_discont = DEFAULT_RESET_ON_DISCONT;
  self->window = DEFAULT_WINDOW;
  self->channel_mode = DEFAULT_CHANNEL_MODE;
  self->weight_precision = DEFAULT_WEIGHT_PRECISION;
  self->n_threads = DEFAULT_N_THREADS;
  self->message_interval = DEFAULT_MESSAGE_INTERVAL;
  gst_rnn_stream_init (&self->stream, GST_BASE_TRANSFORM (self));
  g_mutex_init (&self->watch_lock);

  /* without transform()/transform_ip() the base class would start in
   * passthrough; generate_output() is ours */
  gst_base_transform_set_passthrough (GST_BASE_TRANSFORM (self), FALSE);
  gst_base_transform_set_qos_enabled (GST_BASE_TRANSFORM (self), FALSE);
}
