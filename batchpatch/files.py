"""Writing a file so that a crash never leaves half of it: a temporary file beside it, then
an atomic rename.  The file gets the permissions the user's umask gives new files.

The temporary file is named ``.NAME.XXXXXXXX.tmpSUFFIX`` and held under an ``flock`` while it
is written.  A killed write leaves it behind; the next run writing the same file removes it
(``remove_stale_temporaries``) — but only a file that matches this pattern, is older than that
run, and whose lock is free, so a write still under way elsewhere is never disturbed.
"""

from __future__ import annotations

import fcntl
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

#: ``tempfile.mkstemp`` names: eight characters from this set between prefix and suffix.
_RANDOM_PART = "[a-z0-9_]{8}"


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write`` with a temporary path beside ``path``, then rename it into place."""
    with _locked_temporary(path) as temporary:
        write(temporary)
        umask = os.umask(0)
        os.umask(umask)
        temporary.chmod(0o666 & ~umask)
        os.replace(temporary, path)
    return path


def trial_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write`` with a temporary path beside ``path`` and throw the result away: proof,
    before a run sends anything, that the real write will work.  ``path`` is not touched."""
    with _locked_temporary(path) as temporary:
        write(temporary)


@contextmanager
def _locked_temporary(path: Path) -> Iterator[Path]:
    """A fresh temporary file beside ``path``, locked while the block runs; it is removed
    afterwards unless the block renamed it away."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}"
    )
    temporary = Path(name)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield temporary
    finally:
        with suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(handle), temporary.lstat()):
                temporary.unlink()
        os.close(handle)


def temporary_name_pattern(path: Path) -> re.Pattern[str]:
    """The names ``atomic_write`` gives its temporary files for ``path``, and nothing else."""
    return re.compile(rf"\.{re.escape(path.name)}\.{_RANDOM_PART}\.tmp{re.escape(path.suffix)}")


def remove_stale_temporaries(path: Path, *, older_than: float) -> list[Path]:
    """Remove what killed writes of ``path`` left behind: files named by our own temporary
    pattern, last modified before ``older_than`` (a ``time.time()`` reading), whose lock
    no writer holds.  Returns the files removed."""
    pattern = temporary_name_pattern(path)
    try:
        entries = [entry for entry in path.parent.iterdir() if pattern.fullmatch(entry.name)]
    except OSError:  # no such folder yet, or not readable: nothing of ours can be there
        return []
    return [entry for entry in entries if _remove_if_abandoned(entry, older_than)]


def _remove_if_abandoned(entry: Path, older_than: float) -> bool:
    """Remove ``entry`` if it is a plain file older than ``older_than`` that nobody is
    writing (its ``flock`` is free).  Symbolic links and folders are never touched."""
    try:
        handle = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        status = os.fstat(handle)
        if not stat.S_ISREG(status.st_mode) or status.st_mtime >= older_than:
            return False
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a write is under way: not ours to remove
            return False
        if not os.path.samestat(status, entry.lstat()):
            return False  # replaced meanwhile by another file of that name
        entry.unlink()
        return True
    except OSError:
        return False
    finally:
        os.close(handle)
