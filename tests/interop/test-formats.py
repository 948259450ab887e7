#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The readers of RTNeural, GuitarML and NAM files (TAP output).

For each format, files are written here from random weights the way the
format's own tools write them (a PyTorch SimpleRNN saved as GuitarML JSON, an
LSTM's flat NAM weight list, RTNeural Keras exports and state_dict JSON);
then gstrnn.formats.<format>.read() + Model.forward() must agree with the
format's reference() and, where PyTorch runs the same network, with PyTorch
in float64, to 1e-9.  Refusals must name the piece refused.  The model files
written by Model.to_safetensors() are parsed back here and checked against
docs/design.md §3.

Needs numpy and torch (python3-numpy, python3-torch); run with
PYTHONPATH=<source>/python.  Usage: test-formats.py [SUBSTRING...]
"""

import json
import os
import struct
import sys
import tempfile
import traceback
import zlib

try:
    import numpy as np
    import torch
    from torch import nn
except ImportError as e:
    print(f"1..0 # SKIP needs python3-numpy and python3-torch ({e})")
    sys.exit(0)

from gstrnn import formats
from gstrnn.formats import guitarml, nam, rtneural
from gstrnn.model import Dense, Model, ModelError

torch.set_num_threads(1)
TOL = 1e-9
TMP = tempfile.mkdtemp(prefix="gstrnn-formats-")
CASES = []


def case(name):
    def wrap(fn):
        CASES.append((name, fn))
        return fn
    return wrap


def tmp(name):
    return os.path.join(TMP, name)


def note(text):
    print(f"# {text}")


def write_json(name, doc):
    path = tmp(name)
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def signal(T, channels, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, (T, channels))


def compare(what, got, want):
    diff = float(np.max(np.abs(np.asarray(got) - np.asarray(want))))
    note(f"{what}: max |difference| = {diff:.3g}")
    assert diff <= TOL, f"{what}: {diff:.3g} > {TOL}"


def expect_refusal(fn, *names):
    try:
        fn()
    except ModelError as e:
        msg = str(e)
        note(f"refused: {msg}")
        for n in names:
            assert n in msg, f"the message does not name {n!r}: {msg}"
        return
    raise AssertionError("not refused")


def torch_json(module):
    return {k: v.tolist() for k, v in module.state_dict().items()}


def randomize(module, seed, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype) * 2 * scale - scale)
    return module


# -- the model file ----------------------------------------------------------


def parse_safetensors(path):
    """(metadata, {name: float32 array}) of a model file, checking §3's framing."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    assert n % 8 == 0, f"header length {n} is not a multiple of 8"
    text = data[8:8 + n].decode("utf-8")
    assert text.startswith("{"), "header does not start with {"
    assert text == text.rstrip(" ") + " " * (len(text) - len(text.rstrip(" ")))
    header = json.loads(text)
    meta = header.pop("__metadata__")
    assert all(isinstance(v, str) for v in meta.values()), "a metadata value is not a string"
    tensors, end = {}, 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        assert info["dtype"] == "F32", f"{name} is {info['dtype']}"
        begin, stop = info["data_offsets"]
        assert begin == end, f"{name} does not follow the tensor before it"
        assert stop - begin == 4 * int(np.prod(info["shape"])), f"{name} byte length"
        tensors[name] = np.frombuffer(data[8 + n + begin:8 + n + stop], "<f4").reshape(info["shape"])
        end = stop
    assert 8 + n + end == len(data), "trailing bytes"
    return meta, tensors


def check_file(model, name, version):
    path = tmp(name + ".safetensors")
    model.to_safetensors(path)
    meta, tensors = parse_safetensors(path)
    assert meta["format"] == "gst-rnn" and meta["version"] == str(version), meta
    assert meta["cell"] == model.cell and meta["hidden_size"] == str(model.hidden_size)
    assert meta["source_format"] == model.source_format
    want = model.tensors()
    assert set(tensors) == set(want), sorted(set(tensors) ^ set(want))
    for k, v in want.items():
        assert np.array_equal(tensors[k], v.astype(np.float32)), k
    return meta, tensors


# -- gstrnn.model itself -----------------------------------------------------


def model_case(name, kind, nonlinearity, I, H, L, bidirectional, head_act):
    @case(name)
    def run():
        extra = {"nonlinearity": nonlinearity} if nonlinearity else {}
        rnn = randomize(getattr(nn, kind)(I, H, L, bidirectional=bidirectional, **extra).double(), 21)
        D = 2 if bidirectional else 1
        head = randomize(nn.Linear(D * H, 3).double(), 22)
        rng = np.random.default_rng(23)
        mean, std = rng.uniform(-0.5, 0.5, I), rng.uniform(0.5, 2.0, I)
        cell = {"LSTM": "lstm", "GRU": "gru"}.get(kind, "rnn_" + (nonlinearity or "tanh"))
        model = Model(cell, I, H, L, bidirectional,
                      {k: v.numpy() for k, v in rnn.state_dict().items()})
        model.head = Dense(head.weight.detach().numpy(), head.bias.detach().numpy())
        model.head_activation = head_act
        model.input_mean, model.input_std = mean, std
        model.source_format = "pytorch"
        x = signal(60, I, 24)
        with torch.no_grad():
            z = head(rnn(torch.from_numpy((x - mean) / std))[0])
            yt = {"none": z, "tanh": torch.tanh(z), "sigmoid": torch.sigmoid(z),
                  "softmax": torch.softmax(z, dim=-1)}[head_act].numpy()
        compare("Model.forward vs PyTorch float64", model.forward(x), yt)
        meta, tensors = check_file(model, name.replace("/", "-"), 1)
        assert meta["bidirectional"] == ("true" if bidirectional else "false")
        assert meta["head_activation"] == head_act and "input.std" in tensors


model_case("model/bidirectional-gru-softmax", "GRU", None, 2, 5, 2, True, "softmax")
model_case("model/lstm-normalised-sigmoid", "LSTM", None, 3, 4, 2, False, "sigmoid")
model_case("model/rnn-relu-bidirectional-tanh", "RNN", "relu", 2, 4, 1, True, "tanh")


@case("model/refuses")
def _():
    model = Model("lstm", 1, 3, 1, False, {k: v.numpy() for k, v in
                                           nn.LSTM(1, 3).double().state_dict().items()})
    model.h0 = np.zeros((2, 3))
    path = tmp("refused.safetensors")
    expect_refusal(lambda: model.to_safetensors(path), path, "rnn.h0", "[1, 3]")
    assert not os.path.exists(path) and not [f for f in os.listdir(TMP) if f.endswith(".tmp")]
    model.h0 = None
    model.skip = 2
    expect_refusal(model.validate, "skip")
    model.skip = 0
    model.pre = [Dense(np.ones((2, 2)), None, "tanh")]
    expect_refusal(model.validate, "pre.0.weight")
    model.pre = [Dense(np.ones((1, 1)), None, "gelu")]
    expect_refusal(model.validate, "pre.0", "gelu")
    model.pre = []
    model.frame_size = 0
    expect_refusal(model.validate, "frame_size")
    model.frame_size = None
    model.output_frame_size = 2
    expect_refusal(model.validate, "output_frame_size 2")


# -- GuitarML SimpleRNN ------------------------------------------------------


class SimpleRNN(nn.Module):
    """The network of Automated-GuitarAmpModelling's SimpleRNN (for PyTorch's output)."""

    def __init__(self, unit, I, O, H, L, skip, bias_fl):
        super().__init__()
        self.rec = getattr(nn, unit)(I, H, L)
        self.lin = nn.Linear(H, O, bias=bias_fl)
        self.skip = skip
        self.unit, self.bias_fl = unit, bias_fl

    def forward(self, x):
        y = self.lin(self.rec(x)[0])
        return y + x[:, :, 0:self.skip] if self.skip else y

    def save(self, name):
        # as SimpleRNN.save_model writes it
        doc = {"model_data": {"model": "SimpleRNN", "input_size": self.rec.input_size,
                              "skip": self.skip, "output_size": self.lin.out_features,
                              "unit_type": self.unit, "num_layers": self.rec.num_layers,
                              "hidden_size": self.rec.hidden_size, "bias_fl": self.bias_fl},
               "state_dict": torch_json(self)}
        return write_json(name, doc)


def guitarml_case(name, unit, I, O, H, L, skip, bias_fl, version):
    @case(name)
    def run():
        net = randomize(SimpleRNN(unit, I, O, H, L, skip, bias_fl).double(), zlib.crc32(name.encode()) % 1000)
        path = net.save(name.replace("/", "-") + ".json")
        x = signal(300, I, 1)
        model = guitarml.read(path)
        assert model.skip == skip
        y = model.forward(x)
        compare("Model.forward vs SimpleRNN reference", y, guitarml.reference(path, x))
        with torch.no_grad():
            yt = net(torch.from_numpy(x)[:, None, :])[:, 0, :].numpy()
        compare("Model.forward vs PyTorch float64", y, yt)
        check_file(model, name.replace("/", "-"), version)


guitarml_case("guitarml/lstm-skip", "LSTM", 1, 1, 12, 1, 1, True, 2)
guitarml_case("guitarml/gru-2-layers-no-bias", "GRU", 1, 1, 8, 2, 0, False, 1)
guitarml_case("guitarml/rnn-skip-per-output", "RNN", 2, 2, 6, 1, 2, True, 2)
guitarml_case("guitarml/lstm-skip-broadcast", "LSTM", 3, 2, 5, 2, 1, True, 2)


@case("guitarml/refuses")
def _():
    net = SimpleRNN("LSTM", 1, 1, 4, 1, 1, True)
    doc = json.load(open(net.save("good.json")))
    doc["model_data"]["unit_type"] = "Transformer"
    path = write_json("bad-unit.json", doc)
    expect_refusal(lambda: guitarml.read(path), "unit_type", "Transformer")
    doc = json.load(open(tmp("good.json")))
    doc["state_dict"]["rec.weight_ih_l1"] = [[0.0]]
    path = write_json("bad-key.json", doc)
    expect_refusal(lambda: guitarml.read(path), "rec.weight_ih_l1")
    doc = json.load(open(tmp("good.json")))
    doc["model_data"]["skip"] = 2
    path = write_json("bad-skip.json", doc)
    expect_refusal(lambda: guitarml.read(path), "skip")
    doc = json.load(open(tmp("good.json")))
    doc["model_data"]["model"] = "GatedConvNet"
    path = write_json("bad-model.json", doc)
    expect_refusal(lambda: guitarml.read(path), "GatedConvNet")


# -- Neural Amp Modeler ------------------------------------------------------


def nam_file(name, lstm, head, h0, c0, arch="LSTM"):
    """A .nam file in neural-amp-modeler's LSTM._export_weights order."""
    H, L = lstm.hidden_size, lstm.num_layers
    w = []
    for k in range(L):
        W = torch.cat([getattr(lstm, f"weight_ih_l{k}"), getattr(lstm, f"weight_hh_l{k}")], dim=1)
        b = getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}")
        w += W.flatten().tolist() + b.tolist() + h0[k].tolist() + c0[k].tolist()
    w += head.weight.flatten().tolist() + head.bias.tolist()
    doc = {"version": "0.5.4", "metadata": {"name": name}, "architecture": arch,
           "config": {"input_size": lstm.input_size, "hidden_size": H, "num_layers": L},
           "weights": w, "sample_rate": 48000}
    return write_json(name, doc)


@case("nam/lstm-initial-state")
def _():
    lstm = randomize(nn.LSTM(1, 7, 2).double(), 3)
    head = randomize(nn.Linear(7, 1).double(), 4)
    g = torch.Generator().manual_seed(5)
    h0 = torch.rand(2, 7, generator=g, dtype=torch.float64) - 0.5
    c0 = torch.rand(2, 7, generator=g, dtype=torch.float64) * 2 - 1
    path = nam_file("lstm.nam", lstm, head, h0, c0)
    model = nam.read(path)
    assert np.array_equal(model.h0, h0.numpy()) and np.array_equal(model.c0, c0.numpy())
    assert model.sample_rate == 48000
    x = signal(400, 1, 6)
    y = model.forward(x)
    compare("Model.forward vs NAM LSTM reference", y, nam.reference(path, x))
    with torch.no_grad():
        yt = head(lstm(torch.from_numpy(x), (h0, c0))[0]).numpy()
    compare("Model.forward vs PyTorch float64 (from h0, c0)", y, yt)
    meta, tensors = check_file(model, "nam", 2)
    assert tensors["rnn.h0"].shape == (2, 7) and tensors["rnn.c0"].shape == (2, 7)
    assert meta["sample_rate"] == "48000"


@case("nam/refuses")
def _():
    lstm, head = nn.LSTM(1, 3, 1).double(), nn.Linear(3, 1).double()
    z = torch.zeros(1, 3, dtype=torch.float64)
    path = nam_file("wavenet.nam", lstm, head, z, z, arch="WaveNet")
    expect_refusal(lambda: nam.read(path), "WaveNet")
    doc = json.load(open(nam_file("short.nam", lstm, head, z, z)))
    doc["weights"] = doc["weights"][:-1]
    path = write_json("short.nam", doc)
    expect_refusal(lambda: nam.read(path), "weights", str(len(doc["weights"])))


# -- RTNeural ----------------------------------------------------------------


def keras_dense(rng, n_in, n_out, act="", kind="dense"):
    return {"type": kind, "activation": act, "shape": [None, None, n_out],
            "weights": [rng.uniform(-0.8, 0.8, (n_in, n_out)).tolist(),
                        rng.uniform(-0.3, 0.3, n_out).tolist()]}


def keras_rnn(rng, kind, n_in, H):
    G = 4 if kind == "lstm" else 3
    bias = (rng.uniform(-0.3, 0.3, G * H) if kind == "lstm"
            else rng.uniform(-0.3, 0.3, (2, G * H)))
    return {"type": kind, "activation": "tanh", "shape": [None, None, H],
            "weights": [rng.uniform(-0.6, 0.6, (n_in, G * H)).tolist(),
                        rng.uniform(-0.6, 0.6, (H, G * H)).tolist(), bias.tolist()]}


def keras_case(name, I, layers_fn, want):
    @case(name)
    def run():
        rng = np.random.default_rng(zlib.crc32(name.encode()) % 1000)
        doc = {"in_shape": [None, None, I], "layers": layers_fn(rng)}
        path = write_json(name.replace("/", "-") + ".json", doc)
        model = rtneural.read(path)
        note(repr(model))
        assert repr(model).startswith(want), repr(model)
        x = signal(250, I, 7)
        compare("Model.forward vs RTNeural reference", model.forward(x),
                rtneural.reference(path, x))
        meta, _ = check_file(model, name.replace("/", "-"), 2 if model.pre or model.post else 1)
        assert meta.get("pre_activations", "") == ",".join(d.activation for d in model.pre)
        assert meta.get("post_activations", "") == ",".join(d.activation for d in model.post)


keras_case("rtneural/keras-lstm-stack", 2, lambda r: [
    keras_dense(r, 2, 6, "tanh", "time-distributed-dense"),
    {"type": "activation", "activation": "elu", "shape": [None, None, 6], "weights": []},
    keras_rnn(r, "lstm", 6, 5), keras_rnn(r, "lstm", 5, 5),
    keras_dense(r, 5, 4, "relu"), keras_dense(r, 4, 3, "softmax")],
    "Model(lstm, I=2, H=5, L=2, D=1, pre=[Dense(2->6, tanh), Dense(6->6, elu)], "
    "post=[Dense(5->4, relu)], head=Dense(4->3, none)/softmax")
keras_case("rtneural/keras-gru", 1, lambda r: [
    keras_rnn(r, "gru", 1, 6),
    {"type": "activation", "activation": "sigmoid", "shape": [None, None, 6], "weights": []},
    keras_dense(r, 6, 6, "", "time-distributed-dense"),
    {"type": "activation", "activation": "relu", "shape": [None, None, 6], "weights": []},
    keras_dense(r, 6, 1, "tanh")],
    "Model(gru, I=1, H=6, L=1, D=1, pre=[], post=[Dense(6->6, sigmoid), Dense(6->6, relu)], "
    "head=Dense(6->1, none)/tanh")
keras_case("rtneural/keras-batchnorm", 2, lambda r: [
    {"type": "batchnorm", "activation": "", "shape": [None, None, 2], "epsilon": 0.001,
     "weights": [r.uniform(0.5, 2, 2).tolist(), r.uniform(-1, 1, 2).tolist(),
                 r.uniform(-1, 1, 2).tolist(), r.uniform(0.1, 2, 2).tolist()]},
    keras_rnn(r, "gru", 2, 4),
    {"type": "batchnorm", "activation": "", "shape": [None, None, 4], "epsilon": 0.01,
     "weights": [r.uniform(-1, 1, 4).tolist(), r.uniform(0.1, 2, 4).tolist()]},
    keras_dense(r, 4, 1)],
    "Model(gru, I=2, H=4, L=1, D=1, pre=[Dense(2->2, none)], post=[Dense(4->4, none)], "
    "head=Dense(4->1, none)/none")
keras_case("rtneural/keras-lstm-no-head", 1, lambda r: [
    keras_rnn(r, "lstm", 1, 4), keras_dense(r, 4, 2, "elu")],
    "Model(lstm, I=1, H=4, L=1, D=1, pre=[], post=[Dense(4->2, elu)], head=None")


class TorchNet(nn.Module):
    """Linear -> LSTM/GRU modules in a row -> Linear -> Linear, as RTNeural users write them."""

    def __init__(self, kind, I, H):
        super().__init__()
        rnn = getattr(nn, kind)
        self.inp = nn.Linear(I, 5)
        self.rnn1 = rnn(5, H)
        self.rnn2 = rnn(H, H, num_layers=2)
        self.mid = nn.Linear(H, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        x = torch.tanh(self.inp(x))
        x = self.rnn2(self.rnn1(x)[0])[0]
        return torch.sigmoid(self.out(torch.relu(self.mid(x))))


def torch_json_case(name, kind):
    @case(name)
    def run():
        net = randomize(TorchNet(kind, 3, 6).double(), 11)
        path = write_json(name.replace("/", "-") + ".json", torch_json(net))
        acts = {"pre_activations": ["tanh"], "post_activations": ["relu"],
                "head_activation": "sigmoid"}
        model = rtneural.read(path, **acts)
        note(repr(model))
        assert model.num_layers == 3 and len(model.pre) == 1 and len(model.post) == 1
        x = signal(200, 3, 8)
        y = model.forward(x)
        compare("Model.forward vs RTNeural reference (torch_helpers)", y,
                rtneural.reference(path, x, **acts))
        with torch.no_grad():
            yt = net(torch.from_numpy(x)).numpy()
        compare("Model.forward vs PyTorch float64", y, yt)
        check_file(model, name.replace("/", "-"), 2)


torch_json_case("rtneural/torch-json-lstm", "LSTM")
torch_json_case("rtneural/torch-json-gru", "GRU")


@case("rtneural/refuses")
def _():
    rng = np.random.default_rng(9)
    prelu = {"type": "prelu", "activation": "", "shape": [None, None, 4],
             "weights": [[[0.1] * 4]]}
    doc = {"in_shape": [None, None, 1], "layers": [keras_rnn(rng, "gru", 1, 4), prelu]}
    path = write_json("prelu.json", doc)
    expect_refusal(lambda: rtneural.read(path), "layers[1]", "prelu")
    conv = {"type": "conv1d", "activation": "", "shape": [None, None, 4], "kernel_size": [3],
            "dilation": [1], "weights": [rng.uniform(-1, 1, (3, 4, 4)).tolist(), [0] * 4]}
    doc = {"in_shape": [None, None, 1],
           "layers": [keras_dense(rng, 1, 4, "tanh"), conv, keras_rnn(rng, "gru", 4, 4)]}
    path = write_json("conv.json", doc)
    expect_refusal(lambda: rtneural.read(path), "layers[1]", "conv1d")
    doc = {"in_shape": [None, None, 1],
           "layers": [keras_rnn(rng, "lstm", 1, 4), keras_dense(rng, 4, 4),
                      keras_rnn(rng, "lstm", 4, 4)]}
    path = write_json("dense-inside.json", doc)
    expect_refusal(lambda: rtneural.read(path), "layers[1]", "dense")
    doc = {"in_shape": [None, None, 1],
           "layers": [keras_rnn(rng, "lstm", 1, 4), keras_rnn(rng, "gru", 4, 4)]}
    path = write_json("mixed.json", doc)
    expect_refusal(lambda: rtneural.read(path), "layers[1]", "gru")
    gru = keras_rnn(rng, "gru", 1, 4)
    gru["weights"][2] = rng.uniform(-1, 1, 12).tolist()
    path = write_json("reset-before.json", {"in_shape": [None, None, 1], "layers": [gru]})
    expect_refusal(lambda: rtneural.read(path), "layers[0]", "reset_after")
    sd = torch_json(nn.GRU(1, 3, bidirectional=True))
    path = write_json("bidir.json", sd)
    expect_refusal(lambda: rtneural.read(path), "weight_ih_l0_reverse")
    sd = torch_json(nn.Sequential(nn.LSTM(1, 3), nn.Linear(3, 3), nn.LSTM(3, 3), nn.Linear(3, 1)))
    path = write_json("linear-inside.json", sd)
    expect_refusal(lambda: rtneural.read(path, head_activation="tanh"), "module '1' (Linear)")
    sd = torch_json(nn.RNN(1, 3))
    path = write_json("elman.json", sd)
    expect_refusal(lambda: rtneural.read(path), "weight_hh_l0")


@case("formats/detect")
def _():
    assert formats.detect(tmp("lstm.nam")) == "nam"
    assert formats.detect(tmp("guitarml-lstm-skip.json")) == "guitarml-json"
    assert formats.detect(tmp("rtneural-keras-gru.json")) == "rtneural-json"
    assert formats.detect(tmp("rtneural-torch-json-gru.json")) == "rtneural-json"
    m = formats.read(tmp("lstm.nam"))
    assert m.source_format == "nam" and m.source_file == "lstm.nam"
    path = write_json("nothing.json", {"hello": 1})
    expect_refusal(lambda: formats.detect(path), "nothing.json")


def main(argv):
    selected = [(n, f) for n, f in CASES if not argv or any(a in n for a in argv)]
    print(f"1..{len(selected)}")
    failed = 0
    for k, (name, fn) in enumerate(selected, 1):
        try:
            fn()
        except Exception:
            failed += 1
            for line in traceback.format_exc().splitlines():
                print(f"# {line}")
            print(f"not ok {k} {name}")
        else:
            print(f"ok {k} {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
