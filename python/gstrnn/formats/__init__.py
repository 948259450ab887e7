# SPDX-License-Identifier: LGPL-2.1-or-later
"""Readers of the model files amp-modelling users already have.

One module per source format, each with

  read(path) -> gstrnn.model.Model
      the model in gst-rnn's form (docs/design.md §2), refusing with a
      gstrnn.model.ModelError that names the layer or key whatever the form
      cannot express (nothing is dropped silently);
  reference(path_or_parsed, x) -> numpy array [T][O]
      a float64 evaluation of the format's own semantics, written from the
      format's documentation and its project's loader, apart from
      gstrnn.model, so that a wrong translation shows as a difference.

  rtneural  RTNeural JSON: the Keras export (in_shape + layers) and PyTorch
            state_dict JSON (torch_helpers)
  guitarml  Automated-GuitarAmpModelling / GuitarML SimpleRNN JSON
  nam       Neural Amp Modeler .nam files of architecture LSTM

detect(path) names the module that reads a file; read(path) dispatches.
"""

from gstrnn.model import ModelError
from gstrnn.formats import _common, guitarml, nam, rtneural

READERS = {"rtneural-json": rtneural, "guitarml-json": guitarml, "nam": nam}


def detect(path):
    """The source_format name of the file at path ('rtneural-json', ...)."""
    doc = _common.load_json(path)
    if isinstance(doc, dict):
        if "model_data" in doc:
            return "guitarml-json"
        if "architecture" in doc and "weights" in doc:
            return "nam"
        if "layers" in doc and "in_shape" in doc:
            return "rtneural-json"
        if any(".weight_ih_l" in k or k.endswith(".weight") for k in doc):
            return "rtneural-json"
    raise ModelError(f"{path}: not a model file of a format this package reads "
                     "(RTNeural JSON, GuitarML SimpleRNN JSON, Neural Amp Modeler .nam)")


def read(path, **kwargs):
    """Read any supported file into a gstrnn.model.Model."""
    return READERS[detect(path)].read(path, **kwargs)
