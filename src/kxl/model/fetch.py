"""`fetch-base`: the real base single file and SDXL's diffusers configs from the HF hub.

Both come through the HF cache (`hf_hub_download`, pinned revisions), so a prepared cache
works offline. The weights are linked, not copied (7 GB); the small json/txt config files are
copied so `config_dir` is self-contained. The weights' sha256 is verified when pinned.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from kxl.atomic import atomic_dir, atomic_symlink
from kxl.errors import KxlError
from kxl.hashing import sha256_file
from kxl.model.config import HuggingfaceBase

# Only configs and tokenizers: `from_single_file(config=DIR)` needs nothing else.
SDXL_CONFIG_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder_2/config.json",
    *(f"{tok}/{f}" for tok in ("tokenizer", "tokenizer_2")
      for f in ("merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json")),
    "unet/config.json",
    "vae/config.json",
)


def _download(repo: str, filename: str, revision: str, cache_dir: str | None,
              offline: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo, filename, revision=revision, cache_dir=cache_dir,
                                    local_files_only=offline))
    except LocalEntryNotFoundError as exc:
        raise KxlError(f"{repo}@{revision}/{filename}: not in the HF cache and offline; "
                       "run once online or set HF_HUB_CACHE to a cache holding it") from exc


def fetch_base(
    cfg: HuggingfaceBase, out: Path, config_dir: Path,
    cache_dir: str | None = None, offline: bool = False,
) -> str:
    """Fetch, verify and link the base; returns the weights' sha256."""
    weights = _download(cfg.repo_id, cfg.filename, cfg.revision, cache_dir, offline)
    digest = sha256_file(weights)
    if cfg.sha256 is not None and digest != cfg.sha256:
        raise KxlError(f"{cfg.repo_id}/{cfg.filename}@{cfg.revision}: sha256 {digest} != pinned "
                       f"{cfg.sha256}; fix base.huggingface.sha256 or the revision")
    with atomic_dir(config_dir) as tmp:
        for name in SDXL_CONFIG_FILES:
            src = _download(cfg.config_repo_id, name, cfg.config_revision, cache_dir, offline)
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tmp / name)
        from kxl.model.load import check_single_file

        check_single_file(weights, tmp)  # header only: keys and shapes against the configs
    atomic_symlink(weights.resolve(), out)
    return digest
