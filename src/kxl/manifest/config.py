"""The typed `manifest:` config section (validated first by config/schema.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ManifestConfig:
    """`image_exts`: file_ext values (exact, lower case as danbooru stores them) that are images."""

    image_exts: list[str] = field(default_factory=lambda: ["jpg", "jpeg", "png", "webp"])
