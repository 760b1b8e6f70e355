"""The fake IMS as a process of its own, and one client run as a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.machine import client_core, pin, server_core

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ImageFile:
    """A JSON file of images for ``batchpatch fake-ims --images``, and their ids in order."""

    path: Path
    ids: list[str]


def write_images(path: Path, count: int) -> ImageFile:
    ids = [str(uuid.UUID(int=number + 1, version=4)) for number in range(count)]
    images = [{"id": i, "name": f"image-{n}", "status": "active"} for n, i in enumerate(ids)]
    path.write_text(json.dumps(images), encoding="utf-8")
    return ImageFile(path, ids)


class Fake:
    """``batchpatch fake-ims`` over ``images`` with ``latency`` seconds per PATCH, pinned to
    the server's core; ``url`` once entered."""

    def __init__(self, images: ImageFile, latency: float) -> None:
        self.ids = images.ids
        self._command = [sys.executable, "-m", "batchpatch", "fake-ims"]
        self._command += ["--images", str(images.path), "--latency", str(latency)]
        self._process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> Fake:
        self._process = subprocess.Popen(
            self._command,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            preexec_fn=partial(pin, server_core()),
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.startswith("URL "):
            self._process.kill()
            raise RuntimeError(f"the fake IMS did not start: {line!r}")
        self.url = line.split()[1]
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=30)


def run_client(
    kind: str,
    url: str,
    ids: list[str],
    *,
    label: str = "bench",
    concurrency: int = 64,
    sheet: Path | None = None,
    whole_machine: bool = False,
) -> dict[str, Any]:
    """``python -m bench.clients KIND`` on the clients' core (on every core with
    ``whole_machine``: no server runs beside it): its JSON result."""
    with tempfile.TemporaryDirectory(prefix="bench-ids-") as folder:
        listing = Path(folder) / "ids.txt"
        listing.write_text("\n".join(ids), encoding="utf-8")
        command = [sys.executable, "-m", "bench.clients", kind, "--url", url, "--label", label]
        command += ["--concurrency", str(concurrency), "--ids", str(sheet or listing)]
        started = time.perf_counter()
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=ROOT,
            preexec_fn=partial(pin, None if whole_machine else client_core()),
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{kind} failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    #: The whole process as a person timing the command sees it: start-up and imports too.
    result["process_seconds"] = time.perf_counter() - started
    return result
