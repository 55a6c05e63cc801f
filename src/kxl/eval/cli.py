"""CLI of the eval stage (CCIP): ccip-characters, ccip-generate, ccip-standin, ccip-fetch,
ccip-score, ccip-report. Adapters only; the work is in kxl.eval.*. Heavy imports are lazy."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ccip-characters", help="select the CCIP character set and references")
    for a in ("--kept", "--tags", "--dataset", "--config-json", "--out", "--refs", "--summary"):
        p.add_argument(a, required=True)
    p.set_defaults(func=_characters)

    p = sub.add_parser("ccip-generate", help="sample images per character with one SDXL model")
    for a in ("--characters", "--name", "--config-dir", "--config-json", "--out-dir"):
        p.add_argument(a, required=True)
    _model_args(p)
    p.add_argument("--seed", type=int, required=True, help="the run seed")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=_generate)

    p = sub.add_parser("ccip-conditioning",
                       help="prompt-conditioning probe: does a model know the characters?")
    for a in ("--characters", "--refs", "--images-root", "--name", "--config-dir",
              "--generate-json", "--config-json", "--out"):
        p.add_argument(a, required=True)
    _model_args(p)
    p.add_argument("--seed", type=int, required=True, help="the run seed")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=_conditioning)

    for cmd, text in (("ccip-standin", "write the offline stand-in CCIP models (HF cache layout)"),
                      ("ccip-fetch", "download the pinned deepghs/ccip_onnx files (HF cache)")):
        p = sub.add_parser(cmd, help=text)
        p.add_argument("--config-json", required=True, help="the eval.ccip section as JSON")
        p.add_argument("--out-dir", required=True, help="HF cache dir to create")
        p.set_defaults(func=_model_files, cmd=cmd)

    p = sub.add_parser("ccip-score", help="CCIP scores of the generated images (imgutils)")
    for a in ("--characters", "--refs", "--images-root", "--hf-cache", "--config-json",
              "--out-images", "--out", "--csv", "--summary"):
        p.add_argument(a, required=True)
    p.add_argument("--generated", nargs="+", required=True, help="generated dirs, one per model")
    p.set_defaults(func=_score)

    p = sub.add_parser("ccip-report", help="the self-contained HTML CCIP report")
    for a in ("--scores", "--characters", "--refs", "--images-root", "--summary", "--out"):
        p.add_argument(a, required=True)
    p.add_argument("--generated", nargs="+", required=True)
    p.add_argument("--conditioning", nargs="*", default=[], help="probe JSONs, one per model")
    p.add_argument("--examples", type=int, default=3)
    p.set_defaults(func=_report)


def _model_args(p: argparse.ArgumentParser) -> None:
    from kxl.hub import add_offline_arg

    p.add_argument("--model", required=True, help="SGM single file, released name (with "
                   "--released-json) or hf://owner/repo/file@revision")
    p.add_argument("--released-json", default="{}",
                   help="config audit.released entries as JSON (name -> repo_id, ...)")
    add_offline_arg(p)


def _characters(args: argparse.Namespace) -> int:
    from kxl.atomic import write_json
    from kxl.config import section_from_json, to_dict
    from kxl.eval.characters import CHARACTERS_SCHEMA, REFS_SCHEMA, select_characters
    from kxl.eval.config import CharactersConfig
    from kxl.provenance import record
    from kxl.tables import read_table, write_table

    cfg = section_from_json(CharactersConfig, args.config_json, "eval.characters")
    chars, refs, summary = select_characters(
        read_table(args.kept), read_table(args.tags), read_table(args.dataset), cfg)
    write_table(chars, args.out, CHARACTERS_SCHEMA)
    write_table(refs, args.refs, REFS_SCHEMA)
    write_json(args.summary, summary)
    print(f"ccip-characters: {chars.height} characters, {refs.height} references")
    record("eval", [args.out, args.refs, args.summary], [args.kept, args.tags, args.dataset],
           to_dict(cfg))
    return 0


def _generate(args: argparse.Namespace) -> int:

    from kxl.atomic import atomic_dir, write_json
    from kxl.config import section_from_json, to_dict
    from kxl.determinism import deterministic_torch
    from kxl.eval.characters import CHARACTERS_SCHEMA
    from kxl.eval.config import GenerateConfig
    from kxl.eval.generate import IMAGES_SCHEMA, generate, load_pipeline, model_file, model_meta
    from kxl.eval.prompts import generation_jobs
    from kxl.hub import released_json
    from kxl.provenance import record
    from kxl.tables import read_table, write_table

    cfg = section_from_json(GenerateConfig, args.config_json, "eval.generate")
    deterministic_torch(args.threads, "default")
    jobs = generation_jobs(read_table(args.characters, CHARACTERS_SCHEMA), cfg, args.seed)
    model = str(model_file(args.model, released_json(args.released_json), args.offline))
    pipe, device = load_pipeline(model, args.config_dir, cfg)
    with atomic_dir(args.out_dir) as tmp:
        images = generate(pipe, device, jobs, cfg, tmp)
        write_table(images, tmp / "images.parquet", IMAGES_SCHEMA)
        write_json(tmp / "meta.json", {**model_meta(args.name, model, args.config_dir, cfg,
                                                    device, args.seed), "source": args.model})
    print(f"ccip-generate: {images.height} images of {args.name} on {device} in {args.out_dir}")
    record("eval", [args.out_dir], [args.characters, model, args.config_dir], to_dict(cfg))
    return 0


def _conditioning(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from kxl.atomic import write_json
    from kxl.config import section_from_json, to_dict
    from kxl.determinism import deterministic_torch
    from kxl.eval import conditioning as probe
    from kxl.eval.characters import CHARACTERS_SCHEMA, REFS_SCHEMA
    from kxl.eval.config import ConditioningConfig, GenerateConfig
    from kxl.eval.generate import load_pipeline, model_file
    from kxl.eval.prompts import generation_jobs
    from kxl.hub import released_json
    from kxl.provenance import record
    from kxl.tables import read_table

    gen = section_from_json(GenerateConfig, args.generate_json, "eval.generate")
    cfg = section_from_json(ConditioningConfig, args.config_json, "eval.conditioning")
    deterministic_torch(args.threads, "default")
    chars = read_table(args.characters, CHARACTERS_SCHEMA)
    prompts, labels, files = probe.probe_set(
        chars, read_table(args.refs, REFS_SCHEMA), generation_jobs(chars, gen, args.seed),
        cfg.refs_per_character)
    cands = probe.candidates(labels, chars.height, cfg.distractors, args.seed)
    pixels = probe.reference_pixels(files, Path(args.images_root), gen.width, gen.height)
    model = str(model_file(args.model, released_json(args.released_json), args.offline))
    pipe, device = load_pipeline(model, args.config_dir, gen)
    pipe.vae.to(torch.float32)  # SDXL's VAE overflows in fp16 (force_upcast); encode in fp32
    errors = probe.denoising_errors(pipe, device, pixels, prompts, cands,
                                    list(cfg.timesteps), args.seed, cfg.batch_size)
    result = {"model": args.name, "path": model, "source": args.model, "device": device,
              "seed": args.seed,
              **probe.summarize(errors, list(cfg.timesteps), labels, chars)}
    write_json(args.out, result)
    o = result["overall"]
    print(f"ccip-conditioning: {args.name}: advantage {o['advantage']:+.4f}, top-1 "
          f"{o['top1']:.3f} (chance {o['chance']:.3f}) over {result['images']} references")
    record("eval", [args.out], [args.characters, args.refs, model, args.config_dir],
           {"conditioning": to_dict(cfg), "generate": to_dict(gen)})
    return 0


def _model_files(args: argparse.Namespace) -> int:
    from kxl.atomic import atomic_dir
    from kxl.config import section_from_json, to_dict
    from kxl.eval import hfcache, standin
    from kxl.eval.config import CcipConfig
    from kxl.provenance import record

    cfg = section_from_json(CcipConfig, args.config_json, "eval.ccip")
    with atomic_dir(args.out_dir) as tmp:
        if args.cmd == "ccip-standin":
            commit = standin.write_cache(tmp, cfg.repo_id, cfg.model)
        else:
            commit = hfcache.fetch_pinned(tmp, cfg.repo_id, cfg.model, cfg.revision)
        hfcache.check_offline(tmp, cfg.repo_id, cfg.model, commit)
    print(f"{args.cmd}: {cfg.repo_id}/{cfg.model} at commit {commit} in {args.out_dir}")
    record("eval", [args.out_dir], [], to_dict(cfg))
    return 0


def _score(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kxl.atomic import write_json, write_text
    from kxl.config import section_from_json, to_dict
    from kxl.eval import hfcache
    from kxl.eval.ccip import score_all
    from kxl.eval.characters import CHARACTERS_SCHEMA, REFS_SCHEMA
    from kxl.eval.config import CcipConfig
    from kxl.eval.generate import read_generated
    from kxl.eval.pairs import pair_table
    from kxl.eval.score import IMAGE_SCORES_SCHEMA, SCORES_SCHEMA, character_scores
    from kxl.provenance import record
    from kxl.tables import read_table, write_table

    cfg = section_from_json(CcipConfig, args.config_json, "eval.ccip")
    hfcache.offline_env(args.hf_cache)  # before imgutils/huggingface_hub are imported
    snapshot = hfcache.check_offline(args.hf_cache, cfg.repo_id, cfg.model, cfg.revision)
    chars = read_table(args.characters, CHARACTERS_SCHEMA)
    generated = [read_generated(d) for d in args.generated]
    images, summary = score_all(read_table(args.refs, REFS_SCHEMA), Path(args.images_root),
                                [(m["name"], t, Path(d)) for d, (t, m) in
                                 zip(args.generated, generated, strict=True)], cfg, snapshot)
    scores = character_scores(images, chars)
    summary["pairs"] = pair_table(scores, [m["name"] for _, m in generated])
    write_table(images, args.out_images, IMAGE_SCORES_SCHEMA)
    write_table(scores, args.out, SCORES_SCHEMA)
    write_text(args.csv, scores.write_csv(float_precision=6))
    write_json(args.summary, summary)
    print(f"ccip-score: {summary['models']}" + "".join(
        f"; {r['b']} vs {r['a']}: {r['verdict']} (p {r['p_value']:.3g})" for r in summary["pairs"]))
    record("eval", [args.out_images, args.out, args.csv, args.summary],
           [args.characters, args.refs, args.hf_cache, *args.generated], to_dict(cfg))
    return 0


def _report(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from kxl.atomic import write_text
    from kxl.eval.characters import CHARACTERS_SCHEMA, REFS_SCHEMA
    from kxl.eval.generate import read_generated
    from kxl.eval.report import ReportInputs, render_report
    from kxl.eval.score import SCORES_SCHEMA
    from kxl.provenance import record
    from kxl.tables import read_table

    generated = [read_generated(d) for d in args.generated]
    summary = json.loads(Path(args.summary).read_text())
    inputs = ReportInputs(
        scores=read_table(args.scores, SCORES_SCHEMA),
        characters=read_table(args.characters, CHARACTERS_SCHEMA),
        refs=read_table(args.refs, REFS_SCHEMA), images_root=Path(args.images_root),
        generated={m["name"]: (t, Path(d)) for d, (t, m) in
                   zip(args.generated, generated, strict=True)},
        models=[m for _, m in generated], ccip=summary["ccip"], examples=args.examples,
        conditioning=[json.loads(Path(p).read_text()) for p in args.conditioning],
        pairs=summary["pairs"])
    write_text(args.out, render_report(inputs))
    print(f"ccip-report: {args.out}")
    record("eval", [args.out], [args.scores, args.characters, args.refs, args.summary,
                                *args.generated, *args.conditioning], {"examples": args.examples})
    return 0
