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
