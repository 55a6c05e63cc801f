"""metrics.running.csv: rows carry the wall time they were written at; a resume keeps the
earlier rows (and their times) below the resume step."""

from __future__ import annotations

import csv
import time
from pathlib import Path

from kxl.train.metrics import COLUMNS, MetricsLog


def _row(step: int) -> dict[str, object]:
    return {"step": step, "loss": 0.5, "lr_text_encoder": 1e-4, "lr_unet": 2e-4,
            "grad_norm": 0.1, "scaler_scale": 1.0, "images_per_s": 8.0,
            "rows_hash": f"{step:016x}"}


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_rows_carry_their_wall_time_and_a_resume_keeps_the_earlier_ones(tmp_path: Path) -> None:
    before = time.time()
    log = MetricsLog(tmp_path, 0, tensorboard=False)
    for step in range(3):
        log.log(_row(step))
    after = time.time()
    rows = _read(tmp_path / "metrics.running.csv")
    assert list(rows[0]) == list(COLUMNS) and COLUMNS[-2:] == ("wall_time", "rows_hash")
    times = [float(r["wall_time"]) for r in rows]
    assert before - 0.001 <= times[0] <= times[1] <= times[2] <= after + 0.001
    MetricsLog(tmp_path, 2, tensorboard=False).log(_row(2))  # resumed at step 2
    again = _read(tmp_path / "metrics.running.csv")
    assert [r["step"] for r in again] == ["0", "1", "2"]
    assert [r["wall_time"] for r in again[:2]] == [r["wall_time"] for r in rows[:2]]
    assert float(again[2]["wall_time"]) >= after


def test_a_file_written_before_wall_time_existed_resumes_with_empty_times(tmp_path: Path) -> None:
    old = [c for c in COLUMNS if c != "wall_time"]
    with open(tmp_path / "metrics.running.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, old)
        w.writeheader()
        w.writerows({k: v for k, v in _row(s).items() if k in old} for s in range(2))
    MetricsLog(tmp_path, 1, tensorboard=False).log(_row(1))
    rows = _read(tmp_path / "metrics.running.csv")
    assert [(r["step"], r["wall_time"] == "") for r in rows] == [("0", True), ("1", False)]
