/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Optimizers (SGD with momentum, Adam) and global gradient-norm clipping,
 * following torch.optim and torch.nn.utils.clip_grad_norm_ step for step.
 * Parameters, gradients and moments share one layout (the model's slab), so
 * every update is one loop over the slab. */
#include "rnn-private.h"
#include "rnn-train.h"

#include <math.h>
#include <string.h>

struct _RnnOptimizer {
  RnnOptimizerConfig cfg;
  gsize n;                  /* parameters updated per step */
  guint64 step;             /* steps taken */
  float *moments;           /* SGD: [n] momentum buffer; Adam: [2][n] m, v */
  gsize n_moments;          /* floats in @moments */
};

static const char *const kind_names[] = { "sgd", "adam" };

const char *
rnn_optimizer_kind_to_string (RnnOptimizerKind kind)
{
  g_return_val_if_fail ((guint) kind < G_N_ELEMENTS (kind_names), NULL);
  return kind_names[kind];
}

gboolean
rnn_optimizer_kind_from_string (const char *s, RnnOptimizerKind *kind)
{
  for (guint i = 0; s && i < G_N_ELEMENTS (kind_names); i++)
    if (strcmp (s, kind_names[i]) == 0) {
      *kind = (RnnOptimizerKind) i;
      return TRUE;
    }
  return FALSE;
}

void
rnn_optimizer_config_init (RnnOptimizerConfig *cfg, RnnOptimizerKind kind)
{
  g_return_if_fail (cfg != NULL);
  memset (cfg, 0, sizeof *cfg);
  cfg->kind = kind;
  cfg->learning_rate = kind == RNN_OPTIMIZER_ADAM ? 1e-3f : 1e-2f;
  cfg->momentum = 0.0f;
  cfg->beta1 = 0.9f;
  cfg->beta2 = 0.999f;
  cfg->eps = 1e-8f;
  cfg->weight_decay = 0.0f;
}

/* v in [lo, hi) (or [lo, hi] with @closed), finite. */
static gboolean
check_value (const char *name, float v, float lo, float hi, gboolean closed,
    GError **error)
{
  if (isfinite (v) && v >= lo && (closed ? v <= hi : v < hi))
    return TRUE;
  g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID,
      "optimizer %s = %g is out of range %c%g, %g%c", name, (double) v,
      '[', (double) lo, (double) hi, closed ? ']' : ')');
  return FALSE;
}

gboolean
rnn_optimizer_config_validate (const RnnOptimizerConfig *cfg, GError **error)
{
  g_return_val_if_fail (cfg != NULL, FALSE);

  if ((guint) cfg->kind >= G_N_ELEMENTS (kind_names)) {
    g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID, "unknown optimizer %d",
        (int) cfg->kind);
    return FALSE;
  }
  if (!(isfinite (cfg->learning_rate) && cfg->learning_rate > 0.0f)) {
    g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID,
        "optimizer learning_rate = %g must be finite and > 0",
        (double) cfg->learning_rate);
    return FALSE;
  }
  if (!check_value ("weight_decay", cfg->weight_decay, 0.0f, G_MAXFLOAT, TRUE, error))
    return FALSE;
  if (cfg->kind == RNN_OPTIMIZER_SGD)
    return check_value ("momentum", cfg->momentum, 0.0f, 1.0f, FALSE, error);

  if (!check_value ("beta1", cfg->beta1, 0.0f, 1.0f, FALSE, error)
      || !check_value ("beta2", cfg->beta2, 0.0f, 1.0f, FALSE, error))
    return FALSE;
  if (!(isfinite (cfg->eps) && cfg->eps > 0.0f)) {
    g_set_error (error, RNN_ERROR, RNN_ERROR_INVALID,
        "optimizer eps = %g must be finite and > 0", (double) cfg->eps);
    return FALSE;
  }
  return TRUE;
}

RnnOptimizer *
rnn_optimizer_new (const RnnOptimizerConfig *cfg, gsize n, GError **error)
{
  g_return_val_if_fail (cfg != NULL, NULL);
  g_return_val_if_fail (n > 0, NULL);

  if (!rnn_optimizer_config_validate (cfg, error))
    return NULL;
  RnnOptimizer *opt = g_new0 (RnnOptimizer, 1);
  opt->cfg = *cfg;
  opt->n = n;
  if (cfg->kind == RNN_OPTIMIZER_ADAM)
    opt->n_moments = 2 * n;
  else if (cfg->momentum != 0.0f)
    opt->n_moments = n;
  opt->moments = g_malloc0_n (MAX (opt->n_moments, 1), sizeof (float));
  return opt;
}

void
rnn_optimizer_free (RnnOptimizer *opt)
{
  if (!opt)
    return;
  g_free (opt->moments);
  g_free (opt);
}

RnnOptimizer *
rnn_optimizer_copy (const RnnOptimizer *opt)
{
  g_return_val_if_fail (opt != NULL, NULL);
  RnnOptimizer *copy = g_memdup2 (opt, sizeof *opt);
  copy->moments = g_memdup2 (opt->moments, MAX (opt->n_moments, 1) * sizeof (float));
  return copy;
}

void
rnn_optimizer_reset (RnnOptimizer *opt)
{
  g_return_if_fail (opt != NULL);
  opt->step = 0;
  memset (opt->moments, 0, opt->n_moments * sizeof (float));
}

const RnnOptimizerConfig *
rnn_optimizer_get_config (const RnnOptimizer *opt)
{
  g_return_val_if_fail (opt != NULL, NULL);
  return &opt->cfg;
}

void
rnn_optimizer_set_learning_rate (RnnOptimizer *opt, float lr)
{
  g_return_if_fail (opt != NULL);
  g_return_if_fail (isfinite (lr) && lr > 0.0f);
  opt->cfg.learning_rate = lr;
}

guint64
rnn_optimizer_get_step_count (const RnnOptimizer *opt)
{
  g_return_val_if_fail (opt != NULL, 0);
  return opt->step;
}

gsize
rnn_optimizer_get_size (const RnnOptimizer *opt)
{
  g_return_val_if_fail (opt != NULL, 0);
  return opt->n;
}

/* torch.optim.SGD, dampening 0, no Nesterov.  The momentum buffer starts at
 * zero, so buf = momentum * 0 + d equals torch's buf = clone(d) at the first
 * step. */
static void
sgd_step (float *restrict p, float *restrict buf, const float *restrict g,
    float lr, float momentum, float weight_decay, gsize n)
{
  for (gsize i = 0; i < n; i++) {
    float d = g[i];
    if (weight_decay != 0.0f)
      d = d + weight_decay * p[i];
    if (momentum != 0.0f) {
      buf[i] = momentum * buf[i] + d;
      d = buf[i];
    }
    p[i] = p[i] + -lr * d;
  }
}

/* torch.optim.Adam (amsgrad off, L2 weight decay added to the gradient).
 * The bias corrections are computed in double as Python computes them;
 * the elementwise arithmetic is float32 as torch's kernels do it. */
static void
adam_step (float *restrict p, float *restrict m, float *restrict v,
    const float *restrict g, float lr, float beta1, float beta2, float eps,
    float weight_decay, guint64 step, gsize n)
{
  const double bc1 = 1.0 - pow ((double) beta1, (double) step);
  const double bc2 = 1.0 - pow ((double) beta2, (double) step);
  const float step_size = (float) ((double) lr / bc1);
  const float bc2_sqrt = (float) sqrt (bc2);
  const float one_b1 = (float) (1.0 - (double) beta1);
  const float one_b2 = (float) (1.0 - (double) beta2);

  for (gsize i = 0; i < n; i++) {
    float d = g[i];
    if (weight_decay != 0.0f)
      d = d + weight_decay * p[i];
    m[i] = m[i] * beta1 + one_b1 * d;
    v[i] = v[i] * beta2 + one_b2 * (d * d);
    const float denom = sqrtf (v[i]) / bc2_sqrt + eps;
    p[i] = p[i] + -step_size * (m[i] / denom);
  }
}

/* The update of floats [@off, @off + @n) of the optimizer's @opt->n, at
 * the step count already advanced. */
static void
step_range (RnnOptimizer *opt, float *params, const float *grads, gsize off,
    gsize n)
{
  const RnnOptimizerConfig *c = &opt->cfg;
  switch (c->kind) {
    case RNN_OPTIMIZER_SGD:
      sgd_step (params + off, opt->moments + off, grads + off,
          c->learning_rate, c->momentum, c->weight_decay, n);
      break;
    case RNN_OPTIMIZER_ADAM:
      adam_step (params + off, opt->moments + off, opt->moments + opt->n + off,
          grads + off, c->learning_rate, c->beta1, c->beta2, c->eps,
          c->weight_decay, opt->step, n);
      break;
  }
}

void
rnn_optimizer_step (RnnOptimizer *opt, float *params, const float *grads)
{
  g_return_if_fail (opt != NULL && params != NULL && grads != NULL);
  opt->step++;
  step_range (opt, params, grads, 0, opt->n);
}

void
rnn_optimizer_step_model (RnnOptimizer *opt, RnnModel *model, const float *grads)
{
  g_return_if_fail (opt != NULL && model != NULL && grads != NULL);
  g_return_if_fail (opt->n == rnn_train_get_n_trainable (model));

  /* the floats up to the first tensor that is not trained in one pass (all
   * of a version-1 model's), then each trained tensor after it: the input
   * normalisation and the initial state between them stay as they are,
   * weight decay or not */
  gsize done = 0;
  for (guint i = 0; i < model->n_tensors && done == 0; i++)
    if (!rnn_train_tensor_is_trained (&model->tensors[i]))
      done = model->tensors[i].offset;
  if (done == 0)
    done = opt->n;
  opt->step++;
  step_range (opt, model->params, grads, 0, done);
  for (guint i = 0; i < model->n_tensors; i++) {
    const RnnParamInfo *ti = &model->tensors[i];
    if (ti->offset >= done && ti->offset < opt->n
        && rnn_train_tensor_is_trained (ti))
      step_range (opt, model->params, grads, ti->offset, ti->numel);
  }
  rnn_model_plan_invalidate (model);
}

/* ---- initialisation ---------------------------------------------------- */

void
rnn_train_init_params (RnnModel *model, guint32 seed)
{
  g_return_if_fail (model != NULL);
  const RnnConfig *c = &model->cfg;
  const double rnn_bound = 1.0 / sqrt ((double) c->hidden_size);
  const double head_bound = 1.0 / sqrt ((double) rnn_config_features (c));
  GRand *rand = g_rand_new_with_seed (seed);

  for (guint i = 0; i < model->n_tensors; i++) {
    const RnnParamInfo *ti = &model->tensors[i];
    double bound;
    if (!rnn_train_tensor_is_trained (ti))
      continue;                 /* data statistics, the initial state */
    if (g_str_has_prefix (ti->name, "rnn."))
      bound = rnn_bound;
    else if (g_str_has_prefix (ti->name, "head."))
      bound = head_bound;
    else                        /* pre / post layers, nn.Linear's bound */
      bound = 1.0 / sqrt ((double) (ti->ndim == 2 ? ti->shape[1]
              : ti[-1].shape[1]));
    float *p = model->params + ti->offset;
    for (gsize j = 0; j < ti->numel; j++)
      p[j] = (float) g_rand_double_range (rand, -bound, bound);
  }
  g_rand_free (rand);
  rnn_model_plan_invalidate (model);
}

/* ---- clipping ------------------------------------------------------------ */

float
rnn_clip_grad_norm (float *grads, gsize n, float max_norm)
{
  g_return_val_if_fail (grads != NULL || n == 0, NAN);

  double ss = 0.0;
  for (gsize i = 0; i < n; i++)
    ss += (double) grads[i] * (double) grads[i];
  const double total = sqrt (ss);
  if (!isfinite (total) || !(max_norm > 0.0f))
    return (float) total;

  /* torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1 */
  const double coef = (double) max_norm / (total + 1e-6);
  if (coef < 1.0) {
    const float c = (float) coef;
    for (gsize i = 0; i < n; i++)
      grads[i] *= c;
  }
  return (float) total;
}
