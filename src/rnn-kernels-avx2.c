/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The kernels compiled for AVX2 + FMA + F16C (x86-64 only; chosen at run
 * time). */
#include <cpuid.h>
#include <immintrin.h>

#define KERNEL_SUFFIX avx2
#define KERNEL_NAME "avx2-fma"
#define VFMA(a, b, c) \
  ((v8sf) _mm256_fmadd_ps ((__m256) (a), (__m256) (b), (__m256) (c)))
#define VMIN(a, b) ((v8sf) _mm256_min_ps ((__m256) (a), (__m256) (b)))
#define VMAX(a, b) ((v8sf) _mm256_max_ps ((__m256) (a), (__m256) (b)))
#define VFLOOR(a) ((v8sf) _mm256_floor_ps ((__m256) (a)))
/* lane k (a constant) of v in all lanes: the 128-bit half duplicated
 * (shared by the four lanes of that half), then an in-lane shuffle with an
 * immediate; unlike vpermps no index vector, eight of which (one per lane)
 * took registers the H = 8 kernel needs */
#define VLANE(v, k) \
  ((v8sf) _mm256_permute_ps (_mm256_permute2f128_ps ((__m256) (v), \
          (__m256) (v), (k) < 4 ? 0x00 : 0x11), ((k) & 3) * 0x55))
/* 8 float16 values to float32 (F16C) */
#define VLOADH(p) ((v8sf) _mm256_cvtph_ps (_mm_loadu_si128 ((const __m128i *) (p))))
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
