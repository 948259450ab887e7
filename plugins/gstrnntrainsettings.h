/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnntrain's settings: its properties, their enum types, and the model
 * and trainer configurations they give (docs/design.md §4). */
#pragma once

#include "gstrnntrain.h"

#include "rnn.h"
#include "rnn-trainer.h"

G_BEGIN_DECLS

/* The properties; the element copies them when the stream is configured. */
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
  guint skip;
  gdouble pre_emphasis;
} GstRnnTrainSettings;

/* Installs rnntrain's properties on @klass and marks their enum types as
 * plugin API. */
void gst_rnn_train_settings_install (GObjectClass * klass);

/* Sets @s to the defaults of the properties of @object (an rnntrain). */
void gst_rnn_train_settings_init (GstRnnTrainSettings * s, GObject * object);

/* TRUE if @prop_id is one of the properties installed above. */
gboolean gst_rnn_train_settings_has (guint prop_id);

/* Stores @value in the field of @s that @pspec describes, or reads it. */
void gst_rnn_train_settings_set (GstRnnTrainSettings * s,
    const GParamSpec * pspec, const GValue * value);
void gst_rnn_train_settings_get (const GstRnnTrainSettings * s,
    const GParamSpec * pspec, GValue * value);

void gst_rnn_train_settings_clear (GstRnnTrainSettings * s);
/* Replaces @dst (cleared first) by a deep copy of @src. */
void gst_rnn_train_settings_copy (GstRnnTrainSettings * dst,
    const GstRnnTrainSettings * src);

/* The configuration of a fresh model for @c_in input and @c_tgt target
 * channels at @rate Hz (@ce: loss=cross-entropy). */
void gst_rnn_train_settings_model_config (const GstRnnTrainSettings * s,
    guint c_in, guint c_tgt, gboolean ce, guint rate, RnnConfig * cfg);

/* The trainer's configuration; its location and init-model strings are
 * @s's own. */
void gst_rnn_train_settings_trainer_config (const GstRnnTrainSettings * s,
    gboolean ce, gboolean has_target, double seconds_per_step,
    RnnTrainerConfig * tc);

G_END_DECLS
