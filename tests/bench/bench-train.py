#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Training throughput of gst-rnn next to PyTorch, in the same run.

The model: LSTM with input 1, hidden H (default 64) and a
linear head to 1 output, B (32) windows of T (256) steps from zero state,
MSE loss, Adam; one training step = forward + loss + backward + optimizer
step.  The figure is step·batch/s = T × B × steps / seconds, the median of
R runs of N steps after a warm-up run, single-threaded on both sides:

  ours     the C program tests/bench-train (rnn_train_forward,
           rnn_train_loss, rnn_train_backward, rnn_optimizer_step_model),
           OPENBLAS_NUM_THREADS=1;
  PyTorch  nn.LSTM + nn.Linear, nn.MSELoss, torch.optim.Adam,
           torch.set_num_threads(1).

Usage: tests/bench/bench-train.py [--hidden H] [--seq T] [--batch B]
                              [--iters N] [--repeats R] [--bench-bin PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bench_torch(H, T, B, iters, repeats):
    torch.manual_seed(1)
    rnn, head = nn.LSTM(1, H), nn.Linear(H, 1)
    opt = torch.optim.Adam(list(rnn.parameters()) + list(head.parameters()), lr=1e-3)
    i = torch.arange(T * B, dtype=torch.float32)
    x = (torch.sin(0.01 * i) * 0.5).reshape(T, B, 1)
    target = (torch.cos(0.013 * i) * 0.5).reshape(T, B, 1)
    loss_fn = nn.MSELoss()
    rates = []
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        for _ in range(iters):
            opt.zero_grad()
            y, _ = rnn(x)
            loss = loss_fn(head(y), target)
            loss.backward()
            opt.step()
        dt = time.perf_counter() - t0
        if r > 0:                       # the first run is a warm-up
            rates.append(T * B * iters / dt)
    return statistics.median(rates)


def bench_ours(binary, H, T, B, iters, repeats):
    if not os.path.exists(binary) and os.path.exists(os.path.join(REPO, binary)):
        binary = os.path.join(REPO, binary)
    if not os.path.exists(binary):
        return None, f"{binary} does not exist (build it first: ninja -C build)"
    env = dict(os.environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    cmd = [binary, "--hidden", str(H), "--seq", str(T), "--batch", str(B),
           "--iters", str(iters), "--repeats", str(repeats)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return None, f"{' '.join(cmd)} exited with {proc.returncode}: {proc.stderr.strip()[-500:]}"
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "step_batches_per_second":
            return float(parts[1]), None
    return None, f"no 'step_batches_per_second' line from {' '.join(cmd)}"


def main() -> int:
    ap = argparse.ArgumentParser(description="gst-rnn vs PyTorch training throughput (LSTM, Adam)")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--iters", type=int, default=5, help="training steps per timed run")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs (median)")
    ap.add_argument("--bench-bin", default=os.path.join("build", "tests", "bench-train"))
    a = ap.parse_args()
    if min(a.hidden, a.seq, a.batch, a.iters, a.repeats) <= 0:
        ap.error("all sizes must be positive")

    torch.set_num_threads(1)
    print(f"LSTM I=1 H={a.hidden} + linear head, T={a.seq}, B={a.batch}, MSE, Adam, "
          f"1 thread; median of {a.repeats} runs of {a.iters} steps")
    ours, why = bench_ours(a.bench_bin, a.hidden, a.seq, a.batch, a.iters, a.repeats)
    theirs = bench_torch(a.hidden, a.seq, a.batch, a.iters, a.repeats)
    print(f"{'':>8} | {'step·batch/s':>14}")
    print(f"{'gst-rnn':>8} | {ours:14.0f}" if ours is not None else f"{'gst-rnn':>8} | {'n/a':>14}")
    print(f"{'PyTorch':>8} | {theirs:14.0f}")
    if ours is not None:
        print(f"ratio gst-rnn / PyTorch: {ours / theirs:.2f}")
    else:
        print(f"note: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
