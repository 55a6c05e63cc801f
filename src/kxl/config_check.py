"""The workflow config against config/schema.yaml, with one short error paragraph.

Snakemake's own `validate` prints the failing schema, for an unknown top-level key the whole
schema (~950 lines); rules/common.smk calls this first, so a wrong key or value is named in a
few lines: the config files, the key path and what was expected."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kxl.errors import KxlError


def config_problem(config: dict[str, Any], schema_path: str | Path) -> str | None:
    """The first schema violation of `config` in words (None when it validates)."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return unset_problem(config) or cross_section_problem(config)
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        moved = [f"{where}.{k} is now {MOVED[f'{where}.{k}']}" for k in unknown
                 if f"{where}.{k}" in MOVED]
        return (f"{where}: unknown key(s) {unknown}; allowed: {allowed}"
                + (f" ({'; '.join(moved)})" if moved else ""))
    if error.validator == "required":
        return f"{where}: {error.message}"
    expected = {k: v for k, v in error.schema.items() if k not in ("description", "properties")}
    got = repr(error.instance)
    got = got if len(got) <= 80 else got[:77] + "..."
    return f"{where}: {got} is not valid ({error.validator}: expected {_short(expected)})"


# The section each stage's CLI parses (`section_from_json(cls, ..., path)` in src/kxl/*/cli.py),
# by module and class: config/config.yaml must set every field, so that the defaults a run uses
# are in one place; a dataclass default filling in a deleted key would silently differ from it.
SECTIONS = {
    "metadata.synthetic": ("kxl.metadata.config", "SyntheticConfig"),
    "metadata.huggingface": ("kxl.metadata.config", "HuggingFaceConfig"),
    "posts": ("kxl.posts.config", "PostsConfig"),
    "manifest": ("kxl.manifest.config", "ManifestConfig"),
    "captions": ("kxl.captions.kohaku", "CaptionsConfig"),
    "images": ("kxl.images.config", "ImagesConfig"),
    "images.synthetic": ("kxl.images.config", "SyntheticImages"),
    "images.huggingface": ("kxl.images.config", "HuggingfaceImages"),
    "buckets": ("kxl.buckets.config", "BucketsConfig"),
    "plan": ("kxl.plan.config", "PlanConfig"),
    "counts": ("kxl.checks.counts", "CountsConfig"),
    "base.synthetic": ("kxl.model.config", "SyntheticBase"),
    "base.huggingface": ("kxl.model.config", "HuggingfaceBase"),
    "train": ("kxl.train.config", "TrainConfig"),
    "merge": ("kxl.merge.config", "MergeConfig"),
    "audit": ("kxl.audit.config", "AuditConfig"),
    "eval.characters": ("kxl.eval.config", "CharactersConfig"),
    "eval.generate": ("kxl.eval.config", "GenerateConfig"),
    "eval.conditioning": ("kxl.eval.config", "ConditioningConfig"),
    "eval.ccip": ("kxl.eval.config", "CcipConfig"),
}
# Keys that moved to the stage that reads them: an old config naming them is told where.
MOVED = {"plan.caption_shuffle": "train.caption_shuffle",
         "plan.caption_tag_dropout": "train.caption_tag_dropout"}
# Fields a rule fills in from their owner's section instead of the config's.
RULE_SUPPLIED = {"eval.generate.tag_word_sep": "captions.tag_word_sep (rules/eval.smk)"}


def unset_fields(cls: type, data: dict[str, Any], where: str) -> list[str]:
    """Key paths of the fields of dataclass `cls` (nested ones too) that `data` leaves unset."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        path = f"{where}.{f.name}"
        if f.name not in data:
            out += [] if path in RULE_SUPPLIED else [path]
        elif dataclasses.is_dataclass(hints[f.name]) and isinstance(data[f.name], dict):
            out += unset_fields(hints[f.name], data[f.name], path)
    return out


def unset_problem(config: dict[str, Any]) -> str | None:
    """The first key a stage reads that the config leaves to the stage's built-in default."""
    import importlib

    for path, (module, name) in SECTIONS.items():
        node: Any = config
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        cls = getattr(importlib.import_module(module), name)
        missing = unset_fields(cls, node, path) if isinstance(node, dict) else [path]
        if missing:
            return (f"{missing[0]}: not set (config/config.yaml sets every key a stage reads, "
                    "so that its defaults are the only ones a run uses)")
    return None


def cross_section_problem(config: dict[str, Any]) -> str | None:
    """What the schema cannot say: a released step the rebuilt run keeps no checkpoint at, a
    diff named like a released-step comparison, a series with fewer than 2 steps, a crash
    scenario that resumes from a step the run keeps no checkpoint at, an eval model
    that is neither a file, a released name nor hf://."""
    from kxl.audit.config import AuditConfig, all_pairs, series_files
    from kxl.config import from_dict
    from kxl.eval.config import check_model_paths

    audit = config.get("audit") or {}
    kept = set((config.get("train") or {}).get("checkpoint_steps") or [])
    for name, raw in sorted((audit.get("released") or {}).items()):
        step = raw.get("step")
        if step is not None and step not in kept:
            return (f"audit.released.{name}.step: {step} is not in train.checkpoint_steps "
                    f"{sorted(kept)} (the rebuilt run needs a checkpoint there to compare)")
    try:
        all_pairs(audit)
        check_model_paths(((config.get("eval") or {}).get("generate") or {}).get("models") or [],
                          audit.get("released") or {})
        cfg = from_dict(AuditConfig, audit, "audit")
        for name in sorted(cfg.all_series(sorted(kept))):  # checks the crash scenarios too
            series_files(name, cfg.series_config(name, sorted(kept)), cfg.released, sorted(kept))
    except KxlError as exc:
        return str(exc).removeprefix("config ")
    return None


def _short(schema: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in schema.items())
    return text if len(text) <= 160 else text[:157] + "..."


def check_config(config: dict[str, Any], schema_path: str | Path, files: Sequence[str]) -> None:
    """KxlError naming the config files and the first problem; nothing when it validates."""
    problem = config_problem(config, schema_path)
    if problem:
        names = ", ".join(str(f) for f in files) or "(no config file)"
        raise KxlError(f"invalid config (from {names}) at {problem}")


def yaml_problem(path: str | Path) -> str | None:
    """A YAML syntax error of `path` as `file:line:column: problem` (None when it parses).
    Snakemake reports one as "Config file is not valid JSON or YAML" without naming the file."""
    import yaml

    try:
        yaml.safe_load(Path(path).read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        return f"{where}: YAML syntax error: {exc.problem or exc}"
    except OSError as exc:
        return f"{path}: cannot read ({exc.strerror})"
    return None


def merge_configs(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` over `base` as Snakemake merges --configfile files: mappings merge key by key,
    anything else (lists included) is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_configs(out[key], value)
        else:
            out[key] = value
    return out


def check_files(files: Sequence[str | Path], schema_path: str | Path) -> None:
    """The config files as `snakemake --configfile FILES` would merge them: a YAML syntax error
    named by file, line and column, or the merged config's first schema problem; KxlError.

    Snakemake's CLI parses --configfile files before any workflow code runs, so a syntax error
    in an override gets its message ("Config file is not valid JSON or YAML"), naming neither
    file nor line; this is the check to run then."""
    import yaml

    merged: dict[str, Any] = {}
    for path in files:
        if problem := yaml_problem(path):
            raise KxlError(problem)
        data = yaml.safe_load(Path(path).read_text())
        if data is None:
            continue
        if not isinstance(data, dict):
            raise KxlError(f"{path}: a config file must be a YAML mapping of sections, "
                           f"not a {type(data).__name__}")
        merged = merge_configs(merged, data)
    check_config(merged, schema_path, [str(f) for f in files])
