/* rnnfilter: a recurrent network as a stateful streaming filter (DESIGN §4). */
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

#define GST_TYPE_RNN_FILTER (gst_rnn_filter_get_type ())
G_DECLARE_FINAL_TYPE (GstRnnFilter, gst_rnn_filter, GST, RNN_FILTER,
    GstBaseTransform)

G_END_DECLS
