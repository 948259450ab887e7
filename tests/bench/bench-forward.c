/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bench-forward MODEL --steps N --chunk C --repeats R
 * Streams N steps of one stream through the model in chunks of C steps and
 * prints the median steps per second over R runs.  Single-threaded BLAS.
 * --weights f16 runs with the opt-in float16 recurrent weights; --threads N
 * splits the streams over N threads. */
#include "rnn.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

int
main (int argc, char **argv)
{
  gint steps = 48000, chunk = 480, repeats = 7, batch = 1, threads = 1;
  g_autofree char *weights = NULL;
  GOptionEntry entries[] = {
    { "steps", 0, 0, G_OPTION_ARG_INT, &steps, "steps per run", "N" },
    { "chunk", 0, 0, G_OPTION_ARG_INT, &chunk, "steps per call", "C" },
    { "repeats", 0, 0, G_OPTION_ARG_INT, &repeats, "runs (median printed)", "R" },
    { "batch", 0, 0, G_OPTION_ARG_INT, &batch, "independent streams", "B" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &threads,
      "threads the streams are split over (rnn_forward_set_threads)", "N" },
    { "weights", 0, 0, G_OPTION_ARG_STRING, &weights,
      "f32 (default) or f16 (opt-in float16 recurrent weights)", "P" },
    { NULL }
  };
  GError *error = NULL;
  GOptionContext *ctx = g_option_context_new ("MODEL - streaming forward throughput");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || argc != 2
      || steps < 1 || chunk < 1 || repeats < 1 || batch < 1 || threads < 1) {
    g_printerr ("%s\n", error ? error->message : "usage: bench-forward MODEL [options]");
    return 2;
  }
  g_option_context_free (ctx);
  openblas_set_num_threads (1);

  g_autoptr (RnnModel) model = rnn_model_load (argv[1], &error);
  if (!model) {
    g_printerr ("%s\n", error->message);
    return 1;
  }
  if (weights && g_strcmp0 (weights, "f16") == 0) {
    if (!rnn_model_set_weight_precision (model, RNN_WEIGHTS_F16, &error)) {
      g_printerr ("%s\n", error->message);
      return 1;
    }
  } else if (weights && g_strcmp0 (weights, "f32") != 0) {
    g_printerr ("--weights: f32 or f16, not %s\n", weights);
    return 2;
  }
  const RnnConfig *c = rnn_model_get_config (model);
  const gsize n_in = c->input_size, O = rnn_model_get_output_size (model);
  float *x = g_new (float, (gsize) steps * batch * n_in);
  float *y = g_new (float, (gsize) chunk * batch * O);
  for (gsize n = 0; n < (gsize) steps * batch * n_in; n++)
    x[n] = 0.5f * sinf (0.01f * (float) n);

  g_autoptr (RnnForward) fw = rnn_forward_new ();
  if (!rnn_forward_set_threads (fw, (guint) threads, &error)) {
    g_printerr ("%s\n", error->message);
    return 1;
  }
  g_autoptr (RnnState) state = c->bidirectional ? NULL : rnn_state_new (model, batch);
  double *rates = g_new (double, repeats);
  /* warm-up (caches, scratch memory, the worker threads), not timed */
  for (gint s = 0; s < MIN (steps, 4 * chunk); s += chunk)
    rnn_forward (fw, model, state, x + (gsize) s * batch * n_in,
        MIN (chunk, steps - s), batch, y);
  for (gint r = 0; r < repeats; r++) {
    gint64 t0 = g_get_monotonic_time ();
    for (gint s = 0; s < steps; s += chunk) {
      guint len = MIN (chunk, steps - s);
      rnn_forward (fw, model, state, x + (gsize) s * batch * n_in, len, batch, y);
    }
    double secs = (g_get_monotonic_time () - t0) / 1e6;
    rates[r] = steps / secs;
  }
  qsort (rates, repeats, sizeof (double), cmp_double);
  g_print ("steps_per_second %.0f\n", rates[repeats / 2]);
  g_free (rates);
  g_free (x);
  g_free (y);
  return 0;
}
