"""train.full_fp16 (sd-scripts --full_fp16): fp16 trainable weights and gradients, with a loss
scaler that unscales fp16 gradients. Expected behaviour is torch's GradScaler contract (which
sd-scripts' patch keeps: only the fp16 refusal is lifted) and sd-scripts' own config rule."""

from __future__ import annotations

import pytest
import torch

from kxl.config import from_dict
from kxl.errors import KxlError
from kxl.train.config import TrainConfig
from kxl.train.optim import grad_scaler

PRESET = {"preset": "config/lycoris/kohaku_xl.toml"}


def _fp16_step(full: bool, init_scale: float) -> tuple[torch.nn.Parameter, object]:
    p = torch.nn.Parameter(torch.ones(4, dtype=torch.float16))
    opt = torch.optim.SGD([p], lr=0.5)
    scaler = grad_scaler("cpu", True, full, init_scale=init_scale)
    loss = (p * torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float16)).sum()
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    scaler.step(opt)
    scaler.update()
    return p, scaler


def test_stock_scaler_refuses_fp16_gradients() -> None:
    with pytest.raises(ValueError, match="FP16 gradients"):
        _fp16_step(full=False, init_scale=1024.0)


def test_full_fp16_scaler_unscales_and_steps() -> None:
    # grad = (1, 2, 3, 4) * 1024, exact in fp16; unscaled back to (1, 2, 3, 4); SGD lr 0.5
    p, scaler = _fp16_step(full=True, init_scale=1024.0)
    assert p.dtype == torch.float16
    assert p.detach().tolist() == [0.5, 0.0, -0.5, -1.0]
    assert scaler.get_scale() == 1024.0  # no overflow: the scale holds (growth after 2000 steps)


def test_full_fp16_overflow_skips_the_step_and_halves_the_scale() -> None:
    # 4 * 65536 overflows fp16: torch skips the optimizer step and backs the scale off by 0.5
    p, scaler = _fp16_step(full=True, init_scale=65536.0)
    assert p.detach().tolist() == [1.0, 1.0, 1.0, 1.0]
    assert scaler.get_scale() == 32768.0


def test_cpu_runs_fp32_whatever_full_fp16_says(tiny_inputs, tmp_path) -> None:
    from train_helpers import tiny_trainer

    trainer = tiny_trainer(tiny_inputs, tmp_path, {"full_fp16": True})
    assert {p.dtype for p in trainer.params} == {torch.float32}
    assert trainer.m.unet.dtype == torch.float32 and not trainer.scaler.is_enabled()


def test_full_fp16_needs_fp16_mixed_precision() -> None:
    with pytest.raises(KxlError, match="full_fp16 needs mixed_precision: fp16"):
        from_dict(TrainConfig, {"lokr": PRESET, "full_fp16": True, "mixed_precision": "no"},
                  "train")
    assert from_dict(TrainConfig, {"lokr": PRESET, "full_fp16": True}, "train").full_fp16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="full_fp16 is a CUDA mode")
def test_full_fp16_trains_fp16_lokr_on_cuda(tiny_inputs, tmp_path) -> None:
    from train_helpers import tiny_trainer

    trainer = tiny_trainer(tiny_inputs, tmp_path, {"full_fp16": True}, "cuda")
    assert {p.dtype for p in trainer.params} == {torch.float16}
    assert trainer.m.unet.dtype == torch.float16 and trainer.m.vae.dtype == torch.float32
    losses = [trainer.step(i)["loss"] for i in range(2)]
    assert all(map(torch.isfinite, torch.tensor(losses)))
