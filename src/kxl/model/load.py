"""Load and save SDXL single-file checkpoints (SGM layout) with nothing left to chance.

Loading goes through diffusers' own single-file loader with `config=` a local diffusers
config dir (never `original_config`, never the hub). Without accelerate that loader is
`strict=False`, so a missing tensor would silently stay at its random init: before loading,
the file's header is checked against the key set and shapes the configs imply, and after
loading every model tensor is compared with the file's, one tensor at a time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kxl.errors import KxlError
from kxl.model import sgm
from kxl.model.st_io import save_streaming
from kxl.safetensors_header import read_header

_ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


@dataclass
class SDXLComponents:
    unet: Any
    text_encoder: Any
    text_encoder_2: Any
    vae: Any
    tokenizer: Any
    tokenizer_2: Any
    noise_scheduler: Any


def _meta_models(config_dir: Path) -> dict[str, torch.nn.Module]:
    """The four models built on the meta device from `config_dir` (shapes only, no memory)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    for sub in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if not (config_dir / sub / "config.json").is_file():
            raise KxlError(f"{config_dir}: missing {sub}/config.json (run synth-base/fetch-base)")
    with torch.device("meta"):
        return {
            "unet": UNet2DConditionModel.from_config(
                UNet2DConditionModel.load_config(config_dir / "unet")),
            "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(config_dir / "vae")),
            "text_encoder": CLIPTextModel(
                CLIPTextConfig.from_pretrained(config_dir / "text_encoder")),
            "text_encoder_2": CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(config_dir / "text_encoder_2")),
        }


def expected_sgm_shapes(config_dir: str | os.PathLike[str]) -> dict[str, tuple[int, ...]]:
    """Every SGM key (and its shape) a single file must hold for the models in `config_dir`."""
    models = _meta_models(Path(config_dir))
    topo = sgm.UNetTopology.from_config(models["unet"].config)
    out: dict[str, tuple[int, ...]] = {}
    for name in sgm.COMPONENTS:
        conv = sgm.component_to_sgm(name, models[name].state_dict(), topo)
        out.update({k: tuple(v.shape) for k, v in conv.items()})
    return out


def check_single_file(path: str | os.PathLike[str], config_dir: str | os.PathLike[str]) -> None:
    """Raise a one-line KxlError naming the first missing/unexpected/misshapen tensor."""
    header = read_header(path).entries
    have = {k: e.shape for k, e in header.items()
            if not k.endswith(sgm.IGNORED_SGM_SUFFIXES)}
    want = expected_sgm_shapes(config_dir)
    missing = sorted(set(want) - set(have))
    if missing:
        raise KxlError(f"{path}: missing tensor {missing[0]!r} ({len(missing)} missing) that "
                       f"{config_dir} requires; the file is not a complete SDXL checkpoint")
    extra = sorted(set(have) - set(want))
    if extra:
        raise KxlError(f"{path}: unexpected tensor {extra[0]!r} ({len(extra)} unexpected) for the "
                       f"models of {config_dir}; use the config dir that matches this file")
    for key in sorted(want):
        if have[key] != want[key]:
            raise KxlError(f"{path}: tensor {key!r} has shape {list(have[key])}, the configs in "
                           f"{config_dir} need {list(want[key])}")
    bad = sorted(k for k, v in header.items() if v.dtype not in _ST_DTYPES
                 and not k.endswith(sgm.IGNORED_SGM_SUFFIXES))
    if bad:
        raise KxlError(f"{path}: tensor {bad[0]!r} has dtype {header[bad[0]].dtype}, "
                       "expected F32/F16/BF16")


def verify_loaded(components: SDXLComponents, path: str | os.PathLike[str]) -> None:
    """Every model tensor equals the file's (cast to the model dtype), one at a time."""
    from safetensors import safe_open

    topo = sgm.UNetTopology.from_config(components.unet.config)
    with safe_open(str(path), framework="pt", device="cpu") as fh:
        for name in sgm.COMPONENTS:
            model = getattr(components, name)
            for key, tensor in sgm.component_to_sgm(name, model.state_dict(), topo).items():
                ref = fh.get_tensor(key).to(tensor.dtype)
                if not torch.equal(ref, tensor.detach().cpu()):
                    raise KxlError(f"{path}: tensor {key!r} was not loaded into {name} "
                                   "(model weights differ from the file)")


def load_dtype(path: str | os.PathLike[str], frozen: torch.dtype) -> torch.dtype:
    """The dtype to load a base in for training with frozen weights in `frozen`: the file's own
    16-bit dtype when `frozen` is 16-bit (half of fp32's memory: full SDXL loads in ~7 GB, and
    the fp32 VAE is then an exact upcast), fp32 otherwise."""
    if frozen == torch.float32:
        return torch.float32
    entries = read_header(path).entries
    stored = {_ST_DTYPES.get(e.dtype) for e in entries.values()} - {None}
    return stored.pop() if len(stored) == 1 and stored != {torch.float32} else torch.float32


def load_sdxl(
    single_file: str | os.PathLike[str],
    config_dir: str | os.PathLike[str],
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> SDXLComponents:
    """All SDXL components from one SGM single file + a diffusers config dir, checked."""
    from diffusers import DDPMScheduler, StableDiffusionXLPipeline

    check_single_file(single_file, config_dir)
    pipe = StableDiffusionXLPipeline.from_single_file(
        str(single_file), config=str(config_dir), local_files_only=True, torch_dtype=dtype)
    comps = SDXLComponents(
        pipe.unet, pipe.text_encoder, pipe.text_encoder_2, pipe.vae,
        pipe.tokenizer, pipe.tokenizer_2,
        # Training uses DDPM on the same betas (sd-scripts: scaled_linear 0.00085..0.012).
        DDPMScheduler.from_config(pipe.scheduler.config, clip_sample=False),
    )
    verify_loaded(comps, single_file)
    for name in sgm.COMPONENTS:
        getattr(comps, name).to(device)
    return comps


def save_sdxl_single_file(
    components: sgm.SDXLModels,
    path: str | os.PathLike[str],
    metadata: dict[str, str] | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Write the four models as one SGM-layout safetensors file, streaming and atomically."""
    save_streaming(sgm.diffusers_to_sgm_state_dict(components), path, metadata, dtype)
