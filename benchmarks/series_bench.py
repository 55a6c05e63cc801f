"""Stage 12 series audit at SDXL's real LoKr shapes: `kxl series` over 11 checkpoint files.

Inputs (made once per run in a temp dir, random weights, not timed): LoKr files in kohya keys
with the module shapes LyCORIS gives the Kohaku preset on SDXL base 1.0 (kxl.lokr.table
.meta_network on the shipped configs: factor 4 attention, 2 feed-forward, 8 the rest, full
matrices, trained norms), in fp16 as train.save_precision writes them (~0.77 GB each). The
files are a random walk (each = the previous + 5% noise), and the UNet middle block gets a
shift from the 8th file on (a planted jump, as at 13600 -> 15300). `quick`: 3 files.
Rows: one series (a), and the same files as a and b side by side (what audit.series.epsilon
does with 11 released + 11 rebuilt files). Each runs in a fresh process (peak RSS its own).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from benchmarks.util import run_measured

ROOT = Path(__file__).resolve().parents[1]
STEP = 1700  # the released files' spacing
_MAKE = r"""
import sys, json
sys.path.insert(0, {root!r})
from benchmarks.series_bench import make_files
print(json.dumps(make_files({out!r}, {n!r})))
"""
_SERIES = r"""
import json
from kxl.cli import main
assert main(["series", "--name", "s", "--config-json", {cfg!r}, "--json", {out!r}]) == 0
"""


def lokr_layout() -> dict[str, tuple[int, ...]]:
    """kohya key -> shape of the Kohaku-preset LoKr at SDXL's real shapes (meta device)."""
    import contextlib
    import sys

    from kxl.lokr.network import LokrSpec
    from kxl.lokr.table import SDXL_CONFIGS, meta_network

    spec = LokrSpec(preset=str(ROOT / "config/lycoris/kohaku_xl.toml"), factor=8)
    with contextlib.redirect_stdout(sys.stderr):  # LyCORIS logs to stdout
        net, names = meta_network(SDXL_CONFIGS, spec)
    out = {}
    for mod in [*net.text_encoder_loras, *net.unet_loras]:
        kohya = names.get(mod.lora_name, mod.lora_name)
        for k, v in mod.state_dict().items():  # LoKr: its custom_state_dict; norms: w/b_norm
            out[f"{kohya}.{k}"] = tuple(v.shape)
    return out


def make_files(root: str, n: int) -> dict[str, object]:
    """n fp16 LoKr files step-{k}.safetensors, written tensor by tensor (all n at once)."""
    import contextlib

    import torch

    from kxl.merge.stfile import Slot, StreamWriter

    layout = lokr_layout()
    slots = {k: Slot("F16", s) for k, s in layout.items()}
    g = torch.Generator().manual_seed(0)
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(StreamWriter(f"{root}/step-{k}.safetensors", slots))
                   for k in range(n)]
        for key in writers[0].order:
            shape = slots[key].shape
            if key.endswith(".alpha"):
                for w in writers:
                    w.write(key, torch.tensor(10000.0, dtype=torch.float16))
                continue
            cur = torch.randn(shape, generator=g) * 0.02
            jump = torch.randn(shape, generator=g) * 0.02
            for k, w in enumerate(writers):
                cur += 0.05 * 0.02 * torch.randn(shape, generator=g)
                planted = jump if (k >= 8 and "_middle_block_" in key) else 0.0
                w.write(key, (cur + planted).to(torch.float16))
    params = sum(int(torch.Size(s).numel()) for s in layout.values())
    modules = len({k.split(".")[0] for k in layout})
    return {"params": params, "modules": modules,
            "bytes": Path(f"{root}/step-0.safetensors").stat().st_size}


def run(quick: bool) -> list[dict]:
    n = 3 if quick else 11
    env = {"OMP_NUM_THREADS": "2"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        made = run_measured(_MAKE.format(root=str(ROOT), out=tmp, n=n), env)
        files = [{"step": STEP * (k + 1), "file": f"{tmp}/step-{k}.safetensors"}
                 for k in range(n)]
        note = (f"{n} fp16 files x {made['bytes'] / 1e9:.2f} GB, {made['modules']} modules, "
                f"{made['params'] / 1e6:.0f}M params each (Kohaku preset, SDXL real shapes); "
                f"writing them took {made['seconds']:.0f} s")
        for label, series in (("one series", {"a": files}),
                              ("two series side by side (b = a's files)",
                               {"a": files, "b": files})):
            cfg = json.dumps({"series": {"s": series}})
            res = run_measured(_SERIES.format(cfg=cfg, out=f"{tmp}/s.json"), env)
            rep = json.loads(Path(f"{tmp}/s.json").read_text())
            flags = sorted({(f["block"], f["step"]) for f in rep["flags"]})
            rows.append({"name": f"kxl series, {label}", "seconds": res["seconds"],
                         "peak_rss_mb": res["peak_rss_mb"],
                         "note": f"{note}; flags {flags}"})
    return rows
