/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The gst-rnn core inside an audio plug-in, in miniature (docs/embedding.md).
 * cc embed.c $(pkg-config --cflags --libs gst-rnn-core-0.1) -o embed
 * ./embed MODEL IN.f32 OUT.f32     (mono float32 samples, raw) */
#include <gst-rnn/rnn.h>
#include <stdio.h>

#define MAX_BLOCK 256 /* the largest buffer the host will pass */

static RnnModel *model;
static RnnState *state;
static RnnForward *fw;

/* The process callback: no allocation, no lock, no I/O. */
static void
process (const float *in, float *out, unsigned n)
{
  rnn_forward (fw, model, state, in, n, 1, out);
}

int
main (int argc, char **argv)
{
  GError *error = NULL;
  static float in[MAX_BLOCK], out[MAX_BLOCK];
  size_t n, total = 0;

  if (argc != 4 || !(model = rnn_model_load (argv[1], &error))) {
    fprintf (stderr, "%s\n", error ? error->message : "usage: embed MODEL IN.f32 OUT.f32");
    return 2;
  }
  const RnnConfig *cfg = rnn_model_get_config (model);
  if (cfg->input_size != 1 || rnn_model_get_output_size (model) != 1 || cfg->bidirectional) {
    fprintf (stderr, "%s: not a one-in, one-out streaming model\n", argv[1]);
    return 2;
  }
  state = rnn_state_new (model, 1); /* set-up: everything is allocated here */
  fw = rnn_forward_new ();
  process (in, out, MAX_BLOCK); /* grows the scratch to the largest block */
  rnn_state_reset (state);
  FILE *fin = fopen (argv[2], "rb"), *fout = fopen (argv[3], "wb");
  if (!fin || !fout)
    return 1;
  while ((n = fread (in, sizeof (float), MAX_BLOCK, fin)) > 0) {
    process (in, out, (unsigned) n);
    for (size_t i = 0; total == 0 && i < 4 && i < n; i++)
      printf ("y[%zu] = %+.6f\n", i, out[i]);
    fwrite (out, sizeof (float), n, fout);
    total += n;
  }
  printf ("%zu samples through %s %u x %u (gst-rnn core %s)\n", total,
      rnn_cell_to_string (cfg->cell), cfg->num_layers, cfg->hidden_size, rnn_version ());
  fclose (fin);
  fclose (fout);
  rnn_forward_free (fw);
  rnn_state_free (state);
  rnn_model_unref (model);
  return 0;
}
