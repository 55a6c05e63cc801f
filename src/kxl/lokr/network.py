"""Build the LyCORIS LoKr network over the SDXL UNet and both text encoders from a preset.

LyCORIS 4.1.3 traps handled here (SPEC section 5): `apply_preset` mutates class attributes of
LycorisNetworkKohya, so the previous values are restored after construction; a preset naming a
CLIP attention class that transformers does not use matches nothing silently, so the number of
modules per text-encoder layer is asserted.
"""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kxl.errors import KxlError

# Class attributes that apply_preset may overwrite.
_PRESET_STATE = (
    "ENABLE_CONV",
    "UNET_TARGET_REPLACE_MODULE",
    "UNET_TARGET_REPLACE_NAME",
    "TEXT_ENCODER_TARGET_REPLACE_MODULE",
    "TEXT_ENCODER_TARGET_REPLACE_NAME",
    "MODULE_ALGO_MAP",
    "NAME_ALGO_MAP",
    "USE_FNMATCH",
    "TARGET_EXCLUDE_NAME",
    "LORA_PREFIX",
)
# q, k, v, out projections + fc1, fc2 in every CLIP encoder layer.
TE_MODULES_PER_LAYER = 6


@dataclass(frozen=True)
class LokrSpec:
    """The LoKr hyperparameters (train config `lokr` section)."""

    preset: str
    dim: int = 10000
    alpha: float = 10000.0
    conv_dim: int = 10000
    conv_alpha: float = 10000.0
    factor: int = 8
    train_norm: bool = True


def read_preset(path: str | Path) -> dict[str, Any]:
    """Read and validate a LyCORIS preset TOML (LyCORIS's own reader prints and returns None)."""
    from lycoris.config_sdk import PresetConfig, PresetValidationError

    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
        return PresetConfig.from_dict(data, strict=True).to_dict()
    except FileNotFoundError as exc:
        raise KxlError(f"{p}: LyCORIS preset not found (see config/lycoris/)") from exc
    except (tomllib.TOMLDecodeError, PresetValidationError) as exc:
        raise KxlError(f"{p}: invalid LyCORIS preset ({exc}); fix the TOML") from exc


@contextlib.contextmanager
def preset_applied(preset: dict[str, Any]) -> Iterator[type]:
    """Apply `preset` to LycorisNetworkKohya for the duration of the block, then restore."""
    from lycoris.kohya import LycorisNetworkKohya as Net

    saved = {k: getattr(Net, k) for k in _PRESET_STATE if k in vars(Net) or hasattr(Net, k)}
    try:
        Net.apply_preset(preset)
        yield Net
    finally:
        for k, v in saved.items():
            setattr(Net, k, v)


def build_network(spec: LokrSpec, text_encoders: list[Any], unet: Any) -> Any:
    """Create the LoKr network, apply it to the models and check the text-encoder coverage."""
    from lycoris.modules.lokr import LokrModule

    preset = read_preset(spec.preset)
    with preset_applied(preset) as Net:
        net = Net(
            text_encoders,
            unet,
            multiplier=1.0,
            lora_dim=spec.dim,
            conv_lora_dim=spec.conv_dim,
            alpha=spec.alpha,
            conv_alpha=spec.conv_alpha,
            network_module="lokr",
            train_norm=spec.train_norm,
            factor=spec.factor,
            decompose_both=False,
            use_tucker=False,
            block_size=4,
            constraint=0.0,
            rescaled=False,
            weight_decompose=False,
            wd_on_out=True,
            full_matrix=False,
            bypass_mode=False,
            unbalanced_factorization=False,
            warn_on_unmatched=True,
        )
    check_text_encoder_coverage(net, text_encoders)
    if not any(isinstance(m, LokrModule) for m in net.unet_loras):
        raise KxlError(f"{spec.preset}: no LoKr module on the UNet; check unet_target_module")
    net.apply_to(text_encoders, unet, apply_text_encoder=True, apply_unet=True)
    return net


def check_text_encoder_coverage(net: Any, text_encoders: list[Any]) -> None:
    """Every CLIP layer of every encoder must carry its attention and MLP modules."""
    for i, te in enumerate(text_encoders, start=1):
        layers = te.config.num_hidden_layers
        got = sum(1 for m in net.text_encoder_loras if m.lora_name.startswith(f"lora_te{i}_"))
        want = TE_MODULES_PER_LAYER * layers
        if got != want:
            raise KxlError(
                f"LyCORIS preset covers {got} modules of text encoder {i}, expected {want} "
                f"({TE_MODULES_PER_LAYER} x {layers} layers); list the CLIP attention class "
                "transformers uses (CLIPAttention / CLIPSdpaAttention) in the preset"
            )
