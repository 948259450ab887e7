#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""tools/gst-rnn-convert on every input format it reads, and rnnfilter on
what it writes (TAP output).

For each format a file is written here from random weights the way that
format's own tools write it (torch.jit.save, torch.save of a state_dict,
torch.onnx.export, RTNeural Keras and PyTorch JSON, a GuitarML SimpleRNN
JSON, a NAM LSTM); the real command converts it with its check on, then
gst-launch-1.0 plays the result through rnnfilter in buffers of several
sizes, and the output must equal the format's own float64 computation
(PyTorch in float64, or the format's reference in gstrnn.formats) to 1e-5
relative to max(1, |y|) over 1200 steps.  Refusals: a forward() that the
file cannot express (a softmax, a scaled skip, a wrongly chosen head) is
refused by the check and nothing is written; layers gst-rnn has no form
for are refused by name.

Needs numpy, torch (onnx for the ONNX cases) and gst-launch-1.0 with the
plugin on GST_PLUGIN_PATH.  Usage: test-convert.py [SUBSTRING...]
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
CONVERT = os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools", "gst-rnn-convert")

try:
    import numpy as np
    import torch
    from torch import nn
except ImportError as e:
    print(f"1..0 # SKIP needs python3-numpy and python3-torch ({e})")
    sys.exit(0)
try:
    import onnx  # noqa: F401
except ImportError:
    onnx = None
if shutil.which("gst-launch-1.0") is None:
    print("1..0 # SKIP needs gst-launch-1.0 (gstreamer1.0-tools)")
    sys.exit(0)

import gstrnn  # noqa: E402
from gstrnn.formats import guitarml, nam, rtneural  # noqa: E402

torch.set_num_threads(1)
TOL = 1e-5
STEPS = 1200
TMP = tempfile.mkdtemp(prefix="gstrnn-convert-")
CASES = []
NOTES = []


def case(name, needs_onnx=False):
    def wrap(fn):
        CASES.append((name, fn, needs_onnx))
        return fn
    return wrap


def tmp(name):
    return os.path.join(TMP, name)


def note(text):
    NOTES.append(text)


def signal(T, channels, seed):
    """Noise then a sweep, as a stream [T][channels] in float64."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None]
    x = 0.6 * rng.standard_normal((T, channels))
    x[T // 2:] = 0.9 * np.sin(2 * np.pi * 0.01 * (1 + t[T // 2:] / T) * t[T // 2:]
                              + np.arange(channels))
    return x


def randomize(module, seed, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype) * 2 * scale - scale)
    return module


def convert(*argv):
    """The installed-style command in a subprocess: (status, stdout, stderr)."""
    p = subprocess.run([sys.executable, CONVERT] + [str(a) for a in argv],
                       capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def converted(src, out, *argv, check_line=True):
    status, so, se = convert(src, out, *argv)
    assert status == 0, f"exit {status}: {se}"
    if check_line:
        assert "check: max |difference|" in so, so
    note(so.strip().splitlines()[0])
    return gstrnn.load(out)[0]


def gst_rnnfilter(model, x, rate, blocksize, props=""):
    """x [T][C] through filesrc blocksize=... ! rawaudioparse ! rnnfilter ! filesink."""
    src, dst = tmp("in.f32"), tmp("out.f32")
    np.ascontiguousarray(x, dtype="<f4").tofile(src)
    if os.path.exists(dst):
        os.unlink(dst)
    cmd = ["gst-launch-1.0", "-q", "filesrc", f"location={src}", f"blocksize={blocksize}",
           "!", "rawaudioparse", "use-sink-caps=false", "format=pcm", "pcm-format=f32le",
           f"sample-rate={rate}", f"num-channels={x.shape[1]}", "!", "rnnfilter",
           f"model-location={model}"] + props.split() + ["!", "filesink", f"location={dst}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"gst-launch-1.0 failed: {p.stderr}{p.stdout}"
    return np.fromfile(dst, dtype="<f4").astype(np.float64)


def equal_through_rnnfilter(model, x, want, rate=48000, props=""):
    """rnnfilter's output = want (float64) in buffers of several sizes."""
    assert x.shape[0] >= 1000
    C = x.shape[1]
    want = np.asarray(want, np.float64)
    worst = 0.0
    for frames in (1, 37, 1000, 4096):
        got = gst_rnnfilter(model, x, rate, 4 * C * frames, props).reshape(want.shape)
        diff = np.abs(got - want) / np.maximum(1.0, np.abs(want))
        bad = np.argwhere(~(diff <= TOL))
        assert not len(bad), (f"buffers of {frames} frames: step {bad[0][0]}, output "
                              f"{bad[0][1]}: rnnfilter {got[tuple(bad[0])]:.7g}, reference "
                              f"{want[tuple(bad[0])]:.7g}")
        worst = max(worst, float(np.max(np.abs(got - want))))
    note(f"rnnfilter vs the source's float64 semantics, buffers of 1/37/1000/4096 frames, "
         f"{x.shape[0]} steps: max |difference| {worst:.3g}")
    return worst


def torch64(module, x, batch_first=True):
    """A module's own forward() in float64 on one stream x [T][I] -> [T][O]."""
    m = module.double().eval() if not isinstance(module, torch.jit.ScriptModule) else module
    t = torch.from_numpy(np.asarray(x, np.float64))
    with torch.no_grad():
        y = m(t[None] if batch_first else t[:, None])
    if isinstance(y, tuple):
        y = y[0]
    return (y[0] if batch_first else y[:, 0]).numpy()


def write_json(name, doc):
    path = tmp(name)
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


# --------------------------------------------------------------------------
# modules, as users write them


class AmpRNN(nn.Module):
    """GuitarML's SimpleRNN: out = lin(rec(x)) + x (the skip)."""

    def __init__(self, H=8, scale=1.0):
        super().__init__()
        self.rec = nn.LSTM(1, H, batch_first=True)
        self.lin = nn.Linear(H, 1)
        self.scale = scale

    def forward(self, x):
        return self.lin(self.rec(x)[0]) + self.scale * x


class ChaosGRU(nn.Module):
    """out = lin(gru(x)) + x, [tanh], with recurrent weights large enough
    that float32 rounding sends the state onto another trajectory on the
    check signal (as in some published GRU amp models)."""

    def __init__(self, H=64, squash: bool = False):
        super().__init__()
        self.rec = nn.GRU(1, H, batch_first=True)
        self.lin = nn.Linear(H, 1)
        self.squash = squash

    def forward(self, x):
        y = self.lin(self.rec(x)[0]) + x
        if self.squash:
            y = torch.tanh(y)
        return y


class Classifier(nn.Module):
    """A GRU with a softmax taken in forward(), where no submodule shows it."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 6, batch_first=True)
        self.out = nn.Linear(6, 4)

    def forward(self, x):
        return torch.softmax(self.out(self.gru(x)[0]), dim=-1)


class DeepHead(nn.Module):
    """Linear -> tanh -> LSTM(2 layers) -> Linear -> ReLU -> Linear, by submodules."""

    def __init__(self, mid=6):
        super().__init__()
        self.inp = nn.Linear(2, 5)
        self.act = nn.Tanh()
        self.lstm = nn.LSTM(5, 7, num_layers=2)
        self.hidden = nn.Linear(7, mid)
        self.relu = nn.ReLU()
        self.out = nn.Linear(mid, 3)

    def forward(self, x):
        h = self.lstm(self.act(self.inp(x)))[0]
        return self.out(self.relu(self.hidden(h)))


class ReluHead(nn.Module):
    """LSTM -> Linear -> ReLU -> Linear."""

    def __init__(self, mid):
        super().__init__()
        self.lstm = nn.LSTM(2, 7, batch_first=True)
        self.hidden = nn.Linear(7, mid)
        self.relu = nn.ReLU()
        self.out = nn.Linear(mid, 3)

    def forward(self, x):
        return self.out(self.relu(self.hidden(self.lstm(x)[0])))


class Tagger(nn.Module):
    """A bidirectional GRU tagging each step of a window, sigmoid in forward()."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(2, 4, num_layers=2, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return torch.sigmoid(self.fc(self.gru(x)[0]))


class Wide(nn.Module):
    """12 inputs, 10 outputs: more channels than a positioned audio layout."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(12, 5, batch_first=True)
        self.out = nn.Linear(5, 10)

    def forward(self, x):
        return self.out(self.lstm(x)[0])


class ConvFront(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, padding=1)
        self.rnn = nn.GRU(4, 5, batch_first=True)
        self.lin = nn.Linear(5, 1)

    def forward(self, x):
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return self.lin(self.rnn(h)[0])


def scripted(module, name):
    path = tmp(name)
    torch.jit.save(torch.jit.script(module.eval()), path)
    return path


# --------------------------------------------------------------------------
# each format: convert with the check, then rnnfilter = the source


@case("torchscript/skip-detected")
def _():
    torch.manual_seed(1)
    net = randomize(AmpRNN(), 2)
    src = scripted(net, "amp.pt")
    out = tmp("amp.safetensors")
    meta = converted(src, out)
    assert meta["skip"] == "1" and meta["source_format"] == "torchscript" \
        and meta["source_file"] == "amp.pt", meta
    x = signal(STEPS, 1, 3)
    equal_through_rnnfilter(out, x, torch64(net, x))


@case("torchscript/amplifying-model")
def _():
    # float32 arithmetic alone leaves the 1e-4 tolerance on this model; the
    # check accepts it because in float64 the written model computes what
    # forward() computes, and says so
    net = randomize(ChaosGRU(), 25, scale=1.0)
    src = scripted(net, "chaos.pt")
    out = tmp("chaos.safetensors")
    status, so, se = convert(src, out)
    assert status == 0, se
    assert "amplifies float32 rounding" in so and "check: max |difference|" in so, so
    assert gstrnn.load(out)[0]["skip"] == "1"
    note(so.strip().splitlines()[1])


@case("torchscript/amplifying-model-wrong-semantics-refused")
def _():
    # the same model with a tanh in forward(): amplified rounding must not
    # cover a piece the file lacks
    net = randomize(ChaosGRU(squash=True), 25, scale=1.0)
    src = scripted(net, "chaos-tanh.pt")
    out = tmp("chaos-tanh.safetensors")
    status, so, se = convert(src, out)
    assert status == 1 and "check failed, nothing written" in se, (so, se)
    assert not os.path.exists(out)


@case("torchscript/scaled-skip-refused")
def _():
    net = randomize(AmpRNN(scale=0.5), 4)
    src = scripted(net, "amp-half.pt")
    out = tmp("amp-half.safetensors")
    status, so, se = convert(src, out)
    assert status == 1 and "check failed, nothing written" in se and "first at step" in se, se
    assert not os.path.exists(out)
    note(se.strip())


@case("torchscript/softmax-in-forward-refused")
def _():
    net = randomize(Classifier(), 5)
    src = scripted(net, "classifier.pt")
    out = tmp("classifier.safetensors")
    with open(out, "wb") as f:
        f.write(b"an older file")        # left as it was by a refused conversion
    status, so, se = convert(src, out)
    assert status == 1 and "check failed, nothing written" in se and "output" in se, se
    with open(out, "rb") as f:
        assert f.read() == b"an older file"
    assert not [n for n in os.listdir(TMP) if n.startswith(".gst-rnn-convert-")]
    note(se.strip())
    # told what forward() does, it converts and matches
    os.unlink(out)
    meta = converted(src, out, "--head-activation", "softmax", "--labels", "a,b,c,d")
    assert meta["head_activation"] == "softmax" and meta["labels"] == "a,b,c,d", meta
    x = signal(STEPS, 3, 6)
    equal_through_rnnfilter(out, x, torch64(net, x))


@case("torchscript/pre-post-layers")
def _():
    net = randomize(DeepHead(), 7)
    src = scripted(net, "deep.pt")
    out = tmp("deep.safetensors")
    meta = converted(src, out, "--sample-rate", "16000", "--description", "deep")
    assert meta["pre_activations"] == "tanh" and meta["post_activations"] == "relu" \
        and meta["sample_rate"] == "16000", meta
    x = signal(STEPS, 2, 8)
    equal_through_rnnfilter(out, x, torch64(net, x, batch_first=False), rate=16000)


@case("torchscript/wrong-head-refused")
def _():
    # Linear -> ReLU -> Linear after the LSTM, and --head naming the last one
    # alone: of the same shapes, the check refuses it; of other shapes, the
    # file's description does
    for mid, expect in ((7, "check failed, nothing written"),
                        (6, "head.weight reads 6 values, the layer before gives 7")):
        net = randomize(ReluHead(mid), 7)
        src = scripted(net, f"relu-head-{mid}.pt")
        out = tmp(f"deep-wrong-{mid}.safetensors")
        status, so, se = convert(src, out, "--head", "out")
        assert status == 1 and expect in se, se
        assert not os.path.exists(out)
        note(se.strip())
        converted(src, out)          # read by its submodules, it converts


@case("torchscript/bidirectional-windows")
def _():
    net = randomize(Tagger(), 33)
    src = scripted(net, "tagger.pt")
    out = tmp("tagger.safetensors")
    status, so, se = convert(src, out, "--window", "40")
    assert status == 1 and "check failed, nothing written" in se, se
    meta = converted(src, out, "--window", "40", "--head-activation", "sigmoid")
    assert meta["window"] == "40" and meta["bidirectional"] == "true", meta
    x = signal(STEPS, 2, 34)          # 30 windows of 40 steps, each one sequence
    want = np.concatenate([torch64(net, x[s:s + 40]) for s in range(0, STEPS, 40)])
    equal_through_rnnfilter(out, x, want)


@case("torchscript/traced")
def _():
    net = randomize(AmpRNN(H=6), 9)
    src = tmp("traced.pt")
    torch.jit.save(torch.jit.trace(net.eval(), torch.zeros(1, 10, 1)), src)
    out = tmp("traced.safetensors")
    meta = converted(src, out)
    assert meta["skip"] == "1", meta
    x = signal(STEPS, 1, 10)
    equal_through_rnnfilter(out, x, torch64(net, x))


@case("refused-by-name")
def _():
    src = scripted(randomize(ConvFront(), 11), "conv.pt")
    status, so, se = convert(src, tmp("conv.safetensors"))
    assert status == 1 and "conv: Conv1d" in se, se
    note(se.strip())
    doc = {"version": "0.5.4", "architecture": "WaveNet", "config": {}, "weights": [],
           "sample_rate": 48000}
    status, so, se = convert(write_json("wavenet.nam", doc), tmp("wavenet.safetensors"))
    assert status == 1 and "architecture 'WaveNet'" in se, se
    note(se.strip())
    rng = np.random.default_rng(0)
    doc = {"in_shape": [None, None, 1], "layers": [
        {"type": "conv1d", "activation": "", "shape": [None, None, 4], "kernel_size": [3],
         "dilation": [1], "weights": [rng.uniform(-1, 1, (3, 1, 4)).tolist(),
                                      np.zeros(4).tolist()]},
        {"type": "gru", "activation": "tanh", "shape": [None, None, 2],
         "weights": [np.zeros((4, 6)).tolist(), np.zeros((2, 6)).tolist(),
                     np.zeros((2, 6)).tolist()]}]}
    status, so, se = convert(write_json("conv.json", doc), tmp("conv2.safetensors"))
    assert status == 1 and "conv1d" in se, se
    note(se.strip())
    deep = nn.Sequential(nn.GRU(1, 3), *[nn.Linear(3, 3) for _ in range(9)], nn.Linear(3, 1))
    torch.save(deep, tmp("deep.pt"))
    status, so, se = convert(tmp("deep.pt"), tmp("deep.safetensors"), "--no-check")
    assert status == 1 and "9 dense layers after the recurrent ones" in se, se
    note(se.strip())
    assert not os.path.exists(tmp("conv.safetensors"))


@case("pytorch/state-dict-graph-assumed")
def _():
    torch.manual_seed(12)
    gru, head = nn.GRU(2, 5, num_layers=2), nn.Linear(5, 3)
    sd = {f"rnn.{k}": v for k, v in gru.state_dict().items()}
    sd.update({f"head.{k}": v for k, v in head.state_dict().items()})
    src = tmp("sd.pt")
    torch.save(sd, src)
    out = tmp("sd.safetensors")
    status, so, se = convert(src, out, "--head-activation", "tanh")
    assert status == 0, se
    assert "graph assumed: input -> gru 2->5 x2 -> head Linear 5->3 tanh" in so, so
    assert "warning:" in se and "TorchScript" in se and "ONNX" in se, se
    assert "check:" not in so, so               # no runnable source: not checked by default
    meta, _ = gstrnn.load(out)
    assert meta["source_format"] == "pytorch" and meta["source_file"] == "sd.pt", meta
    x = signal(STEPS, 2, 13)
    want = torch.tanh(head.double()(gru.double()(torch.from_numpy(x)[:, None])[0]))[:, 0]
    equal_through_rnnfilter(out, x, want.detach().numpy())


@case("pytorch/whole-module-class-file")
def _():
    classes = tmp("deepdef.py")
    with open(classes, "w") as f:
        f.write("import torch\nfrom torch import nn\n\n"
                "class Net(nn.Module):\n"
                "    def __init__(self):\n"
                "        super().__init__()\n"
                "        self.rnn = nn.RNN(1, 6, nonlinearity='relu', batch_first=True)\n"
                "        self.mid = nn.Sequential(nn.Linear(6, 4), nn.Sigmoid())\n"
                "        self.out = nn.Linear(4, 1)\n"
                "    def forward(self, x):\n"
                "        return self.out(self.mid(self.rnn(x)[0]))\n")
    saver = ("import sys, torch\n"
             "exec(open(sys.argv[1]).read())\n"
             "torch.manual_seed(14)\ntorch.save(Net(), sys.argv[2])\n")
    pt = tmp("whole.pt")
    subprocess.run([sys.executable, "-c", saver, classes, pt], check=True)
    out = tmp("whole.safetensors")
    meta = converted(pt, out, "--class-file", classes)
    assert meta["cell"] == "rnn_relu" and meta["post_activations"] == "sigmoid", meta
    ns = {}
    exec(open(classes).read(), ns)
    torch.manual_seed(14)
    net = ns["Net"]()
    x = signal(STEPS, 1, 15)
    equal_through_rnnfilter(out, x, torch64(net, x))


@case("pytorch/live-module-export")
def _():
    net = randomize(DeepHead(), 16)
    out = tmp("live.safetensors")
    lines = gstrnn.export(net, out, sample_rate=8000)
    assert any(line.startswith("check: max |difference|") for line in lines), lines
    meta, _ = gstrnn.load(out)
    assert meta["source_format"] == "pytorch" and "source_file" not in meta, meta
    x = signal(STEPS, 2, 17)
    equal_through_rnnfilter(out, x, torch64(net, x, batch_first=False), rate=8000)
    try:
        gstrnn.export(randomize(Classifier(), 18), tmp("live-bad.safetensors"))
    except ValueError as e:
        assert "check failed" in str(e), e
        note(f"refused as expected: {e}")
    else:
        raise AssertionError("a softmax in forward() was not refused")
    assert not os.path.exists(tmp("live-bad.safetensors"))


@case("onnx/lstm-head", needs_onnx=True)
def _():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(2, 6, batch_first=True)
            self.fc = nn.Linear(6, 2)

        def forward(self, x):
            return torch.sigmoid(self.fc(self.rnn(x)[0]))

    net = randomize(Net(), 19).eval()
    src = tmp("net.onnx")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 10, 2),), src, input_names=["x"],
                          dynamic_axes={"x": {0: "batch", 1: "time"}})
    out = tmp("net-onnx.safetensors")
    meta = converted(src, out)
    assert meta["source_format"] == "onnx" and meta["head_activation"] == "sigmoid", meta
    x = signal(STEPS, 2, 20)
    equal_through_rnnfilter(out, x, torch64(net, x))


@case("rtneural/keras-json")
def _():
    rng = np.random.default_rng(21)

    def dense(n_in, n_out, act):
        return {"type": "dense", "activation": act, "shape": [None, None, n_out],
                "weights": [rng.uniform(-0.8, 0.8, (n_in, n_out)).tolist(),
                            rng.uniform(-0.3, 0.3, n_out).tolist()]}
    H = 6
    doc = {"in_shape": [None, None, 1], "layers": [
        {"type": "gru", "activation": "tanh", "shape": [None, None, H],
         "weights": [rng.uniform(-0.6, 0.6, (1, 3 * H)).tolist(),
                     rng.uniform(-0.6, 0.6, (H, 3 * H)).tolist(),
                     rng.uniform(-0.3, 0.3, (2, 3 * H)).tolist()]},
        dense(H, 4, "tanh"), dense(4, 1, "")]}
    src = write_json("keras.json", doc)
    out = tmp("keras.safetensors")
    meta = converted(src, out, "--sample-rate", "44100")
    assert meta["source_format"] == "rtneural-json" and meta["sample_rate"] == "44100", meta
    x = signal(STEPS, 1, 22)
    equal_through_rnnfilter(out, x, rtneural.reference(src, x), rate=44100)


@case("rtneural/torch-json")
def _():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(1, 8)
            self.dense = nn.Linear(8, 1)
    net = randomize(Net(), 23)
    src = write_json("torch.json", {k: v.tolist() for k, v in net.state_dict().items()})
    out = tmp("torch-json.safetensors")
    meta = converted(src, out, "--head-activation", "tanh")
    assert meta["source_format"] == "rtneural-json" and meta["head_activation"] == "tanh", meta
    x = signal(STEPS, 1, 24)
    equal_through_rnnfilter(out, x, rtneural.reference(src, x, head_activation="tanh"))


@case("guitarml/simplernn-json")
def _():
    rec, lin = randomize(nn.GRU(1, 10), 25), randomize(nn.Linear(10, 1), 26)
    sd = {f"rec.{k}": v.tolist() for k, v in rec.state_dict().items()}
    sd.update({f"lin.{k}": v.tolist() for k, v in lin.state_dict().items()})
    doc = {"model_data": {"model": "SimpleRNN", "input_size": 1, "skip": 1, "output_size": 1,
                          "unit_type": "GRU", "num_layers": 1, "hidden_size": 10,
                          "bias_fl": True}, "state_dict": sd}
    src = write_json("guitarml.json", doc)
    out = tmp("guitarml.safetensors")
    meta = converted(src, out)
    assert meta["source_format"] == "guitarml-json" and meta["skip"] == "1", meta
    x = signal(STEPS, 1, 27)
    equal_through_rnnfilter(out, x, guitarml.reference(src, x))


@case("nam/lstm")
def _():
    lstm, head = randomize(nn.LSTM(1, 8, 2), 28), randomize(nn.Linear(8, 1), 29)
    rng = np.random.default_rng(30)
    w = []
    for k in range(2):
        W = torch.cat([getattr(lstm, f"weight_ih_l{k}"), getattr(lstm, f"weight_hh_l{k}")], 1)
        b = getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}")
        w += W.flatten().tolist() + b.tolist()
        w += rng.uniform(-0.5, 0.5, 8).tolist() + rng.uniform(-0.5, 0.5, 8).tolist()
    w += head.weight.flatten().tolist() + head.bias.tolist()
    doc = {"version": "0.5.4", "metadata": {"name": "generated"}, "architecture": "LSTM",
           "config": {"input_size": 1, "hidden_size": 8, "num_layers": 2},
           "weights": w, "sample_rate": 48000}
    src = write_json("amp.nam", doc)
    out = tmp("nam.safetensors")
    meta = converted(src, out)
    assert meta["source_format"] == "nam" and meta["sample_rate"] == "48000", meta
    x = signal(STEPS, 1, 31)
    equal_through_rnnfilter(out, x, nam.reference(src, x))


@case("cli/format-detection-and-options")
def _():
    # a JSON of no known format is named as such; a misnamed extension does not matter
    status, so, se = convert(write_json("other.json", {"foo": 1}), tmp("o.safetensors"))
    assert status == 1 and "a JSON file of no model format" in se and "foo" in se, se
    net = randomize(AmpRNN(H=4), 32)
    src = scripted(net, "misnamed.json")
    status, so, se = convert(src, tmp("m.safetensors"), "--no-check")
    assert status == 0 and "check:" not in so, se
    status, so, se = convert(src, tmp("m.safetensors"), "--key", "x")
    assert status == 1 and "--key: not an option for TorchScript" in se, se
    status, so, se = convert(src, tmp("m.safetensors"), "--check", "--no-check")
    assert status == 2, se
    # more channels than rawaudioparse positions, and F_in frames a step
    src = scripted(randomize(Wide(), 35), "wide.pt")
    converted(src, tmp("wide.safetensors"))
    converted(src, tmp("wide-framed.safetensors"), "--frame-size", "3", "--output-frame-size", "2")


def main(argv):
    selected = [c for c in CASES if not argv or any(s in c[0] for s in argv)]
    print(f"1..{len(selected)}")
    failed = 0
    for k, (name, fn, needs_onnx) in enumerate(selected, 1):
        NOTES.clear()
        if needs_onnx and onnx is None:
            print(f"ok {k} {name} # SKIP needs python3-onnx")
            continue
        try:
            fn()
        except Exception:
            failed += 1
            print(f"not ok {k} {name}")
            for line in traceback.format_exc().splitlines():
                print(f"# {line}")
        else:
            print(f"ok {k} {name}")
        for text in NOTES:
            for line in text.splitlines():
                print(f"# {line}")
        sys.stdout.flush()
    if failed:
        print(f"# files of the failed run kept in {TMP}")
        return 1
    shutil.rmtree(TMP, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
