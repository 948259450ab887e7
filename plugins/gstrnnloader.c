/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnnfilter's model loader and file watch.
 *
 * Loads run on a GThreadPool of one thread, so a model named while the
 * stream is running is read and checked beside it.  The watch runs a
 * GFileMonitor in a GMainContext of its own on a thread of its own, so it
 * works in applications without a main loop. */
#include "gstrnnloader.h"

#include <gio/gio.h>
#include <gst/gst.h>
#include <stdlib.h>
#include <string.h>

GST_DEBUG_CATEGORY_STATIC (gst_rnn_loader_debug);
#define GST_CAT_DEFAULT gst_rnn_loader_debug

typedef struct
{
  GstRnnLoader *loader;         /* not a reference: the loader frees us */
  gchar *path;
  GFile *file;
  GMainContext *context;
  GMainLoop *loop;
  GFileMonitor *monitor;
  /* when @path is a symbolic link: the file it points to, watched too (a
   * monitor on the link sees only the link) */
  GFile *target;
  GFileMonitor *target_monitor;
  GThread *thread;
} Watch;

struct _GstRnnLoader
{
  GstRnnLoaderFunc func;
  gpointer user_data;
  GThreadPool *pool;

  GMutex watch_lock;
  Watch *watch;
};

/* ---- loading ------------------------------------------------------------- */

static void
loader_run (gpointer data, gpointer user_data)
{
  GstRnnLoader *loader = user_data;
  gchar *path = data;

  loader->func (path, loader->user_data);
  g_free (path);
}

/* A loader that calls @func (path, @user_data) on its own thread for every
 * path queued. */
GstRnnLoader *
gst_rnn_loader_new (GstRnnLoaderFunc func, gpointer user_data)
{
  static gsize debug_once;
  GstRnnLoader *loader;

  g_return_val_if_fail (func != NULL, NULL);

  if (g_once_init_enter (&debug_once)) {
    GST_DEBUG_CATEGORY_INIT (gst_rnn_loader_debug, "rnnloader", 0,
        "rnnfilter's model loader and file watch");
    g_once_init_leave (&debug_once, 1);
  }
  loader = g_new0 (GstRnnLoader, 1);
  loader->func = func;
  loader->user_data = user_data;
  g_mutex_init (&loader->watch_lock);
  loader->pool = g_thread_pool_new_full (loader_run, loader, g_free, 1,
      FALSE, NULL);
  return loader;
}

/* Queues a load of @path (NULL: nothing).  Safe from any thread. */
void
gst_rnn_loader_queue (GstRnnLoader *loader, const gchar *path)
{
  g_return_if_fail (loader != NULL);

  if (path)
    g_thread_pool_push (loader->pool, g_strdup (path), NULL);
}

/* ---- the file watch ------------------------------------------------------ */

static void on_file_changed (GFileMonitor *monitor, GFile *file,
    GFile *other, GFileMonitorEvent event, gpointer user_data);

/* Watches the file @w->path resolves to as well, if that is another file
 * (a symbolic link); again when the link changes.  Runs with @w->context
 * the thread default, so the monitor delivers there. */
static void
watch_target (Watch *w)
{
  gchar *real = realpath (w->path, NULL);
  GFile *target;

  if (!real || strcmp (real, w->path) == 0) {
    free (real);
    return;
  }
  target = g_file_new_for_path (real);
  free (real);
  if (w->target && g_file_equal (target, w->target)) {
    g_object_unref (target);
    return;
  }
  if (w->target_monitor) {
    g_signal_handlers_disconnect_by_data (w->target_monitor, w);
    g_file_monitor_cancel (w->target_monitor);
    g_clear_object (&w->target_monitor);
  }
  g_clear_object (&w->target);
  w->target = target;
  w->target_monitor = g_file_monitor_file (target, G_FILE_MONITOR_WATCH_MOVES,
      NULL, NULL);
  if (w->target_monitor) {
    GST_DEBUG ("%s points to %s: watching that too", w->path,
        g_file_peek_path (target));
    g_signal_connect (w->target_monitor, "changed",
        G_CALLBACK (on_file_changed), w);
  }
}

static gboolean
is_watched (Watch *w, GFile *file)
{
  return file && (g_file_equal (file, w->file)
      || (w->target && g_file_equal (file, w->target)));
}

static void
on_file_changed (GFileMonitor *monitor, GFile *file, GFile *other,
    GFileMonitorEvent event, gpointer user_data)
{
  Watch *w = user_data;
  gboolean hit = FALSE;

  switch (event) {
    case G_FILE_MONITOR_EVENT_CHANGES_DONE_HINT:
    case G_FILE_MONITOR_EVENT_CREATED:
    case G_FILE_MONITOR_EVENT_MOVED_IN:
      hit = is_watched (w, file);
      break;
    case G_FILE_MONITOR_EVENT_RENAMED:
      /* an atomic rewrite: a temporary file renamed onto ours */
      hit = is_watched (w, other);
      break;
    default:
      break;
  }
  if (hit) {
    GST_DEBUG ("%s was rewritten (event %d)", w->path, event);
    if (monitor == w->monitor)
      watch_target (w);         /* the link may point elsewhere now */
    gst_rnn_loader_queue (w->loader, w->path);
  }
}

static gpointer
watch_thread (gpointer data)
{
  Watch *w = data;

  g_main_context_push_thread_default (w->context);
  g_main_loop_run (w->loop);
  g_signal_handlers_disconnect_by_data (w->monitor, w);
  g_file_monitor_cancel (w->monitor);
  g_clear_object (&w->monitor);
  if (w->target_monitor) {
    g_signal_handlers_disconnect_by_data (w->target_monitor, w);
    g_file_monitor_cancel (w->target_monitor);
    g_clear_object (&w->target_monitor);
  }
  while (g_main_context_iteration (w->context, FALSE));
  g_main_context_pop_thread_default (w->context);
  return NULL;
}

static gboolean
watch_quit (gpointer loop)
{
  g_main_loop_quit (loop);
  return G_SOURCE_REMOVE;
}

static void
watch_free (Watch *w)
{
  if (w->thread) {
    GSource *quit = g_idle_source_new ();

    g_source_set_callback (quit, watch_quit, w->loop, NULL);
    g_source_attach (quit, w->context);
    g_source_unref (quit);
    g_thread_join (w->thread);
  }
  g_clear_object (&w->monitor);
  g_clear_object (&w->target_monitor);
  g_clear_object (&w->target);
  g_main_loop_unref (w->loop);
  g_main_context_unref (w->context);
  g_object_unref (w->file);
  g_free (w->path);
  g_free (w);
}

/* The monitor delivers in the thread-default context at its creation: give
 * it a context of its own and a thread to run it. */
static Watch *
watch_new (GstRnnLoader *loader, const gchar *path, GError **error)
{
  Watch *w = g_new0 (Watch, 1);

  w->loader = loader;
  w->path = g_strdup (path);
  w->file = g_file_new_for_path (path);
  w->context = g_main_context_new ();
  w->loop = g_main_loop_new (w->context, FALSE);

  g_main_context_push_thread_default (w->context);
  w->monitor = g_file_monitor_file (w->file, G_FILE_MONITOR_WATCH_MOVES, NULL,
      error);
  if (w->monitor)
    watch_target (w);
  g_main_context_pop_thread_default (w->context);
  if (!w->monitor) {
    watch_free (w);
    return NULL;
  }
  g_signal_connect (w->monitor, "changed", G_CALLBACK (on_file_changed), w);
  w->thread = g_thread_new ("rnnfilter-watch", watch_thread, w);
  return w;
}

/* Watches @path, queueing a load of it whenever it is rewritten (written in
 * place, created, or renamed over); if @path is a symbolic link, also when
 * the file it points to is.  @path NULL watches nothing.  A watch on
 * another path ends; one already on @path carries on.  FALSE with @error set
 * if @path cannot be watched (no watch then).  Safe from any thread. */
gboolean
gst_rnn_loader_watch (GstRnnLoader *loader, const gchar *path,
    GError **error)
{
  gboolean ok = TRUE;

  g_return_val_if_fail (loader != NULL, FALSE);

  g_mutex_lock (&loader->watch_lock);
  if (loader->watch && (!path || strcmp (path, loader->watch->path) != 0))
    g_clear_pointer (&loader->watch, watch_free);
  if (path && !loader->watch) {
    loader->watch = watch_new (loader, path, error);
    ok = loader->watch != NULL;
    if (ok)
      GST_DEBUG ("watching %s", path);
  }
  g_mutex_unlock (&loader->watch_lock);
  return ok;
}

/* Ends the watch, drops the loads still queued, waits for the one running
 * and frees @loader. */
void
gst_rnn_loader_free (GstRnnLoader *loader)
{
  if (!loader)
    return;
  gst_rnn_loader_watch (loader, NULL, NULL);
  g_thread_pool_free (loader->pool, TRUE, TRUE);
  g_mutex_clear (&loader->watch_lock);
  g_free (loader);
}
