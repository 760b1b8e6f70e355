"""The one way tests launch the CLI: ``batchpatch ARGS`` against a fake IMS on 127.0.0.1.

``run_cli`` runs ``batchpatch.cli.main`` in this process by default — the same arguments,
environment, working directory and captured output a subprocess would get, at a fraction of
the cost.  ``run_cli(..., in_process=False)`` and ``start_cli`` start a real
``python -m batchpatch`` process: only for tests about the process itself (signals, kills,
closed streams, resource limits, the console script).

``run_main`` and ``cli_runner`` are the in-process runs for tests that set the environment
with pytest's ``monkeypatch`` themselves.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from batchpatch import logs
from batchpatch.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
TOKEN = "tkn-3f9c1e-not-a-real-token"
PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})

CliRunner = Callable[..., tuple[int, str, str]]


def sample_images() -> list[dict[str, Any]]:
    images: list[dict[str, Any]] = json.loads((SAMPLES / "images.json").read_text())
    return images


def cli_environment(
    token: str | None = TOKEN, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """This process's environment without credentials, profiles or proxies of the machine's
    user, plus ``token`` as ``BATCHPATCH_AUTH_TOKEN`` and ``environ``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BATCHPATCH_", "HUAWEICLOUD_"))
        and key.lower() not in PROXY_VARIABLES
        and key != "PYTHONDONTWRITEBYTECODE"  # compile the package once, not per process
    }
    env["BATCHPATCH_CONFIG"] = os.devnull
    env["PYTHONPATH"] = str(ROOT)
    if token is not None:
        env["BATCHPATCH_AUTH_TOKEN"] = token
    env.update(environ or {})
    return env


def run_cli(
    args: Sequence[str],
    *,
    token: str | None = TOKEN,
    cwd: Path | None = None,
    timeout: float = 60,
    environ: Mapping[str, str] | None = None,
    in_process: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``batchpatch ARGS`` with the token (if any) in the environment only, from ``cwd``
    (the repository by default): its exit code, stdout and stderr.  ``timeout`` bounds a
    subprocess only; in process, the run's own timeouts (``--timeout``, the fake's) hold."""
    env = cli_environment(token, environ)
    if not in_process:
        return subprocess.run(
            [sys.executable, "-m", "batchpatch", *args],
            cwd=cwd or ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    with _process_state(env, cwd or ROOT):
        code, out, err = _main_captured(args)
    return subprocess.CompletedProcess(["batchpatch", *args], code, out, err)


def start_cli(
    args: Sequence[str],
    *,
    token: str | None = TOKEN,
    environ: Mapping[str, str] | None = None,
    **popen: Any,
) -> subprocess.Popen[str]:
    """A real ``python -m batchpatch ARGS`` process, for tests that signal or kill it; the
    keyword arguments go to ``Popen`` (``stdout=subprocess.PIPE`` and the like)."""
    return subprocess.Popen(
        [sys.executable, "-m", "batchpatch", *args],
        cwd=ROOT,
        env=cli_environment(token, environ),
        text=True,
        **popen,
    )


def quiet_environment(monkeypatch: pytest.MonkeyPatch, token: str = TOKEN) -> None:
    """No credentials, profiles or proxies of the machine's user; ``token`` only."""
    for name in list(os.environ):
        if name.startswith(("BATCHPATCH_", "HUAWEICLOUD_")) or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BATCHPATCH_CONFIG", os.devnull)
    monkeypatch.setenv("BATCHPATCH_AUTH_TOKEN", token)


def run_main(capsys: pytest.CaptureFixture[str], args: Sequence[str]) -> tuple[int, str, str]:
    """``batchpatch ARGS`` in process, in the environment the test set: the exit code,
    stdout and stderr.  (``capsys`` is kept for the callers; the output is captured here.)"""
    del capsys
    return _main_captured(args)


def cli_runner(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], token: str = TOKEN
) -> CliRunner:
    """``batchpatch ARGS`` in this process with only ``token`` as credentials (none of the
    machine user's): returns (exit code, stdout, stderr)."""
    quiet_environment(monkeypatch, token)

    def run(*args: str) -> tuple[int, str, str]:
        return run_main(capsys, args)

    return run


def main_exit_code(
    monkeypatch: pytest.MonkeyPatch, args: Sequence[str], environ: Mapping[str, str]
) -> int:
    """``batchpatch ARGS`` in this process with exactly ``environ``'s credentials (none of
    the machine's, no proxies, no config file): the exit code (its output goes to capsys)."""
    for key in list(os.environ):
        if key.startswith(("BATCHPATCH_", "HUAWEICLOUD_")) or key.lower().endswith("_proxy"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("BATCHPATCH_CONFIG", os.devnull)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    with _logging_restored():
        return _exit_code_of(args)


def _main_captured(args: Sequence[str]) -> tuple[int, str, str]:
    """``main(ARGS)`` with stdout and stderr captured, and the logging it set up undone."""
    out, err = io.StringIO(), io.StringIO()
    with _logging_restored(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = _exit_code_of(args)
    return code, out.getvalue(), err.getvalue()


def _exit_code_of(args: Sequence[str]) -> int:
    try:
        return main(list(args))
    except SystemExit as exit_:  # argparse's way out
        return exit_.code if isinstance(exit_.code, int) else 1


@contextlib.contextmanager
def _process_state(env: Mapping[str, str], cwd: Path) -> Iterator[None]:
    """Exactly ``env`` as the environment and ``cwd`` as the working directory, as a child
    process would have them; both are put back afterwards."""
    saved_env, saved_cwd = dict(os.environ), Path.cwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    """The CLI points batchpatch's logger at the stderr of its run; put it back after, so
    no later test logs into a finished run's captured output."""
    logger = logging.getLogger("batchpatch")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    json_notices = logs._json_notices
    try:
        yield
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
        logs._json_notices = json_notices
