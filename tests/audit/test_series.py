"""The series audit (issue 20 section 2): per-block norms of the effective LoKr delta over
checkpoint steps, their change from the previous step, cosine / relative L2 between two series,
and flagged jumps. Every expected number is computed here by materialising torch.kron deltas,
never by the code under test."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from kxl.audit.config import STEP_LOKR, series_inputs
from kxl.audit.series import stream_sums
from kxl.cli import main
from kxl.config_check import config_problem
from kxl.errors import KxlError

ROOT = Path(__file__).resolve().parents[2]

# kohya module -> (block label, kind, factor shapes)
MODULES = {
    "lora_unet_input_blocks_1_0_in_layers_2": ("unet input level 0", "conv", (2, 2), (4, 4, 3, 3)),
    "lora_unet_input_blocks_4_1_proj_in": ("unet input level 1", "lowrank", (4, 4), (4, 2, 4)),
    "lora_unet_middle_block_1_proj_out": ("unet middle", "full", (2, 2), (4, 4)),
    "lora_unet_output_blocks_2_1_proj_in": ("unet output level 2", "full", (2, 4), (8, 2)),
    "lora_te1_text_model_encoder_layers_0_mlp_fc1": ("te1", "full", (4, 2), (8, 8)),
    "lora_te2_text_model_encoder_layers_0_self_attn_q_proj": ("te2", "full", (2, 2), (4, 4)),
    "lora_unet_out_0": ("unet embeddings / out", "norm", (8,), (8,)),
}
ALPHA = 3.0  # the low-rank module's alpha: scale alpha / dim = 3 / 2


def params(seed: int, bumps: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """A file's tensors: a common start, a step-specific nudge, and a fixed shift of size
    `bumps[name]` (the same at every step that has it)."""
    g0, g = torch.Generator().manual_seed(0), torch.Generator().manual_seed(seed)
    gb = torch.Generator().manual_seed(999)
    out: dict[str, torch.Tensor] = {}
    for name, (_, kind, s1, s2) in MODULES.items():
        bump = (bumps or {}).get(name, 0.0)
        shapes = {"norm": {"w_norm": s1, "b_norm": s2},
                  "lowrank": {"lokr_w1": s1, "lokr_w2_a": s2[:2], "lokr_w2_b": s2[1:]}}.get(
            kind, {"lokr_w1": s1, "lokr_w2": s2})
        for p, shape in shapes.items():
            out[f"{name}.{p}"] = (torch.randn(shape, generator=g0)
                                  + 0.05 * torch.randn(shape, generator=g)
                                  + bump * torch.randn(shape, generator=gb))
        if kind != "norm":
            out[f"{name}.alpha"] = torch.tensor(ALPHA if kind == "lowrank" else 10000.0)
    return out


def delta(p: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """The module's effective delta, materialised (float64, flat)."""
    kind = MODULES[name][1]
    q = {k.split(".", 1)[1]: v.double() for k, v in p.items() if k.startswith(name + ".")}
    if kind == "norm":
        return torch.cat([q["w_norm"], q["b_norm"]])
    w1 = q["lokr_w1"]
    if kind == "lowrank":
        w2, s = q["lokr_w2_a"] @ q["lokr_w2_b"], ALPHA / q["lokr_w2_b"].shape[0]
    else:
        w2, s = q["lokr_w2"], 1.0
    if w2.dim() == 4:  # a conv: W1 broadcast over the kernel axes
        w1 = w1[:, :, None, None]
    return (s * torch.kron(w1, w2)).reshape(-1)


def block_delta(p: dict[str, torch.Tensor], block: str) -> torch.Tensor:
    names = [n for n, m in MODULES.items() if block in ("overall", m[0])]
    return torch.cat([delta(p, n) for n in names])


def write(path: Path, p: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32) -> str:
    save_file({k: v.to(dtype) for k, v in p.items()}, str(path))
    return str(path)


def audit_json(series: dict, released: dict | None = None) -> str:
    return json.dumps({"released": released or {}, "diffs": {}, "series": series})


def run_series(tmp_path: Path, series: dict, steps: str = "", *extra: str) -> dict:
    out = tmp_path / "out"
    rc = main(["series", "--name", "s", "--config-json", audit_json({"s": series}),
               "--checkpoint-steps", steps, "--json", str(out / "s.json"),
               "--report", str(out / "s.html"), *extra])
    assert rc == 0
    return json.loads((out / "s.json").read_text())


def test_norms_changes_cosines_match_materialised_kron_deltas(tmp_path: Path) -> None:
    steps = [10, 20, 30]
    pa = {s: params(s) for s in steps}
    pb = {s: params(100 + s) for s in steps}
    a = [{"step": s, "file": write(tmp_path / f"a{s}.safetensors", pa[s])} for s in steps]
    # b in fp16: the numbers are of the file's values (compared below in float64 of them)
    b = [{"step": s, "file": write(tmp_path / f"b{s}.safetensors", pb[s], torch.float16)}
         for s in steps]
    pb = {s: {k: v.half() for k, v in pb[s].items()} for s in steps}
    rep = run_series(tmp_path, {"a": a, "b": b})
    assert rep["steps"] == steps and rep["modules"] == len(MODULES)
    assert rep["kinds"] == {"a": "list", "b": "list"}
    blocks = ["overall", "te1", "te2", "unet input level 0", "unet input level 1",
              "unet middle", "unet output level 2", "unet embeddings / out"]
    assert rep["blocks"] == blocks
    rows = {(r["block"], r["step"]): r for r in rep["rows"]}
    for block in blocks:
        for i, s in enumerate(steps):
            da, db = block_delta(pa[s], block), block_delta(pb[s], block)
            r = rows[block, s]
            assert r["norm_a"] == pytest.approx(float(da.norm()), rel=1e-6)
            assert r["norm_b"] == pytest.approx(float(db.norm()), rel=1e-6)
            assert r["cosine"] == pytest.approx(float(da @ db / (da.norm() * db.norm())),
                                                rel=1e-6, abs=1e-9)
            assert r["rel_l2"] == pytest.approx(float((da - db).norm() / da.norm()), rel=1e-7)
            if i == 0:
                assert r["change_a"] is None and r["change_b"] is None
                continue
            prev_a = block_delta(pa[steps[i - 1]], block)
            assert r["change_a"] == pytest.approx(float((da - prev_a).norm() / prev_a.norm()),
                                                  rel=1e-6)
            prev_b = block_delta(pb[steps[i - 1]], block)
            assert r["change_b"] == pytest.approx(float((db - prev_b).norm() / prev_b.norm()),
                                                  rel=1e-6)


def test_a_planted_jump_is_flagged_at_its_step_and_block(tmp_path: Path) -> None:
    te1 = "lora_te1_text_model_encoder_layers_0_mlp_fc1"
    steps = [100, 200, 300, 400, 500, 600]
    # the te1 module is shifted by 2.0 from step 500 on; every step nudges everything by 0.05
    files = [{"step": s, "file": write(tmp_path / f"{s}.safetensors",
                                       params(s, {te1: 2.0} if s >= 500 else None))}
             for s in steps]
    rep = run_series(tmp_path, {"a": files, "jump": 3.0})
    flagged = {(f["series"], f["block"], f["step"]) for f in rep["flags"]}
    assert ("a", "te1", 500) in flagged
    assert {s for _, _, s in flagged} == {500}  # nothing else jumps ...
    assert {b for _, b, _ in flagged} <= {"te1", "overall"}  # ... and no other block
    f = next(f for f in rep["flags"] if f["block"] == "te1")
    te1_rows = [r for r in rep["rows"] if r["block"] == "te1"]
    earlier = [r["change_a"] for r in te1_rows if r["change_a"] is not None and r["step"] < 500]
    assert len(earlier) == 3 and f["median"] == pytest.approx(sorted(earlier)[1])
    assert f["change"] > 3.0 * f["median"]
    # a jump of 10x is not flagged with a threshold above it
    assert run_series(tmp_path, {"a": files, "jump": 1e6})["flags"] == []
    page = (tmp_path / "out/s.html").read_text()
    assert "No jumps" in page


def test_rebuilt_series_reads_the_step_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for s in (2, 4, 6):
        path = Path(STEP_LOKR.format(step=s))
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path, params(s))
    rep = run_series(tmp_path, {"a": "rebuilt"}, "2,4,6")
    assert rep["steps"] == [2, 4, 6] and rep["kinds"] == {"a": "rebuilt"}
    assert [p["operand"] for p in rep["sides"]["a"]] == [STEP_LOKR.format(step=s)
                                                          for s in (2, 4, 6)]
    assert all(r["norm_b"] is None and r["cosine"] is None for r in rep["rows"])


@pytest.mark.parametrize("case", ["conv-full", "conv-lowrank", "conv-tucker"])
def test_kron_inner_product_identity_for_a_conv_vs_lycoris(tmp_path: Path, case: str) -> None:
    """||delta|| and <delta_1, delta_2> from the factors equal those of LyCORIS's own
    materialised conv delta (get_diff_weight applies the scale twice: divided out here)."""
    from lycoris.modules.lokr import LokrModule
    from torch import nn

    kw = {"conv-full": dict(lora_dim=10000, alpha=1, factor=4),
          "conv-lowrank": dict(lora_dim=2, alpha=3, factor=4),
          "conv-tucker": dict(lora_dim=2, alpha=3, factor=4, use_tucker=True)}[case]
    name = "lora_unet_input_blocks_1_0_in_layers_2"
    diffs, paths = [], []
    for seed in (1, 2):
        org = nn.Conv2d(16, 32, 3, padding=1)
        mod = LokrModule("m", org, multiplier=1.0, **kw)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in mod.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        d = mod.get_diff_weight(multiplier=1, shape=org.weight.shape)[0].detach().double()
        diffs.append(d / mod.scale)
        sd = {f"{name}.{k}": v.detach().clone() for k, v in mod.custom_state_dict().items()}
        paths.append(write(tmp_path / f"{seed}.safetensors", sd))
    sums = stream_sums(paths, paths[::-1])["unet input level 0"]
    d1, d2 = diffs
    assert sums.sq["a"][0] == pytest.approx(float((d1 * d1).sum()), rel=1e-6)
    assert sums.sq["a"][1] == pytest.approx(float((d2 * d2).sum()), rel=1e-6)
    assert sums.prev["a"][1] == pytest.approx(float((d1 * d2).sum()), rel=1e-5)
    assert sums.cross[0] == pytest.approx(float((d1 * d2).sum()), rel=1e-5)


def test_another_factor_is_compared_by_materialising_that_pair(tmp_path: Path) -> None:
    name = "lora_te1_text_model_encoder_layers_0_mlp_fc1"
    g = torch.Generator().manual_seed(3)
    f1 = {f"{name}.lokr_w1": torch.randn(4, 2, generator=g),
          f"{name}.lokr_w2": torch.randn(8, 8, generator=g)}
    f2 = {f"{name}.lokr_w1": torch.randn(2, 4, generator=g),  # same (32, 16) delta, factor 2
          f"{name}.lokr_w2": torch.randn(16, 4, generator=g)}
    paths = [write(tmp_path / "1.safetensors", f1), write(tmp_path / "2.safetensors", f2)]
    d1 = torch.kron(f1[f"{name}.lokr_w1"], f1[f"{name}.lokr_w2"]).double()
    d2 = torch.kron(f2[f"{name}.lokr_w1"], f2[f"{name}.lokr_w2"]).double()
    sums = stream_sums(paths, None)["te1"]
    assert sums.prev["a"][1] == pytest.approx(float((d1 * d2).sum()), rel=1e-5)
    # a norm of another width is another model: one line naming the module and both files
    write(tmp_path / "n1.safetensors", {"lora_unet_out_0.w_norm": torch.ones(8)})
    write(tmp_path / "n2.safetensors", {"lora_unet_out_0.w_norm": torch.ones(4)})
    with pytest.raises(KxlError, match=r"norm 'lora_unet_out_0': shapes .*n1.* but .*n2"):
        stream_sums([str(tmp_path / "n1.safetensors"), str(tmp_path / "n2.safetensors")], None)


def test_configs_name_their_series_and_a_short_one_is_a_config_error() -> None:
    eps = yaml.safe_load((ROOT / "config/epsilon.yaml").read_text())
    assert eps["audit"]["series"] == {"epsilon": {"a": "released", "b": "rebuilt", "jump": 3.0},
                                      "rebuilt": {"a": "rebuilt", "jump": 3.0}}
    assert series_inputs(eps["audit"], eps["train"]["checkpoint_steps"], "epsilon") == [
        STEP_LOKR.format(step=1700 * k) for k in range(1, 12)]
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    assert series_inputs(cfg["audit"], cfg["train"]["checkpoint_steps"], "rebuilt") == [
        STEP_LOKR.format(step=s) for s in (200, 400, 600, 800)]
    cfg["train"]["checkpoint_steps"] = [200]
    assert config_problem(cfg, ROOT / "config/schema.yaml") == (
        "audit.series.rebuilt: a series needs at least 2 checkpoint steps; a (rebuilt, "
        "train.checkpoint_steps): [200]")
    cfg["audit"]["series"]["rebuilt"]["a"] = "relased"
    assert config_problem(cfg, ROOT / "config/schema.yaml").startswith(
        "audit.series.rebuilt.a: 'relased' is not valid")


def _one_line_error(capsys, argv: list[str], *needles: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("kxl series: error: ")
    for n in needles:
        assert n in err, err


def test_bad_input_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    f = write(tmp_path / "1.safetensors", params(1))
    rel = {"r": {"repo_id": "o/r", "filename": "x.safetensors", "revision": "main", "step": 7}}
    cfg = audit_json({"one": {"a": "rebuilt"}, "pair": {"a": "released", "b": "rebuilt"},
                      "named": {"a": [{"step": 1, "file": f}, {"step": 2, "file": "r2"}]},
                      "hub": {"a": [{"step": 1, "file": f},
                                    {"step": 2, "file": "hf://o/r/y.safetensors@main"}]},
                      "rel": {"a": [{"step": 1, "file": f}, {"step": 2, "file": "r"}]}}, rel)
    base = ["series", "--config-json", cfg, "--json", str(tmp_path / "o.json")]
    _one_line_error(capsys, [*base, "--name", "one", "--checkpoint-steps", "200"],
                    "audit.series.one: a series needs at least 2 checkpoint steps",
                    "train.checkpoint_steps", "[200]")
    _one_line_error(capsys, [*base, "--name", "pair", "--checkpoint-steps", "7,8"],
                    "at least 2 checkpoint steps in common", "[7]", "[7, 8]")
    _one_line_error(capsys, [*base, "--name", "nope"],
                    "audit.series has no entry 'nope'", "'one'")
    _one_line_error(capsys, [*base, "--name", "named"],
                    "r2: no such file or directory, and not a released name (['r'])")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    _one_line_error(capsys, [*base, "--name", "hub", "--offline"],
                    "o/r@main/y.safetensors: not in the HF cache", "offline")
    _one_line_error(capsys, [*base, "--name", "rel", "--offline"],
                    "o/r@main/x.safetensors: not in the HF cache")
    assert not (tmp_path / "o.json").exists()


def test_renders_in_headless_chromium(tmp_path: Path, dump_dom) -> None:
    steps = [1, 2, 3, 4]
    a = [{"step": s, "file": write(tmp_path / f"a{s}.safetensors", params(s))} for s in steps]
    b = [{"step": s, "file": write(tmp_path / f"b{s}.safetensors", params(50 + s))}
         for s in steps]
    rep = run_series(tmp_path, {"a": a, "b": b})
    page = tmp_path / "out/s.html"
    text = page.read_text()
    assert "<script src" not in text and not re.search(r"https?://(?!www\.w3\.org)", text)
    res = dump_dom(page)
    assert res.returncode == 0, res.stderr[-2000:]
    plots = re.search(r'data-plots="(\d+)" data-plots-drawn="(\d+)"', res.stdout)
    # per block: norm, change, a-vs-b; each drawn with data
    assert plots and int(plots[1]) == 3 * len(rep["blocks"]) and plots[1] == plots[2], plots
    assert 'data-drawn="0"' not in res.stdout
    console = [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    assert math.isfinite(rep["rows"][0]["norm_a"])
