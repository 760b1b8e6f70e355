"""What the plan pays to read current tags, counted at the fake: pages of tag queries where
they serve, one read per image only where the pages cannot tell all of its tags."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchpatch.fake import FakeServer, running_fake
from tests.sheets import write_sheet
from tests.tagfixtures import LONG_HEADER, cli, config

IDS = [str(uuid.UUID(int=n + 100, version=4)) for n in range(30)]


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    images = [
        {"id": image_id, "name": f"i{n}", "status": "active", "tags": ["env=dev", "team=a"]}
        for n, image_id in enumerate(IDS)
    ]
    with running_fake(images, config()) as server:
        yield server


def _plan(fake: FakeServer, path: Path, key: str, op: str = "add") -> int:
    rows = [[image_id, op, f"tag:{key}", "" if op == "remove" else "prod"] for image_id in IDS]
    sheet = write_sheet(path, LONG_HEADER, rows)
    code, _, stderr = cli(fake, "plan", str(sheet), "--rate", "1000", quiet=False)
    assert code == 0, stderr
    return fake.stats.snapshot().tag_read_requests


def test_setting_a_key_the_images_carry_costs_one_query_page(
    fake: FakeServer, tmp_path: Path
) -> None:
    assert _plan(fake, tmp_path / "set.csv", "env") == 1


def test_removing_a_tag_costs_one_query_page(fake: FakeServer, tmp_path: Path) -> None:
    assert _plan(fake, tmp_path / "remove.csv", "team", op="remove") == 1


def test_a_key_no_image_carries_is_read_image_by_image(fake: FakeServer, tmp_path: Path) -> None:
    """The query finds none of them, and each may gain a tag: all its tags are needed."""
    assert _plan(fake, tmp_path / "fresh.csv", "fresh") == 1 + len(IDS)
