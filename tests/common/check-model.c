/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* check-model: does a model file load?
 *
 *   check-model FILE...
 *
 * Loads each FILE with rnn_model_load() -- the loader rnnfilter and
 * rnntrain use, which refuses truncated or malformed files and non-finite
 * weights -- and checks every parameter for finiteness once more.  Prints
 * one line per file, "ok FILE (cell, N parameters)" or "FAIL FILE: why",
 * and exits 0 only if every file passed (2 on bad usage).  Used by
 * scripts/kill-train.
 */
#include "rnn.h"

#include <math.h>
#include <stdio.h>

int
main (int argc, char **argv)
{
  int failures = 0;

  if (argc < 2) {
    fprintf (stderr, "usage: %s FILE...\n", argv[0]);
    return 2;
  }
  for (int i = 1; i < argc; i++) {
    GError *err = NULL;
    RnnModel *m = rnn_model_load (argv[i], &err);
    gsize n = 0, bad = 0;

    if (!m) {
      printf ("FAIL %s: %s\n", argv[i], err->message);
      g_error_free (err);
      failures++;
      continue;
    }
    const float *p = rnn_model_peek_params (m, &n);
    for (gsize j = 0; j < n; j++)
      if (!isfinite (p[j]))
        bad++;
    if (bad > 0) {
      printf ("FAIL %s: %" G_GSIZE_FORMAT " non-finite parameters\n",
          argv[i], bad);
      failures++;
    } else {
      printf ("ok %s (%s, %" G_GSIZE_FORMAT " parameters)\n", argv[i],
          rnn_cell_to_string (rnn_model_get_config (m)->cell), n);
    }
    rnn_model_unref (m);
  }
  return failures > 0 ? 1 : 0;
}
