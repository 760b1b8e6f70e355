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
PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})


def sample_images() -> list[dict[str, Any]]:
    images: list[dict[str, Any]] = json.loads((SAMPLES / "images.json").read_text())
    return images


def cli_environment(token: str | None = TOKEN,
                    environ: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without credentials, profiles or proxies of the machine's
    user, plus ``token`` as ``BATCHPATCH_AUTH_TOKEN`` and ``environ``."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("BATCHPATCH_", "HUAWEICLOUD_"))
           and key.lower() not in PROXY_VARIABLES}
    env["BATCHPATCH_CONFIG"] = os.devnull
    env["PYTHONPATH"] = str(ROOT)
    if token is not None:
        env["BATCHPATCH_AUTH_TOKEN"] = token
    env.update(environ or {})
    return env


def run_cli(args: Sequence[str], *, token: str | None = TOKEN, cwd: Path | None = None,
            timeout: float = 60, environ: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
    """``python -m batchpatch ARGS`` with the token (if any) in the environment only."""
    env = cli_environment(token, environ)
    return subprocess.run(
        [sys.executable, "-m", "batchpatch", *args], cwd=cwd or ROOT, env=env,
        capture_output=True, text=True, timeout=timeout, check=False,
    )
