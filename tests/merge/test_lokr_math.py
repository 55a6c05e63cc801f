"""kxl's LoKr/norm deltas reproduce LyCORIS 4.1.3's wrapped forward pass (the thing training
optimised) for linear and conv modules, every factorisation, any scale, and trained norms.

Tolerance: float32 throughout; merged-weight outputs must match the wrapped forward to
atol 1e-5 + rtol 1e-5 (the two only differ in summation order).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kxl.merge.lokr import Module, lokr_scale, module_deltas, parse_modules

ATOL = RTOL = 1e-5


def _wrap(org: nn.Module, **kw):
    from lycoris.modules.lokr import LokrModule

    mod = LokrModule("m", org, multiplier=1.0, **kw)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in mod.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return mod


def _params(mod) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in mod.custom_state_dict().items()}


def _merged_weight(sd: dict[str, torch.Tensor], org: nn.Module, kind: str = "lokr") -> dict:
    module = Module("m", kind, frozenset(sd))
    return module_deltas(module, lambda k: sd[k.split(".", 1)[1]], tuple(org.weight.shape))


CASES = {
    "linear-full": (lambda: nn.Linear(48, 64), dict(lora_dim=10000, alpha=10000, factor=8)),
    "linear-full-alpha-ignored": (lambda: nn.Linear(48, 64),
                                  dict(lora_dim=10000, alpha=7, factor=4)),
    "linear-lowrank": (lambda: nn.Linear(96, 128), dict(lora_dim=4, alpha=3, factor=4)),
    "linear-both": (lambda: nn.Linear(96, 128),
                    dict(lora_dim=2, alpha=5, factor=16, decompose_both=True)),
    "linear-rslora": (lambda: nn.Linear(96, 128),
                      dict(lora_dim=4, alpha=2, factor=4, rs_lora=True)),
    "conv-full": (lambda: nn.Conv2d(32, 64, 3, padding=1),
                  dict(lora_dim=10000, alpha=1, factor=8)),
    "conv-lowrank": (lambda: nn.Conv2d(64, 64, 3, padding=1), dict(lora_dim=2, alpha=1, factor=4)),
    "conv-tucker": (lambda: nn.Conv2d(64, 64, 3, padding=1),
                    dict(lora_dim=2, alpha=3, factor=4, use_tucker=True)),
    "conv-1x1": (lambda: nn.Conv2d(32, 64, 1), dict(lora_dim=10000, alpha=10000, factor=8)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_merged_weight_matches_wrapped_forward(case: str) -> None:
    make, kw = CASES[case]
    torch.manual_seed(0)
    org = make()
    linear = isinstance(org, nn.Linear)
    x = torch.randn(3, org.in_features) if linear else torch.randn(2, org.in_channels, 8, 8)
    base_w = org.weight.detach().clone()
    mod = _wrap(org, **kw)
    mod.apply_to()
    with torch.no_grad():
        want = org(x)
    sd = _params(mod)
    def apply(w: torch.Tensor) -> torch.Tensor:
        if linear:
            return nn.functional.linear(x, w, org.bias)
        return nn.functional.conv2d(x, w, org.bias, padding=org.padding)

    got = apply(base_w + _merged_weight(sd, org)["weight"])
    torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL)
    assert not torch.allclose(got, apply(base_w))  # the adapter does change the output


def test_scale_is_applied_once_unlike_lycoris_merge() -> None:
    """LyCORIS's get_diff_weight multiplies by scale twice; kxl follows the forward pass."""
    org = nn.Linear(96, 128)
    mod = _wrap(org, lora_dim=4, alpha=2, factor=4)
    sd = _params(mod)
    assert lokr_scale(sd) == pytest.approx(0.5)
    ours = _merged_weight(sd, org)["weight"]
    theirs = mod.get_diff_weight(multiplier=1, shape=org.weight.shape)[0].detach()
    torch.testing.assert_close(theirs, ours * 0.5)


@pytest.mark.parametrize("norm", [nn.LayerNorm(32), nn.GroupNorm(4, 32)])
def test_norm_delta_matches_wrapped_forward(norm: nn.Module) -> None:
    from lycoris.modules.norms import NormModule

    x = torch.randn(2, 32) if isinstance(norm, nn.LayerNorm) else torch.randn(2, 32, 4, 4)
    w0, b0 = norm.weight.detach().clone(), norm.bias.detach().clone()
    mod = NormModule("m", norm, 1.0)
    with torch.no_grad():
        mod.w_norm.copy_(torch.randn(32) * 0.1)
        mod.b_norm.copy_(torch.randn(32) * 0.1)
    mod.apply_to()
    with torch.no_grad():
        want = norm(x)
    sd = {"w_norm": mod.w_norm.detach(), "b_norm": mod.b_norm.detach()}
    d = module_deltas(Module("m", "norm", frozenset(sd)), lambda k: sd[k.split(".", 1)[1]], None)
    if isinstance(norm, nn.LayerNorm):
        got = nn.functional.layer_norm(x, (32,), w0 + d["weight"], b0 + d["bias"], norm.eps)
    else:
        got = nn.functional.group_norm(x, 4, w0 + d["weight"], b0 + d["bias"], norm.eps)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize(("keys", "msg"), [
    (["lora_unet_a.lora_up.weight"], "not LoKr"),
    (["lora_unet_a.lokr_w1"], "incomplete"),
    (["lora_unet_a.lokr_w1", "lora_unet_a.lokr_w2_a"], "incomplete"),
    (["model.x.weight"], "not a kohya"),
    (["lora_unet_a.lokr_w1", "lora_unet_a.lokr_w2", "lora_unet_a.dora_scale"], "dora_scale"),
])
def test_bad_module_sets_are_one_line_errors(keys: list[str], msg: str) -> None:
    from kxl.errors import KxlError

    with pytest.raises(KxlError, match=msg) as exc:
        parse_modules(keys, "f.safetensors")
    assert "\n" not in str(exc.value)
