/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Naming the files that are not gst-rnn models (see rnn-sniff.c). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* A sentence saying what kind of file @name is (PyTorch, TorchScript,
 * ONNX, the amp models' JSON formats, WAV, ...) and the command that
 * converts it, or NULL if it is none of the kinds known here.  @head is
 * the start of the file and @tail its end (for a zip's member names; may
 * be @head again for a short file).  Free with g_free(). */
gchar *rnn_sniff_describe (const guint8 *head, gsize n_head,
    const guint8 *tail, gsize n_tail, const char *name);

/* The same for the regular file at @path (its first and last 64 KiB);
 * NULL for anything else, or a file that cannot be read. */
gchar *rnn_sniff_file (const char *path);

G_END_DECLS
