"""Diffusers <-> SGM (original Stability "generative-models") names for SDXL checkpoints.

A single-file SDXL checkpoint (what sd-webui, ComfyUI and kohya load) stores four models under
fixed prefixes, each with its own original names:

- UNet: `model.diffusion_model.` + ldm names (`input_blocks.4.1.transformer_blocks.0...`).
- text encoder 1 (CLIP-L): `conditioner.embedders.0.transformer.` + transformers names.
- text encoder 2 (OpenCLIP bigG): `conditioner.embedders.1.model.` + OpenCLIP names, with the
  attention q/k/v fused into `in_proj_weight`/`in_proj_bias` and `text_projection` stored
  transposed (OpenCLIP computes `x @ text_projection`).
- VAE: `first_stage_model.` + ldm names, attention q/k/v/proj_out as 1x1 convs.

Written from the public layouts (diffusers' single-file loader, sd-scripts' SDXL conversion);
the mapping is a table of dotted-name prefixes built from the UNet topology, so module names
(for LoKr/kohya naming) and parameter names go through the same code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch

from kxl.errors import KxlError

UNET_PREFIX = "model.diffusion_model."
TE1_PREFIX = "conditioner.embedders.0.transformer."
TE2_PREFIX = "conditioner.embedders.1.model."
VAE_PREFIX = "first_stage_model."
COMPONENTS = ("unet", "text_encoder", "text_encoder_2", "vae")
PREFIXES = {
    "unet": UNET_PREFIX,
    "text_encoder": TE1_PREFIX,
    "text_encoder_2": TE2_PREFIX,
    "vae": VAE_PREFIX,
}
# Keys real SDXL files carry that no diffusers model has: OpenCLIP's contrastive temperature
# (kept by kohya for round trips) and the position_ids buffer older transformers saved.
IGNORED_SGM_SUFFIXES = ("logit_scale", "embeddings.position_ids")


@dataclass(frozen=True)
class UNetTopology:
    """What the ldm block numbering depends on (SDXL: 3 levels, 2 resnets, attn in 2-3)."""

    layers_per_block: int = 2
    attn_down: tuple[bool, ...] = (False, True, True)
    attn_up: tuple[bool, ...] = (True, True, False)

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> UNetTopology:
        down = tuple("CrossAttn" in str(t) for t in config["down_block_types"])  # type: ignore[union-attr]
        up = tuple("CrossAttn" in str(t) for t in config["up_block_types"])  # type: ignore[union-attr]
        return cls(int(config["layers_per_block"]), down, up)  # type: ignore[call-overload]


SDXL_TOPOLOGY = UNetTopology()

_RESNET_UNET = {
    "norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection",
}
_RESNET_VAE = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTN = {
    "group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out",
}


def _unet_blocks(topo: UNetTopology) -> list[tuple[str, str, Mapping[str, str]]]:
    """(diffusers prefix, sgm prefix, inner renames) for every UNet block."""
    per = topo.layers_per_block + 1
    res, none = _RESNET_UNET, {}
    out: list[tuple[str, str, Mapping[str, str]]] = [
        ("conv_in", "input_blocks.0.0", none),
        ("time_embedding.linear_1", "time_embed.0", none),
        ("time_embedding.linear_2", "time_embed.2", none),
        ("add_embedding.linear_1", "label_emb.0.0", none),
        ("add_embedding.linear_2", "label_emb.0.2", none),
        ("conv_norm_out", "out.0", none),
        ("conv_out", "out.2", none),
        ("mid_block.resnets.0", "middle_block.0", res),
        ("mid_block.attentions.0", "middle_block.1", none),
        ("mid_block.resnets.1", "middle_block.2", res),
    ]
    n = len(topo.attn_down)
    for b in range(n):
        for i in range(topo.layers_per_block):
            sgm = f"input_blocks.{b * per + i + 1}"
            out.append((f"down_blocks.{b}.resnets.{i}", f"{sgm}.0", res))
            if topo.attn_down[b]:
                out.append((f"down_blocks.{b}.attentions.{i}", f"{sgm}.1", none))
        if b < n - 1:
            out.append((f"down_blocks.{b}.downsamplers.0", f"input_blocks.{(b + 1) * per}.0",
                        {"conv": "op"}))
    for b in range(len(topo.attn_up)):
        for i in range(per):
            sgm = f"output_blocks.{b * per + i}"
            out.append((f"up_blocks.{b}.resnets.{i}", f"{sgm}.0", res))
            if topo.attn_up[b]:
                out.append((f"up_blocks.{b}.attentions.{i}", f"{sgm}.1", none))
        if b < len(topo.attn_up) - 1:
            # ldm puts the upsampler after the attention when the level has one.
            slot = 2 if topo.attn_up[b] else 1
            out.append((f"up_blocks.{b}.upsamplers.0", f"output_blocks.{b * per + per - 1}.{slot}",
                        none))
    return out


def _vae_blocks(n_levels: int, layers: int) -> list[tuple[str, str, Mapping[str, str]]]:
    out: list[tuple[str, str, Mapping[str, str]]] = []
    for side in ("encoder", "decoder"):
        out += [
            (f"{side}.conv_in", f"{side}.conv_in", {}),
            (f"{side}.conv_out", f"{side}.conv_out", {}),
            (f"{side}.conv_norm_out", f"{side}.norm_out", {}),
            (f"{side}.mid_block.resnets.0", f"{side}.mid.block_1", _RESNET_VAE),
            (f"{side}.mid_block.resnets.1", f"{side}.mid.block_2", _RESNET_VAE),
            (f"{side}.mid_block.attentions.0", f"{side}.mid.attn_1", _VAE_ATTN),
        ]
    for lvl in range(n_levels):
        for i in range(layers):
            out.append((f"encoder.down_blocks.{lvl}.resnets.{i}", f"encoder.down.{lvl}.block.{i}",
                        _RESNET_VAE))
        if lvl < n_levels - 1:
            out.append((f"encoder.down_blocks.{lvl}.downsamplers.0",
                        f"encoder.down.{lvl}.downsample", {}))
        # ldm numbers decoder levels from the bottom (up.0 is the highest resolution).
        ldm = n_levels - 1 - lvl
        for i in range(layers + 1):
            out.append((f"decoder.up_blocks.{lvl}.resnets.{i}", f"decoder.up.{ldm}.block.{i}",
                        _RESNET_VAE))
        if lvl < n_levels - 1:
            out.append((f"decoder.up_blocks.{lvl}.upsamplers.0", f"decoder.up.{ldm}.upsample", {}))
    out += [("quant_conv", "quant_conv", {}), ("post_quant_conv", "post_quant_conv", {})]
    return out


class _PrefixMap:
    """Longest dotted-prefix lookup in one direction, with per-block inner renames."""

    def __init__(self, blocks: list[tuple[str, str, Mapping[str, str]]], reverse: bool) -> None:
        self.table: dict[str, tuple[str, Mapping[str, str]]] = {}
        for d, s, inner in blocks:
            if reverse:
                self.table[s] = (d, {v: k for k, v in inner.items()})
            else:
                self.table[d] = (s, inner)

    def __call__(self, name: str, what: str) -> str:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            head = ".".join(parts[:cut])
            if head in self.table:
                target, inner = self.table[head]
                rest = ".".join(parts[cut:])
                for src in sorted(inner, key=len, reverse=True):
                    if rest == src or rest.startswith(src + "."):
                        rest = inner[src] + rest[len(src):]
                        break
                return f"{target}.{rest}" if rest else target
        raise KxlError(f"{what}: name {name!r} has no SGM/diffusers equivalent; "
                       "check the model topology (SDXL: 3 levels, 2 resnets, attention in 2-3)")


def unet_module_to_sgm(name: str, topology: UNetTopology = SDXL_TOPOLOGY) -> str:
    """Diffusers UNet module/parameter name -> SGM (ldm) name, e.g.
    `down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q` ->
    `input_blocks.4.1.transformer_blocks.0.attn1.to_q`."""
    return _PrefixMap(_unet_blocks(topology), reverse=False)(name, "UNet")


def unet_module_from_sgm(name: str, topology: UNetTopology = SDXL_TOPOLOGY) -> str:
    """SGM (ldm) UNet module/parameter name -> diffusers name."""
    return _PrefixMap(_unet_blocks(topology), reverse=True)(name, "UNet")


def unet_module_to_kohya(name: str, topology: UNetTopology = SDXL_TOPOLOGY) -> str:
    """kohya/LyCORIS name of a diffusers UNet module (`lora_unet_input_blocks_4_1_...`)."""
    return "lora_unet_" + unet_module_to_sgm(name, topology).replace(".", "_")


def te_module_to_kohya(name: str, index: int) -> str:
    """kohya/LyCORIS name of a text-encoder module (`lora_te1_text_model_encoder_layers_0_...`).

    sd-scripts names text-encoder modules by their transformers names under `text_model.`;
    transformers >= 5.6 dropped that wrapper from CLIPTextModel, so it is added back here.
    """
    if index not in (1, 2):
        raise KxlError(f"text encoder index must be 1 or 2, got {index}")
    if name != "text_projection" and not name.startswith("text_model."):
        name = f"text_model.{name}" if name else "text_model"
    return f"lora_te{index}_" + name.replace(".", "_")


# --------------------------------------------------------------------------- state dicts

def _te1_name(key: str) -> str:
    return key if key.startswith("text_model.") else f"text_model.{key}"


_QKV = re.compile(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)")


def _te2_to_sgm(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    flat = {k.removeprefix("text_model."): v for k, v in sd.items()}
    out: dict[str, torch.Tensor] = {}
    for k, value in flat.items():
        if k == "embeddings.position_ids":
            continue
        m = _QKV.fullmatch(k)
        if m is None:
            out[_te2_name_to_sgm(k)] = value.T if k == "text_projection.weight" else value
        elif m.group(2) == "q":  # OpenCLIP keeps q, k, v as one fused projection
            i, kind = m.group(1), m.group(3)
            qkv = [flat[f"encoder.layers.{i}.self_attn.{p}_proj.{kind}"] for p in "qkv"]
            out[f"transformer.resblocks.{i}.attn.in_proj_{kind}"] = torch.cat(qkv, dim=0)
    return out


_TE2_RENAMES = (
    ("embeddings.token_embedding.weight", "token_embedding.weight"),
    ("embeddings.position_embedding.weight", "positional_embedding"),
    ("final_layer_norm.", "ln_final."),
    ("text_projection.weight", "text_projection"),
)
_TE2_LAYER = (
    ("self_attn.out_proj.", "attn.out_proj."),
    ("layer_norm1.", "ln_1."), ("layer_norm2.", "ln_2."),
    ("mlp.fc1.", "mlp.c_fc."), ("mlp.fc2.", "mlp.c_proj."),
)


def _te2_name_to_sgm(k: str) -> str:
    for d, s in _TE2_RENAMES:
        if k.startswith(d):
            return s + k[len(d):]
    if k.startswith("encoder.layers."):
        _, _, i, rest = k.split(".", 3)
        for d, s in _TE2_LAYER:
            if rest.startswith(d):
                return f"transformer.resblocks.{i}.{s}{rest[len(d):]}"
    raise KxlError(f"text_encoder_2: key {k!r} has no OpenCLIP equivalent")


def _te2_from_sgm(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key.startswith("transformer.resblocks."):
            _, _, i, rest = key.split(".", 3)
            if rest.startswith("attn.in_proj_"):
                kind = rest.removeprefix("attn.in_proj_")
                for p, part in zip("qkv", value.chunk(3, dim=0), strict=True):
                    out[f"text_model.encoder.layers.{i}.self_attn.{p}_proj.{kind}"] = part
                continue
            for d, s in _TE2_LAYER:
                if rest.startswith(s):
                    out[f"text_model.encoder.layers.{i}.{d}{rest[len(s):]}"] = value
                    break
            else:
                raise KxlError(f"text_encoder_2: SGM key {key!r} is not an OpenCLIP block key")
            continue
        for d, s in _TE2_RENAMES:
            if key == s or key.startswith(s) and s.endswith("."):
                name = d + key[len(s):]
                out[name if name == "text_projection.weight" else f"text_model.{name}"] = (
                    value.T if d == "text_projection.weight" else value)
                break
        else:
            raise KxlError(f"text_encoder_2: SGM key {key!r} has no transformers equivalent")
    return out


def _vae_to_sgm(sd: Mapping[str, torch.Tensor], vae_map: _PrefixMap) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in sd.items():
        name = vae_map(key, "VAE")
        # ldm's VAE attention uses 1x1 convs where diffusers uses Linear layers.
        if ".mid.attn_1." in name and name.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]
        out[name] = value
    return out


def _vae_from_sgm(sd: Mapping[str, torch.Tensor], vae_map: _PrefixMap) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in sd.items():
        if ".mid.attn_1." in key and key.endswith(".weight") and value.ndim == 4:
            value = value[:, :, 0, 0]
        out[vae_map(key, "VAE")] = value
    return out


def _vae_shape(keys: list[str], sgm: bool) -> tuple[int, int]:
    """(levels, resnets per encoder level) read off the key names."""
    if sgm:
        lv = {int(k.split(".")[2]) for k in keys if k.startswith("encoder.down.")}
        per = {int(k.split(".")[4]) for k in keys if k.startswith("encoder.down.0.block.")}
    else:
        lv = {int(k.split(".")[2]) for k in keys if k.startswith("encoder.down_blocks.")}
        per = {int(k.split(".")[4]) for k in keys if k.startswith("encoder.down_blocks.0.resnets.")}
    if not lv or not per:
        raise KxlError("VAE: no encoder down blocks found in the state dict")
    return max(lv) + 1, max(per) + 1


class HasStateDict(Protocol):
    def state_dict(self) -> Mapping[str, torch.Tensor]: ...


class SDXLModels(Protocol):
    unet: HasStateDict
    text_encoder: HasStateDict
    text_encoder_2: HasStateDict
    vae: HasStateDict


def component_to_sgm(
    component: str, sd: Mapping[str, torch.Tensor], topology: UNetTopology = SDXL_TOPOLOGY
) -> dict[str, torch.Tensor]:
    """One diffusers component's state dict -> its SGM keys (prefix included). Tensors are
    views of the inputs except the fused OpenCLIP in_proj (so conversion costs no copy)."""
    pre = PREFIXES[component]
    if component == "unet":
        fwd = _PrefixMap(_unet_blocks(topology), reverse=False)
        return {pre + fwd(k, "UNet"): v for k, v in sd.items()}
    if component == "text_encoder":
        return {pre + _te1_name(k): v for k, v in sd.items()
                if not k.endswith("embeddings.position_ids")}
    if component == "text_encoder_2":
        return {pre + k: v for k, v in _te2_to_sgm(sd).items()}
    if component == "vae":
        levels, layers = _vae_shape(list(sd), sgm=False)
        return {pre + k: v for k, v in _vae_to_sgm(sd, _PrefixMap(_vae_blocks(levels, layers),
                                                                   False)).items()}
    raise KxlError(f"unknown SDXL component {component!r}; expected one of {COMPONENTS}")


def diffusers_to_sgm_state_dict(
    components: SDXLModels, topology: UNetTopology | None = None
) -> dict[str, torch.Tensor]:
    """The single-file SGM state dict of an SDXL model given as diffusers/transformers modules."""
    if topology is None:
        cfg = getattr(components.unet, "config", None)
        topology = UNetTopology.from_config(cfg) if cfg is not None else SDXL_TOPOLOGY
    out: dict[str, torch.Tensor] = {}
    for name in COMPONENTS:
        out.update(component_to_sgm(name, getattr(components, name).state_dict(), topology))
    return out


def split_sgm(sd: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Group an SGM state dict by component (prefix removed); unknown keys raise."""
    parts: dict[str, dict[str, torch.Tensor]] = {c: {} for c in COMPONENTS}
    for key, value in sd.items():
        if key.endswith(IGNORED_SGM_SUFFIXES):
            continue
        for comp, pre in PREFIXES.items():
            if key.startswith(pre):
                parts[comp][key[len(pre):]] = value
                break
        else:
            raise KxlError(f"SGM key {key!r} belongs to no SDXL component "
                           f"(expected prefixes {sorted(PREFIXES.values())})")
    return parts


def sgm_to_diffusers(
    sd: Mapping[str, torch.Tensor], topology: UNetTopology = SDXL_TOPOLOGY
) -> dict[str, dict[str, torch.Tensor]]:
    """Single-file SGM state dict -> per-component diffusers/transformers state dicts
    (text encoders with the `text_model.` prefix of the HF CLIP naming)."""
    parts = split_sgm(sd)
    back = _PrefixMap(_unet_blocks(topology), reverse=True)
    levels, layers = _vae_shape(list(parts["vae"]), sgm=True)
    return {
        "unet": {back(k, "UNet"): v for k, v in parts["unet"].items()},
        "text_encoder": dict(parts["text_encoder"]),
        "text_encoder_2": _te2_from_sgm(parts["text_encoder_2"]),
        "vae": _vae_from_sgm(parts["vae"], _PrefixMap(_vae_blocks(levels, layers), True)),
    }
