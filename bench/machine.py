"""The machine a bench ran on, and which cores its server and its clients get."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

PACKAGES = (
    "batchpatch", "aiohttp", "anyio", "pandas", "pyarrow", "openpyxl", "python-calamine",
    "requests", "huaweicloudsdkcore", "huaweicloudsdkims",
)  # fmt: skip


def allowed_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def server_core() -> int | None:
    """The fake's core: the first allowed one, when there are at least two."""
    cores = allowed_cores()
    return cores[0] if len(cores) >= 2 else None


def client_core() -> int | None:
    """The clients' core: the second allowed one, when there are at least two."""
    cores = allowed_cores()
    return cores[1] if len(cores) >= 2 else None


def pin(core: int | None) -> None:
    """Pin the calling process to ``core`` (run in a child before it starts)."""
    if core is not None:
        os.sched_setaffinity(0, {core})


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_count": os.cpu_count(),
        "allowed_cores": allowed_cores(),
        "server_core": server_core(),
        "client_core": client_core(),
        "load_average": load,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "packages": {package: _version(package) for package in PACKAGES},
    }
