"""A run's fingerprint: everything that decides its training math, so that a checkpoint is
continued only by the run it belongs to.

A rerun after any change that alters the math must give what a fresh run gives. So a checkpoint
stores (a) every setting the train rule receives (the caption augmentation, train.caption_*,
among them) except the resume-free ones below, and the seed, (b) the sha256 of every input file,
and (c) the sha256 of the plan rows it has consumed. A resume compares all three; the step
budget is checked apart (a checkpoint past it is never continued). A new TrainConfig field is
part of the fingerprint unless it is added here with its reason.
"""

from __future__ import annotations

import json
from typing import Any

# Train settings that may change between a checkpoint and its resume, each with why.
RESUME_FREE: dict[str, str] = {
    "run": "launch resources only: the plan fixes the data layout whatever the process count",
    "max_steps": "the step budget: a checkpoint inside it continues, one past it never does",
    "checkpoint_steps": "when checkpoints are written, not what they hold",
    "checkpoint_every": "when checkpoints are written, not what they hold",
    "keep_last": "how many checkpoints are kept",
    "tensorboard": "a second copy of metrics.csv",
    "gradient_checkpointing": "recomputes activations: memory, not math (tests/train/test_resume)",
    "save_precision": "the final file's dtype; checkpoints keep the fp32 factors",
    "data_workers": "who decodes the images (kxl.train.prefetch), not which or how: same bytes",
    "prefetch": "how far ahead images are decoded, not which or how: same bytes",
}


def jsonable(value: Any) -> Any:
    """The value as it reads back from JSON (tuples become lists, dataclasses dicts)."""
    return json.loads(json.dumps(value, sort_keys=True))


# Fingerprint keys of checkpoints written before a setting moved, under their present name:
# the caption settings came from the plan section (`caption.<key>`) until they moved to train.
RENAMED = {"caption.shuffle": "train.caption_shuffle",
           "caption.tag_dropout": "train.caption_tag_dropout"}


def settings(train: dict[str, Any], seed: int) -> dict[str, Any]:
    """The math-deciding settings, flat: `train.<key>` and `seed`."""
    out: dict[str, Any] = {"seed": seed}
    out.update({f"train.{k}": v for k, v in train.items() if k not in RESUME_FREE})
    return jsonable(out)


def settings_mismatch(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first setting that differs, in words (None: all equal). `old` may use names from
    before a move (RENAMED): a run in progress continues across the rename."""
    old = {RENAMED.get(k, k): v for k, v in old.items()}
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return f"made with {key}={old.get(key)!r}, config now has {new.get(key)!r}"
    return None


def inputs_mismatch(old: dict[str, str], new: dict[str, str]) -> str | None:
    """The first input file whose sha256 differs, in words (None: all equal)."""
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            was, now = (old.get(name) or "none")[:12], (new.get(name) or "none")[:12]
            return f"made from another {name} (sha256 {was}..., now {now}...)"
    return None
