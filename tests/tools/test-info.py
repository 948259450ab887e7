#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""gst-rnn-info against the model files themselves.

Every figure gst-rnn-info --json prints is recomputed here from the
safetensors header alone (sizes from the tensor shapes, parameters as the
sum of their products, caps, rates and latency from the framing rules of
docs/design.md §4), so a wrong line in the tool fails.  Prints TAP.
usage: test-info.py GST_RNN_INFO MODEL...
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

CONFIG_KEYS = {"format", "version", "cell", "input_size", "hidden_size",
               "num_layers", "bidirectional", "head_activation", "frame_size",
               "output_frame_size", "window", "sample_rate",
               "pre_activations", "post_activations", "skip"}

n_case = 0
failed = 0


def case(name, ok, detail=""):
    global n_case, failed
    n_case += 1
    if not ok:
        failed += 1
    print(f"{'ok' if ok else 'not ok'} {n_case} {name}")
    if not ok and detail:
        for line in str(detail).splitlines():
            print(f"# {line}")


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def expected(path):
    h = header(path)
    meta = h.pop("__metadata__")
    shapes = {k: v["shape"] for k, v in h.items()}
    I = int(meta["input_size"])
    H = int(meta["hidden_size"])
    L = int(meta["num_layers"])
    bi = meta["bidirectional"] == "true"
    D = 2 if bi else 1
    G = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}[meta["cell"]]
    assert shapes["rnn.weight_hh_l0"] == [G * H, H]
    dense = {}
    for kind in ("pre", "post"):
        acts = meta.get(kind + "_activations")
        dense[kind] = [] if acts is None else [
            {"input_size": shapes[f"{kind}.{k}.weight"][1],
             "output_size": shapes[f"{kind}.{k}.weight"][0], "activation": a}
            for k, a in enumerate(acts.split(","))]
    feats = dense["post"][-1]["output_size"] if dense["post"] else D * H
    O = shapes["head.weight"][0] if "head.weight" in shapes else feats
    f_in = int(meta.get("frame_size", "1"))
    f_out = int(meta.get("output_frame_size", "1"))
    window = int(meta.get("window", "0"))
    rate = int(meta["sample_rate"]) if "sample_rate" in meta else None
    lat = f_in * (window if bi and window else 1) - 1
    e = {
        "cell": meta["cell"], "input_size": I, "hidden_size": H,
        "num_layers": L, "bidirectional": bi,
        "input_normalization": "input.mean" in shapes,
        "layers": [{"kind": meta["cell"],
                    "input_size": shapes[f"rnn.weight_ih_l{k}"][1],
                    "hidden_size": H, "directions": D} for k in range(L)],
        "pre_layers": dense["pre"], "post_layers": dense["post"],
        "skip": int(meta.get("skip", "0")),
        "initial_state": "rnn.h0" in shapes,
        "output_size": O,
        "parameters": sum(math.prod(s) for s in shapes.values()),
        "tensors": len(shapes),
        "frame_size": f_in, "output_frame_size": f_out, "window": window,
        "latency_frames": lat,
        "latency_ns": None if rate is None else -(-lat * 10**9 // rate),
        "caps": {"format": "F32LE", "layout": "interleaved", "rate": rate,
                 "output_rate": None if rate is None else rate * f_out // f_in,
                 "channels": I // f_in, "output_channels": O // f_out,
                 "independent_channels": I // f_in == 1},
        "metadata": {k: v for k, v in meta.items() if k not in CONFIG_KEYS},
    }
    e["parameter_bytes"] = 4 * e["parameters"]
    e["recurrent_weight_bytes"] = 4 * sum(math.prod(s) for k, s in shapes.items()
                                          if k.startswith("rnn.weight_hh"))
    return e


def run(*args):
    return subprocess.run([INFO, *args], capture_output=True, text=True)


INFO = sys.argv[1]
models = sys.argv[2:]
print(f"1..{len(models) + 5}")

for m in models:
    r = run("--json", m)
    name = f"/info/json/{os.path.basename(m)}"
    if r.returncode != 0:
        case(name, False, r.stderr)
        continue
    got = json.loads(r.stdout)
    want = expected(m)
    diff = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    case(name, not diff, "\n".join(f"{k}: got {g!r}, want {w!r}"
                                   for k, (g, w) in diff.items()))

r = run(models[0])
case("/info/text/names-file-and-caps",
     r.returncode == 0 and r.stdout.startswith(models[0] + "\n")
     and "sink caps" in r.stdout and "parameters" in r.stdout,
     r.stdout + r.stderr)

r = run("--json", models[0], models[-1])
ok = r.returncode == 0
if ok:
    arr = json.loads(r.stdout)
    ok = isinstance(arr, list) and [a["file"] for a in arr] == [models[0], models[-1]]
case("/info/json/several-files-array", ok, r.stdout + r.stderr)

with tempfile.TemporaryDirectory() as tmp:
    bad = os.path.join(tmp, "notes.txt")
    with open(bad, "w") as f:
        f.write("not a model at all\n")
    r = run(bad)
    case("/info/refuses/not-a-model", r.returncode == 1 and bad in r.stderr
         and r.stdout == "", r.stdout + r.stderr)
    r = run(models[0], bad)
    case("/info/refuses/one-of-several",
         r.returncode == 1 and bad in r.stderr and models[0] in r.stdout,
         r.stdout + r.stderr)

r = run()
case("/info/usage", r.returncode == 2 and "usage" in r.stderr, r.stderr)
sys.exit(1 if failed else 0)
