/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The vector operations of the kernel template for x86-64 with AVX2, FMA
 * and F16C, shared by the AVX2 family (rnn-kernels-avx2.c) and the AVX-512
 * family (rnn-kernels-avx512.c, the same 8-lane code with EVEX encoding).
 * The including file defines KERNEL_SUFFIX and KERNEL_NAME, includes this,
 * then rnn-kernels-template.h. */
#include <immintrin.h>

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
