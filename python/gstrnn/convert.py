# SPDX-License-Identifier: LGPL-2.1-or-later
"""The command line of tools/gst-rnn-convert: a trained recurrent network
as a gst-rnn model file.

    gst-rnn-convert [--check | --no-check] [--format F] [options] IN OUT.safetensors

IN is recognised by its content (--format names it instead):

  torch          torch.save: a state_dict, a checkpoint dict holding one, or
                 a whole pickled nn.Module (--class-file for its classes)
  torchscript    torch.jit.save / torch.jit.trace files
  onnx           an ONNX ModelProto holding RNN / LSTM / GRU ops
  rtneural-json  RTNeural JSON (the Keras export and PyTorch state_dict JSON)
  guitarml-json  Automated-GuitarAmpModelling / GuitarML SimpleRNN JSON
  nam            Neural Amp Modeler .nam files of architecture LSTM

Every source becomes a gstrnn.model.Model.  The check plays the written
file through rnnfilter (gstrnn.rnnfilter: the C core, as a pipeline runs it)
and compares with the source's own computation: a module's forward(), the
ONNX graph evaluated in numpy, a JSON format's float64 reference.  Nothing
is written unless it passes.  Exit status: 0 written, 1 refused (the
message says why), 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import zipfile

import numpy as np

from .export import CELLS, HEAD_ACTIVATIONS
from .model import Model, ModelError

PROG = "gst-rnn-convert"
FORMATS = ("torch", "torchscript", "onnx", "rtneural-json", "guitarml-json", "nam")
SOURCE_FORMAT = {"torch": "pytorch", "torchscript": "torchscript", "onnx": "onnx",
                 "rtneural-json": "rtneural-json", "guitarml-json": "guitarml-json",
                 "nam": "nam"}
CHECK_STEPS = 1000
TOLERANCE = 1e-4
MAX_DENSE_LAYERS = 8        # RNN_MAX_DENSE_LAYERS of the core: pre layers, post layers each

# Options that mean something for some input formats only.
TORCH_ONLY = ("rnn", "head", "no_head", "key", "class_file", "cell", "input_size",
              "hidden_size", "num_layers", "norm_mean", "norm_std")
ONNX_ONLY = ("output_name", "zero_state_inputs")
# --head-activation: what a PyTorch file or RTNeural's PyTorch JSON does not say


class Refused(Exception):
    """The input cannot be converted; printed as 'gst-rnn-convert: error: ...'."""


class Usage(Exception):
    """A malformed option value (exit status 2)."""


MODULE_HINT = ("Something forward() does (a functional activation, a scaled skip, another "
               "order of the layers) has no place in this graph, or the head or activation "
               "was chosen wrongly (--head, --head-activation)")


class Source:
    """What a reader makes of the input: the Model, the source's own forward
    (x [T][I] -> [T][O], float64; None when the file holds no computation),
    and notes for the user."""

    def __init__(self, model, forward=None, notes=(), summary=""):
        self.model = model
        self.forward = forward
        self.notes = list(notes)
        self.summary = summary
        self.try_skip = False       # a module: its forward() may add the input
        self.fixed_steps = None     # an ONNX graph of fixed sequence length
        self.hint = ("The reader and the source disagree on this file's semantics: "
                     "please report it with the file")


# --------------------------------------------------------------------------
# what the input file is


def _varint(data, pos):
    value = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    return None, pos


def _is_onnx(data):
    """True if @data parses as protobuf fields of an ONNX ModelProto, with a
    graph (field 7) among them, to its last byte."""
    known = {1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 25}
    pos = 0
    fields = set()
    while pos < len(data):
        tag, pos = _varint(data, pos)
        if tag is None:
            return False
        field, wire = tag >> 3, tag & 7
        if field not in known:
            return False
        if wire == 0:
            value, pos = _varint(data, pos)
            if value is None:
                return False
        elif wire == 2:
            length, pos = _varint(data, pos)
            if length is None or pos + length > len(data):
                return False
            pos += length
        else:
            return False
        fields.add(field)
    return 7 in fields


def _describe_other(path, head):
    """What a file of no format this command reads is, as far as its first
    bytes say."""
    if not head:
        return "an empty file"
    if len(head) >= 8:
        n = struct.unpack("<Q", head[:8])[0]
        if head[8:9] == b"{" and n > 0:
            return ("a safetensors file (what gst-rnn loads already: give it to rnnfilter "
                    "as it is)")
    magic = [
        (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras .h5?); export it with RTNeural's "
                               "model_utils to JSON, or to ONNX"),
        (b"PK\x03\x04", "a zip archive without a PyTorch data.pkl (not written by torch.save)"),
        (b"\x1f\x8b", "a gzip file; unpack it first"),
        (b"\xfd7zXZ\x00", "an xz file; unpack it first"),
        (b"\x7fELF", "an executable (ELF)"),
        (b"RIFF", "a RIFF file (WAV audio?)"),
        (b"\x93NUMPY", "a numpy .npy array, not a model"),
    ]
    for prefix, what in magic:
        if head.startswith(prefix):
            return what
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "a binary file of no format gst-rnn-convert knows"
    return "a text file"


def _json_format(path):
    """The format of a JSON model file, or None if the file is not JSON."""
    from . import formats
    try:
        with open(path, "rb") as f:
            import json
            doc = json.loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    try:
        return formats.detect(path)
    except ModelError:
        keys = ", ".join(list(doc)[:8]) if isinstance(doc, dict) else type(doc).__name__
        raise Refused(f"{path}: a JSON file of no model format gst-rnn-convert reads "
                      f"(RTNeural, GuitarML SimpleRNN, Neural Amp Modeler); it holds: "
                      f"{keys}") from None


def detect(path):
    """The format (one of FORMATS) of the file at @path; Refused naming what
    it is otherwise."""
    if os.path.isdir(path):
        raise Refused(f"{path}: is a directory (a TensorFlow SavedModel?); give a model file")
    if not os.path.isfile(path):
        raise Refused(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            names = []
        if any(n.endswith("/code/__torch__.py") or n.endswith("/constants.pkl")
               for n in names):
            return "torchscript"
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "torch"
    elif head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "torch"          # a pickle: torch.save's legacy format
    elif head[:1] == b"\x08":
        with open(path, "rb") as f:
            data = f.read()
        if _is_onnx(data):
            return "onnx"
    elif head.lstrip()[:1] in (b"{", b"["):
        fmt = _json_format(path)
        if fmt is not None:
            return fmt
    raise Refused(f"{path}: not a model file gst-rnn-convert reads (PyTorch, TorchScript, "
                  f"ONNX, RTNeural or GuitarML JSON, NAM): {_describe_other(path, head)}")


# --------------------------------------------------------------------------
# the readers


def _not_for(args, names, fmt):
    given = [n for n in names if getattr(args, n) not in (None, False)]
    if given:
        opts = ", ".join("--" + n.replace("_", "-") for n in given)
        raise Refused(f"{args.input}: {opts}: not an option for {fmt} input")


def _read_torch(args):
    from .torch_import import ExportError, read
    _not_for(args, ONNX_ONLY, "PyTorch")
    try:
        return read(args)
    except ExportError as e:
        raise Refused(str(e)) from None


def _read_torchscript(args):
    _not_for(args, ONNX_ONLY + ("key", "class_file", "norm_mean", "norm_std"), "TorchScript")
    from .torch_import import ExportError, _torch
    from . import torch_modules
    try:
        torch = _torch()
    except ExportError as e:
        raise Refused(str(e)) from None
    try:
        module = torch.jit.load(args.input, map_location="cpu")
    except Exception as e:  # noqa: BLE001  whatever torch.jit.load says of the file
        raise Refused(f"{args.input}: torch.jit.load cannot read it: {type(e).__name__}: "
                      f"{str(e).splitlines()[0] if str(e) else ''}") from None
    model, batch_first, notes = torch_modules.from_module(
        module, rnn=args.rnn, head=args.head, no_head=args.no_head, cell=args.cell)
    torch_modules.set_head_activation(model, args.head_activation)
    src = Source(model, torch_modules.source_forward(module, batch_first), notes)
    src.try_skip = not (args.head or args.no_head)
    src.hint = MODULE_HINT
    return src


def _read_onnx(args):
    from .onnx_import import OnnxImportError, convert
    _not_for(args, TORCH_ONLY + ("head_activation",), "ONNX")
    from .export import load
    fd, tmp = tempfile.mkstemp(prefix=".gst-rnn-convert-", suffix=".safetensors",
                               dir=os.path.dirname(os.path.abspath(args.output)))
    os.close(fd)
    try:
        r = convert(args.input, tmp, output=args.output_name,
                    zero_state_inputs=args.zero_state_inputs, window=args.window)
        meta, tensors = load(tmp)
    except (OnnxImportError, ValueError) as e:
        raise Refused(f"{args.input}: {e}") from None
    finally:
        os.unlink(tmp)
    model = Model.from_file(meta, {k: np.asarray(v, np.float64) for k, v in tensors.items()})
    notes = list(r["notes"])
    notes.insert(0, f"the graph's ops around the recurrent layers agree with the converted "
                    f"model on a random input: max |difference| {r['max_error']:.3g} "
                    f"(opset {r['opset']}, output {r['output']})")
    src = Source(model, r["forward"], notes)
    src.fixed_steps = r.get("fixed_steps")
    return src


def _read_json(args, fmt):
    _not_for(args, TORCH_ONLY + ONNX_ONLY
             + (("head_activation",) if fmt != "rtneural-json" else ()), fmt)
    from . import formats
    module = formats.READERS[fmt]
    kwargs = {}
    if fmt == "rtneural-json" and args.head_activation is not None:
        kwargs["head_activation"] = args.head_activation
    model = module.read(args.input, **kwargs)
    return Source(model, lambda x: module.reference(args.input, x, **kwargs))


def read_source(args, fmt):
    """The Source of args.input in format @fmt."""
    try:
        if fmt == "torch":
            return _read_torch(args)
        if fmt == "torchscript":
            return _read_torchscript(args)
        if fmt == "onnx":
            return _read_onnx(args)
        return _read_json(args, fmt)
    except ModelError as e:
        text = str(e)
        raise Refused(text if text.startswith(args.input) else f"{args.input}: {text}") from None
    except (Refused, Usage):
        raise
    except Exception as e:  # noqa: BLE001  a file no reader foresaw: say so, no traceback
        raise Refused(f"{args.input}: cannot read it as {fmt}: {type(e).__name__}: "
                      f"{str(e).splitlines()[0] if str(e) else ''}") from None


# --------------------------------------------------------------------------
# the check


def check_input(model, steps=CHECK_STEPS, seed=0):
    """A test signal [T][I]: noise, a sweep and silence, mostly within [-1, 1]."""
    rng = np.random.default_rng(seed)
    T, I = steps, model.input_size
    t = np.arange(T)[:, None]
    x = 0.5 * rng.standard_normal((T, I))
    x[T // 2:] = 0.8 * np.sin(2 * np.pi * (0.002 + 0.1 * t[T // 2:] / T) * t[T // 2:]
                              + np.arange(I)[None, :])
    x[-T // 10:] = 0.0
    return x


def compare(got, want, tolerance):
    """(ok, max difference, message) of rnnfilter's output against the source's."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    if got.shape != want.shape:
        return False, float("inf"), (f"the written model gives {list(got.shape)} values "
                                     f"(steps x outputs), the source {list(want.shape)}")
    diff = np.abs(got - want)
    scaled = diff / np.maximum(1.0, np.abs(want))
    worst = float(np.max(diff)) if diff.size else 0.0
    bad = np.argwhere(~(scaled <= tolerance))
    if not len(bad):
        return True, worst, ""
    t, o = (int(v) for v in bad[0])
    return False, worst, (f"first at step {t}, output {o}: the written model gives "
                          f"{got[t, o]:.6g}, the source {want[t, o]:.6g} (max |difference| "
                          f"{worst:.3g} over {got.shape[0]} steps; tolerance {tolerance:g} "
                          "relative to max(1, |y|))")


def _run_file(path, model, x, window):
    from .rnnfilter import RnnfilterError, run
    try:
        return run(path, x, frame_size=model.frame_size or 1, output_size=model.output_size,
                   rate=model.sample_rate or 48000 * (model.frame_size or 1), window=window)
    except RnnfilterError as e:
        if e.element_error:
            raise Refused(f"check failed, nothing written: rnnfilter refuses the written "
                          f"model: {e.element_error}") from None
        raise Refused(f"cannot run the check: {e} (or convert with --no-check)") from None


def _windowed(fn, x, window, **kw):
    """fn (x) on the whole of x, or window by window (bidirectional models)."""
    if window:
        return np.concatenate([fn(x[s:s + window], **kw) for s in range(0, len(x), window)])
    return fn(x, **kw)


def _source_run(src, x, window):
    """The source's forward on x, once per layout it may mean."""
    fn = src.forward
    return [_windowed(fn, x, window, **({} if layout is None else {"layout": layout}))
            for layout in getattr(fn, "layouts", [None])]


def _skip_candidates(model):
    if model.skip or (model.frame_size or 1) != 1 or (model.output_frame_size or 1) != 1:
        return []
    O, I = model.output_size, model.input_size
    return [n for n in dict.fromkeys((O, 1)) if n <= I]


def check(src, tmp, args):
    """Run the file at tmp through rnnfilter and compare with the source;
    returns lines to print, or raises Refused (the caller removes tmp)."""
    model = src.model
    steps = args.check_steps
    window = None
    if model.bidirectional:
        window = model.window or src.fixed_steps or 50
        steps = max(window, (steps // window) * window)
    elif src.fixed_steps:
        steps = src.fixed_steps
    x = check_input(model, steps)
    got = _run_file(tmp, model, x, window if not model.window else None)
    try:
        wants = _source_run(src, x, window)
    except ModelError as e:
        raise Refused(f"{args.input}: {e}") from None
    outcomes = [compare(got, want, args.tolerance) for want in wants]
    best = min(range(len(wants)), key=lambda k: (not outcomes[k][0], outcomes[k][1]))
    ok, worst, why = outcomes[best]
    if ok:
        return [f"check: max |difference| {worst:.3g} between the written file through "
                f"rnnfilter and the source's own forward, {steps} steps"]
    # a residual skip the submodules do not show (out = lin(h) + x): seen
    # in rnnfilter's output plus the input, or (for a model that amplifies
    # rounding) in the model with the skip evaluated in float64
    if src.try_skip:
        for n in _skip_candidates(model):
            model.skip = n
            try:
                ref = _model_run(model, x, window, np.float64)
            except ModelError:
                ref = None
            for want in wants:
                if not (compare(got + x[:, :n], want, args.tolerance)[0]
                        or (ref is not None and compare(ref, want, SEMANTICS_TOLERANCE)[0])):
                    continue
                model.to_safetensors(tmp)
                got2 = _run_file(tmp, model, x, window if not model.window else None)
                ok2, worst2, _ = compare(got2, want, args.tolerance)
                found = [f"note: forward() adds the first {n} input channel(s) to the "
                         f"output: written as skip = {n}"]
                if ok2:
                    return found + [f"check: max |difference| {worst2:.3g} between the "
                                    f"written file through rnnfilter and the source's own "
                                    f"forward, {steps} steps"]
                lines, _ = _float32_allowance(model, x, got2, want, window, args.tolerance)
                if lines:
                    return found + lines
            model.skip = 0
        model.to_safetensors(tmp)
    # a model that amplifies rounding: float32 arithmetic alone moves it
    lines, hint = _float32_allowance(model, x, got, wants[best], window, args.tolerance)
    if lines:
        return lines
    raise Refused(f"{args.input}: check failed, nothing written: the converted model "
                  f"({describe(model)}) does not compute what the source computes: {why}.  "
                  + (hint or src.hint))


# the written model's semantics, evaluated in float64, must equal the
# source's to this (relative to max(1, |y|)) before float32 rounding may
# explain a larger difference
SEMANTICS_TOLERANCE = 1e-6


def _model_run(model, x, window, dtype):
    return _windowed(model.forward, x, window, dtype=dtype)


def _first_beyond(got, want, tolerance):
    scaled = np.abs(np.asarray(got, np.float64) - want) / np.maximum(1.0, np.abs(want))
    bad = np.argwhere(~(scaled <= tolerance))
    return int(bad[0][0]) if len(bad) else None


def torch_float32(model, x):
    """The model's forward in PyTorch float32 (x [T][I] one stream), the
    error a PyTorch user sees from their own float32 run; None without
    torch or for a cell PyTorch has no module of."""
    try:
        import torch
    except ImportError:
        return None
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn_tanh": torch.nn.RNN,
           "rnn_relu": torch.nn.RNN}.get(model.cell)
    if cls is None:
        return None
    acts = {"none": lambda v: v, "tanh": torch.tanh, "relu": torch.relu,
            "sigmoid": torch.sigmoid, "elu": torch.nn.functional.elu,
            "softmax": lambda v: torch.softmax(v, -1)}
    f32 = torch.float32

    def t(a):
        return torch.tensor(np.asarray(a), dtype=f32)

    def dense(layer, act, v):
        return acts[act](v @ t(layer.weight).T + t(layer.bias))

    kw = {"nonlinearity": model.cell[4:]} if model.cell.startswith("rnn_") else {}
    with torch.no_grad():
        rnn = cls(model.pre[-1].out_size if model.pre else model.input_size,
                  model.hidden_size, num_layers=model.num_layers,
                  bidirectional=model.bidirectional, batch_first=True, **kw)
        for k, v in model.rnn.items():
            getattr(rnn, k).copy_(t(v))
        raw = t(x)
        v = raw
        if model.input_mean is not None:
            v = (v - t(model.input_mean)) / t(model.input_std)
        for layer in model.pre:
            v = dense(layer, layer.activation, v)
        state = None
        if model.h0 is not None:
            h0 = t(model.h0)[:, None]
            state = (h0, t(model.c0)[:, None] if model.c0 is not None
                     else torch.zeros_like(h0)) if model.cell == "lstm" else h0
        v = rnn(v[None], state)[0][0]
        for layer in model.post:
            v = dense(layer, layer.activation, v)
        if model.head is not None:
            v = dense(model.head, model.head_activation, v)
        if model.skip:
            v = v + raw[:, :model.skip]
    return v.double().numpy()


def _float32_allowance(model, x, got, want, window, tolerance):
    """(lines to print, None) if the difference is float32 rounding
    amplified by the model; else (None, a hint for the refusal, or None).

    Some trained recurrent models (large recurrent weights, GRUs near a
    bifurcation) amplify the rounding of each step; on the check signal
    the source framework's own float32 forward is then far from its
    float64 evaluation too (PyTorch float32 is 0.09-0.13 off float64 on
    published GRU-64 amp models over 1,000 steps of this signal).  Such a
    difference is accepted only if: the model as written, evaluated in
    float64, computes what the source computes (so the semantics are
    right); and against the same model evaluated in float32 arithmetic
    (numpy, and PyTorch's own float32 forward where torch is there; `own`
    the larger distance from float64): rnnfilter is within 4 x own (one step of
    the core is up to twice a framework's float32 error, e.g. a median
    4.9e-8 against PyTorch's 2.6e-8 on a published GRU-64), or, where
    float32 arithmetic alone leaves the tolerance at step t32, rnnfilter
    leaves it no earlier than t32 / 2."""
    try:
        ref64 = _model_run(model, x, window, np.float64)
        ref32 = _model_run(model, x, window, np.float32)
    except ModelError:
        return None, None
    if not compare(ref64, want, SEMANTICS_TOLERANCE)[0]:
        return None, None
    own = float(np.max(np.abs(np.asarray(ref32, np.float64) - ref64)))
    # PyTorch's own float32 run, where it can make one (not per window)
    try:
        torch32 = None if window else torch_float32(model, x)
    except Exception:  # noqa: BLE001  a yardstick only: without it, numpy's
        torch32 = None
    if torch32 is not None and torch32.shape == ref64.shape:
        own = max(own, float(np.max(np.abs(torch32 - ref64))))
    worst = float(np.max(np.abs(np.asarray(got, np.float64) - want)))
    if not np.isfinite(worst):
        return None, None
    t32 = _first_beyond(ref32, ref64, tolerance)
    ours = _first_beyond(got, want, tolerance)
    if worst <= 4 * own:
        why = "within 4 x that"
    elif t32 is not None and ours is not None and 2 * ours >= t32:
        why = (f"leaving the tolerance at step {ours}, where float32 arithmetic alone "
               f"leaves it at step {t32}")
    else:
        return None, (f"In float64 the written model computes what the source computes; "
                      f"rnnfilter's float32 output is {worst:.3g} off, more than 4 x the "
                      f"{own:.3g} that float32 arithmetic alone gives on this model.  To "
                      f"accept that, convert with --tolerance {1.01 * worst:.2g}")
    return [f"note: this model amplifies float32 rounding: the same model in float32 "
            f"arithmetic (numpy, PyTorch) is {own:.3g} off its float64 evaluation over {len(x)} steps; "
            f"in float64 it computes what the source computes",
            f"check: max |difference| {worst:.3g} between the written file through "
            f"rnnfilter and the source's own forward (float64), {why}"], None


def describe(model):
    from .torch_modules import describe as d
    return d(model)


def export_module(module, path, *, norm_mean=None, norm_std=None, head_activation=None,
                  frame_size=None, output_frame_size=None, window=None, sample_rate=None,
                  description=None, extra_meta=None, labels=None, check=True,
                  tolerance=None):
    """gstrnn.export(module, path, ...): a live nn.Module through the same
    reading and check as a whole module file; the report lines, or ValueError."""
    argv = ["<live module>", os.fspath(path), "--check" if check else "--no-check"]
    for option, value in (("--frame-size", frame_size),
                          ("--output-frame-size", output_frame_size), ("--window", window),
                          ("--sample-rate", sample_rate), ("--description", description),
                          ("--head-activation", head_activation), ("--tolerance", tolerance)):
        if value is not None:
            argv += [option, str(value)]
    if labels is not None:
        argv += ["--labels", ",".join(labels)]
    if norm_mean is not None or norm_std is not None:
        argv += ["--norm-mean", ",".join(str(float(v)) for v in np.ravel(norm_mean)),
                 "--norm-std", ",".join(str(float(v)) for v in np.ravel(norm_std))]
    for key, value in (extra_meta or {}).items():
        argv += ["--meta", f"{key}={value}"]
    args = _parser().parse_args(argv)
    from .torch_import import ExportError, read
    try:
        return convert(args, source=lambda: read(args, obj=module), fmt="torch")
    except (Refused, ExportError) as e:
        raise ValueError(str(e).replace("convert with --no-check", "export with check=False")) \
            from None


# --------------------------------------------------------------------------
# the command


def _parser():
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Convert a trained recurrent network into a gst-rnn model file for "
                    "rnnfilter.  IN is recognised by its content: PyTorch (torch.save: "
                    "state_dict, checkpoint or whole module), TorchScript (torch.jit.save), "
                    "ONNX, RTNeural JSON (Keras or PyTorch kind), GuitarML SimpleRNN JSON, "
                    "Neural Amp Modeler .nam (LSTM).",
        epilog="The check (default when the source can be run: TorchScript, a whole module, "
               "ONNX, the JSON formats) plays the written file through rnnfilter and compares "
               "it with the source's own forward(), graph or reference; on a mismatch nothing "
               "is written and the first step and output that differ are named.  A bare "
               "state_dict holds no forward(): the graph assumed is printed and the check "
               "(with --check) can only compare with that graph.  "
               "PyTorch modules are read as [Linear [act]]... RNN/LSTM/GRU [Linear [act]]... in "
               "registration order, the last Linear being the head; --rnn/--head/--no-head "
               "name the parts instead (rnn -> head only).  Anything else with parameters "
               "(Conv1d, attention, normalisation, ...) is refused by name.  Unpickling a whole "
               "module runs code from the file: convert only files you trust.  "
               "Exit status: 0 written, 1 refused (the message says why), 2 bad usage.")
    p.add_argument("input", metavar="IN",
                   help="the model to convert: MODEL.pt, MODEL.onnx, MODEL.json, MODEL.nam")
    p.add_argument("output", metavar="OUT.safetensors", help="model file to write (atomically)")
    p.add_argument("--format", choices=FORMATS,
                   help="the input's format (default: recognised by its content)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--check", dest="check", action="store_true", default=None,
                   help="run the written file through rnnfilter and compare with the source "
                        "(default when the source can be run)")
    g.add_argument("--no-check", dest="check", action="store_false",
                   help="write without the check")
    p.add_argument("--tolerance", type=float, default=TOLERANCE, metavar="E",
                   help=f"largest difference the check accepts, relative to max(1, |y|) "
                        f"(default {TOLERANCE:g})")
    p.add_argument("--check-steps", type=int, default=CHECK_STEPS, metavar="N",
                   help=f"steps of the check's test signal (default {CHECK_STEPS})")
    g = p.add_argument_group("PyTorch and TorchScript: what to export")
    g.add_argument("--rnn", metavar="NAME",
                   help="submodule (or state_dict prefix) of the recurrent module, e.g. 'lstm' "
                        "or 'encoder.rnn'; '' for a bare state_dict (default: the only one)")
    g.add_argument("--head", metavar="NAME",
                   help="nn.Linear submodule (or state_dict prefix) to use as the head "
                        "(default: the last nn.Linear after the recurrent module)")
    g.add_argument("--no-head", action="store_true", help="export no head even if there is one")
    g.add_argument("--key", metavar="KEY[/KEY...]",
                   help="entry of a checkpoint dict that holds the module or state_dict")
    g.add_argument("--class-file", metavar="FILE.py",
                   help="Python file defining the classes of a pickled whole module")
    g.add_argument("--cell", choices=CELLS,
                   help="cell of a state_dict or traced module (needed for nn.RNN: rnn_tanh "
                        "or rnn_relu; LSTM and GRU are recognised by their gate count)")
    g.add_argument("--head-activation", choices=HEAD_ACTIVATIONS,
                   help="activation after the head, for what a file does not say (functional "
                        "calls in forward(), state_dicts, RTNeural PyTorch JSON)")
    g.add_argument("--norm-mean", metavar="V,V,...", help="input normalisation mean, I values")
    g.add_argument("--norm-std", metavar="V,V,...", help="input normalisation std, I values > 0")
    g = p.add_argument_group("PyTorch: sizes are read from the weights; these only assert them")
    g.add_argument("--input-size", type=int, metavar="N")
    g.add_argument("--hidden-size", type=int, metavar="N")
    g.add_argument("--num-layers", type=int, metavar="N")
    g = p.add_argument_group("ONNX")
    g.add_argument("--output-name", metavar="NAME",
                   help="graph output to convert (default: the one computed from the recurrent "
                        "output Y; outputs of the final states are ignored)")
    g.add_argument("--zero-state-inputs", action="store_true",
                   help="accept graph inputs that feed initial_h/initial_c, taking them as zero "
                        "(rnnfilter starts each stream from zero state)")
    g = p.add_argument_group("model metadata (docs/design.md §3/§4): what the source does not say")
    g.add_argument("--frame-size", type=int, metavar="N", help="input frames per step")
    g.add_argument("--output-frame-size", type=int, metavar="N", help="output frames per step")
    g.add_argument("--window", type=int, metavar="N",
                   help="steps per window (bidirectional; ONNX default: the graph's fixed "
                        "sequence length, if any)")
    g.add_argument("--sample-rate", type=int, metavar="HZ",
                   help="the only input rate rnnfilter will accept")
    g.add_argument("--labels", metavar="NAME,NAME,...",
                   help="class names, one per output of a softmax head")
    g.add_argument("--description", metavar="TEXT")
    g.add_argument("--meta", action="append", metavar="KEY=VALUE",
                   help="further string metadata, e.g. train_dataset=...; repeatable")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    return p


def _meta(args):
    extra = {}
    for item in args.meta or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise Usage(f"--meta {item!r}: expected KEY=VALUE")
        extra[key] = value
    return extra


def apply_metadata(model, args, fmt):
    """What the options say of the model, over what the source said."""
    notes = []
    model.source_format = SOURCE_FORMAT[fmt]
    model.source_file = None if args.input.startswith("<") else os.path.basename(args.input)
    for key in ("frame_size", "output_frame_size", "window", "sample_rate", "description"):
        value = getattr(args, key)
        if value is None:
            continue
        old = getattr(model, key)
        if old is not None and old != value:
            notes.append(f"{key} {value} from the command line over the file's {old}")
        setattr(model, key, value)
    if args.labels is not None:
        model.labels = [v.strip() for v in args.labels.split(",")]
    model.extra_meta.update(_meta(args))
    return notes


def convert(args, source=None, fmt=None):
    """Read, write to a temporary file, check, rename: the lines to print.
    @source, @fmt: a reader of a Source and its format instead of args.input's."""
    fmt = fmt or args.format or detect(args.input)
    src = source() if source else read_source(args, fmt)
    model = src.model
    lines = []
    notes = apply_metadata(model, args, fmt) + src.notes
    try:
        model.validate()
    except ModelError as e:
        raise Refused(f"{args.input}: {e}") from None
    for where, layers in (("before", model.pre), ("after", model.post)):
        if len(layers) > MAX_DENSE_LAYERS:
            raise Refused(f"{args.input}: {len(layers)} dense layers {where} the recurrent "
                          f"ones; gst-rnn runs at most {MAX_DENSE_LAYERS} (docs/design.md §3)")
    run_check = args.check
    if run_check is None:
        run_check = src.forward is not None
    directory = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(directory):
        raise Refused(f"{args.output}: the directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".gst-rnn-convert-", suffix=".safetensors",
                               dir=directory)
    os.close(fd)
    try:
        try:
            model.to_safetensors(tmp)
        except ModelError as e:
            raise Refused(f"{args.input}: {e}") from None
        if src.forward is None:
            lines.append(f"graph assumed: {describe(model)}")
            lines.append("warning: a state_dict holds weights only: what forward() does with "
                         "them (skips, activations, extra layers) cannot be seen here; save "
                         "the model as TorchScript (torch.jit.save(torch.jit.script(model))) "
                         "or ONNX to have the conversion checked against it")
            src.forward = model.forward         # the check can only test the assumed graph
        if run_check:
            lines += check(src, tmp, args)
        os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    lines.insert(0, f"wrote {args.output}: {describe(model)} "
                    f"(from {SOURCE_FORMAT[fmt]} {os.path.basename(args.input)})")
    if src.summary:
        lines.insert(1, src.summary)
    if model.bidirectional and not model.window:
        notes.append("bidirectional without a window: set rnnfilter's window property, or "
                     "convert with --window N")
    lines += [f"note: {n}" for n in notes]
    return lines


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        if args.tolerance is not None and not args.tolerance > 0:
            raise Usage("--tolerance must be > 0")
        if args.check_steps < 1:
            raise Usage("--check-steps must be >= 1")
        lines = convert(args)
    except (Refused, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except Usage as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    for line in lines:
        if line.startswith("warning:"):
            print(f"{PROG}: {line}", file=sys.stderr)
        elif not args.quiet:
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
