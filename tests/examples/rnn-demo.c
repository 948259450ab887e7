/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnn-demo: run a per-sample audio model through the gst-rnn core.
 *
 *   rnn-demo [MODEL]      (default models/softclip-lstm8.safetensors)
 *
 * Loads the model, makes 2 s of test signal at the model's sample rate (an
 * exponential chirp 50 Hz -> 5 kHz at 0.8, then a two-tone at 0.3 peak),
 * computes the reference effect the shipped model imitates (tanh(3x), then a
 * one-pole lowpass with a = 0.2), streams the signal through rnn_forward() in
 * 480-frame chunks carrying an RnnState across chunks, and prints the model's
 * configuration, the error-to-signal ratio against the reference, the
 * throughput and a few sample values.
 *
 * Only unidirectional models with one input and one output per step (a mono
 * per-sample effect) can be streamed this way; others are refused with an
 * explanation.  Uses the public core API (src/rnn.h) only.
 */
#include "rnn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define DEFAULT_MODEL "models/softclip-lstm8.safetensors"
#define DEFAULT_RATE 48000u
#define CHUNK 480u
#define SECONDS 2.0

/* The reference effect (models/recipes/softclip-lstm8.py). */
#define REF_DRIVE 3.0
#define REF_LOWPASS_A 0.2

/* Test signal. */
#define CHIRP_F0 50.0
#define CHIRP_F1 5000.0
#define CHIRP_AMP 0.8
#define TONE_F0 440.0
#define TONE_F1 1000.0
#define TONE_AMP 0.3     /* peak of the sum: each tone at half of it */

/* Minimum wall time spent measuring throughput. */
#define BENCH_MIN_US 500000

static void
make_signal (float *x, gsize n, guint rate)
{
  gsize half = n / 2;
  double dur = (double) half / rate;
  double k = log (CHIRP_F1 / CHIRP_F0) / dur;

  for (gsize t = 0; t < n; t++) {
    double s = (double) t / rate;
    double v;
    if (t < half) {
      /* exponential chirp: f(s) = f0 * exp(k s) */
      v = CHIRP_AMP * sin (2.0 * G_PI * CHIRP_F0 * (exp (k * s) - 1.0) / k);
    } else {
      double u = (double) (t - half) / rate;
      v = 0.5 * TONE_AMP * (sin (2.0 * G_PI * TONE_F0 * u) + sin (2.0 * G_PI * TONE_F1 * u));
    }
    x[t] = (float) v;
  }
}

/* What the signal is at sample t, for the table. */
static void
describe_time (char *buf, gsize len, gsize t, gsize n, guint rate)
{
  gsize half = n / 2;
  if (t < half) {
    double dur = (double) half / rate;
    double f = CHIRP_F0 * exp (log (CHIRP_F1 / CHIRP_F0) * ((double) t / rate) / dur);
    g_snprintf (buf, len, "chirp %.0f Hz", f);
  } else {
    g_snprintf (buf, len, "two-tone");
  }
}

static void
reference_effect (const float *x, double *y, gsize n)
{
  double prev = 0.0;
  for (gsize t = 0; t < n; t++) {
    prev += REF_LOWPASS_A * (tanh (REF_DRIVE * x[t]) - prev);
    y[t] = prev;
  }
}

/* Sum (y - yhat)^2 / sum y^2 over [from, to). */
static double
esr (const double *ref, const float *out, gsize from, gsize to)
{
  double num = 0.0, den = 0.0;
  for (gsize t = from; t < to; t++) {
    double e = ref[t] - out[t];
    num += e * e;
    den += ref[t] * ref[t];
  }
  return den > 0.0 ? num / den : NAN;
}

/* One pass over the whole signal in CHUNK-frame calls from zero state. */
static void
stream (RnnForward *fw, const RnnModel *model, RnnState *state,
    const float *x, float *y, gsize n)
{
  rnn_state_reset (state);
  for (gsize off = 0; off < n; off += CHUNK) {
    guint len = (guint) MIN ((gsize) CHUNK, n - off);
    rnn_forward (fw, model, state, x + off, len, 1, y + off);
  }
}

int
main (int argc, char **argv)
{
  const char *path = argc > 1 ? argv[1] : DEFAULT_MODEL;
  g_autoptr (GError) error = NULL;
  int status = 0;

  if (argc > 2 || (argc == 2 && (g_str_equal (argv[1], "-h") || g_str_equal (argv[1], "--help")))) {
    fprintf (stderr, "usage: %s [MODEL.safetensors]   (default %s)\n", argv[0], DEFAULT_MODEL);
    return argc > 2 ? 2 : 0;
  }

  g_autoptr (RnnModel) model = rnn_model_load (path, &error);
  if (model == NULL) {
    fprintf (stderr, "rnn-demo: %s\n", error->message);
    return 1;
  }

  const RnnConfig *cfg = rnn_model_get_config (model);
  guint out_size = rnn_model_get_output_size (model);
  /* Count the tensors' elements: the slab itself holds alignment padding. */
  gsize n_params = 0;
  guint n_tensors = rnn_model_get_n_tensors (model);
  for (guint i = 0; i < n_tensors; i++)
    n_params += rnn_model_get_tensor_info (model, i)->numel;
  const char *desc = rnn_model_get_meta (model, "description");
  const char *train_esr = rnn_model_get_meta (model, "train_esr");
  const char *recipe = rnn_model_get_meta (model, "train_recipe");

  printf ("model        %s\n", path);
  printf ("cell         %s, input %u, hidden %u, layers %u, %s, ",
      rnn_cell_to_string (cfg->cell), cfg->input_size, cfg->hidden_size,
      cfg->num_layers, cfg->bidirectional ? "bidirectional" : "unidirectional");
  if (cfg->has_head)
    printf ("head %u -> %u (%s)\n", (cfg->bidirectional ? 2 : 1) * cfg->hidden_size,
        cfg->output_size, rnn_head_activation_to_string (cfg->head_activation));
  else
    printf ("no head (output %u)\n", out_size);
  printf ("parameters   %" G_GSIZE_FORMAT " in %u tensors (%" G_GSIZE_FORMAT " bytes of float32)%s\n",
      n_params, n_tensors, n_params * sizeof (float),
      cfg->has_input_norm ? ", with input normalisation" : "");
  printf ("description  %s\n", desc ? desc : "(none)");
  if (recipe || train_esr)
    printf ("trained by   %s, held-out ESR %s\n", recipe ? recipe : "?", train_esr ? train_esr : "?");

  if (cfg->bidirectional) {
    printf ("\nThis demo streams a signal through a unidirectional model with a carried\n"
        "state; a bidirectional model runs whole windows instead (docs/design.md\n"
        "§4), so it is not demonstrated here.\n");
    return 1;
  }
  if (cfg->input_size != 1 || out_size != 1) {
    printf ("\nThis demo feeds one audio sample per step and reads one back; this model\n"
        "takes %u inputs and gives %u outputs per step, so it is not a per-sample\n"
        "audio effect and is not demonstrated here.\n", cfg->input_size, out_size);
    return 1;
  }

  guint rate = cfg->sample_rate ? cfg->sample_rate : DEFAULT_RATE;
  gsize n = (gsize) (SECONDS * rate);
  gsize half = n / 2;
  float *x = g_new (float, n);
  float *y = g_new (float, n);
  float *scratch = g_new (float, n);
  double *ref = g_new (double, n);

  make_signal (x, n, rate);
  reference_effect (x, ref, n);

  printf ("\nsignal       %.1f s at %u Hz%s: chirp %.0f Hz -> %.0f Hz at %.1f, then\n"
      "             two-tone %.0f + %.0f Hz at %.1f peak (%" G_GSIZE_FORMAT " steps)\n",
      SECONDS, rate, cfg->sample_rate ? "" : " (model has no sample_rate; assumed)",
      CHIRP_F0, CHIRP_F1, CHIRP_AMP, TONE_F0, TONE_F1, TONE_AMP, n);
  printf ("reference    tanh(%.0f x), then one-pole lowpass y += %.1f (s - y)\n",
      REF_DRIVE, REF_LOWPASS_A);

  g_autoptr (RnnForward) fw = rnn_forward_new ();
  g_autoptr (RnnState) state = rnn_state_new (model, 1);

  /* The pass whose output is scored; then more passes, timed, for the
   * throughput (scratch output, same zero start each time). */
  gint64 t0 = g_get_monotonic_time ();
  stream (fw, model, state, x, y, n);
  gint64 elapsed = g_get_monotonic_time () - t0;
  guint passes = 1;
  while (elapsed < BENCH_MIN_US) {
    t0 = g_get_monotonic_time ();
    stream (fw, model, state, x, scratch, n);
    elapsed += g_get_monotonic_time () - t0;
    passes++;
  }

  gboolean finite = TRUE;
  for (gsize t = 0; t < n; t++)
    if (!isfinite (y[t]))
      finite = FALSE;

  double steps_per_s = (double) passes * (double) n / ((double) elapsed / 1e6);
  printf ("streamed     %u-frame chunks, state carried, batch 1\n", CHUNK);
  printf ("\nESR vs reference   %.6f  (chirp %.6f, two-tone %.6f)\n",
      esr (ref, y, 0, n), esr (ref, y, 0, half), esr (ref, y, half, n));
  printf ("throughput         %.3g steps/s = %.0f x real time (%u passes, %.2f s)\n",
      steps_per_s, steps_per_s / rate, passes, (double) elapsed / 1e6);

  static const double times[] = { 0.005, 0.25, 0.5, 0.75, 0.95, 1.1234, 1.4567, 1.789 };
  printf ("\n  time    signal          input      model  reference      error\n");
  for (guint i = 0; i < G_N_ELEMENTS (times); i++) {
    gsize t = (gsize) (times[i] * rate);
    char what[32];
    if (t >= n)
      continue;
    describe_time (what, sizeof what, t, n, rate);
    printf ("%6.3f s  %-13s %+9.5f  %+9.5f  %+9.5f  %+9.5f\n", (double) t / rate, what,
        x[t], y[t], ref[t], y[t] - ref[t]);
  }

  if (!finite) {
    fprintf (stderr, "rnn-demo: the model produced non-finite output\n");
    status = 1;
  }

  g_free (x);
  g_free (y);
  g_free (scratch);
  g_free (ref);
  return status;
}
