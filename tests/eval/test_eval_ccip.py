"""The real imgutils path on the offline stand-in: HF cache layout, one-line errors for a broken
cache, sensitivity to the synthetic characters, and the report (also in headless Chromium).

imgutils pins numpy<2, so everything that imports it runs through `.venv-eval/bin/kxl`.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from eval_fixtures import needs_eval_env, render_character, run_eval_kxl, save_png

from kxl.eval import conditioning
from kxl.eval.characters import CHARACTERS_SCHEMA, REFS_SCHEMA
from kxl.eval.generate import IMAGES_SCHEMA
from kxl.tables import write_table

pytestmark = needs_eval_env
NAMES = ("alice_liddell", "bob_builder", "carol_singer")
CCIP = {"source": "standin", "repo_id": "deepghs/ccip_onnx", "revision": "main",
        "model": "ccip-caformer-24-randaug-pruned", "batch_size": 8}
N_REFS, N_GEN = 4, 3


def _generated(root: Path, name: str, shift: int) -> Path:
    """A ccip-generate-like dir: rank r holds renders of character (r + shift) % 3."""
    out = root / "generated" / name
    rows = []
    for r in range(len(NAMES)):
        for i in range(N_GEN):
            rel = f"png/{r:05d}-{i:03d}.png"
            save_png(render_character(NAMES[(r + shift) % len(NAMES)], 100 + i, 64), out / rel)
            rows.append((r, 10 + r, i, i, "p", "n", rel, "0" * 64))
    table = pl.DataFrame(rows, schema=list(IMAGES_SCHEMA.items()), orient="row")
    write_table(table, out / "images.parquet", IMAGES_SCHEMA)
    (out / "meta.json").write_text(json.dumps({"name": name, "sha256": "f" * 64, "path": "x"}))
    return out


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ccip")
    chars = pl.DataFrame(
        [(r, 10 + r, n, "series_a", "1girl", 10, N_REFS) for r, n in enumerate(NAMES)],
        schema=list(CHARACTERS_SCHEMA.items()), orient="row")
    refs = []
    for r, n in enumerate(NAMES):
        for i in range(N_REFS):
            rel = f"files/{r:04d}/{i}.png"
            save_png(render_character(n, i, 128, series="series_a"), root / "images" / rel)
            refs.append((r, 10 + r, i, 1000 * r + i, rel))
    write_table(chars, root / "characters.parquet", CHARACTERS_SCHEMA)
    write_table(pl.DataFrame(refs, schema=list(REFS_SCHEMA.items()), orient="row"),
                root / "refs.parquet", REFS_SCHEMA)
    gens = [_generated(root, "wrong", 1), _generated(root, "right", 0)]
    res = run_eval_kxl("ccip-standin", "--config-json", json.dumps(CCIP),
                       "--out-dir", str(root / "hf"))
    assert res.returncode == 0, res.stderr
    res = run_eval_kxl(
        "ccip-score", "--characters", str(root / "characters.parquet"),
        "--refs", str(root / "refs.parquet"), "--images-root", str(root / "images"),
        "--hf-cache", str(root / "hf"), "--config-json", json.dumps(CCIP),
        "--generated", *map(str, gens), "--out-images", str(root / "image_scores.parquet"),
        "--out", str(root / "scores.parquet"), "--csv", str(root / "scores.csv"),
        "--summary", str(root / "summary.json"))
    assert res.returncode == 0, res.stderr
    probes = []
    for name, err in (("wrong", [[1.0, 1.0], [1.0, 1.0]]), ("right", [[0.8, 1.0], [0.9, 1.0]])):
        result = {"model": name, **conditioning.summarize(
            np.array([err]), [500], np.array([0, 1]), chars)}
        probes.append(root / f"{name}.json")
        probes[-1].write_text(json.dumps(result))
    res = run_eval_kxl(
        "ccip-report", "--scores", str(root / "scores.parquet"),
        "--characters", str(root / "characters.parquet"), "--refs", str(root / "refs.parquet"),
        "--images-root", str(root / "images"), "--summary", str(root / "summary.json"),
        "--generated", *map(str, gens), "--conditioning", *map(str, probes), "--examples", "1",
        "--out", str(root / "report.html"))
    assert res.returncode == 0, res.stderr
    return {"root": root}


def test_standin_cache_has_the_hf_layout(scored: dict[str, Path]) -> None:
    repo = scored["root"] / "hf" / "models--deepghs--ccip_onnx"
    commit = (repo / "refs" / "main").read_text()
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    snap = repo / "snapshots" / commit / CCIP["model"]
    names = sorted(p.name for p in snap.iterdir() if p.is_file() and not p.is_symlink())
    assert names == ["cluster.json", "metrics.json", "model_feat.onnx", "model_metrics.onnx"]
    metrics = json.loads((snap / "metrics.json").read_text())
    assert metrics["stand_in"] is True and 0.0 < metrics["threshold"] < 1.0
    assert metrics["calibration"]["balanced_accuracy"] > 0.9


def test_standin_scores_the_right_character_higher(scored: dict[str, Path]) -> None:
    summary = json.loads((scored["root"] / "summary.json").read_text())
    by = {m["model"]: m for m in summary["models"]}
    assert summary["ccip"]["stand_in"] is True
    assert by["right"]["mean_image_score"] > by["wrong"]["mean_image_score"] + 0.5
    assert by["right"]["mean_difference"] < by["wrong"]["mean_difference"]
    scores = pl.read_parquet(scored["root"] / "scores.parquet")
    assert scores.height == 2 * len(NAMES)
    right = scores.filter(pl.col("model") == "right")["score"].to_list()
    wrong = scores.filter(pl.col("model") == "wrong")["score"].to_list()
    assert min(right) > max(wrong)  # every character, not just on average
    # the only pair: right (2nd) against wrong (1st) wins all 3 characters, yet 3 of 3 is
    # p = 2 / 2^3 = 0.25 under the sign test: too few characters to call it
    (pair,) = summary["pairs"]
    assert {k: pair[k] for k in ("a", "b", "characters", "wins", "losses", "ties")} == {
        "a": "wrong", "b": "right", "characters": 3, "wins": 3, "losses": 0, "ties": 0}
    assert pair["p_value"] == pytest.approx(0.25) and pair["verdict"] == "indistinguishable"
    assert pair["mean_score_gap"] == pytest.approx(
        by["right"]["mean_image_score"] - by["wrong"]["mean_image_score"])
    assert (scored["root"] / "scores.csv").read_text().startswith("model,rank,tag_id,character")


def test_missing_model_file_is_one_clear_line(scored: dict[str, Path],
                                              tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    shutil.copytree(scored["root"] / "hf", hf)
    next(hf.rglob("model_metrics.onnx")).unlink()
    root = scored["root"]
    res = run_eval_kxl(
        "ccip-score", "--characters", str(root / "characters.parquet"),
        "--refs", str(root / "refs.parquet"), "--images-root", str(root / "images"),
        "--hf-cache", str(hf), "--config-json", json.dumps(CCIP),
        "--generated", str(root / "generated" / "right"), "--out-images", str(tmp_path / "i.pq"),
        "--out", str(tmp_path / "s.pq"), "--csv", str(tmp_path / "s.csv"),
        "--summary", str(tmp_path / "s.json"))
    assert res.returncode == 2
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "deepghs/ccip_onnx" in err and "ccip-caformer-24-randaug-pruned/model_metrics.onnx" \
        in err and "revision main" in err
    assert not (tmp_path / "s.pq").exists()


def test_pinned_revision_mismatch_is_refused(scored: dict[str, Path], tmp_path: Path) -> None:
    from kxl.errors import KxlError
    from kxl.eval.hfcache import check_offline

    with pytest.raises(KxlError, match=r"refs/main is [0-9a-f]{40} but eval.ccip.revision pins"):
        check_offline(scored["root"] / "hf", CCIP["repo_id"], CCIP["model"], "a" * 40)
    with pytest.raises(KxlError, match=r"has no refs/main \(revision main\)"):
        check_offline(tmp_path, CCIP["repo_id"], CCIP["model"], "main")


def test_report_is_self_contained(scored: dict[str, Path]) -> None:
    page = (scored["root"] / "report.html").read_text()
    assert "A stand-in was used for the CCIP model" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "http://" not in page and "https://" not in page
    assert page.count("data:image/png;base64,") >= 2 * (N_REFS + 2 * N_GEN)
    assert "right</b> beats <b>wrong" in page
    assert re.search(r'<table id=pairs>.*<tr class="indistinguishable"><td>right</td><td>wrong'
                     r'</td><td class=num>3</td><td class=num>\+[01]\.\d{4}</td><td class=num>'
                     r'-0\.\d{4}</td><td class=num>3</td><td class=num>0</td><td class=num>0'
                     r'</td><td class=num>0\.25</td>', page)
    # the conditioning probe: right's errors (0.85 vs 1.0) -> +15.00%, wrong's none
    assert "Does the model know the characters?" in page
    assert re.search(r"<td>right</td><td class=num>\+15\.00%</td>", page)
    assert re.search(r"<td>wrong</td><td class=num>\+0\.00%</td>", page)


def test_report_renders_in_headless_chromium(
    scored: dict[str, Path], dump_dom
) -> None:
    page = scored["root"] / "report.html"
    res = dump_dom(page)
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert 'data-ready="1"' in dom  # the page's script ran to its end
    assert re.search(r'<table id="characters"[^>]*data-sorted="\d+:desc"', dom)
    assert dom.count("<tr>") >= 1 + len(NAMES)
    assert '<table id="conditioning">' in dom and '<table id="pairs">' in dom
    assert dom.count("<img") >= 2 * (N_REFS + 2 * N_GEN)
    console = [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
