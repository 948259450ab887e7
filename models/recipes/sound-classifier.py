#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Recipe for models/sound-classifier.safetensors: a GRU (H=32) with a
softmax head that classifies 10 ms frames (frame_size=160 at 16 kHz mono)
as speech (class 0), tones (1) or noise (2).

Speech is synthesised with Debian's espeak-ng (sentences written below, in
several voices, speeds and pitches), converted to 16 kHz F32 by a
gst-launch-1.0 pipeline (wavparse ! audioconvert ! audioresample).  Tones
(sines, harmonic tones, chords, sweeps, vibrato) and noise (white, pink-ish,
brown-ish, band-passed, bursts) are made with numpy.  Segments of 0.5-3 s of
each class alternate at random gains; a one-channel target stream holds the
class index of every sample and goes to rnntrain's target pad
(loss=cross-entropy; the label of a step is that of its last frame).

Held-out: other sentences, other voices (en-gb-x-rp+f4, en-us-nyc+m3,
en-029+f2), other seeds.  The held-out stream is played through rnnfilter
with message-interval=1 in `gst-launch-1.0 -m`, and the accuracy is counted
from the `class` field of the rnnfilter-output messages against the labels.

    /usr/bin/python3 models/recipes/sound-classifier.py [--out PATH] [--epochs N]
    /usr/bin/python3 models/recipes/sound-classifier.py --gen X.raw LABELS.raw heldout|train SEED SECONDS
"""

import argparse
import os
import subprocess
import tempfile

import numpy as np

import gstrnn.recipes as R

RATE = 16000
FRAME = 160
NAMES = ["speech", "tones", "noise"]

TRAIN_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags.",
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
]
HELD_TEXT = [
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
]
TRAIN_VOICES = ["en-gb", "en-us", "en-gb-scotland+m3", "en-us+f3", "en-gb+f2", "en-029", "en-gb-x-gbclan+m1", "en-us+f5"]
HELD_VOICES = ["en-gb-x-rp+f4", "en-us-nyc+m3", "en-029+f2"]


def speech_clips(texts, voices, rng, workdir, tag, reps=1):
    clips = []
    jobs = [(text, voices[(i * reps + r) % len(voices)]) for i, text in enumerate(texts) for r in range(reps)]
    for i, (text, v) in enumerate(jobs):
        wav = os.path.join(workdir, f"{tag}{i}.wav")
        rawf = os.path.join(workdir, f"{tag}{i}.raw")
        subprocess.run(["espeak-ng", "-v", v, "-s", str(int(rng.uniform(120, 200))),
                        "-p", str(int(rng.uniform(30, 70))), "-w", wav, text], check=True)
        subprocess.run(["gst-launch-1.0", "-q", "filesrc", f"location={wav}", "!", "wavparse", "!",
                        "audioconvert", "!", "audioresample", "!",
                        f"audio/x-raw,format=F32LE,rate={RATE},channels=1", "!",
                        "filesink", f"location={rawf}"], check=True)
        x = R.read(rawf)
        nz = np.flatnonzero(np.abs(x) > 2e-3)
        if len(nz):
            x = x[nz[0]:nz[-1] + 1]
        clips.append(x / (np.max(np.abs(x)) + 1e-9))
    return clips


def tone(rng, n):
    t = np.arange(n) / RATE
    kind = rng.integers(0, 4)
    if kind == 0:                                    # sine, maybe vibrato
        f = rng.uniform(100, 3000)
        vib = rng.uniform(0, 0.02) * np.sin(2 * np.pi * rng.uniform(3, 7) * t)
        s = np.sin(2 * np.pi * f * t * (1 + vib))
    elif kind == 1:                                  # harmonic tone
        f = rng.uniform(80, 800)
        s = sum(rng.uniform(0.2, 1) / h * np.sin(2 * np.pi * f * h * t + rng.uniform(0, 6))
                for h in range(1, int(rng.integers(2, 8))) if f * h < 7000)
    elif kind == 2:                                  # chord
        f = rng.uniform(150, 600)
        s = sum(np.sin(2 * np.pi * f * r * t) for r in (1, 1.26, 1.5, rng.choice([1.78, 2.0])))
    else:                                            # sweep
        f0, f1 = rng.uniform(100, 4000, size=2)
        s = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * t[-1] + 1e-9)))
    s = np.asarray(s, dtype=np.float64)
    return s / (np.max(np.abs(s)) + 1e-9)


def noise(rng, n):
    w = rng.standard_normal(n)
    kind = rng.integers(0, 4)
    if kind == 1:                                    # pink-ish: sum of one-poles
        s = sum(np.convolve(w, np.exp(-np.arange(64) / L), mode="same") / L ** 0.5 for L in (1, 4, 16, 64))
    elif kind == 2:                                  # brown-ish
        s = np.cumsum(w)
        s -= np.convolve(s, np.ones(400) / 400, mode="same")
    elif kind == 3:                                  # band-passed
        k = int(rng.integers(3, 20))
        s = np.convolve(w, np.sin(np.pi * np.arange(2 * k) / k) * np.hanning(2 * k), mode="same")
    else:
        s = w
    if rng.random() < 0.3:                           # bursty
        t = np.arange(n) / RATE
        s = s * (0.3 + 0.7 * (np.sin(2 * np.pi * rng.uniform(1, 4) * t) > 0))
    return s / (np.max(np.abs(s)) + 1e-9)


def compose(clips, seed, seconds):
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    x, y = np.zeros(n), np.zeros(n)
    pos, ci, last = 0, 0, -1
    while pos < n:
        c = int(rng.integers(0, 3))
        if c == last:
            c = (c + 1 + int(rng.integers(0, 2))) % 3
        last = c
        if c == 0:
            s = clips[ci % len(clips)]
            ci += 1
        else:
            k = int(rng.uniform(0.5, 2.5) * RATE)
            s = tone(rng, k) if c == 1 else noise(rng, k)
        s = s * rng.uniform(0.1, 0.8) * R.fade(len(s), 80)
        k = min(len(s), n - pos)
        x[pos:pos + k] = s[:k]
        y[pos:pos + k] = c
        pos += k
    return x, y


def make(kind, seed, seconds, workdir):
    rng = np.random.default_rng(seed)
    if kind == "train":
        clips = speech_clips(TRAIN_TEXT, TRAIN_VOICES, rng, workdir, "tr", reps=3)
    else:
        clips = speech_clips(HELD_TEXT, HELD_VOICES, rng, workdir, "ho")
    return compose(clips, seed, seconds)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(R.ROOT, "models", "sound-classifier.safetensors"))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=400)
    ap.add_argument("--gen", nargs=5, metavar=("X", "LABELS", "KIND", "SEED", "SECONDS"))
    a = ap.parse_args()
    if a.gen:
        with tempfile.TemporaryDirectory() as w:
            x, y = make(a.gen[2], int(a.gen[3]), float(a.gen[4]), w)
        R.write(a.gen[0], x)
        R.write(a.gen[1], y)
        return
    out = os.path.abspath(a.out)
    with tempfile.TemporaryDirectory(prefix="sound-classifier-") as w:
        R.setup_env(w)
        os.chdir(w)
        x, y = make("train", 31, a.seconds, w)
        R.write("x.raw", x)
        R.write("y.raw", y)
        hx, hy = make("heldout", 32, 40, w)
        R.write("hx.raw", hx)
        R.train(f"filesrc location=x.raw ! {R.raw(RATE)} ! rnntrain name=t model-location={out} "
                f"cell=gru hidden-size=32 frame-size={FRAME} loss=cross-entropy num-classes=3 "
                f"head-activation=softmax epochs={a.epochs} seq-length=50 batch-size=16 "
                f"learning-rate=0.005 weight-decay=0.0001 seed=1 ! fakesink "
                f"filesrc location=y.raw ! {R.raw(RATE)} ! t.target")
        text = R.launch(f"filesrc location=hx.raw ! {R.raw(RATE)} ! "
                        f"rnnfilter model-location={out} message-interval=1 ! fakesink", messages=True)
        msgs = R.parse_outputs(text)
        steps = len(hy) // FRAME
        truth = hy[np.arange(steps) * FRAME + FRAME - 1].astype(int)
        guess = np.full(steps, -1)
        for ts, _, cls, _ in msgs:
            i = int(round(ts * RATE / 1e9 / FRAME))
            if 0 <= i < steps:
                guess[i] = cls
        acc = np.mean(guess == truth)
        conf = np.zeros((3, 3), dtype=int)
        for t_, g_ in zip(truth, guess):
            if g_ >= 0:
                conf[t_, g_] += 1
        change = np.flatnonzero(np.diff(truth)) + 1
        bounds = np.concatenate([[0], change, [steps]])
        right = sum(int(np.argmax(np.bincount(guess[a_:b_][guess[a_:b_] >= 0], minlength=3)) == truth[a_])
                    for a_, b_ in zip(bounds[:-1], bounds[1:]))
        print(f"model: {out} ({R.model_size(out)})")
        print(f"held-out (seed 32, other sentences and voices, {steps} steps of 10 ms, "
              f"{len(msgs)} rnnfilter-output messages): accuracy {acc * 100:.1f} % per step, "
              f"{right}/{len(bounds) - 1} segments by majority")
        print("confusion (rows truth speech/tones/noise, columns decision):")
        for r in range(3):
            print(f"  {NAMES[r]:7s} " + " ".join(f"{v:5d}" for v in conf[r]))


if __name__ == "__main__":
    main()
