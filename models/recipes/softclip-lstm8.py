#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Recipe for models/softclip-lstm8.safetensors: a tiny "virtual analogue" model.

The reference effect is a tanh soft-clipper followed by a one-pole lowpass:

    s[n] = tanh(3 * x[n])
    y[n] = y[n-1] + a * (s[n] - y[n-1]),    a = 0.2,  y[-1] = 0

An nn.LSTM(1, 8) + nn.Linear(8, 1) is trained per sample (one input, one
output per step at 48 kHz) to imitate it, with truncated back-propagation
through time over random windows of synthetic audio this script generates
itself (sine sweeps, tones, noise bursts; no downloads).  The result is
scored on held-out audio generated from another seed by the error-to-signal
ratio ESR = sum((y - yhat)^2) / sum(y^2), streamed from zero state exactly as
the GStreamer element runs it, and written with gstrnn.export().

Run from the repository root with Debian's PyTorch (python3-torch):

    /usr/bin/python3 models/recipes/softclip-lstm8.py [--steps N] [--out PATH]

It is deterministic (fixed seeds, one thread): the same torch build gives
the same file.  Training takes about two minutes of one CPU core.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn

import gstrnn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RECIPE = "models/recipes/softclip-lstm8.py"
SAMPLE_RATE = 48000
DRIVE = 3.0          # tanh(DRIVE * x)
LOWPASS_A = 0.2      # one-pole coefficient

TRAIN_SEED = 20240601
EVAL_SEED = 777
TRAIN_SECONDS = 120.0
EVAL_SECONDS = 16.0
EVAL_STREAMS = 32    # held-out audio cut into streams, each run from zero state

HIDDEN = 8
WINDOW = 256         # samples scored per window (truncated BPTT length)
WARMUP = 32          # samples run before each window from zero state, not scored
BATCH = 32
STEPS = 1200
LR_MAX = 1e-2
LR_MIN = 2e-4


# --------------------------------------------------------------------------
# the reference effect


def reference_effect(x: np.ndarray) -> np.ndarray:
    """tanh soft-clip then one-pole lowpass, from zero state, in float64."""
    s = np.tanh(DRIVE * np.asarray(x, dtype=np.float64)).tolist()
    out = [0.0] * len(s)
    a = LOWPASS_A
    prev = 0.0
    for n, v in enumerate(s):
        prev = prev + a * (v - prev)
        out[n] = prev
    return np.asarray(out, dtype=np.float64)


# --------------------------------------------------------------------------
# synthetic audio


def _fade(n: int, sr: int) -> np.ndarray:
    """A short raised-cosine fade in and out (2 ms) over @n samples."""
    env = np.ones(n)
    k = min(n // 2, int(0.002 * sr))
    if k > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / k)
        env[:k] = ramp
        env[n - k:] = ramp[::-1]
    return env


def _log_uniform(rng, lo, hi):
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def make_audio(seed: int, seconds: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A mix of sine sweeps, tones and noise bursts at amplitudes in [0.05, 1].

    Segments of 50-600 ms follow one another, sometimes overlapping a second
    layer, with short gaps of silence now and then.
    """
    rng = np.random.default_rng(seed)
    total = int(seconds * sr)
    x = np.zeros(total)
    pos = 0
    while pos < total:
        n = min(int(rng.uniform(0.05, 0.6) * sr), total - pos)
        t = np.arange(n) / sr
        amp = rng.uniform(0.05, 1.0)
        kind = rng.choice(["sweep", "tone", "noise", "silence"], p=[0.35, 0.35, 0.24, 0.06])
        if kind == "sweep":
            f0, f1 = _log_uniform(rng, 20, 16000), _log_uniform(rng, 20, 16000)
            dur = max(n / sr, 1e-3)
            if abs(f1 - f0) < 1e-6:
                phase = 2 * np.pi * f0 * t
            else:   # exponential sweep f0 -> f1 over the segment
                k = math.log(f1 / f0) / dur
                phase = 2 * np.pi * f0 * (np.exp(k * t) - 1) / k
            seg = amp * np.sin(phase + rng.uniform(0, 2 * np.pi))
        elif kind == "tone":
            seg = np.zeros(n)
            n_partials = int(rng.integers(1, 4))
            weights = rng.dirichlet(np.ones(n_partials))
            for w in weights:
                f = _log_uniform(rng, 30, 12000)
                seg += w * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
            seg *= amp
            if rng.random() < 0.3:     # tremolo: a slow amplitude change
                seg *= 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 8) * t)
        elif kind == "noise":
            w = rng.standard_normal(n)
            if rng.random() < 0.5:     # coloured: a random one-pole lowpass
                c = rng.uniform(0.02, 0.9)
                w = reference_lowpass(w, c)
            w /= max(np.max(np.abs(w)), 1e-9)
            decay = rng.uniform(2, 40)  # burst: sharp attack, exponential decay
            seg = amp * w * np.exp(-decay * t)
        else:
            seg = np.zeros(n)
        x[pos:pos + n] += seg * _fade(n, sr)
        pos += n
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def reference_lowpass(x: np.ndarray, a: float) -> np.ndarray:
    """y[n] = y[n-1] + a (x[n] - y[n-1]) (used to colour noise)."""
    out = np.empty(len(x))
    prev = 0.0
    for n, v in enumerate(x.tolist()):
        prev = prev + a * (v - prev)
        out[n] = prev
    return out


# --------------------------------------------------------------------------
# model and training


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(1, HIDDEN)            # time-major [T, B, 1]
        self.head = nn.Linear(HIDDEN, 1)

    def forward(self, x, state=None):
        h, state = self.rnn(x, state)
        return self.head(h), state


def esr(y: np.ndarray, yhat: np.ndarray) -> float:
    y = np.asarray(y, np.float64)
    yhat = np.asarray(yhat, np.float64)
    return float(np.sum((y - yhat) ** 2) / np.sum(y ** 2))


def evaluate(net: Net, x: np.ndarray, y: np.ndarray) -> float:
    """ESR of @net over the streams x [B, T] (each from zero state) against y [B, T]."""
    net.eval()
    with torch.inference_mode():
        yhat, _ = net(torch.from_numpy(np.ascontiguousarray(x.T)).unsqueeze(-1))
    net.train()
    return esr(y, yhat.squeeze(-1).numpy().T)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=STEPS, help=f"training steps (default {STEPS})")
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "softclip-lstm8.safetensors"))
    args = ap.parse_args()

    torch.manual_seed(TRAIN_SEED)
    torch.set_num_threads(1)
    t0 = time.monotonic()

    x_train = make_audio(TRAIN_SEED, TRAIN_SECONDS)
    y_train = reference_effect(x_train).astype(np.float32)
    x_eval = make_audio(EVAL_SEED, EVAL_SECONDS).reshape(EVAL_STREAMS, -1)
    y_eval = np.stack([reference_effect(row) for row in x_eval])
    print(f"data: {len(x_train)} training samples (seed {TRAIN_SEED}), "
          f"{x_eval.size} held-out (seed {EVAL_SEED}), {time.monotonic() - t0:.1f} s", flush=True)

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=LR_MAX)
    rng = np.random.default_rng(TRAIN_SEED + 1)
    span = WARMUP + WINDOW
    xt_all = torch.from_numpy(x_train)
    yt_all = torch.from_numpy(y_train)

    t1 = time.monotonic()
    loss_avg = None
    for step in range(args.steps):
        # cosine decay of the learning rate
        lr = LR_MIN + 0.5 * (LR_MAX - LR_MIN) * (1 + math.cos(math.pi * step / max(args.steps, 1)))
        for g in opt.param_groups:
            g["lr"] = lr
        starts = rng.integers(0, len(x_train) - span, size=BATCH)
        idx = torch.from_numpy(starts).view(1, -1) + torch.arange(span).view(-1, 1)
        xb = xt_all[idx].unsqueeze(-1)             # [T, B, 1]
        yb = yt_all[idx].unsqueeze(-1)
        pred, _ = net(xb)
        p, t = pred[WARMUP:], yb[WARMUP:]
        loss = torch.sum((p - t) ** 2) / (torch.sum(t ** 2) + 1e-5)   # ESR of the batch
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        loss_avg = loss.item() if loss_avg is None else 0.95 * loss_avg + 0.05 * loss.item()
        if (step + 1) % 50 == 0 or step + 1 == args.steps:
            print(f"step {step + 1:5d}  lr {lr:.2e}  batch ESR (avg) {loss_avg:.5f}  "
                  f"{time.monotonic() - t1:.0f} s", flush=True)

    train_time = time.monotonic() - t1
    value = evaluate(net, x_eval, y_eval)
    print(f"held-out ESR = {value:.6f} ({EVAL_SECONDS:.0f} s of audio as {EVAL_STREAMS} streams, "
          f"seed {EVAL_SEED}); "
          f"training {train_time:.0f} s for {args.steps} steps")

    gstrnn.export(
        net.rnn, net.head, args.out,
        sample_rate=SAMPLE_RATE,
        description=("Per-sample LSTM(1,8) + linear imitation of a tanh soft-clipper "
                     "(tanh(3x)) followed by a one-pole lowpass (a = 0.2), mono, 48 kHz"),
        extra_meta={
            "train_recipe": RECIPE,
            "train_esr": f"{value:.6f}",
            "train_steps": str(args.steps),
            "train_seed": str(TRAIN_SEED),
            "train_eval_seed": str(EVAL_SEED),
            "train_window": str(WINDOW),
            "train_batch": str(BATCH),
            "train_torch": torch.__version__,
        },
    )
    shown = os.path.relpath(args.out, ROOT)
    if shown.startswith(".."):
        shown = args.out
    print(f"wrote {shown} ({os.path.getsize(args.out)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
