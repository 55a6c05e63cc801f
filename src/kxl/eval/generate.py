"""Sampling with diffusers' StableDiffusionXLPipeline from an SGM single-file model.

The model is loaded through `kxl.model.load.load_sdxl` (diffusers `from_single_file` with a local
`config=` dir, `local_files_only=True`, every tensor checked against the file). The sampler is
a diffusers scheduler class named in the config, built from the model's own scheduler config.
Each batch passes one torch.Generator per image, seeded from the job table, so an image depends
on its (character, image) seed and not on which batch it landed in (up to batched float math).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import polars as pl

from kxl.errors import KxlError
from kxl.eval.config import GenerateConfig

IMAGES_SCHEMA = {
    "rank": pl.Int32, "tag_id": pl.Int64, "image": pl.Int32, "seed": pl.Int64,
    "prompt": pl.String, "negative_prompt": pl.String, "file": pl.String, "sha256": pl.String,
}


def resolve_device(device: str) -> tuple[str, Any]:
    """(device, dtype): CUDA in fp16 when asked for or available under `auto`, else CPU fp32."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise KxlError("eval.generate.device is cuda but no GPU is visible; use auto or cpu")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return ("cuda", torch.float16) if use_cuda else ("cpu", torch.float32)


def make_sampler(name: str, scheduler_config: Any) -> Any:
    """The diffusers scheduler class `name`, configured like the model's own scheduler."""
    import diffusers

    cls = getattr(diffusers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
        raise KxlError(f"eval.generate.sampler: {name!r} is not a diffusers scheduler class "
                       "(e.g. EulerDiscreteScheduler, EulerAncestralDiscreteScheduler)")
    return cls.from_config(scheduler_config)


def model_file(spec: str, released: dict[str, Any], offline: bool) -> Path:
    """The SGM single file of one eval model: a local path, a released name (`released`: config
    audit.released) or hf://owner/repo/file@revision, through the HF cache at its pinned revision.

    A LyCORIS/LoKr adapter is refused rather than merged here: merging needs the base it was
    trained on (a 7 GB input the rule would have to declare) and writes a new 7 GB model, which
    is stage 10's job (`kxl merge`), with its own provenance."""
    from kxl.hub import resolve
    from kxl.merge.lokr import PREFIXES
    from kxl.safetensors_header import read_header

    path = resolve(spec, released, offline)
    keys = list(read_header(path).entries)
    if keys and all(k.startswith(PREFIXES) for k in keys):
        raise KxlError(f"{spec}: {path.name} is a LyCORIS/LoKr adapter, not a merged SDXL model; "
                       "eval needs a full model: merge it onto its base with `kxl merge` and "
                       "list the merged file in eval.generate.models")
    return path


def load_pipeline(single_file: str, config_dir: str, cfg: GenerateConfig) -> tuple[Any, str]:
    """(pipeline, device) for one model, sampler from the config, progress bars off."""
    from diffusers import StableDiffusionXLPipeline

    from kxl.model.load import load_sdxl

    if not Path(single_file).is_file():
        raise KxlError(f"{single_file}: model file not found (eval.generate.models); build it "
                       "first or fix the path")
    device, dtype = resolve_device(cfg.device)
    c = load_sdxl(single_file, config_dir, device, dtype)
    pipe = StableDiffusionXLPipeline(
        vae=c.vae, text_encoder=c.text_encoder, text_encoder_2=c.text_encoder_2,
        tokenizer=c.tokenizer, tokenizer_2=c.tokenizer_2, unet=c.unet,
        scheduler=make_sampler(cfg.sampler, c.noise_scheduler.config),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe, device


def generate(pipe: Any, device: str, jobs: pl.DataFrame, cfg: GenerateConfig,
             out_dir: str | os.PathLike[str]) -> pl.DataFrame:
    """Sample every job in batches; PNGs under `out_dir/png/`; returns the images table."""
    import torch

    out = Path(out_dir)
    (out / "png").mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    digests: list[str] = []
    for start in range(0, jobs.height, cfg.batch_size):  # a loop over batches, not images
        batch = jobs.slice(start, cfg.batch_size)
        gens = [torch.Generator(device).manual_seed(int(s)) for s in batch["seed"]]
        with torch.inference_mode():
            images = pipe(
                prompt=batch["prompt"].to_list(),
                negative_prompt=batch["negative_prompt"].to_list(),
                num_inference_steps=cfg.steps, guidance_scale=cfg.cfg, width=cfg.width,
                height=cfg.height, generator=gens, output_type="pil",
            ).images
        for row, img in zip(batch.iter_rows(named=True), images, strict=True):
            rel, digest = _save_png(img, out, row["rank"], row["image"])
            files.append(rel)
            digests.append(digest)
    return jobs.with_columns(pl.Series("file", files, pl.String),
                             pl.Series("sha256", digests, pl.String)).select(list(IMAGES_SCHEMA))


def _save_png(img: Any, out: Path, rank: int, image: int) -> tuple[str, str]:
    """Write one PNG (Pillow writes no timestamp: same pixels, same bytes)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = buf.getvalue()
    rel = f"png/{rank:05d}-{image:03d}.png"
    (out / rel).write_bytes(data)
    return rel, hashlib.sha256(data).hexdigest()


def model_meta(name: str, path: str, config_dir: str, cfg: GenerateConfig, device: str,
               seed: int) -> dict[str, Any]:
    """Provenance of one compared model: file hash, its own metadata and record, settings."""
    import dataclasses
    import json

    import diffusers
    import torch

    from kxl.provenance import artifact_hash, record_path
    from kxl.safetensors_header import read_header

    st_meta = read_header(path).metadata
    rec = record_path(path)
    made_by = json.loads(rec.read_text()) if rec.is_file() else None
    return {
        "name": name, "path": str(path), "sha256": artifact_hash(path),
        "size": Path(path).stat().st_size, "config_dir": str(config_dir),
        "file_metadata": {k: (v if len(v) <= 2000 else v[:2000] + "...")
                          for k, v in sorted((st_meta or {}).items())},
        "made_by": None if made_by is None else {
            k: made_by.get(k) for k in ("stage", "git_commit", "config", "inputs")},
        "generation": {**dataclasses.asdict(cfg), "run_seed": seed, "device": device},
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
    }


def read_generated(out_dir: str | os.PathLike[str]) -> tuple[pl.DataFrame, dict[str, Any]]:
    """(images table, meta) of one ccip-generate output dir."""
    import json

    from kxl.tables import read_table

    meta = Path(out_dir) / "meta.json"
    if not meta.is_file():
        raise KxlError(f"{out_dir}: no meta.json; not a ccip-generate output (rerun it)")
    return read_table(Path(out_dir) / "images.parquet", IMAGES_SCHEMA), json.loads(
        meta.read_text())
