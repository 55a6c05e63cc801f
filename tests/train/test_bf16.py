"""train.mixed_precision bf16 (sd-scripts --mixed_precision bf16): the frozen UNet and text
encoders in bf16 on any device, autocast to bf16, no loss scaler; the VAE and the LoKr stay
fp32. Expected dtypes are sd-scripts' weight_dtype rule (--no_half_vae for SDXL); expected
numbers compare bf16 against the same run in fp32, not against kxl's own bf16 output."""

from __future__ import annotations

import pytest
import torch

from kxl.train.trainer import precision


def test_precision_follows_sd_scripts_weight_dtype() -> None:
    assert precision("bf16", "cpu") == precision("bf16", "cuda")
    assert precision("bf16", "cpu").frozen == torch.bfloat16
    assert not precision("bf16", "cuda").scaled  # bf16 has fp32's exponent range: no scaler
    assert precision("fp16", "cuda").frozen == torch.float16 and precision("fp16", "cuda").scaled
    assert precision("fp16", "cpu").frozen == torch.float32  # a CPU runs fp16 configs in fp32
    assert precision("no", "cuda").autocast is None


def test_bf16_freezes_16_bit_and_trains_close_to_fp32(tiny_inputs, tmp_path) -> None:
    from train_helpers import tiny_trainer

    bf16 = tiny_trainer(tiny_inputs, tmp_path / "bf16", {"mixed_precision": "bf16"})
    m = bf16.m
    assert {p.dtype for mod in (m.unet, m.text_encoder, m.text_encoder_2)
            for p in mod.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in m.vae.parameters()} == {torch.float32}
    assert {p.dtype for p in bf16.params} == {torch.float32} and not bf16.scaler.is_enabled()
    fp32 = tiny_trainer(tiny_inputs, tmp_path / "fp32", {"mixed_precision": "no"})
    got = [bf16.step(i)["loss"] for i in range(2)]
    want = [fp32.step(i)["loss"] for i in range(2)]
    assert got != want  # autocast ran: bf16 matmuls round differently from fp32
    assert got == pytest.approx(want, rel=0.05)  # ...but compute the same loss to bf16 precision


def test_bf16_resume_is_bit_identical(tiny_inputs, tmp_path) -> None:
    from train_helpers import tiny_trainer

    from kxl.train.trainer import run

    over = {"mixed_precision": "bf16", "checkpoint_steps": [2], "max_steps": 3}
    full = tiny_trainer(tiny_inputs, tmp_path / "a", over)
    run(full, "none", tmp_path / "a.safetensors", log=lambda s: None)
    resumed = tiny_trainer(tiny_inputs, tmp_path / "a", over)
    msgs: list[str] = []
    result = run(resumed, str(tmp_path / "a/checkpoints/step-00000002"),
                 tmp_path / "b.safetensors", log=msgs.append)
    assert result.steps_run == 1 and "resumed from" in msgs[0]
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
