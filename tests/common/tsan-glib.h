/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Makes GLib's own synchronisation visible to ThreadSanitizer.
 *
 * GLib (2.74, Linux) implements GMutex and GCond on futexes, which TSan does
 * not see, and it is not built with -fsanitize=thread: without help every
 * access guarded by GST_OBJECT_LOCK is reported as a race.  Under TSan the
 * test binary interposes g_mutex_lock/trylock/unlock and g_cond_wait(_until)
 * (calls from GStreamer and from our code reach the executable's
 * definitions first), forwards to GLib's and tells TSan about the
 * acquire/release on the mutex.  It also gives the hand-over of a
 * GThreadPool item (g_thread_pool_push -> the pool's function, through
 * GLib's internal queue) a release/acquire pair on the item, and
 * g_atomic_ref_count_dec() (a function in GLib, which our reference counts
 * use) the release/acquire of a reference count.  Nothing else is hidden: a
 * race on data that no lock or hand-over orders is still reported.
 *
 * Include it in one test program; it is empty unless built with TSan. */
#pragma once

#include <glib.h>

#if defined(__SANITIZE_THREAD__)
# define TSAN_GLIB 1
#elif defined(__has_feature)
# if __has_feature(thread_sanitizer)
#  define TSAN_GLIB 1
# endif
#endif

#ifdef TSAN_GLIB
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

/* f = GLib's @name, of pointer type @type (a typedef) */
#define TSAN_REAL(type, name) \
  static type real; \
  type f = __atomic_load_n (&real, __ATOMIC_ACQUIRE); \
  if (!f) { \
    f = (type) dlsym (RTLD_NEXT, name); \
    __atomic_store_n (&real, f, __ATOMIC_RELEASE); \
  }

typedef void (*TsanMutexFunc) (GMutex *);
typedef gboolean (*TsanTrylockFunc) (GMutex *);
typedef void (*TsanWaitFunc) (GCond *, GMutex *);
typedef gboolean (*TsanWaitUntilFunc) (GCond *, GMutex *, gint64);
typedef GThreadPool *(*TsanPoolNewFunc) (GFunc, gpointer, GDestroyNotify,
    gint, gboolean, GError **);
typedef gboolean (*TsanPoolPushFunc) (GThreadPool *, gpointer, GError **);
typedef gboolean (*TsanRefDecFunc) (gatomicrefcount *);

void g_mutex_lock (GMutex *mutex);
gboolean g_mutex_trylock (GMutex *mutex);
void g_mutex_unlock (GMutex *mutex);
void g_cond_wait (GCond *cond, GMutex *mutex);
gboolean g_cond_wait_until (GCond *cond, GMutex *mutex, gint64 end_time);
GThreadPool *g_thread_pool_new_full (GFunc func, gpointer user_data,
    GDestroyNotify item_free_func, gint max_threads, gboolean exclusive,
    GError **error);
gboolean g_thread_pool_push (GThreadPool *pool, gpointer data,
    GError **error);
gboolean g_atomic_ref_count_dec (gatomicrefcount *arc);

void
g_mutex_lock (GMutex *mutex)
{
  TSAN_REAL (TsanMutexFunc, "g_mutex_lock");
  f (mutex);
  __tsan_acquire (mutex);
}

gboolean
g_mutex_trylock (GMutex *mutex)
{
  TSAN_REAL (TsanTrylockFunc, "g_mutex_trylock");
  if (!f (mutex))
    return FALSE;
  __tsan_acquire (mutex);
  return TRUE;
}

void
g_mutex_unlock (GMutex *mutex)
{
  TSAN_REAL (TsanMutexFunc, "g_mutex_unlock");
  __tsan_release (mutex);
  f (mutex);
}

void
g_cond_wait (GCond *cond, GMutex *mutex)
{
  TSAN_REAL (TsanWaitFunc, "g_cond_wait");
  __tsan_release (mutex);
  f (cond, mutex);
  __tsan_acquire (mutex);
}

gboolean
g_cond_wait_until (GCond *cond, GMutex *mutex, gint64 end_time)
{
  gboolean ok;
  TSAN_REAL (TsanWaitUntilFunc, "g_cond_wait_until");
  __tsan_release (mutex);
  ok = f (cond, mutex, end_time);
  __tsan_acquire (mutex);
  return ok;
}

typedef struct
{
  GFunc func;
  gpointer user_data;
} TsanPoolFunc;

static void
tsan_pool_trampoline (gpointer data, gpointer user_data)
{
  TsanPoolFunc *t = user_data;

  __tsan_acquire (data);
  t->func (data, t->user_data);
}

GThreadPool *
g_thread_pool_new_full (GFunc func, gpointer user_data,
    GDestroyNotify item_free_func, gint max_threads, gboolean exclusive,
    GError **error)
{
  /* one small block per pool, never freed: TSan builds only */
  TsanPoolFunc *t = g_new (TsanPoolFunc, 1);
  TSAN_REAL (TsanPoolNewFunc, "g_thread_pool_new_full");

  t->func = func;
  t->user_data = user_data;
  return f (tsan_pool_trampoline, t, item_free_func, max_threads, exclusive,
      error);
}

gboolean
g_thread_pool_push (GThreadPool *pool, gpointer data, GError **error)
{
  TSAN_REAL (TsanPoolPushFunc, "g_thread_pool_push");
  __tsan_release (data);
  return f (pool, data, error);
}
/* A reference count (RnnModel's): the last unref frees what other threads
 * read before their unref, the usual release/acquire pair. */
gboolean
g_atomic_ref_count_dec (gatomicrefcount *arc)
{
  gboolean last;
  TSAN_REAL (TsanRefDecFunc, "g_atomic_ref_count_dec");
  __tsan_release (arc);
  last = f (arc);
  if (last)
    __tsan_acquire (arc);
  return last;
}
#endif
