"""One run per sheet and per report at a time: advisory locks in a per-user folder.

A run holds two locks: one keyed by the sheet's identity (device and inode, so a symlink or a
hard link to the sheet is the same sheet) and one keyed by where the report (and so the
journal beside it) is written, so two copies of a sheet sharing ``--report`` cannot run at
once either.  The locks live in the user's runtime folder (``$XDG_RUNTIME_DIR/batchpatch``),
else in ``batchpatch-UID`` in the temp folder — never beside the sheet, so a sheet in a
read-only folder can be applied.

``flock`` locks die with their process, so a killed run never leaves a stale lock behind.
Lock files are opened without following symlinks, so a symlink planted at a lock path
never makes a run truncate the file it points to.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from batchpatch.errors import OptionsError, Reason

#: Attempts at taking a lock whose file another run unlinked between our open and our flock.
_RETRIES = 5


def lock_folder() -> Path:
    """The per-user folder holding the lock files, created private (0700) if need be."""
    candidates = []
    runtime = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    if runtime and Path(runtime).is_absolute():
        candidates.append(Path(runtime) / "batchpatch")
    candidates.append(Path(tempfile.gettempdir()) / f"batchpatch-{os.getuid()}")
    problems = []
    for folder in candidates:
        problem = _make_private_folder(folder)
        if not problem:
            return folder
        problems.append(problem)
    raise OptionsError(
        str(
            Reason(
                f"no folder for the run lock: {'; '.join(problems)}",
                "set XDG_RUNTIME_DIR to a folder only you can write to",
            )
        )
    )


def _make_private_folder(folder: Path) -> str:
    """Create ``folder`` (0700) unless it exists; "" when it is ours alone, else why not."""
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(folder)
    except OSError as error:
        return f"cannot create {folder}: {error.strerror or error}"
    if not stat.S_ISDIR(info.st_mode):
        return f"{folder} is not a folder"
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        return f"{folder} is not private to this user (owner or permissions)"
    return ""


def _key_path(kind: str, identity: str) -> Path:
    digest = hashlib.sha256(f"{kind}:{identity}".encode()).hexdigest()[:32]
    return lock_folder() / f"{kind}-{digest}.lock"


def lock_path(sheet_path: Path) -> Path:
    """The lock of the sheet at ``sheet_path``, keyed by the file's device and inode."""
    info = os.stat(sheet_path)  # follows symlinks: a link is the sheet it points to
    return _key_path("sheet", f"{info.st_dev}:{info.st_ino}")


def report_lock_path(report_path: Path) -> Path:
    """The lock of the report at ``report_path`` (and its journal), keyed by the report's
    folder (device and inode) and name, so every spelling of the path is the same lock."""
    resolved = report_path.resolve()
    folder = os.stat(resolved.parent)
    return _key_path("report", f"{folder.st_dev}:{folder.st_ino}:{resolved.name}")


@contextmanager
def hold_run(sheet_path: Path, report_path: Path) -> Iterator[None]:
    """Hold the sheet's and the report's locks for the block, or raise ``OptionsError``
    naming the run that holds one."""
    with ExitStack() as locks:
        locks.enter_context(run_lock(lock_path(sheet_path), f"this sheet ({sheet_path})"))
        locks.enter_context(run_lock(report_lock_path(report_path), f"the report {report_path}"))
        yield


@contextmanager
def run_lock(path: Path, what: str = "this sheet") -> Iterator[None]:
    """Hold the lock at ``path`` for the block, or raise ``OptionsError`` if it is taken.

    The lock file holds the holder's pid and is removed on release.  Since another run may
    remove it between our open and our ``flock``, a lock counts only while its file is
    still the one at ``path``.
    """
    for _ in range(_RETRIES):
        descriptor = _open_lock_file(path)
        try:
            _take(descriptor, path, what)
        except BaseException:
            os.close(descriptor)
            raise
        if _still_linked(descriptor, path):
            break
        os.close(descriptor)  # removed by the run that just let go: take the new one
    else:
        raise OptionsError(
            str(
                Reason(
                    f"cannot take the run lock {path}: it keeps being replaced",
                    "another batchpatch run is starting and stopping; try again",
                )
            )
        )
    try:
        with contextlib.suppress(OSError):  # the pid only helps the message (a full disk)
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, str(os.getpid()).encode("ascii"), 0)
        yield
    finally:
        _release(descriptor, path)


def _open_lock_file(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        descriptor = os.open(path, flags, 0o600)
    except OSError as error:
        hint = (
            str(Reason("it is a symbolic link, which batchpatch never follows", "remove it"))
            if os.path.islink(path)
            else "check the folder's permissions"
        )
        raise OptionsError(
            str(Reason(f"cannot open the run lock {path}: {error.strerror or error}", hint))
        ) from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise OptionsError(str(Reason(f"the run lock {path} is not a regular file", "remove it")))
    return descriptor


def _take(descriptor: int, path: Path, what: str) -> None:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
        pid = f" (pid {holder})" if holder.isdigit() else ""
        raise OptionsError(
            str(
                Reason(
                    f"another batchpatch run{pid} is working on {what}",
                    f"wait for it to finish, or stop it first (lock: {path})",
                )
            )
        ) from None


def _still_linked(descriptor: int, path: Path) -> bool:
    try:
        linked = os.lstat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (linked.st_dev, linked.st_ino) == (held.st_dev, held.st_ino)


def _release(descriptor: int, path: Path) -> None:
    """Unlink while still holding the lock, so nobody takes a file about to vanish."""
    try:
        if _still_linked(descriptor, path):
            path.unlink()
    except OSError:
        pass  # a lock file left behind is harmless: flock is what counts
    finally:
        os.close(descriptor)
