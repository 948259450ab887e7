/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* RnnModel: a configuration plus one slab of parameters with a pointer table,
 * and RnnState: the carried h (and c) of every layer and direction. */
#include "rnn-private.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef G_OS_WIN32
#include <malloc.h>
#endif

G_DEFINE_QUARK (rnn-error-quark, rnn_error)

static void
alloc_error (GError **error, gsize n_elems, gsize elem_size, const char *what)
{
  if (n_elems > G_MAXSIZE / elem_size)
    g_set_error (error, RNN_ERROR, RNN_ERROR_IO, "cannot allocate %"
        G_GSIZE_FORMAT " x %" G_GSIZE_FORMAT " bytes for %s: the size "
        "overflows", n_elems, elem_size, what);
  else
    g_set_error (error, RNN_ERROR, RNN_ERROR_IO, "cannot allocate %"
        G_GSIZE_FORMAT " bytes (%.1f MiB) for %s: out of memory (or over "
        "the process's memory limit)", n_elems * elem_size,
        (double) (n_elems * elem_size) / (1024.0 * 1024.0), what);
}

gpointer
rnn_try_alloc0 (gsize n_elems, gsize elem_size, const char *what,
    GError **error)
{
  gpointer p = NULL;

  g_return_val_if_fail (elem_size > 0 && what != NULL, NULL);
  if (n_elems <= G_MAXSIZE / elem_size)
    p = g_try_malloc0 (MAX (n_elems * elem_size, 1));
  if (p == NULL)
    alloc_error (error, n_elems, elem_size, what);
  return p;
}

gpointer
rnn_try_aligned_alloc (gsize n_elems, gsize elem_size, gsize alignment,
    const char *what, GError **error)
{
  gpointer p = NULL;

  g_return_val_if_fail (elem_size > 0 && what != NULL, NULL);
  if (n_elems <= G_MAXSIZE / elem_size) {
    /* the allocators g_aligned_free () releases */
#ifdef G_OS_WIN32
    p = _aligned_malloc (MAX (n_elems * elem_size, 1), alignment);
#else
    if (posix_memalign (&p, alignment, MAX (n_elems * elem_size, 1)) != 0)
      p = NULL;
#endif
  }
  if (p == NULL)
    alloc_error (error, n_elems, elem_size, what);
  return p;
}

static const char *const cell_names[] = { "rnn_tanh", "rnn_relu", "lstm", "gru" };
static const char *const act_names[] = { "none", "softmax", "sigmoid", "tanh" };
static const char *const dense_act_names[] = {
  "none", "tanh", "relu", "sigmoid", "elu", "softmax",
};

const char *
rnn_activation_to_string (RnnActivation act)
{
  g_return_val_if_fail ((guint) act < G_N_ELEMENTS (dense_act_names), NULL);
  return dense_act_names[act];
}

gboolean
rnn_activation_from_string (const char *s, RnnActivation *act)
{
  for (guint i = 0; s && i < G_N_ELEMENTS (dense_act_names); i++)
    if (strcmp (s, dense_act_names[i]) == 0) {
      *act = (RnnActivation) i;
      return TRUE;
    }
  return FALSE;
}

const char *
rnn_cell_to_string (RnnCell cell)
{
  g_return_val_if_fail ((guint) cell < G_N_ELEMENTS (cell_names), NULL);
  return cell_names[cell];
}

gboolean
rnn_cell_from_string (const char *s, RnnCell *cell)
{
  for (guint i = 0; s && i < G_N_ELEMENTS (cell_names); i++)
    if (strcmp (s, cell_names[i]) == 0) {
      *cell = (RnnCell) i;
      return TRUE;
    }
  return FALSE;
}

const char *
rnn_head_activation_to_string (RnnHeadActivation act)
{
  g_return_val_if_fail ((guint) act < G_N_ELEMENTS (act_names), NULL);
  return act_names[act];
}

gboolean
rnn_head_activation_from_string (const char *s, RnnHeadActivation *act)
{
  for (guint i = 0; s && i < G_N_ELEMENTS (act_names); i++)
    if (strcmp (s, act_names[i]) == 0) {
      *act = (RnnHeadActivation) i;
      return TRUE;
    }
  return FALSE;
}

guint
rnn_cell_gates (RnnCell cell)
{
  switch (cell) {
    case RNN_CELL_LSTM:
      return 4;
    case RNN_CELL_GRU:
      return 3;
    default:
      return 1;
  }
}

void
rnn_config_init (RnnConfig *cfg)
{
  g_return_if_fail (cfg != NULL);
  memset (cfg, 0, sizeof *cfg);
  cfg->cell = RNN_CELL_LSTM;
  cfg->input_size = cfg->hidden_size = cfg->num_layers = 1;
  cfg->head_activation = RNN_HEAD_ACT_NONE;
  cfg->frame_size = cfg->output_frame_size = 1;
}

#define CHECK_RANGE(field, lo, hi) \
  if ((gint64) cfg->field < (gint64) (lo) || cfg->field > (hi)) { \
    g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID, \
        "%s = %u is out of range [%u, %u]", #field, cfg->field, \
        (guint) (lo), (guint) (hi)); \
    return FALSE; \
  }

gboolean
rnn_config_validate (const RnnConfig *cfg, GError **error)
{
  g_return_val_if_fail (cfg != NULL, FALSE);

  if ((guint) cfg->cell > RNN_CELL_GRU) {
    g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID, "unknown cell %d",
        (int) cfg->cell);
    return FALSE;
  }
  if ((guint) cfg->head_activation > RNN_HEAD_ACT_TANH) {
    g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID,
        "unknown head activation %d", (int) cfg->head_activation);
    return FALSE;
  }
  CHECK_RANGE (input_size, 1, RNN_MAX_INPUT_SIZE);
  CHECK_RANGE (hidden_size, 1, RNN_MAX_HIDDEN_SIZE);
  CHECK_RANGE (num_layers, 1, RNN_MAX_LAYERS);
  CHECK_RANGE (frame_size, 1, RNN_MAX_FRAME_SIZE);
  CHECK_RANGE (output_frame_size, 1, RNN_MAX_FRAME_SIZE);
  CHECK_RANGE (window, 0, RNN_MAX_WINDOW);
  CHECK_RANGE (sample_rate, 0, RNN_MAX_SAMPLE_RATE);
  if (cfg->has_head) {
    CHECK_RANGE (output_size, 1, RNN_MAX_OUTPUT_SIZE);
  } else if (cfg->head_activation != RNN_HEAD_ACT_NONE) {
    g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID,
        "head_activation %s needs a head (head.weight, head.bias)",
        act_names[cfg->head_activation]);
    return FALSE;
  }
  if (cfg->input_size % cfg->frame_size != 0) {
    g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID,
        "input_size %u is not a multiple of frame_size %u",
        cfg->input_size, cfg->frame_size);
    return FALSE;
  }
  CHECK_RANGE (n_pre, 0, RNN_MAX_DENSE_LAYERS);
  CHECK_RANGE (n_post, 0, RNN_MAX_DENSE_LAYERS);
  for (guint k = 0; k < cfg->n_pre + cfg->n_post; k++) {
    const gboolean pre = k < cfg->n_pre;
    const RnnDense *l = pre ? &cfg->pre[k] : &cfg->post[k - cfg->n_pre];
    const guint i = pre ? k : k - cfg->n_pre;
    if (l->size < 1 || l->size > RNN_MAX_DENSE_SIZE) {
      g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID,
          "%s layer %u has size %u, out of range [1, %u]",
          pre ? "pre" : "post", i, l->size, RNN_MAX_DENSE_SIZE);
      return FALSE;
    }
    if ((guint) l->activation > RNN_ACT_SOFTMAX) {
      g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID,
          "%s layer %u has unknown activation %d", pre ? "pre" : "post", i,
          (int) l->activation);
      return FALSE;
    }
  }
  if (cfg->has_c0 && cfg->cell != RNN_CELL_LSTM) {
    g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID,
        "an initial cell state (rnn.c0) is only for lstm, not %s",
        cell_names[cfg->cell]);
    return FALSE;
  }
  if (cfg->has_c0 && !cfg->has_h0) {
    g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID,
        "an initial cell state (rnn.c0) needs an initial hidden state "
        "(rnn.h0)");
    return FALSE;
  }
  guint out = cfg->has_head ? cfg->output_size : rnn_config_features (cfg);
  if (cfg->skip != 0) {
    if (cfg->frame_size != 1 || cfg->output_frame_size != 1) {
      g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID,
          "skip = %u needs frame_size = output_frame_size = 1 (they are "
          "%u and %u)", cfg->skip, cfg->frame_size, cfg->output_frame_size);
      return FALSE;
    }
    if ((cfg->skip != 1 && cfg->skip != out) || cfg->skip > cfg->input_size) {
      g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID,
          "skip = %u: only 1 or the output size (%u), and at most the input "
          "size (%u)", cfg->skip, out, cfg->input_size);
      return FALSE;
    }
  }
  if (out % cfg->output_frame_size != 0) {
    g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID,
        "output size %u is not a multiple of output_frame_size %u",
        out, cfg->output_frame_size);
    return FALSE;
  }
  return TRUE;
}

#undef CHECK_RANGE

gboolean
rnn_config_has_extras (const RnnConfig *cfg)
{
  g_return_val_if_fail (cfg != NULL, FALSE);
  return cfg->n_pre > 0 || cfg->n_post > 0 || cfg->has_h0 || cfg->has_c0
      || cfg->skip > 0;
}

guint
rnn_config_rnn_input_size (const RnnConfig *cfg)
{
  g_return_val_if_fail (cfg != NULL, 0);
  return cfg->n_pre > 0 && cfg->n_pre <= RNN_MAX_DENSE_LAYERS
      ? cfg->pre[cfg->n_pre - 1].size : cfg->input_size;
}

guint
rnn_config_features (const RnnConfig *cfg)
{
  g_return_val_if_fail (cfg != NULL, 0);
  return cfg->n_post > 0 && cfg->n_post <= RNN_MAX_DENSE_LAYERS
      ? cfg->post[cfg->n_post - 1].size
      : cfg->hidden_size * (cfg->bidirectional ? 2 : 1);
}

/* ---- model ------------------------------------------------------------- */

static void
add_tensor (GArray *infos, gsize *offset, const char *name, guint ndim,
    gsize d0, gsize d1)
{
  RnnParamInfo info = { 0 };
  g_strlcpy (info.name, name, sizeof info.name);
  info.ndim = ndim;
  info.shape[0] = d0;
  info.shape[1] = ndim == 2 ? d1 : 0;
  info.numel = ndim == 2 ? d0 * d1 : d0;
  info.offset = *offset;
  /* Keep every tensor 16-float (64-byte) aligned inside the slab so that
   * vector kernels may use aligned loads; the padding stays zero. */
  *offset += (info.numel + 15) & ~(gsize) 15;
  g_array_append_val (infos, info);
}

RnnModel *
rnn_model_new (const RnnConfig *cfg, GError **error)
{
  g_return_val_if_fail (cfg != NULL, NULL);

  if (!rnn_config_validate (cfg, error))
    return NULL;

  RnnModel *m = g_new0 (RnnModel, 1);
  g_atomic_ref_count_init (&m->ref_count);
  m->cfg = *cfg;
  m->state_shape = rnn_shape_key (cfg->cell == RNN_CELL_LSTM,
      cfg->num_layers, cfg->bidirectional ? 2 : 1, cfg->hidden_size);
  if (!m->cfg.has_head) {
    m->cfg.output_size = 0;
    m->cfg.head_activation = RNN_HEAD_ACT_NONE;
  }

  const guint G = rnn_cell_gates (cfg->cell), H = cfg->hidden_size;
  const guint D = cfg->bidirectional ? 2 : 1, L = cfg->num_layers;
  GArray *infos = g_array_new (FALSE, TRUE, sizeof (RnnParamInfo));
  gsize off = 0;
  char name[40];

  for (guint k = 0; k < L; k++)
    for (guint d = 0; d < D; d++) {
      const char *sfx = d ? "_reverse" : "";
      const guint in = k == 0 ? rnn_config_rnn_input_size (cfg) : D * H;
      g_snprintf (name, sizeof name, "rnn.weight_ih_l%u%s", k, sfx);
      add_tensor (infos, &off, name, 2, (gsize) G * H, in);
      g_snprintf (name, sizeof name, "rnn.weight_hh_l%u%s", k, sfx);
      add_tensor (infos, &off, name, 2, (gsize) G * H, H);
      g_snprintf (name, sizeof name, "rnn.bias_ih_l%u%s", k, sfx);
      add_tensor (infos, &off, name, 1, (gsize) G * H, 0);
      g_snprintf (name, sizeof name, "rnn.bias_hh_l%u%s", k, sfx);
      add_tensor (infos, &off, name, 1, (gsize) G * H, 0);
    }
  if (cfg->has_head) {
    add_tensor (infos, &off, "head.weight", 2, cfg->output_size,
        rnn_config_features (cfg));
    add_tensor (infos, &off, "head.bias", 1, cfg->output_size, 0);
  }
  if (cfg->has_input_norm) {
    add_tensor (infos, &off, "input.mean", 1, cfg->input_size, 0);
    add_tensor (infos, &off, "input.std", 1, cfg->input_size, 0);
  }
  for (guint k = 0; k < cfg->n_pre; k++) {
    g_snprintf (name, sizeof name, "pre.%u.weight", k);
    add_tensor (infos, &off, name, 2, cfg->pre[k].size,
        k ? cfg->pre[k - 1].size : cfg->input_size);
    g_snprintf (name, sizeof name, "pre.%u.bias", k);
    add_tensor (infos, &off, name, 1, cfg->pre[k].size, 0);
  }
  for (guint k = 0; k < cfg->n_post; k++) {
    g_snprintf (name, sizeof name, "post.%u.weight", k);
    add_tensor (infos, &off, name, 2, cfg->post[k].size,
        k ? cfg->post[k - 1].size : (gsize) D * H);
    g_snprintf (name, sizeof name, "post.%u.bias", k);
    add_tensor (infos, &off, name, 1, cfg->post[k].size, 0);
  }
  if (cfg->has_h0)
    add_tensor (infos, &off, "rnn.h0", 2, (gsize) L * D, H);
  if (cfg->has_c0)
    add_tensor (infos, &off, "rnn.c0", 2, (gsize) L * D, H);

  m->n_tensors = infos->len;
  m->tensors = (RnnParamInfo *) g_array_free (infos, FALSE);
  m->n_params = off;
  m->params = rnn_try_alloc0 (MAX (off, 1), sizeof (float),
      "the parameter slab", error);
  if (m->params == NULL) {
    g_free (m->tensors);
    g_free (m);
    return NULL;
  }

  m->layers = g_new0 (RnnLayerParams, (gsize) L * D);
  for (guint k = 0, t = 0; k < L; k++)
    for (guint d = 0; d < D; d++, t += 4) {
      RnnLayerParams *lp = &m->layers[k * D + d];
      lp->w_ih = m->params + m->tensors[t].offset;
      lp->w_hh = m->params + m->tensors[t + 1].offset;
      lp->b_ih = m->params + m->tensors[t + 2].offset;
      lp->b_hh = m->params + m->tensors[t + 3].offset;
      lp->in_size = m->tensors[t].shape[1];
    }
  guint t = L * D * 4;
  if (cfg->has_head) {
    m->head_w = m->params + m->tensors[t].offset;
    m->head_b = m->params + m->tensors[t + 1].offset;
    t += 2;
  }
  if (cfg->has_input_norm) {
    m->in_mean = m->params + m->tensors[t].offset;
    m->in_std = m->params + m->tensors[t + 1].offset;
    for (guint i = 0; i < cfg->input_size; i++)
      m->in_std[i] = 1.0f;
    t += 2;
  }
  for (guint k = 0; k < cfg->n_pre; k++, t += 2) {
    m->pre_w[k] = m->params + m->tensors[t].offset;
    m->pre_b[k] = m->params + m->tensors[t + 1].offset;
    m->pre_in[k] = (guint) m->tensors[t].shape[1];
  }
  for (guint k = 0; k < cfg->n_post; k++, t += 2) {
    m->post_w[k] = m->params + m->tensors[t].offset;
    m->post_b[k] = m->params + m->tensors[t + 1].offset;
    m->post_in[k] = (guint) m->tensors[t].shape[1];
  }
  if (cfg->has_h0)
    m->h0 = m->params + m->tensors[t++].offset;
  if (cfg->has_c0)
    m->c0 = m->params + m->tensors[t++].offset;
  m->meta = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (m->meta, NULL);
  m->meta_values = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
  return m;
}

RnnModel *
rnn_model_ref (RnnModel *model)
{
  g_return_val_if_fail (model != NULL, NULL);
  g_atomic_ref_count_inc (&model->ref_count);
  return model;
}

void
rnn_model_unref (RnnModel *model)
{
  g_return_if_fail (model != NULL);
  if (!g_atomic_ref_count_dec (&model->ref_count))
    return;
  g_free (model->tensors);
  g_free (model->params);
  g_free (model->layers);
  rnn_plan_clear (&model->plan);
  g_hash_table_unref (model->meta_values);
  g_ptr_array_unref (model->meta);
  g_free (model);
}

RnnModel *
rnn_model_copy (const RnnModel *model)
{
  g_return_val_if_fail (model != NULL, NULL);
  RnnModel *copy = rnn_model_new (&model->cfg, NULL);
  g_assert (copy != NULL);      /* the config was valid when @model was built */
  memcpy (copy->params, model->params, model->n_params * sizeof (float));
  for (guint i = 0; i + 1 < model->meta->len; i++) {
    const char *key = g_ptr_array_index (model->meta, i);
    rnn_model_set_meta (copy, key, g_hash_table_lookup (model->meta_values, key));
  }
  copy->precision = model->precision;
  /* planned now if @model was (else on its first forward pass); should
   * that fail, the first forward pass tries again */
  if (g_atomic_int_get (&model->plan.ready))
    rnn_model_plan (copy, NULL);
  return copy;
}

gboolean
rnn_model_set_weight_precision (RnnModel *model, RnnWeightPrecision precision,
    GError **error)
{
  g_return_val_if_fail (model != NULL, FALSE);
  g_return_val_if_fail (precision == RNN_WEIGHTS_F32
      || precision == RNN_WEIGHTS_F16, FALSE);
  if (precision == RNN_WEIGHTS_F16) {
    const RnnConfig *c = &model->cfg;
    const gsize G = rnn_cell_gates (c->cell), H = c->hidden_size;
    const guint D = rnn_model_get_num_directions (model);
    for (guint l = 0; l < c->num_layers * D; l++)
      for (gsize i = 0; i < G * H * H; i++) {
        const float w = model->layers[l].w_hh[i];
        if (isinf (rnn_round_to_f16 (w))) {
          g_set_error (error, RNN_ERROR, RNN_ERROR_TENSOR,
              "Cannot use float16 weights: weight_hh of layer %u%s, element "
              "%" G_GSIZE_FORMAT ", is %g, beyond float16's range (65504)",
              l / D, l % D ? " (reverse)" : "", i, (double) w);
          return FALSE;
        }
      }
  }
  model->precision = precision;
  /* the packed weights depend on the precision: planned again now, so that
   * a model too large for memory is refused here */
  return rnn_model_plan (model, error);
}

RnnWeightPrecision
rnn_model_get_weight_precision (const RnnModel *model)
{
  g_return_val_if_fail (model != NULL, RNN_WEIGHTS_F32);
  return model->precision;
}

const RnnConfig *
rnn_model_get_config (const RnnModel *model)
{
  g_return_val_if_fail (model != NULL, NULL);
  return &model->cfg;
}

guint
rnn_model_get_num_directions (const RnnModel *model)
{
  g_return_val_if_fail (model != NULL, 0);
  return model->cfg.bidirectional ? 2 : 1;
}

guint
rnn_model_get_output_size (const RnnModel *model)
{
  g_return_val_if_fail (model != NULL, 0);
  return model->cfg.has_head ? model->cfg.output_size
      : rnn_config_features (&model->cfg);
}

float *
rnn_model_get_params (RnnModel *model, gsize *n_params)
{
  g_return_val_if_fail (model != NULL, NULL);
  /* handed out for writing: the plan follows at the next forward pass */
  rnn_model_plan_invalidate (model);
  if (n_params)
    *n_params = model->n_params;
  return model->params;
}

const float *
rnn_model_peek_params (const RnnModel *model, gsize *n_params)
{
  g_return_val_if_fail (model != NULL, NULL);
  if (n_params)
    *n_params = model->n_params;
  return model->params;
}

guint
rnn_model_get_n_tensors (const RnnModel *model)
{
  g_return_val_if_fail (model != NULL, 0);
  return model->n_tensors;
}

const RnnParamInfo *
rnn_model_get_tensor_info (const RnnModel *model, guint i)
{
  g_return_val_if_fail (model != NULL && i < model->n_tensors, NULL);
  return &model->tensors[i];
}

gint
rnn_model_find_tensor (const RnnModel *model, const char *name)
{
  g_return_val_if_fail (model != NULL && name != NULL, -1);
  for (guint i = 0; i < model->n_tensors; i++)
    if (strcmp (model->tensors[i].name, name) == 0)
      return (gint) i;
  return -1;
}

const RnnLayerParams *
rnn_model_get_layer (const RnnModel *model, guint k, guint d)
{
  g_return_val_if_fail (model != NULL, NULL);
  g_return_val_if_fail (k < model->cfg.num_layers, NULL);
  g_return_val_if_fail (d < rnn_model_get_num_directions (model), NULL);
  return &model->layers[k * rnn_model_get_num_directions (model) + d];
}

const float *
rnn_model_get_head_weight (const RnnModel *model)
{
  g_return_val_if_fail (model != NULL, NULL);
  return model->head_w;
}

const float *
rnn_model_get_head_bias (const RnnModel *model)
{
  g_return_val_if_fail (model != NULL, NULL);
  return model->head_b;
}

const float *
rnn_model_get_input_mean (const RnnModel *model)
{
  g_return_val_if_fail (model != NULL, NULL);
  return model->in_mean;
}

const float *
rnn_model_get_input_std (const RnnModel *model)
{
  g_return_val_if_fail (model != NULL, NULL);
  return model->in_std;
}

const float *
rnn_model_get_pre_weight (const RnnModel *model, guint k, guint *in_size)
{
  g_return_val_if_fail (model != NULL, NULL);
  if (k >= model->cfg.n_pre)
    return NULL;
  if (in_size)
    *in_size = model->pre_in[k];
  return model->pre_w[k];
}

const float *
rnn_model_get_pre_bias (const RnnModel *model, guint k)
{
  g_return_val_if_fail (model != NULL, NULL);
  return k < model->cfg.n_pre ? model->pre_b[k] : NULL;
}

const float *
rnn_model_get_post_weight (const RnnModel *model, guint k, guint *in_size)
{
  g_return_val_if_fail (model != NULL, NULL);
  if (k >= model->cfg.n_post)
    return NULL;
  if (in_size)
    *in_size = model->post_in[k];
  return model->post_w[k];
}

const float *
rnn_model_get_post_bias (const RnnModel *model, guint k)
{
  g_return_val_if_fail (model != NULL, NULL);
  return k < model->cfg.n_post ? model->post_b[k] : NULL;
}

const float *
rnn_model_get_h0 (const RnnModel *model)
{
  g_return_val_if_fail (model != NULL, NULL);
  return model->h0;
}

const float *
rnn_model_get_c0 (const RnnModel *model)
{
  g_return_val_if_fail (model != NULL, NULL);
  return model->c0;
}

void
rnn_model_initial_state (const RnnModel *m, guint k, guint d, gsize nb,
    float *h, float *c)
{
  const gsize H = m->cfg.hidden_size, row = (gsize) k * (m->cfg.bidirectional
      ? 2 : 1) + d;
  for (gsize b = 0; b < nb; b++) {
    if (m->h0)
      memcpy (h + b * H, m->h0 + row * H, H * sizeof (float));
    else
      memset (h + b * H, 0, H * sizeof (float));
    if (c && m->c0)
      memcpy (c + b * H, m->c0 + row * H, H * sizeof (float));
    else if (c)
      memset (c + b * H, 0, H * sizeof (float));
  }
}

/* Metadata keys that the configuration itself owns. */
static const char *const reserved_keys[] = {
  "format", "version", "cell", "input_size", "hidden_size", "num_layers",
  "bidirectional", "head_activation", "frame_size", "output_frame_size",
  "window", "sample_rate", "pre_activations", "post_activations", "skip",
};

gboolean
rnn_model_set_meta (RnnModel *model, const char *key, const char *value)
{
  g_return_val_if_fail (model != NULL && key != NULL && value != NULL, FALSE);
  for (guint i = 0; i < G_N_ELEMENTS (reserved_keys); i++)
    if (strcmp (key, reserved_keys[i]) == 0)
      return FALSE;

  if (g_hash_table_contains (model->meta_values, key)) {
    /* g_hash_table_insert keeps the stored key (owned by meta) */
    g_hash_table_insert (model->meta_values, (gpointer) key, g_strdup (value));
    return TRUE;
  }
  /* keep the key array sorted and NULL-terminated: a binary search, and
   * keys arriving in order (as the loader gives them) are appended, so a
   * file's N keys cost O(N log N) comparisons and no moves (a linear
   * search costs O(N^2): minutes at 160,000 keys) */
  guint lo = 0, hi = model->meta->len - 1;
  while (lo < hi) {
    const guint mid = lo + (hi - lo) / 2;
    if (strcmp (g_ptr_array_index (model->meta, mid), key) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  const guint pos = lo;
  char *k = g_strdup (key);
  g_ptr_array_insert (model->meta, (gint) pos, k);
  g_hash_table_insert (model->meta_values, k, g_strdup (value));
  return TRUE;
}

const char *
rnn_model_get_meta (const RnnModel *model, const char *key)
{
  g_return_val_if_fail (model != NULL && key != NULL, NULL);
  return g_hash_table_lookup (model->meta_values, key);
}

const char *const *
rnn_model_get_meta_keys (const RnnModel *model)
{
  g_return_val_if_fail (model != NULL, NULL);
  return (const char *const *) model->meta->pdata;
}

/* ---- state --------------------------------------------------------------- */

RnnState *
rnn_state_new (const RnnModel *model, guint batch)
{
  g_return_val_if_fail (model != NULL && batch > 0, NULL);
  RnnState *s = g_new0 (RnnState, 1);
  s->cell = model->cfg.cell;
  s->layers = model->cfg.num_layers;
  s->dirs = rnn_model_get_num_directions (model);
  s->hidden = model->cfg.hidden_size;
  s->batch = batch;
  s->shape = model->state_shape;
  s->per_block = (gsize) batch * s->hidden;
  s->n_blocks = (gsize) s->layers * s->dirs * (s->cell == RNN_CELL_LSTM ? 2 : 1);
  s->data = g_malloc0_n (s->n_blocks * s->per_block, sizeof (float));
  if (model->h0) {
    /* one stream's initial state, copied in at every reset; the h blocks
     * first, then the c blocks (zeros without c0), as in data */
    const guint LD = s->layers * s->dirs;
    s->init = g_malloc0_n (s->n_blocks * s->hidden, sizeof (float));
    for (guint l = 0; l < LD; l++)
      rnn_model_initial_state (model, l / s->dirs, l % s->dirs, 1,
          s->init + (gsize) l * s->hidden, s->cell == RNN_CELL_LSTM
          ? s->init + (gsize) (LD + l) * s->hidden : NULL);
    for (guint b = 0; b < batch; b++)
      rnn_state_init_stream (s, b);
  }
  return s;
}

void
rnn_state_init_stream (RnnState *state, guint b)
{
  for (gsize blk = 0; blk < state->n_blocks; blk++) {
    float *dst = state->data + blk * state->per_block + (gsize) b * state->hidden;
    if (state->init)
      memcpy (dst, state->init + blk * state->hidden,
          state->hidden * sizeof (float));
    else
      memset (dst, 0, state->hidden * sizeof (float));
  }
}

void
rnn_state_free (RnnState *state)
{
  if (!state)
    return;
  g_free (state->data);
  g_free (state->init);
  g_free (state);
}

RnnState *
rnn_state_copy (const RnnState *state)
{
  g_return_val_if_fail (state != NULL, NULL);
  RnnState *s = g_memdup2 (state, sizeof *state);
  s->data = g_memdup2 (state->data, state->n_blocks * state->per_block * sizeof (float));
  if (state->init)
    s->init = g_memdup2 (state->init, state->n_blocks * state->hidden * sizeof (float));
  return s;
}

void
rnn_state_reset (RnnState *state)
{
  g_return_if_fail (state != NULL);
  if (state->init == NULL) {
    memset (state->data, 0, state->n_blocks * state->per_block * sizeof (float));
    return;
  }
  for (guint b = 0; b < state->batch; b++)
    rnn_state_init_stream (state, b);
}

void
rnn_state_reset_stream (RnnState *state, guint b)
{
  g_return_if_fail (state != NULL && b < state->batch);
  rnn_state_init_stream (state, b);
}

guint
rnn_state_get_batch (const RnnState *state)
{
  g_return_val_if_fail (state != NULL, 0);
  return state->batch;
}

gboolean
rnn_state_fits (const RnnState *state, const RnnModel *model)
{
  g_return_val_if_fail (state != NULL && model != NULL, FALSE);
  return rnn_state_shape_fits (state, model);
}

float *
rnn_state_h (RnnState *state, guint k, guint d)
{
  g_return_val_if_fail (state != NULL && k < state->layers && d < state->dirs, NULL);
  return rnn_state_h_block (state, k, d);
}

float *
rnn_state_c (RnnState *state, guint k, guint d)
{
  g_return_val_if_fail (state != NULL && k < state->layers && d < state->dirs, NULL);
  return rnn_state_c_block (state, k, d);
}
