"""train.init_lokr / init_step (issue 20 section 4): continue from a LoKr file in kohya keys (as
the released step files are) at plan step N, with the exact data order from there and a fresh
optimizer; a file of another network stops the run with one line."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch
from safetensors.torch import load_file, save_file
from train_helpers import tiny_trainer

from kxl.errors import KxlError
from kxl.train.trainer import run

STEP = 2  # the released file's step, here


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def released(tiny_inputs, tmp_path_factory) -> dict:
    """Another run: its LoKr written at step 2 in fp16 (as released), and its 4-step metrics."""
    tmp = tmp_path_factory.mktemp("released")
    run(tiny_trainer(tiny_inputs, tmp / "a", {"max_steps": STEP, "save_precision": "fp16"}),
        "none", tmp / "step2.safetensors", log=quiet)
    run(tiny_trainer(tiny_inputs, tmp / "b", {"max_steps": 4}), "none", tmp / "b.safetensors",
        log=quiet)
    return {"lokr": tmp / "step2.safetensors",
            "metrics": pl.read_csv(tmp / "b" / "metrics.csv")}


def test_continues_from_the_file_at_its_step_with_a_fresh_optimizer(tiny_inputs, released,
                                                                      tmp_path) -> None:
    over = {"init_lokr": str(released["lokr"]), "init_step": STEP, "max_steps": 4}
    trainer = tiny_trainer(tiny_inputs, tmp_path / "c", over)
    lines: list[str] = []
    trainer.init_from_lokr(lines.append)
    start = load_file(str(released["lokr"]))
    own = trainer.adapter.state_dict()
    assert own.keys() == start.keys()
    assert all(torch.equal(own[k], start[k].float()) for k in own)  # fp16 file, fp32 factors
    assert trainer.position.next_step == STEP and trainer.optimizer.state_dict()["state"] == {}
    assert "initialised the LoKr from" in lines[0]

    trainer = tiny_trainer(tiny_inputs, tmp_path / "d", over)
    result = run(trainer, "none", tmp_path / "d.safetensors", log=quiet)
    assert (result.steps_run, result.last_step) == (2, 4)
    got = pl.read_csv(tmp_path / "d" / "metrics.csv")
    ref = released["metrics"].filter(pl.col("step") >= STEP)
    # the exact data order from step 2: the same plan rows as the uninterrupted run's steps 2-3
    assert got["step"].to_list() == [2, 3]
    assert got["rows_hash"].to_list() == ref["rows_hash"].to_list()
    # a fresh schedule: warmup (2 steps in the test config) starts again at step 2
    assert got["lr_unet"].to_list()[0] == 0.0 < ref["lr_unet"].to_list()[0]


def test_a_checkpoint_of_the_run_wins_over_the_file(tiny_inputs, released, tmp_path) -> None:
    over = {"init_lokr": str(released["lokr"]), "init_step": STEP, "checkpoint_every": 1}
    run(tiny_trainer(tiny_inputs, tmp_path, {**over, "max_steps": 3}), "auto",
        tmp_path / "x.safetensors", log=quiet)
    lines: list[str] = []
    run(tiny_trainer(tiny_inputs, tmp_path, {**over, "max_steps": 4}), "auto",
        tmp_path / "y.safetensors", log=lines.append)
    assert any("resumed from" in ln and "step-00000003" in ln for ln in lines), lines
    assert not any("initialised" in ln for ln in lines)


def _bad(path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    sd = load_file(str(path))
    out = path.with_name(f"bad-{edit.__name__}.safetensors")
    save_file(edit(sd), str(out))
    return out


def as_lora(sd: dict) -> dict:
    return {k.replace("lokr_w1", "lora_up").replace("lokr_w2", "lora_down"): v
            for k, v in sd.items()}


def other_factor(sd: dict) -> dict:
    key = sorted(k for k in sd if k.endswith("lokr_w1"))[0]
    return {**sd, key: torch.zeros(sd[key].shape[0] * 2, sd[key].shape[1])}


@pytest.mark.parametrize("edit, message", [
    (as_lora, r"key lora_\S+\.lokr_w1 missing \(\d+ missing, \d+ unexpected\)"),
    (other_factor, r"lokr_w1 has shape \[\d+, \d+\], the network's is \[\d+, \d+\]"),
])
def test_a_file_of_another_network_is_one_line(tiny_inputs, released, tmp_path, edit,
                                               message) -> None:
    bad = _bad(released["lokr"], edit)
    trainer = tiny_trainer(tiny_inputs, tmp_path, {"init_lokr": str(bad), "init_step": STEP})
    with pytest.raises(KxlError, match=message) as err:
        trainer.init_from_lokr(quiet)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)


def test_bad_settings_are_one_line(tiny_inputs, released, tmp_path) -> None:
    from train_helpers import tiny_config

    from kxl.config import from_dict
    from kxl.train.config import TrainConfig

    with pytest.raises(KxlError, match="init_step 3 needs init_lokr"):
        from_dict(TrainConfig, tiny_config(init_step=3), "train")
    trainer = tiny_trainer(tiny_inputs, tmp_path, {"init_lokr": str(released["lokr"]),
                                                   "init_step": 6})
    with pytest.raises(KxlError, match="init_step 6 is not before the run's last step"):
        trainer.init_from_lokr(quiet)
    trainer = tiny_trainer(tiny_inputs, tmp_path, {"init_lokr": str(tmp_path / "no.safetensors")})
    with pytest.raises(KxlError, match="no.safetensors: train.init_lokr does not exist"):
        trainer.init_from_lokr(quiet)
