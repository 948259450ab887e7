/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* gst-rnn numerical core: models, state, forward pass, model files.
 *
 * This library never includes a GStreamer header (docs/design.md §1).  Sequences are
 * time-major: x[t][b][i] for T steps of B independent streams with I inputs,
 * y[t][b][o] likewise.  All tensors are float32, row-major, laid out exactly
 * as PyTorch's state_dict (weights [rows][cols]).
 */
#pragma once

#include <glib.h>

#include "rnn-version.h"

G_BEGIN_DECLS

/* ---- errors ------------------------------------------------------------ */

#define RNN_ERROR (rnn_error_quark ())
GQuark rnn_error_quark (void);

typedef enum {
  RNN_ERROR_IO,        /* the file could not be read or written */
  RNN_ERROR_FORMAT,    /* not a well-formed safetensors file */
  RNN_ERROR_METADATA,  /* a metadata value is missing, mistyped or out of range */
  RNN_ERROR_TENSOR,    /* a tensor is missing, extra, misshapen or non-finite */
  RNN_ERROR_INVALID,   /* a configuration that cannot be built */
} RnnError;

/* ---- configuration ----------------------------------------------------- */

typedef enum {
  RNN_CELL_RNN_TANH,
  RNN_CELL_RNN_RELU,
  RNN_CELL_LSTM,
  RNN_CELL_GRU,
} RnnCell;

typedef enum {
  RNN_HEAD_ACT_NONE,
  RNN_HEAD_ACT_SOFTMAX,
  RNN_HEAD_ACT_SIGMOID,
  RNN_HEAD_ACT_TANH,
} RnnHeadActivation;

/* Names as in the model file's metadata ("rnn_tanh", "lstm", "softmax", ...). */
const char *rnn_cell_to_string (RnnCell cell);
gboolean rnn_cell_from_string (const char *s, RnnCell *cell);
const char *rnn_head_activation_to_string (RnnHeadActivation act);
gboolean rnn_head_activation_from_string (const char *s, RnnHeadActivation *act);
/* Gate count G: 1 (RNN), 4 (LSTM), 3 (GRU). */
guint rnn_cell_gates (RnnCell cell);

/* Activations of the optional dense layers around the recurrent stack
 * (docs/design.md §2): metadata names "none", "tanh", "relu", "sigmoid",
 * "elu" (alpha = 1), "softmax". */
typedef enum {
  RNN_ACT_NONE,
  RNN_ACT_TANH,
  RNN_ACT_RELU,
  RNN_ACT_SIGMOID,
  RNN_ACT_ELU,
  RNN_ACT_SOFTMAX,
} RnnActivation;

const char *rnn_activation_to_string (RnnActivation act);
gboolean rnn_activation_from_string (const char *s, RnnActivation *act);

/* Upper bounds enforced on every configuration (also those read from files). */
#define RNN_MAX_INPUT_SIZE   65536
#define RNN_MAX_HIDDEN_SIZE  16384
#define RNN_MAX_LAYERS       64
#define RNN_MAX_OUTPUT_SIZE  65536
#define RNN_MAX_FRAME_SIZE   65536
#define RNN_MAX_WINDOW       (1u << 24)
#define RNN_MAX_SAMPLE_RATE  (1u << 24)
#define RNN_MAX_DENSE_LAYERS 8       /* pre layers, and post layers, each */
#define RNN_MAX_DENSE_SIZE   65536   /* outputs of one pre or post layer */

/* One per-step dense layer x <- act(W x + b), W [size][its input size]. */
typedef struct {
  guint size;                /* outputs */
  RnnActivation activation;
} RnnDense;

typedef struct {
  RnnCell cell;
  guint input_size;          /* I */
  guint hidden_size;         /* H */
  guint num_layers;          /* L */
  gboolean bidirectional;    /* D = 2 if TRUE */
  gboolean has_head;         /* head.weight [O, D*H], head.bias [O] */
  guint output_size;         /* O; meaningful only with a head */
  RnnHeadActivation head_activation; /* NONE without a head */
  gboolean has_input_norm;   /* input.mean, input.std [I] */
  guint frame_size;          /* F_in, metadata only; default 1 */
  guint output_frame_size;   /* F_out, metadata only; default 1 */
  guint window;              /* bidirectional window in steps; 0 = unset */
  guint sample_rate;         /* Hz; 0 = unset */
  /* The optional layers around the recurrent stack (docs/design.md §2; a
   * model file of version 2).  Zero (rnn_config_init ()) = none. */
  guint n_pre;               /* P pre layers: after normalisation, before layer 0 */
  RnnDense pre[RNN_MAX_DENSE_LAYERS];   /* the RNN's I_0 is pre[P-1].size */
  guint n_post;              /* Q post layers: after the last layer, before the head */
  RnnDense post[RNN_MAX_DENSE_LAYERS];  /* the head reads post[Q-1].size */
  gboolean has_h0;           /* rnn.h0 [L*D][H]: the state after every reset */
  gboolean has_c0;           /* rnn.c0 [L*D][H]: LSTM only, only with h0 */
  guint skip;                /* N: y_o += x_o (N = O) or x_0 (N = 1); 0 = none */
} RnnConfig;

/* Fills defaults: LSTM, I = H = L = 1, no head, F_in = F_out = 1. */
void rnn_config_init (RnnConfig *cfg);
/* Checks ranges and consistency (I divisible by frame_size, ...). */
gboolean rnn_config_validate (const RnnConfig *cfg, GError **error);
/* TRUE if @cfg uses any of the optional layers (a version-2 model file). */
gboolean rnn_config_has_extras (const RnnConfig *cfg);
/* The input size of the recurrent layer 0: I, or the last pre layer's size. */
guint rnn_config_rnn_input_size (const RnnConfig *cfg);
/* What the head (or the output, without one) reads: D*H, or the last post
 * layer's size. */
guint rnn_config_features (const RnnConfig *cfg);

/* ---- model ------------------------------------------------------------- */

/* One parameter tensor of the slab.  Order: for each layer k, for each
 * direction: weight_ih, weight_hh, bias_ih, bias_hh; then head.weight,
 * head.bias; then input.mean, input.std; then for each pre layer k
 * pre.{k}.weight, pre.{k}.bias; then for each post layer post.{k}.weight,
 * post.{k}.bias; then rnn.h0, rnn.c0.  (A model without the optional
 * layers has exactly the slab of a version-1 model.) */
typedef struct {
  char name[40];       /* state_dict name, e.g. "rnn.weight_ih_l0_reverse" */
  guint ndim;          /* 1 or 2 */
  gsize shape[2];
  gsize offset;        /* in floats, into the slab */
  gsize numel;
} RnnParamInfo;

/* Pointers into the slab for one layer and direction. */
typedef struct {
  float *w_ih;   /* [G*H][I_k] */
  float *w_hh;   /* [G*H][H] */
  float *b_ih;   /* [G*H] */
  float *b_hh;   /* [G*H] */
  guint in_size; /* I_k */
} RnnLayerParams;

typedef struct _RnnModel RnnModel;

/* A model with every parameter zero (input.std = 1).  Fill the slab through
 * rnn_model_get_params() before sharing it; once shared a model is treated
 * as immutable. */
RnnModel *rnn_model_new (const RnnConfig *cfg, GError **error);
RnnModel *rnn_model_ref (RnnModel *model);
void rnn_model_unref (RnnModel *model);
/* Deprecated, no longer needed: a model is planned for the fast forward
 * path (packed weights, the kernel choice) when it is loaded or copied,
 * and otherwise by its first forward pass, and again after
 * rnn_model_get_params() handed out its slab for writing.  This plans it
 * now (a warning if memory for it cannot be had); still useful only to
 * a caller that keeps the slab's pointer and changes parameters through it
 * between forward passes. */
void rnn_model_seal (RnnModel *model);
/* Precision of the weights the fast forward path streams at every step. */
typedef enum {
  RNN_WEIGHTS_F32,   /* the default: exactly the model's parameters */
  RNN_WEIGHTS_F16,   /* W_hh rounded to float16 (opt-in) */
} RnnWeightPrecision;

/* Opt-in reduced precision for rnn_forward(): the recurrent weights W_hh
 * are rounded to float16 in the packed copy the fast path reads, which
 * halves the bytes streamed per step (the bound at H >= 64, where W_hh no
 * longer fits the first-level cache).  The parameters themselves (training,
 * saving, rnn_forward_naive()) stay float32; everything else is computed in
 * float32.  Fails, naming the weight, if one is beyond float16's range.
 * Plans the model again (fails, naming the size, if memory for it cannot
 * be had): call it before sharing the model. */
gboolean rnn_model_set_weight_precision (RnnModel *model,
    RnnWeightPrecision precision, GError **error);
RnnWeightPrecision rnn_model_get_weight_precision (const RnnModel *model);
/* x rounded to the nearest float16 value (ties to even), as a float; +-inf
 * beyond float16's range.  What RNN_WEIGHTS_F16 does to each weight. */
float rnn_round_to_f16 (float x);
/* Deep copy (parameters and metadata), planned if @model was. */
RnnModel *rnn_model_copy (const RnnModel *model);

const RnnConfig *rnn_model_get_config (const RnnModel *model);
/* O with a head, D*H without. */
guint rnn_model_get_output_size (const RnnModel *model);
guint rnn_model_get_num_directions (const RnnModel *model);

/* The slab: every parameter, contiguous, in RnnParamInfo order.
 * rnn_model_get_params() hands it out for writing: the model is planned
 * again at its next forward pass, so do not call it on a model other
 * threads are running; rnn_model_peek_params() only reads. */
float *rnn_model_get_params (RnnModel *model, gsize *n_params);
const float *rnn_model_peek_params (const RnnModel *model, gsize *n_params);
guint rnn_model_get_n_tensors (const RnnModel *model);
const RnnParamInfo *rnn_model_get_tensor_info (const RnnModel *model, guint i);
/* Index of the tensor called @name, or -1. */
gint rnn_model_find_tensor (const RnnModel *model, const char *name);
/* Layer k (0..L-1), direction d (0 forward, 1 reverse). */
const RnnLayerParams *rnn_model_get_layer (const RnnModel *model, guint k, guint d);
/* Head weight [O][D*H] and bias [O], or NULL. */
const float *rnn_model_get_head_weight (const RnnModel *model);
const float *rnn_model_get_head_bias (const RnnModel *model);
/* input.mean / input.std [I], or NULL. */
const float *rnn_model_get_input_mean (const RnnModel *model);
const float *rnn_model_get_input_std (const RnnModel *model);
/* Pre layer k (0..P-1) / post layer k (0..Q-1): weight [size][in], bias
 * [size]; NULL if there is no such layer.  @in_size (may be NULL) gets the
 * layer's input size. */
const float *rnn_model_get_pre_weight (const RnnModel *model, guint k, guint *in_size);
const float *rnn_model_get_pre_bias (const RnnModel *model, guint k);
const float *rnn_model_get_post_weight (const RnnModel *model, guint k, guint *in_size);
const float *rnn_model_get_post_bias (const RnnModel *model, guint k);
/* rnn.h0 / rnn.c0 [L*D][H] (row k*D + d), or NULL (zeros). */
const float *rnn_model_get_h0 (const RnnModel *model);
const float *rnn_model_get_c0 (const RnnModel *model);

/* Extra string metadata kept through load and save ("description",
 * "train_*", ...).  Keys the config owns (cell, hidden_size, ...) are
 * refused by set (returns FALSE).  Keys are kept sorted. */
gboolean rnn_model_set_meta (RnnModel *model, const char *key, const char *value);
const char *rnn_model_get_meta (const RnnModel *model, const char *key);
/* NULL-terminated, sorted; owned by the model. */
const char *const *rnn_model_get_meta_keys (const RnnModel *model);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RnnModel, rnn_model_unref)

/* ---- model files (docs/design.md §3) ----------------------------------- */

/* Every refusal is a GError whose message starts with the file name.  The
 * model returned is planned (rnn-plan.h). */
RnnModel *rnn_model_load (const char *path, GError **error);
RnnModel *rnn_model_load_from_data (const guint8 *data, gsize size,
    const char *display_name, GError **error);
/* Atomic: written to a temporary file beside @path, then renamed.  Refuses
 * (RNN_ERROR_TENSOR, nothing written) non-finite parameters and
 * input.std <= 0, so a saved file always loads. */
gboolean rnn_model_save (const RnnModel *model, const char *path, GError **error);
/* The exact bytes rnn_model_save() writes. */
GBytes *rnn_model_serialize (const RnnModel *model);

/* ---- state --------------------------------------------------------------- */

typedef struct _RnnState RnnState;

/* h (and c for LSTM) of every layer and direction for @batch streams, at
 * the model's initial state (rnn.h0, rnn.c0; zeros without them), to which
 * rnn_state_reset () and rnn_state_reset_stream () return. */
RnnState *rnn_state_new (const RnnModel *model, guint batch);
void rnn_state_free (RnnState *state);
RnnState *rnn_state_copy (const RnnState *state);
void rnn_state_reset (RnnState *state);
void rnn_state_reset_stream (RnnState *state, guint b);
guint rnn_state_get_batch (const RnnState *state);
/* TRUE if @state has the shapes @model needs (cell kind, L, D, H). */
gboolean rnn_state_fits (const RnnState *state, const RnnModel *model);
/* [B][H] for layer k, direction d; c is NULL unless LSTM. */
float *rnn_state_h (RnnState *state, guint k, guint d);
float *rnn_state_c (RnnState *state, guint k, guint d);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (RnnState, rnn_state_free)

/* ---- forward ------------------------------------------------------------- */

/* Scratch memory for rnn_forward(); grows to the largest T*B seen, so a
 * steady stream allocates nothing.  One per calling thread (a forward
 * object is not for concurrent calls). */
typedef struct _RnnForward RnnForward;
RnnForward *rnn_forward_new (void);
void rnn_forward_free (RnnForward *fw);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RnnForward, rnn_forward_free)

/* 1 (the default): rnn_forward() runs on the calling thread.  n > 1: calls
 * with several streams (B >= 2) and enough work split the streams over the
 * calling thread and n - 1 worker threads the object keeps (made here; at
 * most 16 in all).  Results are the same bits either way.  Fails only if
 * the threads cannot be made. */
gboolean rnn_forward_set_threads (RnnForward *fw, guint n_threads, GError **error);
guint rnn_forward_get_threads (const RnnForward *fw);

/* x [T][B][I] -> y [T][B][O].
 * Unidirectional: @state (batch B) carries h, c in and out.
 * Bidirectional: @state must be NULL; the call is one window (each of the B
 * streams is one sequence), both directions start from the initial state
 * (zeros without rnn.h0).
 * Our own kernels (no BLAS), so chunking and batching change no bit. */
void rnn_forward (RnnForward *fw, const RnnModel *model, RnnState *state,
    const float *x, guint T, guint B, float *y);

/* The same with plain loops and no BLAS: the reference for rnn_forward(). */
void rnn_forward_naive (const RnnModel *model, RnnState *state,
    const float *x, guint T, guint B, float *y);

/* The raw safetensors reader is declared in rnn-safetensors.h. */


G_END_DECLS
