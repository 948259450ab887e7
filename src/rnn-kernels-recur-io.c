/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Kernel family: the entries with the input projection and the head
 * fused in (recur_h8_io, recur_hreg_io, recur_one_io, recur_h8x2_io) and
 * their one-step instances for calls of one sample (step1_small,
 * step1_one, step1_h8x2).
 *
 * Part of the kernel template (rnn-kernels-template.h), which includes the
 * family files in order into one unit per instruction set; not compiled on
 * its own. */

/* RnnRecurIoArgs as the local names the kernels use, and as a RecurIO */
#define IO_ARGS_UNPACK(a) \
  const RnnCell cell = (a)->cell; \
  const RnnPackedMatrix *const W = (a)->w_hh; \
  const float *const bhh = (a)->b_hh; \
  const gsize T = (a)->T, B = (a)->B; \
  const float *const h0 = (a)->h0; \
  const gsize h0_stride = (a)->h0_stride; \
  float *const c = (a)->c, *const out = (a)->out; \
  const gsize row_stride = (a)->row_stride; \
  const gsize stream_stride = (a)->stream_stride; \
  const RecurIO io = { (a)->w_ih, (a)->b_ih, (a)->x, (a)->x_stride, \
    (a)->x_sstride, (a)->head_w, (a)->O, (a)->head_b, (a)->y, \
    (a)->y_stride, (a)->y_sstride, (a)->h_final }

/* recur_h8_io () for H = 16, 24 or 32, stream after stream (a function
 * of its own: inside recur_h8_io () it made every call of the H = 8
 * kernel cost some 40 instructions more).  Its arguments one by one: with
 * them read from the RnnRecurIoArgs in here, GCC allocated the registers
 * of the step loop differently (GRU H=32: 2.7 % more instructions per
 * step). */
static void __attribute__ ((noinline))
KFN (recur_hreg_io_loop) (RnnCell cell, const RnnPackedMatrix *W_ih,
    const float *b_ih, const float *x, gsize x_stride, gsize x_sstride,
    const RnnPackedMatrix *W, const float *bhh, gsize T, gsize B,
    const float *h0, gsize h0_stride, float *c, float *out, gsize row_stride,
    gsize stream_stride, const float *head_w, gsize O, const float *head_b,
    float *y, gsize y_stride, gsize y_sstride, float *h_final)
{
  const RecurIO io = { W_ih, b_ih, x, x_stride, x_sstride, head_w, O,
    head_b, y, y_stride, y_sstride, h_final };
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

void KFN (recur_hreg_io) (const RnnRecurIoArgs *a);

void
KFN (recur_hreg_io) (const RnnRecurIoArgs *a)
{
  KFN (recur_hreg_io_loop) (a->cell, a->w_ih, a->b_ih, a->x, a->x_stride,
      a->x_sstride, a->w_hh, a->b_hh, a->T, a->B, a->h0, a->h0_stride, a->c,
      a->out, a->row_stride, a->stream_stride, a->head_w, a->O, a->head_b,
      a->y, a->y_stride, a->y_sstride, a->h_final);
}

void KFN (recur_h8_io) (const RnnRecurIoArgs *a);

void
KFN (recur_h8_io) (const RnnRecurIoArgs *a)
{
  IO_ARGS_UNPACK (a);
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

void KFN (step1_small) (const RnnStep1 *s, const float *x, float *h,
    float *c, float *y);

/* recur_h8_io () or recur_hreg_io () for one stream at one step
 * (RnnKernels.step1_small), an instance without a loop: in the looped
 * instances GCC sets up the loop's constants (h's lanes, biases, the
 * activations' coefficients) before the loop and spills them to the
 * stack, a cost paid at every call of one sample.  The same operations
 * in the same order, so the same bits. */
void
KFN (step1_small) (const RnnStep1 *s, const float *x, float *h, float *c,
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

/* The blocks' order alternates from step to step as in recur () (a W_hh
 * larger than L1 then starts where the last step ended, in L1), also from
 * call to call of one step: a per-thread parity, which changes no bits,
 * only which panels are still in the cache. */
static __thread guint KFN (one_parity);

/* One stream of 8 < H <= RNN_IO_MAX_H units, forward in time, step by
 * step: project_rows () of the step's input row, the recurrent products
 * and the cell as recur (), the head's linear part as head_rows (); so the
 * same bits as those three in turn, without the general path's passes and
 * bookkeeping, which at one sample per call cost as much as a step (the
 * per-sample audio model).  h rows go to @out when set, else to a stack
 * pair; the last h to @h_final when set. */
static inline __attribute__ ((always_inline)) void
KFN (recur_one_io_cell) (const RnnCell cell, const int half,
    const RnnPackedMatrix *W, const float *restrict bhh, gsize T, gsize H,
    const float *h0, float *restrict c, float *restrict out,
    gsize row_stride, const RecurIO *io)
{
  const guint parity = half ? 0 : KFN (one_parity);
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
    KFN (stream_products) (G, half, W, bhh, H, hin, pre,
        !half && ((t + parity) & 1));
    KFN (stream_update) (cell, G, pre, xp, H, hin, c, ho);
    KFN (head_rows) (io->y + t * io->y_stride, 0, ho, 0, io->head_w,
        io->head_b, 1, io->O, H);
    hin = ho;
  }
  if (!half)
    KFN (one_parity) = parity + (guint) T;
  if (io->h_final && io->h_final != hin)
    memcpy (io->h_final, hin, H * sizeof (float));
}

void KFN (recur_one_io) (const RnnRecurIoArgs *a);

void
KFN (recur_one_io) (const RnnRecurIoArgs *a)
{
  const RnnCell cell = a->cell;
  const RnnPackedMatrix *const W = a->w_hh;
  const float *const bhh = a->b_hh;
  const gsize T = a->T, H = W->K;
  const float *const h0 = a->h0;
  float *const c = a->c, *const out = a->out;
  const gsize row_stride = a->row_stride;
  const RecurIO io = { a->w_ih, a->b_ih, a->x, a->x_stride, 0, a->head_w,
    a->O, a->head_b, a->y, a->y_stride, 0, a->h_final };
  /* one instance per cell and weight format, as in recur () (one sample
   * per call takes step1_one ()) */
#define IO_CASE(CELL, HALF) \
    case CELL: \
      KFN (recur_one_io_cell) (CELL, HALF, W, bhh, T, H, h0, c, out, \
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

void KFN (step1_one) (const RnnStep1 *s, const float *x, float *h,
    float *c, float *y);

/* recur_one_io () for one step (RnnKernels.step1_one), an instance without
 * a loop, as step1_small (): 1.03-1.04x at H=64 (LSTM and GRU) against
 * the looped one, the same bits. */
void
KFN (step1_one) (const RnnStep1 *s, const float *x, float *h, float *c,
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
      KFN (recur_one_io_cell) (CELL, HALF, W, bhh, 1, H, h, c, out, 0, &io); \
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

void KFN (recur_h8x2_io) (const RnnRecur2IoArgs *a);

void
KFN (recur_h8x2_io) (const RnnRecur2IoArgs *a)
{
  const RnnCell cell = a->cell;
  const RnnPackedMatrix *const W0 = a->w_hh[0], *const W1 = a->w_hh[1];
  const RnnPackedMatrix *const W_ih1 = a->w_ih[1];
  const float *const bhh0 = a->b_hh[0], *const bhh1 = a->b_hh[1];
  const float *const b_ih1 = a->b_ih[1];
  const gsize T = a->T;
  float *const h[2] = { a->h[0], a->h[1] };
  float *const c[2] = { a->c[0], a->c[1] };
  float *const out = a->out;
  const gsize row_stride = a->row_stride;
  const RecurIO io = { a->w_ih[0], a->b_ih[0], a->x, a->x_stride, 0,
    a->head_w, a->O, a->head_b, a->y, a->y_stride, 0, NULL };
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

void KFN (step1_h8x2) (const RnnStep1 *s, const float *x, float *h,
    float *c, float *y);

/* recur_h8x2_io () for one step (RnnKernels.step1_h8x2), an
 * instance without a loop, as step1_small (); the state's blocks of one
 * stream of H = 8: layer 1's h and c right after layer 0's. */
void
KFN (step1_h8x2) (const RnnStep1 *s, const float *x, float *h,
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
