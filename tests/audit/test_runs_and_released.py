"""Run vs run (first differing checkpoint + the plan rows behind it), released names through a
local HF cache prepared here, and the configured pairs of the Snakemake targets."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from hf_cache import hf_cache

from kxl.cli import main

from .conftest import make_base, make_lokr

PLAN_SCHEMA = {"step": pl.Int32, "rank": pl.Int16, "micro": pl.Int16, "slot": pl.Int16,
               "epoch": pl.Int16, "post_id": pl.Int64, "bucket": pl.Int32,
               "sample_seed": pl.UInt64}


def _run(root: Path, seeds: dict[int, int]) -> Path:
    for step, seed in seeds.items():
        d = root / "checkpoints" / f"step-{step:08d}"
        d.mkdir(parents=True)
        make_lokr(d / "lokr.safetensors", seed=seed)
        (d / "state.json").write_text("{}")  # never read
    return root


def _plan(path: Path, steps: int, per_step: int = 4) -> Path:
    n = steps * per_step
    df = pl.DataFrame({
        "step": [i // per_step for i in range(n)], "rank": [0] * n, "micro": [0] * n,
        "slot": [i % per_step for i in range(n)], "epoch": [0] * n,
        "post_id": [1000 + i for i in range(n)], "bucket": [i % 2 for i in range(n)],
        "sample_seed": [i * 7 for i in range(n)]}, schema=PLAN_SCHEMA)
    df.write_parquet(path)
    return path


def test_first_differing_step_and_the_data_it_saw(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", {2: 1, 4: 1, 6: 1, 8: 1})
    b = _run(tmp_path / "b", {2: 1, 4: 1, 6: 5, 8: 6})
    plan = _plan(tmp_path / "plan.parquet", 10)
    out = tmp_path / "runs.json"
    rc = main(["diff", str(a), str(b), "--plan", str(plan), "--json", str(out),
               "--report", str(tmp_path / "runs.html")])
    assert rc == 1
    rep = json.loads(out.read_text())
    run = rep["run"]
    assert rep["mode"] == "run-vs-run"
    assert (run["last_equal"], run["first_diff"]) == (4, 6)
    # checkpoint 6 = after plan steps 0..5; checkpoint 4 agreed -> steps 4 and 5 are suspects
    assert run["data"]["steps"] == [4, 6] and run["data"]["samples"] == 8
    assert [r["post_id"] for r in run["data"]["rows"]] == list(range(1016, 1024))
    assert [s["step"] for s in run["data"]["per_step"]] == [4, 5]
    assert rep["counts"]["differs"] > 0


def test_identical_runs_pass(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", {2: 1, 4: 1})
    b = _run(tmp_path / "b", {2: 1, 4: 1, 6: 3})
    assert main(["diff", str(a / "checkpoints"), str(b), "--json", str(tmp_path / "r.json")]) == 0
    run = json.loads((tmp_path / "r.json").read_text())["run"]
    assert run["first_diff"] is None and run["common"] == [2, 4] and run["steps_b"] == [2, 4, 6]


def test_released_names_and_pairs_from_a_local_hf_cache(tmp_path: Path, monkeypatch) -> None:
    from kxl.hashing import sha256_file
    from kxl.merge.merge import merge_files

    base = make_base(tmp_path / "base.safetensors")
    lokr = make_lokr(tmp_path / "lokr.safetensors")
    merged = tmp_path / "merged.safetensors"
    merge_files(base, lokr, merged, {})
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = "KBlueLeaf/Kohaku-XL-Epsilon"
    hf_cache(tmp_path / "hf", repo, commit, {"eps.safetensors": merged,
                                             "eps-lokr.safetensors": lokr})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = {
        "released": {
            "eps": {"repo_id": repo, "filename": "eps.safetensors", "revision": commit,
                    "sha256": sha256_file(merged)},
            "eps-lokr": {"repo_id": repo, "filename": "eps-lokr.safetensors", "revision": commit},
            "bad-pin": {"repo_id": repo, "filename": "eps.safetensors", "revision": commit,
                        "sha256": "0" * 64},
        },
        "diffs": {"ours-vs-eps": {"a": str(merged), "b": "eps"},
                  "lokr-vs-eps": {"a": "eps-lokr", "b": "eps", "base": str(base)}},
    }
    js = json.dumps(cfg)
    for pair in ("ours-vs-eps", "lokr-vs-eps"):
        out = tmp_path / f"{pair}.json"
        assert main(["diff", "--pair", pair, "--config-json", js, "--offline",
                     "--json", str(out)]) == 0
        assert json.loads(out.read_text())["passed"]
    spec = f"hf://{repo}/eps.safetensors@{commit}"
    assert main(["diff", str(merged), spec, "--offline"]) == 0
    assert main(["diff", str(merged), "bad-pin", "--config-json", js, "--offline"]) == 2
    assert main(["diff", str(merged), f"hf://{repo}/missing.safetensors@{commit}",
                 "--offline"]) == 2


@pytest.mark.parametrize("cfg", ["config/config.yaml", "config/epsilon.yaml"])
def test_config_audit_section_parses(cfg: str) -> None:
    import yaml

    from kxl.audit.config import AuditConfig
    from kxl.config import from_dict

    root = Path(__file__).resolve().parents[2]
    data = yaml.safe_load((root / cfg).read_text())
    audit = from_dict(AuditConfig, data["audit"], "audit")
    for name in audit.diffs:
        audit.pair(name)
    for name in audit.released:
        assert audit.release(name) is not None
