/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Model files (docs/design.md §3): loading, saving and serialising an RnnModel as
 * safetensors.
 *
 * Loading trusts nothing: rnn_safetensors_parse_head() applies the
 * container's checks, then this file checks the metadata (every value by
 * hand), the set of tensors (every expected tensor present with exactly its
 * shape, no others), and the values (finite, input.std > 0).  The expected
 * tensors are checked against the file before the model is allocated, so a
 * small file cannot make us allocate a huge slab by claiming a huge
 * configuration.
 *
 * From a path, only a regular file is opened, and only its length field
 * and header are read before they are judged completely against the real
 * file size; the tensors are then read straight into the parameter slab.
 * So memory is bounded by the header (at most 100 MB) and the parameters
 * (and their packed copy), never a copy of the file, and every allocation
 * sized by the file is refused with an error rather than aborting.
 *
 * Metadata integers are strict: ASCII decimal digits only -- no sign, no
 * space, no exponent, no leading zero ("08" is refused: the writer never
 * produces it and other readers may take it as octal) -- and range-checked
 * against the RNN_MAX_* bounds.
 *
 * Saving is deterministic: `__metadata__` first with the configuration keys
 * in a fixed order, then the extra keys sorted; then the tensors in
 * RnnParamInfo order, F32 little-endian, contiguous; the header starts with
 * '{' and is padded with spaces to a multiple of 8.  So save -> load -> save
 * gives the same bytes.
 */
#include "rnn-private.h"
#include "rnn-safetensors.h"
#include "rnn-sniff.h"

#include <glib/gstdio.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif
#ifndef O_NOCTTY
#define O_NOCTTY 0
#endif

#define FORMAT_NAME "gst-rnn"
#define FORMAT_VERSION "1"
/* the version of a model with any of the optional layers of docs/design.md
 * §2 (pre/post layers, initial state, skip); a model without them is
 * written as version 1, byte for byte as before */
#define FORMAT_VERSION_2 "2"

/* Metadata keys owned by the configuration, in the order they are written. */
static const char *const config_keys[] = {
  "format", "version", "cell", "input_size", "hidden_size", "num_layers",
  "bidirectional", "head_activation", "frame_size", "output_frame_size",
  "window", "sample_rate", "pre_activations", "post_activations", "skip",
};

static gboolean
is_config_key (const char *key)
{
  for (gsize i = 0; i < G_N_ELEMENTS (config_keys); i++)
    if (strcmp (key, config_keys[i]) == 0)
      return TRUE;
  return FALSE;
}

G_GNUC_PRINTF (4, 5) static void
set_error (GError **error, RnnError code, const char *display_name,
    const char *fmt, ...)
{
  va_list ap;
  char *msg;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, RNN_ERROR, code, "%s: %s", display_name, msg);
  g_free (msg);
}

static char *
format_shape (guint ndim, const guint64 *shape)
{
  GString *s = g_string_new ("[");

  for (guint i = 0; i < ndim; i++)
    g_string_append_printf (s, "%s%" G_GUINT64_FORMAT, i ? ", " : "",
        shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

/* ---- metadata ----------------------------------------------------------- */

static const char *
meta_require (const RnnSafetensors *st, const char *dn, const char *key,
    GError **error)
{
  const char *v = rnn_safetensors_get_meta (st, key);

  if (v == NULL)
    set_error (error, RNN_ERROR_METADATA, dn,
        "metadata key \"%s\" is missing", key);
  return v;
}

/* Strict decimal: see the comment at the top of the file. */
static gboolean
parse_uint (const char *dn, const char *key, const char *value, guint lo,
    guint hi, guint *out, GError **error)
{
  guint64 v = 0;
  const char *p;
  char *q;

  for (p = value; *p != '\0'; p++)
    if (!g_ascii_isdigit (*p))
      break;
  if (value[0] == '\0' || *p != '\0') {
    q = rnn_st_quote (value);
    set_error (error, RNN_ERROR_METADATA, dn, "metadata %s is %s, expected "
        "a decimal integer in [%u, %u] (digits only, no sign)", key, q, lo,
        hi);
    g_free (q);
    return FALSE;
  }
  if (value[0] == '0' && value[1] != '\0') {
    q = rnn_st_quote (value);
    set_error (error, RNN_ERROR_METADATA, dn, "metadata %s is %s, a decimal "
        "integer must not have a leading zero", key, q);
    g_free (q);
    return FALSE;
  }
  for (p = value; *p != '\0' && v <= hi; p++)
    v = v * 10 + (guint64) (*p - '0');
  if (*p != '\0' || v < lo || v > hi) {
    q = rnn_st_quote (value);
    set_error (error, RNN_ERROR_METADATA, dn, "metadata %s is %s, out of "
        "range [%u, %u]", key, q, lo, hi);
    g_free (q);
    return FALSE;
  }
  *out = (guint) v;
  return TRUE;
}

static gboolean
parse_uint_key (const RnnSafetensors *st, const char *dn, const char *key,
    gboolean required, guint lo, guint hi, guint *out, GError **error)
{
  const char *v = required ? meta_require (st, dn, key, error)
      : rnn_safetensors_get_meta (st, key);

  if (v == NULL)
    return !required;
  return parse_uint (dn, key, v, lo, hi, out, error);
}

/* A comma-separated list of activation names (pre_activations,
 * post_activations): 1 to RNN_MAX_DENSE_LAYERS names, each known. */
static gboolean
parse_activations (const RnnSafetensors *st, const char *dn, const char *key,
    RnnDense *layers, guint *n, GError **error)
{
  const char *v = rnn_safetensors_get_meta (st, key);
  char *q;

  *n = 0;
  if (v == NULL)
    return TRUE;
  gchar **names = g_strsplit (v, ",", -1);
  const guint len = g_strv_length (names);
  if (len == 0) {
    set_error (error, RNN_ERROR_METADATA, dn, "metadata %s is empty: give "
        "one activation per layer (e.g. \"tanh,none\"), or leave the key "
        "out", key);
    g_strfreev (names);
    return FALSE;
  }
  if (len > RNN_MAX_DENSE_LAYERS) {
    q = rnn_st_quote (v);
    set_error (error, RNN_ERROR_METADATA, dn, "metadata %s is %s: %u layers, "
        "at most %u", key, q, len, RNN_MAX_DENSE_LAYERS);
    g_free (q);
    g_strfreev (names);
    return FALSE;
  }
  for (guint k = 0; k < len; k++) {
    if (!rnn_activation_from_string (names[k], &layers[k].activation)) {
      char *qn = rnn_st_quote (names[k]);
      q = rnn_st_quote (v);
      set_error (error, RNN_ERROR_METADATA, dn, "metadata %s is %s: layer %u's "
          "activation %s is not one of none, tanh, relu, sigmoid, elu, softmax "
          "(one name per layer, separated by commas, no spaces)", key, q, k,
          qn);
      g_free (qn);
      g_free (q);
      g_strfreev (names);
      return FALSE;
    }
  }
  g_strfreev (names);
  *n = len;
  return TRUE;
}

static gboolean
parse_config (const RnnSafetensors *st, const char *dn, RnnConfig *cfg,
    gboolean *version2, GError **error)
{
  const char *v;
  char *q;

  if (!rnn_safetensors_has_meta (st)) {
    set_error (error, RNN_ERROR_METADATA, dn, "the header has no "
        "__metadata__: not a " FORMAT_NAME " model file");
    return FALSE;
  }

  if (!(v = meta_require (st, dn, "format", error)))
    return FALSE;
  if (strcmp (v, FORMAT_NAME) != 0) {
    q = rnn_st_quote (v);
    set_error (error, RNN_ERROR_METADATA, dn, "metadata format is %s, "
        "expected \"" FORMAT_NAME "\"", q);
    g_free (q);
    return FALSE;
  }
  if (!(v = meta_require (st, dn, "version", error)))
    return FALSE;
  if (strcmp (v, FORMAT_VERSION) != 0 && strcmp (v, FORMAT_VERSION_2) != 0) {
    q = rnn_st_quote (v);
    set_error (error, RNN_ERROR_METADATA, dn, "metadata version is %s, this "
        "build reads versions \"" FORMAT_VERSION "\" and \"" FORMAT_VERSION_2
        "\"", q);
    g_free (q);
    return FALSE;
  }
  *version2 = strcmp (v, FORMAT_VERSION_2) == 0;

  if (!(v = meta_require (st, dn, "cell", error)))
    return FALSE;
  if (!rnn_cell_from_string (v, &cfg->cell)) {
    q = rnn_st_quote (v);
    set_error (error, RNN_ERROR_METADATA, dn, "metadata cell is %s, "
        "expected one of rnn_tanh, rnn_relu, lstm, gru", q);
    g_free (q);
    return FALSE;
  }

  if (!parse_uint_key (st, dn, "input_size", TRUE, 1, RNN_MAX_INPUT_SIZE,
          &cfg->input_size, error)
      || !parse_uint_key (st, dn, "hidden_size", TRUE, 1, RNN_MAX_HIDDEN_SIZE,
          &cfg->hidden_size, error)
      || !parse_uint_key (st, dn, "num_layers", TRUE, 1, RNN_MAX_LAYERS,
          &cfg->num_layers, error))
    return FALSE;

  if (!(v = meta_require (st, dn, "bidirectional", error)))
    return FALSE;
  if (strcmp (v, "true") == 0) {
    cfg->bidirectional = TRUE;
  } else if (strcmp (v, "false") == 0) {
    cfg->bidirectional = FALSE;
  } else {
    q = rnn_st_quote (v);
    set_error (error, RNN_ERROR_METADATA, dn, "metadata bidirectional is %s, "
        "expected \"true\" or \"false\"", q);
    g_free (q);
    return FALSE;
  }

  if (!(v = meta_require (st, dn, "head_activation", error)))
    return FALSE;
  if (!rnn_head_activation_from_string (v, &cfg->head_activation)) {
    q = rnn_st_quote (v);
    set_error (error, RNN_ERROR_METADATA, dn, "metadata head_activation is "
        "%s, expected one of none, softmax, sigmoid, tanh", q);
    g_free (q);
    return FALSE;
  }

  /* Optional; 0 (unset) is written by omitting the key, never as "0". */
  if (!parse_uint_key (st, dn, "frame_size", FALSE, 1, RNN_MAX_FRAME_SIZE,
          &cfg->frame_size, error)
      || !parse_uint_key (st, dn, "output_frame_size", FALSE, 1,
          RNN_MAX_FRAME_SIZE, &cfg->output_frame_size, error)
      || !parse_uint_key (st, dn, "window", FALSE, 1, RNN_MAX_WINDOW,
          &cfg->window, error)
      || !parse_uint_key (st, dn, "sample_rate", FALSE, 1,
          RNN_MAX_SAMPLE_RATE, &cfg->sample_rate, error))
    return FALSE;

  /* version 2: the layers around the recurrent stack (their sizes come
   * from the tensors, parse_optional_tensors ()) */
  static const char *const v2_keys[] = {
    "pre_activations", "post_activations", "skip",
  };
  for (guint i = 0; i < G_N_ELEMENTS (v2_keys) && !*version2; i++)
    if (rnn_safetensors_get_meta (st, v2_keys[i]) != NULL) {
      set_error (error, RNN_ERROR_METADATA, dn, "metadata %s needs version "
          "\"" FORMAT_VERSION_2 "\" (the file says version \"" FORMAT_VERSION
          "\")", v2_keys[i]);
      return FALSE;
    }
  if (!parse_activations (st, dn, "pre_activations", cfg->pre, &cfg->n_pre,
          error)
      || !parse_activations (st, dn, "post_activations", cfg->post,
          &cfg->n_post, error)
      || !parse_uint_key (st, dn, "skip", FALSE, 1, RNN_MAX_OUTPUT_SIZE,
          &cfg->skip, error))
    return FALSE;
  return TRUE;
}

/* ---- the expected tensors ------------------------------------------------ */

typedef struct {
  char name[40];
  guint ndim;
  guint64 shape[2];
} Expected;

static void
expect (GArray *arr, guint ndim, guint64 d0, guint64 d1, const char *fmt, ...)
    G_GNUC_PRINTF (5, 6);

static void
expect (GArray *arr, guint ndim, guint64 d0, guint64 d1, const char *fmt, ...)
{
  Expected e = { { 0 }, ndim, { d0, d1 } };
  va_list ap;

  va_start (ap, fmt);
  g_vsnprintf (e.name, sizeof e.name, fmt, ap);
  va_end (ap);
  g_array_append_val (arr, e);
}

/* The tensors docs/design.md §3 prescribes for @cfg, built without allocating the
 * model (the contract, independent of rnn-model.c, which is cross-checked
 * after the model is built). */
static GArray *
expected_tensors (const RnnConfig *cfg)
{
  GArray *arr = g_array_new (FALSE, TRUE, sizeof (Expected));
  const guint64 G = rnn_cell_gates (cfg->cell), H = cfg->hidden_size;
  const guint64 D = cfg->bidirectional ? 2 : 1;

  for (guint k = 0; k < cfg->num_layers; k++)
    for (guint d = 0; d < D; d++) {
      const char *sfx = d ? "_reverse" : "";
      const guint64 in = k == 0 ? rnn_config_rnn_input_size (cfg) : D * H;
      expect (arr, 2, G * H, in, "rnn.weight_ih_l%u%s", k, sfx);
      expect (arr, 2, G * H, H, "rnn.weight_hh_l%u%s", k, sfx);
      expect (arr, 1, G * H, 0, "rnn.bias_ih_l%u%s", k, sfx);
      expect (arr, 1, G * H, 0, "rnn.bias_hh_l%u%s", k, sfx);
    }
  if (cfg->has_head) {
    expect (arr, 2, cfg->output_size, rnn_config_features (cfg),
        "head.weight");
    expect (arr, 1, cfg->output_size, 0, "head.bias");
  }
  if (cfg->has_input_norm) {
    expect (arr, 1, cfg->input_size, 0, "input.mean");
    expect (arr, 1, cfg->input_size, 0, "input.std");
  }
  for (guint k = 0; k < cfg->n_pre; k++) {
    expect (arr, 2, cfg->pre[k].size, k ? cfg->pre[k - 1].size
        : cfg->input_size, "pre.%u.weight", k);
    expect (arr, 1, cfg->pre[k].size, 0, "pre.%u.bias", k);
  }
  for (guint k = 0; k < cfg->n_post; k++) {
    expect (arr, 2, cfg->post[k].size, k ? cfg->post[k - 1].size : D * H,
        "post.%u.weight", k);
    expect (arr, 1, cfg->post[k].size, 0, "post.%u.bias", k);
  }
  if (cfg->has_h0)
    expect (arr, 2, cfg->num_layers * D, H, "rnn.h0");
  if (cfg->has_c0)
    expect (arr, 2, cfg->num_layers * D, H, "rnn.c0");
  return arr;
}

static gboolean
shape_equal (const RnnStTensor *t, guint ndim, const guint64 *shape)
{
  if (t->ndim != ndim)
    return FALSE;
  for (guint i = 0; i < ndim; i++)
    if (t->shape[i] != shape[i])
      return FALSE;
  return TRUE;
}

static gboolean
check_tensor_shape (const RnnStTensor *t, const char *dn, const char *name,
    guint ndim, const guint64 *shape, GError **error)
{
  char *got, *want;

  if (t == NULL) {
    set_error (error, RNN_ERROR_TENSOR, dn, "tensor %s is missing", name);
    return FALSE;
  }
  if (shape_equal (t, ndim, shape))
    return TRUE;
  got = format_shape (t->ndim, t->shape);
  want = format_shape (ndim, shape);
  set_error (error, RNN_ERROR_TENSOR, dn, "tensor %s has shape %s, expected "
      "%s", name, got, want);
  g_free (got);
  g_free (want);
  return FALSE;
}

/* Head and input normalisation: present as pairs, or absent. */
static gboolean
parse_optional_tensors (const RnnSafetensors *st, const char *dn,
    RnnConfig *cfg, gboolean version2, GError **error)
{
  const RnnStTensor *hw = rnn_safetensors_find (st, "head.weight");
  const RnnStTensor *hb = rnn_safetensors_find (st, "head.bias");
  const RnnStTensor *im = rnn_safetensors_find (st, "input.mean");
  const RnnStTensor *is = rnn_safetensors_find (st, "input.std");

  if ((hw == NULL) != (hb == NULL)) {
    set_error (error, RNN_ERROR_TENSOR, dn, "tensor %s is present but %s is "
        "missing (a head needs both)", hw ? "head.weight" : "head.bias",
        hw ? "head.bias" : "head.weight");
    return FALSE;
  }
  if (hb != NULL) {
    if (hb->ndim != 1 || hb->shape[0] < 1
        || hb->shape[0] > RNN_MAX_OUTPUT_SIZE) {
      char *got = format_shape (hb->ndim, hb->shape);
      set_error (error, RNN_ERROR_TENSOR, dn, "tensor head.bias has shape %s, "
          "expected [O] with 1 <= O <= %u", got, RNN_MAX_OUTPUT_SIZE);
      g_free (got);
      return FALSE;
    }
    cfg->has_head = TRUE;
    cfg->output_size = (guint) hb->shape[0];
  } else if (cfg->head_activation != RNN_HEAD_ACT_NONE) {
    set_error (error, RNN_ERROR_METADATA, dn, "metadata head_activation is "
        "\"%s\" but the file has no head (head.weight, head.bias)",
        rnn_head_activation_to_string (cfg->head_activation));
    return FALSE;
  }

  if ((im == NULL) != (is == NULL)) {
    set_error (error, RNN_ERROR_TENSOR, dn, "tensor %s is present but %s is "
        "missing (input normalisation needs both)",
        im ? "input.mean" : "input.std", im ? "input.std" : "input.mean");
    return FALSE;
  }
  cfg->has_input_norm = im != NULL;

  /* pre and post layers: as many as their activations name, each's size
   * from its bias (the weights' shapes are checked against them after) */
  for (guint j = 0; j < cfg->n_pre + cfg->n_post; j++) {
    const gboolean pre = j < cfg->n_pre;
    const guint k = pre ? j : j - cfg->n_pre;
    RnnDense *l = pre ? &cfg->pre[k] : &cfg->post[k];
    char name[40];
    g_snprintf (name, sizeof name, "%s.%u.bias", pre ? "pre" : "post", k);
    const RnnStTensor *b = rnn_safetensors_find (st, name);
    if (b == NULL) {
      set_error (error, RNN_ERROR_TENSOR, dn, "tensor %s is missing "
          "(metadata %s_activations names %u layers)", name,
          pre ? "pre" : "post", pre ? cfg->n_pre : cfg->n_post);
      return FALSE;
    }
    if (b->ndim != 1 || b->shape[0] < 1 || b->shape[0] > RNN_MAX_DENSE_SIZE) {
      char *got = format_shape (b->ndim, b->shape);
      set_error (error, RNN_ERROR_TENSOR, dn, "tensor %s has shape %s, "
          "expected [N] with 1 <= N <= %u", name, got, RNN_MAX_DENSE_SIZE);
      g_free (got);
      return FALSE;
    }
    l->size = (guint) b->shape[0];
  }

  /* the initial state: version 2 only; c0 only for LSTM and with h0 */
  const RnnStTensor *h0 = rnn_safetensors_find (st, "rnn.h0");
  const RnnStTensor *c0 = rnn_safetensors_find (st, "rnn.c0");
  if ((h0 || c0) && !version2) {
    set_error (error, RNN_ERROR_TENSOR, dn, "tensor %s needs metadata "
        "version \"" FORMAT_VERSION_2 "\" (the file says version \""
        FORMAT_VERSION "\")", h0 ? "rnn.h0" : "rnn.c0");
    return FALSE;
  }
  if (c0 && cfg->cell != RNN_CELL_LSTM) {
    set_error (error, RNN_ERROR_TENSOR, dn, "unexpected tensor \"rnn.c0\" "
        "(an initial cell state is only for lstm, this model is %s)",
        rnn_cell_to_string (cfg->cell));
    return FALSE;
  }
  if (c0 && !h0) {
    set_error (error, RNN_ERROR_TENSOR, dn, "tensor rnn.c0 is present but "
        "rnn.h0 is missing (an initial state gives h0, and c0 with it)");
    return FALSE;
  }
  cfg->has_h0 = h0 != NULL;
  cfg->has_c0 = c0 != NULL;
  return TRUE;
}

/* ---- load ---------------------------------------------------------------- */

/* The most tensors a model may have: four per layer and direction, a head,
 * input normalisation, two per pre and post layer and the initial state.  A header with more is refused while it is
 * scanned, before a tree is built for them. */
#define MAX_MODEL_TENSORS (RNN_MAX_LAYERS * 2 * 4 + 4 \
    + 2 * 2 * RNN_MAX_DENSE_LAYERS + 2)
/* The most __metadata__ keys: each costs some 400 bytes held while loading
 * (the JSON tree, the reader's table, the model's), so this bounds that
 * memory near 400 MB, whatever the header's 100 MB hold. */
#define MAX_MODEL_META_KEYS (1u << 20)

/* Fills @out (t->numel floats) with tensor @t; errors are not prefixed. */
typedef gboolean (*ReadTensor) (gpointer user_data, const RnnSafetensors *st,
    const RnnStTensor *t, float *out, GError **error);

static gboolean
read_tensor_memory (gpointer user_data, const RnnSafetensors *st,
    const RnnStTensor *t, float *out, GError **error)
{
  return rnn_safetensors_read_f32 (t, out, error);
}

/* Judges the parsed header against the model file format, allocates the
 * model and fills it through @read: nothing is allocated for the
 * parameters before every check that does not need their values passed. */
static RnnModel *
load_model (const RnnSafetensors *st, const char *dn, ReadTensor read,
    gpointer read_data, GError **error)
{
  g_autoptr (RnnModel) model = NULL;
  GArray *expected = NULL;
  const char *const *keys;
  RnnConfig cfg;
  GError *local = NULL;
  float *params;
  gboolean version2 = FALSE;

  rnn_config_init (&cfg);
  if (!parse_config (st, dn, &cfg, &version2, error)
      || !parse_optional_tensors (st, dn, &cfg, version2, error))
    return NULL;
  if (!rnn_config_validate (&cfg, &local)) {
    set_error (error, RNN_ERROR_METADATA, dn, "invalid configuration: %s",
        local->message);
    g_error_free (local);
    return NULL;
  }

  /* Every expected tensor, with exactly its shape; then nothing else. */
  expected = expected_tensors (&cfg);
  for (guint i = 0; i < expected->len; i++) {
    const Expected *e = &g_array_index (expected, Expected, i);
    if (!check_tensor_shape (rnn_safetensors_find (st, e->name), dn,
            e->name, e->ndim, e->shape, error)) {
      g_array_unref (expected);
      return NULL;
    }
  }
  /* All expected names are present and names are unique, so there are
   * extras exactly when the counts differ; name the first in file order. */
  if (rnn_safetensors_get_n_tensors (st) != expected->len) {
    GHashTable *known = g_hash_table_new (g_str_hash, g_str_equal);
    gboolean reported = FALSE;
    for (guint j = 0; j < expected->len; j++)
      g_hash_table_add (known, g_array_index (expected, Expected, j).name);
    for (guint i = 0; i < rnn_safetensors_get_n_tensors (st); i++) {
      const char *name = rnn_safetensors_get_tensor (st, i)->name;
      if (!g_hash_table_contains (known, name)) {
        char *q = rnn_st_quote (name);
        set_error (error, RNN_ERROR_TENSOR, dn, "unexpected tensor %s (not "
            "part of a %s model with this configuration)", q,
            rnn_cell_to_string (cfg.cell));
        g_free (q);
        reported = TRUE;
        break;
      }
    }
    if (!reported)              /* cannot happen; never abort on data */
      set_error (error, RNN_ERROR_TENSOR, dn, "%u tensors, expected %u",
          rnn_safetensors_get_n_tensors (st), expected->len);
    g_hash_table_unref (known);
    g_array_unref (expected);
    return NULL;
  }
  g_array_unref (expected);

  model = rnn_model_new (&cfg, &local);
  if (model == NULL) {
    if (local->code == RNN_ERROR_IO)      /* the slab could not be had */
      set_error (error, RNN_ERROR_IO, dn, "%s", local->message);
    else
      set_error (error, RNN_ERROR_METADATA, dn, "invalid configuration: %s",
          local->message);
    g_error_free (local);
    return NULL;
  }

  params = rnn_model_get_params (model, NULL);
  for (guint i = 0; i < rnn_model_get_n_tensors (model); i++) {
    const RnnParamInfo *info = rnn_model_get_tensor_info (model, i);
    const RnnStTensor *t = rnn_safetensors_find (st, info->name);
    guint64 shape[2] = { info->shape[0], info->shape[1] };
    float *out = params + info->offset;

    /* The model's own table must agree with the contract checked above. */
    if (!check_tensor_shape (t, dn, info->name, info->ndim, shape, error))
      return NULL;
    if (!read (read_data, st, t, out, &local)) {
      if (local->code == RNN_ERROR_IO)
        set_error (error, RNN_ERROR_IO, dn, "%s", local->message);
      else
        g_propagate_prefixed_error (error, g_steal_pointer (&local), "%s: ",
            dn);
      g_clear_error (&local);
      return NULL;
    }
    for (gsize j = 0; j < info->numel; j++) {
      if (!isfinite (out[j])) {
        set_error (error, RNN_ERROR_TENSOR, dn, "tensor %s has a non-finite "
            "value (%g) at index %" G_GSIZE_FORMAT, info->name, out[j], j);
        return NULL;
      }
    }
    if (strcmp (info->name, "input.std") == 0) {
      for (gsize j = 0; j < info->numel; j++) {
        if (!(out[j] > 0.0f)) {
          set_error (error, RNN_ERROR_TENSOR, dn, "tensor input.std has value "
              "%g at index %" G_GSIZE_FORMAT ", every std must be > 0",
              out[j], j);
          return NULL;
        }
      }
    }
  }

  /* Everything else in __metadata__ is kept as is. */
  keys = rnn_safetensors_get_meta_keys (st);
  for (gsize i = 0; keys[i] != NULL; i++) {
    if (is_config_key (keys[i]))
      continue;
    if (!rnn_model_set_meta (model, keys[i],
            rnn_safetensors_get_meta (st, keys[i]))) {
      char *q = rnn_st_quote (keys[i]);
      set_error (error, RNN_ERROR_METADATA, dn, "metadata key %s is "
          "reserved", q);
      g_free (q);
      return NULL;
    }
  }

  if (!rnn_model_plan (model, &local)) {
    set_error (error, RNN_ERROR_IO, dn, "%s", local->message);
    g_error_free (local);
    return NULL;
  }
  return g_steal_pointer (&model);
}

/* A file that failed safetensors' own checks may be a model of another
 * kind (PyTorch, ONNX, an amp model's JSON) or no model at all (WAV): say
 * what it is and how to convert it instead of which check it failed.
 * @what is rnn_sniff_*()'s answer (taken). */
static void
name_foreign_file (gchar *what, GError **error)
{
  if (what && error && *error && g_error_matches (*error, RNN_ERROR,
          RNN_ERROR_FORMAT)) {
    g_clear_error (error);
    g_set_error_literal (error, RNN_ERROR, RNN_ERROR_FORMAT, what);
  }
  g_free (what);
}

RnnModel *
rnn_model_load_from_data (const guint8 *data, gsize size,
    const char *display_name, GError **error)
{
  g_autoptr (RnnSafetensors) st = NULL;
  const char *dn;
  guint64 n;

  g_return_val_if_fail (data != NULL || size == 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  dn = display_name ? display_name : "<memory>";
  st = rnn_safetensors_parse_head (data, size, size, MAX_MODEL_TENSORS,
      MAX_MODEL_META_KEYS, dn, error);
  if (st == NULL) {
    /* only where the length field itself is implausible: a malformed
     * safetensors file keeps the loader's own words */
    if (error && *error && !rnn_safetensors_header_length (data, size, dn,
            &n, NULL))
      name_foreign_file (rnn_sniff_describe (data, MIN (size, 65536),
              size > 65536 ? data + size - 65536 : data, MIN (size, 65536),
              dn), error);
    return NULL;
  }
  return load_model (st, dn, read_tensor_memory, NULL, error);
}

/* Reads @len bytes at @offset of @fd; a short count only at end of file. */
static gssize
pread_full (int fd, void *buf, gsize len, guint64 offset)
{
  gsize done = 0;

  while (done < len) {
    gssize r = pread (fd, (guint8 *) buf + done, len - done,
        (off_t) (offset + done));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -1;
    if (r == 0)
      break;
    done += (gsize) r;
  }
  return (gssize) done;
}

typedef struct {
  int fd;
  guint8 *chunk;                /* CHUNK_BYTES, for converted dtypes */
} FileReader;

#define CHUNK_BYTES (256 * 1024)

static gboolean
read_failed (const RnnStTensor *t, gssize r,
    gsize want, GError **error)
{
  const int saved = errno;
  char *q = rnn_st_quote (t->name);

  if (r < 0)
    g_set_error (error, RNN_ERROR, RNN_ERROR_IO, "cannot read tensor %s "
        "from the model file: %s", q, g_strerror (saved));
  else
    g_set_error (error, RNN_ERROR, RNN_ERROR_IO, "the model file ended "
        "inside tensor %s (%" G_GSSIZE_FORMAT " of %" G_GSIZE_FORMAT " bytes "
        "read): it was truncated while being read", q, r, want);
  g_free (q);
  return FALSE;
}

/* Reads tensor @t of the file straight into @out: float32 in place, other
 * dtypes through a fixed chunk, so memory stays that of the slab. */
static gboolean
read_tensor_file (gpointer user_data, const RnnSafetensors *st,
    const RnnStTensor *t, float *out, GError **error)
{
  FileReader *fr = user_data;
  const guint64 at = rnn_safetensors_get_file_offset (st, t);
  gsize esize, per_chunk;
  gssize r;

  if (t->dtype == RNN_DTYPE_OTHER)                  /* refused */
    return rnn_safetensors_convert_f32 (t, NULL, 0, 0, NULL, error);
  if (t->numel == 0)
    return TRUE;
  if (t->dtype == RNN_DTYPE_F32) {
    r = pread_full (fr->fd, out, t->nbytes, at);
    if (r < 0 || (gsize) r != t->nbytes)
      return read_failed (t, r, t->nbytes, error);
#if G_BYTE_ORDER != G_LITTLE_ENDIAN
    return rnn_safetensors_convert_f32 (t, (const guint8 *) out, 0,
        (gsize) t->numel, out, error);
#else
    return TRUE;
#endif
  }
  /* the element size from the byte count the parser checked */
  esize = t->nbytes / (gsize) t->numel;
  per_chunk = CHUNK_BYTES / esize;
  if (fr->chunk == NULL)
    fr->chunk = g_malloc (CHUNK_BYTES);
  for (gsize first = 0; first < (gsize) t->numel; first += per_chunk) {
    const gsize count = MIN (per_chunk, (gsize) t->numel - first);
    r = pread_full (fr->fd, fr->chunk, count * esize, at + first * esize);
    if (r < 0 || (gsize) r != count * esize)
      return read_failed (t, r, count * esize, error);
    if (!rnn_safetensors_convert_f32 (t, fr->chunk, first, count,
            out + first, error))
      return FALSE;
  }
  return TRUE;
}

/* What a path that is not a regular file is, for the message. */
static const char *
describe_file_type (mode_t mode)
{
  if (S_ISDIR (mode))
    return "a directory";
  if (S_ISFIFO (mode))
    return "a named pipe (FIFO)";
  if (S_ISCHR (mode))
    return "a character device";
  if (S_ISBLK (mode))
    return "a block device";
#ifdef S_ISSOCK
  if (S_ISSOCK (mode))
    return "a socket";
#endif
  return "not a regular file";
}

static void
open_error (const char *path, int err, GError **error)
{
  switch (err) {
    case ELOOP:
      set_error (error, RNN_ERROR_IO, path, "cannot open the model file: "
          "the path is a symbolic link loop (%s)", g_strerror (err));
      break;
    case ENOENT:
    case ENOTDIR:
      set_error (error, RNN_ERROR_IO, path, "cannot open the model file: %s "
          "(not found: check the path)", g_strerror (err));
      break;
    case EACCES:
    case EPERM:
      set_error (error, RNN_ERROR_IO, path, "cannot open the model file: %s "
          "(check the file's permissions)", g_strerror (err));
      break;
    default:
      set_error (error, RNN_ERROR_IO, path, "cannot open the model file: %s",
          g_strerror (err));
  }
}

/* Only a regular file is opened: a FIFO would block in open () (and a
 * writer could feed it forever), a device may never end.  Then only the
 * length field and the header are read and judged completely -- against
 * the real file size -- before the parameter slab is allocated and the
 * tensors are read straight into it: no copy of the whole file is held. */
RnnModel *
rnn_model_load (const char *path, GError **error)
{
  g_autoptr (RnnSafetensors) st = NULL;
  FileReader fr = { -1, NULL };
  RnnModel *model = NULL;
  struct stat sb;
  guint8 first8[8];
  guint8 *head = NULL;
  guint64 size, n;
  gssize r;

  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  /* stat () first, so that a device or FIFO is not even opened */
  if (g_stat (path, &sb) != 0) {
    open_error (path, errno, error);
    return NULL;
  }
  if (!S_ISREG (sb.st_mode)) {
    set_error (error, RNN_ERROR_IO, path, "is %s, not a model file (a "
        "regular file is needed)", describe_file_type (sb.st_mode));
    return NULL;
  }
  /* O_NONBLOCK: should the path have become a FIFO since, open () does
   * not wait for a writer; fstat () below refuses it */
  fr.fd = g_open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0);
  if (fr.fd < 0) {
    open_error (path, errno, error);
    return NULL;
  }
  if (fstat (fr.fd, &sb) != 0) {
    int saved = errno;
    set_error (error, RNN_ERROR_IO, path, "cannot stat the model file: %s",
        g_strerror (saved));
    goto out;
  }
  if (!S_ISREG (sb.st_mode)) {
    set_error (error, RNN_ERROR_IO, path, "is %s, not a model file (a "
        "regular file is needed)", describe_file_type (sb.st_mode));
    goto out;
  }
  size = (guint64) sb.st_size;

  if (size >= 8) {
    r = pread_full (fr.fd, first8, 8, 0);
    if (r < 0) {
      int saved = errno;
      set_error (error, RNN_ERROR_IO, path, "cannot read the model file: %s",
          g_strerror (saved));
      goto out;
    }
    if (r < 8)
      size = (guint64) r;               /* shrank since fstat () */
  }
  if (!rnn_safetensors_header_length (first8, size, path, &n, error)) {
    if (error && *error)
      name_foreign_file (rnn_sniff_file (path), error);
    goto out;
  }

  /* n <= 100,000,000: bounded, and checked against the file's size */
  head = rnn_try_alloc0 (8 + (gsize) n, 1, "the model file's header", error);
  if (head == NULL) {
    g_prefix_error (error, "%s: ", path);
    goto out;
  }
  memcpy (head, first8, 8);
  r = pread_full (fr.fd, head + 8, (gsize) n, 8);
  if (r < 0 || (guint64) r != n) {
    int saved = errno;
    if (r < 0)
      set_error (error, RNN_ERROR_IO, path, "cannot read the model file: %s",
          g_strerror (saved));
    else
      set_error (error, RNN_ERROR_IO, path, "the model file ended inside "
          "its header: it was truncated while being read");
    goto out;
  }
  st = rnn_safetensors_parse_head (head, 8 + (gsize) n, size,
      MAX_MODEL_TENSORS, MAX_MODEL_META_KEYS, path, error);
  g_clear_pointer (&head, g_free);      /* @st keeps what it needs */
  if (st == NULL)
    goto out;
  model = load_model (st, path, read_tensor_file, &fr, error);

out:
  g_free (head);
  g_free (fr.chunk);
  if (fr.fd >= 0)
    close (fr.fd);
  return model;
}

/* ---- save ---------------------------------------------------------------- */

static void
append_json_string (GString *out, const char *s)
{
  char *valid = NULL;

  /* The header must be UTF-8; metadata set by a program might not be. */
  if (!g_utf8_validate (s, -1, NULL))
    s = valid = g_utf8_make_valid (s, -1);
  g_string_append_c (out, '"');
  for (const char *p = s; *p != '\0'; p++) {
    guchar c = (guchar) *p;
    switch (c) {
      case '"': g_string_append (out, "\\\""); break;
      case '\\': g_string_append (out, "\\\\"); break;
      case '\b': g_string_append (out, "\\b"); break;
      case '\f': g_string_append (out, "\\f"); break;
      case '\n': g_string_append (out, "\\n"); break;
      case '\r': g_string_append (out, "\\r"); break;
      case '\t': g_string_append (out, "\\t"); break;
      default:
        if (c < 0x20)
          g_string_append_printf (out, "\\u%04x", c);
        else
          g_string_append_c (out, (char) c);
    }
  }
  g_string_append_c (out, '"');
  g_free (valid);
}

static void
append_meta (GString *out, gboolean *first, const char *key,
    const char *value)
{
  if (!*first)
    g_string_append_c (out, ',');
  *first = FALSE;
  append_json_string (out, key);
  g_string_append_c (out, ':');
  append_json_string (out, value);
}

static void
append_meta_uint (GString *out, gboolean *first, const char *key, guint v)
{
  char buf[16];

  g_snprintf (buf, sizeof buf, "%u", v);
  append_meta (out, first, key, buf);
}

GBytes *
rnn_model_serialize (const RnnModel *model)
{
  const RnnConfig *cfg;
  const float *params;
  const char *const *keys;
  GString *h;
  gboolean first = TRUE;
  guint64 off = 0, hlen;
  guint n_tensors;
  gsize total;
  guint8 *buf, *p;

  g_return_val_if_fail (model != NULL, NULL);

  cfg = rnn_model_get_config (model);
  params = rnn_model_peek_params (model, NULL);
  n_tensors = rnn_model_get_n_tensors (model);

  h = g_string_new ("{\"__metadata__\":{");
  append_meta (h, &first, "format", FORMAT_NAME);
  append_meta (h, &first, "version", rnn_config_has_extras (cfg)
      ? FORMAT_VERSION_2 : FORMAT_VERSION);
  append_meta (h, &first, "cell", rnn_cell_to_string (cfg->cell));
  append_meta_uint (h, &first, "input_size", cfg->input_size);
  append_meta_uint (h, &first, "hidden_size", cfg->hidden_size);
  append_meta_uint (h, &first, "num_layers", cfg->num_layers);
  append_meta (h, &first, "bidirectional",
      cfg->bidirectional ? "true" : "false");
  append_meta (h, &first, "head_activation",
      rnn_head_activation_to_string (cfg->has_head ? cfg->head_activation
          : RNN_HEAD_ACT_NONE));
  append_meta_uint (h, &first, "frame_size", cfg->frame_size);
  append_meta_uint (h, &first, "output_frame_size", cfg->output_frame_size);
  if (cfg->window > 0)
    append_meta_uint (h, &first, "window", cfg->window);
  if (cfg->sample_rate > 0)
    append_meta_uint (h, &first, "sample_rate", cfg->sample_rate);
  for (guint j = 0; j < 2; j++) {
    const RnnDense *l = j ? cfg->post : cfg->pre;
    const guint n = j ? cfg->n_post : cfg->n_pre;
    if (n == 0)
      continue;
    GString *acts = g_string_new (NULL);
    for (guint k = 0; k < n; k++)
      g_string_append_printf (acts, "%s%s", k ? "," : "",
          rnn_activation_to_string (l[k].activation));
    append_meta (h, &first, j ? "post_activations" : "pre_activations",
        acts->str);
    g_string_free (acts, TRUE);
  }
  if (cfg->skip > 0)
    append_meta_uint (h, &first, "skip", cfg->skip);
  keys = rnn_model_get_meta_keys (model);
  for (gsize i = 0; keys && keys[i] != NULL; i++) {
    const char *v = rnn_model_get_meta (model, keys[i]);
    /* Never write a key twice: the reader refuses duplicates. */
    if (v == NULL || is_config_key (keys[i]))
      continue;
    append_meta (h, &first, keys[i], v);
  }
  g_string_append_c (h, '}');

  for (guint i = 0; i < n_tensors; i++) {
    const RnnParamInfo *info = rnn_model_get_tensor_info (model, i);
    guint64 nbytes = (guint64) info->numel * 4;

    g_string_append_c (h, ',');
    append_json_string (h, info->name);
    g_string_append (h, ":{\"dtype\":\"F32\",\"shape\":[");
    for (guint d = 0; d < info->ndim; d++)
      g_string_append_printf (h, "%s%" G_GSIZE_FORMAT, d ? "," : "",
          info->shape[d]);
    g_string_append_printf (h, "],\"data_offsets\":[%" G_GUINT64_FORMAT ",%"
        G_GUINT64_FORMAT "]}", off, off + nbytes);
    off += nbytes;
  }
  g_string_append_c (h, '}');
  while (h->len % 8 != 0)
    g_string_append_c (h, ' ');

  total = 8 + h->len + (gsize) off;
  buf = g_malloc (total);
  hlen = GUINT64_TO_LE ((guint64) h->len);
  memcpy (buf, &hlen, 8);
  memcpy (buf + 8, h->str, h->len);
  p = buf + 8 + h->len;
  for (guint i = 0; i < n_tensors; i++) {
    const RnnParamInfo *info = rnn_model_get_tensor_info (model, i);
    const float *src = params + info->offset;
    for (gsize j = 0; j < info->numel; j++) {
      guint32 u;
      memcpy (&u, &src[j], 4);
      u = GUINT32_TO_LE (u);
      memcpy (p, &u, 4);
      p += 4;
    }
  }
  g_assert (p == buf + total);
  g_string_free (h, TRUE);
  return g_bytes_new_take (buf, total);
}

gboolean
rnn_model_save (const RnnModel *model, const char *path, GError **error)
{
  GBytes *bytes;
  GError *local = NULL;
  const float *params;
  gboolean ok;

  g_return_val_if_fail (model != NULL, FALSE);
  g_return_val_if_fail (path != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  /* Never write a file the loader would refuse. */
  params = rnn_model_peek_params (model, NULL);
  for (guint i = 0; i < rnn_model_get_n_tensors (model); i++) {
    const RnnParamInfo *info = rnn_model_get_tensor_info (model, i);
    const float *v = params + info->offset;
    gboolean is_std = strcmp (info->name, "input.std") == 0;
    for (gsize j = 0; j < info->numel; j++) {
      if (!isfinite (v[j]) || (is_std && !(v[j] > 0.0f))) {
        set_error (error, RNN_ERROR_TENSOR, path, "refusing to save: tensor "
            "%s has value %g at index %" G_GSIZE_FORMAT " (%s)", info->name,
            v[j], j, is_std && isfinite (v[j]) ? "every std must be > 0"
            : "not finite");
        return FALSE;
      }
    }
  }

  bytes = rnn_model_serialize (model);
  ok = g_file_set_contents_full (path, g_bytes_get_data (bytes, NULL),
      (gssize) g_bytes_get_size (bytes), G_FILE_SET_CONTENTS_CONSISTENT, 0666,
      &local);
  g_bytes_unref (bytes);
  if (!ok) {
    set_error (error, RNN_ERROR_IO, path, "cannot write the model file: %s",
        local->message);
    g_error_free (local);
  }
  return ok;
}
