"""Read and write gst-rnn model files (DESIGN.md §3) from Python.

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
    build_torch(path) -> (rnn, head, meta, mean, std)
                                     rebuild torch modules from a model file
    torch_forward(rnn, head, head_activation, x, mean=None, std=None)
                                     PyTorch's reference output for x [T, B, I]

Only torch, numpy and the standard library are needed.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile

import numpy as np
import torch
from torch import nn

__all__ = [
    "CELLS",
    "HEAD_ACTIVATIONS",
    "export",
    "write_safetensors",
    "load",
    "build_torch",
    "torch_forward",
]

# Contract vocabulary (DESIGN.md §3).
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
        if isinstance(value, torch.Tensor):
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


def _cell_name(rnn: nn.Module) -> str:
    """Contract cell name of a torch recurrent module, or ValueError."""
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
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().to(torch.float32).numpy()
    arr = np.asarray(value, dtype=np.float32)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} has shape {list(arr.shape)}, expected {list(shape)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds non-finite values")
    return arr


def export(rnn, head, path, *, norm_mean=None, norm_std=None,
           head_activation="none", frame_size=None, output_frame_size=None,
           window=None, sample_rate=None, description=None, extra_meta=None):
    """Write @rnn (+ optional nn.Linear @head) to @path as a gst-rnn model.

    @rnn: nn.RNN (tanh or relu), nn.LSTM or nn.GRU, batch_first or not, with
    bias=True and (LSTM) proj_size=0.  Dropout is ignored (inference).
    @head: None or an nn.Linear(D*H, O).  A head without bias is written with
    a zero bias.
    @norm_mean, @norm_std: optional [I] arrays, both or neither; the model
    then computes (x - mean) / std before layer 0.  std must be > 0.
    @head_activation: 'none', 'softmax', 'sigmoid' or 'tanh' (needs a head
    unless 'none').
    @frame_size, @output_frame_size, @window, @sample_rate: optional positive
    ints recorded in the metadata (DESIGN.md §4).
    @description: optional string.  @extra_meta: optional dict of further
    string metadata (e.g. train_*); it may not override the keys above.
    """
    cell = _cell_name(rnn)
    if not rnn.bias:
        raise ValueError("rnn must be built with bias=True (gst-rnn models always carry biases)")
    if getattr(rnn, "proj_size", 0) != 0:
        raise ValueError(f"LSTM projections are not supported (proj_size={rnn.proj_size}); use proj_size=0")

    I, H, L = rnn.input_size, rnn.hidden_size, rnn.num_layers
    D = 2 if rnn.bidirectional else 1
    G = GATES[cell]

    tensors: dict[str, np.ndarray] = {}
    params = dict(rnn.named_parameters())
    for k in range(L):
        in_k = I if k == 0 else D * H
        for s in ("", "_reverse")[:D]:
            for kind, shape in (("weight_ih", (G * H, in_k)), ("weight_hh", (G * H, H)),
                                ("bias_ih", (G * H,)), ("bias_hh", (G * H,))):
                torch_name = f"{kind}_l{k}{s}"
                if torch_name not in params:
                    raise ValueError(f"rnn has no parameter {torch_name}")
                tensors[f"rnn.{torch_name}"] = _as_f32(f"rnn.{torch_name}", params[torch_name], shape)
    expected = {f"rnn.{n}" for n in params}
    if expected != {n for n in tensors if n.startswith("rnn.")}:
        raise ValueError(f"unexpected rnn parameters: {sorted(expected - set(tensors))}")

    if head_activation not in HEAD_ACTIVATIONS:
        raise ValueError(f"head_activation must be one of {HEAD_ACTIVATIONS}, got {head_activation!r}")
    output_size = D * H
    if head is not None:
        if not isinstance(head, nn.Linear):
            raise ValueError(f"head must be an nn.Linear, got {type(head).__name__}")
        if head.in_features != D * H:
            raise ValueError(f"head takes {head.in_features} inputs but the rnn gives D*H = {D * H}")
        output_size = head.out_features
        tensors["head.weight"] = _as_f32("head.weight", head.weight, (output_size, D * H))
        bias = head.bias if head.bias is not None else np.zeros(output_size, np.float32)
        tensors["head.bias"] = _as_f32("head.bias", bias, (output_size,))
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
