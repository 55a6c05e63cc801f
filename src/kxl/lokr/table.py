"""The LoKr at a model's real shapes: modules, factors, parameters and file size per block kind.

LyCORIS builds the network over models made on the meta device from a config folder (SDXL's own
configs ship in kxl/model/sdxl_base_1_0), so the numbers are LyCORIS's for the real topology
without allocating the 3.5B weights. `kxl lokr-table` prints the table docs/lokr-real-shapes.md
holds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import polars as pl

from kxl.lokr.blocks import module_block
from kxl.lokr.network import LokrSpec
from kxl.model.sdxl import CONFIGS as SDXL_CONFIGS  # noqa: F401 (re-exported: the default folder)

# The LoKr file's tensors: factors, alpha, and trained norms' weight / bias.
DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}

_KINDS = (  # first match of the kohya module name decides the kind
    ("attention", r"_attn[12]_|_self_attn_"),
    ("feed-forward", r"_ff_net_|_mlp_"),
    ("transformer proj/norm", r"_proj_(in|out)$|_transformer_blocks_\d+_norm\d$|_1_norm$"),
    ("resnet", r"_(in_layers|out_layers|emb_layers)_|_skip_connection$"),
    ("resampler", r"_op$|_conv$"),
)


def meta_network(config_dir: str | Path, spec: LokrSpec) -> tuple[Any, dict[str, str]]:
    """(LyCORIS network on the meta device, LyCORIS name -> kohya name) for `config_dir`."""
    import torch

    from kxl.lokr.keys import lora_name_map
    from kxl.lokr.network import build_network
    from kxl.model.load import _meta_models

    models = _meta_models(Path(config_dir))
    tes = [models["text_encoder"], models["text_encoder_2"]]
    with torch.device("meta"):
        net = build_network(spec, tes, models["unet"])
    return net, lora_name_map(models["unet"], tes)


def _kind(kohya: str, module: Any) -> str:
    if type(module).__name__ == "NormModule":
        return "norm (trained)"
    for kind, pattern in _KINDS:
        if re.search(pattern, kohya):
            return kind
    return "embedding / in / out"


def lokr_table(config_dir: str | Path, spec: LokrSpec) -> pl.DataFrame:
    """One row per (component, block, kind): modules, LoKr factor(s) (w1's shape), parameters."""
    net, names = meta_network(config_dir, spec)
    rows = []
    for mod in [*net.text_encoder_loras, *net.unet_loras]:
        kohya = names.get(mod.lora_name, mod.lora_name)
        component, block = module_block(kohya)
        w1 = getattr(mod, "lokr_w1", None)
        params = sum(p.numel() for p in mod.parameters()) + (1 if hasattr(mod, "alpha") else 0)
        rows.append({
            "component": component, "block": block, "kind": _kind(kohya, mod),
            "factor": int(w1.shape[0]) if w1 is not None else None,
            "module": kohya, "params": params,
        })
    df = pl.DataFrame(rows)
    return (df.group_by("component", "block", "kind", maintain_order=True)
            .agg(pl.len().alias("modules"),
                 pl.col("factor").drop_nulls().unique().sort().alias("factors"),
                 pl.col("params").sum())
            .sort("component", "block", "kind"))


def file_bytes(params: int, dtype: str) -> int:
    """Tensor bytes of a LoKr file of `params` values saved in `dtype` (header not counted)."""
    return params * DTYPE_BYTES[dtype]


def markdown(table: pl.DataFrame) -> str:
    """The table as Markdown, with a total row and the file size at fp16 and fp32."""
    lines = ["| component | block | kind | modules | LoKr factor(s) | parameters |",
             "|---|---|---|---:|---|---:|"]
    for r in table.iter_rows(named=True):
        factors = ", ".join(str(f) for f in r["factors"]) or "-"
        lines.append(f"| {r['component']} | {r['block']} | {r['kind']} | {r['modules']} "
                     f"| {factors} | {r['params']:,} |")
    total, modules = int(table["params"].sum()), int(table["modules"].sum())
    lines.append(f"| **total** | | | **{modules}** | | **{total:,}** |")
    lines.append("")
    lines.append(f"File size: {file_bytes(total, 'fp16') / 1e6:,.0f} MB at fp16 "
                 f"(`train.save_precision: fp16`), {file_bytes(total, 'fp32') / 1e6:,.0f} MB "
                 "at fp32, plus a header of ~0.5 MB.")
    return "\n".join(lines)
