#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""tests/examples/demo.py OUTDIR: the shipped models in real gst-launch-1.0 pipelines.

Run by scripts/demo.  Generates its inputs (numpy; speech from espeak-ng),
streams them through rnnfilter in gst-launch-1.0 pipelines, reads the
pipelines' output as it arrives (fdsink to a pipe, or `-m` bus messages),
prints what the models achieve as they stream, and writes OUTDIR/demo.png
(input, model output, reference) with matplotlib.
"""

import os
import shlex
import subprocess
import sys
import time

import numpy as np

import gstrnn.recipes as R

ROOT = R.ROOT

M = os.path.join(ROOT, "models")
FX = ("audiodynamic mode=compressor characteristics=soft-knee threshold=0.2 ratio=0.3 "
      "! audiocheblimit mode=low-pass cutoff=3000 poles=4")


def popen(pipeline, messages=False):
    args = ["gst-launch-1.0"] + (["-m"] if messages else ["-q"])
    print("$ " + " ".join(args) + " " + " ".join(pipeline.split()), flush=True)
    return subprocess.Popen(args + shlex.split(pipeline), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL if not messages else subprocess.STDOUT)


def finish(p):
    if p.wait() != 0:
        raise SystemExit(f"demo: gst-launch-1.0 failed ({p.returncode})")


def read_frames(p, nbytes):
    buf = b""
    while len(buf) < nbytes:
        chunk = p.stdout.read(nbytes - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def effect(work):
    print("\n== 1. effect-lstm: the LSTM next to the real effect chain "
          "(audiodynamic compressor ! audiocheblimit), 16 kHz, 8 s of new audio")
    rate = 16000
    R.write(f"{work}/dry.raw", R.rich_audio(2024, 8, rate))
    p = popen(f"filesrc location={work}/dry.raw ! {R.raw(rate)} ! tee name=t "
              f"t. ! queue ! {FX} ! i.sink_0 "
              f"t. ! queue ! rnnfilter model-location={M}/effect-lstm.safetensors ! i.sink_1 "
              f"interleave name=i ! fdsink fd=1")
    ref, mod = [], []
    se = sr = 0.0
    sec = 0
    while True:
        b = read_frames(p, rate * 2 * 4)
        if not b:
            break
        x = np.frombuffer(b, dtype="<f4").reshape(-1, 2).astype(np.float64)
        ref.append(x[:, 0])
        mod.append(x[:, 1])
        e, s = np.sum((x[:, 1] - x[:, 0]) ** 2), np.sum(x[:, 0] ** 2)
        se += e
        sr += s
        sec += 1
        print(f"  t={sec:2d} s  ESR this second {e / max(s, 1e-12):.4f}   running ESR {se / max(sr, 1e-12):.4f}",
              flush=True)
    finish(p)
    print(f"  effect-lstm: ESR over {sec} s against the real effect = {se / sr:.4f}")
    return R.read(f"{work}/dry.raw"), np.concatenate(ref), np.concatenate(mod), se / sr


def classifier(work):
    print("\n== 2. sound-classifier: speech / tones / noise every 10 ms "
          "(espeak-ng sentences and voices it was not trained on), rnnfilter-output messages")
    rate, frame = 16000, 160
    subprocess.run(["/usr/bin/python3", f"{M}/recipes/sound-classifier.py", "--gen",
                    f"{work}/cls.raw", f"{work}/cls-y.raw", "heldout", "77", "20"], check=True)
    y = R.read(f"{work}/cls-y.raw")
    names = ["speech", "tones", "noise"]
    p = popen(f"filesrc location={work}/cls.raw ! {R.raw(rate)} ! "
              f"rnnfilter model-location={M}/sound-classifier.safetensors message-interval=1 ! fakesink",
              messages=True)
    steps = len(y) // frame
    guess = np.full(steps, -1)
    conf = np.zeros(steps)
    for line in iter(p.stdout.readline, b""):
        out = R.parse_outputs(line.decode(errors="replace"))
        if not out:
            continue
        ts, _, c, cf = out[0]
        i = int(round(ts * rate / 1e9 / frame))
        if 0 <= i < steps:
            guess[i], conf[i] = c, cf
            if i % 50 == 49:
                truth = int(y[i * frame + frame - 1])
                win = guess[i - 49:i + 1]
                vote = int(np.argmax(np.bincount(win[win >= 0], minlength=3)))
                print(f"  t={(i + 1) / 100:5.2f} s  truth {names[truth]:6s}  decision {names[c]:6s} "
                      f"(confidence {cf:.2f}; last 0.5 s majority {names[vote]})", flush=True)
    finish(p)
    truth = y[np.arange(steps) * frame + frame - 1].astype(int)
    acc = np.mean(guess == truth)
    print(f"  sound-classifier: {acc * 100:.1f} % of {steps} steps right")
    return R.read(f"{work}/cls.raw"), truth, guess, acc


def imu(work):
    print("\n== 3. imu-gru: forecasting a 6-axis IMU stream at 100 Hz, 180 s, anomalies injected; "
          "score = max over channels of |residual| / clean residual RMS")
    rate, ch = 100, 6
    subprocess.run(["/usr/bin/python3", f"{M}/recipes/imu-gru.py", "--gen", f"{work}/clean.raw", "501", "120"],
                   check=True)
    subprocess.run(["/usr/bin/python3", f"{M}/recipes/imu-gru.py", "--gen", f"{work}/imu.raw", "502", "180",
                    "--anomalies", f"{work}/events.txt"], check=True)
    R.launch(f"filesrc location={work}/clean.raw ! {R.raw(rate, ch)} ! "
             f"rnnfilter model-location={M}/imu-gru.safetensors ! filesink location={work}/clean-pred.raw")
    clean = R.read(f"{work}/clean.raw", ch)
    res = clean[1:] - R.read(f"{work}/clean-pred.raw", ch)[:-1]
    rms = np.sqrt(np.mean(res ** 2, axis=0))
    thr = 1.25 * np.max(np.abs(res) / rms)
    print(f"  threshold from 120 s of clean data: {thr:.2f}")
    events = [tuple(int(v) if v.isdigit() else v for v in l.split()) for l in open(f"{work}/events.txt")]
    x = R.read(f"{work}/imu.raw", ch)
    p = popen(f"filesrc location={work}/imu.raw ! {R.raw(rate, ch)} ! "
              f"rnnfilter model-location={M}/imu-gru.safetensors ! fdsink fd=1")
    preds = []
    score = [0.0]
    alarms = []
    n = 0
    while True:
        b = read_frames(p, 100 * ch * 4)
        if not b:
            break
        pr = np.frombuffer(b, dtype="<f4").reshape(-1, ch).astype(np.float64)
        preds.append(pr)
        for k in range(len(pr)):
            if n + 1 < len(x):
                s = float(np.max(np.abs(x[n + 1] - pr[k]) / rms))
                score.append(s)
                if s > thr and (not alarms or n + 1 - alarms[-1][1] > 30):
                    ev = [e for e in events if e[0] <= n + 1 <= e[1] + 10]
                    what = (f"injected {ev[0][2]} on channel {ev[0][3]} at {ev[0][0] / rate:.2f} s"
                            if ev else "no injected anomaly here (false alarm)")
                    print(f"  t={(n + 1) / rate:7.2f} s  ANOMALY score {s:6.1f}  -> {what}", flush=True)
                    alarms.append([n + 1, n + 1])
                elif s > thr:
                    alarms[-1][1] = n + 1
            n += 1
    finish(p)
    score = np.asarray(score)
    found = sum(any(a <= e + 10 and b >= s for a, b in alarms) for s, e, _, _ in events)
    true = sum(any(a <= e + 10 and b >= s for s, e, _, _ in events) for a, b in alarms)
    print(f"  imu-gru: {len(alarms)} alarms, {true} on injected anomalies (precision {true / max(1, len(alarms)):.2f}); "
          f"{found} of {len(events)} anomalies found (recall {found / max(1, len(events)):.2f})")
    return x, np.concatenate(preds), score, thr, events


def onset(work):
    print("\n== 4. onset-bigru: note onsets, bidirectional GRU over 0.5 s windows (latency 0.5 s), 8 kHz, 20 s")
    rate, frame = 8000, 80
    subprocess.run(["/usr/bin/python3", f"{M}/recipes/onset-bigru.py", "--gen", f"{work}/on.raw",
                    f"{work}/on-y.raw", "4242", "20"], check=True)
    R.launch(f"filesrc location={work}/on.raw ! {R.raw(rate)} ! "
             f"rnnfilter model-location={M}/onset-bigru.safetensors ! filesink location={work}/on-p.raw")
    import importlib.util
    spec = importlib.util.spec_from_file_location("onset", f"{M}/recipes/onset-bigru.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    x, y, ons = mod.make(4242, 20)
    probs = R.read(f"{work}/on-p.raw", 2)
    acc, f1s, prec, rec, f1, nd, no = mod.evaluate(probs, y, ons)
    print(f"  onset-bigru: {no} true onsets, {nd} detected; precision {prec:.2f}, recall {rec:.2f}, "
          f"F1 {f1:.2f} (+-30 ms)")
    return x, probs[:, 1], ons


def plot(path, fx, cl, im, on):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(5, 1, figsize=(13, 16))
    dry, ref, mod, esr = fx
    rate = 16000
    a, b = int(2.0 * rate), int(2.06 * rate)
    t = np.arange(a, b) / rate
    ax[0].plot(t, dry[a:b], color="0.7", label="input (dry)")
    ax[0].plot(t, ref[a:b], "b", lw=2, label="reference: audiodynamic ! audiocheblimit")
    ax[0].plot(t, mod[a:b], "r--", lw=1.5, label="model: rnnfilter effect-lstm")
    ax[0].set_title(f"effect-lstm vs the real effect chain (60 ms excerpt); ESR over 8 s = {esr:.4f}")
    ax[0].set_xlabel("s")
    ax[0].legend(loc="upper right", fontsize=8)
    x, truth, guess, acc = cl
    tt = np.arange(len(x)) / 16000
    ax[1].plot(tt[::10], x[::10], color="0.6", lw=0.5)
    ts = (np.arange(len(truth)) + 1) / 100
    ax[1].plot(ts, 1.2 + 0.3 * truth, "b", lw=2, label="reference class (0 speech, 1 tones, 2 noise)")
    ax[1].plot(ts, 1.25 + 0.3 * guess, "r.", ms=1.5, label="model decision (rnnfilter-output class)")
    ax[1].set_title(f"sound-classifier: input waveform, decisions every 10 ms; accuracy {acc * 100:.1f} %")
    ax[1].set_yticks([1.2, 1.5, 1.8], ["speech", "tones", "noise"])
    ax[1].legend(loc="lower right", fontsize=8)
    xi, pred, score, thr, events = im
    t = np.arange(len(xi)) / 100
    sp = [e for e in events if e[2] == "spike"]
    e0 = sp[0] if sp else events[0]
    c, a = e0[3], max(0, e0[0] - 300)
    b = min(len(xi), e0[0] + 300)
    ax[2].plot(t[a:b], xi[a:b, c], color="0.4", lw=2.5, label=f"input: channel {c} (with an injected {e0[2]})")
    ax[2].plot(t[a + 1:b], pred[a:b - 1, c], "r", lw=1, label=f"model: one-step forecast of channel {c}")
    ax[2].set_title(f"imu-gru: input and forecast around the injected {e0[2]} at {e0[0] / 100:.2f} s")
    ax[2].legend(loc="upper right", fontsize=8)
    ax[3].semilogy(t[:len(score)], np.maximum(score, 1e-2), "k", lw=0.6, label="anomaly score")
    ax[3].axhline(thr, color="r", label=f"threshold {thr:.1f} (from clean data)")
    for s, e, k, c in events:
        ax[3].axvspan(s / 100, (e + 1) / 100, color={"spike": "orange", "step": "green", "dropout": "purple"}[k],
                      alpha=0.35)
    ax[3].set_title("imu-gru anomaly score; reference: injected spikes (orange), steps (green), dropouts (purple)")
    ax[3].legend(loc="upper right", fontsize=8)
    xo, p1, ons = on
    t = np.arange(len(xo)) / 8000
    m = t < 6
    ax[4].plot(t[m], xo[m], color="0.6", lw=0.5, label="input")
    tp = (np.arange(len(p1)) * 80 + 40) / 8000
    mm = tp < 6
    ax[4].plot(tp[mm], p1[mm], "r", label="model: p(onset)")
    for o in ons[ons < 6 * 8000]:
        ax[4].axvline(o / 8000, color="b", lw=0.8, ls=":")
    ax[4].plot([], [], "b:", label="reference onsets")
    ax[4].set_title("onset-bigru (first 6 s): input, p(onset), true onsets")
    ax[4].set_xlabel("s")
    ax[4].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main():
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "demo"))
    os.makedirs(out, exist_ok=True)
    R.setup_env(out)
    t0 = time.time()
    fx = effect(out)
    cl = classifier(out)
    im = imu(out)
    on = onset(out)
    png = os.path.join(out, "demo.png")
    plot(png, fx, cl, im, on)
    print(f"\ndemo: wrote {png}  ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
