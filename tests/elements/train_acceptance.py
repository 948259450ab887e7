#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Signals and figures for tests/elements/train-acceptance.sh.

The pipelines themselves are in the shell script; this helper only makes
test signals (raw F32LE mono files) and measures what the pipelines wrote.
numpy and the standard library only.

    gen-rich OUT SEED SECONDS RATE
        noise bursts, chirps and tones under slow amplitude envelopes
    gen-classes XOUT YOUT SEED SECONDS RATE
        segments of sine (class 0), square (1) and noise (2); YOUT holds the
        class index of every frame as a float
    eval-predict SIGNAL PREDICTION VALFRACTION
        next-step prediction: MSE of PREDICTION[n] against SIGNAL[n+1] on the
        held-out tail, next to the MSE of predicting zero
    eval-esr WET PREDICTION
        error-to-signal ratio sum((p - w)^2) / sum(w^2)
    eval-classes PROBS LABELS FRAMESIZE CLASSES
        accuracy of argmax(PROBS) per step against the label of the step's
        last frame, per step and per segment (majority vote)
"""

import sys

import numpy as np


def read(path):
    return np.fromfile(path, dtype="<f4")


def write(path, x):
    np.asarray(x, dtype="<f4").tofile(path)


def gen_rich(out, seed, seconds, rate):
    rng = np.random.default_rng(int(seed))
    n = int(float(seconds) * int(rate))
    rate = int(rate)
    x = np.zeros(n)
    pos = 0
    while pos < n:
        seg = int(rng.uniform(0.05, 0.4) * rate)
        t = np.arange(seg) / rate
        kind = rng.integers(0, 4)
        if kind == 0:                                   # white noise burst
            s = rng.standard_normal(seg) * 0.35
        elif kind == 1:                                 # linear chirp
            f0, f1 = rng.uniform(50, 3000, size=2)
            s = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * t[-1] + 1e-9)))
        elif kind == 2:                                 # two tones
            f = rng.uniform(60, 2500, size=2)
            s = 0.6 * np.sin(2 * np.pi * f[0] * t) + 0.4 * np.sin(2 * np.pi * f[1] * t + 1.0)
        else:                                           # low-passed noise
            s = np.convolve(rng.standard_normal(seg), np.ones(8) / 8, mode="same") * 1.2
        env = rng.uniform(0.05, 0.95) * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.5, 4) * t))
        k = min(seg, n - pos)
        x[pos:pos + k] = (s * env)[:k]
        pos += k
    write(out, np.clip(x, -0.99, 0.99))


def gen_classes(xout, yout, seed, seconds, rate):
    rng = np.random.default_rng(int(seed))
    rate = int(rate)
    n = int(float(seconds) * rate)
    x = np.zeros(n)
    y = np.zeros(n)
    pos = 0
    while pos < n:
        seg = int(rng.uniform(0.25, 0.75) * rate)
        t = np.arange(seg) / rate
        c = int(rng.integers(0, 3))
        f = rng.uniform(100, 1000)
        a = rng.uniform(0.1, 0.9)
        if c == 0:
            s = np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28))
        elif c == 1:
            s = np.sign(np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28)))
        else:
            s = np.clip(rng.standard_normal(seg) * 0.5, -1, 1)
        k = min(seg, n - pos)
        x[pos:pos + k] = (a * s)[:k]
        y[pos:pos + k] = c
        pos += k
    write(xout, x)
    write(yout, y)


def eval_predict(signal, prediction, vf):
    x = read(signal).astype(np.float64)
    p = read(prediction).astype(np.float64)
    steps = len(x) - 1                      # predict-ahead 1: pairs (x[n], x[n+1])
    n_val = int(np.floor(steps * float(vf)))
    lo = steps - n_val
    target = x[lo + 1:steps + 1]
    mse = np.mean((p[lo:steps] - target) ** 2)
    zero = np.mean(target ** 2)
    print(f"held-out steps {n_val}: model MSE {mse:.3e} (rnnfilter), "
          f"predicting zero {zero:.3e}, ratio {zero / mse:.0f}x")
    return zero / mse >= 100


def eval_esr(wet, prediction):
    w = read(wet).astype(np.float64)
    p = read(prediction).astype(np.float64)
    n = min(len(w), len(p))
    esr = np.sum((p[:n] - w[:n]) ** 2) / np.sum(w[:n] ** 2)
    print(f"held-out frames {n}: ESR {esr:.4f}")
    return esr <= 0.05


def eval_classes(probs, labels, frame, classes):
    frame, classes = int(frame), int(classes)
    p = read(probs).reshape(-1, classes)
    y = read(labels)
    steps = min(len(p), len(y) // frame)
    truth = y[np.arange(steps) * frame + frame - 1].astype(int)
    guess = np.argmax(p[:steps], axis=1)
    acc = np.mean(guess == truth)
    # per segment: majority of the steps inside one run of a label
    change = np.flatnonzero(np.diff(truth)) + 1
    bounds = np.concatenate([[0], change, [steps]])
    right = 0
    for a, b in zip(bounds[:-1], bounds[1:]):
        votes = np.bincount(guess[a:b], minlength=classes)
        right += int(np.argmax(votes) == truth[a])
    seg_acc = right / (len(bounds) - 1)
    print(f"held-out steps {steps}: accuracy {acc * 100:.2f} % per step, "
          f"{seg_acc * 100:.2f} % of {len(bounds) - 1} segments")
    return acc >= 0.95


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "gen-rich":
        gen_rich(*args)
    elif cmd == "gen-classes":
        gen_classes(*args)
    elif cmd == "eval-predict":
        return 0 if eval_predict(*args) else 1
    elif cmd == "eval-esr":
        return 0 if eval_esr(*args) else 1
    elif cmd == "eval-classes":
        return 0 if eval_classes(*args) else 1
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
