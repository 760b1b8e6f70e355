"""Every sheet in tests/data — one per format, shape and encoding — validates, and applies to
the fake IMS with the final state as the sheet asks (read back through the report)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from batchpatch.fake import FakeConfig, running_fake
from batchpatch.sheet import read_sheet
from tests.e2e import ROOT, TOKEN, run_cli, sample_images

SHEETS = sorted((ROOT / "tests" / "data").glob("*.*"))


def test_there_are_sheets_to_test() -> None:
    assert {path.suffix for path in SHEETS} >= {".csv", ".tsv", ".xlsx"}


@pytest.mark.parametrize("source", SHEETS, ids=[path.name for path in SHEETS])
def test_sheet_validates_and_applies(tmp_path: Path, source: Path) -> None:
    sheet = shutil.copy(source, tmp_path / source.name)
    assert run_cli(["validate", str(sheet)], token=None).returncode == 0
    patches = read_sheet(sheet).patches
    with running_fake(sample_images(), FakeConfig(token=TOKEN)) as fake:
        done = run_cli(["apply", str(sheet), "--endpoint", fake.url])
        state = fake.store.images
    assert done.returncode == 0, done.stderr
    for patch in patches:
        for operation in patch.operations:
            attribute = operation.path.lstrip("/")
            if operation.op == "remove":
                assert attribute not in state[patch.image_id]
            else:
                assert state[patch.image_id][attribute] == operation.value
