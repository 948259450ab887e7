# SPDX-License-Identifier: LGPL-2.1-or-later
"""The command line of tools/gst-rnn-convert: a trained recurrent network
as a gst-rnn model file.

    gst-rnn-convert [--check] [--format F] [options] IN OUT.safetensors

IN is recognised by its content: a file written by torch.save (a zip
archive holding data.pkl, or a pickle) goes through gstrnn.torch_import, an
ONNX model (a protobuf ModelProto holding a graph) through
gstrnn.onnx_import; --format names it instead.  Anything else is refused,
naming what the file is.  Exit status: 0 written, 1 refused (the message
says why), 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import zipfile

from .export import CELLS, HEAD_ACTIVATIONS

PROG = "gst-rnn-convert"
FORMATS = ("torch", "onnx")

# Options that mean something for one input format only.
TORCH_ONLY = ("rnn", "head", "no_head", "key", "class_file", "cell", "input_size",
              "hidden_size", "num_layers", "head_activation", "norm_mean", "norm_std")
ONNX_ONLY = ("output_name", "zero_state_inputs")


class Refused(Exception):
    """The input cannot be converted; printed as 'gst-rnn-convert: error: ...'."""


class Usage(Exception):
    """A malformed option value (exit status 2)."""


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
    """What a file that is neither PyTorch nor ONNX is, as far as its first
    bytes say."""
    if not head:
        return "an empty file"
    if len(head) >= 8:
        n = struct.unpack("<Q", head[:8])[0]
        if head[8:9] == b"{" and n > 0:
            return ("a safetensors file (what gst-rnn loads already: give it to rnnfilter "
                    "as it is)")
    magic = [
        (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras .h5?); save the model from PyTorch or "
                               "export it to ONNX"),
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


def detect(path):
    """'torch' or 'onnx' for the file at @path; Refused naming what it is
    otherwise."""
    if os.path.isdir(path):
        raise Refused(f"{path}: is a directory (a TensorFlow SavedModel?); give a file written "
                      "by torch.save or an ONNX model")
    if not os.path.isfile(path):
        raise Refused(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                if any(n == "data.pkl" or n.endswith("/data.pkl") for n in z.namelist()):
                    return "torch"
        except (zipfile.BadZipFile, OSError):
            pass
    elif head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "torch"          # a pickle: torch.save's legacy format
    elif head[:1] == b"\x08":
        with open(path, "rb") as f:
            data = f.read()
        if _is_onnx(data):
            return "onnx"
    raise Refused(f"{path}: not a PyTorch or ONNX model: {_describe_other(path, head)}")


# --------------------------------------------------------------------------
# the command


def _parser():
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Convert a trained recurrent network into a gst-rnn model file for "
                    "rnnfilter: a PyTorch nn.LSTM / nn.GRU / nn.RNN (with an optional "
                    "nn.Linear head) saved with torch.save (MODEL.pt), or an ONNX graph "
                    "holding RNN, LSTM or GRU ops (MODEL.onnx).  The input's format is "
                    "recognised by its content.",
        epilog="PyTorch: MODEL.pt may hold a whole module (an nn.LSTM/GRU/RNN, or a module "
               "holding one and at most one nn.Linear, found by type unless --rnn/--head name "
               "them), a state_dict, or a checkpoint dict with the state_dict under "
               "'state_dict', 'model_state_dict', 'model' or --key.  Only the recurrent module "
               "and the head are exported (input -> rnn -> head -> activation), not the "
               "forward() code.  Unpickling a whole module runs code from the file: convert "
               "only files you trust.  "
               "ONNX: one RNN / LSTM / GRU op per layer (forward or bidirectional, opset 7 and "
               "later; torch.onnx.export's shape plumbing included), optionally followed by a "
               "MatMul/Gemm (+Add) head and Softmax/Sigmoid/Tanh.  Gates are reordered from "
               "ONNX's order to PyTorch's and B is split into bias_ih/bias_hh.  Refused, with "
               "the attribute named: GRU with linear_before_reset=0, peepholes (non-zero P), "
               "clip, non-default activations, activation_alpha/beta, input_forget, "
               "direction=reverse, sequence_lens, non-zero initial states, and any op on the "
               "input-to-output path other than those above.  The converted model is always "
               "checked against the graph itself (a numpy evaluation of the ONNX ops on a "
               "random input).  "
               "Exit status: 0 written, 1 refused (the message says why), 2 bad usage.")
    p.add_argument("input", metavar="IN", help="MODEL.pt (written by torch.save) or MODEL.onnx")
    p.add_argument("output", metavar="OUT.safetensors", help="model file to write (atomically)")
    p.add_argument("--format", choices=FORMATS,
                   help="the input's format (default: recognised by its content)")
    p.add_argument("--check", action="store_true",
                   help="PyTorch: reload the written file and compare it with the source on "
                        "random input (fails above 1e-5); ONNX models are always checked")
    g = p.add_argument_group("PyTorch: what to export")
    g.add_argument("--rnn", metavar="NAME",
                   help="submodule (or state_dict prefix) of the recurrent module, e.g. 'lstm' "
                        "or 'encoder.rnn'; '' for a bare state_dict (default: the only one)")
    g.add_argument("--head", metavar="NAME",
                   help="nn.Linear submodule (or state_dict prefix) to use as the head "
                        "(default: the only nn.Linear, if any)")
    g.add_argument("--no-head", action="store_true", help="export no head even if there is one")
    g.add_argument("--key", metavar="KEY[/KEY...]",
                   help="entry of a checkpoint dict that holds the module or state_dict")
    g.add_argument("--class-file", metavar="FILE.py",
                   help="Python file defining the classes of a pickled whole module")
    g.add_argument("--cell", choices=CELLS,
                   help="cell of a state_dict (needed for nn.RNN: rnn_tanh or rnn_relu; "
                        "LSTM and GRU are recognised by their gate count)")
    g.add_argument("--head-activation", choices=HEAD_ACTIVATIONS,
                   help="activation after the head (default: none)")
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
    g = p.add_argument_group("model metadata (docs/design.md §3/§4)")
    g.add_argument("--frame-size", type=int, metavar="N", help="input frames per step")
    g.add_argument("--output-frame-size", type=int, metavar="N", help="output frames per step")
    g.add_argument("--window", type=int, metavar="N",
                   help="steps per window (bidirectional; ONNX default: the graph's fixed "
                        "sequence length, if any)")
    g.add_argument("--sample-rate", type=int, metavar="HZ",
                   help="the only input rate rnnfilter will accept")
    g.add_argument("--description", metavar="TEXT")
    g.add_argument("--meta", action="append", metavar="KEY=VALUE",
                   help="further string metadata, e.g. train_dataset=...; repeatable")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    return p


def _not_for(args, names, fmt):
    given = [n for n in names if getattr(args, n) not in (None, False)]
    if given:
        opts = ", ".join("--" + n.replace("_", "-") for n in given)
        raise Refused(f"{args.input}: {opts}: not an option for {fmt} input")


def _meta(args):
    extra = {}
    for item in args.meta or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise Usage(f"--meta {item!r}: expected KEY=VALUE")
        extra[key] = value
    return extra


def _torch(args):
    from .torch_import import ExportError, convert
    _not_for(args, ONNX_ONLY, "PyTorch")
    if args.head_activation is None:
        args.head_activation = "none"
    try:
        return [convert(args)]
    except ExportError as e:
        raise Refused(str(e)) from None


def _onnx(args):
    from .onnx_import import OnnxImportError, convert
    _not_for(args, TORCH_ONLY, "ONNX")
    extra = _meta(args)
    try:
        r = convert(args.input, args.output, output=args.output_name,
                    zero_state_inputs=args.zero_state_inputs, frame_size=args.frame_size,
                    output_frame_size=args.output_frame_size, window=args.window,
                    sample_rate=args.sample_rate, description=args.description,
                    extra_meta=extra)
    except (OnnxImportError, ValueError) as e:
        raise Refused(f"{args.input}: {e}") from None
    m = r["meta"]
    head = m["head_activation"]
    lines = [
        f"wrote {args.output}: {m['cell']}, input {m['input_size']}, hidden {m['hidden_size']}, "
        f"{m['num_layers']} layer(s){', bidirectional' if m['bidirectional'] == 'true' else ''}"
        f"{', head' if 'head.weight' in r['tensors'] else ''}"
        f"{', ' + head if head != 'none' else ''} (opset {r['opset']}, output {r['output']})",
        f"checked against the ONNX graph on a random input: max |difference| {r['max_error']:.3g}",
    ]
    lines += [f"note: {note}" for note in r["notes"]]
    return lines


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        fmt = args.format or detect(args.input)
        lines = _torch(args) if fmt == "torch" else _onnx(args)
    except (Refused, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except Usage as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        for line in lines:
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
