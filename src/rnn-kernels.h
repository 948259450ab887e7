/* The inference kernels, compiled once per instruction set and chosen at run
 * time (rnn-kernels.c): the default build runs on any x86-64 and uses AVX2
 * and FMA where the processor has them. */
#pragma once

#include "rnn-private.h"

/* the largest H of recur1_io () (its scratch is on the stack: 10 KB); past
 * it a step costs far more than a call's bookkeeping */
#define RNN_IO_MAX_H 256

/* see RnnKernels.recur_small_io */
typedef void (*RnnSmallIoFn) (RnnCell cell, const RnnPackedMatrix *W_ih,
    const float *b_ih, const float *x, gsize x_stride, gsize x_sstride,
    const RnnPackedMatrix *W, const float *bhh, gsize T, gsize B,
    const float *h0, gsize h0_stride, float *c, float *out,
    gsize row_stride, gsize stream_stride, const float *head_w, gsize O,
    const float *head_b, float *y, gsize y_stride, gsize y_sstride,
    float *h_final);

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

typedef struct {
  const char *name;
  /* C[M][N] = A[M][K] · Wᵀ + bias[N]; every element summed in one fixed
   * order (k ascending, then the bias) whatever M is. */
  void (*project_rows) (float *C, const float *A, const RnnPackedMatrix *W,
      const float *bias, gsize M);
  /* T steps of B streams of one layer and direction, fused: for each step
   * and stream the recurrent product (W packed gate-blocked, see
   * RnnPackedLayer.w_hh_blocked), the gate nonlinearities and the state
   * update.  xp [T][B][G*H]: input projection (b_ih included); step t reads
   * the previous step's h from out (h0 [B] with stride h0_stride for the
   * first one), updates c [B][H] (LSTM) in place and writes h to
   * out + t*row_stride + b*stream_stride.  reverse runs t = T-1 .. 0.
   * pre: scratch of B * G * ceil(H/8) * 8 floats, 32-byte aligned. */
  void (*recur) (RnnCell cell, const RnnPackedMatrix *W, const float *bhh,
      const float *xp, gsize T, gsize B, gsize H, gboolean reverse,
      const float *h0, gsize h0_stride, float *c, float *out,
      gsize row_stride, gsize stream_stride, float *pre);
  /* recur () for B streams of H = 8 (recur_small_io) or of H = 16, 24 or
   * 32 (recur_hreg_io), with float32 W_hh (H = W->K), forward in time,
   * with the input projection fused in (x: rows of I = W_ih->K <= 8
   * inputs, strides x_stride per step and x_sstride per stream; W_ih
   * [G*H][I], b_ih) and, when O > 0, the head's linear part (y: rows of
   * O <= 8, strides y_stride, y_sstride): the same bits as project_rows ()
   * before recur () and head_rows () after it.  out may be NULL (no h rows
   * written); h_final, when set, receives each stream's last h ([B][H]). */
  RnnSmallIoFn recur_small_io, recur_hreg_io;
  /* The same for one stream of 8 < H <= RNN_IO_MAX_H units, any weight
   * format: x rows of I = W_ih->K inputs (stride x_stride), W_ih
   * packed as usual, y rows of O outputs (stride y_stride).  h0 may be
   * h_final. */
  void (*recur1_io) (RnnCell cell, const RnnPackedMatrix *W_ih,
      const float *b_ih, const float *x, gsize x_stride,
      const RnnPackedMatrix *W, const float *bhh, gsize T, gsize H,
      const float *h0, float *c, float *out, gsize row_stride,
      const float *head_w, gsize O, const float *head_b, float *y,
      gsize y_stride, float *h_final);
  /* Two layers of one stream, H = W0->K = 8 units each, float32, forward
   * in time: layer 0 as recur_small_io () with x rows
   * (I <= 8, stride x_stride), layer 1 on layer 0's h (W_ih1, b_ih1), then
   * y rows of O <= 8 outputs from layer 1's h (or, with O = 0, out rows of
   * H); h[l] and c[l] (LSTM) are each layer's state, read and updated.  The
   * same bits as the general path. */
  void (*recur_small2_io) (RnnCell cell, const RnnPackedMatrix *W_ih0,
      const float *b_ih0, const float *x, gsize x_stride,
      const RnnPackedMatrix *W0, const float *bhh0,
      const RnnPackedMatrix *W_ih1, const float *b_ih1,
      const RnnPackedMatrix *W1, const float *bhh1, gsize T,
      float *const h[2], float *const c[2], float *out, gsize row_stride,
      const float *head_w, gsize O, const float *head_b, float *y,
      gsize y_stride);
  /* recur_small_io () or recur_hreg_io () for one stream at one step
   * (RnnStep1: the model's weights; x [I]; h [H] and c [H] (LSTM) read
   * and updated; y [O], the head's linear part, or with O = 0 h's row):
   * an instance without a loop, for calls of one sample.  The same bits. */
  void (*recur_step1) (const RnnStep1 *s, const float *x, float *h,
      float *c, float *y);
  /* recur_small2_io () for one step, as recur_step1 () (RNN_DIRECT_SMALL2;
   * h and c: layer 0's H values, then layer 1's) */
  void (*recur_small2_step1) (const RnnStep1 *s, const float *x, float *h,
      float *c, float *y);
  /* recur1_io () for one step, as recur_step1 () (RNN_DIRECT_ONE) */
  void (*recur1_step1) (const RnnStep1 *s, const float *x, float *h,
      float *c, float *y);
  /* y[m][o] = h[m] · W[o] + b[o] for M rows (strides ldy, ldh), W [O][K]
   * as stored: per output a dot product in 8 lanes, then a fixed tree;
   * the same order for any M. */
  void (*head_rows) (float *y, gsize ldy, const float *h, gsize ldh,
      const float *W, const float *b, gsize M, gsize O, gsize K);
  /* In place, n values: the exponential-based activations (for
   * the training path). */
  void (*sigmoid_array) (float *v, gsize n);
  void (*tanh_array) (float *v, gsize n);
} RnnKernels;

const RnnKernels *rnn_kernels_get (void);

/* The variants, for tests and benchmarks; NULL where not built or not
 * supported by this processor. */
const RnnKernels *rnn_kernels_generic (void);
const RnnKernels *rnn_kernels_avx2 (void);
