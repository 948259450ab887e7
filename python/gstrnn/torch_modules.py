# SPDX-License-Identifier: LGPL-2.1-or-later
"""A PyTorch module -- a live nn.Module, a pickled one, or a TorchScript
file (torch.jit.save) -- as a gstrnn.model.Model, and its own forward().

from_module(module) reads the module's submodules in registration order
(containers such as nn.Sequential flattened) and assumes the graph

    [Linear [act]]...  RNN/LSTM/GRU  [Linear [act]]...

the Linear layers before the recurrent module being pre layers, those after
it post layers and the last one the head (docs/design.md §2).  Modules
without parameters that gst-rnn knows (ReLU, Tanh, Sigmoid, ELU(1),
Softmax over the last axis) are the activation of the layer before them;
Dropout and Identity do nothing at inference.  A module with parameters of
any other kind (Conv1d, MultiheadAttention, LayerNorm, Embedding, ...) is
refused by name.  What forward() does with them -- the order of the calls,
functional activations, a residual skip -- is not in the submodules: the
converter's check runs forward() itself (source_forward) and compares.
"""

import copy
import warnings

import numpy as np

from .model import Dense, Model, ModelError

ACTIVATIONS = {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "ELU": "elu",
               "Softmax": "softmax"}
NO_OPS = ("Dropout", "Identity", "AlphaDropout")
RECURRENT = {"RNN": None, "LSTM": "lstm", "GRU": "gru"}
CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")


def _kind(module):
    """The class name of a module (TorchScript keeps it as original_name)."""
    name = getattr(module, "original_name", None)
    if isinstance(name, str) and name:
        return name
    return type(module).__name__


def _numpy(t):
    return t.detach().cpu().double().numpy()


def _own_params(module):
    return {k: v for k, v in module.state_dict().items() if "." not in k}


def _leaves(module, prefix=""):
    """(name, module) of the modules that compute, in registration order."""
    out = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        kind = _kind(child)
        if kind in RECURRENT or kind == "Linear" or kind in ACTIVATIONS or kind in NO_OPS:
            out.append((full, child))
        elif list(child.named_children()):
            if _own_params(child):
                raise ModelError(f"{full}: a {kind} with parameters of its own "
                                 f"({', '.join(_own_params(child))}) is not a layer gst-rnn "
                                 "can express")
            out += _leaves(child, full + ".")
        else:
            out.append((full, child))
    return out


def _recurrent(name, module, cell_hint=None):
    """(cell, Model) of an nn.RNN / LSTM / GRU (live or TorchScript)."""
    kind = _kind(module)
    sd = {k: _numpy(v) for k, v in module.state_dict().items()}
    if any(k.startswith("weight_hr") for k in sd):
        raise ModelError(f"{name}: LSTM projections (proj_size) cannot be expressed")
    if "bias_ih_l0" not in sd:
        raise ModelError(f"{name}: the {kind} has no biases (bias=False); rebuild it with "
                         "bias=True and zero biases")
    cell = RECURRENT[kind]
    if cell is None:
        mode = getattr(module, "nonlinearity", None)
        if mode in ("tanh", "relu"):
            cell = "rnn_" + mode
        elif cell_hint in ("rnn_tanh", "rnn_relu"):
            cell = cell_hint
        else:
            raise ModelError(f"{name}: an nn.RNN whose nonlinearity the file does not say "
                             "(a traced module): pass --cell rnn_tanh or --cell rnn_relu")
    w_hh = sd["weight_hh_l0"]
    H = w_hh.shape[1]
    L = 1 + max(int(k.split("_l")[1].split("_")[0]) for k in sd if k.startswith("weight_ih_l"))
    D = 2 if "weight_ih_l0_reverse" in sd else 1
    m = Model(cell, sd["weight_ih_l0"].shape[1], H, L, D == 2, rnn=sd)
    return m


def from_module(module, *, rnn=None, head=None, no_head=False, cell=None):
    """(Model, batch_first or None, notes) from a module's submodules.

    @rnn, @head, @no_head: the converter's --rnn / --head / --no-head, which
    name the parts instead (only the recurrent module and a head are then
    written).  Raises ModelError naming a submodule gst-rnn cannot express.
    """
    notes = []
    if _kind(module) in RECURRENT:
        leaves = [("", module)]
    else:
        leaves = _leaves(module)
    named = dict(module.named_modules())
    if rnn is not None:
        if rnn not in named:
            raise ModelError(f"--rnn {rnn}: the module has no submodule of that name")
        if _kind(named[rnn]) not in RECURRENT:
            raise ModelError(f"--rnn {rnn} is a {_kind(named[rnn])}, not an RNN, LSTM or GRU")
        if head is None and not no_head:
            # the other recurrent modules are left out; the layers around stay
            leaves = [(n, m) for n, m in leaves if _kind(m) not in RECURRENT or n == rnn]
    if head is not None or no_head:
        chosen = []
        if rnn is not None:
            chosen.append((rnn, named[rnn]))
        else:
            chosen += [(n, m) for n, m in leaves if _kind(m) in RECURRENT]
        if head is not None:
            if head not in named:
                raise ModelError(f"--head {head}: the module has no submodule of that name")
            if _kind(named[head]) != "Linear":
                raise ModelError(f"--head {head} is a {_kind(named[head])}, not a Linear")
            chosen.append((head, named[head]))
        leaves = chosen
    recurrent = [(n, m) for n, m in leaves if _kind(m) in RECURRENT]
    if not recurrent:
        raise ModelError(f"the {_kind(module)} holds no RNN, LSTM or GRU")
    if len(recurrent) > 1:
        raise ModelError("the module holds several recurrent modules ("
                         + ", ".join(n for n, _ in recurrent) + "); gst-rnn runs one stack "
                         "(one nn.LSTM with num_layers=N): pick one with --rnn NAME")
    rnn_name, rnn_module = recurrent[0]
    model = _recurrent(rnn_name or "(the module)", rnn_module, cell)
    before, after, seen = [], [], False
    for name, m in leaves:
        kind = _kind(m)
        if kind in RECURRENT:
            seen = True
            continue
        side = after if seen else before
        if kind == "Linear":
            p = {k: _numpy(v) for k, v in m.state_dict().items()}
            side.append([name, Dense(p["weight"], p.get("bias")), None])
        elif kind in ACTIVATIONS:
            act = ACTIVATIONS[kind]
            if kind == "ELU" and float(getattr(m, "alpha", 1.0)) != 1.0:
                raise ModelError(f"{name}: ELU with alpha={m.alpha}; gst-rnn's elu has alpha 1")
            if kind == "Softmax" and getattr(m, "dim", -1) not in (-1, 2):
                raise ModelError(f"{name}: Softmax over dim={m.dim}; gst-rnn's softmax is over "
                                 "the features of a step (dim=-1)")
            if not side or side[-1][2] is not None:
                if side:
                    width = side[-1][1].out_size
                elif seen:
                    width = model.directions * model.hidden_size
                else:
                    width = model.input_size
                side.append([name, Dense(np.eye(width)), act])
                notes.append(f"{name}: {kind} on its own, written as an identity layer")
            else:
                side[-1][2] = act
        elif kind in NO_OPS:
            continue
        elif _own_params(m) or list(m.parameters()):
            raise ModelError(f"{name}: {kind} is not a layer gst-rnn can express (it runs "
                             "per-step Linear layers and activations around one RNN/LSTM/GRU "
                             "stack)")
        else:
            notes.append(f"{name}: {kind} has no parameters and is not a known activation: "
                         "left to the check against forward()")
    for name, dense, act in before:
        dense.activation = act or "none"
        model.pre.append(dense)
    if before:
        model.input_size = before[0][1].in_size
    if after:
        *post, last = after
        for name, dense, act in post:
            dense.activation = act or "none"
            model.post.append(dense)
        if (last[2] or "none") in ("none", "softmax", "sigmoid", "tanh"):
            model.head = last[1]
            model.head_activation = last[2] or "none"
        else:
            last[1].activation = last[2]
            model.post.append(last[1])
    batch_first = getattr(rnn_module, "batch_first", None)
    return model.validate(), (batch_first if isinstance(batch_first, bool) else None), notes


def set_head_activation(model, activation):
    """The converter's --head-activation (None: as read) on a module's Model."""
    if activation is None:
        return
    if model.head is None and activation != "none":
        raise ModelError(f"--head-activation {activation} needs a head, and the module has "
                         "no Linear after its recurrent layers")
    model.head_activation = activation


def describe(model):
    """The graph a Model computes, as one line."""
    parts = ["input"]
    if model.input_mean is not None:
        parts.append("normalise")
    parts += [f"Linear {d.in_size}->{d.out_size}"
              + (f" {d.activation}" if d.activation != "none" else "") for d in model.pre]
    parts.append(f"{model.cell} {model.rnn_input_size}->{model.hidden_size}"
                 f" x{model.num_layers}" + (" bidirectional" if model.bidirectional else ""))
    parts += [f"Linear {d.in_size}->{d.out_size}"
              + (f" {d.activation}" if d.activation != "none" else "") for d in model.post]
    if model.head is not None:
        parts.append(f"head Linear {model.head.in_size}->{model.head.out_size}"
                     + (f" {model.head_activation}" if model.head_activation != "none" else ""))
    if model.skip:
        parts.append(f"+ input[:{model.skip}]")
    return " -> ".join(parts)


def source_forward(module, batch_first):
    """A function x [T][I] -> [T][O] (float64) calling the module's own forward().

    The input is one sequence of batch 1, laid out as the recurrent module
    says (batch_first); when the file does not say (traced modules) both
    layouts are returned as candidates: the function takes layout=True/False.
    forward() runs in float64 when the module allows it, else float32.
    """
    import torch
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # .double() on a scripted module's .grad
            m64 = copy.deepcopy(module).double()
    except Exception:       # noqa: BLE001  some scripted modules cannot be copied
        m64 = None
    module.eval()
    if m64 is not None:
        m64.eval()

    def call(m, x, dtype, layout):
        t = torch.from_numpy(np.asarray(x, np.float64)).to(dtype)
        T = t.shape[0]
        inp = t[None] if layout else t[:, None]
        with torch.no_grad():
            out = m(inp)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise ModelError(f"forward() returns a {type(out).__name__}, not a tensor")
        shape = list(out.shape)
        if out.dim() == 3 and (shape[0], shape[1]) == ((1, T) if layout else (T, 1)):
            out = out[0] if layout else out[:, 0]
        elif out.dim() == 2 and shape[0] == T:
            pass
        else:
            raise ModelError(f"forward() returns shape {shape} for an input of shape "
                             f"{list(inp.shape)}: not one output vector per step, which is "
                             "what rnnfilter gives")
        return out.detach().double().numpy()

    def forward(x, layout=True if batch_first is None else batch_first):
        if m64 is not None:
            try:
                return call(m64, x, torch.float64, layout)
            except ModelError:
                raise
            except Exception:   # noqa: BLE001  forward() made float32 tensors of its own
                pass
        try:
            return call(module, x, torch.float32, layout)
        except ModelError:
            raise
        except Exception as e:   # noqa: BLE001  the user's code
            T, I = np.shape(x)
            shape = [1, T, I] if layout else [T, 1, I]
            raise ModelError(f"forward() failed on an input of shape {shape} (the converted "
                             f"model reads {I} values a step): "
                             f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") \
                from None

    forward.layouts = [batch_first] if batch_first is not None else [True, False]
    return forward
