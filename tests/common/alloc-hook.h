/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A malloc counter for "no allocation in the steady state" tests.
 *
 * The test binary interposes malloc, calloc and realloc (glibc resolves them
 * to the executable's definitions first) and forwards to glibc's own entry
 * points, counting the calls a thread makes while it is armed.  Arming is per
 * thread, so only the thread under test is counted.
 *
 * Under AddressSanitizer or ThreadSanitizer the sanitizer owns malloc and the
 * interposer is left out (TEST_ALLOC_HOOK is 0); valgrind replaces it at run
 * time.  Tests call alloc_hook_works() and skip themselves when it is FALSE. */
#pragma once

#include <glib.h>
#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
# define TEST_ALLOC_HOOK 0
#elif defined(__has_feature)
# if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) \
    || __has_feature(memory_sanitizer)
#  define TEST_ALLOC_HOOK 0
# endif
#endif
#ifndef TEST_ALLOC_HOOK
# define TEST_ALLOC_HOOK 1
#endif

static __thread volatile gint alloc_armed;
static volatile gint alloc_count;

#if TEST_ALLOC_HOOK
extern void *__libc_malloc (size_t);
extern void *__libc_calloc (size_t, size_t);
extern void *__libc_realloc (void *, size_t);

void *malloc (size_t n);
void *calloc (size_t n, size_t s);
void *realloc (void *p, size_t n);

void *
malloc (size_t n)
{
  if (alloc_armed)
    g_atomic_int_inc (&alloc_count);
  return __libc_malloc (n);
}

void *
calloc (size_t n, size_t s)
{
  if (alloc_armed)
    g_atomic_int_inc (&alloc_count);
  return __libc_calloc (n, s);
}

void *
realloc (void *p, size_t n)
{
  if (alloc_armed)
    g_atomic_int_inc (&alloc_count);
  return __libc_realloc (p, n);
}
#endif

/* TRUE if the counter sees this thread's allocations. */
static inline gboolean
alloc_hook_works (void)
{
  gint before = g_atomic_int_get (&alloc_count);
  gpointer p;

  alloc_armed = 1;
  p = g_malloc (16);
  alloc_armed = 0;
  g_free (p);
  return g_atomic_int_get (&alloc_count) > before;
}
