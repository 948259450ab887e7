#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/elements/train-acceptance.sh [BUILD_DIR]: rnntrain learns, from
# pipelines written as a user would write them.
#
#   (a) next-step prediction of a two-tone signal (audiotestsrc × 2 →
#       audiomixer): validation MSE at least 100× below predicting zero;
#   (b) an effect (audiodynamic compressor → audiocheblimit low-pass) from a
#       rich signal (noise bursts, chirps, tones): LSTM H=24, error-to-signal
#       ratio ≤ 0.05 on held-out audio played through rnnfilter;
#   (c) classification of sine / square / noise segments from a one-channel
#       class-index target, GRU: ≥ 95 % accuracy per step on held-out audio.
#
# Every pipeline is printed (one line, as typed) before it runs.  Signals are made and figures
# measured by tests/elements/train_acceptance.py (numpy).  The plugin is taken from
# BUILD_DIR/plugins (default: build).  Exits non-zero if a figure misses.
# Takes about a minute on one core.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../build}" && pwd)
py=/usr/bin/python3
helper="$here/train_acceptance.py"
work=$(mktemp -d "${TMPDIR:-/tmp}/train-acceptance-XXXXXX")
trap 'rm -rf "$work"' EXIT

export GST_PLUGIN_PATH="$build/plugins"
export GST_REGISTRY="$work/registry.bin"
export OPENBLAS_NUM_THREADS=1
cd "$work"

run () {
  echo "\$ $*"
  "$@"
}

# gst-launch -m, printing only rnntrain's last progress and done messages
train () {
  echo "\$ gst-launch-1.0 -m $*"
  gst-launch-1.0 -m "$@" > train.log 2>&1 || { cat train.log; return 1; }
  grep -oE 'rnntrain-(progress|done)[^;]*' train.log | tail -2 | cut -c1-220
}

status=0
raw8="rawaudioparse use-sink-caps=false format=pcm pcm-format=f32le sample-rate=8000 num-channels=1"
raw16="rawaudioparse use-sink-caps=false format=pcm pcm-format=f32le sample-rate=16000 num-channels=1"

echo "== (a) next-step prediction of a two-tone signal"
f32="audio/x-raw,format=F32LE,rate=8000,channels=1"
t0=$(date +%s)
train audiomixer name=mix ! $f32 ! tee name=m \
    m. ! queue ! filesink location=twotone.raw \
    m. ! queue ! rnntrain model-location=twotone.safetensors cell=lstm \
        hidden-size=16 epochs=15 learning-rate=0.01 validation-fraction=0.2 ! fakesink \
    audiotestsrc wave=sine freq=440 volume=0.4 num-buffers=50 samplesperbuffer=1600 ! $f32 ! mix. \
    audiotestsrc wave=sine freq=1234 volume=0.3 num-buffers=50 samplesperbuffer=1600 ! $f32 ! mix.
run gst-launch-1.0 -q filesrc location=twotone.raw ! $raw8 ! \
    rnnfilter model-location=twotone.safetensors ! filesink location=twotone-pred.raw
$py "$helper" eval-predict twotone.raw twotone-pred.raw 0.2 || status=1
echo "($(($(date +%s) - t0)) s)"

echo
echo "== (b) an effect: audiodynamic compressor then audiocheblimit, LSTM H=24"
t0=$(date +%s)
$py "$helper" gen-rich dry.raw 1 30 16000
$py "$helper" gen-rich dry-heldout.raw 2 10 16000
fx="audiodynamic mode=compressor characteristics=soft-knee threshold=0.2 ratio=0.3 ! audiocheblimit mode=low-pass cutoff=3000 poles=4"
train filesrc location=dry.raw ! $raw16 ! tee name=s \
    s. ! queue ! rnntrain name=t model-location=effect.safetensors cell=lstm \
        hidden-size=24 epochs=8 seq-length=128 learning-rate=0.005 ! fakesink \
    s. ! queue ! $fx ! t.target
run gst-launch-1.0 -q filesrc location=dry-heldout.raw ! $raw16 ! $fx ! filesink location=wet-heldout.raw
run gst-launch-1.0 -q filesrc location=dry-heldout.raw ! $raw16 ! \
    rnnfilter model-location=effect.safetensors ! filesink location=effect-pred.raw
$py "$helper" eval-esr wet-heldout.raw effect-pred.raw || status=1
echo "($(($(date +%s) - t0)) s)"

echo
echo "== (c) classification: sine / square / noise segments, GRU H=32"
t0=$(date +%s)
$py "$helper" gen-classes segments.raw classes.raw 3 240 8000
$py "$helper" gen-classes segments-heldout.raw classes-heldout.raw 4 30 8000
train filesrc location=segments.raw ! $raw8 ! rnntrain name=t \
        model-location=classes.safetensors cell=gru hidden-size=32 frame-size=16 \
        loss=cross-entropy num-classes=3 head-activation=softmax epochs=30 \
        seq-length=64 learning-rate=0.005 ! fakesink \
    filesrc location=classes.raw ! $raw8 ! t.target
run gst-launch-1.0 -q filesrc location=segments-heldout.raw ! $raw8 ! \
    rnnfilter model-location=classes.safetensors ! filesink location=classes-pred.raw
$py "$helper" eval-classes classes-pred.raw classes-heldout.raw 16 3 || status=1
echo "($(($(date +%s) - t0)) s)"

echo
if [ $status = 0 ]; then echo "train-acceptance: all figures met"; else echo "train-acceptance: FAILED"; fi
exit $status
