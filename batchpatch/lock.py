"""One run per sheet at a time: an advisory lock beside the sheet.

``flock`` locks die with their process, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from batchpatch.errors import OptionsError


def lock_path(sheet_path: Path) -> Path:
    """``changes.csv`` → ``.changes.csv.batchpatch.lock`` (hidden, beside the sheet)."""
    return sheet_path.with_name(f".{sheet_path.name}.batchpatch.lock")


@contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold the lock at ``path`` for the block, or raise ``OptionsError`` if it is taken."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise OptionsError(f"cannot create the run lock {path}: {error.strerror or error} — "
                           "run batchpatch where the sheet's folder is writable") from None
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
