"""Crash scenarios (issue 20 section 3, audit.crash): the exact run's checkpoint at k continued
over the emulated plan (rules/crash.smk), and the comparisons that place the divergence at k and
name the posts behind it. Expected values come from the plans and the config, worked out by hand:
the scenario's step-k posts are the exact plan's first step (restart-epoch of one epoch), the
restarted warmup's learning rates are lr_unet x (step - k) x W / warmup_steps."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from pipeline_run import MICRO, Workflow

from kxl.audit.config import AuditConfig, crash_scenario
from kxl.audit.crash import divergence
from kxl.config import from_dict
from kxl.config_check import config_problem, merge_configs
from kxl.errors import KxlError

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "config/schema.yaml"
K, NAME = 10, "resume-10"  # config/micro.yaml's scenario
DIFF = f"results/audit/crash/{NAME}/diff.json"
SERIES = f"results/audit/series/crash-{NAME}.json"


def micro_config() -> dict:
    load = lambda name: yaml.safe_load((ROOT / "config" / name).read_text())  # noqa: E731
    return merge_configs(load("config.yaml"), load("micro.yaml"))


def with_crash(**scenario) -> dict:
    cfg = copy.deepcopy(micro_config())
    cfg["audit"]["crash"] = {"x": scenario}
    return cfg


# -- bad input: one line each -------------------------------------------------------------------
def test_the_shipped_scenarios_validate() -> None:
    assert config_problem(micro_config(), SCHEMA) is None
    eps = yaml.safe_load((ROOT / "config/epsilon.yaml").read_text())
    full = merge_configs(yaml.safe_load((ROOT / "config/config.yaml").read_text()), eps)
    assert config_problem(full, SCHEMA) is None
    assert eps["audit"]["crash"]["collapse-13600"]["resume_step"] == 13600


@pytest.mark.parametrize(("scenario", "problem"), [
    ({"resume_step": 15}, "audit.crash.x.resume_step: 15 is not in train.checkpoint_steps "
                          "[10, 20] (the exact run keeps only those checkpoints to continue from)"),
    ({"resume_step": 20}, "audit.crash.x.resume_step: 20 has no later step in "
                          "train.checkpoint_steps [10, 20] to compare at"),
    ({"resume_step": 10, "reading": "fresh-shuffle"}, "audit.crash.x.reading: "),
    ({"resume_step": 10, "warmup": "halve"}, "audit.crash.x.warmup: "),
])
def test_a_bad_scenario_is_named_in_one_line(scenario, problem) -> None:
    got = config_problem(with_crash(**scenario), SCHEMA)
    assert got is not None and got.startswith(problem) and "\n" not in got, got


def test_the_dataclass_names_an_unknown_reading_too() -> None:
    """kxl's own check, for a section built outside the workflow (no schema)."""
    with pytest.raises(KxlError, match=r"audit\.crash\.x\.reading"):
        crash_scenario({"x": {"resume_step": 10, "reading": "fresh-shuffle"}}, "x", [10, 20])


def test_a_series_named_like_a_scenario_s_is_refused() -> None:
    cfg = from_dict(AuditConfig, {"series": {"crash-x": {"a": "rebuilt"}},
                                  "crash": {"x": {"resume_step": 10}}}, "audit")
    with pytest.raises(KxlError, match="'crash-x' is the name of a crash scenario's series"):
        cfg.all_series([10, 20])


def test_the_scenario_series_compares_the_kept_steps_from_k_on() -> None:
    cfg = from_dict(AuditConfig, {"crash": {"x": {"resume_step": 10}}}, "audit")
    series = cfg.series_config("crash-x", [5, 10, 20, 30])
    assert series.a == "rebuilt"
    assert [(p.step, p.file) for p in series.b] == [
        (s, f"results/audit/crash/x/steps/step-{s:08d}.safetensors") for s in (10, 20, 30)]


def test_other_series_do_not_need_the_checkpoint_steps() -> None:
    """`kxl series --name rebuilt` without --checkpoint-steps still works beside a scenario."""
    cfg = from_dict(AuditConfig, {"series": {"rebuilt": {"a": "rebuilt"}},
                                  "crash": {"x": {"resume_step": 10}}}, "audit")
    assert cfg.series_config("rebuilt").a == "rebuilt"
    with pytest.raises(KxlError, match=r"no entry 'crash-y'; known: \['rebuilt', 'crash-x'\]$"):
        cfg.series_config("crash-y", [10, 20])


# -- the divergence, on hand-made plans ---------------------------------------------------------
def _plan(posts: dict[int, list[int]]) -> pl.DataFrame:
    return pl.DataFrame([{"step": s, "rank": 0, "micro": 0, "slot": i, "epoch": 0, "post_id": p,
                          "bucket": 0, "sample_seed": p} for s, ps in posts.items()
                         for i, p in enumerate(ps)])


def _lrs(lrs: dict[int, float]) -> pl.DataFrame:
    return pl.DataFrame({"step": list(lrs), "lr_text_encoder": [v / 4 for v in lrs.values()],
                         "lr_unet": list(lrs.values())})


def test_divergence_is_the_first_step_whose_data_or_lr_differ() -> None:
    a = _plan({4: [1, 2], 5: [3, 4], 6: [5, 6]})
    b = _plan({4: [1, 2], 5: [3, 4], 6: [1, 2]})
    same = _lrs({4: 1.0, 5: 1.0, 6: 1.0})
    div = divergence(a, b, 4, 7, same, same)
    assert (div["step"], div["data_step"], div["lr_step"]) == (6, 6, None)
    assert [r["post_id"] for r in div["rows"]["a"]] == [5, 6]
    assert [r["post_id"] for r in div["rows"]["b"]] == [1, 2]
    # a restarted warmup at 5 on the same data: the learning rate is what differs first
    div = divergence(a, b, 4, 7, same, _lrs({4: 1.0, 5: 0.0, 6: 0.5}))
    assert (div["step"], div["data_step"], div["lr_step"]) == (5, 6, 5)
    assert div["lr"] == {"a": {"lr_text_encoder": 0.25, "lr_unet": 1.0},
                         "b": {"lr_text_encoder": 0.0, "lr_unet": 0.0}}
    # outside the window nothing counts
    assert divergence(a, b, 4, 6, same, same)["step"] is None


# -- the micro run ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crash_run(micro_run, tmp_path_factory) -> Path:
    """The scenario's targets built in a copy of the micro run (its results and Snakemake's
    records), so the shared run keeps exactly what `all` made."""
    root = tmp_path_factory.mktemp("crash") / "wf"
    shutil.copytree(micro_run.root, root, symlinks=True)
    proc = Workflow(root).snakemake(DIFF, SERIES, *MICRO, check=False)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return root


def _steps(checkpoints: Path) -> list[int]:
    return sorted(int(p.name[5:]) for p in checkpoints.glob("step-*"))


@pytest.mark.slow
@pytest.mark.e2e
def test_the_scenario_continues_the_exact_run_s_checkpoint(crash_run) -> None:
    exact = crash_run / "results/train/checkpoints"
    crash = crash_run / f"results/audit/crash/{NAME}/checkpoints"
    assert _steps(crash)[0] == K  # it wrote nothing before k: its history is the exact run's
    for name in ("lokr.safetensors", "state.safetensors"):
        assert (crash / f"step-{K:08d}" / name).read_bytes() == \
            (exact / f"step-{K:08d}" / name).read_bytes(), name
    assert (crash_run / f"results/audit/crash/{NAME}/steps/step-{K:08d}.safetensors"
            ).read_bytes() == (crash_run / f"results/train/steps/step-{K:08d}.safetensors"
                               ).read_bytes()


@pytest.mark.slow
@pytest.mark.e2e
def test_run_vs_run_and_series_place_the_divergence_at_k_and_name_its_posts(crash_run) -> None:
    plan = pl.read_parquet(crash_run / "results/plan/plan.parquet").sort("step", "rank", "micro",
                                                                         "slot")
    assert plan["epoch"].max() == 0  # one epoch: restart-epoch replays it from step 0

    def posts(table: pl.DataFrame, step: int) -> list[int]:
        return table.filter(pl.col("step") == step)["post_id"].to_list()

    want_a, want_b = posts(plan, K), posts(plan, 0)
    emulated = pl.read_parquet(crash_run / f"results/audit/crash/{NAME}/plan.parquet").sort(
        "step", "rank", "micro", "slot")
    assert posts(emulated, K) == want_b and want_a != want_b
    diff = json.loads((crash_run / DIFF).read_text())
    run = diff["run"]
    # checkpoint 10 is byte-identical, the next common one (20) differs
    assert (run["last_equal"], run["first_diff"]) == (K, 20) and not diff["passed"]
    series = json.loads((crash_run / SERIES).read_text())
    assert series["steps"] == [10, 20]
    for div in (run["divergence"], series["divergence"]):
        assert (div["window"], div["step"], div["data_step"], div["lr_step"]) == \
            ([K, 20], K, K, K)
        assert [r["post_id"] for r in div["rows"]["a"]] == want_a
        assert [r["post_id"] for r in div["rows"]["b"]] == want_b
        assert {r["step"] for r in div["rows"]["a"] + div["rows"]["b"]} == {K}
    html = (crash_run / f"results/audit/crash/{NAME}/diff.html").read_text()
    assert f"Divergence: step {K}" in html and f"<td>{want_b[0]}</td>" in html
    assert f"Divergence: step {K}" in (crash_run / SERIES.replace(".json", ".html")).read_text()


@pytest.mark.slow
@pytest.mark.e2e
def test_the_restarted_warmup_sets_the_lr_from_k_as_the_schedule_says(crash_run) -> None:
    cfg = micro_config()["train"]
    lr, warmup = cfg["lr_unet"], cfg["warmup_steps"]
    assert cfg["warmup_counting"] == "per_process" and warmup == 2
    world = int(pl.read_parquet(crash_run / "results/plan/plan.parquet")["rank"].max()) + 1

    def lrs(path: str) -> dict[int, float]:
        table = pl.read_csv(crash_run / path)
        return dict(zip(table["step"].to_list(), table["lr_unet"].to_list(), strict=True))

    crash = lrs(f"results/audit/crash/{NAME}/metrics.csv")
    exact = lrs("results/train/metrics.csv")
    assert min(crash) == K and max(crash) == max(exact) == 26
    # transformers' constant-with-warmup rebuilt at k: count = (step - k) x W scheduler steps
    for step in (K, K + 1, K + 2):
        assert crash[step] == pytest.approx(lr * min(1.0, (step - K) * world / warmup), abs=0)
    assert crash[K] == 0.0 and exact[K] == lr
