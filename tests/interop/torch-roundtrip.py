#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Models written by rnntrain load in PyTorch by name and reproduce rnnfilter.

For each case this trains a small model with a
gst-launch pipeline (rnntrain), plays a held-out signal through rnnfilter
(gst-launch, filesrc → rnnfilter → filesink), rebuilds the model in PyTorch
with gstrnn.build_torch() — nn.LSTM / nn.GRU / nn.RNN and
nn.Linear loaded from the file's state_dict names — and checks that
torch_forward() gives rnnfilter's output to 1e-5 (max abs difference).

Cases: LSTM on 2 channels (predict-ahead), bidirectional GRU in windows,
2-layer tanh RNN with frame-size 4 / output-frame-size 2, and a GRU
classifier (cross-entropy, softmax head, frame-size 8).

Usage: tests/interop/torch-roundtrip.py [BUILD_DIR]   (default: build)
Exits 77 (skipped) without torch or numpy.
"""

import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
except ImportError:
    print("torch or numpy missing: skipped")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
import gstrnn

RATE = 8000
TOL = 1e-5


def raw_caps(channels):
    return (f"rawaudioparse use-sink-caps=false format=pcm pcm-format=f32le "
            f"sample-rate={RATE} num-channels={channels}")


def launch(desc, env):
    cmd = ["gst-launch-1.0", "-q"] + desc.split()
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"gst-launch failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def signal(n, channels, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    x = np.zeros((n, channels))
    for c in range(channels):
        x[:, c] = (0.5 * np.sin(2 * np.pi * (300 + 170 * c) * t)
                   + 0.3 * np.convolve(rng.standard_normal(n), np.ones(4) / 4, "same"))
    return x.astype("<f4")


def classes_of(x, frame):
    """A label per frame: 0, 1, 2 by the local level of channel 0."""
    level = np.convolve(np.abs(x[:, 0]), np.ones(frame) / frame, "same")
    return np.digitize(level, [0.25, 0.45]).astype("<f4")


def torch_reference(model, x, channels):
    """PyTorch's output for x [N, C] laid out as rnnfilter's output frames."""
    rnn, head, meta, mean, std = gstrnn.build_torch(model)
    f_in = int(meta.get("frame_size", "1"))
    f_out = int(meta.get("output_frame_size", "1"))
    steps = x.shape[0] // f_in
    steps_x = x[:steps * f_in].reshape(steps, f_in * channels)
    act = meta["head_activation"]
    if meta["bidirectional"] == "true":
        w = int(meta["window"])
        assert steps % w == 0, "the test input must be whole windows"
        xb = steps_x.reshape(steps // w, w, -1).transpose(1, 0, 2)   # [W, B, I]
        y = gstrnn.torch_forward(rnn, head, act, xb, mean, std)
        y = y.transpose(1, 0, 2).reshape(steps, -1)
    else:
        y = gstrnn.torch_forward(rnn, head, act, steps_x[:, None, :], mean, std)
        y = y.reshape(steps, -1)
    return y.reshape(steps * f_out, -1)


def run_case(name, props, channels, classes, work, env):
    train_x = os.path.join(work, f"{name}-train.raw")
    test_x = os.path.join(work, f"{name}-test.raw")
    model = os.path.join(work, f"{name}.safetensors")
    out = os.path.join(work, f"{name}-out.raw")
    xs = signal(16000, channels, 1)
    xs.tofile(train_x)
    xt = signal(4000, channels, 2)
    xt.tofile(test_x)

    train = (f"filesrc location={train_x} ! {raw_caps(channels)} ! rnntrain name=t "
             f"model-location={model} epochs=2 batch-size=16 learning-rate=0.01 {props} ! fakesink")
    if classes:
        frame = int(props.split("frame-size=")[1].split()[0])
        labels = os.path.join(work, f"{name}-labels.raw")
        classes_of(xs, frame).tofile(labels)
        train += f" filesrc location={labels} ! {raw_caps(1)} ! t.target"
    launch(train, env)
    launch(f"filesrc location={test_x} ! {raw_caps(channels)} ! "
           f"rnnfilter model-location={model} ! filesink location={out}", env)

    ref = torch_reference(model, xt, channels)
    got = np.fromfile(out, dtype="<f4").reshape(-1, ref.shape[1])
    if got.shape != ref.shape:
        print(f"{name}: rnnfilter gave {got.shape}, PyTorch {ref.shape}")
        return False
    err = float(np.max(np.abs(got - ref)))
    ok = err <= TOL
    print(f"{name}: {got.shape[0]} frames x {got.shape[1]} channels, "
          f"max |rnnfilter - torch| = {err:.2e} {'ok' if ok else 'FAILED'}", flush=True)
    return ok


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "build"))
    torch.set_num_threads(1)
    cases = [
        ("lstm-2ch", "cell=lstm hidden-size=12", 2, False),
        ("gru-bidirectional", "cell=gru bidirectional=true hidden-size=8 seq-length=50", 1, False),
        ("rnn-tanh-2layers-frames", "cell=rnn-tanh num-layers=2 hidden-size=10 "
         "frame-size=4 output-frame-size=2", 1, False),
        ("gru-classes", "cell=gru hidden-size=8 frame-size=8 loss=cross-entropy "
         "num-classes=3 head-activation=softmax", 1, True),
    ]
    with tempfile.TemporaryDirectory(prefix="torch-roundtrip-") as work:
        env = dict(os.environ)
        env["GST_PLUGIN_PATH"] = os.path.join(build, "plugins")
        env["GST_REGISTRY"] = os.path.join(work, "registry.bin")
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        results = [run_case(*c, work, env) for c in cases]
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
