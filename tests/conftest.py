"""Shared pytest setup: keep CPU tests reproducible and light on 2 cores."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory):
    """One run of the default pipeline, shared by the e2e and cluster tests."""
    from pipeline_run import TARGETS, run_default

    return run_default(tmp_path_factory.mktemp("run-a"), TARGETS)


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory: pytest.TempPathFactory):
    """One run of every rule under config/micro.yaml (a few minutes), for the fast tier."""
    from pipeline_run import MICRO, run_default

    return run_default(tmp_path_factory.mktemp("micro-a"), ["all"], *MICRO)


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's headless Chromium for the report pages (CCIP, run report), installed by
    ensure-chromium.sh where root and apt allow (as in CI); skipped elsewhere outside CI."""
    script = Path(__file__).with_name("ensure-chromium.sh")
    proc = subprocess.run([str(script)], capture_output=True, text=True, timeout=900)
    if proc.returncode == 3 and os.environ.get("CI", "").lower() not in {"true", "1"}:
        pytest.skip(f"headless Chromium unavailable: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Path("/usr/bin/chromium")


@pytest.fixture()
def dump_dom(chromium: Path, tmp_path: Path):
    """page -> headless Chromium's run of it (its DOM after scripts in stdout; logs in stderr),
    with a throwaway profile and 3 s of virtual time for the page's scripts; `width`: the
    viewport's width in CSS px, scrollbars hidden so that all of it is the page's (Chromium's
    default window otherwise)."""

    def run(page: Path, width: int | None = None) -> subprocess.CompletedProcess[str]:
        window = [f"--window-size={width},900", "--hide-scrollbars"] if width else []
        return subprocess.run(
            [str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr",
             "--v=0", "--virtual-time-budget=3000", *window, "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120)

    return run
