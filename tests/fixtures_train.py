"""Random-weight SDXL-topology models and tiny training inputs for tests and benchmarks.

Test fixtures, so they live beside the tests (importable as `fixtures_train`: pytest puts tests/
on the path, benchmarks/__init__.py appends it); nothing here downloads anything.

SPEC section 5: keep SDXL's topology (3 UNet levels, 2 resnets per level, attention in levels 2-3,
text_time addition embedding, two CLIP encoders of different widths with the second projected,
4-level VAE) and shrink only widths (multiples of 32 for GroupNorm) and depths. `scale="sdxl"`
gives the real SDXL widths and depths (random weights) for the training-step benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Scale = Literal["tiny", "sdxl", "sdxl_shallow"]


@dataclass
class Models:
    """The collaborators the trainer needs (same attribute names as kxl.model's SDXLComponents)."""

    unet: Any
    text_encoder: Any
    text_encoder_2: Any
    vae: Any
    tokenizer: Any
    tokenizer_2: Any


def _byte_vocab() -> dict[str, int]:
    """A CLIP byte-level vocabulary: every byte symbol alone and word-final, plus the specials."""
    # GPT-2/CLIP byte-to-unicode table: printable bytes map to themselves, the rest to 256+n.
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = [b for b in range(256) if b not in printable]
    table = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(extra)}
    symbols = [table[b] for b in range(256)]
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({f"{s}</w>": len(symbols) + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def build_tokenizers() -> tuple[Any, Any]:
    """CLIP-L-like tokenizer (pad = eos) and bigG-like tokenizer (pad = '!'), both 77 long."""
    from transformers import CLIPTokenizer

    vocab = _byte_vocab()
    tok1 = CLIPTokenizer(vocab=dict(vocab), merges=[], model_max_length=77)
    tok2 = CLIPTokenizer(vocab=dict(vocab), merges=[], model_max_length=77, pad_token="!")
    return tok1, tok2


_DIMS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        unet_channels=(32, 64, 64),
        heads=(2, 2, 2),
        depth=(1, 1, 1),
        te1=(32, 64, 3, 2),
        te2=(64, 128, 3, 2, 32),
        vae=(32, 32, 64, 64),
    ),
    # SDXL base: 320/640/1280, transformer depth 0/2/10, CLIP-L 768x12, bigG 1280x32 (proj 1280).
    "sdxl": dict(
        unet_channels=(320, 640, 1280),
        heads=(5, 10, 20),
        depth=(1, 2, 10),
        te1=(768, 3072, 12, 12),
        te2=(1280, 5120, 32, 20, 1280),
        vae=(128, 256, 512, 512),
    ),
}
# SDXL's widths, heads and context sizes with fewer layers (transformer depth 1/2/2, bigG 8
# layers): every module shape of a real SDXL step, in ~6 GB of fp32 instead of ~14 GB, so the
# step fits a 24 GB CPU machine with its LoKr, gradients and optimizer state.
_DIMS["sdxl_shallow"] = {**_DIMS["sdxl"], "depth": (1, 2, 2), "te2": (1280, 5120, 8, 20, 1280)}


def build_models(scale: Scale = "tiny", seed: int = 0) -> Models:
    """Build the five models with weights drawn from `seed` (global RNG forked, not touched)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    d = _DIMS[scale]
    tok1, tok2 = build_tokenizers()
    ids = dict(
        vocab_size=len(tok1),
        bos_token_id=tok1.bos_token_id,
        eos_token_id=tok1.eos_token_id,
        pad_token_id=tok1.pad_token_id,
        max_position_embeddings=77,
    )
    h1, i1, n1, a1 = d["te1"]
    h2, i2, n2, a2, p2 = d["te2"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        te1 = CLIPTextModel(
            CLIPTextConfig(
                hidden_size=h1,
                intermediate_size=i1,
                num_hidden_layers=n1,
                num_attention_heads=a1,
                hidden_act="quick_gelu",
                **ids,
            )
        )
        te2 = CLIPTextModelWithProjection(
            CLIPTextConfig(
                hidden_size=h2,
                intermediate_size=i2,
                num_hidden_layers=n2,
                num_attention_heads=a2,
                projection_dim=p2,
                hidden_act="gelu",
                **ids,
            )
        )
        unet = UNet2DConditionModel(
            sample_size=8 if scale == "tiny" else 128,
            block_out_channels=d["unet_channels"],
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=d["depth"],
            attention_head_dim=d["heads"],
            cross_attention_dim=h1 + h2,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=6 * 256 + p2,
            norm_num_groups=32,
        )
        vae = AutoencoderKL(
            block_out_channels=d["vae"],
            layers_per_block=1 if scale == "tiny" else 2,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            norm_num_groups=32,
            scaling_factor=0.13025,
        )
    return Models(unet, te1, te2, vae, tok1, tok2)


def write_tiny_inputs(
    root: Any,
    steps: int,
    world: int,
    accum: int,
    batch: int,
    seed: int = 0,
    sizes: dict[int, tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """A small plan / captions / buckets / pixel cache (+ index.json) in the documented formats.

    Two buckets (64x64, 64x96 pixels); each micro-batch is drawn from one bucket; images are
    smooth random colour fields so the loss has something learnable.
    """
    import json
    from pathlib import Path

    import numpy as np
    import polars as pl
    from safetensors.numpy import save_file

    from kxl.hashing import sha256_file
    from kxl.tables import write_table
    from kxl.train.data import PLAN_SCHEMA

    root = Path(root)
    rng = np.random.default_rng(seed)
    sizes = sizes or {0: (64, 64), 1: (64, 96)}  # bucket -> (h, w)
    n_buckets = len(sizes)
    n_micro = steps * world * accum
    mb_bucket = rng.integers(0, n_buckets, n_micro)
    n = n_micro * batch
    post_ids = np.arange(1000, 1000 + n, dtype=np.int64)
    grid = np.stack(
        np.meshgrid(
            np.arange(steps), np.arange(world), np.arange(accum), np.arange(batch), indexing="ij"
        ),
        -1,
    ).reshape(-1, 4)
    plan = pl.DataFrame(
        {
            "step": grid[:, 0].astype(np.int32),
            "rank": grid[:, 1].astype(np.int16),
            "micro": grid[:, 2].astype(np.int16),
            "slot": grid[:, 3].astype(np.int16),
            "epoch": np.zeros(n, np.int16),
            "post_id": post_ids,
            "bucket": np.repeat(mb_bucket, batch).astype(np.int32),
            "sample_seed": rng.integers(0, 2**63, n, dtype=np.uint64),
        },
        schema=PLAN_SCHEMA,
    )
    write_table(plan, root / "plan.parquet", PLAN_SCHEMA)
    tags = np.array(["1girl", "solo", "smile", "red hair", "sky", "blue eyes", "outdoors", "cat"])
    caps = [", ".join(rng.choice(tags, 4, replace=False)) for _ in range(n)]
    cap = pl.DataFrame({"id": post_ids, "caption": [f"1girl, artist a ||| {c}" for c in caps]})
    write_table(cap, root / "captions.parquet", {"id": pl.Int64, "caption": pl.String})
    bucket_of = np.repeat(mb_bucket, batch)
    h = np.array([sizes[int(b)][0] for b in bucket_of], np.int32)
    w = np.array([sizes[int(b)][1] for b in bucket_of], np.int32)
    zeros = np.zeros(n, np.int32)
    i32 = pl.Int32
    bk = pl.DataFrame(
        {
            "id": post_ids,
            "bucket": bucket_of.astype(np.int32),
            "bucket_w": w,
            "bucket_h": h,
            "orig_w": w * 2,
            "orig_h": h * 2,
            "resized_w": w,
            "resized_h": h,
            "crop_left": zeros,
            "crop_top": zeros,
            "cond_crop_top": zeros,
            "cond_crop_left": zeros,
            "target_w": w,
            "target_h": h,
        }
    )
    write_table(bk, root / "buckets.parquet", {"id": pl.Int64, **{c: i32 for c in bk.columns[1:]}})
    (root / "cache").mkdir(parents=True, exist_ok=True)
    for b, (bh, bw) in sizes.items():
        ids = post_ids[bucket_of == b]
        base = rng.integers(0, 256, (len(ids), 1, 1, 3))
        ramp = np.linspace(0, 60, bw)[None, None, :, None]
        px = np.clip(base + ramp + rng.normal(0, 8, (len(ids), bh, bw, 3)), 0, 255).astype(np.uint8)
        save_file({"ids": ids, "pixels": px}, str(root / "cache" / f"{b:03d}.safetensors"))
    entries = [
        {"bucket": b, "file": f"{b:03d}.safetensors", "count": int((bucket_of == b).sum()),
         "sha256": sha256_file(root / "cache" / f"{b:03d}.safetensors")}
        for b in sizes
    ]
    index = {"storage": "pixels", "resample": "box", "files": entries}
    (root / "cache" / "index.json").write_text(json.dumps(index))
    return {
        "plan": root / "plan.parquet",
        "captions": root / "captions.parquet",
        "buckets": root / "buckets.parquet",
        "cache": root / "cache",
        "cache_index": root / "cache" / "index.json",
    }


def write_tiny_images(
    root: Any, buckets: Any, seed: int = 0, vae: Any = None, base_sha256: str = "0" * 64
) -> dict[str, Any]:
    """Images of `buckets` (a write_tiny_inputs buckets.parquet) at their original sizes, in the
    images stage's layout, and bucket caches of both storages made by the buckets stage's own
    writer: `cache_pixels/index.json` (+ safetensors beside it) and `cache_none/index.json`;
    with a `vae` also `cache_latents/index.json` (its posterior, recorded as `base_sha256`'s)."""
    import json
    from pathlib import Path

    import numpy as np
    import polars as pl
    from PIL import Image

    from kxl.buckets.cache import write_latent_cache, write_pixel_cache
    from kxl.buckets.schema import BUCKETS_SCHEMA, DATASET_SCHEMA
    from kxl.hashing import sha256_file
    from kxl.tables import read_table, write_table

    root = Path(root)
    bk = read_table(buckets, BUCKETS_SCHEMA)
    rng = np.random.default_rng(seed)
    files = []
    for pid, w, h in bk.select("id", "orig_w", "orig_h").iter_rows():  # a few dozen images
        rel = f"files/{pid % 1000:04d}/{pid}.png"
        ramp = np.linspace(0, 60, w)[None, :, None]
        px = rng.integers(0, 256, (1, 1, 3)) + ramp + rng.normal(0, 8, (h, w, 3))
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)).save(root / rel)
        files.append(rel)
    ds = bk.select(
        "id",
        pl.Series("file", files),
        pl.col("orig_w").alias("width"),
        pl.col("orig_h").alias("height"),
        pl.Series("sha256", [sha256_file(root / f) for f in files]),
    )
    write_table(ds, root / "dataset.parquet", DATASET_SCHEMA)
    out = {"dataset": root / "dataset.parquet", "images_root": root}
    for storage in ("pixels", "none", "latents")[: 3 if vae is not None else 2]:
        folder = root / f"cache_{storage}"
        folder.mkdir(exist_ok=True)
        index: dict[str, Any] = {"storage": storage, "resample": "box"}
        if storage == "pixels":
            index["files"] = write_pixel_cache(root, ds, bk, folder, "box")
        elif storage == "latents":  # batch 3: batches that differ from training's micro-batches
            index["files"] = write_latent_cache(root, ds, bk, folder, "box", vae, 3)
            index["base_sha256"] = base_sha256
        else:
            index["files"] = []
        (folder / "index.json").write_text(json.dumps(index))
        out[f"index_{storage}"] = folder / "index.json"
    return out


def stub_augment(caption: str, sample_seed: int, shuffle: bool, dropout_rate: float) -> str:
    """Stand-in for kxl.captions.augment.augment in tests: seeded shuffle after the separator."""
    import random

    keep, sep, flex = caption.partition("|||")
    tags = [t.strip() for t in flex.split(",") if t.strip()]
    r = random.Random(sample_seed)
    if shuffle:
        r.shuffle(tags)
    tags = [t for t in tags if r.random() >= dropout_rate]
    return ", ".join([keep.strip(" ,"), *tags]) if sep else caption
