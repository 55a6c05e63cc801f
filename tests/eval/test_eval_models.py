"""Eval models given as released names (audit.released) or hf://owner/repo/file@revision: they
resolve through a local HF cache at the pinned revision (sha256 checked when pinned), a LyCORIS
adapter is refused in one line, the config check names a bad path, and the rules do not list
such a model as an input file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml
from hf_cache import hf_cache
from safetensors.torch import save_file

from kxl.config_check import config_problem
from kxl.errors import KxlError
from kxl.eval.characters import CHARACTERS_SCHEMA
from kxl.eval.config import check_model_paths
from kxl.eval.generate import model_file
from kxl.hashing import sha256_file
from kxl.tables import write_table

ROOT = Path(__file__).resolve().parents[2]
REPO = "KBlueLeaf/Kohaku-XL-Epsilon"
COMMIT = "38b8dcb579493d47edea76c7977032927aba9642"


@pytest.fixture
def released(tiny_model: tuple[Path, Path], tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> dict[str, dict]:
    """A local HF cache holding the tiny model as the released Epsilon and a LoKr file."""
    lokr = tmp_path / "lokr.safetensors"
    save_file({"lora_unet_middle_block_1_proj_in.lokr_w1": torch.ones(2, 2),
               "lora_unet_middle_block_1_proj_in.lokr_w2": torch.ones(4, 4),
               "lora_unet_middle_block_1_proj_in.alpha": torch.tensor(1.0)}, str(lokr))
    hf_cache(tmp_path / "hf", REPO, COMMIT, {
        "kohaku-xl-epsilon-rev1.safetensors": tiny_model[0],
        "intermediate/kohaku-xl-epsilon-lyco.safetensors": lokr})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    entry = {"repo_id": REPO, "revision": COMMIT}
    return {
        "epsilon": {**entry, "filename": "kohaku-xl-epsilon-rev1.safetensors",
                    "sha256": sha256_file(tiny_model[0])},
        "epsilon-unpinned": {**entry, "filename": "kohaku-xl-epsilon-rev1.safetensors"},
        "epsilon-bad-pin": {**entry, "filename": "kohaku-xl-epsilon-rev1.safetensors",
                            "sha256": "0" * 64},
        "epsilon-delta-lokr": {**entry,
                               "filename": "intermediate/kohaku-xl-epsilon-lyco.safetensors"},
    }


def test_released_name_and_hf_spec_resolve_to_the_pinned_snapshot(
    released: dict[str, dict], tiny_model: tuple[Path, Path], tmp_path: Path
) -> None:
    snap = tmp_path / "hf" / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT
    want = snap / "kohaku-xl-epsilon-rev1.safetensors"
    assert model_file("epsilon", released, offline=True) == want
    assert model_file("epsilon-unpinned", released, offline=True) == want
    spec = f"hf://{REPO}/kohaku-xl-epsilon-rev1.safetensors@{COMMIT}"
    assert model_file(spec, {}, offline=True) == want
    assert model_file(str(tiny_model[0]), released, offline=True) == tiny_model[0]


@pytest.mark.parametrize(("spec", "match"), [
    ("epsilon-bad-pin", r"kohaku-xl-epsilon-rev1.safetensors@38b8dcb5\w+: sha256 [0-9a-f]{64} "
                        r"!= pinned 0{64}; fix the pin or the revision"),
    ("epsilon-delta-lokr", r"^epsilon-delta-lokr: kohaku-xl-epsilon-lyco.safetensors is a "
                           r"LyCORIS/LoKr adapter, not a merged SDXL model; eval needs a full "
                           r"model: merge it onto its base with `kxl merge`"),
    (f"hf://{REPO}/missing.safetensors@{COMMIT}", r"missing.safetensors: not in the HF cache "
                                                  r"\(HF_HUB_CACHE\) and offline"),
    ("epsilon-typo", r"^epsilon-typo: no such file or directory, and not a released name "
                     r"\(\['epsilon', "),
    ("hf://KBlueLeaf/Kohaku-XL-Epsilon/x.safetensors", r"expected hf://<owner>/<repo>/<file>@"),
])
def test_bad_model_operands_are_one_line(released: dict[str, dict], spec: str,
                                         match: str) -> None:
    with pytest.raises(KxlError, match=match) as err:
        model_file(spec, released, offline=True)
    assert "\n" not in str(err.value)


def test_ccip_generate_takes_a_released_name(
    released: dict[str, dict], tiny_model: tuple[Path, Path], tmp_path: Path
) -> None:
    chars = pl.DataFrame([(0, 10, "alice", "wonder", "1girl", 20, 3),
                          (1, 11, "bob", None, "1boy", 15, 3)],
                         schema=list(CHARACTERS_SCHEMA.items()), orient="row")
    write_table(chars, tmp_path / "characters.parquet", CHARACTERS_SCHEMA)
    cfg = {"images_per_character": 1, "width": 64, "height": 64, "steps": 2,
           "sampler": "EulerDiscreteScheduler", "device": "cpu"}

    def generate(model: str, out: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kxl", "ccip-generate", "--characters",
             str(tmp_path / "characters.parquet"), "--name", "eps", "--model", model,
             "--released-json", json.dumps({"epsilon": released["epsilon"]}), "--offline",
             "--config-dir", str(tiny_model[1]), "--config-json", json.dumps(cfg),
             "--seed", "1337", "--threads", "1", "--out-dir", str(tmp_path / out)],
            capture_output=True, text=True, timeout=600,
            env={**os.environ, "OMP_NUM_THREADS": "1"})

    res = generate("epsilon", "gen")
    assert res.returncode == 0, res.stderr[-3000:]
    meta = json.loads((tmp_path / "gen" / "meta.json").read_text())
    assert meta["source"] == "epsilon"
    assert meta["sha256"] == sha256_file(tiny_model[0])
    assert meta["path"].endswith(f"snapshots/{COMMIT}/kohaku-xl-epsilon-rev1.safetensors")
    assert pl.read_parquet(tmp_path / "gen" / "images.parquet").height == 2
    res = generate("epsilon-delta-lokr", "lokr")  # not in --released-json: an unknown name
    assert res.returncode == 2 and not (tmp_path / "lokr").exists()
    assert res.stderr.strip() == (
        "kxl ccip-generate: error: epsilon-delta-lokr: no such file or directory, and not a "
        "released name (['epsilon']) or hf://<owner>/<repo>/<file>@<revision>")


def test_config_check_names_a_bad_eval_model_path() -> None:
    rel = {"eps": {"repo_id": REPO, "filename": "e.safetensors", "revision": COMMIT},
           "step": {"repo_id": REPO, "filename": "s.safetensors", "revision": COMMIT,
                    "step": 1700}}
    ok = [{"name": "a", "path": "results/epsilon.safetensors"}, {"name": "b", "path": "eps"},
          {"name": "c", "path": f"hf://{REPO}/e.safetensors@{COMMIT}"}]
    check_model_paths(ok, rel)
    for path, msg in [
        ("epz", "eval.generate.models[1].path: 'epz' is neither a .safetensors file, a released "
                "name (audit.released: ['eps', 'step']) nor hf://<owner>/<repo>/<file>@<revision>"),
        ("step", "eval.generate.models[1].path: 'step' is a released LyCORIS step file "
                 "(audit.released.step.step), not a merged model; eval needs a full model: "
                 "merge it with `kxl merge` and list the merged file"),
        (f"hf://{REPO}/e.safetensors", "eval.generate.models[1].path: 'hf://KBlueLeaf/"
                                       "Kohaku-XL-Epsilon/e.safetensors': expected hf://"
                                       "<owner>/<repo>/<file>@<revision>"),
    ]:
        with pytest.raises(KxlError) as err:
            check_model_paths([ok[0], {"name": "b", "path": path}], rel)
        assert str(err.value) == msg
    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cfg["eval"]["generate"]["models"].append({"name": "x", "path": "epsilon"})
    assert config_problem(cfg, ROOT / "config/schema.yaml") == (
        "eval.generate.models[2].path: 'epsilon' is neither a .safetensors file, a released "
        "name (audit.released: []) nor hf://<owner>/<repo>/<file>@<revision>")


def test_full_run_fetches_the_released_epsilon_instead_of_an_input_file() -> None:
    """config/epsilon.yaml compares the released Epsilon by name: a dry run plans its jobs
    (a released name as an input file would be a missing input) and passes the name on."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["snakemake", "-n", "-p", "results/eval/ccip/generated/epsilon-released",
         "--configfile", "config/epsilon.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    job = proc.stdout.split("rule ccip_generate:")[1]
    inputs = job.split("input:")[1].splitlines()[0].strip().split(", ")
    assert inputs == ["results/eval/ccip/characters.parquet", "results/base/config"]
    assert "--model epsilon --released-json '{\"epsilon\":" in job
    assert '"revision":"38b8dcb579493d47edea76c7977032927aba9642"' in job
