/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The plain-loop reference forward pass (rnn_forward_naive ()): the
 * mathematics of docs/design.md §2 written out one multiply-add at a time,
 * with libm's activations, for the tests to compare the fast path with.
 * Slow on purpose; nothing here is tuned. */
#include "rnn-private.h"

#include <math.h>
#include <string.h>

static float
act_naive (RnnActivation act, float v)
{
  switch (act) {
    case RNN_ACT_TANH:
      return tanhf (v);
    case RNN_ACT_RELU:
      return fmaxf (v, 0.0f);
    case RNN_ACT_SIGMOID:
      return 1.0f / (1.0f + expf (-v));
    case RNN_ACT_ELU:
      return v > 0.0f ? v : expm1f (v);
    default:
      return v;
  }
}

/* One pre or post layer on @rows rows: @v [rows][*width] becomes
 * [rows][N] (a new buffer, the old one freed). */
static float *
dense_naive (float *v, gsize rows, gsize *width, const float *W,
    const float *bias, gsize N, RnnActivation act)
{
  const gsize K = *width;
  float *out = g_new (float, rows * N);
  for (gsize r = 0; r < rows; r++) {
    for (gsize n = 0; n < N; n++) {
      float a = bias[n];
      for (gsize k = 0; k < K; k++)
        a += W[n * K + k] * v[r * K + k];
      out[r * N + n] = act == RNN_ACT_SOFTMAX ? a : act_naive (act, a);
    }
    if (act == RNN_ACT_SOFTMAX)
      rnn_head_activate (RNN_HEAD_ACT_SOFTMAX, out + r * N, 1, N);
  }
  g_free (v);
  *width = N;
  return out;
}

void
rnn_forward_naive (const RnnModel *m, RnnState *state, const float *x,
    guint T, guint B, float *y)
{
  g_return_if_fail (m != NULL && x != NULL && y != NULL);
  g_return_if_fail (rnn_state_matches (m, state, B));
  const RnnConfig *c = &m->cfg;

  const gsize G = rnn_cell_gates (c->cell), H = c->hidden_size, GH = G * H;
  const gsize D = c->bidirectional ? 2 : 1, TB = (gsize) T * B;
  const gsize n_in = c->input_size;
  float *in = g_new (float, TB * n_in);
  float *out = g_new (float, TB * D * H);
  float *pre_x = g_new (float, GH), *pre_h = g_new (float, GH);
  float *h0 = g_new0 (float, B * H), *c0 = g_new0 (float, B * H);

  for (gsize r = 0; r < TB; r++)
    for (gsize i = 0; i < n_in; i++)
      in[r * n_in + i] = c->has_input_norm
          ? (x[r * n_in + i] - m->in_mean[i]) / m->in_std[i] : x[r * n_in + i];

  gsize in_size = n_in;
  for (guint k = 0; k < c->n_pre; k++)
    in = dense_naive (in, TB, &in_size, m->pre_w[k], m->pre_b[k],
        c->pre[k].size, c->pre[k].activation);
  for (guint k = 0; k < c->num_layers; k++) {
    for (guint d = 0; d < D; d++) {
      const RnnLayerParams *lp = &m->layers[k * D + d];
      float *hs = state ? rnn_state_h (state, k, d) : h0;
      float *cst = state ? rnn_state_c (state, k, d) : c0;
      if (!state)
        rnn_model_initial_state (m, k, d, B, h0, c0);
      for (gsize b = 0; b < B; b++) {
        float *h = hs + b * H, *cc = cst ? cst + b * H : NULL;
        for (gsize s = 0; s < T; s++) {
          const gsize t = d ? T - 1 - s : s;
          const float *xt = in + (t * B + b) * in_size;
          for (gsize r = 0; r < GH; r++) {
            float a = lp->b_ih[r], e = lp->b_hh[r];
            for (gsize i = 0; i < in_size; i++)
              a += lp->w_ih[r * in_size + i] * xt[i];
            for (gsize j = 0; j < H; j++)
              e += lp->w_hh[r * H + j] * h[j];
            pre_x[r] = a;
            pre_h[r] = e;
          }
          float *o = out + (t * B + b) * D * H + d * H;
          for (gsize j = 0; j < H; j++) {
            switch (c->cell) {
              case RNN_CELL_RNN_TANH:
                h[j] = tanhf (pre_x[j] + pre_h[j]);
                break;
              case RNN_CELL_RNN_RELU:
                h[j] = fmaxf (pre_x[j] + pre_h[j], 0.0f);
                break;
              case RNN_CELL_LSTM:{
                const float ig = 1.0f / (1.0f + expf (-(pre_x[j] + pre_h[j])));
                const float fg = 1.0f / (1.0f + expf (-(pre_x[H + j] + pre_h[H + j])));
                const float gg = tanhf (pre_x[2 * H + j] + pre_h[2 * H + j]);
                const float og = 1.0f / (1.0f + expf (-(pre_x[3 * H + j] + pre_h[3 * H + j])));
                cc[j] = fg * cc[j] + ig * gg;
                h[j] = og * tanhf (cc[j]);
                break;
              }
              case RNN_CELL_GRU:{
                const float rg = 1.0f / (1.0f + expf (-(pre_x[j] + pre_h[j])));
                const float zg = 1.0f / (1.0f + expf (-(pre_x[H + j] + pre_h[H + j])));
                const float ng = tanhf (pre_x[2 * H + j] + rg * pre_h[2 * H + j]);
                h[j] = (1.0f - zg) * ng + zg * h[j];
                break;
              }
            }
          }
          memcpy (o, h, H * sizeof (float));
        }
      }
    }
    g_free (in);
    in = g_memdup2 (out, TB * D * H * sizeof (float));
    in_size = D * H;
  }
  for (guint k = 0; k < c->n_post; k++)
    in = dense_naive (in, TB, &in_size, m->post_w[k], m->post_b[k],
        c->post[k].size, c->post[k].activation);

  const gsize O = rnn_model_get_output_size (m);
  for (gsize r = 0; r < TB; r++) {
    if (!c->has_head) {
      memcpy (y + r * O, in + r * in_size, O * sizeof (float));
      continue;
    }
    for (gsize o = 0; o < O; o++) {
      float a = m->head_b[o];
      for (gsize i = 0; i < in_size; i++)
        a += m->head_w[o * in_size + i] * in[r * in_size + i];
      y[r * O + o] = a;
    }
  }
  if (c->has_head)
    rnn_head_activate (c->head_activation, y, TB, O);
  for (gsize r = 0; r < TB && c->skip; r++)
    for (gsize o = 0; o < O; o++)
      y[r * O + o] += x[r * n_in + (c->skip == 1 ? 0 : o)];

  g_free (in);
  g_free (out);
  g_free (pre_x);
  g_free (pre_h);
  g_free (h0);
  g_free (c0);
}
