"""A real one-node SLURM for the cluster tests: started once per session, stopped at its end;
and a two-node one (network namespaces, start-two-nodes.sh) for the multinode test alone.

Where SLURM cannot start (not root, no apt-get), the tests are skipped with the script's reason;
in CI (CI=true) that is a failure instead, so CI never passes them silently.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CANNOT_START = 3  # start-slurm.sh's exit status for "SLURM cannot run on this machine"
# Test override applied on top of profiles/slurm (partition, squeue status, fast polling).
TEST_PROFILE = HERE / "profile"


@dataclass(frozen=True)
class Slurm:
    state: Path
    partition: str

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (finished jobs stay visible for MinJobAge=7200 s)."""
        out = run(["scontrol", "show", "job", "--oneliner", job_id]).stdout
        return dict(re.findall(r"(\S+?)=(\S*)", out))


def run(cmd: list[str], timeout: float = 120, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True, **kw)


def tool_env(**extra: str) -> dict[str, str]:
    """Environment for snakemake and its jobs: the venv's `kxl`/`torchrun` first, one thread;
    `extra` on top (SLURM_CONF for the two-node cluster)."""
    env = {**os.environ, **extra}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "1"
    return env


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"true", "1", "yes"}


@pytest.fixture(scope="session")
def slurm() -> Iterator[Slurm]:
    state = Path(os.environ.get("KXL_SLURM_STATE", HERE / ".state"))
    partition = "kxltest"  # the partition tests/cluster/profile/profile.yaml submits to
    env = {**os.environ, "KXL_SLURM_PARTITION": partition}
    proc = subprocess.run(
        [str(HERE / "start-slurm.sh"), str(state)],
        capture_output=True, text=True, timeout=900, env=env,
    )
    if proc.returncode == CANNOT_START:
        reason = (proc.stdout.strip().splitlines() or ["start-slurm.sh: no reason given"])[-1]
        print(reason, file=sys.stderr)
        if in_ci():
            pytest.fail(f"CI=true, so SLURM must start, but: {reason}")
        pytest.skip(reason)
    if proc.returncode != 0:
        pytest.fail(f"start-slurm.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    try:
        yield Slurm(state=state, partition=partition)
    finally:
        subprocess.run([str(HERE / "stop-slurm.sh"), str(state)], timeout=120, check=False)


@dataclass(frozen=True)
class TwoNodes:
    conf: Path  # its slurm.conf: clients reach this cluster through SLURM_CONF
    nodes: tuple[str, ...]

    def job(self, job_id: str) -> dict[str, str]:
        out = run(["scontrol", "show", "job", "--oneliner", job_id],
                  env=tool_env(SLURM_CONF=str(self.conf))).stdout
        return dict(re.findall(r"(\S+?)=(\S*)", out))


@pytest.fixture()
def two_nodes(slurm: Slurm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoNodes]:
    """A second SLURM of two nodes, each a network namespace with its own address and hostname,
    beside the one-node cluster (whose installed packages and munged it reuses); torn down,
    namespaces and bridge included, whatever the test did."""
    state = tmp_path_factory.mktemp("two-nodes")
    try:
        proc = subprocess.run([str(HERE / "start-two-nodes.sh"), str(state)],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode == CANNOT_START:
            reason = proc.stdout.strip().splitlines()[-1]
            if in_ci():
                pytest.fail(f"CI=true, so the two-node SLURM must start, but: {reason}")
            pytest.skip(reason)
        if proc.returncode != 0:
            pytest.fail(f"start-two-nodes.sh failed ({proc.returncode}):\n{proc.stdout}\n"
                        f"{proc.stderr}")
        yield TwoNodes(conf=state / "slurm.conf", nodes=("kxln1", "kxln2"))
    finally:
        subprocess.run([str(HERE / "stop-two-nodes.sh"), str(state)], timeout=120, check=False)
