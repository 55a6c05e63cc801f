"""Checkpoints without pickle: safetensors for tensors, JSON for the rest, sha256 manifest.

A checkpoint is a directory `step-XXXXXXXX/` holding
- `lokr.safetensors`: the adapter in kohya keys (loadable on its own, like the final file),
- `state.safetensors` + `state.json`: every other component's state (optimizer incl. 8-bit
  state tensors, schedule, scaler, data position, RNG states), nested containers encoded in JSON
  with tensors referenced by name,
- `manifest.json`: sha256 and size of each file (written last).
It is written under a temporary name and renamed, so a directory with the final name is complete;
`verify` re-hashes it so a corrupted or truncated one is named and skipped on resume.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kxl.errors import KxlError
from kxl.hashing import sha256_file

FILES = ("lokr.safetensors", "state.safetensors", "state.json")
MANIFEST = "manifest.json"
# Test hook: kill this process (SIGKILL) half-way through writing the checkpoint of this step.
KILL_HOOK = "KXL_TEST_KILL_DURING_CHECKPOINT"


def encode_state(obj: Any, tensors: dict[str, Any], path: str = "") -> Any:
    """Nested dict/list/tuple/tensor/scalar -> JSON node; tensors collected under their path."""
    import torch

    if isinstance(obj, torch.Tensor):
        # clone: bnb shares one qmap tensor between parameters; safetensors refuses aliases
        tensors[path] = obj.detach().cpu().clone().contiguous()
        return {"T": path}
    if isinstance(obj, dict):
        return {"d": [[k, encode_state(v, tensors, f"{path}/{k}")] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        kind = "l" if isinstance(obj, list) else "t"
        return {kind: [encode_state(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, bool | int | float | str):
        return {"v": obj}
    raise KxlError(f"checkpoint: cannot store {type(obj).__name__} at {path or '/'}")


def decode_state(node: Any, tensors: dict[str, Any]) -> Any:
    if "T" in node:
        return tensors[node["T"]]
    if "d" in node:
        return {k: decode_state(v, tensors) for k, v in node["d"]}
    if "l" in node:
        return [decode_state(v, tensors) for v in node["l"]]
    if "t" in node:
        return tuple(decode_state(v, tensors) for v in node["t"])
    return node["v"]


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path


class CheckpointManager:
    """Owns the checkpoint directory: save, verify, retention and resume lookup."""

    def __init__(self, root: str | Path, keep_last: int, keep_steps: list[int]) -> None:
        self.root = Path(root)
        self.keep_last = keep_last
        self.keep_steps = set(keep_steps)

    def path(self, step: int) -> Path:
        return self.root / f"step-{step:08d}"

    def save(
        self, step: int, lokr: dict[str, Any], state: dict[str, Any], meta: dict[str, Any]
    ) -> Path:
        """Write checkpoint `step` atomically (temporary directory, then rename)."""
        from safetensors.torch import save_file

        final = self.path(step)
        tmp = self.root / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        tensors: dict[str, Any] = {}
        tree = encode_state(state, tensors)
        save_file({k: v.contiguous() for k, v in lokr.items()}, tmp / FILES[0], {"format": "pt"})
        self._test_kill(step)
        save_file(tensors, tmp / FILES[1])
        (tmp / FILES[2]).write_text(json.dumps({"meta": meta, "state": tree}, sort_keys=True))
        files = {
            n: {"sha256": sha256_file(tmp / n), "size": (tmp / n).stat().st_size} for n in FILES
        }
        (tmp / MANIFEST).write_text(
            json.dumps({"step": step, "files": files}, indent=1, sort_keys=True)
        )
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(self.root)
        self._retain()
        return final

    @staticmethod
    def _test_kill(step: int) -> None:
        if os.environ.get(KILL_HOOK) == str(step):
            os.kill(os.getpid(), signal.SIGKILL)

    def verify(self, path: Path) -> None:
        """Raise KxlError naming the file when the checkpoint is incomplete or corrupt."""
        man = path / MANIFEST
        try:
            files = json.loads(man.read_text())["files"]
        except (OSError, ValueError, KeyError) as exc:
            raise KxlError(f"{man}: checkpoint manifest missing or unreadable") from exc
        for name in FILES:
            f = path / name
            if name not in files or not f.is_file():
                raise KxlError(f"{f}: checkpoint file missing")
            if f.stat().st_size != files[name]["size"]:
                raise KxlError(
                    f"{f}: truncated ({f.stat().st_size} of {files[name]['size']} bytes)"
                )
            if sha256_file(f) != files[name]["sha256"]:
                raise KxlError(f"{f}: sha256 mismatch (corrupt checkpoint)")

    def list(self) -> list[Checkpoint]:
        if not self.root.is_dir():
            return []
        out = []
        for p in self.root.glob("step-*"):
            if p.is_dir() and p.name[5:].isdigit():
                out.append(Checkpoint(int(p.name[5:]), p))
        return sorted(out, key=lambda c: c.step)

    def latest_valid(self, warn: Any = print, at_most: int | None = None) -> Checkpoint | None:
        """Newest checkpoint (at step <= `at_most`, if given) that verifies; corrupt ones are
        named through `warn` and skipped."""
        for ck in reversed(self.list()):
            if at_most is not None and ck.step > at_most:
                continue
            try:
                self.verify(ck.path)
                return ck
            except KxlError as exc:
                warn(f"skipping checkpoint: {exc}")
        return None

    def meta(self, path: Path) -> dict[str, Any]:
        """The run meta of a verified checkpoint (seed, config, inputs, plan position)."""
        self.verify(path)
        return json.loads((path / FILES[2]).read_text())["meta"]

    def supersede(self, under: Path, steps: list[int] | None = None) -> Path:
        """Move the whole checkpoint folder (or only the checkpoints of `steps`) to a new
        timestamped folder under `under`; nothing is deleted."""
        import time

        under.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        dest = under / f"checkpoints-{stamp}"
        n = 1
        while dest.exists():
            dest, n = under / f"checkpoints-{stamp}-{n}", n + 1
        if steps is None:
            os.replace(self.root, dest)
            return dest
        dest.mkdir()
        for step in steps:
            os.replace(self.path(step), dest / self.path(step).name)
        return dest

    def load(self, path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(lokr tensors, component state, meta) of a verified checkpoint."""
        from safetensors.torch import load_file

        self.verify(path)
        doc = json.loads((path / FILES[2]).read_text())
        state = decode_state(doc["state"], load_file(path / FILES[1]))
        return load_file(path / FILES[0]), state, doc["meta"]

    def _retain(self) -> None:
        """Keep the newest `keep_last` plus every explicitly listed step; drop the rest."""
        cks = self.list()
        for ck in cks[: max(0, len(cks) - self.keep_last)]:
            if ck.step not in self.keep_steps:
                shutil.rmtree(ck.path)
        for tmp in self.root.glob(".tmp-step-*"):
            if tmp.is_dir() and not tmp.name.endswith(f"-{os.getpid()}"):
                shutil.rmtree(tmp, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def export_step_lokr(root: Path, step: int, out: Path, precision: str) -> Path:
    """Write checkpoint `step`'s LoKr (kohya keys) to `out` in `precision` (the final file's
    train.save_precision, so it compares with a released step file of the same dtype); the
    checkpoint is verified against its manifest first. Returns the checkpoint folder."""
    import torch
    from safetensors.torch import load_file

    from kxl.model.st_io import save_streaming

    ckpt = CheckpointManager(root, keep_last=1, keep_steps=[])
    path = ckpt.path(step)
    if not path.is_dir():
        have = [c.step for c in ckpt.list()]
        raise KxlError(f"{path}: no checkpoint at step {step} (have {have}); list the step in "
                       "train.checkpoint_steps so training keeps it")
    meta = ckpt.meta(path)  # verifies every file against manifest.json
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    sd = {k: v + 0.0 if v.is_floating_point() else v for k, v in load_file(path / FILES[0]).items()}
    check_representable(sd, precision, out)
    save_streaming(sd, out, {"ss_network_module": "lycoris.kohya", "kxl_steps": str(step),
                             "kxl_save_precision": precision,
                             "kxl_seed": str(meta.get("seed"))}, dtype)
    return path


def check_representable(sd: dict[str, Any], save_precision: str, path: Path) -> None:
    """One line naming the first tensor that the final file cannot hold: a NaN/inf value (a
    diverged run), or under fp16 a value past fp16's largest (65504), which the cast would turn
    into inf. Nothing is written then; the checkpoints keep the fp32 values."""
    import torch

    for key, v in sorted(sd.items()):
        if not v.is_floating_point():
            continue
        if not bool(torch.isfinite(v).all()):
            raise KxlError(f"{path}: not written: LoKr tensor {key!r} holds NaN or inf "
                           "(the run diverged; see metrics.csv)")
        top = float(v.abs().max()) if v.numel() else 0.0
        if save_precision == "fp16" and top > float(torch.finfo(torch.float16).max):
            raise KxlError(f"{path}: not written: LoKr tensor {key!r} reaches {top:.4g}, past "
                           "fp16's 65504 (train.save_precision fp16); use bf16 or fp32")
