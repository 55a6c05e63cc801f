"""Pixel sources: the bucket cache (`pixels`) and decoding images/files/... (`none`, the full
run's storage) give identical arrays, so training is bit-identical whichever storage was used."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from train_helpers import tiny_config

from kxl.config import from_dict
from kxl.errors import KxlError
from kxl.train.config import TrainConfig
from kxl.train.data import DecodedImages, PixelCache, load_plan_data, open_pixel_source

STEPS = 3


@pytest.fixture(scope="module")
def images(tiny_inputs, tmp_path_factory):
    from kxl.train.testing import write_tiny_images

    return write_tiny_images(tmp_path_factory.mktemp("images"), tiny_inputs["buckets"])


def _source(tiny_inputs, images, storage: str, post_ids=None):
    return open_pixel_source(
        images[f"index_{storage}"],
        tiny_inputs["buckets"],
        images["dataset"],
        images["images_root"],
        post_ids,
    )


def _plan(inputs, rank: int, world: int):
    return load_plan_data(inputs["plan"], inputs["captions"], inputs["buckets"], rank, world)


def test_index_picks_the_source(tiny_inputs, images) -> None:
    assert isinstance(_source(tiny_inputs, images, "pixels"), PixelCache)
    assert isinstance(_source(tiny_inputs, images, "none"), DecodedImages)


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
    [("{", "cannot read the bucket cache index"), ('{"storage": "latents"}', "'latents' is not")],
)
def test_bad_index_is_one_line(tiny_inputs, tmp_path, text, match) -> None:
    (tmp_path / "index.json").write_text(text)
    with pytest.raises(KxlError, match=match):
        open_pixel_source(tmp_path / "index.json", tiny_inputs["buckets"])


def _train(tiny_inputs, source, out) -> None:
    from kxl.train.dist import World
    from kxl.train.testing import build_models, stub_augment
    from kxl.train.trainer import CaptionAug, Trainer, run

    cfg = from_dict(TrainConfig, tiny_config(max_steps=STEPS), "train")
    data = _plan(tiny_inputs, 0, 1)
    world = World(0, 1, 0, torch.device("cpu"))
    trainer = Trainer(
        build_models("tiny", seed=0), data, source, cfg, 1337, out, world, stub_augment,
        CaptionAug(True, 0.15),
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
