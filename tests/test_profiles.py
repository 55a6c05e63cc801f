"""Snakemake profiles (issue 7): they parse, only profiles/slurm talks SLURM, the plugin pin is
where the profile says, a dry run through the SLURM profile shows each job's resources, and
every rule declares the resources a cluster scheduler needs."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "profiles"
PROFILE_FILES = sorted(PROFILES.glob("*/profile.yaml"))
# The cluster tests' override on top of profiles/slurm (partition, squeue status checks).
TEST_PROFILE = ROOT / "tests" / "cluster" / "profile" / "profile.yaml"
PLUGIN = "snakemake-executor-plugin-slurm"
PIN = f"{PLUGIN}>=2.7.1"
# Workflows whose rules must declare cluster resources: the pipeline and the cluster tests' own.
SNAKEFILES = [ROOT / "Snakefile", ROOT / "tests" / "cluster" / "Snakefile"]


def load(path: Path) -> dict[str, object]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path}: a profile is a YAML mapping"
    return data


def slurm_keys(profile: dict[str, object]) -> list[str]:
    """Keys or values of a profile that only make sense under the SLURM executor."""
    found = [k for k in profile if k.startswith("slurm")]
    if profile.get("executor") == "slurm":
        found.append("executor: slurm")
    for key in ("default-resources", "set-resources"):
        found += [f"{key}: {m}" for m in re.findall(r"slurm\w*", str(profile.get(key, "")))]
    return found


def test_profiles_exist() -> None:
    assert {p.parent.name for p in PROFILE_FILES} >= {"local", "slurm"}


@pytest.mark.parametrize("path", [*PROFILE_FILES, TEST_PROFILE],
                         ids=lambda p: p.parent.relative_to(ROOT).as_posix())
def test_profile_keys_are_snakemake_options(path: Path) -> None:
    pytest.importorskip("snakemake_executor_plugin_slurm")  # registers the slurm-* options
    from snakemake.cli import get_argument_parser

    options = {s for a in get_argument_parser()._actions for s in a.option_strings}
    unknown = [k for k in load(path) if f"--{k}" not in options]
    assert unknown == [], f"{path}: not snakemake options: {unknown}"


def test_slurm_keys_only_in_slurm_profile() -> None:
    assert slurm_keys(load(PROFILES / "slurm" / "profile.yaml"))  # the check can see them
    for path in PROFILE_FILES:
        if path.parent.name != "slurm":
            assert slurm_keys(load(path)) == [], f"{path} must run without the SLURM plugin"
    # snakemake picks up profiles/default by itself: it must never submit to SLURM.
    default = PROFILES / "default" / "profile.yaml"
    assert not default.exists() or slurm_keys(load(default)) == []


def test_slurm_profile_shape() -> None:
    profile = load(PROFILES / "slurm" / "profile.yaml")
    assert profile["executor"] == "slurm"
    assert int(profile["retries"]) >= 1
    defaults = profile["default-resources"]
    assert isinstance(defaults, dict)
    assert {"slurm_partition", "slurm_account", "mem_mb", "runtime"} <= set(defaults)
    assert "attempt" in str(defaults["mem_mb"])  # a retried job asks for more memory
    for rule, res in profile["set-resources"].items():
        assert "tasks" not in res, f"{rule}: GPU jobs are one task (torchrun spawns the ranks)"


def test_slurm_plugin_pinned_in_profile_and_pyproject() -> None:
    comments = [ln for ln in (PROFILES / "slurm" / "profile.yaml").read_text().splitlines()
                if ln.lstrip().startswith("#")]
    assert any(PIN in ln for ln in comments), f"profiles/slurm must name {PIN} in a comment"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for extra in ("cluster", "dev"):
        reqs = [Requirement(r) for r in extras[extra]]
        assert [str(r.specifier) for r in reqs if r.name == PLUGIN] == [">=2.7.1"], extra


def test_installed_plugin_meets_the_pin() -> None:
    try:
        version = importlib.metadata.version(PLUGIN)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{PLUGIN} not installed (pip install -e '.[cluster]')")
    assert Version(version) in Requirement(PIN).specifier


# One task per GPU job: torchrun itself spawns the ranks (one per GPU when gpu > 0).
TORCHRUN = "torchrun --standalone --nproc-per-node "


def rule_problems(name: str, declared: set[str], shell: str) -> list[str]:
    problems = [f"{name}: no {k}" for k in ("mem_mb", "runtime") if k not in declared]
    if "gpu" in declared:
        if "cpus_per_gpu" not in declared:
            problems.append(f"{name}: gpu without cpus_per_gpu")
        problems += [f"{name}: gpu with {k}" for k in ("tasks", "tasks_per_gpu") if k in declared]
    if "torchrun" in shell and TORCHRUN not in shell:
        problems.append(f"{name}: launch as `{TORCHRUN}N`")
    return problems


def undeclared_resources(snakefile: Path) -> list[str]:
    """Rules that run a command but lack mem_mb/runtime, or GPU rules shaped as several tasks."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ResourceSettings

    problems: list[str] = []
    cwd = os.getcwd()
    os.chdir(snakefile.parent)  # the pipeline's configfile is relative to its directory
    try:
        with SnakemakeApi() as api:
            workflow = api.workflow(resource_settings=ResourceSettings(), snakefile=snakefile)
            rules = list(workflow._workflow.rules)
    finally:
        os.chdir(cwd)
    for rule in rules:
        if rule.shellcmd is None and rule.script is None and rule.wrapper is None:
            continue  # aggregation rules such as `all`
        problems += rule_problems(rule.name, set(rule.resources or {}), rule.shellcmd or "")
    return problems


@pytest.mark.parametrize("snakefile", SNAKEFILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_rules_declare_cluster_resources(snakefile: Path) -> None:
    assert undeclared_resources(snakefile) == []


def test_resource_check_catches_undeclared(tmp_path: Path) -> None:
    bad = tmp_path / "Snakefile"
    bad.write_text(
        'rule a:\n    output: "a"\n    shell: "touch {output}"\n\n'
        'rule g:\n    output: "g"\n    resources: mem_mb=1, runtime=1, gpu=2, tasks=2\n'
        '    shell: "torchrun --nproc-per-node 2 x.py"\n'
    )
    assert sorted(undeclared_resources(bad)) == [
        "a: no mem_mb", "a: no runtime", "g: gpu with tasks", "g: gpu without cpus_per_gpu",
        "g: launch as `torchrun --standalone --nproc-per-node N`",
    ]


def test_slurm_profile_dry_run_shows_resources(tmp_path: Path) -> None:
    pytest.importorskip("snakemake_executor_plugin_slurm")
    snakefile = ROOT / "tests" / "cluster" / "Snakefile"
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-n",
         "--workflow-profile", str(PROFILES / "slurm")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    resources = dict(re.findall(r"rule (\w+):\n(?:.*\n)*?\s+resources: (.*)", log))
    assert set(resources) >= {"cpu_env", "gpu_env", "torchrun"}, log[-3000:]
    assert "slurm_partition=cpu" in resources["cpu_env"]
    assert "mem_mb=200" in resources["cpu_env"] and "runtime=5" in resources["cpu_env"]
    assert "gpu=2" in resources["torchrun"] and "cpus_per_gpu=1" in resources["torchrun"]
    assert not (tmp_path / "out").exists()  # a dry run


def test_pipeline_dry_run_through_slurm_profile(tmp_path: Path) -> None:
    """`snakemake --profile profiles/slurm -n`: every job of the default target gets a
    partition, memory and runtime."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    for entry in ROOT.iterdir():  # the sources, without the checkout's results/ and .snakemake/
        if entry.name not in {".git", ".venv", ".snakemake", "results", "logs"}:
            (tmp_path / entry.name).symlink_to(entry)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", str(PROFILES / "slurm")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )
    log = proc.stdout + proc.stderr
    in_ci = os.environ.get("CI", "").lower() in {"true", "1", "yes"}
    if re.search(r"Missing(Rule|Input)Exception", log) and not in_ci:
        pytest.skip("the pipeline's stages have not all landed yet")
    assert proc.returncode == 0, log[-3000:]
    jobs = re.findall(r"rule (\w+):\n(?:.*\n)*?\s+resources: (.*)", log)
    assert jobs, log[-3000:]
    for rule, res in jobs:
        assert all(k in res for k in ("slurm_partition=", "mem_mb=", "runtime=")), (rule, res)


# The full run through profiles/slurm (issue 19): every job's partition, GPUs, CPUs, memory and
# runtime against docs/cluster-resources.md, and memory that grows with the attempt.
RESOURCES_DOC = ROOT / "docs" / "cluster-resources.md"
HEADROOM = 1.25  # the smallest request over a measured peak scaled to the full run
Jobs = list[dict[str, object]]


def resource_table(path: Path = RESOURCES_DOC) -> dict[str, dict[str, str]]:
    """The doc's table: rule -> its columns, numbers without thousands separators."""
    rows = [ln for ln in path.read_text().splitlines() if ln.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    table = {}
    for row in rows[2:]:
        cells = [c.strip().replace(",", "") for c in row.strip("|").split("|")]
        table[cells[0]] = dict(zip(header, cells, strict=True))
    return table


def dry_run_jobs(log: str) -> Jobs:
    """Each job of a dry run that runs a command: rule, threads and resources as printed."""
    jobs: Jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", log):
        head = re.match(r"(?:local)?rule (\w+):\n", block)
        # aggregation rules such as `all` print `Shell command: None`
        if not head or not re.search(r"^Shell command: (?!None$)", block, re.M):
            continue
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        pairs = (kv.split("=", 1) for kv in res.group(1).split(", ")) if res else ()
        jobs.append({"rule": head.group(1), "threads": int(threads.group(1)) if threads else 1,
                     **dict(pairs)})
    return jobs


def job_problems(job: dict[str, object], row: dict[str, str] | None,
                 cpu_partition: str) -> list[str]:
    """What in one job of the full run differs from the doc's row or breaks the rules of it."""
    rule = job["rule"]
    if row is None:
        return [f"{rule}: no row in {RESOURCES_DOC.name}"]
    gpus = int(job.get("gpu", 0))
    cpus = gpus * int(job["cpus_per_gpu"]) if gpus and "cpus_per_gpu" in job else job["threads"]
    got = {"partition": job["slurm_partition"], "GPUs": gpus, "CPUs": cpus,
           "mem_mb": int(job["mem_mb"]), "runtime (min)": int(job["runtime"])}
    want = {k: row[k] if k == "partition" else int(row[k]) for k in got}
    problems = [f"{rule}: {k} {got[k]}, the doc says {want[k]}" for k in got if got[k] != want[k]]
    if (gpus > 0) == (got["partition"] == cpu_partition):
        problems.append(f"{rule}: gpu={gpus} on partition {got['partition']}")
    if job["threads"] > cpus:
        problems.append(f"{rule}: {job['threads']} threads on {cpus} CPUs")
    if row["peak (MB)"] != "-":
        need = HEADROOM * float(row["peak (MB)"]) * float(row["scale"])
        if got["mem_mb"] < need:
            problems.append(f"{rule}: mem_mb {got['mem_mb']} < {HEADROOM} x peak x scale = {need}")
    return problems


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Jobs]:
    """The full run's dry run through profiles/slurm, at attempts 1 and 2 (snakemake's --attempt
    sets the attempt that resource functions see). A dry run caps threads at --cores (1 unless
    given); a SLURM run sets no cores and leaves them as declared, hence the large --cores."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    workdir = tmp_path_factory.mktemp("full-run")
    for entry in ROOT.iterdir():  # the sources, without the checkout's results/ and .snakemake/
        if entry.name not in {".git", ".venv", ".snakemake", "results", "logs"}:
            (workdir / entry.name).symlink_to(entry)
    runs = {}
    for attempt in (1, 2):
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", "-n", "--workflow-profile", "profiles/slurm",
             "--cores", "1024", "--attempt", str(attempt), "--configfile", "config/epsilon.yaml"],
            cwd=workdir, capture_output=True, text=True, timeout=300, check=False,
        )
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-3000:]
        runs[attempt] = dry_run_jobs(log)
        assert runs[attempt], log[-3000:]
    return runs


def test_full_run_jobs_match_the_resources_doc(full_run: dict[int, Jobs]) -> None:
    table = resource_table()
    defaults = load(PROFILES / "slurm" / "profile.yaml")["default-resources"]
    cpu_partition = defaults["slurm_partition"]
    jobs = full_run[1]
    problems = [p for job in jobs for p in job_problems(job, table.get(job["rule"]), cpu_partition)]
    assert problems == []
    assert sorted(table) == sorted({job["rule"] for job in jobs})  # no row for a rule not run
    assert {job["rule"] for job in jobs if int(job.get("gpu", 0))} == {
        "train", "ccip_generate", "ccip_conditioning"}


def test_full_run_retry_asks_for_more_memory(full_run: dict[int, Jobs]) -> None:
    """retry_mem: attempt 2 asks every job for twice the first attempt's memory."""
    first, second = ([(j["rule"], int(j["mem_mb"])) for j in full_run[a]] for a in (1, 2))
    assert sorted((rule, 2 * mb) for rule, mb in first) == sorted(second)


def test_resource_check_catches_a_gpu_job_on_the_cpu_partition() -> None:
    # issue 19: ccip_conditioning asked for gpu=1 and landed on the CPU partition
    row = {"partition": "gpu", "GPUs": "1", "CPUs": "4", "mem_mb": "32000",
           "runtime (min)": "720", "peak (MB)": "-", "scale": "-"}
    job = {"rule": "ccip_conditioning", "threads": 2, "slurm_partition": "cpu", "gpu": "1",
           "cpus_per_gpu": "4", "mem_mb": "32000", "runtime": "720"}
    assert job_problems(job, row, "cpu") == [
        "ccip_conditioning: partition cpu, the doc says gpu",
        "ccip_conditioning: gpu=1 on partition cpu",
    ]
    # export_metadata asked for 4,000 MB against a 4,010 MB peak on a smaller DB
    row = {"partition": "cpu", "GPUs": "0", "CPUs": "2", "mem_mb": "4000",
           "runtime (min)": "30", "peak (MB)": "4010", "scale": "1.46"}
    job = {"rule": "export_metadata", "threads": 2, "slurm_partition": "cpu",
           "mem_mb": "4000", "runtime": "30"}
    assert job_problems(job, row, "cpu") == [
        f"export_metadata: mem_mb 4000 < 1.25 x peak x scale = {1.25 * 4010 * 1.46}"]
    assert job_problems(job, None, "cpu") == ["export_metadata: no row in cluster-resources.md"]
