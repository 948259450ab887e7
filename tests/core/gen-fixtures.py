#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Regenerate the forward-parity fixtures: tests/fixtures/forward.tar.xz.

Every model is a PyTorch module with PyTorch's default initialisation,
exported with gstrnn.export(), together with PyTorch's outputs on
three deterministic input sequences.  The C test reads the tarball and checks
rnn_forward() against these outputs, so the tests run without PyTorch.

Models (444):
  cell in (rnn_tanh, rnn_relu, lstm, gru) x num_layers in (1, 2, 3)
  x (uni, bi) x input size I in (1, 5) x hidden H in (1, 8, 33)
  x head in (none, linear, softmax)                              = 432
  plus, for each cell, L=1 uni I=5 H=8 with head activations sigmoid and
  tanh, and one with a linear head and input normalisation       =  12

Name: {cell}_L{L}_{uni|bi}_I{I}_H{H}_{none|linear|softmax|sigmoid|tanh}[_norm]

Determinism: each (cell, L, dir, I, H) group has its own seed (1000 + its
index in the product above) and always draws, in this order, the rnn (nn.RNN/
nn.LSTM/nn.GRU default init), the head nn.Linear(D*H, 3) (default init) and the
normalisation mean ~ U[-1, 1), std ~ U[0.5, 2) [I].  Every variant of a group
therefore has the same rnn weights; the variants that have a head share the
same head too.  Computation is single-threaded.

Inputs are not stored: x[t, 0, i] = input_value(T, t, i) below, which the C
test reproduces bit-exactly.  Sequences of T = 1, 17 and 1000 steps, batch 1,
each run from zero state (for bidirectional models each is one whole sequence).

Tarball members (all under forward/):
  NAME.safetensors           the model
  NAME.expected.safetensors  F32 y_T1 [1, O], y_T17 [17, O], y_T1000 [K, O]
                             (PyTorch's outputs; for T = 1000 only at the steps
                             in metadata "steps_T1000", comma-separated,
                             ascending), metadata "output_size" = O
                             (3 with a head, D*H without)
  manifest.txt               one NAME per line, sorted

Usage: tests/core/gen-fixtures.py [--output PATH] [--keep DIR] [--full-check]
Runs in about 30 s (60 s with --full-check); two runs give byte-identical
tarballs.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
import gstrnn
from gstrnn.fixtures import build_tarball

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
LAYERS = (1, 2, 3)
DIRECTIONS = (False, True)           # bidirectional?
INPUT_SIZES = (1, 5)
HIDDEN_SIZES = (1, 8, 33)
HEAD_OUTPUTS = 3
SEQ_LENGTHS = (1, 17, 1000)
SEED_BASE = 1000

# Steps of the T = 1000 sequence whose outputs are stored.
STEPS_T1000 = sorted({t for t in range(1000) if t % 50 == 0} | {1, 2, 998, 999})


# --------------------------------------------------------------------------
# inputs


def input_value(T: int, t: int, i: int) -> float:
    """The input formula, scalar version (the definition; see module doc)."""
    u = (t * 2654435761 + i * 40503 + T * 97 + 12345) & 0xffffffff
    u ^= u >> 15
    u = (u * 2246822519) & 0xffffffff
    u ^= u >> 13
    u = (u * 3266489917) & 0xffffffff
    u ^= u >> 16
    return ((u >> 20) - 2048) / 2048.0     # exact in float32, in [-1, 1)


def make_input(T: int, I: int) -> np.ndarray:
    """x [T, 1, I] float32 with x[t, 0, i] = input_value(T, t, i), vectorised."""
    M = np.uint64(0xffffffff)
    t = np.arange(T, dtype=np.uint64)[:, None]
    i = np.arange(I, dtype=np.uint64)[None, :]
    # All products stay below 2^64: every factor is < 2^32 before masking.
    u = (t * np.uint64(2654435761) + i * np.uint64(40503) + np.uint64(T * 97 + 12345)) & M
    u ^= u >> np.uint64(15)
    u = (u * np.uint64(2246822519)) & M
    u ^= u >> np.uint64(13)
    u = (u * np.uint64(3266489917)) & M
    u ^= u >> np.uint64(16)
    x = ((u >> np.uint64(20)).astype(np.int64) - 2048).astype(np.float32) / np.float32(2048.0)
    return x[:, None, :]


# --------------------------------------------------------------------------
# an independent float64 reference (sanity check of PyTorch's float32 output)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def numpy_forward64(cell, L, D, H, tensors, head_act, x):
    """docs/design.md §2 written out in numpy float64: x [T, I] -> y [T, O]."""
    p = {k: v.astype(np.float64) for k, v in tensors.items()}
    seq = x.astype(np.float64)
    if "input.mean" in p:
        seq = (seq - p["input.mean"]) / p["input.std"]
    T = seq.shape[0]
    for k in range(L):
        outs = []
        for d, s in enumerate(("", "_reverse")[:D]):
            w_ih, w_hh = p[f"rnn.weight_ih_l{k}{s}"], p[f"rnn.weight_hh_l{k}{s}"]
            b_ih, b_hh = p[f"rnn.bias_ih_l{k}{s}"], p[f"rnn.bias_hh_l{k}{s}"]
            h = np.zeros(H)
            c = np.zeros(H)
            out = np.zeros((T, H))
            order = range(T) if d == 0 else range(T - 1, -1, -1)
            for t in order:
                gi = w_ih @ seq[t] + b_ih
                gh = w_hh @ h + b_hh
                if cell == "rnn_tanh":
                    h = np.tanh(gi + gh)
                elif cell == "rnn_relu":
                    h = np.maximum(gi + gh, 0.0)
                elif cell == "lstm":
                    g = gi + gh
                    ig, fg = _sigmoid(g[:H]), _sigmoid(g[H:2 * H])
                    gg, og = np.tanh(g[2 * H:3 * H]), _sigmoid(g[3 * H:])
                    c = fg * c + ig * gg
                    h = og * np.tanh(c)
                else:  # gru
                    r = _sigmoid(gi[:H] + gh[:H])
                    z = _sigmoid(gi[H:2 * H] + gh[H:2 * H])
                    n = np.tanh(gi[2 * H:] + r * gh[2 * H:])
                    h = (1.0 - z) * n + z * h
                out[t] = h
            outs.append(out)
        seq = np.concatenate(outs, axis=1)
    y = seq
    if "head.weight" in p:
        y = y @ p["head.weight"].T + p["head.bias"]
    if head_act == "softmax":
        e = np.exp(y - y.max(axis=-1, keepdims=True))
        y = e / e.sum(axis=-1, keepdims=True)
    elif head_act == "sigmoid":
        y = _sigmoid(y)
    elif head_act == "tanh":
        y = np.tanh(y)
    return y


# --------------------------------------------------------------------------
# models


def make_rnn(cell, I, H, L, bidir):
    kw = dict(input_size=I, hidden_size=H, num_layers=L, bidirectional=bidir)
    if cell == "lstm":
        return nn.LSTM(**kw)
    if cell == "gru":
        return nn.GRU(**kw)
    return nn.RNN(nonlinearity=cell[4:], **kw)


def variants(L, bidir, I, H):
    """(variant name, head?, head activation, normalised?) of one group."""
    out = [("none", False, "none", False),
           ("linear", True, "none", False),
           ("softmax", True, "softmax", False)]
    if L == 1 and not bidir and I == 5 and H == 8:
        out += [("sigmoid", True, "sigmoid", False),
                ("tanh", True, "tanh", False),
                ("linear", True, "none", True)]
    return out


def generate(stage: str, full_check: bool, log) -> list[dict]:
    """Write every fixture into @stage/forward; return per-model statistics."""
    fdir = os.path.join(stage, "forward")
    os.mkdir(fdir)
    os.chmod(fdir, 0o755)
    inputs = {T: {I: make_input(T, I) for I in INPUT_SIZES} for T in SEQ_LENGTHS}
    # The scalar definition and the vectorised one must agree bit for bit.
    for T in SEQ_LENGTHS:
        for t in sorted({0, 1, T // 2, T - 1} & set(range(T))):
            for i in range(5):
                assert inputs[T][5][t, 0, i] == np.float32(input_value(T, t, i))

    stats = []
    groups = itertools.product(CELLS, LAYERS, DIRECTIONS, INPUT_SIZES, HIDDEN_SIZES)
    for index, (cell, L, bidir, I, H) in enumerate(groups):
        D = 2 if bidir else 1
        torch.manual_seed(SEED_BASE + index)
        rnn = make_rnn(cell, I, H, L, bidir).eval()
        head = nn.Linear(D * H, HEAD_OUTPUTS).eval()
        mean = (torch.rand(I) * 2 - 1).numpy()
        std = (torch.rand(I) * 1.5 + 0.5).numpy()

        check_long = full_check or (I == 5 and H == 33)
        for vname, has_head, act, norm in variants(L, bidir, I, H):
            name = f"{cell}_L{L}_{'bi' if bidir else 'uni'}_I{I}_H{H}_{vname}{'_norm' if norm else ''}"
            model_path = os.path.join(fdir, name + ".safetensors")
            gstrnn.export(
                rnn, head if has_head else None, model_path,
                norm_mean=mean if norm else None, norm_std=std if norm else None,
                head_activation=act)

            # Reference outputs from the file as written (proves the round trip).
            meta, tensors = gstrnn.load(model_path)
            r_rnn, r_head, _, r_mean, r_std = gstrnn.build_torch(model_path)
            O = HEAD_OUTPUTS if has_head else D * H
            ys = {}
            for T in SEQ_LENGTHS:
                y = gstrnn.torch_forward(r_rnn, r_head, act, inputs[T][I], r_mean, r_std)
                assert y.shape == (T, 1, O)
                ys[T] = y[:, 0, :]
                if T == 17 or (T == 1000 and check_long):
                    ref = numpy_forward64(cell, L, D, H, tensors, act, inputs[T][I][:, 0, :])
                    err = float(np.max(np.abs(ref - ys[T])))
                    scale = max(1.0, float(np.max(np.abs(ref))))
                    if not err <= 1e-4 * scale:
                        raise AssertionError(f"{name}: torch vs float64 reference differ by {err} at T={T}")
                    stats.append({"name": name, "T": T, "err64": err})

            expected = {
                "y_T1": ys[1],
                "y_T17": ys[17],
                "y_T1000": ys[1000][STEPS_T1000],
            }
            gstrnn.write_safetensors(
                os.path.join(fdir, name + ".expected.safetensors"), expected,
                {"output_size": str(O), "steps_T1000": ",".join(map(str, STEPS_T1000))})
            y_all = np.concatenate([ys[T] for T in SEQ_LENGTHS])
            stats.append({
                "name": name,
                "maxabs": float(np.max(np.abs(y_all))),
                "finite": bool(np.all(np.isfinite(y_all))),
                # how much the T = 1000 output moves over time (0 = constant)
                "tstd": float(np.max(np.std(ys[1000], axis=0))),
                "zero": bool(np.all(y_all == 0)),
            })

    names = sorted(s["name"] for s in stats if "maxabs" in s)
    with open(os.path.join(fdir, "manifest.txt"), "w") as f:
        f.write("".join(n + "\n" for n in names))
    for entry in os.listdir(fdir):
        os.chmod(os.path.join(fdir, entry), 0o644)
    log(f"{len(names)} models written")
    return stats


def report(stats, log) -> None:
    errs = [s for s in stats if "err64" in s]
    for T in (17, 1000):
        e = [s["err64"] for s in errs if s["T"] == T]
        if e:
            worst = max((s for s in errs if s["T"] == T), key=lambda s: s["err64"])
            log(f"torch float32 vs numpy float64, T={T}: {len(e)} models, "
                f"max |diff| {worst['err64']:.3g} ({worst['name']})")
    models = [s for s in stats if "maxabs" in s]
    biggest = sorted(models, key=lambda s: -s["maxabs"])[:5]
    log("largest max |y|: " + ", ".join(f"{s['name']} {s['maxabs']:.3g}" for s in biggest))
    bad = [s["name"] for s in models if not s["finite"]]
    if bad:
        log(f"NON-FINITE outputs: {bad}")
    zero = [s["name"] for s in models if s["zero"]]
    if zero:
        log(f"all-zero outputs ({len(zero)}): {', '.join(zero)}")
    flat = [s["name"] for s in models if s["tstd"] < 1e-3 and not s["zero"]]
    if flat:
        log(f"nearly constant over T=1000 ({len(flat)}): {', '.join(flat)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", default=os.path.join(os.path.dirname(HERE), "fixtures", "forward.tar.xz"),
                    help="tarball to write (default: tests/fixtures/forward.tar.xz)")
    ap.add_argument("--keep", metavar="DIR",
                    help="also keep the unpacked fixtures in DIR/forward")
    ap.add_argument("--full-check", action="store_true",
                    help="check every model against the float64 reference at T=1000 too")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))

    torch.set_num_threads(1)
    start = time.monotonic()
    stats = build_tarball("forward", args.output,
                          lambda stage: generate(stage, args.full_check, log), args.keep)
    report(stats, log)
    log(f"wrote {args.output} ({os.path.getsize(args.output)} bytes) "
        f"in {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
