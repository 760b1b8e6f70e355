"""Running ``batchpatch.cli.main`` in this process, for CLI tests that are not about the
process itself (signals and closed streams need a real subprocess: see ``tests/e2e.py``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import pytest

from batchpatch.cli import main
from tests.e2e import TOKEN

CliRunner = Callable[..., tuple[int, str, str]]


def quiet_environment(monkeypatch: pytest.MonkeyPatch, token: str = TOKEN) -> None:
    """No credentials, profiles or proxies of the machine's user; ``token`` only."""
    for name in list(os.environ):
        if name.startswith(("BATCHPATCH_", "HUAWEICLOUD_")) or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BATCHPATCH_CONFIG", os.devnull)
    monkeypatch.setenv("BATCHPATCH_AUTH_TOKEN", token)


def run_main(capsys: pytest.CaptureFixture[str], args: Sequence[str]) -> tuple[int, str, str]:
    """``batchpatch ARGS`` in process: the exit code, stdout and stderr."""
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse's way out
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cli_runner(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], token: str = TOKEN
) -> CliRunner:
    """``batchpatch ARGS`` in this process with only ``token`` as credentials (none of the
    machine user's): returns (exit code, stdout, stderr)."""
    quiet_environment(monkeypatch, token)

    def run(*args: str) -> tuple[int, str, str]:
        return run_main(capsys, args)

    return run
