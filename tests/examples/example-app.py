#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""example-app.py: using rnnfilter from a Python (PyGObject) application.

    appsrc (a generated signal) ! rnnfilter message-interval=N ! appsink

The application pushes a signal into appsrc as the pipeline asks for it
(need-data), pulls the model's output from appsink (new-sample), and reads
the element's `rnnfilter-output` messages from the bus (timestamp, values,
and for softmax heads class and confidence), all from one GLib main loop.

Without --model it writes a small hand-made model first, a "loudness"
classifier: frames of 8 samples -> layer 0 rectifies them (ReLU of ±x),
layer 1 keeps a leaky average of |x|, and a softmax head says "quiet" or
"loud".  The generated signal alternates quiet and loud tones every half
second, so the decisions can be checked against the truth: the program
prints every message and a summary, and exits 0 when the pipeline ran, the
output frame count is right and the decisions agree with the signal.

    GST_PLUGIN_PATH=build/plugins PYTHONPATH=python tests/examples/example-app.py [--model M] [...]

Needs python3-gi, gir1.2-gstreamer-1.0, gir1.2-gst-plugins-base-1.0 (GstApp)
and numpy; the plugin must be on GST_PLUGIN_PATH or installed.
"""

import argparse
import os
import sys
import tempfile

import numpy as np

try:
    import gi
    gi.require_version("Gst", "1.0")
    gi.require_version("GstApp", "1.0")
    from gi.repository import GLib, Gst, GstApp  # noqa: F401
except (ImportError, ValueError) as e:
    print(f"example-app: needs python3-gi, gir1.2-gstreamer-1.0 and "
          f"gir1.2-gst-plugins-base-1.0 ({e})", file=sys.stderr)
    sys.exit(77)          # "skipped" for meson

RATE = 8000
FRAME = 8                 # samples per model step
SEGMENT = 0.5             # seconds per quiet / loud segment
CLASSES = ("quiet", "loud")


def write_loudness_model(path):
    """The hand-made 2-layer ReLU RNN + softmax head described above."""
    from gstrnn import export_arrays   # numpy only

    H = 2 * FRAME
    w0 = np.concatenate([np.eye(FRAME), -np.eye(FRAME)])          # relu(x), relu(-x)
    w1 = np.zeros((H, H))
    w1[0, :] = 0.2 / FRAME                                        # + 0.2 * mean |x|
    u1 = np.zeros((H, H))
    u1[0, 0] = 0.8                                                # leaky average
    head_w = np.zeros((2, H))
    head_w[:, 0] = (-20.0, 20.0)
    threshold = 0.15
    params = {
        "weight_ih_l0": w0, "weight_hh_l0": np.zeros((H, H)),
        "bias_ih_l0": np.zeros(H), "bias_hh_l0": np.zeros(H),
        "weight_ih_l1": w1, "weight_hh_l1": u1,
        "bias_ih_l1": np.zeros(H), "bias_hh_l1": np.zeros(H),
    }
    export_arrays(path, "rnn_relu", params, head_weight=head_w,
                  head_bias=np.array([20 * threshold, -20 * threshold]),
                  head_activation="softmax", frame_size=FRAME, sample_rate=RATE,
                  description="example-app: quiet/loud classifier (hand-made weights)")


def generate(seconds, rate):
    """Tones alternating quiet (0.05) and loud (0.8) every SEGMENT seconds."""
    t = np.arange(int(seconds * rate)) / rate
    loud = (np.floor(t / SEGMENT) % 2).astype(bool)
    amp = np.where(loud, 0.8, 0.05)
    rng = np.random.default_rng(1)
    x = amp * np.sin(2 * np.pi * 440 * t) + 0.005 * rng.standard_normal(t.size)
    return x.astype(np.float32), loud


class App:
    def __init__(self, model, x, rate, channels, interval, chunk):
        self.x = x
        self.rate = rate
        self.channels = channels
        self.chunk = chunk
        self.pos = 0
        self.out_frames = 0
        self.out_channels = None
        self.messages = []
        self.error = None
        caps = (f"audio/x-raw,format=F32LE,layout=interleaved,rate={rate},channels={channels}"
                + (",channel-mask=(bitmask)0x0" if channels > 2 else ""))
        self.pipeline = Gst.parse_launch(
            f'appsrc name=src format=time is-live=false caps="{caps}" ! '
            f'rnnfilter name=rnn model-location="{model}" message-interval={interval} ! '
            "appsink name=sink emit-signals=true sync=false")
        self.src = self.pipeline.get_by_name("src")
        self.sink = self.pipeline.get_by_name("sink")
        self.src.connect("need-data", self.on_need_data)
        self.sink.connect("new-sample", self.on_new_sample)
        self.loop = GLib.MainLoop()
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::element", self.on_element)
        bus.connect("message::eos", lambda *a: self.loop.quit())
        bus.connect("message::error", self.on_error)
        bus.connect("message::warning", self.on_warning)

    # appsrc asks for data: push the next chunk, or end the stream
    def on_need_data(self, src, length):
        if self.pos >= len(self.x):
            src.emit("end-of-stream")
            return
        block = self.x[self.pos:self.pos + self.chunk * self.channels]
        frames = len(block) // self.channels
        buf = Gst.Buffer.new_wrapped(block.tobytes())
        buf.pts = Gst.util_uint64_scale_int(self.pos // self.channels, Gst.SECOND, self.rate)
        buf.duration = Gst.util_uint64_scale_int(frames, Gst.SECOND, self.rate)
        self.pos += len(block)
        src.emit("push-buffer", buf)

    # appsink has output: count it (an application would use it here)
    def on_new_sample(self, sink):
        sample = sink.emit("pull-sample")
        buf = sample.get_buffer()
        if self.out_channels is None:
            self.out_channels = sample.get_caps().get_structure(0).get_int("channels")[1]
        y = np.frombuffer(buf.extract_dup(0, buf.get_size()), dtype="<f4")
        self.out_frames += y.size // self.out_channels
        return Gst.FlowReturn.OK

    def on_element(self, bus, msg):
        s = msg.get_structure()
        if s is None or s.get_name() != "rnnfilter-output":
            return
        # plain fields: values is a GValueArray of doubles (a Python list),
        # confidence a double; no gst-python overrides needed
        ts = s.get_uint64("timestamp")[1]
        entry = {"timestamp": ts, "values": list(s.get_value("values"))}
        if s.has_field("class"):
            entry["class"] = s.get_int("class")[1]
            entry["confidence"] = s.get_double("confidence")[1]
            if s.has_field("label"):
                entry["label"] = s.get_string("label")
        self.messages.append(entry)

    def on_error(self, bus, msg):
        err, debug = msg.parse_error()
        self.error = f"{msg.src.get_name()}: {err.message} ({debug})"
        self.loop.quit()

    def on_warning(self, bus, msg):
        warn, _ = msg.parse_warning()
        print(f"warning from {msg.src.get_name()}: {warn.message}", file=sys.stderr)

    def run(self, timeout):
        def expire():
            self.error = f"timed out after {timeout} s"
            self.loop.quit()
            return False
        GLib.timeout_add_seconds(timeout, expire)
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            msg = self.pipeline.get_bus().timed_pop_filtered(0, Gst.MessageType.ERROR)
            self.error = msg.parse_error()[0].message if msg else "cannot start the pipeline"
        else:
            self.loop.run()
        self.pipeline.set_state(Gst.State.NULL)


def main(argv=None):
    p = argparse.ArgumentParser(description="appsrc -> rnnfilter -> appsink from Python, "
                                            "reading rnnfilter-output messages from the bus.")
    p.add_argument("--model", help="a gst-rnn model (default: write the hand-made loudness "
                                   "classifier to a temporary file)")
    p.add_argument("--seconds", type=float, default=3.0, help="signal length (default 3)")
    p.add_argument("--message-interval", type=int, default=100,
                   help="rnnfilter message-interval in steps (default 100)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    args = p.parse_args(argv)

    Gst.init(None)
    if Gst.ElementFactory.find("rnnfilter") is None:
        print("example-app: the rnnfilter element is not available: set GST_PLUGIN_PATH to "
              "the build's plugins/ directory", file=sys.stderr)
        return 1

    tmpdir = None
    own_model = args.model is None
    if own_model:
        tmpdir = tempfile.TemporaryDirectory(prefix="example-app-")
        model = os.path.join(tmpdir.name, "loudness.safetensors")
        write_loudness_model(model)
        rate, channels, frame = RATE, 1, FRAME
    else:
        from gstrnn import load
        model = args.model
        meta, _ = load(model)
        frame = int(meta.get("frame_size", "1"))
        rate = int(meta.get("sample_rate", RATE))
        channels = int(meta["input_size"]) // frame

    x, loud = generate(args.seconds, rate)
    x = np.repeat(x[:, None], channels, axis=1).reshape(-1)   # same signal on every channel
    app = App(model, x, rate, channels, args.message_interval, chunk=1024)
    app.run(timeout=30)
    if tmpdir is not None:
        tmpdir.cleanup()
    if app.error:
        print(f"example-app: pipeline error: {app.error}", file=sys.stderr)
        return 1

    frames_in = len(x) // channels
    print(f"pushed {frames_in} frames ({channels} channel(s) at {rate} Hz), pulled "
          f"{app.out_frames} output frames of {app.out_channels} channel(s), "
          f"{len(app.messages)} rnnfilter-output messages")
    agree = 0
    for m in app.messages:
        t = m["timestamp"] / Gst.SECOND
        line = f"  t={t:7.3f} s  values=[{', '.join(f'{v:.3f}' for v in m['values'])}]"
        if "class" in m:
            line += f"  class={m['class']} confidence={m['confidence']:.3f}"
            if own_model:
                truth = bool(loud[min(int(t * rate), len(loud) - 1)])
                line += f"  ({CLASSES[m['class']]}; signal is {CLASSES[truth]})"
                agree += m["class"] == truth
        if not args.quiet:
            print(line)

    ok = app.out_frames > 0 and len(app.messages) > 0
    if own_model:
        steps = -(-frames_in // FRAME)
        expected_messages = steps // args.message_interval
        print(f"decisions agreeing with the signal: {agree}/{len(app.messages)}")
        ok = ok and app.out_frames == steps and len(app.messages) == expected_messages \
            and agree >= 0.8 * len(app.messages)
        if app.out_frames != steps:
            print(f"example-app: expected {steps} output frames", file=sys.stderr)
        if len(app.messages) != expected_messages:
            print(f"example-app: expected {expected_messages} messages", file=sys.stderr)
    print("example-app: " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
