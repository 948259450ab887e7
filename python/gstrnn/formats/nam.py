# SPDX-License-Identifier: LGPL-2.1-or-later
"""Neural Amp Modeler .nam files (architecture LSTM).

A .nam file is JSON: "version", "architecture", "config", a flat "weights"
list, optional "sample_rate" and "metadata".  For "LSTM" the config is
{input_size, hidden_size, num_layers} (and, in newer files, in_channels /
out_channels, default 1), and the weights are, per layer k (input width
I_k = input_size for k = 0, else hidden_size):

  W   [4H, I_k + H] row-major: [W_ih | W_hh], rows i, f, g, o
  b   [4H]          b_ih + b_hh
  h   [H]           the state the layer starts from
  c   [H]

then the head weight [O, H] row-major and its bias [O].  Per step the
player computes, per layer, ifgo = W [x; h] + b, c' = σ(f) c + σ(i) tanh(g),
h' = σ(o) tanh(c'), and y = head_weight h_last + head_bias (the order of
neural-amp-modeler's LSTM._export_weights and NeuralAmpModelerCore's
LSTMCell).  gst-rnn keeps the starting state as rnn.h0 / rnn.c0 and puts
the summed bias in bias_ih (bias_hh = 0), as NAM's own import_weights does.

The player also runs half a second of silence through a freshly loaded model
("prewarm"); that is a player's choice, not part of the file, and neither
reference() nor the Model does it.  Every other architecture (WaveNet,
ConvNet, Linear, ...) is refused by name.
"""

import os

import numpy as np

from gstrnn.model import Dense, Model, ModelError
from gstrnn.formats import _common


def _parse(doc, name):
    """Check the document; return (config, per-layer tensors, head weight, head bias)."""
    if not isinstance(doc, dict) or "architecture" not in doc:
        raise ModelError(f"{name}: no 'architecture': not a Neural Amp Modeler file")
    arch = doc["architecture"]
    if arch != "LSTM":
        raise ModelError(f"{name}: architecture '{arch}' is not a recurrent network; "
                         "only NAM's LSTM architecture has a gst-rnn form")
    cfg = doc.get("config")
    if not isinstance(cfg, dict):
        raise ModelError(f"{name}: 'config' is missing or not an object")
    c = {}
    for key in ("input_size", "hidden_size", "num_layers"):
        if key not in cfg:
            raise ModelError(f"{name}: config.{key} is missing")
        c[key] = _common.integer(f"{name}: config.{key}", cfg[key], 1)
    c["in_channels"] = _common.integer(f"{name}: config.in_channels",
                                       cfg.get("in_channels", c["input_size"]), 1)
    c["out_channels"] = _common.integer(f"{name}: config.out_channels",
                                        cfg.get("out_channels", 1), 1)
    if c["in_channels"] != c["input_size"]:
        raise ModelError(f"{name}: config.in_channels ({c['in_channels']}) differs from "
                         f"config.input_size ({c['input_size']})")
    for key in cfg:
        if key not in ("input_size", "hidden_size", "num_layers", "in_channels",
                       "out_channels"):
            raise ModelError(f"{name}: config.{key} is not a setting of NAM's LSTM")
    weights = doc.get("weights")
    if not isinstance(weights, list):
        raise ModelError(f"{name}: 'weights' is missing or not a list")
    w = _common.array(f"{name}: weights", weights, ndim=1)
    I, H, L, O = c["input_size"], c["hidden_size"], c["num_layers"], c["out_channels"]
    need = sum(4 * H * ((I if k == 0 else H) + H) + 4 * H + 2 * H for k in range(L)) + O * H + O
    if len(w) != need:
        raise ModelError(f"{name}: 'weights' holds {len(w)} numbers, a {L}-layer LSTM "
                         f"of input size {I}, hidden size {H} and {O} output(s) has {need}")
    layers, pos = [], 0

    def take(n):
        nonlocal pos
        pos += n
        return w[pos - n:pos]

    for k in range(L):
        width = I if k == 0 else H
        W = take(4 * H * (width + H)).reshape(4 * H, width + H)
        b = take(4 * H)
        h = take(H)
        cc = take(H)
        layers.append((W, b, h, cc))
    head_w = take(O * H).reshape(O, H)
    head_b = take(O)
    rate = doc.get("sample_rate")
    if rate is not None:
        rate = _common.integer(f"{name}: sample_rate", rate, 1)
    c["sample_rate"] = rate
    return c, layers, head_w, head_b


def read(path):
    """The .nam file at path as a gstrnn Model (LSTM with its initial state)."""
    doc = _common.load_json(path)
    c, layers, head_w, head_b = _parse(doc, path)
    I, H, L = c["input_size"], c["hidden_size"], c["num_layers"]
    m = Model("lstm", I, H, L)
    h0, c0 = [], []
    for k, (W, b, h, cc) in enumerate(layers):
        width = I if k == 0 else H
        m.rnn[f"weight_ih_l{k}"] = W[:, :width]
        m.rnn[f"weight_hh_l{k}"] = W[:, width:]
        m.rnn[f"bias_ih_l{k}"] = b
        m.rnn[f"bias_hh_l{k}"] = np.zeros(4 * H)
        h0.append(h)
        c0.append(cc)
    m.h0, m.c0 = np.array(h0), np.array(c0)
    m.head = Dense(head_w, head_b)
    m.sample_rate = c["sample_rate"]
    meta = doc.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("name"), str) and meta["name"]:
        m.description = meta["name"]
    m.source_format = "nam"
    m.source_file = os.path.basename(path)
    return m.validate()


def reference(path_or_parsed, x):
    """NAM's LSTM player on x [T][input_size] from the stored state, float64 -> [T][O]."""
    doc, name = _common.parsed(path_or_parsed)
    c, layers, head_w, head_b = _parse(doc, name)
    x = _common.stream(x, c["input_size"])
    H = c["hidden_size"]
    # per layer: the [x; h] vector and the cell state, as LSTMCell keeps them
    xh = []
    cell = []
    for k, (W, b, h, cc) in enumerate(layers):
        width = W.shape[1] - H
        v = np.zeros(width + H)
        v[width:] = h
        xh.append(v)
        cell.append(cc.copy())
    y = np.empty((len(x), head_w.shape[0]))
    for t, sample in enumerate(x):
        inp = sample
        for k, (W, b, _, _) in enumerate(layers):
            width = W.shape[1] - H
            xh[k][:width] = inp
            ifgo = W @ xh[k] + b
            cell[k] = (_common.sigmoid(ifgo[H:2 * H]) * cell[k]
                       + _common.sigmoid(ifgo[:H]) * np.tanh(ifgo[2 * H:3 * H]))
            xh[k][width:] = _common.sigmoid(ifgo[3 * H:]) * np.tanh(cell[k])
            inp = xh[k][width:]
        y[t] = head_w @ inp + head_b
    return y
