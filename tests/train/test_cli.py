"""`kxl train` end to end on a kxl.model tiny base (no pretraining) and the tiny inputs."""

from __future__ import annotations

import json

import polars as pl
import pytest
from safetensors import safe_open
from train_helpers import config_json

from kxl.cli import main


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from kxl.model.config import SyntheticBase
    from kxl.model.synth import synthesize_base

    root = tmp_path_factory.mktemp("base")
    tags = pl.DataFrame(
        {
            "id": [1, 2, 3],
            "name": ["1girl", "solo", "red_hair"],
            "type": [0, 0, 0],
            "popularity": [3, 2, 1],
        },
        schema={"id": pl.Int64, "name": pl.String, "type": pl.Int8, "popularity": pl.Int64},
    )
    cfg = SyntheticBase(vae_steps=0, unet_steps=0, vocab_size=600)
    synthesize_base(cfg, tags, root / "base.safetensors", root / "config")
    return root


@pytest.mark.slow
def test_kxl_train_cli(tiny_inputs, base, tmp_path, capsys) -> None:
    """The full run's path: `buckets.cache: none`, images decoded from images/files/..."""
    from fixtures_train import write_tiny_images

    images = write_tiny_images(tmp_path / "images", tiny_inputs["buckets"])
    out, lokr = tmp_path / "train", tmp_path / "epsilon-lokr.safetensors"
    args = [
        "train",
        "--plan",
        str(tiny_inputs["plan"]),
        "--buckets",
        str(tiny_inputs["buckets"]),
        "--cache-index",
        str(images["index_none"]),
        "--dataset",
        str(images["dataset"]),
        "--images-root",
        str(images["images_root"]),
        "--captions",
        str(tiny_inputs["captions"]),
        "--base",
        str(base / "base.safetensors"),
        "--config-dir",
        str(base / "config"),
        "--config-json",
        config_json(checkpoint_every=3, max_steps=3),
        "--seed",
        "1337",
        "--out-dir",
        str(out),
        "--lokr",
        str(lokr),
    ]
    assert main(args) == 0
    with safe_open(str(lokr), "pt") as f:
        keys = list(f.keys())
        assert f.metadata()["ss_network_module"] == "lycoris.kohya"
    assert any(k.startswith("lora_te2_text_model_encoder_layers_") for k in keys)
    assert (out / "checkpoints/step-00000003/manifest.json").is_file()
    assert len((out / "metrics.csv").read_text().splitlines()) == 4
    assert (tmp_path / ".prov/epsilon-lokr.safetensors.json").is_file()
    # a second call resumes from the checkpoint and has nothing left to do
    assert main(args) == 0
    assert "resumed from" in capsys.readouterr().err


@pytest.mark.parametrize(("setting", "named"), [
    ('"warmup_counting": "per_gpu"', "train.warmup_counting"),
    ('"caption_tag_dropout": 1.0', "config train.caption_tag_dropout: must be in [0, 1), got 1.0"),
])
def test_bad_train_config_is_one_line(tiny_inputs, tmp_path, capsys, setting, named) -> None:
    args = [
        "train",
        "--plan",
        "p",
        "--buckets",
        "b",
        "--cache-index",
        "c",
        "--captions",
        "c",
        "--base",
        "b",
        "--config-dir",
        "d",
        "--config-json",
        '{"lokr": {"preset": "x.toml"}, ' + setting + "}",
        "--seed",
        "1",
        "--out-dir",
        str(tmp_path),
        "--lokr",
        str(tmp_path / "l.safetensors"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and named in err


def test_storage_none_without_dataset_is_one_line(tiny_inputs, tmp_path, capsys) -> None:
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"storage": "none", "resample": "box", "files": []}))
    args = [
        "train",
        "--plan", str(tiny_inputs["plan"]),
        "--buckets", str(tiny_inputs["buckets"]),
        "--cache-index", str(index),
        "--captions", str(tiny_inputs["captions"]),
        "--base", "b",
        "--config-dir", "d",
        "--config-json", config_json(),
        "--seed", "1",
        "--out-dir", str(tmp_path),
        "--lokr", str(tmp_path / "l.safetensors"),
    ]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "storage none" in err and "--dataset" in err
