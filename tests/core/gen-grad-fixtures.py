#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Regenerate the training fixtures: tests/fixtures/grad.tar.xz.

For every model below, PyTorch (autograd, torch.optim, clip_grad_norm_)
computes on one batch of B windows: the loss, the gradient of every
parameter and of the input, the parameters after two SGD steps and after two
Adam steps on that batch, and the gradients after clip_grad_norm_.  The C test
(tests/core/test-backward.c) checks the core's training code against them, so the
tests run without PyTorch.

The reference is computed in float64 (the float32 model, inputs and targets
converted exactly), so it is the exact answer to ~1e-15 and the C errors the
test measures are the C code's own.  The script also reports how far PyTorch's
float32 gradients are from it, as a yardstick.

Sizes: I = 3, H = 5, O = 4 outputs with a head (D*H without), T = 7, B = 2.

Models (100):
  cell in (rnn_tanh, rnn_relu, lstm, gru) x num_layers in (1, 2) x (uni, bi)
  x (head, loss) in (none mse, linear mse, linear ce, softmax mse, softmax ce)
                                                                    = 80
  plus, for each cell:                                              = 20
    L2 uni linear mse with input normalisation
    L1 uni sigmoid mse, L1 uni tanh mse        (the other head activations)
    L2 uni linear mse with warmup 3            (steps 0..2 carry no loss)
    L2 bi softmax ce with a [T][B] 0/1 mask and input normalisation

Name: {cell}_L{L}_{uni|bi}_{none|linear|softmax|sigmoid|tanh}_{mse|ce}
      [_norm][_warmup3][_mask]

The layers around the recurrent stack and the audio losses (32 more, listed
in grad/extras.txt, not in manifest.txt, so that the members above stay
byte for byte what they were): for each cell, the variants of EXTRAS below,
named {cell}_x_{variant}: pre and post dense layers with every activation
(none, tanh, relu, sigmoid, elu, softmax), a skip of 1 and of O, the
model's own initial state (rnn.h0, rnn.c0; kept, not trained: every window
starts from it, and it gets no gradient), input normalisation, a mask and a
warm-up, and the losses
  "mse", "esr": sum(w (y - target)^2) / (sum(w target^2) + 1e-8 sum(w) O),
  either with pre-emphasis a: both compared through e[t] = v[t] - a v[t-1]
  of the same window; step 0, and a step whose previous step has mask 0,
  carry no loss (w[t] = 0 there).
Their expected files hold x, target, mask (if any), y, loss, grad.x,
grad.NAME and adam.NAME (two Adam steps, lr 0.01, weight decay 0.01, which
must leave input.mean, input.std, rnn.h0, rnn.c0 alone) for every trained
parameter; metadata loss (mse|esr), warmup, pre_emphasis (repr).

Semantics (docs/design.md §2; the C API in src/rnn-train.h):
  x [T, B, I] time-major; a unidirectional model starts from a non-zero
  carried state h0 (and c0) [L*D, B, H], a bidirectional one from zero.
  "mse": mean over the weighted steps and all O outputs of (y - target)^2,
  y after the head activation (torch.nn.MSELoss(reduction='mean') when no
  step is masked).  "ce": torch.nn.CrossEntropyLoss on the logits (before a
  softmax head's activation) with class-index targets [T, B].
  Step weights w [T, B]: 1 everywhere, 0 for t < warmup, or the stored mask;
  loss = sum(w * per-step loss) / sum(w) (/ O for mse).
  SGD: torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=0.01), two steps
  (forward, backward, step; twice, on the same batch).
  Adam: torch.optim.Adam(lr=0.01, weight_decay=0.01), two steps likewise.
  Clip: torch.nn.utils.clip_grad_norm_(max_norm=0.5) on the gradients.
  input.mean / input.std are constants, not parameters.

Tarball members (all under grad/):
  NAME.safetensors            the model (gstrnn.export())
  NAME.expected.safetensors   F32 tensors:
    x [T,B,I], target [T,B,O] (mse) or [T,B] class indices (ce),
    mask [T,B] (only _mask), h0 / c0 [L*D,B,H] and hT / cT (uni; c for lstm),
    y [T,B,O] the output after the head activation, loss [1],
    grad.x [T,B,I], grad.NAME, sgd.NAME, adam.NAME, clip.NAME for every
    parameter NAME (rnn.weight_ih_l0, ..., head.bias);
    metadata: loss (mse|ce), warmup, clip_total_norm (repr of a float64)
  optim.safetensors           the optimizers alone on synthetic data, float32
                              as torch.optim computes them (see optim_fixture)
  manifest.txt                one NAME per line, sorted
  extras.txt                  the names of the extra models, sorted

Usage: tests/core/gen-grad-fixtures.py [--output PATH] [--keep DIR]
Runs in a few seconds; two runs give byte-identical tarballs.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
import gstrnn
from gstrnn.fixtures import build_tarball
from gstrnn.model import Dense, Model

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
I, H, O, T, B = 3, 5, 4, 7, 2
SEED_BASE = 2000

SGD = dict(lr=0.1, momentum=0.9, weight_decay=0.01)
ADAM = dict(lr=0.01, weight_decay=0.01)
CLIP = 0.5
STEPS = 2


def model_specs():
    """(cell, L, bidir, head, loss, norm, warmup, mask) of every fixture."""
    specs = []
    for cell in CELLS:
        for L in (1, 2):
            for bidir in (False, True):
                for head, loss in (("none", "mse"), ("linear", "mse"), ("linear", "ce"),
                                   ("softmax", "mse"), ("softmax", "ce")):
                    specs.append((cell, L, bidir, head, loss, False, 0, False))
        specs += [
            (cell, 2, False, "linear", "mse", True, 0, False),
            (cell, 1, False, "sigmoid", "mse", False, 0, False),
            (cell, 1, False, "tanh", "mse", False, 0, False),
            (cell, 2, False, "linear", "mse", False, 3, False),
            (cell, 2, True, "softmax", "ce", True, 0, True),
        ]
    return specs


def spec_name(cell, L, bidir, head, loss, norm, warmup, mask):
    name = f"{cell}_L{L}_{'bi' if bidir else 'uni'}_{head}_{loss}"
    if norm:
        name += "_norm"
    if warmup:
        name += f"_warmup{warmup}"
    if mask:
        name += "_mask"
    return name


def make_rnn(cell, L, bidir):
    kw = dict(input_size=I, hidden_size=H, num_layers=L, bidirectional=bidir)
    if cell == "lstm":
        return nn.LSTM(**kw)
    if cell == "gru":
        return nn.GRU(**kw)
    return nn.RNN(nonlinearity=cell[4:], **kw)


class Problem:
    """One fixture: float32 data drawn from the seed, computed in @dtype."""

    def __init__(self, spec, seed):
        (self.cell, self.L, self.bidir, self.head_kind, self.loss_kind,
         self.norm, self.warmup, self.use_mask) = spec
        self.D = 2 if self.bidir else 1
        self.act = {"none": "none", "linear": "none"}.get(self.head_kind, self.head_kind)
        self.O = O if self.head_kind != "none" else self.D * H
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.rnn = make_rnn(self.cell, self.L, self.bidir)              # default init
        self.head = nn.Linear(self.D * H, O) if self.head_kind != "none" else None
        self.mean = (torch.rand(I, generator=g) * 2 - 1) if self.norm else None
        self.std = (torch.rand(I, generator=g) * 1.5 + 0.5) if self.norm else None
        self.x = torch.randn(T, B, I, generator=g)
        if self.loss_kind == "mse":
            self.target = torch.randn(T, B, self.O, generator=g)
        else:
            self.target = torch.randint(0, O, (T, B), generator=g).to(torch.float32)
        n_state = self.L * self.D
        if self.bidir:
            self.h0 = torch.zeros(n_state, B, H)
            self.c0 = torch.zeros(n_state, B, H)
        else:
            self.h0 = torch.randn(n_state, B, H, generator=g) * 0.5
            self.c0 = torch.randn(n_state, B, H, generator=g) * 0.5
        w = torch.ones(T, B)
        if self.warmup:
            w[:self.warmup] = 0
        if self.use_mask:
            self.mask = (torch.rand(T, B, generator=g) < 0.7).to(torch.float32)
            self.mask[T - 1, 0] = 1          # never all zero
            w = w * self.mask
        else:
            self.mask = None
        self.w = w

    def modules(self, dtype):
        rnn = copy.deepcopy(self.rnn).to(dtype)
        head = copy.deepcopy(self.head).to(dtype) if self.head is not None else None
        return rnn, head

    @staticmethod
    def named_params(rnn, head):
        out = [("rnn." + n, p) for n, p in rnn.named_parameters()]
        if head is not None:
            out += [("head." + n, p) for n, p in head.named_parameters()]
        return out

    def loss(self, rnn, head, dtype, x=None):
        """(loss, y, hT, cT) for the batch; @x a leaf to differentiate."""
        x = self.x.to(dtype) if x is None else x
        if self.norm:
            x = (x - self.mean.to(dtype)) / self.std.to(dtype)
        h0, c0 = self.h0.to(dtype), self.c0.to(dtype)
        if self.cell == "lstm":
            out, (hT, cT) = rnn(x, (h0, c0))
        else:
            out, hT = rnn(x, h0)
            cT = None
        z = head(out) if head is not None else out
        if self.act == "softmax":
            y = torch.softmax(z, dim=-1)
        elif self.act == "sigmoid":
            y = torch.sigmoid(z)
        elif self.act == "tanh":
            y = torch.tanh(z)
        else:
            y = z
        w = self.w.to(dtype)
        if self.loss_kind == "mse":
            target = self.target.to(dtype)
            if self.warmup or self.mask is not None:
                per = ((y - target) ** 2).sum(dim=-1)
                loss = (w * per).sum() / (w.sum() * self.O)
            else:
                loss = nn.functional.mse_loss(y, target)
        else:
            idx = self.target.to(torch.int64)
            if self.warmup or self.mask is not None:
                nll = nn.functional.cross_entropy(z.reshape(T * B, O), idx.reshape(T * B),
                                                  reduction="none").reshape(T, B)
                loss = (w * nll).sum() / w.sum()
            else:
                loss = nn.functional.cross_entropy(z.reshape(T * B, O), idx.reshape(T * B))
        return loss, y, hT, cT

    def gradients(self, dtype):
        rnn, head = self.modules(dtype)
        x = self.x.to(dtype).requires_grad_(True)
        loss, y, hT, cT = self.loss(rnn, head, dtype, x)
        loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in self.named_params(rnn, head)}
        grads["x"] = x.grad.detach().clone()
        return loss.detach(), y.detach(), hT.detach(), None if cT is None else cT.detach(), grads

    def optimised(self, dtype, make_opt):
        rnn, head = self.modules(dtype)
        params = self.named_params(rnn, head)
        opt = make_opt([p for _, p in params])
        for _ in range(STEPS):
            opt.zero_grad()
            loss, _, _, _ = self.loss(rnn, head, dtype)
            loss.backward()
            opt.step()
        return {n: p.detach().clone() for n, p in params}

    def clipped(self, dtype):
        rnn, head = self.modules(dtype)
        params = self.named_params(rnn, head)
        loss, _, _, _ = self.loss(rnn, head, dtype)
        loss.backward()
        total = torch.nn.utils.clip_grad_norm_([p for _, p in params], CLIP)
        return {n: p.grad.detach().clone() for n, p in params}, float(total)


def f32(t):
    return t.detach().to(torch.float32).numpy()


def rel_err(a, ref):
    a, ref = a.to(torch.float64), ref.to(torch.float64)
    n = float(torch.linalg.vector_norm(ref))
    return float(torch.linalg.vector_norm(a - ref)) / n if n > 0 else float(torch.linalg.vector_norm(a))


def generate_model(gdir, index, spec, log, stats):
    name = spec_name(*spec)
    p = Problem(spec, SEED_BASE + index)
    gstrnn.export(
        p.rnn, p.head, os.path.join(gdir, name + ".safetensors"),
        norm_mean=p.mean, norm_std=p.std, head_activation=p.act)

    loss, y, hT, cT, grads = p.gradients(torch.float64)
    sgd = p.optimised(torch.float64, lambda ps: torch.optim.SGD(ps, **SGD))
    adam = p.optimised(torch.float64, lambda ps: torch.optim.Adam(ps, **ADAM))
    clipped, total = p.clipped(torch.float64)
    stats.setdefault("clipped", []).append(total > CLIP)

    # yardstick: PyTorch's own float32 gradients against the float64 reference
    loss32, _, _, _, grads32 = p.gradients(torch.float32)
    worst = max(rel_err(grads32[n], grads[n]) for n in grads)
    stats.setdefault(p.cell, []).append((worst, name))
    if abs(float(loss32) - float(loss)) > 1e-5 * abs(float(loss)):
        log(f"{name}: float32 loss {float(loss32)} vs float64 {float(loss)}")

    t = {"x": f32(p.x), "target": f32(p.target), "y": f32(y),
         "loss": np.array([float(loss)], np.float32)}
    if p.mask is not None:
        t["mask"] = f32(p.mask)
    if not p.bidir:
        t["h0"], t["hT"] = f32(p.h0), f32(hT)
        if p.cell == "lstm":
            t["c0"], t["cT"] = f32(p.c0), f32(cT)
    for n, g in grads.items():
        t["grad." + n] = f32(g)
    for n in sgd:
        t["sgd." + n] = f32(sgd[n])
        t["adam." + n] = f32(adam[n])
        t["clip." + n] = f32(clipped[n])
    meta = {"loss": p.loss_kind, "warmup": str(p.warmup), "clip_total_norm": repr(total)}
    gstrnn.write_safetensors(os.path.join(gdir, name + ".expected.safetensors"), t, meta)
    return name


# ---- the layers around the stack, skip, initial state, ESR, pre-emphasis

SEED_EXTRAS = 7000
ESR_EPS = 1e-8
ACTS = {
    "none": lambda v: v, "tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
    "elu": nn.functional.elu, "softmax": lambda v: torch.softmax(v, dim=-1),
}

# name: (L, bidir, I, pre, post, head outputs (0: none), head activation,
#        h0, skip, norm, loss, pre-emphasis, warmup, mask)
EXTRAS = {
    "pre-tanh-relu": (1, False, 3, [(4, "tanh"), (6, "relu")], [], 4, "none",
                      False, 0, True, "mse", 0.0, 0, False),
    "post-elu-sigmoid": (2, True, 3, [], [(6, "elu"), (5, "sigmoid")], 4, "softmax",
                         False, 0, False, "mse", 0.0, 0, False),
    "post-softmax-nohead": (1, False, 2, [(3, "none")], [(5, "softmax"), (4, "sigmoid")],
                            0, "none", True, 0, False, "mse", 0.0, 0, False),
    "skip1-esr": (1, False, 3, [], [], 4, "tanh", True, 1, False, "esr", 0.0, 0, False),
    "skipO-esr-mask": (1, False, 3, [], [(5, "relu")], 3, "none", False, 3, True,
                       "esr", 0.0, 2, True),
    "all-esr-pe": (2, False, 1, [(4, "elu")], [(5, "tanh")], 1, "none", True, 1, True,
                   "esr", 0.95, 0, False),
    "mse-pe-mask": (1, False, 3, [], [], 4, "none", False, 0, False, "mse", 0.9, 0, True),
    "bi-esr-pe-warmup": (1, True, 2, [(3, "sigmoid")], [], 2, "none", True, 0, False,
                         "esr", 0.95, 2, False),
}


class ExtraProblem:
    """One model with the optional layers, a batch and its loss."""

    def __init__(self, cell, variant, seed):
        (self.L, self.bidir, self.I, pre, post, self.O_head, self.head_act, h0,
         self.skip, norm, self.loss_kind, self.a, self.warmup, use_mask) = EXTRAS[variant]
        self.cell = cell
        self.D = 2 if self.bidir else 1
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.pre = []
        width = self.I
        for size, act in pre:
            self.pre.append((nn.Linear(width, size), act))
            width = size
        kw = dict(input_size=width, hidden_size=H, num_layers=self.L, bidirectional=self.bidir)
        self.rnn = (nn.LSTM(**kw) if cell == "lstm" else nn.GRU(**kw) if cell == "gru"
                    else nn.RNN(nonlinearity=cell[4:], **kw))
        self.post = []
        width = self.D * H
        for size, act in post:
            self.post.append((nn.Linear(width, size), act))
            width = size
        self.head = nn.Linear(width, self.O_head) if self.O_head else None
        self.O = self.O_head or width
        n_state = self.L * self.D
        self.h0 = torch.randn(n_state, H, generator=g) * 0.5 if h0 else None
        self.c0 = torch.randn(n_state, H, generator=g) * 0.5 if h0 and cell == "lstm" else None
        self.mean = (torch.rand(self.I, generator=g) * 2 - 1) if norm else None
        self.std = (torch.rand(self.I, generator=g) * 1.5 + 0.5) if norm else None
        self.x = torch.randn(T, B, self.I, generator=g)
        self.target = torch.randn(T, B, self.O, generator=g)
        w = torch.ones(T, B)
        w[:self.warmup] = 0
        self.mask = None
        if use_mask:
            self.mask = (torch.rand(T, B, generator=g) < 0.7).to(torch.float32)
            self.mask[T - 1, 0] = self.mask[T - 2, 0] = 1      # never all zero
            w = w * self.mask
        if self.a:
            prev = torch.ones(T, B) if self.mask is None else self.mask
            w[1:] = w[1:] * (prev[:-1] > 0).to(torch.float32)
            w[0] = 0
        self.w = w

    def modules(self, dtype):
        conv = lambda m: copy.deepcopy(m).to(dtype)
        return ([(conv(l), a) for l, a in self.pre], conv(self.rnn),
                [(conv(l), a) for l, a in self.post],
                conv(self.head) if self.head is not None else None)

    @staticmethod
    def named_params(mods):
        pre, rnn, post, head = mods
        out = [("rnn." + n, p) for n, p in rnn.named_parameters()]
        if head is not None:
            out += [("head." + n, p) for n, p in head.named_parameters()]
        for k, (l, _) in enumerate(pre):
            out += [(f"pre.{k}.{n}", p) for n, p in l.named_parameters()]
        for k, (l, _) in enumerate(post):
            out += [(f"post.{k}.{n}", p) for n, p in l.named_parameters()]
        return out

    def loss(self, mods, dtype, x=None):
        pre, rnn, post, head = mods
        x = self.x.to(dtype) if x is None else x
        z = x
        if self.mean is not None:
            z = (z - self.mean.to(dtype)) / self.std.to(dtype)
        for l, a in pre:
            z = ACTS[a](l(z))
        n_state = self.L * self.D
        h0 = (self.h0.to(dtype)[:, None, :].expand(n_state, B, H).contiguous()
              if self.h0 is not None else torch.zeros(n_state, B, H, dtype=dtype))
        if self.cell == "lstm":
            c0 = (self.c0.to(dtype)[:, None, :].expand(n_state, B, H).contiguous()
                  if self.c0 is not None else torch.zeros(n_state, B, H, dtype=dtype))
            z, _ = rnn(z, (h0, c0))
        else:
            z, _ = rnn(z, h0)
        for l, a in post:
            z = ACTS[a](l(z))
        if head is not None:
            z = ACTS[self.head_act](head(z))
        y = z + x[..., :self.skip] if self.skip else z
        tgt = self.target.to(dtype)
        ey, et = y, tgt
        if self.a:
            ey = torch.cat([y[:1], y[1:] - self.a * y[:-1]])
            et = torch.cat([tgt[:1], tgt[1:] - self.a * tgt[:-1]])
        w = self.w.to(dtype)[..., None]
        num = (w * (ey - et) ** 2).sum()
        if self.loss_kind == "esr":
            den = (w * et ** 2).sum() + ESR_EPS * w.sum() * self.O
        else:
            den = w.sum() * self.O
        return num / den, y

    def to_model(self):
        sd = {k: v.detach().numpy().astype(np.float64) for k, v in self.rnn.state_dict().items()}
        m = Model(self.cell, self.I, H, self.L, self.bidir, sd)
        m.pre = [Dense(l.weight.detach().numpy(), l.bias.detach().numpy(), a) for l, a in self.pre]
        m.post = [Dense(l.weight.detach().numpy(), l.bias.detach().numpy(), a) for l, a in self.post]
        if self.head is not None:
            m.head = Dense(self.head.weight.detach().numpy(), self.head.bias.detach().numpy())
            m.head_activation = self.head_act
        if self.h0 is not None:
            m.h0 = self.h0.numpy().astype(np.float64)
        if self.c0 is not None:
            m.c0 = self.c0.numpy().astype(np.float64)
        if self.mean is not None:
            m.input_mean = self.mean.numpy().astype(np.float64)
            m.input_std = self.std.numpy().astype(np.float64)
        m.skip = self.skip
        return m


def generate_extra(gdir, index, cell, variant, log):
    name = f"{cell}_x_{variant}"
    p = ExtraProblem(cell, variant, SEED_EXTRAS + index)
    p.to_model().to_safetensors(os.path.join(gdir, name + ".safetensors"))
    mods = p.modules(torch.float64)
    x = p.x.to(torch.float64).requires_grad_(True)
    loss, y = p.loss(mods, torch.float64, x)
    loss.backward()
    params = p.named_params(mods)
    t = {"x": f32(p.x), "target": f32(p.target), "y": f32(y), "loss": np.array([float(loss)], np.float32),
         "grad.x": f32(x.grad)}
    if p.mask is not None:
        t["mask"] = f32(p.mask)
    for n, prm in params:
        t["grad." + n] = f32(prm.grad)
    mods = p.modules(torch.float64)
    params = p.named_params(mods)
    opt = torch.optim.Adam([prm for _, prm in params], **ADAM)
    for _ in range(STEPS):
        opt.zero_grad()
        p.loss(mods, torch.float64)[0].backward()
        opt.step()
    for n, prm in params:
        t["adam." + n] = f32(prm)
    meta = {"loss": p.loss_kind, "warmup": str(p.warmup), "pre_emphasis": repr(p.a)}
    gstrnn.write_safetensors(os.path.join(gdir, name + ".expected.safetensors"), t, meta)
    return name


def optim_fixture(gdir):
    """The optimizers alone, float32 as torch.optim runs them.

    One parameter tensor p0 [N] and gradients g1, g2 [N] (a few exact zeros
    and tiny values among them).  Stored results, each after the steps named:
      sgd          SGD(lr=0.1, momentum=0.9, weight_decay=0.01), g1 then g2
      sgd_plain    SGD(lr=0.05), g1 then g2
      sgd_3steps   SGD(lr=0.1, momentum=0.5), g1, g2, g1
      adam         Adam(lr=0.01, weight_decay=0.01), g1 then g2
      adam_plain   Adam(lr=0.001), g1, g2, g1
      clip         g1 after clip_grad_norm_(max_norm=0.5); metadata clip_total_norm
      clip_none    g1 after clip_grad_norm_(max_norm=1000) (unchanged)
    """
    g = torch.Generator().manual_seed(SEED_BASE - 1)
    N = 777
    p0 = torch.randn(N, generator=g)
    g1 = torch.randn(N, generator=g) * 0.1
    g2 = torch.randn(N, generator=g) * 0.1
    g1[::50] = 0
    g2[::70] = 0
    g1[7::50] *= 1e-6
    runs = {
        "sgd": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01), (g1, g2)),
        "sgd_plain": (torch.optim.SGD, dict(lr=0.05), (g1, g2)),
        "sgd_3steps": (torch.optim.SGD, dict(lr=0.1, momentum=0.5), (g1, g2, g1)),
        "adam": (torch.optim.Adam, dict(lr=0.01, weight_decay=0.01), (g1, g2)),
        "adam_plain": (torch.optim.Adam, dict(lr=0.001), (g1, g2, g1)),
    }
    t = {"p0": p0.numpy(), "g1": g1.numpy(), "g2": g2.numpy()}
    for key, (cls, kw, gs) in runs.items():
        p = nn.Parameter(p0.clone())
        opt = cls([p], **kw)
        for gi in gs:
            p.grad = gi.clone()
            opt.step()
        t[key] = p.detach().numpy().copy()
    p = nn.Parameter(p0.clone())
    p.grad = g1.clone()
    total = torch.nn.utils.clip_grad_norm_([p], 0.5)
    t["clip"] = p.grad.numpy().copy()
    p.grad = g1.clone()
    torch.nn.utils.clip_grad_norm_([p], 1000.0)
    t["clip_none"] = p.grad.numpy().copy()
    gstrnn.write_safetensors(os.path.join(gdir, "optim.safetensors"), t,
                                    {"clip_total_norm": repr(float(total))})


def generate(stage, log):
    gdir = os.path.join(stage, "grad")
    os.mkdir(gdir)
    stats = {}
    names = [generate_model(gdir, i, spec, log, stats) for i, spec in enumerate(model_specs())]
    optim_fixture(gdir)
    with open(os.path.join(gdir, "manifest.txt"), "w") as f:
        f.write("".join(n + "\n" for n in sorted(names)))
    extras = []
    for cell in CELLS:
        for variant in EXTRAS:
            extras.append(generate_extra(gdir, len(extras), cell, variant, log))
    with open(os.path.join(gdir, "extras.txt"), "w") as f:
        f.write("".join(n + "\n" for n in sorted(extras)))
    os.chmod(gdir, 0o755)
    for entry in os.listdir(gdir):
        os.chmod(os.path.join(gdir, entry), 0o644)
    log(f"{len(names)} models and {len(extras)} extra models written; clip_grad_norm_({CLIP}) clips "
        f"{sum(stats['clipped'])} of them")
    for cell in CELLS:
        worst, name = max(stats[cell])
        log(f"  {cell:8s} torch float32 vs float64 gradients: worst relative error {worst:.2e} ({name})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", default=os.path.join(os.path.dirname(HERE), "fixtures", "grad.tar.xz"),
                    help="tarball to write (default: tests/fixtures/grad.tar.xz)")
    ap.add_argument("--keep", metavar="DIR", help="also keep the unpacked fixtures in DIR/grad")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    start = time.monotonic()
    build_tarball("grad", args.output, lambda stage: generate(stage, log), args.keep)
    log(f"wrote {args.output} ({os.path.getsize(args.output)} bytes) "
        f"in {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
