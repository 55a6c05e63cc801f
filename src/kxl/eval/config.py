"""Typed config of the eval stage (`eval:` in config/*.yaml, validated by config/schema.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kxl.errors import KxlError


@dataclass(frozen=True)
class CharactersConfig:
    """deepghs character_index style: >= min_posts posts, min_refs..max_refs references each."""

    min_posts: int = 500
    min_refs: int = 10
    max_refs: int = 50
    top_n: int = 3600
    # The card's "3600 characters" is exact: fewer qualifying characters stop the stage with
    # the number, unless this allows it (then the report says how many were compared).
    allow_fewer: bool = False


def check_model_paths(models: list[dict[str, Any]], released: dict[str, Any]) -> None:
    """What the schema cannot say about eval.generate.models: a path that is not a .safetensors
    file is a configured released name or a pinned hf:// spec, and not a released LyCORIS step
    file (eval needs a full model; kxl.eval.generate.model_file checks every file's keys)."""
    from kxl.hub import parse_hf

    for i, m in enumerate(models):
        path, where = m["path"], f"eval.generate.models[{i}].path"
        if path.startswith("hf://"):
            try:
                parse_hf(path)
            except KxlError as exc:
                raise KxlError(f"{where}: {exc}") from None
        elif path in released and released[path].get("step") is not None:
            raise KxlError(f"{where}: {path!r} is a released LyCORIS step file (audit.released."
                           f"{path}.step), not a merged model; eval needs a full model: merge "
                           "it with `kxl merge` and list the merged file")
        elif path not in released and not path.endswith(".safetensors"):
            raise KxlError(f"{where}: {path!r} is neither a .safetensors file, a released name "
                           f"(audit.released: {sorted(released)}) nor "
                           "hf://<owner>/<repo>/<file>@<revision>")


@dataclass(frozen=True)
class GenerateConfig:
    """eval.generate without `models`: each generation job is one model, named by the rule."""

    images_per_character: int = 4
    width: int = 1024
    height: int = 1024
    steps: int = 28
    cfg: float = 5.0
    sampler: str = "EulerAncestralDiscreteScheduler"  # a diffusers scheduler class name
    batch_size: int = 8
    quality_tags: str = "masterpiece, best quality"
    year_tag: str = "newest"
    rating_tag: str = "safe"
    negative_prompt: str = "low quality, worst quality, bad anatomy, text, watermark"
    tag_word_sep: str = " "  # captions.tag_word_sep (its owner), passed by rules/eval.smk
    device: Literal["auto", "cpu", "cuda"] = "auto"


@dataclass(frozen=True)
class CcipConfig:
    source: Literal["standin", "huggingface"] = "huggingface"
    repo_id: str = "deepghs/ccip_onnx"
    revision: str = "main"
    model: str = "ccip-caformer-24-randaug-pruned"
    batch_size: int = 32  # images per feature-extraction call


@dataclass(frozen=True)
class ConditioningConfig:
    """The prompt-conditioning probe (kxl.eval.conditioning)."""

    timesteps: list[int] = field(default_factory=lambda: [200, 500, 800])
    distractors: int = 7  # other characters' prompts per reference picture
    refs_per_character: int = 2  # the first references of each character
    batch_size: int = 16  # UNet calls per forward
