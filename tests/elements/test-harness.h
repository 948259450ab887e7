/* Helpers shared by the rnnfilter test programs (GstHarness). */
#pragma once

#include <gst/gst.h>
#include <gst/check/gstharness.h>

/* Caps of an F32LE interleaved stream; unpositioned channels beyond two. */
static inline gchar *
caps_string (guint rate, guint channels)
{
  return g_strdup_printf ("audio/x-raw, format=F32LE, layout=interleaved, "
      "rate=%u, channels=%u%s", rate, channels,
      channels > 2 ? ", channel-mask=(bitmask)0x0" : "");
}

/* Every buffer the harness has received so far, concatenated as floats;
 * @bufs (optional) receives the buffers themselves. */
static inline GArray *
harness_pull_floats (GstHarness *h, GPtrArray *bufs)
{
  GArray *out = g_array_new (FALSE, FALSE, sizeof (float));
  GstBuffer *buf;

  while ((buf = gst_harness_try_pull (h))) {
    GstMapInfo map;

    g_assert_true (gst_buffer_map (buf, &map, GST_MAP_READ));
    g_assert_cmpuint (map.size % sizeof (float), ==, 0);
    g_array_append_vals (out, map.data, map.size / sizeof (float));
    gst_buffer_unmap (buf, &map);
    if (bufs)
      g_ptr_array_add (bufs, buf);
    else
      gst_buffer_unref (buf);
  }
  return out;
}
