/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* gst-rnn numerical core: recorded training data.
 *
 * An RnnRecording is a growing table of fixed-size float records (one per
 * time step of a recorded stream: the step's inputs, its target and a loss
 * weight, as the rnntrain element lays them out).  Records are kept in
 * memory up to a byte bound; the records beyond it are spooled to a
 * temporary file in g_get_tmp_dir () ($TMPDIR), which is unlinked as soon as
 * it is created, so nothing is left behind even if the process dies.  Reads
 * return the same bytes wherever a record lives, so training on a spooled
 * recording gives bitwise the same model.
 *
 * No GStreamer here (docs/design.md §1).  Not thread-safe: one owner at a time.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _RnnRecording RnnRecording;

/* A recording of records of @record_floats floats; at most @max_memory
 * bytes of them are held in memory (0: every record goes to the file). */
RnnRecording *rnn_recording_new (gsize record_floats, guint64 max_memory);
void rnn_recording_free (RnnRecording *rec);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (RnnRecording, rnn_recording_free)

/* Appends @n records.  Fails (RNN_ERROR_IO, nothing appended) when the
 * spool file cannot be created or written. */
gboolean rnn_recording_append (RnnRecording *rec, const float *records,
    gsize n, GError **error);

/* Copies records [@first, @first + @n) to @out (n * record_floats floats).
 * Fails with RNN_ERROR_IO when the spool file cannot be read. */
gboolean rnn_recording_read (RnnRecording *rec, gsize first, gsize n,
    float *out, GError **error);

/* Number of records. */
gsize rnn_recording_get_length (const RnnRecording *rec);
gsize rnn_recording_get_record_floats (const RnnRecording *rec);
/* Records held in memory; the rest are in the spool file. */
gsize rnn_recording_get_n_in_memory (const RnnRecording *rec);
/* Bytes written to the spool file. */
guint64 rnn_recording_get_spooled_bytes (const RnnRecording *rec);

/* Drops every record (the spool file is closed). */
void rnn_recording_clear (RnnRecording *rec);

G_END_DECLS
