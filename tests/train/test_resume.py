"""Exact resume on CPU: weights and optimizer state bit-identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import config_json, tiny_config

from kxl.config import from_dict
from kxl.train.checkpoint import KILL_HOOK
from kxl.train.config import TrainConfig

RUNNER = Path(__file__).with_name("run_tiny.py")
ROOT = Path(__file__).resolve().parents[2]


def _trainer(inputs, out: Path, run_inputs: dict | None = None, **over):
    from fixtures_train import build_models, stub_augment

    from kxl.train.data import PixelCache, load_plan_data
    from kxl.train.dist import World
    from kxl.train.trainer import Trainer

    cfg = from_dict(TrainConfig, tiny_config(**over), "train")
    data = load_plan_data(inputs["plan"], inputs["captions"], inputs["buckets"], 0, 1)
    world = World(0, 1, 0, torch.device("cpu"))
    return Trainer(
        build_models("tiny", seed=0),
        data,
        PixelCache(inputs["cache"]),
        cfg,
        1337,
        out,
        world,
        stub_augment,
        run_inputs,
    )


def _same_tensors(a: Path, b: Path) -> None:
    x, y = load_file(str(a)), load_file(str(b))
    assert x.keys() == y.keys()
    for k in x:
        assert torch.equal(x[k], y[k]), k


def test_in_process_resume_is_bit_identical(tiny_inputs, tmp_path) -> None:
    from kxl.train.trainer import run

    full = _trainer(tiny_inputs, tmp_path / "a", checkpoint_every=3)
    run(full, "none", tmp_path / "a.safetensors", log=lambda s: None)
    first = _trainer(tiny_inputs, tmp_path / "b", checkpoint_every=3, max_steps=3)
    run(first, "none", tmp_path / "b3.safetensors", log=lambda s: None)
    second = _trainer(tiny_inputs, tmp_path / "b", checkpoint_every=3)
    msgs: list[str] = []
    res = run(second, "auto", tmp_path / "b.safetensors", log=msgs.append)
    assert res.steps_run == 3 and "step-00000003" in msgs[0]
    _same_tensors(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    for name in ("lokr.safetensors", "state.safetensors"):
        _same_tensors(
            tmp_path / "a/checkpoints/step-00000006" / name,
            tmp_path / "b/checkpoints/step-00000006" / name,
        )
    # metrics of the resumed run continue the first one's rows exactly
    rows = (tmp_path / "b/metrics.csv").read_text().splitlines()
    ref = (tmp_path / "a/metrics.csv").read_text().splitlines()
    assert [r.split(",")[1] for r in rows] == [r.split(",")[1] for r in ref]


def _start(inputs_dir: Path, out: Path, env_extra: dict | None = None) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    cfg = config_json(checkpoint_every=1, keep_last=3)
    return subprocess.Popen(
        [sys.executable, str(RUNNER), str(inputs_dir), str(out), "auto", cfg],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _finish(p: subprocess.Popen) -> None:
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-2000:]


def _rows(out: Path) -> int:
    f = out / "metrics.running.csv"
    return max(0, len(f.read_text().splitlines()) - 1) if f.is_file() else 0


@pytest.fixture(scope="module")
def reference(tiny_inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref")
    _finish(_start(tiny_inputs["plan"].parent, out))
    return out


def _assert_same_run(a: Path, b: Path) -> None:
    _same_tensors(a / "lokr.safetensors", b / "lokr.safetensors")
    last_a, last_b = a / "checkpoints/step-00000006", b / "checkpoints/step-00000006"
    # same sha256 of the adapter, the optimizer/scheduler/scaler/rng tensors and the JSON state
    assert json.loads((last_a / "manifest.json").read_text()) == json.loads(
        (last_b / "manifest.json").read_text()
    )
    rows_a, rows_b = ((d / "metrics.csv").read_text().splitlines() for d in (a, b))
    assert [r.split(",")[1] for r in rows_a] == [r.split(",")[1] for r in rows_b]


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_rows", [1, 4])
def test_sigkill_then_resume_matches(reference, tiny_inputs, tmp_path, kill_after_rows) -> None:
    out = tmp_path / "run"
    p = _start(tiny_inputs["plan"].parent, out)
    deadline = time.time() + 300
    while _rows(out) < kill_after_rows and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(random.Random(kill_after_rows).uniform(0.0, 0.15))  # land anywhere in the next step
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert _rows(out) < 6, "killed too late to test anything"
    _finish(_start(tiny_inputs["plan"].parent, out))
    _assert_same_run(reference, out)


@pytest.mark.slow
def test_kill_during_checkpoint_write_falls_back(reference, tiny_inputs, tmp_path) -> None:
    out = tmp_path / "run"
    p = _start(tiny_inputs["plan"].parent, out, {KILL_HOOK: "3"})
    p.wait(timeout=300)
    assert p.returncode == -signal.SIGKILL
    ck = out / "checkpoints"
    assert not (ck / "step-00000003").exists()  # never a half-written checkpoint under its name
    assert any(x.name.startswith(".tmp-step-00000003") for x in ck.iterdir())
    _finish(_start(tiny_inputs["plan"].parent, out))
    _assert_same_run(reference, out)
    assert not any(x.name.startswith(".tmp-") for x in ck.iterdir())


@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back_to_previous(reference, tiny_inputs, tmp_path) -> None:
    out = tmp_path / "run"
    _finish(_start(tiny_inputs["plan"].parent, out))
    for s in (5, 6):
        f = out / f"checkpoints/step-{s:08d}/state.safetensors"
        f.write_bytes(f.read_bytes()[:100])
    p = _start(tiny_inputs["plan"].parent, out)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0
    assert "step-00000006/state.safetensors: truncated" in err.decode()
    _assert_same_run(reference, out)


def test_checkpoint_of_another_run_is_refused_or_set_aside(tiny_inputs, tmp_path) -> None:
    from kxl.errors import KxlError
    from kxl.train.trainer import run

    quiet = lambda s: None  # noqa: E731
    base1, base2 = {"base": "1" * 64}, {"base": "2" * 64}
    first = _trainer(tiny_inputs, tmp_path / "a", base1, checkpoint_every=1, max_steps=1)
    run(first, "none", tmp_path / "a.safetensors", log=quiet)
    ck = str(tmp_path / "a/checkpoints/step-00000001")
    # an explicit checkpoint of another config or other inputs is refused, naming why
    other = _trainer(tiny_inputs, tmp_path / "a", base1, noise_offset=0.05)
    with pytest.raises(KxlError, match=r"train.noise_offset=0.0357.*0.05"):
        run(other, ck, tmp_path / "b.safetensors", log=quiet)
    with pytest.raises(KxlError, match=r"another base \(sha256 111111111111\.\.\., now 2222"):
        run(_trainer(tiny_inputs, tmp_path / "a", base2), ck, tmp_path / "b.safetensors", log=quiet)
    # bookkeeping keys may change: max_steps / checkpoint cadence
    again = _trainer(tiny_inputs, tmp_path / "a", base1, checkpoint_every=2, max_steps=2)
    assert run(again, "auto", tmp_path / "c.safetensors", log=quiet).steps_run == 1
    # auto (what the workflow runs): another base is a new run; old checkpoints moved, not lost
    msgs: list[str] = []
    fresh = _trainer(tiny_inputs, tmp_path / "a", base2, checkpoint_every=1, max_steps=2)
    assert run(fresh, "auto", tmp_path / "d.safetensors", log=msgs.append).steps_run == 2
    assert "another base" in msgs[0] and "superseded" in msgs[0]
    moved = sorted((tmp_path / "a/superseded").glob("checkpoints-*/step-*"))
    assert [p.name for p in moved] == ["step-00000001", "step-00000002"]
    assert [c.step for c in fresh.ckpt.list()] == [1, 2]
    # started at step 0: its step-1 adapter is the first run's
    _same_tensors(tmp_path / "a.safetensors",
                  tmp_path / "a/checkpoints/step-00000001/lokr.safetensors")


def test_gradient_checkpointing_changes_memory_not_math(tiny_inputs, tmp_path) -> None:
    """Recomputed activations give the same weights, and the text encoders' LoKr still
    learns inside the checkpointed layers."""
    from kxl.train.trainer import run

    plain = _trainer(tiny_inputs, tmp_path / "a", max_steps=3)
    run(plain, "none", tmp_path / "a.safetensors", log=lambda s: None)
    ckpt = _trainer(tiny_inputs, tmp_path / "b", max_steps=3, gradient_checkpointing=True)
    assert ckpt.m.unet.is_gradient_checkpointing
    assert ckpt.m.text_encoder_2.text_model.encoder.gradient_checkpointing
    run(ckpt, "none", tmp_path / "b.safetensors", log=lambda s: None)
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-7, msg=k)
    # trained TE LoKr factors moved from their init (w2 of a full-matrix LoKr starts at zero)
    te = [k for k in b if k.startswith("lora_te2_") and k.endswith("lokr_w2")]
    assert te and any(b[k].abs().max() > 0 for k in te)


def test_final_lokr_bytes_depend_only_on_its_values(tiny_inputs, tmp_path) -> None:
    """Metadata in sorted order, so a rewrite of the same adapter gives the same bytes (the
    local and SLURM runs once differed only in the order of the header's metadata)."""
    import struct

    from kxl.train.trainer import run, write_lokr

    tr = _trainer(tiny_inputs, tmp_path / "a", max_steps=1)
    run(tr, "none", tmp_path / "a.safetensors", log=lambda s: None)
    write_lokr(tr, tmp_path / "b.safetensors")
    a, b = (tmp_path / "a.safetensors").read_bytes(), (tmp_path / "b.safetensors").read_bytes()
    assert a == b
    header = json.loads(a[8 : 8 + struct.unpack("<Q", a[:8])[0]])
    meta = header["__metadata__"]
    assert len(meta) >= 6 and list(meta) == sorted(meta)


def test_save_precision_casts_the_final_file_only(tiny_inputs, tmp_path) -> None:
    """sd-scripts --save_precision fp16: the final LoKr holds the fp32 factors rounded to fp16;
    checkpoints keep fp32 so a resume continues the trained values, not their rounding."""
    from safetensors import safe_open

    from kxl.train.trainer import run

    run(_trainer(tiny_inputs, tmp_path / "a", max_steps=2), "none", tmp_path / "a.safetensors",
        log=lambda s: None)
    half = _trainer(tiny_inputs, tmp_path / "b", max_steps=2, checkpoint_every=2,
                    save_precision="fp16")
    run(half, "none", tmp_path / "b.safetensors", log=lambda s: None)
    full = load_file(str(tmp_path / "a.safetensors"))
    low = load_file(str(tmp_path / "b.safetensors"))
    assert full.keys() == low.keys()
    for k in full:
        assert low[k].dtype == torch.float16 and full[k].dtype == torch.float32, k
        assert torch.equal(low[k], full[k].to(torch.float16)), k
    ck = load_file(str(tmp_path / "b/checkpoints/step-00000002/lokr.safetensors"))
    assert all(v.dtype == torch.float32 for v in ck.values())
    with safe_open(str(tmp_path / "b.safetensors"), "pt") as f:
        assert f.metadata()["kxl_save_precision"] == "fp16"
    # half the tensor bytes (the tiny file's header, ~0.4 MB of key names, is the same)
    sizes = [(tmp_path / f"{n}.safetensors").stat().st_size for n in "ab"]
    tensor_bytes = sum(v.numel() * 4 for v in full.values())
    assert abs(sizes[0] - sizes[1] - tensor_bytes // 2) < 4096  # offsets' digits in the header


def test_progress_lines_are_rate_limited_and_end_with_the_last_step() -> None:
    from kxl.train.trainer import Progress

    row = {"loss": 0.125, "images_per_s": 8.0}
    quiet: list[str] = []
    p = Progress(2, 6, quiet.append, every_s=3600)
    for done in range(3, 7):
        p.update(done, row)
    assert len(quiet) == 1 and quiet[0].startswith("step 6/6: loss 0.1250, 8.0 img/s, ")
    chatty: list[str] = []
    p = Progress(0, 3, chatty.append, every_s=0)
    for done in range(1, 4):
        p.update(done, row)
    assert [m.split(":")[0] for m in chatty] == ["step 1/3", "step 2/3", "step 3/3"]
    assert all(m.endswith(" h") and "eta" in m for m in chatty)
    Progress(0, 3, None, every_s=0).update(3, row)  # other ranks: no log at all


@pytest.mark.parametrize(("value", "precision", "message"), [
    (1e5, "fp16", "reaches 1e\\+05, past fp16's 65504"),
    (float("nan"), "bf16", "holds NaN or inf"),
])
def test_a_final_file_the_precision_cannot_hold_is_refused(tiny_inputs, tmp_path, value,
                                                           precision, message) -> None:
    """fp16's largest finite value is 65504 (IEEE 754 binary16): 1e5 would be written as inf."""
    from kxl.errors import KxlError
    from kxl.train.trainer import write_lokr

    trainer = _trainer(tiny_inputs, tmp_path / "a", save_precision=precision)
    first = trainer.params[0]
    with torch.no_grad():
        first.view(-1)[0] = value
    out = tmp_path / "lokr.safetensors"
    with pytest.raises(KxlError, match=message) as err:
        write_lokr(trainer, out)
    assert "\n" not in str(err.value) and not out.exists()
    with torch.no_grad():
        first.view(-1)[0] = 60000.0  # representable in fp16: written
    write_lokr(trainer, out)
    assert out.is_file()
