# SPDX-License-Identifier: LGPL-2.1-or-later
"""Read and write gst-rnn model files (docs/design.md §3) from Python.

A gst-rnn model is a safetensors file: an 8-byte little-endian header length
N, N bytes of JSON (starting with '{', padded with spaces to a multiple of 8),
then the raw tensors, F32 little-endian, contiguous from offset 0 with no
trailing bytes.  Tensor names follow PyTorch's state_dict of an
nn.RNN / nn.LSTM / nn.GRU held as ``rnn`` and an nn.Linear held as ``head``,
plus ``input.mean`` / ``input.std`` for the optional input normalisation.

Public functions:

    export(rnn, head, path, ...)     write a torch model as a gst-rnn file
    write_safetensors(path, tensors, metadata)
                                     write any dict of float32 arrays
    load(path) -> (meta, tensors)    read a file (any safetensors file of
                                     F32/F16/BF16/F64 tensors) as numpy float32
    export_arrays(path, cell, params, ...)
                                     write plain arrays (torch state_dict
                                     names) as a gst-rnn file, no torch needed
    build_torch(path) -> (rnn, head, meta, mean, std)
                                     rebuild torch modules from a model file
    torch_forward(rnn, head, head_activation, x, mean=None, std=None)
                                     PyTorch's reference output for x [T, B, I]
    reference_forward(meta, tensors, x)
                                     the same in plain numpy (float64), from
                                     load()'s result, for x [T, B, I]

Only numpy and the standard library are needed, plus torch for export(),
build_torch() and torch_forward() (imported when available).
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile

import numpy as np

try:
    import torch
    from torch import nn
except ImportError:     # load / write_safetensors / export_arrays work without
    torch = None
    nn = None

__all__ = [
    "CELLS",
    "HEAD_ACTIVATIONS",
    "export",
    "export_arrays",
    "write_safetensors",
    "load",
    "build_torch",
    "torch_forward",
    "reference_forward",
]

# Contract vocabulary (docs/design.md §3).
CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
HEAD_ACTIVATIONS = ("none", "softmax", "sigmoid", "tanh")
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}

# Metadata keys owned by the configuration: export() computes them itself and
# refuses to take them from extra_meta.
_CONFIG_KEYS = (
    "format", "version", "cell", "input_size", "hidden_size", "num_layers",
    "bidirectional", "head_activation", "frame_size", "output_frame_size",
    "window", "sample_rate", "description",
)

# Refuse headers larger than this when reading (safetensors uses 100 MB).
_MAX_HEADER = 100 * 1000 * 1000

# dtype name in the file -> (numpy dtype, bytes per element)
_READ_DTYPES = {
    "F32": (np.dtype("<f4"), 4),
    "F64": (np.dtype("<f8"), 8),
    "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("<u2"), 2),  # converted by hand below
}


# --------------------------------------------------------------------------
# raw safetensors


def _atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write @data to @path through a temporary file and a rename."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def serialize_safetensors(tensors: dict, metadata: dict | None = None) -> bytes:
    """The bytes of a safetensors file holding @tensors as F32.

    @tensors maps name -> array-like (numpy array or torch tensor); every
    value is converted to little-endian float32.  Tensors are stored in
    order of name, contiguous from offset 0.  @metadata values must be
    strings (safetensors requires it).
    """
    header: dict = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError(f"metadata {k!r}: keys and values must be strings, got {type(v).__name__}")
        header["__metadata__"] = dict(sorted(metadata.items()))

    blobs = []
    offset = 0
    for name in sorted(tensors):
        if name == "__metadata__":
            raise ValueError("'__metadata__' is not a valid tensor name")
        value = tensors[name]
        if torch is not None and isinstance(value, torch.Tensor):
            value = value.detach().cpu().to(torch.float32).numpy()
        arr = np.ascontiguousarray(np.asarray(value, dtype=np.float32)).astype("<f4", copy=False)
        blob = arr.tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)

    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)          # pad to a multiple of 8 with spaces
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def write_safetensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Write @tensors (name -> array) as an F32 safetensors file, atomically."""
    _atomic_write(path, serialize_safetensors(tensors, metadata))


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


def load(path) -> tuple[dict, dict]:
    """Read a safetensors file: (metadata dict, {name: numpy float32 array}).

    Applies safetensors' structural checks (header bound, offsets in range,
    contiguous from 0 and non-overlapping, size = numel * dtype size, no
    trailing bytes) and raises ValueError naming the file otherwise.
    F16, BF16 and F64 tensors are converted to float32.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()

    def fail(msg):
        raise ValueError(f"{path}: {msg}")

    if len(data) < 8:
        fail("file too short for a safetensors header")
    (n,) = struct.unpack_from("<Q", data, 0)
    if n > _MAX_HEADER or n > len(data) - 8:
        fail(f"header length {n} out of range")
    raw_header = data[8:8 + n]
    if not raw_header.startswith(b"{"):
        fail("header does not start with '{'")
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"header is not valid JSON: {e}")
    if not isinstance(header, dict):
        fail("header is not a JSON object")

    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        fail("__metadata__ must map strings to strings")

    body = memoryview(data)[8 + n:]
    entries = []
    for name, info in header.items():
        if not isinstance(info, dict):
            fail(f"tensor {name!r}: entry is not an object")
        dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in _READ_DTYPES:
            fail(f"tensor {name!r}: unsupported dtype {dtype!r}")
        if (not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape)):
            fail(f"tensor {name!r}: bad shape {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(isinstance(o, int) for o in offs) or not 0 <= offs[0] <= offs[1]):
            fail(f"tensor {name!r}: bad data_offsets {offs!r}")
        nbytes = math.prod(shape) * _READ_DTYPES[dtype][1]
        if offs[1] - offs[0] != nbytes:
            fail(f"tensor {name!r}: {offs[1] - offs[0]} bytes for shape {shape} {dtype}")
        entries.append((offs[0], offs[1], name, dtype, shape))

    # Offsets must tile the body exactly: contiguous from 0, no holes, no
    # overlap, no trailing bytes.
    entries.sort()
    end = 0
    for start, stop, name, _, _ in entries:
        if start != end:
            fail(f"tensor {name!r}: data starts at {start}, expected {end}")
        end = stop
    if end != len(body):
        fail(f"tensor data is {end} bytes but the file holds {len(body)}")

    tensors = {}
    for start, stop, name, dtype, shape in entries:
        np_dtype = _READ_DTYPES[dtype][0]
        arr = np.frombuffer(body[start:stop], dtype=np_dtype).copy()
        if dtype == "BF16":
            arr = _bf16_to_f32(arr)
        tensors[name] = arr.astype(np.float32).reshape(shape)
    return meta, tensors


# --------------------------------------------------------------------------
# export


def _need_torch(what):
    if torch is None:
        raise ImportError(f"{what} needs PyTorch (Debian: python3-torch)")


def _cell_name(rnn) -> str:
    """Contract cell name of a torch recurrent module, or ValueError."""
    _need_torch("export()")
    if not isinstance(rnn, nn.RNNBase):
        raise ValueError(f"rnn must be an nn.RNN, nn.LSTM or nn.GRU, got {type(rnn).__name__}")
    mode = {"RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu", "LSTM": "lstm", "GRU": "gru"}.get(rnn.mode)
    if mode is None:
        raise ValueError(f"unsupported recurrent mode {rnn.mode!r}")
    return mode


def _positive_int(name, value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return str(int(value))


def _as_f32(name, value, shape) -> np.ndarray:
    if torch is not None and isinstance(value, torch.Tensor):
        value = value.detach().cpu().to(torch.float32).numpy()
    arr = np.asarray(value, dtype=np.float32)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} has shape {list(arr.shape)}, expected {list(shape)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds non-finite values")
    return arr


def export(rnn, head=None, path=None, *, norm_mean=None, norm_std=None,
           head_activation=None, frame_size=None, output_frame_size=None,
           window=None, sample_rate=None, description=None, extra_meta=None,
           labels=None, check=True, tolerance=None):
    """Write a live PyTorch model to @path as a gst-rnn model.

    export(module, path, ...): a whole nn.Module, read by its submodules as
    tools/gst-rnn-convert reads one ([Linear [act]]... RNN/LSTM/GRU
    [Linear [act]]..., gstrnn.torch_modules); with @check (the default) the
    written file is played through rnnfilter and compared with
    module.forward() on a test signal, and nothing is written unless they
    agree (a residual input skip in forward() is found so); ValueError says
    what differs.  @labels: class names of a softmax head.  Returns the
    converter's report lines.

    export(rnn, head, path, ...): the recurrent module and a head as below,
    written as they are (no check).

    @rnn: nn.RNN (tanh or relu), nn.LSTM or nn.GRU, batch_first or not, with
    bias=True and (LSTM) proj_size=0.  Dropout is ignored (inference).
    @head: None or an nn.Linear(D*H, O).  A head without bias is written with
    a zero bias.
    @norm_mean, @norm_std: optional [I] arrays, both or neither; the model
    then computes (x - mean) / std before layer 0.  std must be > 0.
    @head_activation: 'none', 'softmax', 'sigmoid' or 'tanh' (needs a head
    unless 'none').
    @frame_size, @output_frame_size, @window, @sample_rate: optional positive
    ints recorded in the metadata (docs/design.md §4).
    @description: optional string.  @extra_meta: optional dict of further
    string metadata (e.g. train_*); it may not override the keys above.
    """
    if path is None and isinstance(head, (str, os.PathLike)):
        head, path = None, head
        whole = True
    else:
        whole = not isinstance(rnn, nn.RNNBase)
    if path is None:
        raise TypeError("export() needs the path of the model file to write")
    if whole:
        if head is not None:
            raise ValueError("export(module, path): the head is read from the module")
        from .convert import export_module
        return export_module(rnn, path, norm_mean=norm_mean, norm_std=norm_std,
                             head_activation=head_activation, frame_size=frame_size,
                             output_frame_size=output_frame_size, window=window,
                             sample_rate=sample_rate, description=description,
                             extra_meta=extra_meta, labels=labels, check=check,
                             tolerance=tolerance)
    if head_activation is None:
        head_activation = "none"
    if labels is not None:
        extra_meta = dict(extra_meta or {}, labels=",".join(labels))
    cell = _cell_name(rnn)
    if not rnn.bias:
        raise ValueError("rnn must be built with bias=True (gst-rnn models always carry biases)")
    if getattr(rnn, "proj_size", 0) != 0:
        raise ValueError(f"LSTM projections are not supported (proj_size={rnn.proj_size}); use proj_size=0")

    head_weight = head_bias = None
    if head is not None:
        if not isinstance(head, nn.Linear):
            raise ValueError(f"head must be an nn.Linear, got {type(head).__name__}")
        head_weight = head.weight
        head_bias = head.bias if head.bias is not None else np.zeros(head.out_features, np.float32)

    export_arrays(path, cell, dict(rnn.named_parameters()),
                  input_size=rnn.input_size, hidden_size=rnn.hidden_size,
                  num_layers=rnn.num_layers, bidirectional=rnn.bidirectional,
                  head_weight=head_weight, head_bias=head_bias,
                  norm_mean=norm_mean, norm_std=norm_std,
                  head_activation=head_activation, frame_size=frame_size,
                  output_frame_size=output_frame_size, window=window,
                  sample_rate=sample_rate, description=description,
                  extra_meta=extra_meta)


def _infer_sizes(cell, params):
    """(input_size, hidden_size, num_layers, bidirectional) from the shapes
    of a recurrent state_dict (names weight_ih_l0, ...), or ValueError."""
    G = GATES[cell]
    w_hh = params.get("weight_hh_l0")
    w_ih = params.get("weight_ih_l0")
    if w_hh is None or w_ih is None:
        raise ValueError("rnn parameters need weight_ih_l0 and weight_hh_l0")
    w_hh_shape, w_ih_shape = tuple(w_hh.shape), tuple(w_ih.shape)
    if len(w_hh_shape) != 2 or len(w_ih_shape) != 2:
        raise ValueError(f"weight_hh_l0 / weight_ih_l0 must be matrices, got shapes "
                         f"{list(w_hh_shape)} / {list(w_ih_shape)}")
    H = w_hh_shape[1]
    if H <= 0 or w_hh_shape[0] != G * H:
        raise ValueError(f"weight_hh_l0 has shape {list(w_hh_shape)}, but a {cell} cell "
                         f"needs [{G}*H, H] ({G} gate{'s' if G > 1 else ''})")
    L = 0
    while f"weight_ih_l{L}" in params:
        L += 1
    return w_ih_shape[1], H, L, "weight_ih_l0_reverse" in params


def export_arrays(path, cell, params, *, input_size=None, hidden_size=None,
                  num_layers=None, bidirectional=None, head_weight=None,
                  head_bias=None, norm_mean=None, norm_std=None,
                  head_activation="none", frame_size=None,
                  output_frame_size=None, window=None, sample_rate=None,
                  description=None, extra_meta=None):
    """Write a model given as plain arrays to @path; needs no torch.

    @cell: 'rnn_tanh', 'rnn_relu', 'lstm' or 'gru'.  @params maps PyTorch's
    parameter names of the recurrent module (weight_ih_l0, bias_hh_l1_reverse,
    ...; an 'rnn.' prefix is accepted) to arrays (numpy or torch) in PyTorch's
    gate order.  @input_size, @hidden_size, @num_layers, @bidirectional are
    inferred from the shapes when None, and checked when given.  The set of
    names must be exactly the one PyTorch's module of that configuration has.
    @head_weight [O, D*H] and @head_bias [O]: optional linear head (a weight
    without bias gets a zero bias).  The other arguments are as in export().
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    params = {(n[4:] if n.startswith("rnn.") else n): v for n, v in params.items()}
    I, H, L, bidir = _infer_sizes(cell, params)
    for name, given, found in (("input_size", input_size, I), ("hidden_size", hidden_size, H),
                               ("num_layers", num_layers, L)):
        if given is not None and int(given) != found:
            raise ValueError(f"{name} is {given} but the parameters have {found}")
    if bidirectional is not None and bool(bidirectional) != bidir:
        raise ValueError(f"bidirectional is {bool(bidirectional)} but the parameters "
                         f"{'have' if bidir else 'lack'} *_reverse tensors")
    for name, v in (("input_size", I), ("hidden_size", H), ("num_layers", L)):
        _positive_int(name, v)

    D = 2 if bidir else 1
    G = GATES[cell]
    tensors: dict[str, np.ndarray] = {}
    for k in range(L):
        in_k = I if k == 0 else D * H
        for s in ("", "_reverse")[:D]:
            for kind, shape in (("weight_ih", (G * H, in_k)), ("weight_hh", (G * H, H)),
                                ("bias_ih", (G * H,)), ("bias_hh", (G * H,))):
                torch_name = f"{kind}_l{k}{s}"
                if torch_name not in params:
                    raise ValueError(f"rnn has no parameter {torch_name}")
                tensors[f"rnn.{torch_name}"] = _as_f32(f"rnn.{torch_name}", params[torch_name], shape)
    unexpected = {f"rnn.{n}" for n in params} - set(tensors)
    if unexpected:
        raise ValueError(f"unexpected rnn parameters: {sorted(unexpected)}")

    if head_activation not in HEAD_ACTIVATIONS:
        raise ValueError(f"head_activation must be one of {HEAD_ACTIVATIONS}, got {head_activation!r}")
    output_size = D * H
    if head_weight is not None:
        w_shape = tuple(head_weight.shape)
        if len(w_shape) != 2:
            raise ValueError(f"head.weight must be a matrix, got shape {list(w_shape)}")
        if w_shape[1] != D * H:
            raise ValueError(f"head takes {w_shape[1]} inputs but the rnn gives D*H = {D * H}")
        output_size = w_shape[0]
        tensors["head.weight"] = _as_f32("head.weight", head_weight, (output_size, D * H))
        if head_bias is None:
            head_bias = np.zeros(output_size, np.float32)
        tensors["head.bias"] = _as_f32("head.bias", head_bias, (output_size,))
    elif head_bias is not None:
        raise ValueError("head_bias given without head_weight")
    elif head_activation != "none":
        raise ValueError(f"head_activation {head_activation!r} needs a head")

    if (norm_mean is None) != (norm_std is None):
        raise ValueError("give both norm_mean and norm_std, or neither")
    if norm_mean is not None:
        tensors["input.mean"] = _as_f32("input.mean", norm_mean, (I,))
        std = _as_f32("input.std", norm_std, (I,))
        if not np.all(std > 0):
            raise ValueError("input.std must be > 0 everywhere")
        tensors["input.std"] = std

    meta = {
        "format": "gst-rnn",
        "version": "1",
        "cell": cell,
        "input_size": str(I),
        "hidden_size": str(H),
        "num_layers": str(L),
        "bidirectional": "true" if D == 2 else "false",
        "head_activation": head_activation,
    }
    if frame_size is not None:
        meta["frame_size"] = _positive_int("frame_size", frame_size)
        if I % int(frame_size):
            raise ValueError(f"input_size {I} is not a multiple of frame_size {frame_size}")
    if output_frame_size is not None:
        meta["output_frame_size"] = _positive_int("output_frame_size", output_frame_size)
        if output_size % int(output_frame_size):
            raise ValueError(f"output size {output_size} is not a multiple of output_frame_size {output_frame_size}")
    if window is not None:
        meta["window"] = _positive_int("window", window)
    if sample_rate is not None:
        meta["sample_rate"] = _positive_int("sample_rate", sample_rate)
    if description is not None:
        if not isinstance(description, str):
            raise ValueError("description must be a string")
        meta["description"] = description
    for key, value in (extra_meta or {}).items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"metadata key {key!r} must be a non-empty string")
        if key in _CONFIG_KEYS:
            raise ValueError(f"metadata key {key!r} is set by export() itself")
        if not isinstance(value, str):
            raise ValueError(f"metadata {key!r} must be a string, got {type(value).__name__}")
        meta[key] = value

    write_safetensors(path, tensors, meta)


# --------------------------------------------------------------------------
# import and reference forward


def _meta_int(path, meta, key) -> int:
    try:
        v = int(meta[key])
    except (KeyError, ValueError):
        raise ValueError(f"{path}: metadata {key!r} missing or not an integer") from None
    if v <= 0:
        raise ValueError(f"{path}: metadata {key!r} must be positive")
    return v


def build_torch(path):
    """Rebuild torch modules from a gst-rnn model file.

    Returns (rnn, head_or_None, meta, mean, std): @rnn is time-major
    (batch_first=False) in eval mode, @head an nn.Linear or None, @meta the
    metadata dict, @mean and @std numpy float32 [I] arrays or None.
    """
    _need_torch("build_torch()")
    meta, tensors = load(path)
    if meta.get("format") != "gst-rnn" or meta.get("version") != "1":
        raise ValueError(f"{path}: not a gst-rnn version 1 model")
    cell = meta.get("cell")
    if cell not in CELLS:
        raise ValueError(f"{path}: unknown cell {cell!r}")
    I = _meta_int(path, meta, "input_size")
    H = _meta_int(path, meta, "hidden_size")
    L = _meta_int(path, meta, "num_layers")
    bidir = {"true": True, "false": False}.get(meta.get("bidirectional"))
    if bidir is None:
        raise ValueError(f"{path}: bidirectional must be 'true' or 'false'")
    act = meta.get("head_activation")
    if act not in HEAD_ACTIVATIONS:
        raise ValueError(f"{path}: unknown head_activation {act!r}")

    kw = dict(input_size=I, hidden_size=H, num_layers=L, bias=True, bidirectional=bidir)
    if cell == "lstm":
        rnn = nn.LSTM(**kw)
    elif cell == "gru":
        rnn = nn.GRU(**kw)
    else:
        rnn = nn.RNN(nonlinearity=cell[4:], **kw)
    rnn_state = {n[4:]: torch.from_numpy(t) for n, t in tensors.items() if n.startswith("rnn.")}
    rnn.load_state_dict(rnn_state, strict=True)   # checks names and shapes
    rnn.eval()

    head = None
    if "head.weight" in tensors or "head.bias" in tensors:
        w, b = tensors.get("head.weight"), tensors.get("head.bias")
        if w is None or b is None or w.ndim != 2 or b.shape != (w.shape[0],):
            raise ValueError(f"{path}: head.weight / head.bias missing or misshapen")
        head = nn.Linear(w.shape[1], w.shape[0])
        head.load_state_dict({"weight": torch.from_numpy(w), "bias": torch.from_numpy(b)})
        head.eval()

    mean, std = tensors.get("input.mean"), tensors.get("input.std")
    if (mean is None) != (std is None):
        raise ValueError(f"{path}: input.mean and input.std come together")
    known = {"head.weight", "head.bias", "input.mean", "input.std"}
    extra = [n for n in tensors if not n.startswith("rnn.") and n not in known]
    if extra:
        raise ValueError(f"{path}: unexpected tensors {extra}")
    return rnn, head, meta, mean, std


def torch_forward(rnn, head, head_activation, x, mean=None, std=None) -> np.ndarray:
    """PyTorch's output for @x [T, B, I] (time-major float32) from zero state.

    Applies the input normalisation (x - mean) / std, the rnn, the optional
    nn.Linear @head and @head_activation (softmax over the last dim, sigmoid,
    tanh).  For a bidirectional rnn each of the B streams is one whole
    sequence.  Returns a numpy float32 array [T, B, O].
    """
    _need_torch("torch_forward()")
    if head_activation not in HEAD_ACTIVATIONS:
        raise ValueError(f"unknown head_activation {head_activation!r}")
    with torch.inference_mode():
        xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
        if xt.ndim != 3:
            raise ValueError(f"x must be [T, B, I], got shape {list(xt.shape)}")
        if mean is not None:
            xt = (xt - torch.as_tensor(np.asarray(mean, np.float32))) / torch.as_tensor(np.asarray(std, np.float32))
        if rnn.batch_first:
            y, _ = rnn(xt.transpose(0, 1))
            y = y.transpose(0, 1)
        else:
            y, _ = rnn(xt)
        if head is not None:
            y = head(y)
        if head_activation == "softmax":
            y = torch.softmax(y, dim=-1)
        elif head_activation == "sigmoid":
            y = torch.sigmoid(y)
        elif head_activation == "tanh":
            y = torch.tanh(y)
        return y.to(torch.float32).contiguous().numpy().copy()


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def reference_forward(meta, tensors, x) -> np.ndarray:
    """The model's output for @x [T, B, I] from zero state, in numpy float64.

    @meta and @tensors as load() returns them.  Implements docs/design.md §2
    directly (PyTorch's gate order and equations) without torch; a
    bidirectional model treats each of the B streams as one whole sequence.
    Returns a float64 array [T, B, O].
    """
    cell = meta["cell"]
    L = int(meta["num_layers"])
    H = int(meta["hidden_size"])
    D = 2 if meta["bidirectional"] == "true" else 1
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"x must be [T, B, I], got shape {list(x.shape)}")
    if "input.mean" in tensors:
        x = (x - tensors["input.mean"].astype(np.float64)) / tensors["input.std"].astype(np.float64)
    T, B = x.shape[:2]
    inp = x
    for k in range(L):
        outs = []
        for d, s in enumerate(("", "_reverse")[:D]):
            w_ih, w_hh, b_ih, b_hh = (tensors[f"rnn.{n}_l{k}{s}"].astype(np.float64)
                                      for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            h = np.zeros((B, H))
            c = np.zeros((B, H))
            y = np.zeros((T, B, H))
            steps = range(T - 1, -1, -1) if d else range(T)
            for t in steps:
                gi = inp[t] @ w_ih.T + b_ih
                gh = h @ w_hh.T + b_hh
                if cell == "lstm":
                    a = gi + gh
                    i, f, g, o = (a[:, j * H:(j + 1) * H] for j in range(4))
                    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
                    h = _sigmoid(o) * np.tanh(c)
                elif cell == "gru":
                    r = _sigmoid(gi[:, :H] + gh[:, :H])
                    z = _sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
                    n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
                    h = (1 - z) * n + z * h
                elif cell == "rnn_relu":
                    h = np.maximum(gi + gh, 0.0)
                else:
                    h = np.tanh(gi + gh)
                y[t] = h
            outs.append(y)
        inp = np.concatenate(outs, axis=-1)
    y = inp
    if "head.weight" in tensors:
        y = y @ tensors["head.weight"].astype(np.float64).T + tensors["head.bias"].astype(np.float64)
    act = meta.get("head_activation", "none")
    if act == "softmax":
        e = np.exp(y - y.max(axis=-1, keepdims=True))
        y = e / e.sum(axis=-1, keepdims=True)
    elif act == "sigmoid":
        y = _sigmoid(y)
    elif act == "tanh":
        y = np.tanh(y)
    return y
