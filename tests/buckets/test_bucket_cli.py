"""`kxl assign-buckets` / `kxl cache-buckets` on a small hand-made dataset (docs/formats.md 6)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image
from safetensors.numpy import load_file
from torch_state import torch_state

from kxl.buckets.cache import resize_and_crop
from kxl.buckets.schema import BUCKET_SET_SCHEMA, BUCKETS_SCHEMA, DATASET_SCHEMA
from kxl.cli import main
from kxl.hashing import sha256_file
from kxl.tables import read_table, write_table

CFG = {"resolution": 64, "min_size": 32, "max_size": 128, "step": 32, "no_upscale": False,
       "crop_convention": "kohya-0.8.7", "cache": "pixels", "resample": "box"}
SIZES = {11: (80, 60), 12: (50, 140), 13: (64, 64), 14: (300, 90), 15: (33, 100), 16: (90, 91)}


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    rows = []
    for pid, (w, h) in SIZES.items():
        rel = f"files/{pid % 1000:04d}/{pid}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(pid).integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / rel)
        rows.append({"id": pid, "file": rel, "width": w, "height": h, "sha256": "0" * 64})
    write_table(pl.DataFrame(rows).cast(DATASET_SCHEMA), root / "dataset.parquet", DATASET_SCHEMA)
    return root


def _assign(images: Path, out: Path, cfg: dict) -> int:
    return main(["assign-buckets", "--dataset", str(images / "dataset.parquet"),
                 "--config-json", json.dumps(cfg), "--out", str(out / "buckets.parquet"),
                 "--bucket-set", str(out / "bucket_set.parquet"),
                 "--histogram", str(out / "histogram.csv")])


def _cache(images: Path, out: Path, cfg: dict, *extra: str, cache: str = "cache") -> int:
    return main(["cache-buckets", "--dataset", str(images / "dataset.parquet"),
                 "--buckets", str(out / "buckets.parquet"), "--images-root", str(images),
                 "--config-json", json.dumps(cfg), "--index", str(out / cache / "index.json"),
                 *extra])


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SDXL single file + config dir (untrained: only its VAE's posterior matters)."""
    from kxl.model.config import SyntheticBase
    from kxl.model.synth import TAGS_SCHEMA, synthesize_base

    root = tmp_path_factory.mktemp("base")
    tags = pl.DataFrame({"id": [1, 2], "name": ["1girl", "solo"], "type": [0, 0],
                         "popularity": [2, 1]}, schema=TAGS_SCHEMA)
    cfg = SyntheticBase(unet_channels=(32, 32, 64), te1_width=32, te1_layers=1, te2_width=64,
                        te2_layers=1, vae_channels=(32, 32, 32, 32), vocab_size=600,
                        vae_steps=0, unet_steps=0)
    with torch_state():
        synthesize_base(cfg, tags, root / "base.safetensors", root / "config")
    return root


def test_assign_writes_the_documented_tables(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "buckets"
    assert _assign(images, out, CFG) == 0
    bset = read_table(out / "bucket_set.parquet", BUCKET_SET_SCHEMA)
    assert bset.rows() == [(0, 32, 96), (1, 32, 128), (2, 64, 64), (3, 96, 32), (4, 128, 32)]
    bk = read_table(out / "buckets.parquet", BUCKETS_SCHEMA)
    assert bk["id"].to_list() == sorted(SIZES)
    assert (bk["target_w"] == bk["bucket_w"]).all() and (bk["bucket_w"] % 32 == 0).all()
    hist = pl.read_csv(out / "histogram.csv")
    assert hist.columns == ["bucket", "width", "height", "count"]
    assert hist["count"].sum() == len(SIZES) and hist.height == 5
    assert (out / ".prov/buckets.parquet.json").is_file()


def test_pixel_cache_is_resized_cropped_and_deterministic(images: Path, tmp_path: Path) -> None:
    out = tmp_path / "buckets"
    _assign(images, out, CFG)
    assert _cache(images, out, CFG) == 0
    index = json.loads((out / "cache/index.json").read_text())
    assert index["storage"] == "pixels" and sum(e["count"] for e in index["files"]) == len(SIZES)
    bk = read_table(out / "buckets.parquet", BUCKETS_SCHEMA)
    first = {}
    for e in index["files"]:
        t = load_file(str(out / "cache" / e["file"]))
        rows = bk.filter(pl.col("bucket") == e["bucket"]).sort("id")
        assert t["ids"].dtype == np.int64 and t["ids"].tolist() == rows["id"].to_list()
        assert t["pixels"].dtype == np.uint8
        assert t["pixels"].shape == (rows.height, rows["bucket_h"][0], rows["bucket_w"][0], 3)
        first[e["file"]] = sha256_file(out / "cache" / e["file"])
        assert first[e["file"]] == e["sha256"]
    # the stored pixels are the centre crop of the cover-resized image
    r = bk.filter(pl.col("id") == 14).row(0, named=True)
    with Image.open(images / "files/0014/14.png") as im:
        ref = np.asarray(im.convert("RGB").resize((r["resized_w"], r["resized_h"]),
                                                  Image.Resampling.BOX))
    top, left = r["crop_top"], r["crop_left"]
    expect = ref[top : top + r["bucket_h"], left : left + r["bucket_w"]]
    assert np.array_equal(resize_and_crop(images / "files/0014/14.png", r), expect)
    _cache(images, out, CFG)  # a rerun gives the same bytes
    assert all(sha256_file(out / "cache" / f) == h for f, h in first.items())


def test_cache_none_writes_only_the_index_and_removes_stale_files(
    images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "buckets"
    _assign(images, out, CFG)
    _cache(images, out, CFG)
    assert _cache(images, out, {**CFG, "cache": "none"}) == 0
    assert sorted(p.name for p in (out / "cache").iterdir()) == [".prov", "index.json"]
    assert json.loads((out / "cache/index.json").read_text())["files"] == []


@pytest.mark.parametrize("bad, needle", [
    ({**CFG, "cache": "latent"}, "buckets.cache"),
    ({**CFG, "crop": "centre"}, "unknown key(s) ['crop']"),
    ({**CFG, "crop_convention": "sgm"}, "buckets.crop_convention"),
    ({**CFG, "max_size": 48}, "max_size 48"),
])
def test_bad_config_is_one_line_error(images: Path, tmp_path: Path, capsys, bad, needle) -> None:
    assert _assign(images, tmp_path / "b", bad) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    assert not (tmp_path / "b/buckets.parquet").exists()


def test_decoded_size_mismatch_is_refused(images: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "buckets"
    _assign(images, out, CFG)
    Image.new("RGB", (10, 10)).save(images / "files/0013/13.png")
    assert _cache(images, out, CFG) == 2
    assert "13.png: decoded size 10x10 != recorded 64x64" in capsys.readouterr().err


def test_latent_cache_is_the_base_vae_posterior_of_the_pixels(
    images: Path, tmp_path: Path, base: Path
) -> None:
    """`cache: latents` stores, per bucket, the unscaled posterior (mean, std) that --base's VAE
    gives for the very arrays `cache: pixels` stores; deterministic; names its base by sha256."""
    import torch

    from kxl.model.load import load_sdxl
    from kxl.model.vae import encode_posterior

    out = tmp_path / "buckets"
    _assign(images, out, CFG)
    assert _cache(images, out, CFG, cache="pixels") == 0
    model = ["--base", str(base / "base.safetensors"), "--config-dir", str(base / "config")]
    with torch_state():
        assert _cache(images, out, {**CFG, "cache": "latents"}, *model, "--batch-size", "2") == 0
    index = json.loads((out / "cache/index.json").read_text())
    assert index["storage"] == "latents" and index["scaled"] is False
    assert index["base_sha256"] == sha256_file(base / "base.safetensors")
    vae = load_sdxl(base / "base.safetensors", base / "config").vae.eval()
    assert index["vae_scaling_factor"] == vae.config.scaling_factor
    assert sum(e["count"] for e in index["files"]) == len(SIZES)
    for e in index["files"]:
        lat = load_file(str(out / "cache" / e["file"]))
        px = load_file(str(out / "pixels" / e["file"]))
        assert sha256_file(out / "cache" / e["file"]) == e["sha256"]
        assert np.array_equal(lat["ids"], px["ids"]) and sorted(lat["ids"]) == list(lat["ids"])
        n, h, w, _ = px["pixels"].shape
        assert lat["mean"].shape == lat["std"].shape == (n, 4, h // 8, w // 8)
        post = encode_posterior(vae, torch.from_numpy(px["pixels"]))
        np.testing.assert_allclose(lat["mean"], post.mean.numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(lat["std"], post.std.numpy(), rtol=0, atol=1e-5)
    with torch_state():  # a rerun gives the same bytes
        assert _cache(images, out, {**CFG, "cache": "latents"}, *model, "--batch-size", "2") == 0
    assert json.loads((out / "cache/index.json").read_text()) == index


def test_latent_cache_needs_the_base(images: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "buckets"
    _assign(images, out, CFG)
    assert _cache(images, out, {**CFG, "cache": "latents"}) == 2
    err = capsys.readouterr().err
    assert "needs --base and --config-dir" in err and err.count("\n") == 1
    assert not (out / "cache/index.json").exists()


def test_verify_sees_a_flipped_byte_in_the_cache(images: Path, tmp_path: Path) -> None:
    """Issue 21: `kxl verify` said 0 problems after one byte of a cache file was flipped."""
    from kxl.provenance import verify

    out = tmp_path / "buckets"
    _assign(images, out, CFG)
    assert _cache(images, out, CFG) == 0
    assert verify(out)[1] == []
    victim = sorted((out / "cache").glob("*.safetensors"))[-1]
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0x10
    victim.write_bytes(bytes(data))
    findings = [str(f) for f in verify(out)[1]]
    assert findings and all(f.startswith(f"{out / 'cache'}: bytes changed") for f in findings)
