"""Issue 19: `train.run.launcher: multinode` on a real two-node SLURM (start-two-nodes.sh: each
node a network namespace with its own address and hostname), through the Snakemake SLURM
executor: 2 nodes x 1 CPU rank (gloo), whose LoKr matches one process over the same W*A."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TwoNodes, tool_env
from pipeline_run import Workflow
from test_slurm import (
    assert_lokr_like_one_process,
    finished_rules,
    reuse_results,
    slurm_profiles,
    snakemake,
    submitted_jobs,
    workflow_copy,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

LOKR = "results/epsilon-lokr.safetensors"
COUNTS = "results/checks/counts.json"
# Three steps: two with a learning rate (the micro config warms up over 2), each all-reducing
# gradients between the nodes; about 25 s a step for 2 ranks on 2 shared cores.
STEPS = 3
# The plan for W=2, A=1; the one-process reference takes both plan ranks as two micro-steps.
PLAN = {"world_size": 2, "grad_accum": 1}
RUNS = {
    "one": {"gpu": 0, "nproc": 1},
    "two_nodes": {"gpu": 0, "nproc": 1, "launcher": "multinode", "nodes": 2},
}


def overrides(run: dict[str, object]) -> dict[str, object]:
    """config on top of the micro run's: the plan for W=2 and a short training."""
    return {"plan": PLAN,
            "train": {"run": run, "max_steps": STEPS, "checkpoint_every": STEPS},
            "counts": {"expected": {"steps": None}}}  # W=2 halves the micro run's steps


def test_multinode_launcher_trains_on_two_nodes_like_one_process(
    two_nodes: TwoNodes, tmp_path: Path, micro_run: Workflow
) -> None:
    train = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["train"]
    lr = max(train["lr_unet"], train["lr_text_encoder"])
    runs: dict[str, Path] = {}
    for name, run in RUNS.items():
        wd = workflow_copy(tmp_path / name)
        reuse_results(micro_run.root, wd)  # up to the buckets; the plan and training rerun
        (wd / "short.yaml").write_text(yaml.safe_dump(overrides(run)))
        config = ["--configfile", "config/config.yaml", "config/micro.yaml", "short.yaml"]
        # The plan for W=2 and the count gate run here (seconds; through sbatch each would wait
        # for the plugin's status polls): only training goes to the cluster.
        proc = snakemake(wd, "--cores", "2", COUNTS, "--forcerun", "make_plan", *config)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        if name == "one":
            proc = snakemake(wd, "--cores", "2", LOKR, *config, timeout=900)
        else:
            env = tool_env(SLURM_CONF=str(two_nodes.conf))
            proc = snakemake(wd, *slurm_profiles(), LOKR, *config, timeout=900, env=env)
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-4000:]
        assert finished_rules(log) == ["train"], log[-4000:]
        runs[name] = wd

    train_jobs = [j for j, rule in submitted_jobs(log).items() if rule == "train"]
    assert len(train_jobs) == 1, log[-4000:]
    info = two_nodes.job(train_jobs[0])
    assert (info["JobState"], info["NumNodes"], info["NodeList"]) == (
        "COMPLETED", "2", "kxln[1-2]"), info
    # Step 0 is the plugin's snakemake on the first node; the launch line's srun is step 1,
    # one task on each node: the second node's slurmd launched one.
    slurmd2 = (two_nodes.conf.parent / "slurmd-kxln2.log").read_text()
    assert re.search(rf"launch task StepId={train_jobs[0]}\.1 ", slurmd2), slurmd2[-2000:]
    train_log = (runs["two_nodes"] / "logs/train/train.log").read_text()
    assert "[rank 0]" in train_log and "[rank 1]" in train_log, train_log[-3000:]
    assert "[rank 2]" not in train_log
    assert f"last step {STEPS}," in train_log, train_log[-3000:]

    assert_lokr_like_one_process(runs["one"] / LOKR, runs["two_nodes"] / LOKR, lr, STEPS)
