"""Feeding the GPUs (issue 18 section 4): decoding `buckets.cache: none` images, and overlapping
it with training (train.data_workers).

Images: made here once into benchmarks/.cache/decode/ (not timed), like the full run's
danbooru2023-webp-4Mpixel members: ~4 MP webp (Pillow, quality 90), 2048x2048 and 2304x1728,
photographic-like (colour fields at four scales, hard-edged shapes, sensor-like noise). Quick:
two 1024x1024 images.

Rows:
- per core: `kxl.buckets.cache.resize_and_crop` (decode, BOX cover-resize, centre crop; the
  function both the cache writer and training use) of each image into its Epsilon bucket
  (1024x1024 / 1152x896), in this process, one image at a time; and Pillow's decode alone.
  Wall and CPU seconds per image: on a shared machine the CPU time is the per-core cost.
- the read-ahead pool (kxl.train.prefetch.ReadAhead, 2 workers): micro-batches of 4 images,
  no training: decode rate of the pool including the hand-over to the training process.
- a GPU-like step: a wait of 4/15 s per micro-batch of 4 (a rank at the 15 img/s target,
  its CPU idle while the GPU works), decoding inline vs 2 read-ahead workers.
- a training step, tiny model on CPU (64x64 bucket, batch 4, 1 micro-batch per step): the
  pixel cache (no decoding) vs storage none decoding inline vs none with 2 read-ahead workers,
  every image a 4 MP webp resized into the bucket. The first step of each is untimed. The
  training process runs one torch thread: on the project's shared 2-core machine two threads
  spin against the other load (a 0.66 s step took 9 s), which would hide what is measured.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache" / "decode"
# (width, height, bucket w, bucket h): Epsilon buckets (1024 px side, 64 px steps)
SHAPES = [(2048, 2048, 1024, 1024), (2304, 1728, 1152, 896)]


def _photo(w: int, h: int, seed: int) -> np.ndarray:
    """uint8 [h, w, 3]: smooth colour fields at several scales, hard-edged shapes, noise."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for cells, amp in ((4, 60.0), (16, 30.0), (64, 14.0), (256, 6.0)):
        small = rng.normal(0, amp, (cells, cells, 3)).astype(np.float32)
        for c in range(3):
            img[..., c] += np.asarray(Image.fromarray(small[..., c]).resize((w, h),
                                                                          Image.Resampling.BICUBIC))
    pil = Image.fromarray(np.clip(img + 128, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(40):
        x, y = rng.integers(0, w), rng.integers(0, h)
        r = int(rng.integers(20, w // 6))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x - r, y - r, x + r, y + r), fill=fill)
    px = np.asarray(pil, np.float32) + rng.normal(0, 3, (h, w, 3))
    return np.clip(px, 0, 255).astype(np.uint8)


def make_images(quick: bool) -> list[tuple[Path, dict[str, int]]]:
    """(webp path, buckets.parquet-like row) per image; written once, reused."""
    from PIL import Image

    CACHE.mkdir(parents=True, exist_ok=True)
    shapes = [(1024, 1024, 512, 512)] * 2 if quick else [s for s in SHAPES for _ in range(3)]
    out = []
    for i, (w, h, bw, bh) in enumerate(shapes):
        path = CACHE / f"{'q' if quick else 'f'}{i}_{w}x{h}.webp"
        if not path.exists():
            Image.fromarray(_photo(w, h, i)).save(path, quality=90)
        scale = max(bw / w, bh / h)
        rw, rh = max(bw, round(w * scale)), max(bh, round(h * scale))
        out.append((path, {"orig_w": w, "orig_h": h, "resized_w": rw, "resized_h": rh,
                           "crop_left": (rw - bw) // 2, "crop_top": (rh - bh) // 2,
                           "bucket_w": bw, "bucket_h": bh}))
    return out


def _per_core(images: list[tuple[Path, dict[str, int]]], rounds: int) -> list[dict]:
    from PIL import Image

    from kxl.buckets.cache import resize_and_crop

    def decode_only(path: Path, _row: dict[str, int]) -> None:
        with Image.open(path) as im:
            im.convert("RGB")

    rows = []
    for name, fn in (("decode+resize+crop", resize_and_crop), ("decode only", decode_only)):
        fn(*images[0])  # warm: Pillow's plugins, page cache
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(rounds):
            for path, row in images:
                fn(path, row)
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
        n = rounds * len(images)
        rows.append({"name": f"{name}, 1 core", "seconds": sec / n, "img_per_s": n / sec,
                     "cpu_s_per_img": cpu / n,
                     "note": f"s per image; {len(images)} webp ({_sizes(images)}), x{rounds}"})
    return rows


def _sizes(images: list[tuple[Path, dict[str, int]]]) -> str:
    mb = np.mean([p.stat().st_size for p, _ in images]) / 1e6
    return f"{images[0][1]['orig_w']}x{images[0][1]['orig_h']}.., mean {mb:.2f} MB"


def _decoded_source(images, ids: np.ndarray, bucket_hw: tuple[int, int] | None = None):
    """DecodedImages over `ids`, image i = images[i % len]; bucket 0 sized `bucket_hw` (h, w)
    or each image's Epsilon bucket."""
    import polars as pl

    from kxl.train.data import DecodedImages

    rows = []
    for i, pid in enumerate(ids):
        path, row = images[i % len(images)]
        row = dict(row)
        if bucket_hw is not None:
            h, w = bucket_hw
            row.update(resized_w=w, resized_h=h, crop_left=0, crop_top=0, bucket_w=w, bucket_h=h)
        rows.append({"id": int(pid), "bucket": 0, "file": path.name, **row})
    table = pl.DataFrame(rows)
    return DecodedImages(table.drop("file"), table.select("id", "file"), CACHE, "box")


def _pool(images, workers: int, n_micro: int) -> dict:
    """Steady-state rate: from the first micro-batch handed over to the last (the pool's start,
    spawning and importing numpy, Pillow and polars, is in the note)."""
    from kxl.train.prefetch import ReadAhead

    ids = np.arange(4 * (n_micro + 1), dtype=np.int64)
    src = _decoded_source(images, ids, bucket_hw=(512, 512))
    requests = [(0, ids[i : i + 4]) for i in range(0, len(ids), 4)]
    t_start = time.perf_counter()
    with ReadAhead(src, requests, workers, 2) as ahead:
        ahead.get(*requests[0])
        t0 = time.perf_counter()
        for b, mb in requests[1:]:
            ahead.get(b, mb)
        sec = time.perf_counter() - t0
    return {"name": f"read-ahead pool, {workers} workers, no training", "seconds": sec / n_micro,
            "img_per_s": 4 * n_micro / sec,
            "note": f"s per micro-batch of 4 (into 512x512), {n_micro} after the first; first "
                    f"after {t0 - t_start:.1f} s (pool start)"}


def _gpu_like(images, workers: int, n_micro: int, gpu_s: float) -> dict:
    """A step that waits like a rank on its GPU (sleep `gpu_s` per micro-batch of 4, the
    target's 15 img/s) instead of computing: what decoding costs a rank whose CPU is idle while
    the GPU works. Epsilon buckets (1024x1024 / 1152x896), 4 MP webp."""
    from kxl.train.prefetch import ReadAhead

    ids = np.arange(4 * (n_micro + 1), dtype=np.int64)
    square = [im for im in images if im[1]["orig_w"] == im[1]["orig_h"]]
    src = _decoded_source(square, ids)  # one bucket: the square images
    requests = [(0, ids[i : i + 4]) for i in range(0, len(ids), 4)]
    ahead = ReadAhead(src, requests, workers, 2) if workers else None
    get = ahead.get if ahead else src.get
    if ahead:
        ahead.__enter__()
    try:
        get(*requests[0])
        t0 = time.perf_counter()
        for b, mb in requests[1:]:
            get(b, mb)
            time.sleep(gpu_s)
        sec = (time.perf_counter() - t0) / n_micro
    finally:
        if ahead:
            ahead.close()
    how = f"{workers} read-ahead workers" if workers else "decoded inline"
    return {"name": f"GPU-like step (4 img, {gpu_s:.3g} s wait), {how}", "seconds": sec,
            "img_per_s": 4 / sec, "note": f"mean of {n_micro}; {_sizes(square)} -> "
                                            f"{square[0][1]['bucket_w']}px"}


def _steps(images, storage: str, workers: int, n_steps: int) -> dict:
    import torch
    from fixtures_train import build_models, stub_augment, write_tiny_inputs

    from kxl.config import from_dict
    from kxl.tables import read_table
    from kxl.train.config import TrainConfig
    from kxl.train.data import PixelCache, load_plan_data
    from kxl.train.dist import World
    from kxl.train.trainer import Trainer

    cfg = from_dict(TrainConfig, {"lokr": {"preset": str(ROOT / "config/lycoris/kohaku_xl.toml")},
                                  "tensorboard": False, "warmup_steps": 0,
                                  "caption_tag_dropout": 0.15,
                                  "data_workers": workers}, "train")
    with tempfile.TemporaryDirectory() as tmp:
        inputs = write_tiny_inputs(Path(tmp) / "in", steps=n_steps + 1, world=1, accum=1,
                                   batch=4, sizes={0: (64, 64)})
        data = load_plan_data(inputs["plan"], inputs["captions"], inputs["buckets"], 0, 1)
        if storage == "pixels":
            source = PixelCache(inputs["cache"])
        else:
            ids = read_table(inputs["buckets"]).sort("id")["id"].to_numpy()
            source = _decoded_source(images, ids, bucket_hw=(64, 64))
        trainer = Trainer(build_models("tiny", seed=0), data, source, cfg, 0, Path(tmp) / "out",
                          World(0, 1, 0, torch.device("cpu")), stub_augment)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # see the module docstring
        try:
            with trainer.read_ahead(0):
                trainer.step(0)
                t0 = time.perf_counter()
                for i in range(1, n_steps + 1):
                    trainer.step(i)
                sec = (time.perf_counter() - t0) / n_steps
        finally:
            torch.set_num_threads(threads)
    how = "pixel cache" if storage == "pixels" else (
        f"none, {workers} read-ahead workers" if workers else "none, decoded inline")
    return {"name": f"tiny step (4 img), {how}", "seconds": sec, "img_per_s": 4 / sec,
            "note": f"mean of {n_steps} steps; 4 MP webp -> 64x64"}


def run(quick: bool) -> list[dict]:
    images = make_images(quick)
    rows = _per_core(images, 1 if quick else 3)
    rows.append(_pool(images, 2, 2 if quick else 8))
    gpu_s = 4 / 15  # the target: 15 img/s per GPU
    rows += [_gpu_like(images, w, 3 if quick else 10, gpu_s) for w in (0, 2)]
    n = 3 if quick else 10
    pixels = _steps(images, "pixels", 0, n)
    for r in (_steps(images, "none", 0, n), _steps(images, "none", 2, n)):
        r["ratio_vs_baseline"] = r["seconds"] / pixels["seconds"]
        rows.append(r)
    pixels["note"] += "; the baseline: ratio = step time / this"
    return [*rows, pixels]
