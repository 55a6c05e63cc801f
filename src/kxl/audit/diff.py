"""`kxl diff`: compare two checkpoints tensor by tensor, lazily (one pair in memory at a time).

Modes, picked from the files' keys:
- merged vs merged: every tensor of the two single files.
- LoKr vs LoKr: each module's EFFECTIVE delta (scale * kron(W1, W2), norms' w/b), since a
  Kronecker factorisation is only unique up to scale: (w1*c, w2/c) is the same adapter.
  Deltas are compared as (out, -1) matrices, so a conv stored with or without kernel axes agrees.
- LoKr vs merged (needs the base): the LoKr side is materialised as kxl merge would write it
  (base + delta in float32, cast to the base dtype), then compared with the merged file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch

from kxl.audit.blocks import BLOCKS, block_of
from kxl.audit.config import Tolerance
from kxl.audit.stats import PairStats, pair_stats
from kxl.errors import KxlError
from kxl.merge.lokr import PREFIXES, module_deltas, parse_modules
from kxl.merge.merge import merged_tensor, plan_merge
from kxl.merge.stfile import Reader
from kxl.merge.targets import UNET
from kxl.safetensors_header import Header

STATUSES = ("equal", "differs", "dtype", "shape", "only_a", "only_b")


def kind_of(header: Header) -> str:
    """'lokr' (kohya LyCORIS keys) or 'merged' (SGM single file); anything else is an error."""
    keys = list(header.entries)
    if keys and all(k.startswith(PREFIXES) for k in keys):
        return "lokr"
    if any(k.startswith(UNET) for k in keys):
        return "merged"
    raise KxlError(f"{header.path}: neither an SDXL single file ({UNET}*) nor a kohya LoKr "
                   "(lora_unet_*/lora_te1_*/lora_te2_*); cannot compare it")


def _row(key: str, ta: Any, tb: Any, tol: Tolerance) -> dict[str, Any]:
    """One result row; ta/tb are (dtype, shape, tensor-or-None) or None when absent."""
    block, index = block_of(key)
    row: dict[str, Any] = {"key": key, "block": block, "index": index}
    if ta is None or tb is None:
        row["status"] = "only_b" if ta is None else "only_a"
        return row
    row |= {"dtype_a": ta[0], "dtype_b": tb[0], "shape_a": list(ta[1]), "shape_b": list(tb[1])}
    if tuple(ta[1]) != tuple(tb[1]):
        row["status"] = "shape"
        return row
    s = pair_stats(ta[2], tb[2])
    row |= _numbers(s)
    differs = s.max_abs > tol.atol and s.rel_l2 > tol.rtol
    dtype_bad = tol.check_dtype and ta[0] != tb[0]
    row["status"] = "differs" if differs else ("dtype" if dtype_bad else "equal")
    return row


def _numbers(s: PairStats) -> dict[str, float]:
    return {"max_abs": s.max_abs, "rel_l2": s.rel_l2, "cosine": s.cosine, "diff_l2": s.diff_l2,
            "norm_a": s.norm_a, "norm_b": s.norm_b}


def _side(r: Reader, key: str, tensor: bool) -> tuple[str, tuple[int, ...], Any]:
    e = r.entry(key)
    return e.dtype, e.shape, r.tensor(key) if tensor else None


def merged_rows(ra: Reader, rb: Reader, tol: Tolerance) -> Iterator[dict[str, Any]]:
    for key in sorted(set(ra.header.entries) | set(rb.header.entries)):
        ina, inb = key in ra.header.entries, key in rb.header.entries
        same = ina and inb and ra.entry(key).shape == rb.entry(key).shape
        yield _row(key, _side(ra, key, same) if ina else None,
                   _side(rb, key, same) if inb else None, tol)


def _deltas(r: Reader, mod: Any) -> dict[str, tuple[str, tuple[int, ...], torch.Tensor]]:
    d = module_deltas(mod, r.tensor, None)
    return {f"{mod.name}.{p}": ("F32", tuple(t.shape), t) for p, t in d.items()}


def lokr_rows(ra: Reader, rb: Reader, tol: Tolerance) -> Iterator[dict[str, Any]]:
    ma = parse_modules(ra.header.entries, str(ra.path))
    mb = parse_modules(rb.header.entries, str(rb.path))
    for name in sorted(set(ma) | set(mb)):
        da = _deltas(ra, ma[name]) if name in ma else {}
        db = _deltas(rb, mb[name]) if name in mb else {}
        for key in sorted(set(da) | set(db)):
            yield _row(key, da.get(key), db.get(key), tol)


def lokr_merged_rows(rl: Reader, rm: Reader, base: Reader, lokr_is_a: bool,
                     tol: Tolerance) -> Iterator[dict[str, Any]]:
    plan = plan_merge(base, rl)
    for key in sorted(set(base.header.entries) | set(rm.header.entries)):
        inl, inm = key in base.header.entries, key in rm.header.entries
        side_l = side_m = None
        if inm:
            side_m = _side(rm, key, inl and rm.entry(key).shape == base.entry(key).shape)
        if inl:
            e = base.entry(key)
            t = None
            if side_m is not None and side_m[2] is not None:
                t = (merged_tensor(base, rl, key, plan[key], 1.0) if key in plan
                     else base.tensor(key))
            side_l = (e.dtype, e.shape, t)
        yield _row(key, side_l, side_m, tol) if lokr_is_a else _row(key, side_m, side_l, tol)


def summarise(rows: list[dict[str, Any]], tol: Tolerance) -> dict[str, Any]:
    """Counts per status, per-block and per-(block, index) aggregates, pass/fail."""
    counts = {s: 0 for s in STATUSES}
    blocks: dict[str, dict[str, Any]] = {}
    cells: dict[tuple[str, int | None], dict[str, float]] = {}
    for r in rows:
        counts[r["status"]] += 1
        for agg in (blocks.setdefault(r["block"], {}),
                    cells.setdefault((r["block"], r["index"]), {})):
            _accumulate(agg, r)
    failing = sum(counts[s] for s in ("differs", "shape", "only_a", "only_b"))
    failing += counts["dtype"] if tol.check_dtype else 0
    order = {b: i for i, b in enumerate(BLOCKS)}
    return {
        "counts": counts, "passed": failing == 0, "failing": failing,
        "blocks": [{"block": b, **_finish(a)} for b, a in sorted(blocks.items(),
                                                                 key=lambda kv: order[kv[0]])],
        "cells": [{"block": b, "index": i, **_finish(a)} for (b, i), a in sorted(
            cells.items(), key=lambda kv: (order[kv[0][0]], -1 if kv[0][1] is None else kv[0][1]))],
    }


def _accumulate(agg: dict[str, Any], r: dict[str, Any]) -> None:
    agg["tensors"] = agg.get("tensors", 0) + 1
    agg["failing"] = agg.get("failing", 0) + (r["status"] not in ("equal",))
    if "diff_l2" in r:
        agg["d2"] = agg.get("d2", 0.0) + r["diff_l2"] ** 2
        agg["na2"] = agg.get("na2", 0.0) + r["norm_a"] ** 2
        agg["nb2"] = agg.get("nb2", 0.0) + r["norm_b"] ** 2
        agg["max_abs"] = max(agg.get("max_abs", 0.0), r["max_abs"])
        agg["min_cosine"] = min(agg.get("min_cosine", 1.0), r["cosine"])


def _finish(agg: dict[str, Any]) -> dict[str, Any]:
    d2, n2 = agg.pop("d2", 0.0), max(agg.pop("na2", 0.0), agg.pop("nb2", 0.0))
    agg["rel_l2"] = 0.0 if d2 == 0 else (float("inf") if n2 == 0 else (d2 / n2) ** 0.5)
    return agg


def diff_files(a: str | os.PathLike[str], b: str | os.PathLike[str],
               base: str | os.PathLike[str] | None, tol: Tolerance) -> dict[str, Any]:
    """The full diff report of two safetensors files (see module docstring)."""
    with Reader(a) as ra, Reader(b) as rb:
        ka, kb = kind_of(ra.header), kind_of(rb.header)
        if ka == kb == "merged":
            mode, rows = "merged-vs-merged", list(merged_rows(ra, rb, tol))
        elif ka == kb == "lokr":
            mode, rows = "lokr-vs-lokr", list(lokr_rows(ra, rb, tol))
        else:
            if base is None:
                raise KxlError(f"comparing a LoKr ({a if ka == 'lokr' else b}) with a merged file "
                               "needs the base it was merged into: pass --base BASE")
            with Reader(base) as rbase:
                rl, rm = (ra, rb) if ka == "lokr" else (rb, ra)
                mode = "lokr-vs-merged" if ka == "lokr" else "merged-vs-lokr"
                rows = list(lokr_merged_rows(rl, rm, rbase, ka == "lokr", tol))
    if rows and all(r["status"] in ("only_a", "only_b") for r in rows):
        raise KxlError(f"{a} and {b} have no tensor in common: different architectures or key "
                       "layouts; compare checkpoints of the same model")
    report = {"mode": mode, "a": str(a), "b": str(b), "base": None if base is None else str(base),
              "tolerance": {"rtol": tol.rtol, "atol": tol.atol, "check_dtype": tol.check_dtype}}
    return report | summarise(rows, tol) | {"tensors": rows}
