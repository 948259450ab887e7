/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The kernels compiled for AVX-512 (F, VL, DQ, BW) + FMA + F16C (x86-64
 * only; chosen at run time where the processor and the operating system
 * support it): the 8-lane kernels of the template, encoded with EVEX, so
 * with 32 vector registers instead of 16 (the register kernels spill less:
 * 1.07-1.10x in buffers at H = 16-32 on AMD Zen 4).  16-lane (zmm)
 * variants of the products and the gate activations measured no faster on
 * that processor, which executes a 512-bit operation as two 256-bit
 * halves (docs/kernels.md). */
#include <cpuid.h>

#define KERNEL_SUFFIX avx512
#define KERNEL_NAME "avx512"
#include "rnn-kernels-x86.h"
#include "rnn-kernels-template.h"

/* The processor has AVX-512 F, VL, DQ, BW, AVX2, FMA and F16C, and the
 * operating system saves the vector state they use (XCR0: SSE, AVX, the
 * opmask registers and the upper halves and upper 16 of the zmm
 * registers); without the latter the first zmm instruction faults. */
static gboolean
avx512_usable (void)
{
  unsigned int a, b, c, d;
  if (!__get_cpuid (1, &a, &b, &c, &d) || !(c & bit_OSXSAVE)
      || !(c & bit_F16C) || !(c & bit_FMA))
    return FALSE;
  unsigned int lo, hi;
  __asm__ ("xgetbv" : "=a" (lo), "=d" (hi) : "c" (0));
  if ((lo & 0xe6) != 0xe6)
    return FALSE;
  if (!__get_cpuid_count (7, 0, &a, &b, &c, &d))
    return FALSE;
  const unsigned int need = bit_AVX2 | bit_AVX512F | bit_AVX512DQ
      | bit_AVX512BW | bit_AVX512VL;
  return (b & need) == need;
}

const RnnKernels *
rnn_kernels_avx512 (void)
{
  static gsize usable;
  if (g_once_init_enter (&usable))
    g_once_init_leave (&usable, avx512_usable ()? 1 : 2);
  return usable == 1 ? &kernels : NULL;
}
