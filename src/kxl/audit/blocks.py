"""Which model block a tensor or adapter module belongs to (for per-block summaries)."""

from __future__ import annotations

import re

BLOCKS = ("unet_in", "unet_mid", "unet_out", "unet_other", "te1", "te2", "vae", "other")
_RULES = (
    (re.compile(r"^(?:model\.diffusion_model\.|lora_unet_)input_blocks[._](\d+)"), "unet_in"),
    (re.compile(r"^(?:model\.diffusion_model\.|lora_unet_)middle_block[._](\d+)"), "unet_mid"),
    (re.compile(r"^(?:model\.diffusion_model\.|lora_unet_)output_blocks[._](\d+)"), "unet_out"),
    (re.compile(r"^(?:model\.diffusion_model\.|lora_unet_)"), "unet_other"),
    (re.compile(r"^(?:conditioner\.embedders\.0\.|lora_te1_).*?layers[._](\d+)"), "te1"),
    (re.compile(r"^(?:conditioner\.embedders\.0\.|lora_te1_)"), "te1"),
    (re.compile(r"^(?:conditioner\.embedders\.1\.|lora_te2_).*?(?:resblocks|layers)[._](\d+)"),
     "te2"),
    (re.compile(r"^(?:conditioner\.embedders\.1\.|lora_te2_)"), "te2"),
    (re.compile(r"^first_stage_model\."), "vae"),
)


def block_of(key: str) -> tuple[str, int | None]:
    """(block, index within it) e.g. ('unet_in', 4) for input_blocks.4.*; index None if none."""
    for rx, block in _RULES:
        m = rx.match(key)
        if m:
            return block, int(m.group(1)) if m.groups() else None
    return "other", None
