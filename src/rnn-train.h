/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* gst-rnn numerical core: training — backpropagation through time (BPTT),
 * losses, optimizers and gradient clipping.
 *
 * A training step, as RnnTrainer (rnn-trainer.c) runs it for rnntrain:
 *
 *   RnnModel *model = ...;            // the trainer's private copy:
 *                                     // rnn_model_copy() of an init-model, or
 *                                     // rnn_model_new() + rnn_train_init_params()
 *   gsize n;
 *   rnn_model_get_params (model, &n);
 *   float *grads = g_new0 (float, n);  // laid out exactly like the params
 *   RnnTrain *tr = rnn_train_new ();
 *   RnnOptimizerConfig oc;
 *   rnn_optimizer_config_init (&oc, RNN_OPTIMIZER_ADAM);
 *   RnnOptimizer *opt = rnn_optimizer_new (&oc, rnn_train_get_n_trainable (model), &err);
 *
 *   for each batch of B windows of T steps:
 *     memset (grads, 0, n * sizeof (float));      // backward accumulates
 *     rnn_train_forward (tr, y_or_NULL, state_or_NULL, x, model, T, B);
 *     if (!rnn_train_loss (tr, &loss, target, mask_or_NULL, RNN_LOSS_MSE, warmup, &err))
 *       ...;                                       // bad target data
 *     rnn_train_backward (tr, grads, NULL, model);
 *     norm = rnn_clip_grad_norm (grads, n, clip_norm);   // if clipping
 *     if (!isfinite (loss) || !isfinite (norm)) roll back ...;
 *     rnn_optimizer_step_model (opt, model, grads);      // updates (planned again at the next forward)
 *
 * Validation is rnn_train_forward() + rnn_train_loss() without the backward.
 * Offline training on windows cut at random offsets passes state NULL (the
 * model's initial state, optionally with a few warm-up steps that carry no loss);
 * online training (truncated BPTT) passes the RnnState of the stream(s), so
 * each window starts where the previous one ended.  Inference models are
 * handed out as rnn_model_copy() of the trainer's model.
 *
 * Conventions are those of rnn.h: time-major x [T][B][I], float32,
 * parameters and gradients in the model's slab order (RnnParamInfo offsets,
 * including the zero padding between tensors).  Errors a user can cause
 * (bad targets, an impossible loss/head combination, a bad optimizer
 * setting) are GErrors in the RNN_ERROR domain; misuse of the API is caught
 * by g_return_if_fail.  Same inputs give bitwise the same results (with
 * OpenBLAS single-threaded, OPENBLAS_NUM_THREADS=1, as the tests run it).
 */
#pragma once

#include "rnn.h"

G_BEGIN_DECLS

/* ---- training forward and backward (BPTT) ------------------------------ */

typedef enum {
  /* Mean over the weighted steps and all O outputs of (y - target)^2, y the
   * model output after the head activation.  Without a mask or warm-up this
   * is torch.nn.MSELoss() (reduction 'mean' over T*B*O elements). */
  RNN_LOSS_MSE,
  /* torch.nn.CrossEntropyLoss() on the logits, with class-index targets:
   * -log softmax(z)[target], mean over the weighted steps.  The logits z are
   * the head's output before its activation, so a softmax head trains
   * exactly as nn.Linear + CrossEntropyLoss does and its gradient is
   * softmax(z) - onehot (fused).  Needs a head with activation none or
   * softmax. */
  RNN_LOSS_CROSS_ENTROPY,
  /* Error-to-signal ratio over the batch: sum (y - target)^2 over the
   * weighted steps and outputs / (sum target^2 + RNN_ESR_EPS * (weighted
   * steps x O)), the loss of Wright et al.'s amp models (the epsilon keeps
   * a silent batch finite; it is -80 dB of a mean square). */
  RNN_LOSS_ESR,
} RnnLoss;

#define RNN_ESR_EPS 1e-8

/* "mse", "cross-entropy", "esr" (the rnntrain property's nicks). */
const char *rnn_loss_to_string (RnnLoss loss);
gboolean rnn_loss_from_string (const char *s, RnnLoss *loss);

/* Checks that @loss can train @model: cross-entropy needs a head whose
 * activation is none or softmax, at least two outputs and no skip.  Every
 * model the loader accepts trains with mse and esr: pre and post layers
 * (every activation), the skip, and a model's initial state (kept, not
 * trained). */
gboolean rnn_loss_check (RnnLoss loss, const RnnModel *model, GError **error);

/* Workspace of the training passes: the caches the forward pass keeps for
 * the backward pass, and all scratch memory.  It grows to the largest model
 * and T*B seen, so a steady training loop allocates nothing.  It holds no
 * reference to the model; one per thread. */
typedef struct _RnnTrain RnnTrain;
RnnTrain *rnn_train_new (void);
void rnn_train_free (RnnTrain *tr);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RnnTrain, rnn_train_free)
/* Bytes of workspace the training passes over @T steps of @B windows of
 * @model take. */
gsize rnn_train_workspace_bytes (const RnnModel *model, guint T, guint B);
/* Allocates the workspace for @T x @B (if larger than what @tr has) with
 * an allocation that may fail: FALSE (G_FILE_ERROR_NOMEM) instead of an
 * abort.  Later passes up to that size allocate nothing.  Call it before
 * rnn_train_forward(), not between a forward and its backward. */
gboolean rnn_train_reserve (RnnTrain *tr, const RnnModel *model, guint T,
    guint B, GError **error);

/* Training forward of a batch of B windows of T steps: x [T][B][I] ->
 * y [T][B][O] (O = rnn_model_get_output_size()), caching the gate
 * activations, c and h of every step, layer and direction.
 * @y: NULL, or where to copy the output (after the head activation).
 * @state (unidirectional models): NULL to start every window from the
 *   initial state; otherwise it holds the initial h (and c) of the B windows,
 *   e.g. carried from the previous window of the same stream, and receives
 *   the final state so the caller can carry it on.  The initial state is
 *   detached: no gradient flows into it (truncated BPTT).
 *   NULL starts from the model's initial state (rnn.h0, rnn.c0; zeros
 *   without them), as rnn_forward() does after a reset.
 *   Bidirectional models: must be NULL; every window is one whole sequence,
 *   both directions start from the initial state (as rnn_forward() runs
 *   them).
 * @model (planned here if it is not) must stay unchanged until
 * rnn_train_backward(); @x need not
 * outlive the call.
 * Computes what rnn_forward() computes with the same cell arithmetic and
 * recurrent kernel; the input projection is one sgemm, so the two agree to
 * float rounding (~1e-7), not bit for bit. */
void rnn_train_forward (RnnTrain *tr, float *y, RnnState *state,
    const float *x, const RnnModel *model, guint T, guint B);

/* The loss of the last rnn_train_forward() and, kept in @tr for
 * rnn_train_backward(), its gradient with respect to the output.
 * @loss: the loss, accumulated in double.
 * @target: MSE: [T][B][O] finite values; cross-entropy: [T][B] class
 *   indices stored as floats (integers in [0, O)).
 * @mask: NULL, or [T][B] finite weights >= 0 per step and window (0 = no
 *   loss, e.g. padding).
 * @warmup: the first @warmup steps of every window carry no loss (the state
 *   settles first); their outputs still feed later steps.
 * The loss is sum(w * per-step loss) / sum(w) (/ O for MSE) with w the mask
 * times the warm-up; 0 with a zero gradient when every weight is 0.
 * Returns FALSE with RNN_ERROR_TENSOR for a bad target or mask value, or
 * RNN_ERROR_INVALID when @kind cannot train the model (rnn_loss_check()). */
gboolean rnn_train_loss (RnnTrain *tr, double *loss, const float *target,
    const float *mask, RnnLoss kind, guint warmup, GError **error);

/* rnn_train_loss() with a pre-emphasis filter (mse and esr): with
 * @pre_emphasis = a in (0, 1), the loss compares e_y[t] = y[t] - a y[t-1]
 * with e_tgt[t] = target[t] - a target[t-1], both from the same window.
 * Step 0 of every window has no step before it and carries no loss, nor
 * does a step whose previous step has mask weight 0; so a window of T
 * steps gives T - 1 compared steps, in training and in validation alike.
 * @pre_emphasis 0 is rnn_train_loss(); a value outside [0, 1), or above 0
 * with cross-entropy, is RNN_ERROR_INVALID. */
gboolean rnn_train_loss_full (RnnTrain *tr, double *loss, const float *target,
    const float *mask, RnnLoss kind, double pre_emphasis, guint warmup,
    GError **error);

/* The last loss as a ratio @num / @den (e.g. ESR: the weighted squared
 * error and the weighted target energy plus the epsilon; MSE: the weighted
 * squared error and the weighted count of values), so that losses of
 * consecutive windows combine into the loss of the whole.  FALSE without
 * a loss. */
gboolean rnn_train_loss_sums (const RnnTrain *tr, double *num, double *den);

/* The output [T][B][O] of the last rnn_train_forward() (after the head
 * activation and the skip), valid until the next forward. */
const float *rnn_train_peek_output (const RnnTrain *tr);

/* Backward pass through the skip, the head, the post layers, every layer
 * and direction, the pre layers and the input normalisation, for the last
 * forward and loss.  ACCUMULATES into @grads (rnn_model_get_params()
 * layout, n_params floats; the caller zeroes it), so calls may add up
 * several batches.  The gradients of input.mean, input.std, rnn.h0,
 * rnn.c0 and of the padding are left untouched (zero): they are not
 * trained.
 * @dx: NULL, or where to write (not accumulate) the gradient of the loss
 *   with respect to the raw input x, [T][B][I].
 * @model: the model the forward pass ran. */
void rnn_train_backward (RnnTrain *tr, float *grads, float *dx,
    const RnnModel *model);

/* Floats at the start of the slab that the optimizer state covers: up to
 * the end of the last trained tensor.  Every parameter is trained except
 * input.mean and input.std (data statistics) and rnn.h0, rnn.c0 (the
 * initial state, kept as it is); rnn_optimizer_step_model() leaves those
 * that sit inside the range unchanged. */
gsize rnn_train_get_n_trainable (const RnnModel *model);
/* Whether the optimizers update tensor @ti (see above). */
gboolean rnn_train_tensor_is_trained (const RnnParamInfo *ti);

/* ---- initialisation -------------------------------------------------- */

/* Fills every trainable parameter as PyTorch initialises a fresh module,
 * from a generator seeded with @seed (GRand, the same numbers on every
 * platform): nn.RNN/LSTM/GRU weights and biases ~ U(-1/sqrt(H), 1/sqrt(H)),
 * the head and the pre and post layers (nn.Linear) weight and bias ~
 * U(-1/sqrt(in), 1/sqrt(in)) with in their input width (the head's: D*H
 * without post layers).  input.mean / input.std, rnn.h0 / rnn.c0 and the
 * padding are left as they are.  Seals the model. */
void rnn_train_init_params (RnnModel *model, guint32 seed);

/* ---- gradient clipping ---------------------------------------------- */

/* torch.nn.utils.clip_grad_norm_ over all @n gradients as one group:
 * total = ||grads||_2 (accumulated in double); if max_norm / (total + 1e-6)
 * < 1, every gradient is multiplied by that coefficient.  Returns the total
 * norm before clipping; a non-finite total (which leaves @grads unchanged)
 * tells the caller to skip the step.  @max_norm <= 0 only measures. */
float rnn_clip_grad_norm (float *grads, gsize n, float max_norm);

/* ---- optimizers ------------------------------------------------------ */

typedef enum {
  RNN_OPTIMIZER_SGD,
  RNN_OPTIMIZER_ADAM,
} RnnOptimizerKind;

/* "sgd", "adam". */
const char *rnn_optimizer_kind_to_string (RnnOptimizerKind kind);
gboolean rnn_optimizer_kind_from_string (const char *s, RnnOptimizerKind *kind);

/* torch.optim semantics:
 * SGD:  d = g + weight_decay * p;  buf = momentum * buf + d (buf = d at the
 *       first step; dampening 0, no Nesterov);  p -= lr * buf.
 * Adam: d = g + weight_decay * p (L2, not AdamW);  m = b1 m + (1-b1) d;
 *       v = b2 v + (1-b2) d^2;  p -= lr / (1 - b1^t) * m /
 *       (sqrt(v) / sqrt(1 - b2^t) + eps). */
typedef struct {
  RnnOptimizerKind kind;
  float learning_rate;      /* > 0 */
  float momentum;           /* SGD, in [0, 1) */
  float beta1, beta2;       /* Adam, in [0, 1) */
  float eps;                /* Adam, > 0 */
  float weight_decay;       /* >= 0 */
} RnnOptimizerConfig;

/* PyTorch's defaults: SGD lr 0.01 (torch has none), momentum 0; Adam lr
 * 0.001, betas (0.9, 0.999), eps 1e-8; weight decay 0. */
void rnn_optimizer_config_init (RnnOptimizerConfig *cfg, RnnOptimizerKind kind);
gboolean rnn_optimizer_config_validate (const RnnOptimizerConfig *cfg,
    GError **error);

/* Optimizer state (step count and moments, one slab) for @n parameters. */
typedef struct _RnnOptimizer RnnOptimizer;
RnnOptimizer *rnn_optimizer_new (const RnnOptimizerConfig *cfg, gsize n,
    GError **error);
void rnn_optimizer_free (RnnOptimizer *opt);
/* A snapshot, e.g. to roll back together with rnn_model_copy(). */
RnnOptimizer *rnn_optimizer_copy (const RnnOptimizer *opt);
/* Forgets the moments and the step count. */
void rnn_optimizer_reset (RnnOptimizer *opt);
const RnnOptimizerConfig *rnn_optimizer_get_config (const RnnOptimizer *opt);
/* E.g. halve it after a divergence; the moments are kept. */
void rnn_optimizer_set_learning_rate (RnnOptimizer *opt, float lr);
guint64 rnn_optimizer_get_step_count (const RnnOptimizer *opt);
gsize rnn_optimizer_get_size (const RnnOptimizer *opt);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RnnOptimizer, rnn_optimizer_free)

/* One step over the @n floats given at creation: params[i] from grads[i]. */
void rnn_optimizer_step (RnnOptimizer *opt, float *params, const float *grads);
/* One step over the trainable part of @model's slab (the optimizer must
 * have been made with n = rnn_train_get_n_trainable (model)); the model is
 * planned again at its next forward pass.  The model must be the trainer's
 * private copy. */
void rnn_optimizer_step_model (RnnOptimizer *opt, RnnModel *model,
    const float *grads);

G_END_DECLS
