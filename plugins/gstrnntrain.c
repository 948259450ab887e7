/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnntrain: trains a recurrent network (RNN, LSTM, GRU) with
 * backpropagation through time on the stream it is given
 * (docs/design.md §4).
 *
 * Data path (the aggregator's source pad task, one thread):
 *
 *   aggregate: pop what every sink pad has and hand it to the pairing
 *     (gstrnnpairing.c), which places it on a per-pad lane, pairs the
 *     frames of the two lanes (or of the one lane with itself shifted by
 *     predict-ahead steps) and cuts the pairs into steps (records of
 *     inputs, target, loss weight).  Run the current model over the new
 *     steps for the src pad and hand the steps to the trainer
 *     (src/rnn-trainer.c), which records them (offline) or trains on them
 *     (online).  At EOS, offline mode trains on the recording, writes the
 *     best model and returns GST_FLOW_EOS so the base class forwards EOS.
 *     The trainer's callbacks become bus messages here.
 *
 * Properties (their table, enum types and the model and trainer
 * configurations they give: gstrnntrainsettings.c) live under the object
 * lock and are copied once, when the stream is configured (first buffer);
 * changing them later takes effect the next time the element starts.  The
 * only other shared state is the lanes' caps (read by caps queries from
 * upstream threads, under the object lock) and the cancel flag (atomic),
 * which a state change or a flush sets so a long training loop ends
 * promptly.
 */
/**
 * SECTION:element-rnntrain
 * @title: rnntrain
 *
 * Trains an Elman RNN, LSTM or GRU (stacked, optionally bidirectional, with
 * a linear head) on an interleaved 32-bit float stream and writes it as a
 * gst-rnn safetensors model that rnnfilter (and PyTorch, through
 * python/gstrnn/export.py) loads.
 *
 * ## Pads
 *
 * `sink` (always) carries the features.  `target` is a request pad: link
 * something to `rnntrain.target` (gst-launch requests it by that name) to
 * give the training targets; it must be requested before data flows.
 * Without it the model learns to predict its own input `predict-ahead`
 * steps ahead.  Both take F32LE interleaved at the same rate; they are
 * aligned by running time, sample-exactly (frames before the other pad's
 * first frame are dropped).  Gaps of up to one second in either stream are
 * bridged as missing data (inputs 0, loss weight 0); after a longer gap the
 * pairing restarts.  Feed the two pads from a tee through a `queue` each,
 * as for any element with two inputs.  The target pad asks for the sink's
 * rate (known from the sink's caps or from what is upstream of it), so an
 * `audioresample` on the target branch converts a target at another rate.
 * A target shorter or longer than the input is trained on where both are
 * present and a warning gives both lengths; a requested target pad that
 * has received nothing when the input ends is named in a warning (the
 * aggregator waits for it).  When training starts an INFO message names
 * what is learnt (the target pad's stream, or next-step prediction with
 * predict-ahead).
 *
 * `src` carries the predictions of the current model for the training
 * stream: O/F_out channels at rate × F_out / F_in, each step's F_out frames
 * timestamped at the running time of the step's first input frame.  In
 * offline mode this is the model as it stands while recording, i.e. the
 * initial (untrained or init-model) model; in online mode the model as it
 * is being trained.  Link it to a fakesink if you do not need it (a
 * not-linked src pad does not stop training).
 *
 * ## Steps and targets
 *
 * Step t spans input frames [t·F_in, (t+1)·F_in) (F_in = frame-size); the
 * model input is those F_in frames of C_in channels.  Its target is the last
 * F_out (output-frame-size) frames of the same span of the target stream,
 * so the model has O = F_out × C_target outputs.  With loss=cross-entropy
 * the target has one channel holding the class index at the span's last
 * frame (a negative value means "no label": the step carries no loss) and
 * the model has num-classes outputs.  Without a target, step t's target is
 * the input span of step t + predict-ahead.
 *
 * ## Losses, skip, init-model
 *
 * loss=mse compares every output with its target; loss=esr divides the
 * squared error of a batch by its target energy (the error-to-signal ratio
 * of audio effect models); loss=cross-entropy trains class logits.
 * pre-emphasis=a (mse, esr) compares y[t] − a·y[t−1] with the same of the
 * target, within each window (its first step carries no loss), so that high
 * frequencies weigh more.  skip=N builds a model whose outputs get the
 * first N input channels added after the head (N = 1, or N = the number of
 * outputs; frame sizes 1): the network learns the difference from the dry
 * signal.  init-model may be any model rnnfilter loads, pre/post layers and
 * skip included: every weight and bias is trained, its initial state
 * (rnn.h0 / rnn.c0) is kept as it is, and its shape (and skip) overrides
 * the model properties.
 *
 * ## Offline mode
 *
 * Steps are recorded (in memory up to max-memory bytes, beyond that in an
 * unlinked temporary file in $TMPDIR).  At EOS the tail validation-fraction
 * of the recording is held out; the rest is normalised (normalize: the
 * per-channel mean and standard deviation of the training part, stored in
 * the model as input.mean / input.std; values beyond 100 robust standard
 * deviations of a channel's median are left out of them, with a warning
 * naming the farthest one's value and time) and trained on for `epochs`
 * epochs:
 * each epoch cuts the training part into windows of seq-length steps at a
 * random phase, shuffles them (seeded by seed) and runs them in batches of
 * batch-size, every window from the model's initial state (zeros, or an
 * init-model's rnn.h0 / rnn.c0).  After each epoch the held-out
 * tail is run as one continuous stream, as rnnfilter runs it (warmed up on
 * the seq-length steps before it; bidirectional models in windows of
 * seq-length), and the model with the lowest validation loss (training loss
 * without validation) is written to model-location, atomically.  Progress
 * is posted every epoch.  epochs=0 only evaluates the initial model.
 *
 * ## Online mode
 *
 * The stream is cut into consecutive windows of seq-length steps; every
 * batch-size windows make one update (gradients accumulated over the
 * windows), each window starting from the state the previous one ended in
 * (truncated BPTT, the state detached).  The model is rewritten every
 * checkpoint-interval updates (a unit chosen so that the same data gives the
 * same files: one update is batch-size × seq-length × frame-size input
 * frames) and at EOS, so an rnnfilter with reload-on-change picks it up.
 * normalize takes its statistics from the first update's data.
 *
 * ## Where the model goes, and stopping early
 *
 * model-location is checked when the stream starts (a file is created
 * beside it and removed): a missing directory, a directory or a place that
 * cannot be written is an error then, before anything is recorded.  A
 * symbolic link is written through: its target is replaced (atomically,
 * beside the target), the link stays.  An online checkpoint that cannot
 * be written (a full disk) is a warning; the model on disk stays as it
 * was, training goes on and the next checkpoint writes again.
 *
 * Stopped before EOS (a state change down, Ctrl-C without -e): online,
 * the updates since the last checkpoint are written; an offline run
 * stopped while training writes the best model of the epochs it finished;
 * a recording not trained on yet is discarded, and a warning says how many
 * seconds.  Offline training starts at EOS: gst-launch-1.0 -e sends EOS on
 * Ctrl-C, so the model is trained and written before it exits.  Each of
 * these is a GST_MESSAGE_WARNING.
 *
 * ## Memory
 *
 * Besides the model and the recording, training takes the BPTT caches of
 * seq-length × batch-size steps (offline) or seq-length steps plus the
 * batch-size × seq-length steps gathered for an update (online).  Settings
 * that need more than 4 GiB for this are an error when the stream starts;
 * the message gives the arithmetic.
 *
 * ## Divergence
 *
 * A non-finite loss, gradient or weight rolls the model and the optimizer
 * back to the last good snapshot (offline: the start of the epoch; online:
 * the weights before the last update, which gave a finite loss), halves the
 * learning rate and posts a warning.  After 40 rollbacks in a row training
 * stops with a warning (offline: the best model so far is written; online:
 * the stream keeps flowing, the model is no longer updated and EOS writes
 * the last good weights).  Written models are always finite.  With
 * OPENBLAS_NUM_THREADS fixed, the same seed and data give a bitwise
 * identical file (nothing time-dependent is written).
 *
 * ## Messages
 *
 * GST_MESSAGE_PROGRESS with code "train".  Offline: START when training
 * starts at EOS, CONTINUE after every epoch (with "percent") and every few
 * seconds of a long epoch, then COMPLETE, CANCELED (a flush or state
 * change stopped training) or ERROR (the model could not be written).
 * Online: a START / COMPLETE pair around every model write (CANCELED when
 * the write failed), so no progress stays open while the stream runs
 * (gst-launch-1.0 waits for an open progress to complete before it sets
 * the pipeline to PLAYING).
 *
 * Element messages (gst_message_new_element, structure name):
 *
 * - `rnntrain-progress` after every epoch (offline) or checkpoint (online):
 *   `epoch` (guint: the epoch or checkpoint number), `epochs` (guint: the
 *   total; 0 online), `loss` (gdouble: training loss), `val-loss` (gdouble:
 *   validation loss), `val-esr` (gdouble: the validation error-to-signal
 *   ratio Σ(y−ŷ)²/Σy², MSE only, else NaN), `steps-per-second` (gdouble:
 *   window steps × batch per second), `elapsed` (guint64 GstClockTime:
 *   since training started), `eta` (guint64 GstClockTime;
 *   GST_CLOCK_TIME_NONE online).  The progress texts give the same in
 *   words, with the elapsed and remaining time in s, min and h.
 * - `rnntrain-done` once the model is written at EOS: `model-location`
 *   (gchararray), `loss` (gdouble), `val-loss` (gdouble), `duration`
 *   (guint64 GstClockTime, from the first buffer).
 *
 * val-loss is NaN when nothing is held out and in online mode (which has
 * no validation).  Divergence, a stream too short to train on and
 * non-finite input values are GST_MESSAGE_WARNINGs.
 *
 * ## Example launch lines
 *
 * Learn to predict a tone one sample ahead, then run the model:
 * |[
 * gst-launch-1.0 -m audiotestsrc num-buffers=100 ! audio/x-raw,format=F32LE,rate=8000,channels=1 ! rnntrain model-location=predict.safetensors hidden-size=8 epochs=5 ! fakesink
 * gst-launch-1.0 audiotestsrc num-buffers=100 ! audio/x-raw,format=F32LE,rate=8000,channels=1 ! rnnfilter model-location=predict.safetensors ! fakesink
 * ]|
 * Learn an effect (a low-pass filter) from its input and output, given on
 * the target pad:
 * |[
 * gst-launch-1.0 -m audiotestsrc wave=saw num-buffers=100 ! audio/x-raw,format=F32LE,rate=16000,channels=1 ! tee name=s \
 *     s. ! queue ! rnntrain name=t model-location=effect.safetensors cell=gru hidden-size=16 epochs=5 ! fakesink \
 *     s. ! queue ! audiocheblimit cutoff=3000 ! t.target
 * ]|
 * Train online and rewrite the model every 10 updates:
 * |[
 * gst-launch-1.0 -m audiotestsrc num-buffers=400 ! audio/x-raw,format=F32LE,rate=8000,channels=1 ! rnntrain model-location=online.safetensors mode=online seq-length=32 batch-size=4 checkpoint-interval=10 ! fakesink
 * ]|
 */
#include "gstrnntrain.h"
#include "gstrnnelements.h"

#include "gstrnnpairing.h"
#include "gstrnntrainsettings.h"

#include "rnn.h"
#include "rnn-trainer.h"

#include <string.h>

#if G_BYTE_ORDER != G_LITTLE_ENDIAN
#error "rnntrain reads and writes F32LE samples in host order"
#endif

/* shared with gstrnnpairing.c */
GST_DEBUG_CATEGORY (gst_rnn_train_debug);
#define GST_CAT_DEFAULT gst_rnn_train_debug

#define RNN_CAPS \
    "audio/x-raw, format = (string) F32LE, layout = (string) interleaved, " \
    "rate = (int) [ 1, MAX ], channels = (int) [ 1, MAX ]"

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS (RNN_CAPS));
static GstStaticPadTemplate target_template = GST_STATIC_PAD_TEMPLATE ("target",
    GST_PAD_SINK, GST_PAD_REQUEST, GST_STATIC_CAPS (RNN_CAPS));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS (RNN_CAPS));

struct _GstRnnTrain
{
  GstAggregator parent;

  /* properties, under the object lock */
  GstRnnTrainSettings props;

  /* set by state changes and flushes: stop training now */
  gint cancel;

  /* streaming state: the source pad task's own, built by configure ()
   * and freed by stop () */
  GstRnnPairing pairing;        /* lanes' pads and caps: under the object lock */
  GstRnnTrainSettings s;        /* the settings in force */
  gboolean configured;
  gboolean finished;
  gboolean has_target;
  guint rate;
  gboolean bidirectional;
  RnnTrainer *trainer;          /* owns the model */
  gboolean bad_prev;            /* the last call saw non-finite values */
  GstClockTime t_start;

  /* predictions for the src pad */
  GstFlowReturn out_flow;
  gboolean warned_not_linked;
};

#define gst_rnn_train_parent_class parent_class
G_DEFINE_TYPE (GstRnnTrain, gst_rnn_train, GST_TYPE_AGGREGATOR);
GST_ELEMENT_REGISTER_DEFINE (rnntrain, "rnntrain", GST_RANK_NONE,
    GST_TYPE_RNN_TRAIN);

/* ---- messages: the trainer's callbacks ------------------------------------ */

/* @percent < 0: the message's own default (0, or 100 when complete). */
static void
post_progress_percent (GstRnnTrain *self, GstProgressType type,
    const gchar *text, gint percent)
{
  GstMessage *m = gst_message_new_progress (GST_OBJECT_CAST (self), type,
      "train", text);

  if (percent >= 0)
    gst_structure_set (gst_message_writable_structure (m), "percent",
        G_TYPE_INT, CLAMP (percent, 0, 100), NULL);
  gst_element_post_message (GST_ELEMENT_CAST (self), m);
}

static void
on_progress (gpointer user_data, RnnTrainerProgress kind, const char *text,
    int percent)
{
  static const GstProgressType types[] = {
    [RNN_TRAINER_PROGRESS_START] = GST_PROGRESS_TYPE_START,
    [RNN_TRAINER_PROGRESS_CONTINUE] = GST_PROGRESS_TYPE_CONTINUE,
    [RNN_TRAINER_PROGRESS_COMPLETE] = GST_PROGRESS_TYPE_COMPLETE,
    [RNN_TRAINER_PROGRESS_CANCELED] = GST_PROGRESS_TYPE_CANCELED,
  };

  post_progress_percent (user_data, types[kind], text, percent);
}

static void
on_epoch (gpointer user_data, const RnnTrainerEpoch *e)
{
  GstRnnTrain *self = user_data;
  GstStructure *st = gst_structure_new ("rnntrain-progress",
      "epoch", G_TYPE_UINT, e->epoch,
      "epochs", G_TYPE_UINT, e->epochs,
      "loss", G_TYPE_DOUBLE, e->loss,
      "val-loss", G_TYPE_DOUBLE, e->val_loss,
      "val-esr", G_TYPE_DOUBLE, e->val_esr,
      "steps-per-second", G_TYPE_DOUBLE, e->steps_per_second,
      "elapsed", G_TYPE_UINT64, (guint64) e->elapsed_ns,
      "eta", G_TYPE_UINT64, e->eta_ns == G_MAXUINT64 ? GST_CLOCK_TIME_NONE
      : (GstClockTime) e->eta_ns, NULL);

  gst_element_post_message (GST_ELEMENT_CAST (self),
      gst_message_new_element (GST_OBJECT_CAST (self), st));
  if (e->epochs > 0)
    GST_INFO_OBJECT (self, "epoch %u/%u: loss %g val %g (ESR %g), %.0f steps/s",
        e->epoch, e->epochs, e->loss, e->val_loss, e->val_esr,
        e->steps_per_second);
}

static void
on_warning (gpointer user_data, const char *text, const char *detail)
{
  GstRnnTrain *self = user_data;

  if (detail)
    GST_ELEMENT_WARNING (self, STREAM, FAILED, ("%s", text), ("%s", detail));
  else
    GST_ELEMENT_WARNING (self, STREAM, FAILED, ("%s", text), (NULL));
}

static gboolean
on_cancelled (gpointer user_data)
{
  GstRnnTrain *self = user_data;

  return g_atomic_int_get (&self->cancel) != 0;
}

static void
post_done (GstRnnTrain *self, double loss, double val_loss)
{
  GstClockTime duration = (g_get_monotonic_time () - self->t_start) * GST_USECOND;
  GstStructure *st = gst_structure_new ("rnntrain-done",
      "model-location", G_TYPE_STRING, self->s.location,
      "loss", G_TYPE_DOUBLE, loss,
      "val-loss", G_TYPE_DOUBLE, val_loss,
      "duration", G_TYPE_UINT64, (guint64) duration, NULL);

  gst_element_post_message (GST_ELEMENT_CAST (self),
      gst_message_new_element (GST_OBJECT_CAST (self), st));
}

/* Posts a trainer error as an element error. */
static void
post_trainer_error (GstRnnTrain *self, const GError *err)
{
  switch (err->code) {
    case RNN_TRAINER_ERROR_RECORD:
      GST_ELEMENT_ERROR (self, RESOURCE, WRITE,
          ("Could not record the training data."), ("%s", err->message));
      break;
    case RNN_TRAINER_ERROR_READ:
      GST_ELEMENT_ERROR (self, RESOURCE, READ,
          ("Could not read the recorded training data."), ("%s", err->message));
      break;
    case RNN_TRAINER_ERROR_WRITE:
      GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE,
          ("Could not write the model to %s.", self->s.location),
          ("%s", err->message));
      break;
    case RNN_TRAINER_ERROR_SETTINGS:
      GST_ELEMENT_ERROR (self, LIBRARY, SETTINGS, ("%s", err->message), (NULL));
      break;
    default:
      GST_ELEMENT_ERROR (self, STREAM, FAILED, ("%s", err->message), (NULL));
      break;
  }
}

/* ---- configuration ---------------------------------------------------------- */

/* The model the stream trains: init-model's, or a fresh one.  NULL (error
 * posted) if it cannot be had. */
static RnnModel *
make_model (GstRnnTrain *self, guint c_in, guint c_tgt, gboolean ce)
{
  const GstRnnTrainSettings *s = &self->s;
  GError *err = NULL;
  RnnModel *model;
  RnnConfig cfg;

  if (s->init_location) {
    RnnModel *init = rnn_model_load (s->init_location, &err);
    if (!init) {
      GST_ELEMENT_ERROR (self, RESOURCE, READ,
          ("Could not load init-model %s.", s->init_location),
          ("%s", err->message));
      g_error_free (err);
      return NULL;
    }
    model = rnn_model_copy (init);
    rnn_model_unref (init);
    cfg = *rnn_model_get_config (model);
    if (cfg.sample_rate && cfg.sample_rate != self->rate) {
      GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
          ("init-model %s was made for %u Hz but the stream is %u Hz.",
              s->init_location, cfg.sample_rate, self->rate),
          ("Put an audioresample in front of rnntrain."));
      rnn_model_unref (model);
      return NULL;
    }
    return model;
  }

  gst_rnn_train_settings_model_config (s, c_in, c_tgt, ce, self->rate, &cfg);
  if (s->skip && (s->frame_size != 1 || s->output_frame_size != 1)) {
    GST_ELEMENT_ERROR (self, LIBRARY, SETTINGS,
        ("skip=%u needs frame-size=1 and output-frame-size=1 (they are %u "
            "and %u): the skip adds input samples to output samples one to "
            "one.", s->skip, s->frame_size, s->output_frame_size),
        ("Set skip=0 or both frame sizes to 1."));
    return NULL;
  }
  if (s->skip && ((s->skip != 1 && s->skip != cfg.output_size)
          || s->skip > c_in)) {
    GST_ELEMENT_ERROR (self, LIBRARY, SETTINGS,
        ("skip=%u does not fit %u input and %u output channels: skip=1 adds "
            "the first input channel to every output, skip=N the first N "
            "input channels one to each of N outputs.", s->skip, c_in,
            cfg.output_size), (NULL));
    return NULL;
  }
  if (s->skip && ce) {
    GST_ELEMENT_ERROR (self, LIBRARY, SETTINGS,
        ("skip=%u cannot train with loss=cross-entropy: the skip adds the "
            "input to the outputs after the head, where there are no logits.",
            s->skip), ("Use loss=mse or loss=esr, or skip=0."));
    return NULL;
  }
  if ((guint64) s->frame_size * c_in > RNN_MAX_INPUT_SIZE
      || (guint64) s->output_frame_size * c_tgt > RNN_MAX_OUTPUT_SIZE) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("frame-size x channels is too large (at most %u inputs and %u outputs).",
            RNN_MAX_INPUT_SIZE, RNN_MAX_OUTPUT_SIZE), (NULL));
    return NULL;
  }
  model = rnn_model_new (&cfg, &err);
  if (!model) {
    GST_ELEMENT_ERROR (self, LIBRARY, SETTINGS,
        ("Cannot build the model: %s", err->message), (NULL));
    g_error_free (err);
    return NULL;
  }
  rnn_train_init_params (model, s->seed);
  return model;
}

/* Builds everything the stream needs once the caps of every pad are known.
 * Posts an error and returns FALSE when the stream and the settings do not
 * fit together. */
static gboolean
configure (GstRnnTrain *self)
{
  static const RnnTrainerCallbacks callbacks = {
    on_progress, on_epoch, on_warning, on_cancelled
  };
  GstRnnLane *ls = &self->pairing.lanes[GST_RNN_LANE_SINK];
  GstRnnLane *lt = &self->pairing.lanes[GST_RNN_LANE_TARGET];
  GError *err = NULL;
  guint c_in, c_tgt;

  GST_OBJECT_LOCK (self);
  gst_rnn_train_settings_copy (&self->s, &self->props);
  self->has_target = lt->pad != NULL;
  self->rate = ls->rate;
  c_in = ls->channels;
  c_tgt = self->has_target ? lt->channels : ls->channels;
  GST_OBJECT_UNLOCK (self);

  const GstRnnTrainSettings *s = &self->s;
  const gboolean ce = s->loss == GST_RNN_TRAIN_LOSS_CROSS_ENTROPY;

  if (!s->location || !*s->location) {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
        ("No model-location given: rnntrain needs a file to write the model to."),
        (NULL));
    return FALSE;
  }
  if (ce && !self->has_target) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("loss=cross-entropy needs a class-index stream on the target pad, "
            "but no target pad was requested."), (NULL));
    return FALSE;
  }
  if (ce && c_tgt != 1) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("loss=cross-entropy needs a one-channel class-index target; the "
            "target has %u channels.", c_tgt), (NULL));
    return FALSE;
  }

  RnnModel *model = make_model (self, c_in, c_tgt, ce);
  if (!model)
    return FALSE;
  const RnnConfig *mc = rnn_model_get_config (model);
  const GstRnnPairing *p = &self->pairing;
  self->bidirectional = mc->bidirectional;
  if (!gst_rnn_pairing_configure (&self->pairing, model, self->has_target, ce,
          self->rate, c_in, c_tgt, s->predict_ahead,
          self->bidirectional ? s->seq_length : 0)) {
    rnn_model_unref (model);
    return FALSE;
  }
  const guint out_rate = (guint) ((guint64) self->rate * p->f_out / p->f_in);

  RnnTrainerConfig tc;
  gst_rnn_train_settings_trainer_config (s, ce, self->has_target,
      (double) p->f_in / self->rate, &tc);
  g_clear_pointer (&self->trainer, rnn_trainer_free);
  self->trainer = rnn_trainer_new (&tc, model, &callbacks, self, &err);
  if (!self->trainer) {
    post_trainer_error (self, err);
    g_error_free (err);
    return FALSE;
  }

  self->out_flow = GST_FLOW_OK;

  /* the src pad: predictions */
  GstCaps *caps = gst_caps_new_simple ("audio/x-raw",
      "format", G_TYPE_STRING, "F32LE",
      "layout", G_TYPE_STRING, "interleaved",
      "rate", G_TYPE_INT, (gint) out_rate,
      "channels", G_TYPE_INT, (gint) (p->n_out / p->f_out), NULL);
  if (p->n_out / p->f_out > 2)
    gst_caps_set_simple (caps, "channel-mask", GST_TYPE_BITMASK,
        G_GUINT64_CONSTANT (0), NULL);
  gst_aggregator_set_src_caps (GST_AGGREGATOR (self), caps);
  gst_caps_unref (caps);

  /* a step's prediction leaves once its last frame (and, bidirectional,
   * its window) is in */
  guint64 frames = (guint64) p->f_in * (self->bidirectional ? s->seq_length : 1);
  GstClockTime lat = gst_util_uint64_scale_round (frames - 1, GST_SECOND, self->rate);
  gst_aggregator_set_latency (GST_AGGREGATOR (self), lat, lat);

  GST_INFO_OBJECT (self, "configured: %s H=%u L=%u%s, I=%u (F_in %u × %u ch), "
      "O=%u (F_out %u), %u Hz, target %s, mode %s",
      rnn_cell_to_string (mc->cell), mc->hidden_size, mc->num_layers,
      mc->bidirectional ? " bidirectional" : "", p->n_in, p->f_in,
      c_in, p->n_out, p->f_out, self->rate,
      self->has_target ? "pad" : "predict-ahead",
      s->mode == GST_RNN_TRAIN_MODE_OFFLINE ? "offline" : "online");
  {
    gchar *mode = self->has_target ?
        g_strdup_printf ("Training %s on the target pad's stream.",
        s->mode == GST_RNN_TRAIN_MODE_OFFLINE ? "offline" : "online")
        : g_strdup_printf ("Training %s for next-step prediction: no target "
        "pad, so the model learns to predict its input %u step%s ahead "
        "(predict-ahead).", s->mode == GST_RNN_TRAIN_MODE_OFFLINE ?
        "offline" : "online", s->predict_ahead, s->predict_ahead == 1 ? ""
        : "s");
    GST_ELEMENT_INFO (self, STREAM, FORMAT, ("%s", mode), ("%s", mode));
    g_free (mode);
  }
  self->t_start = g_get_monotonic_time ();
  GST_OBJECT_LOCK (self);
  self->configured = TRUE;
  GST_OBJECT_UNLOCK (self);
  return TRUE;
}

/* ---- predictions for the src pad ----------------------------------------- */

/* The pairing's push callback: one buffer of predictions ending at @end. */
static void
push_predictions (gpointer user_data, GstBuffer *buf, GstClockTime end)
{
  GstRnnTrain *self = user_data;
  GstAggregator *agg = GST_AGGREGATOR (self);

  GST_OBJECT_LOCK (self);
  GST_AGGREGATOR_PAD (agg->srcpad)->segment.position = end;
  GST_OBJECT_UNLOCK (self);

  GstFlowReturn ret = gst_aggregator_finish_buffer (agg, buf);
  if (ret == GST_FLOW_NOT_LINKED || ret == GST_FLOW_EOS) {
    /* nobody wants the predictions: training goes on */
    if (!self->warned_not_linked)
      GST_INFO_OBJECT (self, "src pad: %s, predictions dropped",
          gst_flow_get_name (ret));
    self->warned_not_linked = TRUE;
  } else if (ret != GST_FLOW_OK && self->out_flow == GST_FLOW_OK) {
    self->out_flow = ret;
  }
}

/* ---- aggregate ------------------------------------------------------------------- */

static gboolean
pad_done (GstAggregatorPad *pad)
{
  return gst_aggregator_pad_is_eos (pad) && !gst_aggregator_pad_has_buffer (pad);
}

/* Hands this call's steps to the trainer, in runs of consecutive steps. */
static gboolean
train_steps (GstRnnTrain *self)
{
  const GstRnnPairing *p = &self->pairing;
  GError *err = NULL;
  gsize i = 0;

  while (i < p->n_steps) {
    gsize j = i + 1;
    while (j < p->n_steps
        && p->steps_frame0[j] == p->steps_frame0[j - 1] + p->f_in)
      j++;
    if (i > 0)
      rnn_trainer_break (self->trainer);        /* windows must be contiguous */
    if (!rnn_trainer_add_records (self->trainer, p->steps + i * p->rec, j - i,
            &err)) {
      post_trainer_error (self, err);
      g_error_free (err);
      return FALSE;
    }
    i = j;
  }
  return TRUE;
}

static GstFlowReturn
finish (GstRnnTrain *self)
{
  GError *err = NULL;
  RnnTrainerReport rep;

  self->finished = TRUE;
  if (!self->configured) {
    GST_ELEMENT_WARNING (self, STREAM, FAILED,
        ("The stream ended before any data arrived; no model written."), (NULL));
    return GST_FLOW_EOS;
  }
  gst_rnn_pairing_predict_finish (&self->pairing,
      rnn_trainer_peek_model (self->trainer));
  gchar *mismatch = gst_rnn_pairing_describe_mismatch (&self->pairing);
  if (mismatch) {
    GST_ELEMENT_WARNING (self, STREAM, FORMAT, ("%s", mismatch), (NULL));
    g_free (mismatch);
  }

  switch (rnn_trainer_finish (self->trainer, &rep, &err)) {
    case RNN_TRAINER_DONE:
      post_done (self, rep.loss, rep.val_loss);
      return GST_FLOW_EOS;
    case RNN_TRAINER_NOTHING:
      return GST_FLOW_EOS;
    case RNN_TRAINER_CANCELLED:
      self->finished = FALSE;   /* a flush: train again at the next EOS */
      return GST_FLOW_FLUSHING;
    case RNN_TRAINER_FAILED:
    default:
      post_trainer_error (self, err);
      if (err->code == RNN_TRAINER_ERROR_WRITE
          && self->s.mode == GST_RNN_TRAIN_MODE_OFFLINE)
        post_progress_percent (self, GST_PROGRESS_TYPE_ERROR,
            "Could not write the model", -1);
      g_error_free (err);
      return GST_FLOW_ERROR;
  }
}

static GstFlowReturn
gst_rnn_train_aggregate (GstAggregator *agg, gboolean timeout)
{
  GstRnnTrain *self = GST_RNN_TRAIN (agg);
  GstFlowReturn ret = GST_FLOW_OK;
  GstAggregatorPad *pads[GST_RNN_N_LANES];

  if (self->finished)
    return GST_FLOW_EOS;

  GST_OBJECT_LOCK (self);
  for (guint i = 0; i < GST_RNN_N_LANES; i++)
    pads[i] = self->pairing.lanes[i].pad ?
        gst_object_ref (self->pairing.lanes[i].pad) : NULL;
  GST_OBJECT_UNLOCK (self);

  if (!self->configured) {
    gboolean have_data = FALSE, have_caps = TRUE;
    GST_OBJECT_LOCK (self);
    for (guint i = 0; i < GST_RNN_N_LANES; i++) {
      if (pads[i] && gst_aggregator_pad_has_buffer (pads[i]))
        have_data = TRUE;
      if (pads[i] && self->pairing.lanes[i].rate == 0)
        have_caps = FALSE;
    }
    GST_OBJECT_UNLOCK (self);
    if (have_data && !have_caps) {
      /* refused caps (the error is posted) or data before caps */
      ret = GST_FLOW_NOT_NEGOTIATED;
      goto out;
    }
    if (have_data && !configure (self)) {
      ret = GST_FLOW_NOT_NEGOTIATED;
      goto out;
    }
  }

  if (self->configured) {
    const guint n_lanes = self->has_target ? 2 : 1;
    for (guint i = 0; i < n_lanes; i++) {
      /* With two pads, take data only from a lane that is not ahead of the
       * other.  The aggregator calls us only while every pad has a buffer
       * queued: eating all of the faster pad's buffers would leave it empty
       * and stall us, and with both pads fed by one tee the slower
       * branch's full queue would then block the tee for good. */
      const GstRnnLane *l = &self->pairing.lanes[i];
      const GstRnnLane *o = &self->pairing.lanes[1 - i];
      if (n_lanes == 2 && l->started && o->started
          && l->first + l->len > o->first + o->len)
        continue;
      GstBuffer *buf;
      if (!pads[i])
        continue;               /* the target pad was released */
      while ((buf = gst_aggregator_pad_pop_buffer (pads[i]))) {
        gst_rnn_pairing_push (&self->pairing, i, pads[i], buf);
        if (n_lanes == 2)
          break;
      }
    }
    gst_aggregator_selected_samples (agg, GST_CLOCK_TIME_NONE,
        GST_CLOCK_TIME_NONE, GST_CLOCK_TIME_NONE, NULL);
    const guint64 bad0 = self->pairing.bad_total;
    ret = gst_rnn_pairing_pair (&self->pairing);
    if (ret != GST_FLOW_OK)
      goto out;
    const guint64 bad = self->pairing.bad_total;
    if (bad > bad0 && !self->bad_prev)
      GST_ELEMENT_WARNING (self, STREAM, FORMAT,
          ("Non-finite or missing values in the stream (%" G_GUINT64_FORMAT
              " so far): inputs read as 0, targets carry no loss.", bad),
          (NULL));
    self->bad_prev = bad > bad0;

    if (self->pairing.n_steps > 0) {
      gst_rnn_pairing_predict (&self->pairing,
          rnn_trainer_peek_model (self->trainer));
      if (!train_steps (self)) {
        ret = GST_FLOW_ERROR;
        goto out;
      }
    }
    gst_rnn_pairing_out_flush (&self->pairing);
    if (self->out_flow != GST_FLOW_OK) {
      ret = self->out_flow;
      goto out;
    }
  }

  /* the end: when no more pairs can come.  A pad at EOS with frames left
   * on the other lane still pairs them with what the other pad brings. */
  {
    const gboolean sink_done = pads[GST_RNN_LANE_SINK] && pad_done (pads[GST_RNN_LANE_SINK]);
    /* a target pad released mid-stream brings nothing more */
    const gboolean tgt_done = pads[GST_RNN_LANE_TARGET] ? pad_done (pads[GST_RNN_LANE_TARGET])
        : self->configured && self->has_target;
    const GstRnnLane *ls = &self->pairing.lanes[GST_RNN_LANE_SINK];
    const GstRnnLane *lt = &self->pairing.lanes[GST_RNN_LANE_TARGET];
    gboolean end;

    if (!self->configured)
      end = sink_done || tgt_done;
    else if (!self->has_target)
      end = sink_done;
    else
      end = (sink_done && (ls->len == 0 || tgt_done))
          || (tgt_done && (lt->len == 0 || sink_done));
    if (end)
      ret = finish (self);
  }

out:
  for (guint i = 0; i < GST_RNN_N_LANES; i++)
    if (pads[i])
      gst_object_unref (pads[i]);
  return ret;
}

/* ---- events and queries ------------------------------------------------------------ */

/* EOS on the sink pad, seen as it arrives (the aggregator queues it
 * behind the buffers it cannot take while it waits for the target): a
 * target pad that was requested and never fed holds the end back, say
 * so. */
static GstPadProbeReturn
sink_eos_probe (GstPad *pad, GstPadProbeInfo *info, gpointer user_data)
{
  GstRnnTrain *self = user_data;
  GstEvent *event = GST_PAD_PROBE_INFO_EVENT (info);

  if (GST_EVENT_TYPE (event) != GST_EVENT_EOS)
    return GST_PAD_PROBE_OK;
  GST_OBJECT_LOCK (self);
  GstAggregatorPad *tp = self->pairing.lanes[GST_RNN_LANE_TARGET].pad;
  const gboolean started = self->pairing.lanes[GST_RNN_LANE_TARGET].started;
  if (tp)
    gst_object_ref (tp);
  GST_OBJECT_UNLOCK (self);
  if (tp && !started && !gst_aggregator_pad_has_buffer (tp)
      && !gst_aggregator_pad_is_eos (tp))
    GST_ELEMENT_WARNING (self, STREAM, FAILED,
        ("The input ended but the target pad %s has received no data: "
            "rnntrain waits for it.  Feed it, send it EOS, or do not "
            "request it (without a target the model learns to predict its "
            "input, predict-ahead).", GST_PAD_NAME (tp)), (NULL));
  if (tp)
    gst_object_unref (tp);
  return GST_PAD_PROBE_OK;
}

static gboolean
gst_rnn_train_sink_event (GstAggregator *agg, GstAggregatorPad *pad,
    GstEvent *event)
{
  GstRnnTrain *self = GST_RNN_TRAIN (agg);

  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_CAPS:{
      GstCaps *caps;
      GST_OBJECT_LOCK (self);
      const gboolean ce = self->props.loss == GST_RNN_TRAIN_LOSS_CROSS_ENTROPY;
      GST_OBJECT_UNLOCK (self);
      gst_event_parse_caps (event, &caps);
      const gboolean ok = gst_rnn_pairing_set_caps (&self->pairing, pad, caps,
          ce, self->configured);
      gst_event_unref (event);
      return ok;
    }
    case GST_EVENT_FLUSH_START:
      g_atomic_int_set (&self->cancel, 1);
      break;
    case GST_EVENT_FLUSH_STOP:
      g_atomic_int_set (&self->cancel, 0);
      break;
    default:
      break;
  }
  return GST_AGGREGATOR_CLASS (parent_class)->sink_event (agg, pad, event);
}

/* The rate upstream of the sink pad can only give, 0 if it is not fixed.
 * The target follows the sink's rate even before the sink's caps are set,
 * as audioaggregator's pads follow the output rate: an audioresample on
 * the target branch then converts. */
static gint
upstream_rate (GstPad *sinkpad)
{
  GstCaps *caps = gst_pad_peer_query_caps (sinkpad, NULL);
  gint rate = 0;

  for (guint i = 0; caps && i < gst_caps_get_size (caps); i++) {
    gint r;
    if (!gst_structure_get_int (gst_caps_get_structure (caps, i), "rate", &r)
        || (rate && r != rate)) {
      rate = 0;
      break;
    }
    rate = r;
  }
  if (caps)
    gst_caps_unref (caps);
  return rate;
}

static gboolean
gst_rnn_train_sink_query (GstAggregator *agg, GstAggregatorPad *pad,
    GstQuery *query)
{
  GstRnnTrain *self = GST_RNN_TRAIN (agg);

  if (GST_QUERY_TYPE (query) == GST_QUERY_CAPS) {
    GstCaps *filter, *caps = gst_pad_get_pad_template_caps (GST_PAD (pad));
    gint rate = 0;

    /* the other pad's rate, once known, is the only one we take */
    GST_OBJECT_LOCK (self);
    rate = gst_rnn_pairing_other_rate (&self->pairing, pad);
    GstPad *sinkpad = GST_PAD (self->pairing.lanes[GST_RNN_LANE_SINK].pad);
    const gboolean is_target = GST_PAD (pad) != sinkpad;
    if (sinkpad)
      gst_object_ref (sinkpad);
    GST_OBJECT_UNLOCK (self);
    if (!rate && is_target && sinkpad)
      rate = upstream_rate (sinkpad);
    if (sinkpad)
      gst_object_unref (sinkpad);
    if (rate) {
      caps = gst_caps_make_writable (caps);
      gst_caps_set_simple (caps, "rate", G_TYPE_INT, rate, NULL);
    }
    gst_query_parse_caps (query, &filter);
    if (filter) {
      GstCaps *c = gst_caps_intersect_full (filter, caps, GST_CAPS_INTERSECT_FIRST);
      gst_caps_unref (caps);
      caps = c;
    }
    gst_query_set_caps_result (query, caps);
    gst_caps_unref (caps);
    return TRUE;
  }
  if (GST_QUERY_TYPE (query) == GST_QUERY_ACCEPT_CAPS) {
    /* against the template only: a rate that differs from the other pad's
     * must reach the CAPS event, which refuses it with a clear message */
    GstCaps *caps, *templ = gst_pad_get_pad_template_caps (GST_PAD (pad));
    gst_query_parse_accept_caps (query, &caps);
    gst_query_set_accept_caps_result (query, gst_caps_is_subset (caps, templ));
    gst_caps_unref (templ);
    return TRUE;
  }
  return GST_AGGREGATOR_CLASS (parent_class)->sink_query (agg, pad, query);
}

/* The src caps follow from the model and the sink caps: configure () sets
 * them; before that there is nothing to negotiate. */
static gboolean
gst_rnn_train_negotiate (GstAggregator *agg)
{
  GstRnnTrain *self = GST_RNN_TRAIN (agg);

  if (!self->configured)
    return TRUE;
  return GST_AGGREGATOR_CLASS (parent_class)->negotiate (agg);
}

static GstFlowReturn
gst_rnn_train_update_src_caps (GstAggregator *agg, GstCaps *downstream,
    GstCaps **ret)
{
  GstRnnTrain *self = GST_RNN_TRAIN (agg);

  if (!self->configured)
    return GST_AGGREGATOR_FLOW_NEED_DATA;
  GstCaps *mine = gst_pad_get_current_caps (agg->srcpad);
  if (!mine)
    return GST_AGGREGATOR_FLOW_NEED_DATA;
  *ret = gst_caps_intersect (downstream, mine);
  gst_caps_unref (mine);
  return GST_FLOW_OK;
}

static GstAggregatorPad *
gst_rnn_train_create_new_pad (GstAggregator *agg, GstPadTemplate *templ,
    const gchar *req_name, const GstCaps *caps)
{
  GstRnnTrain *self = GST_RNN_TRAIN (agg);
  GstAggregatorPad *pad;

  if (g_strcmp0 (GST_PAD_TEMPLATE_NAME_TEMPLATE (templ), "target") != 0
      || (req_name && strcmp (req_name, "target") != 0)) {
    GST_WARNING_OBJECT (self, "rnntrain has one request pad, \"target\"");
    return NULL;
  }
  GST_OBJECT_LOCK (self);
  if (self->pairing.lanes[GST_RNN_LANE_TARGET].pad || self->configured) {
    GST_OBJECT_UNLOCK (self);
    GST_WARNING_OBJECT (self, "the target pad %s", self->configured ?
        "must be requested before data flows" : "exists already");
    return NULL;
  }
  GST_OBJECT_UNLOCK (self);

  pad = g_object_new (GST_TYPE_AGGREGATOR_PAD, "name", "target",
      "direction", GST_PAD_SINK, "template", templ, NULL);
  GST_OBJECT_LOCK (self);
  self->pairing.lanes[GST_RNN_LANE_TARGET].pad = pad;
  /* not configured yet (checked above): no data in the lane, no caps */
  self->pairing.lanes[GST_RNN_LANE_TARGET].rate = 0;
  self->pairing.lanes[GST_RNN_LANE_TARGET].channels = 0;
  GST_OBJECT_UNLOCK (self);
  return pad;
}

static void
gst_rnn_train_release_pad (GstElement *element, GstPad *pad)
{
  GstRnnTrain *self = GST_RNN_TRAIN (element);

  /* Only the pad goes: the lane's rate and channels describe the data it
   * holds, which the aggregate thread may be working on; request_new_pad
   * starts a new lane. */
  GST_OBJECT_LOCK (self);
  if (self->pairing.lanes[GST_RNN_LANE_TARGET].pad == GST_AGGREGATOR_PAD (pad))
    self->pairing.lanes[GST_RNN_LANE_TARGET].pad = NULL;
  GST_OBJECT_UNLOCK (self);
  GST_ELEMENT_CLASS (parent_class)->release_pad (element, pad);
}

/* ---- state ------------------------------------------------------------------- */

static void
free_stream (GstRnnTrain *self)
{
  GST_OBJECT_LOCK (self);
  self->configured = FALSE;
  GST_OBJECT_UNLOCK (self);
  self->finished = FALSE;
  gst_rnn_pairing_clear (&self->pairing);
  g_clear_pointer (&self->trainer, rnn_trainer_free);
  self->bad_prev = FALSE;
  self->warned_not_linked = FALSE;
  gst_rnn_train_settings_clear (&self->s);
}

static gboolean
gst_rnn_train_start (GstAggregator *agg)
{
  GstRnnTrain *self = GST_RNN_TRAIN (agg);

  free_stream (self);
  g_atomic_int_set (&self->cancel, 0);
  return TRUE;
}

static gboolean
gst_rnn_train_stop (GstAggregator *agg)
{
  GstRnnTrain *self = GST_RNN_TRAIN (agg);

  /* stopped before the end of the stream: keep what was trained, or say
   * what is thrown away */
  if (self->configured && !self->finished && self->trainer) {
    GError *err = NULL;
    const double step_s = (double) self->pairing.f_in / MAX (self->rate, 1);
    if (rnn_trainer_abandon (self->trainer, step_s, &err) == RNN_TRAINER_FAILED) {
      GST_ELEMENT_WARNING (self, RESOURCE, OPEN_WRITE,
          ("Stopped before the end of the stream and could not write the "
              "model to %s.", self->s.location), ("%s", err->message));
      g_error_free (err);
    }
  }
  free_stream (self);
  return TRUE;
}

/* A flush drops what is half-paired; the recording and the model stay. */
static GstFlowReturn
gst_rnn_train_flush (GstAggregator *agg)
{
  GstRnnTrain *self = GST_RNN_TRAIN (agg);

  gst_rnn_pairing_flush (&self->pairing);
  if (self->trainer)
    rnn_trainer_break (self->trainer);
  return GST_FLOW_OK;
}

static GstStateChangeReturn
gst_rnn_train_change_state (GstElement *element, GstStateChange transition)
{
  GstRnnTrain *self = GST_RNN_TRAIN (element);

  /* a training loop in the streaming thread would hold up the pad
   * deactivation: tell it to stop first */
  if (transition == GST_STATE_CHANGE_PAUSED_TO_READY)
    g_atomic_int_set (&self->cancel, 1);
  return GST_ELEMENT_CLASS (parent_class)->change_state (element, transition);
}

/* ---- properties ----------------------------------------------------------------- */

static void
gst_rnn_train_set_property (GObject *object, guint prop_id,
    const GValue *value, GParamSpec *pspec)
{
  GstRnnTrain *self = GST_RNN_TRAIN (object);

  if (!gst_rnn_train_settings_has (prop_id)) {
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    return;
  }
  GST_OBJECT_LOCK (self);
  gst_rnn_train_settings_set (&self->props, pspec, value);
  GST_OBJECT_UNLOCK (self);
}

static void
gst_rnn_train_get_property (GObject *object, guint prop_id, GValue *value,
    GParamSpec *pspec)
{
  GstRnnTrain *self = GST_RNN_TRAIN (object);

  if (!gst_rnn_train_settings_has (prop_id)) {
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    return;
  }
  GST_OBJECT_LOCK (self);
  gst_rnn_train_settings_get (&self->props, pspec, value);
  GST_OBJECT_UNLOCK (self);
}

static void
gst_rnn_train_finalize (GObject *object)
{
  GstRnnTrain *self = GST_RNN_TRAIN (object);

  free_stream (self);
  gst_rnn_train_settings_clear (&self->props);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_rnn_train_class_init (GstRnnTrainClass *klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstAggregatorClass *agg_class = GST_AGGREGATOR_CLASS (klass);

  gobject_class->set_property = gst_rnn_train_set_property;
  gobject_class->get_property = gst_rnn_train_get_property;
  gobject_class->finalize = gst_rnn_train_finalize;

  gst_rnn_train_settings_install (gobject_class);

  gst_element_class_add_static_pad_template_with_gtype (element_class,
      &sink_template, GST_TYPE_AGGREGATOR_PAD);
  gst_element_class_add_static_pad_template_with_gtype (element_class,
      &target_template, GST_TYPE_AGGREGATOR_PAD);
  gst_element_class_add_static_pad_template_with_gtype (element_class,
      &src_template, GST_TYPE_AGGREGATOR_PAD);
  gst_element_class_set_static_metadata (element_class,
      "Recurrent network trainer", "Filter/Audio",
      "Trains an RNN, LSTM or GRU with backpropagation through time and "
      "writes a gst-rnn model.  sink: the input features (F32LE). "
      "target (request pad, optional): the training targets, aligned with "
      "sink by running time; without it the model predicts sink "
      "predict-ahead steps ahead. src: the current model's predictions. "
      "Posts GST_MESSAGE_PROGRESS (code \"train\") and element messages "
      "rnntrain-progress (epoch, epochs, loss, val-loss, val-esr, "
      "steps-per-second, elapsed, eta) per epoch or checkpoint and rnntrain-done (model-location, "
      "loss, val-loss, duration) when the model is written",
      "gst-rnn developers");

  element_class->change_state = GST_DEBUG_FUNCPTR (gst_rnn_train_change_state);
  element_class->release_pad = GST_DEBUG_FUNCPTR (gst_rnn_train_release_pad);
  agg_class->aggregate = GST_DEBUG_FUNCPTR (gst_rnn_train_aggregate);
  agg_class->sink_event = GST_DEBUG_FUNCPTR (gst_rnn_train_sink_event);
  agg_class->sink_query = GST_DEBUG_FUNCPTR (gst_rnn_train_sink_query);
  agg_class->update_src_caps = GST_DEBUG_FUNCPTR (gst_rnn_train_update_src_caps);
  agg_class->negotiate = GST_DEBUG_FUNCPTR (gst_rnn_train_negotiate);
  agg_class->create_new_pad = GST_DEBUG_FUNCPTR (gst_rnn_train_create_new_pad);
  agg_class->start = GST_DEBUG_FUNCPTR (gst_rnn_train_start);
  agg_class->stop = GST_DEBUG_FUNCPTR (gst_rnn_train_stop);
  agg_class->flush = GST_DEBUG_FUNCPTR (gst_rnn_train_flush);

  GST_DEBUG_CATEGORY_INIT (gst_rnn_train_debug, "rnntrain", 0,
      "recurrent network trainer");
}

static void
gst_rnn_train_init (GstRnnTrain *self)
{
  GstPadTemplate *templ = gst_static_pad_template_get (&sink_template);
  GstAggregatorPad *pad = g_object_new (GST_TYPE_AGGREGATOR_PAD,
      "name", "sink", "direction", GST_PAD_SINK, "template", templ, NULL);

  gst_object_unref (templ);
  gst_pad_add_probe (GST_PAD (pad), GST_PAD_PROBE_TYPE_EVENT_DOWNSTREAM,
      sink_eos_probe, self, NULL);
  gst_element_add_pad (GST_ELEMENT (self), GST_PAD (pad));
  self->pairing.element = GST_ELEMENT (self);
  self->pairing.push = push_predictions;
  self->pairing.push_data = self;
  self->pairing.lanes[GST_RNN_LANE_SINK].pad = pad;

  gst_rnn_train_settings_init (&self->props, G_OBJECT (self));
}
