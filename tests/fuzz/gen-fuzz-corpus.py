#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Writes the seed corpora of tests/fuzz/fuzz-loader.c into tests/fuzz/corpus/
and of tests/fuzz/fuzz-loader-sparse.c into tests/fuzz/corpus-sparse/.

    PYTHONPATH=python python3 tests/fuzz/gen-fuzz-corpus.py [FIXTURE_DIR]

Valid models (every cell, stacked, bidirectional, heads, input
normalisation, framing metadata, F16/BF16/F64 tensors), a few of the PyTorch
fixtures (from FIXTURE_DIR, the unpacked tests/fixtures/forward.tar.xz, if
given) and the shipped model, then malformed files: one per check of the
loader (docs/design.md §3), each made from a valid file by one change.
The files are assembled by gstrnn.fixtures (standard library; importing the
package needs numpy).  Deterministic: running it twice gives the same
bytes.
"""
import json
import math
import os
import random
import shutil
import struct
import sys

from gstrnn.fixtures import safetensors_bytes as assemble

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")
OUT_SPARSE = os.path.join(HERE, "corpus-sparse")
MAX_HOLE = 64 << 20             # as in tests/fuzz/fuzz-loader-sparse.c
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


def tensors_for(cfg, rng, dtype="F32"):
    """[(name, shape, values)] in docs/design.md §3 naming."""
    g = GATES[cfg["cell"]]
    h = cfg["hidden_size"]
    d = 2 if cfg["bidirectional"] else 1
    out = []
    # version 2 (docs/design.md §3): pre=[(size, act)], post=[(size, act)],
    # h0, c0, skip
    pre, post = cfg.get("pre", []), cfg.get("post", [])
    i_0 = pre[-1][0] if pre else cfg["input_size"]
    for k in range(cfg["num_layers"]):
        i_k = i_0 if k == 0 else d * h
        for s in ([""] if d == 1 else ["", "_reverse"]):
            for name, shape in (("weight_ih", [g * h, i_k]),
                                ("weight_hh", [g * h, h]),
                                ("bias_ih", [g * h]), ("bias_hh", [g * h])):
                out.append(("rnn.%s_l%d%s" % (name, k, s), shape))
    if cfg.get("output_size"):
        out.append(("head.weight", [cfg["output_size"],
                                    post[-1][0] if post else d * h]))
        out.append(("head.bias", [cfg["output_size"]]))
    if cfg.get("norm"):
        out.append(("input.mean", [cfg["input_size"]]))
        out.append(("input.std", [cfg["input_size"]]))
    for k, (size, _) in enumerate(pre):
        out.append(("pre.%d.weight" % k,
                    [size, pre[k - 1][0] if k else cfg["input_size"]]))
        out.append(("pre.%d.bias" % k, [size]))
    for k, (size, _) in enumerate(post):
        out.append(("post.%d.weight" % k,
                    [size, post[k - 1][0] if k else d * h]))
        out.append(("post.%d.bias" % k, [size]))
    for name in ("h0", "c0"):
        if cfg.get(name):
            out.append(("rnn." + name, [cfg["num_layers"] * d, h]))
    result = []
    for name, shape in out:
        n = math.prod(shape)
        if name == "input.std":
            vals = [0.5 + rng.random() for _ in range(n)]
        else:
            vals = [round(rng.uniform(-1, 1), 3) for _ in range(n)]
        result.append((name, shape, vals, dtype))
    return result


def metadata_for(cfg):
    m = {
        "format": "gst-rnn", "version": "1", "cell": cfg["cell"],
        "input_size": str(cfg["input_size"]),
        "hidden_size": str(cfg["hidden_size"]),
        "num_layers": str(cfg["num_layers"]),
        "bidirectional": "true" if cfg["bidirectional"] else "false",
        "head_activation": cfg.get("act", "none"),
    }
    for key in ("frame_size", "output_frame_size", "window", "sample_rate"):
        if key in cfg:
            m[key] = str(cfg[key])
    if cfg.get("pre") or cfg.get("post") or cfg.get("h0") or cfg.get("skip"):
        m["version"] = "2"
        for key in ("pre", "post"):
            if cfg.get(key):
                m[key + "_activations"] = ",".join(a for _, a in cfg[key])
        if cfg.get("skip"):
            m["skip"] = str(cfg["skip"])
    m.update(cfg.get("extra", {}))
    return m


def model(cfg, seed, dtype="F32"):
    rng = random.Random(seed)
    return metadata_for(cfg), tensors_for(cfg, rng, dtype)


def split(data):
    n = struct.unpack("<Q", data[:8])[0]
    return data[8:8 + n], data[8 + n:]


def reheader(data, header):
    _, region = split(data)
    return struct.pack("<Q", len(header)) + header + region


VALID = {
    "lstm-1-1": dict(cell="lstm", input_size=1, hidden_size=1, num_layers=1,
                     bidirectional=False),
    "lstm-head-norm": dict(cell="lstm", input_size=3, hidden_size=4,
                           num_layers=1, bidirectional=False, output_size=2,
                           act="softmax", norm=True),
    "gru-2-layers-bi": dict(cell="gru", input_size=2, hidden_size=3,
                            num_layers=2, bidirectional=True, window=8),
    "rnn-tanh-head": dict(cell="rnn_tanh", input_size=2, hidden_size=3,
                          num_layers=1, bidirectional=False, output_size=1,
                          act="tanh"),
    "rnn-relu-frames": dict(cell="rnn_relu", input_size=4, hidden_size=3,
                            num_layers=1, bidirectional=False, output_size=2,
                            act="sigmoid", frame_size=4, output_frame_size=2,
                            sample_rate=48000,
                            extra={"description": "caf\u00e9 \U0001f3b5",
                                   "train_seed": "1"}),
}

# version 2: the layers around the recurrent stack (written after the
# version-1 files, so that those keep their seeds and bytes)
VALID_V2 = {
    "v2-lstm-pre-post-h0-skip": dict(
        cell="lstm", input_size=1, hidden_size=4, num_layers=2,
        bidirectional=False, output_size=1, act="none",
        pre=[(3, "tanh"), (2, "elu")], post=[(3, "relu")], h0=True, c0=True,
        skip=1),
    "v2-gru-bi-post-softmax": dict(
        cell="gru", input_size=2, hidden_size=3, num_layers=1,
        bidirectional=True, window=8, post=[(4, "sigmoid"), (2, "softmax")],
        h0=True),
    "v2-rnn-pre-only": dict(
        cell="rnn_tanh", input_size=2, hidden_size=3, num_layers=1,
        bidirectional=False, output_size=2, act="tanh", pre=[(5, "none")]),
    "v2-lstm-skip-h0": dict(
        cell="lstm", input_size=1, hidden_size=8, num_layers=1,
        bidirectional=False, output_size=1, act="none", h0=True, skip=1),
}


def main():
    fixtures = sys.argv[1] if len(sys.argv) > 1 else None
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    files = {}

    for name, cfg in VALID.items():
        meta, tensors = model(cfg, len(files) + 1)
        files["valid-" + name] = assemble(meta, tensors)
    # the other dtypes, converted on load
    for dtype in ("F16", "BF16", "F64"):
        meta, tensors = model(VALID["lstm-head-norm"], 7, dtype)
        files["valid-%s" % dtype.lower()] = assemble(meta, tensors)
    # tensors stored in another order than the writer's
    meta, tensors = model(VALID["rnn-tanh-head"], 8)
    files["valid-reordered"] = assemble(meta, list(reversed(tensors)))
    # unpadded header, escapes and whitespace the writer never produces
    meta, tensors = model(VALID["lstm-1-1"], 9)
    files["valid-unpadded"] = assemble(meta, tensors, pad=False)
    head, _ = split(files["valid-lstm-1-1"])
    files["valid-json-variants"] = reheader(
        files["valid-lstm-1-1"],
        head.replace(b'"cell":"lstm"', b'"cell" :\n\t"\\u006cstm"')
            .replace(b'"format":', b'"description":"\\ud83c\\udfb5 a\\/b",'
                     b' "format":'))

    if fixtures:
        for fx in ("rnn_tanh_L1_uni_I1_H1_none", "gru_L1_bi_I1_H1_softmax",
                   "lstm_L2_uni_I5_H1_linear", "rnn_relu_L2_bi_I1_H1_none",
                   "gru_L1_uni_I1_H8_softmax"):
            with open(os.path.join(fixtures, fx + ".safetensors"), "rb") as f:
                files["fixture-" + fx] = f.read()
    with open(os.path.join(HERE, "..", "..", "models",
                           "softclip-lstm8.safetensors"), "rb") as f:
        files["model-softclip-lstm8"] = f.read()

    # ---- malformed: one change each -------------------------------------
    base = files["valid-lstm-head-norm"]
    head, region = split(base)
    hn = len(head)

    def sub(old, new, data=base):
        h, _ = split(data)
        assert old in h, old
        return reheader(data, h.replace(old, new, 1))

    bad = {
        "empty": b"",
        "short": base[:5],
        "header-zero": struct.pack("<Q", 0) + base[8:],
        "header-huge": struct.pack("<Q", 100000001) + base[8:],
        "header-past-end": struct.pack("<Q", len(base)) + base[8:],
        "header-max": b"\xff" * 8 + base[8:],
        "truncated-data": base[:-3],
        "truncated-header": base[:8 + hn // 2],
        "trailing-bytes": base + b"\0\0\0\0",
        "not-utf8": sub(b'"format"', b'"\xff\xfeormat"'),
        "not-object": reheader(base, b"[1,2,3]" + b" " * (hn - 7)),
        "two-values": reheader(base, head + b"{}"),
        "comment": sub(b'{"__metadata__"', b'/* c */{"__metadata__"'),
        "single-quotes": sub(b'"format":"gst-rnn"', b"'format':'gst-rnn'"),
        "duplicate-key": sub(b'"format":"gst-rnn"',
                             b'"format":"gst-rnn","format":"gst-rnn"'),
        "duplicate-key-escaped": sub(b'"format":"gst-rnn"',
                                     b'"format":"gst-rnn","\\u0066ormat":"x"'),
        "nul-escape": sub(b'"gst-rnn"', b'"gst\\u0000rnn"'),
        "lone-surrogate": sub(b'"gst-rnn"', b'"gst\\ud800rnn"'),
        "deep-nesting": sub(b'"format":"gst-rnn"',
                            b'"format":' + b"[" * 5000 + b"]" * 5000),
        "int-over-int64": sub(b'"data_offsets":[0,', b'"data_offsets":'
                              b'[99999999999999999999,'),
        "int-negative": sub(b'"data_offsets":[0,', b'"data_offsets":[-1,'),
        "int-as-double": sub(b'"data_offsets":[0,', b'"data_offsets":[0.0,'),
        "int-exponent": sub(b'"data_offsets":[0,', b'"data_offsets":[0e0,'),
        "hex-number": sub(b'"data_offsets":[0,', b'"data_offsets":[0x0,'),
        "leading-zero": sub(b'"data_offsets":[0,', b'"data_offsets":[00,'),
        "shape-too-many-dims": sub(b'"shape":[2]', b'"shape":[2,1,1,1,1,1,1,1,1]'),
        "shape-overflow": sub(b'"shape":[2]', b'"shape":[4294967296,4294967296,2]'),
        "shape-string": sub(b'"shape":[2]', b'"shape":"2"'),
        "dtype-unknown": sub(b'"dtype":"F32"', b'"dtype":"F31"'),
        "dtype-int": sub(b'"dtype":"F32"', b'"dtype":"I32"'),
        "dtype-missing": sub(b'"dtype":"F32",', b''),
        "tensor-extra-field": sub(b'"dtype":"F32",', b'"dtype":"F32","x":1,'),
        "offsets-reversed": sub(b'"data_offsets":[0,192]', b'"data_offsets":[192,0]'),
        "offsets-overlap": sub(b'"data_offsets":[0,192]', b'"data_offsets":[4,196]'),
        "offsets-three": sub(b'"data_offsets":[0,192]', b'"data_offsets":[0,192,192]'),
        "metadata-not-string": sub(b'"version":"1"', b'"version":1'),
        "metadata-array": sub(b'"__metadata__":{', b'"__metadata__":[{', ) ,
        "format-wrong": sub(b'"format":"gst-rnn"', b'"format":"pt"'),
        "version-3": sub(b'"version":"1"', b'"version":"3"'),
        "v2-key-in-version-1": sub(b'"format"', b'"skip":"1","format"'),
        "cell-unknown": sub(b'"cell":"lstm"', b'"cell":"lstm2"'),
        "hidden-size-zero": sub(b'"hidden_size":"4"', b'"hidden_size":"0"'),
        "hidden-size-huge": sub(b'"hidden_size":"4"', b'"hidden_size":"16385"'),
        "hidden-size-plus": sub(b'"hidden_size":"4"', b'"hidden_size":"+4"'),
        "hidden-size-space": sub(b'"hidden_size":"4"', b'"hidden_size":" 4"'),
        "num-layers-overflow": sub(b'"num_layers":"1"',
                                   b'"num_layers":"4294967297"'),
        "bidirectional-yes": sub(b'"bidirectional":"false"',
                                 b'"bidirectional":"yes"'),
        "head-activation-unknown": sub(b'"head_activation":"softmax"',
                                       b'"head_activation":"relu"'),
        "frame-size-zero": sub(b'"format"', b'"frame_size":"0","format"'),
        "frame-size-not-dividing": sub(b'"format"', b'"frame_size":"2","format"'),
        "window-zero": sub(b'"format"', b'"window":"0","format"'),
        "sample-rate-huge": sub(b'"format"', b'"sample_rate":"16777217","format"'),
        "metadata-missing": reheader(base, head.replace(
            head[head.index(b'"__metadata__"'):head.index(b'},') + 2], b"")),
    }
    # tensor-level refusals: values and shapes
    meta, tensors = model(VALID["lstm-head-norm"], 3)
    t = [list(x) for x in tensors]
    nan = [list(x) for x in t]
    nan[0][2] = [float("nan")] + nan[0][2][1:]
    bad["weight-nan"] = assemble(meta, [tuple(x) for x in nan])
    inf = [list(x) for x in t]
    inf[1][2] = inf[1][2][:-1] + [float("inf")]
    bad["weight-inf"] = assemble(meta, [tuple(x) for x in inf])
    f16inf = [list(x) for x in t]
    f16inf[2][2] = [70000.0] + f16inf[2][2][1:]
    f16inf[2][3] = "F16"
    bad["weight-f16-overflow"] = assemble(meta, [tuple(x) for x in f16inf])
    std = [list(x) for x in t]
    std[-1][2] = [0.0] + std[-1][2][1:]
    bad["std-zero"] = assemble(meta, [tuple(x) for x in std])
    bad["tensor-missing"] = assemble(meta, tensors[1:])
    bad["tensor-extra"] = assemble(meta, tensors + [("rnn.weight_ih_l1", [1],
                                                      [0.0], "F32")])
    wrong = [list(x) for x in t]
    wrong[0][1] = [wrong[0][1][1], wrong[0][1][0]]
    bad["tensor-transposed"] = assemble(meta, [tuple(x) for x in wrong])
    bad["tensor-bool"] = assemble(meta, tensors[:-1] + [
        ("input.std", [3], [1.0, 1.0, 1.0], "F32")]).replace(
            b'"input.std":{"dtype":"F32"', b'"input.std":{"dtype":"U8" ')
    # version 2: one change each to a valid version-2 file
    for name, cfg in VALID_V2.items():
        meta, tensors = model(cfg, 100 + len(files))
        files["valid-" + name] = assemble(meta, tensors)
    v2 = files["valid-v2-lstm-pre-post-h0-skip"]

    def sub2(old, new):
        return sub(old, new, v2)
    bad.update({
        "v2-said-version-1": sub2(b'"version":"2"', b'"version":"1"'),
        "v2-pre-activation-unknown": sub2(b'"tanh,elu"', b'"tanh,gelu"'),
        "v2-pre-activations-empty": sub2(b'"tanh,elu"', b'""'),
        "v2-pre-activations-short": sub2(b'"tanh,elu"', b'"tanh"'),
        "v2-pre-activations-long": sub2(b'"tanh,elu"', b'"tanh,elu,none"'),
        "v2-post-activations-missing": sub2(b'"post_activations"',
                                            b'"post_activationz"'),
        "v2-skip-2": sub2(b'"skip":"1"', b'"skip":"2"'),
        "v2-skip-zero": sub2(b'"skip":"1"', b'"skip":"0"'),
        "v2-c0-without-h0": sub2(b'"rnn.h0"', b'"rnn.h9"'),
        "v2-c0-for-gru": sub2(b'"cell":"lstm"', b'"cell":"gru"'),
        "v2-h0-shape": sub2(b'"rnn.h0":{"dtype":"F32","shape":[2,4]',
                            b'"rnn.h0":{"dtype":"F32","shape":[1,8]'),
    })
    meta, tensors = model(VALID_V2["v2-lstm-pre-post-h0-skip"], 5)
    t = [list(x) for x in tensors]
    t[-1][2] = [float("nan")] + t[-1][2][1:]
    bad["v2-c0-nan"] = assemble(meta, [tuple(x) for x in t])
    for name, data in bad.items():
        files["bad-" + name] = data

    total = 0
    for name, data in sorted(files.items()):
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(data)
        total += len(data)
    print("%d files, %d bytes in %s" % (len(files), total, OUT))
    write_sparse(files)


def sparse_seed(data):
    """An input of fuzz-loader-sparse: the hole's size, then the length
    field and the header of @data (its data region becomes the hole)."""
    if len(data) >= 8:
        n = struct.unpack("<Q", data[:8])[0]
        if 8 + n <= len(data):
            return struct.pack("<I", (len(data) - 8 - n) % (MAX_HOLE + 1)) \
                + data[:8 + n]
    return struct.pack("<I", 0) + data


def large_header(cfg, extra_tensors=()):
    """The length field and header of a model of @cfg with F32 tensors and
    the size of its data region, without the data."""
    header = {"__metadata__": metadata_for(cfg)}
    pos = 0
    for name, shape in [(t[0], t[1]) for t in tensors_for_shapes(cfg)] \
            + list(extra_tensors):
        size = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": shape,
                        "data_offsets": [pos, pos + size]}
        pos += size
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text, pos


def tensors_for_shapes(cfg):
    """[(name, shape)] of tensors_for() without drawing values."""
    g = GATES[cfg["cell"]]
    h = cfg["hidden_size"]
    d = 2 if cfg["bidirectional"] else 1
    out = []
    # version 2 (docs/design.md §3): pre=[(size, act)], post=[(size, act)],
    # h0, c0, skip
    pre, post = cfg.get("pre", []), cfg.get("post", [])
    i_0 = pre[-1][0] if pre else cfg["input_size"]
    for k in range(cfg["num_layers"]):
        i_k = i_0 if k == 0 else d * h
        for s in ([""] if d == 1 else ["", "_reverse"]):
            out += [("rnn.weight_ih_l%d%s" % (k, s), [g * h, i_k]),
                    ("rnn.weight_hh_l%d%s" % (k, s), [g * h, h]),
                    ("rnn.bias_ih_l%d%s" % (k, s), [g * h]),
                    ("rnn.bias_hh_l%d%s" % (k, s), [g * h])]
    return out


def write_sparse(files):
    seeds = {name: sparse_seed(data) for name, data in files.items()}
    lstm = {"cell": "lstm", "input_size": 16, "num_layers": 1,
            "bidirectional": False}
    # valid over holes: 17 MB, and 64.6 MB (near the most a hole may be)
    head, size = large_header(dict(lstm, hidden_size=1024))
    seeds["large-lstm-1024"] = struct.pack("<I", size) + head
    head, size = large_header(dict(lstm, hidden_size=2000))
    assert size <= MAX_HOLE
    seeds["large-lstm-2000"] = struct.pack("<I", size) + head
    # claims far beyond the file: a 6.4 GB model (hidden_size out of range)
    # and a valid 1.6 GB one, each over a 64 MiB hole
    head, size = large_header(dict(lstm, input_size=4, hidden_size=20000))
    seeds["huge-lstm-20000"] = struct.pack("<I", MAX_HOLE) + head
    head, size = large_header(dict(lstm, hidden_size=10000))
    seeds["huge-lstm-10000"] = struct.pack("<I", MAX_HOLE) + head
    # more zero-size tensors than a model may have
    head, size = large_header(dict(lstm, hidden_size=8), [
        ("e%d" % i, [0]) for i in range(600)])
    seeds["zero-size-tensors-600"] = struct.pack("<I", size) + head

    shutil.rmtree(OUT_SPARSE, ignore_errors=True)
    os.makedirs(OUT_SPARSE)
    total = 0
    for name, data in sorted(seeds.items()):
        with open(os.path.join(OUT_SPARSE, name), "wb") as f:
            f.write(data)
        total += len(data)
    print("%d files, %d bytes in %s" % (len(seeds), total, OUT_SPARSE))


if __name__ == "__main__":
    main()
