"""CLI of the audit stage: `kxl diff A B`, `kxl diff --pair NAME` and `kxl series --name NAME`
(the Snakemake targets)."""

from __future__ import annotations

import argparse

from kxl.hub import add_offline_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help="compare two checkpoints (merged or LoKr) or two runs")
    p.add_argument("a", nargs="?", help="file, run dir, released name or hf://owner/repo/file@rev")
    p.add_argument("b", nargs="?", help="the other side")
    p.add_argument("--base", help="base single file (needed for LoKr vs merged)")
    p.add_argument("--pair", help="take a, b, base from config audit.diffs.<PAIR>")
    p.add_argument("--config-json", default="{}", help="the audit config section as JSON")
    p.add_argument("--tolerance", type=float, help="relative L2 above which a tensor differs")
    p.add_argument("--atol", type=float, help="max |a-b| at or below which a tensor is equal")
    p.add_argument("--ignore-dtype", action="store_true", help="dtype mismatches do not fail")
    p.add_argument("--plan", help="plan.parquet: with two run dirs, what the steps saw")
    p.add_argument("--plan-b", help="B's own plan (a crash scenario's): with --plan, the first "
                   "step whose data or learning rate differ, and its rows in each")
    p.add_argument("--report", help="self-contained HTML report to write")
    p.add_argument("--json", help="JSON report to write")
    p.add_argument("--exit-zero", action="store_true", help="exit 0 even when they differ")
    p.set_defaults(func=_diff)
    add_offline_arg(p)
    s = sub.add_parser("series", help="per-block norms and changes of a LoKr over its "
                       "checkpoint steps (one series, or two side by side)")
    s.add_argument("--name", required=True, help="the series: config audit.series.<NAME>")
    s.add_argument("--config-json", default="{}", help="the audit config section as JSON")
    s.add_argument("--checkpoint-steps", default="",
                   help="train.checkpoint_steps, comma-separated (the `rebuilt` series' steps)")
    s.add_argument("--json", help="JSON report to write")
    s.add_argument("--report", help="self-contained HTML report to write")
    add_offline_arg(s)
    s.set_defaults(func=_series)
    c = sub.add_parser("emulate-resume", help="the plan of a run resumed as sd-scripts 0.8.7 "
                       "resumed (data order restarted), and what it did to the data")
    c.add_argument("--plan", required=True, help="plan/plan.parquet (the exact run's)")
    c.add_argument("--resume-step", required=True, type=int,
                   help="the checkpoint step the crashed run resumed from")
    c.add_argument("--reading", required=True, choices=["restart-epoch", "restart-run"])
    c.add_argument("--window", type=int, default=1000, help="steps per window of the report")
    c.add_argument("--out", required=True, help="the emulated plan (plan.parquet's schema)")
    c.add_argument("--damage", required=True, help="JSON: posts seen twice / never seen")
    c.set_defaults(func=_emulate_resume)


def _diff(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from kxl.atomic import write_json, write_text
    from kxl.audit.config import AuditConfig
    from kxl.audit.diff import diff_files
    from kxl.audit.report import json_safe, render_html
    from kxl.audit.runs import diff_runs
    from kxl.config import section_from_json
    from kxl.errors import KxlError
    from kxl.hub import resolve

    cfg = section_from_json(AuditConfig, args.config_json, "audit")
    a, b, base = args.a, args.b, args.base
    if args.pair:
        pair = cfg.pair(args.pair)
        a, b, base = pair.a, pair.b, base or pair.base
    if not a or not b:
        raise KxlError("kxl diff needs two operands A B (or --pair NAME with --config-json)")
    tol = dataclasses.replace(cfg.tolerance, **{k: v for k, v in (
        ("rtol", args.tolerance), ("atol", args.atol)) if v is not None})
    if args.ignore_dtype:
        tol = dataclasses.replace(tol, check_dtype=False)
    pa, pb = resolve(a, cfg.released, args.offline), resolve(b, cfg.released, args.offline)
    if pa.is_dir() and pb.is_dir():
        report = diff_runs(pa, pb, Path(args.plan) if args.plan else None, tol,
                           Path(args.plan_b) if args.plan_b else None)
    else:
        pbase = resolve(base, cfg.released, args.offline) if base else None
        report = diff_files(pa, pb, pbase, tol)
    if args.json:
        write_json(args.json, json_safe(report))
    if args.report:
        write_text(args.report, render_html(report))
    c = report["counts"]
    print(f"{report['mode']}: {'PASS' if report['passed'] else 'FAIL'} {c}")
    if (div := report.get("run", {}).get("divergence")) is not None:
        print(f"first divergent step {div['step']} (data {div['data_step']}, lr {div['lr_step']})")
    return 0 if report["passed"] or args.exit_zero else 1


def _emulate_resume(args: argparse.Namespace) -> int:
    from kxl.atomic import write_json
    from kxl.audit.crash import emulate_resume, resume_damage
    from kxl.plan.build import PLAN_SCHEMA
    from kxl.provenance import record
    from kxl.tables import read_table, write_table

    plan = read_table(args.plan, PLAN_SCHEMA)
    emulated = emulate_resume(plan, args.resume_step, args.reading)
    damage = {"resume_step": args.resume_step, "reading": args.reading,
              **resume_damage(plan, emulated, args.window)}
    write_table(emulated, args.out, PLAN_SCHEMA)
    write_json(args.damage, damage)
    record("audit", [args.out, args.damage], [args.plan],
           {"resume_step": args.resume_step, "reading": args.reading, "window": args.window})
    print(f"{args.reading} from step {args.resume_step}: {damage['twice']} post(s) seen twice, "
          f"{damage['never']} never seen; first divergent step {damage['first_divergent_step']}")
    return 0


def _series(args: argparse.Namespace) -> int:
    from kxl.atomic import write_json, write_text
    from kxl.audit.config import AuditConfig, crash_sources, series_files
    from kxl.audit.report import json_safe
    from kxl.audit.runs import series_divergence
    from kxl.audit.series import series_report
    from kxl.audit.series_html import render_series_html
    from kxl.config import section_from_json
    from kxl.errors import KxlError
    from kxl.hub import resolve

    cfg = section_from_json(AuditConfig, args.config_json, "audit")
    try:
        steps = [int(s) for s in args.checkpoint_steps.split(",") if s.strip()]
    except ValueError as exc:
        raise KxlError(f"--checkpoint-steps {args.checkpoint_steps!r}: not integers") from exc
    series = cfg.series_config(args.name, steps)
    files = series_files(args.name, series, cfg.released, steps)
    kinds = {k: v if isinstance(v, str) else "list" for k, v in
             (("a", series.a), ("b", series.b)) if k in files}
    paths = {k: [str(resolve(f, cfg.released, args.offline)) for f in side.values()]
             for k, side in files.items()}
    report = series_report(args.name, kinds, files, paths, series.jump)
    if sources := crash_sources(cfg.crash, args.name):
        report["divergence"] = series_divergence(report["steps"], paths, sources)
    if args.json:
        write_json(args.json, json_safe(report))
    if args.report:
        write_text(args.report, render_series_html(report))
    print(f"series {args.name}: {len(report['steps'])} steps, {report['modules']} modules, "
          f"{len(report['flags'])} jump(s)"
          + "".join(f"; {f['series']} {f['block']} at {f['step']}" for f in report["flags"][:5]))
    if (div := report.get("divergence")) is not None:
        print(f"first divergent step {div['step']} (data {div['data_step']}, lr {div['lr_step']})")
    return 0
