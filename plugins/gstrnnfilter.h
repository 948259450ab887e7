/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnnfilter: a recurrent network as a stateful streaming filter
 * (docs/design.md §4). */
#pragma once

#include <gst/gst.h>
#include <gst/base/gstbasetransform.h>

G_BEGIN_DECLS

/**
 * GstRnnFilterChannelMode:
 * @GST_RNN_FILTER_CHANNEL_MODE_AUTO: vector when the stream has as many
 *   channels as the model takes per frame, independent when the model takes
 *   one channel and the stream has more, otherwise not negotiated
 * @GST_RNN_FILTER_CHANNEL_MODE_VECTOR: all stream channels form one input
 *   vector per frame; the stream must have exactly the model's channel count
 * @GST_RNN_FILTER_CHANNEL_MODE_INDEPENDENT: a single-channel model runs once
 *   per stream channel, each channel with its own hidden state
 *
 * How the channels of the stream map onto the model's input.
 */
typedef enum {
  GST_RNN_FILTER_CHANNEL_MODE_AUTO,
  GST_RNN_FILTER_CHANNEL_MODE_VECTOR,
  GST_RNN_FILTER_CHANNEL_MODE_INDEPENDENT,
} GstRnnFilterChannelMode;

#define GST_TYPE_RNN_FILTER_CHANNEL_MODE (gst_rnn_filter_channel_mode_get_type ())
GType gst_rnn_filter_channel_mode_get_type (void);

/**
 * GstRnnFilterWeightPrecision:
 * @GST_RNN_FILTER_WEIGHT_PRECISION_FLOAT32: the model's weights as they are
 * @GST_RNN_FILTER_WEIGHT_PRECISION_FLOAT16: opt-in: the recurrent weights
 *   rounded to float16, half the bytes streamed per step (faster at large
 *   hidden sizes), everything else float32
 *
 * Precision of the recurrent weights used for inference.
 */
typedef enum {
  GST_RNN_FILTER_WEIGHT_PRECISION_FLOAT32,
  GST_RNN_FILTER_WEIGHT_PRECISION_FLOAT16,
} GstRnnFilterWeightPrecision;

#define GST_TYPE_RNN_FILTER_WEIGHT_PRECISION (gst_rnn_filter_weight_precision_get_type ())
GType gst_rnn_filter_weight_precision_get_type (void);

#define GST_TYPE_RNN_FILTER (gst_rnn_filter_get_type ())
G_DECLARE_FINAL_TYPE (GstRnnFilter, gst_rnn_filter, GST, RNN_FILTER,
    GstBaseTransform)

G_END_DECLS
