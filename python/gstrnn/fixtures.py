# SPDX-License-Identifier: LGPL-2.1-or-later
"""Helpers shared by the test-fixture generators (tests/core/gen-fixtures.py,
tests/core/gen-grad-fixtures.py, tests/fuzz/gen-fuzz-corpus.py).

    build_tarball(name, output, generate, keep=None)
        runs generate(stage) to fill stage/NAME, then packs it into the
        reproducible tarball @output (atomically) and optionally keeps a
        copy of the unpacked files in keep/NAME;
    pack_tarball(stage, name, output)
        the packing alone: the same bytes for the same files, whoever runs
        it and whenever (sorted names, mtime 0, owner 0, fixed modes, xz -9e
        on one thread);
    safetensors_bytes(meta, tensors, pad=True)
        a safetensors file assembled by hand, tensors in the order given,
        values as F32/F64/F16/BF16 (the fuzz corpus needs files the
        exporter would never write).

Standard library only (tar and xz are run as programs).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import tempfile

__all__ = ["build_tarball", "pack_tarball", "f16_bits", "bf16_bits", "encode",
           "safetensors_bytes"]


# --------------------------------------------------------------------------
# reproducible tarballs


def pack_tarball(stage: str, name: str, output: str) -> None:
    """Reproducible tar.xz of @stage/@name at @output (atomic)."""
    tmp = output + ".tmp"
    with open(tmp, "wb") as out:
        tar = subprocess.Popen(
            ["tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner",
             "--format=gnu", "--mode=u+rw,go+r,go-w", "-cf", "-", name],
            cwd=stage, stdout=subprocess.PIPE, env=dict(os.environ, LC_ALL="C"))
        xz = subprocess.Popen(["xz", "-9e", "-T1"], stdin=tar.stdout, stdout=out)
        tar.stdout.close()
        if xz.wait() != 0 or tar.wait() != 0:
            os.unlink(tmp)
            raise RuntimeError("tar | xz failed")
    os.chmod(tmp, 0o644)
    os.replace(tmp, output)


def build_tarball(name: str, output: str, generate, keep: str | None = None):
    """Runs generate(stage) in a temporary directory (it writes stage/@name),
    packs stage/@name into @output, copies it to @keep/@name if @keep is
    given, and returns what generate returned."""
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    stage = tempfile.mkdtemp(prefix=f"gen-{name}-fixtures-")
    try:
        result = generate(stage)
        pack_tarball(stage, name, output)
        if keep:
            os.makedirs(keep, exist_ok=True)
            dest = os.path.join(keep, name)
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(os.path.join(stage, name), dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return result


# --------------------------------------------------------------------------
# safetensors files by hand

_FMT = {"F32": "<%df", "F64": "<%dd"}


def f16_bits(v: float) -> int:
    """IEEE half bits of @v; beyond the float16 range, infinity (as a
    converter would round it)."""
    if abs(v) > 65504.0:
        return 0xfc00 if v < 0 else 0x7c00
    return struct.unpack("<H", struct.pack("<e", v))[0]


def bf16_bits(v: float) -> int:
    """bfloat16 bits of @v (truncated float32)."""
    return struct.unpack("<I", struct.pack("<f", v))[0] >> 16


def encode(values, dtype: str) -> bytes:
    """@values as little-endian @dtype (F32, F64, F16 or BF16)."""
    if dtype in _FMT:
        return struct.pack(_FMT[dtype] % len(values), *values)
    if dtype == "F16":
        return struct.pack("<%dH" % len(values), *map(f16_bits, values))
    if dtype == "BF16":
        return struct.pack("<%dH" % len(values), *map(bf16_bits, values))
    raise ValueError(dtype)


def safetensors_bytes(meta, tensors, pad: bool = True) -> bytes:
    """safetensors bytes: @meta (a dict of strings, or None for no
    __metadata__) and @tensors, a list of (name, shape, values, dtype) in
    the order given, data contiguous; the header is padded with spaces to
    a multiple of 8 unless @pad is False."""
    header = {}
    if meta is not None:
        header["__metadata__"] = meta
    blobs = []
    pos = 0
    for name, shape, vals, dtype in tensors:
        blob = encode(vals, dtype)
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [pos, pos + len(blob)]}
        blobs.append(blob)
        pos += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)
