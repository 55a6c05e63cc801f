"""`kxl fetch-images`: the full run's shards from the pinned HF dataset, via the HF cache.

The public dataset KBlueLeaf/danbooru2023-webp-4Mpixel keeps members `{id}.webp` at the top
level of tar files of several kinds, described in the config as shard families (see
kxl.images.families): `images/data-0XXX.tar` (the original danbooru2023 posts) and
`images/data-1XXX.tar` (recent ones), both with XXX = id % 1000 (the layout deepghs'
cheesechaser reads), and the update shards `updates/20240319/data-D.tar` with D = id % 10.
Only the files that the manifest's ids need are downloaded (`hf_hub_download`, pinned
revision): per family, one per distinct id % modulus. Each is symlinked to
`shards/{family}/{base name}`, and `shards/families.json` records the families for
extract-images and the commit the revision resolved to (a branch such as `main` moves; the
commit is what an exact rebuild pins). With HF_HUB_OFFLINE=1 everything is served from
HF_HUB_CACHE, so a warm cache needs no network.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from kxl.errors import KxlError
from kxl.images.config import HuggingfaceImages
from kxl.images.families import check_families, write_index

WHERE = "config images.huggingface.families"
COMMIT = re.compile(r"[0-9a-f]{40}")


def snapshot_commit(local: Path) -> str:
    """The commit of a file that hf_hub_download returned (`.../snapshots/<commit>/<path>`)."""
    parts = Path(local).parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "snapshots" and COMMIT.fullmatch(parts[i + 1]):
            return parts[i + 1]
    raise KxlError(f"{local}: not inside an HF cache snapshots/<commit>/ folder")


def resolved_commit(files: dict[str, Path], cfg: HuggingfaceImages) -> str:
    """The one commit every fetched file came from; files of two commits mean the revision
    (a branch) moved during the fetch, and the shards would mix two dataset versions."""
    by_commit: dict[str, str] = {}
    for name, local in files.items():
        by_commit.setdefault(snapshot_commit(local), name)
    if len(by_commit) > 1:
        (c1, f1), (c2, f2) = list(by_commit.items())[:2]
        raise KxlError(
            f"dataset {cfg.repo_id}@{cfg.revision}: {f1} is from commit {c1} but {f2} from "
            f"{c2}; the revision moved while fetching: pin images.huggingface.revision to one "
            "commit sha"
        )
    return next(iter(by_commit), "")


def remote_files(ids: np.ndarray, cfg: HuggingfaceImages) -> list[tuple[str, str]]:
    """(repo path, path in the shards folder) of every file the ids need, in family then
    shard order."""
    check_families(cfg.families, WHERE)
    ids = ids.astype(np.int64)
    return [
        (fam.remote(int(s)), fam.local(int(s)))
        for fam in cfg.families
        for s in np.unique(ids % fam.modulus)
    ]


def fetch_shards(
    ids: np.ndarray, cfg: HuggingfaceImages, out_dir: Path
) -> tuple[list[Path], str]:
    """Download (or find in the HF cache) each needed file; symlink it into `out_dir`.
    Returns the links and the commit the revision resolved to."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, HFValidationError
    from tqdm import tqdm

    files = remote_files(ids, cfg)
    links, got = [], {}
    for name, rel in tqdm(files, desc="shards", unit="file", mininterval=5.0):
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
        got[name] = Path(local)
        link = out_dir / rel
        link.parent.mkdir(exist_ok=True)
        os.symlink(Path(local).absolute(), link)
        links.append(link)
    commit = resolved_commit(got, cfg)
    write_index(out_dir, cfg, commit)
    return links, commit


def pin_hint(cfg: HuggingfaceImages, commit: str, index: str) -> str | None:
    """What to tell the user when the revision is a branch (it moves) rather than the commit."""
    if not commit or cfg.revision == commit:
        return None
    return (f"revision {cfg.revision!r} is not a commit; it resolved to {commit} (recorded in "
            f"{index}): pin that in images.huggingface.revision for an exact rebuild")
