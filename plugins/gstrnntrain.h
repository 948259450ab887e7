/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* rnntrain: trains a recurrent network with BPTT in the pipeline
 * (docs/design.md §4). */
#pragma once

#include <gst/gst.h>
#include <gst/base/gstaggregator.h>

G_BEGIN_DECLS

/**
 * GstRnnTrainCell:
 * @GST_RNN_TRAIN_CELL_RNN_TANH: Elman RNN with tanh
 * @GST_RNN_TRAIN_CELL_RNN_RELU: Elman RNN with ReLU
 * @GST_RNN_TRAIN_CELL_LSTM: long short-term memory
 * @GST_RNN_TRAIN_CELL_GRU: gated recurrent unit
 */
typedef enum {
  GST_RNN_TRAIN_CELL_RNN_TANH,
  GST_RNN_TRAIN_CELL_RNN_RELU,
  GST_RNN_TRAIN_CELL_LSTM,
  GST_RNN_TRAIN_CELL_GRU,
} GstRnnTrainCell;

/**
 * GstRnnTrainHeadActivation:
 * @GST_RNN_TRAIN_HEAD_ACTIVATION_NONE: linear output
 * @GST_RNN_TRAIN_HEAD_ACTIVATION_SOFTMAX: softmax over the outputs
 * @GST_RNN_TRAIN_HEAD_ACTIVATION_SIGMOID: logistic sigmoid per output
 * @GST_RNN_TRAIN_HEAD_ACTIVATION_TANH: tanh per output
 */
typedef enum {
  GST_RNN_TRAIN_HEAD_ACTIVATION_NONE,
  GST_RNN_TRAIN_HEAD_ACTIVATION_SOFTMAX,
  GST_RNN_TRAIN_HEAD_ACTIVATION_SIGMOID,
  GST_RNN_TRAIN_HEAD_ACTIVATION_TANH,
} GstRnnTrainHeadActivation;

/**
 * GstRnnTrainLoss:
 * @GST_RNN_TRAIN_LOSS_MSE: mean squared error against the target frames
 * @GST_RNN_TRAIN_LOSS_CROSS_ENTROPY: cross-entropy against a one-channel
 *   class-index target
 * @GST_RNN_TRAIN_LOSS_ESR: error-to-signal ratio, sum (y - ŷ)² / sum y²
 *   over the batch
 */
typedef enum {
  GST_RNN_TRAIN_LOSS_MSE,
  GST_RNN_TRAIN_LOSS_CROSS_ENTROPY,
  GST_RNN_TRAIN_LOSS_ESR,
} GstRnnTrainLoss;

/**
 * GstRnnTrainOptimizer:
 * @GST_RNN_TRAIN_OPTIMIZER_SGD: stochastic gradient descent with momentum
 * @GST_RNN_TRAIN_OPTIMIZER_ADAM: Adam
 */
typedef enum {
  GST_RNN_TRAIN_OPTIMIZER_SGD,
  GST_RNN_TRAIN_OPTIMIZER_ADAM,
} GstRnnTrainOptimizer;

/**
 * GstRnnTrainMode:
 * @GST_RNN_TRAIN_MODE_OFFLINE: record the stream, train at EOS, then
 *   forward EOS
 * @GST_RNN_TRAIN_MODE_ONLINE: train continually with truncated BPTT and
 *   carried state, rewriting the model every checkpoint-interval updates
 */
typedef enum {
  GST_RNN_TRAIN_MODE_OFFLINE,
  GST_RNN_TRAIN_MODE_ONLINE,
} GstRnnTrainMode;

#define GST_TYPE_RNN_TRAIN_CELL (gst_rnn_train_cell_get_type ())
GType gst_rnn_train_cell_get_type (void);
#define GST_TYPE_RNN_TRAIN_HEAD_ACTIVATION (gst_rnn_train_head_activation_get_type ())
GType gst_rnn_train_head_activation_get_type (void);
#define GST_TYPE_RNN_TRAIN_LOSS (gst_rnn_train_loss_get_type ())
GType gst_rnn_train_loss_get_type (void);
#define GST_TYPE_RNN_TRAIN_OPTIMIZER (gst_rnn_train_optimizer_get_type ())
GType gst_rnn_train_optimizer_get_type (void);
#define GST_TYPE_RNN_TRAIN_MODE (gst_rnn_train_mode_get_type ())
GType gst_rnn_train_mode_get_type (void);

#define GST_TYPE_RNN_TRAIN (gst_rnn_train_get_type ())
G_DECLARE_FINAL_TYPE (GstRnnTrain, gst_rnn_train, GST, RNN_TRAIN,
    GstAggregator)

G_END_DECLS
