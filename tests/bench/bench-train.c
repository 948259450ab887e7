/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bench-train [--hidden H] [--seq T] [--batch B] [--iters N] [--repeats R]
 * One training step as rnntrain runs it — forward with caches, MSE loss,
 * backward, Adam — on an LSTM (input 1, hidden H, linear head to 1 output)
 * over B windows of T steps from zero state, N steps per run; prints the
 * median "step_batches_per_second" (T * B * N / seconds) over R runs.
 * Single-threaded BLAS. */
#include "rnn-train.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

int
main (int argc, char **argv)
{
  gint hidden = 64, seq = 256, batch = 32, iters = 5, repeats = 5;
  GOptionEntry entries[] = {
    { "hidden", 0, 0, G_OPTION_ARG_INT, &hidden, "hidden size", "H" },
    { "seq", 0, 0, G_OPTION_ARG_INT, &seq, "steps per window", "T" },
    { "batch", 0, 0, G_OPTION_ARG_INT, &batch, "windows per step", "B" },
    { "iters", 0, 0, G_OPTION_ARG_INT, &iters, "training steps per run", "N" },
    { "repeats", 0, 0, G_OPTION_ARG_INT, &repeats, "runs (median printed)", "R" },
    { NULL }
  };
  GError *error = NULL;
  GOptionContext *ctx = g_option_context_new ("- training step throughput");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || hidden < 1
      || seq < 1 || batch < 1 || iters < 1 || repeats < 1) {
    g_printerr ("%s\n", error ? error->message : "bad arguments");
    return 2;
  }
  g_option_context_free (ctx);
  openblas_set_num_threads (1);

  RnnConfig cfg;
  rnn_config_init (&cfg);
  cfg.cell = RNN_CELL_LSTM;
  cfg.input_size = 1;
  cfg.hidden_size = hidden;
  cfg.has_head = TRUE;
  cfg.output_size = 1;
  g_autoptr (RnnModel) model = rnn_model_new (&cfg, &error);
  if (!model) {
    g_printerr ("%s\n", error->message);
    return 1;
  }
  rnn_train_init_params (model, 1);

  const gsize TB = (gsize) seq * batch;
  float *x = g_new (float, TB), *target = g_new (float, TB);
  for (gsize i = 0; i < TB; i++) {
    x[i] = sinf (0.01f * (float) i) * 0.5f;
    target[i] = cosf (0.013f * (float) i) * 0.5f;
  }
  gsize n_params;
  rnn_model_get_params (model, &n_params);
  float *grads = g_new0 (float, n_params);
  g_autoptr (RnnTrain) tr = rnn_train_new ();
  RnnOptimizerConfig oc;
  rnn_optimizer_config_init (&oc, RNN_OPTIMIZER_ADAM);
  g_autoptr (RnnOptimizer) opt = rnn_optimizer_new (&oc,
      rnn_train_get_n_trainable (model), &error);

  double *rates = g_new (double, repeats), loss = 0.0;
  for (gint r = -1; r < repeats; r++) {          /* r = -1: warm-up */
    gint64 t0 = g_get_monotonic_time ();
    for (gint it = 0; it < iters; it++) {
      memset (grads, 0, n_params * sizeof (float));
      rnn_train_forward (tr, NULL, NULL, x, model, seq, batch);
      if (!rnn_train_loss (tr, &loss, target, NULL, RNN_LOSS_MSE, 0, &error)) {
        g_printerr ("%s\n", error->message);
        return 1;
      }
      rnn_train_backward (tr, grads, NULL, model);
      rnn_optimizer_step_model (opt, model, grads);
    }
    double secs = (g_get_monotonic_time () - t0) / 1e6;
    if (r >= 0)
      rates[r] = (double) TB * iters / secs;
  }
  qsort (rates, repeats, sizeof (double), cmp_double);
  g_print ("loss %.6g\n", loss);
  g_print ("step_batches_per_second %.0f\n", rates[repeats / 2]);
  g_free (rates);
  g_free (grads);
  g_free (x);
  g_free (target);
  return 0;
}
