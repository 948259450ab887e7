# SPDX-License-Identifier: LGPL-2.1-or-later
"""RTNeural JSON: the Keras export and PyTorch state_dict JSON.

Keras export (RTNeural's python/model_utils.py save_model, read by
RTNeural/model_loader.h parseJson):

  {"in_shape": [null, null, I],
   "layers": [{"type": ..., "activation": ..., "shape": [..., N], "weights": [...]}]}

  dense, time-distributed-dense  weights [kernel [in][out], bias [out]]
                                  (bias optional), then "activation"
  activation                      "activation": tanh relu sigmoid softmax elu
  batchnorm                       [gamma, beta, running mean, running variance]
                                  or [mean, variance], and "epsilon"
  lstm                            [kernel [in][4H], recurrent [H][4H], bias [4H]],
                                  Keras gate order i, f, c, o
  gru                             [kernel [in][3H], recurrent [H][3H],
                                  bias [2][3H]] (reset_after: input bias,
                                  recurrent bias), Keras gate order z, r, h

  RTNeural runs the layers in order, per step, from zero state; its GRU is
  h' = (1 - z) ⊙ c + z ⊙ h with c = tanh(W_h x + b_h0 + r ⊙ (U_h h + b_h1)),
  its LSTM h' = o ⊙ tanh(f ⊙ c + i ⊙ tanh(..)); the "activation" of an lstm or
  gru layer is not applied (they always use tanh).

PyTorch state_dict JSON (json.dump of a module's state_dict, read by
RTNeural/torch_helpers.h): keys "<module>.weight_ih_l<k>" ... for
nn.LSTM / nn.GRU, "<module>.weight" / "<module>.bias" for nn.Linear, in the
module order of the state_dict.  The file holds no activations: the C++ code
that loads it decides them, so read()/reference() take them as arguments
(default none).  torch_helpers transposes the weights into RTNeural's
layout, swaps the GRU's r and z blocks and sums the LSTM's two biases.

In gst-rnn's form: dense layers before the first recurrent layer become pre
layers, the recurrent layers one stack (same cell and width, chained), the
dense layers after it post layers, the last one the head when its activation
is a head activation (none, softmax, sigmoid, tanh).  An activation layer
that follows a dense layer without one becomes that layer's activation;
anywhere else it becomes an identity dense layer with that activation.
A batchnorm layer (inference: a per-channel scale and offset) becomes a
dense layer with a diagonal weight.  Conv1D, Conv2D, PReLU, BatchNorm2D and
unknown layers are refused by name.
"""

import os
import re

import numpy as np

from gstrnn.model import HEAD_ACTIVATIONS, Dense, Model, ModelError
from gstrnn.formats import _common

ACTIVATIONS = ("tanh", "relu", "sigmoid", "softmax", "elu")


# -- the file, in RTNeural's own layout -------------------------------------
#
# Both kinds parse into the list of layers RTNeural's Model holds, each a
# dict in RTNeural's layout (dense: W [out][in] as Dense::setWeights takes it;
# lstm / gru: the Keras kernel [in][G*H], recurrent [H][G*H] and bias as
# setWVals / setUVals / setBVals take them).


def _activation_name(where, value):
    if value is None or value == "" or value == "linear":
        return None
    if value not in ACTIVATIONS:
        raise ModelError(f"{where}: activation {value!r} is not one RTNeural has "
                         f"({', '.join(ACTIVATIONS)})")
    return value


def _parse_keras(doc, name):
    shape = doc.get("in_shape")
    layers = doc.get("layers")
    if not isinstance(shape, list) or not shape or not isinstance(layers, list):
        raise ModelError(f"{name}: 'in_shape' and 'layers' must be arrays")
    if len(shape) == 4:
        raise ModelError(f"{name}: in_shape {shape} is a 2-D (Conv2D) input; "
                         "gst-rnn models read one vector per step")
    width = _common.integer(f"{name}: in_shape[-1]", shape[-1], 1)
    in_size = width
    out = []
    for n, layer in enumerate(layers):
        if not isinstance(layer, dict):
            raise ModelError(f"{name}: layers[{n}] is not an object")
        kind = layer.get("type")
        where = f"{name}: layers[{n}] ({kind})"
        if kind not in ("dense", "time-distributed-dense", "activation", "batchnorm",
                        "lstm", "gru"):
            raise ModelError(f"{where}: layer type {kind!r} has no gst-rnn form "
                             "(dense, time-distributed-dense, activation, batchnorm, "
                             "lstm, gru)")
        lshape = layer.get("shape")
        if not isinstance(lshape, list) or not lshape:
            raise ModelError(f"{where}: 'shape' is missing")
        if len(lshape) == 4:
            raise ModelError(f"{where}: a 4-D shape (Conv2D data) has no gst-rnn form")
        dims = _common.integer(f"{where}: shape[-1]", lshape[-1], 1)
        weights = layer.get("weights", [])
        if not isinstance(weights, list):
            raise ModelError(f"{where}: 'weights' is not a list")
        act = _activation_name(where, layer.get("activation"))
        if kind == "activation":
            if act is None:
                continue
            if dims != width:
                raise ModelError(f"{where}: shape says {dims} values, the layer "
                                 f"before gives {width}")
            out.append({"type": "activation", "activation": act, "where": where})
            continue
        if kind == "batchnorm":
            # BatchNorm1DLayer: out = gamma / sqrt(var + eps) * (x - mean) + beta
            if act is not None:
                raise ModelError(f"{where}: activation {act!r}: RTNeural applies none "
                                 "after a batchnorm layer")
            if dims != width or len(weights) not in (2, 4):
                raise ModelError(f"{where}: expected {width} values and weights "
                                 "[gamma, beta, mean, variance] or [mean, variance]")
            v = [_common.array(f"{where} weights[{i}]", w, (dims,))
                 for i, w in enumerate(weights)]
            gamma, beta = (v[0], v[1]) if len(v) == 4 else (np.ones(dims), np.zeros(dims))
            mean, var = v[-2], v[-1]
            eps = layer.get("epsilon")
            if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
                raise ModelError(f"{where}: 'epsilon' is {eps!r}, expected a number >= 0")
            if np.any(var + eps <= 0):
                raise ModelError(f"{where}: variance + epsilon <= 0")
            out.append({"type": "batchnorm", "mul": gamma / np.sqrt(var + eps),
                        "mean": mean, "beta": beta, "where": where})
            continue
        if kind in ("dense", "time-distributed-dense"):
            if len(weights) not in (1, 2):
                raise ModelError(f"{where}: expected weights [kernel, bias], "
                                 f"got {len(weights)} arrays")
            kernel = _common.array(f"{where} kernel", weights[0], (width, dims))
            bias = (_common.array(f"{where} bias", weights[1], (dims,))
                    if len(weights) == 2 else np.zeros(dims))
            out.append({"type": "dense", "W": kernel.T.copy(), "b": bias, "where": where})
            if act is not None:
                out.append({"type": "activation", "activation": act, "where": where})
        else:
            G = 4 if kind == "lstm" else 3
            if act not in (None, "tanh"):
                raise ModelError(f"{where}: activation {act!r}: RTNeural's {kind} always "
                                 "uses tanh, so the file does not hold the trained network")
            if len(weights) != 3:
                raise ModelError(f"{where}: expected weights [kernel, recurrent, bias], "
                                 f"got {len(weights)} arrays")
            H = dims
            kernel = _common.array(f"{where} kernel", weights[0], (width, G * H))
            rec = _common.array(f"{where} recurrent kernel", weights[1], (H, G * H))
            bshape = (G * H,) if kind == "lstm" else (2, G * H)
            try:
                bias = _common.array(f"{where} bias", weights[2], bshape)
            except ModelError:
                if kind == "gru":
                    raise ModelError(f"{where}: bias is not [2][{G * H}]: RTNeural reads "
                                     "Keras GRUs made with reset_after=True only") from None
                raise
            out.append({"type": kind, "H": H, "kernel": kernel, "recurrent": rec,
                        "bias": bias, "where": where})
        width = dims
    return in_size, out


def _swap_rz(a, H):
    """torch_helpers' swap_rz on the last axis: PyTorch r, z, n <-> Keras z, r, h."""
    a = a.copy()
    first = a[..., :H].copy()
    a[..., :H] = a[..., H:2 * H]
    a[..., H:2 * H] = first
    return a


def _parse_torch(doc, name, pre_activations=None, post_activations=None,
                 head_activation="none"):
    """A state_dict JSON into RTNeural layers, as torch_helpers would load it."""
    modules = {}
    rnn_key = re.compile(r"^(?:(.*)\.)?(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?$")
    for key, value in doc.items():
        m = rnn_key.match(key)
        if m:
            prefix, kind, k, rev = m.group(1) or "", m.group(2), int(m.group(3)), m.group(4)
            if rev:
                raise ModelError(f"{name}: '{key}': RTNeural has no bidirectional layer")
            mod = modules.setdefault(prefix, {"kind": "rnn", "t": {}})
            if mod["kind"] != "rnn":
                raise ModelError(f"{name}: '{key}' mixes a recurrent tensor into "
                                 f"module '{prefix}'")
            mod["t"][(kind, k)] = (key, value)
        elif key in ("weight", "bias") or key.endswith(".weight") or key.endswith(".bias"):
            prefix, kind = key.rsplit(".", 1) if "." in key else ("", key)
            mod = modules.setdefault(prefix, {"kind": "linear", "t": {}})
            if mod["kind"] != "linear":
                raise ModelError(f"{name}: '{key}' mixes a Linear tensor into "
                                 f"module '{prefix}'")
            mod["t"][kind] = (key, value)
        else:
            raise ModelError(f"{name}: key '{key}' is not a tensor of an nn.Linear, "
                             "nn.LSTM or nn.GRU; it has no gst-rnn form")
    if not modules:
        raise ModelError(f"{name}: no tensors")
    seq = []
    for prefix, mod in modules.items():
        if mod["kind"] == "linear":
            if "weight" not in mod["t"]:
                raise ModelError(f"{name}: '{mod['t']['bias'][0]}' without a weight")
            key, value = mod["t"]["weight"]
            W = _common.array(f"{name}: '{key}'", value)
            if W.ndim != 2:
                raise ModelError(f"{name}: '{key}' has shape {list(W.shape)}: not an "
                                 "nn.Linear weight (Conv1d?); it has no gst-rnn form")
            if "bias" in mod["t"]:
                bkey, bvalue = mod["t"]["bias"]
                b = _common.array(f"{name}: '{bkey}'", bvalue, (W.shape[0],))
            else:
                b = np.zeros(W.shape[0])
            seq.append({"type": "dense", "W": W, "b": b,
                        "where": f"{name}: module '{prefix}' (Linear)"})
            continue
        t = mod["t"]
        L = 1 + max(k for _, k in t)
        for k in range(L):
            if ("weight_ih", k) not in t or ("weight_hh", k) not in t:
                raise ModelError(f"{name}: '{prefix}.weight_ih_l{k}' or "
                                 f"'{prefix}.weight_hh_l{k}' is missing")
            key_hh, v_hh = t[("weight_hh", k)]
            W_hh = _common.array(f"{name}: '{key_hh}'", v_hh, ndim=2)
            H = W_hh.shape[1]
            G = W_hh.shape[0] // H
            if W_hh.shape[0] != G * H or G not in (3, 4):
                raise ModelError(f"{name}: '{key_hh}' has shape {list(W_hh.shape)}: not "
                                 "an LSTM (4H rows) or GRU (3H rows); RTNeural has no "
                                 "plain RNN layer")
            key_ih, v_ih = t[("weight_ih", k)]
            W_ih = _common.array(f"{name}: '{key_ih}'", v_ih, ndim=2)
            if W_ih.shape[0] != G * H:
                raise ModelError(f"{name}: '{key_ih}' has {W_ih.shape[0]} rows, "
                                 f"'{key_hh}' {G * H}")
            biases = []
            for kind in ("bias_ih", "bias_hh"):
                if (kind, k) in t:
                    bkey, bvalue = t[(kind, k)]
                    biases.append(_common.array(f"{name}: '{bkey}'", bvalue, (G * H,)))
                else:
                    biases.append(np.zeros(G * H))
            where = f"{name}: module '{prefix}' ({'LSTM' if G == 4 else 'GRU'}) layer {k}"
            if G == 4:
                seq.append({"type": "lstm", "H": H, "kernel": W_ih.T.copy(),
                            "recurrent": W_hh.T.copy(), "bias": biases[0] + biases[1],
                            "where": where})
            else:
                seq.append({"type": "gru", "H": H, "kernel": _swap_rz(W_ih.T, H),
                            "recurrent": _swap_rz(W_hh.T, H),
                            "bias": _swap_rz(np.array(biases), H), "where": where})
        for key in (v[0] for kk, v in t.items() if kk[1] >= L):
            raise ModelError(f"{name}: '{key}' is beyond the module's layers")
    # the activations the loading code applies, which the file does not hold
    first = next((i for i, s in enumerate(seq) if s["type"] != "dense"), None)
    if first is None:
        raise ModelError(f"{name}: no nn.LSTM or nn.GRU tensors")
    last = max(i for i, s in enumerate(seq) if s["type"] != "dense")
    n_pre, n_after = first, len(seq) - last - 1
    pre_activations = list(pre_activations or ["none"] * n_pre)
    post_all = list(post_activations or ["none"] * max(n_after - 1, 0))
    if n_after:
        post_all.append(head_activation)
    if len(pre_activations) != n_pre:
        raise ModelError(f"{name}: {len(pre_activations)} pre activations given for "
                         f"{n_pre} Linear layer(s) before the recurrent layers")
    if len(post_all) != n_after:
        raise ModelError(f"{name}: {len(post_all) - 1} post activations given for "
                         f"{max(n_after - 1, 0)} Linear layer(s) between the recurrent "
                         "layers and the last Linear")
    if not n_after and head_activation not in (None, "none"):
        raise ModelError(f"{name}: head activation {head_activation!r} given, but no "
                         "Linear follows the recurrent layers")
    out = []
    for i, s in enumerate(seq):
        out.append(s)
        if s["type"] == "dense":
            # a Linear between recurrent modules has none (read() refuses it)
            act = (pre_activations[i] if i < first else
                   post_all[i - last - 1] if i > last else "none")
            if act not in (None, "none"):
                out.append({"type": "activation",
                            "activation": _activation_name(s["where"], act),
                            "where": s["where"]})
    in_size = (seq[0]["W"].shape[1] if seq[0]["type"] == "dense"
               else seq[0]["kernel"].shape[0])
    # sizes chain
    width = in_size
    for s in out:
        if s["type"] == "dense":
            if s["W"].shape[1] != width:
                raise ModelError(f"{s['where']}: reads {s['W'].shape[1]} values, the "
                                 f"layer before gives {width}")
            width = s["W"].shape[0]
        elif s["type"] in ("lstm", "gru"):
            if s["kernel"].shape[0] != width:
                raise ModelError(f"{s['where']}: reads {s['kernel'].shape[0]} values, "
                                 f"the layer before gives {width}")
            width = s["H"]
    return in_size, out


def _parse(doc, name, **torch_kwargs):
    if isinstance(doc, dict) and "layers" in doc and "in_shape" in doc:
        if torch_kwargs:
            raise ModelError(f"{name}: a Keras export names its own activations")
        return "keras", *_parse_keras(doc, name)
    if isinstance(doc, dict):
        return "torch", *_parse_torch(doc, name, **torch_kwargs)
    raise ModelError(f"{name}: not an RTNeural JSON model (an object with "
                     "'in_shape' and 'layers', or a state_dict)")


# -- into gst-rnn's form -----------------------------------------------------


def _to_torch_layout(s):
    """An RTNeural lstm / gru layer as nn.LSTM / nn.GRU tensors."""
    H = s["H"]
    if s["type"] == "lstm":
        # Keras i, f, c, o is PyTorch's i, f, g, o
        return {"weight_ih": s["kernel"].T, "weight_hh": s["recurrent"].T,
                "bias_ih": s["bias"], "bias_hh": np.zeros(4 * H)}
    return {"weight_ih": _swap_rz(s["kernel"], H).T, "weight_hh": _swap_rz(s["recurrent"], H).T,
            "bias_ih": _swap_rz(s["bias"][0], H), "bias_hh": _swap_rz(s["bias"][1], H)}


def read(path, pre_activations=None, post_activations=None, head_activation=None):
    """The RTNeural JSON file at path as a gstrnn Model.

    For a PyTorch state_dict JSON, pre_activations / post_activations (one
    name per Linear before the recurrent layers / between them and the last
    Linear) and head_activation (the last Linear's) say what the loading code
    applies; each defaults to none.  A Keras export carries its own.
    """
    doc = _common.load_json(path)
    kwargs = {}
    if pre_activations is not None:
        kwargs["pre_activations"] = pre_activations
    if post_activations is not None:
        kwargs["post_activations"] = post_activations
    if head_activation is not None:
        kwargs["head_activation"] = head_activation
    kind, in_size, layers = _parse(doc, path, **kwargs)
    rnn_idx = [i for i, s in enumerate(layers) if s["type"] in ("lstm", "gru")]
    if not rnn_idx:
        raise ModelError(f"{path}: no lstm or gru layer: not a recurrent model")
    first, last = rnn_idx[0], rnn_idx[-1]
    stack = layers[first:last + 1]
    for s in stack:
        if s["type"] not in ("lstm", "gru"):
            raise ModelError(f"{s['where']}: a {s['type']} layer between recurrent "
                             "layers has no gst-rnn form (one stack, nothing inside)")
        if s["type"] != stack[0]["type"] or s["H"] != stack[0]["H"]:
            raise ModelError(f"{s['where']}: a {s['type']} of width {s['H']} after a "
                             f"{stack[0]['type']} of width {stack[0]['H']}: gst-rnn "
                             "stacks one cell type of one width")

    def dense_layers(part):
        dense = []
        for s in part:
            if s["type"] == "dense":
                dense.append(Dense(s["W"], s["b"]))
            elif s["type"] == "batchnorm":
                dense.append(Dense(np.diag(s["mul"]), s["beta"] - s["mul"] * s["mean"]))
            elif dense and isinstance(dense[-1], Dense) and dense[-1].activation == "none":
                dense[-1].activation = s["activation"]
            else:
                dense.append(("identity", s["activation"]))
        return dense

    def identities(dense, width):
        out = []
        for d in dense:
            if isinstance(d, tuple):
                out.append(Dense(np.eye(width), np.zeros(width), d[1]))
            else:
                out.append(d)
                width = d.out_size
        return out

    H = stack[0]["H"]
    m = Model(stack[0]["type"], in_size, H, len(stack))
    m.pre = identities(dense_layers(layers[:first]), in_size)
    for k, s in enumerate(stack):
        for key, value in _to_torch_layout(s).items():
            m.rnn[f"{key}_l{k}"] = np.array(value)
    post = identities(dense_layers(layers[last + 1:]), H)
    if post and post[-1].activation in HEAD_ACTIVATIONS:
        m.head = post.pop()
        m.head_activation = m.head.activation
        m.head.activation = "none"
    m.post = post
    m.source_format = "rtneural-json"
    m.source_file = os.path.basename(path)
    return m.validate()


# -- reference: RTNeural's layers, in RTNeural's layout ---------------------


def _activation(name, v):
    if name == "tanh":
        return np.tanh(v)
    if name == "relu":
        return np.where(v > 0, v, 0.0)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-v))
    if name == "elu":
        return np.where(v > 0, v, np.exp(v) - 1.0)
    if name == "softmax":
        e = np.exp(v - v.max())
        return e / e.sum()
    raise ModelError(f"activation {name!r}")


def reference(path_or_parsed, x, **torch_kwargs):
    """RTNeural's Model::forward per step on x [T][I] from zero state, float64.

    torch_kwargs: the activations of a state_dict JSON, as read() takes them.
    """
    doc, name = _common.parsed(path_or_parsed)
    _, in_size, layers = _parse(doc, name, **torch_kwargs)
    x = _common.stream(x, in_size)
    state = []
    for s in layers:
        H = s.get("H", 0)
        state.append({"h": np.zeros(H), "c": np.zeros(H)})
    ys = []
    for sample in x:
        v = sample
        for s, st in zip(layers, state):
            if s["type"] == "dense":
                v = s["W"] @ v + s["b"]
            elif s["type"] == "activation":
                v = _activation(s["activation"], v)
            elif s["type"] == "batchnorm":
                v = s["mul"] * (v - s["mean"]) + s["beta"]
            elif s["type"] == "lstm":
                H, K, U, b = s["H"], s["kernel"], s["recurrent"], s["bias"]
                a = v @ K + st["h"] @ U + b              # columns i, f, c, o
                i = 1.0 / (1.0 + np.exp(-a[:H]))
                f = 1.0 / (1.0 + np.exp(-a[H:2 * H]))
                ct = np.tanh(a[2 * H:3 * H])
                o = 1.0 / (1.0 + np.exp(-a[3 * H:]))
                st["c"] = f * st["c"] + i * ct
                st["h"] = o * np.tanh(st["c"])
                v = st["h"]
            else:
                H, K, U, b = s["H"], s["kernel"], s["recurrent"], s["bias"]
                xk, hu = v @ K, st["h"] @ U              # columns z, r, h
                z = 1.0 / (1.0 + np.exp(-(xk[:H] + hu[:H] + b[0][:H] + b[1][:H])))
                r = 1.0 / (1.0 + np.exp(-(xk[H:2 * H] + hu[H:2 * H]
                                          + b[0][H:2 * H] + b[1][H:2 * H])))
                c = np.tanh(xk[2 * H:] + r * (hu[2 * H:] + b[1][2 * H:]) + b[0][2 * H:])
                st["h"] = (1.0 - z) * c + z * st["h"]
                v = st["h"]
        ys.append(v)
    return np.array(ys)
