/* Internals of the core shared between its source files. */
#pragma once

#include "rnn.h"

/* Weights of one layer/direction transposed for the inference kernels. */
typedef struct {
  float *w_ih_t;            /* [I_k][G*H] */
  float *w_hh_t;            /* [H][G*H] */
} RnnPackedLayer;

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
  RnnPackedLayer *packed;   /* [L][D]; NULL until sealed */
  float *head_w_t;          /* [D*H][O] head.weight transposed, or NULL */
  float *packed_slab;       /* owns what packed and head_w_t point to */
  GPtrArray *meta;          /* sorted keys, NULL-terminated */
  GHashTable *meta_values;  /* key (owned by meta) -> value */
};

struct _RnnState {
  RnnCell cell;
  guint layers, dirs, hidden, batch;
  gsize per_block;          /* B*H */
  gsize n_blocks;           /* L*D h blocks, then L*D c blocks for LSTM */
  float *data;
};

/* Kernels of rnn-forward.c shared with the training code. */

/* C[M][N] = bias[N] + A[M][K] · Wt[K][N], with Wt the transposed weight.
 * Every element is summed in the same order (bias, then k ascending) for any
 * M, which makes the forward pass bitwise independent of chunking and
 * batching; see the comment in rnn-forward.c for why this is not sgemm. */
void rnn_project_rows (float *restrict C, const float *restrict A,
    const float *restrict Wt, const float *restrict bias, gsize M, gsize N,
    gsize K);
/* C[M][N] = A[M][K] · W[N][K]ᵀ + bias[N]: one sgemm (training path). */
void rnn_linear_rows (float *C, const float *A, const float *W,
    const float *bias, gsize M, gsize N, gsize K);
/* Applies the head activation in place to @rows rows of @O values. */
void rnn_head_activate (RnnHeadActivation act, float *y, gsize rows, gsize O);
