"""`kxl extract-images`: read danbooru2023 tar shards safely and validate every image.

Shard files (kxl.images.families): a fetched shards folder lists its families in
`families.json`, family F's file for an id being `F/{base name of pattern(id % modulus)}`; a
folder without that index (the synthetic one) is a single family where every top-level
`data-NNNN.tar` serves shard NNNN % 1000 (so data-0XXX.tar and data-1XXX.tar both serve XXX).
An id may thus be covered by several files (in the full run data-0XXX.tar, data-1XXX.tar and
the update shard data-D.tar); all of them are looked in. Covering files are ordered: families
in config order, or file name order in the single-family layout. Within one file the first
usable member of an id counts (tar order); across files the LAST file holding a usable member
wins (an update shard replaces the original), whatever that member's contents: a corrupt
winner is dropped, never replaced by an older copy.

Two ordered pool maps over files: the scan reads every needed file's member headers (never
member data) and notes which manifest ids it holds; the extraction then reads, validates and
writes only the winning members, one task per file that won any id. So each tar's data is read
at most once, and a tar that is not readable to its end is caught before anything is written.

Tar members are only ever *read* (never `extract`/`extractall`), and an image is written to
`out/XXXX/{id}.{ext}` (XXXX = id % 1000 whichever file it came from), a path built here from
the validated integer id and a fixed extension list, so nothing can land outside the output
folder whatever the tar says. A member is used only when it is a regular file named exactly
`{id}.{png|jpg|jpeg|webp}` at the top level (the real webp-4Mpixel shards hold `{id}.webp` at
top level); `../x`, absolute paths, directories, symlinks, hardlinks, devices and FIFOs are
rejected.

Per manifest id, first match wins:
- `corrupt_shard`  a file covering the id is not a readable tar (only with on_bad_shard: drop;
                   the default `error` stops with a one-line error naming the file);
- `missing_file`   no covering file has a usable member (the detail says if one was rejected,
                   and why);
- `too_large`      member bigger than max_file_bytes, or its *header* claims more than
                   max_pixels pixels (checked before any pixel is decoded);
- `corrupt_image`  zero bytes, not PNG/JPEG/WebP, or fails a full decode (truncated).
Kept images record their decoded width/height and the sha256 of their bytes.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from kxl.errors import KxlError
from kxl.hashing import sha256_bytes
from kxl.images.families import read_index
from kxl.images.pool import ShardPool

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


@dataclass(frozen=True)
class ShardFile:
    """One tar file that may hold some manifest ids."""

    label: str  # its path relative to the shards folder (in notes and drop details)
    path: Path
    modulus: int
    shard: int  # it serves the ids with id % modulus == shard


@dataclass(frozen=True)
class ScanTask:
    file: ShardFile
    ids: np.ndarray  # the manifest ids it covers, sorted


@dataclass
class ScanResult:
    """Which covered ids one file holds a usable member of, and its rejected members."""

    found: list[int] = field(default_factory=list)
    notes: dict[int, str] = field(default_factory=dict)  # covered id -> why its member failed
    rejected: list[str] = field(default_factory=list)
    bad: str | None = None  # not a readable tar: why


@dataclass(frozen=True)
class ExtractTask:
    file: ShardFile
    ids: np.ndarray  # the ids this file won, sorted
    out_root: Path  # where XXXX/{id}.{ext} go
    file_prefix: str  # the `file` column is f"{file_prefix}/XXXX/{id}.{ext}"
    limits: Limits


@dataclass
class ShardResult:
    """What one file's extraction gave: kept rows and dropped rows."""

    ok: dict[str, list] = field(default_factory=lambda: {k: [] for k in DATASET_SCHEMA})
    dropped: dict[str, list] = field(default_factory=lambda: {k: [] for k in DROPPED_SCHEMA})
    bad: str | None = None  # the tar failed on this second read: why (nothing kept then)

    def drop(self, pid: int, reason: str, detail: str) -> None:
        for k, v in zip(DROPPED_SCHEMA, (pid, reason, detail), strict=True):
            self.dropped[k].append(v)


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
    except Image.UnidentifiedImageError:
        # Pillow's message holds the BytesIO's repr (a memory address): say it in stable words
        return "corrupt_image", f"not a readable {'/'.join(PIL_FORMATS)} image"
    except Exception as exc:  # decoders raise OSError, SyntaxError, ValueError, ... on bad data
        return "corrupt_image", stable_detail(exc)
    return w, h


def stable_detail(exc: BaseException) -> str:
    """An exception as drop-detail text that two identical runs write identically: object
    reprs' memory addresses removed, at most 300 characters."""
    text = _ADDRESS.sub("", f"{type(exc).__name__}: {exc}")
    return text[:300]


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


class BadShard(Exception):
    """A shard file that is not a readable tar (raised only around tar reads, never writes)."""


def _members(path: Path) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    try:
        tf = tarfile.open(path, mode="r:")  # noqa: SIM115 - closed by `with tf` below
    except (tarfile.TarError, OSError) as exc:
        raise BadShard(stable_detail(exc)) from exc
    with tf:
        members = iter(tf)
        while True:
            try:
                m = next(members)
            except StopIteration:
                return
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise BadShard(stable_detail(exc)) from exc
            yield tf, m


def _read(tf: tarfile.TarFile, m: tarfile.TarInfo) -> bytes:
    try:
        fh = tf.extractfile(m)
        return fh.read() if fh else b""
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BadShard(stable_detail(exc)) from exc


def scan_file(task: ScanTask) -> ScanResult:
    """Member headers of one file: which covered ids it holds (runs in a worker process)."""
    label = task.file.label
    wanted = set(task.ids.tolist())
    res = ScanResult()
    found: set[int] = set()
    try:
        for _, m in _members(task.file.path):
            verdict = member_verdict(m)
            if isinstance(verdict, str):
                res.rejected.append(f"{label}: {verdict}")
                stem = m.name.rsplit("/", 1)[-1].split(".", 1)[0]
                if stem.isdigit() and int(stem) in wanted:
                    res.notes.setdefault(int(stem), f"{label}: rejected {verdict}")
            elif verdict[0] in wanted:
                found.add(verdict[0])
    except BadShard as exc:
        return ScanResult(bad=str(exc))
    res.found = sorted(found)
    return res


def extract_file(task: ExtractTask) -> ShardResult:
    """Read, validate and write the ids one file won (runs in a worker process)."""
    res = ShardResult()
    todo = set(task.ids.tolist())
    written: list[Path] = []
    members = _members(task.file.path)
    try:
        for tf, m in members:
            if not todo:
                break
            verdict = member_verdict(m)
            if isinstance(verdict, str) or verdict[0] not in todo:
                continue
            pid, ext = verdict
            todo.discard(pid)  # the first usable member counts, as in the scan
            if m.size > task.limits.max_file_bytes:
                res.drop(pid, "too_large", f"{m.size} bytes > max_file_bytes")
                continue
            dest = _keep(task, res, pid, ext, _read(tf, m))
            if dest is not None:
                written.append(dest)
        if todo:
            raise BadShard(f"changed since it was scanned: no member for id {min(todo)} now")
    except BadShard as exc:
        for dest in written:
            dest.unlink(missing_ok=True)
        return ShardResult(bad=str(exc))
    finally:
        members.close()
    return res


def _keep(task: ExtractTask, res: ShardResult, pid: int, ext: str, data: bytes) -> Path | None:
    verdict = validate_image(data, task.limits)
    if isinstance(verdict[0], str):
        res.drop(pid, str(verdict[0]), str(verdict[1]))
        return None
    rel = f"{pid % 1000:04d}/{pid}.{ext}"  # built from an int and a whitelisted ext only
    dest = task.out_root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    row = (pid, f"{task.file_prefix}/{rel}", verdict[0], verdict[1], sha256_bytes(data))
    for k, v in zip(DATASET_SCHEMA, row, strict=True):
        res.ok[k].append(v)
    return dest


def shard_files(shards_dir: Path) -> dict[int, tuple[Path, ...]]:
    """Single-family layout: shard number -> its `data-NNNN.tar` files (NNNN % 1000 == shard),
    by name."""
    out: dict[int, list[Path]] = {}
    for p in sorted(shards_dir.iterdir()):
        m = SHARD_FILE.match(p.name)
        if m:
            out.setdefault(int(m.group(1)) % 1000, []).append(p)
    return {k: tuple(v) for k, v in out.items()}


def _split_by(keys: np.ndarray, values: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(key, its values in their order) for each distinct key, by key."""
    if len(keys) == 0:
        return []
    order = np.argsort(keys, kind="stable")
    uniq, starts = np.unique(keys[order], return_index=True)
    return list(zip(uniq.tolist(), np.split(values[order], starts[1:]), strict=True))


def _groups(ids: np.ndarray, modulus: int) -> list[tuple[int, np.ndarray]]:
    """(shard, its ids) for each distinct id % modulus of sorted `ids`, ids kept sorted."""
    return _split_by(ids % modulus, ids)


def plan_files(ids: np.ndarray, shards_dir: Path) -> list[ScanTask]:
    """Every file that covers a manifest id, in precedence order, with the ids it covers; a
    needed file that is absent is an error."""
    if not shards_dir.is_dir():
        raise KxlError(f"{shards_dir}: shards folder not found; run synth-images or fetch-images")
    families = read_index(shards_dir)
    tasks = []
    if families is None:
        by_shard = shard_files(shards_dir)
        for shard, part in _groups(ids, 1000):
            if shard not in by_shard:
                raise KxlError(
                    f"{shards_dir}: no data-NNNN.tar with NNNN % 1000 == {shard} for manifest "
                    f"id {int(part[0])}; fetch or synthesise that shard"
                )
            tasks += [ScanTask(ShardFile(p.name, p, 1000, shard), part) for p in by_shard[shard]]
        return sorted(tasks, key=lambda t: t.file.label)
    for fam in families:
        for shard, part in _groups(ids, fam.modulus):
            label = fam.local(shard)
            if not (shards_dir / label).is_file():
                raise KxlError(
                    f"{shards_dir}: no {label} (family {fam.name}, id % {fam.modulus} == "
                    f"{shard}) for manifest id {int(part[0])}; re-run fetch-images"
                )
            tasks.append(ScanTask(ShardFile(label, shards_dir / label, fam.modulus, shard), part))
    return tasks


def _bad_shard_error(label: str, why: str) -> KxlError:
    return KxlError(
        f"shard {label}: not a readable tar ({why}); re-fetch or regenerate it, "
        "or set images.on_bad_shard: drop"
    )


def _decide(
    ids: np.ndarray, scans: list[ScanTask], found: list[ScanResult], on_bad_shard: str
) -> tuple[np.ndarray, ShardResult]:
    """Per sorted id, the index of the file it is taken from (-1: none), and the drops made
    before any extraction (corrupt_shard, missing_file)."""
    win = np.full(len(ids), -1, dtype=np.int64)
    bad = np.full(len(ids), -1, dtype=np.int64)  # first unreadable file covering the id
    for i, (task, res) in enumerate(zip(scans, found, strict=True)):
        if res.bad is not None:
            if on_bad_shard == "error":
                raise _bad_shard_error(task.file.label, res.bad)
            idx = np.searchsorted(ids, task.ids)
            bad[idx[bad[idx] < 0]] = i
        else:  # later files overwrite earlier ones: the last file holding the id wins
            win[np.searchsorted(ids, np.asarray(res.found, dtype=np.int64))] = i
    drops = ShardResult()
    for j in np.flatnonzero(bad >= 0).tolist():
        task, res = scans[bad[j]], found[bad[j]]
        drops.drop(int(ids[j]), "corrupt_shard", f"{task.file.label}: {res.bad}"[:300])
    missing = np.flatnonzero((win < 0) & (bad < 0)).tolist()
    if missing:
        notes: dict[int, str] = {}
        covering: dict[tuple[int, int], list[int]] = {}
        for i, (task, res) in enumerate(zip(scans, found, strict=True)):
            covering.setdefault((task.file.modulus, task.file.shard), []).append(i)
            for pid, note in res.notes.items():
                notes.setdefault(pid, note)
        moduli = sorted({m for m, _ in covering})
        for j in missing:
            pid = int(ids[j])
            note = notes.get(pid)
            if note is None:
                idx = sorted(i for m in moduli for i in covering.get((m, pid % m), []))
                note = f"no {pid}.* member in {', '.join(scans[i].file.label for i in idx)}"
            drops.drop(pid, "missing_file", note)
    win[bad >= 0] = -1
    return win, drops


def extract_images(
    ids: np.ndarray, shards_dir: Path, out_root: Path, file_prefix: str, limits: Limits,
    on_bad_shard: str, workers: int = 1,
) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """(dataset, dropped, rejected-member notes) for manifest `ids`; images go to out_root."""
    if len(np.unique(ids)) != len(ids):
        raise KxlError("kept.parquet: duplicate ids; the manifest must list each post once")
    ids = np.sort(ids.astype(np.int64))
    scans = plan_files(ids, shards_dir)
    with ShardPool(workers) as pool:
        found = pool.map(scan_file, scans, "scan")
        win, drops = _decide(ids, scans, found, on_bad_shard)
        tasks = [
            ExtractTask(scans[i].file, part, out_root, file_prefix, limits)
            for i, part in _split_by(win[win >= 0], ids[win >= 0])
        ]
        results = pool.map(extract_file, tasks, "extract")
    parts = [drops]
    for task, res in zip(tasks, results, strict=True):
        if res.bad is None:
            parts.append(res)
            continue
        if on_bad_shard == "error":
            raise _bad_shard_error(task.file.label, res.bad)
        for pid in task.ids.tolist():
            drops.drop(pid, "corrupt_shard", f"{task.file.label}: {res.bad}"[:300])
    dataset = pl.concat(
        [pl.DataFrame(r.ok, schema=DATASET_SCHEMA) for r in parts]
    ).sort("id")
    dropped = pl.concat(
        [pl.DataFrame(r.dropped, schema=DROPPED_SCHEMA) for r in parts]
    ).sort("id")
    # Every manifest id is kept or dropped exactly once: nothing silently lost.
    assert dataset.height + dropped.height == len(ids)
    assert dataset["id"].is_unique().all() and dropped["id"].is_unique().all()
    return dataset, dropped, [note for r in found for note in r.rejected]
