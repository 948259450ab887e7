/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnnfilter's per-stream processing: the adapter holding frames of an
 * incomplete step, the model's scratch tensors, running the steps, the
 * output buffer pool, the time base and the non-finite accounting.  The
 * streaming thread's own state; the element (gstrnnfilter.c) owns one and
 * hands it the model and the negotiated layout. */
#pragma once

#include "gstrnnlayout.h"
#include "rnn.h"

#include <gst/gst.h>
#include <gst/base/gstadapter.h>
#include <gst/base/gstbasetransform.h>

G_BEGIN_DECLS

typedef struct
{
  GstBaseTransform *trans;      /* the element: messages, allocator, pads */
  RnnState *state;              /* NULL for bidirectional models */
  RnnForward *fw;
  GstAdapter *adapter;
  float *x, *y;                 /* [T][B][I], [T][B][O] scratch */
  gsize x_len, y_len;           /* floats */
  GstBufferPool *pool;          /* output buffers, @pool_size bytes each */
  gsize pool_size;
  gboolean need_base;           /* take a new time base at the next buffer */
  GstClockTime base_pts;        /* time of input frame 0 since the base */
  guint64 base_offset;          /* output offset of output frame 0 */
  guint64 in_frames;            /* input frames since the base */
  guint64 out_frames;           /* output frames since the base */
  guint64 steps;                /* steps since the last reset */
  gboolean discont;             /* mark the next output buffer DISCONT */
  guint interval;               /* message-interval for this buffer */
  gint outstanding;             /* our messages not yet freed (atomic) */
  guint64 skipped;              /* messages skipped for a full bus */
  gboolean skipping;            /* inside a run of skipped messages */
  GstRnnNonFinite bad;          /* non-finite input; new_runs: this buffer's */
  GstRnnNonFinite bad_out;      /* the same for the model's outputs */
} GstRnnStream;

void gst_rnn_stream_init (GstRnnStream *st, GstBaseTransform *trans);
void gst_rnn_stream_clear (GstRnnStream *st);
void gst_rnn_stream_reset_state (GstRnnStream *st);
void gst_rnn_stream_reset (GstRnnStream *st);
gboolean gst_rnn_stream_configure (GstRnnStream *st, const RnnModel *model,
    const GstRnnLayout *l, gchar **why);
gboolean gst_rnn_stream_check_memory (const RnnModel *model,
    const GstRnnLayout *l, gchar **why);
RnnState *gst_rnn_stream_new_state (const RnnModel *model,
    const GstRnnLayout *l);
void gst_rnn_stream_swap (GstRnnStream *st, const RnnModel *model,
    const GstRnnLayout *l, const GstRnnLayout *nl);
void gst_rnn_stream_release_pool (GstRnnStream *st);
void gst_rnn_stream_take_input (GstRnnStream *st, const GstRnnLayout *l,
    GstBuffer *inbuf);
GstFlowReturn gst_rnn_stream_process (GstRnnStream *st, const RnnModel *model,
    const GstRnnLayout *l, gboolean drain, GstBuffer **outbuf);
GstFlowReturn gst_rnn_stream_drain (GstRnnStream *st, const RnnModel *model,
    const GstRnnLayout *l);

G_END_DECLS
