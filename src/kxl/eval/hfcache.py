"""The CCIP model files through the HF cache, offline.

imgutils 0.19 calls `hf_hub_download("deepghs/ccip_onnx", "<model>/<file>")` with no revision,
i.e. `main`. Offline (HF_HUB_OFFLINE=1) that resolves `$HF_HUB_CACHE/models--deepghs--ccip_onnx/
refs/main` to a commit and reads `snapshots/<commit>/<model>/<file>`. So the pinned revision is
enforced here: the fetch writes refs/main = the pinned commit, and `check_offline` refuses a
cache whose refs/main names another commit or lacks a file - with one line naming repo, file
and revision - before imgutils can fail deep inside huggingface_hub.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from kxl.errors import KxlError

MODEL_FILES = ("model_feat.onnx", "model_metrics.onnx", "metrics.json", "cluster.json")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


def repo_folder(cache_dir: str | os.PathLike[str], repo_id: str) -> Path:
    """huggingface_hub's folder name for a model repo in a cache dir."""
    return Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))


def check_offline(cache_dir: str | os.PathLike[str], repo_id: str, model: str,
                  revision: str) -> Path:
    """The snapshot folder of `model` that imgutils will read offline; KxlError if incomplete."""
    root = repo_folder(cache_dir, repo_id)
    ref = root / "refs" / "main"
    if not ref.is_file():
        raise KxlError(f"HF cache {cache_dir}: {repo_id} has no refs/main (revision {revision}); "
                       "run the ccip model rule (kxl ccip-fetch / kxl ccip-standin) first")
    commit = ref.read_text().strip()
    if _SHA1.match(revision) and commit != revision:
        raise KxlError(f"HF cache {cache_dir}: {repo_id} refs/main is {commit} but "
                       f"eval.ccip.revision pins {revision}; rerun kxl ccip-fetch")
    for name in MODEL_FILES:
        path = root / "snapshots" / commit / model / name
        if not path.is_file():
            raise KxlError(f"HF cache {cache_dir}: {repo_id} file {model}/{name} at revision "
                           f"{revision} (commit {commit}) is missing; rerun kxl ccip-fetch "
                           "(or ccip-standin) or fix eval.ccip.model")
    return root / "snapshots" / commit / model


def offline_env(cache_dir: str | os.PathLike[str]) -> None:
    """Point huggingface_hub at `cache_dir`, offline. Call before importing imgutils/hf_hub:
    huggingface_hub reads these variables once, at import."""
    os.environ["HF_HUB_CACHE"] = str(Path(cache_dir).resolve())
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("ONNX_MODE", "cpu")  # the stand-in and 2-core CI: no CUDA probing


def fetch_pinned(cache_dir: str | os.PathLike[str], repo_id: str, model: str,
                 revision: str) -> str:
    """Download `model`'s files at `revision` into `cache_dir`; refs/main := that commit."""
    from huggingface_hub import snapshot_download

    snap = Path(snapshot_download(repo_id, revision=revision, cache_dir=str(cache_dir),
                                  allow_patterns=[f"{model}/{n}" for n in MODEL_FILES]))
    commit = snap.name
    ref = repo_folder(cache_dir, repo_id) / "refs" / "main"
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)
    check_offline(cache_dir, repo_id, model, revision if _SHA1.match(revision) else commit)
    return commit
