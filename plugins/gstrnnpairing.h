/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnntrain's pairing of sink and target frames (docs/design.md §4).
 *
 * Each input pad's buffers go onto a lane: a contiguous run of frames
 * indexed by running time × rate.  The frames of the two lanes (or of the
 * sink lane with itself, predict-ahead steps later) are paired sample by
 * sample and cut into steps, the trainer's records (rnn-trainer.h):
 * [F_in × C_in inputs][target][loss weight].  Gaps of up to one second are
 * bridged as missing data (inputs 0, weight 0); a longer gap restarts the
 * pairing.
 *
 * The other way, the model's outputs for the steps go back to frames, in
 * buffers for the src pad (p->push).
 *
 * The pads and the lanes' rate and channels are read from other threads
 * under the element's object lock; everything else belongs to the
 * aggregator's source pad task.
 */
#pragma once

#include <gst/gst.h>
#include <gst/base/gstaggregator.h>

#include "rnn.h"

G_BEGIN_DECLS

enum
{ GST_RNN_LANE_SINK, GST_RNN_LANE_TARGET, GST_RNN_N_LANES };

/* One input pad's frames on the common timeline: frames [first, first+len)
 * of the running-time frame index (running time × rate), contiguous. */
typedef struct
{
  GstAggregatorPad *pad;        /* not a reference; NULL if absent */
  gint rate, channels;          /* from caps, under the object lock */
  gboolean started;
  guint64 first;
  float *data;                  /* [len][channels] */
  gsize len, cap;               /* frames */
  /* the extent of everything the lane was given since the stream started,
   * in running-time frame indices: [span_first, span_end) */
  gboolean have_span;
  guint64 span_first, span_end;
} GstRnnLane;

typedef struct
{
  GstElement *element;          /* for errors and logs; not a reference */
  GstRnnLane lanes[GST_RNN_N_LANES];

  /* the framing, set by gst_rnn_pairing_configure () */
  gboolean has_target;
  gboolean class_index;         /* the target is one class index per step */
  guint rate;
  guint c_in, c_tgt;            /* channels of the input and target streams */
  guint f_in, f_out;            /* frames per step: input, target */
  guint n_in, n_out, n_tgt;     /* inputs, model outputs, target floats */
  gsize rec;                    /* record floats: n_in + n_tgt + 1 */
  guint predict_ahead;          /* steps, without a target pad */

  /* the step being filled */
  float *step;                  /* [rec] */
  guint step_fill;              /* frames of the step filled */
  guint64 step_frame0;          /* frame index of the step's first frame */
  guint64 next_pair;            /* frame index expected next */
  gboolean have_next_pair;

  /* steps completed by the last gst_rnn_pairing_pair () */
  float *steps;                 /* [n_steps][rec] */
  guint64 *steps_frame0;        /* [n_steps] input frame index of each step */
  gsize n_steps, steps_cap;

  /* non-finite or missing values */
  guint64 bad_total;

  /* predictions: the model's outputs for the steps, as frames */
  void (*push) (gpointer user_data, GstBuffer * buf, GstClockTime end);
  gpointer push_data;
  guint window;                 /* bidirectional: steps per window; else 0 */
  RnnForward *fw;
  RnnState *pstate;             /* unidirectional */
  float *px, *py;               /* scratch [T][I], [T][O] */
  gsize px_cap, py_cap;         /* steps */
  float *pwin;                  /* bidirectional: [window][n_in] */
  guint64 pwin_frame0;
  guint pwin_len;
  float *out;                   /* [out_steps][n_out] */
  gsize out_steps, out_cap;
  guint64 out_frame0;           /* input frame index of the first out step */
  guint64 out_next;             /* input frame index that continues the output */
  gboolean have_out_next;
  gboolean out_discont;
} GstRnnPairing;

/* Sets the framing of @model once the caps are known (the lanes keep
 * their pads).  @window: the steps per window of a bidirectional model,
 * 0 for a unidirectional one.  FALSE (error posted) when the model's
 * framing does not fit the streams. */
gboolean gst_rnn_pairing_configure (GstRnnPairing * p, const RnnModel * model,
    gboolean has_target, gboolean class_index, guint rate, guint c_in,
    guint c_tgt, guint predict_ahead, guint window);

/* Takes the rate and channels of @caps for @pad's lane, under the
 * element's object lock.  FALSE (error posted) when they do not fit: no
 * rate or channels, a rate that differs from the other lane's, a
 * class-index target (@class_index) with more than one channel, or a
 * change once @configured. */
gboolean gst_rnn_pairing_set_caps (GstRnnPairing * p, GstAggregatorPad * pad,
    GstCaps * caps, gboolean class_index, gboolean configured);
/* The rate of the lane other than @pad's, 0 if unknown.  Call under the
 * element's object lock. */
gint gst_rnn_pairing_other_rate (GstRnnPairing * p, GstAggregatorPad * pad);

/* Places @buf (taken) from @pad on @lane.  Returns FALSE when the lanes had
 * to be restarted (a gap too long to bridge). */
gboolean gst_rnn_pairing_push (GstRnnPairing * p, guint lane,
    GstAggregatorPad * pad, GstBuffer * buf);

/* Pairs whatever the lanes allow into p->steps (n_steps starts at 0).
 * GST_FLOW_ERROR (posted) for a target that is not a class index. */
GstFlowReturn gst_rnn_pairing_pair (GstRnnPairing * p);

/* Runs @model over the steps of the last gst_rnn_pairing_pair () and
 * appends its outputs to the pending output; a step whose frame index does
 * not follow the previous one starts from zero state.  A step's F_out
 * output frames are timestamped at the running time of its first input
 * frame. */
void gst_rnn_pairing_predict (GstRnnPairing * p, const RnnModel * model);
/* Hands the pending output to p->push as one buffer. */
void gst_rnn_pairing_out_flush (GstRnnPairing * p);
/* At the end: runs a partial bidirectional window, then out_flush. */
void gst_rnn_pairing_predict_finish (GstRnnPairing * p,
    const RnnModel * model);

/* At the end of a stream with a target: when the two lanes' extents
 * differ, a description of both and of the overlap trained on (free it),
 * else NULL. */
gchar *gst_rnn_pairing_describe_mismatch (GstRnnPairing * p);

/* Drops what is half-paired and half-predicted (a flush). */
void gst_rnn_pairing_flush (GstRnnPairing * p);

/* Frees the data and forgets the framing; the pads stay. */
void gst_rnn_pairing_clear (GstRnnPairing * p);

G_END_DECLS
