"""The visual identity of synthetic images: what a tiny model can learn per character.

Every post is drawn from a handful of integers, so that a tiny diffusion model (64x64 px,
8x8 latents) learns a character in a few hundred CPU steps and a small CNN recognises it:

- **character** (the post's first character tag, rowid order): a 64-bit blake2b hash of the
  tag *name* picks a shape (circle, square, triangle, star, cross, ring, diamond, bars), a
  saturated fill colour, a different accent colour for stripes across the shape, a stripe
  direction (horizontal, vertical, two diagonals) and count, a pastel background and a size.
  The shape is drawn large (55-73% of the short side) and centred, so it survives any
  cover-resize and centre crop of the buckets stage. Other character tags are not drawn.
- **series** (first copyright tag): the background is a vertical gradient from the
  character's pastel (top) towards the series colour (bottom); no series -> towards grey.
- **rating**: a thin frame in white / yellow / orange / red (general .. explicit).
- **no character**: a neutral low-contrast grey checkerboard on the same gradient.
- **per post** (a generator seeded by (synthetic seed, post id), so a post's pixels do not
  depend on which other posts exist): centre jitter of +-6% of the short side, size +-8%,
  rotation +-0.2 rad, brightness +-5% and per-pixel grain (sigma 4).

Drawing is numpy broadcasting over an (h, w) coordinate grid: no per-pixel Python. Only exact
IEEE operations touch pixels (+ - * / sqrt; trigonometry on scalars via libm), so the same
seed gives the same pixels on any CPU; encoded bytes are then those of the bundled Pillow codecs.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "diamond", "bars")

# Saturated fills / accents: 12 hues far apart in RGB.
FILLS = np.array(
    [
        [230, 25, 75], [60, 180, 75], [255, 200, 25], [0, 130, 200], [245, 130, 48],
        [145, 30, 180], [70, 220, 230], [240, 50, 230], [120, 70, 20], [0, 0, 128],
        [128, 128, 0], [20, 20, 20],
    ],
    dtype=np.float32,
)
# Pastel backgrounds: light, so that every fill stands out against them.
PASTELS = np.array(
    [
        [250, 235, 215], [220, 240, 255], [225, 250, 225], [250, 225, 240], [240, 240, 200],
        [235, 225, 255],
    ],
    dtype=np.float32,
)
RATING_FRAME = np.array(
    [[255, 255, 255], [255, 230, 0], [255, 140, 0], [200, 0, 0]], dtype=np.float32
)
NEUTRAL = np.array([128, 128, 128], dtype=np.float32)
STRIPE_ANGLES = np.array([0.0, np.pi / 2, np.pi / 4, 3 * np.pi / 4], dtype=np.float32)


def name_hash(name: str) -> int:
    """A stable 64-bit hash of a tag name (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "little")


def name_hashes(names: list[str]) -> np.ndarray:
    """`name_hash` of each name as uint64 (called once per unique tag, not per post)."""
    return np.array([name_hash(n) for n in names], dtype=np.uint64)


@dataclass(frozen=True)
class Identity:
    """Per-character drawing parameters, one array entry per post (vectorised)."""

    has_char: np.ndarray  # bool
    shape: np.ndarray  # int, index into SHAPES
    fill: np.ndarray  # int, index into FILLS
    accent: np.ndarray  # int, index into FILLS, != fill
    stripe_dir: np.ndarray  # int, index into STRIPE_ANGLES
    stripes: np.ndarray  # int, stripe count across the shape (3..5)
    pastel: np.ndarray  # int, index into PASTELS
    scale: np.ndarray  # float, shape radius / half the short side


def identities(char_hash: np.ndarray, has_char: np.ndarray) -> Identity:
    """Decode per-post character hashes (uint64) into drawing parameters, all posts at once."""
    h = char_hash.astype(np.uint64)

    def bits(shift: int, mod: int) -> np.ndarray:
        return ((h >> np.uint64(shift)) % np.uint64(mod)).astype(np.int64)

    fill = bits(8, len(FILLS))
    return Identity(
        has_char=has_char.astype(bool),
        shape=bits(0, len(SHAPES)),
        fill=fill,
        accent=(fill + 1 + bits(16, len(FILLS) - 1)) % len(FILLS),
        stripe_dir=bits(24, len(STRIPE_ANGLES)),
        stripes=3 + bits(32, 3),
        pastel=bits(40, len(PASTELS)),
        scale=0.55 + 0.06 * bits(48, 4).astype(np.float64),
    )


def series_colours(series_hash: np.ndarray, has_series: np.ndarray) -> np.ndarray:
    """RGB float32 [n, 3]: each post's series colour (neutral grey without a series)."""
    idx = (series_hash.astype(np.uint64) % np.uint64(len(FILLS))).astype(np.int64)
    return np.where(has_series[:, None], FILLS[idx], NEUTRAL[None, :]).astype(np.float32)


def shape_mask(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-mask of SHAPES[shape] in unit coordinates (radius 1 around the centre).

    Each branch builds only the temporaries it needs: at these sizes allocation dominates.
    """
    name = SHAPES[shape]
    if name == "circle":
        return u * u + v * v <= 1.0
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if name == "triangle":
        return (v <= 0.75) & (v >= 2.0 * np.abs(u) - 1.0)
    if name == "star":
        # rho <= 0.55 + 0.45 cos(5 theta), with cos(5 theta) = Re((u + iv)^5) / rho^5
        u2, v2 = u * u, v * v
        rho = np.sqrt(u2 + v2) + np.float32(1e-6)
        re5 = u * (u2 * u2 - 10.0 * u2 * v2 + 5.0 * v2 * v2)
        rho2 = rho * rho
        return rho - 0.45 * re5 / (rho2 * rho2 * rho) <= 0.55  # products, not pow: exact IEEE
    if name == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))
    if name == "ring":
        rho2 = u * u + v * v
        return (rho2 <= 1.0) & (rho2 >= 0.36)
    if name == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    return (np.maximum(np.abs(u), np.abs(v)) <= 0.9) & (parity((v + 0.9) * 2.5) == 0)  # bars


def axis(dx: np.ndarray, dy: np.ndarray, angle: float, scale: float) -> np.ndarray:
    """scale * (dx cos(angle) + dy sin(angle)) for a row dx [1, w] and a column dy [h, 1].

    The scaling happens on the small vectors, so the [h, w] result is the only allocation.
    """
    # math.cos/sin (libm) on scalars: numpy may pick CPU-specific SIMD code for its ufuncs,
    # and a last-bit difference would move a shape edge pixel on another machine.
    return dx * np.float32(math.cos(angle) * scale) + dy * np.float32(math.sin(angle) * scale)


def parity(x: np.ndarray) -> np.ndarray:
    """floor(x) % 2 for x > -64, via an int cast (float floor + mod is several times slower)."""
    return (x + np.float32(64.0)).astype(np.int32) & 1


@dataclass(frozen=True)
class Jitter:
    """Per-post variation of one image, drawn from that post's own generator."""

    dx: float
    dy: float
    size: float
    angle: float
    brightness: float


def draw_jitter(rng: np.random.Generator) -> Jitter:
    dx, dy, size, angle, bright = rng.uniform(-1.0, 1.0, 5)
    return Jitter(0.06 * dx, 0.06 * dy, 1.0 + 0.08 * size, 0.2 * angle, 1.0 + 0.05 * bright)


def render(
    width: int,
    height: int,
    ident: Identity,
    i: int,
    series_rgb: np.ndarray,
    rating: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw post `i` of `ident` as planar uint8 RGB [3, height, width] (see module docstring)."""
    jit = draw_jitter(rng)
    # Planar (3, h, w) float32: every broadcast then runs along a long row, not a length-3 axis.
    ys, xs = np.ogrid[0:height, 0:width]
    ys = ys.astype(np.float32) + 0.5
    xs = xs.astype(np.float32) + 0.5
    short = float(min(width, height))
    top = PASTELS[ident.pastel[i]] if ident.has_char[i] else np.full(3, 200.0, np.float32)
    t = ys / height  # [h, 1]: 0 at the top, 1 at the bottom
    rows = (1.0 - 0.35 * t[None]) * top[:, None, None] + 0.35 * t[None] * series_rgb[:, None, None]
    img = np.empty((3, height, width), np.float32)
    # Brightness scales the colours, not the finished image: one full-image pass fewer.
    img[:] = rows * jit.brightness
    cx, cy = width / 2.0 + jit.dx * short, height / 2.0 + jit.dy * short
    if ident.has_char[i]:
        radius = max(float(ident.scale[i]) * jit.size * short / 2.0, 1.0)
        u = axis(xs - cx, ys - cy, jit.angle, 1.0 / radius)
        v = axis(xs - cx, ys - cy, jit.angle + np.pi / 2, 1.0 / radius)
        inside = shape_mask(int(ident.shape[i]), u, v)
        # stripes: bands of width 2/stripes across the shape along its stripe direction
        half, direction = ident.stripes[i] / 2.0, jit.angle + STRIPE_ANGLES[ident.stripe_dir[i]]
        along = axis(xs - cx, ys - cy, direction, half / radius)
        stripe = parity(along + np.float32(half)) == 1
        np.copyto(img, (FILLS[ident.fill[i]] * jit.brightness)[:, None, None], where=inside)
        accent = (FILLS[ident.accent[i]] * jit.brightness)[:, None, None]
        np.copyto(img, accent, where=inside & stripe)
    else:
        cell = max(short / 4.0, 1.0)
        checker = (parity(xs / cell) + parity(ys / cell)) % 2 == 0
        img *= np.where(checker, np.float32(0.85), np.float32(1.0))
    frame = max(int(short) // 32, 1)
    edge = (RATING_FRAME[rating] * jit.brightness)[:, None, None]
    img[:, :frame], img[:, -frame:], img[:, :, :frame], img[:, :, -frame:] = edge, edge, edge, edge
    img += grain(rng, height, width)
    np.clip(img, 0.0, 255.0, out=img)
    return img.astype(np.uint8)


def grain(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Film grain (3, h, w), sigma 4: a sum of two uniform bytes (triangular, near Gaussian).

    Raw generator bytes are ~10x cheaper than standard_normal and the grain need not be exact.
    """
    n = 3 * height * width
    b = np.frombuffer(rng.bytes(2 * n), np.uint8).reshape(2, 3, height, width)
    g = b[0].astype(np.float32)
    g += b[1]  # in place: each full-size temporary costs page faults, not just arithmetic
    g -= np.float32(255.0)
    g *= np.float32(4.0 / 104.0)
    return g
