"""`kxl diff` acceptance: self-diff is zero, a perturbed copy names exactly what was perturbed,
rescaled LoKr factors are the same adapter, LoKr vs merged needs and uses the base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from kxl.audit.config import Tolerance
from kxl.audit.diff import diff_files
from kxl.cli import main
from kxl.errors import KxlError

from .conftest import make_lokr

TOL = Tolerance(rtol=1e-6, atol=0.0)


def _perturb(src: Path, dst: Path, keys: list[str], eps: float = 1e-3) -> Path:
    sd = load_file(str(src))
    for k in keys:
        sd[k] = sd[k] + eps * torch.ones_like(sd[k])
    save_file(sd, str(dst), {"kxl.stage": "merge"})
    return dst


def test_self_diff_is_zero_everywhere(files) -> None:
    rep = diff_files(files["merged"], files["merged"], None, TOL)
    assert rep["mode"] == "merged-vs-merged" and rep["passed"]
    assert rep["counts"]["equal"] == len(rep["tensors"]) > 0
    for r in rep["tensors"]:
        assert r["max_abs"] == 0.0 and r["rel_l2"] == 0.0 and r["cosine"] == pytest.approx(1.0)


def test_perturbed_copy_names_exactly_the_perturbed_tensors(files) -> None:
    keys = ["model.diffusion_model.middle_block.1.proj_in.weight",
            "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_bias"]
    other = _perturb(files["merged"], files["root"] / "p.safetensors", keys)
    rep = diff_files(files["merged"], other, None, TOL)
    assert not rep["passed"]
    assert sorted(r["key"] for r in rep["tensors"] if r["status"] != "equal") == sorted(keys)
    row = next(r for r in rep["tensors"] if r["key"] == keys[0])
    assert row["max_abs"] == pytest.approx(1e-3, rel=1e-3)
    blocks = {b["block"]: b for b in rep["blocks"]}
    assert blocks["unet_mid"]["failing"] == 1 and blocks["te2"]["failing"] == 1
    assert blocks["unet_in"]["failing"] == 0 and blocks["vae"]["failing"] == 0


def test_rescaled_lokr_factors_are_no_difference(files) -> None:
    scaled = make_lokr(files["root"] / "scaled.safetensors", c=3.7)
    rep = diff_files(files["lokr"], scaled, None, Tolerance(rtol=1e-6))
    assert rep["mode"] == "lokr-vs-lokr" and rep["passed"], [
        r for r in rep["tensors"] if r["status"] != "equal"]
    # while the raw factors are very different, so a per-tensor diff would have failed
    raw = load_file(str(scaled))
    key = "lora_unet_middle_block_1_proj_in.lokr_w1"
    assert not torch.allclose(raw[key], load_file(str(files["lokr"]))[key])


def test_different_lokr_is_reported_per_module(files) -> None:
    other = make_lokr(files["root"] / "other.safetensors", seed=9)
    rep = diff_files(files["lokr"], other, None, TOL)
    failing = {r["key"] for r in rep["tensors"] if r["status"] == "differs"}
    assert "lora_unet_middle_block_1_proj_in.weight" in failing
    assert "lora_unet_out_0.bias" in failing


def test_lokr_vs_merged_with_base(files) -> None:
    rep = diff_files(files["lokr"], files["merged"], files["base"], TOL)
    assert rep["mode"] == "lokr-vs-merged" and rep["passed"]
    key = "model.diffusion_model.output_blocks.2.1.transformer_blocks.0.attn1.to_q.weight"
    other = _perturb(files["merged"], files["root"] / "p.safetensors", [key])
    rep = diff_files(other, files["lokr"], files["base"], TOL)
    assert rep["mode"] == "merged-vs-lokr"
    assert [r["key"] for r in rep["tensors"] if r["status"] != "equal"] == [key]


def test_lokr_vs_merged_without_base_is_a_clear_error(files) -> None:
    with pytest.raises(KxlError, match="--base"):
        diff_files(files["lokr"], files["merged"], None, TOL)


def test_keys_only_on_one_side_and_shape_mismatch(files) -> None:
    sd = load_file(str(files["merged"]))
    sd.pop("first_stage_model.decoder.conv_in.weight")
    sd["model.diffusion_model.extra.weight"] = torch.zeros(2)
    sd["model.diffusion_model.out.0.weight"] = torch.zeros(9)
    other = files["root"] / "o.safetensors"
    save_file(sd, str(other))
    rep = diff_files(files["merged"], other, None, TOL)
    status = {r["key"]: r["status"] for r in rep["tensors"] if r["status"] != "equal"}
    assert status == {"first_stage_model.decoder.conv_in.weight": "only_a",
                      "model.diffusion_model.extra.weight": "only_b",
                      "model.diffusion_model.out.0.weight": "shape"}


def test_dtype_mismatch_fails_unless_ignored(files) -> None:
    sd = {k: v.half().float() for k, v in load_file(str(files["merged"])).items()}
    a = files["root"] / "a.safetensors"
    save_file(sd, str(a))
    b = files["root"] / "b.safetensors"
    save_file({k: v.half() for k, v in sd.items()}, str(b))
    rep = diff_files(a, b, None, TOL)
    assert not rep["passed"] and rep["counts"]["dtype"] == len(sd)
    assert diff_files(a, b, None, Tolerance(check_dtype=False))["passed"]


def test_cli_exit_codes_and_reports(files, tmp_path: Path) -> None:
    out_json, out_html = tmp_path / "d.json", tmp_path / "d.html"
    assert main(["diff", str(files["merged"]), str(files["merged"]), "--json", str(out_json),
                 "--report", str(out_html)]) == 0
    rep = json.loads(out_json.read_text())
    assert rep["passed"] and rep["counts"]["equal"] > 0
    page = out_html.read_text()
    assert "<svg" in page and "PASS" in page and "<script" not in page and "http" not in \
        page.replace("http://www.w3.org/2000/svg", "")
    key = "model.diffusion_model.middle_block.1.proj_in.weight"
    other = _perturb(files["merged"], tmp_path / "p.safetensors", [key])
    assert main(["diff", str(files["merged"]), str(other), "--report", str(out_html)]) == 1
    assert key in out_html.read_text()
    assert main(["diff", str(files["merged"]), str(other), "--tolerance", "0.5"]) == 0
    assert main(["diff", str(files["merged"]), str(other), "--exit-zero"]) == 0
