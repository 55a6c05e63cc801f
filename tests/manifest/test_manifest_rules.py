"""Rules select_posts + build_manifest run by Snakemake on hand-made metadata tables.

Independent of the metadata stage: the tables are placed where it would write them and only
these two rules may run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from manifest_fixtures import write_tables

from kxl.config import from_dict
from kxl.manifest.config import ManifestConfig

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TARGET = "results/manifest/kept.parquet"
POSTS = {"posts": {"mode": "choices", "seed": 1, "ranges": [
    {"start": 60, "stop": None, "count": "all"}, {"start": 0, "stop": 60, "count": 8}]}}


def snakemake(root: Path, *args: str, config: str = "posts.yaml") -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [str(BIN / "snakemake"), "--cores", "2", "--allowed-rules", "select_posts",
         "build_manifest", "--configfile", config, *args, "--", TARGET],
        cwd=root, env=env, capture_output=True, text=True, check=False,
    )


@pytest.fixture(scope="module")
def workflow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wf")
    for name in ("Snakefile", "rules", "config", "envs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, root / name)
    paths = write_tables(root / "results/metadata")
    paths["selected"].unlink()  # made by select_posts
    (root / "posts.yaml").write_text(yaml.safe_dump(POSTS))
    proc = snakemake(root)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return root


@pytest.mark.e2e
def test_rules_make_every_output_with_log_and_benchmark(workflow: Path) -> None:
    for rel in ("results/posts/selected.parquet", "results/posts/summary.json",
                "results/manifest/kept.parquet", "results/manifest/dropped.parquet",
                "results/manifest/summary.json", "logs/posts/select_posts.log",
                "logs/manifest/build_manifest.log", "logs/benchmarks/build_manifest.tsv"):
        assert (workflow / rel).is_file(), rel
    assert "kept 4 of 14 selected" in (workflow / "logs/manifest/build_manifest.log").read_text()


@pytest.mark.e2e
def test_manifest_config_change_reruns_only_build_manifest(workflow: Path) -> None:
    assert "Nothing to be done" in snakemake(workflow, "-n").stdout
    exts = {**POSTS, "manifest": {"image_exts": ["png"]}}
    (workflow / "exts.yaml").write_text(yaml.safe_dump(exts))
    out = snakemake(workflow, "-n", config="exts.yaml").stdout
    planned = set(re.findall(r"^(\w+)\s+1$", out, re.M)) - {"total"}  # "Job stats" rows
    assert planned == {"build_manifest"}, out


@pytest.mark.parametrize("name", ["config.yaml", "epsilon.yaml"])
def test_shipped_manifest_sections_parse(name: str) -> None:
    section = yaml.safe_load((ROOT / "config" / name).read_text())["manifest"]
    assert from_dict(ManifestConfig, section, "manifest").image_exts == ["jpg", "jpeg", "png",
                                                                         "webp"]
