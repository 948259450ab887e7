/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnnfilter's caps and layout algebra: how one model meets one stream
 * (docs/design.md §4), and how the stream's interleaved frames map onto the
 * model's [T][B][I] inputs and [T][B][O] outputs.  Plain functions of a
 * model, the channel-mode and window settings, caps and buffers; no element
 * instance, so each can be tested alone. */
#pragma once

#include "gstrnnfilter.h"
#include "rnn.h"

#include <gst/gst.h>

G_BEGIN_DECLS

/* How one model meets one negotiated stream. */
typedef struct
{
  guint in_rate, in_channels;   /* sink caps */
  guint out_rate, out_channels; /* src caps */
  gboolean independent;         /* one core stream per input channel */
  guint batch;                  /* B: in_channels if independent, else 1 */
  guint f_in, f_out;            /* frames per step, in and out */
  guint n_in, n_out;            /* I and O of one core stream */
  guint c_in, c_out;            /* I / F_in and O / F_out */
  gboolean bidirectional;
  guint window;                 /* steps per sequence; 0 if unidirectional */
} GstRnnLayout;

/* Non-finite input values met so far. */
typedef struct
{
  gboolean *in_run;             /* [n_channels]: inside a non-finite run */
  guint n_channels;
  guint64 total;                /* values replaced by 0.0 */
  guint new_runs;               /* runs begun since the caller zeroed it */
  guint first_channel;          /* the channel of the first of those */
} GstRnnNonFinite;

static inline const char *
gst_rnn_plural (guint64 n)
{
  return n == 1 ? "" : "s";
}

gboolean gst_rnn_layout_resolve (GstRnnLayout *l, const RnnModel *model,
    GstRnnFilterChannelMode mode, guint window, gint rate, gint channels,
    gchar **why);
gboolean gst_rnn_layout_resolve_swap (GstRnnLayout *nl,
    const GstRnnLayout *current, const RnnModel *model,
    GstRnnFilterChannelMode mode, guint window, gchar **why);
gchar *gst_rnn_layout_check_output (const GstRnnLayout *l, gint out_rate,
    gint out_channels);

GstClockTime gst_rnn_layout_latency (const GstRnnLayout *l);
guint64 gst_rnn_layout_output_frames (const GstRnnLayout *l, guint64 steps,
    guint64 rest);

gboolean gst_rnn_layout_parse_caps (const GstCaps *caps, gint *rate,
    gint *channels);
GstCaps *gst_rnn_layout_transform_caps (const RnnModel *model,
    GstRnnFilterChannelMode mode, GstPadDirection direction,
    const GstCaps *caps, gboolean any_count);
GstCaps *gst_rnn_layout_fixate_caps (GstCaps *caps);
gchar *gst_rnn_layout_check_format (const GstCaps *caps);
gboolean gst_rnn_layout_check_caps (const RnnModel *model,
    GstRnnFilterChannelMode mode, guint window, const GstCaps *caps,
    gchar **why);
gchar *gst_rnn_layout_describe_refusal (const RnnModel *model,
    GstRnnFilterChannelMode mode, const GstCaps *caps, const gchar *why);
gchar *gst_rnn_layout_describe_offer (const RnnModel *model,
    GstRnnFilterChannelMode mode, guint window, const GstCaps *filter);

void gst_rnn_layout_fill_input (const GstRnnLayout *l, float *x,
    const guint8 *in, guint64 frames, guint T, GstRnnNonFinite *bad);
void gst_rnn_layout_scrub_output (const GstRnnLayout *l, float *y, guint T,
    GstRnnNonFinite *bad);
void gst_rnn_layout_write_output (const GstRnnLayout *l, float *out,
    const float *y, guint64 out_frames);
GstStructure *gst_rnn_layout_output_structure (const GstRnnLayout *l,
    const RnnModel *model, const float *y, guint t, guint b, GstClockTime ts);

G_END_DECLS
