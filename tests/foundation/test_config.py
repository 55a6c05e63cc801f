from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from kxl.config import from_dict, section_from_json
from kxl.errors import KxlError


@dataclass(frozen=True)
class Inner:
    start: int
    stop: int | None


@dataclass(frozen=True)
class Section:
    mode: Literal["sample", "choices"]
    ranges: list[Inner]
    rate: float = 0.15
    tags: list[str] = field(default_factory=list)


def test_builds_nested_sections() -> None:
    s = section_from_json(
        Section, '{"mode": "sample", "ranges": [{"start": 0, "stop": null}], "rate": 1}', "posts"
    )
    assert s.ranges == [Inner(0, None)]
    assert s.rate == 1.0 and isinstance(s.rate, float)
    assert s.tags == []


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"mode": "sample", "ranges": [], "bogus": 1}, "unknown key(s) ['bogus']"),
        ({"ranges": []}, "missing required key 'mode'"),
        ({"mode": "other", "ranges": []}, "posts.mode"),
        ({"mode": "sample", "ranges": [{"start": "0", "stop": 1}]}, "posts.ranges[0].start"),
        ({"mode": "sample", "ranges": [{"start": True, "stop": 1}]}, "posts.ranges[0].start"),
    ],
)
def test_rejects_bad_sections_with_one_line(data: dict, needle: str) -> None:
    with pytest.raises(KxlError) as exc:
        from_dict(Section, data, "posts")
    assert needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_invalid_json_is_named() -> None:
    with pytest.raises(KxlError, match="config posts: invalid JSON"):
        section_from_json(Section, "{nope", "posts")
