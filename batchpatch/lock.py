"""One run per sheet at a time: an advisory lock beside the report.

``flock`` locks die with their process, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from batchpatch.errors import OptionsError


def lock_path(report_path: Path) -> Path:
    return report_path.with_name(report_path.name + ".lock")


@contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold the lock at ``path`` for the block, or raise ``OptionsError`` if it is taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
            raise OptionsError(
                f"another batchpatch run{f' (pid {holder})' if holder else ''} is working on "
                f"this sheet ({path}) — wait for it to finish, or stop it first"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode("ascii"), 0)
        yield
    finally:
        os.close(descriptor)
