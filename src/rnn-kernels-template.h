/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The kernel template: every kernel family in one unit, compiled once per
 * instruction set by rnn-kernels-generic.c, rnn-kernels-avx2.c and
 * rnn-kernels-avx512.c, which define KERNEL_SUFFIX (the suffix of every name
 * here, through KFN ()), KERNEL_NAME, VFMA and the optional vector
 * operations (VMIN, VMAX, VFLOOR, VLANE, VLOADH), then include this.  One unit, so that the helpers of one
 * family inline into the others' kernels.  See docs/kernels.md.
 *
 * Never compile this with -ffinite-math-only: the element's non-finite
 * policy relies on NaN comparisons elsewhere, and clamps here must stay
 * well-defined. */
#include "rnn-kernels.h"

#include <string.h>

#define KCAT2(a, b) a##_##b
#define KCAT(a, b) KCAT2 (a, b)
#define KFN(name) KCAT (name, KERNEL_SUFFIX)

#include "rnn-kernels-act.c"        /* vector helpers, activations */
#include "rnn-kernels-gemm.c"       /* project_rows, head_rows */
#include "rnn-kernels-cell.c"       /* one block's step */
#include "rnn-kernels-recur-reg.c"  /* h in registers: H = 8, 16-32, 2 x 8 */
#include "rnn-kernels-recur.c"      /* recur: any H, any streams */
#include "rnn-kernels-recur-io.c"   /* fused input/head, one-step instances */

static const RnnKernels kernels = {
  .name = KERNEL_NAME,
  .project_rows = KFN (project_rows),
  .head_rows = KFN (head_rows),
  .recur = KFN (recur),
  .recur_h8_io = KFN (recur_h8_io),
  .recur_hreg_io = KFN (recur_hreg_io),
  .recur_one_io = KFN (recur_one_io),
  .recur_h8x2_io = KFN (recur_h8x2_io),
  .step1_small = KFN (step1_small),
  .step1_h8x2 = KFN (step1_h8x2),
  .step1_one = KFN (step1_one),
  .sigmoid_array = KFN (sigmoid_array),
  .tanh_array = KFN (tanh_array),
};
