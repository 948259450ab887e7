/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Naming the files that are not gst-rnn models.
 *
 * A user who gives rnnfilter a PyTorch checkpoint, an ONNX graph, an amp
 * model's JSON or a WAV file should hear what that file is and the command
 * that converts it, not that its "header length 578712552184433488
 * exceeds the limit".  The loader asks here once its own checks have
 * failed; the answer only looks at magic numbers and, for zip archives, at
 * the member names in the central directory at the end of the file.
 */
#include "rnn-sniff.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Enough of the start for the JSON keys of the amp-model formats and the
 * pickle's class names; enough of the end for a zip's central directory
 * of a few hundred members. */
#define SNIFF_HEAD (64 * 1024)
#define SNIFF_TAIL (64 * 1024)

static gboolean
has_prefix (const guint8 *p, gsize n, const char *magic, gsize len)
{
  return n >= len && memcmp (p, magic, len) == 0;
}

static gboolean
contains (const guint8 *p, gsize n, const char *needle)
{
  gsize len = strlen (needle);

  return p && n >= len && memmem (p, n, needle, len) != NULL;
}

/* The first byte that is not JSON white space, or 0. */
static guint8
first_json_char (const guint8 *p, gsize n)
{
  for (gsize i = 0; i < n; i++) {
    if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r')
      return p[i];
  }
  return 0;
}

/* Printable UTF-8 (and white space) in the first kilobyte.  A file
 * shorter than the 8-byte length field is left to the loader, which says
 * exactly that. */
static gboolean
looks_like_text (const guint8 *p, gsize n)
{
  const gchar *end = NULL;
  gsize len = MIN (n, 1024);

  if (len < 8)
    return FALSE;
  /* a multi-byte character cut at the end is still text */
  if (!g_utf8_validate ((const gchar *) p, len, &end)
      && (const guint8 *) end < p + len - 3)
    return FALSE;
  for (gsize i = 0; i < (gsize) ((const guint8 *) end - p); i++) {
    if (p[i] < 0x20 && p[i] != '\n' && p[i] != '\r' && p[i] != '\t')
      return FALSE;
  }
  return TRUE;
}

static gchar *
convert_hint (const char *name, const char *what)
{
  return g_strdup_printf ("%s: this is %s, not a gst-rnn model: convert it "
      "with `gst-rnn-convert --check %s model.safetensors` and use the file "
      "it writes", name, what, name);
}

static gchar *
unsupported_hint (const char *name, const char *what, const char *advice)
{
  return g_strdup_printf ("%s: this is %s, not a gst-rnn model, and "
      "gst-rnn-convert cannot read this kind of file: %s", name, what, advice);
}

gchar *
rnn_sniff_describe (const guint8 *head, gsize n_head, const guint8 *tail,
    gsize n_tail, const char *name)
{
  if (has_prefix (head, n_head, "PK\x03\x04", 4)) {
    /* torch.save and torch.jit.save both write zip archives of a pickle
     * and its tensors; TorchScript adds the module's code and constants */
    gboolean script = contains (tail, n_tail, "/code/")
        || contains (tail, n_tail, "constants.pkl")
        || contains (head, n_head, "constants.pkl");
    gboolean pickle = contains (tail, n_tail, "data.pkl")
        || contains (head, n_head, "data.pkl");

    if (script)
      return convert_hint (name, "a TorchScript module (torch.jit.save)");
    if (pickle)
      return convert_hint (name, "a PyTorch file (torch.save: a state_dict, "
          "checkpoint or pickled module)");
    return unsupported_hint (name, "a zip archive",
        "export the model to ONNX or PyTorch first");
  }
  /* torch.save's legacy format: pickle protocol 2, then the magic number */
  if (has_prefix (head, n_head, "\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20", 10))
    return convert_hint (name, "a PyTorch file in the legacy (pre-1.6) "
        "torch.save format");
  if (n_head >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5)
    return convert_hint (name, "a Python pickle (a PyTorch file?)");
  if (has_prefix (head, n_head, "\x89HDF\r\n\x1a\n", 8))
    return unsupported_hint (name, "an HDF5 file (a Keras .h5 model?)",
        "export it to ONNX (e.g. with tf2onnx) and convert that");
  if (n_head >= 8 && memcmp (head + 4, "TFL3", 4) == 0)
    return unsupported_hint (name, "a TensorFlow Lite model",
        "export it to ONNX (e.g. with tf2onnx) and convert that");
  if (has_prefix (head, n_head, "RIFF", 4) && n_head >= 12
      && memcmp (head + 8, "WAVE", 4) == 0)
    return g_strdup_printf ("%s: this is a WAV audio file, not a model: audio goes "
        "into the pipeline (filesrc location=%s ! wavparse ! audioconvert ! "
        "rnnfilter ...), and model-location names a gst-rnn .safetensors "
        "model", name, name);
  if (has_prefix (head, n_head, "fLaC", 4) || has_prefix (head, n_head,
          "OggS", 4) || has_prefix (head, n_head, "ID3", 3))
    return g_strdup_printf ("%s: this is an audio file, not a model: "
        "model-location names a gst-rnn .safetensors model", name);
  if (first_json_char (head, n_head) == '{') {
    if (contains (head, n_head, "\"model_data\"")
        && contains (head, n_head, "\"state_dict\""))
      return convert_hint (name, "an Automated-GuitarAmpModelling / GuitarML "
          "model (JSON)");
    if (contains (head, n_head, "\"architecture\"")
        && contains (head, n_head, "\"weights\""))
      return convert_hint (name, "a Neural Amp Modeler model (.nam JSON)");
    if (contains (head, n_head, "\"layers\""))
      return convert_hint (name, "an RTNeural model (JSON)");
    return convert_hint (name, "a JSON file (an RTNeural or amp model?)");
  }
  /* ONNX: a protobuf ModelProto, field 1 (ir_version, a varint) first and
   * the producer or op names in the clear soon after */
  if (n_head >= 2 && head[0] == 0x08 && (contains (head, n_head, "onnx")
          || contains (head, n_head, "pytorch")))
    return convert_hint (name, "an ONNX model");
  if (looks_like_text (head, n_head))
    return g_strdup_printf ("%s: this is a text file, not a gst-rnn model (a model "
        "is a .safetensors file: 8 bytes of header length, then its JSON "
        "header and the weights)", name);
  return NULL;
}

gchar *
rnn_sniff_file (const char *path)
{
  guint8 *head = NULL, *tail = NULL;
  gsize n_head = 0, n_tail = 0;
  struct stat st;
  gchar *what = NULL;
  int fd;

  /* O_NONBLOCK: a FIFO must not block us; only regular files are read */
  fd = open (path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return NULL;
  if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode))
    goto out;

  head = g_malloc (SNIFF_HEAD);
  while (n_head < SNIFF_HEAD) {
    ssize_t r = pread (fd, head + n_head, SNIFF_HEAD - n_head, n_head);

    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    n_head += r;
  }
  if (st.st_size > SNIFF_HEAD) {
    off_t from = st.st_size > SNIFF_TAIL ? st.st_size - SNIFF_TAIL : 0;

    tail = g_malloc (SNIFF_TAIL);
    while (n_tail < SNIFF_TAIL) {
      ssize_t r = pread (fd, tail + n_tail, SNIFF_TAIL - n_tail,
          from + n_tail);

      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        break;
      n_tail += r;
    }
  }
  what = rnn_sniff_describe (head, n_head, tail ? tail : head,
      tail ? n_tail : n_head, path);

out:
  close (fd);
  g_free (head);
  g_free (tail);
  return what;
}
