# SPDX-License-Identifier: LGPL-2.1-or-later
"""A PyTorch nn.LSTM / nn.GRU / nn.RNN (+ nn.Linear head) saved with
torch.save, as a gst-rnn model file (docs/design.md §3): the PyTorch half of
tools/gst-rnn-convert (its command line is gstrnn.convert).

The file may hold a whole nn.Module (an nn.LSTM/GRU/RNN, or a module holding
one and optionally an nn.Linear head), a state_dict, or a checkpoint dict
holding a state_dict.  convert(args) does the work for the converter's
parsed options.  Live modules are written by gstrnn.export() directly:

    import gstrnn
    gstrnn.export(rnn, head, "model.safetensors", head_activation="softmax",
                  frame_size=..., sample_rate=...)

Only the recurrent module and the head are exported, not the Python code of
a forward(): the model file means input -> [normalisation] -> rnn -> [head ->
activation], so a module whose forward does more than that needs a different
conversion.
"""

from __future__ import annotations

import importlib
import os
import sys

import numpy as np

from .export import GATES, export  # noqa: F401  (export: the same function as gstrnn.export)
from .export import _cell_name, build_torch, export_arrays, load, reference_forward, torch_forward

__all__ = ["ExportError", "convert"]


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


def _describe_rnn(name, rnn):
    kind = {"RNN_TANH": "RNN tanh", "RNN_RELU": "RNN relu"}.get(rnn.mode, rnn.mode)
    return (f"{name or '(the file itself)'}: {kind} {rnn.input_size} -> {rnn.hidden_size}, "
            f"{rnn.num_layers} layer{'s' if rnn.num_layers > 1 else ''}"
            f"{', bidirectional' if rnn.bidirectional else ''}")


def _from_module(obj, args):
    """(cell, params, head_weight, head_bias, sizes, note) from an nn.Module."""
    torch = _torch()
    nn = torch.nn
    modules = dict(obj.named_modules())
    if args.rnn is not None:
        if args.rnn not in modules:
            raise ExportError(f"--rnn {args.rnn}: the module has no submodule of that name "
                              f"(it has: {', '.join(n for n in modules if n) or 'none'})")
        rnn_name, rnn = args.rnn, modules[args.rnn]
        if not isinstance(rnn, nn.RNNBase):
            raise ExportError(f"--rnn {args.rnn} is an {type(rnn).__name__}, not an nn.RNN/LSTM/GRU")
    else:
        found = [(n, m) for n, m in modules.items() if isinstance(m, nn.RNNBase)]
        if not found:
            raise ExportError(f"the {type(obj).__name__} holds no nn.RNN, nn.LSTM or nn.GRU")
        if len(found) > 1:
            raise ExportError("the module holds several recurrent modules ("
                              + ", ".join(n for n, _ in found) + "): pick one with --rnn NAME")
        rnn_name, rnn = found[0]

    head = None
    head_name = None
    if args.head is not None:
        if args.head not in modules:
            raise ExportError(f"--head {args.head}: the module has no submodule of that name")
        head_name, head = args.head, modules[args.head]
        if not isinstance(head, nn.Linear):
            raise ExportError(f"--head {args.head} is an {type(head).__name__}, not an nn.Linear")
    elif not args.no_head:
        linears = [(n, m) for n, m in modules.items() if isinstance(m, nn.Linear)]
        if len(linears) > 1:
            raise ExportError("the module holds several nn.Linear ("
                              + ", ".join(n for n, _ in linears)
                              + "): name the head with --head NAME, or --no-head")
        if linears:
            head_name, head = linears[0]

    cell = _cell_name(rnn)
    if not rnn.bias:
        raise ExportError("the rnn was built with bias=False; gst-rnn models always carry biases "
                          "(rebuild it with bias=True and zero biases)")
    if getattr(rnn, "proj_size", 0):
        raise ExportError(f"LSTM projections (proj_size={rnn.proj_size}) are not supported")
    note = _describe_rnn(rnn_name, rnn)
    hw = hb = None
    if head is not None:
        hw = head.weight
        hb = head.bias
        note += f"; head {head_name}: Linear {head.in_features} -> {head.out_features}"
    params = dict(rnn.named_parameters())
    sizes = (rnn.input_size, rnn.hidden_size, rnn.num_layers, rnn.bidirectional)
    return cell, params, hw, hb, sizes, note, (rnn, head)


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


def convert(args):
    """Do the work of the command for parsed @args; returns a summary line."""
    torch = _torch()
    if args.class_file:
        _import_class_file(args.class_file)
    obj = _load(args.input)
    if args.key:
        for part in args.key.split("/"):
            if not isinstance(obj, dict) or part not in obj:
                keys = ", ".join(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
                raise ExportError(f"--key {args.key}: no entry {part!r} (there is: {keys})")
            obj = obj[part]

    state_norm = (None, None)
    if isinstance(obj, torch.nn.Module):
        cell, params, hw, hb, sizes, note, modules = _from_module(obj, args)
        if args.cell is not None and args.cell != cell:
            raise ExportError(f"--cell {args.cell}, but the module is {cell}")
    elif isinstance(obj, dict):
        if not _is_tensor_dict(obj):
            for key in ("state_dict", "model_state_dict", "model"):
                if _is_tensor_dict(obj.get(key)):
                    obj = obj[key]
                    break
            else:
                raise ExportError("the file holds a dict that is not a state_dict (keys: "
                                  + ", ".join(map(str, list(obj)[:12]))
                                  + "): name the entry holding the state_dict with --key")
        cell, params, hw, hb, sizes, note, modules = _from_state_dict(obj, args)
        if "input.mean" in obj and "input.std" in obj:
            state_norm = (obj["input.mean"], obj["input.std"])
    else:
        raise ExportError(f"{args.input}: holds a {type(obj).__name__}, not an nn.Module or a state_dict")

    mean, std = state_norm
    if (args.norm_mean is None) != (args.norm_std is None):
        raise ExportError("give --norm-mean and --norm-std together")
    if args.norm_mean is not None:
        mean = _floats("--norm-mean", args.norm_mean)
        std = _floats("--norm-std", args.norm_std)

    extra = {}
    for item in args.meta or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ExportError(f"--meta {item!r}: expected KEY=VALUE")
        extra[key] = value

    try:
        export_arrays(
            args.output, cell, params, head_weight=hw, head_bias=hb,
            input_size=args.input_size, hidden_size=args.hidden_size,
            num_layers=args.num_layers,
            norm_mean=mean, norm_std=std, head_activation=args.head_activation,
            frame_size=args.frame_size, output_frame_size=args.output_frame_size,
            window=args.window, sample_rate=args.sample_rate,
            description=args.description, extra_meta=extra)
    except ValueError as e:
        raise ExportError(str(e)) from None

    meta, _ = load(args.output)
    summary = (f"wrote {args.output}: {meta['cell']}, input {meta['input_size']}, hidden "
               f"{meta['hidden_size']}, {meta['num_layers']} layer(s), "
               f"{'bidirectional, ' if meta['bidirectional'] == 'true' else ''}"
               f"head activation {meta['head_activation']}  [{note}]")

    if args.check:
        rnn2, head2, meta2, mean2, std2 = build_torch(args.output)
        I = int(meta2["input_size"])
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(40, 2, I, generator=gen).numpy()
        if modules is None:
            # a state_dict: the numpy reference on the source arrays
            src = {"rnn." + k: v.detach().cpu().float().numpy() for k, v in params.items()}
            if hw is not None:
                src["head.weight"] = hw.detach().cpu().float().numpy()
                src["head.bias"] = (np.zeros(hw.shape[0], np.float32) if hb is None
                                    else hb.detach().cpu().float().numpy())
            if mean is not None:
                src["input.mean"] = np.asarray(mean, np.float32)
                src["input.std"] = np.asarray(std, np.float32)
            ref = reference_forward(meta2, src, x)
        else:
            rnn_src, head_src = modules
            m = None if mean is None else np.asarray(mean, np.float32)
            s = None if std is None else np.asarray(std, np.float32)
            ref = torch_forward(rnn_src.eval(), head_src, args.head_activation, x, m, s)
        got = torch_forward(rnn2, head2, meta2["head_activation"], x, mean2, std2)
        err = float(np.max(np.abs(got - ref)))
        summary += f"\ncheck: max |difference| on 40 random steps = {err:.3g}"
        if not err <= 1e-5:
            raise ExportError(f"check failed: the written model differs from the source by {err:.3g}")
    return summary
