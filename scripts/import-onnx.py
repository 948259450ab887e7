#!/usr/bin/env python3
"""import-onnx.py IN.onnx OUT.safetensors: an ONNX recurrent network (one
RNN / LSTM / GRU op per layer, as torch.onnx.export writes it, optionally
followed by a MatMul/Gemm (+Add) head and Softmax/Sigmoid/Tanh) as a gst-rnn
model file.  Needs python3-onnx and numpy only.  The work is done by
gstrnn_onnx.convert() beside this file; --help for the options.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gstrnn_onnx import OnnxImportError, convert  # noqa: E402

PROG = "import-onnx.py"


def _parser():
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Convert an ONNX graph holding an RNN, LSTM or GRU (one op per layer, "
                    "forward or bidirectional, opset 7 and later; torch.onnx.export's shape "
                    "plumbing included), optionally followed by a MatMul/Gemm (+Add) head and "
                    "Softmax/Sigmoid/Tanh, into a gst-rnn model file for rnnfilter.",
        epilog="Gates are reordered from ONNX's order to PyTorch's and B is split into "
               "bias_ih/bias_hh.  Refused, with the attribute named: GRU with "
               "linear_before_reset=0, peepholes (non-zero P), clip, non-default activations, "
               "activation_alpha/beta, input_forget, direction=reverse, sequence_lens, non-zero "
               "initial states, and any op on the input-to-output path other than those above.  "
               "The converted model is checked against the graph itself (a numpy evaluation "
               "of the ONNX ops on a random input).  Exit status: 0 written, 1 refused, 2 bad usage.")
    p.add_argument("input", metavar="IN.onnx")
    p.add_argument("output", metavar="OUT.safetensors", help="model file to write (atomically)")
    p.add_argument("--output-name", metavar="NAME",
                   help="graph output to convert (default: the one computed from the recurrent "
                        "output Y; outputs of the final states are ignored)")
    p.add_argument("--zero-state-inputs", action="store_true",
                   help="accept graph inputs that feed initial_h/initial_c, taking them as zero "
                        "(rnnfilter starts each stream from zero state)")
    g = p.add_argument_group("model metadata (DESIGN.md §3/§4)")
    g.add_argument("--frame-size", type=int, metavar="N")
    g.add_argument("--output-frame-size", type=int, metavar="N")
    g.add_argument("--window", type=int, metavar="N",
                   help="steps per window (bidirectional; default: the graph's fixed sequence "
                        "length, if any)")
    g.add_argument("--sample-rate", type=int, metavar="HZ")
    g.add_argument("--description", metavar="TEXT")
    g.add_argument("--meta", action="append", metavar="KEY=VALUE", help="further metadata; repeatable")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    extra = {}
    for item in args.meta or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"{PROG}: error: --meta {item!r}: expected KEY=VALUE", file=sys.stderr)
            return 2
        extra[key] = value
    try:
        r = convert(args.input, args.output, output=args.output_name,
                    zero_state_inputs=args.zero_state_inputs, frame_size=args.frame_size,
                    output_frame_size=args.output_frame_size, window=args.window,
                    sample_rate=args.sample_rate, description=args.description,
                    extra_meta=extra)
    except (OnnxImportError, ValueError, OSError) as e:
        print(f"{PROG}: error: {args.input}: {e}", file=sys.stderr)
        return 1
    if not args.quiet:
        m = r["meta"]
        head = m["head_activation"]
        print(f"wrote {args.output}: {m['cell']}, input {m['input_size']}, hidden {m['hidden_size']}, "
              f"{m['num_layers']} layer(s){', bidirectional' if m['bidirectional'] == 'true' else ''}"
              f"{', head' if 'head.weight' in r['tensors'] else ''}"
              f"{', ' + head if head != 'none' else ''} (opset {r['opset']}, output {r['output']})")
        print(f"checked against the ONNX graph on a random input: max |difference| {r['max_error']:.3g}")
        for note in r["notes"]:
            print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
