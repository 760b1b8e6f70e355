"""``batchpatch export``: the wide sheet apply reads, so that the untouched export sends nothing.

Every test runs the CLI in process against a fake IMS on 127.0.0.1 and counts what the fake
received (its stats), never what batchpatch says it sent.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from batchpatch.fake import FakeServer, running_fake
from batchpatch.sheetwrite import unquoted
from tests.e2e import run_cli

LONG = "Long description 长描述 " + "x" * 900


def _image(number: int, **attributes: Any) -> dict[str, Any]:
    image = {
        "id": str(uuid.UUID(int=(number * 7919) % 2**32 + 1, version=4)),
        "name": f"image-{number}",
        "status": "active",
        "visibility": "private",
        "__imagetype": "private",
        "__os_type": "Linux",
        "__platform": "Ubuntu",
        "min_ram": 0,
        "min_disk": 40,
        "created_at": "2026-01-01T08:00:00Z",
        "updated_at": "2026-01-01T08:00:00Z",
        "tags": [],
    }
    return image | attributes


#: Values a round trip through a sheet easily gets wrong.
AWKWARD = [
    _image(1, name="-dash-first", __description="=1+1", owner_team="@team", cost="+42"),
    _image(2, name="镜像-一", __description=LONG, min_ram=2048, max_ram="4096"),
    _image(3, __description="", __support_kvm="true", hw_firmware_type="uefi", code="007"),
    _image(4, __support_kvm=True, __is_config_init="false", ratio="-5", note="'=kept"),
    _image(5, listed=["a", "b"], Owner="upper-case key", status="saving"),
    _image(6, __imagetype="gold", name="public-image"),  # not exported by default
]


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    with running_fake(AWKWARD) as server:
        yield server


def _export(fake: FakeServer, out: Path, *more: str) -> tuple[int, str, str]:
    done = run_cli(["export", "--endpoint", fake.url, "--out", str(out), "--rate", "1000", *more])
    return done.returncode, done.stdout, done.stderr


def _apply(fake: FakeServer, sheet: Path) -> tuple[int, str, str]:
    done = run_cli(["apply", str(sheet), "--endpoint", fake.url, "--rate", "1000", "--quiet"])
    return done.returncode, done.stdout, done.stderr


def _rows(path: Path) -> list[dict[str, str]]:
    if path.suffix == ".xlsx":
        sheet = openpyxl.load_workbook(path).active
        assert sheet is not None
        values = [
            ["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)
        ]
        return [dict(zip(values[0], row, strict=True)) for row in values[1:]]
    text = path.read_text(encoding="utf-8-sig")
    return [{k: unquoted(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_untouched_export_applied_sends_nothing(
    fake: FakeServer, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"export{suffix}"
    code, stdout, stderr = _export(fake, out)
    assert code == 0, stderr
    assert "exported 5 images" in stdout
    before = fake.store.images
    listed = fake.stats.list_requests

    code, stdout, stderr = _apply(fake, out)

    assert code == 0, stderr
    assert fake.stats.patch_requests == 0
    assert fake.stats.list_requests > listed  # the plan did read the images
    assert fake.store.images == before
    report = _rows(tmp_path / f"export.results{suffix}")
    assert {row["status"] for row in report} == {"unchanged"}
    assert len(report) == 5


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_export_holds_values_as_text_and_context_as_comments(
    fake: FakeServer, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"export{suffix}"
    assert _export(fake, out)[0] == 0
    rows = {row["image_id"]: row for row in _rows(out)}
    first, second, third, fourth, inactive = (rows[image["id"]] for image in AWKWARD[:5])
    assert list(rows) == sorted(rows)  # id order
    assert (first["name"], first["__description"], first["owner_team"], first["cost"]) == (
        "-dash-first",
        "=1+1",
        "@team",
        "+42",
    )
    assert (second["name"], second["__description"], second["min_ram"]) == ("镜像-一", LONG, "2048")
    assert (third["code"], third["__description"], third["__support_kvm"]) == ("007", "", "true")
    assert fourth["__support_kvm"] == "true"
    assert fourth["ratio"] == "-5"
    assert fourth["note"] == ""  # '=kept cannot survive the reader: left blank, noted
    assert inactive["name"] == ""
    assert inactive["#status"] == "saving"
    assert first["#__platform"] == "Ubuntu"
    assert first["#created_at"] == "2026-01-01T08:00:00Z"
    assert "Owner" not in first
    assert "tags" not in first
    assert {row["listed"] for row in rows.values()} == {""}  # a list: no cell can hold it


def test_xlsx_cells_are_strings_never_formulas(fake: FakeServer, tmp_path: Path) -> None:
    out = tmp_path / "export.xlsx"
    assert _export(fake, out)[0] == 0
    sheet = openpyxl.load_workbook(out).active
    assert sheet is not None
    cells = [cell for row in sheet.iter_rows(min_row=2) for cell in row if cell.value is not None]
    assert cells
    assert {cell.data_type for cell in cells} == {"s"}
    assert any(cell.value == "=1+1" for cell in cells)


def test_csv_neutralises_formula_cells(fake: FakeServer, tmp_path: Path) -> None:
    out = tmp_path / "export.csv"
    assert _export(fake, out)[0] == 0
    raw = out.read_text(encoding="utf-8-sig")
    assert "'=1+1" in raw
    assert "'-dash-first" in raw
    assert "'@team" in raw
    assert ",-5," in raw or raw.rstrip().endswith(",-5")  # a plain number stays as it is


def test_edited_cell_sends_exactly_that_change(fake: FakeServer, tmp_path: Path) -> None:
    out = tmp_path / "export.csv"
    assert _export(fake, out)[0] == 0
    target = AWKWARD[2]["id"]
    text = out.read_text(encoding="utf-8-sig").replace("image-3,", "image-3-renamed,")
    out.write_text(text, encoding="utf-8-sig")

    code, _, stderr = _apply(fake, out)

    assert code == 0, stderr
    assert fake.stats.patch_requests == 1
    assert fake.store.images[target]["name"] == "image-3-renamed"


def test_export_follows_marker_over_several_pages(tmp_path: Path) -> None:
    images = [_image(number) for number in range(1, 1203)]
    with running_fake(images) as fake:
        out = tmp_path / "all.csv"
        code, _stdout, stderr = _export(fake, out)
        assert code == 0, stderr
        assert fake.stats.list_requests == 3  # 500 + 500 + 202
        exported = [row["image_id"] for row in _rows(out)]
        assert exported == sorted(image["id"] for image in images)

        code, _, stderr = _apply(fake, out)
        assert code == 0, stderr
        assert fake.stats.patch_requests == 0


def test_filters_pass_through_to_the_listing(fake: FakeServer, tmp_path: Path) -> None:
    out = tmp_path / "gold.csv"
    code, _, _ = _export(fake, out, "--filter", "__imagetype=gold")
    assert code == 0
    assert [row["name"] for row in _rows(out)] == ["public-image"]
    code, _stdout, _ = _export(fake, out, "--filter", "status=saving")
    assert [row["#status"] for row in _rows(out)] == ["saving"]


@pytest.mark.parametrize(
    ("given", "said"),
    [
        pytest.param("colour=red", "'colour' is not a ListImages query parameter", id="unknown"),
        pytest.param("status", "a filter is KEY=VALUE", id="no-equals"),
        pytest.param("status=", "a filter is KEY=VALUE", id="no-value"),
        pytest.param("marker=abc", "marker cannot be a filter", id="own-parameter"),
        pytest.param("created_at=2026-01-01", "created_at takes OP:TIME", id="time-op"),
    ],
)
def test_bad_filter_exits_2_sending_nothing(
    fake: FakeServer, tmp_path: Path, given: str, said: str
) -> None:
    code, _, stderr = _export(fake, tmp_path / "x.csv", "--filter", given)
    assert code == 2
    assert said in stderr
    assert " — " in stderr
    assert "Traceback" not in stderr
    assert fake.stats.total_requests == 0
    assert not (tmp_path / "x.csv").exists()


def test_export_never_overwrites_an_input(tmp_path: Path) -> None:
    images = tmp_path / "images.csv"  # JSON, whatever its name says
    images.write_text(json.dumps(AWKWARD))
    done = run_cli(["export", "--fake", "--fake-images", str(images), "--out", str(images)])
    assert done.returncode == 2
    assert "images file of --fake" in done.stderr
    done = run_cli(["export", "--fake", "--out", str(tmp_path / "export.json")])
    assert done.returncode == 2
    assert ".csv, .tsv or .xlsx" in done.stderr
    assert json.loads(images.read_text()) == AWKWARD
