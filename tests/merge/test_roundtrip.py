"""The full tiny SDXL round trip: base + LoKr -> `kxl merge` -> diffusers from_single_file, whose
UNet and text encoders reproduce the LoKr-wrapped models' outputs on random inputs.

Tolerance (float32 base, float32 merge): max abs difference <= 2e-4 and relative <= 1e-4 on
every output; the LoKr itself moves the outputs by orders of magnitude more (checked).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kxl.cli import main
from kxl.safetensors_header import read_header

from .conftest import perturbed_network, save_adapter

ATOL, RTOL = 2e-4, 1e-4
SPECS = {
    "full-matrix": {},  # dim = alpha = 10000 as Kohaku XL: full matrices, scale 1
    "lowrank-alpha-ne-dim": dict(dim=2, alpha=3.0, conv_dim=2, conv_alpha=1.0),
}


def _inputs(unet, te1, te2) -> dict:
    g = torch.Generator().manual_seed(7)
    width = unet.config.cross_attention_dim
    proj = unet.config.projection_class_embeddings_input_dim - 6 * 256
    return {
        "x": torch.randn(2, 4, 8, 8, generator=g), "t": torch.tensor([10, 700]),
        "ctx": torch.randn(2, 77, width, generator=g),
        "cond": {"text_embeds": torch.randn(2, proj, generator=g),
                 "time_ids": torch.rand(2, 6, generator=g) * 64},
        "ids": torch.randint(0, te1.config.vocab_size, (2, 77), generator=g),
    }


@torch.no_grad()
def _outputs(unet, te1, te2, inp: dict) -> dict[str, torch.Tensor]:
    return {
        "unet": unet(inp["x"], inp["t"], inp["ctx"], added_cond_kwargs=inp["cond"]).sample,
        "te1": te1(inp["ids"], output_hidden_states=True).hidden_states[-2],
        "te2": te2(inp["ids"]).text_embeds,
    }


@pytest.fixture(scope="module", params=sorted(SPECS))
def merged(request, tiny_base, tmp_path_factory):
    from fixtures_train import build_models

    from kxl.model.load import load_sdxl

    root = tmp_path_factory.mktemp("merged")
    m = build_models("tiny", seed=0)  # the same weights as tiny_base's file
    base_in = _inputs(m.unet, m.text_encoder, m.text_encoder_2)
    before = _outputs(m.unet, m.text_encoder, m.text_encoder_2, base_in)
    net = perturbed_network(m, SPECS[request.param], seed=3)
    lokr = save_adapter(net, m, root / "lokr.safetensors")
    wrapped = _outputs(m.unet, m.text_encoder, m.text_encoder_2, base_in)
    out = root / "epsilon.safetensors"
    rc = main(["merge", "--base", str(tiny_base.model), "--lokr", str(lokr),
               "--config-dir", str(tiny_base.config_dir), "--config-json",
               '{"multiplier": 1.0}', "--out", str(out)])
    assert rc == 0
    c = load_sdxl(out, tiny_base.config_dir)  # checks every tensor was loaded
    got = _outputs(c.unet, c.text_encoder, c.text_encoder_2, base_in)
    return {"before": before, "wrapped": wrapped, "got": got, "out": out, "lokr": lokr,
            "root": root, "spec": request.param}


@pytest.mark.parametrize("part", ["unet", "te1", "te2"])
def test_merged_outputs_equal_wrapped_outputs(merged, part: str) -> None:
    got, want, before = merged["got"][part], merged["wrapped"][part], merged["before"][part]
    torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL)
    # the adapter matters: the base alone is far outside the tolerance
    assert (want - before).abs().max() > 100 * ATOL


def test_metadata_names_inputs_and_version(merged, tiny_base) -> None:
    from kxl import __version__
    from kxl.hashing import sha256_file

    meta = read_header(merged["out"]).metadata
    assert meta["kxl.version"] == __version__
    assert meta["kxl.base_sha256"] == sha256_file(tiny_base.model)
    assert meta["kxl.lokr_sha256"] == sha256_file(merged["lokr"])
    assert json.loads(meta["kxl.merge_config"]) == {"multiplier": 1.0}
    assert len(meta["kxl.config_sha256"]) == 64
    assert meta["modelspec.architecture"] == "sdxl"  # the base's own metadata is kept


def test_layout_and_dtypes_are_the_base_ones(merged, tiny_base) -> None:
    base, out = read_header(tiny_base.model).entries, read_header(merged["out"]).entries
    assert {k: (e.dtype, e.shape) for k, e in base.items()} == {
        k: (e.dtype, e.shape) for k, e in out.items()}


def test_merge_is_byte_deterministic(merged, tiny_base, tmp_path: Path) -> None:
    again = tmp_path / "again.safetensors"
    rc = main(["merge", "--base", str(tiny_base.model), "--lokr", str(merged["lokr"]),
               "--config-dir", str(tiny_base.config_dir), "--out", str(again),
               "--config-json", '{"multiplier": 1.0}'])
    assert rc == 0
    assert again.read_bytes() == merged["out"].read_bytes()
