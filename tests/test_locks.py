"""envs/locks/*.txt hold the exact versions of the last verified run (`make lock`); every install
that uses one (the Makefile's venvs, the conda envs' post-deploy scripts) must find in it each
requirement it asks pyproject.toml for, at a version inside pyproject's range."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCKS = sorted((ROOT / "envs" / "locks").glob("*.txt"))
INSTALLERS = [ROOT / "Makefile", *sorted((ROOT / "envs").glob("*.post-deploy.sh"))]
# `pip install ... -c LOCK -e .` or `-e '.[extra,...]'`
INSTALL = re.compile(r"-c (\S+) -e '?\.(?:\[([\w,-]+)\])?'?")


def read_pins(text: str) -> tuple[dict[str, Version], list[str]]:
    """The lock's `name==version` lines by PEP 503 name, and a problem for every other line."""
    pins: dict[str, Version] = {}
    problems = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            specs = list(Requirement(line).specifier)
        except InvalidRequirement:
            specs = []
        if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            problems.append(f"line {number}: {line!r} is not an exact name==version pin")
            continue
        pins[canonicalize_name(Requirement(line).name)] = Version(specs[0].version)
    return pins, problems


def lock_problems(text: str, requirements: list[Requirement]) -> list[str]:
    """Why the lock does not satisfy the requirements (empty when it does)."""
    pins, problems = read_pins(text)
    for req in requirements:
        version = pins.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{req.name}: not in the lock")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}: locked {version}, pyproject wants {req.specifier}")
    return problems


def pyproject_requirements(extras: list[str]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


def installs() -> list[tuple[str, str, str]]:
    """(file, lock, extras) for every `pip install -c LOCK -e .[extras]` of the installers."""
    return [(path.name, lock, extras or "")
            for path in INSTALLERS for lock, extras in INSTALL.findall(path.read_text())]


def test_each_install_names_its_lock() -> None:
    assert sorted(installs()) == [
        ("Makefile", "envs/locks/eval.txt", "train,eval"),
        ("Makefile", "envs/locks/main.txt", "train,dev"),
        ("data.post-deploy.sh", "envs/locks/main.txt", ""),
        ("eval.post-deploy.sh", "envs/locks/eval.txt", "train,eval"),
        ("train.post-deploy.sh", "envs/locks/main.txt", "train"),
    ]
    assert sorted({lock for _, lock, _ in installs()}) == [
        str(p.relative_to(ROOT)) for p in LOCKS]


@pytest.mark.parametrize("file,lock,extras", installs(), ids=lambda v: v or "-")
def test_lock_agrees_with_pyproject(file: str, lock: str, extras: str) -> None:
    requirements = pyproject_requirements([e for e in extras.split(",") if e])
    problems = lock_problems((ROOT / lock).read_text(), requirements)
    assert not problems, f"{file} installs {lock} with [{extras}]:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", LOCKS, ids=lambda p: p.name)
def test_lock_pins_versions_not_builds(path: Path) -> None:
    """kxl itself is the checkout; a local label (+cpu) would refuse the CUDA build of the same
    version; the Makefile's first torch install must be the locked one."""
    pins, _ = read_pins(path.read_text())
    assert "kxl" not in pins
    assert [name for name, v in pins.items() if v.local] == []
    makefile_torch = re.findall(r"torch==(\S+)", (ROOT / "Makefile").read_text())
    assert {Version(v) for v in makefile_torch} == {pins["torch"]}


def test_venvs_are_rebuilt_when_their_lock_changes() -> None:
    targets = dict(re.findall(r"^\$\((\w+)\)/\.installed:(.*)$", (ROOT / "Makefile").read_text(),
                              re.MULTILINE))
    assert "envs/locks/main.txt" in targets["VENV"].split()
    assert "envs/locks/eval.txt" in targets["EVAL_VENV"].split()


@pytest.mark.parametrize("script", INSTALLERS[1:], ids=lambda p: p.name)
def test_post_deploy_moves_every_env_file_package_to_the_lock(script: Path) -> None:
    """A constraint binds only what pip resolves: the post-deploy install must reach each
    package that the env file installed within its range."""
    env = yaml.safe_load(script.with_name(script.name.replace(".post-deploy.sh", ".yaml"))
                         .read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    [(_, extras)] = INSTALL.findall(script.read_text())
    reached = {canonicalize_name(r.name)
               for r in pyproject_requirements([e for e in extras.split(",") if e])}
    assert {canonicalize_name(Requirement(line).name) for line in pip} - reached == set()


def test_a_disagreeing_lock_names_each_package(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text("# header\nDiffusers==0.43.0\ntorch>=2.4\nnumpy==2.4.6\n"
                    "lycoris_lora==4.1.3\nsafetensors\n")
    requirements = [Requirement(r) for r in (
        "diffusers>=0.35,<0.43", "torch>=2.4", "numpy>=1.26,<3", "lycoris-lora>=4.1.3,<5",
        "transformers>=5.0,<6")]
    assert lock_problems(lock.read_text(), requirements) == [
        "line 3: 'torch>=2.4' is not an exact name==version pin",
        "line 6: 'safetensors' is not an exact name==version pin",
        "diffusers: locked 0.43.0, pyproject wants <0.43,>=0.35",
        "torch: not in the lock",
        "transformers: not in the lock",
    ]
