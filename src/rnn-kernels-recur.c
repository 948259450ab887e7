/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Kernel family: the general recurrence, any H and any number of streams
 * (RnnKernels.recur): per step the products of every stream, streams
 * grouped to share weight loads, then every stream's update; small H goes
 * to the register kernels.
 *
 * Part of the kernel template (rnn-kernels-template.h), which includes the
 * family files in order into one unit per instruction set; not compiled on
 * its own. */

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
   * the float16 instance, which H <= 32 never reaches, rnn-plan.c) */
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

/* recur ()'s arguments one by one: with them read from the RnnRecurArgs in
 * here, GCC allocated the registers of the step loop differently (GRU
 * H=128: 2.7 % more instructions per step). */
static void __attribute__ ((noinline))
KFN (recur_loop) (RnnCell cell, const RnnPackedMatrix *W, const float *bhh,
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

void KFN (recur) (const RnnRecurArgs *a);

void
KFN (recur) (const RnnRecurArgs *a)
{
  KFN (recur_loop) (a->cell, a->w_hh, a->b_hh, a->xp, a->T, a->B, a->H,
      a->reverse, a->h0, a->h0_stride, a->c, a->out, a->row_stride,
      a->stream_stride, a->pre);
}
