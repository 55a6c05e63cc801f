"""CLI of the base-model stage: `kxl synth-base` (tiny default), `kxl fetch-base` (full run) and
`kxl random-base` (SDXL's real shapes with random weights, for slow tests and benchmarks)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth-base", help="build + pretrain the tiny SDXL (SGM single file)")
    p.add_argument("--tags", required=True, help="metadata/tags.parquet")
    p.add_argument("--config-json", required=True, help="the base.synthetic config section")
    p.add_argument("--out", required=True, help="single-file .safetensors to write")
    p.add_argument("--config-dir", required=True, help="diffusers configs + tokenizers dir")
    p.set_defaults(func=_synth)
    f = sub.add_parser("fetch-base", help="fetch the pinned base single file + SDXL configs")
    f.add_argument("--config-json", required=True, help="the base.huggingface config section")
    f.add_argument("--out", required=True)
    f.add_argument("--config-dir", required=True)
    f.add_argument("--offline", action="store_true",
                   default=os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"),
                   help="use only the HF cache (default: $HF_HUB_OFFLINE)")
    f.set_defaults(func=_fetch)
    r = sub.add_parser("random-base", help="random-init SDXL base 1.0 at its real shapes "
                       "(slow tests and benchmarks; ~6.9 GB in fp16)")
    r.add_argument("--out", required=True, help="single-file .safetensors to write")
    r.add_argument("--config-dir", required=True, help="diffusers configs + tokenizers dir")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"])
    r.set_defaults(func=_random)


def _synth(args: argparse.Namespace) -> int:
    from kxl.config import section_from_json, to_dict
    from kxl.determinism import deterministic_torch
    from kxl.model.config import SyntheticBase
    from kxl.model.synth import TAGS_SCHEMA, synthesize_base
    from kxl.provenance import record
    from kxl.tables import read_table

    cfg = section_from_json(SyntheticBase, args.config_json, "base.synthetic")
    deterministic_torch(cfg.threads)
    tags = read_table(args.tags, TAGS_SCHEMA)
    out, cdir = Path(args.out), Path(args.config_dir)
    report = synthesize_base(cfg, tags, out, cdir)
    print(json.dumps(report, sort_keys=True))
    record("base", [out, cdir], [args.tags], to_dict(cfg))
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from kxl.config import section_from_json, to_dict
    from kxl.model.config import HuggingfaceBase
    from kxl.model.fetch import fetch_base
    from kxl.provenance import record

    cfg = section_from_json(HuggingfaceBase, args.config_json, "base.huggingface")
    out, cdir = Path(args.out), Path(args.config_dir)
    digest = fetch_base(cfg, out, cdir, offline=args.offline)
    print(f"base {cfg.repo_id}/{cfg.filename}@{cfg.revision} sha256 {digest}")
    if cfg.sha256 is None:
        print(f"warning: base.huggingface.sha256 is not pinned; pin {digest} for a rebuild")
    record("base", [out, cdir], [], to_dict(cfg))
    return 0


def _random(args: argparse.Namespace) -> int:
    from kxl.model.sdxl import write_random_base

    report = write_random_base(Path(args.out), Path(args.config_dir), args.seed, args.dtype)
    print(json.dumps(report, sort_keys=True))
    return 0
