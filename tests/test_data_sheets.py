"""Every sheet in tests/data — one per format, shape and encoding — validates, and applies to
the fake IMS with the final state written out here by hand: the reader under test is not
its own oracle, so a mis-decoded GBK name or a lost BOM fails."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest

from batchpatch.fake import FakeConfig, running_fake
from tests.e2e import ROOT, TOKEN, run_cli, sample_images

SHEETS = sorted((ROOT / "tests" / "data").glob("*.*"))
ABSENT = object()  # the attribute is removed (or never added)

#: Per sheet: image id → the attributes the sheet changes, as the service must hold them.
EXPECTED: dict[str, dict[str, dict[str, Any]]] = {
    "long.tsv": {
        "0b1c6a3e-5f0d-4a53-9c1e-2f6d8a1b7c01": {"name": "web-tsv", "cost_center": "cc-7"},
        "1f2e3d4c-6b5a-4987-8a6b-5c4d3e2f1a02": {"__description": ABSENT},
    },
    "wide-bom.csv": {  # the BOM is not part of the first header; UEFI is typed as uefi
        "3c4d5e6f-8091-4b2c-8d3e-4f5a6b7c8d04": {
            "name": "bastion-2026", "min_ram": 2048, "hw_firmware_type": "uefi"},
    },
    "wide-gbk.csv": {  # GB18030 text; the #note comment column is never sent
        "2a3b4c5d-7e8f-4a0b-9c1d-2e3f4a5b6c03": {
            "name": "构建-runner", "__description": "中文描述"},
    },
    "wide.xlsx": {  # typed cells: 4096 a number, TRUE a boolean; <remove> of an absent key
        "4d5e6f70-9182-4c3d-9e4f-5a6b7c8d9e05": {
            "name": "analytics-xlsx", "min_ram": 4096, "__support_kvm": "true",
            "owner_team": ABSENT},
        "5e6f7081-a293-4d4e-8f5a-6b7c8d9e0f06": {"name": "cache-xlsx", "owner_team": "cache"},
    },
}  # fmt: skip


def expected_state(changes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The sample images with ``changes`` applied, without the fake's ``updated_at``."""
    state = {image["id"]: copy.deepcopy(image) for image in sample_images()}
    for image_id, attributes in changes.items():
        for attribute, value in attributes.items():
            if value is ABSENT:
                state[image_id].pop(attribute, None)
            else:
                state[image_id][attribute] = value
    return {image_id: _without_stamp(image) for image_id, image in state.items()}


def _without_stamp(image: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in image.items() if key != "updated_at"}


def test_every_sheet_has_its_expected_state() -> None:
    assert {path.suffix for path in SHEETS} >= {".csv", ".tsv", ".xlsx"}
    assert sorted(EXPECTED) == [path.name for path in SHEETS]


@pytest.mark.parametrize("source", SHEETS, ids=[path.name for path in SHEETS])
def test_sheet_validates_and_applies(tmp_path: Path, source: Path) -> None:
    sheet = shutil.copy(source, tmp_path / source.name)
    assert run_cli(["validate", str(sheet)], token=None).returncode == 0
    with running_fake(sample_images(), FakeConfig(token=TOKEN)) as fake:
        done = run_cli(["apply", str(sheet), "--endpoint", fake.url])
        state = fake.store.images
    assert done.returncode == 0, done.stderr
    actual = {image_id: _without_stamp(image) for image_id, image in state.items()}
    assert actual == expected_state(EXPECTED[source.name])
