"""Which part of SDXL a kohya-named LoKr module adapts: (component, block), e.g.
('unet', 'input level 1'). One mapping for the LoKr table (`kxl lokr-table`) and the audit's
series (per-block norms and changes over checkpoints).

SGM's UNet numbers its blocks flat: input_blocks 0 is conv_in, then 3 per level (levels 0-2,
the last without a downsampler: 1-3, 4-6, 7-8); output_blocks 0-2 are the deepest level (2),
3-5 level 1, 6-8 level 0; anything else (time/label embeddings, the out conv) is one block.
"""

from __future__ import annotations

import re

_SIDE = re.compile(r"lora_unet_(input|output)_blocks_(\d+)_")


def module_block(kohya: str) -> tuple[str, str]:
    """(component, block) of a kohya module name: ('te1' | 'te2', 'encoder layers') or
    ('unet', 'conv_in' | 'input level k' | 'middle' | 'output level k' | 'embeddings / out')."""
    if kohya.startswith("lora_te"):
        return kohya[5:8], "encoder layers"
    m = _SIDE.match(kohya)
    if m:
        side, i = m.group(1), int(m.group(2))
        if side == "input":
            return "unet", "conv_in" if i == 0 else f"input level {(i - 1) // 3}"
        return "unet", f"output level {2 - i // 3}"
    if kohya.startswith("lora_unet_middle_block"):
        return "unet", "middle"
    return "unet", "embeddings / out"
