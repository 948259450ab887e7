/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target for the model loader (docs/design.md §3: every file is
 * untrusted).
 *
 * Each input goes through the raw safetensors reader and the model loader.
 * Besides the sanitizers' own findings (built with
 * -fsanitize=fuzzer,address,undefined, see scripts/fuzz), these are crashes:
 *
 *  - a refusal that is not an RNN_ERROR whose message starts with the
 *    display name;
 *  - a GLib critical or warning (g_return_if_fail reached from data);
 *  - a model that loads but does not survive save -> load bit-identically;
 *  - a loaded model whose forward pass (3 steps, 2 streams, or one window of
 *    3 for bidirectional models) touches memory it should not.
 *
 * Built only with -Dfuzzing=true and clang.  Run it through scripts/fuzz.
 */
#include "rnn.h"
#include "rnn-safetensors.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DISPLAY "fuzz.safetensors"

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  /* programmer-error checks reached from file data are bugs */
  g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
  g_setenv ("OPENBLAS_NUM_THREADS", "1", TRUE);
  return 0;
}

static void
check_refusal (GError *err, const char *what)
{
  if (err == NULL || err->domain != RNN_ERROR
      || !g_str_has_prefix (err->message, DISPLAY ": ")) {
    fprintf (stderr, "%s refused without a proper RNN_ERROR: %s\n", what,
        err ? err->message : "(no error)");
    abort ();
  }
}

static void
exercise_safetensors (const uint8_t *data, size_t size)
{
  GError *err = NULL;
  RnnSafetensors *st = rnn_safetensors_parse (data, size, DISPLAY, &err);

  if (st == NULL) {
    check_refusal (err, "rnn_safetensors_parse");
    g_error_free (err);
    return;
  }
  for (guint i = 0; i < rnn_safetensors_get_n_tensors (st); i++) {
    const RnnStTensor *t = rnn_safetensors_get_tensor (st, i);
    float *out;

    if (rnn_safetensors_find (st, t->name) != t)
      abort ();
    /* numel is bounded by the bytes present, so this is small */
    out = g_new (float, t->numel + 1);
    if (!rnn_safetensors_read_f32 (t, out, &err)) {
      if (err == NULL || err->domain != RNN_ERROR)
        abort ();
      g_clear_error (&err);
    }
    g_free (out);
  }
  (void) rnn_safetensors_get_meta (st, "format");
  (void) rnn_safetensors_get_meta (st, "cell");
  rnn_safetensors_free (st);
}

/* A short forward pass through @model on fixed finite input. */
static void
exercise_forward (const RnnModel *model)
{
  const RnnConfig *cfg = rnn_model_get_config (model);
  const guint T = 3, B = cfg->bidirectional ? 1 : 2;
  const guint n_in = cfg->input_size, n_out = rnn_model_get_output_size (model);
  float *x, *y;
  RnnForward *fw;
  RnnState *state = NULL;

  /* keep a run short: the loader itself is the target */
  if ((guint64) n_in * cfg->hidden_size > 1u << 16
      || (guint64) cfg->hidden_size * cfg->hidden_size > 1u << 16)
    return;
  x = g_new (float, (gsize) T * B * n_in);
  y = g_new (float, (gsize) T * B * n_out);
  for (gsize i = 0; i < (gsize) T * B * n_in; i++)
    x[i] = (float) ((i * 7919) % 17) / 8.0f - 1.0f;
  fw = rnn_forward_new ();
  if (!cfg->bidirectional)
    state = rnn_state_new (model, B);
  rnn_forward (fw, model, state, x, T, B, y);
  if (state)
    rnn_state_free (state);
  rnn_forward_free (fw);
  g_free (x);
  g_free (y);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *err = NULL;
  RnnModel *model, *again;
  GBytes *saved, *resaved;

  exercise_safetensors (data, size);

  model = rnn_model_load_from_data (data, size, DISPLAY, &err);
  if (model == NULL) {
    check_refusal (err, "rnn_model_load_from_data");
    g_error_free (err);
    return 0;
  }

  /* what loads saves, and what is saved loads to the same bytes */
  saved = rnn_model_serialize (model);
  again = rnn_model_load_from_data (g_bytes_get_data (saved, NULL),
      g_bytes_get_size (saved), DISPLAY, &err);
  if (again == NULL) {
    fprintf (stderr, "a loaded model does not reload: %s\n", err->message);
    abort ();
  }
  resaved = rnn_model_serialize (again);
  if (!g_bytes_equal (saved, resaved)) {
    fprintf (stderr, "load -> save -> load -> save is not bit-identical\n");
    abort ();
  }
  g_bytes_unref (resaved);
  g_bytes_unref (saved);
  rnn_model_unref (again);

  exercise_forward (model);
  rnn_model_unref (model);
  return 0;
}
