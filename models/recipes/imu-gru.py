#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Recipe for models/imu-gru.safetensors: a GRU (H=32) forecaster of a
synthetic 6-channel IMU-like stream at 100 Hz (accelerometer x, y, z in g;
gyroscope x, y, z in rad/s), trained by `rnntrain` without a target pad
(predict-ahead=1: the model predicts the next frame of its input).

The stream is generated here: a body alternating between activities
(still, walking, running, turning), each with its own cadence, amplitudes and
harmonics, slowly changing orientation (gravity moving between the axes) and
sensor noise.  Anomaly score: the prediction residual r[n] = x[n+1] - yhat[n]
per channel, divided by that channel's residual RMS on clean data, max over
channels.  The threshold is chosen on clean held-out data (seed 23): 1.25 x
the largest score seen there.  Held-out test data (seed 24) has injected
anomalies - spikes (one sample), steps (a channel offset for 0.5-2 s) and
dropouts (a channel reads 0 for 0.2-1 s) - and we report event precision and
recall: an event is found if an alarm falls in [start, end + 0.1 s]; an alarm
(a run of above-threshold frames, runs closer than 0.3 s merged) is true if it
overlaps an event's window.

    /usr/bin/python3 models/recipes/imu-gru.py [--out PATH] [--epochs N]
    /usr/bin/python3 models/recipes/imu-gru.py --gen OUT.raw SEED SECONDS [--anomalies EVENTS.txt]
"""

import argparse
import os
import tempfile

import numpy as np

import gstrnn.recipes as R

RATE = 100
CH = 6


def imu(seed: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    x = np.zeros((n, CH))
    pos = 0
    # orientation: gravity direction drifts smoothly
    theta = np.cumsum(rng.standard_normal(n)) * 0.002
    phi = np.cumsum(rng.standard_normal(n)) * 0.002
    g = np.stack([np.sin(theta), np.sin(phi) * np.cos(theta), np.cos(phi) * np.cos(theta)], 1)
    while pos < n:
        seg = int(rng.uniform(4, 15) * RATE)
        k = min(seg, n - pos)
        t = np.arange(k) / RATE
        kind = rng.choice(["still", "walk", "run", "turn"], p=[0.2, 0.4, 0.25, 0.15])
        m = np.zeros((k, CH))
        if kind in ("walk", "run"):
            f = rng.uniform(1.6, 2.1) if kind == "walk" else rng.uniform(2.5, 3.0)
            amp = rng.uniform(0.15, 0.3) if kind == "walk" else rng.uniform(0.5, 0.9)
            ph = rng.uniform(0, 2 * np.pi, size=CH)
            for c in range(CH):
                scale = amp * (1.0 if c < 3 else 1.5) * rng.uniform(0.3, 1.0)
                m[:, c] = scale * (np.sin(2 * np.pi * f * t + ph[c])
                                   + 0.4 * np.sin(4 * np.pi * f * t + 2 * ph[c])
                                   + 0.15 * np.sin(6 * np.pi * f * t + 3 * ph[c]))
        elif kind == "turn":
            w = rng.uniform(-1.5, 1.5)
            m[:, 5] = w * np.sin(np.pi * t / t[-1]) if k > 1 else 0
            m[:, 3:5] = 0.1 * np.sin(2 * np.pi * 0.7 * t)[:, None]
        env = R.fade(k, int(0.5 * RATE))[:, None]
        x[pos:pos + k] = m * env
        pos += k
    x[:, :3] += g
    x[:, :3] += 0.01 * rng.standard_normal((n, 3))
    x[:, 3:] += 0.01 * rng.standard_normal((n, 3))
    return x


def inject(x: np.ndarray, seed: int):
    """Spikes, steps and dropouts at random times; returns (x', events)."""
    rng = np.random.default_rng(seed)
    x = x.copy()
    n = len(x)
    events = []
    pos = int(rng.uniform(3, 6) * RATE)
    while pos < n - 3 * RATE:
        kind = rng.choice(["spike", "step", "dropout"])
        c = int(rng.integers(0, CH))
        sd = np.std(x[:, c])
        if kind == "spike":
            x[pos, c] += rng.choice([-1, 1]) * rng.uniform(4, 8) * sd
            end = pos + 1
        elif kind == "step":
            end = pos + int(rng.uniform(0.5, 2) * RATE)
            x[pos:end, c] += rng.choice([-1, 1]) * rng.uniform(2, 4) * sd
        else:
            end = pos + int(rng.uniform(0.2, 1.0) * RATE)
            x[pos:end, c] = 0.0
        events.append((pos, end, str(kind), c))
        pos = end + int(rng.uniform(3, 8) * RATE)
    return x, events


def scores(x: np.ndarray, pred: np.ndarray, rms=None):
    """Residual of predicting x[n+1] from frames <= n, per channel; score per frame n+1."""
    res = x[1:] - pred[:len(x) - 1]
    if rms is None:
        rms = np.sqrt(np.mean(res ** 2, axis=0))
    s = np.max(np.abs(res) / rms, axis=1)
    return np.concatenate([[0.0], s]), rms


def alarms(score: np.ndarray, thr: float, merge: int = 30):
    idx = np.flatnonzero(score > thr)
    runs = []
    for i in idx:
        if runs and i - runs[-1][1] <= merge:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return runs


def evaluate(score, thr, events, tol=10):
    runs = alarms(score, thr)
    found = sum(any(a <= e + tol and b >= s for a, b in runs) for s, e, _, _ in events)
    true = sum(any(a <= e + tol and b >= s for s, e, _, _ in events) for a, b in runs)
    prec = true / len(runs) if runs else 1.0
    rec = found / len(events) if events else 1.0
    return prec, rec, runs, found, true


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(R.ROOT, "models", "imu-gru.safetensors"))
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=1200)
    ap.add_argument("--gen", nargs=3, metavar=("OUT", "SEED", "SECONDS"))
    ap.add_argument("--anomalies")
    a = ap.parse_args()
    if a.gen:
        x = imu(int(a.gen[1]), float(a.gen[2]))
        if a.anomalies:
            x, ev = inject(x, int(a.gen[1]) + 1000)
            with open(a.anomalies, "w") as f:
                for s, e, k, c in ev:
                    f.write(f"{s} {e} {k} {c}\n")
        R.write(a.gen[0], x)
        return
    out = os.path.abspath(a.out)
    with tempfile.TemporaryDirectory(prefix="imu-gru-") as w:
        R.setup_env(w)
        os.chdir(w)
        R.write("train.raw", imu(21, a.seconds))
        R.write("clean.raw", imu(23, 300))
        test, events = inject(imu(24, 600), 1024)
        R.write("test.raw", test)
        R.train(f"filesrc location=train.raw ! {R.raw(RATE, CH)} ! rnntrain model-location={out} "
                f"cell=gru hidden-size=32 predict-ahead=1 epochs={a.epochs} seq-length=100 "
                f"batch-size=32 learning-rate=0.005 seed=1 ! fakesink")
        for name in ("clean", "test"):
            R.launch(f"filesrc location={name}.raw ! {R.raw(RATE, CH)} ! "
                     f"rnnfilter model-location={out} ! filesink location={name}-pred.raw")
        clean = R.read("clean.raw", CH)
        cs, rms = scores(clean, R.read("clean-pred.raw", CH))
        naive = np.sqrt(np.mean((clean[1:] - clean[:-1]) ** 2, axis=0))
        thr = 1.25 * np.max(cs[1:])
        ts, _ = scores(test, R.read("test-pred.raw", CH), rms)
        prec, rec, runs, found, true = evaluate(ts, thr, events)
        print(f"model: {out} ({R.model_size(out)})")
        print("clean held-out (seed 23, 300 s): residual RMS per channel "
              + " ".join(f"{v:.4f}" for v in rms) + "; repeat-last-frame RMS "
              + " ".join(f"{v:.4f}" for v in naive))
        print(f"threshold = 1.25 x max clean score = {thr:.2f}")
        kinds = {k: [0, 0] for k in ("spike", "step", "dropout")}
        for s, e, k, c in events:
            kinds[k][1] += 1
            kinds[k][0] += any(a_ <= e + 10 and b_ >= s for a_, b_ in runs)
        print(f"test held-out (seed 24, 600 s, {len(events)} injected anomalies): "
              f"precision {prec:.3f} ({true}/{len(runs)} alarms), recall {rec:.3f} ({found}/{len(events)}); "
              + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in kinds.items()))


if __name__ == "__main__":
    main()
