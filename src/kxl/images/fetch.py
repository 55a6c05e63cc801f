"""`kxl fetch-images`: the full run's shards from the pinned HF dataset, via the HF cache.

The public dataset KBlueLeaf/danbooru2023-webp-4Mpixel keeps its tars under `images/`:
`data-0XXX.tar` (the original danbooru2023 posts) and `data-1XXX.tar` (the recent ones), with
XXX = id % 1000 in both (the layout deepghs' cheesechaser reads), members `{id}.webp` at top
level. Only the shards the manifest needs are downloaded (`hf_hub_download`, pinned revision),
then linked into the shards folder under their base names. With HF_HUB_OFFLINE=1 everything is
served from HF_HUB_CACHE, so a warm cache needs no network.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import numpy as np

from kxl.errors import KxlError
from kxl.images.config import HuggingfaceImages
from kxl.images.extract import SHARD_FILE


def remote_files(ids: np.ndarray, cfg: HuggingfaceImages) -> list[str]:
    """Repository paths of every shard file the ids need, in shard then template order."""
    shards = np.unique(ids.astype(np.int64) % 1000)
    files = [t.format(shard=int(s)) for s in shards for t in cfg.filenames]
    for f in files:
        if not SHARD_FILE.match(PurePosixPath(f).name):
            raise KxlError(
                f"images.huggingface.filenames: {f!r} does not end in data-NNNN.tar; "
                "extract-images finds shards by that name"
            )
    return files


def fetch_shards(ids: np.ndarray, cfg: HuggingfaceImages, out_dir: Path) -> list[Path]:
    """Download (or find in the HF cache) each needed shard; symlink it into `out_dir`."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, HFValidationError
    from tqdm import tqdm

    links = []
    for name in tqdm(remote_files(ids, cfg), desc="shards", unit="file", mininterval=5.0):
        try:
            local = hf_hub_download(
                cfg.repo_id, name, repo_type="dataset", revision=cfg.revision
            )
        except (EntryNotFoundError, HfHubHTTPError, HFValidationError, OSError) as exc:
            raise KxlError(
                f"dataset {cfg.repo_id}@{cfg.revision}: cannot get {name} "
                f"({type(exc).__name__}); accept the dataset's terms and log in "
                "(`hf auth login`), or fill HF_HUB_CACHE with it for offline runs"
            ) from exc
        link = out_dir / PurePosixPath(name).name
        os.symlink(Path(local).absolute(), link)
        links.append(link)
    return links
