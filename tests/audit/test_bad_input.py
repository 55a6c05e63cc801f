"""Bad files get one clear line naming the file and what is wrong (header validated first)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from kxl.cli import main
from kxl.errors import KxlError
from kxl.safetensors_header import read_header

from .conftest import make_base


def _with_header(path: Path, header: dict, data: bytes) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


@pytest.mark.parametrize(("make", "msg"), [
    (lambda p: p.write_bytes(b"hello") and p, "shorter than the 8-byte"),
    (lambda p: p.write_text("this is a text file, not a model at all") and p, "header length"),
    (lambda p: p.write_bytes(struct.pack("<Q", 4) + b"nope") and p, "not JSON"),
    (lambda p: p.write_bytes(struct.pack("<Q", 2) + b"[]") and p, "not a JSON object"),
    (lambda p: _with_header(p, {"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}},
                            b"\0" * 16), "header lies"),
    (lambda p: _with_header(p, {"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
                            b"\0" * 8), "truncated"),
    (lambda p: _with_header(p, {"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
                            b"\0" * 12), "overlap"),
    (lambda p: _with_header(p, {"x": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 1]}},
                            b"\0"), "unknown dtype"),
    (lambda p: _with_header(p, {"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}},
                            b"\0" * 4), "malformed"),
])
def test_bad_files_are_one_line_errors(tmp_path: Path, make, msg: str) -> None:
    path = make(tmp_path / "bad.safetensors")
    with pytest.raises(KxlError, match=msg) as exc:
        read_header(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_truncated_real_file_is_named_by_the_cli(tmp_path: Path, capsys) -> None:
    good = make_base(tmp_path / "good.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-100])
    assert main(["diff", str(good), str(cut)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "truncated" in err and "cut.safetensors" in err


def test_merge_refuses_a_lokr_for_another_architecture(tmp_path: Path, capsys) -> None:
    import torch
    from safetensors.torch import save_file

    from kxl.merge.merge import merge_files

    base = make_base(tmp_path / "base.safetensors")
    lokr = tmp_path / "lokr.safetensors"
    save_file({"lora_unet_input_blocks_9_1_proj_in.lokr_w1": torch.ones(2, 2),
               "lora_unet_input_blocks_9_1_proj_in.lokr_w2": torch.ones(2, 2)}, str(lokr))
    with pytest.raises(KxlError, match="lora_unet_input_blocks_9_1_proj_in.*matches no tensor"):
        merge_files(base, lokr, tmp_path / "out.safetensors", {})
    assert not (tmp_path / "out.safetensors").exists()
    # right name, wrong shape
    save_file({"lora_unet_middle_block_1_proj_in.lokr_w1": torch.ones(2, 2),
               "lora_unet_middle_block_1_proj_in.lokr_w2": torch.ones(4, 4)}, str(lokr))
    with pytest.raises(KxlError, match="needs \\[16, 16\\]"):
        merge_files(base, lokr, tmp_path / "out.safetensors", {})
    assert not list(tmp_path.glob("*out.safetensors*"))  # nothing half-written


def test_diff_of_unrelated_files_is_an_error(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    base = make_base(tmp_path / "base.safetensors")
    other = tmp_path / "other.safetensors"
    save_file({"model.diffusion_model.zzz.weight": torch.ones(2)}, str(other))
    with pytest.raises(KxlError, match="no tensor in common"):
        from kxl.audit.config import Tolerance
        from kxl.audit.diff import diff_files

        diff_files(base, other, None, Tolerance())
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(2)}, str(plain))
    assert main(["diff", str(base), str(plain)]) == 2
