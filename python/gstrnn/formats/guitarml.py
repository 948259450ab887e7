# SPDX-License-Identifier: LGPL-2.1-or-later
"""Automated-GuitarAmpModelling / GuitarML SimpleRNN JSON.

The file the SimpleRNN of Wright et al. writes (CoreAudioML networks.py,
save_model), which GuitarML's plugins (Proteus, NeuralPi...) load:

  {"model_data": {"model": "SimpleRNN", "input_size": I, "output_size": O,
                  "unit_type": "LSTM" | "GRU" | "RNN", "num_layers": L,
                  "hidden_size": H, "skip": N, "bias_fl": true | false},
   "state_dict": {"rec.weight_ih_l0": [[...]], ..., "lin.weight": [[...]],
                  "lin.bias": [...]}}

Its forward: `rec` is torch.nn.<unit_type>(I, H, L) (RNN: tanh), `lin` is
nn.Linear(H, O, bias=bias_fl), and with skip = N > 0 the first N input
channels are added to lin's output (y = lin(rec(x)) + x[..., 0:N], by
broadcasting: N = O or N = 1).  The state starts at zero.
"""

import os

import numpy as np

from gstrnn.model import Dense, Model, ModelError
from gstrnn.formats import _common

UNITS = {"LSTM": ("lstm", 4), "GRU": ("gru", 3), "RNN": ("rnn_tanh", 1)}


def _parse(doc, name):
    """Check the document; return (config dict, tensors dict)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("model_data"), dict):
        raise ModelError(f"{name}: no 'model_data' object: not a SimpleRNN JSON file")
    md = doc["model_data"]
    model = md.get("model", "SimpleRNN")
    if model != "SimpleRNN":
        raise ModelError(f"{name}: model_data.model is '{model}'; only SimpleRNN "
                         "(a recurrent unit and a linear layer) is read")
    unit = md.get("unit_type")
    if unit not in UNITS:
        raise ModelError(f"{name}: model_data.unit_type is {unit!r}; "
                         f"expected one of {', '.join(UNITS)}")
    cfg = {"unit": unit}
    for key, minimum in (("input_size", 1), ("output_size", 1), ("num_layers", 1),
                         ("hidden_size", 1)):
        if key not in md:
            raise ModelError(f"{name}: model_data.{key} is missing")
        cfg[key] = _common.integer(f"{name}: model_data.{key}", md[key], minimum)
    skip = md.get("skip", 0)
    cfg["skip"] = 1 if skip is True else (0 if skip is False else
                                          _common.integer(f"{name}: model_data.skip", skip, 0))
    bias = md.get("bias_fl", True)
    if not isinstance(bias, bool):
        raise ModelError(f"{name}: model_data.bias_fl is {bias!r}, expected true or false")
    cfg["bias_fl"] = bias
    if cfg["skip"] not in (0, 1, cfg["output_size"]) or cfg["skip"] > cfg["input_size"]:
        raise ModelError(f"{name}: model_data.skip is {cfg['skip']}: the skip adds the "
                         f"first skip input channels to the {cfg['output_size']} outputs, "
                         "so it is 0, 1 or the output size, at most the input size")
    sd = doc.get("state_dict")
    if not isinstance(sd, dict):
        raise ModelError(f"{name}: no 'state_dict' object (saved with save_state off?)")
    I, O, L, H = cfg["input_size"], cfg["output_size"], cfg["num_layers"], cfg["hidden_size"]
    G = UNITS[unit][1]
    shapes = {}
    for k in range(L):
        shapes[f"rec.weight_ih_l{k}"] = (G * H, I if k == 0 else H)
        shapes[f"rec.weight_hh_l{k}"] = (G * H, H)
        shapes[f"rec.bias_ih_l{k}"] = (G * H,)
        shapes[f"rec.bias_hh_l{k}"] = (G * H,)
    shapes["lin.weight"] = (O, H)
    if bias:
        shapes["lin.bias"] = (O,)
    for key in sd:
        if key not in shapes:
            raise ModelError(f"{name}: state_dict key '{key}' is not a tensor of a "
                             f"{L}-layer {unit} SimpleRNN (bias_fl={str(bias).lower()})")
    tensors = {}
    for key, shape in shapes.items():
        if key not in sd:
            raise ModelError(f"{name}: state_dict key '{key}' is missing")
        tensors[key] = _common.array(f"{name}: state_dict '{key}'", sd[key], shape)
    return cfg, tensors


def read(path):
    """The SimpleRNN JSON file at path as a gstrnn Model."""
    doc = _common.load_json(path)
    cfg, t = _parse(doc, path)
    cell = UNITS[cfg["unit"]][0]
    m = Model(cell, cfg["input_size"], cfg["hidden_size"], cfg["num_layers"])
    for key, value in t.items():
        if key.startswith("rec."):
            m.rnn[key[4:]] = value
    m.head = Dense(t["lin.weight"], t.get("lin.bias"))
    m.skip = cfg["skip"]
    m.source_format = "guitarml-json"
    m.source_file = os.path.basename(path)
    return m.validate()


def reference(path_or_parsed, x):
    """SimpleRNN's forward on x [T][input_size] from zero state, float64 -> [T][O]."""
    doc, name = _common.parsed(path_or_parsed)
    cfg, t = _parse(doc, name)
    x = _common.stream(x, cfg["input_size"])
    H, unit = cfg["hidden_size"], cfg["unit"]
    seq = x
    for k in range(cfg["num_layers"]):
        W_ih, W_hh = t[f"rec.weight_ih_l{k}"], t[f"rec.weight_hh_l{k}"]
        b_ih, b_hh = t[f"rec.bias_ih_l{k}"], t[f"rec.bias_hh_l{k}"]
        h, c = np.zeros(H), np.zeros(H)
        out = np.empty((len(seq), H))
        for step, v in enumerate(seq):
            if unit == "LSTM":
                # torch.nn.LSTM: rows i, f, g, o
                a = W_ih @ v + b_ih + W_hh @ h + b_hh
                gi, gf, gg, go = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
                c = _common.sigmoid(gf) * c + _common.sigmoid(gi) * np.tanh(gg)
                h = _common.sigmoid(go) * np.tanh(c)
            elif unit == "GRU":
                # torch.nn.GRU: rows r, z, n; r gates W_hn h + b_hn
                ai, ah = W_ih @ v + b_ih, W_hh @ h + b_hh
                r = _common.sigmoid(ai[:H] + ah[:H])
                z = _common.sigmoid(ai[H:2 * H] + ah[H:2 * H])
                n = np.tanh(ai[2 * H:] + r * ah[2 * H:])
                h = (1.0 - z) * n + z * h
            else:
                h = np.tanh(W_ih @ v + b_ih + W_hh @ h + b_hh)
            out[step] = h
        seq = out
    y = seq @ t["lin.weight"].T
    if cfg["bias_fl"]:
        y = y + t["lin.bias"]
    if cfg["skip"]:
        y = y + x[:, 0:cfg["skip"]]
    return y
