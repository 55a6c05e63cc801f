"""Run the benchmark suite and print one table with ratios against in-run baselines.

Each module `benchmarks/<name>_bench.py` exposes `run(quick: bool) -> list[dict]`; each row has at
least `name` and `seconds`, and optionally `peak_rss_mb`, `ratio_vs_baseline`, `note`. Baselines are
measured in the same run, never copied from an earlier one.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path


def discover() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name[: -len("_bench")] for m in pkgutil.iter_modules([str(here)])
                  if m.name.endswith("_bench"))


def format_table(rows: list[dict]) -> str:
    cols = ["bench", "name", "seconds", "peak_rss_mb", "ratio_vs_baseline", "note"]
    extra = sorted({k for r in rows for k in r} - set(cols))
    cols = cols[:-1] + extra + ["note"]
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    line = " | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))
    sep = "-|-".join("-" * w for w in widths)
    body = [" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, sep, *body])


def _fmt(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"subset of {discover()}")
    parser.add_argument("--quick", action="store_true", help="reduced sizes (smoke run)")
    args = parser.parse_args(argv)
    names = args.names or discover()
    rows: list[dict] = []
    for name in names:
        mod = importlib.import_module(f"benchmarks.{name}_bench")
        for row in mod.run(quick=args.quick):
            rows.append({"bench": name, **row})
        print(format_table(rows), file=sys.stderr, flush=True)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
