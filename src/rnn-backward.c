/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Backpropagation through time: the training forward pass (which caches what
 * the backward pass needs), the losses, and the backward pass through the
 * head, every layer and direction and the input normalisation.
 *
 * Layout of a batch: B windows of T steps, time-major, so "row" r = t*B + b
 * of every [T][B][...] buffer is step t of window b.  Per layer and
 * direction, one sgemm projects the inputs of a piece of steps (256 KB of
 * rows, which stay in L2 until their steps run); the recurrence
 * runs step by step with the panel kernel (rnn_project_rows() with the
 * packed, transposed W_hh of the model's plan) and exponential-based activations, caching what
 * backward needs.  It computes rnn_forward()'s function to within rounding
 * (the inference kernel sums in another order and uses rational gate
 * activations; both are held to PyTorch by the parity tests).  Backward walks the
 * steps in reverse, turning the gradient of each h into the gradients of
 * the gate pre-activations (dG) and summing each step's rows into the
 * bias gradients (and into dW_ih when the layer has at most SMALL_IN
 * inputs) while they are in L1.  dG is kept for a piece of steps (the
 * forward's piece size); when the walk leaves a piece, one sgemm over its
 * rows adds dW_hh += dGᵀ·H_prev (likewise dW_ih += dGᵀ·X for wider inputs),
 * and one more gives the gradient passed down to the layer below
 * (dX = dG·W_ih), while those rows of dG are in L2.  (All T*B rows at once
 * went through memory: 8 MB of dG for LSTM H=64, T=256, B=32.) */
#include "rnn-private.h"
#include "rnn-kernels.h"
#include "rnn-train.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* What the forward pass keeps of one layer and direction.  h and c are
 * indexed by time with one extra slot for the initial state: forward
 * direction slot 0 = initial, slot t+1 = step t; reverse direction slot t =
 * step t, slot T = initial.  Either way the T rows of "previous h" that
 * the steps t = 0..T-1 read are contiguous (slots 0..T-1 or 1..T). */
typedef struct {
  float *h;         /* [T+1][B][H] */
  float *c;         /* [T+1][B][H] LSTM, else NULL */
  float *tc;        /* [T][B][H] tanh(c_t), LSTM */
  float *gates;     /* [T][B][G*H] activations: LSTM i f g o, GRU r z n */
  float *hn;        /* [T][B][H] GRU: W_hn h_prev + b_hn */
} LayerCache;

struct _RnnTrain {
  float *buf;                       /* one allocation, carved below */
  gsize capacity;                   /* floats */

  /* forward caches */
  float *xn;                        /* [T][B][I] the (normalised) input */
  float *pre_out[RNN_MAX_DENSE_LAYERS];  /* [T][B][P_k] pre layer k's output */
  float *post_out[RNN_MAX_DENSE_LAYERS]; /* [T][B][Q_k] post layer k's output */
  float *out[RNN_MAX_LAYERS];       /* [T][B][D*H] output of layer k */
  LayerCache lc[RNN_MAX_LAYERS * 2];/* [L][D] */
  float *z;                         /* [T][B][O] head logits (head only) */
  float *y;                         /* [T][B][O] the model's output (after the
                                     * head activation and the skip); NULL
                                     * without a head and a skip */
  float *ya;                        /* [T][B][O] the head activation's output
                                     * before the skip (head and skip only) */
  /* scratch */
  float *xp;                        /* [xp_steps][B][G*H] input projection */
  gsize xp_steps;                   /* steps per projected piece */
  float *hp;                        /* [B][G*H] recurrent projection of one step */
  /* backward */
  float *dz;                        /* [T][B][O] dLoss/d(logits), from the loss */
  float *dy;                        /* [T][B][O] dLoss/d(output), kept for the
                                     * skip's input gradient (skip only) */
  float *dout[2];                   /* [T][B][max width] dLoss/d(layer output),
                                     * ping-pong */
  float *dgx;                       /* [xp_steps][B][G*H] dLoss/d(input-side pre-activations) */
  float *dgh;                       /* [xp_steps][B][G*H] dLoss/d(recurrent-side ones), GRU */
  float *dh[2];                     /* [B][H] dLoss/dh through the recurrence, ping-pong */
  float *dc;                        /* [B][H] dLoss/dc through the recurrence, LSTM */
  float *dxn;                       /* [T][B][I] dLoss/d(normalised input) */
  float *db_sum;                    /* [2][G*H] per layer: the bias gradients' sums */
  float *dw_sum;                    /* [SMALL_IN][G*H] per layer: dW_ih's, transposed */

  /* what the last forward pass ran */
  const RnnModel *model;
  guint T, B;
  gboolean have_forward, have_loss;
  /* the last loss's sums (rnn_train_loss_sums ()) */
  double loss_num, loss_den;
};

/* ---- workspace ----------------------------------------------------------- */

RnnTrain *
rnn_train_new (void)
{
  return g_new0 (RnnTrain, 1);
}

void
rnn_train_free (RnnTrain *tr)
{
  if (!tr)
    return;
  g_free (tr->buf);
  g_free (tr);
}

#define R16(n) (((n) + 15) & ~(gsize) 15)

/* Input projections of at most this many floats at once (256 KB): a
 * piece of steps stays in L2 until the steps read it; all T*B rows at
 * once (8 MB for LSTM H=64, T=256, B=32) went to memory and back. */
#define XP_PIECE 65536
/* Layers with at most this many inputs accumulate dW_ih step by step, with
 * the bias gradients (sums over the rows of dG_t while they are in L1);
 * wider ones take one sgemm over all rows. */
#define SMALL_IN 4

/* Takes @n floats (rounded up to 16, keeping 64-byte alignment) at *off;
 * returns the pointer when @base is set, NULL while only measuring. */
static float *
carve (float *base, gsize *off, gsize n)
{
  float *p = base ? base + *off : NULL;
  *off += R16 (n);
  return n ? p : NULL;
}

/* Lays out every buffer for @T steps of @B windows of @m; with @base NULL it
 * only counts.  Returns the floats needed. */
static gsize
train_layout (RnnTrain *tr, float *base, const RnnModel *m, gsize T, gsize B)
{
  const RnnConfig *c = &m->cfg;
  const gsize G = rnn_cell_gates (c->cell), H = c->hidden_size, GH = G * H;
  const gsize D = c->bidirectional ? 2 : 1, DH = D * H, TB = T * B;
  const gsize O = rnn_model_get_output_size (m), n_in = c->input_size;
  const gboolean lstm = c->cell == RNN_CELL_LSTM, gru = c->cell == RNN_CELL_GRU;
  gsize off = 0;

  /* the widest activation a gradient flows through: a layer's output or
   * input, a pre or post layer's */
  gsize wmax = MAX (DH, rnn_config_rnn_input_size (c));
  tr->xn = carve (base, &off, TB * n_in);
  for (guint k = 0; k < c->n_pre; k++) {
    tr->pre_out[k] = carve (base, &off, TB * c->pre[k].size);
    wmax = MAX (wmax, c->pre[k].size);
  }
  for (guint k = 0; k < c->n_post; k++) {
    tr->post_out[k] = carve (base, &off, TB * c->post[k].size);
    wmax = MAX (wmax, c->post[k].size);
  }
  for (guint k = 0; k < c->num_layers; k++)
    tr->out[k] = carve (base, &off, TB * DH);
  for (gsize l = 0; l < c->num_layers * D; l++) {
    LayerCache *lc = &tr->lc[l];
    lc->h = carve (base, &off, (T + 1) * B * H);
    lc->c = carve (base, &off, lstm ? (T + 1) * B * H : 0);
    lc->tc = carve (base, &off, lstm ? TB * H : 0);
    lc->gates = carve (base, &off, lstm || gru ? TB * GH : 0);
    lc->hn = carve (base, &off, gru ? TB * H : 0);
  }
  tr->z = carve (base, &off, c->has_head ? TB * O : 0);
  tr->y = carve (base, &off, c->has_head || c->skip ? TB * O : 0);
  tr->ya = carve (base, &off, c->has_head && c->skip ? TB * O : 0);
  tr->xp_steps = CLAMP (XP_PIECE / (B * GH), 1, T);
  tr->xp = carve (base, &off, tr->xp_steps * B * GH);
  tr->hp = carve (base, &off, B * GH);
  tr->dz = carve (base, &off, TB * O);
  tr->dy = carve (base, &off, c->skip ? TB * O : 0);
  tr->dout[0] = carve (base, &off, TB * wmax);
  tr->dout[1] = carve (base, &off, TB * wmax);
  tr->dgx = carve (base, &off, tr->xp_steps * B * GH);
  tr->dgh = carve (base, &off, gru ? tr->xp_steps * B * GH : 0);
  tr->dh[0] = carve (base, &off, B * H);
  tr->dh[1] = carve (base, &off, B * H);
  tr->dc = carve (base, &off, lstm ? B * H : 0);
  tr->dxn = carve (base, &off, TB * n_in);
  tr->db_sum = carve (base, &off, 2 * GH);
  tr->dw_sum = carve (base, &off, SMALL_IN * GH);
  return off;
}

gsize
rnn_train_workspace_bytes (const RnnModel *model, guint T, guint B)
{
  RnnTrain measure = { 0 };

  g_return_val_if_fail (model != NULL, 0);
  return train_layout (&measure, NULL, model, T, B) * sizeof (float);
}

gboolean
rnn_train_reserve (RnnTrain *tr, const RnnModel *model, guint T, guint B,
    GError **error)
{
  RnnTrain measure = { 0 };

  g_return_val_if_fail (tr != NULL && model != NULL, FALSE);
  const gsize need = train_layout (&measure, NULL, model, T, B);
  if (need <= tr->capacity)
    return TRUE;
  float *buf = g_try_malloc_n (need, sizeof (float));
  if (!buf) {
    g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_NOMEM,
        "Out of memory for the training workspace (%" G_GSIZE_FORMAT
        " bytes for %u steps of %u windows).", need * sizeof (float), T, B);
    return FALSE;
  }
  g_free (tr->buf);
  tr->buf = buf;
  tr->capacity = need;
  tr->have_forward = tr->have_loss = FALSE;
  return TRUE;
}

/* Carves the buffers, reallocating only for a larger need than ever. */
static void
train_reserve (RnnTrain *tr, const RnnModel *m, guint T, guint B)
{
  const gsize need = train_layout (tr, NULL, m, T, B);
  if (need > tr->capacity) {
    g_free (tr->buf);
    tr->buf = g_malloc_n (need, sizeof (float));
    tr->capacity = need;
  }
  train_layout (tr, tr->buf, m, T, B);
}

/* ---- cells: forward (caching) next to backward ---------------------------
 *
 * Forward: one step of B windows from the input projection @xp [B][G*H]
 * (b_ih included) and the recurrent projection @hp [B][G*H] (b_hh
 * included), the arithmetic exactly that of the inference cell; writes h
 * [B][H] and the layer output @out (stride @ostride between windows).
 *
 * Backward: from @dh_out (the gradient of the step's output from above,
 * stride @ostride) plus @dh_rec [B][H] (from the next step through the
 * recurrence), writes the gradients of the pre-activations: @dgx [B][G*H]
 * for the input side (W_ih, b_ih) and, where they differ (GRU), @dgh for the
 * recurrent side (W_hh, b_hh).  What flows on to the previous h besides
 * dgh·W_hh is written to @dh_prev (GRU) or carried in @dc (LSTM). */

/* Elman RNN: h' = act(xp + hp). */
static void
elman_forward (float *restrict h, float *restrict out, const float *restrict xp,
    const float *restrict hp, gboolean relu, gsize ostride, gsize B, gsize H)
{
  for (gsize b = 0; b < B; b++) {
    const float *x = xp + b * H, *r = hp + b * H;
    float *hb = h + b * H, *ob = out + b * ostride;
    if (relu) {
      for (gsize j = 0; j < H; j++) {
        const float v = x[j] + r[j];
        ob[j] = hb[j] = v > 0.0f ? v : 0.0f;
      }
    } else {
      for (gsize j = 0; j < H; j++)
        hb[j] = x[j] + r[j];
      rnn_kernels_get ()->tanh_array (hb, H);
      memcpy (ob, hb, H * sizeof (float));
    }
  }
}

static void
elman_backward (float *restrict dgx, const float *restrict dh_out,
    const float *restrict dh_rec, const float *restrict h, gboolean relu,
    gsize ostride, gsize B, gsize H)
{
  for (gsize b = 0; b < B; b++) {
    const float *hb = h + b * H, *db = dh_out + b * ostride, *dr = dh_rec + b * H;
    float *g = dgx + b * H;
    for (gsize j = 0; j < H; j++) {
      const float dh = db[j] + dr[j];
      /* relu: torch's threshold_backward passes the gradient where the
       * pre-activation is > 0, which is where h > 0 */
      g[j] = relu ? (hb[j] > 0.0f ? dh : 0.0f) : dh * (1.0f - hb[j] * hb[j]);
    }
  }
}

/* LSTM, gate rows i, f, g, o: c' = f c + i g, h' = o tanh(c').  The
 * activations are the inference kernels' vectorised ones, applied to whole
 * gate rows. */
static void
lstm_forward (float *restrict h, float *restrict c, float *restrict tc,
    float *restrict gates, float *restrict out, const float *restrict xp,
    const float *restrict hp, const float *restrict c_prev, gsize ostride,
    gsize B, gsize H)
{
  const RnnKernels *k = rnn_kernels_get ();
  for (gsize b = 0; b < B; b++) {
    const float *x = xp + b * 4 * H, *r = hp + b * 4 * H;
    float *gi = gates + b * 4 * H, *gf = gi + H, *gg = gi + 2 * H, *go = gi + 3 * H;
    const float *cp = c_prev + b * H;
    float *cb = c + b * H, *tb = tc + b * H, *hb = h + b * H, *ob = out + b * ostride;
    for (gsize j = 0; j < 4 * H; j++)
      gi[j] = x[j] + r[j];
    k->sigmoid_array (gi, 2 * H);       /* i, f */
    k->tanh_array (gg, H);
    k->sigmoid_array (go, H);
    for (gsize j = 0; j < H; j++)
      tb[j] = cb[j] = gf[j] * cp[j] + gi[j] * gg[j];
    k->tanh_array (tb, H);
    for (gsize j = 0; j < H; j++)
      ob[j] = hb[j] = go[j] * tb[j];
  }
}

/* @dc [B][H]: in, dLoss/dc' through the recurrence; out, dLoss/dc. */
static void
lstm_backward (float *restrict dgx, float *restrict dc,
    const float *restrict dh_out, const float *restrict dh_rec,
    const float *restrict gates, const float *restrict tc,
    const float *restrict c_prev, gsize ostride, gsize B, gsize H)
{
  for (gsize b = 0; b < B; b++) {
    const float *gi = gates + b * 4 * H, *gf = gi + H, *gg = gi + 2 * H, *go = gi + 3 * H;
    float *di = dgx + b * 4 * H, *df = di + H, *dg = di + 2 * H, *dout = di + 3 * H;
    const float *db = dh_out + b * ostride, *dr = dh_rec + b * H;
    const float *tb = tc + b * H, *cp = c_prev + b * H;
    float *dcb = dc + b * H;
    for (gsize j = 0; j < H; j++) {
      const float dh = db[j] + dr[j];
      const float i = gi[j], f = gf[j], g = gg[j], o = go[j], t = tb[j];
      const float dcj = dcb[j] + dh * o * (1.0f - t * t);
      di[j] = dcj * g * i * (1.0f - i);
      df[j] = dcj * cp[j] * f * (1.0f - f);
      dg[j] = dcj * i * (1.0f - g * g);
      dout[j] = dh * t * o * (1.0f - o);
      dcb[j] = dcj * f;
    }
  }
}

/* GRU, gate rows r, z, n: n = tanh(xn + r (W_hn h + b_hn)),
 * h' = (1 - z) n + z h. */
static void
gru_forward (float *restrict h, float *restrict gates, float *restrict hn,
    float *restrict out, const float *restrict xp, const float *restrict hp,
    const float *restrict h_prev, gsize ostride, gsize B, gsize H)
{
  const RnnKernels *k = rnn_kernels_get ();
  for (gsize b = 0; b < B; b++) {
    const float *x = xp + b * 3 * H, *r = hp + b * 3 * H;
    const float *xn = x + 2 * H, *rn = r + 2 * H;
    float *gr = gates + b * 3 * H, *gz = gr + H, *gn = gr + 2 * H;
    const float *hpb = h_prev + b * H;
    float *hb = h + b * H, *nb = hn + b * H, *ob = out + b * ostride;
    for (gsize j = 0; j < 2 * H; j++)
      gr[j] = x[j] + r[j];
    k->sigmoid_array (gr, 2 * H);       /* r, z */
    for (gsize j = 0; j < H; j++) {
      gn[j] = xn[j] + gr[j] * rn[j];
      nb[j] = rn[j];
    }
    k->tanh_array (gn, H);
    for (gsize j = 0; j < H; j++)
      ob[j] = hb[j] = (1.0f - gz[j]) * gn[j] + gz[j] * hpb[j];
  }
}

/* @dh_prev [B][H]: the direct part z·dh of dLoss/dh_prev. */
static void
gru_backward (float *restrict dgx, float *restrict dgh, float *restrict dh_prev,
    const float *restrict dh_out, const float *restrict dh_rec,
    const float *restrict gates, const float *restrict hn,
    const float *restrict h_prev, gsize ostride, gsize B, gsize H)
{
  for (gsize b = 0; b < B; b++) {
    const float *gr = gates + b * 3 * H, *gz = gr + H, *gn = gr + 2 * H;
    float *xr = dgx + b * 3 * H, *xz = xr + H, *xn = xr + 2 * H;
    float *hr = dgh + b * 3 * H, *hz = hr + H, *hnn = hr + 2 * H;
    const float *db = dh_out + b * ostride, *dr = dh_rec + b * H;
    const float *hpb = h_prev + b * H, *nb = hn + b * H;
    float *dp = dh_prev + b * H;
    for (gsize j = 0; j < H; j++) {
      const float dh = db[j] + dr[j];
      const float r = gr[j], z = gz[j], n = gn[j];
      const float dn = dh * (1.0f - z) * (1.0f - n * n);
      const float dzp = dh * (hpb[j] - n) * z * (1.0f - z);
      const float drp = dn * nb[j] * r * (1.0f - r);
      xr[j] = hr[j] = drp;
      xz[j] = hz[j] = dzp;
      xn[j] = dn;
      hnn[j] = dn * r;
      dp[j] = dh * z;
    }
  }
}

/* ---- training forward -------------------------------------------------- */

void
rnn_train_forward (RnnTrain *tr, float *y, RnnState *state, const float *x,
    const RnnModel *m, guint T, guint B)
{
  g_return_if_fail (tr != NULL);
  /* a refused call leaves nothing for rnn_train_loss() to work on */
  tr->have_forward = tr->have_loss = FALSE;
  g_return_if_fail (m != NULL && x != NULL);
  g_return_if_fail (T > 0 && B > 0 && (gsize) T * B <= G_MAXINT);
  if (!g_atomic_int_get (&m->plan.ready) && !rnn_model_plan_lazily (m))
    return;                     /* no memory for the plan: warned */
  const RnnConfig *c = &m->cfg;
  if (c->bidirectional)
    g_return_if_fail (state == NULL);
  else
    g_return_if_fail (state == NULL || (state->batch == B && rnn_state_fits (state, m)));

  train_reserve (tr, m, T, B);
  tr->model = m;
  tr->T = T;
  tr->B = B;

  const gsize G = rnn_cell_gates (c->cell), H = c->hidden_size, GH = G * H;
  const gsize D = c->bidirectional ? 2 : 1, DH = D * H, TB = (gsize) T * B;
  const gsize BH = (gsize) B * H, n_in = c->input_size;

  /* the input is kept: layer 0's weight gradient needs it */
  if (c->has_input_norm) {
    for (gsize r = 0; r < TB; r++)
      for (gsize i = 0; i < n_in; i++)
        tr->xn[r * n_in + i] = (x[r * n_in + i] - m->in_mean[i]) / m->in_std[i];
  } else {
    memcpy (tr->xn, x, TB * n_in * sizeof (float));
  }

  /* pre layers, time-distributed, their outputs kept for the backward */
  const float *in = tr->xn;
  gsize n_cur = n_in;
  for (guint k = 0; k < c->n_pre; k++) {
    const gsize N = c->pre[k].size;
    rnn_linear_rows (tr->pre_out[k], in, m->pre_w[k], m->pre_b[k], TB, N, n_cur);
    rnn_dense_activate (c->pre[k].activation, tr->pre_out[k], TB, N);
    in = tr->pre_out[k];
    n_cur = N;
  }
  for (guint k = 0; k < c->num_layers; k++) {
    float *out = tr->out[k];
    for (guint d = 0; d < D; d++) {
      const RnnLayerParams *lp = &m->layers[k * D + d];
      LayerCache *lc = &tr->lc[k * D + d];
      const gsize init = d ? T : 0;      /* slot of the initial state */

      if (state) {
        memcpy (lc->h + init * BH, rnn_state_h (state, k, d), BH * sizeof (float));
        if (lc->c)
          memcpy (lc->c + init * BH, rnn_state_c (state, k, d), BH * sizeof (float));
      } else {
        /* the model's initial state (rnn.h0, rnn.c0; zeros without) */
        rnn_model_initial_state (m, k, d, B, lc->h + init * BH,
            lc->c ? lc->c + init * BH : NULL);
      }

      const gsize P = tr->xp_steps;
      gsize piece = G_MAXSIZE;           /* first step of the projected piece */
      for (gsize s = 0; s < T; s++) {
        const gsize t = d ? T - 1 - s : s;
        const gsize prev = d ? t + 1 : t, cur = d ? t : t + 1;
        if (t / P * P != piece) {
          piece = t / P * P;
          rnn_linear_rows (tr->xp, in + piece * B * lp->in_size, lp->w_ih, lp->b_ih,
              MIN (P, T - piece) * B, GH, lp->in_size);
        }
        const float *xp = tr->xp + (t - piece) * B * GH, *h_prev = lc->h + prev * BH;
        float *h = lc->h + cur * BH, *o = out + t * B * DH + d * H;

        rnn_project_rows (tr->hp, h_prev, &m->plan.packed[k * D + d].w_hh, lp->b_hh, B);
        switch (c->cell) {
          case RNN_CELL_RNN_TANH:
          case RNN_CELL_RNN_RELU:
            elman_forward (h, o, xp, tr->hp, c->cell == RNN_CELL_RNN_RELU, DH, B, H);
            break;
          case RNN_CELL_LSTM:
            lstm_forward (h, lc->c + cur * BH, lc->tc + t * BH, lc->gates + t * B * GH,
                o, xp, tr->hp, lc->c + prev * BH, DH, B, H);
            break;
          case RNN_CELL_GRU:
            gru_forward (h, lc->gates + t * B * GH, lc->hn + t * BH, o, xp, tr->hp,
                h_prev, DH, B, H);
            break;
        }
      }

      if (state) {
        const gsize last = d ? 0 : T;
        memcpy (rnn_state_h (state, k, d), lc->h + last * BH, BH * sizeof (float));
        if (lc->c)
          memcpy (rnn_state_c (state, k, d), lc->c + last * BH, BH * sizeof (float));
      }
    }
    in = out;
  }

  /* post layers, as the pre layers */
  n_cur = DH;
  for (guint k = 0; k < c->n_post; k++) {
    const gsize N = c->post[k].size;
    rnn_linear_rows (tr->post_out[k], in, m->post_w[k], m->post_b[k], TB, N, n_cur);
    rnn_dense_activate (c->post[k].activation, tr->post_out[k], TB, N);
    in = tr->post_out[k];
    n_cur = N;
  }

  const gsize O = rnn_model_get_output_size (m);
  if (c->has_head) {
    rnn_linear_rows (tr->z, in, m->head_w, m->head_b, TB, O, n_cur);
    memcpy (tr->y, tr->z, TB * O * sizeof (float));
    rnn_head_activate (c->head_activation, tr->y, TB, O);
  } else if (c->skip) {
    memcpy (tr->y, in, TB * O * sizeof (float));
  }
  /* the residual skip: the raw input's first channels added after the
   * head activation (docs/design.md §2) */
  if (c->skip) {
    if (tr->ya)
      memcpy (tr->ya, tr->y, TB * O * sizeof (float));
    for (gsize r = 0; r < TB; r++)
      for (gsize o = 0; o < O; o++)
        tr->y[r * O + o] += x[r * n_in + (c->skip == 1 ? 0 : o)];
  }
  if (y)
    memcpy (y, tr->y ? tr->y : in, TB * O * sizeof (float));
  tr->have_forward = TRUE;
}

/* ---- losses ------------------------------------------------------------ */

static const char *const loss_names[] = { "mse", "cross-entropy", "esr" };

const char *
rnn_loss_to_string (RnnLoss loss)
{
  g_return_val_if_fail ((guint) loss < G_N_ELEMENTS (loss_names), NULL);
  return loss_names[loss];
}

gboolean
rnn_loss_from_string (const char *s, RnnLoss *loss)
{
  for (guint i = 0; s && i < G_N_ELEMENTS (loss_names); i++)
    if (strcmp (s, loss_names[i]) == 0) {
      *loss = (RnnLoss) i;
      return TRUE;
    }
  return FALSE;
}

gboolean
rnn_loss_check (RnnLoss loss, const RnnModel *model, GError **error)
{
  g_return_val_if_fail (model != NULL, FALSE);
  const RnnConfig *c = &model->cfg;

  if ((guint) loss >= G_N_ELEMENTS (loss_names)) {
    g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID, "unknown loss %d", (int) loss);
    return FALSE;
  }
  if (loss != RNN_LOSS_CROSS_ENTROPY)
    return TRUE;
  if (c->skip) {
    g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID,
        "cross-entropy trains logits, but this model has a skip (skip = %u), "
        "which adds its input to the outputs after the head activation: "
        "train it with loss mse or esr, or use a model without a skip",
        c->skip);
    return FALSE;
  }
  if (!c->has_head) {
    g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID,
        "cross-entropy needs a model with a head (one output per class)");
    return FALSE;
  }
  if (c->head_activation != RNN_HEAD_ACT_NONE
      && c->head_activation != RNN_HEAD_ACT_SOFTMAX) {
    g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID,
        "cross-entropy trains logits: the head activation must be none or "
        "softmax, not %s", rnn_head_activation_to_string (c->head_activation));
    return FALSE;
  }
  if (c->output_size < 2) {
    g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID,
        "cross-entropy needs at least 2 classes, the head has %u output",
        c->output_size);
    return FALSE;
  }
  return TRUE;
}

/* Weight of row r = t*B + b: the mask times the warm-up. */
static inline float
row_weight (const float *mask, guint warmup, gsize r, gsize B)
{
  if (r / B < warmup)
    return 0.0f;
  return mask ? mask[r] : 1.0f;
}

/* dz = dLoss/d(logits) from dy = dLoss/dy, y = act(z), for @rows rows of
 * @O values, in place in @d. */
static void
head_activation_backward (float *restrict d, const float *restrict y,
    RnnHeadActivation act, gsize rows, gsize O)
{
  for (gsize r = 0; r < rows; r++) {
    float *dr = d + r * O;
    const float *yr = y + r * O;
    switch (act) {
      case RNN_HEAD_ACT_NONE:
        break;
      case RNN_HEAD_ACT_SIGMOID:
        for (gsize o = 0; o < O; o++)
          dr[o] *= yr[o] * (1.0f - yr[o]);
        break;
      case RNN_HEAD_ACT_TANH:
        for (gsize o = 0; o < O; o++)
          dr[o] *= 1.0f - yr[o] * yr[o];
        break;
      case RNN_HEAD_ACT_SOFTMAX:{
        /* dz_o = y_o (dy_o - sum_k dy_k y_k) */
        float dot = 0.0f;
        for (gsize o = 0; o < O; o++)
          dot += dr[o] * yr[o];
        for (gsize o = 0; o < O; o++)
          dr[o] = yr[o] * (dr[o] - dot);
        break;
      }
    }
  }
}

/* Mean squared error on y (after the head activation). */
static double
mse_forward_backward (float *restrict dz, const float *restrict y,
    const float *restrict target, const float *mask, guint warmup,
    double wsum, gsize TB, gsize B, gsize O)
{
  const double n = wsum * (double) O;
  double acc = 0.0;
  for (gsize r = 0; r < TB; r++) {
    const float w = row_weight (mask, warmup, r, B);
    float *dr = dz + r * O;
    if (w == 0.0f) {
      memset (dr, 0, O * sizeof (float));
      continue;
    }
    const float scale = (float) (2.0 * w / n);
    double row = 0.0;
    for (gsize o = 0; o < O; o++) {
      const float e = y[r * O + o] - target[r * O + o];
      row += (double) e * (double) e;
      dr[o] = scale * e;
    }
    acc += (double) w * row;
  }
  return wsum > 0.0 ? acc / n : 0.0;
}

/* Weight of row r = t*B + b under pre-emphasis: the filtered value of step
 * t needs step t-1 of the same window, so step 0 of every window carries no
 * loss, nor a step whose previous one has mask 0 (its target may be
 * anything). */
static inline float
row_weight_emph (const float *mask, guint warmup, double a, gsize r, gsize B)
{
  if (a == 0.0)
    return row_weight (mask, warmup, r, B);
  if (r < B || (mask && !(mask[r - B] > 0.0f)))
    return 0.0f;
  return row_weight (mask, warmup, r, B);
}

/* MSE with pre-emphasis, or ESR (with or without): on e_y = y_t - a y_{t-1}
 * and e_t = tgt_t - a tgt_{t-1} of the same window (a = 0: none),
 *   MSE: sum (w (e_y - e_t)^2) / (sum (w) O)
 *   ESR: sum (w (e_y - e_t)^2) / (sum (w e_t^2) + RNN_ESR_EPS sum (w) O)
 * Writes dLoss/dy to @dz (the filter's transpose: g_t - a g_{t+1}), the
 * numerator and denominator to @num, @den; returns the loss. */
static double
regression_forward_backward (float *restrict dz, const float *restrict y,
    const float *restrict target, const float *mask, guint warmup, double a,
    gboolean esr, gsize TB, gsize B, gsize O, double *num, double *den)
{
  const float af = (float) a;
  double se = 0.0, sy = 0.0, wsum = 0.0;
  for (gsize r = 0; r < TB; r++) {
    const float w = row_weight_emph (mask, warmup, a, r, B);
    if (w == 0.0f)
      continue;
    double row_e = 0.0, row_y = 0.0;
    for (gsize o = 0; o < O; o++) {
      const gsize i = r * O + o;
      const float ey = af != 0.0f ? y[i] - af * y[i - B * O] : y[i];
      const float et = af != 0.0f ? target[i] - af * target[i - B * O] : target[i];
      const float e = ey - et;
      row_e += (double) e * (double) e;
      row_y += (double) et * (double) et;
    }
    se += (double) w * row_e;
    sy += (double) w * row_y;
    wsum += w;
  }
  const double d = esr ? sy + RNN_ESR_EPS * wsum * (double) O : wsum * (double) O;
  *num = se;
  *den = d;
  for (gsize r = 0; r < TB; r++) {
    const float w = row_weight_emph (mask, warmup, a, r, B);
    float *dr = dz + r * O;
    if (w == 0.0f) {
      memset (dr, 0, O * sizeof (float));
      continue;
    }
    const float scale = (float) (2.0 * w / d);
    for (gsize o = 0; o < O; o++) {
      const gsize i = r * O + o;
      const float ey = af != 0.0f ? y[i] - af * y[i - B * O] : y[i];
      const float et = af != 0.0f ? target[i] - af * target[i - B * O] : target[i];
      dr[o] = scale * (ey - et);
    }
  }
  /* through the filter: y_t feeds e_y of steps t and t+1 of its window */
  if (af != 0.0f)
    for (gsize i = 0; i + B * O < TB * O; i++)
      dz[i] -= af * dz[i + B * O];
  return wsum > 0.0 ? se / d : 0.0;
}

/* Cross-entropy on the logits z with class indices, softmax fused:
 * loss = logsumexp(z) - z[class], dz = (softmax(z) - onehot) w / sum(w). */
static double
cross_entropy_forward_backward (float *restrict dz, const float *restrict z,
    const float *restrict target, const float *mask, guint warmup,
    double wsum, gsize TB, gsize B, gsize O)
{
  double acc = 0.0;
  for (gsize r = 0; r < TB; r++) {
    const float w = row_weight (mask, warmup, r, B);
    const float *zr = z + r * O;
    float *dr = dz + r * O;
    if (w == 0.0f) {
      memset (dr, 0, O * sizeof (float));
      continue;
    }
    const gsize cls = (gsize) target[r];
    float mx = zr[0];
    for (gsize o = 1; o < O; o++)
      mx = zr[o] > mx ? zr[o] : mx;
    float sum = 0.0f;
    for (gsize o = 0; o < O; o++)
      sum += (dr[o] = expf (zr[o] - mx));
    const float scale = (float) (w / wsum);
    for (gsize o = 0; o < O; o++)
      dr[o] = scale * (dr[o] / sum - (o == cls ? 1.0f : 0.0f));
    acc += (double) w * ((double) mx + log ((double) sum) - (double) zr[cls]);
  }
  return wsum > 0.0 ? acc / wsum : 0.0;
}

gboolean
rnn_train_loss (RnnTrain *tr, double *loss, const float *target,
    const float *mask, RnnLoss kind, guint warmup, GError **error)
{
  return rnn_train_loss_full (tr, loss, target, mask, kind, 0.0, warmup, error);
}

gboolean
rnn_train_loss_full (RnnTrain *tr, double *loss, const float *target,
    const float *mask, RnnLoss kind, double pre_emphasis, guint warmup,
    GError **error)
{
  g_return_val_if_fail (tr != NULL && loss != NULL && target != NULL, FALSE);
  g_return_val_if_fail (tr->have_forward, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  const RnnModel *m = tr->model;
  const RnnConfig *c = &m->cfg;
  const gsize B = tr->B, TB = (gsize) tr->T * B;
  const gsize O = rnn_model_get_output_size (m);

  tr->have_loss = FALSE;
  if (!rnn_loss_check (kind, m, error))
    return FALSE;
  if (!(pre_emphasis >= 0.0 && pre_emphasis < 1.0)
      || (pre_emphasis > 0.0 && kind == RNN_LOSS_CROSS_ENTROPY)) {
    g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID,
        "pre-emphasis %g: it must be in [0, 1), and 0 with cross-entropy",
        pre_emphasis);
    return FALSE;
  }

  /* the data is the user's: check it before it touches the arithmetic;
   * rows that carry no loss may hold anything */
  double wsum = 0.0;
  for (gsize r = 0; r < TB; r++) {
    if (mask && !(isfinite (mask[r]) && mask[r] >= 0.0f)) {
      g_set_error (error, RNN_ERROR, RNN_ERROR_TENSOR,
          "mask[%" G_GSIZE_FORMAT "][%" G_GSIZE_FORMAT "] = %g: weights must be "
          "finite and >= 0", r / B, r % B, (double) mask[r]);
      return FALSE;
    }
    const float w = row_weight_emph (mask, warmup, pre_emphasis, r, B);
    wsum += w;
    if (w == 0.0f)
      continue;
    if (kind == RNN_LOSS_CROSS_ENTROPY) {
      const float v = target[r];
      if (!(v >= 0.0f && v < (float) O && v == floorf (v))) {
        g_set_error (error, RNN_ERROR, RNN_ERROR_TENSOR,
            "target[%" G_GSIZE_FORMAT "][%" G_GSIZE_FORMAT "] = %g is not a "
            "class index (an integer in [0, %" G_GSIZE_FORMAT "))",
            r / B, r % B, (double) v, O);
        return FALSE;
      }
    } else {
      /* with pre-emphasis, the previous step's target too */
      for (gsize q = pre_emphasis > 0.0 ? r - B : r; q <= r; q += B)
        for (gsize o = 0; o < O; o++)
          if (!isfinite (target[q * O + o])) {
            g_set_error (error, RNN_ERROR, RNN_ERROR_TENSOR,
                "target[%" G_GSIZE_FORMAT "][%" G_GSIZE_FORMAT "][%" G_GSIZE_FORMAT
                "] = %g is not finite", q / B, q % B, o, (double) target[q * O + o]);
            return FALSE;
          }
    }
  }

  if (kind == RNN_LOSS_CROSS_ENTROPY) {
    *loss = cross_entropy_forward_backward (tr->dz, tr->z, target, mask, warmup,
        wsum, TB, B, O);
    tr->loss_num = *loss * wsum;
    tr->loss_den = wsum;
  } else {
    const float *y = tr->y ? tr->y : c->n_post ? tr->post_out[c->n_post - 1]
        : tr->out[c->num_layers - 1];
    if (kind == RNN_LOSS_MSE && pre_emphasis == 0.0) {
      *loss = mse_forward_backward (tr->dz, y, target, mask, warmup, wsum, TB, B, O);
      tr->loss_num = *loss * wsum * (double) O;
      tr->loss_den = wsum * (double) O;
    } else {
      *loss = regression_forward_backward (tr->dz, y, target, mask, warmup,
          pre_emphasis, kind == RNN_LOSS_ESR, TB, B, O, &tr->loss_num,
          &tr->loss_den);
    }
    /* the skip passes dLoss/dy on to the input unchanged */
    if (tr->dy)
      memcpy (tr->dy, tr->dz, TB * O * sizeof (float));
    if (c->has_head)
      head_activation_backward (tr->dz, tr->ya ? tr->ya : tr->y,
          c->head_activation, TB, O);
  }
  tr->have_loss = TRUE;
  return TRUE;
}

/* ---- backward ------------------------------------------------------------ */

/* acc[N] += column sums of a[M][N]. */
static void
colsum_add (float *restrict acc, const float *restrict a, gsize M, gsize N)
{
  for (gsize m = 0; m < M; m++)
    for (gsize n = 0; n < N; n++)
      acc[n] += a[m * N + n];
}

/* dW[N][K] += dYᵀ·X for dY [M][N], X [M][K]: one sgemm. */
static void
weight_grad_add (float *dw, const float *dy, const float *x, gsize M, gsize N,
    gsize K)
{
  cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, (int) N, (int) K,
      (int) M, 1.0f, dy, (int) N, x, (int) K, 1.0f, dw, (int) K);
}

/* dX[M][K] = beta·dX + dY·W for dY [M][N], W [N][K]: one sgemm. */
static void
input_grad (float *dx, const float *dy, const float *w, gsize M, gsize N,
    gsize K, float beta)
{
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) M, (int) K,
      (int) N, 1.0f, dy, (int) N, w, (int) K, beta, dx, (int) K);
}

/* @db[N] += column sums of @dg [B][N] and, for @n_in > 0, @dw [n_in][N] +=
 * @x [B][n_in]ᵀ·@dg: one step's rows, while they are in L1 (a pass over all
 * T*B rows per sum afterwards read them back from memory). */
static void
step_sums_add (float *restrict db, float *restrict dw, const float *restrict dg,
    const float *restrict x, gsize B, gsize N, gsize n_in)
{
  for (gsize b = 0; b < B; b++) {
    const float *g = dg + b * N;
    for (gsize j = 0; j < N; j++)
      db[j] += g[j];
    for (gsize i = 0; i < n_in; i++) {
      const float xi = x[b * n_in + i];
      float *w = dw + i * N;
      for (gsize j = 0; j < N; j++)
        w[j] += g[j] * xi;
    }
  }
}

/* Backward through layer k, direction d: from @dcur [T][B][D*H] (the
 * gradient of the layer's output), accumulates the layer's four parameter
 * gradients into @grads and, when @din is set, writes (@din_beta 0) or adds
 * (@din_beta 1) the gradient of the layer's input [T][B][I_k]. */
static void
layer_backward (RnnTrain *tr, float *grads, float *din, float din_beta,
    const float *dcur, const float *in, const RnnModel *m, guint k, guint d)
{
  const RnnConfig *c = &m->cfg;
  const gsize T = tr->T, B = tr->B;
  const gsize G = rnn_cell_gates (c->cell), H = c->hidden_size, GH = G * H;
  const gsize D = c->bidirectional ? 2 : 1, DH = D * H, BH = B * H;
  const RnnLayerParams *lp = &m->layers[k * D + d];
  const LayerCache *lc = &tr->lc[k * D + d];
  const RnnParamInfo *ti = &m->tensors[(k * D + d) * 4];
  float *dw_ih = grads + ti[0].offset, *dw_hh = grads + ti[1].offset;
  float *db_ih = grads + ti[2].offset, *db_hh = grads + ti[3].offset;
  const gboolean gru = c->cell == RNN_CELL_GRU;
  /* the recurrent side's pre-activation gradients: the input side's except
   * for the GRU's n rows, where r scales W_hn h + b_hn */
  float *dgh = gru ? tr->dgh : tr->dgx;
  float *dh_rec = tr->dh[0], *dh_next = tr->dh[1];
  const gsize n_in = lp->in_size, n_small = n_in <= SMALL_IN ? n_in : 0;
  const gsize P = tr->xp_steps;
  const float *h_prev = lc->h + (d ? BH : 0);     /* [T][B][H], see LayerCache */

  memset (dh_rec, 0, BH * sizeof (float));
  memset (tr->db_sum, 0, 2 * GH * sizeof (float));
  memset (tr->dw_sum, 0, n_small * GH * sizeof (float));
  if (tr->dc)
    memset (tr->dc, 0, BH * sizeof (float));

  /* steps in the reverse of the order the forward pass ran them */
  for (gsize s = T; s-- > 0;) {
    const gsize t = d ? T - 1 - s : s;
    const gsize prev = d ? t + 1 : t, cur = d ? t : t + 1;
    const float *dh_out = dcur + t * B * DH + d * H;
    float *dgx_t = tr->dgx + t % P * B * GH, *dgh_t = dgh + t % P * B * GH;

    switch (c->cell) {
      case RNN_CELL_RNN_TANH:
      case RNN_CELL_RNN_RELU:
        elman_backward (dgx_t, dh_out, dh_rec, lc->h + cur * BH,
            c->cell == RNN_CELL_RNN_RELU, DH, B, H);
        break;
      case RNN_CELL_LSTM:
        lstm_backward (dgx_t, tr->dc, dh_out, dh_rec, lc->gates + t * B * GH,
            lc->tc + t * BH, lc->c + prev * BH, DH, B, H);
        break;
      case RNN_CELL_GRU:
        gru_backward (dgx_t, dgh_t, dh_next, dh_out, dh_rec, lc->gates + t * B * GH,
            lc->hn + t * BH, lc->h + prev * BH, DH, B, H);
        break;
    }
    step_sums_add (tr->db_sum, tr->dw_sum, dgx_t, in + t * B * n_in, B, GH, n_small);
    if (gru)
      step_sums_add (tr->db_sum + GH, NULL, dgh_t, NULL, B, GH, 0);
    /* dLoss/dh_prev = dG_h·W_hh (+ z·dh for the GRU); the initial state is
     * detached, so the first step needs none */
    if (s > 0) {
      input_grad (dh_next, dgh_t, lp->w_hh, B, GH, H, gru ? 1.0f : 0.0f);
      float *tmp = dh_rec;
      dh_rec = dh_next;
      dh_next = tmp;
    }
    /* a piece of steps done (the next step in this walk is in another):
     * its rows' weight gradients and input gradient, one sgemm each,
     * while dG is in L2 */
    if (s == 0 || (d ? t + 1 : t - 1) / P != t / P) {
      const gsize p0 = t / P * P, M = MIN (P, T - p0) * B;
      weight_grad_add (dw_hh, dgh, h_prev + p0 * BH, M, GH, H);
      if (!n_small)
        weight_grad_add (dw_ih, tr->dgx, in + p0 * B * n_in, M, GH, n_in);
      if (din)
        input_grad (din + p0 * B * n_in, tr->dgx, lp->w_ih, M, GH, n_in, din_beta);
    }
  }

  for (gsize j = 0; j < GH; j++) {
    for (gsize i = 0; i < n_small; i++)
      dw_ih[j * n_in + i] += tr->dw_sum[i * GH + j];
    db_ih[j] += tr->db_sum[j];
    db_hh[j] += tr->db_sum[gru ? GH + j : j];
  }
}

/* @dst = dLoss/d(pre-activation) from @src = dLoss/d(output) of a pre or
 * post layer whose output (after @act) is @y, @rows rows of @n; @dst may
 * be @src. */
static void
dense_activation_backward (float *dst, const float *src, const float *y,
    RnnActivation act, gsize rows, gsize n)
{
  const gsize N = rows * n;
  if (dst != src)
    memcpy (dst, src, N * sizeof (float));
  switch (act) {
    case RNN_ACT_NONE:
      break;
    case RNN_ACT_TANH:
      head_activation_backward (dst, y, RNN_HEAD_ACT_TANH, rows, n);
      break;
    case RNN_ACT_SIGMOID:
      head_activation_backward (dst, y, RNN_HEAD_ACT_SIGMOID, rows, n);
      break;
    case RNN_ACT_SOFTMAX:
      head_activation_backward (dst, y, RNN_HEAD_ACT_SOFTMAX, rows, n);
      break;
    case RNN_ACT_RELU:
      /* torch's threshold_backward: where the input was > 0, i.e. y > 0 */
      for (gsize i = 0; i < N; i++)
        dst[i] = y[i] > 0.0f ? dst[i] : 0.0f;
      break;
    case RNN_ACT_ELU:
      /* y = exp(v) - 1 for v <= 0: dy/dv = y + 1 (torch's elu_backward
       * on the output, alpha = 1) */
      for (gsize i = 0; i < N; i++)
        dst[i] = y[i] > 0.0f ? dst[i] : dst[i] * (y[i] + 1.0f);
      break;
  }
}

/* Backward through a dense layer x -> act(W x + b), @y its output [TB][N],
 * @x its input [TB][K], from @dy = dLoss/dy: accumulates dW, db (tensors
 * @ti[0], @ti[1] of @grads) and, when @dx is set, writes dLoss/dx.  @dy is
 * overwritten by dLoss/d(pre-activation). */
static void
dense_backward (float *grads, const RnnParamInfo *ti, float *dx, float *dy,
    const float *y, const float *x, const float *w, RnnActivation act,
    gsize TB, gsize N, gsize K)
{
  dense_activation_backward (dy, dy, y, act, TB, N);
  weight_grad_add (grads + ti[0].offset, dy, x, TB, N, K);
  colsum_add (grads + ti[1].offset, dy, TB, N);
  if (dx)
    input_grad (dx, dy, w, TB, N, K, 0.0f);
}

void
rnn_train_backward (RnnTrain *tr, float *grads, float *dx, const RnnModel *m)
{
  g_return_if_fail (tr != NULL && grads != NULL && m != NULL);
  g_return_if_fail (tr->have_loss && m == tr->model);
  const RnnConfig *c = &m->cfg;
  const gsize TB = (gsize) tr->T * tr->B, H = c->hidden_size;
  const gsize D = c->bidirectional ? 2 : 1, DH = D * H, L = c->num_layers;
  const gsize n_in = c->input_size, P = c->n_pre, Q = c->n_post;
  /* tensors in slab order (rnn.h): the layers, the head, the input
   * normalisation, then the pre and post layers */
  const RnnParamInfo *t_pre = &m->tensors[L * D * 4 + (c->has_head ? 2 : 0)
      + (c->has_input_norm ? 2 : 0)];
  const RnnParamInfo *t_post = t_pre + 2 * P;
#define OTHER(p) ((p) == tr->dout[0] ? tr->dout[1] : tr->dout[0])

  /* the head: dV += dZᵀ·F, db += colsum(dZ), dF = dZ·V, F what it reads */
  float *dcur = tr->dz;
  const gsize F = rnn_config_features (c);
  if (c->has_head) {
    const gsize O = c->output_size;
    const RnnParamInfo *ti = &m->tensors[L * D * 4];
    const float *feat = Q ? tr->post_out[Q - 1] : tr->out[L - 1];
    weight_grad_add (grads + ti[0].offset, tr->dz, feat, TB, O, F);
    colsum_add (grads + ti[1].offset, tr->dz, TB, O);
    input_grad (tr->dout[0], tr->dz, m->head_w, TB, O, F, 0.0f);
    dcur = tr->dout[0];
  } else if (Q) {
    /* the post layers overwrite their gradient: keep the loss's */
    memcpy (tr->dout[0], tr->dz, TB * F * sizeof (float));
    dcur = tr->dout[0];
  }

  for (gsize k = Q; k-- > 0;) {
    const gsize N = c->post[k].size, K = k ? c->post[k - 1].size : DH;
    float *din = OTHER (dcur);
    dense_backward (grads, t_post + 2 * k, din, dcur, tr->post_out[k],
        k ? tr->post_out[k - 1] : tr->out[L - 1], m->post_w[k],
        c->post[k].activation, TB, N, K);
    dcur = din;
  }

  for (gsize k = L; k-- > 0;) {
    float *din = k > 0 || P > 0 ? OTHER (dcur) : (dx ? tr->dxn : NULL);
    const float *in = k > 0 ? tr->out[k - 1] : P ? tr->pre_out[P - 1] : tr->xn;
    for (guint d = 0; d < D; d++)
      layer_backward (tr, grads, din, d ? 1.0f : 0.0f, dcur, in, m, k, d);
    dcur = din;
  }

  for (gsize k = P; k-- > 0;) {
    const gsize N = c->pre[k].size, K = k ? c->pre[k - 1].size : n_in;
    float *din = k > 0 ? OTHER (dcur) : (dx ? tr->dxn : NULL);
    dense_backward (grads, t_pre + 2 * k, din, dcur, tr->pre_out[k],
        k ? tr->pre_out[k - 1] : tr->xn, m->pre_w[k], c->pre[k].activation,
        TB, N, K);
    dcur = din;
  }
#undef OTHER

  /* the input normalisation: x_n = (x - mean) / std; mean and std are
   * constants (not trained) */
  if (dx) {
    if (c->has_input_norm) {
      for (gsize r = 0; r < TB; r++)
        for (gsize i = 0; i < n_in; i++)
          dx[r * n_in + i] = tr->dxn[r * n_in + i] / m->in_std[i];
    } else {
      memcpy (dx, tr->dxn, TB * n_in * sizeof (float));
    }
    /* the skip: y_o += x_o or x_0 */
    if (c->skip) {
      const gsize O = rnn_model_get_output_size (m);
      for (gsize r = 0; r < TB; r++)
        for (gsize o = 0; o < O; o++)
          dx[r * n_in + (c->skip == 1 ? 0 : o)] += tr->dy[r * O + o];
    }
  }
}

/* Whether tensor @ti is trained: everything but the input normalisation
 * (data statistics) and the initial state (kept as it is). */
gboolean
rnn_train_tensor_is_trained (const RnnParamInfo *ti)
{
  return strcmp (ti->name, "input.mean") != 0
      && strcmp (ti->name, "input.std") != 0
      && strcmp (ti->name, "rnn.h0") != 0 && strcmp (ti->name, "rnn.c0") != 0;
}

gsize
rnn_train_get_n_trainable (const RnnModel *model)
{
  g_return_val_if_fail (model != NULL, 0);
  /* the end of the last trained tensor (the padding after it included
   * when it is the slab's last) */
  for (guint i = model->n_tensors; i-- > 0;)
    if (rnn_train_tensor_is_trained (&model->tensors[i]))
      return i + 1 < model->n_tensors ? model->tensors[i + 1].offset
          : model->n_params;
  return 0;
}

gboolean
rnn_train_loss_sums (const RnnTrain *tr, double *num, double *den)
{
  g_return_val_if_fail (tr != NULL, FALSE);
  if (!tr->have_loss)
    return FALSE;
  *num = tr->loss_num;
  *den = tr->loss_den;
  return TRUE;
}

const float *
rnn_train_peek_output (const RnnTrain *tr)
{
  g_return_val_if_fail (tr != NULL && tr->have_forward, NULL);
  const RnnConfig *c = &tr->model->cfg;
  return tr->y ? tr->y : c->n_post ? tr->post_out[c->n_post - 1]
      : tr->out[c->num_layers - 1];
}
