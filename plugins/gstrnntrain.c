/* rnntrain: trains a recurrent network (RNN, LSTM, GRU) with
 * backpropagation through time on the stream it is given (DESIGN §4).
 *
 * Data path (the aggregator's source pad task, one thread):
 *
 *   aggregate: pop what every sink pad has, place it on a per-pad "lane"
 *     (a contiguous run of frames indexed by running time × rate), pair the
 *     frames of the two lanes (or of the one lane with itself shifted by
 *     predict-ahead steps), cut the pairs into steps (records of inputs,
 *     target, loss weight), run the current model over the new steps for
 *     the src pad, and hand the steps to the recording (offline) or to the
 *     online trainer.  At EOS, offline mode trains on the recording, writes
 *     the best model and returns GST_FLOW_EOS so the base class forwards EOS.
 *
 * Properties live under the object lock and are copied once, when the
 * stream is configured (first buffer); changing them later takes effect
 * the next time the element starts.  The only other shared state is the
 * lanes' caps (read by caps queries from upstream threads, under the object
 * lock) and the cancel flag (atomic), which a state change or a flush sets
 * so a long training loop ends promptly.
 */
/**
 * SECTION:element-rnntrain
 * @title: rnntrain
 *
 * Trains an Elman RNN, LSTM or GRU (stacked, optionally bidirectional, with
 * a linear head) on an interleaved 32-bit float stream and writes it as a
 * gst-rnn safetensors model that rnnfilter (and PyTorch, through
 * scripts/gstrnn_export.py) loads.
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
 * as for any element with two inputs.
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
 * ## Offline mode
 *
 * Steps are recorded (in memory up to max-memory bytes, beyond that in an
 * unlinked temporary file in $TMPDIR).  At EOS the tail validation-fraction
 * of the recording is held out; the rest is normalised (normalize: the
 * per-channel mean and standard deviation of the training part, stored in
 * the model as input.mean / input.std) and trained on for `epochs` epochs:
 * each epoch cuts the training part into windows of seq-length steps at a
 * random phase, shuffles them (seeded by seed) and runs them in batches of
 * batch-size, every window from zero state.  After each epoch the held-out
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
 * ## Divergence
 *
 * A non-finite loss, gradient or weight rolls the model and the optimizer
 * back to the last good snapshot (offline: the start of the epoch; online:
 * the weights before the last update, which gave a finite loss), halves the
 * learning rate and posts a warning.  After 40 rollbacks in a row training
 * stops with a warning (offline: the best model so far is written; online:
 * the stream keeps flowing, the model is no longer updated and EOS writes
 * the last good weights).  Written models are always finite.  With OPENBLAS_NUM_THREADS fixed, the same seed and data give a
 * bitwise identical file (nothing time-dependent is written).
 *
 * ## Messages
 *
 * GST_MESSAGE_PROGRESS (code "train": START, CONTINUE per epoch or
 * checkpoint, COMPLETE / CANCELED / ERROR) and element messages
 * `rnntrain-progress` (epoch, epochs, loss, val-loss, steps-per-second
 * = window steps × batch per second, eta as a GstClockTime) and
 * `rnntrain-done` (model-location, loss, val-loss, duration as a
 * GstClockTime).  val-loss is NaN when nothing is held out and in online
 * mode (which has no validation).
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 -m audiotestsrc num-buffers=200 ! audio/x-raw,format=F32LE,rate=8000,channels=1 ! rnntrain model-location=predict.safetensors ! fakesink
 * gst-launch-1.0 -m filesrc location=dry.raw ! rawaudioparse pcm-format=f32le sample-rate=16000 num-channels=1 ! tee name=s \
 *     s. ! queue ! rnntrain name=t model-location=effect.safetensors cell=lstm hidden-size=16 epochs=20 ! fakesink \
 *     s. ! queue ! audiodynamic mode=compressor ratio=0.3 threshold=0.2 ! audiocheblimit cutoff=3000 ! t.target
 * ]|
 */
#include "gstrnntrain.h"
#include "gstrnnelements.h"

#include "rnn.h"
#include "rnn-train.h"
#include "rnn-dataset.h"

#include <gst/audio/audio.h>
#include <math.h>
#include <string.h>

#if G_BYTE_ORDER != G_LITTLE_ENDIAN
#error "rnntrain reads and writes F32LE samples in host order"
#endif

GST_DEBUG_CATEGORY_STATIC (gst_rnn_train_debug);
#define GST_CAT_DEFAULT gst_rnn_train_debug

#define DEFAULT_MODEL_LOCATION      NULL
#define DEFAULT_INIT_MODEL          NULL
#define DEFAULT_CELL                GST_RNN_TRAIN_CELL_LSTM
#define DEFAULT_HIDDEN_SIZE         32
#define DEFAULT_NUM_LAYERS          1
#define DEFAULT_BIDIRECTIONAL       FALSE
#define DEFAULT_FRAME_SIZE          1
#define DEFAULT_OUTPUT_FRAME_SIZE   1
#define DEFAULT_HEAD_ACTIVATION     GST_RNN_TRAIN_HEAD_ACTIVATION_NONE
#define DEFAULT_LOSS                GST_RNN_TRAIN_LOSS_MSE
#define DEFAULT_NUM_CLASSES         2
#define DEFAULT_OPTIMIZER           GST_RNN_TRAIN_OPTIMIZER_ADAM
#define DEFAULT_LEARNING_RATE       0.0
#define DEFAULT_MOMENTUM            0.0
#define DEFAULT_WEIGHT_DECAY        0.0
#define DEFAULT_CLIP_NORM           1.0
#define DEFAULT_EPOCHS              10
#define DEFAULT_SEQ_LENGTH          64
#define DEFAULT_BATCH_SIZE          32
#define DEFAULT_VALIDATION_FRACTION 0.1
#define DEFAULT_SEED                0
#define DEFAULT_NORMALIZE           TRUE
#define DEFAULT_MODE                GST_RNN_TRAIN_MODE_OFFLINE
#define DEFAULT_CHECKPOINT_INTERVAL 100
#define DEFAULT_PREDICT_AHEAD       1
#define DEFAULT_MAX_MEMORY          (G_GUINT64_CONSTANT (256) << 20)

/* Consecutive rollbacks after which training gives up. */
#define MAX_ROLLBACKS 40

enum
{
  PROP_0,
  PROP_MODEL_LOCATION,
  PROP_INIT_MODEL,
  PROP_CELL,
  PROP_HIDDEN_SIZE,
  PROP_NUM_LAYERS,
  PROP_BIDIRECTIONAL,
  PROP_FRAME_SIZE,
  PROP_OUTPUT_FRAME_SIZE,
  PROP_HEAD_ACTIVATION,
  PROP_LOSS,
  PROP_NUM_CLASSES,
  PROP_OPTIMIZER,
  PROP_LEARNING_RATE,
  PROP_MOMENTUM,
  PROP_WEIGHT_DECAY,
  PROP_CLIP_NORM,
  PROP_EPOCHS,
  PROP_SEQ_LENGTH,
  PROP_BATCH_SIZE,
  PROP_VALIDATION_FRACTION,
  PROP_SEED,
  PROP_NORMALIZE,
  PROP_MODE,
  PROP_CHECKPOINT_INTERVAL,
  PROP_PREDICT_AHEAD,
  PROP_MAX_MEMORY,
};

#define RNN_CAPS \
    "audio/x-raw, format = (string) F32LE, layout = (string) interleaved, " \
    "rate = (int) [ 1, MAX ], channels = (int) [ 1, MAX ]"

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink",
    GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS (RNN_CAPS));
static GstStaticPadTemplate target_template = GST_STATIC_PAD_TEMPLATE ("target",
    GST_PAD_SINK, GST_PAD_REQUEST, GST_STATIC_CAPS (RNN_CAPS));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src",
    GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS (RNN_CAPS));

/* The properties; a copy is taken when the stream is configured. */
typedef struct
{
  gchar *location;
  gchar *init_location;
  GstRnnTrainCell cell;
  guint hidden_size;
  guint num_layers;
  gboolean bidirectional;
  guint frame_size;
  guint output_frame_size;
  GstRnnTrainHeadActivation head_activation;
  GstRnnTrainLoss loss;
  guint num_classes;
  GstRnnTrainOptimizer optimizer;
  gdouble learning_rate;
  gdouble momentum;
  gdouble weight_decay;
  gdouble clip_norm;
  guint epochs;
  guint seq_length;
  guint batch_size;
  gdouble validation_fraction;
  guint seed;
  gboolean normalize;
  GstRnnTrainMode mode;
  guint checkpoint_interval;
  guint predict_ahead;
  guint64 max_memory;
} Settings;

enum
{ LANE_SINK, LANE_TARGET, N_LANES };

/* One input pad's frames on the common timeline: frames [first, first+len)
 * of the running-time frame index (running time × rate), contiguous. */
typedef struct
{
  GstAggregatorPad *pad;        /* not a reference; NULL if absent */
  gint rate, channels;          /* from caps, under the object lock */
  gboolean started;
  guint64 first;
  float *data;                  /* [len][channels] */
  gsize len, cap;               /* frames */
} Lane;

struct _GstRnnTrain
{
  GstAggregator parent;

  /* properties, under the object lock */
  Settings props;

  /* set by state changes and flushes: stop training now */
  gint cancel;

  /* streaming state: the source pad task's own, built by configure ()
   * and freed by stop () */
  Lane lanes[N_LANES];          /* the pads and caps: under the object lock */
  Settings s;                   /* the settings in force */
  gboolean configured;
  gboolean finished;
  gboolean has_target;
  RnnLoss loss_kind;
  guint rate, out_rate;
  guint c_in, c_tgt;            /* channels of the input and target streams */
  guint f_in, f_out;
  guint n_in;                   /* I = f_in * c_in */
  guint n_out;                  /* O */
  guint n_tgt;                  /* target floats per step: O (MSE) or 1 */
  guint rec;                    /* record floats: n_in + n_tgt + 1 */
  gboolean bidirectional;
  gboolean need_norm;           /* normalisation statistics still to compute */
  gboolean fresh_model;         /* built here, not from init-model */
  RnnModel *model;              /* the trainer's private, sealed model */

  /* framing: the step being filled */
  float *step;                  /* [rec] */
  guint step_fill;              /* frames of the step filled */
  guint64 step_frame0;          /* frame index of the step's first frame */
  guint64 next_pair;            /* frame index expected next */
  gboolean have_next_pair;
  /* steps completed in this aggregate call */
  float *steps;                 /* [n_steps][rec] */
  guint64 *steps_frame0;        /* [n_steps] */
  gsize n_steps, steps_cap;
  /* non-finite or missing values */
  guint64 bad_total;
  gboolean bad_prev;

  /* predictions for the src pad */
  RnnForward *fw;
  RnnState *pstate;             /* unidirectional */
  float *px, *py;               /* scratch [T][I], [T][O] */
  gsize px_cap, py_cap;         /* steps */
  float *pwin;                  /* bidirectional: [window][n_in] */
  guint64 pwin_frame0;
  guint pwin_len;
  float *out;                   /* [out_steps][n_out] */
  gsize out_steps, out_cap;
  guint64 out_frame0;           /* input frame index of the first out step */
  guint64 out_next;             /* input frame index that continues the output */
  gboolean have_out_next;
  gboolean out_discont;
  GstFlowReturn out_flow;
  gboolean warned_not_linked;

  /* training */
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
  GstClockTime t_start;

  /* offline */
  RnnRecording *recording;

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
  gboolean online_started;
  gboolean ck_dirty;            /* model changed since the last checkpoint */
  guint online_streak;          /* rollbacks since the last good update */
  gboolean online_stopped;      /* gave up after MAX_ROLLBACKS in a row */
};

#define gst_rnn_train_parent_class parent_class
G_DEFINE_TYPE (GstRnnTrain, gst_rnn_train, GST_TYPE_AGGREGATOR);
GST_ELEMENT_REGISTER_DEFINE (rnntrain, "rnntrain", GST_RANK_NONE,
    GST_TYPE_RNN_TRAIN);

/* ---- enums ------------------------------------------------------------- */

GType
gst_rnn_train_cell_get_type (void)
{
  static gsize type;
  static const GEnumValue values[] = {
    {GST_RNN_TRAIN_CELL_RNN_TANH, "Elman RNN, tanh", "rnn-tanh"},
    {GST_RNN_TRAIN_CELL_RNN_RELU, "Elman RNN, ReLU", "rnn-relu"},
    {GST_RNN_TRAIN_CELL_LSTM, "LSTM", "lstm"},
    {GST_RNN_TRAIN_CELL_GRU, "GRU", "gru"},
    {0, NULL, NULL},
  };

  return gst_rnn_enum_type (&type, "GstRnnTrainCell", values);
}

GType
gst_rnn_train_head_activation_get_type (void)
{
  static gsize type;
  static const GEnumValue values[] = {
    {GST_RNN_TRAIN_HEAD_ACTIVATION_NONE, "Linear", "none"},
    {GST_RNN_TRAIN_HEAD_ACTIVATION_SOFTMAX, "Softmax", "softmax"},
    {GST_RNN_TRAIN_HEAD_ACTIVATION_SIGMOID, "Sigmoid", "sigmoid"},
    {GST_RNN_TRAIN_HEAD_ACTIVATION_TANH, "Tanh", "tanh"},
    {0, NULL, NULL},
  };

  return gst_rnn_enum_type (&type, "GstRnnTrainHeadActivation", values);
}

GType
gst_rnn_train_loss_get_type (void)
{
  static gsize type;
  static const GEnumValue values[] = {
    {GST_RNN_TRAIN_LOSS_MSE, "Mean squared error", "mse"},
    {GST_RNN_TRAIN_LOSS_CROSS_ENTROPY, "Cross-entropy on class indices",
        "cross-entropy"},
    {0, NULL, NULL},
  };

  return gst_rnn_enum_type (&type, "GstRnnTrainLoss", values);
}

GType
gst_rnn_train_optimizer_get_type (void)
{
  static gsize type;
  static const GEnumValue values[] = {
    {GST_RNN_TRAIN_OPTIMIZER_SGD, "SGD with momentum", "sgd"},
    {GST_RNN_TRAIN_OPTIMIZER_ADAM, "Adam", "adam"},
    {0, NULL, NULL},
  };

  return gst_rnn_enum_type (&type, "GstRnnTrainOptimizer", values);
}

GType
gst_rnn_train_mode_get_type (void)
{
  static gsize type;
  static const GEnumValue values[] = {
    {GST_RNN_TRAIN_MODE_OFFLINE, "Record, train at EOS", "offline"},
    {GST_RNN_TRAIN_MODE_ONLINE, "Train continually (truncated BPTT)",
        "online"},
    {0, NULL, NULL},
  };

  return gst_rnn_enum_type (&type, "GstRnnTrainMode", values);
}

static RnnCell
core_cell (GstRnnTrainCell c)
{
  switch (c) {
    case GST_RNN_TRAIN_CELL_RNN_TANH:
      return RNN_CELL_RNN_TANH;
    case GST_RNN_TRAIN_CELL_RNN_RELU:
      return RNN_CELL_RNN_RELU;
    case GST_RNN_TRAIN_CELL_GRU:
      return RNN_CELL_GRU;
    case GST_RNN_TRAIN_CELL_LSTM:
    default:
      return RNN_CELL_LSTM;
  }
}

static RnnHeadActivation
core_head_activation (GstRnnTrainHeadActivation a)
{
  switch (a) {
    case GST_RNN_TRAIN_HEAD_ACTIVATION_SOFTMAX:
      return RNN_HEAD_ACT_SOFTMAX;
    case GST_RNN_TRAIN_HEAD_ACTIVATION_SIGMOID:
      return RNN_HEAD_ACT_SIGMOID;
    case GST_RNN_TRAIN_HEAD_ACTIVATION_TANH:
      return RNN_HEAD_ACT_TANH;
    case GST_RNN_TRAIN_HEAD_ACTIVATION_NONE:
    default:
      return RNN_HEAD_ACT_NONE;
  }
}

/* ---- helpers ------------------------------------------------------------ */

static void
settings_clear (Settings *s)
{
  g_clear_pointer (&s->location, g_free);
  g_clear_pointer (&s->init_location, g_free);
}

static void
settings_copy (Settings *dst, const Settings *src)
{
  settings_clear (dst);
  *dst = *src;
  dst->location = g_strdup (src->location);
  dst->init_location = g_strdup (src->init_location);
}

/* Grows *@buf to hold at least @n elements of @size bytes. */
static gpointer
grow (gpointer buf, gsize *cap, gsize n, gsize size)
{
  if (n <= *cap)
    return buf;
  gsize c = MAX (*cap, 64);
  while (c < n)
    c *= 2;
  *cap = c;
  return g_realloc_n (buf, c, size);
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

static gboolean
cancelled (GstRnnTrain *self)
{
  return g_atomic_int_get (&self->cancel) != 0;
}

/* ---- messages ----------------------------------------------------------- */

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
post_progress (GstRnnTrain *self, GstProgressType type, const gchar *text)
{
  post_progress_percent (self, type, text, -1);
}

static void
post_epoch (GstRnnTrain *self, guint epoch, guint epochs, double loss,
    double val_loss, double steps_per_second, GstClockTime eta)
{
  GstStructure *st = gst_structure_new ("rnntrain-progress",
      "epoch", G_TYPE_UINT, epoch,
      "epochs", G_TYPE_UINT, epochs,
      "loss", G_TYPE_DOUBLE, loss,
      "val-loss", G_TYPE_DOUBLE, val_loss,
      "steps-per-second", G_TYPE_DOUBLE, steps_per_second,
      "eta", G_TYPE_UINT64, (guint64) eta, NULL);

  gst_element_post_message (GST_ELEMENT_CAST (self),
      gst_message_new_element (GST_OBJECT_CAST (self), st));
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

/* ---- model ---------------------------------------------------------------- */

/* Sets input.mean / input.std of the trainer's model from channel
 * statistics (expanded over the frames of a step). */
static void
model_set_norm (GstRnnTrain *self, const double *mean, const double *std)
{
  gsize n;
  float *p = rnn_model_get_params (self->model, &n);
  gint im = rnn_model_find_tensor (self->model, "input.mean");
  gint is = rnn_model_find_tensor (self->model, "input.std");

  g_return_if_fail (im >= 0 && is >= 0);
  float *pm = p + rnn_model_get_tensor_info (self->model, im)->offset;
  float *ps = p + rnn_model_get_tensor_info (self->model, is)->offset;
  for (guint f = 0; f < self->f_in; f++)
    for (guint c = 0; c < self->c_in; c++) {
      pm[f * self->c_in + c] = (float) mean[c];
      ps[f * self->c_in + c] = (float) std[c];
    }
  rnn_model_seal (self->model);
}

/* Per-channel statistics of the inputs of @n records at @recs. */
static void
norm_accumulate (GstRnnTrain *self, const float *recs, gsize n, double *sum,
    gboolean second_pass, const double *mean)
{
  for (gsize r = 0; r < n; r++) {
    const float *x = recs + r * self->rec;
    for (guint f = 0; f < self->f_in; f++)
      for (guint c = 0; c < self->c_in; c++) {
        const double v = x[f * self->c_in + c];
        if (second_pass)
          sum[c] += (v - mean[c]) * (v - mean[c]);
        else
          sum[c] += v;
      }
  }
}

static void
norm_finish (GstRnnTrain *self, double *mean, double *var, gsize n_steps)
{
  const double n = (double) n_steps * self->f_in;
  for (guint c = 0; c < self->c_in; c++) {
    double sd = n > 0 ? sqrt (var[c] / n) : 1.0;
    if (!(sd > 1e-12) || !isfinite (sd))
      sd = 1.0;                 /* a constant channel: leave it unscaled */
    var[c] = sd;
    if (!isfinite (mean[c]))
      mean[c] = 0.0;
  }
}

/* Normalisation statistics from records [0, n) of an in-memory array. */
static void
norm_from_array (GstRnnTrain *self, const float *recs, gsize n)
{
  double *mean = g_new0 (double, self->c_in), *var = g_new0 (double, self->c_in);

  norm_accumulate (self, recs, n, mean, FALSE, NULL);
  for (guint c = 0; c < self->c_in; c++)
    mean[c] /= MAX ((double) n * self->f_in, 1.0);
  norm_accumulate (self, recs, n, var, TRUE, mean);
  norm_finish (self, mean, var, n);
  model_set_norm (self, mean, var);
  g_free (mean);
  g_free (var);
}

/* The same over records [0, n) of the recording, in chunks. */
static gboolean
norm_from_recording (GstRnnTrain *self, gsize n, GError **error)
{
  const gsize chunk = 4096;
  double *mean = g_new0 (double, self->c_in), *var = g_new0 (double, self->c_in);
  float *buf = g_new (float, chunk * self->rec);
  gboolean ok = TRUE;

  for (int pass = 0; pass < 2 && ok; pass++) {
    for (gsize r = 0; r < n && ok; r += chunk) {
      const gsize k = MIN (chunk, n - r);
      ok = rnn_recording_read (self->recording, r, k, buf, error);
      if (ok)
        norm_accumulate (self, buf, k, pass ? var : mean, pass == 1, mean);
    }
    if (pass == 0)
      for (guint c = 0; c < self->c_in; c++)
        mean[c] /= MAX ((double) n * self->f_in, 1.0);
  }
  if (ok) {
    norm_finish (self, mean, var, n);
    model_set_norm (self, mean, var);
  }
  g_free (buf);
  g_free (mean);
  g_free (var);
  return ok;
}

/* A model like self->model with another bidirectional window. */
static void
model_set_window (GstRnnTrain *self, guint window)
{
  RnnConfig cfg = *rnn_model_get_config (self->model);
  gsize n_src, n_dst;

  if (cfg.window == window)
    return;
  cfg.window = window;
  RnnModel *m = rnn_model_new (&cfg, NULL);
  g_return_if_fail (m != NULL);
  const float *src = rnn_model_peek_params (self->model, &n_src);
  float *dst = rnn_model_get_params (m, &n_dst);
  g_return_if_fail (n_src == n_dst);
  memcpy (dst, src, n_src * sizeof (float));
  for (const char *const *k = rnn_model_get_meta_keys (self->model); *k; k++)
    rnn_model_set_meta (m, *k, rnn_model_get_meta (self->model, *k));
  rnn_model_seal (m);
  rnn_model_unref (self->model);
  self->model = m;
}

/* ---- configuration ---------------------------------------------------------- */

/* Builds everything the stream needs once the caps of every pad are known.
 * Posts an error and returns FALSE when the stream and the settings do not
 * fit together. */
static gboolean
configure (GstRnnTrain *self)
{
  GError *err = NULL;
  Lane *ls = &self->lanes[LANE_SINK], *lt = &self->lanes[LANE_TARGET];

  GST_OBJECT_LOCK (self);
  settings_copy (&self->s, &self->props);
  self->has_target = lt->pad != NULL;
  self->rate = ls->rate;
  self->c_in = ls->channels;
  self->c_tgt = self->has_target ? lt->channels : ls->channels;
  GST_OBJECT_UNLOCK (self);

  const Settings *s = &self->s;
  self->loss_kind = s->loss == GST_RNN_TRAIN_LOSS_CROSS_ENTROPY ?
      RNN_LOSS_CROSS_ENTROPY : RNN_LOSS_MSE;
  const gboolean ce = self->loss_kind == RNN_LOSS_CROSS_ENTROPY;

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
  if (ce && self->c_tgt != 1) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("loss=cross-entropy needs a one-channel class-index target; the "
            "target has %u channels.", self->c_tgt), (NULL));
    return FALSE;
  }

  RnnConfig cfg;
  if (s->init_location) {
    RnnModel *init = rnn_model_load (s->init_location, &err);
    if (!init) {
      GST_ELEMENT_ERROR (self, RESOURCE, READ,
          ("Could not load init-model %s.", s->init_location),
          ("%s", err->message));
      g_error_free (err);
      return FALSE;
    }
    self->model = rnn_model_copy (init);
    rnn_model_unref (init);
    cfg = *rnn_model_get_config (self->model);
    self->fresh_model = FALSE;
    if (cfg.sample_rate && cfg.sample_rate != self->rate) {
      GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
          ("init-model %s was made for %u Hz but the stream is %u Hz.",
              s->init_location, cfg.sample_rate, self->rate),
          ("Put an audioresample in front of rnntrain."));
      return FALSE;
    }
  } else {
    rnn_config_init (&cfg);
    cfg.cell = core_cell (s->cell);
    cfg.hidden_size = s->hidden_size;
    cfg.num_layers = s->num_layers;
    cfg.bidirectional = s->bidirectional;
    cfg.frame_size = s->frame_size;
    cfg.output_frame_size = s->output_frame_size;
    cfg.input_size = s->frame_size * self->c_in;
    cfg.has_head = TRUE;
    cfg.output_size = ce ? s->num_classes : s->output_frame_size * self->c_tgt;
    cfg.head_activation = core_head_activation (s->head_activation);
    cfg.has_input_norm = s->normalize;
    cfg.window = s->bidirectional ? s->seq_length : 0;
    cfg.sample_rate = self->rate;
    if ((guint64) s->frame_size * self->c_in > RNN_MAX_INPUT_SIZE
        || (guint64) s->output_frame_size * self->c_tgt > RNN_MAX_OUTPUT_SIZE) {
      GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
          ("frame-size x channels is too large (at most %u inputs and %u outputs).",
              RNN_MAX_INPUT_SIZE, RNN_MAX_OUTPUT_SIZE), (NULL));
      return FALSE;
    }
    self->model = rnn_model_new (&cfg, &err);
    if (!self->model) {
      GST_ELEMENT_ERROR (self, LIBRARY, SETTINGS,
          ("Cannot build the model: %s", err->message), (NULL));
      g_error_free (err);
      return FALSE;
    }
    rnn_train_init_params (self->model, s->seed);
    self->fresh_model = TRUE;
  }

  self->f_in = cfg.frame_size;
  self->f_out = cfg.output_frame_size;
  self->n_in = cfg.input_size;
  self->n_out = rnn_model_get_output_size (self->model);
  self->bidirectional = cfg.bidirectional;
  self->need_norm = self->fresh_model && cfg.has_input_norm;

  if (self->n_in != self->f_in * self->c_in) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("The model takes %u inputs per step (frame size %u) but the sink "
            "stream has %u channels.", self->n_in, self->f_in, self->c_in),
        (NULL));
    return FALSE;
  }
  if (ce) {
    if (self->f_out != 1) {
      GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
          ("loss=cross-entropy gives one class per step: output-frame-size "
              "must be 1, not %u.", self->f_out), (NULL));
      return FALSE;
    }
  } else if (self->n_out != self->f_out * self->c_tgt) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("The model has %u outputs per step (output frame size %u) but the "
            "target has %u channels.", self->n_out, self->f_out, self->c_tgt),
        (NULL));
    return FALSE;
  }
  if (self->f_out > self->f_in) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("output-frame-size %u is larger than frame-size %u: a step's target "
            "is the last output-frame-size frames of its span.", self->f_out,
            self->f_in), (NULL));
    return FALSE;
  }
  if (((guint64) self->rate * self->f_out) % self->f_in != 0) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
        ("The output rate %u x %u / %u Hz is not a whole number; choose a "
            "frame-size that divides the rate.", self->rate, self->f_out,
            self->f_in), (NULL));
    return FALSE;
  }
  self->out_rate = (guint) ((guint64) self->rate * self->f_out / self->f_in);
  if (!rnn_loss_check (self->loss_kind, self->model, &err)) {
    GST_ELEMENT_ERROR (self, LIBRARY, SETTINGS,
        ("The model cannot be trained with loss=%s: %s",
            rnn_loss_to_string (self->loss_kind), err->message), (NULL));
    g_error_free (err);
    return FALSE;
  }

  RnnOptimizerConfig oc;
  rnn_optimizer_config_init (&oc, s->optimizer == GST_RNN_TRAIN_OPTIMIZER_SGD ?
      RNN_OPTIMIZER_SGD : RNN_OPTIMIZER_ADAM);
  if (s->learning_rate > 0)
    oc.learning_rate = (float) s->learning_rate;
  oc.momentum = (float) s->momentum;
  oc.weight_decay = (float) s->weight_decay;
  self->opt = rnn_optimizer_new (&oc, rnn_train_get_n_trainable (self->model), &err);
  if (!self->opt) {
    GST_ELEMENT_ERROR (self, LIBRARY, SETTINGS,
        ("Invalid optimizer settings: %s", err->message), (NULL));
    g_error_free (err);
    return FALSE;
  }
  self->lr0 = self->lr = oc.learning_rate;

  self->n_tgt = ce ? 1 : self->n_out;
  self->rec = self->n_in + self->n_tgt + 1;
  self->step = g_new0 (float, self->rec);
  self->tr = rnn_train_new ();
  rnn_model_get_params (self->model, &self->n_params);
  self->grads = g_new0 (float, self->n_params);
  self->fw = rnn_forward_new ();
  if (!self->bidirectional)
    self->pstate = rnn_state_new (self->model, 1);
  else
    self->pwin = g_new (float, (gsize) s->seq_length * self->n_in);
  self->out_flow = GST_FLOW_OK;

  if (s->mode == GST_RNN_TRAIN_MODE_OFFLINE) {
    self->recording = rnn_recording_new (self->rec, s->max_memory);
  } else {
    self->ob = g_new (float, (gsize) s->batch_size * s->seq_length * self->rec);
    if (!self->bidirectional)
      self->tstate = rnn_state_new (self->model, 1);
  }

  /* the src pad: predictions */
  GstCaps *caps = gst_caps_new_simple ("audio/x-raw",
      "format", G_TYPE_STRING, "F32LE",
      "layout", G_TYPE_STRING, "interleaved",
      "rate", G_TYPE_INT, (gint) self->out_rate,
      "channels", G_TYPE_INT, (gint) (self->n_out / self->f_out), NULL);
  if (self->n_out / self->f_out > 2)
    gst_caps_set_simple (caps, "channel-mask", GST_TYPE_BITMASK,
        G_GUINT64_CONSTANT (0), NULL);
  gst_aggregator_set_src_caps (GST_AGGREGATOR (self), caps);
  gst_caps_unref (caps);

  /* a step's prediction leaves once its last frame (and, bidirectional,
   * its window) is in */
  guint64 frames = (guint64) self->f_in * (self->bidirectional ? s->seq_length : 1);
  GstClockTime lat = gst_util_uint64_scale_round (frames - 1, GST_SECOND, self->rate);
  gst_aggregator_set_latency (GST_AGGREGATOR (self), lat, lat);

  GST_INFO_OBJECT (self, "configured: %s H=%u L=%u%s, I=%u (F_in %u × %u ch), "
      "O=%u (F_out %u), %u Hz, target %s, mode %s",
      rnn_cell_to_string (cfg.cell), cfg.hidden_size, cfg.num_layers,
      cfg.bidirectional ? " bidirectional" : "", self->n_in, self->f_in,
      self->c_in, self->n_out, self->f_out, self->rate,
      self->has_target ? "pad" : "predict-ahead",
      s->mode == GST_RNN_TRAIN_MODE_OFFLINE ? "offline" : "online");
  self->t_start = g_get_monotonic_time ();
  GST_OBJECT_LOCK (self);
  self->configured = TRUE;
  GST_OBJECT_UNLOCK (self);
  return TRUE;
}

/* ---- predictions for the src pad ----------------------------------------- */

static void
out_flush (GstRnnTrain *self)
{
  GstAggregator *agg = GST_AGGREGATOR (self);

  if (self->out_steps == 0)
    return;
  const gsize bytes = self->out_steps * self->n_out * sizeof (float);
  GstBuffer *buf = gst_buffer_new_allocate (NULL, bytes, NULL);
  gst_buffer_fill (buf, 0, self->out, bytes);
  const guint64 f0 = self->out_frame0, f1 = f0 + self->out_steps * self->f_in;
  const GstClockTime t0 = gst_util_uint64_scale_round (f0, GST_SECOND, self->rate);
  const GstClockTime t1 = gst_util_uint64_scale_round (f1, GST_SECOND, self->rate);
  GST_BUFFER_PTS (buf) = t0;
  GST_BUFFER_DURATION (buf) = t1 - t0;
  if (f0 % self->f_in == 0) {
    GST_BUFFER_OFFSET (buf) = f0 / self->f_in * self->f_out;
    GST_BUFFER_OFFSET_END (buf) = f1 / self->f_in * self->f_out;
  }
  if (self->out_discont)
    GST_BUFFER_FLAG_SET (buf, GST_BUFFER_FLAG_DISCONT);
  self->out_discont = FALSE;
  self->out_steps = 0;

  GST_OBJECT_LOCK (self);
  GST_AGGREGATOR_PAD (agg->srcpad)->segment.position = t1;
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

/* Appends the outputs of @n steps starting at input frame @frame0. */
static void
out_append (GstRnnTrain *self, guint64 frame0, const float *y, gsize n)
{
  if (self->out_steps > 0
      && frame0 != self->out_frame0 + self->out_steps * self->f_in)
    out_flush (self);
  if (self->have_out_next && frame0 != self->out_next)
    self->out_discont = TRUE;
  if (self->out_steps == 0)
    self->out_frame0 = frame0;
  self->out_next = frame0 + n * self->f_in;
  self->have_out_next = TRUE;
  self->out = grow (self->out, &self->out_cap,
      (self->out_steps + n) * self->n_out, sizeof (float));
  memcpy (self->out + self->out_steps * self->n_out, y,
      n * self->n_out * sizeof (float));
  self->out_steps += n;
}

static void
pred_scratch (GstRnnTrain *self, gsize n)
{
  self->px = grow (self->px, &self->px_cap, n * self->n_in, sizeof (float));
  self->py = grow (self->py, &self->py_cap, n * self->n_out, sizeof (float));
}

static void
pred_window_flush (GstRnnTrain *self)
{
  if (self->pwin_len == 0)
    return;
  pred_scratch (self, self->pwin_len);
  rnn_forward (self->fw, self->model, NULL, self->pwin, self->pwin_len, 1, self->py);
  out_append (self, self->pwin_frame0, self->py, self->pwin_len);
  self->pwin_len = 0;
}

/* Runs the current model over the steps of this call; a step whose frame
 * index does not follow the previous one starts from zero state. */
static void
predict_steps (GstRnnTrain *self)
{
  const gsize n = self->n_steps;
  const guint win = self->s.seq_length;

  if (self->bidirectional) {
    for (gsize i = 0; i < n; i++) {
      const guint64 f = self->steps_frame0[i];
      if (self->pwin_len > 0
          && f != self->pwin_frame0 + (guint64) self->pwin_len * self->f_in)
        pred_window_flush (self);
      if (self->pwin_len == 0)
        self->pwin_frame0 = f;
      memcpy (self->pwin + (gsize) self->pwin_len * self->n_in,
          self->steps + i * self->rec, self->n_in * sizeof (float));
      if (++self->pwin_len == win)
        pred_window_flush (self);
    }
    return;
  }

  gsize i = 0;
  while (i < n) {
    /* one run of consecutive steps */
    gsize j = i + 1;
    while (j < n && self->steps_frame0[j] == self->steps_frame0[j - 1] + self->f_in)
      j++;
    if (self->have_out_next && self->steps_frame0[i] != self->out_next)
      rnn_state_reset (self->pstate);
    pred_scratch (self, j - i);
    for (gsize k = i; k < j; k++)
      memcpy (self->px + (k - i) * self->n_in, self->steps + k * self->rec,
          self->n_in * sizeof (float));
    rnn_forward (self->fw, self->model, self->pstate, self->px, j - i, 1, self->py);
    out_append (self, self->steps_frame0[i], self->py, j - i);
    i = j;
  }
}

/* ---- training: shared ------------------------------------------------------ */

/* Batch scratch for @T steps of @B windows. */
static void
batch_scratch (GstRnnTrain *self, guint T, guint B)
{
  const gsize TB = (gsize) T * B;
  self->bx = grow (self->bx, &self->bx_cap, TB * self->n_in, sizeof (float));
  self->bt = grow (self->bt, &self->bt_cap, TB * self->n_tgt, sizeof (float));
  self->bm = grow (self->bm, &self->bm_cap, TB, sizeof (float));
  self->wbuf = grow (self->wbuf, &self->wbuf_cap, (gsize) T * self->rec, sizeof (float));
}

/* Scatters window @b of @B ([T][rec] records at @w) into the batch. */
static void
batch_put (GstRnnTrain *self, const float *w, guint T, guint b, guint B)
{
  for (guint t = 0; t < T; t++) {
    const float *r = w + (gsize) t * self->rec;
    const gsize row = (gsize) t * B + b;
    memcpy (self->bx + row * self->n_in, r, self->n_in * sizeof (float));
    memcpy (self->bt + row * self->n_tgt, r + self->n_in, self->n_tgt * sizeof (float));
    self->bm[row] = r[self->n_in + self->n_tgt];
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

/* Forward + loss (+ backward into self->grads, accumulating) of the batch
 * in bx/bt/bm.  Returns the loss; *weight receives the summed loss weight. */
static double
batch_run (GstRnnTrain *self, RnnState *state, guint T, guint B,
    gboolean backward, double *weight)
{
  GError *err = NULL;
  double loss = NAN;

  rnn_train_forward (self->tr, NULL, state, self->bx, self->model, T, B);
  if (!rnn_train_loss (self->tr, &loss, self->bt, self->bm, self->loss_kind, 0, &err)) {
    /* the framer validated the targets: this is a non-finite output */
    GST_DEBUG_OBJECT (self, "loss refused: %s", err->message);
    g_error_free (err);
    return NAN;
  }
  *weight = mask_sum (self->bm, (gsize) T * B);
  if (backward && isfinite (loss))
    rnn_train_backward (self->tr, self->grads, NULL, self->model);
  return loss;
}

/* Clips, checks and applies self->grads.  FALSE if the step would make the
 * model non-finite (nothing applied then, or the weights are bad). */
static gboolean
apply_step (GstRnnTrain *self)
{
  const gsize nt = rnn_train_get_n_trainable (self->model);
  const float norm = rnn_clip_grad_norm (self->grads, nt, (float) self->s.clip_norm);

  if (!isfinite (norm))
    return FALSE;
  rnn_optimizer_step_model (self->opt, self->model, self->grads);
  return params_finite (self->model);
}

static void
snapshot_take (GstRnnTrain *self)
{
  g_clear_pointer (&self->snap_model, rnn_model_unref);
  g_clear_pointer (&self->snap_opt, rnn_optimizer_free);
  self->snap_model = rnn_model_copy (self->model);
  self->snap_opt = rnn_optimizer_copy (self->opt);
}

/* Back to the last good weights with half the learning rate. */
static void
rollback (GstRnnTrain *self, const gchar *where)
{
  const float old = self->lr;

  rnn_model_unref (self->model);
  self->model = rnn_model_copy (self->snap_model);
  rnn_optimizer_free (self->opt);
  self->opt = rnn_optimizer_copy (self->snap_opt);
  self->lr = old * 0.5f;
  rnn_optimizer_set_learning_rate (self->opt, self->lr);
  self->rollbacks++;
  if (self->tstate)
    rnn_state_reset (self->tstate);
  GST_ELEMENT_WARNING (self, STREAM, FAILED,
      ("Training diverged (non-finite loss or weights) %s; restored the last "
          "good weights and halved the learning rate to %g.", where, self->lr),
      ("learning rate %g -> %g, rollback %u", old, self->lr, self->rollbacks));
}

/* Writes the provenance metadata onto @m. */
static void
set_provenance (GstRnnTrain *self, RnnModel *m, guint epochs_run,
    guint best_epoch, double loss, double val_loss, gsize n_train, gsize n_val)
{
  const Settings *s = &self->s;
  gchar *v;

#define SET_STR(k, val) rnn_model_set_meta (m, k, val)
#define SET_FMT(k, ...) G_STMT_START { v = g_strdup_printf (__VA_ARGS__); \
    rnn_model_set_meta (m, k, v); g_free (v); } G_STMT_END
#define SET_DBL(k, d) G_STMT_START { v = format_double (d); \
    rnn_model_set_meta (m, k, v); g_free (v); } G_STMT_END

  if (!rnn_model_get_meta (m, "description"))
    SET_STR ("description", "trained by the rnntrain GStreamer element");
  SET_STR ("train_tool", "rnntrain " VERSION);
  SET_STR ("train_mode", s->mode == GST_RNN_TRAIN_MODE_OFFLINE ? "offline" : "online");
  SET_STR ("train_loss_function", rnn_loss_to_string (self->loss_kind));
  SET_STR ("train_optimizer",
      rnn_optimizer_kind_to_string (rnn_optimizer_get_config (self->opt)->kind));
  SET_DBL ("train_learning_rate", self->lr0);
  SET_DBL ("train_final_learning_rate", self->lr);
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
  SET_FMT ("train_rollbacks", "%u", self->rollbacks);
  SET_STR ("train_normalize", rnn_model_get_input_mean (m) ? "true" : "false");
  SET_STR ("train_target", self->has_target ? "pad" : "predict-ahead");
  if (!self->has_target)
    SET_FMT ("train_predict_ahead", "%u", s->predict_ahead);
  if (s->init_location)
    SET_STR ("train_init_model", s->init_location);

#undef SET_STR
#undef SET_FMT
#undef SET_DBL
}

static gboolean
write_model (GstRnnTrain *self, RnnModel *m)
{
  GError *err = NULL;

  if (!params_finite (m)) {
    /* cannot happen: every step is checked */
    GST_ELEMENT_ERROR (self, STREAM, FAILED,
        ("Refusing to write a model with non-finite weights."), (NULL));
    return FALSE;
  }
  if (!rnn_model_save (m, self->s.location, &err)) {
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE,
        ("Could not write the model to %s.", self->s.location),
        ("%s", err->message));
    g_error_free (err);
    return FALSE;
  }
  GST_DEBUG_OBJECT (self, "wrote %s", self->s.location);
  return TRUE;
}

/* ---- training: offline ------------------------------------------------------ */

/* Reads records [@first, @first + @n) into wbuf. */
static gboolean
read_records (GstRnnTrain *self, gsize first, gsize n)
{
  GError *err = NULL;

  if (rnn_recording_read (self->recording, first, n, self->wbuf, &err))
    return TRUE;
  GST_ELEMENT_ERROR (self, RESOURCE, READ,
      ("Could not read the recorded training data."), ("%s", err->message));
  g_error_free (err);
  return FALSE;
}

/* The loss of the current model on records [@start, @start + @len) run as
 * one stream, as rnnfilter would run it: unidirectional models carry their
 * state from zero, warmed up on the @T steps before @start (no loss);
 * bidirectional models run windows of @T.  NaN if nothing carries loss. */
static gboolean
evaluate (GstRnnTrain *self, gsize start, gsize len, guint T, double *out)
{
  double total = 0.0, wsum = 0.0;
  RnnState *state = NULL;
  gsize pos = start;

  *out = NAN;
  if (len == 0)
    return TRUE;
  if (!self->bidirectional) {
    state = rnn_state_new (self->model, 1);
    pos = start >= T ? start - T : 0;
  }
  batch_scratch (self, T, 1);
  while (pos < start + len) {
    gsize n = MIN (T, start + len - pos);
    if (pos < start)
      n = MIN (n, start - pos);
    if (!read_records (self, pos, n)) {
      rnn_state_free (state);
      return FALSE;
    }
    batch_put (self, self->wbuf, n, 0, 1);
    if (pos < start) {
      rnn_train_forward (self->tr, NULL, state, self->bx, self->model, n, 1);
    } else {
      double w = 0.0;
      const double l = batch_run (self, state, n, 1, FALSE, &w);
      if (w > 0) {
        total += l * w;
        wsum += w;
      }
    }
    pos += n;
  }
  rnn_state_free (state);
  if (wsum > 0)
    *out = total / wsum;
  return TRUE;
}

static void
shuffle (GRand *rng, gsize *a, gsize n)
{
  for (gsize i = n; i > 1; i--) {
    const gsize j = (gsize) g_rand_int_range (rng, 0, (gint32) MIN (i, G_MAXINT32));
    const gsize t = a[i - 1];
    a[i - 1] = a[j];
    a[j] = t;
  }
}

/* Trains on the recording, writes the best model.  Returns the flow for
 * aggregate (). */
static GstFlowReturn
train_offline (GstRnnTrain *self)
{
  const Settings *s = &self->s;
  const gsize n_all = rnn_recording_get_length (self->recording);
  gsize n_val = (gsize) floor ((double) n_all * s->validation_fraction);
  GstFlowReturn ret = GST_FLOW_EOS;

  if (n_val >= n_all)
    n_val = 0;
  const gsize n_tr = n_all - n_val;
  if (n_tr == 0) {
    GST_ELEMENT_WARNING (self, STREAM, FAILED,
        ("Nothing to train on: no complete step was recorded; no model written."),
        (NULL));
    return GST_FLOW_EOS;
  }
  const guint T = (guint) MIN ((gsize) s->seq_length, n_tr);
  const guint B = s->batch_size;
  if (self->bidirectional)
    model_set_window (self, T);

  GError *err = NULL;
  if (self->need_norm) {
    if (!norm_from_recording (self, n_tr, &err)) {
      GST_ELEMENT_ERROR (self, RESOURCE, READ,
          ("Could not read the recorded training data."), ("%s", err->message));
      g_error_free (err);
      return GST_FLOW_ERROR;
    }
    self->need_norm = FALSE;
  }

  gchar *text = g_strdup_printf ("Training %u epochs on %" G_GSIZE_FORMAT
      " steps (%" G_GSIZE_FORMAT " held out)", s->epochs, n_tr, n_val);
  post_progress (self, GST_PROGRESS_TYPE_START, text);
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
    if (!evaluate (self, 0, n_tr, T, &l) || !evaluate (self, n_tr, n_val, T, &v)) {
      ret = GST_FLOW_ERROR;
      goto out;
    }
    best = rnn_model_copy (self->model);
    best_loss = l;
    best_val = v;
  }

  snapshot_take (self);
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
      batch_scratch (self, T, B);
      for (gsize i = 0; i < nw; i += B) {
        const guint b = (guint) MIN ((gsize) B, nw - i);
        if (cancelled (self)) {
          post_progress (self, GST_PROGRESS_TYPE_CANCELED, "Training cancelled");
          ret = GST_FLOW_FLUSHING;
          goto out;
        }
        if (g_get_monotonic_time () - last_note > 5 * G_USEC_PER_SEC) {
          /* a long epoch: say that it is moving */
          const double done = (epoch - 1 + (double) i / nw) / s->epochs;
          text = g_strdup_printf ("Epoch %u/%u: %.0f %%", epoch, s->epochs,
              100.0 * i / nw);
          post_progress_percent (self, GST_PROGRESS_TYPE_CONTINUE, text,
              (gint) (100 * done));
          g_free (text);
          last_note = g_get_monotonic_time ();
        }
        for (guint j = 0; j < b; j++) {
          if (!read_records (self, starts[i + j], T)) {
            ret = GST_FLOW_ERROR;
            goto out;
          }
          batch_put (self, self->wbuf, T, j, b);
        }
        memset (self->grads, 0, self->n_params * sizeof (float));
        double w = 0.0;
        const double l = batch_run (self, NULL, T, b, TRUE, &w);
        if (!isfinite (l) || !apply_step (self)) {
          diverged = TRUE;
          break;
        }
        total += l * w;
        wsum += w;
        steps_done += (guint64) T * b;
      }
      if (diverged) {
        gchar *where = g_strdup_printf ("in epoch %u", epoch);
        rollback (self, where);
        g_free (where);
        if (++streak >= MAX_ROLLBACKS) {
          GST_ELEMENT_WARNING (self, STREAM, FAILED,
              ("Training keeps diverging; stopped after %u rollbacks and kept "
                  "the best model so far.", streak), (NULL));
          break;
        }
        goto restart;
      }
      streak = 0;

      const double loss = wsum > 0 ? total / wsum : NAN;
      double val;
      if (!evaluate (self, n_tr, n_val, T, &val)) {
        ret = GST_FLOW_ERROR;
        goto out;
      }
      epochs_run = epoch;
      const double key = n_val > 0 ? val : loss;
      if (!best || key < best_key) {
        g_clear_pointer (&best, rnn_model_unref);
        best = rnn_model_copy (self->model);
        best_key = key;
        best_loss = loss;
        best_val = val;
        best_epoch = epoch;
      }
      snapshot_take (self);

      const gint64 now = g_get_monotonic_time ();
      const double secs = MAX ((now - te) / 1e6, 1e-9);
      const GstClockTime eta = (GstClockTime) ((now - t0) / (double) epoch
          * (s->epochs - epoch) * GST_USECOND);
      post_epoch (self, epoch, s->epochs, loss, val, steps_done / secs, eta);
      text = g_strdup_printf ("Epoch %u/%u: loss %g, validation loss %g",
          epoch, s->epochs, loss, val);
      post_progress_percent (self, GST_PROGRESS_TYPE_CONTINUE, text,
          (gint) (100.0 * epoch / s->epochs));
      g_free (text);
      GST_INFO_OBJECT (self, "epoch %u/%u: loss %g val %g, %.0f steps/s",
          epoch, s->epochs, loss, val, steps_done / secs);
    }
  }

  if (!best)
    best = rnn_model_copy (self->snap_model);
  set_provenance (self, best, epochs_run, best_epoch, best_loss, best_val, n_tr, n_val);
  if (!write_model (self, best)) {
    post_progress (self, GST_PROGRESS_TYPE_ERROR, "Could not write the model");
    ret = GST_FLOW_ERROR;
    goto out;
  }
  post_progress (self, GST_PROGRESS_TYPE_COMPLETE, "Training complete");
  post_done (self, best_loss, best_val);

out:
  g_clear_pointer (&best, rnn_model_unref);
  g_free (starts);
  g_rand_free (rng);
  return ret;
}

/* ---- training: online -------------------------------------------------------- */

static gboolean
online_checkpoint (GstRnnTrain *self, gboolean final)
{
  const double loss = self->ck_weight > 0 ? self->ck_loss / self->ck_weight : self->last_loss;
  RnnModel *m = rnn_model_copy (self->model);
  gboolean ok;

  self->checkpoints++;
  set_provenance (self, m, self->checkpoints, self->checkpoints, loss, NAN,
      (gsize) (self->updates * self->s.batch_size * self->s.seq_length), 0);
  gchar *v = g_strdup_printf ("%" G_GUINT64_FORMAT, self->updates);
  rnn_model_set_meta (m, "train_updates", v);
  g_free (v);
  ok = write_model (self, m);
  rnn_model_unref (m);
  if (!ok)
    return FALSE;
  self->ck_dirty = FALSE;

  const gint64 now = g_get_monotonic_time ();
  const double secs = MAX ((now - self->ck_time) / 1e6, 1e-9);
  post_epoch (self, self->checkpoints, 0, loss, NAN, self->ck_steps / secs,
      GST_CLOCK_TIME_NONE);
  if (!final) {
    gchar *text = g_strdup_printf ("Checkpoint %u after %" G_GUINT64_FORMAT
        " updates: loss %g", self->checkpoints, self->updates, loss);
    post_progress (self, GST_PROGRESS_TYPE_CONTINUE, text);
    g_free (text);
  }
  self->last_loss = loss;
  self->ck_loss = self->ck_weight = 0.0;
  self->ck_steps = 0;
  self->ck_time = now;
  /* no snapshot here: online_update () takes one before every step */
  return TRUE;
}

/* One update from the batch-size windows gathered in self->ob. */
static gboolean
online_update (GstRnnTrain *self)
{
  const guint T = self->s.seq_length, B = self->s.batch_size;
  double total = 0.0, wsum = 0.0;

  if (!self->online_started) {
    if (self->need_norm) {
      norm_from_array (self, self->ob, (gsize) B * T);
      self->need_norm = FALSE;
    }
    snapshot_take (self);
    post_progress (self, GST_PROGRESS_TYPE_START, "Training online");
    self->ck_time = g_get_monotonic_time ();
    self->online_started = TRUE;
  }

  if (self->online_stopped)
    return TRUE;                /* gave up: the predictions still flow */

  memset (self->grads, 0, self->n_params * sizeof (float));
  batch_scratch (self, T, 1);
  gboolean ok = TRUE;
  for (guint b = 0; b < B && ok; b++) {
    double w = 0.0;
    batch_put (self, self->ob + (gsize) b * T * self->rec, T, 0, 1);
    const double l = batch_run (self, self->tstate, T, 1, TRUE, &w);
    if (!isfinite (l))
      ok = FALSE;
    total += l * w;
    wsum += w;
  }
  if (ok && B > 1) {
    const float scale = 1.0f / B;
    for (gsize i = 0; i < self->n_params; i++)
      self->grads[i] *= scale;
  }
  /* The weights that just gave a finite loss are the ones to come back to.
   * (A snapshot taken after the step, at the checkpoint, could hold weights
   * that are finite but overflow on the next data whatever the learning
   * rate: every later update rolled back to them.) */
  if (ok)
    snapshot_take (self);
  if (!ok || !apply_step (self)) {
    gchar *where = g_strdup_printf ("at update %" G_GUINT64_FORMAT,
        self->updates + 1);
    rollback (self, where);
    g_free (where);
    /* the last checkpoint may hold the weights just given up */
    self->ck_dirty = TRUE;
    if (++self->online_streak >= MAX_ROLLBACKS) {
      self->online_stopped = TRUE;
      GST_ELEMENT_WARNING (self, STREAM, FAILED,
          ("Training keeps diverging; stopped updating after %u rollbacks in "
              "a row and kept the last good weights.", self->online_streak),
          (NULL));
      return online_checkpoint (self, FALSE);
    }
    return TRUE;
  }
  self->online_streak = 0;
  self->ck_dirty = TRUE;
  self->updates++;
  self->ck_loss += total;
  self->ck_weight += wsum;
  self->ck_steps += (guint64) B * T;
  if (self->updates % self->s.checkpoint_interval == 0)
    return online_checkpoint (self, FALSE);
  return TRUE;
}

/* Feeds the steps of this call to the online trainer. */
static gboolean
online_steps (GstRnnTrain *self)
{
  const gsize batch = (gsize) self->s.batch_size * self->s.seq_length;

  for (gsize i = 0; i < self->n_steps; i++) {
    if (i > 0 && self->steps_frame0[i] != self->steps_frame0[i - 1] + self->f_in) {
      /* a discontinuity: windows must be contiguous */
      self->ob_len = 0;
      if (self->tstate)
        rnn_state_reset (self->tstate);
    }
    memcpy (self->ob + self->ob_len * self->rec, self->steps + i * self->rec,
        self->rec * sizeof (float));
    if (++self->ob_len == batch) {
      self->ob_len = 0;
      if (!online_update (self))
        return FALSE;
    }
  }
  return TRUE;
}

/* ---- framing ------------------------------------------------------------------- */

static void
steps_push (GstRnnTrain *self)
{
  self->steps = grow (self->steps, &self->steps_cap, self->n_steps + 1,
      self->rec * sizeof (float));
  self->steps_frame0 = g_realloc_n (self->steps_frame0, self->steps_cap,
      sizeof (guint64));
  memcpy (self->steps + self->n_steps * self->rec, self->step,
      self->rec * sizeof (float));
  self->steps_frame0[self->n_steps++] = self->step_frame0;
}

/* Adds @n paired frames starting at frame index @frame: input frames at @x
 * (c_in floats each), target frames at @t (@t_stride floats apart). */
static GstFlowReturn
frame_pairs (GstRnnTrain *self, const float *x, const float *t, gsize t_stride,
    gsize n, guint64 frame)
{
  const gboolean ce = self->loss_kind == RNN_LOSS_CROSS_ENTROPY;
  const guint tail = self->f_in - self->f_out;  /* first frame with a target */
  float *in = self->step, *tg = self->step + self->n_in;
  float *mask = tg + self->n_tgt;

  if (self->have_next_pair && frame != self->next_pair)
    self->step_fill = 0;        /* a jump: drop the partial step */
  self->next_pair = frame + n;
  self->have_next_pair = TRUE;

  for (gsize k = 0; k < n; k++) {
    const float *xf = x + k * self->c_in, *tf = t + k * t_stride;
    const guint j = self->step_fill;
    if (j == 0) {
      self->step_frame0 = frame + k;
      *mask = 1.0f;
    }
    for (guint c = 0; c < self->c_in; c++) {
      float v = xf[c];
      if (!isfinite (v)) {
        v = 0.0f;
        self->bad_total++;
      }
      in[j * self->c_in + c] = v;
    }
    if (j >= tail) {
      if (ce) {
        if (j == self->f_in - 1) {
          const float v = tf[0];
          if (!isfinite (v)) {
            *mask = 0.0f;
            tg[0] = 0.0f;
            self->bad_total++;
          } else if (v < 0.0f) {
            *mask = 0.0f;       /* no label */
            tg[0] = 0.0f;
          } else if (v != floorf (v) || v >= (float) self->n_out) {
            GST_ELEMENT_ERROR (self, STREAM, FORMAT,
                ("The target holds %g at %" GST_TIME_FORMAT ", which is not a "
                    "class index in [0, %u) (loss=cross-entropy, num-classes "
                    "%u).", v, GST_TIME_ARGS (gst_util_uint64_scale_round (frame
                            + k, GST_SECOND, self->rate)), self->n_out,
                    self->n_out), (NULL));
            return GST_FLOW_ERROR;
          } else {
            tg[0] = v;
          }
        }
      } else {
        float *dst = tg + (j - tail) * self->c_tgt;
        for (guint c = 0; c < self->c_tgt; c++) {
          const float v = tf[c];
          if (!isfinite (v)) {
            *mask = 0.0f;
            dst[c] = 0.0f;
            self->bad_total++;
          } else {
            dst[c] = v;
          }
        }
      }
    }
    if (++self->step_fill == self->f_in) {
      steps_push (self);
      self->step_fill = 0;
    }
  }
  return GST_FLOW_OK;
}

/* ---- lanes ----------------------------------------------------------------------- */

static void
lane_drop (Lane *l, guint64 n)
{
  n = MIN (n, (guint64) l->len);
  memmove (l->data, l->data + n * l->channels,
      (l->len - n) * l->channels * sizeof (float));
  l->len -= n;
  l->first += n;
}

static void
lane_reset (Lane *l)
{
  l->started = FALSE;
  l->first = 0;
  l->len = 0;
}

static void
lane_append_nan (Lane *l, gsize n)
{
  l->data = grow (l->data, &l->cap, (l->len + n) * l->channels, sizeof (float));
  float *p = l->data + l->len * l->channels;
  for (gsize i = 0; i < n * l->channels; i++)
    p[i] = NAN;
  l->len += n;
}

/* Places @buf on its lane.  Returns FALSE when the lanes had to be reset
 * (a gap too long to bridge). */
static gboolean
lane_push (GstRnnTrain *self, Lane *l, GstAggregatorPad *pad, GstBuffer *buf)
{
  GstSegment seg;
  GstMapInfo map;
  const gsize bpf = (gsize) l->channels * sizeof (float);
  gboolean reset = FALSE;

  GST_OBJECT_LOCK (pad);
  seg = pad->segment;
  GST_OBJECT_UNLOCK (pad);

  if (seg.format == GST_FORMAT_TIME) {
    buf = gst_audio_buffer_clip (buf, &seg, l->rate, (gint) bpf);
    if (!buf)
      return TRUE;
  }
  if (!gst_buffer_map (buf, &map, GST_MAP_READ)) {
    gst_buffer_unref (buf);
    return TRUE;
  }
  gsize n = map.size / bpf;
  const float *p = (const float *) map.data;
  guint64 expect = l->first + l->len, frame = expect;

  if (GST_BUFFER_PTS_IS_VALID (buf) && seg.format == GST_FORMAT_TIME) {
    const guint64 rt = gst_segment_to_running_time (&seg, GST_FORMAT_TIME,
        GST_BUFFER_PTS (buf));
    if (rt != GST_CLOCK_TIME_NONE)
      frame = gst_util_uint64_scale_round (rt, l->rate, GST_SECOND);
  }
  if (!l->started) {
    l->started = TRUE;
    l->first = frame;
    l->len = 0;
  } else {
    const guint64 tol = MAX (1, (guint64) l->rate / 2000);   /* 0.5 ms */
    if (frame + tol >= expect && frame <= expect + tol) {
      frame = expect;
    } else if (frame < expect) {
      const guint64 skip = expect - frame;                    /* overlap */
      if (skip >= n)
        n = 0;
      else {
        p += skip * l->channels;
        n -= skip;
      }
      frame = expect;
    } else if (frame - expect <= (guint64) l->rate) {
      GST_DEBUG_OBJECT (self, "%s: bridging a gap of %" G_GUINT64_FORMAT
          " frames", GST_PAD_NAME (pad), frame - expect);
      lane_append_nan (l, frame - expect);
    } else {
      GST_WARNING_OBJECT (self, "%s: gap of %" G_GUINT64_FORMAT " frames, "
          "restarting the pairing", GST_PAD_NAME (pad), frame - expect);
      reset = TRUE;
    }
  }
  if (!reset && n > 0) {
    l->data = grow (l->data, &l->cap, (l->len + n) * l->channels, sizeof (float));
    memcpy (l->data + l->len * l->channels, p, n * bpf);
    l->len += n;
  }
  gst_buffer_unmap (buf, &map);

  if (reset) {
    /* keep this buffer as the start of a new run on this lane; the other
     * lane's buffered frames cannot be paired across the gap either */
    for (guint i = 0; i < N_LANES; i++)
      if (&self->lanes[i] != l)
        lane_reset (&self->lanes[i]);
    l->first = frame;
    l->len = 0;
    l->data = grow (l->data, &l->cap, n * l->channels, sizeof (float));
    if (gst_buffer_map (buf, &map, GST_MAP_READ)) {
      memcpy (l->data, map.data, n * bpf);
      l->len = n;
      gst_buffer_unmap (buf, &map);
    }
    self->step_fill = 0;
  }
  gst_buffer_unref (buf);
  return !reset;
}

/* Pairs whatever the lanes allow. */
static GstFlowReturn
pair_lanes (GstRnnTrain *self)
{
  Lane *s = &self->lanes[LANE_SINK], *t = &self->lanes[LANE_TARGET];

  if (!self->has_target) {
    const guint64 d = (guint64) self->s.predict_ahead * self->f_in;
    if (s->len > d) {
      const gsize n = s->len - d;
      GstFlowReturn r = frame_pairs (self, s->data, s->data + d * s->channels,
          s->channels, n, s->first);
      lane_drop (s, n);
      return r;
    }
    return GST_FLOW_OK;
  }

  while (s->started && t->started) {
    if (s->first < t->first) {
      const guint64 k = MIN (t->first - s->first, (guint64) s->len);
      if (k == 0)
        break;
      lane_drop (s, k);
      continue;
    }
    if (t->first < s->first) {
      const guint64 k = MIN (s->first - t->first, (guint64) t->len);
      if (k == 0)
        break;
      lane_drop (t, k);
      continue;
    }
    const gsize n = MIN (s->len, t->len);
    if (n == 0)
      break;
    GstFlowReturn r = frame_pairs (self, s->data, t->data, t->channels, n, s->first);
    lane_drop (s, n);
    lane_drop (t, n);
    if (r != GST_FLOW_OK)
      return r;
  }
  return GST_FLOW_OK;
}

/* ---- aggregate ------------------------------------------------------------------- */

static gboolean
pad_done (GstAggregatorPad *pad)
{
  return gst_aggregator_pad_is_eos (pad) && !gst_aggregator_pad_has_buffer (pad);
}

static GstFlowReturn
finish (GstRnnTrain *self)
{
  GstFlowReturn ret = GST_FLOW_EOS;

  self->finished = TRUE;
  if (!self->configured) {
    GST_ELEMENT_WARNING (self, STREAM, FAILED,
        ("The stream ended before any data arrived; no model written."), (NULL));
    return GST_FLOW_EOS;
  }
  if (self->bidirectional)
    pred_window_flush (self);
  out_flush (self);

  if (self->s.mode == GST_RNN_TRAIN_MODE_OFFLINE) {
    ret = train_offline (self);
    if (ret == GST_FLOW_FLUSHING)
      self->finished = FALSE;   /* a flush: train again at the next EOS */
  } else {
    if (!self->online_started) {
      GST_ELEMENT_WARNING (self, STREAM, FAILED,
          ("The stream ended before one update's worth of data (batch-size x "
              "seq-length steps); no model written."), (NULL));
      return GST_FLOW_EOS;
    }
    if (self->ck_dirty || self->checkpoints == 0)
      if (!online_checkpoint (self, TRUE))
        return GST_FLOW_ERROR;
    post_progress (self, GST_PROGRESS_TYPE_COMPLETE, "Training complete");
    post_done (self, self->last_loss, NAN);
  }
  return ret;
}

static GstFlowReturn
gst_rnn_train_aggregate (GstAggregator *agg, gboolean timeout)
{
  GstRnnTrain *self = GST_RNN_TRAIN (agg);
  GstFlowReturn ret = GST_FLOW_OK;
  GstAggregatorPad *pads[N_LANES];

  if (self->finished)
    return GST_FLOW_EOS;

  GST_OBJECT_LOCK (self);
  for (guint i = 0; i < N_LANES; i++)
    pads[i] = self->lanes[i].pad ? gst_object_ref (self->lanes[i].pad) : NULL;
  GST_OBJECT_UNLOCK (self);

  if (!self->configured) {
    gboolean have_data = FALSE, have_caps = TRUE;
    GST_OBJECT_LOCK (self);
    for (guint i = 0; i < N_LANES; i++) {
      if (pads[i] && gst_aggregator_pad_has_buffer (pads[i]))
        have_data = TRUE;
      if (pads[i] && self->lanes[i].rate == 0)
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
       * branch's full queue then blocks the tee for good (a deadlock seen
       * with queue ! effect ! target). */
      const Lane *l = &self->lanes[i], *o = &self->lanes[1 - i];
      if (n_lanes == 2 && l->started && o->started
          && l->first + l->len > o->first + o->len)
        continue;
      GstBuffer *buf;
      if (!pads[i])
        continue;               /* the target pad was released */
      while ((buf = gst_aggregator_pad_pop_buffer (pads[i]))) {
        lane_push (self, &self->lanes[i], pads[i], buf);
        if (n_lanes == 2)
          break;
      }
    }
    gst_aggregator_selected_samples (agg, GST_CLOCK_TIME_NONE,
        GST_CLOCK_TIME_NONE, GST_CLOCK_TIME_NONE, NULL);
    const guint64 bad0 = self->bad_total;
    self->n_steps = 0;
    ret = pair_lanes (self);
    if (ret != GST_FLOW_OK)
      goto out;
    if (self->bad_total > bad0 && !self->bad_prev)
      GST_ELEMENT_WARNING (self, STREAM, FORMAT,
          ("Non-finite or missing values in the stream (%" G_GUINT64_FORMAT
              " so far): inputs read as 0, targets carry no loss.",
              self->bad_total), (NULL));
    self->bad_prev = self->bad_total > bad0;

    if (self->n_steps > 0) {
      predict_steps (self);
      if (self->s.mode == GST_RNN_TRAIN_MODE_OFFLINE) {
        GError *err = NULL;
        if (!rnn_recording_append (self->recording, self->steps, self->n_steps, &err)) {
          GST_ELEMENT_ERROR (self, RESOURCE, WRITE,
              ("Could not record the training data."), ("%s", err->message));
          g_error_free (err);
          ret = GST_FLOW_ERROR;
          goto out;
        }
      } else if (!online_steps (self)) {
        ret = GST_FLOW_ERROR;
        goto out;
      }
    }
    out_flush (self);
    if (self->out_flow != GST_FLOW_OK) {
      ret = self->out_flow;
      goto out;
    }
  }

  /* the end: when no more pairs can come.  A pad at EOS with frames left
   * on the other lane still pairs them with what the other pad brings. */
  {
    const gboolean sink_done = pads[LANE_SINK] && pad_done (pads[LANE_SINK]);
    /* a target pad released mid-stream brings nothing more */
    const gboolean tgt_done = pads[LANE_TARGET] ? pad_done (pads[LANE_TARGET])
        : self->configured && self->has_target;
    const Lane *ls = &self->lanes[LANE_SINK], *lt = &self->lanes[LANE_TARGET];
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
  for (guint i = 0; i < N_LANES; i++)
    if (pads[i])
      gst_object_unref (pads[i]);
  return ret;
}

/* ---- events and queries ------------------------------------------------------------ */

static Lane *
lane_of (GstRnnTrain *self, GstAggregatorPad *pad)
{
  for (guint i = 0; i < N_LANES; i++)
    if (self->lanes[i].pad == pad)
      return &self->lanes[i];
  return NULL;
}

static gboolean
gst_rnn_train_sink_event (GstAggregator *agg, GstAggregatorPad *pad,
    GstEvent *event)
{
  GstRnnTrain *self = GST_RNN_TRAIN (agg);

  switch (GST_EVENT_TYPE (event)) {
    case GST_EVENT_CAPS:{
      GstCaps *caps;
      gint rate = 0, channels = 0;
      gst_event_parse_caps (event, &caps);
      GstStructure *st = gst_caps_get_structure (caps, 0);
      if (!gst_structure_get_int (st, "rate", &rate)
          || !gst_structure_get_int (st, "channels", &channels)) {
        GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
            ("Caps without rate and channels: %" GST_PTR_FORMAT, caps), (NULL));
        gst_event_unref (event);
        return FALSE;
      }

      GST_OBJECT_LOCK (self);
      Lane *l = lane_of (self, pad), *other = NULL;
      for (guint i = 0; i < N_LANES; i++)
        if (self->lanes[i].pad && &self->lanes[i] != l && self->lanes[i].rate)
          other = &self->lanes[i];
      const gboolean ce = self->props.loss == GST_RNN_TRAIN_LOSS_CROSS_ENTROPY;
      const gint other_rate = other ? other->rate : 0;
      const gboolean is_target = l == &self->lanes[LANE_TARGET];
      const gint old_rate = l ? l->rate : 0, old_channels = l ? l->channels : 0;
      GST_OBJECT_UNLOCK (self);

      if (!l) {
        gst_event_unref (event);
        return FALSE;
      }
      if (other_rate && other_rate != rate) {
        GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
            ("The sink and target pads have different sample rates (%d Hz on "
                "%s, %d Hz on the other).", rate, GST_PAD_NAME (pad), other_rate),
            ("Put an audioresample in front of one of them."));
        gst_event_unref (event);
        return FALSE;
      }
      if (is_target && ce && channels != 1) {
        GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
            ("loss=cross-entropy needs a one-channel class-index target; the "
                "target has %d channels.", channels), (NULL));
        gst_event_unref (event);
        return FALSE;
      }
      if (self->configured && (rate != old_rate || channels != old_channels)) {
        GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
            ("The caps of %s changed during the stream (%d Hz, %d channels -> "
                "%d Hz, %d channels); rnntrain cannot change its model's shape.",
                GST_PAD_NAME (pad), old_rate, old_channels, rate, channels),
            (NULL));
        gst_event_unref (event);
        return FALSE;
      }
      GST_OBJECT_LOCK (self);
      l->rate = rate;
      l->channels = channels;
      GST_OBJECT_UNLOCK (self);
      gst_event_unref (event);
      return TRUE;
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
    for (guint i = 0; i < N_LANES; i++)
      if (self->lanes[i].pad && self->lanes[i].pad != pad && self->lanes[i].rate)
        rate = self->lanes[i].rate;
    GST_OBJECT_UNLOCK (self);
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
  if (self->lanes[LANE_TARGET].pad || self->configured) {
    GST_OBJECT_UNLOCK (self);
    GST_WARNING_OBJECT (self, "the target pad %s", self->configured ?
        "must be requested before data flows" : "exists already");
    return NULL;
  }
  GST_OBJECT_UNLOCK (self);

  pad = g_object_new (GST_TYPE_AGGREGATOR_PAD, "name", "target",
      "direction", GST_PAD_SINK, "template", templ, NULL);
  GST_OBJECT_LOCK (self);
  self->lanes[LANE_TARGET].pad = pad;
  /* not configured yet (checked above): no data in the lane, no caps */
  self->lanes[LANE_TARGET].rate = self->lanes[LANE_TARGET].channels = 0;
  GST_OBJECT_UNLOCK (self);
  return pad;
}

static void
gst_rnn_train_release_pad (GstElement *element, GstPad *pad)
{
  GstRnnTrain *self = GST_RNN_TRAIN (element);

  /* Only the pad goes: the lane's rate and channels describe the data it
   * holds, which the aggregate thread may be working on (they were zeroed
   * here once, racing with it); request_new_pad starts a new lane. */
  GST_OBJECT_LOCK (self);
  if (self->lanes[LANE_TARGET].pad == GST_AGGREGATOR_PAD (pad))
    self->lanes[LANE_TARGET].pad = NULL;
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
  for (guint i = 0; i < N_LANES; i++) {
    lane_reset (&self->lanes[i]);
    g_clear_pointer (&self->lanes[i].data, g_free);
    self->lanes[i].cap = 0;
  }
  g_clear_pointer (&self->model, rnn_model_unref);
  g_clear_pointer (&self->step, g_free);
  g_clear_pointer (&self->steps, g_free);
  g_clear_pointer (&self->steps_frame0, g_free);
  self->n_steps = self->steps_cap = 0;
  self->step_fill = 0;
  self->have_next_pair = FALSE;
  self->bad_total = 0;
  self->bad_prev = FALSE;
  g_clear_pointer (&self->fw, rnn_forward_free);
  g_clear_pointer (&self->pstate, rnn_state_free);
  g_clear_pointer (&self->px, g_free);
  g_clear_pointer (&self->py, g_free);
  self->px_cap = self->py_cap = 0;
  g_clear_pointer (&self->pwin, g_free);
  self->pwin_len = 0;
  g_clear_pointer (&self->out, g_free);
  self->out_steps = self->out_cap = 0;
  self->have_out_next = FALSE;
  self->out_discont = FALSE;
  self->warned_not_linked = FALSE;
  g_clear_pointer (&self->tr, rnn_train_free);
  g_clear_pointer (&self->opt, rnn_optimizer_free);
  g_clear_pointer (&self->grads, g_free);
  g_clear_pointer (&self->snap_model, rnn_model_unref);
  g_clear_pointer (&self->snap_opt, rnn_optimizer_free);
  g_clear_pointer (&self->bx, g_free);
  g_clear_pointer (&self->bt, g_free);
  g_clear_pointer (&self->bm, g_free);
  g_clear_pointer (&self->wbuf, g_free);
  self->bx_cap = self->bt_cap = self->bm_cap = self->wbuf_cap = 0;
  self->rollbacks = 0;
  g_clear_pointer (&self->recording, rnn_recording_free);
  g_clear_pointer (&self->ob, g_free);
  self->ob_len = 0;
  g_clear_pointer (&self->tstate, rnn_state_free);
  self->updates = 0;
  self->checkpoints = 0;
  self->ck_loss = self->ck_weight = 0.0;
  self->ck_steps = 0;
  self->last_loss = NAN;
  self->online_started = FALSE;
  self->ck_dirty = FALSE;
  self->online_streak = 0;
  self->online_stopped = FALSE;
  settings_clear (&self->s);
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

  free_stream (self);
  return TRUE;
}

/* A flush drops what is half-paired; the recording and the model stay. */
static GstFlowReturn
gst_rnn_train_flush (GstAggregator *agg)
{
  GstRnnTrain *self = GST_RNN_TRAIN (agg);

  for (guint i = 0; i < N_LANES; i++)
    lane_reset (&self->lanes[i]);
  self->step_fill = 0;
  self->have_next_pair = FALSE;
  self->out_steps = 0;
  self->have_out_next = FALSE;
  self->pwin_len = 0;
  self->ob_len = 0;
  if (self->pstate)
    rnn_state_reset (self->pstate);
  if (self->tstate)
    rnn_state_reset (self->tstate);
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
  Settings *p = &self->props;

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL_LOCATION:
      g_free (p->location);
      p->location = g_value_dup_string (value);
      break;
    case PROP_INIT_MODEL:
      g_free (p->init_location);
      p->init_location = g_value_dup_string (value);
      break;
    case PROP_CELL:
      p->cell = g_value_get_enum (value);
      break;
    case PROP_HIDDEN_SIZE:
      p->hidden_size = g_value_get_uint (value);
      break;
    case PROP_NUM_LAYERS:
      p->num_layers = g_value_get_uint (value);
      break;
    case PROP_BIDIRECTIONAL:
      p->bidirectional = g_value_get_boolean (value);
      break;
    case PROP_FRAME_SIZE:
      p->frame_size = g_value_get_uint (value);
      break;
    case PROP_OUTPUT_FRAME_SIZE:
      p->output_frame_size = g_value_get_uint (value);
      break;
    case PROP_HEAD_ACTIVATION:
      p->head_activation = g_value_get_enum (value);
      break;
    case PROP_LOSS:
      p->loss = g_value_get_enum (value);
      break;
    case PROP_NUM_CLASSES:
      p->num_classes = g_value_get_uint (value);
      break;
    case PROP_OPTIMIZER:
      p->optimizer = g_value_get_enum (value);
      break;
    case PROP_LEARNING_RATE:
      p->learning_rate = g_value_get_double (value);
      break;
    case PROP_MOMENTUM:
      p->momentum = g_value_get_double (value);
      break;
    case PROP_WEIGHT_DECAY:
      p->weight_decay = g_value_get_double (value);
      break;
    case PROP_CLIP_NORM:
      p->clip_norm = g_value_get_double (value);
      break;
    case PROP_EPOCHS:
      p->epochs = g_value_get_uint (value);
      break;
    case PROP_SEQ_LENGTH:
      p->seq_length = g_value_get_uint (value);
      break;
    case PROP_BATCH_SIZE:
      p->batch_size = g_value_get_uint (value);
      break;
    case PROP_VALIDATION_FRACTION:
      p->validation_fraction = g_value_get_double (value);
      break;
    case PROP_SEED:
      p->seed = g_value_get_uint (value);
      break;
    case PROP_NORMALIZE:
      p->normalize = g_value_get_boolean (value);
      break;
    case PROP_MODE:
      p->mode = g_value_get_enum (value);
      break;
    case PROP_CHECKPOINT_INTERVAL:
      p->checkpoint_interval = g_value_get_uint (value);
      break;
    case PROP_PREDICT_AHEAD:
      p->predict_ahead = g_value_get_uint (value);
      break;
    case PROP_MAX_MEMORY:
      p->max_memory = g_value_get_uint64 (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_rnn_train_get_property (GObject *object, guint prop_id, GValue *value,
    GParamSpec *pspec)
{
  GstRnnTrain *self = GST_RNN_TRAIN (object);
  const Settings *p = &self->props;

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL_LOCATION:
      g_value_set_string (value, p->location);
      break;
    case PROP_INIT_MODEL:
      g_value_set_string (value, p->init_location);
      break;
    case PROP_CELL:
      g_value_set_enum (value, p->cell);
      break;
    case PROP_HIDDEN_SIZE:
      g_value_set_uint (value, p->hidden_size);
      break;
    case PROP_NUM_LAYERS:
      g_value_set_uint (value, p->num_layers);
      break;
    case PROP_BIDIRECTIONAL:
      g_value_set_boolean (value, p->bidirectional);
      break;
    case PROP_FRAME_SIZE:
      g_value_set_uint (value, p->frame_size);
      break;
    case PROP_OUTPUT_FRAME_SIZE:
      g_value_set_uint (value, p->output_frame_size);
      break;
    case PROP_HEAD_ACTIVATION:
      g_value_set_enum (value, p->head_activation);
      break;
    case PROP_LOSS:
      g_value_set_enum (value, p->loss);
      break;
    case PROP_NUM_CLASSES:
      g_value_set_uint (value, p->num_classes);
      break;
    case PROP_OPTIMIZER:
      g_value_set_enum (value, p->optimizer);
      break;
    case PROP_LEARNING_RATE:
      g_value_set_double (value, p->learning_rate);
      break;
    case PROP_MOMENTUM:
      g_value_set_double (value, p->momentum);
      break;
    case PROP_WEIGHT_DECAY:
      g_value_set_double (value, p->weight_decay);
      break;
    case PROP_CLIP_NORM:
      g_value_set_double (value, p->clip_norm);
      break;
    case PROP_EPOCHS:
      g_value_set_uint (value, p->epochs);
      break;
    case PROP_SEQ_LENGTH:
      g_value_set_uint (value, p->seq_length);
      break;
    case PROP_BATCH_SIZE:
      g_value_set_uint (value, p->batch_size);
      break;
    case PROP_VALIDATION_FRACTION:
      g_value_set_double (value, p->validation_fraction);
      break;
    case PROP_SEED:
      g_value_set_uint (value, p->seed);
      break;
    case PROP_NORMALIZE:
      g_value_set_boolean (value, p->normalize);
      break;
    case PROP_MODE:
      g_value_set_enum (value, p->mode);
      break;
    case PROP_CHECKPOINT_INTERVAL:
      g_value_set_uint (value, p->checkpoint_interval);
      break;
    case PROP_PREDICT_AHEAD:
      g_value_set_uint (value, p->predict_ahead);
      break;
    case PROP_MAX_MEMORY:
      g_value_set_uint64 (value, p->max_memory);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_rnn_train_finalize (GObject *object)
{
  GstRnnTrain *self = GST_RNN_TRAIN (object);

  free_stream (self);
  settings_clear (&self->props);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

#define PARAM_FLAGS (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS \
    | GST_PARAM_MUTABLE_READY)

static void
gst_rnn_train_class_init (GstRnnTrainClass *klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstAggregatorClass *agg_class = GST_AGGREGATOR_CLASS (klass);

  gobject_class->set_property = gst_rnn_train_set_property;
  gobject_class->get_property = gst_rnn_train_get_property;
  gobject_class->finalize = gst_rnn_train_finalize;

  g_object_class_install_property (gobject_class, PROP_MODEL_LOCATION,
      g_param_spec_string ("model-location", "Model location",
          "Where to write the trained model (gst-rnn safetensors; written "
          "atomically)", DEFAULT_MODEL_LOCATION, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_INIT_MODEL,
      g_param_spec_string ("init-model", "Initial model",
          "Start from this model instead of a fresh one; its shape, framing "
          "and normalisation override cell, hidden-size, num-layers, "
          "bidirectional, frame-size, output-frame-size, head-activation and "
          "normalize", DEFAULT_INIT_MODEL, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_CELL,
      g_param_spec_enum ("cell", "Cell", "Recurrent cell",
          GST_TYPE_RNN_TRAIN_CELL, DEFAULT_CELL, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_HIDDEN_SIZE,
      g_param_spec_uint ("hidden-size", "Hidden size",
          "Hidden units per layer and direction", 1, RNN_MAX_HIDDEN_SIZE,
          DEFAULT_HIDDEN_SIZE, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_NUM_LAYERS,
      g_param_spec_uint ("num-layers", "Layers", "Stacked recurrent layers",
          1, RNN_MAX_LAYERS, DEFAULT_NUM_LAYERS, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_BIDIRECTIONAL,
      g_param_spec_boolean ("bidirectional", "Bidirectional",
          "Bidirectional layers, trained and run on windows of seq-length "
          "steps", DEFAULT_BIDIRECTIONAL, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_FRAME_SIZE,
      g_param_spec_uint ("frame-size", "Frame size",
          "Input frames per step (F_in)", 1, RNN_MAX_FRAME_SIZE,
          DEFAULT_FRAME_SIZE, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_OUTPUT_FRAME_SIZE,
      g_param_spec_uint ("output-frame-size", "Output frame size",
          "Target frames per step (F_out <= F_in): the last F_out frames of "
          "the step's span", 1, RNN_MAX_FRAME_SIZE, DEFAULT_OUTPUT_FRAME_SIZE,
          PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_HEAD_ACTIVATION,
      g_param_spec_enum ("head-activation", "Head activation",
          "Activation after the linear head (cross-entropy trains on the "
          "logits and needs none or softmax)",
          GST_TYPE_RNN_TRAIN_HEAD_ACTIVATION, DEFAULT_HEAD_ACTIVATION,
          PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_LOSS,
      g_param_spec_enum ("loss", "Loss", "Training loss",
          GST_TYPE_RNN_TRAIN_LOSS, DEFAULT_LOSS, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_NUM_CLASSES,
      g_param_spec_uint ("num-classes", "Classes",
          "Classes (model outputs) for loss=cross-entropy", 2,
          RNN_MAX_OUTPUT_SIZE, DEFAULT_NUM_CLASSES, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_OPTIMIZER,
      g_param_spec_enum ("optimizer", "Optimizer", "Optimizer",
          GST_TYPE_RNN_TRAIN_OPTIMIZER, DEFAULT_OPTIMIZER, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_LEARNING_RATE,
      g_param_spec_double ("learning-rate", "Learning rate",
          "Learning rate; 0 = the optimizer's default (Adam 0.001, SGD 0.01)",
          0.0, G_MAXFLOAT, DEFAULT_LEARNING_RATE, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_MOMENTUM,
      g_param_spec_double ("momentum", "Momentum", "SGD momentum",
          0.0, 0.999999, DEFAULT_MOMENTUM, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_WEIGHT_DECAY,
      g_param_spec_double ("weight-decay", "Weight decay",
          "L2 weight decay added to the gradients", 0.0, G_MAXFLOAT,
          DEFAULT_WEIGHT_DECAY, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_CLIP_NORM,
      g_param_spec_double ("clip-norm", "Clip norm",
          "Clip the global gradient norm to this value; 0 = off", 0.0,
          G_MAXFLOAT, DEFAULT_CLIP_NORM, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_EPOCHS,
      g_param_spec_uint ("epochs", "Epochs",
          "Passes over the recording (offline); 0 = only evaluate the initial "
          "model", 0, G_MAXINT, DEFAULT_EPOCHS, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_SEQ_LENGTH,
      g_param_spec_uint ("seq-length", "Sequence length",
          "BPTT window in steps (and the window of bidirectional models)",
          1, 65536, DEFAULT_SEQ_LENGTH, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_BATCH_SIZE,
      g_param_spec_uint ("batch-size", "Batch size",
          "Windows per update", 1, 65536, DEFAULT_BATCH_SIZE, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_VALIDATION_FRACTION,
      g_param_spec_double ("validation-fraction", "Validation fraction",
          "Tail of the recording held out for validation (offline)",
          0.0, 0.9, DEFAULT_VALIDATION_FRACTION, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_SEED,
      g_param_spec_uint ("seed", "Seed",
          "Seed of the initial weights and of the window order", 0, G_MAXUINT,
          DEFAULT_SEED, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_NORMALIZE,
      g_param_spec_boolean ("normalize", "Normalize",
          "Normalise the input per channel with the training data's mean and "
          "standard deviation (stored in the model)", DEFAULT_NORMALIZE,
          PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_MODE,
      g_param_spec_enum ("mode", "Mode", "When to train",
          GST_TYPE_RNN_TRAIN_MODE, DEFAULT_MODE, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_CHECKPOINT_INTERVAL,
      g_param_spec_uint ("checkpoint-interval", "Checkpoint interval",
          "Online mode: rewrite the model every this many updates (one "
          "update = batch-size windows of seq-length steps)", 1, G_MAXUINT,
          DEFAULT_CHECKPOINT_INTERVAL, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_PREDICT_AHEAD,
      g_param_spec_uint ("predict-ahead", "Predict ahead",
          "Without a target pad: predict the input this many steps ahead",
          1, 1u << 24, DEFAULT_PREDICT_AHEAD, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_MAX_MEMORY,
      g_param_spec_uint64 ("max-memory", "Maximum memory",
          "Offline mode: bytes of recording kept in memory; the rest is "
          "spooled to an (unlinked) temporary file in $TMPDIR", 0, G_MAXUINT64,
          DEFAULT_MAX_MEMORY, PARAM_FLAGS));

  gst_element_class_add_static_pad_template_with_gtype (element_class,
      &sink_template, GST_TYPE_AGGREGATOR_PAD);
  gst_element_class_add_static_pad_template_with_gtype (element_class,
      &target_template, GST_TYPE_AGGREGATOR_PAD);
  gst_element_class_add_static_pad_template_with_gtype (element_class,
      &src_template, GST_TYPE_AGGREGATOR_PAD);
  gst_element_class_set_static_metadata (element_class,
      "Recurrent network trainer", "Filter/Audio",
      "Trains an RNN, LSTM or GRU with backpropagation through time on the "
      "stream and writes a gst-rnn model", "gst-rnn developers");

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

  gst_type_mark_as_plugin_api (GST_TYPE_RNN_TRAIN_CELL, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_RNN_TRAIN_HEAD_ACTIVATION, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_RNN_TRAIN_LOSS, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_RNN_TRAIN_OPTIMIZER, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_RNN_TRAIN_MODE, 0);

  GST_DEBUG_CATEGORY_INIT (gst_rnn_train_debug, "rnntrain", 0,
      "recurrent network trainer");
}

static void
gst_rnn_train_init (GstRnnTrain *self)
{
  GstPadTemplate *templ = gst_static_pad_template_get (&sink_template);
  GstAggregatorPad *pad = g_object_new (GST_TYPE_AGGREGATOR_PAD,
      "name", "sink", "direction", GST_PAD_SINK, "template", templ, NULL);
  Settings *p = &self->props;

  gst_object_unref (templ);
  gst_element_add_pad (GST_ELEMENT (self), GST_PAD (pad));
  self->lanes[LANE_SINK].pad = pad;

  p->location = g_strdup (DEFAULT_MODEL_LOCATION);
  p->init_location = g_strdup (DEFAULT_INIT_MODEL);
  p->cell = DEFAULT_CELL;
  p->hidden_size = DEFAULT_HIDDEN_SIZE;
  p->num_layers = DEFAULT_NUM_LAYERS;
  p->bidirectional = DEFAULT_BIDIRECTIONAL;
  p->frame_size = DEFAULT_FRAME_SIZE;
  p->output_frame_size = DEFAULT_OUTPUT_FRAME_SIZE;
  p->head_activation = DEFAULT_HEAD_ACTIVATION;
  p->loss = DEFAULT_LOSS;
  p->num_classes = DEFAULT_NUM_CLASSES;
  p->optimizer = DEFAULT_OPTIMIZER;
  p->learning_rate = DEFAULT_LEARNING_RATE;
  p->momentum = DEFAULT_MOMENTUM;
  p->weight_decay = DEFAULT_WEIGHT_DECAY;
  p->clip_norm = DEFAULT_CLIP_NORM;
  p->epochs = DEFAULT_EPOCHS;
  p->seq_length = DEFAULT_SEQ_LENGTH;
  p->batch_size = DEFAULT_BATCH_SIZE;
  p->validation_fraction = DEFAULT_VALIDATION_FRACTION;
  p->seed = DEFAULT_SEED;
  p->normalize = DEFAULT_NORMALIZE;
  p->mode = DEFAULT_MODE;
  p->checkpoint_interval = DEFAULT_CHECKPOINT_INTERVAL;
  p->predict_ahead = DEFAULT_PREDICT_AHEAD;
  p->max_memory = DEFAULT_MAX_MEMORY;
  self->last_loss = NAN;
}
