/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Kernel family: the panel products of whole rows: project_rows () (the
 * input projection, C = A · Wᵀ + bias against packed panels) and
 * head_rows () (the head's linear part, one dot product per output).
 *
 * Part of the kernel template (rnn-kernels-template.h), which includes the
 * family files in order into one unit per instruction set; not compiled on
 * its own. */

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
