"""The loader names the first bad tensor in one line, and catches weights left unloaded."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from kxl.errors import KxlError
from kxl.model.load import check_single_file, load_sdxl, verify_loaded
from kxl.model.st_io import save_streaming

from .conftest import BuiltBase

KEY = "model.diffusion_model.input_blocks.4.1.proj_in.weight"


@pytest.fixture(scope="module")
def sd(tiny_base: BuiltBase) -> dict[str, torch.Tensor]:
    return load_file(tiny_base.model)


def _one_line(exc: pytest.ExceptionInfo[KxlError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_missing_key(sd, tiny_base: BuiltBase, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "missing.safetensors"
    save_streaming({k: v for k, v in sd.items() if k != KEY}, path)
    with pytest.raises(KxlError) as exc:
        load_sdxl(path, tiny_base.config_dir)
    assert f"missing tensor {KEY!r}" in _one_line(exc)


def test_unexpected_key(sd, tiny_base: BuiltBase, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "extra.safetensors"
    save_streaming({**sd, "model.diffusion_model.input_blocks.99.0.weight": torch.zeros(1)}, path)
    with pytest.raises(KxlError) as exc:
        check_single_file(path, tiny_base.config_dir)
    assert "unexpected tensor 'model.diffusion_model.input_blocks.99.0.weight'" in _one_line(exc)


def test_ignored_real_sdxl_extras_pass(sd, tiny_base: BuiltBase, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "extras.safetensors"
    extras = {"conditioner.embedders.1.model.logit_scale": torch.tensor(4.6),
              "conditioner.embedders.0.transformer.text_model.embeddings.position_ids":
                  torch.arange(77)[None]}
    save_streaming({**sd, **extras}, path)
    check_single_file(path, tiny_base.config_dir)


def test_wrong_shape(sd, tiny_base: BuiltBase, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "shape.safetensors"
    save_streaming({**sd, KEY: torch.zeros(3, 5)}, path)
    with pytest.raises(KxlError) as exc:
        load_sdxl(path, tiny_base.config_dir)
    msg = _one_line(exc)
    assert KEY in msg and "[3, 5]" in msg


JUNK = [b"", b"not a model at all", b"\x08" + b"\0" * 7 + b"{bad json"]


@pytest.mark.parametrize("payload", JUNK)
def test_not_a_safetensors_file(payload: bytes, tiny_base: BuiltBase, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "junk.safetensors"
    path.write_bytes(payload)
    with pytest.raises(KxlError) as exc:
        load_sdxl(path, tiny_base.config_dir)
    assert "not a safetensors file" in _one_line(exc)


def test_verify_catches_a_weight_left_at_init(tiny_base: BuiltBase) -> None:
    comps = load_sdxl(tiny_base.model, tiny_base.config_dir)
    with torch.no_grad():
        comps.text_encoder_2.text_model.final_layer_norm.weight.add_(1.0)
    with pytest.raises(KxlError) as exc:
        verify_loaded(comps, tiny_base.model)
    assert "conditioner.embedders.1.model.ln_final.weight" in _one_line(exc)


def test_cli_error_is_one_line(tiny_base: BuiltBase, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from kxl.cli import main

    rc = main(["synth-base", "--tags", str(tmp_path / "nope.parquet"), "--config-json", "{}",
               "--out", str(tmp_path / "b.safetensors"), "--config-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "nope.parquet" in err
