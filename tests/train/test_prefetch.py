"""Read-ahead of storage `none` (issue 18 section 4): the plan's next micro-batches decoded in
worker processes give the inline path's bytes, in plan order, from the resume position on;
a bad image is one line naming it; no worker outlives the run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import psutil
import pytest
import torch
from train_helpers import tiny_config

from kxl.config import from_dict
from kxl.errors import KxlError
from kxl.train.config import TrainConfig
from kxl.train.data import DecodedImages, load_plan_data, open_pixel_source
from kxl.train.prefetch import ReadAhead


@pytest.fixture(scope="module")
def images(tiny_inputs, tmp_path_factory):
    from fixtures_train import write_tiny_images

    return write_tiny_images(tmp_path_factory.mktemp("images"), tiny_inputs["buckets"])


def _decoded(tiny_inputs, images, root=None) -> DecodedImages:
    src = open_pixel_source(images["index_none"], tiny_inputs["buckets"], images["dataset"],
                            root or images["images_root"])
    assert isinstance(src, DecodedImages)
    return src


def _plan(inputs, rank: int = 0, world: int = 1):
    return load_plan_data(inputs["plan"], inputs["captions"], inputs["buckets"], rank, world)


def _workers() -> set[int]:
    """pids of this process's multiprocessing workers (spawn_main), not its resource tracker."""
    return {c.pid for c in psutil.Process().children(recursive=True)
            if any("spawn_main" in a for a in c.cmdline())}


@pytest.mark.parametrize(("rank", "world", "start"), [(0, 1, 0), (0, 1, 4), (1, 2, 1)])
def test_requests_are_the_micro_batches_in_plan_order(tiny_inputs, rank, world, start) -> None:
    data = _plan(tiny_inputs, rank, world)
    want = [(mb.bucket, mb.post_ids.tolist()) for s in data.steps[start:]
            for mb in data.micro_batches(int(s))]
    got = [(b, ids.tolist()) for b, ids in data.requests(start, data.num_steps)]
    assert got == want and len(want) == (data.num_steps - start) * 2 // world
    assert list(data.requests(data.num_steps, data.num_steps)) == []


def test_read_ahead_gives_the_inline_bytes_for_a_whole_epoch(tiny_inputs, images) -> None:
    """Every micro-batch of the default tiny plan (one epoch: each image once), inline vs 2
    workers with 2 micro-batches each in flight; the pool is gone afterwards."""
    inline, data = _decoded(tiny_inputs, images), _plan(tiny_inputs)
    before = _workers()
    seen = 0
    with ReadAhead(inline, data.requests(0, data.num_steps), workers=2, prefetch=2) as ahead:
        assert len(ahead.queue) == 4  # workers * prefetch in flight, no more
        for step in data.steps:
            for mb in data.micro_batches(int(step)):
                a, b = inline.get(mb.bucket, mb.post_ids), ahead.get(mb.bucket, mb.post_ids)
                assert a.dtype == b.dtype == torch.uint8 and a.shape[0] == len(mb.post_ids)
                assert torch.equal(a, b), (int(step), mb.micro)
                seen += len(mb.post_ids)
        assert len(_workers() - before) == 2
    assert seen == len(data.rows) == data.rows["post_id"].n_unique()
    assert _workers() == before


def test_asking_out_of_plan_order_is_refused(tiny_inputs, images) -> None:
    inline, data = _decoded(tiny_inputs, images), _plan(tiny_inputs)
    _, second = data.micro_batches(int(data.steps[0]))
    with (ReadAhead(inline, data.requests(0, 1), workers=1, prefetch=1) as ahead,
          pytest.raises(KxlError, match="the plan's next micro-batch .* kxl bug")):
        ahead.get(second.bucket, second.post_ids)


def _trainer(tiny_inputs, source, out, **over):
    from fixtures_train import build_models, stub_augment

    from kxl.train.dist import World
    from kxl.train.trainer import Trainer

    cfg = from_dict(TrainConfig, tiny_config(**over), "train")
    return Trainer(build_models("tiny", seed=0), _plan(tiny_inputs), source, cfg, 1337, out,
                   World(0, 1, 0, torch.device("cpu")), stub_augment)


def _train(tiny_inputs, source, out, resume: str = "none", **over):
    from kxl.train.trainer import run

    msgs: list[str] = []
    result = run(_trainer(tiny_inputs, source, out, **over), resume, out / "lokr.safetensors",
                 log=msgs.append)
    return result, msgs


def test_training_with_data_workers_is_bit_identical(tiny_inputs, images, tmp_path) -> None:
    """The final LoKr's tensors and the per-step metrics: workers 0, workers 2, and workers 2
    resumed from the step-3 checkpoint (the read-ahead starts at the resumed step, not at 0).
    The files' metadata differ only by the recorded train config."""
    import shutil

    from safetensors.torch import load_file

    src = _decoded(tiny_inputs, images)
    before = _workers()
    _train(tiny_inputs, src, tmp_path / "inline", checkpoint_every=0)
    _train(tiny_inputs, src, tmp_path / "workers", data_workers=2, checkpoint_every=3)
    step3 = "checkpoints/step-00000003"
    shutil.copytree(tmp_path / "workers" / step3, tmp_path / "resumed" / step3)
    res, msgs = _train(tiny_inputs, src, tmp_path / "resumed", "auto", data_workers=2,
                       prefetch=1, checkpoint_every=3)
    assert res.steps_run == 3 and "resumed from" in msgs[0], msgs
    lokr = {d: load_file(str(tmp_path / d / "lokr.safetensors"))
            for d in ("inline", "workers", "resumed")}
    assert len(lokr["inline"]) > 10
    for d in ("workers", "resumed"):
        assert lokr[d].keys() == lokr["inline"].keys()
        for k, v in lokr["inline"].items():
            assert torch.equal(lokr[d][k], v), (d, k)
    rows = [(tmp_path / d / "metrics.csv").read_text().splitlines()[1:]
            for d in ("inline", "workers")]
    # step, loss, lr_text_encoder, lr_unet, grad_norm, scaler_scale (images_per_s is timing)
    assert [r.split(",")[:6] for r in rows[0]] == [r.split(",")[:6] for r in rows[1]]
    assert _workers() == before


@pytest.mark.parametrize("workers", [0, 2])
def test_a_corrupt_image_is_one_line_naming_it(tiny_inputs, images, tmp_path, workers) -> None:
    """A file Pillow cannot read, needed at step 1: training stops there with one KxlError line
    naming the file (not a worker's traceback), and the pool is shut down."""
    import shutil

    root = tmp_path / "images"
    shutil.copytree(images["images_root"] / "files", root / "files")
    src, data = _decoded(tiny_inputs, images, root), _plan(tiny_inputs)
    victim = src.rows.filter(src.rows["id"] == int(data.micro_batches(1)[0].post_ids[1]))
    path = root / victim["file"][0]
    path.write_bytes(path.read_bytes()[:40])  # a truncated PNG
    before = _workers()
    with pytest.raises(KxlError) as e:
        _train(tiny_inputs, src, tmp_path / "out", data_workers=workers, checkpoint_every=1)
    msg = str(e.value)
    assert msg.startswith(f"{path}: cannot decode the image") and "\n" not in msg, msg
    assert e.value.__cause__ is None and e.value.__suppress_context__
    assert json.loads((tmp_path / "out/checkpoints/step-00000001/manifest.json").read_text())
    assert _workers() == before


def test_workers_import_no_torch() -> None:
    """What a spawned worker imports to run decode_rows (kxl.train.data and kxl.buckets.cache)
    leaves torch out: its import alone would cost each worker seconds and hundreds of MB."""
    code = ("import sys, kxl.train.data, kxl.buckets.cache; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("over", [{"data_workers": -1}, {"prefetch": 0}])
def test_bad_read_ahead_settings_are_one_line(over) -> None:
    with pytest.raises(KxlError, match="data_workers .* must be >= 0 and prefetch .* >= 1"):
        from_dict(TrainConfig, tiny_config(**over), "train")


def test_pixel_cache_is_read_inline(tiny_inputs, tmp_path) -> None:
    from kxl.train.data import PixelCache

    trainer = _trainer(tiny_inputs, PixelCache(tiny_inputs["cache"]), tmp_path, data_workers=2)
    with trainer.read_ahead(0):
        assert isinstance(trainer.pixels, PixelCache) and not _workers()
    assert np.isfinite(trainer.step(0)["loss"])
