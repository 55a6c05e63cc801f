"""CLI of the merge stage: `kxl merge` (base single file + LoKr -> merged single file)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="merge the LoKr into the base SDXL single file (streaming)")
    p.add_argument("--base", required=True, help="SGM single file of the base model")
    p.add_argument("--lokr", required=True, help="kohya-keyed LoKr adapter")
    p.add_argument("--config-dir", required=True,
                   help="diffusers configs of the base (architecture check)")
    p.add_argument("--config-json", default="{}", help="the merge config section as JSON")
    p.add_argument("--out", required=True, help="merged single file to write")
    p.set_defaults(func=_merge)


def _merge(args: argparse.Namespace) -> int:
    import json

    from kxl.config import section_from_json, to_dict
    from kxl.merge.config import MergeConfig
    from kxl.merge.merge import merge_files
    from kxl.merge.meta import merge_metadata
    from kxl.model.load import check_single_file
    from kxl.provenance import record

    cfg = section_from_json(MergeConfig, args.config_json, "merge")
    check_single_file(args.base, args.config_dir)  # header only: the base fits its configs
    meta = merge_metadata(args.base, args.lokr, to_dict(cfg))
    report = merge_files(args.base, args.lokr, args.out, meta, cfg.multiplier)
    check_single_file(args.out, args.config_dir)
    print(json.dumps(report.as_dict(), sort_keys=True))
    record("merge", [args.out], [args.base, args.lokr, args.config_dir], to_dict(cfg))
    return 0
