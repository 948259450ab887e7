# SPDX-License-Identifier: LGPL-2.1-or-later
"""gst-rnn's Python side: model files from PyTorch and ONNX.

    import gstrnn
    gstrnn.export(model, "model.safetensors")      # a whole nn.Module, checked
    gstrnn.export(rnn, head, "model.safetensors", head_activation="softmax")
    meta, tensors = gstrnn.load("model.safetensors")

Modules:

    gstrnn.export       reading and writing model files (its functions are
                        re-exported here: export, export_arrays,
                        write_safetensors, load, build_torch, torch_forward,
                        reference_forward)
    gstrnn.model        a model in memory: float64 forward, the file writer
    gstrnn.torch_import files written by torch.save (modules, state_dicts)
    gstrnn.torch_modules modules and TorchScript files read by their submodules
    gstrnn.onnx_import  ONNX graphs holding RNN / LSTM / GRU ops
    gstrnn.formats      RTNeural JSON, GuitarML SimpleRNN JSON, NAM .nam
    gstrnn.rnnfilter    a model file through gst-launch-1.0 rnnfilter
    gstrnn.convert      the command line of tools/gst-rnn-convert
    gstrnn.recipes      helpers of the recipes in models/recipes/
    gstrnn.fixtures     helpers shared by the test-fixture generators

numpy is needed; torch for export(), build_torch() and torch_forward();
onnx for gstrnn.onnx_import.  From a checkout: PYTHONPATH=$PWD/python.
"""

# The submodule gstrnn.export and the function gstrnn.export share a name:
# after this import the package attribute is the function (the public call);
# the module's other names are re-exported beside it.
from .export import (  # noqa: F401
    CELLS,
    GATES,
    HEAD_ACTIVATIONS,
    build_torch,
    export,
    export_arrays,
    load,
    reference_forward,
    serialize_safetensors,
    torch_forward,
    write_safetensors,
)

__all__ = [
    "CELLS", "GATES", "HEAD_ACTIVATIONS", "build_torch", "export", "export_arrays", "load",
    "reference_forward", "serialize_safetensors", "torch_forward", "write_safetensors",
]
