"""The `kxl` command: a thin dispatcher over the stage CLIs.

Each stage package has a `cli.py` with `register(subparsers)`; handlers import heavy
libraries (torch, diffusers) lazily so that `kxl --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from kxl import __version__
from kxl.errors import KxlError

# Pipeline order; each name is a module `kxl.<name>.cli` (or `kxl.<name>_cli`).
STAGES = (
    "provenance_cli",
    "config_check_cli",
    "metadata",
    "posts",
    "manifest",
    "captions",
    "images",
    "buckets",
    "plan",
    "checks",
    "model",
    "train",
    "merge",
    "audit",
    "eval",
    "report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kxl", description=__doc__)
    parser.add_argument("--version", action="version", version=f"kxl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in STAGES:
        mod = name if name.endswith("_cli") else f"{name}.cli"
        importlib.import_module(f"kxl.{mod}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KxlError as exc:
        print(f"kxl {args.command}: error: {exc}", file=sys.stderr)
        return 2
