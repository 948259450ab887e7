/* The plain-loop reference forward pass (rnn_forward_naive ()): the
 * mathematics of docs/design.md §2 written out one multiply-add at a time,
 * with libm's activations, for the tests to compare the fast path with.
 * Slow on purpose; nothing here is tuned. */
#include "rnn-private.h"

#include <math.h>
#include <string.h>

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
  float *in = g_new (float, TB * MAX (n_in, D * H));
  float *out = g_new (float, TB * D * H);
  float *pre_x = g_new (float, GH), *pre_h = g_new (float, GH);
  float *h0 = g_new0 (float, B * H), *c0 = g_new0 (float, B * H);

  for (gsize r = 0; r < TB; r++)
    for (gsize i = 0; i < n_in; i++)
      in[r * n_in + i] = c->has_input_norm
          ? (x[r * n_in + i] - m->in_mean[i]) / m->in_std[i] : x[r * n_in + i];

  gsize in_size = n_in;
  for (guint k = 0; k < c->num_layers; k++) {
    for (guint d = 0; d < D; d++) {
      const RnnLayerParams *lp = &m->layers[k * D + d];
      float *hs = state ? rnn_state_h (state, k, d) : h0;
      float *cst = state ? rnn_state_c (state, k, d) : c0;
      if (!state) {
        memset (h0, 0, B * H * sizeof (float));
        memset (c0, 0, B * H * sizeof (float));
      }
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
    memcpy (in, out, TB * D * H * sizeof (float));
    in_size = D * H;
  }

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

  g_free (in);
  g_free (out);
  g_free (pre_x);
  g_free (pre_h);
  g_free (h0);
  g_free (c0);
}
