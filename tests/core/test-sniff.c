/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnn_sniff_describe(): files that are not gst-rnn models are named, with
 * the command that converts them; models and unknown bytes are not. */
#include "rnn.h"
#include "rnn-sniff.h"

#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>

typedef struct
{
  const char *path;
  const guint8 *head;
  gsize n_head;
  const guint8 *tail;           /* NULL: the head again */
  gsize n_tail;
  const char *want[3];          /* substrings of the answer; NULL-ended */
} Case;

/* A zip member's local header as torch.save writes it, then padding. */
static const guint8 zip_pt[] = "PK\x03\x04\0\0\x08\x08\0\0\0\0\0\0\0\0\0\0\0\0"
    "\0\0\0\0\0\0\x0b\0\x17\0sd/data.pklFB\x13\0ZZZZ";
/* The same start; the central directory lists code/ and constants.pkl. */
static const guint8 zip_ts[] = "PK\x03\x04\0\0\x08\x08\0\0\0\0\0\0\0\0\0\0\0\0"
    "\0\0\0\0\0\0\x09\0\x19\0ts/data/0FB\x15\0ZZZZ";
static const guint8 zip_ts_tail[] = "PK\x01\x02 ts/data.pkl PK\x01\x02 "
    "ts/code/__torch__/torch/nn/modules/linear.py PK\x01\x02 ts/constants.pkl";
static const guint8 zip_other[] = "PK\x03\x04\0\0\0\0readme.txt";
static const guint8 legacy[] = "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a"
    "\xa8\x50\x19\x2e\x80\x02\x4d\xe9\x03";
static const guint8 onnx[] = "\x08\x07\x12\x07pytorch\x1a\x06" "1.13.0:"
    "\xd6\x01\x0a\x5c\x0a\x0connx::Gemm_0";
static const guint8 wav[] = "RIFF\x24\x08\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0";
static const guint8 guitarml[] = "{\n  \"model_data\": {\"model\": \"SimpleRNN\", "
    "\"skip\": 1}, \"state_dict\": {}}";
static const guint8 nam[] = "{\"version\": \"0.5.2\", \"architecture\": "
    "\"LSTM\", \"config\": {}, \"weights\": [0.1]}";
static const guint8 rtneural[] = "  {\"in_shape\": [null, null, 1], "
    "\"layers\": [{\"type\": \"lstm\"}]}";
static const guint8 hdf5[] = "\x89HDF\r\n\x1a\n\0\0\0\0";
/* A safetensors header: not ours to name (the loader judges it). */
static const guint8 safetensors[] = "\x40\0\0\0\0\0\0\0{\"__metadata__\":"
    "{\"format\":\"gst-rnn\"}}";
static const guint8 text[] = "just some notes about a model\n";
static const guint8 noise[] = "\x13\xf7\x00\x9c\x01\x02\xfe\x7f\x00\x00";

#define BYTES(a) a, sizeof (a) - 1

static const Case cases[] = {
  {"sd.pt", BYTES (zip_pt), NULL, 0,
      {"PyTorch file", "gst-rnn-convert --check sd.pt model.safetensors"}},
  {"ts.pt", BYTES (zip_ts), BYTES (zip_ts_tail),
      {"TorchScript", "gst-rnn-convert --check ts.pt"}},
  {"x.zip", BYTES (zip_other), NULL, 0, {"zip archive", "cannot read"}},
  {"old.pt", BYTES (legacy), NULL, 0, {"legacy", "gst-rnn-convert"}},
  {"m.onnx", BYTES (onnx), NULL, 0, {"ONNX", "gst-rnn-convert --check m.onnx"}},
  {"dry.wav", BYTES (wav), NULL, 0,
      {"WAV audio file", "filesrc location=dry.wav ! wavparse"}},
  {"amp.json", BYTES (guitarml), NULL, 0, {"GuitarML", "gst-rnn-convert"}},
  {"amp.nam", BYTES (nam), NULL, 0, {"Neural Amp Modeler", "gst-rnn-convert"}},
  {"rt.json", BYTES (rtneural), NULL, 0, {"RTNeural", "gst-rnn-convert"}},
  {"k.h5", BYTES (hdf5), NULL, 0, {"HDF5", "ONNX"}},
  {"m.safetensors", BYTES (safetensors), NULL, 0, {NULL}},
  {"notes.txt", BYTES (text), NULL, 0, {"text file", ".safetensors"}},
  {"noise.bin", BYTES (noise), NULL, 0, {NULL}},
  {"empty", (const guint8 *) "", 0, NULL, 0, {NULL}},
};

static void
test_case (gconstpointer data)
{
  const Case *c = data;
  g_autofree gchar *what = rnn_sniff_describe (c->head, c->n_head,
      c->tail ? c->tail : c->head, c->tail ? c->n_tail : c->n_head, c->path);

  if (c->want[0] == NULL) {
    g_assert_null (what);
    return;
  }
  g_assert_nonnull (what);
  g_test_message ("%s", what);
  {
    g_autofree gchar *prefix = g_strconcat (c->path, ": ", NULL);

    g_assert_true (g_str_has_prefix (what, prefix));
  }
  for (guint i = 0; c->want[i]; i++) {
    if (!strstr (what, c->want[i]))
      g_error ("%s: \"%s\" lacks \"%s\"", c->path, what, c->want[i]);
  }
}

/* The file reader: a FIFO, a directory and a missing file are not read
 * (and do not block); a WAV on disk is named. */
static void
test_file (void)
{
  g_autofree gchar *dir = g_dir_make_tmp ("sniff-XXXXXX", NULL);
  g_autofree gchar *wav_path = g_build_filename (dir, "a.wav", NULL);
  g_autofree gchar *fifo = g_build_filename (dir, "fifo", NULL);
  g_autofree gchar *missing = g_build_filename (dir, "missing", NULL);
  g_autofree gchar *what = NULL;

  g_assert_true (g_file_set_contents (wav_path, (const char *) wav,
          sizeof (wav) - 1, NULL));
  what = rnn_sniff_file (wav_path);
  g_assert_nonnull (what);
  g_assert_nonnull (strstr (what, "WAV audio file"));
  g_assert_cmpint (mkfifo (fifo, 0600), ==, 0);
  g_assert_null (rnn_sniff_file (fifo));
  g_assert_null (rnn_sniff_file (dir));
  g_assert_null (rnn_sniff_file (missing));
  g_unlink (fifo);
  g_unlink (wav_path);
  g_rmdir (dir);
}

/* The loader names such files in its error, from a path and from memory;
 * a malformed safetensors file keeps the loader's own message. */
static void
test_load (void)
{
  g_autofree gchar *dir = g_dir_make_tmp ("sniff-XXXXXX", NULL);
  g_autofree gchar *onnx_path = g_build_filename (dir, "m.onnx", NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (RnnModel) m = NULL;
  /* a plausible length field (16) before a header that is not JSON */
  static const guint8 bad_st[] = "\x10\0\0\0\0\0\0\0not json at all!";

  g_assert_true (g_file_set_contents (onnx_path, (const char *) onnx,
          sizeof (onnx) - 1, NULL));
  m = rnn_model_load (onnx_path, &error);
  g_assert_null (m);
  g_assert_error (error, RNN_ERROR, RNN_ERROR_FORMAT);
  g_assert_true (g_str_has_prefix (error->message, onnx_path));
  g_assert_nonnull (strstr (error->message, "ONNX model"));
  g_assert_nonnull (strstr (error->message, "gst-rnn-convert"));
  g_clear_error (&error);

  m = rnn_model_load_from_data (wav, sizeof (wav) - 1, "a.wav", &error);
  g_assert_null (m);
  g_assert_error (error, RNN_ERROR, RNN_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, "WAV audio file"));
  g_clear_error (&error);

  m = rnn_model_load_from_data (bad_st, sizeof (bad_st) - 1, "b.safetensors",
      &error);
  g_assert_null (m);
  g_assert_nonnull (error);
  g_assert_null (strstr (error->message, "this is"));
  g_clear_error (&error);

  g_unlink (onnx_path);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    g_autofree gchar *name = g_strdup_printf ("/sniff/describe/%s",
        cases[i].path);
    g_test_add_data_func (name, &cases[i], test_case);
  }
  g_test_add_func ("/sniff/file", test_file);
  g_test_add_func ("/sniff/load", test_load);
  return g_test_run ();
}
