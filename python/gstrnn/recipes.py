# SPDX-License-Identifier: LGPL-2.1-or-later
"""Shared helpers for the gst-launch-1.0 recipes in models/recipes/.

The recipes train with the `rnntrain` element and measure with `rnnfilter`,
both run as gst-launch-1.0 pipelines (printed before they run).  This module
only generates signals (numpy, raw F32LE files), runs the pipelines and reads
what they wrote.  The plugin is taken from $GST_PLUGIN_PATH, or build/plugins
of this checkout if that is unset.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def setup_env(workdir: str) -> None:
    os.environ.setdefault("GST_PLUGIN_PATH", os.path.join(ROOT, "build", "plugins"))
    os.environ["GST_REGISTRY"] = os.path.join(workdir, "registry.bin")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def raw(rate: int, channels: int = 1) -> str:
    return (f"rawaudioparse use-sink-caps=false format=pcm pcm-format=f32le "
            f"sample-rate={rate} num-channels={channels}")


def launch(pipeline: str, messages: bool = False, quiet: bool = True) -> str:
    """Run gst-launch-1.0 on @pipeline (a string as typed); return its stdout."""
    args = ["gst-launch-1.0"] + (["-m"] if messages else []) + (["-q"] if quiet and not messages else [])
    print("$ " + " ".join(args) + " " + " ".join(pipeline.split()), flush=True)
    t0 = time.time()
    p = subprocess.run(args + shlex.split(pipeline), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-4000:])
        raise SystemExit(f"gst-launch-1.0 failed ({p.returncode})")
    dt = time.time() - t0
    if dt > 5:
        print(f"  ({dt:.0f} s)", flush=True)
    return p.stdout


def train(pipeline: str) -> str:
    """Run a training pipeline with -m; print rnntrain's last progress/done message."""
    out = launch(pipeline, messages=True)
    msgs = re.findall(r"rnntrain-(?:progress|done)[^;\n]*", out)
    for m in msgs[-2:]:
        print("  " + m[:240])
    return out


def write(path: str, x) -> None:
    np.asarray(x, dtype="<f4").tofile(path)


def read(path: str, channels: int = 1) -> np.ndarray:
    x = np.fromfile(path, dtype="<f4").astype(np.float64)
    return x.reshape(-1, channels) if channels > 1 else x


def parse_outputs(text: str):
    """rnnfilter-output messages from `gst-launch-1.0 -m` output:
    a list of (timestamp ns, values list, class or None, confidence or None)."""
    res = []
    for line in text.splitlines():
        if "rnnfilter-output" not in line:
            continue
        ts = re.search(r"timestamp=\(guint64\)(\d+)", line)
        vals = re.search(r"values=\((?:GValueArray|float)\)[<{]\s*([^>}]*)[>}]", line)
        cls = re.search(r"class=\(int\)(-?\d+)", line)
        conf = re.search(r"confidence=\((?:double|float)\)([-0-9.eE+]+)", line)
        v = [float(s) for s in vals.group(1).split(",")] if vals else []
        res.append((int(ts.group(1)) if ts else -1, v,
                    int(cls.group(1)) if cls else None,
                    float(conf.group(1)) if conf else None))
    return res


def model_size(path: str) -> str:
    import json
    import struct
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    params = 0
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        c = 1
        for d in v["shape"]:
            c *= d
        params += c
    return f"{params} parameters, {os.path.getsize(path)} bytes"


def fade(n: int, k: int) -> np.ndarray:
    env = np.ones(n)
    k = min(k, n // 2)
    if k > 0:
        r = 0.5 - 0.5 * np.cos(np.pi * np.arange(k) / k)
        env[:k] = r
        env[n - k:] = r[::-1]
    return env


def rich_audio(seed: int, seconds: float, rate: int) -> np.ndarray:
    """Noise bursts, chirps, tones and low-passed noise under slow envelopes."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    x = np.zeros(n)
    pos = 0
    while pos < n:
        seg = int(rng.uniform(0.05, 0.4) * rate)
        t = np.arange(seg) / rate
        kind = rng.integers(0, 5)
        if kind == 0:
            s = rng.standard_normal(seg) * 0.35
        elif kind == 1:
            f0, f1 = rng.uniform(50, 0.4 * rate, size=2)
            s = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * t[-1] + 1e-9)))
        elif kind == 2:
            f = rng.uniform(60, 0.3 * rate, size=2)
            s = 0.6 * np.sin(2 * np.pi * f[0] * t) + 0.4 * np.sin(2 * np.pi * f[1] * t + 1.0)
        elif kind == 3:
            s = np.convolve(rng.standard_normal(seg), np.ones(8) / 8, mode="same") * 1.2
        else:
            s = np.zeros(seg)
        env = rng.uniform(0.05, 0.95) * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.5, 4) * t))
        k = min(seg, n - pos)
        x[pos:pos + k] = (s * env * fade(seg, int(0.002 * rate)))[:k]
        pos += k
    return np.clip(x, -0.99, 0.99)
