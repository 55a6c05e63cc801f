"""The prompt-conditioning probe (kxl.eval.conditioning): formula, distractors, UNet errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from kxl.errors import KxlError
from kxl.eval import conditioning as probe


def test_advantage_on_a_hand_made_error_matrix() -> None:
    # row 0: right 1, wrong (2 + 3) / 2 = 2.5; row 1: right 2, wrong (1 + 1) / 2 = 1 and the
    # right prompt ties nothing (1 < 2), so only row 0 is a top-1 hit.
    res = probe.advantage(np.array([[1.0, 2.0, 3.0], [2.0, 1.0, 1.0]]))
    assert res["right"] == pytest.approx(1.5)
    assert res["wrong"] == pytest.approx(1.75)
    assert res["advantage"] == pytest.approx((1.75 - 1.5) / 1.75)
    assert res["top1"] == pytest.approx(0.5)
    assert res["chance"] == pytest.approx(1 / 3)
    # a model that ignores the prompt: every column equal -> advantage 0 exactly
    flat = probe.advantage(np.full((4, 6), 0.3))
    assert flat["advantage"] == 0.0
    # the right column can be any column
    assert probe.advantage(np.array([[3.0, 1.0]]), right=1)["top1"] == 1.0


@pytest.mark.parametrize("bad", [np.ones((3, 1)), np.ones(3), np.array([[1.0, np.nan]])])
def test_advantage_rejects_bad_matrices(bad: np.ndarray) -> None:
    with pytest.raises(KxlError, match="conditioning probe"):
        probe.advantage(bad)


def test_candidates_are_own_character_then_distinct_others() -> None:
    labels = np.repeat(np.arange(10), 3)
    c = probe.candidates(labels, 10, 4, seed=1)
    assert c.shape == (30, 5)
    assert (c[:, 0] == labels).all()
    for row, lab in zip(c, labels, strict=True):
        assert len(set(row.tolist())) == 5 and lab not in row[1:]
    assert (probe.candidates(labels, 10, 4, seed=1) == c).all()
    assert (probe.candidates(labels, 10, 4, seed=2) != c).any()
    # images of one character do not all get the same distractors
    assert len({tuple(r) for r in c[:3, 1:]}) > 1
    # fewer characters than distractors: every other character, once
    small = probe.candidates(np.array([0, 1, 2]), 3, 7, seed=0)
    assert small.shape == (3, 3)
    assert all(sorted(r) == [0, 1, 2] for r in small.tolist())
    with pytest.raises(KxlError, match="out of range"):
        probe.candidates(np.array([3]), 3, 2, seed=0)


def test_summarize_reports_per_timestep_overall_and_per_character() -> None:
    chars = pl.DataFrame({"rank": [1, 0], "character": ["b", "a"]})
    errors = np.array([
        [[1.0, 2.0], [2.0, 1.0], [1.0, 3.0]],  # t=100
        [[1.0, 1.0], [1.0, 1.0], [1.0, 3.0]],  # t=900: the prompt matters for image 2 only
    ])
    s = probe.summarize(errors, [100, 900], np.array([0, 1, 1]), chars)
    assert [t["timestep"] for t in s["timesteps"]] == [100, 900]
    assert s["timesteps"][1]["advantage"] == pytest.approx((5 / 3 - 1) / (5 / 3))
    # overall = errors averaged over timesteps: [[1, 1.5], [1.5, 1], [1, 3]]
    assert s["overall"]["top1"] == pytest.approx(2 / 3)
    assert s["characters"] == [
        {"rank": 0, "character": "a", "images": 1, "top1": 1.0},  # 1 < 1.5
        {"rank": 1, "character": "b", "images": 2, "top1": 0.5},  # 1.5 > 1, then 1 < 3
    ]
    assert (s["images"], s["candidates"]) == (3, 2)


def _pipe(model: tuple[Path, Path]):  # type: ignore[no-untyped-def]
    import torch

    from kxl.eval.config import GenerateConfig
    from kxl.eval.generate import load_pipeline

    torch.set_num_threads(1)
    cfg = GenerateConfig(width=64, height=64, sampler="EulerDiscreteScheduler", device="cpu")
    return load_pipeline(str(model[0]), str(model[1]), cfg)


PROMPTS = ["1girl, alice, wonder, masterpiece", "1boy, bob, masterpiece", "1girl, cyd, x"]


def test_errors_follow_diffusers_noising_and_do_not_depend_on_batching(
    tiny_model: tuple[Path, Path]
) -> None:
    import torch
    from diffusers import DDPMScheduler

    pipe, device = _pipe(tiny_model)
    pixels = np.random.default_rng(0).uniform(-1, 1, (4, 3, 64, 64)).astype(np.float32)
    cands = probe.candidates(np.array([0, 1, 2, 0]), 3, 2, seed=5)
    e1 = probe.denoising_errors(pipe, device, pixels, PROMPTS, cands, [100, 700], 5, 1)
    e9 = probe.denoising_errors(pipe, device, pixels, PROMPTS, cands, [100, 700], 5, 9)
    assert e1.shape == (2, 4, 3)
    np.testing.assert_allclose(e1, e9, rtol=1e-5)
    assert (e1[0] != e1[1]).any()  # other timestep, other noise and error
    # one entry recomputed with diffusers' own DDPM noising and the pipeline's encode_prompt
    ddpm = DDPMScheduler.from_config(pipe.scheduler.config)
    with torch.no_grad():
        ctx, _, pooled, _ = pipe.encode_prompt([PROMPTS[cands[3, 2]]], device=device,
                                               do_classifier_free_guidance=False)
        lat = pipe.vae.encode(torch.from_numpy(pixels[3:4])).latent_dist.mean
        lat = lat * pipe.vae.config.scaling_factor
        noise = probe.probe_noise(5, 700, (4, *lat.shape[1:]))[3:4]
        noisy = ddpm.add_noise(lat, noise, torch.tensor([700]))
        pred = pipe.unet(noisy, torch.tensor([700]), encoder_hidden_states=ctx,
                         added_cond_kwargs={"text_embeds": pooled, "time_ids": torch.tensor(
                             [[64.0, 64, 0, 0, 64, 64]])}).sample
    assert e1[1, 3, 2] == pytest.approx(float(((pred - noise) ** 2).mean()), rel=1e-5)


def test_a_prompt_that_names_no_one_gives_no_advantage(tiny_model: tuple[Path, Path]) -> None:
    pipe, device = _pipe(tiny_model)
    pixels = np.random.default_rng(1).uniform(-1, 1, (3, 3, 64, 64)).astype(np.float32)
    cands = probe.candidates(np.arange(3), 3, 2, seed=0)
    same = probe.denoising_errors(pipe, device, pixels, [PROMPTS[0]] * 3, cands, [500], 0, 4)
    assert probe.advantage(same[0])["advantage"] == pytest.approx(0.0, abs=1e-6)
    diff = probe.denoising_errors(pipe, device, pixels, PROMPTS, cands, [500], 0, 4)
    assert probe.advantage(diff[0])["advantage"] != pytest.approx(0.0, abs=1e-6)


def _inputs(root: Path) -> list[str]:
    from eval_fixtures import render_character, save_png

    from kxl.eval.characters import CHARACTERS_SCHEMA, REFS_SCHEMA
    from kxl.tables import write_table

    names = ["alice", "bob", "cyd"]
    chars = pl.DataFrame([(r, 10 + r, n, "wonder", "1girl", 10, 2) for r, n in enumerate(names)],
                         schema=list(CHARACTERS_SCHEMA.items()), orient="row")
    refs = []
    for r, n in enumerate(names):
        for i in range(2):
            rel = f"files/{r:04d}/{i}.png"
            save_png(render_character(n, i, 80), root / "images" / rel)
            refs.append((r, 10 + r, i, 100 * r + i, rel))
    write_table(chars, root / "characters.parquet", CHARACTERS_SCHEMA)
    write_table(pl.DataFrame(refs, schema=list(REFS_SCHEMA.items()), orient="row"),
                root / "refs.parquet", REFS_SCHEMA)
    gen = {"width": 64, "height": 64, "sampler": "EulerDiscreteScheduler", "device": "cpu"}
    cfg = {"timesteps": [300, 600], "distractors": 5, "refs_per_character": 1, "batch_size": 4}
    return ["--characters", str(root / "characters.parquet"), "--refs", str(root / "refs.parquet"),
            "--images-root", str(root / "images"), "--generate-json", json.dumps(gen),
            "--config-json", json.dumps(cfg), "--seed", "3", "--threads", "1"]


def _kxl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kxl", *args], capture_output=True, text=True,
                          timeout=600)


def test_cli_writes_the_probe_and_names_a_missing_reference(
    tiny_model: tuple[Path, Path], tmp_path: Path
) -> None:
    args = _inputs(tmp_path)
    model = ["--model", str(tiny_model[0]), "--config-dir", str(tiny_model[1])]
    res = _kxl("ccip-conditioning", *args, "--name", "tiny", *model, "--out",
               str(tmp_path / "tiny.json"))
    assert res.returncode == 0, res.stderr
    out = json.loads((tmp_path / "tiny.json").read_text())
    assert out["model"] == "tiny" and (out["images"], out["candidates"]) == (3, 3)
    assert [t["timestep"] for t in out["timesteps"]] == [300, 600]
    assert out["overall"]["chance"] == pytest.approx(1 / 3)
    assert [c["character"] for c in out["characters"]] == ["alice", "bob", "cyd"]
    (tmp_path / "images/files/0001/0.png").unlink()
    res = _kxl("ccip-conditioning", *args, "--name", "tiny", *model, "--out",
               str(tmp_path / "again.json"))
    assert res.returncode != 0 and not (tmp_path / "again.json").exists()
    last = res.stderr.strip().splitlines()[-1]
    assert "files/0001/0.png" in last and "reference image unreadable" in last, res.stderr
