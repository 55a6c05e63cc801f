"""Lion8bit from bitsandbytes, refusing the versions with the 8-bit optimizer bug."""

from __future__ import annotations

from typing import Any

from kxl.errors import KxlError

# SPEC section 1: bitsandbytes 0.36.0 - 0.41.x has an 8-bit optimizer bug.
BAD_FIRST = (0, 36, 0)
BAD_LAST_MINOR = (0, 41)


def _parse(version: str) -> tuple[int, int, int]:
    parts = (version.split("+")[0].split(".") + ["0", "0"])[:3]
    nums = []
    for p in parts:
        digits = "".join(ch for ch in p if ch.isdigit()) or "0"
        nums.append(int(digits))
    return nums[0], nums[1], nums[2]


def check_bitsandbytes(version: str) -> None:
    """Raise for bitsandbytes 0.36.0 through 0.41.x."""
    v = _parse(version)
    if v >= BAD_FIRST and v[:2] <= BAD_LAST_MINOR:
        raise KxlError(
            f"bitsandbytes {version} has the 8-bit optimizer bug (0.36.0-0.41.x); "
            "install bitsandbytes>=0.45 (see pyproject.toml [train])"
        )


def build_lion8bit(
    groups: list[dict[str, Any]], betas: tuple[float, float], weight_decay: float
) -> Any:
    import importlib.metadata

    check_bitsandbytes(importlib.metadata.version("bitsandbytes"))
    import bitsandbytes as bnb

    return bnb.optim.Lion8bit(groups, betas=tuple(betas), weight_decay=weight_decay)


def grad_scaler(device: str, enabled: bool, full_fp16: bool, init_scale: float = 2.0**16) -> Any:
    """torch's GradScaler; under full_fp16 one that unscales fp16 gradients.

    torch refuses to unscale fp16 gradients ("Attempting to unscale FP16 gradients"), since an
    unscaled fp16 gradient may underflow. sd-scripts' --full_fp16 accepts that: it patches the
    scaler's `_unscale_grads_` to pass allow_fp16=True. The subclass below does the same
    through the same hook, so inf/NaN detection and step skipping stay torch's."""
    import torch

    if not full_fp16:
        return torch.amp.GradScaler(device, init_scale=init_scale, enabled=enabled)

    class FullFp16GradScaler(torch.amp.GradScaler):
        def _unscale_grads_(self, optimizer, inv_scale, found_inf, allow_fp16):  # type: ignore[no-untyped-def]
            return super()._unscale_grads_(optimizer, inv_scale, found_inf, True)

    return FullFp16GradScaler(device, init_scale=init_scale, enabled=enabled)
