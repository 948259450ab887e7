/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnnfilter's model loader: a one-thread pool that loads model files off the
 * streaming thread, and the file watch of reload-on-change, which queues a
 * load whenever the watched file is rewritten. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _GstRnnLoader GstRnnLoader;

/**
 * GstRnnLoaderFunc:
 * @path: the file to load
 * @user_data: what gst_rnn_loader_new() was given
 *
 * Loads @path; runs on the loader's thread, one path at a time, in the order
 * they were queued.
 */
typedef void (*GstRnnLoaderFunc) (const gchar *path, gpointer user_data);

GstRnnLoader *gst_rnn_loader_new (GstRnnLoaderFunc func, gpointer user_data);
void gst_rnn_loader_queue (GstRnnLoader *loader, const gchar *path);
gboolean gst_rnn_loader_watch (GstRnnLoader *loader, const gchar *path,
    GError **error);
void gst_rnn_loader_free (GstRnnLoader *loader);

G_END_DECLS
