/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Recorded training data: records in memory up to a bound, then spooled to
 * an unlinked temporary file (see rnn-dataset.h). */
#include "rnn-dataset.h"
#include "rnn.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

struct _RnnRecording
{
  gsize rec_floats;             /* floats per record */
  gsize rec_bytes;
  gsize mem_limit;              /* records that may live in memory */
  float *mem;                   /* [mem_capacity][rec_floats] */
  gsize mem_capacity;           /* records allocated */
  gsize n_mem;                  /* records in memory: the first n_mem */
  gsize n_file;                 /* records in the spool file, after those */
  int fd;                       /* spool file, -1 until needed */
};

RnnRecording *
rnn_recording_new (gsize record_floats, guint64 max_memory)
{
  g_return_val_if_fail (record_floats > 0, NULL);
  g_return_val_if_fail (record_floats <= G_MAXSIZE / sizeof (float) / 2, NULL);

  RnnRecording *rec = g_new0 (RnnRecording, 1);
  rec->rec_floats = record_floats;
  rec->rec_bytes = record_floats * sizeof (float);
  rec->mem_limit = (gsize) MIN (max_memory / rec->rec_bytes,
      (guint64) (G_MAXSIZE / rec->rec_bytes));
  rec->fd = -1;
  return rec;
}

void
rnn_recording_clear (RnnRecording *rec)
{
  g_return_if_fail (rec != NULL);
  g_clear_pointer (&rec->mem, g_free);
  rec->mem_capacity = rec->n_mem = rec->n_file = 0;
  if (rec->fd >= 0) {
    close (rec->fd);
    rec->fd = -1;
  }
}

void
rnn_recording_free (RnnRecording *rec)
{
  if (!rec)
    return;
  rnn_recording_clear (rec);
  g_free (rec);
}

gsize
rnn_recording_get_length (const RnnRecording *rec)
{
  g_return_val_if_fail (rec != NULL, 0);
  return rec->n_mem + rec->n_file;
}

gsize
rnn_recording_get_record_floats (const RnnRecording *rec)
{
  g_return_val_if_fail (rec != NULL, 0);
  return rec->rec_floats;
}

gsize
rnn_recording_get_n_in_memory (const RnnRecording *rec)
{
  g_return_val_if_fail (rec != NULL, 0);
  return rec->n_mem;
}

guint64
rnn_recording_get_spooled_bytes (const RnnRecording *rec)
{
  g_return_val_if_fail (rec != NULL, 0);
  return (guint64) rec->n_file * rec->rec_bytes;
}

/* Makes room for @n more records in memory (growing geometrically but
 * never past mem_limit); returns how many fit. */
static gsize
mem_reserve (RnnRecording *rec, gsize n)
{
  const gsize room = rec->mem_limit - rec->n_mem;
  const gsize want = rec->n_mem + MIN (n, room);
  if (want > rec->mem_capacity) {
    gsize cap = MAX (rec->mem_capacity, 1024);
    while (cap < want)
      cap = cap > G_MAXSIZE / 2 ? G_MAXSIZE : cap * 2;
    cap = MIN (cap, rec->mem_limit);
    gpointer mem = g_try_realloc_n (rec->mem, cap, rec->rec_bytes);
    if (!mem) {
      /* the memory max-memory allows is not there: spool the rest */
      rec->mem_limit = rec->mem_capacity;
      return MIN (n, rec->mem_limit - rec->n_mem);
    }
    rec->mem = mem;
    rec->mem_capacity = cap;
  }
  return MIN (n, room);
}

static gboolean
spool_open (RnnRecording *rec, GError **error)
{
  gchar *path = NULL;
  GError *err = NULL;
  int fd = g_file_open_tmp ("rnntrain-XXXXXX.rec", &path, &err);

  if (fd < 0) {
    g_set_error (error, RNN_ERROR, RNN_ERROR_IO,
        "cannot create a spool file in %s: %s", g_get_tmp_dir (), err->message);
    g_error_free (err);
    return FALSE;
  }
  /* unlinked at once: the open descriptor keeps the data, and nothing is
   * left behind however the process ends */
  g_unlink (path);
  g_free (path);
  rec->fd = fd;
  return TRUE;
}

gboolean
rnn_recording_append (RnnRecording *rec, const float *records, gsize n,
    GError **error)
{
  g_return_val_if_fail (rec != NULL, FALSE);
  g_return_val_if_fail (records != NULL || n == 0, FALSE);
  g_return_val_if_fail (n <= G_MAXSIZE - rnn_recording_get_length (rec), FALSE);

  if (rec->n_file == 0) {
    const gsize m = mem_reserve (rec, n);
    if (m > 0)
      memcpy (rec->mem + rec->n_mem * rec->rec_floats, records, m * rec->rec_bytes);
    rec->n_mem += m;
    records += m * rec->rec_floats;
    n -= m;
  }
  if (n == 0)
    return TRUE;

  if (rec->fd < 0 && !spool_open (rec, error))
    return FALSE;

  const guint8 *p = (const guint8 *) records;
  gsize left = n * rec->rec_bytes;
  off_t off = (off_t) rec->n_file * (off_t) rec->rec_bytes;
  while (left > 0) {
    ssize_t w = pwrite (rec->fd, p, left, off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      g_set_error (error, RNN_ERROR, RNN_ERROR_IO,
          "cannot write the spool file: %s",
          w < 0 ? g_strerror (errno) : "no space written");
      return FALSE;
    }
    p += w;
    off += w;
    left -= (gsize) w;
  }
  rec->n_file += n;
  return TRUE;
}

gboolean
rnn_recording_read (RnnRecording *rec, gsize first, gsize n, float *out,
    GError **error)
{
  g_return_val_if_fail (rec != NULL && (out != NULL || n == 0), FALSE);
  g_return_val_if_fail (first <= rnn_recording_get_length (rec), FALSE);
  g_return_val_if_fail (n <= rnn_recording_get_length (rec) - first, FALSE);

  if (first < rec->n_mem) {
    const gsize m = MIN (n, rec->n_mem - first);
    memcpy (out, rec->mem + first * rec->rec_floats, m * rec->rec_bytes);
    out += m * rec->rec_floats;
    first += m;
    n -= m;
  }
  if (n == 0)
    return TRUE;

  guint8 *p = (guint8 *) out;
  gsize left = n * rec->rec_bytes;
  off_t off = (off_t) (first - rec->n_mem) * (off_t) rec->rec_bytes;
  while (left > 0) {
    ssize_t r = pread (rec->fd, p, left, off);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      g_set_error (error, RNN_ERROR, RNN_ERROR_IO,
          "cannot read the spool file: %s",
          r < 0 ? g_strerror (errno) : "unexpected end of file");
      return FALSE;
    }
    p += r;
    off += r;
    left -= (gsize) r;
  }
  return TRUE;
}
