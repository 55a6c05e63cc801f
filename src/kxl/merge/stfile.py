"""Safetensors files read and written without trusting them and without holding a model.

The header is validated before any tensor is touched (kxl.safetensors_header.read_header), so a
truncated or lying file is named in one line instead of crashing later.
Tensors are read with `pread` into a private buffer, not through a memory map: mapped pages of
a 7 GB file would count towards (and stay in) the process's resident set, reads do not.
The writer takes its layout up front and then exactly one tensor at a time, in layout order.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import torch

from kxl.atomic import atomic_path
from kxl.errors import KxlError
from kxl.safetensors_header import DTYPE_NAMES, DTYPES, Entry, fail, read_header

_CHUNK = 1 << 24


class Reader:
    """Random access to the tensors of a validated file (one tensor in memory per call)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.header = read_header(path)
        self.path = self.header.path
        self._fd = os.open(self.path, os.O_RDONLY)

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def sorted_keys(self) -> list[str]:
        return sorted(self.header.entries)

    def entry(self, key: str) -> Entry:
        try:
            return self.header.entries[key]
        except KeyError:
            raise KxlError(f"{self.path}: no tensor {key!r}") from None

    def raw(self, key: str) -> bytearray:
        e = self.entry(key)
        buf = bytearray(e.nbytes)
        view, done = memoryview(buf), 0
        while done < e.nbytes:
            n = os.preadv(self._fd, [view[done:]], self.header.data_start + e.start + done)
            if n <= 0:
                raise fail(self.path, f"truncated while reading tensor {key!r}")
            done += n
        return buf

    def tensor(self, key: str) -> torch.Tensor:
        """The tensor `key` in its stored dtype (a private copy, safe to modify)."""
        e = self.entry(key)
        dtype = DTYPES[e.dtype]
        if e.nbytes == 0:
            return torch.empty(e.shape, dtype=dtype)
        return torch.frombuffer(self.raw(key), dtype=dtype).reshape(e.shape)

    def copy_to(self, key: str, out: IO[bytes]) -> None:
        """Copy tensor `key`'s bytes to `out` in chunks (never the whole tensor at once)."""
        e = self.entry(key)
        pos, end = self.header.data_start + e.start, self.header.data_start + e.end
        while pos < end:
            chunk = os.pread(self._fd, min(_CHUNK, end - pos), pos)
            if not chunk:
                raise fail(self.path, f"truncated while reading tensor {key!r}")
            out.write(chunk)
            pos += len(chunk)


@dataclass(frozen=True)
class Slot:
    """What the writer will receive for one key: dtype name and shape."""

    dtype: str
    shape: tuple[int, ...]


class StreamWriter:
    """Writes a safetensors file whose layout is fixed up front, one tensor at a time.

    Keys are written in sorted order (byte-deterministic output). `write`/`copy_from` must be
    called in that order; the writer keeps no reference to what it was given. The file appears
    under its final name only after the last tensor was written (kxl.atomic).
    """

    def __init__(self, path: str | os.PathLike[str], layout: Mapping[str, Slot],
                 metadata: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.order = sorted(layout)
        self.layout = dict(layout)
        header: dict[str, object] = {}
        if metadata:
            header["__metadata__"] = dict(sorted(metadata.items()))
        offset = 0
        for k in self.order:
            s = self.layout[k]
            size = math.prod(s.shape) * torch.empty((), dtype=DTYPES[s.dtype]).element_size()
            header[k] = {"dtype": s.dtype, "shape": list(s.shape),
                         "data_offsets": [offset, offset + size]}
            offset += size
        raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        self._header = raw + b" " * (-len(raw) % 8)
        self._next = 0

    def __enter__(self) -> StreamWriter:
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        self._fh = open(tmp, "wb")  # noqa: SIM115 - closed in __exit__
        self._fh.write(struct.pack("<Q", len(self._header)))
        self._fh.write(self._header)
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._fh.close()
        if et is None and self._next != len(self.order):
            err = KxlError(f"{self.path}: writer closed after {self._next} of "
                           f"{len(self.order)} tensors")
            self._ctx.__exit__(KxlError, err, None)  # removes the temporary file
            raise err
        self._ctx.__exit__(et, ev, tb)

    def _take(self, key: str) -> Slot:
        if self._next >= len(self.order) or self.order[self._next] != key:
            want = self.order[self._next] if self._next < len(self.order) else "nothing"
            raise KxlError(f"{self.path}: tensor {key!r} written out of order (expected {want})")
        self._next += 1
        return self.layout[key]

    def write(self, key: str, tensor: torch.Tensor) -> None:
        slot = self._take(key)
        if tuple(tensor.shape) != slot.shape or DTYPE_NAMES[tensor.dtype] != slot.dtype:
            raise KxlError(f"{self.path}: tensor {key!r} is {DTYPE_NAMES[tensor.dtype]}"
                           f"{list(tensor.shape)}, the layout says {slot.dtype}{list(slot.shape)}")
        t = tensor.detach().contiguous()
        if t.numel():
            self._fh.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))

    def copy_from(self, key: str, reader: Reader) -> None:
        slot = self._take(key)
        e = reader.entry(key)
        if (e.dtype, e.shape) != (slot.dtype, slot.shape):
            raise KxlError(f"{self.path}: raw copy of {key!r} does not match the layout")
        reader.copy_to(key, self._fh)


def iter_tensors(reader: Reader, keys: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
    """(key, tensor) one at a time; the previous tensor is released by the consumer."""
    for k in keys:
        yield k, reader.tensor(k)
