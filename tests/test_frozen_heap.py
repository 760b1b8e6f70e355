"""A caller that froze its heap (``gc.freeze()``, say before forking workers) finds it
frozen still after reading a sheet and after a run."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchpatch.fake import FakeConfig, running_fake
from batchpatch.sheet import read_sheet
from tests.e2e import TOKEN, main_exit_code
from tests.sheets import write_sheet
from tests.wire import account


@pytest.fixture
def frozen() -> Iterator[int]:
    gc.freeze()
    try:
        yield gc.get_freeze_count()
    finally:
        gc.unfreeze()


def test_reading_a_sheet_leaves_the_callers_frozen_objects_frozen(
    tmp_path: Path, frozen: int
) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[account(1)[0]["id"], "x"]])
    read_sheet(sheet)
    assert gc.get_freeze_count() > frozen // 2  # (a frozen object freed leaves the count)


def test_a_run_leaves_the_callers_frozen_objects_frozen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frozen: int
) -> None:
    images = account(2)
    rows = [[image["id"], "renamed"] for image in images]
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], rows)
    with running_fake(images, FakeConfig(token=TOKEN)) as fake:
        args = ["apply", str(sheet), "--endpoint", fake.url, "--quiet"]
        assert main_exit_code(monkeypatch, args, {"BATCHPATCH_AUTH_TOKEN": TOKEN}) == 0
    assert gc.get_freeze_count() > frozen // 2  # (a frozen object freed leaves the count)
