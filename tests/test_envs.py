"""envs/*.yaml stay valid conda env files whose pins agree with pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def pyproject_requirements() -> dict[str, Requirement]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = list(data["project"]["dependencies"])
    for extra in data["project"]["optional-dependencies"].values():
        reqs += extra
    return {Requirement(r).name.lower(): Requirement(r) for r in reqs}


ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))
# what each post-deploy script asks pip for (as the stand-in python sees it: quotes removed)
INSTALLS = {
    "data": "-c envs/locks/main.txt -e .",
    "train": "-c envs/locks/main.txt -e .[train]",
    "eval": "-c envs/locks/eval.txt -e .[train,eval]",
}


def test_there_are_env_files() -> None:
    assert {p.stem for p in ENV_FILES} >= {"data", "train"}


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_agree_with_pyproject(path: Path) -> None:
    env = yaml.safe_load(path.read_text())
    assert env["name"].startswith("kxl-")
    assert "conda-forge" in env["channels"]
    deps = env["dependencies"]
    assert any(isinstance(d, str) and d.startswith("python=3.11") for d in deps)
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    project = pyproject_requirements()
    checked = 0
    for line in pip:
        if line.startswith("-e"):
            continue
        req = Requirement(line)
        assert req.name.lower() in project, f"{path.name}: {req.name} not in pyproject.toml"
        assert req.specifier == project[req.name.lower()].specifier, (
            f"{path.name}: {req.name}{req.specifier} != pyproject "
            f"{project[req.name.lower()].specifier}"
        )
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_installs_kxl_through_its_post_deploy_script(path: Path, tmp_path: Path) -> None:
    """Snakemake copies the env file under .snakemake/conda/ before creating it, so the env
    file holds no relative install; its post-deploy script (run by Snakemake inside the new env,
    from the directory Snakemake was started in) installs the checkout."""
    import os
    import subprocess

    env = yaml.safe_load(path.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert not [line for line in pip if line.startswith("-e") or line.startswith(".")]
    script = path.with_name(f"{path.stem}.post-deploy.sh")
    assert script.is_file() and os.access(script, os.X_OK)
    # a stand-in `python` records what the script asks pip to install, and from where
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").write_text(f'#!/bin/sh\necho "$PWD $*" >> {tmp_path}/calls\n')
    (bindir / "python").chmod(0o755)
    run_env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    ok = subprocess.run(["bash", str(script)], cwd=ROOT, env=run_env, capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stderr
    # with its dependencies, so that the lock (tests/test_locks.py) moves them to its versions
    assert (tmp_path / "calls").read_text() == f"{ROOT} -m pip install {INSTALLS[path.stem]}\n"
    elsewhere = subprocess.run(["bash", str(script)], cwd=tmp_path, env=run_env,
                               capture_output=True, text=True)
    assert elsewhere.returncode == 1
    assert elsewhere.stderr.strip() == (
        f"kxl post-deploy: run snakemake from the kxl checkout (no kxl pyproject.toml in "
        f"{tmp_path})")
