"""One trainer per output folder.

Two trainers on one folder interleave checkpoints and metrics rows (seen after snakemake was
killed with SIGKILL, its trainer kept running, and `snakemake --unlock` let a rerun start beside
it). The lock is an flock on `<out-dir>/train.lock`, which holds the holder's pid and host for
the message: the kernel drops it when the holder dies, however it dies, so a stale lock (dead
pid) is simply taken over.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kxl.errors import KxlError

LOCK_NAME = "train.lock"


@contextmanager
def training_lock(out_dir: Path) -> Iterator[Path]:
    """Hold the folder's training lock for the block; KxlError naming the holder if taken."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split()
            who = f"pid {holder[0]} on {holder[1]}" if len(holder) >= 2 else "another process"
            raise KxlError(
                f"{out_dir}: another trainer ({who}) is training into this folder; "
                f"stop it or wait for it to finish (lock file {path})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing releases the flock
