/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bench-machine [--seconds S]
 *
 * What this machine sustains, for reading the kernels' figures against:
 * 8-wide fused multiply-adds per nanosecond with no memory operand, with a
 * 32-byte load from the first-level cache each (the recurrent products at
 * H <= 32: one weight load per FMA), and with each load streaming a 256 KB
 * matrix from the second-level cache (W_hh of an LSTM with H = 128).  Ten
 * independent accumulators, more than latency x width needs on current
 * x86-64 cores, so that nothing but the machine bounds the loop.  Prints
 * "name value" lines, medians of 5 runs; tests/bench/bench shows them above
 * its table.  Needs AVX2 + FMA (prints nothing useful otherwise). */
#include <glib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define TEN(X) X (0) X (1) X (2) X (3) X (4) X (5) X (6) X (7) X (8) X (9)

/* @n iterations of ten FMAs, each with a load from @buf (cycling through
 * its first @wrap_floats floats) when @loads is set */
__attribute__ ((target ("avx2,fma"), noinline)) static float
fma_loop (const float *buf, gsize n, gsize wrap_floats, gboolean loads)
{
  const __m256 b = _mm256_set1_ps (0.999f), c = _mm256_set1_ps (1e-3f);
#define DECL(i) __m256 a##i = _mm256_set1_ps (1.0f + (i) * 0.01f);
  TEN (DECL)
#undef DECL
  gsize off = 0;
  for (gsize k = 0; k < n; k++) {
    if (loads) {
      const float *p = buf + off;
#define STEP(i) a##i = _mm256_fmadd_ps (_mm256_load_ps (p + 8 * (i)), b, a##i);
      TEN (STEP)
#undef STEP
      off += 80;
      if (off + 80 > wrap_floats)
        off = 0;
    } else {
#define STEP(i) a##i = _mm256_fmadd_ps (a##i, b, c);
      TEN (STEP)
#undef STEP
    }
    /* keeps the ten chains in registers and apart */
    __asm__ ("" : "+x" (a0), "+x" (a1), "+x" (a2), "+x" (a3), "+x" (a4),
        "+x" (a5), "+x" (a6), "+x" (a7), "+x" (a8), "+x" (a9));
  }
  __m256 s = a0;
#define SUM(i) s = _mm256_add_ps (s, a##i);
  TEN (SUM)
#undef SUM
  return s[0];
}

static int
cmp_double (const void *a, const void *b)
{
  const double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

/* median FMAs (8 lanes each) per ns over 5 runs of about @seconds / 5 */
static double
measure (const float *buf, gsize wrap_floats, gboolean loads, double seconds,
    float *sink)
{
  gsize n = 1 << 16;
  for (;;) {                    /* size a run to about seconds / 5 */
    const gint64 t0 = g_get_monotonic_time ();
    *sink += fma_loop (buf, n, wrap_floats, loads);
    const double dt = (g_get_monotonic_time () - t0) * 1e-6;
    if (dt > seconds / 20 || n > ((gsize) 1 << 40))
      break;
    n *= 2;
  }
  n *= 4;
  double rates[5];
  for (int r = 0; r < 5; r++) {
    const gint64 t0 = g_get_monotonic_time ();
    *sink += fma_loop (buf, n, wrap_floats, loads);
    rates[r] = n * 10.0 / ((g_get_monotonic_time () - t0) * 1e3);
  }
  qsort (rates, 5, sizeof (double), cmp_double);
  return rates[2];
}

int
main (int argc, char **argv)
{
  gdouble seconds = 2.0;
  GOptionEntry entries[] = {
    { "seconds", 0, 0, G_OPTION_ARG_DOUBLE, &seconds, "about how long each figure takes", "S" },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- what this machine sustains");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || seconds <= 0) {
    g_printerr ("bench-machine: %s\n", error ? error->message : "--seconds must be > 0");
    return 2;
  }
  __builtin_cpu_init ();
  if (!__builtin_cpu_supports ("avx2") || !__builtin_cpu_supports ("fma")) {
    g_print ("unsupported no AVX2+FMA\n");
    return 0;
  }
  /* 256 KB: W_hh of an LSTM with H = 128, float32; 8 KB stays in L1 */
  const gsize big = 256 * 1024 / sizeof (float), small = 8 * 1024 / sizeof (float);
  float *buf = g_aligned_alloc (big, sizeof (float), 64);
  for (gsize i = 0; i < big; i++)
    buf[i] = 1e-3f * (float) (i % 7);
  float sink = 0;
  g_print ("fma_per_ns %.3f\n", measure (buf, small, FALSE, seconds, &sink));
  g_print ("fma_l1_load_per_ns %.3f\n", measure (buf, small, TRUE, seconds, &sink));
  g_print ("fma_l2_stream_per_ns %.3f\n", measure (buf, big, TRUE, seconds, &sink));
  if (sink == 12345.0f)         /* never: keeps the results alive */
    g_print ("%g\n", sink);
  g_aligned_free (buf);
  return 0;
}

#else

int
main (void)
{
  g_print ("unsupported not x86-64\n");
  return 0;
}

#endif
