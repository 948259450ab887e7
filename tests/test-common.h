/* Helpers shared by the core test programs. */
#pragma once

#include "rnn.h"

#include <math.h>
#include <string.h>

/* The fixture inputs: a 32-bit integer hash of (T, t, i) mapped to a float
 * in [-1, 1) that is exact in float32.  tests/gen-fixtures.py computes the
 * same values, so the inputs need not be stored. */
static inline float
fixture_input (guint32 T, guint32 t, guint32 i)
{
  guint32 u = t * 2654435761u + i * 40503u + T * 97u + 12345u;
  u ^= u >> 15;
  u *= 2246822519u;
  u ^= u >> 13;
  u *= 3266489917u;
  u ^= u >> 16;
  return ((float) (u >> 20) - 2048.0f) / 2048.0f;
}

/* x [T][B][I] for stream b of B, filled with the fixture sequence of length
 * @seq_T (streams may be given different sequences through @seq_T). */
static inline void
fixture_fill (float *x, guint T, guint B, guint b, guint I, guint seq_T)
{
  for (guint t = 0; t < T; t++)
    for (guint i = 0; i < I; i++)
      x[((gsize) t * B + b) * I + i] = fixture_input (seq_T, t, i);
}

static inline double
max_abs_diff (const float *a, const float *b, gsize n)
{
  double m = 0.0;
  for (gsize i = 0; i < n; i++) {
    double d = fabs ((double) a[i] - (double) b[i]);
    if (!(d <= m))              /* also catches NaN */
      m = isnan (d) ? INFINITY : d;
  }
  return m;
}
