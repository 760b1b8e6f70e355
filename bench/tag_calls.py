"""What reading current tags costs, in calls, by sheet size: the cost rule measured.

Plans a sheet of tag changes (``batchpatch plan``) against the fake IMS on 127.0.0.1 and counts
the tag reads the fake received — for sheets that only remove tags (looked up with
``resource_instances/action``, 1,000 images a page per 10 keys, each image found with all its
tags), sheets that set a tag the images already carry a key of (the same pages), sheets that
add a key no image has (the pages find none, and each image that may gain a tag is then read
on its own: the 10-tag limit needs all its tags) — and what an export's tag columns cost.
Not a test: prints a table.

    .venv/bin/python -m bench.tag_calls [--sizes 10,1000,5000] [--extra 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from batchpatch.cli import main as batchpatch
from batchpatch.fake import FakeConfig, running_fake

PROJECT = "0123456789abcdef0123456789abcdef"
TOKEN = "bench-token"


def account(size: int, extra: int) -> list[dict[str, Any]]:
    """``size`` images carrying tags env and team, and ``extra`` other images with one tag."""
    images = []
    for n in range(size + extra):
        tags = ["env=dev", "team=core"] if n < size else [f"other{n % 7}=x"]
        images.append(
            {
                "id": str(uuid.UUID(int=n + 1, version=4)),
                "name": f"image-{n}",
                "status": "active",
                "__imagetype": "private",
                "tags": tags,
            }
        )
    return images


def sheet(path: Path, ids: list[str], op: str, key: str = "env") -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "op", "path", "value"])
        for image_id in ids:
            writer.writerow([image_id, op, f"tag:{key}", "" if op == "remove" else "prod"])
    return path


def tag_reads(images: list[dict[str, Any]], args: list[str]) -> int:
    """Run ``batchpatch ARGS`` against a fresh fake; the tag reads it received."""
    config = FakeConfig(token=TOKEN, project_id=PROJECT)
    with running_fake(images, config) as fake:
        env_args = [*args, "--endpoint", fake.url, "--rate", "5000", "--concurrency", "32"]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = batchpatch(env_args)
        assert code in (0, 4), code
        return fake.stats.snapshot().tag_read_requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,1000,5000")
    parser.add_argument("--extra", type=int, default=2_000)
    options = parser.parse_args()
    os.environ.update(BATCHPATCH_AUTH_TOKEN=TOKEN, HUAWEICLOUD_SDK_PROJECT_ID=PROJECT)
    print(
        "| images | remove a tag: tag reads | set a tag: tag reads "
        "| add a key none has: tag reads | export: tag reads |"
    )
    print("| ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as folder:
        for size in (int(part) for part in options.sizes.split(",")):
            images = account(size, options.extra)
            ids = [image["id"] for image in images[:size]]
            removing = sheet(Path(folder) / f"remove{size}.csv", ids, "remove")
            setting = sheet(Path(folder) / f"set{size}.csv", ids, "add")
            adding = sheet(Path(folder) / f"new{size}.csv", ids, "add", key="fresh")
            out = Path(folder) / f"export{size}.csv"
            row = [
                tag_reads(images, ["plan", str(removing)]),
                tag_reads(images, ["plan", str(setting)]),
                tag_reads(images, ["plan", str(adding)]),
                tag_reads(images, ["export", "--out", str(out)]),
            ]
            print(f"| {size:,} | " + " | ".join(f"{n:,}" for n in row) + " |")


if __name__ == "__main__":
    main()
