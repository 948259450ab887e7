/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Kernel family: 8-lane vector helpers and the activations.
 *
 * Activations are vectorised here (GCC/Clang vector extensions, 8 lanes)
 * instead of calling libm's expf/tanhf per element: at H=128 the scalar
 * calls cost more than the whole recurrent product.  Two families: the
 * exponential-based ones (Cephes' single-precision exp: range reduction by
 * ln 2 and a degree-5 polynomial, within a few ulp of libm) for the Elman
 * tanh cell and training, and a rational tanh (scripts/fit-tanh.py) for the
 * LSTM and GRU gates, whose latency bounds a step; the parity tests hold
 * both to PyTorch.
 *
 * Part of the kernel template (rnn-kernels-template.h), which includes the
 * family files in order into one unit per instruction set; not compiled on
 * its own. */

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
  C8 (-8.7f), C8 (8.7f),
  C8 (1.341986433e-08f), C8 (2.066129309e-05f), C8 (3.498998005e-03f),
  C8 (1.338398159e-01f), C8 (1.000000000e+00f),
  C8 (7.804746929e-07f), C8 (3.291041357e-04f), C8 (2.589021251e-02f),
  C8 (4.671730399e-01f), C8 (1.0f), C8 (0.5f) };
#undef C8

/* constant @i of act_tab (value @v) from the table when @one, else the
 * literal; @t: the table's hidden address */
#define AC(i, v) (one ? t[i] : S (v))
#define ACT_TAB \
  const v8sf *t = KFN (act_tab); \
  if (one) \
    __asm__ volatile ("" : "+r" (t))

/* tanh x ~ x P(x^2) / Q(x^2) on |x| <= 8.7 (beyond it both evaluations
 * below give exactly +-1, and tanh is within an ulp of it), P and Q of
 * degree 4 with positive coefficients (so both evaluate to within an ulp
 * or two) and P(0) = Q(0) = 1, fitted for this kernel by
 * scripts/fit-tanh.py (near-minimax relative error, 2.1e-8 in double),
 * which also measures this evaluation against tanh in double: at most
 * 5.5 ulp (Horner's; 5.8 Estrin's, near |x| = 8.4, from float32 rounding
 * of the evaluation, not the fit), mean 0.7 ulp (0.8), and 0.5 ulp on average
 * for |x| < 0.001, unbiased: tanh x rounds to x near 0, where a gain an
 * ulp short of 1 would build up in the recurrent state; relative
 * precision near 0 is kept (tanh RNNs carry it over many steps).
 * Cheaper than an exponential and a division.
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
  x = KFN (vmin) (KFN (vmax) (x, AC (0, -8.7f)), AC (1, 8.7f));
  const v8sf z = x * x;
  v8sf p = VFMA (z, AC (2, 1.341986433e-08f), AC (3, 2.066129309e-05f));
  p = VFMA (p, z, AC (4, 3.498998005e-03f));
  p = VFMA (p, z, AC (5, 1.338398159e-01f));
  p = VFMA (p, z, AC (6, 1.000000000e+00f));
  v8sf q = VFMA (z, AC (7, 7.804746929e-07f), AC (8, 3.291041357e-04f));
  q = VFMA (q, z, AC (9, 2.589021251e-02f));
  q = VFMA (q, z, AC (10, 4.671730399e-01f));
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
  x = KFN (vmin) (KFN (vmax) (x, AC (0, -8.7f)), AC (1, 8.7f));
  const v8sf z = x * x, z2 = z * z, z4 = z2 * z2;
  const v8sf p = VFMA (z4, AC (2, 1.341986433e-08f),
      VFMA (z2, VFMA (z, AC (3, 2.066129309e-05f), AC (4, 3.498998005e-03f)),
          VFMA (z, AC (5, 1.338398159e-01f), AC (6, 1.000000000e+00f))));
  const v8sf q = VFMA (z4, AC (7, 7.804746929e-07f),
      VFMA (z2, VFMA (z, AC (8, 3.291041357e-04f), AC (9, 2.589021251e-02f)),
          VFMA (z, AC (10, 4.671730399e-01f), AC (11, 1.0f))));
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
