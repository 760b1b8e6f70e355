"""Export and undo with tags: the round trip export → apply untouched → edit → undo, with
``tag:KEY`` columns, counted from the fake's side (its stats and its store)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batchpatch.fake import FakeServer, running_fake
from batchpatch.fake.store import ImageStore
from tests.tagfixtures import A, B, C, cli, config, images

STAMP = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    seeded = [
        image | {"__imagetype": "private", "updated_at": "2026-01-01T08:00:00Z"}
        for image in images(a=["env=dev", "team=core"], b=["env=prod"], c=[])
    ]
    with running_fake(ImageStore(seeded, clock=lambda: STAMP), config()) as server:
        yield server


def _state(fake: FakeServer) -> bytes:
    """The fake's whole store, attributes and tags, as bytes to compare."""
    return json.dumps(
        [fake.store.images, fake.store.tags], sort_keys=True, ensure_ascii=False
    ).encode()


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_export_writes_tag_columns_and_applied_untouched_writes_nothing(
    fake: FakeServer, tmp_path: Path
) -> None:
    out = tmp_path / "export.csv"
    code, _, stderr = cli(
        fake, "export", "--out", str(out), "--filter", "status=active", quiet=False
    )
    assert code == 0, stderr
    rows = {row["image_id"]: row for row in _rows(out)}
    assert rows[A]["tag:env"] == "dev"
    assert rows[A]["tag:team"] == "core"
    assert rows[B]["tag:env"] == "prod"
    assert rows[B]["tag:team"] == ""
    assert rows[C]["tag:env"] == ""
    before = _state(fake)

    code, _, stderr = cli(fake, "apply", str(out))

    assert code == 0, stderr
    assert fake.stats.patch_requests == 0
    assert fake.stats.tag_write_requests == 0
    assert _state(fake) == before


def test_tag_edit_then_undo_restores_the_store_and_undo_of_undo_the_edit(
    fake: FakeServer, tmp_path: Path
) -> None:
    out = tmp_path / "export.csv"
    assert cli(fake, "export", "--out", str(out), "--filter", "status=active", quiet=False)[0] == 0
    original = _state(fake)
    rows = _rows(out)
    for row in rows:
        if row["image_id"] == A:
            row["tag:env"], row["tag:team"], row["name"] = "test", "<remove>", "renamed-a"
        if row["image_id"] == C:
            row["tag:env"] = "new"
    _write(out, rows)

    code, _, stderr = cli(fake, "apply", str(out))
    assert code == 0, stderr
    edited = _state(fake)
    assert fake.store.tags[A] == {"env": "test"}
    assert fake.store.tags[C] == {"env": "new"}
    undo = tmp_path / "export.undo.csv"
    assert undo.is_file()

    code, _, stderr = cli(fake, "apply", str(undo))
    assert code == 0, stderr
    assert _state(fake) == original

    code, _, stderr = cli(fake, "apply", str(tmp_path / "export.undo.undo.csv"))
    assert code == 0, stderr
    assert _state(fake) == edited
