# SPDX-License-Identifier: LGPL-2.1-or-later
"""Running a model file through rnnfilter, as a user's pipeline would.

    y = gstrnn.rnnfilter.run("model.safetensors", x)     # x [T][I] -> y [T][O]

run() writes x as raw F32LE frames, plays

    filesrc ! rawaudioparse ! rnnfilter model-location=MODEL ! filesink

in gst-launch-1.0 and reads the output back: the C core, loader and
framing that rnnfilter runs, not a Python copy of them.  The plugin is found
as GStreamer finds it (the system plugin path, or GST_PLUGIN_PATH when
running from a build tree).  Only numpy is needed.
"""

import os
import shutil
import subprocess
import tempfile

import numpy as np


class RnnfilterError(RuntimeError):
    """rnnfilter could not be run; the message says why and what to do.
    @element_error: the error rnnfilter (or another element) posted, if any:
    the pipeline ran, and refused the model or the stream."""

    def __init__(self, message, element_error=None):
        super().__init__(message)
        self.element_error = element_error


def available():
    """The path of gst-launch-1.0, or None."""
    return shutil.which("gst-launch-1.0")


def run(model, x, *, frame_size=1, output_size=None, rate=48000, window=None,
        blocksize=None, timeout=120):
    """Play x (float, [T][I]) through rnnfilter with @model; return [T][O] float32.

    @frame_size: the model's F_in (a step is F_in frames of I / F_in
    channels).  @output_size: O, to shape the result (default: whatever
    comes out, as one row per step of the same count as the input).
    @rate: the stream's sample rate (the model's sample_rate if it names
    one).  @window: rnnfilter's window property (bidirectional models).
    @blocksize: bytes per buffer filesrc reads (default: its own).
    """
    gst_launch = available()
    if gst_launch is None:
        raise RnnfilterError("gst-launch-1.0 is not installed (Debian: gstreamer1.0-tools); "
                             "it runs the written model through rnnfilter for the check")
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float64), dtype="<f4")
    T, I = x.shape
    if I % frame_size:
        raise RnnfilterError(f"input width {I} is not a multiple of frame_size {frame_size}")
    channels = I // frame_size
    with tempfile.TemporaryDirectory(prefix="gstrnn-check-") as work:
        src, dst = os.path.join(work, "in.f32"), os.path.join(work, "out.f32")
        x.tofile(src)
        props = f" window={int(window)}" if window else ""
        if channels <= 8:
            block = f" blocksize={int(blocksize)}" if blocksize else ""
            parse = (f"rawaudioparse use-sink-caps=false format=pcm pcm-format=f32le "
                     f"sample-rate={int(rate)} num-channels={channels}")
        else:
            # rawaudioparse positions at most 8 channels: unpositioned caps
            # on whole frames instead
            block = f" blocksize={int(blocksize or 4 * channels * 256)}"
            parse = (f"capsfilter caps=audio/x-raw,format=F32LE,layout=interleaved,"
                     f"rate={int(rate)},channels={channels},channel-mask=(bitmask)0x0")
        pipeline = (f'filesrc location="{src}"{block} ! {parse} ! '
                    f'rnnfilter model-location="{model}"{props} ! filesink location="{dst}"')
        try:
            p = subprocess.run([gst_launch, "-q"] + _split(pipeline), capture_output=True,
                               text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RnnfilterError(f"rnnfilter did not finish within {timeout} s") from None
        text = (p.stderr + p.stdout).strip()
        if p.returncode != 0 or not os.path.exists(dst):
            if "no element \"rnnfilter\"" in text:
                raise RnnfilterError("GStreamer does not find the rnnfilter element: install "
                                     "gst-rnn (meson install), or from a build tree set "
                                     "GST_PLUGIN_PATH=$PWD/build/plugins")
            for line in text.splitlines():
                if line.startswith("ERROR: from element "):
                    what = line[len("ERROR: from element "):].split(": ", 1)[-1]
                    raise RnnfilterError("rnnfilter failed: " + what, element_error=what)
            raise RnnfilterError("rnnfilter failed: " + (text.splitlines()[-1] if text
                                                        else f"exit status {p.returncode}"))
        y = np.fromfile(dst, dtype="<f4")
    if output_size is None:
        if T == 0 or y.size % T:
            raise RnnfilterError(f"rnnfilter gave {y.size} values for {T} steps")
        output_size = y.size // T
    if y.size != T * output_size:
        raise RnnfilterError(f"rnnfilter gave {y.size} values, expected {T} steps x "
                             f"{output_size} outputs")
    return y.reshape(T, output_size)


def _split(pipeline):
    """gst-launch-1.0's argv for a pipeline string (quoted paths kept whole)."""
    import shlex
    return shlex.split(pipeline)
