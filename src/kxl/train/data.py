"""What each optimizer step trains on: this process's micro-batches of the plan.

The plan (docs/formats.md section 7) fixes, per optimizer step, which post every (rank, micro,
slot) sees. A run with W processes takes the plan ranks r with r % W == its rank, so a plan
made for W_plan x A and a run on W x (W_plan / W * A) train on the same micro-batches.

Images come from a `PixelSource`, chosen by `open_pixel_source` from buckets/cache/index.json:
`PixelCache` reads the `pixels` storage, `DecodedImages` (storage `none`, the full run) decodes
images/files/... with the recorded resize + crop (kxl.buckets.cache.resize_and_crop, the same
function that writes the cache), so both give identical arrays. `LatentCache` (storage
`latents`) gives those arrays' VAE posterior instead (kxl.model.vae.Posterior), and the trainer
samples it without running the VAE. Each is asked only for the micro-batches of this process at
the current step; under train.data_workers, kxl.train.prefetch.ReadAhead asks DecodedImages for
the rows of the plan's next ones (`PlanData.requests`) and decodes them ahead with `decode_rows`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from kxl.errors import KxlError
from kxl.plan.read import rows_hash
from kxl.tables import read_table

PLAN_SCHEMA = {
    "step": pl.Int32,
    "rank": pl.Int16,
    "micro": pl.Int16,
    "slot": pl.Int16,
    "epoch": pl.Int16,
    "post_id": pl.Int64,
    "bucket": pl.Int32,
    "sample_seed": pl.UInt64,
}
SIZE_COLUMNS = ["orig_h", "orig_w", "cond_crop_top", "cond_crop_left", "target_h", "target_w"]


@dataclass(frozen=True)
class MicroBatch:
    step: int
    rank: int  # the plan's rank (not the process's)
    micro: int
    bucket: int
    post_ids: np.ndarray
    sample_seeds: np.ndarray
    captions: list[str]
    time_ids: np.ndarray  # [n, 6]: orig h, w, crop top, left, target h, w


@dataclass(frozen=True)
class Layout:
    world_size: int  # of the plan
    micros_per_step: int  # micro-batches per optimizer step over all plan ranks
    batch_size: int


class PlanData:
    """The plan joined with captions and size conditioning, sliced for one process."""

    def __init__(
        self,
        plan: pl.DataFrame,
        captions: pl.DataFrame,
        buckets: pl.DataFrame,
        rank: int,
        world: int,
        plan_path: str = "plan.parquet",
    ) -> None:
        self.plan = plan.sort("step", "rank", "micro", "slot")
        self.layout = _layout(self.plan, plan_path)
        if self.layout.world_size % world:
            raise KxlError(
                f"{plan_path}: plan world_size {self.layout.world_size} is not a multiple of "
                f"{world} processes; run with a divisor of it or rebuild the plan"
            )
        mine = self.plan.filter(pl.col("rank").cast(pl.Int64) % world == rank)
        self.rows = _join(mine, captions, buckets, plan_path)
        self.steps = self.plan["step"].unique(maintain_order=True).to_numpy()
        self._step_index = _offsets(self.rows["step"].to_numpy())
        self._plan_index = _offsets(self.plan["step"].to_numpy())

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    def micro_batches(self, step: int) -> list[MicroBatch]:
        lo, hi = self._step_index.get(step, (0, 0))
        part = self.rows.slice(lo, hi - lo)
        out = []
        for (r, m), g in part.group_by(["rank", "micro"], maintain_order=True):
            out.append(_micro(int(step), int(r), int(m), g))  # type: ignore[arg-type]
        return out

    def requests(self, start: int, end: int) -> Iterator[tuple[int, np.ndarray]]:
        """(bucket, post_ids) of this process's micro-batches at step indices start..end-1, in
        the order micro_batches gives them step after step: what a read-ahead decodes next."""
        part = self.rows.filter(pl.col("step").is_in(self.steps[start:end].tolist()))
        if part.is_empty():
            return
        keys = [part[c].to_numpy().astype(np.int64) for c in ("step", "rank", "micro")]
        change = np.flatnonzero(np.any([np.diff(k) != 0 for k in keys], axis=0)) + 1
        bounds = [0, *change.tolist(), part.height]
        bucket, ids = part["bucket"].to_numpy(), part["post_id"].to_numpy()
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            yield int(bucket[lo]), ids[lo:hi]

    def rows_hash(self, step: int) -> str:
        """sha256 (16 hex) of the step's plan rows over all ranks: what the step saw."""
        lo, hi = self._plan_index.get(step, (0, 0))
        return rows_hash(self.plan.slice(lo, hi - lo))


    def prefix_hash(self, n_steps: int) -> str:
        """sha256 of the plan rows of the first `n_steps` steps (all ranks): what a checkpoint
        at position n_steps has consumed. Two plans that agree on it put the same posts and
        sample seeds at the same place of each step (micro-batch i = micro * W + rank, slot),
        whatever follows: the same for every (W, A) with the same W*A."""
        hi = self._plan_index[int(self.steps[n_steps - 1])][1] if n_steps > 0 else 0
        w = self.layout.world_size
        position = (pl.col("micro").cast(pl.Int64) * w + pl.col("rank")).alias("position")
        part = (self.plan.slice(0, hi)
                .select("step", position, "slot", "post_id", "sample_seed")
                .sort("step", "position", "slot"))
        h = hashlib.sha256(f"{n_steps}:{hi}".encode())
        for col in part.columns:
            h.update(np.ascontiguousarray(part[col].to_numpy()).tobytes())
        return h.hexdigest()


def _offsets(steps: np.ndarray) -> dict[int, tuple[int, int]]:
    values, starts = np.unique(steps, return_index=True)
    ends = np.append(starts[1:], len(steps))
    return {int(v): (int(a), int(b)) for v, a, b in zip(values, starts, ends, strict=True)}


def _layout(plan: pl.DataFrame, where: str) -> Layout:
    if plan.is_empty():
        raise KxlError(f"{where}: the plan has no rows; rebuild it (kxl plan)")
    world = int(plan["rank"].max()) + 1  # type: ignore[arg-type]
    micros = int(plan["micro"].max()) + 1  # type: ignore[arg-type]
    batch = int(plan["slot"].max()) + 1  # type: ignore[arg-type]
    return Layout(world, world * micros, batch)


def _join(
    mine: pl.DataFrame, captions: pl.DataFrame, buckets: pl.DataFrame, where: str
) -> pl.DataFrame:
    cap = captions.select(pl.col("id").alias("post_id"), "caption")
    size = buckets.select(pl.col("id").alias("post_id"), *SIZE_COLUMNS)
    rows = mine.join(cap, on="post_id", how="left").join(size, on="post_id", how="left")
    for col, table in (("caption", "captions.parquet"), ("target_h", "buckets.parquet")):
        miss = rows.filter(pl.col(col).is_null())
        if len(miss):
            pid = int(miss["post_id"][0])
            raise KxlError(
                f"{where}: post_id {pid} (step {int(miss['step'][0])}) has no row in {table}; "
                "rebuild the plan from the current captions/buckets"
            )
    mixed = rows.group_by("step", "rank", "micro").agg(pl.col("bucket").n_unique().alias("n"))
    bad = mixed.filter(pl.col("n") > 1)
    if len(bad):
        raise KxlError(
            f"{where}: step {int(bad['step'][0])} rank {int(bad['rank'][0])} micro "
            f"{int(bad['micro'][0])} mixes buckets; a micro-batch must come from one bucket"
        )
    return rows.sort("step", "rank", "micro", "slot")


def _micro(step: int, rank: int, micro: int, g: pl.DataFrame) -> MicroBatch:
    return MicroBatch(
        step=step,
        rank=rank,
        micro=micro,
        bucket=int(g["bucket"][0]),
        post_ids=g["post_id"].to_numpy(),
        sample_seeds=g["sample_seed"].to_numpy(),
        captions=g["caption"].to_list(),
        time_ids=g.select(SIZE_COLUMNS).to_numpy().astype(np.float32),
    )


class PixelSource(Protocol):
    """Images of `post_ids` of one bucket, in that order: uint8 pixels [n, h, w, 3] (a torch
    tensor), or for storage `latents` their VAE posterior (kxl.model.vae.Posterior)."""

    def get(self, bucket: int, post_ids: np.ndarray) -> Any: ...


class _BucketFiles:
    """Rows by post id of buckets/cache/{bucket:03d}.safetensors (ids int64 [n] + per-row
    tensors), read one slice per image so a step touches only its own rows.

    `expected` (file name -> sha256, from index.json): each file is hashed once, when first
    opened, and a file that differs from its record is refused (a flipped byte in a pixel cache
    otherwise trains without a warning)."""

    storage = ""

    def __init__(self, root: str | Path, expected: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.expected = expected
        self._index: dict[int, dict[int, int]] = {}

    def _file(self, bucket: int) -> Path:
        return self.root / f"{bucket:03d}.safetensors"

    def _ids(self, bucket: int) -> dict[int, int]:
        if bucket not in self._index:
            from safetensors import safe_open

            path = self._file(bucket)
            if not path.is_file():
                raise KxlError(
                    f"{path}: bucket cache missing; run the buckets stage with cache: "
                    f"{self.storage}"
                )
            self._check(path)
            with safe_open(str(path), "np") as f:
                ids = f.get_tensor("ids")
            self._index[bucket] = {int(v): i for i, v in enumerate(ids)}
        return self._index[bucket]

    def _check(self, path: Path) -> None:
        if self.expected is None:
            return
        from kxl.hashing import sha256_file

        index = path.parent / "index.json"
        want = self.expected.get(path.name)
        if want is None:
            raise KxlError(f"{path}: not listed in {index}; re-run cache-buckets")
        got = sha256_file(path)
        if got != want:
            raise KxlError(f"{path}: sha256 {got[:12]}... differs from {index}'s {want[:12]}... "
                           "(corrupt or changed since it was written); re-run cache-buckets")

    def _rows(self, bucket: int, post_ids: np.ndarray, names: tuple[str, ...]) -> list[Any]:
        """Torch tensors `names` [n, ...] for `post_ids` in that order."""
        import torch
        from safetensors import safe_open

        index = self._ids(bucket)
        missing = [int(p) for p in post_ids if int(p) not in index]
        if missing:
            raise KxlError(f"{self._file(bucket)}: post_id {missing[0]} not in the bucket cache")
        rows = [index[int(p)] for p in post_ids]
        with safe_open(str(self._file(bucket)), "pt") as f:
            slices = [f.get_slice(n) for n in names]
            return [torch.cat([sl[i : i + 1] for i in rows]) for sl in slices]


class PixelCache(_BucketFiles):
    """Reads rows of buckets/cache/{bucket:03d}.safetensors (ids int64 [n], pixels uint8)."""

    storage = "pixels"

    def get(self, bucket: int, post_ids: np.ndarray) -> Any:
        """uint8 torch tensor [n, h, w, 3] for `post_ids` in that order."""
        return self._rows(bucket, post_ids, ("pixels",))[0]


class LatentCache(_BucketFiles):
    """Reads rows of buckets/cache/{bucket:03d}.safetensors (ids int64 [n], VAE posterior
    `mean` and `std` float32 [n, 4, h/8, w/8], unscaled)."""

    storage = "latents"

    def get(self, bucket: int, post_ids: np.ndarray) -> Any:
        """kxl.model.vae.Posterior of `post_ids` in that order (CPU tensors)."""
        from kxl.model.vae import Posterior

        mean, std = self._rows(bucket, post_ids, ("mean", "std"))
        return Posterior(mean, std)


def load_plan_data(
    plan: str | Path, captions: str | Path, buckets: str | Path, rank: int, world: int
) -> PlanData:
    return PlanData(
        read_table(plan, PLAN_SCHEMA),
        read_table(captions),
        read_table(buckets),
        rank,
        world,
        str(plan),
    )


# What resize_and_crop reads of a buckets.parquet row, plus what ties the row to the plan.
_DECODE_COLUMNS = [
    "id", "bucket", "file", "orig_w", "orig_h", "resized_w", "resized_h",
    "crop_left", "crop_top", "bucket_w", "bucket_h",
]


class DecodedImages:
    """Storage `none`: decode images/files/... and apply the recorded resize + crop."""

    def __init__(
        self,
        buckets: pl.DataFrame,
        dataset: pl.DataFrame,
        images_root: str | Path,
        resample: str,
        post_ids: np.ndarray | None = None,
    ) -> None:
        rows = buckets.join(dataset.select("id", "file"), on="id", how="left")
        if post_ids is not None:  # keep only this process's images (5M rows otherwise)
            rows = rows.join(pl.DataFrame({"id": np.unique(post_ids)}), on="id", how="semi")
        missing = rows.filter(pl.col("file").is_null())
        if missing.height:
            raise KxlError(
                f"images/dataset.parquet: id {int(missing['id'][0])} is in buckets.parquet but "
                "not in the dataset; re-run assign-buckets on this dataset"
            )
        self.rows = rows.select(_DECODE_COLUMNS).sort("id")
        self.ids = self.rows["id"].to_numpy()
        self.root = Path(images_root)
        self.resample = resample

    def get(self, bucket: int, post_ids: np.ndarray) -> Any:
        import torch

        return torch.from_numpy(decode_rows(self.root, self.rows_of(bucket, post_ids),
                                            self.resample))

    def rows_of(self, bucket: int, post_ids: np.ndarray) -> list[dict[str, Any]]:
        """The buckets.parquet rows (+ `file`) of `post_ids` in that order, checked against
        the plan's bucket: what decode_rows needs."""
        ids = np.asarray(post_ids, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.ids, ids), max(len(self.ids) - 1, 0))
        found = self.ids[pos] == ids if len(self.ids) else np.zeros(len(ids), bool)
        if not found.all():
            raise KxlError(
                f"buckets.parquet: post_id {int(ids[~found][0])} has no row; rebuild the plan "
                "from the current buckets"
            )
        part = self.rows[pos]
        wrong = part.filter(pl.col("bucket") != bucket)
        if wrong.height:
            raise KxlError(
                f"buckets.parquet: post_id {int(wrong['id'][0])} is in bucket "
                f"{int(wrong['bucket'][0])}, the plan says {bucket}; rebuild the plan"
            )
        return list(part.iter_rows(named=True))


def decode_rows(root: Path, rows: list[dict[str, Any]], resample: str) -> np.ndarray:
    """uint8 [n, h, w, 3]: each row's image decoded with the recorded resize + crop (the
    bucket cache's own resize_and_crop), in order; one decode per image of a micro-batch.

    Inline (DecodedImages.get) and in read-ahead workers (kxl.train.prefetch) alike: numpy
    only, no torch. A file Pillow cannot decode is one KxlError line naming it, which is also
    how a worker's failure reaches the training process."""
    from kxl.buckets.cache import resize_and_crop

    px = []
    for r in rows:
        path = root / r["file"]
        try:
            px.append(resize_and_crop(path, r, resample))
        except KxlError:
            raise
        except Exception as e:  # Pillow: UnidentifiedImageError, truncated data (OSError), ...
            raise KxlError(f"{path}: cannot decode the image ({type(e).__name__}: {e}); "
                           "re-fetch it (images stage)") from None
    return np.stack(px)


def open_pixel_source(
    index: str | Path,
    buckets: str | Path,
    dataset: str | Path | None = None,
    images_root: str | Path | None = None,
    post_ids: np.ndarray | None = None,
    base_sha256: Callable[[], str] | None = None,
) -> PixelSource:
    """The image source buckets/cache/index.json names: its folder's safetensors for storage
    `pixels` or `latents` (the base model training loads, whose sha256 `base_sha256()` gives,
    must be the one the latents were encoded with; called only then: hashing SDXL takes
    seconds), decoding `images_root`/<dataset file> for `none` (dataset and images_root
    needed)."""
    from kxl.buckets.schema import BUCKETS_SCHEMA, DATASET_SCHEMA

    path = Path(index)
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise KxlError(
            f"{path}: cannot read the bucket cache index ({e}); run cache-buckets"
        ) from e
    storage = meta.get("storage") if isinstance(meta, dict) else None
    if storage == "pixels":
        return PixelCache(path.parent, _expected_files(path, meta))
    if storage == "latents":
        return _latent_cache(path, meta, base_sha256)
    if storage != "none":
        raise KxlError(
            f"{path}: storage {storage!r} is not pixels, latents or none; re-run cache-buckets"
        )
    if dataset is None or images_root is None:
        raise KxlError(
            f"{path}: storage none means training decodes the images; pass --dataset "
            "(images/dataset.parquet) and --images-root (images/)"
        )
    resample = meta.get("resample")
    if resample not in ("box", "lanczos"):
        raise KxlError(f"{path}: resample {resample!r} is not box or lanczos; re-run cache-buckets")
    return DecodedImages(
        read_table(buckets, BUCKETS_SCHEMA),
        read_table(dataset, DATASET_SCHEMA),
        images_root,
        resample,
        post_ids,
    )


def _latent_cache(
    path: Path, meta: dict[str, Any], base_sha256: Callable[[], str] | None
) -> LatentCache:
    """Latents encoded by another VAE would train silently on the wrong latent space: refuse
    them, and a cache whose listed files are gone (before step 0, not mid-run)."""
    if base_sha256 is None:
        raise KxlError(f"{path}: storage latents needs the base model's sha256 to check the "
                       "cache against; pass --base")
    made, now = meta.get("base_sha256"), base_sha256()
    if made != now:
        raise KxlError(f"{path}: latents were encoded with another base model (sha256 "
                       f"{str(made)[:12]}..., training loads {now[:12]}...); re-run cache-buckets")
    return LatentCache(path.parent, _expected_files(path, meta))


def _expected_files(path: Path, meta: dict[str, Any]) -> dict[str, str]:
    """index.json's file name -> sha256; every listed file must exist (checked before step 0,
    not mid-run)."""
    files = meta.get("files")
    if not isinstance(files, list) or not all(isinstance(e, dict) for e in files):
        raise KxlError(f"{path}: 'files' is not a list of entries; re-run cache-buckets")
    out = {}
    for e in files:
        name, digest = str(e.get("file")), e.get("sha256")
        if not (path.parent / name).is_file():
            raise KxlError(f"{path}: lists {name} but {path.parent} has no such file; "
                           "re-run cache-buckets")
        if not isinstance(digest, str):
            raise KxlError(f"{path}: entry {name} has no sha256; re-run cache-buckets")
        out[name] = digest
    return out
