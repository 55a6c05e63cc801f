"""Stage 10 merge at SDXL shapes: kxl's streaming merge vs `lycoris.utils.merge`, same inputs.

Inputs (made once per run in a temp dir, random weights): an fp16 SGM single file with the real
SDXL UNet / CLIP-L / OpenCLIP-bigG shapes (tests/fixtures_train.py's "sdxl" configs, built on
the meta device), and a full-matrix LoKr in kohya keys laid out as the Kohaku preset does (factor 4
attention, 2 feed-forward, 8 everything else; every conv/linear of the UNet and every CLIP
attention/MLP projection; trained norms). `quick` uses text encoder 1 + the UNet middle block.
Baseline: what a LyCORIS user does - load the whole file, build modules on it, merge in place
with lycoris.utils.merge, save_file. At scale 1 (full matrix) both must give the same weights,
which the benchmark checks on the first changed tensor. Each side runs in a fresh process
(benchmarks.util.run_measured) so peak RSS is its own.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from benchmarks.util import run_measured

_MAKE = r"""
import sys, json
sys.path.insert(0, {root!r})
from benchmarks.merge_bench import make_inputs
print(json.dumps(make_inputs({out!r}, {quick!r})))
"""
_KXL = r"""
from kxl.merge.merge import merge_files
merge_files({base!r}, {lokr!r}, {out!r}, {{"kxl.stage": "merge"}})
"""
_LYCORIS = r"""
import sys
sys.path.insert(0, {root!r})
from benchmarks.merge_bench import lycoris_merge
lycoris_merge({base!r}, {lokr!r}, {out!r})
"""


def sdxl_sgm_shapes(quick: bool) -> dict[str, tuple[int, ...]]:
    """SGM key -> shape of real SDXL (no weights allocated)."""
    import torch
    from fixtures_train import build_models

    from kxl.model import sgm

    with torch.device("meta"):
        m = build_models("sdxl")
    shapes = {k: tuple(v.shape) for k, v in sgm.diffusers_to_sgm_state_dict(m).items()}
    if quick:
        keep = (sgm.TE1_PREFIX, sgm.UNET_PREFIX + "middle_block.")
        shapes = {k: v for k, v in shapes.items() if k.startswith(keep)}
    return shapes


def _factor(name: str) -> int:
    if "_attn1_" in name or "_attn2_" in name:
        return 4
    return 2 if "_ff_net_" in name else 8


def lokr_layout(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """kohya key -> shape of a full-matrix Kohaku-preset LoKr over `shapes`."""
    from lycoris.functional import factorization

    from kxl.merge.targets import module_targets, target_shape

    out: dict[str, tuple[int, ...]] = {}
    for name, slots in module_targets(shapes).items():
        w = slots.get("weight")
        if w is None or "embedding" in name or "text_projection" in name:
            continue
        if name.startswith("lora_te") and not ("_self_attn_" in name or "_mlp_fc" in name):
            continue
        shape = target_shape(w, shapes[w.key])
        if len(shape) == 1 and "bias" in slots:  # a norm: trained like train_norm=True
            out[f"{name}.w_norm"] = shape
            out[f"{name}.b_norm"] = shape
        elif len(shape) in (2, 4):
            f = _factor(name)
            a, b = factorization(shape[0], f)[0], factorization(shape[1], f)[0]
            out[f"{name}.lokr_w1"] = (a, b)
            out[f"{name}.lokr_w2"] = (shape[0] // a, shape[1] // b, *shape[2:])
            out[f"{name}.alpha"] = ()
    return out


def make_inputs(root: str, quick: bool) -> dict[str, object]:
    """Write base.safetensors (fp16) and lokr.safetensors (fp32) streamed, one tensor at a time."""
    import torch

    from kxl.merge.stfile import Slot, StreamWriter

    shapes = sdxl_sgm_shapes(quick)
    lokr = lokr_layout(shapes)
    g = torch.Generator().manual_seed(0)
    for path, layout, dtype in ((f"{root}/base.safetensors", shapes, "F16"),
                                (f"{root}/lokr.safetensors", lokr, "F32")):
        slots = {k: Slot(dtype, s) for k, s in layout.items()}
        with StreamWriter(path, slots) as w:
            for k in w.order:
                if k.endswith(".alpha"):
                    t = torch.tensor(10000.0)
                else:
                    t = torch.randn(slots[k].shape, generator=g) * (0.02 if dtype == "F32" else 1)
                w.write(k, t.to(torch.float16 if dtype == "F16" else torch.float32))
    params = sum(int(torch.Size(s).numel()) for s in shapes.values())
    return {"tensors": len(shapes), "params": params,
            "lokr_modules": sum(1 for k in lokr if k.endswith((".alpha", ".w_norm")))}


def _tree(named: dict[str, object]) -> object:
    """A flat module whose children are named by the kohya name minus its prefix."""
    import torch

    root = torch.nn.Module()
    for name, mod in named.items():
        root.add_module(name, mod)
    return root


def _module(weight, bias) -> object:
    import torch

    if weight.dim() == 4:
        m = torch.nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2:], device="meta")
    elif weight.dim() == 2:
        m = torch.nn.Linear(weight.shape[1], weight.shape[0], device="meta")
    else:
        m = torch.nn.GroupNorm(1, weight.shape[0], device="meta")
    m.weight = torch.nn.Parameter(weight, requires_grad=False)
    m.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)
    return m


def lycoris_merge(base: str, lokr: str, out: str) -> None:
    """The LyCORIS way: whole file in memory, modules on it, lycoris.utils.merge, save_file."""
    import torch
    from lycoris.utils import merge
    from safetensors.torch import load_file, save_file

    from kxl.merge.targets import module_targets

    sd = load_file(base)
    lyco = load_file(lokr)
    targets = module_targets({k: tuple(v.shape) for k, v in sd.items()})
    wanted = {k.split(".")[0] for k in lyco}
    trees: dict[str, dict[str, object]] = {"lora_unet": {}, "lora_te1": {}, "lora_te2": {}}
    fused: list[tuple[str, str, int, int, object]] = []
    for name in sorted(wanted):
        slots = targets[name]
        w, b = slots["weight"], slots.get("bias")
        wt = sd[w.key] if w.rows is None else sd[w.key][w.rows[0]:w.rows[1]].clone()
        bt = None if b is None else (sd[b.key] if b.rows is None else
                                     sd[b.key][b.rows[0]:b.rows[1]].clone())
        mod = _module(wt, bt)
        if w.rows is not None:  # bigG's fused q/k/v: write the rows back after merging
            fused.append((w.key, name, *w.rows, mod))
        prefix = next(p for p in trees if name.startswith(p + "_"))
        # lycoris.utils.merge names modules prefix + "_" + path: a flat tree gives the same
        trees[prefix][name[len(prefix) + 1:]] = mod
    roots = {p: _tree(t) for p, t in trees.items()}
    with torch.no_grad():
        merge([roots["lora_te1"], roots["lora_te2"]], roots["lora_unet"], lyco, 1.0, "cpu")
        for key, _, r0, r1, mod in fused:
            sd[key][r0:r1] = mod.weight
    save_file(sd, out)


def _same_first_changed(a: str, b: str, lokr: str) -> float:
    """max |kxl - lycoris| over every LoKr-touched tensor (both fp16)."""
    from kxl.merge.stfile import Reader

    with Reader(a) as ra, Reader(b) as rb:
        return max(float((ra.tensor(k).float() - rb.tensor(k).float()).abs().max())
                   for k in ra.sorted_keys())


def run(quick: bool) -> list[dict]:
    root = str(Path(__file__).resolve().parents[1])
    env = {"OMP_NUM_THREADS": "2"}
    with tempfile.TemporaryDirectory() as tmp:
        made = run_measured(_MAKE.format(root=root, out=tmp, quick=quick), env)
        base, lokr = f"{tmp}/base.safetensors", f"{tmp}/lokr.safetensors"
        size = Path(base).stat().st_size / 2**20
        kxl = run_measured(_KXL.format(base=base, lokr=lokr, out=f"{tmp}/kxl.safetensors"), env)
        lyc = run_measured(_LYCORIS.format(root=root, base=base, lokr=lokr,
                                           out=f"{tmp}/lyc.safetensors"), env)
        err = _same_first_changed(f"{tmp}/kxl.safetensors", f"{tmp}/lyc.safetensors", lokr)
    what = "TE1 + UNet middle block" if quick else "full SDXL UNet + TE1 + TE2"
    note = (f"{what}: {made['tensors']} tensors, {made['params'] / 1e6:.0f}M params, "
            f"fp16 base {size:.0f} MiB, {made['lokr_modules']} LoKr/norm modules (full matrix)")
    return [
        {"name": "merge lycoris.utils.merge (load all, merge, save_file)",
         "seconds": lyc["seconds"], "peak_rss_mb": lyc["peak_rss_mb"], "ratio_vs_baseline": 1.0,
         "note": note},
        {"name": "merge kxl (streaming, tensor by tensor)", "seconds": kxl["seconds"],
         "peak_rss_mb": kxl["peak_rss_mb"], "ratio_vs_baseline": kxl["seconds"] / lyc["seconds"],
         "note": f"max |kxl - lycoris| = {err:.3g} (fp16; scale 1, so LyCORIS's squared scale "
                 "is harmless here)"},
    ]


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
