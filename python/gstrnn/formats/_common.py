# SPDX-License-Identifier: LGPL-2.1-or-later
"""What the format readers share: loading JSON and checking its values."""

import json
import math
import os

import numpy as np

from gstrnn.model import ModelError


def load_json(path):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: not a JSON file ({e})") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot read it ({e.strerror})") from None


def parsed(path_or_parsed):
    """(document, display name) of a path or an already parsed document."""
    if isinstance(path_or_parsed, (str, os.PathLike)):
        return load_json(path_or_parsed), os.fspath(path_or_parsed)
    return path_or_parsed, "<parsed>"


def integer(where, value, minimum=1):
    """A JSON integer (an integral float too) >= minimum, else ModelError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModelError(f"{where} is {value!r}, expected an integer")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ModelError(f"{where} is {value!r}, expected an integer")
        value = int(value)
    if value < minimum:
        raise ModelError(f"{where} is {value}, expected >= {minimum}")
    return value


def array(where, value, shape=None, ndim=None):
    """A nested JSON list of finite numbers as float64, of the given shape."""
    try:
        a = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ModelError(f"{where} is not a rectangular array of numbers") from None
    items = np.array(value, dtype=object).reshape(-1)
    if not all(type(v) in (int, float) for v in items):
        raise ModelError(f"{where} holds a value that is not a number")
    if ndim is not None and a.ndim != ndim:
        raise ModelError(f"{where} has shape {list(a.shape)}, expected {ndim} dimensions")
    if shape is not None and tuple(a.shape) != tuple(shape):
        raise ModelError(f"{where} has shape {list(a.shape)}, expected {list(shape)}")
    if not np.all(np.isfinite(a)):
        raise ModelError(f"{where} holds a non-finite value")
    return a


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def stream(x, width):
    """x as a float64 [T][width] stream (a flat x is one channel)."""
    x = np.array(x, dtype=np.float64)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if x.ndim != 2 or x.shape[1] != width:
        raise ModelError(f"input has shape {list(x.shape)}, expected [T, {width}]")
    return x
