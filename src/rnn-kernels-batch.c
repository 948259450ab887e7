/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Kernel family: the batched recurrence (RnnKernels.recur_batch_io), one
 * stream per vector lane.  A group of BATCH_LANES streams runs together:
 * h and c are held transposed ([H][lanes]), so one multiply-add updates
 * one gate of one unit for every stream of the group, with the weight
 * W_hh[row][k] broadcast once per step for all of them.  The input
 * projection and the head are fused in, in the same transposed form.
 *
 * The same bits as one stream alone: every lane computes exactly what the
 * one-stream kernels compute for its stream, in the same order —
 *  - a gate sum in two chains, even and odd k, each k ascending, the first
 *    term a multiply-add onto zero, then (even + odd) + b_hh
 *    (recur_products ());
 *  - the input projection as project_rows (): a plain product of the first
 *    input, multiply-adds of the others in order, then b_ih;
 *  - the gates through cell_math (), whose activations act lane by lane;
 *  - the head as dot_row (): lane l of its 8-lane accumulator sums units
 *    l, l + 8, ... in order (a plain product first), the lanes then added
 *    in hsum ()'s fixed tree, then the bias.
 * The unused lanes of a last, partial group compute on zeros and are never
 * stored.
 *
 * The lane width and the vector operations come from the macros below; an
 * instruction set with wider vectors defines them (all of them) before
 * including the template, with a cell_math () of that width.
 *
 * Part of the kernel template (rnn-kernels-template.h), which includes the
 * family files in order into one unit per instruction set; not compiled on
 * its own. */

#ifndef BATCH_LANES
#define BATCH_LANES 8
#define BVEC v8sf
#define BSPLAT(v) KFN (splat) (v)
#define BFMA(a, b, c) VFMA (a, b, c)
#define BCELL(cell, XP, RP, c, hold) KFN (cell_math) (cell, XP, RP, c, hold, 0)
#endif
/* rows of a block's products per pass: 2 x BATCH_ROWS accumulators, two
 * h vectors and the broadcasts within the registers (16 with AVX2) */
#ifndef BATCH_ROWS
#define BATCH_ROWS 4
#endif

/* the most inputs and outputs of the fused projection and head */
#define BATCH_MAX_IO 8

/* One group of @n <= BATCH_LANES streams (the first at stream @b0 of the
 * call), all @T steps. */
static inline __attribute__ ((always_inline)) void
KFN (batch_group) (const RnnCell cell, const int I1,
    const RnnRecurIoArgs *a, gsize b0, gsize n)
{
  const int G = cell == RNN_CELL_LSTM ? 4 : cell == RNN_CELL_GRU ? 3 : 1;
  enum { L = BATCH_LANES };
  const RnnPackedMatrix *W = a->w_hh, *Wi = a->w_ih;
  const gsize H = W->K, I = Wi->K, O = a->O;
  const gsize panel = H * (gsize) G * 8;
  const gsize wi = Wi->width, wpanel = I * wi;
  /* h twice (the step reads one and writes the other), c, a block's gate
   * sums, the inputs of the step and the head's accumulators */
  BVEC hbuf[2][RNN_IO_MAX_H] __attribute__ ((aligned (64)));
  BVEC cT[RNN_IO_MAX_H] __attribute__ ((aligned (64)));
  BVEC pre[4 * 8] __attribute__ ((aligned (64)));
  BVEC xv[BATCH_MAX_IO], hacc[BATCH_MAX_IO][8];
  const BVEC zero = BSPLAT (0.0f);

  /* the state in, transposed; lanes past @n zero */
  for (gsize j = 0; j < H; j++) {
    BVEC hv = zero, cv = zero;
    for (gsize q = 0; q < n; q++) {
      hv[q] = a->h0[(b0 + q) * a->h0_stride + j];
      if (a->c)
        cv[q] = a->c[(b0 + q) * H + j];
    }
    hbuf[0][j] = hv;
    cT[j] = cv;
  }
  for (gsize i = 0; i < BATCH_MAX_IO; i++)
    xv[i] = zero;
  /* where the W_ih rows of gate g of block b start in its packed panels:
   * 8 rows from a multiple of 8 stay in one panel (a multiple of 8 wide) */
  gsize xoff[RNN_IO_MAX_H / 8][4];
  for (gsize blk = 0; blk < H / 8; blk++)
    for (int g = 0; g < G; g++) {
      const gsize row = g * H + 8 * blk;
      xoff[blk][g] = row / wi * wpanel + row % wi;
    }

  const float *P0 = W->data;
  for (gsize t = 0; t < a->T; t++) {
    const BVEC *restrict hold = hbuf[t & 1];
    BVEC *restrict hnew = hbuf[(t + 1) & 1];
    for (gsize q = 0; q < n; q++) {
      const float *xq = a->x + t * a->x_stride + (b0 + q) * a->x_sstride;
      for (gsize i = 0; i < I; i++)
        xv[i][q] = xq[i];
    }
    for (gsize blk = 0; blk < H / 8; blk++) {
      const float *P = P0 + blk * panel;
      /* the G x 8 gate sums of this block's units, BATCH_ROWS rows at a
       * time; row r = 8 g + u of the panel is gate g of unit 8 blk + u */
      for (int r0 = 0; r0 < G * 8; r0 += BATCH_ROWS) {
        BVEC a0[BATCH_ROWS], a1[BATCH_ROWS];
        for (int q = 0; q < BATCH_ROWS; q++)
          a0[q] = a1[q] = zero;
        gsize k = 0;
        for (; k + 2 <= H; k += 2) {
          const BVEC h0 = hold[k], h1 = hold[k + 1];
          const float *p = P + k * G * 8 + r0;
          for (int q = 0; q < BATCH_ROWS; q++) {
            a0[q] = BFMA (BSPLAT (p[q]), h0, a0[q]);
            a1[q] = BFMA (BSPLAT (p[G * 8 + q]), h1, a1[q]);
          }
        }
        if (k < H) {
          const BVEC h0 = hold[k];
          const float *p = P + k * G * 8 + r0;
          for (int q = 0; q < BATCH_ROWS; q++)
            a0[q] = BFMA (BSPLAT (p[q]), h0, a0[q]);
        }
        for (int q = 0; q < BATCH_ROWS; q++) {
          const int r = r0 + q;
          pre[r] = (a0[q] + a1[q]) + BSPLAT (a->b_hh[(r / 8) * H + 8 * blk
                  + r % 8]);
        }
      }
      /* the cells of the block's 8 units */
      for (int u = 0; u < 8; u++) {
        const gsize j = 8 * blk + u;
        BVEC XP[4], RP[4];
        for (int g = 0; g < G; g++) {
          const gsize row = g * H + j;
          const float *w = Wi->data + xoff[blk][g] + u;
          if (I1)
            XP[g] = BSPLAT (w[0]) * xv[0] + BSPLAT (a->b_ih[row]);
          else {
            BVEC s = BSPLAT (w[0]) * xv[0];
            for (gsize i = 1; i < I; i++)
              s = BFMA (BSPLAT (w[i * wi]), xv[i], s);
            XP[g] = s + BSPLAT (a->b_ih[row]);
          }
          RP[g] = pre[8 * g + u];
        }
        BVEC cv = cT[j];
        const BVEC hn = BCELL (cell, XP, RP, &cv, hold[j]);
        if (cell == RNN_CELL_LSTM)
          cT[j] = cv;
        hnew[j] = hn;
        for (gsize o = 0; o < O; o++) {
          const BVEC w = BSPLAT (a->head_w[o * H + j]);
          hacc[o][u] = blk == 0 ? w * hn : BFMA (w, hn, hacc[o][u]);
        }
      }
    }
    if (a->out)
      for (gsize q = 0; q < n; q++) {
        float *row = a->out + t * a->row_stride + (b0 + q) * a->stream_stride;
        for (gsize j = 0; j < H; j++)
          row[j] = hnew[j][q];
      }
    for (gsize o = 0; o < O; o++) {
      const BVEC *v = hacc[o];
      const BVEC y = (((v[0] + v[4]) + (v[2] + v[6]))
          + ((v[1] + v[5]) + (v[3] + v[7]))) + BSPLAT (a->head_b[o]);
      for (gsize q = 0; q < n; q++)
        a->y[t * a->y_stride + (b0 + q) * a->y_sstride + o] = y[q];
    }
  }

  /* the state out */
  const BVEC *hlast = hbuf[a->T & 1];
  for (gsize q = 0; q < n; q++) {
    for (gsize j = 0; j < H; j++) {
      if (a->h_final)
        a->h_final[(b0 + q) * H + j] = hlast[j][q];
      if (a->c)
        a->c[(b0 + q) * H + j] = cT[j][q];
    }
  }
}

/* Per cell, and for one input apart (the per-sample audio model). */
static void __attribute__ ((noinline))
KFN (recur_batch_cell) (const RnnCell cell, const RnnRecurIoArgs *a,
    gsize b0, gsize n)
{
  const int I1 = a->w_ih->K == 1;
#define BATCH_CASE(CELL, ONE) \
  case CELL: \
    if (ONE) \
      KFN (batch_group) (CELL, 1, a, b0, n); \
    else \
      KFN (batch_group) (CELL, 0, a, b0, n); \
    break
  CELL_SWITCH (cell, BATCH_CASE, I1);
#undef BATCH_CASE
}

void KFN (recur_batch_io) (const RnnRecurIoArgs *a);

void
KFN (recur_batch_io) (const RnnRecurIoArgs *a)
{
  for (gsize b0 = 0; b0 < a->B; b0 += BATCH_LANES)
    KFN (recur_batch_cell) (a->cell, a, b0, MIN (BATCH_LANES, a->B - b0));
}
