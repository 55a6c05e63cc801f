"""Config errors name the file, the key path and what was expected, in a few lines (issue 21:
through snakemake an unknown top-level key printed ~950 lines, the whole schema)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kxl.config_check import check_config, config_problem, merge_configs
from kxl.errors import KxlError

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "config/schema.yaml"
DEFAULT = yaml.safe_load((ROOT / "config/config.yaml").read_text())


def _with(path: str, value) -> dict:
    cfg = copy.deepcopy(DEFAULT)
    *parents, last = path.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return cfg


def test_both_shipped_configs_validate() -> None:
    assert config_problem(DEFAULT, SCHEMA) is None
    # epsilon.yaml is an override: the workflow sees it merged over config/config.yaml
    epsilon = yaml.safe_load((ROOT / "config/epsilon.yaml").read_text())
    assert config_problem(merge_configs(DEFAULT, epsilon), SCHEMA) is None


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("bogus", 1, "(top level): unknown key(s) ['bogus']; allowed: ['audit', "),
    ("plan.bogus", 1, "plan: unknown key(s) ['bogus']; allowed: ["),
    ("plan.batch_size", "x", "plan.batch_size: 'x' is not valid (type: expected type='integer'"),
    ("train.caption_tag_dropout", 1.5, "train.caption_tag_dropout: 1.5 is not valid "
                                       "(exclusiveMaximum"),
    # an old config: the caption settings moved to the stage that reads them
    ("plan.caption_shuffle", True, "plan: unknown key(s) ['caption_shuffle']; allowed: "
                                   "['batch_size', 'epochs', 'grad_accum', 'max_steps', "
                                   "'partial_batch', 'world_size'] (plan.caption_shuffle is now "
                                   "train.caption_shuffle)"),
    ("seed", KeyError, "(top level): 'seed' is a required property"),
])
def test_problem_names_the_key_path(path, value, expected) -> None:
    problem = config_problem(_with(path, value), SCHEMA)
    assert problem is not None and problem.startswith(expected), problem
    assert "\n" not in problem and len(problem) < 400


def test_check_config_names_the_files() -> None:
    with pytest.raises(KxlError, match=r"^invalid config \(from a.yaml, b.yaml\) at plan: unknown"):
        check_config(_with("plan.bogus", {}), SCHEMA, ["a.yaml", "b.yaml"])


def test_snakemake_prints_one_short_paragraph(tmp_path: Path) -> None:
    override = tmp_path / "override.yaml"
    override.write_text("bogus: 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "results/epsilon.safetensors",
         "--configfile", "config/config.yaml", str(override)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert len(out.strip().splitlines()) <= 6, out
    assert (f"invalid config (from config/config.yaml, {override}) at (top level): "
            "unknown key(s) ['bogus']") in out


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    """Snakemake says only "Config file is not valid JSON or YAML" (issue 21)."""
    import shutil

    from kxl.config_check import yaml_problem

    for part in ("Snakefile", "rules", "config", "envs"):
        src = ROOT / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / part)
    cfg = tmp_path / "config/config.yaml"
    lines = cfg.read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("  batch_size:"))
    lines[row] = "  batch_size: [8"
    cfg.write_text("\n".join(lines) + "\n")
    problem = yaml_problem(cfg)
    assert problem is not None and problem.startswith(f"{cfg}:{row + 2}:")
    assert "YAML syntax error: expected ',' or ']'" in problem
    assert yaml_problem(ROOT / "config/config.yaml") is None
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and len(out.strip().splitlines()) <= 4, out
    assert f"config/config.yaml:{row + 2}:" in out


def _kxl_check(*files: Path) -> subprocess.CompletedProcess[str]:
    kxl = Path(sys.executable).with_name("kxl")
    return subprocess.run([str(kxl), "check-config", *map(str, files)], cwd=ROOT,
                          capture_output=True, text=True)


def test_check_config_names_the_override_with_a_syntax_error(tmp_path) -> None:
    """Snakemake's CLI says only "Config file is not valid JSON or YAML" for a broken override
    passed with --configfile; `kxl check-config` names file, line and column."""
    over = tmp_path / "over.yaml"
    over.write_text("train:\n  max_steps: 5\n  bad: [1, 2\n")  # the flow sequence never closes
    proc = _kxl_check(ROOT / "config/config.yaml", over)
    assert proc.returncode == 2 and proc.stdout == ""
    line = proc.stderr.strip()
    assert "\n" not in line and line.startswith(f"kxl check-config: error: {over}:4:1: ")


def test_check_config_validates_the_merge_as_snakemake_does(tmp_path) -> None:
    over = tmp_path / "over.yaml"
    over.write_text("train:\n  max_steps: 5\n")  # merges into train: every other key stays
    assert _kxl_check(ROOT / "config/config.yaml", over).returncode == 0
    over.write_text("train:\n  mixed_precision: fp8\n")
    proc = _kxl_check(ROOT / "config/config.yaml", over)
    assert proc.returncode == 2
    assert "train.mixed_precision: 'fp8' is not valid" in proc.stderr
    assert str(over) in proc.stderr and len(proc.stderr.splitlines()) == 1
    over.write_text("- a list\n")
    assert "must be a YAML mapping" in _kxl_check(ROOT / "config/config.yaml", over).stderr


def test_merge_replaces_lists_and_merges_mappings() -> None:
    from kxl.config_check import merge_configs

    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    assert merge_configs(base, {"a": {"y": [3]}}) == {"a": {"x": 1, "y": [3]}, "b": 1}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 1}  # the inputs are not changed
