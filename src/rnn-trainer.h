/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* gst-rnn numerical core: the training loops (docs/design.md §5).
 *
 * RnnTrainer owns a model and trains it on records, offline (recorded, then
 * epochs over shuffled windows with validation, keeping the best model) or
 * online (truncated BPTT over consecutive windows with carried state,
 * rewriting the model every few updates).  It rolls back to the last good
 * weights when a loss, gradient or weight turns non-finite, computes the
 * input normalisation statistics, and writes models atomically with their
 * provenance metadata.  It knows nothing of GStreamer: the rnntrain
 * element frames the stream into records and turns the callbacks into bus
 * messages.
 *
 *   RnnTrainerConfig cfg;
 *   rnn_trainer_config_init (&cfg);
 *   cfg.location = "model.safetensors";
 *   RnnTrainer *t = rnn_trainer_new (&cfg, model, NULL, NULL, &err);
 *   rnn_trainer_add_records (t, records, n, &err);   // as data comes
 *   RnnTrainerReport rep;
 *   switch (rnn_trainer_finish (t, &rep, &err)) { ... }
 *   rnn_trainer_free (t);
 *
 * A record is one step, rnn_trainer_get_record_size() floats:
 *   [n_in inputs][n_tgt target][1 loss weight]
 * with n_in the model's input size and n_tgt its output size (MSE) or 1
 * (cross-entropy: the class index as a float).  Inputs and targets must be
 * finite; a step without a target has weight 0.
 *
 * Same model, configuration and records give bitwise the same files (with
 * OPENBLAS_NUM_THREADS=1): nothing time-dependent is written.
 */
#pragma once

#include "rnn.h"
#include "rnn-train.h"

G_BEGIN_DECLS

#define RNN_TRAINER_ERROR (rnn_trainer_error_quark ())
GQuark rnn_trainer_error_quark (void);

typedef enum {
  RNN_TRAINER_ERROR_SETTINGS,   /* the loss or optimizer cannot train the model */
  RNN_TRAINER_ERROR_RECORD,     /* the records could not be stored */
  RNN_TRAINER_ERROR_READ,       /* the stored records could not be read back */
  RNN_TRAINER_ERROR_WRITE,      /* the model file could not be written */
  RNN_TRAINER_ERROR_NOT_FINITE, /* refused to write non-finite weights */
} RnnTrainerError;

/* The most memory training may take beyond the model and the recording:
 * the batch gathered for an online update (batch-size x seq-length
 * records), the batch scratch and the training workspace (the caches of
 * every layer and step kept for the backward pass, seq-length x
 * batch-size rows offline, seq-length rows online).  Settings that need
 * more are refused by rnn_trainer_new() with the arithmetic in the
 * message (docs/design.md §4). */
#define RNN_TRAINER_MAX_SCRATCH (G_GUINT64_CONSTANT (4) << 30)

/* Consecutive rollbacks after which training gives up. */
#define RNN_TRAINER_MAX_ROLLBACKS 40

typedef struct {
  gboolean online;              /* FALSE: record, train at rnn_trainer_finish() */
  RnnLoss loss;
  double pre_emphasis;          /* mse, esr: a of 1 - a z^-1 on prediction
                                 * and target before the loss; 0 = off */
  RnnOptimizerKind optimizer;
  double learning_rate;         /* 0: the optimizer's default */
  double momentum;              /* SGD */
  double weight_decay;
  double clip_norm;             /* global gradient norm; 0 = off */
  guint epochs;                 /* offline; 0 = only evaluate */
  guint seq_length;             /* BPTT window (and bidirectional window) */
  guint batch_size;             /* windows per update */
  double validation_fraction;   /* offline: tail held out */
  guint seed;                   /* window order (offline) */
  gboolean normalize;           /* compute input.mean / input.std from data */
  guint checkpoint_interval;    /* online: updates between model writes */
  double seconds_per_step;      /* for messages: a step's duration; 0 unknown */
  guint64 max_memory;           /* offline: record bytes kept in memory */
  const char *location;         /* where the model is written */
  /* provenance, written into the model's metadata */
  const char *description;      /* if the model has none */
  const char *tool;             /* train_tool */
  const char *target;           /* train_target, e.g. "pad" */
  guint predict_ahead;          /* train_predict_ahead if > 0 */
  const char *init_model;       /* train_init_model if not NULL */
} RnnTrainerConfig;

/* The defaults of the rnntrain element's properties; location NULL. */
void rnn_trainer_config_init (RnnTrainerConfig *cfg);

typedef enum {
  RNN_TRAINER_PROGRESS_START,
  RNN_TRAINER_PROGRESS_CONTINUE,
  RNN_TRAINER_PROGRESS_COMPLETE,
  RNN_TRAINER_PROGRESS_CANCELED,
} RnnTrainerProgress;

/* What an epoch (offline) or a checkpoint (online) ended with. */
typedef struct {
  guint epoch;                  /* the epoch, or the checkpoint's number */
  guint epochs;                 /* the total; 0 online */
  double loss;                  /* training loss */
  double val_loss;              /* validation loss; NaN without validation */
  double val_esr;               /* validation error-to-signal ratio
                                 * sum (y - yhat)^2 / sum y^2 of the
                                 * outputs, without pre-emphasis (mse and
                                 * esr; NaN for cross-entropy) */
  double steps_per_second;      /* window steps x batch per second */
  guint64 elapsed_ns;           /* since training started */
  guint64 eta_ns;               /* time left; G_MAXUINT64 unknown (online) */
} RnnTrainerEpoch;

/* @ns as a person reads it: "0.4 s", "42 s", "3 min 20 s", "2 h 05 min". */
gchar *rnn_trainer_format_duration (guint64 ns);

/* Every callback may be NULL; they run in the thread that called the
 * trainer. */
typedef struct {
  /* Training started, moves on, ended.  @percent < 0: none given. */
  void (*progress) (gpointer user_data, RnnTrainerProgress kind,
      const char *text, int percent);
  /* After each offline epoch or online checkpoint. */
  void (*epoch) (gpointer user_data, const RnnTrainerEpoch *e);
  /* A rollback, giving up, or nothing to train on. */
  void (*warning) (gpointer user_data, const char *text, const char *detail);
  /* Polled between batches: TRUE stops offline training. */
  gboolean (*cancelled) (gpointer user_data);
  /* A cancelled offline run writes its best model if it finished an
   * epoch (and warns that it stopped early). */
} RnnTrainerCallbacks;

typedef struct {
  double loss;                  /* training loss of the written model */
  double val_loss;              /* NaN without validation */
  guint epochs_run, best_epoch; /* offline */
  guint64 updates;              /* online */
  guint checkpoints;            /* online */
  guint rollbacks;
  float learning_rate;          /* in force at the end */
} RnnTrainerReport;

typedef enum {
  RNN_TRAINER_DONE,             /* the model was written */
  RNN_TRAINER_NOTHING,          /* no data to train on: nothing written */
  RNN_TRAINER_CANCELLED,        /* offline: stopped; may run again */
  RNN_TRAINER_FAILED,           /* @error is set */
} RnnTrainerStatus;

typedef struct _RnnTrainer RnnTrainer;

/* Takes @model (a private, sealed copy: rnn_model_copy() of a loaded model
 * or a fresh one after rnn_train_init_params()).  @callbacks is copied.
 * Fails with RNN_TRAINER_ERROR_SETTINGS when the loss cannot train the
 * model, the optimizer settings are invalid, or seq-length, batch-size or
 * checkpoint-interval is 0, and with RNN_TRAINER_ERROR_WRITE when
 * @cfg->location cannot be written (rnn_trainer_check_location()); @model
 * is unreffed then.  A checkpoint that cannot be written (online) is a
 * warning and is retried at the next one; the file on disk stays whole. */
RnnTrainer *rnn_trainer_new (const RnnTrainerConfig *cfg, RnnModel *model,
    const RnnTrainerCallbacks *callbacks, gpointer user_data, GError **error);
void rnn_trainer_free (RnnTrainer *t);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RnnTrainer, rnn_trainer_free)

/* The model as it stands (borrowed: a rollback replaces it, so look it up
 * again after every call that trains). */
const RnnModel *rnn_trainer_peek_model (const RnnTrainer *t);
gsize rnn_trainer_get_record_size (const RnnTrainer *t);

/* Adds @n consecutive records.  Offline they are recorded; online every
 * batch-size × seq-length records make one update, and every
 * checkpoint-interval updates the model is written. */
gboolean rnn_trainer_add_records (RnnTrainer *t, const float *records,
    gsize n, GError **error);

/* The next record does not follow the last one: online, the partial batch
 * is dropped and the carried state reset. */
void rnn_trainer_break (RnnTrainer *t);

/* Offline: trains on the recording and writes the best model.  Online:
 * writes the last weights if they changed since the last checkpoint.
 * Offline, posts COMPLETE progress when it returns RNN_TRAINER_DONE.
 * Online, every model write is a START / COMPLETE pair of its own (a
 * progress left open for the whole stream would hold gst-launch-1.0 in
 * PAUSED). */
RnnTrainerStatus rnn_trainer_finish (RnnTrainer *t, RnnTrainerReport *report,
    GError **error);

/* The stream stopped before its end (a state change down, Ctrl-C without
 * EOS).  Online: writes the weights of the updates since the last
 * checkpoint (RNN_TRAINER_DONE) and says so in a warning.  Offline: if the
 * recording was not trained on (an offline run cancelled after some
 * epochs has already written its best model), a warning says how much
 * (@seconds_per_step: the duration of one step) was discarded and how to
 * train on it.  RNN_TRAINER_FAILED (@error set) when the write failed. */
RnnTrainerStatus rnn_trainer_abandon (RnnTrainer *t, double seconds_per_step,
    GError **error);

/* Whether a model can be written to @location: it is not a directory, its
 * directory exists and a file can be created beside it (created and
 * removed).  A symbolic link is followed: the model is written to its
 * target.  The error names the path and the fix. */
gboolean rnn_trainer_check_location (const char *location, GError **error);

G_END_DECLS
