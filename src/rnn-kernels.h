/* The inference kernels, compiled once per instruction set and chosen at run
 * time (rnn-kernels.c): the default build runs on any x86-64 and uses AVX2
 * and FMA where the processor has them. */
#pragma once

#include "rnn-private.h"

typedef struct {
  const char *name;
  /* C[M][N] = A[M][K] · Wᵀ + bias[N]; every element summed in one fixed
   * order (k ascending, then the bias) whatever M is. */
  void (*project_rows) (float *C, const float *A, const RnnPackedMatrix *W,
      const float *bias, gsize M);
  /* One step of B streams: gate pre-activations from the input projection
   * xp [B][G*H] (b_ih included) and the recurrent projection hp [B][G*H]
   * (b_hh included); updates h, c [B][H] and writes h to out (stride
   * out_stride between streams). */
  void (*cell_step) (RnnCell cell, const float *restrict xp,
      const float *restrict hp, float *restrict h, float *restrict c,
      float *restrict out, gsize out_stride, gsize B, gsize H);
  /* In place, n values: the same vectorised activations as cell_step (for
   * the training path). */
  void (*sigmoid_array) (float *v, gsize n);
  void (*tanh_array) (float *v, gsize n);
} RnnKernels;

const RnnKernels *rnn_kernels_get (void);

/* The variants, for tests and benchmarks; NULL where not built or not
 * supported by this processor. */
const RnnKernels *rnn_kernels_generic (void);
const RnnKernels *rnn_kernels_avx2 (void);
