"""`kxl series`: how a LoKr moves over its checkpoints, per block, streamed one module at a time.

For each checkpoint step t and each block (kxl.lokr.blocks: te1, te2, UNet input/output level
k, middle, conv_in, embeddings/out; and overall), with D_t the effective delta of the block's
modules (kxl.merge.lokr: scale * kron(W1, W2); trained norms' w_norm, b_norm):

- norm ||D_t||, and change_t = ||D_t - D_{t-1}|| / ||D_{t-1}||;
- with a second series b at the same steps: cosine <Da, Db> / (||Da|| ||Db||) and
  rel_l2 = ||Da - Db|| / ||Da||;
- flags: a step whose change is above `jump` x the median of the block's earlier changes (at
  least 2 of them).

No delta is materialised: ||kron(A, B)|| = ||A|| ||B|| and <kron(A1, B1), kron(A2, B2)> =
<A1, A2> <B1, B2> for factors of the same shapes (a conv's W1 is broadcast over the kernel axes,
so W2 counts as (out, -1)); ||x - y||^2 = ||x||^2 + ||y||^2 - 2 <x, y>. Per block the squared
norms and inner products are sums over its modules, in float64. A module whose factor shapes
differ between two files (another factor) has that pair's deltas materialised as (out, -1).
Files are read with pread (kxl.merge.stfile.Reader, no memory map), one module's tensors from
every file at a time, so memory is about one module x the number of files.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch

from kxl.errors import KxlError
from kxl.lokr.blocks import module_block
from kxl.merge.lokr import Module, kron_factors, lokr_delta, lokr_scale, parse_modules
from kxl.merge.stfile import Reader

OVERALL = "overall"


@dataclass(frozen=True)
class _Rep:
    """One module of one file, as the numbers need it: lokr (scale, W1, W2 as (out, -1)) or
    norm (w_norm, b_norm or None), flat float64 views into a reused scratch buffer; `load`
    rereads the raw tensors for a materialised pair."""

    kind: str
    scale: float
    parts: tuple[torch.Tensor | None, ...]
    shapes: tuple[tuple[int, ...] | None, ...]  # of the parts before flattening
    sq: float
    load: Callable[[], dict[str, torch.Tensor]]
    where: str


class _Scratch:
    """float64 buffers reused from module to module: converting into memory that is already
    touched is ~4x faster than allocating a fresh float64 copy per tensor (page faults)."""

    def __init__(self) -> None:
        self._bufs: dict[object, torch.Tensor] = {}

    def f64(self, slot: object, t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        buf = self._bufs.get(slot)
        if buf is None or buf.numel() < t.numel():
            buf = self._bufs[slot] = torch.empty(t.numel(), dtype=torch.float64)
        view = buf[:t.numel()]
        view.copy_(t.reshape(-1))
        return view


def _rep(r: Reader, mod: Module, scratch: _Scratch, slot: object) -> _Rep:
    def load() -> dict[str, torch.Tensor]:
        return {k: r.tensor(f"{mod.name}.{k}") for k in sorted(mod.params)}

    p = load()
    if mod.kind == "norm":
        kind, scale, raw = "norm", 1.0, (p["w_norm"], p.get("b_norm"))
    else:
        w1, w2 = kron_factors(p)
        kind, scale, raw = "lokr", lokr_scale(p), (w1, w2.reshape(w2.shape[0], -1))
    parts = tuple(scratch.f64((slot, i), t) for i, t in enumerate(raw))
    if kind == "norm":
        sq = _dot(parts[0], parts[0]) + _dot(parts[1], parts[1])
    else:
        sq = scale ** 2 * _dot(parts[0], parts[0]) * _dot(parts[1], parts[1])
    shapes = tuple(None if t is None else tuple(t.shape) for t in raw)
    return _Rep(kind, scale, parts, shapes, sq, load, str(r.path))


def _dot(x: torch.Tensor | None, y: torch.Tensor | None) -> float:
    if x is None or y is None:
        return 0.0
    return float(torch.dot(x, y))


def _inner(name: str, x: _Rep | None, y: _Rep | None) -> float:
    """<delta_x, delta_y> of one module in two files (0 where a file lacks it)."""
    if x is None or y is None:
        return 0.0
    if x.kind != y.kind:
        raise KxlError(f"module {name!r} is {x.kind} in {x.where} but {y.kind} in {y.where}")
    if x.shapes == y.shapes:
        if x.kind == "norm":
            return _dot(x.parts[0], y.parts[0]) + _dot(x.parts[1], y.parts[1])
        return x.scale * y.scale * _dot(x.parts[0], y.parts[0]) * _dot(x.parts[1], y.parts[1])
    if x.kind == "norm":
        raise KxlError(f"norm {name!r}: shapes {x.shapes} in {x.where} but {y.shapes} in "
                       f"{y.where}; not the same model")
    # another factorisation (other factor shapes): compare the materialised deltas
    dx, dy = lokr_delta(x.load(), None), lokr_delta(y.load(), None)
    if dx.shape != dy.shape:
        raise KxlError(f"module {name!r}: effective delta {tuple(dx.shape)} in {x.where} but "
                       f"{tuple(dy.shape)} in {y.where}; not the same model")
    return _dot(dx.reshape(-1).double(), dy.reshape(-1).double())


def block_label(module: str) -> str:
    component, block = module_block(module)
    return component if component != "unet" else f"unet {block}"


def _order(label: str) -> tuple[int, int]:
    """overall, te1, te2, then the UNet in data-flow order (deepest output level first)."""
    fixed = {OVERALL: 0, "te1": 1, "te2": 2, "unet conv_in": 3, "unet middle": 7,
             "unet embeddings / out": 11}
    if label in fixed:
        return fixed[label], 0
    level = int(label.rsplit(" ", 1)[1])
    return (4, level) if "input" in label else (8, -level)


@dataclass
class Sums:
    """Per block, per step index: squared norms, inner products with the previous step, and
    between the two series."""

    n: int
    modules: int = 0
    sq: dict[str, list[float]] = field(default_factory=dict)
    prev: dict[str, list[float]] = field(default_factory=dict)
    cross: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sq = {s: [0.0] * self.n for s in ("a", "b")}
        self.prev = {s: [0.0] * self.n for s in ("a", "b")}
        self.cross = [0.0] * self.n


def stream_sums(a: Sequence[str | os.PathLike[str]],
                b: Sequence[str | os.PathLike[str]] | None) -> dict[str, Sums]:
    """Block label -> Sums over files a[t] (and b[t]), one module of every file at a time."""
    n = len(a)
    with ExitStack() as stack:
        readers = {s: [stack.enter_context(Reader(p)) for p in files]
                   for s, files in (("a", a), ("b", b)) if files is not None}
        mods = {s: [parse_modules(r.header.entries, str(r.path)) for r in rs]
                for s, rs in readers.items()}
        names = sorted({m for ms in mods.values() for f in ms for m in f})
        sums: dict[str, Sums] = {OVERALL: Sums(n)}
        scratch = _Scratch()
        for name in names:
            reps = {s: [_rep(r, m[name], scratch, (s, t)) if name in m else None
                        for t, (r, m) in enumerate(zip(readers[s], mods[s], strict=True))]
                    for s in readers}
            for blk in (sums[OVERALL], sums.setdefault(block_label(name), Sums(n))):
                _add(blk, name, reps)
    return dict(sorted(sums.items(), key=lambda kv: _order(kv[0])))


def _add(blk: Sums, name: str, reps: dict[str, list[_Rep | None]]) -> None:
    blk.modules += 1
    for s, rs in reps.items():
        for t, x in enumerate(rs):
            blk.sq[s][t] += 0.0 if x is None else x.sq
            if t:
                blk.prev[s][t] += _inner(name, rs[t - 1], x)
    if "b" in reps:
        for t, (x, y) in enumerate(zip(reps["a"], reps["b"], strict=True)):
            blk.cross[t] += _inner(name, x, y)


def _ratio(d2: float, n2: float) -> float:
    """sqrt(d2 / n2): 0 when both are 0, inf when only the reference is."""
    d2 = max(d2, 0.0)  # rounding of the expanded form
    if n2 <= 0:
        return 0.0 if d2 == 0 else math.inf
    return math.sqrt(d2 / n2)


def _cosine(dot: float, na2: float, nb2: float) -> float:
    if na2 <= 0 or nb2 <= 0:
        return 1.0 if na2 == nb2 else 0.0
    return max(-1.0, min(1.0, dot / math.sqrt(na2 * nb2)))


def block_rows(label: str, s: Sums, steps: Sequence[int], two: bool) -> list[dict[str, Any]]:
    rows = []
    for t, step in enumerate(steps):
        row: dict[str, Any] = {"step": step, "block": label, "modules": s.modules}
        for side in ("a", "b"):
            sq, prev = s.sq[side], s.prev[side]
            on = side == "a" or two
            row[f"norm_{side}"] = math.sqrt(sq[t]) if on else None
            row[f"change_{side}"] = (_ratio(sq[t] + sq[t - 1] - 2 * prev[t], sq[t - 1])
                                     if on and t else None)
        row["cosine"] = _cosine(s.cross[t], s.sq["a"][t], s.sq["b"][t]) if two else None
        row["rel_l2"] = (_ratio(s.sq["a"][t] + s.sq["b"][t] - 2 * s.cross[t], s.sq["a"][t])
                         if two else None)
        rows.append(row)
    return rows


def jump_flags(rows: list[dict[str, Any]], side: str, jump: float) -> list[dict[str, Any]]:
    """Steps of one block (rows in step order) whose change is above jump x the median of the
    block's earlier changes (at least 2 earlier ones)."""
    flags, earlier = [], []
    for r in rows:
        c = r[f"change_{side}"]
        if c is None:
            continue
        if len(earlier) >= 2:
            med = statistics.median(earlier)
            if c > jump * med:
                flags.append({"series": side, "block": r["block"], "step": r["step"],
                              "change": c, "median": med,
                              "ratio": math.inf if med == 0 else c / med})
        earlier.append(c)
    return flags


def series_report(name: str, kinds: dict[str, str], files: dict[str, dict[int, str]],
                  paths: dict[str, list[str]], jump: float) -> dict[str, Any]:
    """The series report (docs/formats.md section 12): `kinds` side -> released | rebuilt |
    list, `files` side -> step -> operand as configured, `paths` side -> local files in step
    order."""
    steps = sorted(files["a"])
    two = "b" in files
    sums = stream_sums(paths["a"], paths.get("b"))
    rows, flags = [], []
    for label, s in sums.items():
        brows = block_rows(label, s, steps, two)
        rows += brows
        for side in ("a", "b") if two else ("a",):
            flags += jump_flags(brows, side, jump)
    return {"name": name, "steps": steps, "jump": jump, "modules": sums[OVERALL].modules,
            "kinds": kinds,
            "sides": {side: [{"step": st, "operand": files[side][st], "path": p}
                             for st, p in zip(steps, paths[side], strict=True)]
                      for side in files},
            "blocks": list(sums), "rows": rows,
            "flags": sorted(flags, key=lambda f: (f["step"], f["series"], _order(f["block"])))}
