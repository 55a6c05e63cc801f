"""Typed config sections.

Rules pass each stage its own config section as JSON (through Snakemake `params:`, so that
changing a value reruns exactly the rules that use it). CLIs turn that JSON into a frozen
dataclass with `section_from_json`; library code only ever sees the typed section.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, TypeVar

from kxl.errors import KxlError

T = TypeVar("T")


def from_dict(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass `cls` from a dict, rejecting unknown keys and missing required ones."""
    if not isinstance(data, dict):
        raise KxlError(f"config {where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise KxlError(f"config {where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise KxlError(f"config {where}: missing required key {name!r}")
            continue
        kwargs[name] = _convert(hints[name], data[name], f"{where}.{name}")
    return cls(**kwargs)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except KxlError:
                continue
        raise KxlError(f"config {where}: {value!r} does not match {tp}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise KxlError(f"config {where}: expected a list, got {value!r}")
        (arg, *_) = typing.get_args(tp) or (Any,)
        items = [_convert(arg, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise KxlError(f"config {where}: {value!r} is not one of {typing.get_args(tp)}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not (
        isinstance(value, tp) and not (tp is int and isinstance(value, bool))
    ):
        raise KxlError(f"config {where}: expected {tp.__name__}, got {value!r}")
    return value


def section_from_json(cls: type[T], text: str, where: str) -> T:
    """Parse a JSON config section passed on the command line."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KxlError(f"config {where}: invalid JSON ({exc.msg} at char {exc.pos})") from exc
    return from_dict(cls, data, where)


def to_dict(section: Any) -> dict[str, Any]:
    return dataclasses.asdict(section)
