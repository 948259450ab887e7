/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* gst-rnn-info: what a model file is and what it needs to run.
 *
 *   gst-rnn-info [--json] MODEL...
 *
 * Loads each file with the core's loader (the same checks rnnfilter makes)
 * and prints the network (cell, layers, sizes, head), its parameters, the
 * framing, window and latency, the caps rnnfilter negotiates for it in each
 * channel mode, and the metadata: description, labels, where it came from
 * and how it was trained.  --json prints one object per file (an array for
 * several) for scripts.  Exit status 1 if any file fails to load, with the
 * loader's message naming the file and the problem.
 */
#include "rnn.h"

#include <json-glib/json-glib.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>

/* What rnnfilter negotiates for a model: docs/design.md §4. */
typedef struct
{
  guint n_in, n_out;            /* model input and output size */
  guint f_in, f_out;            /* frames per step in and out */
  guint c_in, c_out;            /* channels per frame in and out */
  guint window;                 /* bidirectional window, 0 = unset */
  guint rate;                   /* sample_rate, 0 = any */
  guint64 latency_frames;       /* input frames a step waits for */
  gboolean sizes_ok;            /* the sizes divide into the frames */
} Needs;

static void
needs_of (const RnnModel *model, Needs *n)
{
  const RnnConfig *cfg = rnn_model_get_config (model);

  memset (n, 0, sizeof (*n));
  n->n_in = cfg->input_size;
  n->n_out = rnn_model_get_output_size (model);
  n->f_in = cfg->frame_size;
  n->f_out = cfg->output_frame_size;
  n->window = cfg->window;
  n->rate = cfg->sample_rate;
  n->sizes_ok = n->f_in > 0 && n->f_out > 0 && n->n_in % n->f_in == 0
      && n->n_out % n->f_out == 0;
  if (n->sizes_ok) {
    n->c_in = n->n_in / n->f_in;
    n->c_out = n->n_out / n->f_out;
  }
  /* a step's output can be computed once its last input frame is in:
   * F_in·W − 1 frames after its first (W = window for bidirectional
   * models, else 1); an unset window is counted as 1 */
  n->latency_frames = (guint64) n->f_in
      * (cfg->bidirectional && n->window > 0 ? n->window : 1) - 1;
}

static gchar *
rate_caps (guint rate)
{
  return rate ? g_strdup_printf ("%u", rate) : g_strdup ("[ 1, 2147483647 ]");
}

/* The output rate for input @rate, or 0 where it is not a whole number. */
static guint64
out_rate (const Needs *n, guint64 rate)
{
  return rate * n->f_out % n->f_in ? 0 : rate * n->f_out / n->f_in;
}

static const char *
plural (guint64 n)
{
  return n == 1 ? "" : "s";
}

/* The parameters the file holds (the slab may be padded for alignment). */
static gsize
n_params (const RnnModel *model)
{
  gsize n = 0;

  for (guint i = 0; i < rnn_model_get_n_tensors (model); i++)
    n += rnn_model_get_tensor_info (model, i)->numel;
  return n;
}

/* Bytes of the recurrent weights (rnn.weight_hh_*) as float32: what a
 * step streams, and what weight-precision=float16 halves. */
static gsize
recurrent_weight_bytes (const RnnModel *model)
{
  gsize n = 0;

  for (guint i = 0; i < rnn_model_get_n_tensors (model); i++) {
    const RnnParamInfo *t = rnn_model_get_tensor_info (model, i);
    if (g_str_has_prefix (t->name, "rnn.weight_hh"))
      n += t->numel;
  }
  return n * sizeof (float);
}

/* Keys shown in their own lines rather than under "metadata". */
static gboolean
is_shown_key (const char *key)
{
  return g_str_equal (key, "description") || g_str_equal (key, "labels")
      || g_str_equal (key, "source_format") || g_str_equal (key, "source_file")
      || g_str_has_prefix (key, "train_");
}

static const char *
cell_title (RnnCell cell)
{
  switch (cell) {
    case RNN_CELL_RNN_TANH:
      return "Elman RNN (tanh)";
    case RNN_CELL_RNN_RELU:
      return "Elman RNN (relu)";
    case RNN_CELL_LSTM:
      return "LSTM";
    case RNN_CELL_GRU:
    default:
      return "GRU";
  }
}

/* ---- text ---------------------------------------------------------------- */

static void
print_row (const char *label, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static void
print_row (const char *label, const char *fmt, ...)
{
  va_list ap;
  gchar *text;

  va_start (ap, fmt);
  text = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  printf ("  %-14s %s\n", label, text);
  g_free (text);
}

/* The train_* keys (@train) or the other keys not shown elsewhere, as
 * "key=value" pairs filling lines of about 64 characters. */
static void
print_pairs (const RnnModel *model, const char *label, gboolean train)
{
  const char *const *keys = rnn_model_get_meta_keys (model);
  GString *line = g_string_new (NULL);

  for (guint i = 0; keys && keys[i]; i++) {
    const char *key = keys[i];
    gboolean is_train = g_str_has_prefix (key, "train_");
    gchar *pair;

    if (train ? !is_train : is_shown_key (key))
      continue;
    pair = g_strdup_printf ("%s=%s", train ? key + 6 : key,
        rnn_model_get_meta (model, key));
    if (line->len > 0 && line->len + 2 + strlen (pair) > 64) {
      print_row (label, "%s,", line->str);
      label = "";
      g_string_truncate (line, 0);
    }
    g_string_append_printf (line, "%s%s", line->len ? ", " : "", pair);
    g_free (pair);
  }
  if (line->len > 0)
    print_row (label, "%s", line->str);
  g_string_free (line, TRUE);
}

static void
print_text (const char *path, const RnnModel *model)
{
  const RnnConfig *cfg = rnn_model_get_config (model);
  guint D = rnn_model_get_num_directions (model);
  const char *s;
  Needs n;
  gsize np = n_params (model);
  gchar *rate;

  needs_of (model, &n);
  printf ("%s\n", path);
  print_row ("network", "%s, %u layer%s of %u, %s", cell_title (cfg->cell),
      cfg->num_layers, plural (cfg->num_layers), cfg->hidden_size,
      cfg->bidirectional ? "bidirectional" : "unidirectional");
  if (cfg->has_input_norm)
    print_row ("input", "%u value%s per step, normalised by the file's "
        "input.mean / input.std", cfg->input_size, plural (cfg->input_size));
  else
    print_row ("input", "%u value%s per step", cfg->input_size,
        plural (cfg->input_size));
  for (guint k = 0; k < cfg->n_pre; k++) {
    guint in = 0;
    rnn_model_get_pre_weight (model, k, &in);
    print_row (k == 0 ? "pre layers" : "", "%u: dense %u -> %u, activation %s",
        k, in, cfg->pre[k].size,
        rnn_activation_to_string (cfg->pre[k].activation));
  }
  for (guint k = 0; k < cfg->num_layers; k++)
    print_row (k == 0 ? "layers" : "", "%u: %s %u -> %u%s", k,
        rnn_cell_to_string (cfg->cell),
        rnn_model_get_layer (model, k, 0)->in_size, cfg->hidden_size,
        D == 2 ? " (x2 directions)" : "");
  for (guint k = 0; k < cfg->n_post; k++) {
    guint in = 0;
    rnn_model_get_post_weight (model, k, &in);
    print_row (k == 0 ? "post layers" : "", "%u: dense %u -> %u, activation "
        "%s", k, in, cfg->post[k].size,
        rnn_activation_to_string (cfg->post[k].activation));
  }
  const guint feats = rnn_config_features (cfg);
  if (cfg->has_head)
    print_row ("head", "linear %u -> %u, activation %s", feats,
        cfg->output_size, rnn_head_activation_to_string (cfg->head_activation));
  else if (cfg->n_post > 0)
    print_row ("head", "none: the output is the last post layer's (%u "
        "values)", feats);
  else
    print_row ("head", "none: the output is the last layer's h (%u values)",
        feats);
  if (cfg->skip == 1)
    print_row ("skip", "the input (channel 0) added to every output");
  else if (cfg->skip > 1)
    print_row ("skip", "the first %u inputs added to the %u outputs",
        cfg->skip, cfg->skip);
  if (cfg->has_h0)
    print_row ("initial state", "learned: rnn.h0%s, restored at every reset",
        cfg->has_c0 ? " and rnn.c0" : "");
  else
    print_row ("initial state", "zeros");
  print_row ("parameters", "%" G_GSIZE_FORMAT " (%" G_GSIZE_FORMAT
      " bytes as float32) in %u tensors", np, np * sizeof (float),
      rnn_model_get_n_tensors (model));
  {
    const gsize w = recurrent_weight_bytes (model);
    print_row ("float16", "weight-precision=float16 reads %" G_GSIZE_FORMAT
        " instead of %" G_GSIZE_FORMAT " bytes of recurrent weights a step,",
        w / 2, w);
    print_row ("", "outputs within about 1e-4; measured at H >= 64: 1.1-1.65x "
        "faster on AMD Zen 3 / Zen 4,");
    print_row ("", "14-30 %% slower on Intel Sapphire Rapids (time it on your "
        "CPU with tests/bench/bench)");
  }

  if (!n.sizes_ok) {
    print_row ("framing", "invalid: I=%u, O=%u do not divide into frame_size "
        "%u, output_frame_size %u", n.n_in, n.n_out, n.f_in, n.f_out);
  } else {
    print_row ("framing", "a step reads %u frame%s of %u channel%s and "
        "writes %u frame%s of %u channel%s", n.f_in, plural (n.f_in), n.c_in,
        plural (n.c_in), n.f_out, plural (n.f_out), n.c_out, plural (n.c_out));
  }
  if (cfg->bidirectional && n.window)
    print_row ("window", "%u steps (each window is one sequence)", n.window);
  else if (cfg->bidirectional)
    print_row ("window", "unset: give rnnfilter a window property");
  if (n.rate)
    print_row ("latency", "%" G_GUINT64_FORMAT " frame%s = %.3f ms at %u Hz",
        n.latency_frames, plural (n.latency_frames),
        1000.0 * n.latency_frames / n.rate, n.rate);
  else
    print_row ("latency", "%" G_GUINT64_FORMAT " frame%s (the time depends "
        "on the stream's rate)", n.latency_frames, plural (n.latency_frames));

  rate = rate_caps (n.rate);
  if (n.sizes_ok) {
    guint64 orate = n.rate ? out_rate (&n, n.rate) : 0;

    print_row ("sink caps", "audio/x-raw, format=F32LE, layout=interleaved, "
        "rate=%s, channels=%u", rate, n.c_in);
    if (n.rate)
      print_row ("src caps", "audio/x-raw, format=F32LE, layout=interleaved, "
          "rate=%" G_GUINT64_FORMAT ", channels=%u", orate, n.c_out);
    else
      print_row ("src caps", "audio/x-raw, format=F32LE, layout=interleaved, "
          "rate=rate*%u/%u, channels=%u", n.f_out, n.f_in, n.c_out);
    if (n.c_in == 1)
      print_row ("", "or channels=N for any N (channel-mode independent or "
          "auto): N streams, %u*N output channels", n.c_out);
    if (!n.rate)
      print_row ("rate", "any (the model names no sample_rate)");
    else
      print_row ("rate", "%u Hz only (put audioresample in front)", n.rate);
  }
  g_free (rate);

  if ((s = rnn_model_get_meta (model, "description")))
    print_row ("description", "%s", s);
  if ((s = rnn_model_get_meta (model, "labels")))
    print_row ("labels", "%s", s);
  if ((s = rnn_model_get_meta (model, "source_format")))
    print_row ("source", "%s%s%s", s,
        rnn_model_get_meta (model, "source_file") ? ", from " : "",
        rnn_model_get_meta (model, "source_file") ?
        rnn_model_get_meta (model, "source_file") : "");
  print_pairs (model, "training", TRUE);
  print_pairs (model, "metadata", FALSE);
}

/* ---- JSON ---------------------------------------------------------------- */

static void
add_uint (JsonBuilder *b, const char *name, guint64 v)
{
  json_builder_set_member_name (b, name);
  json_builder_add_int_value (b, (gint64) v);
}

static void
add_string (JsonBuilder *b, const char *name, const char *v)
{
  json_builder_set_member_name (b, name);
  if (v)
    json_builder_add_string_value (b, v);
  else
    json_builder_add_null_value (b);
}

static void
add_bool (JsonBuilder *b, const char *name, gboolean v)
{
  json_builder_set_member_name (b, name);
  json_builder_add_boolean_value (b, v);
}

static void
build_json (JsonBuilder *b, const char *path, const RnnModel *model)
{
  const RnnConfig *cfg = rnn_model_get_config (model);
  guint D = rnn_model_get_num_directions (model);
  const char *const *keys = rnn_model_get_meta_keys (model);
  const char *labels = rnn_model_get_meta (model, "labels");
  Needs n;
  gsize np = n_params (model);

  needs_of (model, &n);
  json_builder_begin_object (b);
  add_string (b, "file", path);
  add_string (b, "cell", rnn_cell_to_string (cfg->cell));
  add_uint (b, "input_size", cfg->input_size);
  add_uint (b, "hidden_size", cfg->hidden_size);
  add_uint (b, "num_layers", cfg->num_layers);
  add_bool (b, "bidirectional", cfg->bidirectional);
  add_bool (b, "input_normalization", cfg->has_input_norm);

  json_builder_set_member_name (b, "layers");
  json_builder_begin_array (b);
  for (guint k = 0; k < cfg->num_layers; k++) {
    json_builder_begin_object (b);
    add_string (b, "kind", rnn_cell_to_string (cfg->cell));
    add_uint (b, "input_size", rnn_model_get_layer (model, k, 0)->in_size);
    add_uint (b, "hidden_size", cfg->hidden_size);
    add_uint (b, "directions", D);
    json_builder_end_object (b);
  }
  json_builder_end_array (b);

  for (guint j = 0; j < 2; j++) {
    const guint nl = j ? cfg->n_post : cfg->n_pre;
    json_builder_set_member_name (b, j ? "post_layers" : "pre_layers");
    json_builder_begin_array (b);
    for (guint k = 0; k < nl; k++) {
      guint in = 0;
      const RnnDense *l = j ? &cfg->post[k] : &cfg->pre[k];
      if (j)
        rnn_model_get_post_weight (model, k, &in);
      else
        rnn_model_get_pre_weight (model, k, &in);
      json_builder_begin_object (b);
      add_uint (b, "input_size", in);
      add_uint (b, "output_size", l->size);
      add_string (b, "activation", rnn_activation_to_string (l->activation));
      json_builder_end_object (b);
    }
    json_builder_end_array (b);
  }
  add_uint (b, "skip", cfg->skip);

  json_builder_set_member_name (b, "head");
  if (cfg->has_head) {
    json_builder_begin_object (b);
    add_uint (b, "input_size", rnn_config_features (cfg));
    add_uint (b, "output_size", cfg->output_size);
    add_string (b, "activation",
        rnn_head_activation_to_string (cfg->head_activation));
    json_builder_end_object (b);
  } else {
    json_builder_add_null_value (b);
  }
  add_uint (b, "output_size", n.n_out);
  add_bool (b, "initial_state", cfg->has_h0);
  add_uint (b, "parameters", np);
  add_uint (b, "parameter_bytes", np * sizeof (float));
  add_uint (b, "recurrent_weight_bytes", recurrent_weight_bytes (model));
  add_uint (b, "tensors", rnn_model_get_n_tensors (model));

  add_uint (b, "frame_size", n.f_in);
  add_uint (b, "output_frame_size", n.f_out);
  add_uint (b, "window", n.window);
  add_uint (b, "latency_frames", n.latency_frames);
  json_builder_set_member_name (b, "latency_ns");
  if (n.rate)
    json_builder_add_int_value (b, (gint64) ((n.latency_frames
                * G_GUINT64_CONSTANT (1000000000) + n.rate - 1) / n.rate));
  else
    json_builder_add_null_value (b);

  json_builder_set_member_name (b, "caps");
  json_builder_begin_object (b);
  add_string (b, "format", "F32LE");
  add_string (b, "layout", "interleaved");
  json_builder_set_member_name (b, "rate");
  if (n.rate)
    json_builder_add_int_value (b, n.rate);
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "output_rate");
  if (n.rate && n.sizes_ok)
    json_builder_add_int_value (b, (gint64) out_rate (&n, n.rate));
  else
    json_builder_add_null_value (b);
  add_uint (b, "channels", n.c_in);
  add_uint (b, "output_channels", n.c_out);
  add_bool (b, "independent_channels", n.sizes_ok && n.c_in == 1);
  json_builder_end_object (b);

  add_string (b, "description", rnn_model_get_meta (model, "description"));
  json_builder_set_member_name (b, "labels");
  if (labels) {
    gchar **v = g_strsplit (labels, ",", -1);

    json_builder_begin_array (b);
    for (guint i = 0; v[i]; i++)
      json_builder_add_string_value (b, g_strstrip (v[i]));
    json_builder_end_array (b);
    g_strfreev (v);
  } else {
    json_builder_add_null_value (b);
  }
  add_string (b, "source_format", rnn_model_get_meta (model, "source_format"));
  add_string (b, "source_file", rnn_model_get_meta (model, "source_file"));

  json_builder_set_member_name (b, "metadata");
  json_builder_begin_object (b);
  for (guint i = 0; keys && keys[i]; i++)
    add_string (b, keys[i], rnn_model_get_meta (model, keys[i]));
  json_builder_end_object (b);
  json_builder_end_object (b);
}

int
main (int argc, char **argv)
{
  gboolean json = FALSE;
  gchar **files = NULL;
  GOptionEntry entries[] = {
    {"json", 0, 0, G_OPTION_ARG_NONE, &json, "Print JSON for scripts", NULL},
    {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &files, NULL,
        "MODEL..."},
    {NULL}
  };
  g_autoptr (GOptionContext) ctx = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonBuilder) b = NULL;
  guint n_files;
  int status = 0;

  setlocale (LC_ALL, "");
  ctx = g_option_context_new ("MODEL... - what a gst-rnn model is and needs");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_description (ctx, "Prints the network, its "
      "parameters, framing, latency and the caps rnnfilter negotiates for "
      "it, and the model's metadata.  Files of other kinds (PyTorch, ONNX, "
      "RTNeural or amp-model JSON) are converted with gst-rnn-convert.");
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    fprintf (stderr, "gst-rnn-info: %s (try --help)\n", error->message);
    return 2;
  }
  n_files = files ? g_strv_length (files) : 0;
  if (n_files == 0) {
    fprintf (stderr, "gst-rnn-info: no model file given (usage: gst-rnn-info "
        "[--json] MODEL...)\n");
    return 2;
  }

  if (json) {
    b = json_builder_new ();
    if (n_files > 1)
      json_builder_begin_array (b);
  }
  for (guint i = 0; i < n_files; i++) {
    g_autoptr (RnnModel) model = NULL;
    g_autoptr (GError) err = NULL;

    model = rnn_model_load (files[i], &err);
    if (!model) {
      fprintf (stderr, "gst-rnn-info: %s\n", err->message);
      status = 1;
      continue;
    }
    if (json)
      build_json (b, files[i], model);
    else {
      if (i > 0)
        printf ("\n");
      print_text (files[i], model);
    }
  }
  if (json) {
    g_autoptr (JsonGenerator) gen = json_generator_new ();
    g_autoptr (JsonNode) root = NULL;
    g_autofree gchar *text = NULL;

    if (n_files > 1)
      json_builder_end_array (b);
    root = json_builder_get_root (b);
    if (root) {
      json_generator_set_root (gen, root);
      json_generator_set_pretty (gen, TRUE);
      text = json_generator_to_data (gen, NULL);
      printf ("%s\n", text);
    }
  }
  g_strfreev (files);
  return status;
}
