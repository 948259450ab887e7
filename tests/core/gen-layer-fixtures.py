#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Regenerate the fixtures of the layers around the recurrent stack:
tests/fixtures/layers.tar.xz.

Every model is a PyTorch module (default initialisation; the learned
initial state drawn from N(0, 0.5^2)): pre layers (nn.Linear + activation,
per step) before an nn.RNN/nn.LSTM/nn.GRU, post layers after it, a head
nn.Linear + activation, the initial state (h0, c0) passed to the recurrent
module, and a residual skip (out = head(...) + x[..., :N]), as docs/design.md
§2 defines them.  It is written as a version-2 model file by
gstrnn.model.Model, and PyTorch's outputs on the input sequences of
tests/core/gen-fixtures.py (T = 1, 17, 1000, batch 1, each from the initial
state) are stored beside it in the same format as forward.tar.xz, so that
test-forward reads both tarballs alike.  PyTorch's outputs are checked
against Model.forward (float64) too.

Models (7 per cell, 28):
  pre      L=1 uni I=2 H=8, pre tanh(6), relu(4), no head
  post     L=2 bi  I=1 H=5, post elu(7), sigmoid(3), softmax head of 3
  h0-L2    L=2 uni I=1 H=8, h0 (c0 for LSTM), linear head of 1
  h0-bi    L=1 bi  I=3 H=4, h0 (c0 for LSTM), no head
  skip     L=1 uni I=1 H=16, linear head of 1, skip 1, h0
  skip-O   L=1 uni I=2 H=33, linear head of 2, skip 2
  all      L=2 uni I=1 H=6, pre elu(4), post softmax(5), h0 (c0), linear
           head of 1, skip 1

Usage: tests/core/gen-layer-fixtures.py [--output PATH] [--keep DIR]
Deterministic: two runs give byte-identical tarballs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
import gstrnn
from gstrnn.fixtures import build_tarball
from gstrnn.model import Dense, Model

_spec = importlib.util.spec_from_file_location("gen_fixtures", os.path.join(HERE, "gen-fixtures.py"))
gen_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_fixtures)
make_input = gen_fixtures.make_input
SEQ_LENGTHS = gen_fixtures.SEQ_LENGTHS
STEPS_T1000 = gen_fixtures.STEPS_T1000

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
SEED_BASE = 5000

# name: (L, bidirectional, I, H, pre, post, head outputs (0: none),
#        head activation, h0, skip)
VARIANTS = {
    "pre": (1, False, 2, 8, [(6, "tanh"), (4, "relu")], [], 0, "none", False, 0),
    "post": (2, True, 1, 5, [], [(7, "elu"), (3, "sigmoid")], 3, "softmax", False, 0),
    "h0-L2": (2, False, 1, 8, [], [], 1, "none", True, 0),
    "h0-bi": (1, True, 3, 4, [], [], 0, "none", True, 0),
    "skip": (1, False, 1, 16, [], [], 1, "none", True, 1),
    "skip-O": (1, False, 2, 33, [], [], 2, "none", False, 2),
    "all": (2, False, 1, 6, [(4, "elu")], [(5, "softmax")], 1, "none", True, 1),
}

ACTS = {
    "none": nn.Identity, "tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid,
    "elu": nn.ELU, "softmax": lambda: nn.Softmax(dim=-1),
}


class Net(nn.Module):
    """The model of docs/design.md §2 with every optional piece, in PyTorch."""

    def __init__(self, cell, L, bidir, I, H, pre, post, O, head_act, h0, skip):
        super().__init__()
        D = 2 if bidir else 1
        self.pre = nn.ModuleList()
        self.pre_acts = [a for _, a in pre]
        width = I
        for size, _ in pre:
            self.pre.append(nn.Linear(width, size))
            width = size
        kind = {"rnn_tanh": nn.RNN, "rnn_relu": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
        kw = {"nonlinearity": "relu" if cell == "rnn_relu" else "tanh"} if cell.startswith("rnn") else {}
        self.rnn = kind(width, H, L, bidirectional=bidir, **kw)
        self.post = nn.ModuleList()
        self.post_acts = [a for _, a in post]
        width = D * H
        for size, _ in post:
            self.post.append(nn.Linear(width, size))
            width = size
        self.head = nn.Linear(width, O) if O else None
        self.head_act = head_act
        self.h0 = nn.Parameter(torch.randn(L * D, H) * 0.5) if h0 else None
        self.c0 = nn.Parameter(torch.randn(L * D, H) * 0.5) if h0 and cell == "lstm" else None
        self.skip = skip
        self.lstm = cell == "lstm"

    def forward(self, x):                       # x [T, 1, I]
        z = x
        for lin, act in zip(self.pre, self.pre_acts):
            z = ACTS[act]()(lin(z))
        if self.h0 is not None:
            h = self.h0[:, None, :].contiguous()
            if self.lstm:
                c = (self.c0 if self.c0 is not None else torch.zeros_like(self.h0))[:, None, :].contiguous()
                z, _ = self.rnn(z, (h, c))
            else:
                z, _ = self.rnn(z, h)
        else:
            z, _ = self.rnn(z)
        for lin, act in zip(self.post, self.post_acts):
            z = ACTS[act]()(lin(z))
        if self.head is not None:
            z = ACTS[self.head_act]()(self.head(z))
        if self.skip:
            z = z + x[..., :self.skip]
        return z


def to_model(net: Net, cell, L, bidir, I, H) -> Model:
    sd = {k: v.detach().numpy().astype(np.float64) for k, v in net.rnn.state_dict().items()}
    m = Model(cell, I, H, L, bidir, sd)
    m.pre = [Dense(l.weight.detach().numpy(), l.bias.detach().numpy(), a)
             for l, a in zip(net.pre, net.pre_acts)]
    m.post = [Dense(l.weight.detach().numpy(), l.bias.detach().numpy(), a)
              for l, a in zip(net.post, net.post_acts)]
    if net.head is not None:
        m.head = Dense(net.head.weight.detach().numpy(), net.head.bias.detach().numpy())
        m.head_activation = net.head_act
    if net.h0 is not None:
        m.h0 = net.h0.detach().numpy().astype(np.float64)
    if net.c0 is not None:
        m.c0 = net.c0.detach().numpy().astype(np.float64)
    m.skip = net.skip
    return m


def generate(stage: str, log) -> list[str]:
    fdir = os.path.join(stage, "layers")
    os.mkdir(fdir)
    os.chmod(fdir, 0o755)
    names = []
    index = 0
    for cell in CELLS:
        for vname, (L, bidir, I, H, pre, post, O, act, h0, skip) in VARIANTS.items():
            torch.manual_seed(SEED_BASE + index)
            index += 1
            net = Net(cell, L, bidir, I, H, pre, post, O, act, h0, skip).eval()
            name = f"{cell}_{vname}"
            model = to_model(net, cell, L, bidir, I, H)
            model.to_safetensors(os.path.join(fdir, name + ".safetensors"))
            ys = {}
            with torch.no_grad():
                for T in SEQ_LENGTHS:
                    x = make_input(T, I)
                    y = net(torch.from_numpy(x)).numpy()[:, 0, :]
                    ys[T] = y
                    if T <= 17:
                        ref = model.forward(x[:, 0, :])
                        err = float(np.max(np.abs(ref - y)))
                        if not err <= 1e-4 * max(1.0, float(np.max(np.abs(ref)))):
                            raise AssertionError(f"{name}: torch vs Model.forward differ by {err} at T={T}")
            O_out = ys[1].shape[1]
            expected = {"y_T1": ys[1], "y_T17": ys[17], "y_T1000": ys[1000][STEPS_T1000]}
            gstrnn.write_safetensors(
                os.path.join(fdir, name + ".expected.safetensors"), expected,
                {"output_size": str(O_out), "steps_T1000": ",".join(map(str, STEPS_T1000))})
            names.append(name)
    names.sort()
    with open(os.path.join(fdir, "manifest.txt"), "w") as f:
        f.write("".join(n + "\n" for n in names))
    for entry in os.listdir(fdir):
        os.chmod(os.path.join(fdir, entry), 0o644)
    log(f"{len(names)} models written")
    return names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", default=os.path.join(os.path.dirname(HERE), "fixtures", "layers.tar.xz"),
                    help="tarball to write (default: tests/fixtures/layers.tar.xz)")
    ap.add_argument("--keep", metavar="DIR", help="also keep the unpacked fixtures in DIR/layers")
    args = ap.parse_args()
    log = lambda *a: print(*a, file=sys.stderr)
    torch.set_num_threads(1)
    build_tarball("layers", args.output, lambda stage: generate(stage, log), args.keep)
    log(f"wrote {args.output} ({os.path.getsize(args.output)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
