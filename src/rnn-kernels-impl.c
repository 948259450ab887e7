/* Kernel template: included by rnn-kernels-generic.c and rnn-kernels-avx2.c,
 * which define KERNEL_SUFFIX and compile it with their own flags.
 *
 * Activations are vectorised here (GCC/Clang vector extensions, 8 lanes)
 * instead of calling libm's expf/tanhf per element: at H=128 the scalar
 * calls cost more than the whole recurrent product.  Two families: the
 * exponential-based ones (Cephes' single-precision exp: range reduction by
 * ln 2 and a degree-5 polynomial, within a few ulp of libm) for the Elman
 * tanh cell and training, and a rational tanh (scripts/fit-tanh.py) for the
 * LSTM and GRU gates, whose latency bounds a step; the parity tests hold
 * both to PyTorch.
 * Never compile this with -ffinite-math-only: the element's non-finite
 * policy relies on NaN comparisons elsewhere, and clamps here must stay
 * well-defined. */
#include "rnn-kernels.h"

#include <string.h>

#define KCAT2(a, b) a##_##b
#define KCAT(a, b) KCAT2 (a, b)
#define KFN(name) KCAT (name, KERNEL_SUFFIX)

typedef float v8sf __attribute__ ((vector_size (32)));
typedef gint32 v8si __attribute__ ((vector_size (32)));
typedef float v4sf __attribute__ ((vector_size (16)));
/* unaligned access to 8 floats */
typedef float v8sf_u __attribute__ ((vector_size (32), aligned (4), may_alias));

static inline v8sf
KFN (splat) (float v)
{
  return (v8sf) { v, v, v, v, v, v, v, v };
}

#define S(v) KFN (splat) (v)

/* min and max with the semantics of x86's minps/maxps: the second operand
 * when either is NaN.  The including file may define VMIN/VMAX/VFLOOR as
 * single instructions. */
static inline v8sf
KFN (vmin) (v8sf a, v8sf b)
{
#ifdef VMIN
  return VMIN (a, b);
#else
  const v8si lt = (v8si) (a < b);
  return (v8sf) (((v8si) a & lt) | ((v8si) b & ~lt));
#endif
}

static inline v8sf
KFN (vmax) (v8sf a, v8sf b)
{
#ifdef VMAX
  return VMAX (a, b);
#else
  const v8si gt = (v8si) (a > b);
  return (v8sf) (((v8si) a & gt) | ((v8si) b & ~gt));
#endif
}

/* floor, for |x| < 2^31 */
static inline v8sf
KFN (vfloor) (v8sf x)
{
#ifdef VFLOOR
  return VFLOOR (x);
#else
  v8sf t = __builtin_convertvector (__builtin_convertvector (x, v8si), v8sf);
  return t - (v8sf) ((v8si) (t > x) & (v8si) KFN (splat) (1.0f));
#endif
}

/* e^x - 1 split as 2^n (1 + q) - 1: returns q = e^r - 1 (r = x - n ln 2,
 * |r| <= ln 2 / 2) and s = 2^n.  Cephes' single-precision exp: range
 * reduction by ln 2 in two parts and a degree-5 polynomial, within a few
 * ulp of libm; q keeps its relative precision near 0. */
static inline __attribute__ ((always_inline)) void
KFN (vexp_parts) (v8sf x, v8sf *q, v8sf *s)
{
  x = KFN (vmin) (KFN (vmax) (x, S (-88.3762626647949f)), S (88.3762626647949f));
  /* n = floor (x / ln 2 + 0.5) */
  const v8sf fl = KFN (vfloor) (VFMA (x, S (1.44269504088896341f), S (0.5f)));
  v8sf r = VFMA (fl, S (-0.693359375f), x);
  r = VFMA (fl, S (2.12194440e-4f), r);
  v8sf p = S (1.9875691500e-4f);
  p = VFMA (p, r, S (1.3981999507e-3f));
  p = VFMA (p, r, S (8.3334519073e-3f));
  p = VFMA (p, r, S (4.1665795894e-2f));
  p = VFMA (p, r, S (1.6666665459e-1f));
  p = VFMA (p, r, S (5.0000001201e-1f));
  *q = VFMA (p, r * r, r);
  /* 2^n, built in the exponent field */
  *s = (v8sf) ((__builtin_convertvector (fl, v8si) + 127) << 23);
}

static inline v8sf
KFN (vexp) (v8sf x)
{
  v8sf q, s;
  KFN (vexp_parts) (x, &q, &s);
  return VFMA (q, s, s);
}

static inline v8sf
KFN (vsigmoid_exp) (v8sf x)
{
  return S (1.0f) / (S (1.0f) + KFN (vexp) (-x));
}

/* tanh x = (e^2x - 1) / (e^2x + 1), with e^2x - 1 computed as above so
 * that small |x|, where tanh RNNs carry relative precision over many steps,
 * keeps it; one exponential and one division, no branch. */
static inline v8sf
KFN (vtanh_exp) (v8sf x)
{
  v8sf q, s;
  KFN (vexp_parts) (x + x, &q, &s);
  /* 2^n (1 + q) - 1, exact in the last step: 2^n - 1 is exact for the
   * n that occur (|n| <= 128, and 2^n - 1 rounds to -1 below 2^-25) */
  const v8sf em1 = VFMA (q, s, s - S (1.0f));
  return em1 / (em1 + S (2.0f));
}

/* The activations' constants as vectors in memory, for the one-step
 * instances (@one below): read through a pointer hidden from the compiler,
 * each is a memory operand of the instruction that uses it.  Otherwise
 * GCC broadcasts each from a 4-byte constant into a register where it is
 * used, an instruction more for every constant of every activation at
 * every call of one sample (LSTM H=8 and 16: 1.04-1.12x at one sample per
 * call).  The looped instances keep the literals, which GCC hoists out of
 * the loop into registers (the table there: 0.90x for 8 streams of H=8,
 * 0.97x at H=128). */
#define C8(v) { v, v, v, v, v, v, v, v }
static const v8sf KFN (act_tab)[13] __attribute__ ((aligned (32))) = {
  C8 (-9.0f), C8 (9.0f),
  C8 (1.318402520e-08f), C8 (2.047166838e-05f), C8 (3.486571181e-03f),
  C8 (1.337318838e-01f), C8 (9.999999063e-01f),
  C8 (7.702576703e-07f), C8 (3.271368481e-04f), C8 (2.584193751e-02f),
  C8 (4.670648522e-01f), C8 (1.0f), C8 (0.5f) };
#undef C8

/* constant @i of act_tab (value @v) from the table when @one, else the
 * literal; @t: the table's hidden address */
#define AC(i, v) (one ? t[i] : S (v))
#define ACT_TAB \
  const v8sf *t = KFN (act_tab); \
  if (one) \
    __asm__ volatile ("" : "+r" (t))

/* tanh x ~ x P(x^2) / Q(x^2) on |x| <= 9 (beyond it tanh rounds to +-1 in
 * float), P and Q of degree 4 with positive coefficients (so both evaluate
 * to within an ulp or two), fitted for this kernel by scripts/fit-tanh.py
 * (near-minimax absolute error), which also measures this evaluation
 * against tanh in double: at most 3.1e-7 (about 5 ulp, near |x| = 8.8),
 * mean 0.8 ulp; relative precision near 0 is kept (tanh RNNs carry it
 * over many steps).  Cheaper than an exponential and a division.
 * Horner's scheme, not Estrin's: a chain six cycles longer, but no z^2
 * and z^4, and each step takes its coefficient as a memory operand where
 * Estrin's pairs need one of theirs loaded into a register: 3-5 fewer
 * instructions per tanh, each a result fewer.  Every floating-point
 * result holds a physical register until it retires, and with the
 * register file full the processor stops taking instructions (dispatch
 * stalled on it 22-34 % of the cycles of an LSTM step at H = 16-32):
 * fewer results let it look further ahead.  Against Estrin's, for the
 * LSTM: 1.02-1.03x at H = 32-64, 1.06x for 8 streams of H=32, 1.01x at
 * H = 8-16, and as accurate (the GRU keeps Estrin's, vtanh_fast_short ()). */
static inline v8sf
KFN (vtanh_fast) (v8sf x, const int one)
{
  ACT_TAB;
  x = KFN (vmin) (KFN (vmax) (x, AC (0, -9.0f)), AC (1, 9.0f));
  const v8sf z = x * x;
  v8sf p = VFMA (z, AC (2, 1.318402520e-08f), AC (3, 2.047166838e-05f));
  p = VFMA (p, z, AC (4, 3.486571181e-03f));
  p = VFMA (p, z, AC (5, 1.337318838e-01f));
  p = VFMA (p, z, AC (6, 9.999999063e-01f));
  v8sf q = VFMA (z, AC (7, 7.702576703e-07f), AC (8, 3.271368481e-04f));
  q = VFMA (q, z, AC (9, 2.584193751e-02f));
  q = VFMA (q, z, AC (10, 4.670648522e-01f));
  q = VFMA (q, z, AC (11, 1.0f));
  return (x * p) / q;
}

/* vtanh_fast ()'s function by Estrin's scheme, a chain six cycles shorter:
 * for the GRU, whose r and n activations follow each other on the step's
 * critical path.  With Horner's there the GRU ran 0.97x at H = 8-16 and
 * 1.02x at H = 32-64; Horner's for its z gate alone changed nothing. */
static inline v8sf
KFN (vtanh_fast_short) (v8sf x, const int one)
{
  ACT_TAB;
  x = KFN (vmin) (KFN (vmax) (x, AC (0, -9.0f)), AC (1, 9.0f));
  const v8sf z = x * x, z2 = z * z, z4 = z2 * z2;
  const v8sf p = VFMA (z4, AC (2, 1.318402520e-08f),
      VFMA (z2, VFMA (z, AC (3, 2.047166838e-05f), AC (4, 3.486571181e-03f)),
          VFMA (z, AC (5, 1.337318838e-01f), AC (6, 9.999999063e-01f))));
  const v8sf q = VFMA (z4, AC (7, 7.702576703e-07f),
      VFMA (z2, VFMA (z, AC (8, 3.271368481e-04f), AC (9, 2.584193751e-02f)),
          VFMA (z, AC (10, 4.670648522e-01f), AC (11, 1.0f))));
  return (x * p) / q;
}

/* sigmoid x = (1 + tanh (x/2)) / 2 */
static inline v8sf
KFN (vsigmoid_fast) (v8sf x, const int one)
{
  ACT_TAB;
  return VFMA (KFN (vtanh_fast) (x * AC (12, 0.5f), one), AC (12, 0.5f),
      AC (12, 0.5f));
}

static inline v8sf
KFN (vsigmoid_fast_short) (v8sf x, const int one)
{
  ACT_TAB;
  return VFMA (KFN (vtanh_fast_short) (x * AC (12, 0.5f), one),
      AC (12, 0.5f), AC (12, 0.5f));
}

#undef ACT_TAB
#undef AC
#undef S

/* Loads 8 floats from p (only the first n < 8 when short), zero-padded. */
static inline v8sf
KFN (load) (const float *p, gsize n)
{
  if (n >= 8)
    return *(const v8sf_u *) p;
  v8sf v = { 0 };
  memcpy (&v, p, n * sizeof (float));
  return v;
}

static inline void
KFN (store) (float *p, v8sf v, gsize n)
{
  if (n >= 8)
    *(v8sf_u *) p = v;
  else
    memcpy (p, &v, n * sizeof (float));
}

/* The lanes of @acc summed in a fixed tree: ((0+4) + (2+6)) + ((1+5) + (3+7)). */
static inline float
KFN (hsum) (v8sf acc)
{
  const v4sf t = __builtin_shufflevector (acc, acc, 0, 1, 2, 3)
      + __builtin_shufflevector (acc, acc, 4, 5, 6, 7);
  const v4sf u = t + __builtin_shufflevector (t, t, 2, 3, 2, 3);
  return u[0] + u[1];
}

/* h · w over K values: lane j sums k = j, j+8, ... in k order (the first a
 * plain product), then hsum (). */
static inline float
KFN (dot_row) (const float *restrict h, const float *restrict w, gsize K)
{
  const gsize n0 = MIN (8, K);
  v8sf acc = KFN (load) (w, n0) * KFN (load) (h, n0);
  for (gsize k = 8; k < K; k += 8) {
    const gsize n = MIN (8, K - k);
    acc = VFMA (KFN (load) (w + k, n), KFN (load) (h + k, n), acc);
  }
  return KFN (hsum) (acc);
}

void KFN (head_rows) (float *y, gsize ldy, const float *h, gsize ldh,
    const float *W, const float *b, gsize M, gsize O, gsize K);

/* The head's linear part, y[m][o] = h[m] · W[o] + b[o] (W [O][K] as
 * stored): one dot_row () per output.  Its dependency chain is K/8 long
 * where the panel form's (one output per lane, k in turn) was K: at one
 * step per call that chain was exposed, 128 cycles at H = 32. */
void
KFN (head_rows) (float *y, gsize ldy, const float *h, gsize ldh,
    const float *W, const float *b, gsize M, gsize O, gsize K)
{
  for (gsize m = 0; m < M; m++)
    for (gsize o = 0; o < O; o++)
      y[m * ldy + o] = KFN (dot_row) (h + m * ldh, W + o * K, K) + b[o];
}

/* acc += w * a: fused where the instruction set has FMA (VFMA is defined by
 * the including file), so that every path of a build rounds alike. */

/* One row against one panel of @nacc x 8 columns, accumulators in
 * registers: c = a · P + bias for the first @ncols columns. */
static inline __attribute__ ((always_inline)) void
KFN (panel_row1) (float *restrict c, const float *restrict a,
    const float *restrict P, const float *restrict bias, gsize ncols, gsize K,
    const int nacc)
{
  const gsize w = (gsize) nacc * 8;
  v8sf acc[8];
  v8sf av = KFN (splat) (a[0]);
  for (int q = 0; q < nacc; q++)
    acc[q] = *(const v8sf_u *) (P + 8 * q) * av;
  for (gsize k = 1; k < K; k++) {
    const float *p = P + k * w;
    av = KFN (splat) (a[k]);
    for (int q = 0; q < nacc; q++)
      acc[q] = VFMA (*(const v8sf_u *) (p + 8 * q), av, acc[q]);
  }
  for (int q = 0; q < nacc && (gsize) q * 8 < ncols; q++) {
    const gsize n = MIN (8, ncols - (gsize) q * 8);
    KFN (store) (c + 8 * q, acc[q] + KFN (load) (bias + 8 * q, n), n);
  }
}

/* Four rows against 8 or 16 columns of a panel of width @w. */
static inline __attribute__ ((always_inline)) void
KFN (panel_row4) (float *restrict c, gsize ldc, const float *restrict a,
    gsize lda, const float *restrict P, gsize w, const float *restrict bias,
    gsize ncols, gsize K, const int nacc)
{
  v8sf acc[4][2];
  for (int r = 0; r < 4; r++) {
    const v8sf av = KFN (splat) (a[r * lda]);
    for (int q = 0; q < nacc; q++)
      acc[r][q] = *(const v8sf_u *) (P + 8 * q) * av;
  }
  for (gsize k = 1; k < K; k++) {
    const float *p = P + k * w;
    const v8sf w0 = *(const v8sf_u *) p;
    const v8sf w1 = nacc > 1 ? (v8sf) *(const v8sf_u *) (p + 8) : w0;
    for (int r = 0; r < 4; r++) {
      const v8sf av = KFN (splat) (a[r * lda + k]);
      acc[r][0] = VFMA (w0, av, acc[r][0]);
      if (nacc > 1)
        acc[r][1] = VFMA (w1, av, acc[r][1]);
    }
  }
  for (int q = 0; q < nacc && (gsize) q * 8 < ncols; q++) {
    const gsize n = MIN (8, ncols - (gsize) q * 8);
    const v8sf b = KFN (load) (bias + 8 * q, n);
    for (int r = 0; r < 4; r++)
      KFN (store) (c + r * ldc + 8 * q, acc[r][q] + b, n);
  }
}

void KFN (project_rows) (float *C, const float *A, const RnnPackedMatrix *W,
    const float *bias, gsize M);

void
KFN (project_rows) (float *C, const float *A, const RnnPackedMatrix *W,
    const float *bias, gsize M)
{
  const gsize K = W->K, N = W->N, w = W->width;
  for (gsize pn = 0; pn < W->n_panels; pn++) {
    const gsize col0 = pn * w, ncols = MIN (w, N - col0);
    const float *P = W->data + pn * K * w;
    gsize m = 0;
    /* blocks of four rows, 16 columns at a time, share each weight load */
    for (; m + 4 <= M; m += 4)
      for (gsize s = 0; s < ncols; s += 16) {
        float *c = C + m * N + col0 + s;
        const float *a = A + m * K;
        if (ncols - s > 8)
          KFN (panel_row4) (c, N, a, K, P + s, w, bias + col0 + s, ncols - s, K, 2);
        else
          KFN (panel_row4) (c, N, a, K, P + s, w, bias + col0 + s, ncols - s, K, 1);
      }
    for (; m < M; m++) {
      float *c = C + m * N + col0;
      const float *a = A + m * K, *b = bias + col0;
      switch (w / 8) {
        case 1: KFN (panel_row1) (c, a, P, b, ncols, K, 1); break;
        case 2: KFN (panel_row1) (c, a, P, b, ncols, K, 2); break;
        case 3: KFN (panel_row1) (c, a, P, b, ncols, K, 3); break;
        case 4: KFN (panel_row1) (c, a, P, b, ncols, K, 4); break;
        case 5: KFN (panel_row1) (c, a, P, b, ncols, K, 5); break;
        case 6: KFN (panel_row1) (c, a, P, b, ncols, K, 6); break;
        case 7: KFN (panel_row1) (c, a, P, b, ncols, K, 7); break;
        default: KFN (panel_row1) (c, a, P, b, ncols, K, 8); break;
      }
    }
  }
}

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
  /* (the activations' constants from act_tab in recur1_step1 (): 0.98-0.99x
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
   * measured since the LSTM's tanh became Horner's (6b506a2).  The
   * compiler's choice: GRU H=16 with its input fused (@io) 1.06-1.10x (in
   * buffers, at one sample per call and for 8 streams), Elman H=32
   * 1.05-1.06x (one or two layers); VLANE: LSTM H = 16-32 (the other way
   * 0.88-0.96x), GRU H=32 (0.86x at one sample per call), GRU H=16 fed
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
  /* @xoff_pre: set up at seal (RnnStep1.xoff), for calls of one step */
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
  /* @xoff_pre: both layers' W_ih offsets, set up at seal (RnnStep1), for
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

/* Elman cells (one gate): four blocks at once, so that eight chains are in
 * flight as with the four gates of an LSTM block (one block alone keeps
 * only two and waits on them).  Per block the same operations as
 * recur_products(). */
static inline __attribute__ ((always_inline)) void
KFN (recur_products_x4) (const float *restrict P, const guint16 *restrict P16,
    gsize panel, gsize K, const float *restrict hin,
    const float *restrict bhh, float *restrict pre)
{
  v8sf a0[4], a1[4];
  const float *Pb[4];
  const guint16 *Pb16[4];
  for (int b = 0; b < 4; b++) {
    a0[b] = a1[b] = (v8sf) { 0 };
    Pb[b] = P + b * panel;
    Pb16[b] = P16 ? P16 + b * panel : NULL;
  }
  (void) Pb16;                  /* unused where PANEL_LOAD ignores float16 */
  gsize k = 0;
#define PRODUCTS_PAIR(h0, h1, k) \
  for (int b = 0; b < 4; b++) { \
    a0[b] = VFMA (PANEL_LOAD (Pb[b], Pb16[b], (k) * 8), (h0), a0[b]); \
    a1[b] = VFMA (PANEL_LOAD (Pb[b], Pb16[b], (k) * 8 + 8), (h1), a1[b]); \
  }
#ifdef VLOADH
  /* float16: a loop of its own, as in recur_products () */
  if (P16)
    for (; k + 8 <= K; k += 8)
      for (int kk = 0; kk < 8; kk += 2)
        for (int b = 0; b < 4; b++) {
          a0[b] = VFMA (VLOADH (Pb16[b] + (k + kk) * 8),
              KFN (splat) (hin[k + kk]), a0[b]);
          a1[b] = VFMA (VLOADH (Pb16[b] + (k + kk) * 8 + 8),
              KFN (splat) (hin[k + kk + 1]), a1[b]);
        }
#endif
#ifdef VLANE
  /* as in recur_products () */
  for (; !P16 && k + 8 <= K; k += 8) {
    const v8sf hv = *(const v8sf_u *) (hin + k);
    PRODUCTS_PAIR (VLANE (hv, 0), VLANE (hv, 1), k);
    PRODUCTS_PAIR (VLANE (hv, 2), VLANE (hv, 3), k + 2);
    PRODUCTS_PAIR (VLANE (hv, 4), VLANE (hv, 5), k + 4);
    PRODUCTS_PAIR (VLANE (hv, 6), VLANE (hv, 7), k + 6);
  }
#endif
  for (; k + 2 <= K; k += 2)
    PRODUCTS_PAIR (KFN (splat) (hin[k]), KFN (splat) (hin[k + 1]), k);
#undef PRODUCTS_PAIR
  if (k < K) {
    const v8sf h0 = KFN (splat) (hin[k]);
    for (int b = 0; b < 4; b++)
      a0[b] = VFMA (PANEL_LOAD (Pb[b], Pb16[b], k * 8), h0, a0[b]);
  }
  for (int b = 0; b < 4; b++)
    *(v8sf *) (pre + 8 * b) = (a0[b] + a1[b]) + *(const v8sf_u *) (bhh + 8 * b);
}

#ifdef VLOADH
/* GRU with float16 weights: two blocks at once.  One block's six chains
 * (three gates, even and odd k) kept 1.5 FMAs per cycle in flight, and a
 * block's products are too long for the processor to overlap the next
 * block's; twelve chains also share each broadcast h value between six
 * FMAs.  Per block the operations of recur_products (). */
static inline __attribute__ ((always_inline)) void
KFN (recur_products_gru16) (const guint16 *restrict P16, gsize panel,
    gsize K, const float *restrict hin, const float *restrict bhh, gsize H,
    float *restrict pre)
{
  v8sf a0[2][3], a1[2][3];
  for (int b = 0; b < 2; b++)
    for (int g = 0; g < 3; g++)
      a0[b][g] = a1[b][g] = (v8sf) { 0 };
  gsize k = 0;
  for (; k + 2 <= K; k += 2) {
    const v8sf h0 = KFN (splat) (hin[k]), h1 = KFN (splat) (hin[k + 1]);
    for (int b = 0; b < 2; b++)
      for (int g = 0; g < 3; g++) {
        const guint16 *p = P16 + b * panel + k * 24 + 8 * g;
        a0[b][g] = VFMA (VLOADH (p), h0, a0[b][g]);
        a1[b][g] = VFMA (VLOADH (p + 24), h1, a1[b][g]);
      }
  }
  if (k < K) {
    const v8sf h0 = KFN (splat) (hin[k]);
    for (int b = 0; b < 2; b++)
      for (int g = 0; g < 3; g++)
        a0[b][g] = VFMA (VLOADH (P16 + b * panel + k * 24 + 8 * g), h0,
            a0[b][g]);
  }
  for (int b = 0; b < 2; b++)
    for (int g = 0; g < 3; g++)
      *(v8sf *) (pre + 24 * b + 8 * g) = (a0[b][g] + a1[b][g])
          + *(const v8sf_u *) (bhh + g * H + 8 * b);
}
#endif

/* Phase 1 of one stream at one step: all its blocks' products into @pre
 * (G * ceil(H/8) * 8 floats, 32-byte aligned). */
static inline __attribute__ ((always_inline)) void
KFN (stream_products) (const int G, const int half,
    const RnnPackedMatrix *restrict W, const float *restrict bhh, gsize H,
    const float *restrict hin, float *restrict pre, const gboolean back)
{
  const gsize K = W->K, panel = K * (gsize) G * 8, full = H / 8 * 8;
  /* units of blocks: four at once for Elman cells, two for the float16
   * GRU, else one; then single blocks, then a partial one */
#ifdef VLOADH
  const gboolean gru16 = G == 3 && half;
#else
  const gboolean gru16 = FALSE;
#endif
  const gsize uw = G == 1 ? 32 : gru16 ? 16 : 8, wide = full / uw * uw;
#define UNIT(j, w) \
  G_STMT_START { \
    const gsize j_ = (j); \
    const float *P_ = W->data + j_ / 8 * panel; \
    const guint16 *P16_ = half ? W->half + j_ / 8 * panel : NULL; \
    if ((w) == 32) \
      KFN (recur_products_x4) (P_, P16_, panel, K, hin, bhh + j_, pre + j_); \
    else if ((w) == 16) \
      UNIT_GRU16 (j_); \
    else \
      KFN (recur_products) (G, P_, P16_, K, hin, bhh + j_, H, pre + j_ * G, \
          MIN (8, H - j_)); \
  } G_STMT_END
#ifdef VLOADH
#define UNIT_GRU16(j) \
  KFN (recur_products_gru16) (W->half + (j) / 8 * panel, panel, K, hin, \
      bhh + (j), H, pre + (j) * G)
#else
#define UNIT_GRU16(j) g_assert_not_reached ()
#endif
  /* @back: the blocks in reverse order (every other step), so that a step
   * starts with the panels the previous one read last, still in L1; in
   * one direction a W_hh larger than the cache misses on every panel
   * (least recently used goes first).  Each block's arithmetic is the
   * same either way.  Float32 only: with float16 weights (LSTM H=256,
   * 512 KB) and for the stream groups it measured 0.92-1.05x, in
   * float32 for one stream 1.02-1.10x. */
  if (!back) {
    for (gsize j = 0; j < wide; j += uw)
      UNIT (j, uw);
    for (gsize j = wide; j < full; j += 8)
      UNIT (j, 8);
    if (full < H)
      UNIT (full, 8);
  } else {
    if (full < H)
      UNIT (full, 8);
    for (gsize j = full; j > wide; j -= 8)
      UNIT (j - 8, 8);
    for (gsize j = wide; j > 0; j -= uw)
      UNIT (j - uw, uw);
  }
#undef UNIT_GRU16
#undef UNIT
}

/* Phase 1 for S = 2 to 4 streams at once, gates g0 .. g0+NG-1 of one
 * block: each weight loaded once for all S (at H >= 64 a step is bound by
 * streaming W_hh from L2; this divides that traffic by S), and each
 * broadcast h value used for NG gates.  Four streams gate by gate took a
 * broadcast per FMA and 25 % more instructions (LSTM, 8 streams); the
 * tiles recur_products_s () picks keep the 2 S NG accumulators within the
 * registers.  Per stream the operations and their order are those of
 * recur_products() (even and odd k in two chains, then b_hh), so the
 * results are the same bits. */
static inline __attribute__ ((always_inline)) void
KFN (recur_products_tile) (const int G, const int S, const int g0,
    const int NG, const float *restrict P, const guint16 *restrict P16,
    gsize K, const float *const hin[4], const float *restrict bhh, gsize H,
    float *const pre[4], const gsize n)
{
  v8sf a0[4][3], a1[4][3];
  for (int s = 0; s < S; s++)
    for (int q = 0; q < NG; q++)
      a0[s][q] = a1[s][q] = (v8sf) { 0 };
  gsize k = 0;
#define TILE_K(acc, kk, LOAD) \
  G_STMT_START { \
    const gsize i_ = (kk) * (gsize) G * 8 + 8 * g0; \
    v8sf w_[3]; \
    for (int q = 0; q < NG; q++) \
      w_[q] = LOAD (i_ + 8 * q); \
    for (int s = 0; s < S; s++) { \
      const v8sf hk_ = KFN (splat) (hin[s][kk]); \
      for (int q = 0; q < NG; q++) \
        acc[s][q] = VFMA (w_[q], hk_, acc[s][q]); \
    } \
  } G_STMT_END
  /* the weight format tested once, not per load (as recur_products ()) */
#define TILE_LOOP(LOAD) \
  G_STMT_START { \
    for (; k + 2 <= K; k += 2) { \
      TILE_K (a0, k, LOAD); \
      TILE_K (a1, k + 1, LOAD); \
    } \
    if (k < K) \
      TILE_K (a0, k, LOAD); \
  } G_STMT_END
#define TILE_F32(i) ((v8sf) *(const v8sf_u *) (P + (i)))
#ifdef VLOADH
#define TILE_F16(i) VLOADH (P16 + (i))
  if (P16)
    TILE_LOOP (TILE_F16);
  else
#undef TILE_F16
#endif
    TILE_LOOP (TILE_F32);
#undef TILE_F32
#undef TILE_LOOP
#undef TILE_K
  for (int q = 0; q < NG; q++) {
    const v8sf b = KFN (load) (bhh + (g0 + q) * H, n);
    for (int s = 0; s < S; s++)
      *(v8sf *) (pre[s] + 8 * (g0 + q)) = (a0[s][q] + a1[s][q]) + b;
  }
}

/* S streams' products for one block, in tiles: LSTM gates 0-1 and 2-3;
 * GRU 0-1 and 2, or all three for two streams; Elman's one gate (S = 4
 * there). */
static inline __attribute__ ((always_inline)) void
KFN (recur_products_s) (const int G, const int S, const float *restrict P,
    const guint16 *restrict P16, gsize K, const float *const hin[4],
    const float *restrict bhh, gsize H, float *const pre[4], const gsize n)
{
  if (G == 3 && S == 2) {
    /* the three gates of two streams: twelve accumulators */
    KFN (recur_products_tile) (G, S, 0, 3, P, P16, K, hin, bhh, H, pre, n);
    return;
  }
  if (G >= 2)
    KFN (recur_products_tile) (G, S, 0, 2, P, P16, K, hin, bhh, H, pre, n);
  if (G == 4)
    KFN (recur_products_tile) (G, S, 2, 2, P, P16, K, hin, bhh, H, pre, n);
  if (G == 3)
    KFN (recur_products_tile) (G, S, 2, 1, P, P16, K, hin, bhh, H, pre, n);
  if (G == 1)
    KFN (recur_products_tile) (G, S, 0, 1, P, P16, K, hin, bhh, H, pre, n);
}

/* Phase 2 of one stream at one step: activations and state update. */
static inline __attribute__ ((always_inline)) void
KFN (stream_update) (const RnnCell cell, const int G, const float *restrict pre,
    const float *restrict xp, gsize H, const float *restrict hin,
    float *restrict c, float *restrict ho)
{
  const gsize full = H / 8 * 8;
  for (gsize j = 0; j < full; j += 8)
    KFN (recur_update) (cell, pre + j * G, xp + j, H, c ? c + j : NULL,
        hin + j, ho + j, 8);
  if (full < H)
    KFN (recur_update) (cell, pre + full * G, xp + full, H,
        c ? c + full : NULL, hin + full, ho + full, H - full);
}

/* One case per cell: the kernels are instantiated per cell (and weight
 * format or size, @A), so that the gate count and the arithmetic are
 * constants inside their loops. */
#define CELL_SWITCH(cell, CASE, A) \
  switch (cell) { \
    CASE (RNN_CELL_RNN_TANH, A); \
    CASE (RNN_CELL_RNN_RELU, A); \
    CASE (RNN_CELL_LSTM, A); \
    CASE (RNN_CELL_GRU, A); \
  }

/* CASE per cell and per block count NB = H / 8 (H = 16, 24 or 32) */
#define HREG_SIZES(cell, H, CASE) \
  G_STMT_START { \
    if ((H) == 16) \
      CELL_SWITCH (cell, CASE, 2) \
    else if ((H) == 24) \
      CELL_SWITCH (cell, CASE, 3) \
    else \
      CELL_SWITCH (cell, CASE, 4) \
  } G_STMT_END

/* recur_hreg () fed by the projection pass (@xp), for H = 16, 24 or 32.
 * A function of its own, as recur_hreg_io (): inlined into recur () among
 * all the other paths, GCC kept h in memory and spilled accumulators in
 * the products loop (LSTM 2x32: 40 stack accesses in the step). */
static void __attribute__ ((noinline))
KFN (recur_hreg_xp) (const RnnCell cell, const float *P, const float *bhh,
    const float *xp, gsize xp_stride, gsize T, gboolean reverse,
    const float *h0, float *c, float *out, gsize row_stride, gsize H)
{
#define HREG_CASE(CELL, NB) \
  case CELL: \
    KFN (recur_hreg) (CELL, NB, 0, P, bhh, xp, xp_stride, T, reverse, h0, c, \
        out, row_stride, NULL, NULL); \
    break
  HREG_SIZES (cell, H, HREG_CASE);
#undef HREG_CASE
}

/* Per step, the products of every stream, then the updates of every
 * stream: several streams' independent chains then overlap (one stream
 * alone is bound by the latency of its step). */
static inline __attribute__ ((always_inline)) void
KFN (recur_cell) (const RnnCell cell, const int half,
    const RnnPackedMatrix *W, const float *bhh, const float *xp, gsize T, gsize B, gsize H,
    gboolean reverse, const float *h0, gsize h0_stride, float *c,
    float *out, gsize row_stride, gsize stream_stride, float *pre)
{
  /* not rnn_cell_gates (): the count must be a constant here */
  const int G = cell == RNN_CELL_LSTM ? 4 : cell == RNN_CELL_GRU ? 3 : 1;
  const gsize GH = (gsize) G * H, GHp = (gsize) G * ((H + 7) & ~(gsize) 7);
  const gsize K = W->K, panel = K * (gsize) G * 8;
  gsize tprev = 0;
  /* (@half is a constant: these tests keep the register kernels out of
   * the float16 instance, which H <= 32 never reaches, rnn_model_seal ()) */
  if (H == 8 && !half && T > 0) {
    KFN (recur_h8_streams) (cell, W->data, bhh, xp, T, B, reverse, h0,
        h0_stride, c, out, row_stride, stream_stride, NULL);
    return;
  }
  if (B == 1 && !half && T > 0 && H >= 16 && H <= 32 && H % 8 == 0) {
    KFN (recur_hreg_xp) (cell, W->data, bhh, xp, GH, T, reverse, h0, c, out,
        row_stride, H);
    return;
  }
  for (gsize s = 0; s < T; s++) {
    const gsize t = reverse ? T - 1 - s : s;
#define HIN(b) (s == 0 ? h0 + (b) * h0_stride \
        : out + tprev * row_stride + (b) * stream_stride)
    gsize b = 0;
    /* groups of three streams (four for Elman cells, whose one gate
     * leaves registers for them), then a group of what remains; block by
     * block, every group in turn: a block's panel (16 KB at H=128) comes
     * from L2 once per step and stays in L1 for the other groups.  Group
     * after group through all of W_hh, each group streamed it from L2 */
#define GROUP(S) \
    G_STMT_START { \
      const float *const hs_[4] = { HIN (b), HIN (b + 1), \
        (S) > 2 ? HIN (b + 2) : NULL, (S) > 3 ? HIN (b + 3) : NULL }; \
      float *const ps_[4] = { pre + b * GHp + j * G, \
        pre + (b + 1) * GHp + j * G, \
        (S) > 2 ? pre + (b + 2) * GHp + j * G : NULL, \
        (S) > 3 ? pre + (b + 3) * GHp + j * G : NULL }; \
      KFN (recur_products_s) (G, (S), W->data + j / 8 * panel, \
          half ? W->half + j / 8 * panel : NULL, K, hs_, bhh + j, H, ps_, \
          MIN (8, H - j)); \
      b += (S); \
    } G_STMT_END
    for (gsize j = 0; j < H && B >= 2; j += 8) {
      b = 0;
      while (G == 1 && b + 4 <= B)
        GROUP (4);
      while (b + 3 <= B)
        GROUP (3);
      if (b + 2 == B)
        GROUP (2);
      /* one stream left (B = 4, 7, ...: each thread's share of 8 streams
       * on 2 threads): its products of this block too, from L1 */
      if (G > 1 && b + 1 == B) {
        KFN (recur_products) (G, W->data + j / 8 * panel,
            half ? W->half + j / 8 * panel : NULL, K, HIN (b), bhh + j, H,
            pre + b * GHp + j * G, MIN (8, H - j));
        b++;
      }
    }
#undef GROUP
    for (; b < B; b++)
      KFN (stream_products) (G, half, W, bhh, H, HIN (b), pre + b * GHp,
          !half && (s & 1));
    for (gsize b = 0; b < B; b++)
      KFN (stream_update) (cell, G, pre + b * GHp, xp + (t * B + b) * GH, H,
          HIN (b), c ? c + b * H : NULL,
          out + t * row_stride + b * stream_stride);
#undef HIN
    tprev = t;
  }
}


void KFN (recur) (RnnCell cell, const RnnPackedMatrix *W, const float *bhh,
    const float *xp, gsize T, gsize B, gsize H, gboolean reverse,
    const float *h0, gsize h0_stride, float *c, float *out,
    gsize row_stride, gsize stream_stride, float *pre);

void
KFN (recur) (RnnCell cell, const RnnPackedMatrix *W, const float *bhh,
    const float *xp, gsize T, gsize B, gsize H, gboolean reverse,
    const float *h0, gsize h0_stride, float *c, float *out,
    gsize row_stride, gsize stream_stride, float *pre)
{
  /* one instance per cell and weight format (CELL_SWITCH) */
#define RECUR_CASE(CELL, HALF) \
    case CELL: \
      KFN (recur_cell) (CELL, HALF, W, bhh, xp, T, B, H, reverse, h0, \
          h0_stride, c, out, row_stride, stream_stride, pre); \
      break
#ifdef VLOADH
  if (W->half) {
    CELL_SWITCH (cell, RECUR_CASE, 1);
    return;
  }
#endif
  CELL_SWITCH (cell, RECUR_CASE, 0);
#undef RECUR_CASE
}

/* the parameters of RnnSmallIoFn (rnn-kernels.h) */
#define SMALL_IO_PARAMS (RnnCell cell, const RnnPackedMatrix *W_ih,\
    const float *b_ih, const float *x, gsize x_stride, gsize x_sstride,\
    const RnnPackedMatrix *W, const float *bhh, gsize T, gsize B,\
    const float *h0, gsize h0_stride, float *c, float *out, gsize row_stride,\
    gsize stream_stride, const float *head_w, gsize O, const float *head_b,\
    float *y, gsize y_stride, gsize y_sstride, float *h_final)

/* SMALL_IO_PARAMS as a RecurIO */
#define SMALL_IO_RECORD { W_ih, b_ih, x, x_stride, x_sstride, head_w, O,\
    head_b, y, y_stride, y_sstride, h_final }

void KFN (recur_hreg_io) SMALL_IO_PARAMS;

/* recur_small_io () for H = 16, 24 or 32, stream after stream (a function
 * of its own: inside recur_small_io () it made every call of the H = 8
 * kernel cost some 40 instructions more) */
void
KFN (recur_hreg_io) SMALL_IO_PARAMS
{
  const RecurIO io = SMALL_IO_RECORD;
  const gsize H = W->K;
  for (gsize b = 0; b < B; b++) {
    RecurIO sub;
    const RecurIO *p = &io;     /* no copy for the first stream */
    if (b) {
      sub = io;
      sub.x += b * x_sstride;
      sub.y += b * y_sstride;
      if (sub.h_final)
        sub.h_final += b * H;
      p = &sub;
    }
    const float *h0b = h0 + b * h0_stride;
    float *cb = c ? c + b * H : NULL;
    float *ob = out ? out + b * stream_stride : NULL;
#define HREG_CASE(CELL, NB) \
  case CELL: \
    KFN (recur_hreg) (CELL, NB, 0, W->data, bhh, NULL, 0, T, FALSE, h0b, cb, \
        ob, row_stride, p, NULL); \
    break
    HREG_SIZES (cell, H, HREG_CASE);
#undef HREG_CASE
  }
}

void KFN (recur_small_io) SMALL_IO_PARAMS;

void
KFN (recur_small_io) SMALL_IO_PARAMS
{
  const RecurIO io = SMALL_IO_RECORD;
  /* one instance per cell, as in recur () */
#define H8_CASE(CELL, UNUSED) \
    case CELL: \
      KFN (recur_h8_streams) (CELL, W->data, bhh, NULL, T, B, FALSE, h0, \
          h0_stride, c, out, row_stride, stream_stride, &io); \
      break
  CELL_SWITCH (cell, H8_CASE, 0);
#undef H8_CASE
}

/* a one-step kernel's RnnStep1 and arguments as a RecurIO */
#define STEP1_RECORD { s->w_ih, s->b_ih, x, 0, 0, s->head_w, s->O,\
    s->head_b, y, 0, 0, h }

void KFN (recur_step1) (const RnnStep1 *s, const float *x, float *h,
    float *c, float *y);

/* recur_small_io () or recur_hreg_io () for one stream at one step
 * (RnnKernels.recur_step1), an instance without a loop: in the looped
 * instances GCC sets up the loop's constants (h's lanes, biases, the
 * activations' coefficients) before the loop and spills them to the
 * stack, a cost paid at every call of one sample.  The same operations
 * in the same order, so the same bits. */
void
KFN (recur_step1) (const RnnStep1 *s, const float *x, float *h, float *c,
    float *y)
{
  const RecurIO io = STEP1_RECORD;
  float *out = s->O ? NULL : y;
#define H8_CASE(CELL, UNUSED) \
    case CELL: \
      KFN (recur_h8) (CELL, 1, 1, s->w_hh->data, s->b_hh, NULL, 0, 1, FALSE, \
          h, 0, c, out, 0, 0, &io); \
      break
#define HREG_CASE(CELL, NB) \
  case CELL: \
    KFN (recur_hreg) (CELL, NB, 1, s->w_hh->data, s->b_hh, NULL, 0, 1, FALSE, \
        h, c, out, 0, &io, (const gsize (*)[4]) s->xoff[0]); \
    break
  if (s->H == 8)
    CELL_SWITCH (s->cell, H8_CASE, 0)
  else
    HREG_SIZES (s->cell, s->H, HREG_CASE);
#undef HREG_CASE
#undef H8_CASE
}

/* One stream of 8 < H <= RNN_IO_MAX_H units, forward in time, step by
 * step: project_rows () of the step's input row, the recurrent products
 * and the cell as recur (), the head's linear part as head_rows (); so the
 * same bits as those three in turn, without the general path's passes and
 * bookkeeping, which at one sample per call cost as much as a step (the
 * per-sample audio model).  h rows go to @out when set, else to a stack
 * pair; the last h to @h_final when set. */
static inline __attribute__ ((always_inline)) void
KFN (recur1_io_cell) (const RnnCell cell, const int half,
    const RnnPackedMatrix *W, const float *restrict bhh, gsize T, gsize H,
    const float *h0, float *restrict c, float *restrict out,
    gsize row_stride, const RecurIO *io)
{
  const int G = cell == RNN_CELL_LSTM ? 4 : cell == RNN_CELL_GRU ? 3 : 1;
  float pre[4 * RNN_IO_MAX_H] __attribute__ ((aligned (64)));
  float xp[4 * RNN_IO_MAX_H] __attribute__ ((aligned (64)));
  float hbuf[2][RNN_IO_MAX_H] __attribute__ ((aligned (64)));
  const float *hin = h0;
  for (gsize t = 0; t < T; t++) {
    float *ho = out ? out + t * row_stride : hbuf[t & 1];
    if (io->w_ih->K == 1) {
      /* one input: project_rows ()'s operations for K = 1 (a plain
       * product, then b_ih), whose panels then hold W_ih's column in
       * order; without the panel loop's bookkeeping */
      const v8sf x0 = KFN (splat) (io->x[t * io->x_stride]);
      const gsize GH = (gsize) G * H;
      for (gsize n = 0; n < GH; n += 8) {
        const gsize m = MIN (8, GH - n);
        KFN (store) (xp + n, *(const v8sf_u *) (io->w_ih->data + n) * x0
            + KFN (load) (io->b_ih + n, m), m);
      }
    } else
      KFN (project_rows) (xp, io->x + t * io->x_stride, io->w_ih, io->b_ih, 1);
    KFN (stream_products) (G, half, W, bhh, H, hin, pre, FALSE);
    KFN (stream_update) (cell, G, pre, xp, H, hin, c, ho);
    KFN (head_rows) (io->y + t * io->y_stride, 0, ho, 0, io->head_w,
        io->head_b, 1, io->O, H);
    hin = ho;
  }
  if (io->h_final && io->h_final != hin)
    memcpy (io->h_final, hin, H * sizeof (float));
}

void KFN (recur1_io) (RnnCell cell, const RnnPackedMatrix *W_ih,
    const float *b_ih, const float *x, gsize x_stride,
    const RnnPackedMatrix *W, const float *bhh, gsize T, gsize H,
    const float *h0, float *c, float *out, gsize row_stride,
    const float *head_w, gsize O, const float *head_b, float *y,
    gsize y_stride, float *h_final);

void
KFN (recur1_io) (RnnCell cell, const RnnPackedMatrix *W_ih,
    const float *b_ih, const float *x, gsize x_stride,
    const RnnPackedMatrix *W, const float *bhh, gsize T, gsize H,
    const float *h0, float *c, float *out, gsize row_stride,
    const float *head_w, gsize O, const float *head_b, float *y,
    gsize y_stride, float *h_final)
{
  const RecurIO io = { W_ih, b_ih, x, x_stride, 0, head_w, O, head_b,
    y, y_stride, 0, h_final };
  /* one instance per cell and weight format, as in recur () (one sample
   * per call takes recur1_step1 ()) */
#define IO_CASE(CELL, HALF) \
    case CELL: \
      KFN (recur1_io_cell) (CELL, HALF, W, bhh, T, H, h0, c, out, \
          row_stride, &io); \
      break
#ifdef VLOADH
  if (W->half) {
    CELL_SWITCH (cell, IO_CASE, 1);
    return;
  }
#endif
  CELL_SWITCH (cell, IO_CASE, 0);
#undef IO_CASE
}

void KFN (recur1_step1) (const RnnStep1 *s, const float *x, float *h,
    float *c, float *y);

/* recur1_io () for one step (RnnKernels.recur1_step1), an instance without
 * a loop, as recur_step1 (): 1.03-1.04x at H=64 (LSTM and GRU) against
 * the looped one, the same bits. */
void
KFN (recur1_step1) (const RnnStep1 *s, const float *x, float *h, float *c,
    float *y)
{
  const RecurIO io = STEP1_RECORD;
  float *out = s->O ? NULL : y;
  /* read once: the kernel's stores (h, c, y) might alias *s as far as the
   * compiler knows, and it read s->H again in every loop */
  const gsize H = s->H;
  const RnnPackedMatrix *const W = s->w_hh;
  const float *const bhh = s->b_hh;
#define IO_CASE(CELL, HALF) \
    case CELL: \
      KFN (recur1_io_cell) (CELL, HALF, W, bhh, 1, H, h, c, out, 0, &io); \
      break
#ifdef VLOADH
  if (W->half) {
    CELL_SWITCH (s->cell, IO_CASE, 1);
    return;
  }
#endif
  CELL_SWITCH (s->cell, IO_CASE, 0);
#undef IO_CASE
}

void KFN (recur_small2_io) (RnnCell cell, const RnnPackedMatrix *W_ih0,
    const float *b_ih0, const float *x, gsize x_stride,
    const RnnPackedMatrix *W0, const float *bhh0,
    const RnnPackedMatrix *W_ih1, const float *b_ih1,
    const RnnPackedMatrix *W1, const float *bhh1, gsize T,
    float *const h[2], float *const c[2], float *out, gsize row_stride,
    const float *head_w, gsize O, const float *head_b, float *y,
    gsize y_stride);

void
KFN (recur_small2_io) (RnnCell cell, const RnnPackedMatrix *W_ih0,
    const float *b_ih0, const float *x, gsize x_stride,
    const RnnPackedMatrix *W0, const float *bhh0,
    const RnnPackedMatrix *W_ih1, const float *b_ih1,
    const RnnPackedMatrix *W1, const float *bhh1, gsize T,
    float *const h[2], float *const c[2], float *out, gsize row_stride,
    const float *head_w, gsize O, const float *head_b, float *y,
    gsize y_stride)
{
  const RecurIO io = { W_ih0, b_ih0, x, x_stride, 0, head_w, O, head_b,
    y, y_stride, 0, NULL };
  /* one instance per cell and size, as in recur () */
#define HREG2_CASE(CELL, NB) \
    case CELL: \
      KFN (recur_hreg2) (CELL, NB, 0, &io, W0->data, bhh0, W_ih1, b_ih1, \
          W1->data, bhh1, T, h, c, out, row_stride, NULL); \
      break
  /* H = 8 only: at H = 16 and 32 layer 1's input projection, one chain of
   * H products per row as project_rows () sums it, sat on the step's
   * critical path, and the pair ran 15-35 % slower than the general path
   * (1.44x faster at H = 8) */
  CELL_SWITCH (cell, HREG2_CASE, 1)
#undef HREG2_CASE
}

void KFN (recur_small2_step1) (const RnnStep1 *s, const float *x, float *h,
    float *c, float *y);

/* recur_small2_io () for one step (RnnKernels.recur_small2_step1), an
 * instance without a loop, as recur_step1 (); the state's blocks of one
 * stream of H = 8: layer 1's h and c right after layer 0's. */
void
KFN (recur_small2_step1) (const RnnStep1 *s, const float *x, float *h,
    float *c, float *y)
{
  const RecurIO io = STEP1_RECORD;
  float *const hs[2] = { h, h + 8 };
  float *const cs[2] = { c, c ? c + 8 : NULL };
#define HREG2_CASE(CELL, NB) \
    case CELL: \
      KFN (recur_hreg2) (CELL, NB, 1, &io, s->w_hh->data, s->b_hh, s->w_ih1, \
          s->b_ih1, s->w_hh1->data, s->b_hh1, 1, hs, cs, s->O ? NULL : y, 0, \
          (const gsize (*)[4][4]) s->xoff); \
      break
  CELL_SWITCH (s->cell, HREG2_CASE, 1)
#undef HREG2_CASE
}

void KFN (sigmoid_array) (float *v, gsize n);
void KFN (tanh_array) (float *v, gsize n);

void
KFN (sigmoid_array) (float *v, gsize n)
{
  for (gsize j = 0; j < n; j += 8) {
    const gsize m = MIN (8, n - j);
    KFN (store) (v + j, KFN (vsigmoid_exp) (KFN (load) (v + j, m)), m);
  }
}

void
KFN (tanh_array) (float *v, gsize n)
{
  for (gsize j = 0; j < n; j += 8) {
    const gsize m = MIN (8, n - j);
    KFN (store) (v + j, KFN (vtanh_exp) (KFN (load) (v + j, m)), m);
  }
}
