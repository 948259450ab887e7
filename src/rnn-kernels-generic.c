/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The kernels for any processor (the compiler's baseline instruction set). */
#define KERNEL_SUFFIX generic
#define KERNEL_NAME "generic"
/* no fused multiply-add in the baseline instruction set */
#define VFMA(a, b, c) ((a) * (b) + (c))
#include "rnn-kernels-template.h"

const RnnKernels *
rnn_kernels_generic (void)
{
  return &kernels;
}
