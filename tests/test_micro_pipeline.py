"""Every rule of the workflow end to end under config/micro.yaml, in the fast tier (issue 22),
and two runs from two fresh copies of the checkout byte-identical (issue 21 section 4)."""

from __future__ import annotations

import json

import pytest
from pipeline_run import MICRO, explain, jobs_planned, result_digests, run_default
from safetensors import safe_open

from kxl.hashing import sha256_file


def test_micro_run_builds_every_rule_and_leaves_nothing_to_do(micro_run) -> None:
    wf = micro_run
    # the micro override keeps every rule of the default run's DAG, and after one run from
    # scratch nothing is left to do: each of them ran
    default = jobs_planned(wf.snakemake("-n", "--forceall", "all").stdout)
    micro = jobs_planned(wf.snakemake("-n", "--forceall", "all", *MICRO).stdout)
    assert micro == default and {"synth_base", "train", "ccip_report", "run_report"} <= micro
    dry = wf.snakemake("-n", "all", *MICRO)
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
    counts = json.loads((wf.root / "results/checks/counts.json").read_text())
    assert counts["problems"] == [] and counts["actual"]["steps"] == 27, counts
    with safe_open(wf.root / "results/epsilon-lokr.safetensors", "pt") as f:
        meta = f.metadata()
    assert meta["kxl_steps"] == "27", meta
    verify = wf.kxl("verify", "results", check=False)
    assert verify.returncode == 0 and " 0 problem(s)" in verify.stdout + verify.stderr, verify


@pytest.mark.slow
@pytest.mark.e2e
def test_two_fresh_copies_give_byte_identical_artifacts(micro_run, tmp_path) -> None:
    """Every file under results/ of a second run from another fresh copy equals the first's,
    except what is wall-clock by design (result_digests: TensorBoard events, the metrics'
    images/s column, provenance mtimes, the trainer's lock)."""
    other = run_default(tmp_path / "micro-b", ["all"], *MICRO)
    want, got = result_digests(micro_run.root), result_digests(other.root)
    assert sorted(set(want) ^ set(got)) == []
    assert [explain(micro_run.root, other.root, k) for k in got if want[k] != got[k]] == []
    assert sha256_file(other.root / "results/epsilon.safetensors") == \
        sha256_file(micro_run.root / "results/epsilon.safetensors")
