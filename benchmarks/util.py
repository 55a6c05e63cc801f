"""Timing and peak-memory measurement shared by the benchmarks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def run_measured(code: str, env: dict[str, str] | None = None) -> dict:
    """Run Python `code` in a fresh process; return wall seconds and its peak RSS (MB).

    A fresh process per measurement keeps peak RSS honest (the parent's memory never counts).
    The code may print one JSON object on its last stdout line; it is merged into the result.
    """
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across fork+exec, so a child
    # would report the parent's peak whenever the parent was the larger.
    wrapper = (
        "import json, time\n"
        "t0 = time.perf_counter()\n"
        f"{code}\n"
        "dt = time.perf_counter() - t0\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "rss = int(hwm.split()[1]) / 1024\n"
        "print(json.dumps({'seconds': dt, 'peak_rss_mb': rss}))\n"
    )
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", wrapper],
        capture_output=True, text=True, check=True, env={**os.environ, **(env or {})},
    ).stdout.strip().splitlines()
    result = {"wall_seconds": time.perf_counter() - t0}
    for line in out:
        if line.startswith("{"):
            result.update(json.loads(line))
    return result
