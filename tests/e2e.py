"""Running the real CLI as a subprocess against a fake IMS listening on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
TOKEN = "tkn-3f9c1e-not-a-real-token"


def sample_images() -> list[dict[str, Any]]:
    images: list[dict[str, Any]] = json.loads((SAMPLES / "images.json").read_text())
    return images


def run_cli(args: Sequence[str], *, token: str | None = TOKEN, cwd: Path | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m batchpatch ARGS`` with the token (if any) in the environment only."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("BATCHPATCH_")}
    env["PYTHONPATH"] = str(ROOT)
    if token is not None:
        env["BATCHPATCH_AUTH_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "batchpatch", *args], cwd=cwd or ROOT, env=env,
        capture_output=True, text=True, timeout=timeout, check=False,
    )
