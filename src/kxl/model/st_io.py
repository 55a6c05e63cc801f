"""Streaming, atomic, byte-deterministic safetensors writing (kxl.safetensors_header reads).

The writer converts and writes one tensor at a time, so saving a 7 GB SDXL in fp16 from fp32
modules never holds a second copy of the model; keys are sorted so the same tensors give the
same bytes. The format is the public safetensors layout: u64 little-endian header length,
JSON header (dtype, shape, data_offsets per tensor, optional `__metadata__` of strings), padded
with spaces to 8 bytes, then the raw little-endian tensor bytes.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping

import torch

from kxl.atomic import atomic_path
from kxl.errors import KxlError
from kxl.safetensors_header import DTYPE_NAMES


def save_streaming(
    tensors: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    metadata: Mapping[str, str] | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Write `tensors` (cast to `dtype` if given, floating tensors only) atomically."""
    keys = sorted(tensors)
    header: dict[str, object] = {}
    if metadata:
        bad = [k for k, v in metadata.items() if not isinstance(v, str)]
        if bad:
            raise KxlError(f"{path}: safetensors metadata values must be strings; not {bad[0]!r}")
        header["__metadata__"] = dict(sorted(metadata.items()))
    offset = 0
    out_dtypes = {}
    for k in keys:
        t = tensors[k]
        dt = dtype if (dtype is not None and t.is_floating_point()) else t.dtype
        out_dtypes[k] = dt
        size = t.numel() * torch.empty((), dtype=dt).element_size()
        header[k] = {"dtype": DTYPE_NAMES[dt], "shape": list(t.shape),
                     "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for k in keys:
            t = tensors[k].detach().to("cpu", out_dtypes[k]).contiguous()
            data = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b""
            fh.write(memoryview(data))
