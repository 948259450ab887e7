/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Model files: round trips, dtype conversion, and a corpus of malformed files
 * built in memory from a valid one by byte and JSON surgery. */
#include "test-common.h"
#include "rnn-safetensors.h"

#include <glib/gstdio.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define DISPLAY "model.safetensors"

/* ---- helpers -------------------------------------------------------------- */

static guint32
rng_next (guint32 *s)
{
  /* xorshift32 */
  guint32 x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

static float
rng_float (guint32 *s)
{
  return ((float) (rng_next (s) >> 8) / 16777216.0f) * 2.0f - 1.0f;
}

typedef struct {
  RnnCell cell;
  guint input_size, hidden_size, num_layers;
  gboolean bidirectional;
  guint output_size;              /* 0: no head */
  RnnHeadActivation act;
  gboolean norm;
  guint frame_size, output_frame_size, window, sample_rate;
  const char *const *meta;        /* key, value, ..., NULL */
  /* the layers around the recurrent stack (n_pre, pre, n_post, post,
   * has_h0, has_c0, skip are taken from it), or NULL */
  const RnnConfig *extras;
} ModelSpec;

static RnnModel *
make_model (const ModelSpec *spec, guint32 seed)
{
  RnnConfig cfg;
  RnnModel *m;
  GError *error = NULL;
  float *p;

  rnn_config_init (&cfg);
  cfg.cell = spec->cell;
  cfg.input_size = spec->input_size;
  cfg.hidden_size = spec->hidden_size;
  cfg.num_layers = spec->num_layers;
  cfg.bidirectional = spec->bidirectional;
  cfg.has_head = spec->output_size > 0;
  cfg.output_size = spec->output_size;
  cfg.head_activation = spec->act;
  cfg.has_input_norm = spec->norm;
  cfg.frame_size = spec->frame_size ? spec->frame_size : 1;
  cfg.output_frame_size = spec->output_frame_size ? spec->output_frame_size : 1;
  cfg.window = spec->window;
  cfg.sample_rate = spec->sample_rate;
  if (spec->extras) {
    cfg.n_pre = spec->extras->n_pre;
    cfg.n_post = spec->extras->n_post;
    memcpy (cfg.pre, spec->extras->pre, sizeof cfg.pre);
    memcpy (cfg.post, spec->extras->post, sizeof cfg.post);
    cfg.has_h0 = spec->extras->has_h0;
    cfg.has_c0 = spec->extras->has_c0;
    cfg.skip = spec->extras->skip;
  }
  m = rnn_model_new (&cfg, &error);
  g_assert_no_error (error);
  g_assert_nonnull (m);

  p = rnn_model_get_params (m, NULL);
  for (guint i = 0; i < rnn_model_get_n_tensors (m); i++) {
    const RnnParamInfo *info = rnn_model_get_tensor_info (m, i);
    gboolean is_std = strcmp (info->name, "input.std") == 0;
    for (gsize j = 0; j < info->numel; j++) {
      float v = rng_float (&seed);
      p[info->offset + j] = is_std ? 1.0f + 0.5f * v : v;
    }
  }
  for (guint i = 0; spec->meta && spec->meta[i]; i += 2)
    g_assert_true (rnn_model_set_meta (m, spec->meta[i], spec->meta[i + 1]));
  rnn_model_seal (m);
  return m;
}

static void
assert_models_equal (const RnnModel *a, const RnnModel *b)
{
  const RnnConfig *ca = rnn_model_get_config (a), *cb = rnn_model_get_config (b);
  const float *pa = rnn_model_peek_params (a, NULL);
  const float *pb = rnn_model_peek_params (b, NULL);
  const char *const *ka = rnn_model_get_meta_keys (a);
  const char *const *kb = rnn_model_get_meta_keys (b);
  guint i;

  g_assert_cmpint (ca->cell, ==, cb->cell);
  g_assert_cmpuint (ca->input_size, ==, cb->input_size);
  g_assert_cmpuint (ca->hidden_size, ==, cb->hidden_size);
  g_assert_cmpuint (ca->num_layers, ==, cb->num_layers);
  g_assert_cmpint (!!ca->bidirectional, ==, !!cb->bidirectional);
  g_assert_cmpint (!!ca->has_head, ==, !!cb->has_head);
  g_assert_cmpuint (ca->output_size, ==, cb->output_size);
  g_assert_cmpint (ca->head_activation, ==, cb->head_activation);
  g_assert_cmpint (!!ca->has_input_norm, ==, !!cb->has_input_norm);
  g_assert_cmpuint (ca->frame_size, ==, cb->frame_size);
  g_assert_cmpuint (ca->output_frame_size, ==, cb->output_frame_size);
  g_assert_cmpuint (ca->window, ==, cb->window);
  g_assert_cmpuint (ca->sample_rate, ==, cb->sample_rate);
  g_assert_cmpuint (ca->n_pre, ==, cb->n_pre);
  g_assert_cmpuint (ca->n_post, ==, cb->n_post);
  for (i = 0; i < ca->n_pre; i++) {
    g_assert_cmpuint (ca->pre[i].size, ==, cb->pre[i].size);
    g_assert_cmpint (ca->pre[i].activation, ==, cb->pre[i].activation);
  }
  for (i = 0; i < ca->n_post; i++) {
    g_assert_cmpuint (ca->post[i].size, ==, cb->post[i].size);
    g_assert_cmpint (ca->post[i].activation, ==, cb->post[i].activation);
  }
  g_assert_cmpint (!!ca->has_h0, ==, !!cb->has_h0);
  g_assert_cmpint (!!ca->has_c0, ==, !!cb->has_c0);
  g_assert_cmpuint (ca->skip, ==, cb->skip);

  g_assert_cmpuint (rnn_model_get_n_tensors (a), ==, rnn_model_get_n_tensors (b));
  for (i = 0; i < rnn_model_get_n_tensors (a); i++) {
    const RnnParamInfo *ia = rnn_model_get_tensor_info (a, i);
    const RnnParamInfo *ib = rnn_model_get_tensor_info (b, i);
    g_assert_cmpstr (ia->name, ==, ib->name);
    g_assert_cmpuint (ia->numel, ==, ib->numel);
    /* bitwise */
    g_assert_cmpmem (pa + ia->offset, ia->numel * sizeof (float),
        pb + ib->offset, ib->numel * sizeof (float));
  }
  for (i = 0; ka[i] && kb[i]; i++) {
    g_assert_cmpstr (ka[i], ==, kb[i]);
    g_assert_cmpstr (rnn_model_get_meta (a, ka[i]), ==,
        rnn_model_get_meta (b, kb[i]));
  }
  g_assert_null (ka[i]);
  g_assert_null (kb[i]);
}

static RnnModel *
load_ok (GBytes *bytes)
{
  GError *error = NULL;
  RnnModel *m = rnn_model_load_from_data (g_bytes_get_data (bytes, NULL),
      g_bytes_get_size (bytes), DISPLAY, &error);
  g_assert_no_error (error);
  g_assert_nonnull (m);
  return m;
}

/* A serialized file split into its JSON header and its data region. */
typedef struct {
  char *header;                 /* NUL-terminated, padding included */
  guint8 *data;
  gsize data_len;
} Split;

static Split
split_file (GBytes *bytes)
{
  gsize size;
  const guint8 *p = g_bytes_get_data (bytes, &size);
  guint64 n;
  Split s;

  g_assert_cmpuint (size, >=, 8);
  memcpy (&n, p, 8);
  n = GUINT64_FROM_LE (n);
  g_assert_cmpuint (8 + n, <=, size);
  s.header = g_strndup ((const char *) p + 8, n);
  g_assert_cmpuint (strlen (s.header), ==, n);
  s.data_len = size - 8 - n;
  s.data = g_memdup2 (p + 8 + n, s.data_len);
  return s;
}

static void
split_clear (Split *s)
{
  g_free (s->header);
  g_free (s->data);
}

/* 8-byte length, then @header (no padding added), then @data. */
static GBytes *
assemble_n (const char *header, gsize header_len, const guint8 *data,
    gsize data_len)
{
  gsize total = 8 + header_len + data_len;
  guint8 *buf = g_malloc (total);
  guint64 n = GUINT64_TO_LE ((guint64) header_len);

  memcpy (buf, &n, 8);
  memcpy (buf + 8, header, header_len);
  if (data_len)
    memcpy (buf + 8 + header_len, data, data_len);
  return g_bytes_new_take (buf, total);
}

static GBytes *
assemble (const char *header, const guint8 *data, gsize data_len)
{
  return assemble_n (header, strlen (header), data, data_len);
}

/* @s with the first occurrence of @from replaced by @to; @from must occur. */
static char *
replace_once (const char *s, const char *from, const char *to)
{
  const char *at = strstr (s, from);
  GString *out;

  if (at == NULL)
    g_error ("test bug: \"%s\" not found in header %s", from, s);
  out = g_string_new_len (s, at - s);
  g_string_append (out, to);
  g_string_append (out, at + strlen (from));
  return g_string_free (out, FALSE);
}

/* Byte offset of tensor @name's data within the data region of @bytes. */
static gsize
tensor_data_offset (GBytes *bytes, const char *name)
{
  gsize size;
  const guint8 *p = g_bytes_get_data (bytes, &size);
  GError *error = NULL;
  RnnSafetensors *st = rnn_safetensors_parse (p, size, DISPLAY, &error);
  const RnnStTensor *t;
  guint64 n;
  gsize off;

  g_assert_no_error (error);
  t = rnn_safetensors_find (st, name);
  g_assert_nonnull (t);
  memcpy (&n, p, 8);
  n = GUINT64_FROM_LE (n);
  off = (gsize) (t->data - (p + 8 + n));
  rnn_safetensors_free (st);
  return off;
}

/* ---- the base models ------------------------------------------------------ */

static const char *const base_meta[] = {
  "description", "a test model",
  "train_epochs", "3",
  NULL
};

/* LSTM, 2 layers, head, input normalisation: every optional part. */
static const ModelSpec spec_full = {
  RNN_CELL_LSTM, 3, 4, 2, FALSE, 2, RNN_HEAD_ACT_SOFTMAX, TRUE,
  1, 1, 0, 16000, base_meta
};

/* Bidirectional GRU without head or normalisation, with a window. */
static const ModelSpec spec_bare = {
  RNN_CELL_GRU, 2, 3, 1, TRUE, 0, RNN_HEAD_ACT_NONE, FALSE,
  1, 1, 32, 0, NULL
};

/* Version 2: LSTM, 2 layers, two pre layers, a post layer, a head of one
 * output, h0 and c0, a skip. */
static const RnnConfig extras_v2 = {
  .n_pre = 2, .pre = { { 3, RNN_ACT_TANH }, { 2, RNN_ACT_ELU } },
  .n_post = 1, .post = { { 3, RNN_ACT_RELU } },
  .has_h0 = TRUE, .has_c0 = TRUE, .skip = 1,
};

static const ModelSpec spec_v2 = {
  RNN_CELL_LSTM, 1, 4, 2, FALSE, 1, RNN_HEAD_ACT_NONE, TRUE,
  1, 1, 0, 48000, base_meta, &extras_v2
};

/* serialised spec_full, spec_bare, spec_v2 */
static GBytes *base_bytes[3];

/* ---- round trips ---------------------------------------------------------- */

static void
round_trip (const ModelSpec *spec, guint32 seed)
{
  GError *error = NULL;
  RnnModel *m = make_model (spec, seed), *m2, *m3;
  GBytes *b1 = rnn_model_serialize (m), *b2, *b3;
  gsize size;
  const guint8 *p = g_bytes_get_data (b1, &size);
  guint64 n;
  char *dir, *path, *contents;
  gsize len;
  GDir *d;
  const char *entry;
  guint n_entries = 0;

  /* the header: starts with '{', padded to a multiple of 8 */
  memcpy (&n, p, 8);
  n = GUINT64_FROM_LE (n);
  g_assert_cmpuint (n % 8, ==, 0);
  g_assert_cmpint (p[8], ==, '{');

  /* in memory: load -> equal, serialize -> identical bytes */
  m2 = load_ok (b1);
  assert_models_equal (m, m2);
  b2 = rnn_model_serialize (m2);
  g_assert_true (g_bytes_equal (b1, b2));

  /* through a file */
  dir = g_dir_make_tmp ("test-modelfile-XXXXXX", &error);
  g_assert_no_error (error);
  path = g_build_filename (dir, "model.safetensors", NULL);
  g_assert_true (rnn_model_save (m2, path, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (path, &contents, &len, &error));
  g_assert_no_error (error);
  g_assert_cmpmem (contents, len, p, size);
  g_free (contents);
  m3 = rnn_model_load (path, &error);
  g_assert_no_error (error);
  g_assert_nonnull (m3);
  assert_models_equal (m, m3);
  b3 = rnn_model_serialize (m3);
  g_assert_true (g_bytes_equal (b1, b3));

  /* saving again replaces the file and leaves no temporary behind */
  g_assert_true (rnn_model_save (m3, path, &error));
  g_assert_no_error (error);
  d = g_dir_open (dir, 0, &error);
  g_assert_no_error (error);
  while ((entry = g_dir_read_name (d)) != NULL) {
    g_assert_cmpstr (entry, ==, "model.safetensors");
    n_entries++;
  }
  g_assert_cmpuint (n_entries, ==, 1);
  g_dir_close (d);

  g_assert_cmpint (g_remove (path), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
  g_free (path);
  g_free (dir);
  g_bytes_unref (b1);
  g_bytes_unref (b2);
  g_bytes_unref (b3);
  rnn_model_unref (m);
  rnn_model_unref (m2);
  rnn_model_unref (m3);
}

static void
test_round_trip_lstm_head_norm (void)
{
  round_trip (&spec_full, 1);
}

static void
test_round_trip_gru_bidirectional (void)
{
  ModelSpec s = spec_bare;
  s.num_layers = 2;
  round_trip (&s, 2);
}

static void
test_round_trip_rnn_tanh_bidirectional_head (void)
{
  ModelSpec s = { RNN_CELL_RNN_TANH, 5, 6, 1, TRUE, 3, RNN_HEAD_ACT_SIGMOID,
    FALSE, 1, 1, 100, 48000, NULL };
  round_trip (&s, 3);
}

static void
test_round_trip_rnn_relu_frames (void)
{
  /* frame_size 3 over I = 6, output_frame_size 2 over D*H = 4 */
  ModelSpec s = { RNN_CELL_RNN_RELU, 6, 4, 3, FALSE, 0, RNN_HEAD_ACT_NONE,
    TRUE, 3, 2, 0, 0, NULL };
  round_trip (&s, 4);
}

static void
test_round_trip_v2 (void)
{
  round_trip (&spec_v2, 6);
}

/* Each piece of version 2 alone, and a model without them written as
 * version 1. */
static void
test_round_trip_v2_pieces (void)
{
  const RnnConfig pre = { .n_pre = 1, .pre = { { 5, RNN_ACT_SOFTMAX } } };
  const RnnConfig post = { .n_post = 3, .post = { { 2, RNN_ACT_SIGMOID },
      { 7, RNN_ACT_NONE }, { 4, RNN_ACT_TANH } } };
  const RnnConfig h0 = { .has_h0 = TRUE };
  const RnnConfig skip = { .skip = 1 };
  const RnnConfig *pieces[] = { &pre, &post, &h0, &skip };
  for (guint i = 0; i < G_N_ELEMENTS (pieces); i++) {
    ModelSpec s = spec_bare;
    s.extras = pieces[i];
    s.bidirectional = i != 3;       /* skip: O = 1 */
    if (i == 3) {
      s.hidden_size = 1;
      s.input_size = 1;
    }
    round_trip (&s, 10 + i);
    RnnModel *m = make_model (&s, 20 + i);
    GBytes *b = rnn_model_serialize (m);
    Split sp = split_file (b);
    g_assert_nonnull (strstr (sp.header, "\"version\":\"2\""));
    split_clear (&sp);
    g_bytes_unref (b);
    rnn_model_unref (m);
  }
  RnnModel *m = make_model (&spec_full, 30);
  GBytes *b = rnn_model_serialize (m);
  Split sp = split_file (b);
  g_assert_nonnull (strstr (sp.header, "\"version\":\"1\""));
  g_assert_null (strstr (sp.header, "pre_activations"));
  g_assert_null (strstr (sp.header, "skip"));
  split_clear (&sp);
  g_bytes_unref (b);
  rnn_model_unref (m);
}

/* rnn_config_validate () on the new pieces. */
static void
test_config_v2_validate (void)
{
  RnnConfig c;
  GError *error = NULL;

  rnn_config_init (&c);
  c.cell = RNN_CELL_GRU;
  c.has_h0 = c.has_c0 = TRUE;
  g_assert_false (rnn_config_validate (&c, &error));
  g_assert_nonnull (strstr (error->message, "only for lstm"));
  g_clear_error (&error);

  rnn_config_init (&c);
  c.has_c0 = TRUE;
  g_assert_false (rnn_config_validate (&c, &error));
  g_assert_nonnull (strstr (error->message, "needs an initial hidden state"));
  g_clear_error (&error);

  rnn_config_init (&c);
  c.n_pre = RNN_MAX_DENSE_LAYERS + 1;
  g_assert_false (rnn_config_validate (&c, &error));
  g_assert_nonnull (strstr (error->message, "n_pre"));
  g_clear_error (&error);

  rnn_config_init (&c);
  c.n_post = 1;
  c.post[0].size = 0;
  g_assert_false (rnn_config_validate (&c, &error));
  g_assert_nonnull (strstr (error->message, "post layer 0 has size 0"));
  g_clear_error (&error);

  rnn_config_init (&c);
  c.n_pre = 1;
  c.pre[0].size = 2;
  c.pre[0].activation = (RnnActivation) 17;
  g_assert_false (rnn_config_validate (&c, &error));
  g_assert_nonnull (strstr (error->message, "unknown activation"));
  g_clear_error (&error);

  rnn_config_init (&c);
  c.input_size = 2;
  c.hidden_size = 2;
  c.skip = 2;                       /* O = 2: fine */
  g_assert_true (rnn_config_validate (&c, NULL));
  c.frame_size = 2;
  g_assert_false (rnn_config_validate (&c, &error));
  g_assert_nonnull (strstr (error->message, "frame_size = output_frame_size = 1"));
  g_clear_error (&error);
  c.frame_size = 1;
  c.hidden_size = 3;                /* O = 3: only 1 or 3, and 3 > I */
  g_assert_false (rnn_config_validate (&c, &error));
  g_assert_nonnull (strstr (error->message, "skip = 2"));
  g_clear_error (&error);
  c.skip = 1;
  g_assert_true (rnn_config_validate (&c, NULL));

  g_assert_cmpstr (rnn_activation_to_string (RNN_ACT_ELU), ==, "elu");
  RnnActivation a;
  g_assert_true (rnn_activation_from_string ("softmax", &a));
  g_assert_cmpint (a, ==, RNN_ACT_SOFTMAX);
  g_assert_false (rnn_activation_from_string ("gelu", &a));
}

static void
test_round_trip_metadata (void)
{
  /* strings that need escaping in JSON, non-ASCII, long values, and keys
   * that sort before and after the configuration keys */
  static const char *const meta[] = {
    "description", "quote \" backslash \\ newline \n tab \t bell \x07 end",
    "train_loss", "0.0123",
    "train_pipeline", "audiotestsrc ! rnntrain model-location=x.safetensors",
    "Ünïcødé", "日本語のテキスト 🎵",
    "a", "",
    "zzz", "last",
    NULL
  };
  ModelSpec s = spec_full;
  RnnModel *m, *m2;
  GBytes *b;

  s.meta = meta;
  round_trip (&s, 5);

  m = make_model (&s, 5);
  b = rnn_model_serialize (m);
  m2 = load_ok (b);
  g_assert_cmpstr (rnn_model_get_meta (m2, "description"), ==, meta[1]);
  g_assert_cmpstr (rnn_model_get_meta (m2, "Ünïcødé"), ==, meta[7]);
  g_assert_cmpstr (rnn_model_get_meta (m2, "a"), ==, "");
  g_bytes_unref (b);
  rnn_model_unref (m);
  rnn_model_unref (m2);
}

static void
test_round_trip_deterministic (void)
{
  /* same model, same bytes; the tensor order in the file is fixed */
  RnnModel *a = make_model (&spec_full, 9), *b = make_model (&spec_full, 9);
  GBytes *ba = rnn_model_serialize (a), *bb = rnn_model_serialize (b);
  Split s = split_file (ba);
  const char *prev = NULL;

  g_assert_true (g_bytes_equal (ba, bb));
  g_assert_true (g_str_has_prefix (s.header,
          "{\"__metadata__\":{\"format\":\"gst-rnn\",\"version\":\"1\","
          "\"cell\":\"lstm\",\"input_size\":\"3\",\"hidden_size\":\"4\","
          "\"num_layers\":\"2\",\"bidirectional\":\"false\","
          "\"head_activation\":\"softmax\",\"frame_size\":\"1\","
          "\"output_frame_size\":\"1\",\"sample_rate\":\"16000\","
          "\"description\":\"a test model\",\"train_epochs\":\"3\"},"
          "\"rnn.weight_ih_l0\":{\"dtype\":\"F32\",\"shape\":[16,3],"
          "\"data_offsets\":[0,192]},"));
  /* tensors follow RnnParamInfo order */
  for (guint i = 0; i < rnn_model_get_n_tensors (a); i++) {
    char *needle = g_strdup_printf ("\"%s\":{",
        rnn_model_get_tensor_info (a, i)->name);
    const char *at = strstr (s.header, needle);
    g_assert_nonnull (at);
    g_assert_true (prev == NULL || at > prev);
    prev = at;
    g_free (needle);
  }
  split_clear (&s);
  g_bytes_unref (ba);
  g_bytes_unref (bb);
  rnn_model_unref (a);
  rnn_model_unref (b);
}

/* A file whose tensors are stored in another order (as other writers do,
 * e.g. sorted by name) and whose header is not padded loads the same. */
static void
test_load_any_order (void)
{
  RnnModel *m = make_model (&spec_full, 11), *m2;
  GBytes *b = rnn_model_serialize (m), *b2;
  Split s = split_file (b);
  GString *h = g_string_new (NULL);
  GByteArray *data = g_byte_array_new ();
  const char *meta_end = strstr (s.header, "},\"rnn.");
  guint n = rnn_model_get_n_tensors (m);
  gsize size;
  const guint8 *p = g_bytes_get_data (b, &size);
  RnnSafetensors *st = rnn_safetensors_parse (p, size, DISPLAY, NULL);

  g_assert_nonnull (meta_end);
  g_assert_nonnull (st);
  g_string_append_len (h, s.header, meta_end + 1 - s.header);
  for (guint k = n; k-- > 0;) {
    const RnnStTensor *t = rnn_safetensors_find (st,
        rnn_model_get_tensor_info (m, k)->name);
    g_string_append_printf (h, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%"
        G_GUINT64_FORMAT, t->name, t->shape[0]);
    if (t->ndim == 2)
      g_string_append_printf (h, ",%" G_GUINT64_FORMAT, t->shape[1]);
    g_string_append_printf (h, "],\"data_offsets\":[%u,%" G_GSIZE_FORMAT
        "]}", data->len, data->len + t->nbytes);
    g_byte_array_append (data, t->data, t->nbytes);
  }
  g_string_append (h, "}");
  b2 = assemble (h->str, data->data, data->len);
  m2 = load_ok (b2);
  assert_models_equal (m, m2);

  rnn_safetensors_free (st);
  g_bytes_unref (b2);
  g_byte_array_unref (data);
  g_string_free (h, TRUE);
  split_clear (&s);
  g_bytes_unref (b);
  rnn_model_unref (m);
  rnn_model_unref (m2);
}

/* ---- dtype conversion ------------------------------------------------------ */

typedef gsize (*EncodeFunc) (float *model_value, guint8 *out, guint32 *rng,
    gboolean positive);

/* A file of @m's configuration and metadata with every tensor stored as
 * @dtype; each value is drawn by @encode, which also sets the model's value
 * to the exact float the file holds. */
static GBytes *
encode_as (RnnModel *m, const char *dtype, gsize esize, EncodeFunc encode)
{
  GBytes *b = rnn_model_serialize (m), *out;
  Split s = split_file (b);
  const char *meta_end = strstr (s.header, "},\"rnn.");
  GString *h = g_string_new (NULL);
  GByteArray *data = g_byte_array_new ();
  float *p = rnn_model_get_params (m, NULL);
  guint32 rng = 777;

  g_assert_nonnull (meta_end);
  g_string_append_len (h, s.header, meta_end + 1 - s.header);
  for (guint i = 0; i < rnn_model_get_n_tensors (m); i++) {
    const RnnParamInfo *info = rnn_model_get_tensor_info (m, i);
    gboolean positive = strcmp (info->name, "input.std") == 0;
    guint off = data->len;
    for (gsize j = 0; j < info->numel; j++) {
      guint8 buf[8];
      g_assert_cmpuint (encode (&p[info->offset + j], buf, &rng, positive), ==,
          esize);
      g_byte_array_append (data, buf, (guint) esize);
    }
    g_string_append_printf (h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%"
        G_GSIZE_FORMAT, info->name, dtype, info->shape[0]);
    if (info->ndim == 2)
      g_string_append_printf (h, ",%" G_GSIZE_FORMAT, info->shape[1]);
    g_string_append_printf (h, "],\"data_offsets\":[%u,%u]}", off, data->len);
  }
  g_string_append_c (h, '}');
  out = assemble (h->str, data->data, data->len);
  g_string_free (h, TRUE);
  g_byte_array_unref (data);
  split_clear (&s);
  g_bytes_unref (b);
  return out;
}

static gsize
encode_f16 (float *v, guint8 *out, guint32 *rng, gboolean positive)
{
  guint16 h = (guint16) rng_next (rng);
  guint sign, exp, mant;
  float f;

  if (positive)
    h = 0x3c00 | (h & 0x3ff);           /* [1, 2) */
  else if (((h >> 10) & 0x1f) == 0x1f)
    h &= ~(guint16) 0x4000;             /* finite only */
  sign = h >> 15;
  exp = (h >> 10) & 0x1f;
  mant = h & 0x3ff;
  /* reference: the definition of binary16, via ldexp */
  f = exp == 0 ? ldexpf ((float) mant, -24)
      : ldexpf ((float) (1024 + mant), (int) exp - 25);
  *v = sign ? -f : f;
  h = GUINT16_TO_LE (h);
  memcpy (out, &h, 2);
  return 2;
}

static gsize
encode_bf16 (float *v, guint8 *out, guint32 *rng, gboolean positive)
{
  guint16 h = (guint16) rng_next (rng);
  guint32 bits;

  if (positive)
    h = 0x3f80 | (h & 0x7f);            /* [1, 2) */
  else if (((h >> 7) & 0xff) == 0xff)
    h &= ~(guint16) 0x4000;
  bits = (guint32) h << 16;
  memcpy (v, &bits, 4);
  h = GUINT16_TO_LE (h);
  memcpy (out, &h, 2);
  return 2;
}

static gsize
encode_f64 (float *v, guint8 *out, guint32 *rng, gboolean positive)
{
  double d = (double) rng_float (rng) + (double) rng_float (rng) * 1e-9;
  guint64 u;

  if (positive)
    d = fabs (d) + 0.5;
  *v = (float) d;
  memcpy (&u, &d, 8);
  u = GUINT64_TO_LE (u);
  memcpy (out, &u, 8);
  return 8;
}

static void
check_conversion (const char *dtype, gsize esize, EncodeFunc encode)
{
  RnnModel *m = make_model (&spec_full, 21), *m2;
  GBytes *file = encode_as (m, dtype, esize, encode);
  GBytes *b1, *b2;

  m2 = load_ok (file);
  assert_models_equal (m, m2);
  /* and it saves as F32 like any other model */
  b1 = rnn_model_serialize (m);
  b2 = rnn_model_serialize (m2);
  g_assert_true (g_bytes_equal (b1, b2));
  g_bytes_unref (b1);
  g_bytes_unref (b2);
  g_bytes_unref (file);
  rnn_model_unref (m);
  rnn_model_unref (m2);
}

static void
test_convert_f16 (void)
{
  check_conversion ("F16", 2, encode_f16);
}

static void
test_convert_bf16 (void)
{
  check_conversion ("BF16", 2, encode_bf16);
}

static void
test_convert_f64 (void)
{
  check_conversion ("F64", 8, encode_f64);
}

/* One raw tensor "x" of @dtype holding @nbytes, in a bare safetensors file. */
static GBytes *
one_tensor_file (const char *dtype, guint n, const void *bytes, gsize nbytes)
{
  char *h = g_strdup_printf ("{\"__metadata__\":{\"k\":\"v\"},\"x\":{\"dtype\":"
      "\"%s\",\"shape\":[%u],\"data_offsets\":[0,%" G_GSIZE_FORMAT "]}}",
      dtype, n, nbytes);
  GBytes *b = assemble (h, bytes, nbytes);
  g_free (h);
  return b;
}

static void
test_convert_special_values (void)
{
  /* F16: +-0, the smallest subnormal, the largest normal, +inf, NaN */
  static const guint16 h[] = { 0x0000, 0x8000, 0x0001, 0x7bff, 0x7c00, 0xfe00 };
  guint8 raw[sizeof h];
  float out[G_N_ELEMENTS (h)];
  GError *error = NULL;
  GBytes *b;
  RnnSafetensors *st;
  double d[2];

  for (guint i = 0; i < G_N_ELEMENTS (h); i++) {
    guint16 le = GUINT16_TO_LE (h[i]);
    memcpy (raw + 2 * i, &le, 2);
  }
  b = one_tensor_file ("F16", G_N_ELEMENTS (h), raw, sizeof raw);
  st = rnn_safetensors_parse (g_bytes_get_data (b, NULL), g_bytes_get_size (b),
      DISPLAY, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (rnn_safetensors_get_meta (st, "k"), ==, "v");
  g_assert_null (rnn_safetensors_get_meta (st, "nope"));
  g_assert_true (rnn_safetensors_read_f32 (rnn_safetensors_find (st, "x"),
          out, &error));
  g_assert_no_error (error);
  g_assert_true (out[0] == 0.0f && !signbit (out[0]));
  g_assert_true (out[1] == 0.0f && signbit (out[1]));
  g_assert_cmpfloat (out[2], ==, ldexpf (1.0f, -24));
  g_assert_cmpfloat (out[3], ==, 65504.0f);
  g_assert_true (isinf (out[4]) && out[4] > 0);
  g_assert_true (isnan (out[5]));
  rnn_safetensors_free (st);
  g_bytes_unref (b);

  /* F64 beyond the float range is refused; the largest float is not */
  d[0] = (double) FLT_MAX;
  d[1] = 1e39;
  for (guint i = 0; i < 2; i++) {
    guint64 u;
    memcpy (&u, &d[i], 8);
    u = GUINT64_TO_LE (u);
    memcpy (&d[i], &u, 8);
  }
  b = one_tensor_file ("F64", 2, d, sizeof d);
  st = rnn_safetensors_parse (g_bytes_get_data (b, NULL), g_bytes_get_size (b),
      DISPLAY, &error);
  g_assert_no_error (error);
  g_assert_false (rnn_safetensors_read_f32 (rnn_safetensors_find (st, "x"),
          out, &error));
  g_assert_error (error, RNN_ERROR, RNN_ERROR_TENSOR);
  g_assert_nonnull (strstr (error->message, "float32 range"));
  g_assert_nonnull (strstr (error->message, "index 1"));
  g_assert_cmpfloat (out[0], ==, FLT_MAX);
  g_clear_error (&error);
  rnn_safetensors_free (st);
  g_bytes_unref (b);
}

static void
test_safetensors_raw (void)
{
  /* dtypes the parser knows but cannot convert; a zero-size tensor; the
   * tensors come back sorted by offset; data is copied out unaligned */
  static const char header[] =
      "{\"b\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[4,20]},"
      "\"e\":{\"dtype\":\"F32\",\"shape\":[0, 5],\"data_offsets\":[20,20]},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      "\"c\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[20,23]},"
      "\"d\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[23,24]}} ";
  guint8 data[24] = { 0 };
  float one = 1.5f, out[1];
  guint32 u;
  GError *error = NULL;
  GBytes *b;
  RnnSafetensors *st;
  const RnnStTensor *t;

  memcpy (&u, &one, 4);
  u = GUINT32_TO_LE (u);
  memcpy (data, &u, 4);
  b = assemble (header, data, sizeof data);     /* header length is odd */
  g_assert_cmpuint (strlen (header) % 2, ==, 1);
  st = rnn_safetensors_parse (g_bytes_get_data (b, NULL), g_bytes_get_size (b),
      DISPLAY, &error);
  g_assert_no_error (error);
  g_assert_nonnull (st);
  g_assert_cmpuint (rnn_safetensors_get_n_tensors (st), ==, 5);
  g_assert_cmpstr (rnn_safetensors_get_tensor (st, 0)->name, ==, "a");
  g_assert_cmpstr (rnn_safetensors_get_tensor (st, 1)->name, ==, "b");
  g_assert_null (rnn_safetensors_get_meta (st, "format"));
  t = rnn_safetensors_find (st, "a");
  g_assert_cmpint (t->dtype, ==, RNN_DTYPE_F32);
  g_assert_true (rnn_safetensors_read_f32 (t, out, &error));
  g_assert_cmpfloat (out[0], ==, 1.5f);
  t = rnn_safetensors_find (st, "b");
  g_assert_cmpint (t->dtype, ==, RNN_DTYPE_OTHER);
  g_assert_cmpstr (t->dtype_name, ==, "I64");
  g_assert_cmpuint (t->numel, ==, 2);
  g_assert_cmpuint (t->nbytes, ==, 16);
  g_assert_false (rnn_safetensors_read_f32 (t, out, &error));
  g_assert_error (error, RNN_ERROR, RNN_ERROR_TENSOR);
  g_assert_nonnull (strstr (error->message, "I64"));
  g_clear_error (&error);
  t = rnn_safetensors_find (st, "e");
  g_assert_cmpuint (t->ndim, ==, 2);
  g_assert_cmpuint (t->numel, ==, 0);
  g_assert_true (rnn_safetensors_read_f32 (t, NULL, &error));
  g_assert_cmpuint (rnn_safetensors_find (st, "d")->nbytes, ==, 1);
  g_assert_null (rnn_safetensors_find (st, "zz"));
  rnn_safetensors_free (st);
  g_bytes_unref (b);

  /* the smallest valid file: "{}" and no data */
  b = assemble ("{}", NULL, 0);
  st = rnn_safetensors_parse (g_bytes_get_data (b, NULL), g_bytes_get_size (b),
      DISPLAY, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (rnn_safetensors_get_n_tensors (st), ==, 0);
  rnn_safetensors_free (st);
  g_bytes_unref (b);
}

/* ---- files on disk --------------------------------------------------------- */

static void
test_file_errors (void)
{
  GError *error = NULL;
  char *dir = g_dir_make_tmp ("test-modelfile-XXXXXX", &error);
  char *missing, *bad, *nodir;
  RnnModel *m;

  g_assert_no_error (error);

  /* a missing file: IO, naming the path */
  missing = g_build_filename (dir, "missing.safetensors", NULL);
  g_assert_null (rnn_model_load (missing, &error));
  g_assert_error (error, RNN_ERROR, RNN_ERROR_IO);
  g_assert_true (g_str_has_prefix (error->message, missing));
  g_assert_nonnull (strstr (error->message, "No such file"));
  g_test_message ("%s", error->message);
  g_clear_error (&error);

  /* a directory */
  g_assert_null (rnn_model_load (dir, &error));
  g_assert_error (error, RNN_ERROR, RNN_ERROR_IO);
  g_assert_true (g_str_has_prefix (error->message, dir));
  g_clear_error (&error);

  /* a broken file on disk: the message names the path */
  bad = g_build_filename (dir, "bad.safetensors", NULL);
  g_assert_true (g_file_set_contents (bad, "\x10\0\0\0\0\0\0\0{}", 10, NULL));
  g_assert_null (rnn_model_load (bad, &error));
  g_assert_error (error, RNN_ERROR, RNN_ERROR_FORMAT);
  g_assert_true (g_str_has_prefix (error->message, bad));
  g_clear_error (&error);
  g_assert_cmpint (g_remove (bad), ==, 0);

  /* saving into a directory that does not exist */
  m = make_model (&spec_full, 31);
  nodir = g_build_filename (dir, "nodir", "model.safetensors", NULL);
  g_assert_false (rnn_model_save (m, nodir, &error));
  g_assert_error (error, RNN_ERROR, RNN_ERROR_IO);
  g_assert_true (g_str_has_prefix (error->message, nodir));
  g_clear_error (&error);

  /* saving a model with a non-finite weight or a non-positive std is
   * refused and writes nothing */
  rnn_model_get_params (m, NULL)[rnn_model_get_tensor_info (m, 1)->offset + 2]
      = NAN;
  g_assert_false (rnn_model_save (m, bad, &error));
  g_assert_error (error, RNN_ERROR, RNN_ERROR_TENSOR);
  g_assert_nonnull (strstr (error->message, "rnn.weight_hh_l0"));
  g_clear_error (&error);
  g_assert_false (g_file_test (bad, G_FILE_TEST_EXISTS));
  rnn_model_unref (m);

  m = make_model (&spec_full, 32);
  rnn_model_get_params (m, NULL)[rnn_model_get_tensor_info (m,
          (guint) rnn_model_find_tensor (m, "input.std"))->offset] = 0.0f;
  g_assert_false (rnn_model_save (m, bad, &error));
  g_assert_error (error, RNN_ERROR, RNN_ERROR_TENSOR);
  g_assert_nonnull (strstr (error->message, "input.std"));
  g_clear_error (&error);
  g_assert_false (g_file_test (bad, G_FILE_TEST_EXISTS));
  rnn_model_unref (m);

  g_assert_cmpint (g_rmdir (dir), ==, 0);
  g_free (nodir);
  g_free (bad);
  g_free (missing);
  g_free (dir);
}

/* ---- malformed files -------------------------------------------------------- */

typedef struct _Case Case;
struct _Case {
  const char *name;
  guint base;                   /* 0: spec_full, 1: spec_bare */
  /* header surgery: replace @from by @to, then append @append zero bytes */
  const char *from;
  const char *to;
  gsize append;
  /* or a custom builder */
  GBytes *(*build) (const Case *c, GBytes *base);
  RnnError code;
  const char *keyword;
};

static GBytes *
build_replace (const Case *c, GBytes *base)
{
  Split s = split_file (base);
  char *h = replace_once (s.header, c->from, c->to);
  GBytes *b;

  s.data = g_realloc (s.data, s.data_len + c->append);
  memset (s.data + s.data_len, 0, c->append);
  b = assemble (h, s.data, s.data_len + c->append);
  g_free (h);
  split_clear (&s);
  return b;
}

static GBytes *
truncate_to (GBytes *base, gsize size)
{
  g_assert_cmpuint (size, <=, g_bytes_get_size (base));
  return g_bytes_new (g_bytes_get_data (base, NULL), size);
}

static GBytes *
build_truncated_0 (const Case *c, GBytes *base)
{
  return truncate_to (base, 0);
}

static GBytes *
build_truncated_7 (const Case *c, GBytes *base)
{
  return truncate_to (base, 7);
}

static GBytes *
build_truncated_header (const Case *c, GBytes *base)
{
  return truncate_to (base, 8 + 100);
}

static GBytes *
build_truncated_data (const Case *c, GBytes *base)
{
  return truncate_to (base, g_bytes_get_size (base) - 1);
}

static GBytes *
build_truncated_half (const Case *c, GBytes *base)
{
  Split s = split_file (base);
  gsize at = 8 + strlen (s.header) + s.data_len / 2;
  split_clear (&s);
  return truncate_to (base, at);
}

/* The base file with its 8-byte header length replaced by @n. */
static GBytes *
with_header_length (GBytes *base, guint64 n)
{
  gsize size;
  guint8 *p = g_bytes_unref_to_data (g_bytes_ref (base), &size);

  n = GUINT64_TO_LE (n);
  memcpy (p, &n, 8);
  return g_bytes_new_take (p, size);
}

static GBytes *
build_len_zero (const Case *c, GBytes *base)
{
  return with_header_length (base, 0);
}

static GBytes *
build_len_max (const Case *c, GBytes *base)
{
  return with_header_length (base, G_MAXUINT64);
}

static GBytes *
build_len_limit (const Case *c, GBytes *base)
{
  return with_header_length (base, 100000001);
}

static GBytes *
build_len_past_end (const Case *c, GBytes *base)
{
  return with_header_length (base, g_bytes_get_size (base) - 8 + 1);
}

static GBytes *
build_len_short (const Case *c, GBytes *base)
{
  /* the header stops before its closing brace */
  Split s = split_file (base);
  gsize n = (gsize) (strrchr (s.header, '}') - s.header);
  split_clear (&s);
  return with_header_length (base, n);
}

static GBytes *
build_len_long (const Case *c, GBytes *base)
{
  /* the header swallows the first data bytes */
  Split s = split_file (base);
  gsize n = strlen (s.header) + 4;
  split_clear (&s);
  return with_header_length (base, n);
}

/* The base file with float @index of tensor @name set to @v. */
static GBytes *
with_value (GBytes *base, const char *name, gsize index, float v)
{
  gsize off = tensor_data_offset (base, name);
  Split s = split_file (base);
  guint32 u;
  GBytes *b;

  memcpy (&u, &v, 4);
  u = GUINT32_TO_LE (u);
  memcpy (s.data + off + 4 * index, &u, 4);
  b = assemble (s.header, s.data, s.data_len);
  split_clear (&s);
  return b;
}

static GBytes *
build_nan_pre (const Case *c, GBytes *base)
{
  return with_value (base, "pre.1.bias", 1, NAN);
}

static GBytes *
build_inf_h0 (const Case *c, GBytes *base)
{
  return with_value (base, "rnn.h0", 3, INFINITY);
}

static GBytes *
build_nan (const Case *c, GBytes *base)
{
  return with_value (base, "rnn.weight_hh_l1", 5, NAN);
}

static GBytes *
build_inf (const Case *c, GBytes *base)
{
  return with_value (base, "head.weight", 7, -INFINITY);
}

static GBytes *
build_std_zero (const Case *c, GBytes *base)
{
  return with_value (base, "input.std", 1, 0.0f);
}

static GBytes *
build_std_negative (const Case *c, GBytes *base)
{
  return with_value (base, "input.std", 2, -0.5f);
}

static GBytes *
build_std_nan (const Case *c, GBytes *base)
{
  return with_value (base, "input.std", 0, NAN);
}

static GBytes *
build_trailing (const Case *c, GBytes *base)
{
  Split s = split_file (base);
  GBytes *b;

  s.data = g_realloc (s.data, s.data_len + c->append);
  memset (s.data + s.data_len, 0xab, c->append);
  b = assemble (s.header, s.data, s.data_len + c->append);
  split_clear (&s);
  return b;
}

static GBytes *
build_header_array (const Case *c, GBytes *base)
{
  return assemble ("[1]", NULL, 0);
}

static GBytes *
build_header_leading_space (const Case *c, GBytes *base)
{
  Split s = split_file (base);
  char *h = g_strconcat (" ", s.header, NULL);
  GBytes *b = assemble (h, s.data, s.data_len);
  g_free (h);
  split_clear (&s);
  return b;
}

static GBytes *
build_two_objects (const Case *c, GBytes *base)
{
  Split s = split_file (base);
  char *h = g_strconcat (s.header, " {}", NULL);
  GBytes *b = assemble (h, s.data, s.data_len);
  g_free (h);
  split_clear (&s);
  return b;
}

static GBytes *
build_deep (const Case *c, GBytes *base)
{
  GString *h = g_string_new ("{\"a\":");
  GBytes *b;

  for (int i = 0; i < 100000; i++)
    g_string_append_c (h, '[');
  for (int i = 0; i < 100000; i++)
    g_string_append_c (h, ']');
  g_string_append_c (h, '}');
  b = assemble (h->str, NULL, 0);
  g_string_free (h, TRUE);
  return b;
}

static GBytes *
build_no_metadata (const Case *c, GBytes *base)
{
  Split s = split_file (base);
  const char *rest = strstr (s.header, "},\"rnn.");
  char *h;
  GBytes *b;

  g_assert_nonnull (rest);
  h = g_strconcat ("{", rest + 2, NULL);
  b = assemble (h, s.data, s.data_len);
  g_free (h);
  split_clear (&s);
  return b;
}

static GBytes *
build_empty_header (const Case *c, GBytes *base)
{
  return assemble ("{}", NULL, 0);
}

#define R(n, f, t, code, kw) { n, 0, f, t, 0, NULL, RNN_ERROR_##code, kw }
#define RB(n, f, t, code, kw) { n, 1, f, t, 0, NULL, RNN_ERROR_##code, kw }
#define RA(n, f, t, a, code, kw) { n, 0, f, t, a, NULL, RNN_ERROR_##code, kw }
#define B(n, fn, code, kw) { n, 0, NULL, NULL, 0, fn, RNN_ERROR_##code, kw }
#define BA(n, fn, a, code, kw) { n, 0, NULL, NULL, a, fn, RNN_ERROR_##code, kw }
#define R2(n, f, t, code, kw) { n, 2, f, t, 0, NULL, RNN_ERROR_##code, kw }
#define B2(n, fn, code, kw) { n, 2, NULL, NULL, 0, fn, RNN_ERROR_##code, kw }

#define HS "\"hidden_size\":\"4\""
#define W0 "\"rnn.weight_ih_l0\":{\"dtype\":\"F32\",\"shape\":[16,3],\"data_offsets\":[0,192]}"
#define STD "\"input.std\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[1268,1280]}"
#define DESC "\"description\":\"a test model\""

static const Case cases[] = {
  /* the container */
  B ("truncated-empty", build_truncated_0, FORMAT, "too short"),
  B ("truncated-7", build_truncated_7, FORMAT, "too short"),
  B ("truncated-in-header", build_truncated_header, FORMAT, "runs past the end"),
  B ("truncated-in-data", build_truncated_half, FORMAT, "past the end"),
  B ("truncated-last-byte", build_truncated_data, FORMAT, "past the end"),
  B ("header-length-zero", build_len_zero, FORMAT, "header length is 0"),
  B ("header-length-2^64-1", build_len_max, FORMAT, "exceeds the limit"),
  B ("header-length-over-limit", build_len_limit, FORMAT, "exceeds the limit"),
  B ("header-length-past-end", build_len_past_end, FORMAT, "runs past the end"),
  B ("header-length-short", build_len_short, FORMAT, "not valid JSON"),
  B ("header-length-long", build_len_long, FORMAT, "not valid"),
  BA ("trailing-bytes", build_trailing, 4, FORMAT, "4 trailing bytes"),
  BA ("trailing-byte", build_trailing, 1, FORMAT, "1 trailing bytes"),

  /* the header's text */
  R ("invalid-utf8", DESC, "\"description\":\"a test \xff model\"", FORMAT, "UTF-8"),
  R ("invalid-utf8-overlong", DESC, "\"description\":\"a \xc0\xaf model\"", FORMAT, "UTF-8"),
  R ("invalid-json", "\"format\":", "\"format\";", FORMAT, "not valid JSON"),
  R ("json-comment", "{\"__metadata__\"", "{/* c */\"__metadata__\"", FORMAT, "not valid JSON"),
  R ("json-line-comment", "{\"__metadata__\"", "{// c\n\"__metadata__\"", FORMAT, "not valid JSON"),
  R ("json-trailing-comma", "\"shape\":[16,3]", "\"shape\":[16,3,]", FORMAT, "not valid JSON"),
  R ("json-single-quotes", "\"format\":\"gst-rnn\"", "'format':\"gst-rnn\"", FORMAT, "not valid JSON"),
  R ("json-invalid-escape", DESC, "\"description\":\"a \\x41 model\"", FORMAT, "invalid escape"),
  R ("json-lone-surrogate", DESC, "\"description\":\"a \\ud800 model\"", FORMAT, "surrogate"),
  R ("json-nul-escape", DESC, "\"description\":\"a \\u0000 model\"", FORMAT, "NUL"),
  R ("json-raw-control", DESC, "\"description\":\"a \t model\"", FORMAT, "control character"),
  R ("json-leading-zero", "\"shape\":[16,3]", "\"shape\":[16,03]", FORMAT, "leading zero"),
  R ("json-hex-number", "\"shape\":[16,3]", "\"shape\":[16,0x3]", FORMAT, "not valid JSON"),
  R ("json-unterminated", "}}", "}", FORMAT, "not valid JSON"),
  B ("json-two-objects", build_two_objects, FORMAT, "after the header object"),
  B ("json-too-deep", build_deep, FORMAT, "nested"),
  B ("header-not-object", build_header_array, FORMAT, "does not start with '{'"),
  B ("header-leading-space", build_header_leading_space, FORMAT, "does not start with '{'"),

  /* the header's structure */
  R ("dtype-unknown-F33", "\"dtype\":\"F32\"", "\"dtype\":\"F33\"", FORMAT, "unknown dtype \"F33\""),
  R ("dtype-unknown-lowercase", "\"dtype\":\"F32\"", "\"dtype\":\"f32\"", FORMAT, "unknown dtype"),
  R ("dtype-not-string", "\"dtype\":\"F32\"", "\"dtype\":32", FORMAT, "dtype is 32"),
  R ("dtype-I64-size", "\"rnn.bias_hh_l1\":{\"dtype\":\"F32\"", "\"rnn.bias_hh_l1\":{\"dtype\":\"I64\"", FORMAT, "needs 128 bytes"),
  R ("dtype-I32", "\"rnn.bias_hh_l1\":{\"dtype\":\"F32\"", "\"rnn.bias_hh_l1\":{\"dtype\":\"I32\"", TENSOR, "cannot be converted"),
  R ("tensor-not-object", "\"rnn.bias_hh_l1\":{\"dtype\":\"F32\",\"shape\":[16],\"data_offsets\":[1152,1216]}", "\"rnn.bias_hh_l1\":5", FORMAT, "expected an object"),
  R ("tensor-unknown-key", "\"shape\":[16,3],", "\"shape\":[16,3],\"foo\":1,", FORMAT, "unknown key \"foo\""),
  R ("tensor-missing-key", "{\"dtype\":\"F32\",\"shape\":[16,3]", "{\"shape\":[16,3]", FORMAT, "has no \"dtype\""),
  R ("offsets-out-of-range", STD, "\"input.std\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[5268,5280]}", FORMAT, "past the end of the data region"),
  R ("offsets-overlap", "\"data_offsets\":[512,576]", "\"data_offsets\":[448,512]", FORMAT, "overlaps"),
  RA ("offsets-gap", "\"data_offsets\":[1268,1280]", "\"data_offsets\":[1272,1284]", 4, FORMAT, "gap of 4 bytes"),
  R ("offsets-begin-after-end", "\"data_offsets\":[1268,1280]", "\"data_offsets\":[1280,1268]", FORMAT, "begin > end"),
  R ("offsets-three", "\"data_offsets\":[1268,1280]", "\"data_offsets\":[1268,1280,1280]", FORMAT, "expected 2"),
  R ("offsets-negative", "\"data_offsets\":[0,192]", "\"data_offsets\":[-1,192]", FORMAT, "data_offsets[0] is -1"),
  R ("offsets-double", "\"data_offsets\":[0,192]", "\"data_offsets\":[0.0,192]", FORMAT, "data_offsets[0] is 0.0 (not an integer)"),
  R ("offsets-string", "\"data_offsets\":[0,192]", "\"data_offsets\":[\"0\",192]", FORMAT, "non-negative integer"),
  R ("shape-overflow", "\"shape\":[16,3]", "\"shape\":[4294967296,4294967296,16]", FORMAT, "overflows"),
  R ("shape-negative", "\"shape\":[16,3]", "\"shape\":[-16,3]", FORMAT, "shape[0] is -16"),
  R ("shape-double", "\"shape\":[16,3]", "\"shape\":[16,3.0]", FORMAT, "shape[1] is 3.0 (not an integer)"),
  R ("shape-exponent", "\"shape\":[16,3]", "\"shape\":[16,3e0]", FORMAT, "not an integer"),
  R ("shape-string", "\"shape\":[16,3]", "\"shape\":[\"16\",3]", FORMAT, "the string \"16\""),
  R ("shape-not-array", "\"shape\":[16,3]", "\"shape\":48", FORMAT, "expected an array"),
  R ("shape-int-beyond-int64", "\"shape\":[16,3]", "\"shape\":[18446744073709551616,3]", FORMAT, "too large for 64 bits"),
  R ("shape-nine-dims", "\"shape\":[16,3]", "\"shape\":[16,3,1,1,1,1,1,1,1]", FORMAT, "at most 8"),
  R ("shape-size-mismatch", "\"shape\":[16,3]", "\"shape\":[16,4]", FORMAT, "needs 256 bytes"),
  R ("tensor-duplicate", "," STD, ",\"head.bias\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}," STD, FORMAT, "duplicate tensor name \"head.bias\""),
  R ("tensor-duplicate-escaped", "," STD, ",\"\\u0068ead.bias\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}," STD, FORMAT, "duplicate tensor name"),
  R ("metadata-duplicate-key", "\"format\":\"gst-rnn\",", "\"format\":\"gst-rnn\",\"format\":\"gst-rnn\",", FORMAT, "duplicate key \"format\""),
  R ("metadata-twice", "{\"__metadata__\":{", "{\"__metadata__\":{},\"__metadata__\":{", FORMAT, "duplicate __metadata__"),
  R ("metadata-value-not-string", HS, "\"hidden_size\":4", FORMAT, "expected a string"),
  R ("metadata-value-null", DESC, "\"description\":null", FORMAT, "expected a string"),
  R ("metadata-not-object", "{\"__metadata__\":{", "{\"__metadata__\":\"x\",\"zz\":{", FORMAT, "__metadata__ is the string"),

  /* tensors against the configuration */
  R ("shape-vs-metadata", HS, "\"hidden_size\":\"5\"", TENSOR, "tensor rnn.weight_ih_l0 has shape [16, 3], expected [20, 3]"),
  R ("layers-vs-tensors", "\"num_layers\":\"2\"", "\"num_layers\":\"1\"", TENSOR, "unexpected tensor \"rnn.weight_ih_l1\""),
  R ("tensor-missing", "\"rnn.bias_hh_l1\":", "\"rnn.bias_hh_l9\":", TENSOR, "tensor rnn.bias_hh_l1 is missing"),
  RA ("tensor-extra", "," STD, ",\"extra.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1280,1284]}," STD, 4, TENSOR, "unexpected tensor \"extra.weight\""),
  R ("head-weight-without-bias", "\"head.bias\":", "\"head.bias_\":", TENSOR, "head.bias is missing"),
  R ("norm-mean-without-std", "\"input.std\":", "\"input.stx\":", TENSOR, "input.std is missing"),
  R ("head-bias-2d", "\"head.bias\":{\"dtype\":\"F32\",\"shape\":[2]", "\"head.bias\":{\"dtype\":\"F32\",\"shape\":[1,2]", TENSOR, "head.bias has shape [1, 2]"),
  B ("nan-weight", build_nan, TENSOR, "tensor rnn.weight_hh_l1 has a non-finite value (nan) at index 5"),
  B ("inf-weight", build_inf, TENSOR, "tensor head.weight has a non-finite value (-inf) at index 7"),
  B ("std-zero", build_std_zero, TENSOR, "input.std has value 0 at index 1"),
  B ("std-negative", build_std_negative, TENSOR, "input.std has value -0.5 at index 2"),
  B ("std-nan", build_std_nan, TENSOR, "input.std has a non-finite value"),

  /* metadata */
  B ("no-metadata", build_no_metadata, METADATA, "no __metadata__"),
  B ("empty-header", build_empty_header, METADATA, "no __metadata__"),
  R ("format-missing", "\"format\":", "\"formax\":", METADATA, "\"format\" is missing"),
  R ("format-wrong", "\"format\":\"gst-rnn\"", "\"format\":\"gst-rnx\"", METADATA, "format is \"gst-rnx\""),
  R ("version-wrong", "\"version\":\"1\"", "\"version\":\"3\"", METADATA, "version is \"3\""),
  R ("version-missing", "\"version\":", "\"versio\":", METADATA, "\"version\" is missing"),
  R ("hidden-size-missing", "\"hidden_size\":", "\"hidden_sizf\":", METADATA, "\"hidden_size\" is missing"),
  R ("hidden-size-negative", HS, "\"hidden_size\":\"-1\"", METADATA, "hidden_size is \"-1\""),
  R ("hidden-size-exponent", HS, "\"hidden_size\":\"1e9\"", METADATA, "hidden_size is \"1e9\""),
  R ("hidden-size-word", HS, "\"hidden_size\":\"x\"", METADATA, "hidden_size is \"x\""),
  R ("hidden-size-empty", HS, "\"hidden_size\":\"\"", METADATA, "hidden_size is \"\""),
  R ("hidden-size-space", HS, "\"hidden_size\":\" 4\"", METADATA, "hidden_size is \" 4\""),
  R ("hidden-size-trailing-space", HS, "\"hidden_size\":\"4 \"", METADATA, "hidden_size is \"4 \""),
  R ("hidden-size-plus", HS, "\"hidden_size\":\"+4\"", METADATA, "hidden_size is \"+4\""),
  R ("hidden-size-leading-zero", HS, "\"hidden_size\":\"04\"", METADATA, "leading zero"),
  R ("hidden-size-decimal-point", HS, "\"hidden_size\":\"4.0\"", METADATA, "hidden_size is \"4.0\""),
  R ("hidden-size-hex", HS, "\"hidden_size\":\"0x4\"", METADATA, "hidden_size is \"0x4\""),
  R ("hidden-size-arabic-digit", HS, "\"hidden_size\":\"\xd9\xa4\"", METADATA, "hidden_size is"),
  R ("hidden-size-zero", HS, "\"hidden_size\":\"0\"", METADATA, "out of range [1, 16384]"),
  R ("hidden-size-too-large", HS, "\"hidden_size\":\"16385\"", METADATA, "hidden_size is \"16385\", out of range"),
  R ("hidden-size-overflow", HS, "\"hidden_size\":\"99999999999999999999999\"", METADATA, "out of range"),
  R ("input-size-2^32", "\"input_size\":\"3\"", "\"input_size\":\"4294967299\"", METADATA, "input_size is \"4294967299\", out of range"),
  R ("num-layers-too-many", "\"num_layers\":\"2\"", "\"num_layers\":\"65\"", METADATA, "num_layers"),
  R ("bidirectional-yes", "\"bidirectional\":\"false\"", "\"bidirectional\":\"yes\"", METADATA, "bidirectional is \"yes\""),
  R ("bidirectional-capital", "\"bidirectional\":\"false\"", "\"bidirectional\":\"False\"", METADATA, "bidirectional"),
  R ("cell-unknown", "\"cell\":\"lstm\"", "\"cell\":\"lstm2\"", METADATA, "cell is \"lstm2\""),
  R ("cell-uppercase", "\"cell\":\"lstm\"", "\"cell\":\"LSTM\"", METADATA, "cell is \"LSTM\""),
  R ("head-activation-unknown", "\"head_activation\":\"softmax\"", "\"head_activation\":\"relu\"", METADATA, "head_activation is \"relu\""),
  RB ("head-activation-without-head", "\"head_activation\":\"none\"", "\"head_activation\":\"softmax\"", METADATA, "no head"),
  R ("frame-size-not-dividing", "\"frame_size\":\"1\"", "\"frame_size\":\"2\"", METADATA, "frame_size"),
  R ("frame-size-zero", "\"frame_size\":\"1\"", "\"frame_size\":\"0\"", METADATA, "frame_size is \"0\""),
  RB ("window-zero", "\"window\":\"32\"", "\"window\":\"0\"", METADATA, "window is \"0\""),
  R ("sample-rate-too-large", "\"sample_rate\":\"16000\"", "\"sample_rate\":\"16777217\"", METADATA, "sample_rate"),

  /* version 2: the layers around the recurrent stack */
  R ("v2-key-in-version-1", DESC, DESC ",\"skip\":\"1\"", METADATA, "metadata skip needs version \"2\""),
  R2 ("v2-said-version-1", "\"version\":\"2\"", "\"version\":\"1\"", METADATA, "needs version \"2\""),
  R2 ("v2-pre-activation-unknown", "\"tanh,elu\"", "\"tanh,gelu\"", METADATA, "activation \"gelu\" is not one of"),
  R2 ("v2-pre-activation-space", "\"tanh,elu\"", "\"tanh, elu\"", METADATA, "activation \" elu\""),
  R2 ("v2-pre-activations-empty", "\"tanh,elu\"", "\"\"", METADATA, "pre_activations is empty"),
  R2 ("v2-pre-activations-trailing-comma", "\"tanh,elu\"", "\"tanh,elu,\"", METADATA, "layer 2's activation \"\""),
  R2 ("v2-pre-activations-too-many", "\"tanh,elu\"", "\"tanh,elu,none,none,none,none,none,none,none\"", METADATA, "9 layers, at most 8"),
  R2 ("v2-pre-activations-one-short", "\"tanh,elu\"", "\"tanh\"", TENSOR, "tensor rnn.weight_ih_l0 has shape [16, 2], expected [16, 3]"),
  R2 ("v2-pre-activations-one-over", "\"tanh,elu\"", "\"tanh,elu,none\"", TENSOR, "tensor pre.2.bias is missing"),
  R2 ("v2-post-activation-unknown", "\"post_activations\":\"relu\"", "\"post_activations\":\"Relu\"", METADATA, "activation \"Relu\""),
  R2 ("v2-post-activations-missing", "\"post_activations\":", "\"post_activationz\":", TENSOR, "tensor head.weight has shape [1, 3], expected [1, 4]"),
  R2 ("v2-skip-not-1-or-O", "\"skip\":\"1\"", "\"skip\":\"2\"", METADATA, "skip = 2: only 1 or the output size (1)"),
  R2 ("v2-skip-zero", "\"skip\":\"1\"", "\"skip\":\"0\"", METADATA, "skip is \"0\""),
  R2 ("v2-skip-word", "\"skip\":\"1\"", "\"skip\":\"yes\"", METADATA, "skip is \"yes\""),
  R2 ("v2-pre-weight-shape", "\"pre.0.weight\":{\"dtype\":\"F32\",\"shape\":[3,1]", "\"pre.0.weight\":{\"dtype\":\"F32\",\"shape\":[1,3]", TENSOR, "tensor pre.0.weight has shape [1, 3], expected [3, 1]"),
  R2 ("v2-pre-bias-2d", "\"pre.1.bias\":{\"dtype\":\"F32\",\"shape\":[2]", "\"pre.1.bias\":{\"dtype\":\"F32\",\"shape\":[1,2]", TENSOR, "tensor pre.1.bias has shape [1, 2]"),
  R2 ("v2-h0-shape", "\"rnn.h0\":{\"dtype\":\"F32\",\"shape\":[2,4]", "\"rnn.h0\":{\"dtype\":\"F32\",\"shape\":[1,8]", TENSOR, "tensor rnn.h0 has shape [1, 8], expected [2, 4]"),
  R2 ("v2-c0-without-h0", "\"rnn.h0\":", "\"rnn.h9\":", TENSOR, "rnn.c0 is present but rnn.h0 is missing"),
  R2 ("v2-c0-for-gru", "\"cell\":\"lstm\"", "\"cell\":\"gru\"", TENSOR, "only for lstm"),
  B2 ("v2-nan-pre-bias", build_nan_pre, TENSOR, "tensor pre.1.bias has a non-finite value (nan) at index 1"),
  B2 ("v2-inf-h0", build_inf_h0, TENSOR, "tensor rnn.h0 has a non-finite value (inf) at index 3"),
};

static void
test_malformed (gconstpointer data)
{
  const Case *c = data;
  GBytes *base = base_bytes[c->base];
  GBytes *b = c->build ? c->build (c, base) : build_replace (c, base);
  GError *error = NULL;
  RnnModel *m;

  m = rnn_model_load_from_data (g_bytes_get_data (b, NULL),
      g_bytes_get_size (b), DISPLAY, &error);
  g_assert_null (m);
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  if (!g_error_matches (error, RNN_ERROR, c->code))
    g_error ("%s: expected code %d, got %s %d: %s", c->name, c->code,
        g_quark_to_string (error->domain), error->code, error->message);
  g_assert_true (g_str_has_prefix (error->message, DISPLAY ": "));
  if (strstr (error->message, c->keyword) == NULL)
    g_error ("%s: message lacks \"%s\": %s", c->name, c->keyword,
        error->message);
  g_clear_error (&error);
  g_bytes_unref (b);
}

/* Thousands of random corruptions of a valid file: each either loads or is
 * refused with an RNN_ERROR naming the file; nothing crashes or leaks. */
static void
test_random_mutations (void)
{
  gsize size;
  const guint8 *base = g_bytes_get_data (base_bytes[0], &size);
  guint64 n;
  guint32 rng = 0x2545f491;
  guint loaded = 0, refused = 0;

  memcpy (&n, base, 8);
  n = GUINT64_FROM_LE (n);
  for (guint iter = 0; iter < 3000; iter++) {
    guint8 *buf = g_memdup2 (base, size);
    gsize len = size;
    guint kind = rng_next (&rng) % 4;
    GError *error = NULL;
    RnnModel *m;

    if (kind == 3) {
      len = rng_next (&rng) % size;                   /* truncate */
    } else {
      guint flips = 1 + rng_next (&rng) % 4;
      for (guint f = 0; f < flips; f++) {
        /* mostly the header, where the parsing happens */
        gsize span = (kind == 0) ? size : (gsize) (8 + n);
        gsize at = rng_next (&rng) % span;
        if (kind == 2)
          buf[at] = "{}[],:\"0-.e\\u /"[rng_next (&rng) % 16];
        else
          buf[at] = (guint8) rng_next (&rng);
      }
    }
    m = rnn_model_load_from_data (buf, len, DISPLAY, &error);
    if (m) {
      g_assert_no_error (error);
      loaded++;
      rnn_model_unref (m);
    } else {
      g_assert_nonnull (error);
      g_assert_true (error->domain == RNN_ERROR);
      g_assert_true (g_str_has_prefix (error->message, DISPLAY ": "));
      refused++;
      g_clear_error (&error);
    }
    g_free (buf);
  }
  g_test_message ("%u loaded, %u refused", loaded, refused);
  g_assert_cmpuint (refused, >, 0);
}

/* Valid JSON the writer never produces still loads: escapes (including a
 * surrogate pair), whitespace between tokens, members in another order. */
static void
test_load_json_variants (void)
{
  Split s = split_file (base_bytes[0]);
  char *h1 = replace_once (s.header, DESC,
      "\"description\" :\n\t\"\\ud83c\\udfb5 caf\\u00e9 a\\/b\\n\"");
  char *h2 = replace_once (h1, "{\"dtype\":\"F32\",\"shape\":[16,3],",
      "{ \"shape\" : [ 16 , 3 ] ,\r\n \"dtype\" : \"F32\" ,");
  GBytes *b = assemble (h2, s.data, s.data_len);
  RnnModel *m = load_ok (b);

  g_assert_cmpstr (rnn_model_get_meta (m, "description"), ==,
      "\xf0\x9f\x8e\xb5 caf\xc3\xa9 a/b\n");
  rnn_model_unref (m);
  g_bytes_unref (b);
  g_free (h1);
  g_free (h2);
  split_clear (&s);
}

/* The fuzzer's seed corpus (tests/fuzz/corpus, made by
 * tests/fuzz/gen-fuzz-corpus.py) replayed through the loader: valid-*, fixture-*
 * and model-* files load and survive save -> load bit-identically; bad-*
 * files are refused with an RNN_ERROR naming the file.  Crashes the fuzzer
 * finds are added here as bad-* (or valid-*) files too. */
static void
test_fuzz_corpus (void)
{
  gchar *dir = g_test_build_filename (G_TEST_DIST, "fuzz", "corpus", NULL);
  GDir *d = g_dir_open (dir, 0, NULL);
  const gchar *name;
  guint n_ok = 0, n_bad = 0;

  g_assert_nonnull (d);
  while ((name = g_dir_read_name (d))) {
    gchar *path = g_build_filename (dir, name, NULL);
    gboolean valid = !g_str_has_prefix (name, "bad-");
    GError *error = NULL;
    RnnModel *m = rnn_model_load (path, &error);

    if (valid) {
      GBytes *b1, *b2;
      RnnModel *again;

      if (!m)
        g_error ("%s does not load: %s", name, error->message);
      b1 = rnn_model_serialize (m);
      again = rnn_model_load_from_data (g_bytes_get_data (b1, NULL),
          g_bytes_get_size (b1), name, &error);
      g_assert_no_error (error);
      b2 = rnn_model_serialize (again);
      g_assert_true (g_bytes_equal (b1, b2));
      g_bytes_unref (b1);
      g_bytes_unref (b2);
      rnn_model_unref (again);
      rnn_model_unref (m);
      n_ok++;
    } else {
      if (m)
        g_error ("%s loads, but should be refused", name);
      g_assert_true (error != NULL && error->domain == RNN_ERROR);
      g_assert_true (g_str_has_prefix (error->message, path));
      g_test_message ("%s: %s", name, error->message + strlen (path));
      g_clear_error (&error);
      n_bad++;
    }
    g_free (path);
  }
  g_dir_close (d);
  g_free (dir);
  g_test_message ("%u valid files loaded, %u malformed files refused", n_ok,
      n_bad);
  g_assert_cmpuint (n_ok, >, 0);
  g_assert_cmpuint (n_bad, >, 0);
}

/* The surgery must start from files that load. */
static void
test_bases_load (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (base_bytes); i++) {
    RnnModel *m = load_ok (base_bytes[i]);
    rnn_model_unref (m);
  }
}

/* The raw reader's header-only parse: the bounds on tensors and metadata
 * keys, the file offsets, and no data pointers when only the header is at
 * hand. */
static void
test_safetensors_head_bounds (void)
{
  const char *json = "{\"__metadata__\":{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\"},"
      "\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"y\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[8,10]},"
      "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[10,10]}}";
  const guint64 n = strlen (json);
  guint8 *head = g_malloc (8 + n);
  GError *error = NULL;
  RnnSafetensors *st;
  guint64 le = GUINT64_TO_LE (n);

  memcpy (head, &le, 8);
  memcpy (head + 8, json, n);

  st = rnn_safetensors_parse_head (head, 8 + n, 8 + n + 10, 2, 3, "h",
      &error);
  g_assert_null (st);
  g_assert_error (error, RNN_ERROR, RNN_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, "more than 2 tensors"));
  g_clear_error (&error);

  st = rnn_safetensors_parse_head (head, 8 + n, 8 + n + 10, 3, 2, "h",
      &error);
  g_assert_null (st);
  g_assert_error (error, RNN_ERROR, RNN_ERROR_FORMAT);
  g_assert_nonnull (strstr (error->message, "more than 2 __metadata__ keys"));
  g_clear_error (&error);

  /* the data region is judged against the file's size, not what is read */
  st = rnn_safetensors_parse_head (head, 8 + n, 8 + n + 11, 3, 3, "h",
      &error);
  g_assert_null (st);
  g_assert_nonnull (strstr (error->message, "1 trailing bytes"));
  g_clear_error (&error);

  st = rnn_safetensors_parse_head (head, 8 + n, 8 + n + 10, 3, 3, "h",
      &error);
  g_assert_no_error (error);
  g_assert_cmpuint (rnn_safetensors_get_n_tensors (st), ==, 3);
  g_assert_null (rnn_safetensors_find (st, "x")->data);
  g_assert_cmpuint (rnn_safetensors_get_file_offset (st,
          rnn_safetensors_find (st, "x")), ==, 8 + n);
  g_assert_cmpuint (rnn_safetensors_get_file_offset (st,
          rnn_safetensors_find (st, "y")), ==, 8 + n + 8);
  g_assert_cmpstr (rnn_safetensors_get_meta (st, "c"), ==, "3");
  rnn_safetensors_free (st);
  g_free (head);
}

/* ---- files at every size, and paths that are not files ------------------- */

typedef struct {
  gboolean loaded;              /* the child loaded the model */
  int sig;                      /* the signal that ended the child, or 0 */
  int code;                     /* the GError's code, or -1 */
  char *message;                /* the GError's message, or "" */
} ChildLoad;

/* rnn_model_load (@path) in a forked child, with its address space limited
 * to what it has now + @extra_as bytes (0: no limit) and SIGALRM after
 * @seconds: an abort, a crash or a hang shows as a signal instead of
 * taking the test program down or blocking it. */
static ChildLoad
load_in_child (const char *path, guint64 extra_as, guint seconds)
{
  ChildLoad res = { FALSE, 0, -1, NULL };
  GString *out = g_string_new (NULL);
  int fds[2], status;
  pid_t pid;
  char buf[4096];
  gssize r;

  g_assert_cmpint (pipe (fds), ==, 0);
  pid = fork ();
  g_assert_cmpint (pid, >=, 0);
  if (pid == 0) {
    GError *error = NULL;
    RnnModel *m;
    GString *msg;

    close (fds[0]);
    /* a bound on a hang, not a measure: generous on a loaded machine, and
     * more so under valgrind */
    alarm (under_valgrind () ? 20 * seconds : seconds);
    if (extra_as > 0) {
      struct rlimit rl;
      rl.rlim_cur = rl.rlim_max = address_space_now () + extra_as;
      if (setrlimit (RLIMIT_AS, &rl) != 0)
        _exit (3);
    }
    m = rnn_model_load (path, &error);
    msg = g_string_new (NULL);
    if (m != NULL)
      g_string_append (msg, "loaded");
    else if (error != NULL && error->domain == RNN_ERROR)
      g_string_append_printf (msg, "%d %s", error->code, error->message);
    else
      g_string_append (msg, "no RNN_ERROR");
    if (write (fds[1], msg->str, msg->len) != (gssize) msg->len)
      _exit (4);
    _exit (0);
  }
  close (fds[1]);
  while ((r = read (fds[0], buf, sizeof buf)) > 0 || (r < 0 && errno == EINTR))
    if (r > 0)
      g_string_append_len (out, buf, r);
  close (fds[0]);
  g_assert_cmpint (waitpid (pid, &status, 0), ==, pid);
  if (WIFSIGNALED (status))
    res.sig = WTERMSIG (status);
  else
    g_assert_cmpint (WEXITSTATUS (status), ==, 0);
  if (g_str_equal (out->str, "loaded")) {
    res.loaded = TRUE;
  } else if (out->len > 0 && g_ascii_isdigit (out->str[0])) {
    char *end;
    res.code = (int) g_ascii_strtoll (out->str, &end, 10);
    g_string_erase (out, 0, end + 1 - out->str);
  }
  res.message = g_string_free (out, FALSE);
  g_test_message ("%s: %s%s%s", path, res.sig ? "killed by " : "",
      res.sig ? g_strsignal (res.sig) : "", res.message);
  return res;
}

static char *
tmp_path (const char *dir, const char *name)
{
  return g_build_filename (dir, name, NULL);
}

/* A valid LSTM of 68 MB whose address space can take the file once more
 * but not twice: reading the whole file, then the slab, aborted; now the
 * tensors are read into the slab, and what cannot be had (the packed
 * copy) is refused with an error naming it. */
static void
test_large_sparse_refused (void)
{
  char *dir = g_dir_make_tmp ("test-modelfile-XXXXXX", NULL);
  char *path = tmp_path (dir, "large.safetensors");
  guint64 size = write_sparse_model (path, "lstm", 4, 16, 2048, 0, 0);
  ChildLoad r;

  if (!address_limit_usable ()) {
    g_test_skip ("RLIMIT_AS is not usable under ASan or valgrind");
  } else {
    r = load_in_child (path, size + size / 2, 30);
    g_assert_cmpint (r.sig, ==, 0);
    g_assert_false (r.loaded);
    g_assert_cmpint (r.code, ==, RNN_ERROR_IO);
    g_assert_true (g_str_has_prefix (r.message, path));
    g_assert_nonnull (strstr (r.message, "cannot allocate"));
    g_assert_nonnull (strstr (r.message, "packed weights"));
    g_free (r.message);
  }
  g_assert_cmpint (g_remove (path), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
  g_free (path);
  g_free (dir);
}

/* The same model loads in the parameters plus their packed copy (3x the
 * file, given 3.5x): no copy of the whole file on the way. */
static void
test_large_sparse_loads (void)
{
  char *dir = g_dir_make_tmp ("test-modelfile-XXXXXX", NULL);
  char *path = tmp_path (dir, "large.safetensors");
  guint64 size = write_sparse_model (path, "lstm", 4, 16, 2048, 0, 0);
  ChildLoad r;

  r = load_in_child (path, address_limit_usable () ? size * 7 / 2 : 0, 60);
  g_assert_cmpint (r.sig, ==, 0);
  g_assert_true (r.loaded);
  g_free (r.message);
  g_assert_cmpint (g_remove (path), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
  g_free (path);
  g_free (dir);
}

/* A 6.4 GB file (a hole) whose hidden_size is out of range: judged from
 * its header, none of the data is read. */
static void
test_huge_sparse_bad_config (void)
{
  char *dir = g_dir_make_tmp ("test-modelfile-XXXXXX", NULL);
  char *path = tmp_path (dir, "huge.safetensors");
  ChildLoad r;

  write_sparse_model (path, "lstm", 4, 4, 20000, 0, 0);
  r = load_in_child (path, address_limit_usable () ? 256u << 20 : 0, 30);
  g_assert_cmpint (r.sig, ==, 0);
  g_assert_cmpint (r.code, ==, RNN_ERROR_METADATA);
  g_assert_nonnull (strstr (r.message, "hidden_size"));
  g_free (r.message);
  g_assert_cmpint (g_remove (path), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
  g_free (path);
  g_free (dir);
}

/* A header of 200,000 zero-size tensors (13 MB): refused while it is
 * scanned, past the most tensors a model may have, before json-glib
 * builds a tree of hundreds of megabytes for it. */
static void
test_zero_size_tensor_flood (void)
{
  char *dir = g_dir_make_tmp ("test-modelfile-XXXXXX", NULL);
  char *path = tmp_path (dir, "flood.safetensors");
  ChildLoad r;

  write_sparse_model (path, "rnn_tanh", 1, 2, 3, 0, 200000);
  r = load_in_child (path, address_limit_usable () ? 128u << 20 : 0, 30);
  g_assert_cmpint (r.sig, ==, 0);
  g_assert_cmpint (r.code, ==, RNN_ERROR_FORMAT);
  g_assert_nonnull (strstr (r.message, "more than 550 tensors"));
  g_free (r.message);
  g_assert_cmpint (g_remove (path), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
  g_free (path);
  g_free (dir);
}

/* 160,000 metadata keys (2.6 MB): every key kept, in order.  Inserting
 * each into the sorted key array by a linear search took over a minute of
 * CPU (the load takes some 0.3 s now); the child's alarm makes that a
 * failure. */
static void
test_many_metadata_keys (void)
{
  char *dir = g_dir_make_tmp ("test-modelfile-XXXXXX", NULL);
  char *path = tmp_path (dir, "keys.safetensors");
  GError *error = NULL;
  ChildLoad r;
  RnnModel *m;
  const char *const *keys;
  guint n = 0;

  write_sparse_model (path, "rnn_tanh", 1, 2, 3, 160000, 0);
  r = load_in_child (path, 0, 60);
  g_assert_cmpint (r.sig, ==, 0);
  g_assert_true (r.loaded);
  g_free (r.message);

  m = rnn_model_load (path, &error);
  g_assert_no_error (error);
  keys = rnn_model_get_meta_keys (m);
  for (; keys[n] != NULL; n++)
    if (n > 0)
      g_assert_cmpstr (keys[n - 1], <, keys[n]);
  g_assert_cmpuint (n, ==, 160000);
  g_assert_cmpstr (rnn_model_get_meta (m, "k0123456"), ==, "v123456");
  rnn_model_unref (m);
  g_assert_cmpint (g_remove (path), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
  g_free (path);
  g_free (dir);
}

/* Paths that are not regular files are refused without being read, each
 * named for what it is: a FIFO without blocking in open () (no writer
 * ever comes), /dev/zero without reading it, a directory, a symbolic
 * link loop. */
static void
test_not_regular_files (void)
{
  char *dir = g_dir_make_tmp ("test-modelfile-XXXXXX", NULL);
  char *fifo = tmp_path (dir, "fifo.safetensors");
  char *loop_a = tmp_path (dir, "a.safetensors");
  char *loop_b = tmp_path (dir, "b.safetensors");
  char *short_file = tmp_path (dir, "short.safetensors");
  ChildLoad r;

  g_assert_cmpint (mkfifo (fifo, 0600), ==, 0);
  r = load_in_child (fifo, 0, 10);
  g_assert_cmpint (r.sig, ==, 0);
  g_assert_cmpint (r.code, ==, RNN_ERROR_IO);
  g_assert_true (g_str_has_prefix (r.message, fifo));
  g_assert_nonnull (strstr (r.message, "named pipe (FIFO)"));
  g_free (r.message);

  r = load_in_child ("/dev/zero", address_limit_usable () ? 256u << 20 : 0,
      10);
  g_assert_cmpint (r.sig, ==, 0);
  g_assert_cmpint (r.code, ==, RNN_ERROR_IO);
  g_assert_nonnull (strstr (r.message, "character device"));
  g_free (r.message);

  r = load_in_child (dir, 0, 10);
  g_assert_cmpint (r.sig, ==, 0);
  g_assert_cmpint (r.code, ==, RNN_ERROR_IO);
  g_assert_nonnull (strstr (r.message, "is a directory"));
  g_free (r.message);

  /* and a regular file shorter than the length field, named with its
   * real size */
  g_assert_true (g_file_set_contents (short_file, "abcde", 5, NULL));
  r = load_in_child (short_file, 0, 10);
  g_assert_cmpint (r.code, ==, RNN_ERROR_FORMAT);
  g_assert_nonnull (strstr (r.message, "file is 5 bytes, too short"));
  g_free (r.message);
  g_assert_cmpint (g_remove (short_file), ==, 0);

  g_assert_cmpint (symlink (loop_b, loop_a), ==, 0);
  g_assert_cmpint (symlink (loop_a, loop_b), ==, 0);
  r = load_in_child (loop_a, 0, 10);
  g_assert_cmpint (r.sig, ==, 0);
  g_assert_cmpint (r.code, ==, RNN_ERROR_IO);
  g_assert_nonnull (strstr (r.message, "symbolic link loop"));
  g_free (r.message);

  g_assert_cmpint (g_remove (loop_a), ==, 0);
  g_assert_cmpint (g_remove (loop_b), ==, 0);
  g_assert_cmpint (g_remove (fifo), ==, 0);
  g_assert_cmpint (g_rmdir (dir), ==, 0);
  g_free (loop_a);
  g_free (loop_b);
  g_free (short_file);
  g_free (fifo);
  g_free (dir);
}

int
main (int argc, char **argv)
{
  RnnModel *m;
  int ret;

  g_test_init (&argc, &argv, NULL);

  m = make_model (&spec_full, 100);
  base_bytes[0] = rnn_model_serialize (m);
  rnn_model_unref (m);
  m = make_model (&spec_bare, 101);
  base_bytes[1] = rnn_model_serialize (m);
  rnn_model_unref (m);
  m = make_model (&spec_v2, 102);
  base_bytes[2] = rnn_model_serialize (m);
  rnn_model_unref (m);
  if (g_getenv ("RNN_PRINT_V2_HEADER")) {
    Split sp = split_file (base_bytes[2]);
    g_print ("%s\n", sp.header);
    split_clear (&sp);
  }

  g_test_add_func ("/modelfile/round-trip/lstm-head-norm",
      test_round_trip_lstm_head_norm);
  g_test_add_func ("/modelfile/round-trip/gru-bidirectional-2-layers",
      test_round_trip_gru_bidirectional);
  g_test_add_func ("/modelfile/round-trip/rnn-tanh-bidirectional-head",
      test_round_trip_rnn_tanh_bidirectional_head);
  g_test_add_func ("/modelfile/round-trip/rnn-relu-frames",
      test_round_trip_rnn_relu_frames);
  g_test_add_func ("/modelfile/round-trip/metadata",
      test_round_trip_metadata);
  g_test_add_func ("/modelfile/round-trip/v2", test_round_trip_v2);
  g_test_add_func ("/modelfile/round-trip/v2-pieces",
      test_round_trip_v2_pieces);
  g_test_add_func ("/modelfile/config/v2-validate", test_config_v2_validate);
  g_test_add_func ("/modelfile/round-trip/deterministic",
      test_round_trip_deterministic);
  g_test_add_func ("/modelfile/load/any-order", test_load_any_order);
  g_test_add_func ("/modelfile/load/json-variants", test_load_json_variants);
  g_test_add_func ("/modelfile/robustness/random-mutations",
      test_random_mutations);
  g_test_add_func ("/modelfile/convert/f16", test_convert_f16);
  g_test_add_func ("/modelfile/convert/bf16", test_convert_bf16);
  g_test_add_func ("/modelfile/convert/f64", test_convert_f64);
  g_test_add_func ("/modelfile/convert/special-values",
      test_convert_special_values);
  g_test_add_func ("/modelfile/safetensors/raw", test_safetensors_raw);
  g_test_add_func ("/modelfile/safetensors/head-bounds",
      test_safetensors_head_bounds);
  g_test_add_func ("/modelfile/file/errors", test_file_errors);
  g_test_add_func ("/modelfile/file/not-regular", test_not_regular_files);
  g_test_add_func ("/modelfile/file/large-sparse-refused",
      test_large_sparse_refused);
  g_test_add_func ("/modelfile/file/large-sparse-loads",
      test_large_sparse_loads);
  g_test_add_func ("/modelfile/file/huge-sparse-bad-config",
      test_huge_sparse_bad_config);
  g_test_add_func ("/modelfile/file/zero-size-tensor-flood",
      test_zero_size_tensor_flood);
  g_test_add_func ("/modelfile/file/many-metadata-keys",
      test_many_metadata_keys);
  g_test_add_func ("/modelfile/malformed/bases-load", test_bases_load);
  g_test_add_func ("/modelfile/fuzz-corpus", test_fuzz_corpus);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    char *path = g_strconcat ("/modelfile/malformed/", cases[i].name, NULL);
    g_test_add_data_func (path, &cases[i], test_malformed);
    g_free (path);
  }

  ret = g_test_run ();
  for (guint i = 0; i < G_N_ELEMENTS (base_bytes); i++)
    g_bytes_unref (base_bytes[i]);
  return ret;
}
