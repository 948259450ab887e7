/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The kernels compiled for AVX2 + FMA + F16C (x86-64 only; chosen at run
 * time). */
#include <cpuid.h>

#define KERNEL_SUFFIX avx2
#define KERNEL_NAME "avx2-fma"
#include "rnn-kernels-x86.h"
#include "rnn-kernels-template.h"

/* F16C from CPUID (leaf 1, ECX bit 29): clang's __builtin_cpu_supports
 * does not know "f16c" */
static gboolean
has_f16c (void)
{
  unsigned int a, b, c, d;
  return __get_cpuid (1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}

const RnnKernels *
rnn_kernels_avx2 (void)
{
  __builtin_cpu_init ();
  if (__builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma")
      && has_f16c ())
    return &kernels;
  return NULL;
}
