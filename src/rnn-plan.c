/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The plan of a model (rnn-plan.h): packed weights, the float16 copy, the
 * direct path and the one-sample plan, built in one place. */
#include "rnn-plan.h"
#include "rnn-private.h"
#include "rnn-kernels.h"

#include <math.h>
#include <string.h>

/* The gate count, as rnn_cell_gates () (kept here so that the plan does
 * not call back into rnn-model.c) */
static gsize
gates (RnnCell cell)
{
  return cell == RNN_CELL_LSTM ? 4 : cell == RNN_CELL_GRU ? 3 : 1;
}

/* ---- packing ------------------------------------------------------------- */

static gsize
packed_size (gsize N, gsize K)
{
  const gsize width = MIN (RNN_PANEL_MAX, (N + 7) & ~(gsize) 7);
  return (N + width - 1) / width * width * K;
}

/* Packs W [N][K] into @p (see RnnPackedMatrix). */
static void
pack_matrix (RnnPackedMatrix *pm, float *p, const float *W, gsize N, gsize K)
{
  pm->data = p;
  pm->N = N;
  pm->K = K;
  pm->width = MIN (RNN_PANEL_MAX, (N + 7) & ~(gsize) 7);
  pm->n_panels = (N + pm->width - 1) / pm->width;
  pm->half = NULL;
  memset (p, 0, pm->n_panels * pm->width * K * sizeof (float));
  for (gsize n = 0; n < N; n++) {
    float *panel = p + n / pm->width * K * pm->width;
    for (gsize k = 0; k < K; k++)
      panel[k * pm->width + n % pm->width] = W[n * K + k];
  }
}

static gsize
blocked_size (gsize G, gsize H)
{
  return (H + 7) / 8 * H * G * 8;
}

/* Packs W_hh [G*H][H] gate-blocked into @p (see RnnPackedLayer). */
static void
pack_blocked (RnnPackedMatrix *pm, float *p, const float *W, gsize G, gsize H)
{
  pm->data = p;
  pm->N = G * H;
  pm->K = H;
  pm->width = G * 8;
  pm->n_panels = (H + 7) / 8;
  pm->half = NULL;
  memset (p, 0, blocked_size (G, H) * sizeof (float));
  for (gsize g = 0; g < G; g++)
    for (gsize j = 0; j < H; j++) {
      float *panel = p + j / 8 * H * G * 8;
      for (gsize k = 0; k < H; k++)
        panel[k * G * 8 + g * 8 + j % 8] = W[(g * H + j) * H + k];
    }
}

/* ---- float16 ------------------------------------------------------------- */

/* float -> float16 bits, round to nearest, ties to even; finite input.
 * Written out rather than _Float16 or F16C so that it builds and gives the
 * same bits everywhere. */
static guint16
f32_to_f16_bits (float x)
{
  guint32 b;
  memcpy (&b, &x, sizeof b);
  const guint32 sign = (b >> 16) & 0x8000u, mant = b & 0x7fffffu;
  const int e = (int) ((b >> 23) & 0xffu) - 127 + 15;
  if (e >= 31)
    return (guint16) (sign | 0x7c00u);             /* beyond range: inf */
  if (e >= 1) {
    guint32 h = sign | ((guint32) e << 10) | (mant >> 13);
    const guint32 rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
      h++;                      /* may carry into the exponent: still right */
    return (guint16) h;
  }
  /* subnormal or zero: value = m * 2^-24 */
  const int shift = 14 - e;
  if (shift > 24)
    return (guint16) sign;
  const guint32 full = mant | 0x800000u;
  guint32 m = full >> shift;
  const guint32 rem = full & ((1u << shift) - 1), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (m & 1u)))
    m++;
  return (guint16) (sign | m);
}

static float
f16_bits_to_f32 (guint16 h)
{
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  float v;
  if (e == 31)
    v = m ? NAN : INFINITY;
  else if (e == 0)
    v = ldexpf ((float) m, -24);
  else
    v = ldexpf ((float) (1024 + m), e - 25);
  return (h & 0x8000) ? -v : v;
}

float
rnn_round_to_f16 (float x)
{
  if (!isfinite (x))
    return x;
  return f16_bits_to_f32 (f32_to_f16_bits (x));
}

/* ---- the choice of path -------------------------------------------------- */

/* The first layer fits a register kernel with its input projection fused
 * in (recur_h8_io (), recur_hreg_io ()): H = 8, 16, 24 or 32, <= 8
 * inputs, one direction.  (Float16 weights too: a W_hh this small gets no
 * float16 loads, see plan_build (); its float32 weights hold the rounded
 * values.) */
static gboolean
first_layer_fuses (const RnnConfig *c)
{
  /* (pre and post layers: the general path, see rnn-forward.c; a skip and
   * an initial state keep every path) */
  return c->hidden_size % 8 == 0 && c->hidden_size <= 32
      && !c->bidirectional && c->input_size <= 8
      && c->n_pre == 0 && c->n_post == 0;
}

/* The one place that picks a model's direct path (RnnDirect). */
static RnnDirect
choose_direct (const RnnConfig *c)
{
  const gsize H = c->hidden_size;
  /* (an input normalisation is checked by rnn_forward (): the general
   * path normalises into scratch, then takes the small kernel too) */
  if (c->bidirectional || c->input_size > 8
      || (c->has_head && c->output_size > 8) || c->n_pre > 0 || c->n_post > 0)
    return RNN_DIRECT_NONE;
  /* one layer of 8 units (any number of streams) or of 16, 24 or 32: the
   * per-sample audio model, where the two projection passes cost a fifth
   * of the time; its kernel keeps h and c in registers and computes them
   * in the step loop instead (same bits) */
  if (c->num_layers == 1 && first_layer_fuses (c))
    return RNN_DIRECT_SMALL;
  /* two layers of 8 units: both in one kernel, h and c of both in
   * registers, layer 1 fed from layer 0's registers (LSTM: 1.44x faster
   * at 480 steps per call, 2.1x at one) */
  if (c->num_layers == 2 && H == 8)
    return RNN_DIRECT_SMALL2;
  /* one stream of H > 8, a step or two per call: past that, the general
   * path's passes over a whole chunk cost less per step than the direct
   * path's per-step calls (LSTM H=64: 185 instructions more per step, 376
   * fewer per call) */
  if (c->num_layers == 1 && H > 8 && H <= RNN_IO_MAX_H)
    return RNN_DIRECT_ONE;
  return RNN_DIRECT_NONE;
}

/* The one-sample plan of @direct. */
static void
plan_step1 (RnnPlan *plan, const RnnModel *model)
{
  const RnnConfig *c = &model->cfg;
  const gsize G = gates (c->cell), H = c->hidden_size;
  RnnStep1 *s1 = &plan->step1;

  memset (s1, 0, sizeof *s1);
  if (plan->direct == RNN_DIRECT_NONE)
    return;
  const RnnKernels *kern = rnn_kernels_get ();
  s1->cell = c->cell;
  s1->H = H;
  s1->O = c->has_head ? c->output_size : 0;
  s1->w_ih = &plan->packed[0].w_ih;
  s1->w_hh = &plan->packed[0].w_hh_blocked;
  s1->b_ih = model->layers[0].b_ih;
  s1->b_hh = model->layers[0].b_hh;
  s1->head_w = model->head_w;
  s1->head_b = model->head_b;
  switch (plan->direct) {
    case RNN_DIRECT_SMALL:
      s1->fn = kern->step1_small;
      if (H > 8)
        rnn_hreg_offsets ((int) G, (int) (H / 8), s1->w_ih, s1->xoff[0]);
      break;
    case RNN_DIRECT_SMALL2:
      s1->fn = kern->step1_h8x2;
      s1->w_ih1 = &plan->packed[1].w_ih;
      s1->w_hh1 = &plan->packed[1].w_hh_blocked;
      s1->b_ih1 = model->layers[1].b_ih;
      s1->b_hh1 = model->layers[1].b_hh;
      rnn_hreg_offsets ((int) G, 1, s1->w_ih, s1->xoff[0]);
      rnn_hreg_offsets ((int) G, 1, s1->w_ih1, s1->xoff[1]);
      break;
    case RNN_DIRECT_ONE:
      s1->fn = kern->step1_one;
      break;
    case RNN_DIRECT_NONE:
      break;
  }
}

/* ---- building ------------------------------------------------------------ */

void
rnn_plan_clear (RnnPlan *plan)
{
  g_clear_pointer (&plan->packed, g_free);
  g_clear_pointer (&plan->slab_mem, g_aligned_free);
  plan->slab = NULL;
  plan->slab_floats = 0;
  memset (&plan->step1, 0, sizeof plan->step1);
  plan->direct = RNN_DIRECT_NONE;
  plan->first_fused = FALSE;
  g_atomic_int_set (&plan->ready, FALSE);
}

static gboolean
plan_build (RnnPlan *plan, const RnnModel *model, GError **error)
{
  const RnnConfig *c = &model->cfg;
  const gsize G = gates (c->cell), H = c->hidden_size, GH = G * H;
  const gsize D = c->bidirectional ? 2 : 1;
  const gsize LD = (gsize) c->num_layers * D;
  /* float16 loads only where a layer's float32 W_hh exceeds the 32 KB L1:
   * below, it stays in L1 and the register kernels on the float32 copy of
   * the rounded values (the same numbers, so the same outputs) ran faster
   * than the float16 loads (LSTM H = 8 / 16 / 32 0.80 / 0.83 / 0.70x, tanh
   * RNN H=64 0.87x with them) */
  const gboolean f16_loads = model->precision == RNN_WEIGHTS_F16
      && G * H * H * sizeof (float) > 32768;

  /* the sizes are bounded by the configuration's limits (rnn.h): no
   * overflow here */
  gsize total = 0;
  for (gsize l = 0; l < LD; l++)
    total += packed_size (GH, model->layers[l].in_size) + packed_size (GH, H)
        + blocked_size (G, H);
  if (f16_loads)                                 /* the float16 copies */
    total += LD * (blocked_size (G, H) + 1) / 2;
  for (guint k = 0; k < c->n_pre; k++)
    total += packed_size (c->pre[k].size, model->pre_in[k]);
  for (guint k = 0; k < c->n_post; k++)
    total += packed_size (c->post[k].size, model->post_in[k]);

  /* the same layout as before (same parameters' shapes, same precision):
   * packed again in place */
  if (!plan->packed || plan->slab_floats != total) {
    rnn_plan_clear (plan);
    plan->packed = g_try_new0 (RnnPackedLayer, LD);
    plan->slab_mem = rnn_try_aligned_alloc (total, sizeof (float), 64,
        "the packed weights", error);
    if (!plan->packed || !plan->slab_mem) {
      if (plan->slab_mem == NULL)
        g_prefix_error (error, "Cannot prepare the model for the forward "
            "pass (use a smaller model or free memory): ");
      else
        g_set_error (error, RNN_ERROR, RNN_ERROR_IO, "Cannot prepare the "
            "model for the forward pass: out of memory for its layer table");
      rnn_plan_clear (plan);
      return FALSE;
    }
    /* 64-byte aligned, so that no vector load of a panel crosses a cache
     * line */
    plan->slab = plan->slab_mem;
    plan->slab_floats = total;
  }

  float *p = plan->slab;
  for (gsize l = 0; l < LD; l++) {
    const RnnLayerParams *lp = &model->layers[l];
    pack_matrix (&plan->packed[l].w_ih, p, lp->w_ih, GH, lp->in_size);
    p += packed_size (GH, lp->in_size);
    pack_matrix (&plan->packed[l].w_hh, p, lp->w_hh, GH, H);
    p += packed_size (GH, H);
    pack_blocked (&plan->packed[l].w_hh_blocked, p, lp->w_hh, G, H);
    p += blocked_size (G, H);
  }
  for (guint k = 0; k < c->n_pre; k++) {
    pack_matrix (&plan->pre[k], p, model->pre_w[k], c->pre[k].size,
        model->pre_in[k]);
    p += packed_size (c->pre[k].size, model->pre_in[k]);
  }
  for (guint k = 0; k < c->n_post; k++) {
    pack_matrix (&plan->post[k], p, model->post_w[k], c->post[k].size,
        model->post_in[k]);
    p += packed_size (c->post[k].size, model->post_in[k]);
  }
  if (model->precision == RNN_WEIGHTS_F16) {
    /* the float32 weights rounded in place; their float16 bits after the
     * float32 parts, so that those stay 4-byte aligned */
    guint16 *q = (guint16 *) p;
    for (gsize l = 0; l < LD; l++) {
      RnnPackedMatrix *pm = &plan->packed[l].w_hh_blocked;
      const gsize n = blocked_size (G, H);
      for (gsize i = 0; i < n; i++) {
        const guint16 bits = f32_to_f16_bits (pm->data[i]);
        pm->data[i] = f16_bits_to_f32 (bits);
        if (f16_loads)
          q[i] = bits;
      }
      if (f16_loads) {
        pm->half = q;
        q += n + (n & 1);
      }
    }
  }
  plan->direct = choose_direct (c);
  plan->first_fused = first_layer_fuses (c);
  plan_step1 (plan, model);
  return TRUE;
}

/* Serialises planning: planning is rare (at load, after training steps),
 * one lock for all models is enough. */
static GMutex plan_lock;

gboolean
rnn_model_plan (RnnModel *model, GError **error)
{
  g_return_val_if_fail (model != NULL, FALSE);
  g_mutex_lock (&plan_lock);
  const gboolean ok = plan_build (&model->plan, model, error);
  g_atomic_int_set (&model->plan.ready, ok);
  g_mutex_unlock (&plan_lock);
  return ok;
}

void
rnn_model_plan_invalidate (RnnModel *model)
{
  g_atomic_int_set (&model->plan.ready, FALSE);
}

gboolean
rnn_model_plan_lazily (const RnnModel *model)
{
  /* the plan is a cache of the parameters: building it does not change
   * the model as its users see it */
  RnnModel *m = (RnnModel *) model;
  gboolean ok = TRUE;

  g_mutex_lock (&plan_lock);
  if (!g_atomic_int_get (&m->plan.ready)) {
    GError *error = NULL;
    ok = plan_build (&m->plan, m, &error);
    if (ok)
      g_atomic_int_set (&m->plan.ready, TRUE);
    else {
      g_warning ("%s", error->message);
      g_error_free (error);
    }
  }
  g_mutex_unlock (&plan_lock);
  return ok;
}

void
rnn_model_seal (RnnModel *model)
{
  GError *error = NULL;

  g_return_if_fail (model != NULL);
  if (!rnn_model_plan (model, &error)) {
    g_warning ("%s", error->message);
    g_error_free (error);
  }
}
