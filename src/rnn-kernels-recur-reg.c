/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Kernel family: the register kernels, h (and c) held in registers from
 * step to step: H = 8 (recur_h8 (), one or two streams at once), H = 16,
 * 24 or 32 (recur_hreg ()), and two layers of H = 8 (recur_hreg2 ()).
 * Their operations are those of the general recurrence, in the same
 * order, so they give the same bits.
 *
 * Part of the kernel template (rnn-kernels-template.h), which includes the
 * family files in order into one unit per instruction set; not compiled on
 * its own. */

/* One step of one stream of H = 8: the recurrent products from h in a
 * register, the input projection (read from @xpt, or computed from @xt
 * with @io), the cell; returns the new h. */
static inline __attribute__ ((always_inline)) v8sf
KFN (h8_step) (const RnnCell cell, const float *restrict P,
    const float *restrict bias, const float *restrict bih, const RecurIO *io,
    const float *restrict xt, const float *restrict xpt, v8sf h, v8sf *cv,
    const int one)
{
  const int G = cell == RNN_CELL_LSTM ? 4 : cell == RNN_CELL_GRU ? 3 : 1;
  v8sf XP[4], RP[4];
  if (G == 4) {
    /* LSTM: gate by gate: with the four gates' accumulators live at once
     * the compiler spilled accumulators, putting stores and reloads on the
     * chain (10 % slower; the three-gate GRU is 4 % faster all at once).
     * h's lanes spread as the compiler likes: vpermps with index vectors
     * hidden from it (once 8-10 % faster) costs, since the tanh became
     * Horner's, six index loads per step and 40 instructions per call:
     * 1.02x in buffers, 1.07x at one sample per call without it */
    for (int g = 0; g < G; g++) {
      v8sf a0 = { 0 }, a1 = { 0 };
      for (int k = 0; k < 8; k += 2) {
        const float *p = P + k * G * 8 + 8 * g;
        const v8sf hk0 = KFN (splat) (h[k]), hk1 = KFN (splat) (h[k + 1]);
        a0 = VFMA (*(const v8sf_u *) p, hk0, a0);
        a1 = VFMA (*(const v8sf_u *) (p + G * 8), hk1, a1);
      }
      RP[g] = (a0 + a1) + *(const v8sf_u *) (bias + 8 * g);
    }
  } else {
    v8sf a0[4], a1[4];
    for (int g = 0; g < G; g++)
      a0[g] = a1[g] = (v8sf) { 0 };
    /* written out: VLANE takes its lane as an immediate, a constant even
     * where the compiler does not unroll (-O0, -O1 for the sanitizers) */
#ifdef VLANE
#define H8_LANE(k) VLANE (h, k)
#else
#define H8_LANE(k) KFN (splat) (h[k])
#endif
#define H8_PAIR(k) \
    for (int g = 0; g < G; g++) { \
      const float *p = P + (k) * G * 8; \
      a0[g] = VFMA (*(const v8sf_u *) (p + 8 * g), H8_LANE (k), a0[g]); \
      a1[g] = VFMA (*(const v8sf_u *) (p + G * 8 + 8 * g), H8_LANE ((k) + 1), \
          a1[g]); \
    }
    H8_PAIR (0);
    H8_PAIR (2);
    H8_PAIR (4);
    H8_PAIR (6);
#undef H8_PAIR
#undef H8_LANE
    for (int g = 0; g < G; g++)
      RP[g] = (a0[g] + a1[g]) + *(const v8sf_u *) (bias + 8 * g);
  }
  if (io) {
    const float *w = io->w_ih->data;
    const gsize I = io->w_ih->K;
    for (int g = 0; g < G; g++) {
      v8sf a = *(const v8sf_u *) (w + 8 * g) * KFN (splat) (xt[0]);
      for (gsize i = 1; i < I; i++)
        a = VFMA (*(const v8sf_u *) (w + i * G * 8 + 8 * g),
            KFN (splat) (xt[i]), a);
      XP[g] = a + *(const v8sf_u *) (bih + 8 * g);
    }
  } else {
    for (int g = 0; g < G; g++)
      XP[g] = *(const v8sf_u *) (xpt + 8 * g);
  }
  return KFN (cell_math) (cell, XP, RP, cv, h, one);
}

/* @S (1 or 2) streams of a model with H = 8 (one block, the common small
 * audio model), stream q's rows at +q * the stream strides: h and c stay in
 * registers from step to step and the products take h's lanes from the
 * register, instead of a store and reloads per step on the critical path.
 * Two streams' steps are independent chains that the processor overlaps.
 * The operations are those of recur_products and recur_update, so the
 * results are the same bits. */
static inline __attribute__ ((always_inline)) void
KFN (recur_h8) (const RnnCell cell, const int S, const int one,
    const float *restrict P,
    const float *restrict bhh, const float *restrict xp, gsize xp_stride,
    gsize T, gboolean reverse, const float *restrict h0, gsize h0_stride,
    float *restrict c, float *restrict out, gsize row_stride,
    gsize stream_stride, const RecurIO *io)
{
  const int G = cell == RNN_CELL_LSTM ? 4 : cell == RNN_CELL_GRU ? 3 : 1;
  v8sf h[2], cv[2] = { { 0 } };
  const gsize O = io ? io->O : 0;
  for (int q = 0; q < S; q++) {
    h[q] = *(const v8sf_u *) (h0 + q * h0_stride);
    if (cell == RNN_CELL_LSTM)
      cv[q] = *(const v8sf_u *) (c + 8 * q);
  }
  /* the biases copied to the stack for a loop of steps (at fixed offsets
   * from the stack pointer: a pointer chosen at run time between the
   * copy and the original took a register, 0.98x), read in place by the
   * one-step instance (@one: T = 1), which would copy them for nothing */
  float bcopy[2][32] __attribute__ ((aligned (32)));
  const float *bias = bhh, *bih = io ? io->b_ih : NULL;
  if (!one) {
    for (int g = 0; g < G; g++) {
      *(v8sf *) (bcopy[0] + 8 * g) = *(const v8sf_u *) (bhh + 8 * g);
      if (io)
        *(v8sf *) (bcopy[1] + 8 * g) = *(const v8sf_u *) (io->b_ih + 8 * g);
    }
    bias = bcopy[0];
    bih = bcopy[1];
  }
  for (gsize s = 0; s < T; s++) {
    const gsize t = reverse ? T - 1 - s : s;
    /* W_hh read in place each step: hoisted, its 1 KB was copied to the
     * stack at every call (the loop's registers cannot hold it), a cost
     * paid for nothing at one step per call */
    __asm__ ("" : "+r" (P));
    for (int q = 0; q < S; q++) {
      h[q] = KFN (h8_step) (cell, P, bias, bih, io,
          io ? io->x + t * io->x_stride + q * io->x_sstride : NULL,
          io ? NULL : xp + t * xp_stride + q * G * 8, h[q], &cv[q], one);
      if (out)
        *(v8sf_u *) (out + t * row_stride + q * stream_stride) = h[q];
      /* head_rows ()'s arithmetic, h from the register */
      for (gsize o = 0; o < O; o++)
        io->y[t * io->y_stride + q * io->y_sstride + o] =
            KFN (hsum) (*(const v8sf_u *) (io->head_w + 8 * o) * h[q])
            + io->head_b[o];
    }
  }
  if (cell == RNN_CELL_LSTM)
    for (int q = 0; q < S; q++)
      *(v8sf_u *) (c + 8 * q) = cv[q];
  if (io && io->h_final)
    for (int q = 0; q < S; q++)
      *(v8sf_u *) (io->h_final + 8 * q) = h[q];
}

/* One step of one stream of H = 8 NB units (NB = 2 .. 4), h in NB registers
 * (h[b]: units 8b .. 8b+7) and c beside it: first every block's products
 * from the old h, then every block's input projection and cell.  The
 * operations and their order are recur_products ()'s (two chains, even and
 * odd k, k ascending, then b_hh), project_rows ()'s and cell_math ()'s, so
 * the results are the same bits as the general path's, without h's store
 * and reload and the general loop's bookkeeping per step.  @xoff [NB][G]:
 * where the W_ih rows of gate g, block b start in W_ih's packed panels. */
static inline __attribute__ ((always_inline)) void
KFN (hreg_step) (const RnnCell cell, const int NB, const float *restrict P,
    const float *restrict bhh, const float *restrict bi,
    const gsize xoff[4][4],
    const RecurIO *io, const float *restrict xt, const float *restrict xpt,
    const v8sf *xr, const RnnPackedMatrix *Wx, v8sf *h, v8sf *cv,
    const int one)
{
  const int G = cell == RNN_CELL_LSTM ? 4 : cell == RNN_CELL_GRU ? 3 : 1;
  const gsize H = 8 * (gsize) NB, panel = H * (gsize) G * 8;
  v8sf XP[4][4], RP[4][4], hn[4];
  /* b_hh and b_ih of gate g, block b, read in place (copied per call into
   * arrays, they cost some 70 instructions of every one-sample call) */
#define BIAS(p, b, g) (*(const v8sf_u *) ((p) + (g) * H + 8 * (b)))
  /* every block's products first, then the cells: a block's products do
   * not wait behind the previous block's cell.  Per block all gates at
   * once, k outer (recur_products ()'s shape: each lane of h spread once
   * for the G gates; gate by gate was 8 % slower than the general path) */
  /* h's lanes by the immediate shuffles of VLANE, or spread as the
   * compiler likes (the same values): per cell and size, the faster,
   * measured with the LSTM's tanh in Horner's form.  The
   * compiler's choice: GRU H=16 with its input fused (@io) 1.06-1.10x (in
   * buffers, at one sample per call and for 8 streams), Elman H=32
   * 1.05-1.06x (one or two layers); VLANE: LSTM H = 16-32 (the other way
   * 0.88-0.96x; 0.82-1.00x in the AVX-512 family), GRU H=32 (0.86x at one sample per call), GRU H=16 fed
   * by the projection pass (a second layer: 0.96-0.97x in buffers). */
#ifdef VLANE
  const gboolean lane_splat = (cell == RNN_CELL_GRU && NB == 2 && io)
      || (G == 1 && NB == 4);
#define HREG_LANE(kb, k) \
  (lane_splat ? KFN (splat) (h[kb][k]) : VLANE (h[kb], k))
#else
#define HREG_LANE(kb, k) KFN (splat) (h[kb][k])
#endif
  if (G == 1) {
    /* Elman cells: every block at once (recur_products_x4 ()'s shape),
     * 2 NB chains in flight instead of two */
    v8sf a0[4], a1[4];
    for (int b = 0; b < NB; b++)
      a0[b] = a1[b] = (v8sf) { 0 };
#define HREG_PAIR1(kb, k) \
    for (int b = 0; b < NB; b++) { \
      const float *p = P + b * panel + (8 * (kb) + (k)) * 8; \
      a0[b] = VFMA (*(const v8sf_u *) p, HREG_LANE (kb, k), a0[b]); \
      a1[b] = VFMA (*(const v8sf_u *) (p + 8), HREG_LANE (kb, (k) + 1), a1[b]); \
    }
    for (int kb = 0; kb < NB; kb++) {
      HREG_PAIR1 (kb, 0);
      HREG_PAIR1 (kb, 2);
      HREG_PAIR1 (kb, 4);
      HREG_PAIR1 (kb, 6);
    }
#undef HREG_PAIR1
    for (int b = 0; b < NB; b++)
      RP[b][0] = (a0[b] + a1[b]) + BIAS (bhh, b, 0);
  }
  /* the GRU's blocks two at a time (H = 16 and 32), k outer: each lane of
   * h spread once for six gates, 12 accumulators, half the lane loads of
   * one block at a time; the lanes by broadcasts from memory (the loop
   * over kb is not unrolled: unrolled, GCC spilled, 1,569 instructions
   * per step at H=32 against 1,099).  Against one block at a time:
   * H=32 1.05x (in buffers, at one sample per call, for 8 streams), two
   * layers of 32 1.06x, H=16 1.10x at one sample per call and 0.99-1.03x
   * otherwise. */
  const gboolean gru_pairs = G == 3 && NB % 2 == 0;
#pragma GCC unroll 2
  for (int b = 0; b < NB && gru_pairs; b += 2) {
    const float *Pb = P + b * panel;
    v8sf a0[2][3], a1[2][3];
    for (int q = 0; q < 2; q++)
      for (int g = 0; g < 3; g++)
        a0[q][g] = a1[q][g] = (v8sf) { 0 };
#define HREG_PAIR2(kb, k) \
    { \
      const v8sf l0 = KFN (splat) (h[kb][k]); \
      const v8sf l1 = KFN (splat) (h[kb][(k) + 1]); \
      for (int q = 0; q < 2; q++) \
        for (int g = 0; g < 3; g++) { \
          const float *p = Pb + q * panel + (8 * (kb) + (k)) * 3 * 8; \
          a0[q][g] = VFMA (*(const v8sf_u *) (p + 8 * g), l0, a0[q][g]); \
          a1[q][g] = VFMA (*(const v8sf_u *) (p + 3 * 8 + 8 * g), l1, \
              a1[q][g]); \
        } \
    }
    for (int kb = 0; kb < NB; kb++) {
      HREG_PAIR2 (kb, 0);
      HREG_PAIR2 (kb, 2);
      HREG_PAIR2 (kb, 4);
      HREG_PAIR2 (kb, 6);
    }
#undef HREG_PAIR2
    for (int q = 0; q < 2; q++)
      for (int g = 0; g < 3; g++)
        RP[b + q][g] = (a0[q][g] + a1[q][g]) + BIAS (bhh, b + q, g);
  }
  for (int b = 0; b < NB && G > 1 && !gru_pairs; b++) {
    const float *Pb = P + b * panel;
    v8sf a0[4], a1[4];
    for (int g = 0; g < G; g++)
      a0[g] = a1[g] = (v8sf) { 0 };
#define HREG_PAIR(kb, k) \
    for (int g = 0; g < G; g++) { \
      const float *p = Pb + (8 * (kb) + (k)) * G * 8; \
      a0[g] = VFMA (*(const v8sf_u *) (p + 8 * g), HREG_LANE (kb, k), a0[g]); \
      a1[g] = VFMA (*(const v8sf_u *) (p + G * 8 + 8 * g), \
          HREG_LANE (kb, (k) + 1), a1[g]); \
    }
    /* lanes as immediates (see H8_PAIR) */
    for (int kb = 0; kb < NB; kb++) {
      HREG_PAIR (kb, 0);
      HREG_PAIR (kb, 2);
      HREG_PAIR (kb, 4);
      HREG_PAIR (kb, 6);
    }
#undef HREG_PAIR
    for (int g = 0; g < G; g++)
      RP[b][g] = (a0[g] + a1[g]) + BIAS (bhh, b, g);
  }
#undef HREG_LANE
  /* unrolled, with one input (the audio models) taken apart: its product
   * and the bias, no loop over inputs; 1.04-1.07x at chunk 480 for LSTM
   * H = 16-32 and GRU H=16 (either change alone gained nothing) */
#pragma GCC unroll 4
  for (int b = 0; b < NB; b++) {
    if (io) {
      const float *w = io->w_ih->data;
      const gsize I = io->w_ih->K, wi = io->w_ih->width;
      if (I == 1) {
        const v8sf x0 = KFN (splat) (xt[0]);
        for (int g = 0; g < G; g++)
          XP[b][g] = *(const v8sf_u *) (w + xoff[b][g]) * x0 + BIAS (bi, b, g);
        continue;
      }
      for (int g = 0; g < G; g++) {
        const float *wg = w + xoff[b][g];
        v8sf a = *(const v8sf_u *) wg * KFN (splat) (xt[0]);
        for (gsize i = 1; i < I; i++)
          a = VFMA (*(const v8sf_u *) (wg + i * wi), KFN (splat) (xt[i]), a);
        XP[b][g] = a + BIAS (bi, b, g);
      }
    } else if (xr) {
      /* the input is the previous layer's h, in registers (NB of them):
       * project_rows ()'s order per row (a plain product, k ascending,
       * then b_ih), the gates' chains side by side */
      const gsize wi = Wx->width;
      v8sf a[4];
#ifdef VLANE
#define XREG_LANE(kb, k) VLANE (xr[kb], k)
#else
#define XREG_LANE(kb, k) KFN (splat) (xr[kb][k])
#endif
      for (int g = 0; g < G; g++)
        a[g] = *(const v8sf_u *) (Wx->data + xoff[b][g]) * XREG_LANE (0, 0);
#define XREG_K(kb, k) \
      if ((kb) > 0 || (k) > 0) \
        for (int g = 0; g < G; g++) \
          a[g] = VFMA (*(const v8sf_u *) (Wx->data + xoff[b][g] \
                  + (8 * (gsize) (kb) + (k)) * wi), XREG_LANE (kb, k), a[g]);
      for (int kb = 0; kb < NB; kb++) {
        XREG_K (kb, 0);
        XREG_K (kb, 1);
        XREG_K (kb, 2);
        XREG_K (kb, 3);
        XREG_K (kb, 4);
        XREG_K (kb, 5);
        XREG_K (kb, 6);
        XREG_K (kb, 7);
      }
#undef XREG_K
#undef XREG_LANE
      for (int g = 0; g < G; g++)
        XP[b][g] = a[g] + BIAS (bi, b, g);
    } else {
      for (int g = 0; g < G; g++)
        XP[b][g] = *(const v8sf_u *) (xpt + H * g + 8 * b);
    }
  }
  /* the cells in a loop of their own, unrolled: in the projection's loop,
   * one body per block, they ran 4-9 % slower (LSTM / GRU H=32; 19 % for
   * the GRU at one sample per call) */
#pragma GCC unroll 4
  for (int b = 0; b < NB; b++)
    hn[b] = KFN (cell_math) (cell, XP[b], RP[b], &cv[b], h[b], one);
  for (int b = 0; b < NB; b++)
    h[b] = hn[b];
#undef BIAS
}

/* Step @t's outputs from h in NB registers: the h row to @row when set,
 * and the head's linear part as head_rows () (dot_row ()'s order). */
static inline __attribute__ ((always_inline)) void
KFN (hreg_emit) (const int NB, const v8sf *h, float *restrict row,
    const RecurIO *io, gsize t)
{
  if (row)
    for (int b = 0; b < NB; b++)
      *(v8sf_u *) (row + 8 * b) = h[b];
  for (gsize o = 0; io && o < io->O; o++) {
    const float *w = io->head_w + 8 * (gsize) NB * o;
    v8sf acc = *(const v8sf_u *) w * h[0];
    for (int b = 1; b < NB; b++)
      acc = VFMA (*(const v8sf_u *) (w + 8 * b), h[b], acc);
    io->y[t * io->y_stride + o] = KFN (hsum) (acc) + io->head_b[o];
  }
}

/* One stream of H = 8 NB units, @T steps (see hreg_step ()); rows as
 * recur_h8 (), the head as head_rows () (dot_row ()'s order). */
static inline __attribute__ ((always_inline)) void
KFN (recur_hreg) (const RnnCell cell, const int NB, const int one,
    const float *restrict P,
    const float *restrict bhh, const float *restrict xp, gsize xp_stride,
    gsize T, gboolean reverse, const float *restrict h0, float *restrict c,
    float *restrict out, gsize row_stride, const RecurIO *io,
    const gsize (*xoff_pre)[4])
{
  const int G = cell == RNN_CELL_LSTM ? 4 : cell == RNN_CELL_GRU ? 3 : 1;
  /* no initialiser for the whole arrays: GCC cleared them with rep stos,
   * some 60 cycles of every one-sample call */
  v8sf h[4], cv[4];
  gsize xoff_own[4][4];          /* rnn_hreg_offsets () sets the used ones */
  for (int b = 0; b < NB; b++) {
    h[b] = *(const v8sf_u *) (h0 + 8 * b);
    cv[b] = (v8sf) { 0 };
    if (cell == RNN_CELL_LSTM)
      cv[b] = *(const v8sf_u *) (c + 8 * b);
  }
  /* @xoff_pre: set up by the plan (RnnStep1.xoff), for calls of one step */
  const gsize (*xoff)[4] = xoff_pre;
  if (!xoff_pre) {
    rnn_hreg_offsets (G, NB, io ? io->w_ih : NULL, xoff_own);
    xoff = (const gsize (*)[4]) xoff_own;
  }
  for (gsize s = 0; s < T; s++) {
    const gsize t = reverse ? T - 1 - s : s;
    __asm__ ("" : "+r" (P));    /* as in recur_h8 () */
    KFN (hreg_step) (cell, NB, P, bhh, io ? io->b_ih : NULL, xoff, io,
        io ? io->x + t * io->x_stride : NULL,
        io ? NULL : xp + t * xp_stride, NULL, NULL, h, cv, one);
    KFN (hreg_emit) (NB, h, out ? out + t * row_stride : NULL, io, t);
  }
  for (int b = 0; b < NB; b++) {
    if (cell == RNN_CELL_LSTM)
      *(v8sf_u *) (c + 8 * b) = cv[b];
    if (io && io->h_final)
      *(v8sf_u *) (io->h_final + 8 * b) = h[b];
  }
}

/* Two layers of one stream, H = 8 NB units each (NB = 1 is instantiated),
 * @T steps: per step layer
 * 0's step (input projection fused) and then layer 1's, its input the new
 * h of layer 0 taken from the registers; the head from layer 1's h.  Layer
 * 1's step at t and layer 0's at t + 1 are independent chains, which the
 * processor overlaps.  The same bits as the general path (each layer's
 * operations are hreg_step ()'s). */
static inline __attribute__ ((always_inline)) void
KFN (recur_hreg2) (const RnnCell cell, const int NB, const int one,
    const RecurIO *io,
    const float *restrict P0, const float *restrict bhh0,
    const RnnPackedMatrix *W1x, const float *restrict bih1,
    const float *restrict P1, const float *restrict bhh1, gsize T,
    float *const hs[2], float *const cs[2], float *restrict out,
    gsize row_stride, const gsize (*xoff_pre)[4][4])
{
  const int G = cell == RNN_CELL_LSTM ? 4 : cell == RNN_CELL_GRU ? 3 : 1;
  v8sf h0[4], h1[4], c0[4] = { { 0 } }, c1[4] = { { 0 } };
  gsize xoff0[4][4], xoff1[4][4];
  for (int b = 0; b < NB; b++) {
    h0[b] = *(const v8sf_u *) (hs[0] + 8 * b);
    h1[b] = *(const v8sf_u *) (hs[1] + 8 * b);
    if (cell == RNN_CELL_LSTM) {
      c0[b] = *(const v8sf_u *) (cs[0] + 8 * b);
      c1[b] = *(const v8sf_u *) (cs[1] + 8 * b);
    }
  }
  /* @xoff_pre: both layers' W_ih offsets, set up by the plan (RnnStep1), for
   * calls of one step */
  const gsize (*x0)[4] = (const gsize (*)[4]) xoff0;
  const gsize (*x1)[4] = (const gsize (*)[4]) xoff1;
  if (xoff_pre) {
    x0 = xoff_pre[0];
    x1 = xoff_pre[1];
  } else {
    rnn_hreg_offsets (G, NB, io->w_ih, xoff0);
    rnn_hreg_offsets (G, NB, W1x, xoff1);
  }
  /* the four bias rows copied to the stack: read in place, as
   * recur_hreg () does, this loop ran 11 % slower (LSTM 2x8); the
   * one-step instance reads them in place (a copy per call costs more
   * than it saves in one step) */
  float bias[4][4 * 32] __attribute__ ((aligned (32)));
  const float *bp[4] = { bhh0, io->b_ih, bhh1, bih1 };
  if (!one)
    for (int q = 0; q < 4; q++) {
      for (int i = 0; i < G * NB; i++)
        *(v8sf *) (bias[q] + 8 * i) = *(const v8sf_u *) (bp[q] + 8 * i);
      bp[q] = bias[q];
    }
  for (gsize t = 0; t < T; t++) {
    __asm__ ("" : "+r" (P0), "+r" (P1));        /* as in recur_h8 () */
    KFN (hreg_step) (cell, NB, P0, bp[0], bp[1], x0, io,
        io->x + t * io->x_stride, NULL, NULL, NULL, h0, c0, one);
    KFN (hreg_step) (cell, NB, P1, bp[2], bp[3], x1, NULL, NULL, NULL, h0,
        W1x, h1, c1, one);
    KFN (hreg_emit) (NB, h1, out ? out + t * row_stride : NULL, io, t);
  }
  for (int b = 0; b < NB; b++) {
    *(v8sf_u *) (hs[0] + 8 * b) = h0[b];
    *(v8sf_u *) (hs[1] + 8 * b) = h1[b];
    if (cell == RNN_CELL_LSTM) {
      *(v8sf_u *) (cs[0] + 8 * b) = c0[b];
      *(v8sf_u *) (cs[1] + 8 * b) = c1[b];
    }
  }
}

/* Every stream of a call with H = 8, in pairs. */
static inline __attribute__ ((always_inline)) void
KFN (recur_h8_streams) (const RnnCell cell, const float *restrict P,
    const float *restrict bhh, const float *restrict xp, gsize T, gsize B,
    gboolean reverse, const float *restrict h0, gsize h0_stride,
    float *restrict c, float *restrict out, gsize row_stride,
    gsize stream_stride, const RecurIO *io)
{
  const int G = cell == RNN_CELL_LSTM ? 4 : cell == RNN_CELL_GRU ? 3 : 1;
  const gsize GH = (gsize) G * 8;
  for (gsize b = 0; b < B; b += 2) {
    const float *xpb = xp ? xp + b * GH : NULL;
    RecurIO sub;
    const RecurIO *p = io;      /* no copy for the first pair */
    if (io && b) {
      sub = *io;
      sub.x += b * io->x_sstride;
      sub.y += b * io->y_sstride;
      if (sub.h_final)
        sub.h_final += b * 8;
      p = &sub;
    }
    if (b + 2 <= B)
      KFN (recur_h8) (cell, 2, 0, P, bhh, xpb, B * GH, T, reverse,
          h0 + b * h0_stride, h0_stride, c ? c + b * 8 : NULL,
          out ? out + b * stream_stride : NULL, row_stride, stream_stride, p);
    else
      KFN (recur_h8) (cell, 1, 0, P, bhh, xpb, B * GH, T, reverse,
          h0 + b * h0_stride, h0_stride, c ? c + b * 8 : NULL,
          out ? out + b * stream_stride : NULL, row_stride, stream_stride, p);
  }
}
