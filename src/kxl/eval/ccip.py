"""CCIP through the real imgutils code path: features, differences, threshold.

`ccip_batch_extract_features` runs the feature model on image files in batches;
`ccip_batch_differences` runs the metrics model on feature rows; `ccip_default_threshold` reads
the model's metrics.json. Everything comes from the HF cache that `hfcache.offline_env` names,
offline. Differences are only needed between a character's references and its own generated
images, so the metrics model runs on groups of whole characters (a loop over groups, each one
vectorised), never on the full all-pairs matrix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kxl.errors import KxlError
from kxl.eval.config import CcipConfig
from kxl.eval.score import IMAGE_SCORES_SCHEMA, pair_scores

MAX_ROWS_PER_CALL = 1024  # features per metrics-model call: [1024, 1024] float32 = 4 MB


def extract_features(paths: list[str], model: str, batch_size: int) -> np.ndarray:
    """[N, D] CCIP features of image files, `batch_size` images per ONNX call."""
    from imgutils.metrics import ccip_batch_extract_features

    parts = [ccip_batch_extract_features(paths[i:i + batch_size], model=model)
             for i in range(0, len(paths), batch_size)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 0), np.float32)


def threshold(model: str) -> float:
    from imgutils.metrics import ccip_default_threshold

    return float(ccip_default_threshold(model))


def _groups(ranks: np.ndarray, rows_per_rank: np.ndarray) -> list[np.ndarray]:
    """Consecutive runs of character ranks whose rows fit in one metrics call."""
    out, cur, size = [], [], 0
    for r, n in zip(ranks.tolist(), rows_per_rank.tolist(), strict=True):
        if cur and size + n > MAX_ROWS_PER_CALL:
            out.append(np.array(cur))
            cur, size = [], 0
        cur.append(r)
        size += n
    return out + ([np.array(cur)] if cur else [])


def score_images(
    ref_feats: np.ndarray, ref_rank: np.ndarray, gen_feats: np.ndarray, gen_rank: np.ndarray,
    model: str, thr: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(score, mean_difference, n_refs) per generated image, in the order of `gen_feats`."""
    from imgutils.metrics import ccip_batch_differences

    ranks = np.unique(gen_rank)
    length = int(max(ref_rank.max(initial=0), gen_rank.max(initial=0))) + 1
    sizes = np.bincount(ref_rank, minlength=length) + np.bincount(gen_rank, minlength=length)
    sizes = sizes[ranks]
    score = np.zeros(len(gen_rank))
    mean = np.zeros(len(gen_rank))
    n_refs = np.zeros(len(gen_rank), np.int64)
    for group in _groups(ranks, sizes):
        ri, gi = np.flatnonzero(np.isin(ref_rank, group)), np.flatnonzero(np.isin(gen_rank, group))
        feats = np.concatenate([ref_feats[ri], gen_feats[gi]])
        diff = ccip_batch_differences(list(feats), model=model)[: len(ri), len(ri):]
        score[gi], mean[gi], n_refs[gi] = pair_scores(diff, ref_rank[ri], gen_rank[gi], thr)
    return score, mean, n_refs


def score_model(name: str, images: pl.DataFrame, images_dir: str | Path, ref_feats: np.ndarray,
                ref_rank: np.ndarray, model: str, thr: float, batch_size: int) -> pl.DataFrame:
    """The image-scores table of one compared model (see `kxl.eval.score`)."""
    paths = [str(Path(images_dir) / f) for f in images["file"]]
    feats = extract_features(paths, model, batch_size)
    s, m, n = score_images(ref_feats, ref_rank, feats, images["rank"].to_numpy(), model, thr)
    return images.select(
        pl.lit(name, pl.String).alias("model"), "rank", "tag_id", "image",
        pl.Series("score", s, pl.Float64), pl.Series("mean_difference", m, pl.Float64),
        pl.Series("n_refs", n, pl.Int32),
    ).select(list(IMAGE_SCORES_SCHEMA))


def _imgutils_check() -> None:
    try:
        import imgutils.metrics  # noqa: F401
    except ImportError as exc:
        raise KxlError(f"imgutils is not importable ({exc}); CCIP runs in the eval env: "
                       "`make .venv-eval/.installed` (or envs/eval.yaml)") from exc


def score_all(
    refs: pl.DataFrame, images_root: Path, generated: list[tuple[str, pl.DataFrame, Path]],
    cfg: CcipConfig, snapshot: Path,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Image scores of every model (reference features computed once) and a summary."""
    _imgutils_check()
    ref_feats = extract_features([str(images_root / f) for f in refs["file"]], cfg.model,
                                 cfg.batch_size)
    thr = threshold(cfg.model)
    ref_rank = refs["rank"].to_numpy()
    tables = [score_model(name, table, root, ref_feats, ref_rank, cfg.model, thr, cfg.batch_size)
              for name, table, root in generated]  # a loop over the few compared models
    images = pl.concat(tables)
    metrics = json.loads((snapshot / "metrics.json").read_text())
    per_model = images.group_by("model", maintain_order=True).agg(
        pl.col("score").mean().alias("mean_image_score"),
        pl.col("mean_difference").mean(), pl.len().alias("images"))
    summary = {
        "ccip": {"repo_id": cfg.repo_id, "revision": cfg.revision, "commit": snapshot.parent.name,
                 "model": cfg.model, "threshold": thr,
                 "stand_in": bool(metrics.get("stand_in", False)),
                 "calibration": metrics.get("calibration")},
        "models": per_model.to_dicts(),
    }
    return images, summary
