"""Helpers for the wire tests: an account of images and fast retries (the CLI is launched
with ``tests.e2e``)."""

from __future__ import annotations

import uuid
from typing import Any

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
