#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""How far rnnfilter is from a float64 evaluation on published amp models,
next to how far PyTorch's own float32 forward is (developer script).

    scripts/compare-published.py SIGNAL.f32 MODEL.json...

SIGNAL.f32 is a raw F32LE mono signal (real audio: see the README for
making one from a WAV file); its first 48,000 samples, scaled to a peak of
0.5, are played through each model.  MODEL.json are GuitarML /
Automated-GuitarAmpModelling SimpleRNN files (e.g. Results/*/model*.json
of that project, models/*.json of GuitarML's NeuralPi); they are not part
of this project.  For each: the file is read by gstrnn.formats.guitarml,
written as a gst-rnn model, played through rnnfilter (gst-launch-1.0, the
plugin on GST_PLUGIN_PATH), and compared with the format's float64
reference; the same model run by PyTorch in float32
(gstrnn.convert.torch_float32) gives the framework's own error.
Printed: both maxima and their ratio.

Needs numpy, torch, gst-launch-1.0; PYTHONPATH=python from a checkout.
"""
import os
import sys
import tempfile

import numpy as np
import torch

from gstrnn.convert import torch_float32
from gstrnn.formats import guitarml
from gstrnn.rnnfilter import run

STEPS = 48000


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    x = np.fromfile(argv[1], "<f4").astype(np.float64)[:STEPS]
    if len(x) < STEPS or not np.abs(x).max() > 0:
        print(f"{argv[1]}: need {STEPS} samples of a non-silent signal", file=sys.stderr)
        return 2
    x = (0.5 * x / np.abs(x).max())[:, None]
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.safetensors")
        for f in argv[2:]:
            m = guitarml.read(f)
            want = guitarml.reference(f, x)
            m.to_safetensors(path)
            ours = float(np.max(np.abs(run(path, x, frame_size=1, output_size=m.output_size,
                                           rate=48000) - want)))
            theirs = float(np.max(np.abs(torch_float32(m, x) - want)))
            ratios.append(ours / theirs)
            print(f"{f}: {m.cell} H={m.hidden_size}: rnnfilter {ours:.3g}, PyTorch float32 "
                  f"{theirs:.3g} off float64 over {STEPS} steps; ratio {ours / theirs:.2f}")
    print(f"median ratio {np.median(ratios):.2f}, largest {max(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
