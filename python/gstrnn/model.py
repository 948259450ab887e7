# SPDX-License-Identifier: LGPL-2.1-or-later
"""An in-memory gst-rnn model: its description, a float64 forward, the file.

A Model holds everything a gst-rnn model file (docs/design.md §3) can say:
input normalisation, dense layers before the recurrent stack, the stack
itself (cell, layers, directions, weights in PyTorch's nn.LSTM / nn.GRU /
nn.RNN layout), its initial state, dense layers after it, the head, the
residual skip, framing and provenance.  The readers of other formats
(gstrnn.formats) build one; Model.forward() evaluates docs/design.md §2 in
numpy float64 so their translation can be checked against each format's own
semantics; Model.to_safetensors() writes the model file.

Only numpy is needed.
"""

import copy
import json
import os
import struct
import tempfile

import numpy as np

CELLS = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
LAYER_ACTIVATIONS = ("none", "tanh", "relu", "sigmoid", "elu", "softmax")
HEAD_ACTIVATIONS = ("none", "softmax", "sigmoid", "tanh")
SOURCE_FORMATS = ("pytorch", "torchscript", "onnx", "rtneural-json", "guitarml-json", "nam")


class ModelError(ValueError):
    """A model that gst-rnn cannot express, or a description that does not add up."""


class Dense:
    """One per-step affine layer y = act(W x + b), W of shape [out, in]."""

    def __init__(self, weight, bias=None, activation="none"):
        self.weight = np.array(weight, dtype=np.float64)
        if self.weight.ndim != 2:
            raise ModelError(f"dense weight has shape {list(self.weight.shape)}, "
                             "expected [out, in]")
        out = self.weight.shape[0]
        self.bias = (np.zeros(out) if bias is None
                     else np.array(bias, dtype=np.float64).reshape(-1))
        self.activation = activation

    @property
    def in_size(self):
        return self.weight.shape[1]

    @property
    def out_size(self):
        return self.weight.shape[0]

    def __repr__(self):
        return f"Dense({self.in_size}->{self.out_size}, {self.activation})"


def activate(name, v):
    """The activations of docs/design.md §2 on one vector, in float64."""
    if name == "none":
        return v
    if name == "tanh":
        return np.tanh(v)
    if name == "relu":
        return np.maximum(v, 0.0)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-v))
    if name == "elu":
        return np.where(v > 0, v, np.expm1(np.minimum(v, 0.0)))
    if name == "softmax":
        e = np.exp(v - np.max(v))
        return e / np.sum(e)
    raise ModelError(f"unknown activation '{name}'")


class Model:
    """A gst-rnn model (docs/design.md §2, §3).

    rnn holds the recurrent weights by their PyTorch names without the
    'rnn.' prefix ('weight_ih_l0', 'bias_hh_l1_reverse', ...); h0/c0 are
    [num_layers * D, hidden_size] or None (zeros); pre/post are lists of
    Dense; head is a Dense or None, its activation is head_activation
    (the Dense's own activation field is not used for the head).
    """

    def __init__(self, cell, input_size, hidden_size, num_layers=1,
                 bidirectional=False, rnn=None):
        self.cell = cell
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bidirectional = bool(bidirectional)
        self.rnn = {k: np.array(v, dtype=np.float64) for k, v in (rnn or {}).items()}
        self.input_mean = None
        self.input_std = None
        self.pre = []
        self.post = []
        self.h0 = None
        self.c0 = None
        self.head = None
        self.head_activation = "none"
        self.skip = 0
        self.frame_size = None
        self.output_frame_size = None
        self.window = None
        self.sample_rate = None
        self.labels = None
        self.description = None
        self.source_format = None
        self.source_file = None
        self.extra_meta = {}

    @classmethod
    def from_file(cls, meta, tensors):
        """The Model of a model file's (metadata, tensors), as gstrnn.load() returns them."""
        def dense(prefix, act="none"):
            return Dense(tensors[prefix + ".weight"], tensors.get(prefix + ".bias"), act)

        try:
            m = cls(meta["cell"], int(meta["input_size"]), int(meta["hidden_size"]),
                    int(meta["num_layers"]), meta["bidirectional"] == "true",
                    rnn={k[4:]: v for k, v in tensors.items()
                         if k.startswith("rnn.") and k not in ("rnn.h0", "rnn.c0")})
        except (KeyError, ValueError) as e:
            raise ModelError(f"not a gst-rnn model description ({e})") from None
        for key, what in (("pre", m.pre), ("post", m.post)):
            acts = [a for a in meta.get(key + "_activations", "").split(",") if a]
            for k, act in enumerate(acts):
                what.append(dense(f"{key}.{k}", act))
        if "head.weight" in tensors:
            m.head = dense("head")
            m.head_activation = meta.get("head_activation", "none")
        m.input_mean, m.input_std = tensors.get("input.mean"), tensors.get("input.std")
        m.h0, m.c0 = tensors.get("rnn.h0"), tensors.get("rnn.c0")
        m.skip = int(meta.get("skip", 0))
        for key in ("frame_size", "output_frame_size", "window", "sample_rate"):
            if key in meta:
                setattr(m, key, int(meta[key]))
        if "labels" in meta:
            m.labels = meta["labels"].split(",")
        for key in ("description", "source_format", "source_file"):
            if key in meta:
                setattr(m, key, meta[key])
        known = {"format", "version", "cell", "input_size", "hidden_size", "num_layers",
                 "bidirectional", "head_activation", "pre_activations", "post_activations",
                 "skip", "frame_size", "output_frame_size", "window", "sample_rate", "labels",
                 "description", "source_format", "source_file"}
        m.extra_meta = {k: v for k, v in meta.items() if k not in known}
        return m

    # -- shape ---------------------------------------------------------------

    @property
    def directions(self):
        return 2 if self.bidirectional else 1

    @property
    def rnn_input_size(self):
        """I_0: what layer 0 reads (the last pre layer's width, else the input)."""
        return self.pre[-1].out_size if self.pre else self.input_size

    @property
    def output_size(self):
        if self.head is not None:
            return self.head.out_size
        if self.post:
            return self.post[-1].out_size
        return self.directions * self.hidden_size

    @property
    def version(self):
        uses_optional = bool(self.pre or self.post or self.h0 is not None
                             or self.c0 is not None or self.skip)
        return 2 if uses_optional else 1

    def _suffixes(self):
        return [""] + (["_reverse"] if self.bidirectional else [])

    def validate(self):
        """Raise ModelError naming the first piece that does not fit; return self."""
        if self.cell not in CELLS:
            raise ModelError(f"cell '{self.cell}' is not one of {', '.join(CELLS)}")
        if self.input_size < 1 or self.hidden_size < 1 or self.num_layers < 1:
            raise ModelError("input_size, hidden_size and num_layers must be >= 1 "
                             f"(got {self.input_size}, {self.hidden_size}, {self.num_layers})")
        G, H, D = CELLS[self.cell], self.hidden_size, self.directions
        width = self.input_size
        for k, layer in enumerate(self.pre):
            self._check_dense(f"pre.{k}", layer, width, LAYER_ACTIVATIONS)
            width = layer.out_size
        expected = {}
        for k in range(self.num_layers):
            in_k = width if k == 0 else D * H
            for s in self._suffixes():
                expected[f"weight_ih_l{k}{s}"] = (G * H, in_k)
                expected[f"weight_hh_l{k}{s}"] = (G * H, H)
                expected[f"bias_ih_l{k}{s}"] = (G * H,)
                expected[f"bias_hh_l{k}{s}"] = (G * H,)
        for name, shape in expected.items():
            if name not in self.rnn:
                raise ModelError(f"rnn.{name} is missing")
            if tuple(self.rnn[name].shape) != shape:
                raise ModelError(f"rnn.{name} has shape {list(self.rnn[name].shape)}, "
                                 f"expected {list(shape)}")
        for name in self.rnn:
            if name not in expected:
                raise ModelError(f"rnn.{name} is not a tensor of a {self.num_layers}-layer "
                                 f"{self.cell} (bidirectional={self.bidirectional})")
        if self.c0 is not None and self.h0 is None:
            raise ModelError("rnn.c0 is given without rnn.h0")
        if self.c0 is not None and self.cell != "lstm":
            raise ModelError(f"rnn.c0 is only for lstm, the cell is {self.cell}")
        for name, t in (("h0", self.h0), ("c0", self.c0)):
            if t is not None and tuple(np.shape(t)) != (self.num_layers * D, H):
                raise ModelError(f"rnn.{name} has shape {list(np.shape(t))}, expected "
                                 f"[{self.num_layers * D}, {H}]")
        width = D * H
        for k, layer in enumerate(self.post):
            self._check_dense(f"post.{k}", layer, width, LAYER_ACTIVATIONS)
            width = layer.out_size
        if self.head is not None:
            self._check_dense("head", self.head, width, None)
        if self.head_activation not in HEAD_ACTIVATIONS:
            raise ModelError(f"head activation '{self.head_activation}' is not one of "
                             f"{', '.join(HEAD_ACTIVATIONS)}")
        if self.head is None and self.head_activation != "none":
            raise ModelError(f"head activation '{self.head_activation}' without a head")
        for name, t in (("input.mean", self.input_mean), ("input.std", self.input_std)):
            if t is not None and tuple(np.shape(t)) != (self.input_size,):
                raise ModelError(f"{name} has shape {list(np.shape(t))}, "
                                 f"expected [{self.input_size}]")
        if (self.input_mean is None) != (self.input_std is None):
            raise ModelError("input.mean and input.std come together")
        if self.input_std is not None and np.any(np.asarray(self.input_std) <= 0):
            raise ModelError("input.std has a value <= 0")
        for key in ("frame_size", "output_frame_size", "window", "sample_rate"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or int(value) != value
                                      or value < 1):
                raise ModelError(f"{key} is {value!r}, expected a whole number >= 1")
        if self.frame_size and self.input_size % self.frame_size:
            raise ModelError(f"frame_size {self.frame_size} does not divide the input "
                             f"size {self.input_size}")
        if self.output_frame_size and self.output_size % self.output_frame_size:
            raise ModelError(f"output_frame_size {self.output_frame_size} does not divide "
                             f"the output size {self.output_size}")
        if self.skip:
            O = self.output_size
            if self.skip not in (1, O) or self.skip > self.input_size:
                raise ModelError(f"skip = {self.skip}: only 1 or the output size ({O}), "
                                 f"at most the input size ({self.input_size})")
            if (self.frame_size or 1) != 1 or (self.output_frame_size or 1) != 1:
                raise ModelError("skip needs frame_size = output_frame_size = 1")
        if self.labels is not None:
            if self.head_activation != "softmax" or len(self.labels) != self.output_size:
                raise ModelError("labels name the outputs of a softmax head, one each")
            for label in self.labels:
                if not label or "," in label:
                    raise ModelError(f"label '{label}' is empty or holds a comma")
        if self.source_format is not None and self.source_format not in SOURCE_FORMATS:
            raise ModelError(f"source_format '{self.source_format}' is not one of "
                             f"{', '.join(SOURCE_FORMATS)}")
        for name, t in self.tensors().items():
            if not np.all(np.isfinite(t)):
                raise ModelError(f"{name} holds a non-finite value")
        return self

    @staticmethod
    def _check_dense(name, layer, width, allowed):
        if layer.in_size != width:
            raise ModelError(f"{name}.weight reads {layer.in_size} values, "
                             f"the layer before gives {width}")
        if layer.bias.shape != (layer.out_size,):
            raise ModelError(f"{name}.bias has shape {list(layer.bias.shape)}, "
                             f"expected [{layer.out_size}]")
        if allowed is not None and layer.activation not in allowed:
            raise ModelError(f"{name} activation '{layer.activation}' is not one of "
                             f"{', '.join(allowed)}")

    # -- forward (docs/design.md §2, float64) --------------------------------

    def _cell_step(self, k, s, x, h, c):
        W_ih, W_hh = self.rnn[f"weight_ih_l{k}{s}"], self.rnn[f"weight_hh_l{k}{s}"]
        b_ih, b_hh = self.rnn[f"bias_ih_l{k}{s}"], self.rnn[f"bias_hh_l{k}{s}"]
        H = self.hidden_size
        if self.cell in ("rnn_tanh", "rnn_relu"):
            a = W_ih @ x + b_ih + W_hh @ h + b_hh
            return (np.tanh(a) if self.cell == "rnn_tanh" else np.maximum(a, 0.0)), c
        if self.cell == "lstm":
            a = W_ih @ x + b_ih + W_hh @ h + b_hh
            i = activate("sigmoid", a[0:H])
            f = activate("sigmoid", a[H:2 * H])
            g = np.tanh(a[2 * H:3 * H])
            o = activate("sigmoid", a[3 * H:4 * H])
            c = f * c + i * g
            return o * np.tanh(c), c
        gi = W_ih @ x + b_ih
        gh = W_hh @ h + b_hh
        r = activate("sigmoid", gi[0:H] + gh[0:H])
        z = activate("sigmoid", gi[H:2 * H] + gh[H:2 * H])
        n = np.tanh(gi[2 * H:] + r * gh[2 * H:])
        return (1.0 - z) * n + z * h, c

    def _cast(self, dtype):
        """A copy whose tensors are of @dtype (for a float32 evaluation)."""
        m = copy.copy(self)

        def cast(a):
            return None if a is None else np.asarray(a, dtype)

        def dense(layer):
            d = copy.copy(layer)
            d.weight, d.bias = cast(layer.weight), cast(layer.bias)
            return d
        m.rnn = {k: cast(v) for k, v in self.rnn.items()}
        m.pre = [dense(layer) for layer in self.pre]
        m.post = [dense(layer) for layer in self.post]
        m.head = None if self.head is None else dense(self.head)
        m.h0, m.c0 = cast(self.h0), cast(self.c0)
        m.input_mean, m.input_std = cast(self.input_mean), cast(self.input_std)
        return m

    def forward(self, x, dtype=np.float64):
        """Evaluate the model on one stream x [T][I] from its initial state -> [T][O].

        Bidirectional models treat x as one window (both directions start
        from the initial state at their own end of it).  dtype=np.float32
        does every operation in float32 instead: what float32 arithmetic
        alone changes, the yardstick for models that amplify rounding.
        """
        self.validate()
        if np.dtype(dtype) != np.float64:
            return self._cast(dtype)._forward(x, dtype)
        return self._forward(x, dtype)

    def _forward(self, x, dtype):
        raw = np.array(x, dtype=dtype).reshape(-1, self.input_size)
        T, H, D = raw.shape[0], self.hidden_size, self.directions
        seq = raw.copy()
        if self.input_mean is not None:
            seq = (seq - np.asarray(self.input_mean, dtype)) / np.asarray(self.input_std, dtype)
        for layer in self.pre:
            seq = np.array([activate(layer.activation, layer.weight @ v + layer.bias) for v in seq])
        for k in range(self.num_layers):
            out = np.zeros((T, D * H), dtype)
            for d, s in enumerate(self._suffixes()):
                row = k * D + d
                h = np.zeros(H, dtype) if self.h0 is None else np.array(self.h0[row], dtype)
                c = np.zeros(H, dtype) if self.c0 is None else np.array(self.c0[row], dtype)
                steps = range(T) if d == 0 else range(T - 1, -1, -1)
                for t in steps:
                    h, c = self._cell_step(k, s, seq[t], h, c)
                    out[t, d * H:(d + 1) * H] = h
            seq = out
        for layer in self.post:
            seq = np.array([activate(layer.activation, layer.weight @ v + layer.bias) for v in seq])
        if self.head is not None:
            seq = np.array([activate(self.head_activation, self.head.weight @ v + self.head.bias)
                            for v in seq])
        seq = seq.reshape(T, -1)
        if self.skip:
            seq = seq + raw[:, :self.skip]
        return seq

    # -- the model file (docs/design.md §3) ----------------------------------

    def tensors(self):
        """Every tensor of the model file by name, float64, in file order."""
        t = {}
        if self.input_mean is not None:
            t["input.mean"] = np.asarray(self.input_mean, np.float64)
            t["input.std"] = np.asarray(self.input_std, np.float64)
        for k, layer in enumerate(self.pre):
            t[f"pre.{k}.weight"] = layer.weight
            t[f"pre.{k}.bias"] = layer.bias
        for k in range(self.num_layers):
            for s in self._suffixes():
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    name = f"{kind}_l{k}{s}"
                    if name in self.rnn:
                        t["rnn." + name] = self.rnn[name]
        for name in sorted(set(self.rnn) - {n[4:] for n in t if n.startswith("rnn.")}):
            t["rnn." + name] = self.rnn[name]
        if self.h0 is not None:
            t["rnn.h0"] = np.asarray(self.h0, np.float64)
        if self.c0 is not None:
            t["rnn.c0"] = np.asarray(self.c0, np.float64)
        for k, layer in enumerate(self.post):
            t[f"post.{k}.weight"] = layer.weight
            t[f"post.{k}.bias"] = layer.bias
        if self.head is not None:
            t["head.weight"] = self.head.weight
            t["head.bias"] = self.head.bias
        return t

    def metadata(self):
        """The __metadata__ strings of the model file."""
        m = {
            "format": "gst-rnn",
            "version": str(self.version),
            "cell": self.cell,
            "input_size": str(self.input_size),
            "hidden_size": str(self.hidden_size),
            "num_layers": str(self.num_layers),
            "bidirectional": "true" if self.bidirectional else "false",
            "head_activation": self.head_activation if self.head is not None else "none",
        }
        if self.pre:
            m["pre_activations"] = ",".join(layer.activation for layer in self.pre)
        if self.post:
            m["post_activations"] = ",".join(layer.activation for layer in self.post)
        if self.skip:
            m["skip"] = str(self.skip)
        for key in ("frame_size", "output_frame_size", "window", "sample_rate"):
            value = getattr(self, key)
            if value is not None:
                m[key] = str(int(value))
        if self.labels is not None:
            m["labels"] = ",".join(self.labels)
        for key in ("description", "source_format", "source_file"):
            value = getattr(self, key)
            if value is not None:
                m[key] = str(value)
        for key, value in self.extra_meta.items():
            if key in m:
                raise ModelError(f"metadata key '{key}' is set from the model itself")
            m[key] = str(value)
        return m

    def to_safetensors(self, path):
        """Write the model file at path atomically (temp file + rename)."""
        try:
            self.validate()
        except ModelError as e:
            raise ModelError(f"{path}: not written: {e}") from None
        header = {"__metadata__": self.metadata()}
        blobs, offset = [], 0
        for name, t in self.tensors().items():
            data = np.ascontiguousarray(t, dtype="<f4").tobytes()
            header[name] = {"dtype": "F32", "shape": list(np.shape(t)),
                            "data_offsets": [offset, offset + len(data)]}
            blobs.append(data)
            offset += len(data)
        text = json.dumps(header, separators=(",", ":")).encode("utf-8")
        text += b" " * (-len(text) % 8)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".gstrnn-", suffix=".tmp", dir=directory)
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
            with os.fdopen(fd, "wb") as f:
                f.write(struct.pack("<Q", len(text)))
                f.write(text)
                for data in blobs:
                    f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def __repr__(self):
        return (f"Model({self.cell}, I={self.input_size}, H={self.hidden_size}, "
                f"L={self.num_layers}, D={self.directions}, pre={self.pre}, "
                f"post={self.post}, head={self.head}/{self.head_activation}, "
                f"skip={self.skip}, h0={'yes' if self.h0 is not None else 'no'})")
