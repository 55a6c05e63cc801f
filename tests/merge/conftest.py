"""A tiny SDXL (SGM single file + diffusers config dir) and LoKr adapters trained on nothing
but random perturbations, built once per session for the merge and audit tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
PRESET = str(ROOT / "config/lycoris/kohaku_xl.toml")


@dataclasses.dataclass(frozen=True)
class TinyBase:
    model: Path
    config_dir: Path


def write_tiny_base(root: Path, seed: int = 0) -> TinyBase:
    """Random-weight tiny SDXL (tests/fixtures_train.py) saved the way stage 8 saves its base."""
    from fixtures_train import build_models

    from kxl.model.load import save_sdxl_single_file
    from kxl.model.tiny import write_config_dir

    m = build_models("tiny", seed=seed)
    cdir = root / "config"
    write_config_dir(cdir, m)
    m.tokenizer.save_pretrained(str(cdir / "tokenizer"))
    m.tokenizer_2.save_pretrained(str(cdir / "tokenizer_2"))
    save_sdxl_single_file(m, root / "base.safetensors", {"modelspec.architecture": "sdxl"})
    return TinyBase(root / "base.safetensors", cdir)


def perturbed_network(models: Any, spec_kw: dict[str, Any], seed: int) -> Any:
    """The kohaku_xl.toml LoKr network on `models`, every parameter randomised (w2 starts at 0)."""
    from kxl.lokr.network import LokrSpec, build_network

    tes = [models.text_encoder, models.text_encoder_2]
    net = build_network(LokrSpec(preset=PRESET, **spec_kw), tes, models.unet)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return net


def save_adapter(net: Any, models: Any, path: Path) -> Path:
    from safetensors.torch import save_file

    from kxl.train.components import Adapter

    adapter = Adapter(net, models.unet, [models.text_encoder, models.text_encoder_2])
    save_file(adapter.state_dict(), str(path), {"kxl.stage": "lokr"})
    return path


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> TinyBase:
    return write_tiny_base(tmp_path_factory.mktemp("merge_base"))
