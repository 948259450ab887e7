/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Run-time choice of the inference kernels. */
#include "rnn-kernels.h"

#include <string.h>

#ifndef RNN_HAVE_AVX2
const RnnKernels *
rnn_kernels_avx2 (void)
{
  return NULL;
}
#endif

const RnnKernels *
rnn_kernels_get (void)
{
  static gsize chosen;
  if (g_once_init_enter (&chosen)) {
    const RnnKernels *k = NULL;
    /* RNN_KERNELS=generic forces the portable kernels (tests, comparisons) */
    const char *env = g_getenv ("RNN_KERNELS");
    if (!env || strcmp (env, "generic") != 0)
      k = rnn_kernels_avx2 ();
    if (!k)
      k = rnn_kernels_generic ();
    g_once_init_leave (&chosen, (gsize) k);
  }
  return (const RnnKernels *) chosen;
}
