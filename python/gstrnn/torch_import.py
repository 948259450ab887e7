# SPDX-License-Identifier: LGPL-2.1-or-later
"""A PyTorch nn.LSTM / nn.GRU / nn.RNN (+ nn.Linear head) saved with
torch.save, as a gst-rnn model file (docs/design.md §3): the PyTorch half of
tools/gst-rnn-convert (its command line is gstrnn.convert).

The file may hold a whole nn.Module (an nn.LSTM/GRU/RNN, or a module holding
one and optionally an nn.Linear head), a state_dict, or a checkpoint dict
holding a state_dict.  read(args) reads it for the converter's parsed
options.  Live modules are written by gstrnn.export() directly:

    import gstrnn
    gstrnn.export(rnn, head, "model.safetensors", head_activation="softmax",
                  frame_size=..., sample_rate=...)

A whole module is read by its submodules (gstrnn.torch_modules) and the
converter checks the result against its forward(); a state_dict holds no
forward(), so the graph input -> [normalisation] -> rnn -> [head ->
activation] is assumed.
"""

from __future__ import annotations

import importlib
import os
import sys

import numpy as np

from .export import GATES, export  # noqa: F401  (the same function as gstrnn.export)
from .export import export_arrays, load

__all__ = ["ExportError", "read"]


class ExportError(Exception):
    """A user error: printed as 'gst-rnn-convert: error: ...'."""


def _torch():
    try:
        import torch
    except ImportError:
        raise ExportError("PyTorch is needed (Debian: python3-torch)") from None
    return torch


# --------------------------------------------------------------------------
# loading what torch.save wrote


def _import_class_file(path):
    """Import @path (a .py file defining the pickled module's classes) under
    its own name, and make its names visible as __main__.X too (torch.save
    in a script pickles classes as __main__.ClassName)."""
    if not os.path.isfile(path):
        raise ExportError(f"--class-file {path}: no such file")
    directory, base = os.path.split(os.path.abspath(path))
    name, ext = os.path.splitext(base)
    if ext != ".py" or not name.isidentifier():
        raise ExportError(f"--class-file {path}: must be a Python file with an importable name (NAME.py)")
    # The one sys.path change in the package, and what --class-file means:
    # the user's file is imported as a module of its own, so that the
    # modules it imports from beside it are found as they were when the
    # model was saved.
    sys.path.insert(0, directory)
    try:
        module = importlib.import_module(name)
    except Exception as e:  # the user's code: report whatever it raised
        raise ExportError(f"--class-file {path}: importing it failed: {type(e).__name__}: {e}") from None
    main = sys.modules["__main__"]
    for key, value in vars(module).items():
        if not key.startswith("_") and not hasattr(main, key):
            setattr(main, key, value)


def _load(path):
    torch = _torch()
    if not os.path.isfile(path):
        raise ExportError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        pass  # not a plain state_dict: unpickle it whole below
    try:
        return torch.load(path, map_location="cpu")
    except (AttributeError, ModuleNotFoundError) as e:
        raise ExportError(
            f"{path}: cannot unpickle the module ({e}); torch.save of a whole module "
            "stores only a reference to its class: name the Python file defining it "
            "with --class-file FILE.py, or save model.state_dict() instead") from None
    except Exception as e:
        raise ExportError(f"{path}: not a file torch.load can read: {type(e).__name__}: {e}") from None


def _is_tensor_dict(obj):
    torch = _torch()
    return isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values())


def _from_state_dict(sd, args):
    """(cell, params, head_weight, head_bias, sizes, note) from a state_dict."""
    if args.rnn is not None:
        prefix = args.rnn + "." if args.rnn else ""
        if prefix + "weight_ih_l0" not in sd:
            raise ExportError(f"--rnn {args.rnn}: the state_dict has no {prefix}weight_ih_l0")
    else:
        prefixes = sorted(k[:-len("weight_ih_l0")] for k in sd if k.endswith("weight_ih_l0"))
        if not prefixes:
            raise ExportError("the state_dict holds no recurrent weights (no key ending in "
                              "weight_ih_l0); keys: " + ", ".join(list(sd)[:12]))
        if len(prefixes) > 1:
            raise ExportError("the state_dict holds several recurrent modules ("
                              + ", ".join(p.rstrip(".") or "(top)" for p in prefixes)
                              + "): pick one with --rnn NAME")
        prefix = prefixes[0]
    params = {k[len(prefix):]: v for k, v in sd.items()
              if k.startswith(prefix) and k[len(prefix):].split("_l")[0]
              in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    if any(k.startswith("weight_hr") for k in (kk[len(prefix):] for kk in sd if kk.startswith(prefix))):
        raise ExportError("LSTM projections (weight_hr_l*) are not supported")
    if "bias_ih_l0" not in params:
        raise ExportError("the recurrent weights have no biases (bias=False); gst-rnn models "
                          "always carry biases")

    w_hh = params.get("weight_hh_l0")
    if w_hh is None or w_hh.dim() != 2 or w_hh.shape[1] == 0:
        raise ExportError(f"{prefix}weight_hh_l0 missing or not a matrix")
    G, rem = divmod(w_hh.shape[0], w_hh.shape[1])
    by_gates = {4: "lstm", 3: "gru"}
    if args.cell is not None:
        cell = args.cell
        if rem or G != GATES[cell]:
            raise ExportError(f"--cell {cell}: {prefix}weight_hh_l0 has shape {list(w_hh.shape)}, "
                              f"which is [{G if not rem else '?'}*H, H], not the {GATES[cell]} gates of {cell}")
    elif rem == 0 and G in by_gates:
        cell = by_gates[G]
    elif rem == 0 and G == 1:
        raise ExportError("the state_dict is an nn.RNN's, which does not record its nonlinearity: "
                          "pass --cell rnn_tanh (PyTorch's default) or --cell rnn_relu")
    else:
        raise ExportError(f"{prefix}weight_hh_l0 has shape {list(w_hh.shape)}: not an RNN, LSTM or GRU")
    H = w_hh.shape[1]
    D = 2 if "weight_ih_l0_reverse" in params else 1

    head_w = head_b = None
    head_note = ""
    if not args.no_head:
        if args.head is not None:
            hp = args.head + "." if args.head else ""
            if hp + "weight" not in sd:
                raise ExportError(f"--head {args.head}: the state_dict has no {hp}weight")
        else:
            cands = sorted(k[:-len("weight")] for k, v in sd.items()
                           if k.endswith("weight") and v.dim() == 2
                           and v.shape[1] == D * H)
            if len(cands) > 1:
                raise ExportError("the state_dict holds several matrices that could be the head ("
                                  + ", ".join(c + "weight" for c in cands)
                                  + "): name it with --head NAME, or --no-head")
            hp = cands[0] if cands else None
        if hp is not None:
            head_w = sd[hp + "weight"]
            head_b = sd.get(hp + "bias")
            head_note = f"; head {hp.rstrip('.') or '(top)'}: {head_w.shape[1]} -> {head_w.shape[0]}"

    note = f"{prefix.rstrip('.') or '(top)'}: {cell}, hidden {H}{', bidirectional' if D == 2 else ''}" + head_note
    return cell, params, head_w, head_b, None, note, None


def _floats(option, text):
    try:
        return np.array([float(v) for v in text.split(",")], dtype=np.float32)
    except ValueError:
        raise ExportError(f"{option}: expected comma-separated numbers, got {text!r}") from None


def read(args, obj=None):
    """The gstrnn.convert.Source of the file args.input, for the converter's
    parsed options: a whole module is read by its submodules
    (gstrnn.torch_modules) and checked against its forward(); a state_dict
    holds no computation (the Source has no forward).  @obj: a live module
    instead of the file."""
    from .convert import MODULE_HINT, Source
    from .model import Model, ModelError
    from . import torch_modules
    import tempfile
    torch = _torch()
    if obj is None:
        if args.class_file:
            _import_class_file(args.class_file)
        obj = _load(args.input)
    if args.key:
        for part in args.key.split("/"):
            if not isinstance(obj, dict) or part not in obj:
                keys = ", ".join(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
                raise ExportError(f"--key {args.key}: no entry {part!r} (there is: {keys})")
            obj = obj[part]

    mean = std = None
    if (args.norm_mean is None) != (args.norm_std is None):
        raise ExportError("give --norm-mean and --norm-std together")
    if args.norm_mean is not None:
        mean = _floats("--norm-mean", args.norm_mean)
        std = _floats("--norm-std", args.norm_std)

    if isinstance(obj, torch.nn.Module):
        try:
            model, batch_first, notes = torch_modules.from_module(
                obj, rnn=args.rnn, head=args.head, no_head=args.no_head, cell=args.cell)
        except ModelError as e:
            raise ExportError(f"{args.input}: {e}") from None
        if args.cell is not None and args.cell != model.cell:
            raise ExportError(f"--cell {args.cell}, but the module is {model.cell}")
        for option, value, have in (("--input-size", args.input_size, model.input_size),
                                    ("--hidden-size", args.hidden_size, model.hidden_size),
                                    ("--num-layers", args.num_layers, model.num_layers)):
            if value is not None and value != have:
                raise ExportError(f"{option} {value}, but the module has {have}")
        try:
            torch_modules.set_head_activation(model, args.head_activation)
        except ModelError as e:
            raise ExportError(str(e)) from None
        if mean is not None:
            model.input_mean, model.input_std = mean.astype(np.float64), std.astype(np.float64)
            notes.append("the normalisation is not in forward(): the check applies it "
                         "before calling it")
        fwd = torch_modules.source_forward(obj, batch_first)
        if mean is not None:
            inner = fwd

            def fwd(x, **kw):
                return inner((np.asarray(x) - mean) / std, **kw)
            fwd.layouts = inner.layouts
        src = Source(model, fwd, notes)
        src.try_skip = not (args.head or args.no_head)
        src.hint = MODULE_HINT
        return src

    if not isinstance(obj, dict):
        raise ExportError(f"{args.input}: holds a {type(obj).__name__}, not an nn.Module or a "
                          "state_dict")
    if not _is_tensor_dict(obj):
        for key in ("state_dict", "model_state_dict", "model"):
            if _is_tensor_dict(obj.get(key)):
                obj = obj[key]
                break
        else:
            raise ExportError("the file holds a dict that is not a state_dict (keys: "
                              + ", ".join(map(str, list(obj)[:12]))
                              + "): name the entry holding the state_dict with --key")
    cell, params, hw, hb, _, note, _ = _from_state_dict(obj, args)
    if mean is None and "input.mean" in obj and "input.std" in obj:
        mean, std = obj["input.mean"], obj["input.std"]
    # export_arrays checks sizes and options (its messages name them); the
    # Model is read back from what it wrote
    fd, tmp = tempfile.mkstemp(prefix=".gst-rnn-convert-", suffix=".safetensors")
    os.close(fd)
    try:
        export_arrays(tmp, cell, params, head_weight=hw, head_bias=hb,
                      input_size=args.input_size, hidden_size=args.hidden_size,
                      num_layers=args.num_layers, norm_mean=mean, norm_std=std,
                      head_activation=args.head_activation or "none",
                      frame_size=args.frame_size, output_frame_size=args.output_frame_size)
        meta, tensors = load(tmp)
    except ValueError as e:
        raise ExportError(str(e)) from None
    finally:
        os.unlink(tmp)
    model = Model.from_file(meta, {k: np.asarray(v, np.float64) for k, v in tensors.items()})
    return Source(model, None, [], summary=f"state_dict: {note}")
