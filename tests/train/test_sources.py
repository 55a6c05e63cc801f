"""Image sources: the bucket cache (`pixels`) and decoding images/files/... (`none`, the full
run's storage) give identical arrays, so training is bit-identical whichever storage was used;
the `latents` cache holds those arrays' VAE posterior and trains the same LoKr (to rounding)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from train_helpers import tiny_config

from kxl.config import from_dict
from kxl.errors import KxlError
from kxl.train.config import TrainConfig
from kxl.train.data import (
    DecodedImages,
    LatentCache,
    PixelCache,
    load_plan_data,
    open_pixel_source,
)

STEPS = 3
BASE_SHA = "ab" * 32  # what the latents cache says its base was; training must present the same


@pytest.fixture(scope="module")
def images(tiny_inputs, tmp_path_factory):
    from fixtures_train import build_models, write_tiny_images

    vae = build_models("tiny", seed=0).vae  # the VAE _train's models have
    return write_tiny_images(
        tmp_path_factory.mktemp("images"), tiny_inputs["buckets"], vae=vae, base_sha256=BASE_SHA
    )


def _source(tiny_inputs, images, storage: str, post_ids=None):
    return open_pixel_source(
        images[f"index_{storage}"],
        tiny_inputs["buckets"],
        images["dataset"],
        images["images_root"],
        post_ids,
        base_sha256=lambda: BASE_SHA,
    )


def _plan(inputs, rank: int, world: int):
    return load_plan_data(inputs["plan"], inputs["captions"], inputs["buckets"], rank, world)


def test_index_picks_the_source(tiny_inputs, images) -> None:
    assert isinstance(_source(tiny_inputs, images, "pixels"), PixelCache)
    assert isinstance(_source(tiny_inputs, images, "none"), DecodedImages)
    assert isinstance(_source(tiny_inputs, images, "latents"), LatentCache)


def test_decoded_images_equal_the_pixel_cache(tiny_inputs, images) -> None:
    cache, decoded = (_source(tiny_inputs, images, s) for s in ("pixels", "none"))
    data = _plan(tiny_inputs, 0, 1)
    seen = 0
    for step in data.steps:
        for mb in data.micro_batches(int(step)):
            a, b = cache.get(mb.bucket, mb.post_ids), decoded.get(mb.bucket, mb.post_ids)
            assert a.dtype == b.dtype == torch.uint8 and a.shape[0] == len(mb.post_ids)
            assert torch.equal(a, b), (int(step), mb.micro)
            seen += len(mb.post_ids)
    assert seen == len(data.rows)


def test_decodes_only_this_ranks_rows(tiny_inputs, images) -> None:
    half = _plan(tiny_inputs, 1, 2)
    ids = half.rows["post_id"].to_numpy()
    src = _source(tiny_inputs, images, "none", ids)
    assert sorted(src.ids.tolist()) == sorted(set(ids.tolist())) and len(src.ids) == 12
    other = _plan(tiny_inputs, 0, 2).micro_batches(0)[0]
    with pytest.raises(KxlError, match=f"post_id {other.post_ids[0]} has no row"):
        src.get(other.bucket, other.post_ids)


def test_bucket_disagreeing_with_plan_is_named(tiny_inputs, images) -> None:
    src = _source(tiny_inputs, images, "none")
    pid = int(src.ids[0])
    bucket = int(src.rows["bucket"][0])
    with pytest.raises(KxlError, match=f"post_id {pid} is in bucket {bucket}, the plan says 9"):
        src.get(9, np.array([pid]))


def test_storage_none_needs_the_dataset(tiny_inputs, images) -> None:
    with pytest.raises(KxlError, match="storage none .* --dataset"):
        open_pixel_source(images["index_none"], tiny_inputs["buckets"])


@pytest.mark.parametrize(
    ("text", "match"),
    [("{", "cannot read the bucket cache index"), ('{"storage": "vae"}', "'vae' is not pixels")],
)
def test_bad_index_is_one_line(tiny_inputs, tmp_path, text, match) -> None:
    (tmp_path / "index.json").write_text(text)
    with pytest.raises(KxlError, match=match):
        open_pixel_source(tmp_path / "index.json", tiny_inputs["buckets"])


def test_latent_cache_is_the_vae_posterior_of_the_pixel_cache(tiny_inputs, images) -> None:
    """Each latents file holds, per id, the unscaled posterior of the pixel cache's array, even
    though it was encoded in batches of 3 and this encodes each bucket in one call."""
    from fixtures_train import build_models
    from safetensors.numpy import load_file as load_np

    from kxl.model.vae import encode_posterior

    vae = build_models("tiny", seed=0).vae.eval()
    index = json.loads(images["index_latents"].read_text())
    assert index["storage"] == "latents" and len(index["files"]) == 2
    for e in index["files"]:
        lat = load_np(str(images["index_latents"].parent / e["file"]))
        px = load_np(str(images["index_pixels"].parent / e["file"]))
        n, h, w, _ = px["pixels"].shape
        assert lat["ids"].dtype == np.int64 and np.array_equal(lat["ids"], px["ids"])
        assert lat["mean"].dtype == lat["std"].dtype == np.float32
        assert lat["mean"].shape == lat["std"].shape == (n, 4, h // 8, w // 8)
        post = encode_posterior(vae, torch.from_numpy(px["pixels"]))
        # Batches of 3 vs one call, and whatever thread count earlier tests left, split the
        # reductions differently: up to 2e-4 apart in a full-suite run. A wrong row, bucket or
        # layout is off by about the values' spread (std > 0.05, asserted below; ~0.2 here).
        np.testing.assert_allclose(lat["mean"], post.mean.numpy(), rtol=0, atol=2e-3)
        np.testing.assert_allclose(lat["std"], post.std.numpy(), rtol=0, atol=2e-3)
        assert (lat["std"] > 0).all() and lat["mean"].std() > 0.05  # not a degenerate VAE


def test_latent_cache_of_another_base_is_refused(tiny_inputs, images) -> None:
    buckets = tiny_inputs["buckets"]
    with pytest.raises(KxlError, match="another base model .* re-run cache-buckets") as e:
        open_pixel_source(images["index_latents"], buckets, base_sha256=lambda: "cd" * 32)
    assert "\n" not in str(e.value) and "abababababab" in str(e.value)
    with pytest.raises(KxlError, match="needs the base model's sha256"):
        open_pixel_source(images["index_latents"], buckets)
    # the base is hashed only to check a latents cache (seconds for SDXL)
    never = lambda: pytest.fail("hashed the base for a pixel cache")  # noqa: E731
    assert isinstance(open_pixel_source(images["index_pixels"], buckets, base_sha256=never),
                      PixelCache)


def test_latent_index_with_a_missing_file_is_one_line(tiny_inputs, images, tmp_path) -> None:
    index = json.loads(images["index_latents"].read_text())
    (tmp_path / "index.json").write_text(json.dumps(index))  # its files are not beside it
    with pytest.raises(KxlError, match="lists 000.safetensors but .* no such file") as e:
        open_pixel_source(
            tmp_path / "index.json", tiny_inputs["buckets"], base_sha256=lambda: BASE_SHA
        )
    assert "\n" not in str(e.value) and "re-run cache-buckets" in str(e.value)


def _train(tiny_inputs, source, out) -> None:
    from fixtures_train import build_models, stub_augment

    from kxl.train.dist import World
    from kxl.train.trainer import Trainer, run

    cfg = from_dict(TrainConfig, tiny_config(max_steps=STEPS), "train")
    data = _plan(tiny_inputs, 0, 1)
    world = World(0, 1, 0, torch.device("cpu"))
    trainer = Trainer(
        build_models("tiny", seed=0), data, source, cfg, 1337, out, world, stub_augment,
    )
    run(trainer, "none", out / "lokr.safetensors", log=lambda s: None)


def test_training_with_cache_none_is_bit_identical(tiny_inputs, images, tmp_path, monkeypatch):
    import kxl.buckets.cache

    decodes: list[int] = []
    real = kxl.buckets.cache.resize_and_crop
    monkeypatch.setattr(
        kxl.buckets.cache, "resize_and_crop", lambda *a: decodes.append(1) or real(*a)
    )
    _train(tiny_inputs, _source(tiny_inputs, images, "pixels"), tmp_path / "pixels")
    assert decodes == []
    _train(tiny_inputs, _source(tiny_inputs, images, "none"), tmp_path / "none")
    # each step decodes exactly its own images: 2 plan ranks x 1 micro x 2 slots
    assert len(decodes) == STEPS * 4
    a = load_file(str(tmp_path / "pixels/lokr.safetensors"))
    b = load_file(str(tmp_path / "none/lokr.safetensors"))
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # same per-step losses, and the steps did update (non-zero gradients)
    rows = [
        (tmp_path / d / "metrics.csv").read_text().splitlines()[1:] for d in ("pixels", "none")
    ]
    # step, loss, lr_text_encoder, lr_unet, grad_norm, scaler_scale (images_per_s is timing)
    assert [r.split(",")[:6] for r in rows[0]] == [r.split(",")[:6] for r in rows[1]]
    assert len(rows[0]) == STEPS and all(float(r.split(",")[4]) > 0 for r in rows[0])


def _trainer(tiny_inputs, source, out):
    from fixtures_train import build_models, stub_augment

    from kxl.train.dist import World
    from kxl.train.trainer import Trainer

    cfg = from_dict(TrainConfig, tiny_config(max_steps=STEPS), "train")
    data = _plan(tiny_inputs, 0, 1)
    world = World(0, 1, 0, torch.device("cpu"))
    return Trainer(
        build_models("tiny", seed=0), data, source, cfg, 1337, out, world, stub_augment,
    )


def _grads(tiny_inputs, source, out) -> list[torch.Tensor]:
    """Gradients of one optimizer step's micro-batches, at LoKr weights moved off their w2 = 0
    start by the same seeded noise (else every w1 gradient is exactly zero)."""
    trainer = _trainer(tiny_inputs, source, out)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in trainer.params:
            p.add_(torch.randn(p.shape, generator=gen) * 1e-2)
    for mb in trainer.data.micro_batches(int(trainer.data.steps[1])):
        trainer.micro_loss(mb).backward()
    return [torch.zeros_like(p) if p.grad is None else p.grad for p in trainer.params]


def test_latents_give_the_pixel_gradients(tiny_inputs, images, tmp_path) -> None:
    """Training math: the same posterior sample, noise and timesteps from the micro-batch's
    generator, so every LoKr gradient matches; what differs is the cache's batching (3 images
    per VAE call, not training's micro-batches): rounding of ~1e-6 of the largest gradient."""
    a = _grads(tiny_inputs, _source(tiny_inputs, images, "pixels"), tmp_path / "pixels")
    b = _grads(tiny_inputs, _source(tiny_inputs, images, "latents"), tmp_path / "latents")
    assert len(a) == len(b) > 100
    top = max(float(g.abs().max()) for g in a)
    assert top > 0 and sum(bool(g.any()) for g in a) > 0.9 * len(a)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        torch.testing.assert_close(
            y, x, rtol=1e-4, atol=1e-5 * top, msg=lambda m, i=i: f"param {i}: {m}"
        )


def test_training_with_cache_latents_matches_pixels(tiny_inputs, images, tmp_path, monkeypatch):
    """Three optimizer steps: the same losses and gradient norms, the same LoKr up to Lion's
    sign. Lion moves every element by lr * sign(update); where the update is ~0 (a gradient of
    pure rounding noise) the caches' rounding can flip the sign, so a few elements differ by
    whole steps of 2 * lr and the rest agree to rtol 1e-4."""
    from diffusers import AutoencoderKL

    _train(tiny_inputs, _source(tiny_inputs, images, "pixels"), tmp_path / "pixels")
    encodes: list[int] = []
    real = AutoencoderKL.encode
    monkeypatch.setattr(AutoencoderKL, "encode", lambda *a, **k: encodes.append(1) or real(*a, **k))
    _train(tiny_inputs, _source(tiny_inputs, images, "latents"), tmp_path / "latents")
    assert encodes == []  # the latents path runs no VAE
    rows = [
        (tmp_path / d / "metrics.csv").read_text().splitlines()[1:] for d in ("pixels", "latents")
    ]
    # step, loss, lr_text_encoder, lr_unet, grad_norm: a shifted generator stream (another
    # noise or timestep draw) changes the loss at step 0 by far more than this
    cols = [np.array([[float(v) for v in r.split(",")[:5]] for r in part]) for part in rows]
    assert cols[0].shape == (STEPS, 5) and (cols[0][:, 4] > 0).all()
    np.testing.assert_allclose(cols[1], cols[0], rtol=1e-5)
    a = load_file(str(tmp_path / "pixels/lokr.safetensors"))
    b = load_file(str(tmp_path / "latents/lokr.safetensors"))
    assert a.keys() == b.keys() and len(a) > 10
    lr = tiny_config()["lr_unet"]
    close = total = 0
    for k in a:
        diff = (a[k] - b[k]).abs()
        close += int((diff <= 1e-6 + 1e-4 * a[k].abs()).sum())
        total += diff.numel()
        assert float(diff.max()) <= 2 * lr * STEPS + 1e-6, k
    assert close >= 0.99 * total, (close, total)


@pytest.mark.parametrize("storage", ["pixels", "latents"])
def test_a_flipped_byte_in_the_cache_is_refused_on_open(tiny_inputs, images, tmp_path,
                                                          storage) -> None:
    """Issue 21: one flipped byte in buckets/cache/002.safetensors trained without a warning."""
    import shutil

    folder = tmp_path / storage
    shutil.copytree(images[f"index_{storage}"].parent, folder)
    plan = _plan(tiny_inputs, 0, 1)
    mb = plan.micro_batches(int(plan.steps[0]))[0]
    victim = folder / f"{mb.bucket:03d}.safetensors"
    data = bytearray(victim.read_bytes())
    data[-5] ^= 0x01  # inside the last tensor's bytes: the header still parses
    victim.write_bytes(bytes(data))
    src = open_pixel_source(folder / "index.json", tiny_inputs["buckets"],
                            base_sha256=lambda: BASE_SHA)
    with pytest.raises(KxlError, match=rf"{victim.name}: sha256 \w{{12}}\.\.\. differs from "
                                       r".*index.json's \w{12}\.\.\. \(corrupt"):
        src.get(mb.bucket, mb.post_ids)
