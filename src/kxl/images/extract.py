"""`kxl extract-images`: read danbooru2023 tar shards safely and validate every image.

Shard files: every `data-NNNN.tar` in the shards folder serves shard NNNN % 1000, so both the
synthetic `data-0XXX.tar` and the HF dataset's `data-0XXX.tar` + `data-1XXX.tar` work.

Tar members are only ever *read* (never `extract`/`extractall`), and an image is written to
`out/XXXX/{id}.{ext}`, a path built here from the validated integer id and a fixed extension
list, so nothing can land outside the output folder whatever the tar says. A member is used
only when it is a regular file named exactly `{id}.{png|jpg|jpeg|webp}` at the top level (the
real webp-4Mpixel shards hold `{id}.webp` at top level); `../x`, absolute paths, directories,
symlinks, hardlinks, devices and FIFOs are rejected. When the same id occurs twice the first
member (file name order, then tar order) wins.

Per manifest id, first match wins:
- `corrupt_shard`  the shard file is not a readable tar (only with on_bad_shard: drop; the
                   default `error` stops with a one-line error naming the shard);
- `missing_file`   no usable member (the detail says if one was rejected, and why);
- `too_large`      member bigger than max_file_bytes, or its *header* claims more than
                   max_pixels pixels (checked before any pixel is decoded);
- `corrupt_image`  zero bytes, not PNG/JPEG/WebP, or fails a full decode (truncated).
Kept images record their decoded width/height and the sha256 of their bytes.
"""

from __future__ import annotations

import io
import re
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from kxl.errors import KxlError
from kxl.hashing import sha256_bytes
from kxl.images.pool import map_shards

MEMBER_NAME = re.compile(r"^(0|[1-9][0-9]*)\.(png|jpg|jpeg|webp)$")
SHARD_FILE = re.compile(r"^data-([0-9]{4})\.tar$")
PIL_FORMATS = ("PNG", "JPEG", "WEBP")
DATASET_SCHEMA = {
    "id": pl.Int64, "file": pl.String, "width": pl.Int32, "height": pl.Int32, "sha256": pl.String,
}
DROPPED_SCHEMA = {"id": pl.Int64, "reason": pl.String, "detail": pl.String}


@dataclass(frozen=True)
class Limits:
    max_pixels: int
    max_file_bytes: int


@dataclass
class ShardResult:
    """What one shard gave: kept rows, dropped rows and notes on rejected members."""

    ok: dict[str, list] = field(default_factory=lambda: {k: [] for k in DATASET_SCHEMA})
    dropped: dict[str, list] = field(default_factory=lambda: {k: [] for k in DROPPED_SCHEMA})
    rejected: list[str] = field(default_factory=list)

    def drop(self, pid: int, reason: str, detail: str) -> None:
        for k, v in zip(DROPPED_SCHEMA, (pid, reason, detail), strict=True):
            self.dropped[k].append(v)


@dataclass(frozen=True)
class ShardTask:
    shard: int
    paths: tuple[Path, ...]
    ids: np.ndarray  # manifest ids of this shard
    out_root: Path  # where XXXX/{id}.{ext} go
    file_prefix: str  # the `file` column is f"{file_prefix}/XXXX/{id}.{ext}"
    limits: Limits
    on_bad_shard: str


def member_verdict(m: tarfile.TarInfo) -> tuple[int, str] | str:
    """(id, ext) for a usable member, else why it is rejected."""
    match = MEMBER_NAME.match(m.name)
    if match is None:
        return f"unexpected or unsafe name {m.name!r}"
    if m.issym():
        return f"symlink {m.name!r} -> {m.linkname!r}"
    if m.islnk():
        return f"hardlink {m.name!r} -> {m.linkname!r}"
    if not m.isreg():
        return f"{m.name!r} is not a regular file (tar type {m.type!r})"
    return int(match.group(1)), match.group(2)


def validate_image(data: bytes, limits: Limits) -> tuple[int, int] | tuple[str, str]:
    """(width, height) of a fully decoded image, or (reason, detail) for a drop."""
    from PIL import Image

    if not data:
        return "corrupt_image", "zero-byte file"
    try:
        with Image.open(io.BytesIO(data), formats=PIL_FORMATS) as im:
            w, h = im.size
            # Image.open only parsed the header: refuse before decode allocates w*h pixels.
            if w * h > limits.max_pixels:
                return "too_large", f"{w}x{h} = {w * h} pixels > max_pixels {limits.max_pixels}"
            im.load()
    except Image.DecompressionBombError as exc:
        return "too_large", f"Pillow decompression-bomb guard: {exc}"
    except Exception as exc:  # decoders raise OSError, SyntaxError, ValueError, ... on bad data
        return "corrupt_image", f"{type(exc).__name__}: {exc}"[:300]
    return w, h


class BadShard(Exception):
    """A shard file that is not a readable tar (raised only around tar reads, never writes)."""


def _members(path: Path) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    try:
        tf = tarfile.open(path, mode="r:")  # noqa: SIM115 - closed by `with tf` below
    except (tarfile.TarError, OSError) as exc:
        raise BadShard(f"{type(exc).__name__}: {exc}") from exc
    with tf:
        members = iter(tf)
        while True:
            try:
                m = next(members)
            except StopIteration:
                return
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise BadShard(f"{type(exc).__name__}: {exc}") from exc
            yield tf, m


def _read(tf: tarfile.TarFile, m: tarfile.TarInfo) -> bytes:
    try:
        fh = tf.extractfile(m)
        return fh.read() if fh else b""
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BadShard(f"{type(exc).__name__}: {exc}") from exc


def _scan(task: ShardTask, res: ShardResult) -> None:
    """Read every shard file of the task into `res`."""
    wanted = set(task.ids.tolist())
    seen: set[int] = set()
    notes: dict[int, str] = {}
    for path in task.paths:
        for tf, m in _members(path):
            verdict = member_verdict(m)
            if isinstance(verdict, str):
                res.rejected.append(f"{path.name}: {verdict}")
                stem = m.name.rsplit("/", 1)[-1].split(".", 1)[0]
                if stem.isdigit() and int(stem) in wanted:
                    notes.setdefault(int(stem), f"{path.name}: rejected {verdict}")
                continue
            pid, ext = verdict
            if pid not in wanted or pid in seen:
                continue
            seen.add(pid)
            if m.size > task.limits.max_file_bytes:
                res.drop(pid, "too_large", f"{m.size} bytes > max_file_bytes")
                continue
            _keep(task, res, pid, ext, _read(tf, m))
    for pid in sorted(wanted - seen):
        names = ", ".join(p.name for p in task.paths)
        res.drop(pid, "missing_file", notes.get(pid, f"no {pid}.* member in {names}"))


def _keep(task: ShardTask, res: ShardResult, pid: int, ext: str, data: bytes) -> None:
    verdict = validate_image(data, task.limits)
    if isinstance(verdict[0], str):
        res.drop(pid, str(verdict[0]), str(verdict[1]))
        return
    rel = f"{task.shard:04d}/{pid}.{ext}"  # built from an int and a whitelisted ext only
    dest = task.out_root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    row = (pid, f"{task.file_prefix}/{rel}", verdict[0], verdict[1], sha256_bytes(data))
    for k, v in zip(DATASET_SCHEMA, row, strict=True):
        res.ok[k].append(v)


def process_shard(task: ShardTask) -> ShardResult:
    """Extract and validate the manifest ids of one shard (runs in a worker process)."""
    res = ShardResult()
    try:
        _scan(task, res)
    except BadShard as exc:
        names = ", ".join(p.name for p in task.paths)
        if task.on_bad_shard == "error":
            raise KxlError(
                f"shard {names}: not a readable tar ({exc}); re-fetch or regenerate it, "
                "or set images.on_bad_shard: drop"
            ) from exc
        shutil.rmtree(task.out_root / f"{task.shard:04d}", ignore_errors=True)
        res = ShardResult()
        for pid in task.ids.tolist():
            res.drop(pid, "corrupt_shard", f"{names}: {exc}"[:300])
    return res


def shard_files(shards_dir: Path) -> dict[int, tuple[Path, ...]]:
    """Shard number -> its `data-NNNN.tar` files (NNNN % 1000 == shard), by name."""
    if not shards_dir.is_dir():
        raise KxlError(f"{shards_dir}: shards folder not found; run synth-images or fetch-images")
    out: dict[int, list[Path]] = {}
    for p in sorted(shards_dir.iterdir()):
        m = SHARD_FILE.match(p.name)
        if m:
            out.setdefault(int(m.group(1)) % 1000, []).append(p)
    return {k: tuple(v) for k, v in out.items()}


def plan_tasks(
    ids: np.ndarray, shards_dir: Path, out_root: Path, file_prefix: str, limits: Limits,
    on_bad_shard: str,
) -> list[ShardTask]:
    """One task per shard that the manifest needs; a needed shard without a file is an error."""
    files = shard_files(shards_dir)
    shard_of = ids % 1000
    tasks = []
    for shard in np.unique(shard_of):
        if int(shard) not in files:
            example = int(ids[shard_of == shard][0])
            raise KxlError(
                f"{shards_dir}: no data-NNNN.tar with NNNN % 1000 == {shard} for manifest id "
                f"{example}; fetch or synthesise that shard"
            )
        tasks.append(ShardTask(int(shard), files[int(shard)], ids[shard_of == shard], out_root,
                               file_prefix, limits, on_bad_shard))
    return tasks


def extract_images(
    ids: np.ndarray, shards_dir: Path, out_root: Path, file_prefix: str, limits: Limits,
    on_bad_shard: str, workers: int = 1,
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """(dataset, dropped, rejected-member notes) for manifest `ids`; images go to out_root."""
    if len(np.unique(ids)) != len(ids):
        raise KxlError("kept.parquet: duplicate ids; the manifest must list each post once")
    tasks = plan_tasks(ids.astype(np.int64), shards_dir, out_root, file_prefix, limits,
                       on_bad_shard)
    results = map_shards(process_shard, tasks, workers, "extract")
    dataset = pl.concat(
        [pl.DataFrame(r.ok, schema=DATASET_SCHEMA) for r in results]
        or [pl.DataFrame(schema=DATASET_SCHEMA)]
    ).sort("id")
    dropped = pl.concat(
        [pl.DataFrame(r.dropped, schema=DROPPED_SCHEMA) for r in results]
        or [pl.DataFrame(schema=DROPPED_SCHEMA)]
    ).sort("id")
    # Every manifest id is kept or dropped exactly once: nothing silently lost.
    assert dataset.height + dropped.height == len(ids)
    return dataset, dropped, [note for r in results for note in r.rejected]
