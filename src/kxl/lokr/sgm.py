"""Diffusers UNet module names -> SGM (original SDXL) names, as sd-scripts' SDXL UNet uses.

Used for kohya keys (`lora_unet_<sgm name with _>`). kxl.model.sgm owns the full weight-key
conversion; this is the module-name part the adapter needs, for the SDXL topology (3 levels,
`layers` resnets per down level, `layers + 1` per up level).
"""

from __future__ import annotations

import re

from kxl.errors import KxlError

_FIXED = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_BLOCK = re.compile(
    r"^(down_blocks|up_blocks)\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)(?:\.(.*))?$"
)
_MID = re.compile(r"^mid_block\.(resnets|attentions)\.(\d+)(?:\.(.*))?$")


def _inner(kind: str, rest: str | None) -> str:
    if rest is None:
        return ""
    if kind == "resnets":
        head, _, tail = rest.partition(".")
        return "." + _RESNET.get(head, head) + (f".{tail}" if tail else "")
    if kind == "downsamplers" and rest.startswith("conv"):
        return ".op" + rest[len("conv") :]
    return "." + rest


def unet_module_to_sgm(name: str, up_attention_levels: frozenset[int], layers: int = 2) -> str:
    """SGM name of a diffusers UNet module (`up_attention_levels`: up blocks with attention)."""
    if name in _FIXED:
        return _FIXED[name]
    if m := _MID.match(name):
        kind, j, rest = m.group(1), int(m.group(2)), m.group(3)
        return f"middle_block.{2 * j if kind == 'resnets' else 1}" + _inner(kind, rest)
    m = _BLOCK.match(name)
    if m is None:
        raise KxlError(f"UNet module {name!r} has no SGM name; extend kxl.lokr.sgm")
    side, i, kind, j, rest = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
    if side == "down_blocks":
        idx = 1 + i * (layers + 1) + (layers if kind == "downsamplers" else j)
        sub = 1 if kind == "attentions" else 0
    else:
        idx = i * (layers + 1) + (layers if kind == "upsamplers" else j)
        sub = {"resnets": 0, "attentions": 1}.get(kind, 2 if i in up_attention_levels else 1)
    return f"{'input' if side == 'down_blocks' else 'output'}_blocks.{idx}.{sub}" + _inner(
        kind, rest
    )
