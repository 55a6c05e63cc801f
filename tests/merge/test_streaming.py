"""Streaming: the merge holds one merged tensor at a time and copies untouched tensors as bytes.
(Peak memory at SDXL size is measured in benchmarks/merge_bench.py.)"""

from __future__ import annotations

import weakref
from pathlib import Path

import pytest
import torch
from audit.conftest import BASE_SHAPES, make_base, make_lokr
from safetensors.torch import load_file

from kxl.merge import merge as merge_mod
from kxl.merge.stfile import Reader, Slot, StreamWriter


def test_only_one_merged_tensor_is_alive_at_a_time(tmp_path: Path, monkeypatch) -> None:
    base, lokr = make_base(tmp_path / "b.safetensors"), make_lokr(tmp_path / "l.safetensors")
    orig = merge_mod.merged_stream
    refs: list[weakref.ref] = []
    produced = []

    def tracking(*args, **kwargs):
        for key, t in orig(*args, **kwargs):
            alive = [r for r in refs if r() is not None]
            assert not alive, f"{len(alive)} earlier tensor(s) still alive when {key} was made"
            if t is not None:
                refs.append(weakref.ref(t))
                produced.append(key)
            yield key, t
            del t

    copied = []
    real_copy = Reader.copy_to
    monkeypatch.setattr(merge_mod, "merged_stream", tracking)
    monkeypatch.setattr(Reader, "copy_to", lambda self, k, out: (copied.append(k),
                                                                  real_copy(self, k, out)))
    report = merge_mod.merge_files(base, lokr, tmp_path / "m.safetensors", {})
    assert report.tensors_changed == len(produced) == 6  # conv, proj_in, fc1, in_proj, norm w+b
    assert report.tensors_copied == len(copied) == len(BASE_SHAPES) - 6
    assert "first_stage_model.decoder.conv_in.weight" in copied  # never decoded
    got, want = load_file(str(tmp_path / "m.safetensors")), load_file(str(base))
    for k in copied:
        assert torch.equal(got[k], want[k])


def test_writer_refuses_out_of_order_and_leaves_nothing(tmp_path: Path) -> None:
    from kxl.errors import KxlError

    out = tmp_path / "o.safetensors"
    layout = {"a": Slot("F32", (2,)), "b": Slot("F32", (2,))}
    with pytest.raises(KxlError, match="out of order"), StreamWriter(out, layout) as w:
        w.write("b", torch.zeros(2))
    with pytest.raises(KxlError, match="1 of 2"), StreamWriter(out, layout) as w:
        w.write("a", torch.zeros(2))
    assert not list(tmp_path.iterdir())


def test_fp16_base_keeps_dtype_and_rounds_once(tmp_path: Path) -> None:
    base = make_base(tmp_path / "b.safetensors", dtype=torch.float16)
    lokr = make_lokr(tmp_path / "l.safetensors")
    merge_mod.merge_files(base, lokr, tmp_path / "m.safetensors", {})
    got, b32 = load_file(str(tmp_path / "m.safetensors")), load_file(str(base))
    key = "model.diffusion_model.middle_block.1.proj_in.weight"
    assert got[key].dtype == torch.float16
    # merged = round_fp16(base + delta) exactly, i.e. delta added in float32 then cast once
    from audit.conftest import lokr_tensors

    from kxl.merge.lokr import lokr_delta

    p = {k.split(".", 1)[1]: v for k, v in lokr_tensors().items()
         if k.startswith("lora_unet_middle_block_1_proj_in.")}
    want = (b32[key].float() + lokr_delta(p, (16, 16))).half()
    assert torch.equal(got[key], want)
