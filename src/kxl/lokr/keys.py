"""Kohya/LyCORIS key names for the trained adapter.

LyCORIS names modules after the tree it walked. sd-scripts' SDXL UNet uses SGM names and its
text encoders transformers' `text_model.*` names; sd-webui / ComfyUI / LyCORIS expect those:
`lora_unet_<sgm name with _>.lokr_w1`, `.lokr_w2`, `.alpha`, `.w_norm` / `.b_norm` for trained
norms, `lora_te1_text_model_encoder_layers_<i>_...`, `lora_te2_text_model_...`.
transformers 5's CLIPTextModel drops the `text_model.` level, so it is added back here.
The names come from kxl.model.sgm (the one diffusers <-> SGM mapping of the project, also used
for the base checkpoint's weight keys). `kohya_views` builds module trees with exactly those
names over the same modules, so lycoris.kohya.create_network_from_weights can load the file
into diffusers/transformers models.
"""

from __future__ import annotations

from typing import Any

from kxl.errors import KxlError
from kxl.model.sgm import UNetTopology, te_module_to_kohya, unet_module_to_sgm

TEXT_MODEL = "text_model."


def unet_sgm_names(unet: Any) -> dict[str, str]:
    """diffusers module name -> SGM module name, for every UNet module that has one."""
    topology = UNetTopology.from_config(unet.config)
    out: dict[str, str] = {}
    for n, _ in unet.named_modules():
        if not n:
            continue
        try:
            out[n] = unet_module_to_sgm(n, topology)
        except KxlError:  # containers without an SGM counterpart; LoKr targets are checked later
            continue
    return out


def te_kohya_names(te: Any) -> dict[str, str]:
    """transformers module name -> dotted kohya module path (under `text_model.` except the
    top-level `text_projection`), the tree `kohya_views` builds; with `.` -> `_` these are
    kxl.model.sgm.te_module_to_kohya's names (tests/lokr/test_sgm.py checks they agree)."""
    return {
        n: n if n == "text_projection" or n.startswith(TEXT_MODEL) else TEXT_MODEL + n
        for n, _ in te.named_modules()
        if n
    }


def lora_name_map(unet: Any, text_encoders: list[Any]) -> dict[str, str]:
    """LyCORIS lora_name -> kohya lora_name for the UNet and each text encoder."""
    out = {
        f"lora_unet_{d}".replace(".", "_"): f"lora_unet_{s}".replace(".", "_")
        for d, s in unet_sgm_names(unet).items()
    }
    for i, te in enumerate(text_encoders, start=1):
        out |= {
            f"lora_te{i}_{d}".replace(".", "_"): te_module_to_kohya(d, i)
            for d, _ in te.named_modules()
            if d
        }
    return out


def rename_keys(state: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """Rename `<lora_name>.<param>` keys by their lora_name; names not in `mapping` stay."""
    out = {}
    for key, value in state.items():
        lora, _, param = key.partition(".")
        out[f"{mapping.get(lora, lora)}.{param}"] = value
    return out


def _view(named: dict[str, Any]) -> Any:
    """A module tree whose named_modules() are `named`'s keys, sharing the modules themselves."""
    import torch

    root = torch.nn.Module()
    for name in sorted(named, key=lambda n: n.count(".")):
        parent = root
        *path, leaf = name.split(".")
        for part in path:
            if part not in parent._modules:
                parent.add_module(part, torch.nn.Module())
            parent = parent._modules[part]  # type: ignore[assignment]
        if leaf not in parent._modules:
            parent.add_module(leaf, named[name])
    return root


def kohya_views(unet: Any, text_encoders: list[Any]) -> tuple[Any, list[Any]]:
    """(UNet under SGM names, text encoders under `text_model.` names) over the same modules.

    Only leaf-level modules (no children) are placed, so every LoKr/norm target appears once.
    """
    mods = dict(unet.named_modules())
    leaves = {s: mods[d] for d, s in unet_sgm_names(unet).items() if not list(mods[d].children())}
    tes = []
    for te in text_encoders:
        tm = dict(te.named_modules())
        tes.append(
            _view({k: tm[d] for d, k in te_kohya_names(te).items() if not list(tm[d].children())})
        )
    return _view(leaves), tes
