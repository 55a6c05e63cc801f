"""The one safetensors header reader, below every stage that reads or writes safetensors.

The header is validated before any tensor is touched (8-byte little-endian length, JSON object,
known dtypes, `data_offsets` that match shape x itemsize, lie inside the file and do not
overlap), so a truncated or lying file is named in one line instead of crashing later. The base
(kxl.model), merge, eval and audit stages all read headers through `read_header`; it lives here
rather than in one of them so that no stage imports a later one's module.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from kxl.errors import KxlError

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64,
    "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 100 << 20  # the safetensors format's own limit


@dataclass(frozen=True)
class Entry:
    """One tensor of a safetensors file; offsets are relative to the data section."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Header:
    path: Path
    data_start: int
    entries: dict[str, Entry]
    metadata: dict[str, str]


def fail(path: Path, what: str) -> KxlError:
    return KxlError(f"{path}: {what}; expected a complete .safetensors file "
                    "(re-download or rebuild it)")


def _entry(path: Path, key: str, raw: object) -> Entry:
    if not isinstance(raw, dict) or set(raw) != {"dtype", "shape", "data_offsets"}:
        raise fail(path, f"header entry {key!r} is not {{dtype, shape, data_offsets}}")
    dtype, shape, offs = raw["dtype"], raw["shape"], raw["data_offsets"]
    if dtype not in DTYPES:
        raise fail(path, f"tensor {key!r} has unknown dtype {dtype!r}")
    ok_shape = isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)
    ok_offs = (isinstance(offs, list) and len(offs) == 2
               and all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
               and 0 <= offs[0] <= offs[1])
    if not ok_shape or not ok_offs:
        raise fail(path, f"tensor {key!r} has a malformed shape or data_offsets")
    want = math.prod(shape) * torch.empty((), dtype=DTYPES[dtype]).element_size()
    if offs[1] - offs[0] != want:
        raise fail(path, f"header lies about tensor {key!r}: {dtype}{shape} needs {want} bytes, "
                          f"data_offsets span {offs[1] - offs[0]}")
    return Entry(dtype, tuple(shape), offs[0], offs[1])


def read_header(path: str | os.PathLike[str]) -> Header:
    """Parse and validate the header of `path`; one-line KxlError on anything wrong."""
    p = Path(path)
    if not p.is_file():
        raise KxlError(f"{p}: file not found")
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise fail(p, f"not a safetensors file ({size} bytes, shorter than the 8-byte "
                           "header length)")
        n = struct.unpack("<Q", head)[0]
        if n < 2 or n > MAX_HEADER or 8 + n > size:
            raise fail(p, f"not a safetensors file or truncated (header length {n}, "
                           f"file {size} bytes)")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail(p, "not a safetensors file (header is not JSON)") from exc
    if not isinstance(header, dict):
        raise fail(p, "not a safetensors file (header is not a JSON object)")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise fail(p, "__metadata__ is not a mapping of strings")
    entries = {k: _entry(p, k, v) for k, v in header.items()}
    data_start = 8 + n
    last_key, last_end = None, 0
    for key, e in sorted(entries.items(), key=lambda kv: (kv[1].start, kv[1].end)):
        if e.start < last_end:
            raise fail(p, f"header lies: tensors {last_key!r} and {key!r} overlap")
        if data_start + e.end > size:
            raise fail(p, f"truncated: tensor {key!r} ends at byte {data_start + e.end}, "
                           f"the file has {size}")
        last_key, last_end = key, e.end
    return Header(p, data_start, entries, meta)
