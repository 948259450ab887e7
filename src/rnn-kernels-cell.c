/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Kernel family: one block of 8 hidden units at one step, as the general
 * recurrence computes it: the recurrent products from a packed panel
 * (recur_products ()), the gate arithmetic (cell_math ()) and the state
 * update (recur_update ()); and RecurIO, the fused input projection and
 * head of the register kernels.
 *
 * Part of the kernel template (rnn-kernels-template.h), which includes the
 * family files in order into one unit per instruction set; not compiled on
 * its own. */

/* One stream at one step, in two phases.
 *
 * Phase 1, per block of 8 hidden units j..j+7: the recurrent product of the
 * G gates of these units (panel: K rows of G x 8 weights, gate-stacked),
 * with the sum over k in two chains (even and odd k, added at the end) to
 * halve the dependency chain; plus b_hh.  Every stream, chunk and batch
 * size takes this same order.  Results go to @pre [block][G][8].
 * Phase 2, per block: the gate nonlinearities and the state update.
 * Keeping the phases apart lets the processor overlap the (long, serial)
 * activation chains of one block with the next block's instead of waiting
 * for each block's products. */
/* 8 weights of a panel: float32, or float16 (RNN_WEIGHTS_F16) where the
 * including file defines VLOADH (a single converting load); without it
 * the float32 copy of the rounded values is read (the same numbers). */
#ifdef VLOADH
#define PANEL_LOAD(P, P16, i) \
  ((P16) ? VLOADH ((P16) + (i)) : (v8sf) *(const v8sf_u *) ((P) + (i)))
#else
#define PANEL_LOAD(P, P16, i) ((v8sf) *(const v8sf_u *) ((P) + (i)))
#endif

static inline __attribute__ ((always_inline)) void
KFN (recur_products) (const int G, const float *restrict P,
    const guint16 *restrict P16, gsize K, const float *restrict hin,
    const float *restrict bhh, gsize H, float *restrict pre, const gsize n)
{
  v8sf a0[4], a1[4];
  for (int g = 0; g < G; g++)
    a0[g] = a1[g] = (v8sf) { 0 };
  gsize k = 0;
#define PRODUCTS_PAIR(h0, h1, i) \
  for (int g = 0; g < G; g++) { \
    a0[g] = VFMA (PANEL_LOAD (P, P16, (i) + 8 * g), (h0), a0[g]); \
    a1[g] = VFMA (PANEL_LOAD (P, P16, (i) + G * 8 + 8 * g), (h1), a1[g]); \
  }
#ifdef VLOADH
  /* float16: a loop of its own, eight k per iteration; in the loop shared
   * with float32 GCC tested P16 before every pair of loads and spent some
   * 30 instructions per eight FMAs (2x float32's per step at H=64, bound
   * by the instruction rate) */
  if (P16) {
    for (; k + 8 <= K; k += 8) {
      const gsize i = k * (gsize) G * 8;
      for (int kk = 0; kk < 8; kk += 2)
        for (int g = 0; g < G; g++) {
          a0[g] = VFMA (VLOADH (P16 + i + kk * G * 8 + 8 * g),
              KFN (splat) (hin[k + kk]), a0[g]);
          a1[g] = VFMA (VLOADH (P16 + i + (kk + 1) * G * 8 + 8 * g),
              KFN (splat) (hin[k + kk + 1]), a1[g]);
        }
    }
  }
#endif
#ifdef VLANE
  /* eight h values per vector load, their lanes spread by shuffles: eight
   * broadcast loads per eight k would make the loads (one per FMA already
   * for the weights) the bound.  Not with float16 weights, whose
   * conversions already load the shuffle pipes (5-20 % slower). */
  for (; !P16 && k + 8 <= K; k += 8) {
    const v8sf hv = *(const v8sf_u *) (hin + k);
    const gsize i = k * (gsize) G * 8;
    PRODUCTS_PAIR (VLANE (hv, 0), VLANE (hv, 1), i);
    PRODUCTS_PAIR (VLANE (hv, 2), VLANE (hv, 3), i + 2 * G * 8);
    PRODUCTS_PAIR (VLANE (hv, 4), VLANE (hv, 5), i + 4 * G * 8);
    PRODUCTS_PAIR (VLANE (hv, 6), VLANE (hv, 7), i + 6 * G * 8);
  }
#endif
  for (; k + 2 <= K; k += 2) {
    const gsize i = k * (gsize) G * 8;
    PRODUCTS_PAIR (KFN (splat) (hin[k]), KFN (splat) (hin[k + 1]), i);
  }
#undef PRODUCTS_PAIR
  if (k < K) {
    const gsize i = k * (gsize) G * 8;
    const v8sf h0 = KFN (splat) (hin[k]);
    for (int g = 0; g < G; g++)
      a0[g] = VFMA (PANEL_LOAD (P, P16, i + 8 * g), h0, a0[g]);
  }
  for (int g = 0; g < G; g++)
    *(v8sf *) (pre + 8 * g) = (a0[g] + a1[g]) + KFN (load) (bhh + g * H, n);
}

/* The gate arithmetic of one block: x projection XP[g] and recurrent sum
 * (b_hh included) RP[g] per gate, the previous h (GRU) and c (LSTM, in and
 * out); returns the new h. */
static inline __attribute__ ((always_inline)) v8sf
KFN (cell_math) (const RnnCell cell, const v8sf *XP, const v8sf *RP,
    v8sf *c, v8sf hold, const int one)
{
  switch (cell) {
    case RNN_CELL_RNN_TANH:
      return KFN (vtanh_exp) (XP[0] + RP[0]);
    case RNN_CELL_RNN_RELU:
      return KFN (vmax) (XP[0] + RP[0], (v8sf) { 0 });
    case RNN_CELL_LSTM:{
      const v8sf i = KFN (vsigmoid_fast) (XP[0] + RP[0], one);
      const v8sf f = KFN (vsigmoid_fast) (XP[1] + RP[1], one);
      const v8sf gg = KFN (vtanh_fast) (XP[2] + RP[2], one);
      const v8sf o = KFN (vsigmoid_fast) (XP[3] + RP[3], one);
      const v8sf cn = f * *c + i * gg;
      *c = cn;
      return o * KFN (vtanh_fast) (cn, one);
    }
    case RNN_CELL_GRU:
    default:{
      /* b_hn stays inside r * (W_hn h + b_hn) */
      /* Estrin's tanh (vtanh_fast_short ()) */
      const v8sf r = KFN (vsigmoid_fast_short) (XP[0] + RP[0], one);
      const v8sf z = KFN (vsigmoid_fast_short) (XP[1] + RP[1], one);
      const v8sf ng = KFN (vtanh_fast_short) (XP[2] + r * RP[2], one);
      return ((v8sf) { 1, 1, 1, 1, 1, 1, 1, 1 } - z) * ng + z * hold;
    }
  }
}

static inline __attribute__ ((always_inline)) void
KFN (recur_update) (const RnnCell cell, const float *restrict pre,
    const float *restrict xp, gsize H, float *restrict c,
    const float *restrict hold, float *restrict ho, const gsize n)
{
  const int G = cell == RNN_CELL_LSTM ? 4 : cell == RNN_CELL_GRU ? 3 : 1;
  v8sf XP[4], RP[4], cv = { 0 }, hv = { 0 };
  for (int g = 0; g < G; g++) {
    XP[g] = KFN (load) (xp + g * H, n);
    RP[g] = *(const v8sf *) (pre + 8 * g);
  }
  if (cell == RNN_CELL_LSTM)
    cv = KFN (load) (c, n);
  if (cell == RNN_CELL_GRU)
    hv = KFN (load) (hold, n);
  /* (the activations' constants from act_tab in step1_one (): 0.98-0.99x
   * at H=64) */
  const v8sf hn = KFN (cell_math) (cell, XP, RP, &cv, hv, 0);
  if (cell == RNN_CELL_LSTM)
    KFN (store) (c, cv, n);
  KFN (store) (ho, hn, n);
}

/* With @io set (RecurIO), the input projection and the head's linear part
 * are computed in the step loop instead of read from @xp and left to a
 * later pass: each is project_rows ()'s arithmetic for its row (products in
 * k order, the first a plain product, then the bias), so the bits are the
 * same; off the step's critical path, they cost less than the two passes
 * over memory (the per-sample audio model: one input, one output). */
typedef struct {
  const RnnPackedMatrix *w_ih;  /* [G*8][I], one panel of width G*8 */
  const float *b_ih;
  const float *x;               /* [T][streams] rows of I */
  gsize x_stride, x_sstride;    /* per step, per stream */
  const float *head_w;          /* [O][8] as stored */
  gsize O;                      /* 0: no head */
  const float *head_b;
  float *y;                     /* [T][streams] rows of O */
  gsize y_stride, y_sstride;
  float *h_final;               /* [streams][8]: the last h, or NULL */
} RecurIO;
