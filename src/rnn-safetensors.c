/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Raw safetensors reader (docs/design.md §3).
 *
 * Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON,
 * then the data region holding every tensor's bytes.  Every input is
 * untrusted.  The checks are those of the reference reader
 * (huggingface/safetensors, tensor.rs) and a few more:
 *
 *  - size >= 8; 0 < N <= 100,000,000; 8 + N <= size;
 *  - the header is valid UTF-8, starts with '{' and is one strict RFC 8259
 *    JSON object.  json-glib 1.6 is lenient (comments, single quotes, hex
 *    and leading-zero numbers, raw control characters in strings, several
 *    top-level values, integers >= 2^63 wrapped, duplicate keys silently
 *    replaced), so a strict scanner of our own runs first: it validates the
 *    grammar, rejects duplicate keys in every object (comparing decoded keys,
 *    so "a" and "\u0061" collide), integer literals outside int64, "\u0000"
 *    and lone surrogates.  json-glib then builds the tree, and every value's
 *    type and range is checked by hand (json_node_get_value_type: an integer
 *    must be G_TYPE_INT64, never a double, and never negative);
 *  - `__metadata__`, when present, is an object of string values;
 *  - every other member is a tensor: an object with exactly `dtype` (a known
 *    dtype name), `shape` (<= 8 non-negative integers) and `data_offsets`
 *    (two non-negative integers, begin <= end);
 *  - numel and the byte size are computed with overflow checks, and
 *    end - begin == numel * dtype size;
 *  - sorted by offset, the tensors cover the data region contiguously from
 *    0, without gap or overlap, and the region ends exactly at the end of the
 *    input (no trailing bytes);
 *  - with bounds given (rnn_safetensors_parse_head()), no more tensors and
 *    __metadata__ keys than those: counted while scanning, so a header of a
 *    million empty tensors costs no tree.
 *
 * The header can be judged alone, against the size of a file whose data is
 * not read (rnn_safetensors_parse_head()); the tensors are then read at
 * their file offsets and converted piece by piece
 * (rnn_safetensors_convert_f32()).
 *
 * Every error is RNN_ERROR_FORMAT (RNN_ERROR_TENSOR from read_f32) and its
 * message starts with the display name.
 */
#include "rnn.h"
#include "rnn-safetensors.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <float.h>
#include <string.h>
#include <stdarg.h>

#define ST_MAX_HEADER_SIZE 100000000u
#define ST_MAX_DIMS 8
/* The schema needs 3 levels (root, tensor, shape); allow some slack so the
 * error names the real problem, but never recurse deeply. */
#define ST_MAX_DEPTH 16

struct _RnnSafetensors {
  char *display_name;
  RnnStTensor *tensors;          /* sorted by data offset */
  guint n_tensors;
  GHashTable *index;             /* name -> GUINT_TO_POINTER (i + 1) */
  GHashTable *meta;              /* key -> value (owned) */
  gboolean has_meta;
  char **meta_keys;              /* sorted; strings owned by @meta */
  guint64 data_start;            /* 8 + the header length */
  guint64 *begins;               /* each tensor's offset in the data region */
};

/* ---- dtypes ------------------------------------------------------------- */

typedef struct {
  const char *name;
  RnnDtype dtype;
  guint bits;                    /* per element */
} DtypeInfo;

static const DtypeInfo dtype_table[] = {
  { "F32", RNN_DTYPE_F32, 32 },
  { "F16", RNN_DTYPE_F16, 16 },
  { "BF16", RNN_DTYPE_BF16, 16 },
  { "F64", RNN_DTYPE_F64, 64 },
  { "BOOL", RNN_DTYPE_OTHER, 8 },
  { "U8", RNN_DTYPE_OTHER, 8 },
  { "I8", RNN_DTYPE_OTHER, 8 },
  { "F8_E5M2", RNN_DTYPE_OTHER, 8 },
  { "F8_E4M3", RNN_DTYPE_OTHER, 8 },
  { "F8_E8M0", RNN_DTYPE_OTHER, 8 },
  { "I16", RNN_DTYPE_OTHER, 16 },
  { "U16", RNN_DTYPE_OTHER, 16 },
  { "I32", RNN_DTYPE_OTHER, 32 },
  { "U32", RNN_DTYPE_OTHER, 32 },
  { "I64", RNN_DTYPE_OTHER, 64 },
  { "U64", RNN_DTYPE_OTHER, 64 },
  { "C64", RNN_DTYPE_OTHER, 64 },
  { "F4", RNN_DTYPE_OTHER, 4 },
  { "F6_E2M3", RNN_DTYPE_OTHER, 6 },
  { "F6_E3M2", RNN_DTYPE_OTHER, 6 },
};

static const DtypeInfo *
dtype_lookup (const char *name)
{
  for (gsize i = 0; i < G_N_ELEMENTS (dtype_table); i++)
    if (strcmp (dtype_table[i].name, name) == 0)
      return &dtype_table[i];
  return NULL;
}

/* ---- messages ----------------------------------------------------------- */

char *
rnn_st_quote (const char *s)
{
  /* Quotes, backslashes and control bytes escaped; other bytes kept (the
   * strings come from a validated UTF-8 header).  Long strings are cut at a
   * character boundary. */
  GString *out = g_string_new ("\"");
  const char *p = s;
  guint chars = 0;

  while (*p != '\0') {
    guchar c = (guchar) *p;
    if (chars == 60) {
      g_string_append (out, "\"...");
      goto done;
    }
    if (c == '"' || c == '\\') {
      g_string_append_c (out, '\\');
      g_string_append_c (out, (char) c);
    } else if (c < 0x20 || c == 0x7f) {
      g_string_append_printf (out, "\\x%02x", c);
    } else {
      g_string_append_c (out, (char) c);
    }
    p++;
    /* count characters, not UTF-8 continuation bytes */
    if ((*p & 0xc0) != 0x80)
      chars++;
  }
  g_string_append_c (out, '"');
done:
  if (!g_utf8_validate (out->str, -1, NULL)) {
    char *valid = g_utf8_make_valid (out->str, -1);
    g_string_free (out, TRUE);
    return valid;
  }
  return g_string_free (out, FALSE);
}

G_GNUC_PRINTF (3, 4) static void
st_error (GError **error, const char *display_name, const char *fmt, ...)
{
  va_list ap;
  char *msg;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, RNN_ERROR, RNN_ERROR_FORMAT, "%s: %s", display_name,
      msg);
  g_free (msg);
}

/* ---- strict JSON scanner ------------------------------------------------ */

typedef struct {
  const char *start;
  const char *p;
  const char *end;
  const char *display_name;
  /* The key being parsed at depth 1 (tensor name or __metadata__) and
   * depth 2 (a tensor's field), for messages. */
  GString *key1;
  GString *key2;
  GError **error;
  /* tensors (members of the root other than __metadata__) seen, and the
   * most accepted: refused as soon as one more is seen, before json-glib
   * builds a tree for them */
  guint n_tensors;
  guint max_tensors;
  /* the same for the keys of __metadata__ */
  guint n_meta;
  guint max_meta;
} Scan;

static gboolean
scan_fail_valist (Scan *s, gboolean syntax, const char *fmt, va_list ap)
    G_GNUC_PRINTF (3, 0);

static gboolean
scan_fail_valist (Scan *s, gboolean syntax, const char *fmt, va_list ap)
{
  char *msg = g_strdup_vprintf (fmt, ap);
  GString *where = g_string_new (NULL);

  g_string_append_printf (where, "at byte %" G_GSIZE_FORMAT " of the header",
      (gsize) (s->p - s->start));
  if (s->key1->len > 0) {
    char *q = rnn_st_quote (s->key1->str);
    g_string_append_printf (where, ", in %s", q);
    g_free (q);
    if (s->key2->len > 0) {
      q = rnn_st_quote (s->key2->str);
      g_string_append_printf (where, ", key %s", q);
      g_free (q);
    }
  }
  g_set_error (s->error, RNN_ERROR, RNN_ERROR_FORMAT, "%s: %s%s (%s)",
      s->display_name, syntax ? "header is not valid JSON: " : "header has ",
      msg, where->str);
  g_string_free (where, TRUE);
  g_free (msg);
  return FALSE;
}

/* A syntax error: "header is not valid JSON: ..." */
G_GNUC_PRINTF (2, 3) static gboolean
scan_fail (Scan *s, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  scan_fail_valist (s, TRUE, fmt, ap);
  va_end (ap);
  return FALSE;
}

/* Valid JSON we refuse: "header has ..." */
G_GNUC_PRINTF (2, 3) static gboolean
scan_refuse (Scan *s, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  scan_fail_valist (s, FALSE, fmt, ap);
  va_end (ap);
  return FALSE;
}

static void
scan_ws (Scan *s)
{
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n'
          || *s->p == '\r'))
    s->p++;
}

static const char *
scan_describe_char (Scan *s, char *buf, gsize len)
{
  if (s->p >= s->end)
    return "end of header";
  if ((guchar) *s->p >= 0x20 && (guchar) *s->p < 0x7f)
    g_snprintf (buf, len, "'%c'", *s->p);
  else
    g_snprintf (buf, len, "byte 0x%02x", (guchar) *s->p);
  return buf;
}

static int
hex_digit (char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static gboolean
scan_hex4 (Scan *s, guint *out)
{
  guint v = 0;

  if (s->end - s->p < 4)
    return scan_fail (s, "truncated \\u escape");
  for (int i = 0; i < 4; i++) {
    int d = hex_digit (s->p[i]);
    if (d < 0)
      return scan_fail (s, "invalid \\u escape");
    v = v * 16 + (guint) d;
  }
  s->p += 4;
  *out = v;
  return TRUE;
}

/* A string; decoded into @out when not NULL.  @s->p is on the quote. */
static gboolean
scan_string (Scan *s, GString *out)
{
  char buf[16];

  if (s->p >= s->end || *s->p != '"')
    return scan_fail (s, "expected a string, got %s",
        scan_describe_char (s, buf, sizeof buf));
  s->p++;
  if (out)
    g_string_truncate (out, 0);
  for (;;) {
    guchar c;

    if (s->p >= s->end)
      return scan_fail (s, "unterminated string");
    c = (guchar) *s->p;
    if (c == '"') {
      s->p++;
      return TRUE;
    }
    if (c < 0x20)
      return scan_fail (s, "control character 0x%02x in a string", c);
    if (c != '\\') {
      if (out)
        g_string_append_c (out, (char) c);
      s->p++;
      continue;
    }
    s->p++;
    if (s->p >= s->end)
      return scan_fail (s, "unterminated string");
    c = (guchar) *s->p++;
    switch (c) {
      case '"': case '\\': case '/':
        if (out)
          g_string_append_c (out, (char) c);
        break;
      case 'b': if (out) g_string_append_c (out, '\b'); break;
      case 'f': if (out) g_string_append_c (out, '\f'); break;
      case 'n': if (out) g_string_append_c (out, '\n'); break;
      case 'r': if (out) g_string_append_c (out, '\r'); break;
      case 't': if (out) g_string_append_c (out, '\t'); break;
      case 'u': {
        guint u, lo;
        if (!scan_hex4 (s, &u))
          return FALSE;
        if (u == 0)
          return scan_fail (s, "\\u0000 (NUL) in a string");
        if (u >= 0xDC00 && u <= 0xDFFF)
          return scan_fail (s, "lone low surrogate \\u%04X", u);
        if (u >= 0xD800 && u <= 0xDBFF) {
          if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
            return scan_fail (s, "lone high surrogate \\u%04X", u);
          s->p += 2;
          if (!scan_hex4 (s, &lo))
            return FALSE;
          if (lo < 0xDC00 || lo > 0xDFFF)
            return scan_fail (s, "high surrogate \\u%04X not followed by a "
                "low surrogate", u);
          u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
        }
        if (out)
          g_string_append_unichar (out, (gunichar) u);
        break;
      }
      default:
        s->p--;
        return scan_fail (s, "invalid escape '\\%c'",
            (c >= 0x20 && c < 0x7f) ? (char) c : '?');
    }
  }
}

static gboolean
scan_number (Scan *s)
{
  const char *begin = s->p;
  const char *digits;
  gboolean integer = TRUE;
  char buf[16];

  if (*s->p == '-')
    s->p++;
  digits = s->p;
  if (s->p >= s->end || !g_ascii_isdigit (*s->p))
    return scan_fail (s, "invalid number: expected a digit, got %s",
        scan_describe_char (s, buf, sizeof buf));
  if (*s->p == '0') {
    s->p++;
    if (s->p < s->end && g_ascii_isdigit (*s->p))
      return scan_fail (s, "invalid number: leading zero");
  } else {
    while (s->p < s->end && g_ascii_isdigit (*s->p))
      s->p++;
  }
  if (s->p < s->end && *s->p == '.') {
    integer = FALSE;
    s->p++;
    if (s->p >= s->end || !g_ascii_isdigit (*s->p))
      return scan_fail (s, "invalid number: expected a digit after '.'");
    while (s->p < s->end && g_ascii_isdigit (*s->p))
      s->p++;
  }
  if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
    integer = FALSE;
    s->p++;
    if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
      s->p++;
    if (s->p >= s->end || !g_ascii_isdigit (*s->p))
      return scan_fail (s, "invalid number: expected a digit in the exponent");
    while (s->p < s->end && g_ascii_isdigit (*s->p))
      s->p++;
  }
  if (integer) {
    /* json-glib wraps integers beyond int64: refuse them here. */
    guint64 v = 0;
    for (const char *q = digits; q < s->p; q++) {
      guint d = (guint) (*q - '0');
      if (v > ((guint64) G_MAXINT64 - d) / 10) {
        const char *at = s->p;
        s->p = begin;
        scan_refuse (s, "an integer too large for 64 bits: %.*s",
            (int) MIN (at - begin, 40), begin);
        return FALSE;
      }
      v = v * 10 + d;
    }
  }
  return TRUE;
}

static gboolean scan_value (Scan *s, int depth);

static gboolean
scan_object (Scan *s, int depth)
{
  GHashTable *seen = NULL;
  GString *key = g_string_new (NULL);
  gboolean ok = FALSE;
  char buf[16];

  s->p++;                       /* '{' */
  scan_ws (s);
  if (s->p < s->end && *s->p == '}') {
    s->p++;
    ok = TRUE;
    goto out;
  }
  for (;;) {
    const char *key_at = s->p;

    /* While the key itself is scanned, the context is the enclosing
     * object only. */
    if (depth == 1) {
      g_string_truncate (s->key1, 0);
      g_string_truncate (s->key2, 0);
    } else if (depth == 2) {
      g_string_truncate (s->key2, 0);
    }
    if (!scan_string (s, key))
      goto out;
    if (seen == NULL)
      seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
    if (g_hash_table_contains (seen, key->str)) {
      char *q = rnn_st_quote (key->str);
      s->p = key_at;
      if (depth == 1 && strcmp (key->str, "__metadata__") == 0)
        scan_refuse (s, "a duplicate __metadata__");
      else if (depth == 1)
        scan_refuse (s, "a duplicate tensor name %s", q);
      else
        scan_refuse (s, "a duplicate key %s", q);
      g_free (q);
      goto out;
    }
    g_hash_table_add (seen, g_strdup (key->str));
    if (depth == 1 && strcmp (key->str, "__metadata__") != 0
        && ++s->n_tensors > s->max_tensors) {
      s->p = key_at;
      scan_refuse (s, "more than %u tensors, the most a model file may "
          "have", s->max_tensors);
      goto out;
    }
    if (depth == 2 && strcmp (s->key1->str, "__metadata__") == 0
        && ++s->n_meta > s->max_meta) {
      s->p = key_at;
      scan_refuse (s, "more than %u __metadata__ keys, the most a model "
          "file may have", s->max_meta);
      goto out;
    }
    if (depth == 1) {
      g_string_assign (s->key1, key->str);
      g_string_truncate (s->key2, 0);
    } else if (depth == 2) {
      g_string_assign (s->key2, key->str);
    }
    scan_ws (s);
    if (s->p >= s->end || *s->p != ':') {
      scan_fail (s, "expected ':', got %s",
          scan_describe_char (s, buf, sizeof buf));
      goto out;
    }
    s->p++;
    scan_ws (s);
    if (!scan_value (s, depth + 1))
      goto out;
    scan_ws (s);
    if (s->p < s->end && *s->p == ',') {
      s->p++;
      scan_ws (s);
      continue;
    }
    if (s->p < s->end && *s->p == '}') {
      s->p++;
      ok = TRUE;
      goto out;
    }
    scan_fail (s, "expected ',' or '}', got %s",
        scan_describe_char (s, buf, sizeof buf));
    goto out;
  }
out:
  if (ok && depth == 2)
    g_string_truncate (s->key2, 0);
  if (seen)
    g_hash_table_unref (seen);
  g_string_free (key, TRUE);
  return ok;
}

static gboolean
scan_array (Scan *s, int depth)
{
  char buf[16];

  s->p++;                       /* '[' */
  scan_ws (s);
  if (s->p < s->end && *s->p == ']') {
    s->p++;
    return TRUE;
  }
  for (;;) {
    if (!scan_value (s, depth + 1))
      return FALSE;
    scan_ws (s);
    if (s->p < s->end && *s->p == ',') {
      s->p++;
      scan_ws (s);
      continue;
    }
    if (s->p < s->end && *s->p == ']') {
      s->p++;
      return TRUE;
    }
    return scan_fail (s, "expected ',' or ']', got %s",
        scan_describe_char (s, buf, sizeof buf));
  }
}

static gboolean
scan_literal (Scan *s, const char *lit)
{
  gsize n = strlen (lit);

  if ((gsize) (s->end - s->p) < n || memcmp (s->p, lit, n) != 0)
    return scan_fail (s, "invalid literal");
  s->p += n;
  return TRUE;
}

static gboolean
scan_value (Scan *s, int depth)
{
  char buf[16];

  if (depth > ST_MAX_DEPTH)
    return scan_fail (s, "nested more than %d levels deep", ST_MAX_DEPTH);
  if (s->p >= s->end)
    return scan_fail (s, "expected a value, got end of header");
  switch (*s->p) {
    case '{': return scan_object (s, depth);
    case '[': return scan_array (s, depth);
    case '"': return scan_string (s, NULL);
    case 't': return scan_literal (s, "true");
    case 'f': return scan_literal (s, "false");
    case 'n': return scan_literal (s, "null");
    default:
      if (*s->p == '-' || g_ascii_isdigit (*s->p))
        return scan_number (s);
      return scan_fail (s, "expected a value, got %s",
          scan_describe_char (s, buf, sizeof buf));
  }
}

/* Validates @header (@len bytes, already valid UTF-8) as exactly one JSON
 * object with no duplicate keys, nothing json-glib would bend. */
static gboolean
scan_header (const char *header, gsize len, guint max_tensors,
    guint max_meta, const char *display_name, GError **error)
{
  Scan s = { header, header, header + len, display_name, NULL, NULL, error,
    0, max_tensors, 0, max_meta };
  gboolean ok;
  char buf[16];

  if (len == 0 || header[0] != '{') {
    st_error (error, display_name, "header does not start with '{'");
    return FALSE;
  }
  s.key1 = g_string_new (NULL);
  s.key2 = g_string_new (NULL);
  ok = scan_value (&s, 1);
  if (ok) {
    g_string_truncate (s.key1, 0);
    g_string_truncate (s.key2, 0);
    scan_ws (&s);
    if (s.p != s.end)
      ok = scan_fail (&s, "%s after the header object",
          scan_describe_char (&s, buf, sizeof buf));
  }
  g_string_free (s.key1, TRUE);
  g_string_free (s.key2, TRUE);
  return ok;
}

/* ---- typed access to the json-glib tree --------------------------------- */

/* What @node is, for messages: "a string", "-1", "1.5", "an object"... */
static char *
node_describe (JsonNode *node)
{
  switch (JSON_NODE_TYPE (node)) {
    case JSON_NODE_OBJECT: return g_strdup ("an object");
    case JSON_NODE_ARRAY: return g_strdup ("an array");
    case JSON_NODE_NULL: return g_strdup ("null");
    case JSON_NODE_VALUE:
    default:
      break;
  }
  switch (json_node_get_value_type (node)) {
    case G_TYPE_INT64:
      return g_strdup_printf ("%" G_GINT64_FORMAT, json_node_get_int (node));
    case G_TYPE_DOUBLE: {
      char buf[G_ASCII_DTOSTR_BUF_SIZE];
      g_ascii_dtostr (buf, sizeof buf, json_node_get_double (node));
      if (strpbrk (buf, ".eEni") == NULL)
        g_strlcat (buf, ".0", sizeof buf);
      return g_strdup_printf ("%s (not an integer)", buf);
    }
    case G_TYPE_BOOLEAN:
      return g_strdup (json_node_get_boolean (node) ? "true" : "false");
    case G_TYPE_STRING: {
      char *q = rnn_st_quote (json_node_get_string (node));
      char *r = g_strdup_printf ("the string %s", q);
      g_free (q);
      return r;
    }
    default:
      return g_strdup ("an unknown value");
  }
}

static gboolean
node_get_uint (JsonNode *node, guint64 *out)
{
  gint64 v;

  if (!JSON_NODE_HOLDS_VALUE (node)
      || json_node_get_value_type (node) != G_TYPE_INT64)
    return FALSE;
  v = json_node_get_int (node);
  if (v < 0)
    return FALSE;
  *out = (guint64) v;
  return TRUE;
}

static gboolean
node_is_string (JsonNode *node)
{
  return JSON_NODE_HOLDS_VALUE (node)
      && json_node_get_value_type (node) == G_TYPE_STRING;
}

/* ---- parse -------------------------------------------------------------- */

typedef struct {
  RnnStTensor t;
  guint64 begin;
  guint64 end;
} Entry;

static int
entry_cmp (const void *a, const void *b)
{
  const Entry *x = a, *y = b;

  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end)
    return x->end < y->end ? -1 : 1;
  return strcmp (x->t.name, y->t.name);
}

static int
str_ptr_cmp (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static gboolean
parse_metadata (RnnSafetensors *st, JsonNode *node, GError **error)
{
  JsonObject *obj;
  GList *members, *l;
  guint n = 0;

  if (!JSON_NODE_HOLDS_OBJECT (node)) {
    char *d = node_describe (node);
    st_error (error, st->display_name,
        "__metadata__ is %s, expected an object of strings", d);
    g_free (d);
    return FALSE;
  }
  obj = json_node_get_object (node);
  members = json_object_get_members (obj);
  for (l = members; l; l = l->next) {
    const char *key = l->data;
    JsonNode *v = json_object_get_member (obj, key);
    if (!node_is_string (v)) {
      char *q = rnn_st_quote (key), *d = node_describe (v);
      st_error (error, st->display_name,
          "__metadata__ value of %s is %s, expected a string", q, d);
      g_free (q);
      g_free (d);
      g_list_free (members);
      return FALSE;
    }
    g_hash_table_insert (st->meta, g_strdup (key),
        g_strdup (json_node_get_string (v)));
  }
  g_list_free (members);

  st->meta_keys = g_new0 (char *, g_hash_table_size (st->meta) + 1);
  {
    GHashTableIter it;
    gpointer k;
    g_hash_table_iter_init (&it, st->meta);
    while (g_hash_table_iter_next (&it, &k, NULL))
      st->meta_keys[n++] = k;
  }
  qsort (st->meta_keys, n, sizeof (char *), str_ptr_cmp);
  return TRUE;
}

static char *
format_shape (const guint64 *shape, guint ndim)
{
  GString *s = g_string_new ("[");

  for (guint i = 0; i < ndim; i++)
    g_string_append_printf (s, "%s%" G_GUINT64_FORMAT, i ? ", " : "",
        shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

/* Parses one tensor entry into @e; @name is already quoted in @q. */
static gboolean
parse_tensor (RnnSafetensors *st, const char *name, const char *q,
    JsonNode *node, guint64 data_size, Entry *e, GError **error)
{
  static const char *const keys[] = { "dtype", "shape", "data_offsets" };
  const char *dn = st->display_name;
  JsonObject *obj;
  JsonNode *n_dtype, *n_shape, *n_offsets;
  JsonArray *arr;
  GList *members, *l;
  const DtypeInfo *info;
  guint64 numel = 1, nbits, nbytes, off[2];
  guint ndim;

  if (!JSON_NODE_HOLDS_OBJECT (node)) {
    char *d = node_describe (node);
    st_error (error, dn, "tensor %s is %s, expected an object with dtype, "
        "shape and data_offsets", q, d);
    g_free (d);
    return FALSE;
  }
  obj = json_node_get_object (node);

  members = json_object_get_members (obj);
  for (l = members; l; l = l->next) {
    const char *k = l->data;
    if (strcmp (k, keys[0]) != 0 && strcmp (k, keys[1]) != 0
        && strcmp (k, keys[2]) != 0) {
      char *kq = rnn_st_quote (k);
      st_error (error, dn, "tensor %s has unknown key %s (expected exactly "
          "dtype, shape and data_offsets)", q, kq);
      g_free (kq);
      g_list_free (members);
      return FALSE;
    }
  }
  g_list_free (members);
  for (guint i = 0; i < G_N_ELEMENTS (keys); i++) {
    if (!json_object_has_member (obj, keys[i])) {
      st_error (error, dn, "tensor %s has no \"%s\"", q, keys[i]);
      return FALSE;
    }
  }
  n_dtype = json_object_get_member (obj, "dtype");
  n_shape = json_object_get_member (obj, "shape");
  n_offsets = json_object_get_member (obj, "data_offsets");

  /* dtype */
  if (!node_is_string (n_dtype)) {
    char *d = node_describe (n_dtype);
    st_error (error, dn, "tensor %s: dtype is %s, expected a string", q, d);
    g_free (d);
    return FALSE;
  }
  info = dtype_lookup (json_node_get_string (n_dtype));
  if (info == NULL) {
    char *dq = rnn_st_quote (json_node_get_string (n_dtype));
    st_error (error, dn, "tensor %s has unknown dtype %s", q, dq);
    g_free (dq);
    return FALSE;
  }

  /* shape */
  if (!JSON_NODE_HOLDS_ARRAY (n_shape)) {
    char *d = node_describe (n_shape);
    st_error (error, dn, "tensor %s: shape is %s, expected an array of "
        "non-negative integers", q, d);
    g_free (d);
    return FALSE;
  }
  arr = json_node_get_array (n_shape);
  if (json_array_get_length (arr) > ST_MAX_DIMS) {
    st_error (error, dn, "tensor %s: shape has %u dimensions, at most %u "
        "are supported", q, json_array_get_length (arr), ST_MAX_DIMS);
    return FALSE;
  }
  ndim = json_array_get_length (arr);
  for (guint i = 0; i < ndim; i++) {
    JsonNode *d = json_array_get_element (arr, i);
    if (!node_get_uint (d, &e->t.shape[i])) {
      char *ds = node_describe (d);
      st_error (error, dn, "tensor %s: shape[%u] is %s, expected a "
          "non-negative integer", q, i, ds);
      g_free (ds);
      return FALSE;
    }
  }

  /* data_offsets */
  if (!JSON_NODE_HOLDS_ARRAY (n_offsets)) {
    char *d = node_describe (n_offsets);
    st_error (error, dn, "tensor %s: data_offsets is %s, expected an array "
        "of two non-negative integers", q, d);
    g_free (d);
    return FALSE;
  }
  arr = json_node_get_array (n_offsets);
  if (json_array_get_length (arr) != 2) {
    st_error (error, dn, "tensor %s: data_offsets has %u elements, expected "
        "2 (begin, end)", q, json_array_get_length (arr));
    return FALSE;
  }
  for (guint i = 0; i < 2; i++) {
    JsonNode *d = json_array_get_element (arr, i);
    if (!node_get_uint (d, &off[i])) {
      char *ds = node_describe (d);
      st_error (error, dn, "tensor %s: data_offsets[%u] is %s, expected a "
          "non-negative integer", q, i, ds);
      g_free (ds);
      return FALSE;
    }
  }
  if (off[0] > off[1]) {
    st_error (error, dn, "tensor %s: data_offsets [%" G_GUINT64_FORMAT ", %"
        G_GUINT64_FORMAT "] have begin > end", q, off[0], off[1]);
    return FALSE;
  }

  /* sizes, with overflow checks */
  for (guint i = 0; i < ndim; i++) {
    guint64 d = e->t.shape[i];
    if (d != 0 && numel > G_MAXUINT64 / d) {
      char *s = format_shape (e->t.shape, ndim);
      st_error (error, dn, "tensor %s: the element count of shape %s "
          "overflows 64 bits", q, s);
      g_free (s);
      return FALSE;
    }
    numel *= d;
  }
  if (numel > G_MAXUINT64 / info->bits) {
    char *s = format_shape (e->t.shape, ndim);
    st_error (error, dn, "tensor %s: the byte size of shape %s of %s "
        "overflows 64 bits", q, s, info->name);
    g_free (s);
    return FALSE;
  }
  nbits = numel * info->bits;
  if (nbits % 8 != 0) {
    char *s = format_shape (e->t.shape, ndim);
    st_error (error, dn, "tensor %s: shape %s of %s is not a whole number of "
        "bytes", q, s, info->name);
    g_free (s);
    return FALSE;
  }
  nbytes = nbits / 8;
  if (off[1] - off[0] != nbytes) {
    char *s = format_shape (e->t.shape, ndim);
    st_error (error, dn, "tensor %s: data_offsets [%" G_GUINT64_FORMAT ", %"
        G_GUINT64_FORMAT "] span %" G_GUINT64_FORMAT " bytes, but shape %s of "
        "%s needs %" G_GUINT64_FORMAT " bytes", q, off[0], off[1],
        off[1] - off[0], s, info->name, nbytes);
    g_free (s);
    return FALSE;
  }
  if (off[1] > data_size) {
    st_error (error, dn, "tensor %s: data_offsets [%" G_GUINT64_FORMAT ", %"
        G_GUINT64_FORMAT "] run past the end of the data region (%"
        G_GUINT64_FORMAT " bytes)", q, off[0], off[1], data_size);
    return FALSE;
  }

  e->t.name = g_strdup (name);
  e->t.dtype = info->dtype;
  e->t.dtype_name = info->name;
  e->t.ndim = ndim;
  e->t.numel = numel;
  e->t.nbytes = (gsize) nbytes;
  e->begin = off[0];
  e->end = off[1];
  return TRUE;
}

static void
entries_free (Entry *entries, guint n)
{
  for (guint i = 0; i < n; i++)
    g_free ((char *) entries[i].t.name);
  g_free (entries);
}

gboolean
rnn_safetensors_header_length (const guint8 *data, guint64 file_size,
    const char *display_name, guint64 *header_len, GError **error)
{
  guint64 n;

  g_return_val_if_fail (data != NULL || file_size < 8, FALSE);
  g_return_val_if_fail (header_len != NULL, FALSE);
  if (display_name == NULL)
    display_name = "<memory>";

  if (file_size < 8) {
    st_error (error, display_name, "file is %" G_GUINT64_FORMAT " bytes, "
        "too short for the 8-byte header length", file_size);
    return FALSE;
  }
  memcpy (&n, data, 8);
  n = GUINT64_FROM_LE (n);
  if (n == 0) {
    st_error (error, display_name, "header length is 0");
    return FALSE;
  }
  if (n > ST_MAX_HEADER_SIZE) {
    st_error (error, display_name, "header length %" G_GUINT64_FORMAT
        " exceeds the limit of %u bytes", n, ST_MAX_HEADER_SIZE);
    return FALSE;
  }
  if (n > file_size - 8) {
    st_error (error, display_name, "header length %" G_GUINT64_FORMAT
        " runs past the end of the file (%" G_GUINT64_FORMAT " bytes follow "
        "the length field)", n, file_size - 8);
    return FALSE;
  }
  *header_len = n;
  return TRUE;
}

RnnSafetensors *
rnn_safetensors_parse (const guint8 *data, gsize size,
    const char *display_name, GError **error)
{
  g_return_val_if_fail (data != NULL || size == 0, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return rnn_safetensors_parse_head (data, size, size, G_MAXUINT, G_MAXUINT,
      display_name, error);
}

RnnSafetensors *
rnn_safetensors_parse_head (const guint8 *data, gsize avail,
    guint64 file_size, guint max_tensors, guint max_meta_keys,
    const char *display_name, GError **error)
{
  RnnSafetensors *st = NULL;
  JsonParser *parser = NULL;
  JsonObject *root;
  GList *members = NULL, *l;
  Entry *entries = NULL;
  guint n_entries = 0;
  guint64 n, data_size, pos;
  const char *header, *bad;
  const guint8 *region;
  GError *json_error = NULL;

  g_return_val_if_fail (data != NULL || avail == 0, NULL);
  g_return_val_if_fail (avail <= file_size, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (display_name == NULL)
    display_name = "<memory>";

  if (!rnn_safetensors_header_length (data, file_size, display_name, &n,
          error))
    return NULL;
  if (avail < 8 || n > avail - 8) {
    /* the caller read less than the header */
    st_error (error, display_name, "only %" G_GSIZE_FORMAT " bytes of the "
        "%" G_GUINT64_FORMAT "-byte header were read", MAX (avail, 8) - 8, n);
    return NULL;
  }
  header = (const char *) data + 8;
  /* the tensors' bytes are in @data only when all of the file is */
  region = avail == file_size ? data + 8 + n : NULL;
  data_size = file_size - 8 - n;

  if (!g_utf8_validate (header, (gssize) n, &bad)) {
    st_error (error, display_name, "header is not valid UTF-8 (byte %"
        G_GSIZE_FORMAT " of the header)", (gsize) (bad - header));
    return NULL;
  }
  if (!scan_header (header, n, max_tensors, max_meta_keys, display_name,
          error))
    return NULL;

  parser = json_parser_new ();
  if (!json_parser_load_from_data (parser, header, (gssize) n, &json_error)) {
    st_error (error, display_name, "header is not valid JSON: %s",
        json_error->message);
    g_error_free (json_error);
    goto fail;
  }
  if (!JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser))) {
    st_error (error, display_name, "header is not a JSON object");
    goto fail;
  }
  root = json_node_get_object (json_parser_get_root (parser));

  st = g_new0 (RnnSafetensors, 1);
  st->display_name = g_strdup (display_name);
  st->index = g_hash_table_new (g_str_hash, g_str_equal);
  st->meta = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);

  members = json_object_get_members (root);
  entries = g_new0 (Entry, json_object_get_size (root) + 1);
  for (l = members; l; l = l->next) {
    const char *name = l->data;
    JsonNode *node = json_object_get_member (root, name);
    gboolean ok;

    if (strcmp (name, "__metadata__") == 0) {
      if (!parse_metadata (st, node, error))
        goto fail;
      st->has_meta = TRUE;
      continue;
    }
    {
      char *q = rnn_st_quote (name);
      ok = parse_tensor (st, name, q, node, data_size, &entries[n_entries],
          error);
      g_free (q);
    }
    if (!ok)
      goto fail;
    n_entries++;
  }
  g_clear_pointer (&members, g_list_free);
  if (!st->has_meta)
    st->meta_keys = g_new0 (char *, 1);

  /* Sorted by offset, the tensors tile the data region exactly. */
  qsort (entries, n_entries, sizeof (Entry), entry_cmp);
  pos = 0;
  for (guint i = 0; i < n_entries; i++) {
    Entry *e = &entries[i];
    if (e->begin != pos) {
      char *q = rnn_st_quote (e->t.name);
      if (e->begin > pos) {
        st_error (error, display_name, "gap of %" G_GUINT64_FORMAT " bytes "
            "in the data region before tensor %s (data_offsets [%"
            G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT "], the previous tensor "
            "ends at %" G_GUINT64_FORMAT ")", e->begin - pos, q, e->begin,
            e->end, pos);
      } else {
        char *pq = rnn_st_quote (entries[i - 1].t.name);
        st_error (error, display_name, "tensor %s (data_offsets [%"
            G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT "]) overlaps tensor %s "
            "(data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT "])",
            q, e->begin, e->end, pq, entries[i - 1].begin,
            entries[i - 1].end);
        g_free (pq);
      }
      g_free (q);
      goto fail;
    }
    pos = e->end;
  }
  if (pos != data_size) {
    st_error (error, display_name, "%" G_GUINT64_FORMAT " trailing bytes "
        "after the last tensor (the tensors cover %" G_GUINT64_FORMAT
        " of the %" G_GUINT64_FORMAT " data bytes)", data_size - pos, pos,
        data_size);
    goto fail;
  }

  st->n_tensors = n_entries;
  st->data_start = 8 + n;
  st->tensors = g_new0 (RnnStTensor, n_entries + 1);
  st->begins = g_new0 (guint64, n_entries + 1);
  for (guint i = 0; i < n_entries; i++) {
    st->tensors[i] = entries[i].t;
    st->tensors[i].data = region ? region + entries[i].begin : NULL;
    st->begins[i] = entries[i].begin;
    g_hash_table_insert (st->index, (gpointer) st->tensors[i].name,
        GUINT_TO_POINTER (i + 1));
  }
  g_free (entries);
  g_object_unref (parser);
  return st;

fail:
  if (members)
    g_list_free (members);
  if (entries)
    entries_free (entries, n_entries);
  if (parser)
    g_object_unref (parser);
  if (st)
    rnn_safetensors_free (st);
  return NULL;
}

void
rnn_safetensors_free (RnnSafetensors *st)
{
  if (st == NULL)
    return;
  for (guint i = 0; i < st->n_tensors; i++)
    g_free ((char *) st->tensors[i].name);
  g_free (st->tensors);
  g_free (st->begins);
  g_hash_table_unref (st->index);
  g_free (st->meta_keys);       /* strings are owned by @meta */
  g_hash_table_unref (st->meta);
  g_free (st->display_name);
  g_free (st);
}

guint
rnn_safetensors_get_n_tensors (const RnnSafetensors *st)
{
  g_return_val_if_fail (st != NULL, 0);
  return st->n_tensors;
}

const RnnStTensor *
rnn_safetensors_get_tensor (const RnnSafetensors *st, guint i)
{
  g_return_val_if_fail (st != NULL, NULL);
  g_return_val_if_fail (i < st->n_tensors, NULL);
  return &st->tensors[i];
}

const RnnStTensor *
rnn_safetensors_find (const RnnSafetensors *st, const char *name)
{
  guint i;

  g_return_val_if_fail (st != NULL, NULL);
  g_return_val_if_fail (name != NULL, NULL);
  i = GPOINTER_TO_UINT (g_hash_table_lookup (st->index, name));
  return i ? &st->tensors[i - 1] : NULL;
}

const char *
rnn_safetensors_get_meta (const RnnSafetensors *st, const char *key)
{
  g_return_val_if_fail (st != NULL, NULL);
  g_return_val_if_fail (key != NULL, NULL);
  return g_hash_table_lookup (st->meta, key);
}

guint64
rnn_safetensors_get_file_offset (const RnnSafetensors *st,
    const RnnStTensor *t)
{
  g_return_val_if_fail (st != NULL && t != NULL, 0);
  g_return_val_if_fail (t >= st->tensors && t < st->tensors + st->n_tensors,
      0);
  return st->data_start + st->begins[t - st->tensors];
}

const char *
rnn_safetensors_get_display_name (const RnnSafetensors *st)
{
  g_return_val_if_fail (st != NULL, NULL);
  return st->display_name;
}

const char *const *
rnn_safetensors_get_meta_keys (const RnnSafetensors *st)
{
  g_return_val_if_fail (st != NULL, NULL);
  return (const char *const *) st->meta_keys;
}

gboolean
rnn_safetensors_has_meta (const RnnSafetensors *st)
{
  g_return_val_if_fail (st != NULL, FALSE);
  return st->has_meta;
}

/* ---- conversion --------------------------------------------------------- */

static float
bits_to_float (guint32 bits)
{
  float f;

  memcpy (&f, &bits, sizeof f);
  return f;
}

/* IEEE 754 binary16 -> binary32, exact (every half is a float). */
static float
half_to_float (guint16 h)
{
  guint32 sign = (guint32) (h & 0x8000u) << 16;
  guint32 exp = (h >> 10) & 0x1fu;
  guint32 mant = h & 0x3ffu;

  if (exp == 0) {
    /* zero or subnormal: mant * 2^-24, exact in float */
    float f = (float) mant * 0x1p-24f;
    return (h & 0x8000u) ? -f : f;
  }
  if (exp == 31)
    return bits_to_float (sign | 0x7f800000u | (mant << 13));
  return bits_to_float (sign | ((exp + 112u) << 23) | (mant << 13));
}

static gsize
dtype_esize (RnnDtype dtype)
{
  switch (dtype) {
    case RNN_DTYPE_F32: return 4;
    case RNN_DTYPE_F16: return 2;
    case RNN_DTYPE_BF16: return 2;
    case RNN_DTYPE_F64: return 8;
    case RNN_DTYPE_OTHER:
    default:
      return 0;
  }
}

static gboolean
not_convertible (const RnnStTensor *t, GError **error)
{
  char *q = rnn_st_quote (t->name ? t->name : "");

  g_set_error (error, RNN_ERROR, RNN_ERROR_TENSOR,
      "tensor %s has dtype %s, which cannot be converted to float32 "
      "(F32, F16, BF16 and F64 can)", q,
      t->dtype_name ? t->dtype_name : "?");
  g_free (q);
  return FALSE;
}

gboolean
rnn_safetensors_convert_f32 (const RnnStTensor *t, const guint8 *src,
    gsize first, gsize count, float *out, GError **error)
{
  const gsize esize = dtype_esize (t->dtype);
  char *q;

  g_return_val_if_fail (t != NULL, FALSE);
  g_return_val_if_fail ((src != NULL && out != NULL) || count == 0, FALSE);
  if (esize == 0)
    return not_convertible (t, error);

  for (gsize i = 0; i < count; i++) {
    const guint8 *p = src + i * esize;
    switch (t->dtype) {
      case RNN_DTYPE_F32: {
        guint32 u;
        memcpy (&u, p, 4);
        out[i] = bits_to_float (GUINT32_FROM_LE (u));
        break;
      }
      case RNN_DTYPE_F16: {
        guint16 u;
        memcpy (&u, p, 2);
        out[i] = half_to_float (GUINT16_FROM_LE (u));
        break;
      }
      case RNN_DTYPE_BF16: {
        guint16 u;
        memcpy (&u, p, 2);
        out[i] = bits_to_float ((guint32) GUINT16_FROM_LE (u) << 16);
        break;
      }
      case RNN_DTYPE_F64: {
        guint64 u;
        double d;
        memcpy (&u, p, 8);
        u = GUINT64_FROM_LE (u);
        memcpy (&d, &u, 8);
        if (isfinite (d) && fabs (d) > FLT_MAX) {
          q = rnn_st_quote (t->name ? t->name : "");
          g_set_error (error, RNN_ERROR, RNN_ERROR_TENSOR,
              "tensor %s: F64 value %.17g at index %" G_GSIZE_FORMAT
              " is outside the float32 range", q, d, first + i);
          g_free (q);
          return FALSE;
        }
        /* NaN and infinities convert as themselves; finite values in
         * range round to nearest. */
        out[i] = (float) d;
        break;
      }
      case RNN_DTYPE_OTHER:
      default:
        g_assert_not_reached ();
    }
  }
  return TRUE;
}

gboolean
rnn_safetensors_read_f32 (const RnnStTensor *t, float *out, GError **error)
{
  gsize esize;
  char *q;

  g_return_val_if_fail (t != NULL, FALSE);
  g_return_val_if_fail (out != NULL || t->numel == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  esize = dtype_esize (t->dtype);
  if (esize == 0)
    return not_convertible (t, error);
  /* Hand-built descriptors are not trusted either. */
  if (t->numel > G_MAXSIZE / esize || t->nbytes != t->numel * esize
      || (t->numel > 0 && t->data == NULL)) {
    q = rnn_st_quote (t->name ? t->name : "");
    g_set_error (error, RNN_ERROR, RNN_ERROR_TENSOR,
        "tensor %s: %" G_GSIZE_FORMAT " bytes do not hold %" G_GUINT64_FORMAT
        " elements of %" G_GSIZE_FORMAT " bytes", q, t->nbytes, t->numel,
        esize);
    g_free (q);
    return FALSE;
  }
  return rnn_safetensors_convert_f32 (t, t->data, 0, (gsize) t->numel, out,
      error);
}
