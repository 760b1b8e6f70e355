"""Running ``batchpatch.cli.main`` in this process, with the test token and no user settings."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest

from batchpatch.cli import main
from tests.e2e import TOKEN


def quiet_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials, profiles or proxies of the machine's user; the test token only."""
    for name in list(os.environ):
        if name.startswith(("BATCHPATCH_", "HUAWEICLOUD_")) or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BATCHPATCH_CONFIG", os.devnull)
    monkeypatch.setenv("BATCHPATCH_AUTH_TOKEN", TOKEN)


def run_main(capsys: pytest.CaptureFixture[str], args: Sequence[str]) -> tuple[int, str, str]:
    """``batchpatch ARGS`` in process: the exit code, stdout and stderr."""
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err
