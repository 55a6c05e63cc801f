"""CLI of stage train: `kxl train` (one process, or one per rank under torchrun), `kxl lokr-table`,
`kxl step-lokr` and `kxl explain-step` (what a step of the training run saw)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="LoKr training over the plan (stages 8-9)")
    p.add_argument("--plan", required=True)
    p.add_argument("--buckets", required=True, help="buckets.parquet (size conditioning)")
    p.add_argument("--cache-index", required=True, help="buckets/cache/index.json (its storage "
                   "picks the image source: the pixel or latent cache beside it, or decoding "
                   "the images)")
    p.add_argument("--dataset", help="images/dataset.parquet (needed for storage none)")
    p.add_argument("--images-root", help="folder the dataset's `file` is under (storage none)")
    p.add_argument("--captions", required=True)
    p.add_argument("--base", required=True, help="SDXL single file (results/base/base.safetensors)")
    p.add_argument("--config-dir", required=True, help="diffusers configs + tokenizers of --base")
    p.add_argument("--config-json", required=True, help="the train config section")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out-dir", required=True, help="checkpoints/, metrics.csv, tensorboard/")
    p.add_argument("--lokr", required=True, help="final adapter (kohya keys)")
    p.add_argument("--resume", default="auto", help="auto (newest valid checkpoint) | none | DIR")
    p.add_argument("--continue-from", type=Path, help="a crash scenario: another run's "
                   "checkpoint at step k, continued over --plan (same rows before k)")
    p.add_argument("--warmup", default="continue", choices=["continue", "restart"],
                   help="with --continue-from: restart the warmup at k, or continue it")
    p.set_defaults(func=_run)
    t = sub.add_parser("lokr-table", help="the LoKr's modules, factors, parameters and file size "
                       "per block kind at a model's real shapes (meta device: no weights)")
    t.add_argument("--config-dir", help="diffusers configs (default: SDXL base 1.0's, shipped)")
    t.add_argument("--preset", default="config/lycoris/kohaku_xl.toml")
    t.add_argument("--factor", type=int, default=8, help="train.lokr.factor")
    t.set_defaults(func=_lokr_table)
    e = sub.add_parser("step-lokr", help="a checkpoint's LoKr as a kohya-keyed file (the "
                       "rebuilt run at a released step, for kxl diff)")
    e.add_argument("--checkpoints", required=True, help="results/train/checkpoints")
    e.add_argument("--step", required=True, type=int)
    e.add_argument("--config-json", required=True,
                   help="the train section (its save_precision: the released files' dtype)")
    e.add_argument("--out", required=True)
    e.set_defaults(func=_step_lokr)
    x = sub.add_parser("explain-step", help="print what optimizer step N of the training run "
                       "saw, captions as its text encoder got them")
    x.add_argument("step", type=int)
    x.add_argument("--rank", type=int, default=None)
    x.add_argument("--plan", default="results/plan/plan.parquet",
                   help="or a plan derived from it (kxl emulate-resume)")
    x.add_argument("--captions", default="results/captions/captions.parquet")
    x.add_argument("--buckets", default="results/buckets/buckets.parquet")
    x.add_argument("--lokr", default="results/epsilon-lokr.safetensors",
                   help="the run's LoKr: its provenance record has the caption settings")
    x.add_argument("--config-json", default=None, help="a train: section as JSON instead "
                   "(only caption_shuffle and caption_tag_dropout are read)")
    x.set_defaults(func=_explain)


def _lokr_table(args: argparse.Namespace) -> int:
    from kxl.lokr.network import LokrSpec
    from kxl.lokr.table import SDXL_CONFIGS, lokr_table, markdown

    spec = LokrSpec(preset=args.preset, factor=args.factor)
    # LyCORIS logs to stdout; stdout is the table alone, so `> file` gives the docs table
    with contextlib.redirect_stdout(sys.stderr):
        table = lokr_table(args.config_dir or SDXL_CONFIGS, spec)
    print(markdown(table))
    return 0


def _step_lokr(args: argparse.Namespace) -> int:
    from kxl.config import section_from_json
    from kxl.provenance import record
    from kxl.train.checkpoint import export_step_lokr
    from kxl.train.config import TrainConfig

    precision = section_from_json(TrainConfig, args.config_json, "train").save_precision
    ckpt = export_step_lokr(Path(args.checkpoints), args.step, Path(args.out), precision)
    print(f"{args.out}: the LoKr of {ckpt} in {precision}")
    record("train", [args.out], [ckpt / "manifest.json"],
           {"step": args.step, "save_precision": precision})
    return 0


def _explain(args: argparse.Namespace) -> int:
    import polars as pl

    from kxl.buckets.schema import BUCKETS_SCHEMA
    from kxl.captions.augment import augment
    from kxl.errors import KxlError
    from kxl.plan.read import read_plan_from
    from kxl.tables import read_table
    from kxl.train.explain import caption_of, format_step, step_table, trained_caption

    if args.config_json is None:
        caption = trained_caption(args.lokr)
    else:
        try:
            given = json.loads(args.config_json)
        except json.JSONDecodeError as exc:
            raise KxlError(f"--config-json: invalid JSON ({exc.msg} at char {exc.pos})") from exc
        if not isinstance(given, dict):
            raise KxlError(f"--config-json: expected the train section, got {given!r}")
        caption = caption_of(given, "--config-json")
    rows = read_plan_from(args.plan, args.step, args.rank, until=args.step + 1)
    if rows.height == 0:
        raise KxlError(f"{args.plan}: no rows for step {args.step}"
                       + (f" rank {args.rank}" if args.rank is not None else "")
                       + "; see summary.json for the number of steps")
    captions = read_table(args.captions, {"id": pl.Int64, "caption": pl.String})
    df = step_table(rows, read_table(args.buckets, BUCKETS_SCHEMA), captions, augment, caption)
    print(format_step(args.step, df))
    return 0


def run_inputs(
    args: argparse.Namespace, preset: str, sha256: Callable[[str], str] | None = None,
    init_lokr: str | None = None,
) -> dict[str, str]:
    """sha256 of each input that shapes the run (files, the base's config and tokenizer folder,
    the LyCORIS preset, train.init_lokr's file); checkpoints record them, and a checkpoint of
    other inputs is not resumed (the plan is checked by the rows a checkpoint consumed
    instead). `sha256`: a caching hasher, so no file is read twice."""
    from kxl.hashing import sha256_file
    from kxl.provenance import sha256_tree

    digest = sha256 or sha256_file
    files = {"base": args.base, "captions": args.captions, "buckets": args.buckets,
             "pixels": args.cache_index, "dataset": args.dataset, "lokr_preset": preset,
             "init_lokr": init_lokr}
    out = {name: digest(path) for name, path in files.items() if path}
    out["base_config"] = sha256_tree(Path(args.config_dir))
    return out


def _run(args: argparse.Namespace) -> int:
    from kxl.captions.augment import augment
    from kxl.config import section_from_json, to_dict
    from kxl.hashing import sha256_file
    from kxl.model.load import load_dtype, load_sdxl
    from kxl.provenance import record
    from kxl.train.config import TrainConfig
    from kxl.train.data import load_plan_data, open_pixel_source
    from kxl.train.dist import init_world, shutdown
    from kxl.train.trainer import Trainer, precision, run

    cfg = section_from_json(TrainConfig, args.config_json, "train")
    world = init_world(want_cuda=True)
    log = lambda msg: print(f"[rank {world.rank}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    data = load_plan_data(args.plan, args.captions, args.buckets, world.rank, world.size)
    # the base (~7 GB for SDXL) is hashed once: for a latents cache's check, then for `inputs`
    sha256 = functools.cache(sha256_file)
    pixels = open_pixel_source(  # decodes (storage none) only this rank's plan rows
        args.cache_index, args.buckets, args.dataset, args.images_root,
        data.rows["post_id"].to_numpy(), base_sha256=lambda: sha256(args.base),
    )
    inputs = run_inputs(args, cfg.lokr.preset, sha256, cfg.init_lokr)
    frozen = precision(cfg.mixed_precision, world.device.type).frozen
    models = load_sdxl(args.base, args.config_dir, device=str(world.device),
                       dtype=load_dtype(args.base, frozen))
    trainer = Trainer(
        models,
        data,
        pixels,
        cfg,
        args.seed,
        Path(args.out_dir),
        world,
        augment,
        inputs,
    )
    result = run(trainer, args.resume, Path(args.lokr), log=log,
                 continue_from=args.continue_from, warmup=args.warmup)
    log(
        f"trained {result.steps_run} step(s), last step {result.last_step}, loss {result.last_loss}"
    )
    if world.main:
        metrics = Path(args.out_dir) / "metrics.csv"
        record(
            "train",
            [args.lokr, metrics],
            [args.plan, args.buckets, args.cache_index, args.captions, args.base,
             *([args.dataset] if args.dataset else [])],
            to_dict(cfg),
        )
    shutdown(world)
    return 0
