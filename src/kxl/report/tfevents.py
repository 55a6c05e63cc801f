"""Training sessions from the TensorBoard folder, without TensorBoard.

Each `kxl train` process opens a new event file with `purge_step` = the step it resumed at,
and torch's writer records that as a `SessionLog START` event at that step near the file's
start. Snakemake truncates the train log on every rerun, so these files are what still shows
every earlier crash and resume. Only each file's first records are read (TFRecord framing:
u64 length, u32 crc, payload, u32 crc; payload = a tensorflow `Event` protobuf).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

_HEAD = 16  # records read per file: the version record, then the session start


@dataclass(frozen=True)
class Session:
    file: str
    start_step: int
    wall_time: float  # seconds since the epoch


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes) -> dict[int, int | float | bytes]:
    """Top-level fields of one protobuf message (the last occurrence of each wins)."""
    out: dict[int, int | float | bytes] = {}
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            out[num], i = _varint(buf, i)
        elif wire == 1:
            out[num] = struct.unpack_from("<d", buf, i)[0]
            i += 8
        elif wire == 2:
            n, i = _varint(buf, i)
            out[num] = buf[i:i + n]
            i += n
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"protobuf wire type {wire}")
    return out


def session_start(path: Path) -> Session | None:
    """The file's SessionLog START event (Event field 7, status 1); without one (a writer
    opened without purge_step), its first summary event (field 5); else None."""
    first = None
    with open(path, "rb") as fh:
        for _ in range(_HEAD):
            head = fh.read(12)
            if len(head) < 12:
                break
            payload = fh.read(struct.unpack("<Q", head[:8])[0])
            fh.read(4)
            event = _fields(payload)
            at = Session(path.name, int(event.get(2, 0)), float(event.get(1, 0.0)))
            log = event.get(7)
            if isinstance(log, bytes) and _fields(log).get(1) == 1:
                return at
            if first is None and 5 in event:
                first = at
    return first


def sessions(folder: Path) -> tuple[list[Session], list[str]]:
    """Every training session in wall-time order, and one line per unreadable event file."""
    found, bad = [], []
    for f in sorted(folder.glob("events.out.tfevents.*")) if folder.is_dir() else []:
        try:
            s = session_start(f)
        except (OSError, ValueError, IndexError, struct.error) as exc:
            bad.append(f"{f}: unreadable event file ({exc.__class__.__name__})")
            continue
        if s is not None:
            found.append(s)
    return sorted(found, key=lambda s: s.wall_time), bad
