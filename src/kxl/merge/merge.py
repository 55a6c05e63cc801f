"""Merge a kohya-keyed LoKr into an SGM single file, streaming one tensor at a time.

Peak memory is one base tensor (plus its float32 working copy and the deltas that land on it),
not a model: untouched tensors are copied byte for byte, touched ones are read, updated in
float32 and cast back to the base tensor's own dtype, then written and dropped. The output has
the base's keys, shapes and dtypes in sorted order, so the same inputs give the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kxl.errors import KxlError
from kxl.merge.lokr import Module, module_deltas, parse_modules
from kxl.merge.stfile import Reader, Slot, StreamWriter
from kxl.merge.targets import UNET, Target, module_targets, target_shape


@dataclass(frozen=True)
class Contribution:
    module: Module
    param: str  # 'weight' | 'bias' of the module's delta dict
    target: Target


@dataclass
class MergeReport:
    modules: dict[str, int] = field(default_factory=dict)  # per component
    tensors_changed: int = 0
    tensors_copied: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"modules": dict(sorted(self.modules.items())),
                "tensors_changed": self.tensors_changed, "tensors_copied": self.tensors_copied}


def plan_merge(base: Reader, lokr: Reader) -> dict[str, list[Contribution]]:
    """base key -> the module parameters that add to it; unknown modules are an error."""
    shapes = {k: e.shape for k, e in base.header.entries.items()}
    if not any(k.startswith(UNET) for k in shapes):
        raise KxlError(f"{base.path}: no {UNET}* tensors; the base must be an SDXL single file "
                       "in the SGM layout (results/base/base.safetensors)")
    targets = module_targets(shapes)
    modules = parse_modules(lokr.header.entries, str(lokr.path))
    plan: dict[str, list[Contribution]] = {}
    for name, mod in modules.items():
        slots = targets.get(name)
        if slots is None or "weight" not in slots:
            raise KxlError(f"{lokr.path}: LoKr module {name!r} matches no tensor of {base.path}; "
                           "the LoKr was trained on another architecture or key naming")
        params = ["weight", "bias"] if mod.kind == "norm" and "b_norm" in mod.params else ["weight"]
        for param in params:
            if param not in slots:
                raise KxlError(f"{lokr.path}: norm module {name!r} has b_norm but {base.path} "
                               "has no bias for it")
            plan.setdefault(slots[param].key, []).append(Contribution(mod, param, slots[param]))
    return plan


def merged_tensor(base: Reader, lokr: Reader, key: str, contribs: list[Contribution],
                  multiplier: float) -> torch.Tensor:
    """base[key] + multiplier * sum of its deltas, computed in float32, in the base dtype."""
    orig = base.tensor(key)
    if not orig.is_floating_point():
        raise KxlError(f"{base.path}: tensor {key!r} is {orig.dtype}; LoKr targets must be float")
    acc = orig.float() if orig.dtype != torch.float32 else orig
    for c in contribs:
        want = target_shape(c.target, tuple(orig.shape))
        shape = want if c.module.kind == "lokr" else None
        delta = module_deltas(c.module, lokr.tensor, shape)[c.param]
        if tuple(delta.shape) != want:
            raise KxlError(f"{lokr.path}: module {c.module.name!r} gives a {c.param} delta of "
                           f"shape {list(delta.shape)}, base tensor {key!r} needs {list(want)}; "
                           "the LoKr was trained on another architecture")
        if c.target.transpose:
            delta = delta.T
        view = acc if c.target.rows is None else acc[c.target.rows[0]:c.target.rows[1]]
        view.add_(delta, alpha=multiplier)
    return acc.to(orig.dtype)


def merged_stream(base: Reader, lokr: Reader, plan: dict[str, list[Contribution]],
                  multiplier: float) -> Iterator[tuple[str, torch.Tensor | None]]:
    """(key, merged tensor) for changed keys, (key, None) for keys copied as bytes, in order.

    A generator, so only the tensor being written is alive (tests check this).
    """
    for key in base.sorted_keys():
        contribs = plan.get(key)
        if not contribs:
            yield key, None
            continue
        ordered = sorted(contribs, key=lambda c: (c.module.name, c.param))
        yield key, merged_tensor(base, lokr, key, ordered, multiplier)


def merge_files(base_path: str | os.PathLike[str], lokr_path: str | os.PathLike[str],
                out_path: str | os.PathLike[str], metadata: dict[str, str],
                multiplier: float = 1.0) -> MergeReport:
    """Write `out_path` = base + multiplier * LoKr delta (see module docstring)."""
    report = MergeReport()
    with Reader(base_path) as base, Reader(lokr_path) as lokr:
        plan = plan_merge(base, lokr)
        names = {c.module.name for cs in plan.values() for c in cs}
        for comp, prefix in (("unet", "lora_unet_"), ("te1", "lora_te1_"), ("te2", "lora_te2_")):
            report.modules[comp] = sum(1 for n in names if n.startswith(prefix))
        layout = {k: Slot(e.dtype, e.shape) for k, e in base.header.entries.items()}
        meta = {k: v for k, v in base.header.metadata.items() if not k.startswith("kxl.")}
        meta.update(metadata)
        with StreamWriter(Path(out_path), layout, meta) as writer:
            for key, tensor in merged_stream(base, lokr, plan, multiplier):
                if tensor is None:
                    writer.copy_from(key, base)
                    report.tensors_copied += 1
                else:
                    writer.write(key, tensor)
                    report.tensors_changed += 1
                del tensor
    return report
