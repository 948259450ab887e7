#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""rnnfilter-output messages read from PyGObject alone (no gst-python
overrides): values, class, label and confidence come out as Python numbers
and strings through Gst.Structure.get_value() and the typed getters.

Prints TAP; exits 77 (skipped) without python3-gi or numpy."""

import os
import sys
import tempfile

try:
    import numpy as np
    import gi
    gi.require_version("Gst", "1.0")
    from gi.repository import Gst
except (ImportError, ValueError) as e:
    print(f"1..0 # SKIP needs python3-gi and numpy ({e})")
    sys.exit(77)

from gstrnn import export_arrays

LABELS = ("low", "mid", "high")
H = 3


def write_model(path):
    """A GRU whose softmax head picks the input's level: the head's logits
    grow with the hidden state, which follows the input."""
    params = {
        "weight_ih_l0": np.zeros((3 * H, 1)), "weight_hh_l0": np.zeros((3 * H, H)),
        "bias_ih_l0": np.zeros(3 * H), "bias_hh_l0": np.zeros(3 * H),
    }
    params["weight_ih_l0"][2 * H:, 0] = 3.0        # the candidate follows x
    params["bias_ih_l0"][H:2 * H] = -20.0          # update gate shut: h = n
    head_w = np.array([[-4.0, 0, 0], [0, 0, 0], [4.0, 0, 0]])
    export_arrays(path, "gru", params, head_weight=head_w, head_bias=np.array([0.0, 1.0, 0.0]),
                  head_activation="softmax", sample_rate=100,
                  extra_meta={"labels": ",".join(LABELS)})


def run(model, x, interval):
    caps = "audio/x-raw,format=F32LE,layout=interleaved,rate=100,channels=1"
    p = Gst.parse_launch(f'appsrc name=src format=time caps="{caps}" ! '
                         f'rnnfilter model-location="{model}" message-interval={interval} '
                         "! fakesink")
    src = p.get_by_name("src")
    bus = p.get_bus()
    p.set_state(Gst.State.PLAYING)
    buf = Gst.Buffer.new_wrapped(x.astype("<f4").tobytes())
    buf.pts = 0
    src.emit("push-buffer", buf)
    src.emit("end-of-stream")
    msgs = []
    while True:
        m = bus.timed_pop_filtered(30 * Gst.SECOND, Gst.MessageType.ELEMENT
                                   | Gst.MessageType.EOS | Gst.MessageType.ERROR)
        if m is None or m.type != Gst.MessageType.ELEMENT:
            if m is not None and m.type == Gst.MessageType.ERROR:
                raise RuntimeError(m.parse_error()[0].message)
            break
        s = m.get_structure()
        if s.get_name() == "rnnfilter-output":
            msgs.append(s.copy())
    p.set_state(Gst.State.NULL)
    return msgs


def main():
    Gst.init(None)
    tests = []

    def check(name, ok, why=""):
        tests.append((name, ok, why))

    with tempfile.TemporaryDirectory() as d:
        model = os.path.join(d, "labelled.safetensors")
        write_model(model)
        x = np.concatenate([np.full(10, -1.0), np.full(10, 0.0), np.full(10, 1.0)])
        msgs = run(model, x, 10)

    check("three messages", len(msgs) == 3, f"{len(msgs)} messages")
    want = ["low", "mid", "high"]
    for i, s in enumerate(msgs):
        values = s.get_value("values")
        ok_values = (isinstance(values, list) and len(values) == 3
                     and all(isinstance(v, float) for v in values))
        check(f"message {i}: values is a list of 3 floats", ok_values, repr(values))
        ok_conf, conf = s.get_double("confidence")
        check(f"message {i}: confidence is a double", ok_conf and isinstance(conf, float),
              repr(s.get_value("confidence")))
        ok_cls, cls = s.get_int("class")
        label = s.get_string("label")
        check(f"message {i}: class and label", ok_cls and label == want[i]
              and LABELS[cls] == label, f"class {cls}, label {label!r}")
        if ok_values and ok_conf:
            check(f"message {i}: confidence is the largest value",
                  abs(conf - max(values)) < 1e-6 and abs(sum(values) - 1) < 1e-5,
                  f"{conf} vs {values}")
        ok_ts, ts = s.get_uint64("timestamp")
        check(f"message {i}: timestamp", ok_ts and ts == (10 * i + 9) * Gst.SECOND // 100,
              repr(ts))

    print(f"1..{len(tests)}")
    for n, (name, ok, why) in enumerate(tests, 1):
        print(f"{'ok' if ok else 'not ok'} {n} - {name}" + ("" if ok else f" # {why}"))
    return 0 if all(ok for _, ok, _ in tests) else 1


if __name__ == "__main__":
    sys.exit(main())
