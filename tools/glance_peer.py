#!/usr/bin/env python3
"""A real OpenStack Glance (33.0.0, from PyPI) on 127.0.0.1, for batchpatch's ``glance`` tests.

No Keystone, an SQLite database and a file store, served by gunicorn with one worker (no
compiler needed; one worker because SQLite under several loses updates and answers
"database is locked").  Facts and pitfalls: shared/reference/glance-peer.md.

    python3 tools/glance_peer.py install        # the cached venv (idempotent)
    python3 tools/glance_peer.py run [--port N]  # install, configure, serve until Ctrl-C

The venv lives in ``$BATCHPATCH_GLANCE_HOME`` (default ``~/.cache/batchpatch/glance-33``)
and is reused between runs; it is only marked installed once ``pip`` succeeded, so an
interrupted install is redone.  Every step has a time limit, and a failure says what
failed with the end of its log, never a hang.  Standard library only: the tests import it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

GLANCE_VERSION = "33.0.0"
PACKAGES = (f"glance=={GLANCE_VERSION}", "gunicorn")
INSTALL_TIMEOUT = 900.0
DB_SYNC_TIMEOUT = 180.0
START_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
#: Glance's default ``image_property_quota``.
DEFAULT_PROPERTY_QUOTA = 128


class PeerError(RuntimeError):
    """The peer could not be installed or started; the message says why and where to look."""


def home() -> Path:
    """Where the venv is cached."""
    given = os.environ.get("BATCHPATCH_GLANCE_HOME")
    if given:
        return Path(given).expanduser()
    return Path.home() / ".cache" / "batchpatch" / "glance-33"


def _tail(log: Path, lines: int = 25) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def _run_step(what: str, command: list[str], log: Path, timeout: float, **kwargs: object) -> None:
    """Run ``command`` with its output appended to ``log``; a ``PeerError`` if it fails or
    takes longer than ``timeout`` seconds."""
    with log.open("ab") as out:
        try:
            done = subprocess.run(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
                **kwargs,  # type: ignore[call-overload]
            )
        except subprocess.TimeoutExpired:
            raise PeerError(f"{what} took more than {timeout:g} s (log: {log})") from None
        except OSError as error:
            raise PeerError(f"{what} could not start: {error}") from None
    if done.returncode != 0:
        raise PeerError(f"{what} failed (exit {done.returncode}); the end of {log}:\n{_tail(log)}")


def venv_python(root: Path) -> Path:
    return root / "venv" / "bin" / "python"


def install(root: Path | None = None) -> Path:
    """The venv holding Glance and gunicorn under ``root``, installed once (idempotent; a
    file lock keeps two test workers from installing at the same time)."""
    root = root or home()
    root.mkdir(parents=True, exist_ok=True)
    marker = root / f"installed-{GLANCE_VERSION}"
    with (root / "install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and venv_python(root).is_file():
            return root / "venv"
        log = root / "install.log"
        log.write_text("")
        shutil.rmtree(root / "venv", ignore_errors=True)
        _run_step("creating the venv", [sys.executable, "-m", "venv", str(root / "venv")], log, 120)
        _run_step(
            f"pip install {' '.join(PACKAGES)}",
            [str(venv_python(root)), "-m", "pip", "install", "--quiet", *PACKAGES],
            log,
            INSTALL_TIMEOUT,
        )
        marker.write_text(GLANCE_VERSION + "\n")
    return root / "venv"


def _paste_ini(venv: Path, workdir: Path) -> str:
    shipped = venv / "etc" / "glance" / "glance-api-paste.ini"
    if not shipped.is_file():
        raise PeerError(f"{shipped} is missing: the glance install is incomplete")
    text = shipped.read_text(encoding="utf-8")
    return text.replace("/etc/glance/healthcheck_disable", str(workdir / "healthcheck_disable"))


def write_config(venv: Path, workdir: Path, *, property_quota: int) -> Path:
    """``glance-api.conf``, the paste ini and ``policy.yaml`` under ``workdir/etc``."""
    etc = workdir / "etc"
    for folder in ("etc", "log", "images", "staging", "tasks"):
        (workdir / folder).mkdir(parents=True, exist_ok=True)
    (etc / "glance-api.conf").write_text(
        f"""[DEFAULT]
enabled_backends = fs:file
node_staging_uri = file://{workdir}/staging
enabled_import_methods = [glance-direct]
image_property_quota = {property_quota}
log_file = {workdir}/log/glance-api.log
use_stderr = false
debug = false
[database]
connection = sqlite:///{workdir}/glance.sqlite
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = {workdir}/images
[os_glance_staging_store]
filesystem_store_datadir = {workdir}/staging
[os_glance_tasks_store]
filesystem_store_datadir = {workdir}/tasks
[paste_deploy]
config_file = {etc}/glance-api-paste.ini
[oslo_policy]
policy_file = {etc}/policy.yaml
""",
        encoding="utf-8",
    )
    (etc / "glance-api-paste.ini").write_text(_paste_ini(venv, workdir), encoding="utf-8")
    # The no-auth context is admin but has no roles, which oslo.policy never sees.
    (etc / "policy.yaml").write_text('"context_is_admin": "@"\n', encoding="utf-8")
    return etc


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/v2/images")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


@dataclass
class Glance:
    """A running glance-api: its URL, working directory and process."""

    url: str
    port: int
    workdir: Path
    process: subprocess.Popen[bytes]

    @property
    def access_log(self) -> Path:
        """One line per request, written as each is answered (gunicorn's access log)."""
        return self.workdir / "log" / "access.log"

    def requests(self, method: str) -> int:
        """How many ``method`` requests Glance has answered so far, from its own log."""
        try:
            lines = self.access_log.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return 0
        return sum(f'"{method} /v2/images' in line for line in lines)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def database(venv: Path, etc: Path, workdir: Path) -> None:
    """``workdir/glance.sqlite`` with Glance's schema: a copy of the empty database cached
    beside the venv, made by ``glance-manage db_sync`` the first time (that takes seconds of
    CPU — all of Glance is imported — and gives the same file every time)."""
    template = venv.parent / f"empty-{GLANCE_VERSION}.sqlite"
    target = workdir / "glance.sqlite"
    if not template.is_file():
        _run_step(
            "glance-manage db_sync",
            [str(venv / "bin" / "glance-manage"), "--config-dir", str(etc), "db_sync"],
            workdir / "log" / "setup.log",
            DB_SYNC_TIMEOUT,
        )
        partial = template.with_name(f"{template.name}.{os.getpid()}")
        shutil.copyfile(target, partial)
        os.replace(partial, template)  # whole or absent, whoever else is copying it
        return
    shutil.copyfile(template, target)


def start(workdir: Path, *, property_quota: int = DEFAULT_PROPERTY_QUOTA) -> Glance:
    """Install (if needed), configure, db_sync and serve Glance from ``workdir`` on a free
    port of 127.0.0.1; returns once ``GET /v2/images`` answers 200."""
    venv = install()
    etc = write_config(venv, workdir, property_quota=property_quota)
    database(venv, etc, workdir)
    port = free_port()
    server_log = workdir / "log" / "gunicorn.log"
    environment = os.environ | {"OS_GLANCE_CONFIG_DIR": str(etc), "PYTHONWARNINGS": "ignore"}
    with server_log.open("ab") as out:
        process = subprocess.Popen(
            [
                str(venv / "bin" / "gunicorn"),
                "--workers=1",
                f"--bind=127.0.0.1:{port}",
                f"--access-logfile={workdir / 'log' / 'access.log'}",
                "--timeout=120",
                "glance.wsgi.api:application",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment,
            start_new_session=True,
        )
    glance = Glance(f"http://127.0.0.1:{port}", port, workdir, process)
    _wait_until_up(glance, server_log)
    return glance


def _wait_until_up(glance: Glance, server_log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if glance.process.poll() is not None:
            raise PeerError(
                f"glance-api exited with {glance.process.returncode}; the end of "
                f"{server_log}:\n{_tail(server_log)}"
            )
        if _answers(glance.port):
            return
        time.sleep(0.2)  # polling a starting server, not synchronising a test
    glance.stop()
    raise PeerError(f"glance-api did not answer within {START_TIMEOUT:g} s (log: {server_log})")


@contextlib.contextmanager
def running(
    workdir: Path | None = None, *, property_quota: int = DEFAULT_PROPERTY_QUOTA
) -> Iterator[Glance]:
    """A Glance for the duration of the ``with`` block, stopped after it."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="glance-")))
        glance = start(workdir, property_quota=property_quota)
        try:
            yield glance
        finally:
            glance.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local Glance for batchpatch's tests.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="install Glance into its cached venv")
    serve = commands.add_parser("run", help="serve Glance on 127.0.0.1 until interrupted")
    serve.add_argument("--dir", type=Path, help="working directory (default: a temporary one)")
    serve.add_argument("--property-quota", type=int, default=DEFAULT_PROPERTY_QUOTA)
    options = parser.parse_args(argv)
    try:
        if options.command == "install":
            print(f"glance {GLANCE_VERSION} in {install()}")
            return 0
        with running(options.dir, property_quota=options.property_quota) as glance:
            print(f"glance-api at {glance.url} (working directory {glance.workdir})", flush=True)
            stops = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, stops)
            signal.sigwait(stops)
    except PeerError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
