"""`kxl check-config`: config files as snakemake would merge them, checked with one line."""

from __future__ import annotations

import argparse

from kxl.config_check import check_files


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-config", help="check config files as `snakemake --configfile` "
                       "merges them: YAML syntax (file:line:column) and the schema")
    p.add_argument("files", nargs="+", help="config files, later ones overriding earlier ones")
    p.add_argument("--schema", default="config/schema.yaml")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    check_files(args.files, args.schema)
    print(f"{' + '.join(args.files)}: valid")
    return 0
