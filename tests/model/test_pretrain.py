"""The base's UNet pretraining: the encoded pool, caption dropout, the lr schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kxl.model import pretrain, tiny

from .conftest import TEST_CFG


def test_pool_encodes_procedural_pictures_with_their_captions() -> None:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(**tiny.vae_config(TEST_CFG))
    seen: list[str] = []

    def encode(caps: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        seen.extend(caps)
        # one distinct value per caption, so rows can be traced back to their captions
        code = torch.tensor([float(len(c)) for c in caps])
        return code[:, None, None].expand(-1, 77, 5).clone(), code[:, None].expand(-1, 3).clone()

    pool = pretrain.encode_pool(vae, encode, torch.Generator().manual_seed(4), 10, 32, chunk=4)
    assert pool.latents.shape == (10, 4, 4, 4) and pool.context.shape == (10, 77, 5)
    assert seen[-1] == ""  # the unconditional caption, encoded last
    assert torch.equal(pool.null_context, torch.zeros(1, 77, 5))
    expect = pretrain.procedural_images(torch.Generator().manual_seed(4), 4, 32).captions
    assert seen[:4] == expect
    assert pool.pooled[:, 0].tolist() == [float(len(c)) for c in seen[:10]]


def test_cosine_decay_goes_from_lr_to_zero() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.4)
    sched = pretrain.cosine_decay(opt, 10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.4) and lrs[5] == pytest.approx(0.2)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))
    assert lrs[1] == pytest.approx(0.2 * (1 + math.cos(math.pi / 10)))


def _pool(ctx_fill: float) -> pretrain.UnetPool:
    n, width = 6, TEST_CFG.te1_width + TEST_CFG.te2_width
    lat = torch.randn(n, 4, TEST_CFG.image_size // 8, TEST_CFG.image_size // 8,
                      generator=torch.Generator().manual_seed(0))
    return pretrain.UnetPool(
        latents=lat, context=torch.full((n, 77, width), ctx_fill),
        pooled=torch.full((n, TEST_CFG.te2_width), ctx_fill),
        null_context=torch.zeros(1, 77, width), null_pooled=torch.zeros(1, TEST_CFG.te2_width))


def _unet() -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(**tiny.unet_config(TEST_CFG))


@pytest.mark.slow  # ~1 min on 2 cores: real UNet steps
def test_caption_dropout_replaces_the_conditioning() -> None:
    # A pool whose captions are NaN: every step that reads a caption gets a NaN loss.
    gen = torch.Generator().manual_seed(1)
    all_dropped = pretrain.train_unet(_unet(), _pool(float("nan")), gen, 3, 4, 32, 1e-4, 1.0)
    assert all(math.isfinite(x) for x in all_dropped)
    none_dropped = pretrain.train_unet(_unet(), _pool(float("nan")), gen, 1, 4, 32, 1e-4, 0.0)
    assert math.isnan(none_dropped[0])


@pytest.mark.slow  # ~1-2 min on 2 cores: 60 UNet steps
def test_unet_steps_lower_the_loss_on_the_pool() -> None:
    gen = torch.Generator().manual_seed(2)
    pool = _pool(0.5)
    pool = pretrain.UnetPool(pool.latents[:2].repeat(3, 1, 1, 1), pool.context, pool.pooled,
                             pool.null_context, pool.null_pooled)
    losses = pretrain.train_unet(_unet(), pool, gen, 60, 6, 32, 2e-3, 0.0)
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])


def test_caption_advantage_compares_right_and_wrong_captions() -> None:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(**tiny.vae_config(TEST_CFG))
    width = TEST_CFG.te1_width + TEST_CFG.te2_width

    def same(caps: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.ones(len(caps), 77, width), torch.ones(len(caps), TEST_CFG.te2_width)

    def distinct(caps: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        code = torch.tensor([float(sum(map(ord, c)) % 97) / 10 for c in caps])
        return (code[:, None, None].expand(-1, 77, width).clone(),
                code[:, None].expand(-1, TEST_CFG.te2_width).clone())

    unet = _unet()
    ignored = pretrain.caption_advantage(unet, vae, same, 0, 8, 32, (300, 700))
    assert ignored == {"t300": 0.0, "t700": 0.0}  # captions that carry nothing
    used = pretrain.caption_advantage(unet, vae, distinct, 0, 8, 32, (300, 700))
    assert set(used) == {"t300", "t700"} and all(v != 0.0 for v in used.values())
    assert pretrain.caption_advantage(unet, vae, distinct, 0, 8, 32, (300, 700)) == used
