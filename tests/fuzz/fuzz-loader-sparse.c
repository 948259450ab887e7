/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer target for the model loader's resource bounds (docs/design.md
 * §3: every file is untrusted, and a small file must not make the loader
 * allocate or read much).
 *
 * An input is a 4-byte little-endian size V (taken modulo 64 MiB) and then
 * the start of a model file -- typically its length field and header.  The
 * file the loader opens is that start followed by V zero bytes, a hole
 * made with ftruncate () in a memfd: so a header declaring large tensors
 * costs nothing to store, and the loader is driven through its file path
 * (rnn_model_load ()), which reads the header alone before the data.
 *
 * Besides the sanitizers' findings (scripts/fuzz builds this with
 * -fsanitize=fuzzer,address,undefined), these are crashes:
 *
 *  - a refusal that is not an RNN_ERROR whose message starts with the path;
 *  - memory held at once during the load beyond 64 times the file's size
 *    plus 16 MiB (counted with the sanitizer's allocation hooks): the
 *    loader allocated from what the header claims rather than what the file
 *    holds;
 *  - for files up to 1 MiB, a different outcome from
 *    rnn_model_load_from_data () on the same bytes in memory: another
 *    error, or a model that serialises differently.
 *
 * Built only with -Dfuzzing=true and clang.  Run it through scripts/fuzz.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "rnn.h"
#include "rnn-safetensors.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The allocation hooks are the sanitizer's: without ASan, no peak check. */
#if defined(__has_feature)
# if __has_feature(address_sanitizer)
#  define COUNT_ALLOCATIONS 1
# endif
#endif
#ifdef COUNT_ALLOCATIONS
# include <sanitizer/allocator_interface.h>
#endif

#define MAX_HOLE (64u << 20)
#define DIFF_MAX_SIZE (1u << 20)

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Live bytes allocated since the load began, and their peak. */
static volatile int counting;
static volatile gint64 live, peak;

#ifdef COUNT_ALLOCATIONS
static void
on_malloc (const volatile void *ptr, size_t size)
{
  if (!counting)
    return;
  live += (gint64) __sanitizer_get_allocated_size ((const void *) ptr);
  if (live > peak)
    peak = live;
}

static void
on_free (const volatile void *ptr)
{
  if (!counting || !__sanitizer_get_ownership ((const void *) ptr))
    return;
  live -= (gint64) __sanitizer_get_allocated_size ((const void *) ptr);
}
#endif

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  /* programmer-error checks reached from file data are bugs */
  g_log_set_always_fatal (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
  g_setenv ("OPENBLAS_NUM_THREADS", "1", TRUE);
#ifdef COUNT_ALLOCATIONS
  __sanitizer_install_malloc_and_free_hooks (on_malloc, on_free);
#endif
  return 0;
}

static void
check_refusal (const GError *err, const char *what, const char *path)
{
  if (err == NULL || err->domain != RNN_ERROR
      || !g_str_has_prefix (err->message, path)
      || strncmp (err->message + strlen (path), ": ", 2) != 0) {
    fprintf (stderr, "%s refused without a proper RNN_ERROR: %s\n", what,
        err ? err->message : "(no error)");
    abort ();
  }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *err = NULL, *merr = NULL;
  RnnModel *model, *mmodel;
  guint32 hole;
  guint64 file_size;
  char path[64];
  int fd;

  if (size < 4)
    return 0;
  memcpy (&hole, data, 4);
  hole = GUINT32_FROM_LE (hole) % (MAX_HOLE + 1);
  data += 4;
  size -= 4;
  file_size = (guint64) size + hole;

  fd = memfd_create ("fuzz-model", MFD_CLOEXEC);
  if (fd < 0) {
    perror ("memfd_create");
    abort ();
  }
  if ((size > 0 && write (fd, data, size) != (ssize_t) size)
      || ftruncate (fd, (off_t) file_size) != 0) {
    perror ("writing the memfd");
    abort ();
  }
  g_snprintf (path, sizeof path, "/proc/self/fd/%d", fd);

  live = peak = 0;
  counting = 1;
  model = rnn_model_load (path, &err);
  counting = 0;
  if (peak > (gint64) (64 * file_size + (16u << 20))) {
    fprintf (stderr, "the load of a %" G_GUINT64_FORMAT "-byte file held %"
        G_GINT64_FORMAT " bytes at once\n", file_size, (gint64) peak);
    abort ();
  }
  if (model == NULL)
    check_refusal (err, "rnn_model_load", path);

  if (file_size <= DIFF_MAX_SIZE) {
    guint8 *bytes = g_malloc0 (MAX (file_size, 1));

    memcpy (bytes, data, size);
    mmodel = rnn_model_load_from_data (bytes, (gsize) file_size, path,
        &merr);
    if ((model == NULL) != (mmodel == NULL)) {
      fprintf (stderr, "from the file: %s; from memory: %s\n",
          err ? err->message : "loaded", merr ? merr->message : "loaded");
      abort ();
    }
    if (model == NULL && (err->code != merr->code
            || strcmp (err->message, merr->message) != 0)) {
      fprintf (stderr, "from the file: %s\nfrom memory: %s\n", err->message,
          merr->message);
      abort ();
    }
    if (model != NULL) {
      GBytes *a = rnn_model_serialize (model);
      GBytes *b = rnn_model_serialize (mmodel);
      if (!g_bytes_equal (a, b)) {
        fprintf (stderr, "the file and memory loads differ\n");
        abort ();
      }
      g_bytes_unref (a);
      g_bytes_unref (b);
      rnn_model_unref (mmodel);
    }
    g_clear_error (&merr);
    g_free (bytes);
  }

  g_clear_error (&err);
  if (model)
    rnn_model_unref (model);
  close (fd);
  return 0;
}
