/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnntrain's settings: the property table (names, ranges, defaults, where
 * each lives in GstRnnTrainSettings), the enum types of the properties,
 * and the model and trainer configurations the settings give.  Nothing
 * here touches the stream; the element (gstrnntrain.c) takes the object
 * lock around these calls. */
#include "gstrnntrainsettings.h"
#include "gstrnnelements.h"

#include <gst/gst.h>

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
#define DEFAULT_SKIP                0
#define DEFAULT_PRE_EMPHASIS        0.0

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
  PROP_SKIP,
  PROP_PRE_EMPHASIS,
};

/* ---- enums ------------------------------------------------------------- */

/* GType func (void) registering the enum @name with the values given. */
#define DEFINE_ENUM_TYPE(func, name, ...)                                   \
  GType func (void)                                                         \
  {                                                                         \
    static gsize type;                                                      \
    static const GEnumValue values[] = { __VA_ARGS__, {0, NULL, NULL} };    \
    return gst_rnn_enum_type (&type, name, values);                         \
  }

DEFINE_ENUM_TYPE (gst_rnn_train_cell_get_type, "GstRnnTrainCell",
    {GST_RNN_TRAIN_CELL_RNN_TANH, "Elman RNN, tanh", "rnn-tanh"},
    {GST_RNN_TRAIN_CELL_RNN_RELU, "Elman RNN, ReLU", "rnn-relu"},
    {GST_RNN_TRAIN_CELL_LSTM, "LSTM", "lstm"},
    {GST_RNN_TRAIN_CELL_GRU, "GRU", "gru"});

DEFINE_ENUM_TYPE (gst_rnn_train_head_activation_get_type,
    "GstRnnTrainHeadActivation",
    {GST_RNN_TRAIN_HEAD_ACTIVATION_NONE, "Linear", "none"},
    {GST_RNN_TRAIN_HEAD_ACTIVATION_SOFTMAX, "Softmax", "softmax"},
    {GST_RNN_TRAIN_HEAD_ACTIVATION_SIGMOID, "Sigmoid", "sigmoid"},
    {GST_RNN_TRAIN_HEAD_ACTIVATION_TANH, "Tanh", "tanh"});

DEFINE_ENUM_TYPE (gst_rnn_train_loss_get_type, "GstRnnTrainLoss",
    {GST_RNN_TRAIN_LOSS_MSE, "Mean squared error", "mse"},
    {GST_RNN_TRAIN_LOSS_CROSS_ENTROPY, "Cross-entropy on class indices",
        "cross-entropy"},
    {GST_RNN_TRAIN_LOSS_ESR, "Error-to-signal ratio over the batch", "esr"});

DEFINE_ENUM_TYPE (gst_rnn_train_optimizer_get_type, "GstRnnTrainOptimizer",
    {GST_RNN_TRAIN_OPTIMIZER_SGD, "SGD with momentum", "sgd"},
    {GST_RNN_TRAIN_OPTIMIZER_ADAM, "Adam", "adam"});

DEFINE_ENUM_TYPE (gst_rnn_train_mode_get_type, "GstRnnTrainMode",
    {GST_RNN_TRAIN_MODE_OFFLINE, "Record, train at EOS", "offline"},
    {GST_RNN_TRAIN_MODE_ONLINE, "Train continually (truncated BPTT)",
        "online"});

/* The core's values of the cell and head-activation properties. */
static const RnnCell core_cells[] = {
  [GST_RNN_TRAIN_CELL_RNN_TANH] = RNN_CELL_RNN_TANH,
  [GST_RNN_TRAIN_CELL_RNN_RELU] = RNN_CELL_RNN_RELU,
  [GST_RNN_TRAIN_CELL_LSTM] = RNN_CELL_LSTM,
  [GST_RNN_TRAIN_CELL_GRU] = RNN_CELL_GRU,
};

static const RnnHeadActivation core_head_activations[] = {
  [GST_RNN_TRAIN_HEAD_ACTIVATION_NONE] = RNN_HEAD_ACT_NONE,
  [GST_RNN_TRAIN_HEAD_ACTIVATION_SOFTMAX] = RNN_HEAD_ACT_SOFTMAX,
  [GST_RNN_TRAIN_HEAD_ACTIVATION_SIGMOID] = RNN_HEAD_ACT_SIGMOID,
  [GST_RNN_TRAIN_HEAD_ACTIVATION_TANH] = RNN_HEAD_ACT_TANH,
};

/* ---- the property table ------------------------------------------------- */

/* Where each property lives in GstRnnTrainSettings; its type is its
 * GParamSpec's. */
#define OFFSET(field) G_STRUCT_OFFSET (GstRnnTrainSettings, field)
static const gsize prop_offsets[] = {
  [PROP_MODEL_LOCATION] = OFFSET (location),
  [PROP_INIT_MODEL] = OFFSET (init_location),
  [PROP_CELL] = OFFSET (cell),
  [PROP_HIDDEN_SIZE] = OFFSET (hidden_size),
  [PROP_NUM_LAYERS] = OFFSET (num_layers),
  [PROP_BIDIRECTIONAL] = OFFSET (bidirectional),
  [PROP_FRAME_SIZE] = OFFSET (frame_size),
  [PROP_OUTPUT_FRAME_SIZE] = OFFSET (output_frame_size),
  [PROP_HEAD_ACTIVATION] = OFFSET (head_activation),
  [PROP_LOSS] = OFFSET (loss),
  [PROP_NUM_CLASSES] = OFFSET (num_classes),
  [PROP_OPTIMIZER] = OFFSET (optimizer),
  [PROP_LEARNING_RATE] = OFFSET (learning_rate),
  [PROP_MOMENTUM] = OFFSET (momentum),
  [PROP_WEIGHT_DECAY] = OFFSET (weight_decay),
  [PROP_CLIP_NORM] = OFFSET (clip_norm),
  [PROP_EPOCHS] = OFFSET (epochs),
  [PROP_SEQ_LENGTH] = OFFSET (seq_length),
  [PROP_BATCH_SIZE] = OFFSET (batch_size),
  [PROP_VALIDATION_FRACTION] = OFFSET (validation_fraction),
  [PROP_SEED] = OFFSET (seed),
  [PROP_NORMALIZE] = OFFSET (normalize),
  [PROP_MODE] = OFFSET (mode),
  [PROP_CHECKPOINT_INTERVAL] = OFFSET (checkpoint_interval),
  [PROP_PREDICT_AHEAD] = OFFSET (predict_ahead),
  [PROP_MAX_MEMORY] = OFFSET (max_memory),
  [PROP_SKIP] = OFFSET (skip),
  [PROP_PRE_EMPHASIS] = OFFSET (pre_emphasis),
};

#define PARAM_FLAGS (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS \
    | GST_PARAM_MUTABLE_READY)

void
gst_rnn_train_settings_install (GObjectClass *gobject_class)
{
  g_object_class_install_property (gobject_class, PROP_MODEL_LOCATION,
      g_param_spec_string ("model-location", "Model location",
          "File the trained model is written to (atomically)",
          DEFAULT_MODEL_LOCATION, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_INIT_MODEL,
      g_param_spec_string ("init-model", "Initial model",
          "Model to start from; its shape overrides the model properties",
          DEFAULT_INIT_MODEL, PARAM_FLAGS));
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
          "Bidirectional layers, run on windows of seq-length steps",
          DEFAULT_BIDIRECTIONAL, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_FRAME_SIZE,
      g_param_spec_uint ("frame-size", "Frame size",
          "Input frames per step (F_in)", 1, RNN_MAX_FRAME_SIZE,
          DEFAULT_FRAME_SIZE, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_OUTPUT_FRAME_SIZE,
      g_param_spec_uint ("output-frame-size", "Output frame size",
          "Target frames per step (F_out <= F_in), the last of the step",
          1, RNN_MAX_FRAME_SIZE, DEFAULT_OUTPUT_FRAME_SIZE, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_HEAD_ACTIVATION,
      g_param_spec_enum ("head-activation", "Head activation",
          "Activation after the linear head (cross-entropy: none or softmax)",
          GST_TYPE_RNN_TRAIN_HEAD_ACTIVATION, DEFAULT_HEAD_ACTIVATION,
          PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_LOSS,
      g_param_spec_enum ("loss", "Loss", "Training loss",
          GST_TYPE_RNN_TRAIN_LOSS, DEFAULT_LOSS, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_NUM_CLASSES,
      g_param_spec_uint ("num-classes", "Classes",
          "Model outputs for loss=cross-entropy", 2,
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
          "Offline: passes over the recording; 0 = only evaluate", 0,
          G_MAXINT, DEFAULT_EPOCHS, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_SEQ_LENGTH,
      g_param_spec_uint ("seq-length", "Sequence length",
          "BPTT window in steps (and the window of bidirectional models)",
          1, 65536, DEFAULT_SEQ_LENGTH, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_BATCH_SIZE,
      g_param_spec_uint ("batch-size", "Batch size",
          "Windows per update", 1, 65536, DEFAULT_BATCH_SIZE, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_VALIDATION_FRACTION,
      g_param_spec_double ("validation-fraction", "Validation fraction",
          "Offline: tail of the recording held out for validation",
          0.0, 0.9, DEFAULT_VALIDATION_FRACTION, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_SEED,
      g_param_spec_uint ("seed", "Seed",
          "Seed of the initial weights and of the window order", 0, G_MAXUINT,
          DEFAULT_SEED, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_NORMALIZE,
      g_param_spec_boolean ("normalize", "Normalize",
          "Normalise each input channel by the training data's mean and std",
          DEFAULT_NORMALIZE, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_MODE,
      g_param_spec_enum ("mode", "Mode", "When to train",
          GST_TYPE_RNN_TRAIN_MODE, DEFAULT_MODE, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_CHECKPOINT_INTERVAL,
      g_param_spec_uint ("checkpoint-interval", "Checkpoint interval",
          "Online: updates between model writes", 1, G_MAXUINT,
          DEFAULT_CHECKPOINT_INTERVAL, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_PREDICT_AHEAD,
      g_param_spec_uint ("predict-ahead", "Predict ahead",
          "Without a target pad: predict the input this many steps ahead",
          1, 1u << 24, DEFAULT_PREDICT_AHEAD, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_MAX_MEMORY,
      g_param_spec_uint64 ("max-memory", "Maximum memory",
          "Offline: recording bytes kept in memory; the rest goes to $TMPDIR",
          0, G_MAXUINT64, DEFAULT_MAX_MEMORY, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_SKIP,
      g_param_spec_uint ("skip", "Skip",
          "Residual skip of a new model: add the first N input channels to "
          "the outputs (1: the first to every output; N = outputs: one "
          "each); frame sizes 1 only; 0 = none", 0, RNN_MAX_OUTPUT_SIZE,
          DEFAULT_SKIP, PARAM_FLAGS));
  g_object_class_install_property (gobject_class, PROP_PRE_EMPHASIS,
      g_param_spec_double ("pre-emphasis", "Pre-emphasis",
          "First-order high-pass 1 - a z^-1 applied to prediction and target "
          "before the loss (mse, esr); 0 = off", 0.0, 0.999999,
          DEFAULT_PRE_EMPHASIS, PARAM_FLAGS));

  gst_type_mark_as_plugin_api (GST_TYPE_RNN_TRAIN_CELL, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_RNN_TRAIN_HEAD_ACTIVATION, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_RNN_TRAIN_LOSS, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_RNN_TRAIN_OPTIMIZER, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_RNN_TRAIN_MODE, 0);
}

void
gst_rnn_train_settings_init (GstRnnTrainSettings *s, GObject *object)
{
  /* the defaults, as the param specs give them */
  guint n;
  GParamSpec **specs =
      g_object_class_list_properties (G_OBJECT_GET_CLASS (object), &n);

  for (guint i = 0; i < n; i++)
    if (specs[i]->owner_type == GST_TYPE_RNN_TRAIN)
      gst_rnn_train_settings_set (s, specs[i],
          g_param_spec_get_default_value (specs[i]));
  g_free (specs);
}

gboolean
gst_rnn_train_settings_has (guint prop_id)
{
  return prop_id != PROP_0 && prop_id < G_N_ELEMENTS (prop_offsets);
}

void
gst_rnn_train_settings_set (GstRnnTrainSettings *s, const GParamSpec *pspec,
    const GValue *value)
{
  gpointer f = (guint8 *) s + prop_offsets[pspec->param_id];

  switch (G_TYPE_FUNDAMENTAL (G_PARAM_SPEC_VALUE_TYPE (pspec))) {
    case G_TYPE_STRING:
      g_free (*(gchar **) f);
      *(gchar **) f = g_value_dup_string (value);
      break;
    case G_TYPE_ENUM:
      *(gint *) f = g_value_get_enum (value);
      break;
    case G_TYPE_UINT:
      *(guint *) f = g_value_get_uint (value);
      break;
    case G_TYPE_BOOLEAN:
      *(gboolean *) f = g_value_get_boolean (value);
      break;
    case G_TYPE_DOUBLE:
      *(gdouble *) f = g_value_get_double (value);
      break;
    case G_TYPE_UINT64:
      *(guint64 *) f = g_value_get_uint64 (value);
      break;
    default:
      g_assert_not_reached ();
  }
}

void
gst_rnn_train_settings_get (const GstRnnTrainSettings *s,
    const GParamSpec *pspec, GValue *value)
{
  gconstpointer f = (const guint8 *) s + prop_offsets[pspec->param_id];

  switch (G_TYPE_FUNDAMENTAL (G_PARAM_SPEC_VALUE_TYPE (pspec))) {
    case G_TYPE_STRING:
      g_value_set_string (value, *(gchar * const *) f);
      break;
    case G_TYPE_ENUM:
      g_value_set_enum (value, *(const gint *) f);
      break;
    case G_TYPE_UINT:
      g_value_set_uint (value, *(const guint *) f);
      break;
    case G_TYPE_BOOLEAN:
      g_value_set_boolean (value, *(const gboolean *) f);
      break;
    case G_TYPE_DOUBLE:
      g_value_set_double (value, *(const gdouble *) f);
      break;
    case G_TYPE_UINT64:
      g_value_set_uint64 (value, *(const guint64 *) f);
      break;
    default:
      g_assert_not_reached ();
  }
}

void
gst_rnn_train_settings_clear (GstRnnTrainSettings *s)
{
  g_clear_pointer (&s->location, g_free);
  g_clear_pointer (&s->init_location, g_free);
}

void
gst_rnn_train_settings_copy (GstRnnTrainSettings *dst,
    const GstRnnTrainSettings *src)
{
  gst_rnn_train_settings_clear (dst);
  *dst = *src;
  dst->location = g_strdup (src->location);
  dst->init_location = g_strdup (src->init_location);
}

/* ---- what the settings configure ---------------------------------------- */

void
gst_rnn_train_settings_model_config (const GstRnnTrainSettings *s,
    guint c_in, guint c_tgt, gboolean ce, guint rate, RnnConfig *cfg)
{
  rnn_config_init (cfg);
  cfg->cell = core_cells[s->cell];
  cfg->hidden_size = s->hidden_size;
  cfg->num_layers = s->num_layers;
  cfg->bidirectional = s->bidirectional;
  cfg->frame_size = s->frame_size;
  cfg->output_frame_size = s->output_frame_size;
  cfg->input_size = s->frame_size * c_in;
  cfg->has_head = TRUE;
  cfg->output_size = ce ? s->num_classes : s->output_frame_size * c_tgt;
  cfg->head_activation = core_head_activations[s->head_activation];
  cfg->has_input_norm = s->normalize;
  cfg->window = s->bidirectional ? s->seq_length : 0;
  cfg->sample_rate = rate;
  cfg->skip = s->skip;
}

void
gst_rnn_train_settings_trainer_config (const GstRnnTrainSettings *s,
    gboolean ce, gboolean has_target, double seconds_per_step,
    RnnTrainerConfig *tc)
{
  rnn_trainer_config_init (tc);
  tc->online = s->mode == GST_RNN_TRAIN_MODE_ONLINE;
  tc->loss = ce ? RNN_LOSS_CROSS_ENTROPY
      : s->loss == GST_RNN_TRAIN_LOSS_ESR ? RNN_LOSS_ESR : RNN_LOSS_MSE;
  tc->pre_emphasis = s->pre_emphasis;
  tc->optimizer = s->optimizer == GST_RNN_TRAIN_OPTIMIZER_SGD ?
      RNN_OPTIMIZER_SGD : RNN_OPTIMIZER_ADAM;
  tc->learning_rate = s->learning_rate;
  tc->momentum = s->momentum;
  tc->weight_decay = s->weight_decay;
  tc->clip_norm = s->clip_norm;
  tc->epochs = s->epochs;
  tc->seq_length = s->seq_length;
  tc->batch_size = s->batch_size;
  tc->validation_fraction = s->validation_fraction;
  tc->seed = s->seed;
  /* a model from init-model keeps its statistics */
  tc->normalize = s->init_location == NULL;
  tc->checkpoint_interval = s->checkpoint_interval;
  tc->seconds_per_step = seconds_per_step;
  tc->max_memory = s->max_memory;
  tc->location = s->location;
  tc->description = "trained by the rnntrain GStreamer element";
  tc->tool = "rnntrain " VERSION;
  tc->target = has_target ? "pad" : "predict-ahead";
  tc->predict_ahead = has_target ? 0 : s->predict_ahead;
  tc->init_model = s->init_location;
}
