/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The element tests' rig: one element under GstHarness (test-rnnfilter.c,
 * test-rnnfilter-faults.c, test-rnntrain.c).
 *
 * A rig is built in two steps so that a test can attach what must see the
 * first events (pad probes) in between:
 *
 *   rig_open ()   the element, its properties and its own bus;
 *   rig_start ()  the harness on its sink and src pads, and the input caps.
 *
 * rnntrain's target pad gets a second harness (Rig.ht) from its test. */
#pragma once

#include <gst/gst.h>
#include <gst/check/gstharness.h>
#include <stdarg.h>

typedef struct
{
  GstHarness *h;                /* the sink and src pads */
  GstHarness *ht;               /* rnntrain: the target pad, or NULL */
  GstElement *e;
  GstBus *bus;                  /* the element's own, polled by the tests */
  guint rate, channels;         /* of the input caps (sink pad) */
  guint c_tgt;                  /* rnntrain: channels of the target */
  GstClockTime start;           /* PTS of input frame 0 */
  guint64 frames_in;            /* frames pushed so far */
  /* test-rnnfilter-faults: what left the src pad, in order */
  GMutex lock;
  GPtrArray *seq;               /* recorded objects (NULL: not recording) */
  gint record;                  /* fill @seq now */
} Rig;

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

/* A new rig holding a @factory element with "model-location" @model (unless
 * NULL) and the property name/value pairs from @first_prop on; its bus is
 * the rig's own.  Not started. */
static inline Rig *
rig_open (const char *factory, const char *model, const char *first_prop,
    va_list args)
{
  Rig *r = g_new0 (Rig, 1);

  r->e = gst_element_factory_make (factory, NULL);
  g_assert_nonnull (r->e);
  if (model)
    g_object_set (r->e, "model-location", model, NULL);
  if (first_prop)
    g_object_set_valist (G_OBJECT (r->e), first_prop, args);
  r->bus = gst_bus_new ();
  gst_element_set_bus (r->e, r->bus);
  return r;
}

/* Harnesses the element's sink and src pads; sets the input caps unless
 * @rate is 0. */
static inline void
rig_start (Rig *r, guint rate, guint channels)
{
  r->h = gst_harness_new_with_element (r->e, "sink", "src");
  r->rate = rate;
  r->channels = channels;
  if (rate) {
    gchar *caps = caps_string (rate, channels);

    gst_harness_set_src_caps_str (r->h, caps);
    g_free (caps);
  }
}

static inline void
rig_free (Rig *r)
{
  if (r->ht)
    gst_harness_teardown (r->ht);
  gst_harness_teardown (r->h);
  gst_element_set_bus (r->e, NULL);
  gst_object_unref (r->e);
  gst_bus_set_flushing (r->bus, TRUE);
  gst_object_unref (r->bus);
  if (r->seq) {
    g_ptr_array_unref (r->seq);
    g_mutex_clear (&r->lock);
  }
  g_free (r);
}

/* The time of sample @frames at @rate: the exact sample-count formula,
 * written out (round half up). */
static inline GstClockTime
frames_time (guint64 frames, guint rate)
{
  return (frames * GST_SECOND + rate / 2) / rate;
}

/* Pushes @bytes bytes of @x with @flags, timestamped and offset from the
 * frame count unless @stamp is FALSE. */
static inline GstFlowReturn
rig_push_bytes (Rig *r, const void *x, gsize bytes, GstBufferFlags flags,
    gboolean stamp)
{
  GstBuffer *buf = gst_harness_create_buffer (r->h, bytes);
  guint64 frames = bytes / (r->channels * sizeof (float));

  if (bytes)
    gst_buffer_fill (buf, 0, x, bytes);
  if (stamp) {
    GST_BUFFER_PTS (buf) = r->start + frames_time (r->frames_in, r->rate);
    GST_BUFFER_DURATION (buf) = r->start + frames_time (r->frames_in + frames,
        r->rate) - GST_BUFFER_PTS (buf);
    GST_BUFFER_OFFSET (buf) = r->frames_in;
    GST_BUFFER_OFFSET_END (buf) = r->frames_in + frames;
  }
  GST_BUFFER_FLAG_SET (buf, flags);
  r->frames_in += frames;
  return gst_harness_push (r->h, buf);
}

/* Pushes @frames interleaved frames with @flags, timestamped from the
 * frame count. */
static inline GstFlowReturn
rig_push_flags (Rig *r, const float *x, guint frames, GstBufferFlags flags)
{
  return rig_push_bytes (r, x, (gsize) frames * r->channels * sizeof (float),
      flags, TRUE);
}

static inline void
rig_eos (Rig *r)
{
  g_assert_true (gst_harness_push_event (r->h, gst_event_new_eos ()));
}

static inline GArray *
rig_pull_all (Rig *r, GPtrArray *bufs)
{
  return harness_pull_floats (r->h, bufs);
}

static inline gint
rig_out_caps_int (Rig *r, const char *field)
{
  GstCaps *caps = gst_pad_get_current_caps (r->h->sinkpad);
  gint value = 0;

  g_assert_nonnull (caps);
  g_assert_true (gst_structure_get_int (gst_caps_get_structure (caps, 0),
          field, &value));
  gst_caps_unref (caps);
  return value;
}

/* Channels and rate of the output caps. */
static inline guint
rig_out_channels (Rig *r)
{
  return rig_out_caps_int (r, "channels");
}

static inline guint
rig_out_rate (Rig *r)
{
  return rig_out_caps_int (r, "rate");
}
