"""What the tag tests share: a project id, images with tags, and a CLI run against a fake."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path
from typing import Any

from batchpatch.fake import FakeConfig, FakeServer
from tests.e2e import TOKEN, run_cli

PROJECT = "3c3c3c3c3c3c4c3c8c3c3c3c3c3c3c3c"
ENV = {"HUAWEICLOUD_SDK_PROJECT_ID": PROJECT}
LONG_HEADER = ["image_id", "op", "path", "value"]
A, B, C = (str(uuid.UUID(int=n, version=4)) for n in (1, 2, 3))


def images(**tags: list[str]) -> list[dict[str, Any]]:
    """Three active images; ``tags`` by letter (``a=["env=dev"]``)."""
    return [
        {
            "id": image_id,
            "name": f"image-{letter}",
            "status": "active",
            "min_ram": 0,
            "team": "core",
            "tags": tags.get(letter, []),
        }
        for letter, image_id in zip("abc", (A, B, C), strict=True)
    ]


def config(**options: Any) -> FakeConfig:
    return FakeConfig(token=TOKEN, project_id=PROJECT, **options)


def apply(fake: FakeServer, sheet: Path, *extra: str) -> tuple[int, str, str]:
    """``batchpatch apply SHEET`` against ``fake``, in process: (code, stdout, stderr)."""
    return cli(fake, "apply", str(sheet), *extra)


def cli(fake: FakeServer, *args: str, quiet: bool = True) -> tuple[int, str, str]:
    done = run_cli([*args, "--endpoint", fake.url, *(["--quiet"] if quiet else [])], environ=ENV)
    return done.returncode, done.stdout, done.stderr


def report_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
