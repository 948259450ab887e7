/* Kernel template: included by rnn-kernels-generic.c and rnn-kernels-avx2.c,
 * which define KERNEL_SUFFIX and compile it with their own flags.
 *
 * Activations are vectorised here (GCC/Clang vector extensions, 8 lanes)
 * instead of calling libm's expf/tanhf per element: at H=128 the scalar
 * calls cost more than the whole recurrent product.  The polynomials are the
 * classic Cephes single-precision exp (range reduction by ln 2 and a
 * degree-5 polynomial, within a few ulp of libm); sigmoid and tanh are built
 * on it; the parity tests hold them to PyTorch.
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
/* unaligned access to 8 floats */
typedef float v8sf_u __attribute__ ((vector_size (32), aligned (4), may_alias));

static inline v8sf
KFN (splat) (float v)
{
  return (v8sf) { v, v, v, v, v, v, v, v };
}

#define S(v) KFN (splat) (v)

static inline v8sf
KFN (vmin) (v8sf a, v8sf b)
{
  const v8si lt = (v8si) (a < b);
  return (v8sf) (((v8si) a & lt) | ((v8si) b & ~lt));
}

static inline v8sf
KFN (vmax) (v8sf a, v8sf b)
{
  const v8si gt = (v8si) (a > b);
  return (v8sf) (((v8si) a & gt) | ((v8si) b & ~gt));
}

static inline v8sf
KFN (vexp) (v8sf x)
{
  x = KFN (vmin) (KFN (vmax) (x, S (-88.3762626647949f)), S (88.3762626647949f));
  /* n = floor (x / ln 2 + 0.5) */
  v8sf fx = VFMA (x, S (1.44269504088896341f), S (0.5f));
  v8sf fl = __builtin_convertvector (__builtin_convertvector (fx, v8si), v8sf);
  fl -= (v8sf) ((v8si) (fl > fx) & (v8si) S (1.0f));
  /* r = x - n ln 2, in two parts for precision */
  v8sf r = VFMA (fl, S (-0.693359375f), x);
  r = VFMA (fl, S (2.12194440e-4f), r);
  v8sf p = S (1.9875691500e-4f);
  p = VFMA (p, r, S (1.3981999507e-3f));
  p = VFMA (p, r, S (8.3334519073e-3f));
  p = VFMA (p, r, S (4.1665795894e-2f));
  p = VFMA (p, r, S (1.6666665459e-1f));
  p = VFMA (p, r, S (5.0000001201e-1f));
  p = VFMA (p, r * r, r + S (1.0f));
  /* times 2^n, built in the exponent field */
  v8si e = (__builtin_convertvector (fl, v8si) + 127) << 23;
  return p * (v8sf) e;
}

static inline v8sf
KFN (vsigmoid) (v8sf x)
{
  return S (1.0f) / (S (1.0f) + KFN (vexp) (-x));
}

/* tanh: an odd polynomial below |x| = 0.625, where 1 - 2 / (e^2x + 1)
 * would lose the relative precision that tanh RNNs carry over many steps,
 * and that formula above (one exponential, one division). */
static inline v8sf
KFN (vtanh) (v8sf x)
{
  const v8sf big = S (1.0f) - S (2.0f) / (KFN (vexp) (x + x) + S (1.0f));
  const v8sf z = x * x;
  v8sf p = S (-5.70498872745e-3f);
  p = VFMA (p, z, S (2.06390887954e-2f));
  p = VFMA (p, z, S (-5.37397155531e-2f));
  p = VFMA (p, z, S (1.33314422036e-1f));
  p = VFMA (p, z, S (-3.33332819422e-1f));
  const v8sf small = VFMA (p * z, x, x);
  const v8si is_small = (v8si) (z < S (0.625f * 0.625f));
  return (v8sf) (((v8si) small & is_small) | ((v8si) big & ~is_small));
}

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

void KFN (cell_step) (RnnCell cell, const float *restrict xp,
    const float *restrict hp, float *restrict h, float *restrict c,
    float *restrict out, gsize out_stride, gsize B, gsize H);

void
KFN (cell_step) (RnnCell cell, const float *restrict xp,
    const float *restrict hp, float *restrict h, float *restrict c,
    float *restrict out, gsize out_stride, gsize B, gsize H)
{
  const gsize GH = rnn_cell_gates (cell) * H;
#define LD(p) KFN (load) ((p) + j, n)
#define ST(p, v) KFN (store) ((p) + j, (v), n)
  for (gsize b = 0; b < B; b++) {
    const float *x = xp + b * GH, *r = hp + b * GH;
    float *hb = h + b * H, *ob = out + b * out_stride;
    for (gsize j = 0; j < H; j += 8) {
      const gsize n = MIN (8, H - j);
      v8sf hn;
      switch (cell) {
        case RNN_CELL_RNN_TANH:
          hn = KFN (vtanh) (LD (x) + LD (r));
          break;
        case RNN_CELL_RNN_RELU:
          hn = KFN (vmax) (LD (x) + LD (r), (v8sf) { 0 });
          break;
        case RNN_CELL_LSTM:{
          /* gate rows i, f, g, o */
          float *cb = c + b * H;
          const v8sf i = KFN (vsigmoid) (LD (x) + LD (r));
          const v8sf f = KFN (vsigmoid) (LD (x + H) + LD (r + H));
          const v8sf g = KFN (vtanh) (LD (x + 2 * H) + LD (r + 2 * H));
          const v8sf o = KFN (vsigmoid) (LD (x + 3 * H) + LD (r + 3 * H));
          const v8sf cn = f * LD (cb) + i * g;
          ST (cb, cn);
          hn = o * KFN (vtanh) (cn);
          break;
        }
        case RNN_CELL_GRU:
        default:{
          /* gate rows r, z, n; b_hn stays inside r * (W_hn h + b_hn) */
          const v8sf rg = KFN (vsigmoid) (LD (x) + LD (r));
          const v8sf z = KFN (vsigmoid) (LD (x + H) + LD (r + H));
          const v8sf ng = KFN (vtanh) (LD (x + 2 * H) + rg * LD (r + 2 * H));
          hn = ((v8sf) { 1, 1, 1, 1, 1, 1, 1, 1 } - z) * ng + z * LD (hb);
          break;
        }
      }
      ST (hb, hn);
      ST (ob, hn);
    }
  }
#undef LD
#undef ST
}

void KFN (sigmoid_array) (float *v, gsize n);
void KFN (tanh_array) (float *v, gsize n);

void
KFN (sigmoid_array) (float *v, gsize n)
{
  for (gsize j = 0; j < n; j += 8) {
    const gsize m = MIN (8, n - j);
    KFN (store) (v + j, KFN (vsigmoid) (KFN (load) (v + j, m)), m);
  }
}

void
KFN (tanh_array) (float *v, gsize n)
{
  for (gsize j = 0; j < n; j += 8) {
    const gsize m = MIN (8, n - j);
    KFN (store) (v + j, KFN (vtanh) (KFN (load) (v + j, m)), m);
  }
}
