/* Internals of the core shared between its source files. */
#pragma once

#include "rnn.h"

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

/* rnn_model_seal () that refuses instead of aborting when the packed copy
 * cannot be allocated (a model read from a file). */
gboolean rnn_model_try_seal (RnnModel *model, GError **error);

/* A weight W [N][K] repacked for the inference kernels: its transpose cut
 * into panels of `width` columns (a multiple of 8, at most 64), each panel
 * [K][width] contiguous, the last one zero-padded.  A kernel then streams
 * one panel with its accumulators held in registers. */
typedef struct {
  float *data;              /* n_panels * K * width */
  gsize K, N, width, n_panels;
  /* RNN_WEIGHTS_F16: the same values as float16 bits (data then holds them
   * rounded, for kernels without a float16 load); NULL otherwise */
  const guint16 *half;
} RnnPackedMatrix;

#define RNN_PANEL_MAX 64

/* Weights of one layer/direction packed for the inference kernels. */
typedef struct {
  RnnPackedMatrix w_ih;     /* from [G*H][I_k] */
  RnnPackedMatrix w_hh;     /* from [G*H][H] */
  /* W_hh again, gate-blocked for the fused recurrent kernel: per block of 8
   * hidden units j..j+7 (the last zero-padded), H rows k of G x 8 weights
   * [gate g][unit] = W_hh[g*H + j + unit][k]; width = G*8, n_panels =
   * ceil(H/8). */
  RnnPackedMatrix w_hh_blocked;
} RnnPackedLayer;

/* rnn_forward ()'s direct paths: straight to one kernel, without the
 * general path's passes and bookkeeping (which cost as much as a step of
 * these models at one sample per call).  Chosen per model at
 * rnn_model_seal () (rnn_forward_direct_kind ()), so that a call of one
 * sample does not test the configuration again. */
typedef enum {
  RNN_DIRECT_NONE,
  /* one layer of H = 8, 16, 24 or 32, float32, <= 8 inputs and outputs:
   * recur_small_io () / recur_hreg_io (), any number of streams */
  RNN_DIRECT_SMALL,
  /* two layers of H = 8, the same limits: recur_small2_io (), one stream */
  RNN_DIRECT_SMALL2,
  /* one layer of 8 < H <= RNN_IO_MAX_H otherwise: recur1_io (), one stream
   * at one or two steps per call */
  RNN_DIRECT_ONE,
} RnnDirect;

RnnDirect rnn_forward_direct_kind (const RnnModel *m);

/* What a call of one sample of one stream needs on the direct paths
 * (RnnDirect), gathered by rnn_model_seal (): the kernel
 * (RnnKernels.recur_step1, recur_small2_step1 or recur1_step1)
 * then takes five arguments in registers, where the general entry's 23
 * cost some 40 instructions to pass and as many to take apart, at every
 * sample. */
typedef struct _RnnStep1 RnnStep1;
struct _RnnStep1 {
  void (*fn) (const RnnStep1 *s, const float *x, float *h, float *c,
      float *y);
  RnnCell cell;
  gsize H, O;
  const RnnPackedMatrix *w_ih, *w_hh;   /* packed; w_hh gate-blocked */
  const float *b_ih, *b_hh, *head_w, *head_b;
  /* RNN_DIRECT_SMALL2: layer 1's weights (layer 0's above) */
  const RnnPackedMatrix *w_ih1, *w_hh1;
  const float *b_ih1, *b_hh1;
  /* H = 16-32: the register kernel's W_ih offsets (rnn_hreg_offsets ()),
   * some 30-50 instructions a call would otherwise spend on them; two
   * layers of 8: layer 0's, then layer 1's */
  gsize xoff[2][4][4];
};

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
  float *packed_slab;       /* owns the packed data; 64-byte aligned
                             * (g_aligned_alloc), so that no vector load of
                             * a panel crosses a cache line */
  RnnWeightPrecision precision;
  RnnDirect direct;         /* set by rnn_model_seal () */
  guint64 state_shape;      /* rnn_shape_key () of its states */
  RnnStep1 step1;           /* set by rnn_model_seal () (fn NULL: none) */
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
};

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
/* Applies the head activation in place to @rows rows of @O values. */
void rnn_head_activate (RnnHeadActivation act, float *y, gsize rows, gsize O);
/* For tests: with @plain set, @fw takes none of its fused paths (the input
 * projection and head inside the register kernels, the direct calls of one
 * stream), only the passes of the general path, so that the fused paths
 * can be compared with it bit for bit. */
void rnn_forward_set_plain (RnnForward *fw, gboolean plain);
