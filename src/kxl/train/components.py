"""Trainer collaborators that own their state under fixed checkpoint keys."""

from __future__ import annotations

from typing import Any

from kxl.errors import KxlError
from kxl.lokr.keys import lora_name_map, rename_keys


class Adapter:
    """The LoKr network; its state dict is the kohya-keyed adapter file."""

    def __init__(self, network: Any, unet: Any, text_encoders: list[Any]) -> None:
        self.network = network
        names = {m.lora_name for m in network.unet_loras + network.text_encoder_loras}
        full = lora_name_map(unet, text_encoders)
        unmapped = sorted(names - set(full))
        if unmapped:
            raise KxlError(f"LoKr module {unmapped[0]} has no SGM/kohya name; extend kxl.model.sgm")
        self.to_kohya = {n: full[n] for n in names}
        self.from_kohya = {v: k for k, v in self.to_kohya.items()}

    def param_groups(self, lr_te: float, lr_unet: float) -> list[dict[str, Any]]:
        te = [p for m in self.network.text_encoder_loras for p in m.parameters() if p.requires_grad]
        un = [p for m in self.network.unet_loras for p in m.parameters() if p.requires_grad]
        return [
            {"params": te, "lr": lr_te, "name": "text_encoder"},
            {"params": un, "lr": lr_unet, "name": "unet"},
        ]

    def state_dict(self) -> dict[str, Any]:
        sd = {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}
        return rename_keys(sd, self.to_kohya)

    def check_state(self, state: dict[str, Any], where: str) -> None:
        """One line naming the first key or shape of `state` (kohya keys) that is not this
        network's: another algorithm (LoRA's lora_up / lora_down), preset, factor or model."""
        shapes = {k: tuple(v.shape) for k, v in self.network.state_dict().items()}
        want = rename_keys(shapes, self.to_kohya)
        missing = sorted(set(want) - set(state))
        unexpected = sorted(set(state) - set(want))
        if missing or unexpected:
            key, what = ((missing[0], "missing") if missing
                         else (unexpected[0], "not in the network"))
            raise KxlError(f"{where}: key {key} {what} ({len(missing)} missing, "
                           f"{len(unexpected)} unexpected); same algorithm (lokr), preset, "
                           "factor and model?")
        for key in sorted(want):
            got = tuple(state[key].shape)
            if got != want[key]:
                raise KxlError(f"{where}: {key} has shape {list(got)}, the network's is "
                               f"{list(want[key])}; same preset, factor and model?")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        own = rename_keys(state, self.from_kohya)
        missing, unexpected = self.network.load_state_dict(own, strict=False)
        if missing or unexpected:
            what = (missing or unexpected)[0]
            raise KxlError(
                f"adapter checkpoint does not match the network: {what} "
                f"({'missing' if missing else 'unexpected'}); same preset and model?"
            )


class RngState:
    """Global torch RNG states (training noise itself is derived per micro-batch)."""

    def state_dict(self) -> dict[str, Any]:
        import torch

        out = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            out["cuda"] = torch.cuda.get_rng_state_all()  # type: ignore[assignment]
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import torch

        torch.set_rng_state(state["cpu"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(state["cuda"]))


class DataPosition:
    """Position in the plan: index of the next optimizer step to run."""

    def __init__(self) -> None:
        self.next_step = 0

    def state_dict(self) -> dict[str, int]:
        return {"next_step": self.next_step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.next_step = int(state["next_step"])
