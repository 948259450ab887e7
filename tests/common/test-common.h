/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers shared by the core test programs. */
#pragma once

#include "rnn.h"
#include "rnn-safetensors.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

/* 1 in a build with AddressSanitizer or ThreadSanitizer. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
# define TEST_UNDER_SANITIZER 1
#elif defined(__has_feature)
# if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#  define TEST_UNDER_SANITIZER 1
# endif
#endif
#ifndef TEST_UNDER_SANITIZER
# define TEST_UNDER_SANITIZER 0
#endif

/* The fixture inputs: a 32-bit integer hash of (T, t, i) mapped to a float
 * in [-1, 1) that is exact in float32.  tests/core/gen-fixtures.py computes the
 * same values, so the inputs need not be stored. */
static inline float
fixture_input (guint32 T, guint32 t, guint32 i)
{
  guint32 u = t * 2654435761u + i * 40503u + T * 97u + 12345u;
  u ^= u >> 15;
  u *= 2246822519u;
  u ^= u >> 13;
  u *= 3266489917u;
  u ^= u >> 16;
  return ((float) (u >> 20) - 2048.0f) / 2048.0f;
}

/* x [T][B][I] for stream b of B, filled with the fixture sequence of length
 * @seq_T (streams may be given different sequences through @seq_T). */
static inline void
fixture_fill (float *x, guint T, guint B, guint b, guint I, guint seq_T)
{
  for (guint t = 0; t < T; t++)
    for (guint i = 0; i < I; i++)
      x[((gsize) t * B + b) * I + i] = fixture_input (seq_T, t, i);
}

static inline double
max_abs_diff (const float *a, const float *b, gsize n)
{
  double m = 0.0;
  for (gsize i = 0; i < n; i++) {
    double d = fabs ((double) a[i] - (double) b[i]);
    if (!(d <= m))              /* also catches NaN */
      m = isnan (d) ? INFINITY : d;
  }
  return m;
}

/* ---- fixture files ---------------------------------------------------------
 * tests/fixtures/<dir>.tar.xz unpacks (at build time) to <dir>/manifest.txt,
 * one name per line, and per name <name>.safetensors (the model) and
 * <name>.expected.safetensors (PyTorch's results). */

/* The names in <dir>/manifest.txt; aborts the test if it is missing. */
static inline char **
fixture_names (const char *dir)
{
  GError *error = NULL;
  char *path = g_test_build_filename (G_TEST_BUILT, dir, "manifest.txt", NULL);
  char *manifest = NULL;
  if (!g_file_get_contents (path, &manifest, NULL, &error))
    g_error ("fixtures missing (%s): %s", path, error->message);
  GStrvBuilder *b = g_strv_builder_new ();
  char **lines = g_strsplit (manifest, "\n", -1);
  for (char **n = lines; *n; n++)
    if (**n)
      g_strv_builder_add (b, *n);
  char **names = g_strv_builder_end (b);
  g_strv_builder_unref (b);
  g_strfreev (lines);
  g_free (manifest);
  g_free (path);
  return names;
}

/* The model of fixture @name. */
static inline RnnModel *
fixture_model (const char *dir, const char *name)
{
  GError *error = NULL;
  char *file = g_strdup_printf ("%s.safetensors", name);
  char *path = g_test_build_filename (G_TEST_BUILT, dir, file, NULL);
  RnnModel *m = rnn_model_load (path, &error);
  g_assert_no_error (error);
  g_free (file);
  g_free (path);
  return m;
}

/* PyTorch's results for fixture @name, parsed from the bytes returned in
 * @data (free them after the result). */
static inline RnnSafetensors *
fixture_expected (const char *dir, const char *name, guint8 **data)
{
  GError *error = NULL;
  char *file = g_strdup_printf ("%s.expected.safetensors", name);
  char *path = g_test_build_filename (G_TEST_BUILT, dir, file, NULL);
  gsize len;
  g_assert_true (g_file_get_contents (path, (char **) data, &len, &error));
  RnnSafetensors *st = rnn_safetensors_parse (*data, len, file, &error);
  g_assert_no_error (error);
  g_free (file);
  g_free (path);
  return st;
}

/* Removes @dir and the files in it (the tests' temporary directories,
 * which hold no subdirectories). */
static inline void
remove_tree (const gchar *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  const gchar *name;

  if (!d)
    return;
  while ((name = g_dir_read_name (d))) {
    gchar *p = g_build_filename (dir, name, NULL);
    g_unlink (p);
    g_free (p);
  }
  g_dir_close (d);
  g_rmdir (dir);
}

/* A model file of @cell with one layer, @I inputs and @H hidden units,
 * float32, written as its header only and extended with ftruncate () to
 * its full size: the data region is a hole that reads as zeros, so a model
 * of gigabytes costs no disk.  @n_extra_meta metadata keys "kNNNNNNN" and
 * @n_empty zero-size tensors are added (@G gates per unit).  Returns the file's size. */
static G_GNUC_UNUSED guint64
write_sparse_model (const char *path, const char *cell, guint G, guint I,
    guint H, guint n_extra_meta, guint n_empty)
{
  GString *h = g_string_new ("{\"__metadata__\":{");
  const guint64 GH = (guint64) G * H;
  const guint64 rows[4][2] = { { GH, I }, { GH, H }, { GH, 0 }, { GH, 0 } };
  const char *names[4] = { "rnn.weight_ih_l0", "rnn.weight_hh_l0",
    "rnn.bias_ih_l0", "rnn.bias_hh_l0" };
  guint64 off = 0, len;
  int fd;

  g_string_append_printf (h, "\"format\":\"gst-rnn\",\"version\":\"1\","
      "\"cell\":\"%s\",\"input_size\":\"%u\",\"hidden_size\":\"%u\","
      "\"num_layers\":\"1\",\"bidirectional\":\"false\","
      "\"head_activation\":\"none\"", cell, I, H);
  for (guint i = 0; i < n_extra_meta; i++)
    g_string_append_printf (h, ",\"k%07u\":\"v%u\"", i, i);
  g_string_append_c (h, '}');
  for (guint t = 0; t < 4; t++) {
    const guint64 numel = rows[t][1] ? rows[t][0] * rows[t][1] : rows[t][0];
    if (rows[t][1])
      g_string_append_printf (h, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%"
          G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT "],", names[t], rows[t][0],
          rows[t][1]);
    else
      g_string_append_printf (h, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%"
          G_GUINT64_FORMAT "],", names[t], rows[t][0]);
    g_string_append_printf (h, "\"data_offsets\":[%" G_GUINT64_FORMAT ",%"
        G_GUINT64_FORMAT "]}", off, off + numel * 4);
    off += numel * 4;
  }
  for (guint i = 0; i < n_empty; i++)
    g_string_append_printf (h, ",\"e%u\":{\"dtype\":\"F32\",\"shape\":[0],"
        "\"data_offsets\":[%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT "]}", i,
        off, off);
  g_string_append_c (h, '}');

  len = GUINT64_TO_LE ((guint64) h->len);
  fd = g_open (path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (write (fd, &len, 8), ==, 8);
  g_assert_cmpint (write (fd, h->str, h->len), ==, (gssize) h->len);
  g_assert_cmpint (ftruncate (fd, (off_t) (8 + h->len + off)), ==, 0);
  g_assert_cmpint (close (fd), ==, 0);
  len = 8 + h->len + off;
  g_string_free (h, TRUE);
  return len;
}

static G_GNUC_UNUSED gboolean
under_valgrind (void)
{
  char *maps = NULL;
  gboolean yes = FALSE;

  if (g_file_get_contents ("/proc/self/maps", &maps, NULL, NULL))
    yes = strstr (maps, "vgpreload") != NULL;
  g_free (maps);
  return yes;
}

/* RLIMIT_AS cannot be used under AddressSanitizer (its shadow memory
 * reserves terabytes of address space) or valgrind. */
static G_GNUC_UNUSED gboolean
address_limit_usable (void)
{
#if defined(__SANITIZE_ADDRESS__)
  return FALSE;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return FALSE;
#endif
#endif
  return !under_valgrind ();
}

/* The process's address space now, in bytes. */
static G_GNUC_UNUSED guint64
address_space_now (void)
{
  char *statm = NULL;
  guint64 pages = 0;

  if (g_file_get_contents ("/proc/self/statm", &statm, NULL, NULL))
    pages = g_ascii_strtoull (statm, NULL, 10);
  g_free (statm);
  return pages * (guint64) sysconf (_SC_PAGESIZE);
}
