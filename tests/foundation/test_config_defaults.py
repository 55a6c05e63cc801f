"""One place for the defaults of a pipeline run: config/config.yaml (issue 22). The config the
workflow sees sets every field of every section a stage's CLI parses, so a dataclass default
never fills in: deleting buckets.crop_convention from the yaml used to flip it silently to the
dataclass's `correct` while the yaml documented kohya-0.8.7."""

from __future__ import annotations

import copy
import importlib
from pathlib import Path

import pytest
import yaml

from kxl.config_check import SECTIONS, config_problem, merge_configs, unset_problem

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "config/schema.yaml"
DEFAULT = yaml.safe_load((ROOT / "config/config.yaml").read_text())


@pytest.mark.parametrize("override", [None, "epsilon.yaml", "micro.yaml"])
def test_the_shipped_configs_set_every_field_of_every_section(override) -> None:
    cfg = DEFAULT
    if override:
        cfg = merge_configs(cfg, yaml.safe_load((ROOT / "config" / override).read_text()))
    assert unset_problem(cfg) is None
    assert config_problem(cfg, SCHEMA) is None


def test_every_section_a_cli_parses_is_registered() -> None:
    """Each `section_from_json(Class, ..., "path")` in the CLIs names a registered section."""
    import re

    calls = set()
    for cli in (ROOT / "src/kxl").rglob("cli.py"):
        calls |= set(re.findall(r'section_from_json\(\s*(\w+),[^"]*"([\w.]+)"', cli.read_text()))
    assert calls and {(name, path) for path, (_, name) in SECTIONS.items()} >= calls
    for module, name in SECTIONS.values():
        assert hasattr(importlib.import_module(module), name), (module, name)


@pytest.mark.parametrize("path", ["buckets.crop_convention", "train.lokr.factor",
                                  "eval.generate.negative_prompt", "train.caption_shuffle"])
def test_a_deleted_key_is_named_instead_of_defaulted(path) -> None:
    cfg = copy.deepcopy(DEFAULT)
    *parents, last = path.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    del node[last]
    problem = config_problem(cfg, SCHEMA)
    assert problem is not None and problem.startswith(f"{path}: ") and "\n" not in problem
