"""Where each kohya-named adapter module lands in an SGM single file.

The lookup is built from the base file's own keys (module path with '.' -> '_'), never by
splitting a kohya name at underscores, so names like `transformer_blocks` or `to_out_0` are
never ambiguous. Text encoder 2 is stored with OpenCLIP names: its transformers modules map
onto OpenCLIP parameters, q/k/v onto row blocks of the fused `attn.in_proj_weight`, and
`text_projection` onto the transposed matrix OpenCLIP stores.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from kxl.errors import KxlError

UNET = "model.diffusion_model."
TE1 = "conditioner.embedders.0.transformer."
TE2 = "conditioner.embedders.1.model."


@dataclass(frozen=True)
class Target:
    """One base tensor (or a row block of it) that a module parameter adds to."""

    key: str
    rows: tuple[int, int] | None = None
    transpose: bool = False


_TE2_LAYER = {
    "attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
    "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
}
_TE2_TOP = {
    "ln_final": "text_model.final_layer_norm",
    "token_embedding": "text_model.embeddings.token_embedding",
}
_BLOCK = re.compile(r"transformer\.resblocks\.(\d+)\.(.+)")


def _te2_targets(path: str, shape: tuple[int, ...]) -> list[tuple[str, str, Target]]:
    """(transformers module, param, target) for one OpenCLIP parameter path."""
    key = TE2 + path
    if path == "text_projection":
        return [("text_projection", "weight", Target(key, transpose=True))]
    if path == "positional_embedding":
        return [("text_model.embeddings.position_embedding", "weight", Target(key))]
    module, _, param = path.rpartition(".")
    if module in _TE2_TOP:
        return [(_TE2_TOP[module], param, Target(key))]
    m = _BLOCK.fullmatch(path)
    if m is None:
        return []
    layer, rest = f"text_model.encoder.layers.{m.group(1)}", m.group(2)
    if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
        n = shape[0] // 3
        param = rest.removeprefix("attn.in_proj_")
        return [(f"{layer}.self_attn.{p}_proj", param, Target(key, (i * n, (i + 1) * n)))
                for i, p in enumerate("qkv")]
    module, _, param = rest.rpartition(".")
    if module in _TE2_LAYER:
        return [(f"{layer}.{_TE2_LAYER[module]}", param, Target(key))]
    return []


def module_targets(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, dict[str, Target]]:
    """kohya module name -> {param ('weight' | 'bias') -> Target} for an SGM single file."""
    found: list[tuple[str, str, Target]] = []
    for key, shape in shapes.items():
        if key.startswith(UNET) or key.startswith(TE1):
            prefix = "lora_unet_" if key.startswith(UNET) else "lora_te1_"
            path = key.removeprefix(UNET).removeprefix(TE1)
            module, _, param = path.rpartition(".")
            found.append((prefix + module.replace(".", "_"), param, Target(key)))
        elif key.startswith(TE2):
            found += [("lora_te2_" + m.replace(".", "_"), p, t)
                      for m, p, t in _te2_targets(key.removeprefix(TE2), shape)]
    out: dict[str, dict[str, Target]] = {}
    for name, param, target in found:
        slot = out.setdefault(name, {})
        if param in slot:
            raise KxlError(f"base keys {slot[param].key!r} and {target.key!r} both map to "
                           f"kohya module {name!r}; the base file's names are ambiguous")
        slot[param] = target
    return out


def target_shape(target: Target, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of the slice of a base tensor that a module's delta must have."""
    if target.rows is not None:
        return (target.rows[1] - target.rows[0], *shape[1:])
    if target.transpose:
        return tuple(reversed(shape))
    return shape
