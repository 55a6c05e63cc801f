"""Written by each torchrun worker in the cluster tests: what one rank sees (JSON per rank)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

KEYS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID",
        "SLURM_GPUS_ON_NODE", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS")


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seen = {k: os.environ.get(k) for k in KEYS}
    (out / f"rank{seen['RANK']}.json").write_text(json.dumps(seen, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
