/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Soak: hours of generated 48 kHz audio through rnnfilter, faster than real
 * time.
 *
 *   soak-rnnfilter [--seconds S] [--model PATH] [--buffer FRAMES] [--seed N]
 *
 * The audio (a sweep, two harmonics and noise, all from the sample index)
 * goes through a harnessed rnnfilter in buffers of pseudo-random sizes from
 * 1 to 2·FRAMES (FRAMES = 480 by default; --buffer 0 gives one size, 480).
 * The same samples go through the core library (rnn_forward) in calls of
 * 10 s with the state carried, which the core computes bit-identically to
 * one call over the whole stream (tests/core/test-forward.c checks any split).
 * Both outputs are hashed (FNV-1a, 64 bit) and compared, and every sample is
 * compared as it comes.  Resident memory (VmRSS) is sampled after the first
 * 10 s of audio (the start: pools and scratch warmed up), then every 60 s,
 * and at the end.
 *
 * Prints the figures and exits 0 when the outputs are identical and the
 * RSS at the end is within 1 MiB of the start (not checked under ASan or
 * valgrind, whose own bookkeeping is resident too).
 */
#include "rnn.h"
#include "../../plugins/gstrnnelements.h"

#include <gst/gst.h>
#include <gst/check/gstharness.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define RATE 48000
#define REF_CHUNK (10 * RATE)

static guint64
fnv1a (guint64 h, const void *data, gsize n)
{
  const guint8 *p = data;

  for (gsize i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

static float
sample (guint64 n, guint32 seed)
{
  double t = (double) n / RATE;
  /* a sweep of 50 Hz .. 5 kHz every 10 s */
  double ph = fmod (t, 10.0);
  double sweep = sin (2.0 * G_PI * 50.0 * 10.0 / log (100.0) *
      (pow (100.0, ph / 10.0) - 1.0));
  guint32 u = (guint32) n * 2654435761u ^ seed;
  double noise;

  u ^= u >> 15;
  u *= 2246822519u;
  u ^= u >> 13;
  noise = (double) (u >> 8) / 8388608.0 - 1.0;
  return (float) (0.6 * sweep + 0.2 * sin (2.0 * G_PI * 220.0 * t)
      + 0.1 * sin (2.0 * G_PI * 3520.0 * t) + 0.05 * noise);
}

static gsize
rss_kib (void)
{
  gchar *status = NULL;
  gsize kib = 0;
  const gchar *p;

  if (!g_file_get_contents ("/proc/self/status", &status, NULL, NULL))
    return 0;
  p = strstr (status, "VmRSS:");
  if (p)
    kib = (gsize) g_ascii_strtoull (p + 6, NULL, 10);
  g_free (status);
  return kib;
}

/* Under ASan (a quarantine of freed blocks) or valgrind (its own heap)
 * resident memory says nothing about ours: then it is reported, not
 * checked.  NULL if it is meaningful. */
static const char *
rss_caveat (void)
{
  gchar *maps = NULL;
  gboolean vg;

#if defined(__SANITIZE_ADDRESS__)
  return "AddressSanitizer";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return "AddressSanitizer";
#endif
#endif
  if (!g_file_get_contents ("/proc/self/maps", &maps, NULL, NULL))
    return NULL;
  vg = strstr (maps, "vgpreload") != NULL;
  g_free (maps);
  return vg ? "valgrind" : NULL;
}

int
main (int argc, char **argv)
{
  gdouble seconds = 60.0;
  gchar *model_path = NULL;
  gint buffer = 480, seed = 1;
  GOptionEntry entries[] = {
    {"seconds", 's', 0, G_OPTION_ARG_DOUBLE, &seconds,
        "seconds of 48 kHz audio (default 60)", "S"},
    {"model", 'm', 0, G_OPTION_ARG_FILENAME, &model_path,
        "model (default models/softclip-lstm8.safetensors)", "PATH"},
    {"buffer", 'b', 0, G_OPTION_ARG_INT, &buffer,
        "mean buffer size in frames; 0: fixed 480", "FRAMES"},
    {"seed", 0, 0, G_OPTION_ARG_INT, &seed, "signal and size seed", "N"},
    {NULL}
  };
  GOptionContext *ctx = g_option_context_new ("- soak rnnfilter");
  GError *err = NULL;
  RnnModel *model;
  RnnForward *fw;
  RnnState *state;
  GstHarness *h;
  GstElement *e;
  guint64 total, pushed = 0, pulled = 0, mismatches = 0;
  guint64 ref_base = 0, ref_done = 0;   /* ref_y holds [ref_base, ref_done) */
  guint64 h_elem = 0xcbf29ce484222325ull, h_ref = 0xcbf29ce484222325ull;
  guint64 next_sample_at = 10 * (guint64) RATE;
  float *ref_x, *ref_y, *buf;
  gsize rss_start = 0, rss_max = 0, rss_end;
  guint32 rng = 0x9e3779b9u ^ (guint32) seed;
  gint64 t0, t1;
  gboolean ok;

  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_add_group (ctx, gst_init_get_option_group ());
  if (!g_option_context_parse (ctx, &argc, &argv, &err)) {
    g_printerr ("%s\n", err->message);
    return 2;
  }
  g_option_context_free (ctx);
  g_setenv ("OPENBLAS_NUM_THREADS", "1", FALSE);
  gst_init (&argc, &argv);
  GST_ELEMENT_REGISTER (rnnfilter, NULL);
  if (!model_path) {
    const gchar *src = g_getenv ("G_TEST_SRCDIR");
    model_path = g_build_filename (src ? src : "tests", "..", "models",
        "softclip-lstm8.safetensors", NULL);
  }
  model = rnn_model_load (model_path, &err);
  if (!model) {
    g_printerr ("%s\n", err->message);
    return 2;
  }
  if (rnn_model_get_config (model)->input_size != 1
      || rnn_model_get_output_size (model) != 1
      || rnn_model_get_config (model)->bidirectional) {
    g_printerr ("soak needs a unidirectional 1-in 1-out model\n");
    return 2;
  }

  total = (guint64) (seconds * RATE);
  e = gst_element_factory_make ("rnnfilter", NULL);
  g_object_set (e, "model-location", model_path, NULL);
  h = gst_harness_new_with_element (e, "sink", "src");
  gst_harness_set_src_caps_str (h, "audio/x-raw, format=F32LE, "
      "layout=interleaved, rate=48000, channels=1");
  fw = rnn_forward_new ();
  state = rnn_state_new (model, 1);
  ref_x = g_new (float, REF_CHUNK);
  ref_y = g_new (float, REF_CHUNK);
  buf = g_new (float, 2 * MAX (buffer, 480) + 1);

  g_print ("soak: %.0f s of 48 kHz audio (%" G_GUINT64_FORMAT " frames) "
      "through rnnfilter with %s, buffers of %u .. %u frames\n", seconds,
      total, model_path, buffer > 0 ? 1 : 480, buffer > 0 ? 2 * buffer : 480);
  t0 = g_get_monotonic_time ();
  while (pushed < total) {
    guint n = buffer > 0 ? 1 + (guint) (((guint64) (rng = rng * 1664525u +
                1013904223u) >> 8) % (2 * (guint) buffer)) : 480;
    GstBuffer *in, *out;
    GstMapInfo map;

    n = (guint) MIN ((guint64) n, total - pushed);
    for (guint i = 0; i < n; i++)
      buf[i] = sample (pushed + i, (guint32) seed);
    in = gst_harness_create_buffer (h, n * sizeof (float));
    gst_buffer_fill (in, 0, buf, n * sizeof (float));
    GST_BUFFER_PTS (in) = gst_util_uint64_scale_int_round (pushed,
        GST_SECOND, RATE);
    if (gst_harness_push (h, in) != GST_FLOW_OK) {
      g_printerr ("soak: push failed at frame %" G_GUINT64_FORMAT "\n",
          pushed);
      return 1;
    }
    pushed += n;

    while ((out = gst_harness_try_pull (h))) {
      gsize nf;

      gst_buffer_map (out, &map, GST_MAP_READ);
      nf = map.size / sizeof (float);
      h_elem = fnv1a (h_elem, map.data, map.size);
      /* the reference, 10 s at a time, as far as the element got */
      for (gsize i = 0; i < nf; i++) {
        guint64 k = pulled + i;

        if (k >= ref_done) {
          guint64 T = MIN ((guint64) REF_CHUNK, total - ref_done);

          for (guint64 j = 0; j < T; j++)
            ref_x[j] = sample (ref_done + j, (guint32) seed);
          rnn_forward (fw, model, state, ref_x, (guint) T, 1, ref_y);
          h_ref = fnv1a (h_ref, ref_y, T * sizeof (float));
          ref_base = ref_done;
          ref_done += T;
        }
        if (memcmp (&((const float *) map.data)[i], &ref_y[k - ref_base],
                sizeof (float)) != 0)
          mismatches++;
      }
      pulled += nf;
      gst_buffer_unmap (out, &map);
      gst_buffer_unref (out);
    }
    if (pulled >= next_sample_at) {
      gsize rss = rss_kib ();

      if (rss_start == 0) {
        rss_start = rss;
        g_print ("soak: RSS at start (after 10 s of audio): %" G_GSIZE_FORMAT
            " KiB\n", rss);
      }
      rss_max = MAX (rss_max, rss);
      next_sample_at += 60 * (guint64) RATE;
    }
  }
  gst_harness_push_event (h, gst_event_new_eos ());
  t1 = g_get_monotonic_time ();
  rss_end = rss_kib ();
  if (rss_start == 0)
    rss_start = rss_end;
  rss_max = MAX (rss_max, rss_end);

  ok = pulled == total && ref_done == total && h_elem == h_ref
      && mismatches == 0 && (rss_caveat () || rss_end <= rss_start + 1024);
  g_print ("soak: %" G_GUINT64_FORMAT " frames in, %" G_GUINT64_FORMAT
      " out in %.1f s (%.0fx real time)\n", pushed, pulled,
      (t1 - t0) / 1e6, seconds / ((t1 - t0) / 1e6));
  g_print ("soak: output hash %016" G_GINT64_MODIFIER "x, core reference "
      "%016" G_GINT64_MODIFIER "x, %" G_GUINT64_FORMAT " samples differ\n",
      h_elem, h_ref, mismatches);
  g_print ("soak: RSS start %" G_GSIZE_FORMAT " KiB, end %" G_GSIZE_FORMAT
      " KiB (%+" G_GSSIZE_FORMAT "), max %" G_GSIZE_FORMAT " KiB\n",
      rss_start, rss_end, (gssize) rss_end - (gssize) rss_start, rss_max);
  if (rss_caveat ())
    g_print ("soak: (RSS not checked under %s)\n", rss_caveat ());
  g_print ("soak: %s\n", ok ? "PASS" : "FAIL");

  gst_harness_teardown (h);
  gst_object_unref (e);
  rnn_state_free (state);
  rnn_forward_free (fw);
  rnn_model_unref (model);
  g_free (ref_x);
  g_free (ref_y);
  g_free (buf);
  g_free (model_path);
  return ok ? 0 : 1;
}
