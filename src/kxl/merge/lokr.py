"""LoKr / norm modules of a kohya-keyed LyCORIS file and their effective weight deltas.

Semantics follow LyCORIS 4.1.3's wrapped forward pass (`LokrModule._rebuild_forward`,
`NormModule.forward`), which is what training optimised:

- LoKr: dW = scale * kron(W1, W2) with W1 = lokr_w1 or lokr_w1_a @ lokr_w1_b, and
  W2 = lokr_w2, lokr_w2_a @ lokr_w2_b (conv: w2_b flattened over in x kernel) or the Tucker
  rebuild of (lokr_t2, lokr_w2_a, lokr_w2_b). For a conv, W1 is broadcast over the kernel axes.
- scale: 1 when both halves are full matrices (LyCORIS forces alpha = dim there, whatever
  `alpha` says); otherwise alpha / dim with dim the rank of the factorised half (the first axis
  of w1_b / w2_b) - the stored alpha already folds rs-LoRA's sqrt in. alpha 0/absent -> 1.
  The scale is applied ONCE. lycoris.utils.merge and get_diff_weight apply it twice.
- norm (train_norm): weight += w_norm, bias += b_norm; no scale.
Both are multiplied by the merge multiplier.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from kxl.errors import KxlError

LOKR_PARAMS = frozenset({"lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a",
                         "lokr_w2_b", "lokr_t2", "alpha"})
NORM_PARAMS = frozenset({"w_norm", "b_norm"})
PREFIXES = ("lora_unet_", "lora_te1_", "lora_te2_")


@dataclass(frozen=True)
class Module:
    """One adapter module: its kohya name, kind ('lokr' | 'norm') and parameter names."""

    name: str
    kind: str
    params: frozenset[str]


def _kind(where: str, name: str, params: set[str]) -> str:
    if params <= NORM_PARAMS and "w_norm" in params:
        return "norm"
    if not params <= LOKR_PARAMS:
        odd = sorted(params - LOKR_PARAMS - NORM_PARAMS) or sorted(params & NORM_PARAMS)
        raise KxlError(f"{where}: module {name!r} has parameter {odd[0]!r}, which is not LoKr "
                       "(lokr_w1/_a/_b, lokr_w2/_a/_b, lokr_t2, alpha) or norm (w_norm, b_norm); "
                       "only LoKr adapters (+ trained norms) can be merged")
    one = ("lokr_w1" in params) != ({"lokr_w1_a", "lokr_w1_b"} <= params)
    two = ("lokr_w2" in params) != ({"lokr_w2_a", "lokr_w2_b"} <= params)
    tucker_ok = "lokr_t2" not in params or "lokr_w2_a" in params
    if not (one and two and tucker_ok):
        raise KxlError(f"{where}: module {name!r} has an incomplete LoKr factor set "
                       f"{sorted(params)}; the file is damaged or not a LoKr")
    return "lokr"


def parse_modules(keys: Iterable[str], where: str) -> dict[str, Module]:
    """Group `<lora_name>.<param>` keys into modules; anything else is a one-line error."""
    grouped: dict[str, set[str]] = {}
    for key in keys:
        name, dot, param = key.partition(".")
        if not dot or not name.startswith(PREFIXES):
            raise KxlError(f"{where}: key {key!r} is not a kohya LyCORIS key "
                           f"(<{'|'.join(p + '...' for p in PREFIXES)}>.<param>)")
        grouped.setdefault(name, set()).add(param)
    return {n: Module(n, _kind(where, n, p), frozenset(p)) for n, p in sorted(grouped.items())}


def lokr_scale(p: dict[str, torch.Tensor]) -> float:
    """alpha / dim as LyCORIS's forward uses it (1 for full-matrix modules)."""
    if "lokr_w1" in p and "lokr_w2" in p:
        return 1.0
    dim = p["lokr_w2_b"].shape[0] if "lokr_w2" not in p else p["lokr_w1_b"].shape[0]
    alpha = float(p["alpha"].float().item()) if "alpha" in p else 0.0
    return (alpha or dim) / dim


def kron_factors(p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(W1, W2) in float32; W2 keeps conv kernel axes when the file stores them."""
    f = {k: v.float() for k, v in p.items()}
    w1 = f["lokr_w1"] if "lokr_w1" in f else f["lokr_w1_a"] @ f["lokr_w1_b"]
    if "lokr_w2" in f:
        w2 = f["lokr_w2"]
    elif "lokr_t2" in f:
        # Tucker: t2 (r, r, *k) contracted with w2_a (r, out) and w2_b (r, in).
        w2 = torch.einsum("ij...,ip,jr->pr...", f["lokr_t2"], f["lokr_w2_a"], f["lokr_w2_b"])
    else:
        b = f["lokr_w2_b"]
        w2 = f["lokr_w2_a"] @ b.reshape(b.shape[0], -1)
    return w1, w2


def lokr_delta(p: dict[str, torch.Tensor], shape: tuple[int, ...] | None) -> torch.Tensor:
    """scale * kron(W1, W2) as float32, reshaped to `shape` (None: (out, -1)) when it fits."""
    w1, w2 = kron_factors(p)
    if shape is not None and len(shape) > 2 and w2.dim() == 2:
        w2 = w2.reshape(w2.shape[0], -1, *shape[2:])
    w1 = w1.reshape(*w1.shape, *([1] * (w2.dim() - 2)))
    delta = torch.kron(w1.contiguous(), w2.contiguous())
    scale = lokr_scale(p)
    if scale != 1.0:
        delta = delta * scale
    if shape is None:
        return delta.reshape(delta.shape[0], -1)
    # a delta that cannot take `shape` is returned as is: the caller names file, module, tensor
    return delta.reshape(shape) if delta.numel() == torch.Size(shape).numel() else delta


def module_deltas(
    module: Module, load: Callable[[str], torch.Tensor], weight_shape: tuple[int, ...] | None
) -> dict[str, torch.Tensor]:
    """{'weight': dW} for LoKr, {'weight': dw, 'bias': db} for norms (float32)."""
    p = {k: load(f"{module.name}.{k}") for k in sorted(module.params)}
    if module.kind == "norm":
        out = {"weight": p["w_norm"].float()}
        if "b_norm" in p:
            out["bias"] = p["b_norm"].float()
        return out
    return {"weight": lokr_delta(p, weight_shape)}
