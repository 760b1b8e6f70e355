"""Reading sheets: both shapes, every format and encoding, typing, grouping, located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchpatch.errors import OptionsError, SheetError
from batchpatch.models import Operation
from batchpatch.sheet import read_sheet
from tests.sheets import write_sheet

A = "0b1c6a3e-5f0d-4a53-9c1e-2f6d8a1b7c01"
B = "1f2e3d4c-6b5a-4987-8a6b-5c4d3e2f1a02"

FORMATS = [
    pytest.param(".csv", id="csv"),
    pytest.param(".tsv", id="tsv"),
    pytest.param(".xlsx", id="xlsx"),
]


@pytest.mark.parametrize("suffix", FORMATS)
def test_long_sheet_groups_changes_per_image_in_sheet_order(tmp_path: Path, suffix: str) -> None:
    path = write_sheet(
        tmp_path / f"s{suffix}",
        ["image_id", "op", "path", "value"],
        [
            [A, "replace", "/name", "web"],
            [B, "add", "__description", "db tier"],
            [A, "replace", "min_ram", "1024"],
            [A, "remove", "/team", ""],
        ],
    )
    sheet = read_sheet(path)
    assert sheet.shape == "long"
    assert [p.image_id for p in sheet.patches] == [A, B]
    assert sheet.patches[0].operations == (
        Operation("replace", "/name", "web"),
        Operation("replace", "/min_ram", 1024),
        Operation("remove", "/team"),
    )
    assert sheet.patches[0].rows == (2, 4, 5)
    assert sheet.patches[1].body() == [{"op": "add", "path": "/__description", "value": "db tier"}]


@pytest.mark.parametrize("suffix", FORMATS)
def test_wide_sheet_blank_means_no_change_and_marker_removes(tmp_path: Path, suffix: str) -> None:
    path = write_sheet(
        tmp_path / f"s{suffix}",
        ["image_id", "name", "__description", "min_ram", "__support_kvm", "team"],
        [
            [A, "web", "", 2048, "TRUE", "<remove>"],
            [B, "", "", "", "", ""],
        ],
    )
    sheet = read_sheet(path)
    assert sheet.shape == "wide"
    assert [p.image_id for p in sheet.patches] == [A]
    assert sheet.patches[0].body() == [
        {"op": "replace", "path": "/name", "value": "web"},
        {"op": "replace", "path": "/min_ram", "value": 2048},
        {"op": "add", "path": "/__support_kvm", "value": "true"},
        {"op": "remove", "path": "/team"},
    ]
    assert sheet.idle_rows == (3,)


@pytest.mark.parametrize(
    ("encoding", "prefix"),
    [
        pytest.param("utf-8", b"", id="utf8"),
        pytest.param("utf-8", b"\xef\xbb\xbf", id="utf8-bom"),
        pytest.param("gb18030", b"", id="gb18030"),
        pytest.param("gbk", b"", id="gbk"),
    ],
)
def test_csv_encodings_excel_saves(tmp_path: Path, encoding: str, prefix: bytes) -> None:
    text = f"image_id,name,__description\n{A},镜像-web,中文描述\n"
    path = tmp_path / "s.csv"
    path.write_bytes(prefix + text.encode(encoding))
    sheet = read_sheet(path)
    assert sheet.frame.columns[0] == "image_id"
    assert sheet.patches[0].body()[0]["value"] == "镜像-web"
    assert sheet.patches[0].body()[1]["value"] == "中文描述"


@pytest.mark.parametrize("suffix", FORMATS)
def test_ids_and_numbers_stay_text(tmp_path: Path, suffix: str) -> None:
    zero_led = "00012345-0000-4000-8000-000000000001"
    path = write_sheet(
        tmp_path / f"s{suffix}",
        ["image_id", "name", "min_ram", "note"],
        [
            [zero_led, "007", "1024", "1e5"],
        ],
    )
    sheet = read_sheet(path)
    assert sheet.patches[0].image_id == zero_led
    assert sheet.frame["image_id"].tolist() == [zero_led]
    body = sheet.patches[0].body()
    assert body[0]["value"] == "007"
    assert body[1]["value"] == 1024
    assert body[2]["value"] == "1e5"


def test_excel_numeric_cell_becomes_integer_text(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "s.xlsx", ["image_id", "min_ram", "build"], [[A, 1024, 42]])
    sheet = read_sheet(path)
    assert sheet.frame.loc[0, "min_ram"] == "1024"
    assert sheet.patches[0].body() == [
        {"op": "replace", "path": "/min_ram", "value": 1024},
        {"op": "add", "path": "/build", "value": "42"},
    ]


def test_ids_are_trimmed_and_lowercased_so_one_image_is_one_patch(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "op", "path", "value"],
        [
            [A.upper(), "replace", "/name", "x"],
            [f"  {A} ", "add", "/k", "v"],
        ],
    )
    sheet = read_sheet(path)
    assert len(sheet.patches) == 1
    assert sheet.patches[0].rows == (2, 3)


def test_xlsx_sheet_is_chosen_by_name(tmp_path: Path) -> None:
    import openpyxl

    workbook = openpyxl.Workbook()
    first = workbook.active
    assert first is not None
    first.append(["image_id", "name"])
    first.append([A, "first"])
    second = workbook.create_sheet("second")
    second.append(["image_id", "name"])
    second.append([B, "second"])
    workbook.save(tmp_path / "book.xlsx")
    assert read_sheet(tmp_path / "book.xlsx").patches[0].image_id == A
    chosen = read_sheet(tmp_path / "book.xlsx", sheet_name="second")
    assert chosen.sheet_name == "second"
    assert chosen.patches[0].image_id == B
    with pytest.raises(OptionsError, match="no sheet named 'third'"):
        read_sheet(tmp_path / "book.xlsx", sheet_name="third")


@pytest.mark.parametrize(
    ("header", "rows", "expected"),
    [
        pytest.param(
            ["image_id", "op", "path", "value"],
            [["", "replace", "/name", "x"]],
            ["s.csv:2:image_id: image_id is empty — fill in"],
            id="empty-id",
        ),
        pytest.param(
            ["image_id", "op", "path", "value"],
            [[A, "set", "/name", "x"]],
            ["s.csv:2:op: op must be add, replace, remove or rename"],
            id="bad-op",
        ),
        pytest.param(
            ["image_id", "op", "path", "value"],
            [[A, "add", "", "x"]],
            ["s.csv:2:path: path is empty"],
            id="empty-path",
        ),
        pytest.param(
            ["image_id", "op", "path", "value"],
            [[A, "replace", "/name", ""]],
            ["s.csv:2:value: add and replace need a value"],
            id="missing-value",
        ),
        pytest.param(
            ["image_id", "min_ram"],
            [[A, "1.5G"]],
            ["s.csv:2:min_ram: min_ram must be a whole number"],
            id="min-ram",
        ),
        pytest.param(
            ["image_id", "__support_kvm"],
            [[A, "maybe"]],
            ["s.csv:2:__support_kvm: __support_kvm must be true or false"],
            id="flag",
        ),
        pytest.param(
            ["image_id", "min_ram"],
            [[A, "x"], [B, "y"]],
            ["s.csv:2:min_ram:", "s.csv:3:min_ram:"],
            id="all-problems-at-once",
        ),
        pytest.param(
            ["id", "name"],
            [[A, "x"]],
            ["s.csv:1:: no image_id column — name the column"],
            id="no-id-column",
        ),
    ],
)
def test_problems_are_located(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    header: list[str],
    rows: list[list[object]],
    expected: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    write_sheet(tmp_path / "s.csv", header, rows)
    with pytest.raises(SheetError) as caught:
        read_sheet("s.csv")
    lines = str(caught.value).splitlines()
    assert len(lines) == len(expected)
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start)
        assert " — " in line


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"", "the sheet is empty", id="empty"),
        pytest.param(
            b"image_id,name\n\x00\x01", "s.csv:2:image_id: the cell holds a NUL", id="nul"
        ),
        pytest.param(
            b"image_id,name\n\xff\xfe\xfa,x\n", "s.csv:2:: the line is not UTF-8", id="junk-bytes"
        ),
        pytest.param(b"image_id,name\na,b\nc,d,e,f\n", "s.csv:3::", id="ragged"),
    ],
)
def test_broken_files_are_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.csv").write_bytes(content)
    with pytest.raises(SheetError) as caught:
        read_sheet("s.csv")
    assert str(caught.value).startswith("s.csv:")
    assert message in str(caught.value)


def test_junk_xlsx_is_a_located_problem(tmp_path: Path) -> None:
    (tmp_path / "s.xlsx").write_bytes(b"this is not a zip file")
    with pytest.raises(SheetError, match="not a readable Excel workbook"):
        read_sheet(tmp_path / "s.xlsx")


def test_unsupported_extension(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text("{}")
    with pytest.raises(OptionsError, match="unsupported sheet type"):
        read_sheet(tmp_path / "s.json")
