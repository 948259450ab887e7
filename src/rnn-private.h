/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Internals of the core shared between its source files. */
#pragma once

#include "rnn.h"
#include "rnn-plan.h"

/* Memory whose size comes from a file (or from a configuration read from
 * one) is taken here, never with an aborting allocator: @n_elems *
 * @elem_size bytes, zero-filled, or NULL with an RNN_ERROR_IO naming the
 * size and @what it was for (e.g. "the parameter slab").  Free with
 * g_free ().  The size is checked for overflow first. */
gpointer rnn_try_alloc0 (gsize n_elems, gsize elem_size, const char *what,
    GError **error);
/* The same, not zero-filled and @alignment-aligned (a power of two, a
 * multiple of sizeof (void *)); free with g_aligned_free (). */
gpointer rnn_try_aligned_alloc (gsize n_elems, gsize elem_size,
    gsize alignment, const char *what, GError **error);


struct _RnnModel {
  gatomicrefcount ref_count;
  RnnConfig cfg;
  float *params;            /* the slab, n_params floats */
  gsize n_params;
  RnnParamInfo *tensors;    /* n_tensors, in slab order */
  guint n_tensors;
  RnnLayerParams *layers;   /* [L][D] */
  float *head_w, *head_b;   /* [O][D*H], [O] or NULL */
  float *in_mean, *in_std;  /* [I] or NULL */
  float *pre_w[RNN_MAX_DENSE_LAYERS], *pre_b[RNN_MAX_DENSE_LAYERS];
  float *post_w[RNN_MAX_DENSE_LAYERS], *post_b[RNN_MAX_DENSE_LAYERS];
  guint pre_in[RNN_MAX_DENSE_LAYERS], post_in[RNN_MAX_DENSE_LAYERS];
  float *h0, *c0;           /* [L*D][H] or NULL */
  RnnWeightPrecision precision;
  guint64 state_shape;      /* rnn_shape_key () of its states */
  RnnPlan plan;             /* rnn-plan.h */
  GPtrArray *meta;          /* sorted keys, NULL-terminated */
  GHashTable *meta_values;  /* key (owned by meta) -> value */
};

/* The state's shape in one number (rnn_state_shape_fits ()): whether the
 * cell has c, layers (<= RNN_MAX_LAYERS), directions and hidden size. */
static inline guint64
rnn_shape_key (gboolean lstm, guint layers, guint dirs, guint hidden)
{
  return ((guint64) hidden << 32) | ((guint64) layers << 8)
      | ((guint64) dirs << 1) | (lstm ? 1 : 0);
}

struct _RnnState {
  RnnCell cell;
  guint layers, dirs, hidden, batch;
  guint64 shape;            /* rnn_shape_key () */
  gsize per_block;          /* B*H */
  gsize n_blocks;           /* L*D h blocks, then L*D c blocks for LSTM */
  float *data;
  float *init;              /* [n_blocks][H]: one stream's initial state
                             * (the model's h0, c0), or NULL for zeros */
};

/* Sets stream @b of @state to its initial state. */
void rnn_state_init_stream (RnnState *state, guint b);
/* Fills @h [nb][H] (and @c, may be NULL) with layer @k, direction @d of
 * the model's initial state (zeros without rnn.h0 / rnn.c0). */
void rnn_model_initial_state (const RnnModel *m, guint k, guint d, gsize nb,
    float *h, float *c);

/* rnn_state_fits () and the blocks of rnn_state_h () / rnn_state_c ()
 * without their argument checks, for rnn_forward (), which runs them in
 * every call of one sample after checking its arguments once. */
static inline gboolean
rnn_state_shape_fits (const RnnState *state, const RnnModel *model)
{
  /* one comparison, where the four fields' took some 12 instructions of
   * every one-sample call */
  return state->shape == model->state_shape;
}

static inline float *
rnn_state_h_block (const RnnState *state, guint k, guint d)
{
  return state->data + (gsize) (k * state->dirs + d) * state->per_block;
}

/* NULL unless LSTM */
static inline float *
rnn_state_c_block (const RnnState *state, guint k, guint d)
{
  if (state->cell != RNN_CELL_LSTM)
    return NULL;
  return state->data
      + (gsize) (state->layers * state->dirs + k * state->dirs + d) * state->per_block;
}

/* The state a call of B streams needs: none for a bidirectional model
 * (each window starts from zero), else one that fits the model. */
static inline gboolean
rnn_state_matches (const RnnModel *m, const RnnState *state, guint B)
{
  if (m->cfg.bidirectional)
    return state == NULL;
  return state != NULL && state->batch == B
      && rnn_state_shape_fits (state, m);
}

/* Kernels of rnn-forward.c shared with the training code. */

/* C[M][N] = A[M][K] · Wᵀ + bias[N] with W packed (N, K from @W).  Every
 * element is summed in the same order (k ascending, then the bias) for any
 * M, which makes the forward pass bitwise independent of chunking and
 * batching; see the comment in rnn-forward.c for why this is not sgemm. */
void rnn_project_rows (float *C, const float *A, const RnnPackedMatrix *W,
    const float *bias, gsize M);
/* C[M][N] = A[M][K] · W[N][K]ᵀ + bias[N]: one sgemm (training path). */
void rnn_linear_rows (float *C, const float *A, const float *W,
    const float *bias, gsize M, gsize N, gsize K);
/* Applies a pre or post layer's activation in place to @rows rows of @n. */
void rnn_dense_activate (RnnActivation act, float *v, gsize rows, gsize n);
/* Applies the head activation in place to @rows rows of @O values. */
void rnn_head_activate (RnnHeadActivation act, float *y, gsize rows, gsize O);
/* For tests: with @plain set, @fw takes none of its fused paths (the input
 * projection and head inside the register kernels, the direct calls of one
 * stream), only the passes of the general path, so that the fused paths
 * can be compared with it bit for bit. */
void rnn_forward_set_plain (RnnForward *fw, gboolean plain);
