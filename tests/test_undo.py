"""Undo sheets: apply → apply the undo restores the fake's whole store byte for byte, and the
undo of the undo restores the edit.

The fake's clock is fixed (its ``updated_at`` stamp would differ otherwise), and the store is
compared as its canonical JSON text (keys sorted: a ``remove`` then ``add`` puts a key back
at the end of an image's object, which JSON does not order).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from batchpatch.fake import FakeConfig, FakeServer, ImageStore, running_fake
from batchpatch.ledger import Entry
from batchpatch.models import Operation, Outcome, Status
from batchpatch.plan import Change, ImagePlan
from batchpatch.sheetwrite import write_table
from batchpatch.undo import undo_sheet
from tests.e2e import TOKEN, run_cli, sample_images
from tests.sheets import write_sheet

STAMP = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
IDS = [image["id"] for image in sample_images()]


def _store() -> ImageStore:
    images = [dict(image, updated_at="2026-01-01T08:00:00Z") for image in sample_images()]
    return ImageStore(images, clock=lambda: STAMP)


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    with running_fake(_store()) as server:
        yield server


def _state(fake: FakeServer) -> bytes:
    return json.dumps(fake.store.images, sort_keys=True, ensure_ascii=False).encode()


def _apply(fake: FakeServer, sheet: Path, *more: str) -> tuple[int, str, str]:
    done = run_cli(
        ["apply", str(sheet), "--endpoint", fake.url, "--rate", "1000", "--quiet", *more]
    )
    return done.returncode, done.stdout, done.stderr


def _long_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


EDIT_HEADER = ["image_id", "name", "min_ram", "__description", "owner_team", "cost_center"]
EDIT_ROWS: list[list[object]] = [
    [IDS[0], "web-base-2026", "1024", "=not a formula", "<remove>", "cc-1"],  # rm + add
    [IDS[1], "", "", "-starts with a dash", "platform-db", ""],
    [IDS[2], "ci-runner", "0", "", "", ""],  # already as asked: nothing to undo
]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_undo_restores_the_store_and_undo_of_undo_the_edit(
    fake: FakeServer, tmp_path: Path, suffix: str
) -> None:
    original = _state(fake)
    # written as text cells, so that '=not a formula' is a value, not an Excel formula
    sheet = write_table(
        tmp_path / f"edit{suffix}", EDIT_HEADER, [[str(c) for c in row] for row in EDIT_ROWS]
    )

    code, _, stderr = _apply(fake, sheet)
    assert code == 0, stderr
    undo = tmp_path / f"edit.undo{suffix}"
    assert f"undo: {undo}" in stderr
    edited = _state(fake)
    assert edited != original

    code, _, stderr = _apply(fake, undo)
    assert code == 0, stderr
    assert _state(fake) == original
    redo = tmp_path / f"edit.undo.undo{suffix}"
    assert redo.is_file()

    code, _, stderr = _apply(fake, redo)
    assert code == 0, stderr
    assert _state(fake) == edited


def test_undo_rows_reverse_each_change(fake: FakeServer, tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "edit.csv", EDIT_HEADER, EDIT_ROWS)
    assert _apply(fake, sheet)[0] == 0
    rows = _long_rows(tmp_path / "edit.undo.csv")
    assert rows[0] == ["image_id", "op", "path", "value"]
    assert sorted(rows[1:]) == sorted(
        [
            [IDS[0], "remove", "/cost_center", ""],
            [IDS[0], "add", "/owner_team", "platform"],
            [IDS[0], "replace", "/__description", "web-base-2024 image"],
            [IDS[0], "replace", "/min_ram", "0"],
            [IDS[0], "replace", "/name", "web-base-2024"],
            [IDS[1], "remove", "/owner_team", ""],
            [IDS[1], "replace", "/__description", "db-base-2024 image"],
        ]
    )


def test_failed_rows_are_not_undone(tmp_path: Path) -> None:
    config = FakeConfig(script={IDS[1]: ["503"]})
    with running_fake(_store(), config) as fake:
        sheet = write_sheet(
            tmp_path / "edit.csv",
            ["image_id", "name"],
            [[IDS[0], "renamed-0"], [IDS[1], "renamed-1"]],
        )
        code, _, stderr = _apply(fake, sheet, "--max-attempts", "1")
        assert code == 1, stderr
    rows = _long_rows(tmp_path / "edit.undo.csv")
    assert [row[0] for row in rows[1:]] == [IDS[0]]


def test_no_plan_writes_no_undo_and_says_why(fake: FakeServer, tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "edit.csv", ["image_id", "name"], [[IDS[0], "renamed"]])
    code, _, stderr = _apply(fake, sheet, "--no-plan")
    assert code == 0, stderr
    assert not (tmp_path / "edit.undo.csv").exists()
    assert "without a plan (--no-plan)" in stderr


def test_dry_run_and_unchanged_runs_write_no_undo(fake: FakeServer, tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "edit.csv", ["image_id", "name"], [[IDS[0], "renamed"]])
    assert _apply(fake, sheet, "--dry-run")[0] == 0
    assert not (tmp_path / "edit.undo.csv").exists()
    assert _apply(fake, sheet)[0] == 0
    first_undo = (tmp_path / "edit.undo.csv").read_bytes()
    assert _apply(fake, sheet)[0] == 0  # nothing to do: the earlier undo is kept
    assert (tmp_path / "edit.undo.csv").read_bytes() == first_undo


def test_undo_path_never_an_input(fake: FakeServer, tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "edit.csv", ["image_id", "name"], [[IDS[0], "renamed"]])
    code, _, stderr = _apply(fake, sheet, "--undo", str(sheet))
    assert code == 2
    assert "--undo" in stderr
    assert "the sheet" in stderr
    code, _, stderr = _apply(fake, sheet, "--undo", str(tmp_path / "edit.results.csv"))
    assert code == 2
    assert "the report" in stderr
    assert fake.stats.patch_requests == 0
    code, _, stderr = _apply(fake, sheet, "--undo", str(tmp_path / "elsewhere" / "u.xlsx"))
    assert code == 0, stderr
    assert (tmp_path / "elsewhere" / "u.xlsx").is_file()


def _entry(image_id: str, status: Status, *changes: Change, observed: bool = True) -> Entry:
    plan = ImagePlan(image_id, None, "", tuple(changes), observed=observed)
    return Entry(image_id, plan, outcome=Outcome(image_id, status))


def _change(attribute: str, op: str, value: Any, before: Any, *, exists: bool) -> Change:
    operation = Operation(op, "/" + attribute, value)
    return Change(2, attribute, operation, operation, before, exists)


def test_undo_of_tags_and_values_no_cell_holds() -> None:
    undo = undo_sheet(
        [
            _entry(
                IDS[0],
                Status.SUCCEEDED,
                _change("tag:env", "add", "prod", "test", exists=True),
                _change("tag:team", "add", "web", None, exists=False),
                _change("tag:old", "remove", None, "x", exists=True),
                _change("__description", "replace", "new", "", exists=True),
                _change("__support_kvm", "add", "false", True, exists=True),
            ),
            _entry(IDS[1], Status.FAILED, _change("name", "replace", "a", "b", exists=True)),
            _entry(IDS[2], Status.SUCCEEDED, _change("name", "replace", "a", "b", exists=True)),
        ]
    )
    assert undo.rows == [
        (IDS[0], "add", "tag:old", "x"),
        (IDS[0], "remove", "tag:team", ""),
        (IDS[0], "replace", "tag:env", "test"),
        (IDS[2], "replace", "/name", "b"),
    ]
    assert len(undo.left_out) == 2  # "" and a JSON true: no cell gives them back exactly
    assert "restore them by hand" in undo.note()


def test_resumed_images_confirmed_applied_are_undone() -> None:
    """An image whose answer was lost and that the resumed run read back as applied has the
    ledger outcome ``succeeded`` with the first plan's before-values: it is in the undo."""
    confirmed = _entry(
        IDS[0], Status.SUCCEEDED, _change("name", "replace", "new", "old", exists=True)
    )
    confirmed.earlier = True
    unobserved = _entry(
        IDS[1], Status.SUCCEEDED, _change("name", "replace", "x", None, exists=False),
        observed=False,
    )  # fmt: skip
    undo = undo_sheet([confirmed, unobserved])
    assert undo.rows == [(IDS[0], "replace", "/name", "old")]
    assert undo.unobserved == 1
    assert "--no-plan" in undo.note()


def test_token_is_not_in_the_undo(fake: FakeServer, tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "edit.csv", ["image_id", "name"], [[IDS[0], "renamed"]])
    assert _apply(fake, sheet)[0] == 0
    assert TOKEN not in (tmp_path / "edit.undo.csv").read_text(encoding="utf-8-sig")
