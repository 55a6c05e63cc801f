"""Per-step metrics to CSV (and TensorBoard), written by the main process only."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

COLUMNS = (
    "step",
    "loss",
    "lr_text_encoder",
    "lr_unet",
    "grad_norm",
    "scaler_scale",
    "images_per_s",
    # unix seconds when the row was written: the run report's downtime between a crash and its
    # resume. Timing, like images_per_s, so not compared between runs; before rows_hash, whose
    # 16 characters tell a complete line from one cut short by a kill
    "wall_time",
    "rows_hash",
)


class MetricsLog:
    """metrics.running.csv grows row by row and survives preemption (Snakemake deletes declared
    outputs of failed jobs); on resume rows >= the resume step are dropped (a killed run may have
    logged steps after its last checkpoint). `finish` copies it atomically to metrics.csv."""

    def __init__(self, out_dir: Path, start_step: int, tensorboard: bool) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.path = out_dir / "metrics.running.csv"
        self.final = out_dir / "metrics.csv"
        rows = _read(self.path)
        kept = [r for r in rows if int(r["step"]) < start_step]
        with open(self.path, "w", newline="") as fh:
            w = csv.DictWriter(fh, COLUMNS)
            w.writeheader()
            w.writerows(kept)
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tensorboard"), purge_step=start_step)

    def log(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, COLUMNS).writerow({**row, "wall_time": f"{time.time():.3f}"})
            fh.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("step", "rows_hash"):
                    self.tb.add_scalar(f"train/{k}", float(v), int(row["step"]))

    def finish(self) -> None:
        from kxl.atomic import write_bytes

        if self.tb is not None:
            self.tb.close()
        write_bytes(self.final, self.path.read_bytes())


def _read(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
