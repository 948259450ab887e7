/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The plan of a model: what the forward pass derives from the parameters
 * once, before it runs, so that a call does not derive it again.
 *
 *  - the weights packed into panels for the kernels (RnnPackedMatrix),
 *  - with RNN_WEIGHTS_F16, the float16 copy of the recurrent weights,
 *  - the direct path (RnnDirect): which kernel a call goes straight to,
 *  - the one-sample plan (RnnStep1): that kernel's arguments for a call of
 *    one sample of one stream.
 *
 * A model is planned when it is loaded, and otherwise on its first forward
 * pass (thread-safe) and again after rnn_model_get_params () handed out its
 * slab for writing.  Planning allocates and can fail; it then reports the
 * size it could not get. */
#pragma once

#include "rnn.h"

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
 * these models at one sample per call).  Chosen per model by the plan, so
 * that a call of one sample does not test the configuration again. */
typedef enum {
  RNN_DIRECT_NONE,
  /* one layer of H = 8, 16, 24 or 32, float32, <= 8 inputs and outputs:
   * the register kernels with the input projection and head fused in
   * (RnnKernels.recur_h8_io / recur_hreg_io), any number of streams */
  RNN_DIRECT_SMALL,
  /* two layers of H = 8, the same limits: RnnKernels.recur_h8x2_io, one
   * stream */
  RNN_DIRECT_SMALL2,
  /* one layer of 8 < H <= RNN_IO_MAX_H otherwise: RnnKernels.recur_one_io,
   * one stream at one or two steps per call */
  RNN_DIRECT_ONE,
} RnnDirect;

/* What a call of one sample of one stream needs on the direct paths
 * (RnnDirect): the kernel (RnnKernels.step1_small, step1_h8x2 or
 * step1_one)
 * then takes five arguments in registers, where the looped entries' twenty
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

/* The plan, held by the model (RnnModel.plan). */
typedef struct {
  gint ready;               /* atomic: TRUE once built for the current
                             * parameters and precision */
  RnnPackedLayer *packed;   /* [L][D] */
  float *slab;              /* the packed data, 64-byte aligned so that no
                             * vector load of a panel crosses a cache line */
  gpointer slab_mem;        /* its allocation */
  gsize slab_floats;        /* its size */
  RnnDirect direct;
  /* the first layer runs in a register kernel with its input projection
   * fused in (H = 8 - 32, <= 8 inputs, one direction), also when the model
   * has no direct path */
  gboolean first_fused;
  RnnStep1 step1;           /* fn NULL: none */
  /* the pre and post layers' weights (RnnConfig.n_pre, n_post), packed
   * for the projection kernel */
  RnnPackedMatrix pre[RNN_MAX_DENSE_LAYERS], post[RNN_MAX_DENSE_LAYERS];
} RnnPlan;

/* Builds (or rebuilds, after the parameters or the precision changed)
 * @model's plan now.  Fails (RNN_ERROR_INVALID, naming the size) when
 * memory for the packed weights cannot be had; the model is then left
 * unplanned.  Not to be called while other threads run the model. */
gboolean rnn_model_plan (RnnModel *model, GError **error);

/* The plan is to be rebuilt before the next forward pass (the parameters
 * or the precision changed). */
void rnn_model_plan_invalidate (RnnModel *model);

/* For rnn_forward () and the training path: plans @model if it is not
 * (thread-safe: the first caller builds, the others wait).  FALSE, with a
 * warning, if planning failed. */
gboolean rnn_model_plan_lazily (const RnnModel *model);

/* Frees what the plan holds. */
void rnn_plan_clear (RnnPlan *plan);
