/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Run-time choice of the inference kernels: the widest family the processor
 * and the operating system support (AVX-512, AVX2 + FMA, the portable
 * build), or the one RNN_KERNELS names (generic, avx2, avx512) for tests
 * and comparisons. */
#include "rnn-kernels.h"

#include <string.h>

#ifndef RNN_HAVE_AVX2
const RnnKernels *
rnn_kernels_avx2 (void)
{
  return NULL;
}
#endif

#ifndef RNN_HAVE_AVX512
const RnnKernels *
rnn_kernels_avx512 (void)
{
  return NULL;
}
#endif

const RnnKernels *
rnn_kernels_by_name (const char *name)
{
  if (!name)
    return NULL;
  if (strcmp (name, "generic") == 0)
    return rnn_kernels_generic ();
  if (strcmp (name, "avx2") == 0)
    return rnn_kernels_avx2 ();
  if (strcmp (name, "avx512") == 0)
    return rnn_kernels_avx512 ();
  return NULL;
}

const RnnKernels *
rnn_kernels_get (void)
{
  static gsize chosen;
  if (g_once_init_enter (&chosen)) {
    const RnnKernels *k = NULL;
    const char *env = g_getenv ("RNN_KERNELS");
    if (env && *env) {
      k = rnn_kernels_by_name (env);
      /* a message, not a warning: tests make warnings fatal, and a
       * family this processor lacks is not an error of the program */
      if (!k)
        g_message ("RNN_KERNELS=%s: %s; using the widest supported "
            "family instead (generic, avx2 or avx512)", env,
            strcmp (env, "generic") == 0 || strcmp (env, "avx2") == 0
            || strcmp (env, "avx512") == 0
            ? "not supported by this processor or build" : "unknown family");
    }
    if (!k)
      k = rnn_kernels_avx512 ();
    if (!k)
      k = rnn_kernels_avx2 ();
    if (!k)
      k = rnn_kernels_generic ();
    g_once_init_leave (&chosen, (gsize) k);
  }
  return (const RnnKernels *) chosen;
}
