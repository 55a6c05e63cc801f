"""Training -> LoKr -> merge -> audit on the default pipeline (issues 4 and 5 acceptance)."""

from __future__ import annotations

import json

import polars as pl
import pytest
from pipeline_run import Workflow
from safetensors import safe_open

pytestmark = [pytest.mark.e2e]


def test_loss_falls_over_the_run(default_run: Workflow) -> None:
    m = pl.read_csv(default_run.root / "results/train/metrics.csv")
    n = m.height
    assert n >= 50, n
    first = m["loss"].head(n // 5).mean()
    last = m["loss"].tail(n // 5).mean()
    assert last < 0.9 * first, (first, last)


def test_metrics_carry_plan_hash_per_step(default_run: Workflow) -> None:
    m = pl.read_csv(default_run.root / "results/train/metrics.csv")
    assert m["step"].to_list() == sorted(set(m["step"].to_list()))
    assert m["rows_hash"].str.len_chars().min() >= 8


def test_run_report_shows_this_run_complete(default_run: Workflow) -> None:
    root = default_run.root / "results"
    page = (root / "report/run.html").read_text()
    assert 'id="problems"' not in page, page[page.find('id="problems"'):][:2000]
    steps = json.loads((root / "plan/summary.json").read_text())["steps"]
    assert f"{steps:,} step(s) logged of {steps:,} in the plan (100.0%)" in page
    assert "kxl verify: passed" in page
    for step in (int(p.name[5:]) for p in (root / "train/checkpoints").glob("step-*")):
        assert f"ckpt {step} " in page


def test_lokr_has_kohya_keys_for_unet_and_both_text_encoders(default_run: Workflow) -> None:
    with safe_open(default_run.root / "results/epsilon-lokr.safetensors", "pt") as f:
        keys = list(f.keys())
    prefixes = {k.split("_")[1] for k in keys if k.startswith("lora_")}
    assert prefixes == {"unet", "te1", "te2"}
    assert any(k.endswith(".lokr_w1") for k in keys)
    assert any("input_blocks" in k for k in keys), "UNet names must be SGM (input_blocks...)"


def test_merged_model_is_the_base_plus_the_lokr(default_run: Workflow) -> None:
    report = json.loads(
        (default_run.root / "results/audit/diff/lokr-vs-merged.json").read_text()
    )
    assert report["passed"] is True, report.get("summary")


def test_series_audit_follows_the_lokr_over_its_checkpoint_steps(default_run: Workflow) -> None:
    root = default_run.root / "results"
    rep = json.loads((root / "audit/series/rebuilt.json").read_text())
    assert rep["steps"] == [200, 400, 600, 800] and rep["kinds"] == {"a": "rebuilt"}
    assert {"overall", "te1", "te2", "unet middle"} <= set(rep["blocks"])
    overall = [r for r in rep["rows"] if r["block"] == "overall"]
    assert [r["step"] for r in overall] == [200, 400, 600, 800]
    assert all(r["norm_a"] > 0 for r in overall)  # trained: the LoKr's delta is not zero
    assert overall[0]["change_a"] is None
    assert all(0 < r["change_a"] < 10 for r in overall[1:])  # it keeps moving, and finitely
    assert "kxl series: rebuilt" in (root / "audit/series/rebuilt.html").read_text()


def test_merged_model_loads_with_diffusers_from_single_file(default_run: Workflow) -> None:
    from diffusers import StableDiffusionXLPipeline

    root = default_run.root / "results"
    pipe = StableDiffusionXLPipeline.from_single_file(
        str(root / "epsilon.safetensors"), config=str(root / "base/config"),
        local_files_only=True,
    )
    assert pipe.unet.config.addition_embed_type == "text_time"
    assert pipe.text_encoder_2.config.hidden_size != pipe.text_encoder.config.hidden_size


def test_explain_step_prints_the_captions_the_encoder_saw(default_run: Workflow) -> None:
    out = default_run.kxl("explain-step", "3").stdout
    assert "step 3" in out and "caption:" in out
    assert "|||" not in out


def test_merged_model_beats_the_base_on_ccip(default_run: Workflow) -> None:
    """Issue 6: on the synthetic characters the fine-tune must beat the tiny base. The stand-in
    scores are low in absolute terms (64 px samples of a minutes-old model); the mean CCIP
    difference to the references is the robust signal, the score must not be worse. Measured
    epsilon / base: 0.424 / 0.477 (per_rank noise, AVX2), 0.384 / 0.484 (AVX512), 0.450 / 0.477
    (per_sample noise, AVX2): the gap spreads 0.027-0.100 over machines and noise keying, so
    the test asks for a strictly lower difference, not a tuned margin (issue 21)."""
    root = default_run.root / "results/eval/ccip"
    models = {m["model"]: m for m in json.loads((root / "summary.json").read_text())["models"]}
    base, eps = models["base"], models["epsilon"]
    assert eps["mean_difference"] < base["mean_difference"], (base, eps)
    assert eps["mean_image_score"] >= base["mean_image_score"], (base, eps)
    report = (root / "report.html").read_text()
    assert "A stand-in was used for the CCIP model." in report
    assert "gap = epsilon &minus; base" in report
    # the prompt-conditioning probe ran on both models, on the same references and prompts
    probes = [json.loads((root / "conditioning" / f"{m}.json").read_text())
              for m in ("base", "epsilon")]
    for p in probes:
        assert p["candidates"] == 6 and p["images"] == probes[0]["images"] >= 6, p
        assert [t["timestep"] for t in p["timesteps"]] == [200, 500, 800]
    assert "Does the model know the characters?" in report


def test_merged_model_knows_which_character_is_which(default_run: Workflow) -> None:
    """Issue 6, characters rather than style: with a reference's own character prompt the
    fine-tune predicts the noise better than with the other five characters' prompts (probe
    advantage), and the own prompt wins for a good share of the references (top-1, chance
    1/6). The base does neither. Measured: +3.4% and top-1 0.50 against the base's -0.06% and
    0.08 (3 epochs of 8 pictures per step over a DB whose six eval characters have ~480 posts;
    docs/character-learning.md)."""
    root = default_run.root / "results/eval/ccip/conditioning"
    base, eps = (json.loads((root / f"{m}.json").read_text())["overall"]
                 for m in ("base", "epsilon"))
    assert eps["advantage"] >= 0.01 and eps["advantage"] >= base["advantage"] + 0.01, (base, eps)
    assert eps["top1"] >= 2 * eps["chance"] and eps["top1"] >= base["top1"] + 0.2, (base, eps)
