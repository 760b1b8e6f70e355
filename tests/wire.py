"""Helpers for the wire tests: an account of images, and the CLI run in-process with only
the environment a test gives it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from batchpatch.cli import main

FAST_RETRIES = ["--backoff", "0.01", "--max-backoff", "0.05"]


def account(size: int) -> list[dict[str, Any]]:
    """``size`` active images with a ``team`` attribute to change."""
    return [
        {
            "id": str(uuid.UUID(int=n + 1, version=4)),
            "name": f"image-{n:03d}",
            "status": "active",
            "min_ram": 0,
            "team": "old",
        }
        for n in range(size)
    ]


def run_main(
    monkeypatch: pytest.MonkeyPatch, args: Sequence[str], environ: Mapping[str, str]
) -> int:
    """``batchpatch ARGS`` in this process with exactly ``environ``'s credentials (none of
    the machine's, no proxies, no config file); an option error's exit code is returned."""
    for key in list(os.environ):
        if key.startswith(("BATCHPATCH_", "HUAWEICLOUD_")) or key.lower().endswith("_proxy"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("BATCHPATCH_CONFIG", os.devnull)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    try:
        return main(list(args))
    except SystemExit as exit_:
        return int(exit_.code or 0)
