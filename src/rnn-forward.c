/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The forward pass: streaming (state carried across calls) and whole-window
 * (bidirectional).  The fast path projects the input of a piece of steps at
 * a time (our panel kernel), then runs the fused recurrent kernel (products,
 * gate nonlinearities, state update) over the piece; the streams of a call
 * may be split over threads.  What is derived from the parameters once
 * (packed weights, the direct path) is the model's plan (rnn-plan.c); the
 * plain-loop reference is rnn-forward-naive.c. */
#include "rnn-private.h"
#include "rnn-kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* Scratch of one thread's share of the streams. */
typedef struct {
  float *buf;           /* one allocation, carved below */
  gsize capacity;       /* floats */
  float *xp;            /* [piece*nb][G*H] input projection of a piece of steps */
  float *zero;          /* [2][nb][H] zero state (h, c) for windows */
  float *pre;           /* [nb][G][ceil(H/8)*8] gate pre-activations of one step */
} Scratch;

#define MAX_THREADS 16

/* One share of a call: streams b0 .. b0+nb-1. */
typedef struct {
  const RnnModel *m;
  RnnState *state;
  const float *x;
  guint T, B;
  gsize b0, nb;
  float *y;
  Scratch *scratch;
} Share;

struct _RnnForward {
  float *buf;           /* shared by all threads' shares, carved below */
  gsize capacity;       /* floats */
  float *xn;            /* [T*B][n_in] normalised input */
  float *seq[2];        /* [T*B][D*H] layer outputs, ping-pong */
  /* [T*B][size] of each pre and post layer: one buffer per layer, not a
   * ping-pong pair, because the shares of a call run through the layers
   * at their own pace, and rows of one layout laid over another's (a
   * share at a post layer, another still at a pre layer of another
   * width) would overlap */
  float *pre[RNN_MAX_DENSE_LAYERS];
  float *post[RNN_MAX_DENSE_LAYERS];
  Scratch own;          /* the calling thread's */

  /* rnn_forward_set_threads () */
  guint n_threads;
  GThreadPool *pool;
  Scratch worker[MAX_THREADS - 1];
  Share shares[MAX_THREADS];
  GMutex lock;
  GCond done;
  guint pending;        /* shares the workers have not finished */

  gboolean plain;       /* rnn_forward_set_plain () */
};

/* Steps whose input projection is computed at once: enough rows for the
 * projection kernel's 4-row blocks, few enough that the projection (and
 * the recurrent weights beside it) stay in the first-level cache; projecting
 * a whole 480-step buffer at H=128 wrote 1 MB and evicted W_hh from L2. */
static gsize
piece_steps (gsize B, gsize GH)
{
  return MAX (4, 8192 / MAX (1, B * GH));
}

static void run_share (gpointer data, gpointer user_data);

RnnForward *
rnn_forward_new (void)
{
  RnnForward *fw = g_new0 (RnnForward, 1);
  fw->n_threads = 1;
  g_mutex_init (&fw->lock);
  g_cond_init (&fw->done);
  return fw;
}

void
rnn_forward_free (RnnForward *fw)
{
  if (!fw)
    return;
  if (fw->pool)
    g_thread_pool_free (fw->pool, FALSE, TRUE);
  g_aligned_free (fw->buf);
  g_aligned_free (fw->own.buf);
  for (guint i = 0; i < MAX_THREADS - 1; i++)
    g_aligned_free (fw->worker[i].buf);
  g_mutex_clear (&fw->lock);
  g_cond_clear (&fw->done);
  g_free (fw);
}

gboolean
rnn_forward_set_threads (RnnForward *fw, guint n_threads, GError **error)
{
  g_return_val_if_fail (fw != NULL, FALSE);
  g_return_val_if_fail (n_threads >= 1, FALSE);
  n_threads = MIN (n_threads, MAX_THREADS);
  if (n_threads == fw->n_threads)
    return TRUE;
  if (fw->pool) {
    g_thread_pool_free (fw->pool, FALSE, TRUE);
    fw->pool = NULL;
  }
  fw->n_threads = 1;
  if (n_threads > 1) {
    /* exclusive: the threads are made now and kept, so a call allocates
     * nothing and never waits for a thread to start */
    fw->pool = g_thread_pool_new_full (run_share, fw, NULL, (gint) n_threads - 1,
        TRUE, error);
    if (!fw->pool)
      return FALSE;
  }
  fw->n_threads = n_threads;
  return TRUE;
}

guint
rnn_forward_get_threads (const RnnForward *fw)
{
  g_return_val_if_fail (fw != NULL, 0);
  return fw->n_threads;
}

#define R16(n) (((n) + 15) & ~(gsize) 15)   /* keeps parts 64-byte aligned */

/* Carves the buffers shared by the shares of a call of @T steps of @B
 * streams; reallocates only when a larger size than ever is asked for. */
static void
forward_reserve (RnnForward *fw, const RnnModel *m, guint T, guint B)
{
  const RnnConfig *c = &m->cfg;
  const gsize H = c->hidden_size, D = c->bidirectional ? 2 : 1;
  const gsize TB = (gsize) T * B;
  const gsize n_xn = c->has_input_norm ? R16 (TB * c->input_size) : 0;
  const gsize n_seq = R16 (TB * D * H);
  gsize n_dense = 0;
  for (guint k = 0; k < c->n_pre; k++)
    n_dense += R16 (TB * c->pre[k].size);
  for (guint k = 0; k < c->n_post; k++)
    n_dense += R16 (TB * c->post[k].size);
  const gsize need = n_xn + 2 * n_seq + n_dense;

  if (need > fw->capacity) {
    g_aligned_free (fw->buf);
    fw->buf = g_aligned_alloc (need, sizeof (float), 64);
    fw->capacity = need;
  }
  fw->xn = fw->buf;
  fw->seq[0] = fw->buf + n_xn;
  fw->seq[1] = fw->seq[0] + n_seq;
  float *at = fw->seq[1] + n_seq;
  for (guint k = 0; k < c->n_pre; k++) {
    fw->pre[k] = at;
    at += R16 (TB * c->pre[k].size);
  }
  for (guint k = 0; k < c->n_post; k++) {
    fw->post[k] = at;
    at += R16 (TB * c->post[k].size);
  }
}

/* The same for one share of @nb streams. */
static void
scratch_reserve (Scratch *sc, const RnnModel *m, guint T, gsize nb)
{
  const RnnConfig *c = &m->cfg;
  const gsize G = rnn_cell_gates (c->cell), H = c->hidden_size;
  const gsize n_xp = R16 (MIN (T, piece_steps (nb, G * H)) * nb * G * H);
  const gsize n_zero = R16 (2 * nb * H);
  const gsize n_pre = R16 (nb * G * ((H + 7) & ~(gsize) 7));
  const gsize need = n_xp + n_zero + n_pre;

  if (need > sc->capacity) {
    g_aligned_free (sc->buf);
    sc->buf = g_aligned_alloc (need, sizeof (float), 64);
    sc->capacity = need;
  }
  sc->xp = sc->buf;
  sc->zero = sc->xp + n_xp;
  sc->pre = sc->zero + n_zero;
}

#undef R16

static inline float
sigmoidf (float x)
{
  return 1.0f / (1.0f + expf (-x));
}

/* C[M][N] = bias + A[M][K] · Wt[K][N].
 *
 * We deliberately do not call sgemm/sgemv for inference.  OpenBLAS's sgemm
 * sums a row differently depending on where the row falls in its register
 * tiles (measured on this machine: for K >= 8, rows in the tail of its
 * 12-row tiles differ in the last bit), so a stream cut into different
 * chunks, or run beside other streams, would not give the same bits.  Our
 * kernel (rnn-kernels-gemm.c) sums every element in one fixed order — bias,
 * then k ascending — for any M; the axpy form (transposed weights)
 * vectorises without reassociation, and four rows share each weight load.
 * At streaming sizes (one to a few hundred rows) it also avoids the
 * per-call cost of the library. */
void
rnn_project_rows (float *C, const float *A, const RnnPackedMatrix *W,
    const float *bias, gsize M)
{
  rnn_kernels_get ()->project_rows (C, A, W, bias, M);
}

void
rnn_head_activate (RnnHeadActivation act, float *y, gsize rows, gsize O)
{
  if (act == RNN_HEAD_ACT_NONE)
    return;
  for (gsize t = 0; t < rows; t++) {
    float *v = y + t * O;
    switch (act) {
      case RNN_HEAD_ACT_NONE:
        break;
      case RNN_HEAD_ACT_SIGMOID:
        for (gsize o = 0; o < O; o++)
          v[o] = sigmoidf (v[o]);
        break;
      case RNN_HEAD_ACT_TANH:
        for (gsize o = 0; o < O; o++)
          v[o] = tanhf (v[o]);
        break;
      case RNN_HEAD_ACT_SOFTMAX:{
        float mx = v[0], sum = 0.0f;
        for (gsize o = 1; o < O; o++)
          mx = v[o] > mx ? v[o] : mx;
        for (gsize o = 0; o < O; o++)
          sum += (v[o] = expf (v[o] - mx));
        for (gsize o = 0; o < O; o++)
          v[o] /= sum;
        break;
      }
    }
  }
}

/* The activation of a pre or post layer, in place on @rows rows of @n
 * values: the vector kernels' exponential-based tanh and sigmoid, libm's
 * expm1f for elu, softmax as the head's. */
void
rnn_dense_activate (RnnActivation act, float *v, gsize rows, gsize n)
{
  const RnnKernels *kern = rnn_kernels_get ();
  switch (act) {
    case RNN_ACT_NONE:
      break;
    case RNN_ACT_TANH:
      kern->tanh_array (v, rows * n);
      break;
    case RNN_ACT_SIGMOID:
      kern->sigmoid_array (v, rows * n);
      break;
    case RNN_ACT_RELU:
      for (gsize i = 0; i < rows * n; i++)
        v[i] = v[i] > 0.0f ? v[i] : 0.0f;
      break;
    case RNN_ACT_ELU:
      for (gsize i = 0; i < rows * n; i++)
        v[i] = v[i] > 0.0f ? v[i] : expm1f (v[i]);
      break;
    case RNN_ACT_SOFTMAX:
      rnn_head_activate (RNN_HEAD_ACT_SOFTMAX, v, rows, n);
      break;
  }
}

/* C[M][N] = A[M][K] · W[N][K]ᵀ + bias[N] (bias broadcast over rows): one
 * sgemm, for the training path where chunk invariance is not at stake. */
void
rnn_linear_rows (float *C, const float *A, const float *W, const float *bias,
    gsize M, gsize N, gsize K)
{
  for (gsize m = 0; m < M; m++)
    memcpy (C + m * N, bias, N * sizeof (float));
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) M, (int) N,
      (int) K, 1.0f, A, (int) K, W, (int) K, 1.0f, C, (int) N);
}

/* One pre or post layer over streams b0 .. b0+nb-1 of @T steps of [T][B]
 * rows: dst [T][B][W->N] = act (src [T][B][n_src] · Wᵀ + bias). */
static void
dense_rows (const RnnKernels *kern, float *dst, const float *src,
    gsize n_src, const RnnPackedMatrix *W, const float *bias, gsize T,
    gsize B, gsize b0, gsize nb, RnnActivation act)
{
  const gsize N = W->N;
  if (nb == B) {
    kern->project_rows (dst, src, W, bias, T * B);
    rnn_dense_activate (act, dst, T * B, N);
    return;
  }
  for (gsize t = 0; t < T; t++) {
    float *d = dst + (t * B + b0) * N;
    kern->project_rows (d, src + (t * B + b0) * n_src, W, bias, nb);
    rnn_dense_activate (act, d, nb, N);
  }
}

/* The residual skip (RnnConfig.skip) on @rows rows of @O outputs of a
 * stream's row layout: y_o += x_o (skip = O) or x_0 (skip = 1). */
static inline void
add_skip (const RnnConfig *c, const float *x, float *y, gsize rows, gsize O)
{
  const gsize n_x = c->input_size;
  for (gsize r = 0; r < rows; r++)
    for (gsize o = 0; o < O; o++)
      y[r * O + o] += x[r * n_x + (c->skip == 1 ? 0 : o)];
}

/* The whole model for streams b0 .. b0+nb-1 of a call of B streams (every
 * [T][B][...] buffer keeps its full layout; a share touches only its own
 * streams' columns, so shares can run on different threads).  Per stream
 * the operations do not depend on the share: the projection kernel sums a
 * row the same way whatever the row count, and the recurrent kernel runs
 * each stream alike alone or in a group. */
static void
forward_streams (RnnForward *fw, Scratch *sc, const RnnModel *m,
    RnnState *state, const float *x, guint T, guint B, gsize b0, gsize nb,
    float *y)
{
  const RnnKernels *kern = rnn_kernels_get ();
  const RnnConfig *c = &m->cfg;
  const gsize G = rnn_cell_gates (c->cell), H = c->hidden_size, GH = G * H;
  const gsize D = c->bidirectional ? 2 : 1, DH = D * H;
  const gboolean lstm = c->cell == RNN_CELL_LSTM, whole = nb == B;

  /* rows t*B + b0 .. t*B + b0+nb-1 of a [T][B][n] buffer are contiguous:
   * one kernel call for all T*B rows when the share is the whole call,
   * else one per step */
#define PROJECT(dst, src, n_src, W, bias, t0, len) \
  G_STMT_START { \
    if (whole) \
      kern->project_rows ((dst), (src) + (t0) * B * (n_src), (W), (bias), \
          (len) * B); \
    else \
      for (gsize t_ = 0; t_ < (len); t_++) \
        kern->project_rows ((dst) + t_ * nb * (W)->N, \
            (src) + (((t0) + t_) * B + b0) * (n_src), (W), (bias), nb); \
  } G_STMT_END

  gsize n_in = c->input_size;
  const float *in = x;
  if (c->has_input_norm) {
    for (gsize t = 0; t < T; t++)
      for (gsize b = b0; b < b0 + nb; b++)
        for (gsize i = 0; i < n_in; i++) {
          const gsize at = (t * B + b) * n_in + i;
          fw->xn[at] = (x[at] - m->in_mean[i]) / m->in_std[i];
        }
    in = fw->xn;
  }
  /* pre layers, time-distributed: a projection over the share's rows,
   * then the activation pass (rows of a share are contiguous per step) */
  for (guint k = 0; k < c->n_pre; k++) {
    const gsize N = c->pre[k].size;
    float *dst = fw->pre[k];
    dense_rows (kern, dst, in, n_in, &m->plan.pre[k], m->pre_b[k], T, B,
        b0, nb, c->pre[k].activation);
    in = dst;
    n_in = N;
  }

  const gsize O = c->has_head ? c->output_size : 0;
  /* the first layer in the register kernel with its input projection
   * fused in (<= 8 inputs, H = 8 - 32; same bits), and for one
   * layer the head too: a second layer's input is too wide for the fused
   * projection, but the first layer's pass is saved (LSTM 2x32: 1,890 ->
   * 1,510 instructions per step for that layer) */
  const gboolean fused0 = !fw->plain && m->plan.first_fused;
  const gboolean fused = fused0 && m->plan.direct == RNN_DIRECT_SMALL;

  const gsize piece = MIN (T, piece_steps (nb, GH));
  for (guint k = 0; k < c->num_layers; k++) {
    /* the last layer without a head writes straight into y */
    float *out = (k + 1 == c->num_layers && !c->has_head && c->n_post == 0)
        ? y : fw->seq[k & 1];
    for (guint d = 0; d < D; d++) {
      const RnnLayerParams *lp = &m->layers[k * D + d];
      float *h, *cs = NULL;
      if (state) {
        h = rnn_state_h_block (state, k, d) + b0 * H;
        cs = lstm ? rnn_state_c_block (state, k, d) + b0 * H : NULL;
      } else {
        h = sc->zero;
        cs = lstm ? sc->zero + nb * H : NULL;
        if (m->h0)
          rnn_model_initial_state (m, k, d, nb, h, cs);
        else
          memset (sc->zero, 0, 2 * nb * H * sizeof (float));
      }
      const RnnPackedLayer *pk = &m->plan.packed[k * D + d];
      /* pieces of steps in the direction of time: project their input, then
       * run the recurrence over them; each step reads the previous h from
       * the output row written before it */
      const float *h0 = h;
      gsize h0_stride = H;
      const gboolean here = fused0 && k == 0;
      if (here) {
        const gsize Ok = fused ? O : 0;
        const RnnRecurIoArgs a = {
          .cell = c->cell, .w_ih = &pk->w_ih, .b_ih = lp->b_ih,
          .x = in + b0 * n_in, .x_stride = B * n_in, .x_sstride = n_in,
          .w_hh = &pk->w_hh_blocked, .b_hh = lp->b_hh, .T = T, .B = nb,
          .h0 = h0, .h0_stride = H, .c = cs,
          .out = out + b0 * DH, .row_stride = B * DH, .stream_stride = DH,
          .head_w = m->head_w, .O = Ok, .head_b = m->head_b,
          .y = y + b0 * O, .y_stride = B * O, .y_sstride = O,
        };
        (H == 8 ? kern->recur_h8_io : kern->recur_hreg_io) (&a);
        h0 = out + ((gsize) (T - 1) * B + b0) * DH;
        h0_stride = DH;
      }
      for (gsize done = 0; done < T && !here; done += piece) {
        const gsize len = MIN (piece, T - done);
        const gsize t0 = d ? T - done - len : done;
        float *o = out + (t0 * B + b0) * DH + d * H;
        PROJECT (sc->xp, in, n_in, &pk->w_ih, lp->b_ih, t0, len);
        const RnnRecurArgs a = {
          .cell = c->cell, .w_hh = &pk->w_hh_blocked, .b_hh = lp->b_hh,
          .xp = sc->xp, .T = len, .B = nb, .H = H, .reverse = d != 0,
          .h0 = h0, .h0_stride = h0_stride, .c = cs,
          .out = o, .row_stride = B * DH, .stream_stride = DH,
          .pre = sc->pre,
        };
        kern->recur (&a);
        h0 = d ? o : o + (len - 1) * B * DH;
        h0_stride = DH;
      }
      if (state)
        for (gsize b = 0; b < nb; b++)
          memcpy (h + b * H, h0 + b * DH, H * sizeof (float));
    }
    in = out;
    n_in = DH;
  }
  /* post layers, as the pre layers; the last one without a head writes
   * straight into y */
  n_in = DH;
  for (guint k = 0; k < c->n_post; k++) {
    const gsize N = c->post[k].size;
    float *dst = (k + 1 == c->n_post && !c->has_head) ? y : fw->post[k];
    dense_rows (kern, dst, in, n_in, &m->plan.post[k], m->post_b[k], T, B,
        b0, nb, c->post[k].activation);
    in = dst;
    n_in = N;
  }
  /* the head (its linear part already computed by the fused kernel) */
  for (gsize t = 0; t < T && c->has_head; t++) {
    float *yt = y + (t * B + b0) * O;
    if (!fused)
      kern->head_rows (yt, O, in + (t * B + b0) * n_in, n_in, m->head_w,
          m->head_b, nb, O, n_in);
    rnn_head_activate (c->head_activation, yt, nb, O);
  }
  if (c->skip) {
    const gsize n_out = O ? O : n_in;
    for (gsize t = 0; t < T; t++)
      add_skip (c, x + (t * B + b0) * c->input_size,
          y + (t * B + b0) * n_out, nb, n_out);
  }
#undef PROJECT
}

static void
run_share (gpointer data, gpointer user_data)
{
  Share *sh = data;
  RnnForward *fw = user_data;

  forward_streams (fw, sh->scratch, sh->m, sh->state, sh->x, sh->T, sh->B,
      sh->b0, sh->nb, sh->y);
  g_mutex_lock (&fw->lock);
  if (--fw->pending == 0)
    g_cond_signal (&fw->done);
  g_mutex_unlock (&fw->lock);
}

void
rnn_forward_set_plain (RnnForward *fw, gboolean plain)
{
  g_return_if_fail (fw != NULL);
  fw->plain = plain;
}

/* Below this many multiply-adds a call stays on one thread: handing work
 * to another costs some microseconds. */
#define MIN_WORK_PER_THREAD (1 << 18)

static void forward_call (RnnForward *fw, const RnnModel *m,
    RnnState *state, const float *x, guint T, guint B, float *y);

/* Plans @m (once, thread-safe), then runs the call; if planning failed (no
 * memory for the packed weights: warned) the output is zeros. */
static void __attribute__ ((noinline))
forward_unplanned (RnnForward *fw, const RnnModel *m, RnnState *state,
    const float *x, guint T, guint B, float *y)
{
  if (rnn_model_plan_lazily (m))
    rnn_forward (fw, m, state, x, T, B, y);
  else
    memset (y, 0, (gsize) T * B * rnn_model_get_output_size (m)
        * sizeof (float));
}

void
rnn_forward (RnnForward *fw, const RnnModel *m, RnnState *state,
    const float *x, guint T, guint B, float *y)
{
  g_return_if_fail (fw != NULL && m != NULL && x != NULL && y != NULL);
  g_return_if_fail (rnn_state_matches (m, state, B));
  const RnnConfig *c = &m->cfg;
  if (T == 0 || B == 0)
    return;
  /* planned at load, else by the first call (a tail call with the same
   * arguments, which keeps this function's prologue as short as the
   * one-sample path needs) */
  if (G_UNLIKELY (!g_atomic_int_get (&m->plan.ready))) {
    forward_unplanned (fw, m, state, x, T, B, y);
    return;
  }
  /* one sample of one stream of a model with a direct path (the
   * per-sample audio model driven sample by sample): RnnStep1's kernel,
   * before any other bookkeeping.  Everything else is forward_call ()'s,
   * a function of its own, so that this path does not pay for its
   * prologue (six registers saved and restored) */
  const RnnStep1 *s1 = &m->plan.step1;
  if (T == 1 && B == 1 && s1->fn && !fw->plain && !c->has_input_norm) {
    s1->fn (s1, x, rnn_state_h_block (state, 0, 0),
        rnn_state_c_block (state, 0, 0), y);
    if (s1->O && c->head_activation != RNN_HEAD_ACT_NONE)
      rnn_head_activate (c->head_activation, y, 1, s1->O);
    if (c->skip)
      add_skip (c, x, y, 1, s1->O ? s1->O : s1->H);
    return;
  }
  forward_call (fw, m, state, x, T, B, y);
}

static void __attribute__ ((noinline))
forward_call (RnnForward *fw, const RnnModel *m, RnnState *state,
    const float *x, guint T, guint B, float *y)
{
  const RnnConfig *c = &m->cfg;
  /* independent streams split over the threads, in shares of a multiple
   * of four streams where possible (the recurrent kernel shares weight
   * loads within groups of two to four) */
  const gsize H = c->hidden_size;
  guint n = 1;
  if (fw->n_threads > 1 && B > 1) {
    const gsize work = (gsize) T * B * rnn_cell_gates (c->cell) * H
        * (H + c->input_size) * c->num_layers * (c->bidirectional ? 2 : 1);
    n = MIN (fw->n_threads, B);
    n = (guint) MIN ((gsize) n, MAX (1, work / MIN_WORK_PER_THREAD));
  }

  const RnnKernels *kern = rnn_kernels_get ();
  /* the direct paths (RnnDirect), chosen per model by its plan */
  const RnnDirect direct = fw->plain || n > 1 || c->has_input_norm
      ? RNN_DIRECT_NONE : m->plan.direct;
  const gsize n_in = c->input_size, O = c->has_head ? c->output_size : 0;
  if (direct == RNN_DIRECT_SMALL
      || (direct == RNN_DIRECT_ONE && B == 1 && T <= 2)) {
    /* straight to the kernel: no scratch, no h rows unless they are the
     * output, the last h written into the state.  The general path's
     * bookkeeping (projection and head passes, scratch, state copy) costs
     * some 700 instructions per call, as much as a step of these models,
     * which matters at one sample per call. */
    const RnnLayerParams *lp = &m->layers[0];
    const RnnPackedLayer *pk = &m->plan.packed[0];
    float *h = rnn_state_h_block (state, 0, 0);
    float *cs = rnn_state_c_block (state, 0, 0);
    const RnnRecurIoArgs a = {
      .cell = c->cell, .w_ih = &pk->w_ih, .b_ih = lp->b_ih,
      .x = x, .x_stride = B * n_in, .x_sstride = n_in,
      .w_hh = &pk->w_hh_blocked, .b_hh = lp->b_hh, .T = T, .B = B,
      .h0 = h, .h0_stride = H, .c = cs,
      .out = O ? NULL : y, .row_stride = B * H, .stream_stride = H,
      .head_w = m->head_w, .O = O, .head_b = m->head_b,
      .y = y, .y_stride = B * O, .y_sstride = O, .h_final = h,
    };
    if (direct == RNN_DIRECT_SMALL)
      (H == 8 ? kern->recur_h8_io : kern->recur_hreg_io) (&a);
    else
      kern->recur_one_io (&a);
    if (O)
      rnn_head_activate (c->head_activation, y, (gsize) T * B, O);
    if (c->skip)
      add_skip (c, x, y, (gsize) T * B, O ? O : H);
    return;
  }
  if (direct == RNN_DIRECT_SMALL2 && B == 1) {
    const RnnPackedLayer *pk = m->plan.packed;
    const RnnRecur2IoArgs a = {
      .cell = c->cell,
      .w_ih = { &pk[0].w_ih, &pk[1].w_ih },
      .w_hh = { &pk[0].w_hh_blocked, &pk[1].w_hh_blocked },
      .b_ih = { m->layers[0].b_ih, m->layers[1].b_ih },
      .b_hh = { m->layers[0].b_hh, m->layers[1].b_hh },
      .x = x, .x_stride = n_in, .T = T,
      .h = { rnn_state_h_block (state, 0, 0), rnn_state_h_block (state, 1, 0) },
      .c = { rnn_state_c_block (state, 0, 0), rnn_state_c_block (state, 1, 0) },
      .out = O ? NULL : y, .row_stride = H,
      .head_w = m->head_w, .O = O, .head_b = m->head_b,
      .y = y, .y_stride = O,
    };
    kern->recur_h8x2_io (&a);
    if (O)
      rnn_head_activate (c->head_activation, y, T, O);
    if (c->skip)
      add_skip (c, x, y, T, O ? O : H);
    return;
  }
  forward_reserve (fw, m, T, B);
  if (n <= 1) {
    scratch_reserve (&fw->own, m, T, B);
    forward_streams (fw, &fw->own, m, state, x, T, B, 0, B, y);
    return;
  }
  gsize per = (B + n - 1) / n;
  if (per > 4)
    per = (per + 3) / 4 * 4;
  n = (guint) ((B + per - 1) / per);
  g_mutex_lock (&fw->lock);
  fw->pending = n - 1;
  g_mutex_unlock (&fw->lock);
  for (guint i = 0; i < n; i++) {
    Share *sh = &fw->shares[i];
    *sh = (Share) { m, state, x, T, B, i * per, MIN (per, B - i * per), y,
        i == 0 ? &fw->own : &fw->worker[i - 1] };
    scratch_reserve (sh->scratch, m, T, sh->nb);
  }
  for (guint i = 1; i < n; i++)
    g_thread_pool_push (fw->pool, &fw->shares[i], NULL);
  forward_streams (fw, &fw->own, m, state, x, T, B, 0, fw->shares[0].nb, y);
  g_mutex_lock (&fw->lock);
  while (fw->pending > 0)
    g_cond_wait (&fw->done, &fw->lock);
  g_mutex_unlock (&fw->lock);
}
