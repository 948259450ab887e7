/* The kernels for any processor (the compiler's baseline instruction set). */
#define KERNEL_SUFFIX generic
/* no fused multiply-add in the baseline instruction set */
#define VFMA(a, b, c) ((a) * (b) + (c))
#include "rnn-kernels-impl.c"

static const RnnKernels kernels = {
  "generic", project_rows_generic,
  recur_generic, recur_small_io_generic,
  recur_hreg_io_generic, recur1_io_generic,
  recur_small2_io_generic,
  recur_step1_generic, recur_small2_step1_generic, recur1_step1_generic,
  head_rows_generic,
  sigmoid_array_generic, tanh_array_generic,
};

const RnnKernels *
rnn_kernels_generic (void)
{
  return &kernels;
}
