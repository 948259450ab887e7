#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Streaming-forward throughput of gst-rnn next to PyTorch, same weights.

For each hidden size H (default 32 128 256) this builds an LSTM with input
size 1 and a linear head to 1 output (fixed seed), exports it with
gstrnn.export() to a temporary directory, and measures:

  ours     the C benchmark program (--bench-bin, default
           build/tests/bench-forward), called as
             bench-forward MODEL.safetensors --steps N --chunk C --repeats R
           which prints "steps_per_second <median>": N steps streamed through
           rnn_forward() in chunks of C steps, batch 1, state carried.
  PyTorch  its best path: the whole sequence of N steps in one call (rnn and
           head) under torch.inference_mode() with torch.set_num_threads(1);
           the median of R runs (at least 5) after one warm-up run.

Both run single-threaded: OPENBLAS_NUM_THREADS=1 is set for the C program
unless the caller set it.  PyTorch is given the whole sequence at once, which
streaming cannot do, so a ratio near 1 means streaming costs nothing extra.

Usage: tests/bench/bench-forward.py [H ...] [--steps N] [--chunk C] [--repeats R]
                                [--bench-bin PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
import gstrnn

SEED = 20240601


def build_model(H: int):
    """LSTM(1 -> H) + Linear(H -> 1), deterministic for a given H."""
    torch.manual_seed(SEED + H)
    rnn = nn.LSTM(input_size=1, hidden_size=H).eval()
    head = nn.Linear(H, 1).eval()
    return rnn, head


def bench_torch(rnn, head, steps: int, repeats: int) -> float:
    """Median steps/s of PyTorch on one whole sequence of @steps steps."""
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(steps, 1, 1, generator=gen) * 2 - 1
    times = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            y, _ = rnn(x)
            head(y)
            dt = time.perf_counter() - t0
            if i > 0:                     # the first run is a warm-up
                times.append(dt)
    return steps / statistics.median(times)


def bench_ours(bench_bin: str, model: str, steps: int, chunk: int, repeats: int):
    """steps/s reported by the C benchmark, or None with a reason."""
    if not os.path.isabs(bench_bin) and not os.path.exists(bench_bin):
        # not found from the current directory: try from the repository root
        if os.path.exists(os.path.join(REPO, bench_bin)):
            bench_bin = os.path.join(REPO, bench_bin)
    if not os.path.exists(bench_bin):
        return None, f"{bench_bin} does not exist (build it first: meson compile -C build)"
    env = dict(os.environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    cmd = [bench_bin, model, "--steps", str(steps), "--chunk", str(chunk), "--repeats", str(repeats)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{' '.join(cmd)}: {e}"
    if proc.returncode != 0:
        return None, f"{' '.join(cmd)} exited with {proc.returncode}: {proc.stderr.strip()[-500:]}"
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "steps_per_second":
            try:
                return float(parts[1]), None
            except ValueError:
                break
    return None, f"no 'steps_per_second <value>' line in the output of {' '.join(cmd)}"


def main() -> int:
    ap = argparse.ArgumentParser(description="gst-rnn vs PyTorch streaming forward throughput (LSTM, I=1, B=1)")
    ap.add_argument("hidden", nargs="*", type=int, default=[32, 128, 256], help="hidden sizes (default 32 128 256)")
    ap.add_argument("--steps", type=int, default=48000, help="sequence length N (default 48000)")
    ap.add_argument("--chunk", type=int, default=480, help="steps per rnn_forward() call in ours (default 480)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs, median taken (default 5, at least 5 for PyTorch)")
    ap.add_argument("--bench-bin", default=os.path.join("build", "tests", "bench-forward"),
                    help="the C benchmark program (default build/tests/bench-forward)")
    args = ap.parse_args()
    if args.steps <= 0 or args.chunk <= 0 or args.repeats <= 0 or any(h <= 0 for h in args.hidden):
        ap.error("sizes, steps, chunk and repeats must be positive")

    torch.set_num_threads(1)
    print(f"LSTM, input 1, linear head to 1 output, batch 1, {args.steps} steps; "
          f"ours in chunks of {args.chunk}, PyTorch one whole-sequence call; single thread")
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="bench-forward-") as tmp:
        for H in args.hidden:
            rnn, head = build_model(H)
            model = os.path.join(tmp, f"lstm_H{H}.safetensors")
            gstrnn.export(rnn, head, model, description=f"bench-forward LSTM H={H}")
            ours, why = bench_ours(args.bench_bin, model, args.steps, args.chunk, args.repeats)
            if why and why not in notes:
                notes.append(why)
            theirs = bench_torch(rnn, head, args.steps, max(5, args.repeats))
            rows.append((H, ours, theirs))

    print(f"{'H':>6} | {'ours steps/s':>14} | {'PyTorch steps/s':>15} | {'ratio':>6}")
    print(f"{'-' * 6}-+-{'-' * 14}-+-{'-' * 15}-+-{'-' * 6}")
    for H, ours, theirs in rows:
        o = f"{ours:14.0f}" if ours is not None else f"{'n/a':>14}"
        r = f"{ours / theirs:6.2f}" if ours is not None else f"{'n/a':>6}"
        print(f"{H:>6} | {o} | {theirs:15.0f} | {r}")
    for n in notes:
        print(f"note: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
