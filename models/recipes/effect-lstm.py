#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Recipe for models/effect-lstm.safetensors: a per-sample LSTM (H=16) that
imitates a GStreamer effect chain at 16 kHz mono:

    audiodynamic mode=compressor characteristics=soft-knee threshold=0.2 ratio=0.3
      ! audiocheblimit mode=low-pass cutoff=3000 poles=4

Training audio (noise bursts, chirps, tones, low-passed noise under slow
envelopes; seed 11, 40 s) is generated here with numpy, played through the
real effect chain and through `rnntrain` in one gst-launch-1.0 pipeline (the
effect's output is rnntrain's target pad).  Quality: error-to-signal ratio
ESR = sum((y - yhat)^2) / sum(y^2) on 20 s of held-out audio from another
seed (12), with yhat from rnnfilter and y from the real effect.

    /usr/bin/python3 models/recipes/effect-lstm.py [--out PATH] [--epochs N]
        [--train-args 'skip=1 loss=esr pre-emphasis=0.95']

--train-args adds rnntrain properties to the training pipeline (the shipped
model is made without any).

Takes about two minutes of one CPU core.
"""

import argparse
import os
import tempfile

import numpy as np

import gstrnn.recipes as R

RATE = 16000
FX = ("audiodynamic mode=compressor characteristics=soft-knee threshold=0.2 ratio=0.3 "
      "! audiocheblimit mode=low-pass cutoff=3000 poles=4")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(R.ROOT, "models", "effect-lstm.safetensors"))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--train-args", default="",
                    help="extra rnntrain properties, e.g. 'skip=1 loss=esr pre-emphasis=0.95'")
    a = ap.parse_args()
    out = os.path.abspath(a.out)
    with tempfile.TemporaryDirectory(prefix="effect-lstm-") as w:
        R.setup_env(w)
        os.chdir(w)
        R.write("dry.raw", R.rich_audio(11, a.seconds, RATE))
        R.write("dry-heldout.raw", R.rich_audio(12, 20, RATE))
        R.train(f"filesrc location=dry.raw ! {R.raw(RATE)} ! tee name=s "
                f"s. ! queue ! rnntrain name=t model-location={out} cell=lstm hidden-size=16 "
                f"epochs={a.epochs} seq-length=128 batch-size=32 learning-rate=0.005 seed=1 "
                f"{a.train_args} ! fakesink "
                f"s. ! queue ! {FX} ! t.target")
        R.launch(f"filesrc location=dry-heldout.raw ! {R.raw(RATE)} ! {FX} ! filesink location=wet.raw")
        R.launch(f"filesrc location=dry-heldout.raw ! {R.raw(RATE)} ! "
                 f"rnnfilter model-location={out} ! filesink location=pred.raw")
        y, p = R.read("wet.raw"), R.read("pred.raw")
        n = min(len(y), len(p))
        esr = np.sum((p[:n] - y[:n]) ** 2) / np.sum(y[:n] ** 2)
        print(f"model: {out} ({R.model_size(out)})")
        print(f"held-out (seed 12, {n / RATE:.0f} s, 16 kHz): ESR {esr:.4f} "
              f"(rnnfilter vs the real effect chain)")


if __name__ == "__main__":
    main()
