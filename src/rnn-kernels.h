/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The inference kernels, compiled once per instruction set and chosen at run
 * time (rnn-kernels.c): the default build runs on any x86-64 and uses
 * AVX-512 or AVX2 and FMA where the processor has them. */
#pragma once

#include "rnn-private.h"   /* RnnPackedMatrix, RnnStep1 (rnn-plan.h) */

/* the largest H of recur_one_io () (its scratch is on the stack: 10 KB); past
 * it a step costs far more than a call's bookkeeping */
#define RNN_IO_MAX_H 256

/* Where the W_ih rows of gate g, block b (8 hidden units) of a register
 * kernel's layer start in W_ih's packed panels (@Wi NULL: no input
 * projection, all 0), for G gates of NB blocks.  Rows r = g H + 8 b in
 * turn, 8 at a time; 8 rows from a multiple of 8 stay within one panel
 * (their width is a multiple of 8), and the panel and offset follow
 * without a division. */
static inline void
rnn_hreg_offsets (int G, int NB, const RnnPackedMatrix *Wi, gsize xoff[4][4])
{
  gsize at = 0, col = 0;
  for (int g = 0; g < G; g++)
    for (int b = 0; b < NB; b++) {
      xoff[b][g] = 0;
      if (Wi) {
        xoff[b][g] = at + col;
        col += 8;
        if (col == Wi->width) {
          col = 0;
          at += Wi->K * Wi->width;
        }
      }
    }
}

/* The arguments of RnnKernels.recur: T steps of B streams of one layer and
 * direction, the input projection already computed. */
typedef struct {
  RnnCell cell;
  const RnnPackedMatrix *w_hh;  /* gate-blocked (RnnPackedLayer.w_hh_blocked) */
  const float *b_hh;
  const float *xp;              /* [T][B][G*H]: input projection, b_ih in */
  gsize T, B, H;
  gboolean reverse;             /* run t = T-1 .. 0 */
  const float *h0;              /* [B] rows of H, h0_stride apart */
  gsize h0_stride;
  float *c;                     /* LSTM: [B][H], read and updated; else NULL */
  float *out;                   /* h of step t, stream b at
                                 * out + t*row_stride + b*stream_stride */
  gsize row_stride, stream_stride;
  float *pre;                   /* scratch: B * G * ceil(H/8) * 8 floats,
                                 * 32-byte aligned */
} RnnRecurArgs;

/* The arguments of the one-layer kernels with the input projection and the
 * head's linear part fused in (RnnKernels.recur_h8_io, recur_hreg_io,
 * recur_one_io): forward in time, h0 may be h_final. */
typedef struct {
  RnnCell cell;
  const RnnPackedMatrix *w_ih;  /* packed as usual; I = w_ih->K inputs */
  const float *b_ih;
  const float *x;               /* rows of I: x_stride per step, x_sstride
                                 * per stream */
  gsize x_stride, x_sstride;
  const RnnPackedMatrix *w_hh;  /* gate-blocked; H = w_hh->K */
  const float *b_hh;
  gsize T, B;                   /* recur_one_io: B = 1 */
  const float *h0;
  gsize h0_stride;
  float *c;                     /* LSTM: [B][H], read and updated */
  float *out;                   /* h rows as RnnRecurArgs, or NULL: none */
  gsize row_stride, stream_stride;
  const float *head_w;          /* [O][H] as stored */
  gsize O;                      /* 0: no head */
  const float *head_b;
  float *y;                     /* rows of O: y_stride per step, y_sstride
                                 * per stream */
  gsize y_stride, y_sstride;
  float *h_final;               /* [B][H]: each stream's last h, or NULL */
} RnnRecurIoArgs;

/* The arguments of RnnKernels.recur_h8x2_io: two layers of one stream, H = 8
 * each, float32, forward in time; layer 1 reads layer 0's h. */
typedef struct {
  RnnCell cell;
  const RnnPackedMatrix *w_ih[2], *w_hh[2];     /* per layer; w_hh blocked */
  const float *b_ih[2], *b_hh[2];
  const float *x;               /* rows of I <= 8, x_stride apart */
  gsize x_stride;
  gsize T;
  float *h[2], *c[2];           /* each layer's state (c: LSTM), updated */
  float *out;                   /* layer 1's h rows (row_stride), or NULL */
  gsize row_stride;
  const float *head_w;          /* [O][8] */
  gsize O;                      /* 0: no head */
  const float *head_b;
  float *y;                     /* rows of O, y_stride apart */
  gsize y_stride;
} RnnRecur2IoArgs;

/* One instruction set's kernels.  Names: see the glossary in
 * docs/kernels.md (h8: H = 8 held in one register; hreg: H = 16, 24 or 32
 * held in registers; x2: two layers; one: one stream, any H <= RNN_IO_MAX_H;
 * io: input projection and head fused in; step1: one sample of one
 * stream, no loop). */
typedef struct {
  const char *name;
  /* C[M][N] = A[M][K] · Wᵀ + bias[N]; every element summed in one fixed
   * order (k ascending, then the bias) whatever M is. */
  void (*project_rows) (float *C, const float *A, const RnnPackedMatrix *W,
      const float *bias, gsize M);
  /* y[m][o] = h[m] · W[o] + b[o] for M rows (strides ldy, ldh), W [O][K]
   * as stored: per output a dot product in 8 lanes, then a fixed tree;
   * the same order for any M. */
  void (*head_rows) (float *y, gsize ldy, const float *h, gsize ldh,
      const float *W, const float *b, gsize M, gsize O, gsize K);
  /* The general recurrence (RnnRecurArgs), fused: for each step and
   * stream the recurrent product, the gate nonlinearities and the state
   * update.  Step t reads the previous step's h from out (h0 for the
   * first). */
  void (*recur) (const RnnRecurArgs *a);
  /* recur () for B streams of H = 8 (recur_h8_io) or of H = 16, 24 or 32
   * (recur_hreg_io), float32 W_hh, with the input projection (I <= 8) and
   * the head (O <= 8) fused in (RnnRecurIoArgs): the same bits as
   * project_rows () before recur () and head_rows () after it. */
  void (*recur_h8_io) (const RnnRecurIoArgs *a);
  void (*recur_hreg_io) (const RnnRecurIoArgs *a);
  /* The same for one stream of 8 < H <= RNN_IO_MAX_H units, any weight
   * format, any I and O. */
  void (*recur_one_io) (const RnnRecurIoArgs *a);
  /* Two layers of H = 8 (RnnRecur2IoArgs): the same bits as the general
   * path. */
  void (*recur_h8x2_io) (const RnnRecur2IoArgs *a);
  /* One step of one stream (RnnStep1: the model's weights; x [I]; h [H]
   * and c [H] (LSTM) read and updated; y [O], the head's linear part, or
   * with O = 0 h's row): instances without a loop, for calls of one
   * sample, the same bits as the looped ones.  step1_small: recur_h8_io ()
   * or recur_hreg_io () (RNN_DIRECT_SMALL); step1_h8x2: recur_h8x2_io ()
   * (RNN_DIRECT_SMALL2; h and c: layer 0's H values, then layer 1's);
   * step1_one: recur_one_io () (RNN_DIRECT_ONE). */
  void (*step1_small) (const RnnStep1 *s, const float *x, float *h,
      float *c, float *y);
  void (*step1_h8x2) (const RnnStep1 *s, const float *x, float *h,
      float *c, float *y);
  void (*step1_one) (const RnnStep1 *s, const float *x, float *h,
      float *c, float *y);
  /* In place, n values: the exponential-based activations (for
   * the training path). */
  void (*sigmoid_array) (float *v, gsize n);
  void (*tanh_array) (float *v, gsize n);
} RnnKernels;

const RnnKernels *rnn_kernels_get (void);

/* The families, for tests and benchmarks; NULL where not built or not
 * supported by this processor (and, for AVX-512, its operating system). */
const RnnKernels *rnn_kernels_generic (void);
const RnnKernels *rnn_kernels_avx2 (void);
const RnnKernels *rnn_kernels_avx512 (void);
/* by RNN_KERNELS' names: "generic", "avx2", "avx512"; NULL for others and
 * for unsupported families */
const RnnKernels *rnn_kernels_by_name (const char *name);
