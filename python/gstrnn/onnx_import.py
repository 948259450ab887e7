# SPDX-License-Identifier: LGPL-2.1-or-later
"""Convert an ONNX recurrent network into a gst-rnn model file (docs/design.md §3).

The ONNX half of tools/gst-rnn-convert.  Needs python3-onnx and numpy
only (no onnxruntime, no torch):

    from gstrnn.onnx_import import convert, OnnxImportError
    report = convert("model.onnx", "model.safetensors")

What is understood: a graph whose data path (the chain of nodes from the
graph input to the chosen output) is

    [plumbing] RNN|LSTM|GRU [plumbing] RNN|LSTM|GRU ... [plumbing]
    [MatMul|Gemm [Add]] [Softmax|Sigmoid|Tanh] [plumbing]

where plumbing is Transpose, Reshape, Squeeze, Unsqueeze, Flatten,
Identity, Dropout and Cast (how torch.onnx.export arranges axes, stacks
layers and joins directions), every recurrent op is one layer of the same
kind (torch writes one op per layer), and everything off that chain only
computes shapes and initial states from Shape(input) (Shape, Gather,
Concat, ConstantOfShape, Slice, ...).  Initial states must be zero (gst-rnn
starts every stream from zero); weights must be constants.

Gates are reordered from ONNX's order to PyTorch's (LSTM i,o,f,c -> i,f,g,o;
GRU z,r,h -> r,z,n) and B = [Wb, Rb] is split into bias_ih / bias_hh.
Everything gst-rnn cannot express is refused with OnnxImportError naming
the node and the attribute (GRU linear_before_reset=0, peepholes, clip,
non-default activations, input_forget, reverse-only direction,
sequence_lens, ...).

After conversion the whole ONNX graph is evaluated by a small numpy
interpreter (ONNX semantics, ONNX gate order) on a random input and compared
with the converted model computed independently (PyTorch semantics); any
difference in what the plumbing does is refused too.
"""

from __future__ import annotations

import itertools
import os

import numpy as np

try:
    import onnx
    from onnx import numpy_helper
except ImportError:  # pragma: no cover - reported by convert()
    onnx = None

from .export import export_arrays, reference_forward

__all__ = ["OnnxImportError", "convert", "load_graph"]

RECURRENT = {"RNN": 1, "LSTM": 4, "GRU": 3}          # op -> gates
PLUMBING = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten",
            "Identity", "Dropout", "Cast"}
LINEAR = {"MatMul", "Gemm"}
ACTIVATIONS = {"Softmax": "softmax", "Sigmoid": "sigmoid", "Tanh": "tanh"}
SHAPE_SOURCES = {"Shape", "Size"}                   # outputs hold no input data

# ONNX gate blocks -> PyTorch gate blocks: torch block j is ONNX block ORDER[j]
GATE_ORDER = {"LSTM": (0, 2, 3, 1),   # ONNX i,o,f,c -> torch i,f,g(=c),o
              "GRU": (1, 0, 2),       # ONNX z,r,h -> torch r,z,n(=h)
              "RNN": (0,)}
DEFAULT_ACTS = {"LSTM": ["sigmoid", "tanh", "tanh"], "GRU": ["sigmoid", "tanh"]}

TOLERANCE = 1e-5


class OnnxImportError(ValueError):
    """The graph cannot be converted; the message says which node and why."""


def _node_name(node):
    return f"{node.op_type} node '{node.name or node.output[0]}'"


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _str(v):
    return v.decode() if isinstance(v, bytes) else v


def _np_dtype(elem_type):
    return np.dtype(onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[elem_type])


# --------------------------------------------------------------------------
# a numpy interpreter for the ops such graphs use


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _axes_arg(node, inputs, attrs, opset):
    if opset >= 13:
        return None if len(inputs) < 2 or inputs[1] is None else [int(a) for a in inputs[1]]
    return attrs.get("axes")


def _run_recurrent(node, ins, attrs):
    op = node.op_type
    x, W, R = ins[0], ins[1], ins[2]
    B = ins[3] if len(ins) > 3 else None
    init_h = ins[5] if len(ins) > 5 else None
    init_c = ins[6] if len(ins) > 6 and op == "LSTM" else None
    layout = attrs.get("layout", 0)
    if layout == 1:
        x = x.transpose(1, 0, 2)
        init_h = None if init_h is None else init_h.transpose(1, 0, 2)
        init_c = None if init_c is None else init_c.transpose(1, 0, 2)
    T, Bn, _ = x.shape
    D, GH, _ = W.shape
    G = RECURRENT[op]
    H = GH // G
    if B is None:
        B = np.zeros((D, 2 * GH))
    direction = _str(attrs.get("direction", "forward"))
    acts = [a.lower() for a in map(_str, attrs.get("activations", []))]
    relu = op == "RNN" and acts and acts[0] == "relu"
    Y = np.zeros((T, D, Bn, H))
    Yh = np.zeros((D, Bn, H))
    Yc = np.zeros((D, Bn, H))
    for d in range(D):
        reverse = direction == "reverse" or d == 1
        h = np.zeros((Bn, H)) if init_h is None else init_h[d].astype(np.float64)
        c = np.zeros((Bn, H)) if init_c is None else init_c[d].astype(np.float64)
        Wb, Rb = B[d, :GH], B[d, GH:]
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            gx = x[t] @ W[d].T + Wb
            gh = h @ R[d].T + Rb
            if op == "LSTM":
                a = gx + gh
                i, o, f, cc = (a[:, j * H:(j + 1) * H] for j in range(4))
                c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(cc)
                h = _sigmoid(o) * np.tanh(c)
            elif op == "GRU":   # linear_before_reset = 1
                z = _sigmoid(gx[:, :H] + gh[:, :H])
                r = _sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
                n = np.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
                h = (1 - z) * n + z * h
            else:
                a = gx + gh
                h = np.maximum(a, 0) if relu else np.tanh(a)
            Y[t, d] = h
        Yh[d], Yc[d] = h, c
    if layout == 1:
        return [Y.transpose(2, 0, 1, 3), Yh.transpose(1, 0, 2), Yc.transpose(1, 0, 2)]
    return [Y, Yh, Yc]


def _reshape(data, shape, allowzero):
    shape = [int(s) for s in shape]
    if not allowzero:
        shape = [data.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return data.reshape(shape)


def _slice(data, starts, ends, axes, steps):
    axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    index = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        n = data.shape[a]
        s, e = int(max(min(s, 2 ** 62), -2 ** 62)), int(max(min(e, 2 ** 62), -2 ** 62))
        index[a] = slice(*slice(s, e, st).indices(n))
    return data[tuple(index)]


def _binary(op, a, b):
    if op == "Add":
        return a + b
    if op == "Sub":
        return a - b
    if op == "Mul":
        return a * b
    if np.issubdtype(np.result_type(a, b), np.integer):
        return (np.trunc(a / b)).astype(np.result_type(a, b))
    return a / b


def _run_node(node, ins, opset):
    """Outputs (list of arrays) of @node on @ins (None for absent inputs)."""
    op = node.op_type
    attrs = _attrs(node)
    if op == "Constant":
        for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
            if key in attrs:
                v = attrs[key]
                if key == "value":
                    return [numpy_helper.to_array(v)]
                return [np.array(v, dtype=np.float32 if "float" in key else np.int64)]
        raise OnnxImportError(f"{_node_name(node)}: unsupported Constant form {sorted(attrs)}")
    if op in ("Identity", "Dropout"):
        if op == "Dropout" and len(ins) > 2 and ins[2] is not None and bool(np.asarray(ins[2]).any()):
            raise OnnxImportError(f"{_node_name(node)}: Dropout with training_mode=true")
        return [ins[0], np.ones(ins[0].shape, bool)]
    if op == "Cast":
        return [ins[0].astype(_np_dtype(attrs["to"]))]
    if op == "Shape":
        shape = np.array(ins[0].shape, dtype=np.int64)
        return [shape[attrs.get("start", 0):attrs.get("end", None)]]
    if op == "Size":
        return [np.array(ins[0].size, dtype=np.int64)]
    if op == "Gather":
        return [np.take(ins[0], ins[1].astype(np.int64), axis=attrs.get("axis", 0))]
    if op == "Unsqueeze":
        out = ins[0]
        axes = _axes_arg(node, ins, attrs, opset)
        rank = out.ndim + len(axes)
        for a in sorted(a % rank for a in axes):
            out = np.expand_dims(out, a)
        return [out]
    if op == "Squeeze":
        axes = _axes_arg(node, ins, attrs, opset)
        if axes is None:
            return [np.squeeze(ins[0])]
        return [np.squeeze(ins[0], axis=tuple(a % ins[0].ndim for a in axes))]
    if op == "Concat":
        return [np.concatenate([i for i in ins if i is not None], axis=attrs["axis"])]
    if op == "ConstantOfShape":
        v = numpy_helper.to_array(attrs["value"]) if "value" in attrs else np.zeros(1, np.float32)
        return [np.full([int(s) for s in ins[0]], v.reshape(-1)[0], dtype=v.dtype)]
    if op == "Slice":
        if opset >= 10:
            return [_slice(ins[0], ins[1], ins[2], ins[3] if len(ins) > 3 else None,
                           ins[4] if len(ins) > 4 else None)]
        return [_slice(ins[0], attrs["starts"], attrs["ends"], attrs.get("axes"), None)]
    if op == "Transpose":
        return [np.transpose(ins[0], attrs.get("perm"))]
    if op == "Reshape":
        return [_reshape(ins[0], ins[1], attrs.get("allowzero", 0))]
    if op == "Flatten":
        a = attrs.get("axis", 1) % (ins[0].ndim + 1) if ins[0].ndim else 0
        return [ins[0].reshape(int(np.prod(ins[0].shape[:a])), -1)]
    if op == "Expand":
        shape = np.broadcast_shapes(ins[0].shape, tuple(int(s) for s in ins[1]))
        return [np.broadcast_to(ins[0], shape).copy()]
    if op in ("Add", "Sub", "Mul", "Div"):
        return [_binary(op, ins[0], ins[1])]
    if op == "MatMul":
        return [np.matmul(ins[0], ins[1])]
    if op == "Gemm":
        a, b = ins[0], ins[1]
        if attrs.get("transA", 0):
            a = a.T
        if attrs.get("transB", 0):
            b = b.T
        y = attrs.get("alpha", 1.0) * (a @ b)
        if len(ins) > 2 and ins[2] is not None:
            y = y + attrs.get("beta", 1.0) * ins[2]
        return [y]
    if op == "Softmax":
        x = ins[0]
        if opset >= 13:
            axis = attrs.get("axis", -1)
            e = np.exp(x - x.max(axis=axis, keepdims=True))
            return [e / e.sum(axis=axis, keepdims=True)]
        axis = attrs.get("axis", 1) % x.ndim
        flat = x.reshape(int(np.prod(x.shape[:axis])), -1)
        e = np.exp(flat - flat.max(axis=1, keepdims=True))
        return [(e / e.sum(axis=1, keepdims=True)).reshape(x.shape)]
    if op == "Sigmoid":
        return [_sigmoid(ins[0])]
    if op == "Tanh":
        return [np.tanh(ins[0])]
    if op == "Relu":
        return [np.maximum(ins[0], 0)]
    if op in RECURRENT:
        return _run_recurrent(node, [None if i is None else i.astype(np.float64) for i in ins], attrs)
    raise OnnxImportError(f"{_node_name(node)}: op {op} is not understood by this importer")


# --------------------------------------------------------------------------
# graph analysis


class _Graph:
    def __init__(self, model):
        self.model = model
        g = model.graph
        self.opset = None
        for imp in model.opset_import:
            if imp.domain in ("", "ai.onnx"):
                self.opset = imp.version
        if self.opset is None:
            raise OnnxImportError("the model imports no default-domain (ai.onnx) opset")
        if self.opset < 7:
            raise OnnxImportError(f"opset {self.opset}: the recurrent ops before opset 7 differ; "
                                  "export with opset 7 or later (torch.onnx.export writes 14)")
        self.consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.inputs = [i for i in g.input if i.name not in self.consts]
        self.nodes = list(g.node)
        self.producer = {}
        for n, node in enumerate(self.nodes):
            if node.domain not in ("", "ai.onnx"):
                raise OnnxImportError(f"{_node_name(node)}: custom-domain op {node.domain}.{node.op_type}")
            for a in node.attribute:
                if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                    raise OnnxImportError(f"{_node_name(node)}: control flow ({node.op_type} with a "
                                          "subgraph) is not understood")
            for o in node.output:
                if o:
                    self.producer[o] = n

    def ancestors(self, names):
        """Indices of the nodes @names depend on (through any input)."""
        seen, stack = set(), [n for n in names if n in self.producer]
        while stack:
            n = self.producer[stack.pop()]
            if n in seen:
                continue
            seen.add(n)
            stack.extend(i for i in self.nodes[n].input if i in self.producer)
        return seen

    def data_dependent(self, data_inputs):
        """Tensors whose values (not just shape) depend on @data_inputs."""
        dep = set(data_inputs)
        for node in self.nodes:
            if node.op_type in SHAPE_SOURCES or node.op_type == "Constant":
                continue
            if any(i in dep for i in node.input if i):
                dep.update(o for o in node.output if o)
        return dep


def load_graph(path_or_model):
    """The onnx.ModelProto for a path (or the model itself), checked."""
    if onnx is None:
        raise OnnxImportError("python3-onnx is needed (Debian: python3-onnx)")
    if isinstance(path_or_model, onnx.ModelProto):
        model = path_or_model
    else:
        try:
            model = onnx.load(os.fspath(path_or_model))
        except FileNotFoundError:
            raise OnnxImportError("no such file") from None
        except Exception as e:
            raise OnnxImportError(f"not an ONNX model ({type(e).__name__}: {e})") from None
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise OnnxImportError(f"not a valid ONNX model: {str(e).strip().splitlines()[0]}") from None
    return model


def _check_recurrent(node, attrs, opset):
    """Refuse every attribute gst-rnn cannot express."""
    op = node.op_type
    where = _node_name(node)
    known = {"hidden_size", "direction", "activations", "activation_alpha", "activation_beta",
             "clip", "layout"} | ({"input_forget"} if op == "LSTM" else set()) \
        | ({"linear_before_reset"} if op == "GRU" else set())
    for name in attrs:
        if name not in known:
            raise OnnxImportError(f"{where}: unknown attribute {name!r}")
    if "clip" in attrs:
        raise OnnxImportError(f"{where}: attribute clip={attrs['clip']} clips the gate "
                              "pre-activations; gst-rnn (like PyTorch) never clips them")
    if op == "LSTM" and attrs.get("input_forget", 0):
        raise OnnxImportError(f"{where}: attribute input_forget={attrs['input_forget']} couples the "
                              "input and forget gates; gst-rnn's LSTM (PyTorch's) has independent gates")
    if op == "GRU" and attrs.get("linear_before_reset", 0) != 1:
        raise OnnxImportError(f"{where}: attribute linear_before_reset="
                              f"{attrs.get('linear_before_reset', 0)} (the ONNX default) applies the "
                              "reset gate before the recurrent matrix; gst-rnn's GRU is PyTorch's, "
                              "which is linear_before_reset=1")
    for name in ("activation_alpha", "activation_beta"):
        if name in attrs:
            raise OnnxImportError(f"{where}: attribute {name} is given; gst-rnn's activations "
                                  "take no parameters")
    direction = _str(attrs.get("direction", "forward"))
    if direction not in ("forward", "bidirectional"):
        raise OnnxImportError(f"{where}: attribute direction={direction!r}: a recurrent layer that "
                              "runs only backward in time has no gst-rnn equivalent (forward and "
                              "bidirectional are supported)")
    D = 2 if direction == "bidirectional" else 1
    layout = attrs.get("layout", 0)
    if layout not in (0, 1):
        raise OnnxImportError(f"{where}: attribute layout={layout} is not 0 or 1")
    acts = [a.lower() for a in map(_str, attrs.get("activations", []))]
    if op == "RNN":
        default = ["tanh"]
        if acts and acts[:1] == ["relu"]:
            default = ["relu"]
        want = default * D
        what = "tanh or relu, the same in both directions"
    else:
        want = DEFAULT_ACTS[op] * D
        what = "the defaults " + ", ".join(DEFAULT_ACTS[op]) + " (per direction)"
    if acts and acts != want and acts != want[:len(want) // D]:
        raise OnnxImportError(f"{where}: attribute activations={list(map(_str, attrs['activations']))}: "
                              f"gst-rnn supports only {what}")
    cell = {"LSTM": "lstm", "GRU": "gru"}.get(op) or ("rnn_relu" if acts[:1] == ["relu"] else "rnn_tanh")
    return cell, D, layout


def _const(graph, values, data, name, what, node):
    if name in data:
        raise OnnxImportError(f"{_node_name(node)}: {what} ({name}) depends on the graph input; "
                              "it must be a constant")
    return values[name]


def _bias_vector(c, O, node):
    c = np.asarray(c, dtype=np.float64)
    if c.size == O and all(s == 1 for s in c.shape[:-1]) and (c.ndim == 0 or c.shape[-1] == O):
        return c.reshape(O)
    if c.size == 1:
        return np.full(O, float(c.reshape(-1)[0]))
    raise OnnxImportError(f"{_node_name(node)}: bias of shape {list(c.shape)} does not broadcast "
                          f"over the last axis of {O} outputs only")


def _input_dims(value_info, chosen):
    dims = []
    for k, d in enumerate(value_info.type.tensor_type.shape.dim):
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        else:
            key = d.dim_param or f"#{value_info.name}:{k}"
            dims.append(chosen.setdefault(key, None))
    return dims


def convert(path_or_model, out_path=None, *, output=None, zero_state_inputs=False,
            frame_size=None, output_frame_size=None, window=None, sample_rate=None,
            description=None, extra_meta=None, seed=0):
    """Convert an ONNX graph into a gst-rnn model; write it to @out_path.

    @output: name of the graph output to convert (default: the only one
    computed from a recurrent op's per-step output Y).  @zero_state_inputs:
    accept graph inputs feeding initial_h / initial_c (taken as zero).
    The metadata arguments are as in gstrnn.export(); for a
    bidirectional model @window defaults to the graph's fixed sequence
    length, if it has one.  Returns a dict: meta, tensors, max_error (of
    the check against the ONNX graph), notes (list of strings).
    Raises OnnxImportError for anything it does not convert.
    """
    model = load_graph(path_or_model)
    graph = _Graph(model)
    g = model.graph
    notes = []

    # ---- the data input(s) and the output
    rec_nodes = [n for n, node in enumerate(graph.nodes) if node.op_type in RECURRENT]
    if not rec_nodes:
        ops = sorted({node.op_type for node in graph.nodes})
        raise OnnxImportError(f"the graph holds no RNN, LSTM or GRU op (ops: {', '.join(ops) or 'none'})")
    # attributes first: what gst-rnn cannot express at all
    checked = {}
    for n in rec_nodes:
        node = graph.nodes[n]
        attrs = _attrs(node)
        checked[n] = (attrs,) + _check_recurrent(node, attrs, graph.opset)
        if len(node.input) > 4 and node.input[4]:
            raise OnnxImportError(f"{_node_name(node)}: input sequence_lens is given; gst-rnn runs "
                                  "every step of a stream (no per-batch sequence lengths)")

    # graph inputs whose values reach an initial_h / initial_c, and those
    # reaching a recurrent op's X
    state_uses = {(graph.nodes[n].input[k], k) for n in rec_nodes for k in (5, 6)
                  if len(graph.nodes[n].input) > k and graph.nodes[n].input[k]}
    x_uses = {graph.nodes[n].input[0] for n in rec_nodes}
    state_inputs = set()
    for i in graph.inputs:
        dep = graph.data_dependent({i.name})
        feeds_state = [k for name, k in state_uses if name in dep]
        if feeds_state:
            what = "initial_h" if 5 in feeds_state else "initial_c"
            if any(u in dep for u in x_uses):
                raise OnnxImportError(f"{what} of a recurrent op is computed from the values of the "
                                      f"input {i.name}; gst-rnn starts every stream from zero state")
            state_inputs.add(i.name)
    if state_inputs and not zero_state_inputs:
        raise OnnxImportError(
            "graph input(s) " + ", ".join(sorted(state_inputs)) + " feed the initial hidden state; "
            "rnnfilter starts every stream from zero state (pass --zero-state-inputs to convert "
            "anyway, taking them as zero)")
    data_inputs = [i for i in graph.inputs if i.name not in state_inputs]
    if len(data_inputs) != 1:
        raise OnnxImportError("the graph must have exactly one data input, it has "
                              f"{len(data_inputs)}: " + ", ".join(i.name for i in data_inputs))
    x_info = data_inputs[0]
    data = graph.data_dependent({x_info.name})

    y_outputs = {graph.nodes[n].output[0] for n in rec_nodes if graph.nodes[n].output
                 and graph.nodes[n].output[0]}
    if output is not None:
        if output not in {o.name for o in g.output}:
            raise OnnxImportError(f"the graph has no output {output!r} (outputs: "
                                  + ", ".join(o.name for o in g.output) + ")")
        out_name = output
    else:
        cands = []
        for o in g.output:
            anc = graph.ancestors([o.name])
            if o.name in y_outputs or any(y in graph.nodes[a].input for a in anc for y in y_outputs):
                cands.append(o.name)
        if not cands:
            raise OnnxImportError("no graph output is computed from a recurrent op's per-step "
                                  "output Y (a graph of the final state Y_h only has no streaming "
                                  "equivalent)")
        if len(cands) > 1:
            raise OnnxImportError("several graph outputs come from the recurrent output Y ("
                                  + ", ".join(cands) + "): choose one with --output-name NAME (output= in convert())")
        out_name = cands[0]
    ignored = [o.name for o in g.output if o.name != out_name]
    if ignored:
        notes.append("ignored graph output(s): " + ", ".join(ignored))
    if out_name not in data:
        raise OnnxImportError(f"output {out_name} does not depend on the input {x_info.name}")

    # ---- the chain of data-path nodes from the input to the output
    chain = []
    t = out_name
    while t != x_info.name:
        n = graph.producer.get(t)
        if n is None:
            raise OnnxImportError(f"tensor {t} on the data path has no producer")
        node = graph.nodes[n]
        data_ins = [k for k, i in enumerate(node.input) if i and i in data]
        if node.op_type in RECURRENT:
            if data_ins != [0]:
                bad = node.input[data_ins[-1]] if data_ins else "?"
                raise OnnxImportError(f"{_node_name(node)}: input {bad} depends on the graph input; "
                                      "only X may (weights and initial states must not)")
            if node.output[0] != t:
                which = {1: "Y_h (final hidden state)", 2: "Y_c (final cell state)"}.get(
                    list(node.output).index(t), t)
                raise OnnxImportError(f"{_node_name(node)}: the graph uses its output {which}, not the "
                                      "per-step output Y; that is a whole-sequence model with no "
                                      "streaming equivalent")
        elif len(data_ins) != 1:
            raise OnnxImportError(f"{_node_name(node)}: combines {len(data_ins)} tensors computed from "
                                  "the input; only a single chain of recurrent layers is understood")
        elif (node.op_type not in PLUMBING and node.op_type not in LINEAR
              and node.op_type != "Add" and node.op_type not in ACTIVATIONS):
            raise OnnxImportError(f"{_node_name(node)}: op {node.op_type} on the path from input to "
                                  "output is not understood (only the recurrent ops, "
                                  + ", ".join(sorted(PLUMBING))
                                  + ", a MatMul/Gemm (+Add) head and Softmax/Sigmoid/Tanh are)")
        chain.append(n)
        t = node.input[data_ins[0]]
    chain.reverse()

    rec_chain = [n for n in chain if graph.nodes[n].op_type in RECURRENT]
    if not rec_chain:
        raise OnnxImportError(f"output {out_name} is not computed through a recurrent op")
    off_chain = [n for n in rec_nodes if n not in rec_chain and n in graph.ancestors([out_name])]
    if off_chain:
        raise OnnxImportError(f"{_node_name(graph.nodes[off_chain[0]])} is not on the single chain "
                              "from input to output")
    unused = [n for n in rec_nodes if n not in rec_chain]
    if unused:
        notes.append("ignored recurrent op(s) not feeding the output: "
                     + ", ".join(_node_name(graph.nodes[n]) for n in unused))
    last = chain.index(rec_chain[-1])
    for n in chain[:last]:
        node = graph.nodes[n]
        if node.op_type not in RECURRENT and node.op_type not in PLUMBING:
            raise OnnxImportError(f"{_node_name(node)}: op {node.op_type} before or between recurrent "
                                  "layers is not understood (only plumbing: "
                                  + ", ".join(sorted(PLUMBING)) + ")")
    ops = [graph.nodes[n] for n in rec_chain]
    kinds = {node.op_type for node in ops}
    if len(kinds) > 1:
        raise OnnxImportError("the recurrent layers mix op types (" + ", ".join(sorted(kinds))
                              + "); a gst-rnn model has one cell type")

    cell = None
    layers = []
    for k, n in enumerate(rec_chain):
        node = graph.nodes[n]
        attrs, c, D, layout = checked[n]
        if cell is None:
            cell, D0 = c, D
        elif c != cell or D != D0:
            raise OnnxImportError(f"{_node_name(node)}: layer {k} is {c}{' bidirectional' if D == 2 else ''} "
                                  f"but layer 0 is {cell}{' bidirectional' if D0 == 2 else ''}")
        layers.append((node, attrs, layout))

    # ---- evaluate every node the output depends on (constants, shapes, the
    # states, and the reference output) at concrete sizes
    rng = np.random.default_rng(seed)
    needed = graph.ancestors([out_name])

    def evaluate(feeds):
        vals = dict(graph.consts)
        vals.update(feeds)
        for n in sorted(needed):
            node = graph.nodes[n]
            ins = [vals[i] if i else None for i in node.input]
            try:
                outs = _run_node(node, ins, graph.opset)
            except OnnxImportError:
                raise
            except Exception as e:  # a malformed graph: numpy says what
                raise OnnxImportError(f"{_node_name(node)}: evaluating it failed "
                                      f"({type(e).__name__}: {e})") from None
            for name, v in zip(node.output, outs):
                if name:
                    vals[name] = v
        return vals

    # ---- weights (initializers, or computed from constants only)
    chosen = {}
    dims = _input_dims(x_info, chosen)
    if len(dims) not in (2, 3):
        raise OnnxImportError(f"the input {x_info.name} has rank {len(dims)}; expected [T, B, I], "
                              "[B, T, I] or [T, I]")
    free_sizes = iter([7, 3, 5, 11, 13])      # for the input's free dimensions
    W0 = None
    const_vals = None

    def const_value(name):
        nonlocal const_vals
        if name in graph.consts:
            return graph.consts[name]
        if const_vals is None:
            const_vals = {}
            for n, node in enumerate(graph.nodes):
                if n not in needed or any(o in data for o in node.output):
                    continue
                ins = [const_vals.get(i, graph.consts.get(i)) if i else None for i in node.input]
                if any(i and v is None for i, v in zip(node.input, ins)):
                    continue   # depends on the input's shape: not a constant
                try:
                    outs = _run_node(node, ins, graph.opset)
                except Exception:
                    continue
                for nm, v in zip(node.output, outs):
                    if nm:
                        const_vals[nm] = v
        if name not in const_vals:
            raise OnnxImportError(f"tensor {name} is not a constant")
        return const_vals[name]

    G = RECURRENT[ops[0].op_type]
    order = GATE_ORDER[ops[0].op_type]
    params = {}
    H = None
    for k, (node, attrs, layout) in enumerate(layers):
        W = np.asarray(const_value(node.input[1]), dtype=np.float64)
        R = np.asarray(const_value(node.input[2]), dtype=np.float64)
        if W.ndim != 3 or R.ndim != 3 or W.shape[0] != D0 or R.shape[0] != D0:
            raise OnnxImportError(f"{_node_name(node)}: W {list(W.shape)} / R {list(R.shape)} are not "
                                  f"[{D0}, {G}*H, *]")
        Hk = R.shape[2]
        if R.shape[1] != G * Hk or W.shape[1] != G * Hk:
            raise OnnxImportError(f"{_node_name(node)}: W {list(W.shape)} / R {list(R.shape)} do not "
                                  f"hold {G} gates of hidden size {Hk}")
        if "hidden_size" in attrs and attrs["hidden_size"] != Hk:
            raise OnnxImportError(f"{_node_name(node)}: attribute hidden_size={attrs['hidden_size']} "
                                  f"but R is {list(R.shape)}")
        if H is None:
            H = Hk
            W0 = W
        elif Hk != H:
            raise OnnxImportError(f"{_node_name(node)}: hidden size {Hk}, layer 0 has {H}")
        elif W.shape[2] != D0 * H:
            raise OnnxImportError(f"{_node_name(node)}: layer {k} takes {W.shape[2]} inputs, "
                                  f"expected D*H = {D0 * H}")
        if len(node.input) > 3 and node.input[3]:
            Bv = np.asarray(const_value(node.input[3]), dtype=np.float64)
            if Bv.shape != (D0, 2 * G * H):
                raise OnnxImportError(f"{_node_name(node)}: B is {list(Bv.shape)}, expected "
                                      f"[{D0}, {2 * G * H}]")
        else:
            Bv = np.zeros((D0, 2 * G * H))
        if len(node.input) > 7 and node.input[7]:
            P = np.asarray(const_value(node.input[7]))
            if np.any(P != 0):
                raise OnnxImportError(f"{_node_name(node)}: input P (peephole weights) is non-zero; "
                                      "gst-rnn's LSTM (PyTorch's) has no peephole connections")
            notes.append(f"{_node_name(node)}: all-zero peephole input P ignored")

        def reorder(a):
            return np.concatenate([a[j * H:(j + 1) * H] for j in order], axis=0)

        for d, s in enumerate(("", "_reverse")[:D0]):
            params[f"weight_ih_l{k}{s}"] = reorder(W[d]).astype(np.float32)
            params[f"weight_hh_l{k}{s}"] = reorder(R[d]).astype(np.float32)
            params[f"bias_ih_l{k}{s}"] = reorder(Bv[d, :G * H]).astype(np.float32)
            params[f"bias_hh_l{k}{s}"] = reorder(Bv[d, G * H:]).astype(np.float32)
    I = W0.shape[2]

    # ---- the head
    head_w = head_b = None
    head_act = "none"
    stage = 0      # 0: nothing yet, 1: linear seen, 2: bias seen, 3: activation seen
    for n in chain[last + 1:]:
        node = graph.nodes[n]
        op = node.op_type
        if op in PLUMBING:
            continue
        attrs = _attrs(node)
        if op in LINEAR:
            if stage:
                raise OnnxImportError(f"{_node_name(node)}: a second linear layer after the recurrent "
                                      "output; the head is a single MatMul/Gemm")
            if op == "MatMul":
                if node.input[0] not in data:
                    raise OnnxImportError(f"{_node_name(node)}: the constant is the left operand; "
                                          "the head must be x @ W")
                Wm = np.asarray(const_value(node.input[1]), dtype=np.float64)
                if Wm.ndim != 2:
                    raise OnnxImportError(f"{_node_name(node)}: weight of shape {list(Wm.shape)} is not a matrix")
                head_w = Wm.T
                head_b = np.zeros(Wm.shape[1])
            else:
                if node.input[0] not in data or attrs.get("transA", 0):
                    raise OnnxImportError(f"{_node_name(node)}: the data must be Gemm's A input, "
                                          "without transA")
                Bm = np.asarray(const_value(node.input[1]), dtype=np.float64)
                if Bm.ndim != 2:
                    raise OnnxImportError(f"{_node_name(node)}: weight of shape {list(Bm.shape)} is not a matrix")
                head_w = attrs.get("alpha", 1.0) * (Bm if attrs.get("transB", 0) else Bm.T)
                head_b = np.zeros(head_w.shape[0])
                if len(node.input) > 2 and node.input[2]:
                    head_b = attrs.get("beta", 1.0) * _bias_vector(const_value(node.input[2]),
                                                                   head_w.shape[0], node)
            stage = 1
        elif op == "Add":
            if stage != 1:
                raise OnnxImportError(f"{_node_name(node)}: an Add that is not the bias right after "
                                      "the head's MatMul/Gemm is not understood")
            other = [i for i in node.input if i not in data][0]
            head_b = head_b + _bias_vector(const_value(other), head_w.shape[0], node)
            stage = 2
        elif op in ACTIVATIONS:
            if stage == 3:
                raise OnnxImportError(f"{_node_name(node)}: a second activation after the head")
            head_act = ACTIVATIONS[op]
            stage = 3
    D = D0
    if head_act != "none" and head_w is None:
        head_w = np.eye(D * H)            # an activation straight on h: identity head
        head_b = np.zeros(D * H)
        notes.append(f"{head_act} applied to the recurrent output directly: written as an "
                     "identity head")
    if head_w is not None and head_w.shape[1] != D * H:
        raise OnnxImportError(f"the head takes {head_w.shape[1]} inputs but the recurrent layers "
                              f"give D*H = {D * H}")

    # ---- check the conversion against the graph itself
    base = list(dims)
    for key in list(chosen):
        chosen[key] = next(free_sizes)
        while chosen[key] == I:
            chosen[key] = next(free_sizes)
    dims = _input_dims(x_info, chosen)
    x = rng.standard_normal(dims).astype(_np_dtype(x_info.type.tensor_type.elem_type))
    feeds = {x_info.name: x}
    for i in graph.inputs:
        if i.name in state_inputs:
            sdims = _input_dims(i, chosen)
            if any(d is None for d in sdims):
                raise OnnxImportError(f"state input {i.name} has a size not shared with the data input")
            feeds[i.name] = np.zeros(sdims, dtype=_np_dtype(i.type.tensor_type.elem_type))
    vals = evaluate(feeds)
    for node, _, _ in layers:
        for k, what in ((5, "initial_h"), (6, "initial_c")):
            if len(node.input) > k and node.input[k] and node.input[k] not in state_inputs:
                v = vals[node.input[k]]
                if np.any(v != 0):
                    raise OnnxImportError(f"{_node_name(node)}: input {what} is not zero; gst-rnn "
                                          "starts every stream from zero state")
    got = np.asarray(vals[out_name], dtype=np.float64)

    tensors = {"rnn." + k: v for k, v in params.items()}
    if head_w is not None:
        tensors["head.weight"] = head_w.astype(np.float32)
        tensors["head.bias"] = head_b.astype(np.float32)
    meta = {"cell": cell, "num_layers": str(len(layers)), "hidden_size": str(H),
            "bidirectional": "true" if D == 2 else "false", "head_activation": head_act}
    O = head_w.shape[0] if head_w is not None else D * H

    best = None
    rank = len(dims)
    roles = ("T", "B", "I") if rank == 3 else ("T", "I")
    for perm in itertools.permutations(range(rank)):
        role_axis = dict(zip(roles, perm))
        if dims[role_axis["I"]] != I:
            continue
        if rank == 3:
            x3 = np.transpose(x, (role_axis["T"], role_axis["B"], role_axis["I"]))
        else:
            x3 = np.transpose(x, (role_axis["T"], role_axis["I"]))[:, None, :]
        ref = reference_forward(meta, tensors, x3)     # [T, B, O]
        T_, B_ = ref.shape[:2]
        want_axes = {"T": T_, "B": B_, "O": O} if rank == 3 or B_ != 1 else {"T": T_, "O": O}
        for operm in itertools.permutations(range(got.ndim)):
            if got.ndim != len(want_axes):
                break
            names = list(want_axes)
            shaped = {names[j]: operm[j] for j in range(len(names))}
            if any(got.shape[shaped[r]] != want_axes[r] for r in names):
                continue
            g3 = np.transpose(got, [shaped[r] for r in names])
            r3 = ref if len(names) == 3 else ref[:, 0, :]
            err = float(np.max(np.abs(g3 - r3))) if g3.size else 0.0
            if best is None or err < best[0]:
                best = (err, role_axis, names, shaped)
    if best is None:
        raise OnnxImportError(f"the output {out_name} has shape {list(got.shape)}, which is not the "
                              f"converted model's [T, B, O] (O = {O}) in any axis order")
    if not best[0] <= TOLERANCE:
        raise OnnxImportError(f"the graph around the recurrent ops computes something else than the "
                              f"converted model (max difference {best[0]:.3g} on a random input): "
                              "unsupported plumbing or head")
    t_axis = best[1]["T"]

    def source_forward(x2):
        """The graph itself on one stream x2 [T][I] (batch 1) -> [T][O], float64."""
        x2 = np.asarray(x2, dtype=np.float64)
        T_ = x2.shape[0]
        if base[t_axis] is not None and base[t_axis] != T_:
            raise OnnxImportError(f"the graph takes sequences of {base[t_axis]} steps only")
        role_axis = best[1]
        sizes = dict(chosen)
        keys = [d.dim_param or f"#{x_info.name}:{k}"
                for k, d in enumerate(x_info.type.tensor_type.shape.dim)]
        B_ = 1 if rank == 2 or base[role_axis["B"]] is None else base[role_axis["B"]]
        sizes[keys[t_axis]] = T_
        if rank == 3:
            sizes[keys[role_axis["B"]]] = B_
        roles_x = np.zeros((T_, B_, I) if rank == 3 else (T_, I))
        if rank == 3:
            roles_x[:, 0, :] = x2
        else:
            roles_x[:] = x2
        perm = [role_axis[r] for r in roles]
        xin = np.transpose(roles_x, np.argsort(perm)).astype(
            _np_dtype(x_info.type.tensor_type.elem_type))
        f = {x_info.name: xin}
        for i in graph.inputs:
            if i.name in state_inputs:
                f[i.name] = np.zeros(_input_dims(i, sizes),
                                     dtype=_np_dtype(i.type.tensor_type.elem_type))
        y = np.asarray(evaluate(f)[out_name], dtype=np.float64)
        names_, shaped_ = best[2], best[3]
        y = np.transpose(y, [shaped_[r] for r in names_])
        return y[:, 0, :] if len(names_) == 3 else y
    if D == 2 and window is None and base[t_axis] is not None:
        window = base[t_axis]
        notes.append(f"window {window} from the graph's fixed sequence length")
    elif D == 2 and window is None:
        notes.append("bidirectional without a window: set rnnfilter's window property "
                     "(or convert with --window N)")

    if out_path is not None:
        export_arrays(out_path, cell, params, head_weight=head_w, head_bias=head_b,
                                    head_activation=head_act, frame_size=frame_size,
                                    output_frame_size=output_frame_size, window=window,
                                    sample_rate=sample_rate, description=description,
                                    extra_meta=extra_meta)
    full_meta = dict(meta, input_size=str(I), format="gst-rnn", version="1")
    if window is not None:
        full_meta["window"] = str(window)
    return {"meta": full_meta, "tensors": tensors, "max_error": best[0], "notes": notes,
            "opset": graph.opset, "output": out_name, "input": x_info.name,
            "forward": source_forward, "fixed_steps": base[t_axis]}
