"""Problems are located, harmless repeats are warnings, and odd or huge CSV files end in a
result or a located error (issue 8, points 4 and 6)."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from batchpatch.cli import main
from batchpatch.errors import SheetError
from batchpatch.sheet import read_sheet
from tests.e2e import SAMPLES, sample_images
from tests.sheets import write_sheet

A, B, C = (image["id"] for image in sample_images()[:3])
IMAGES = ["--fake", "--fake-images", str(SAMPLES / "images.json"), "--quiet"]
LONG = ["image_id", "op", "path", "value"]


def _problems(path: Path) -> list[str]:
    with pytest.raises(SheetError) as caught:
        read_sheet(path)
    return str(caught.value).splitlines()


# ----------------------------------------------------------------------------- NUL bytes


def test_a_nul_byte_is_reported_at_its_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(f"image_id,name,__description\n{A},web,fine\n{B},d\x00b,ok\n".encode())
    lines = _problems(path)
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:3:name: the cell holds a NUL character")


def test_a_nul_character_in_utf16_text_is_located_too(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    text = f"image_id\tname\r\n{A}\tweb\r\n{B}\t\x00\r\n"
    path.write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    assert _problems(path)[0].startswith(f"{path}:3:name: the cell holds a NUL character")


def test_a_binary_file_is_not_a_text_sheet(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xff\xfe")
    assert _problems(path)[0].startswith(f"{path}:0:: the file holds NUL bytes and is not")


# ------------------------------------------------------------------------ repeated rows


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_identical_rows_are_sent_once_with_a_warning(tmp_path: Path, suffix: str) -> None:
    path = write_sheet(
        tmp_path / f"s{suffix}",
        LONG,
        [
            [A, "add", "/team", "ops"],
            [B, "replace", "name", "db"],
            [A, "add", "team", "ops"],
            [f" {B.upper()}", "replace", "/name", "db"],
        ],
    )
    sheet = read_sheet(path)
    assert [str(w) for w in sheet.warnings] == [
        f"{path}:4:value: warning: the same change as row 2 — it is sent once; delete one of "
        "the two rows",
        f"{path}:5:value: warning: the same change as row 3 — it is sent once; delete one of "
        "the two rows",
    ]
    assert [patch.body() for patch in sheet.patches] == [
        [{"op": "add", "path": "/team", "value": "ops"}],
        [{"op": "replace", "path": "/name", "value": "db"}],
    ]


def test_a_typed_repeat_in_a_wide_sheet_is_a_warning(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "min_ram", "__support_kvm"],
        [[A, "1024", "TRUE"], [A, "1024.0", "yes"]],
    )
    sheet = read_sheet(path)
    # One warning for the row, not one per cell (a copied wide row is 10**5 cells).
    assert [str(w) for w in sheet.warnings] == [
        f"{path}:3:: warning: the same changes as row 2, in 2 cells — they are sent once; "
        "delete one of the two rows"
    ]
    assert len(sheet.patches[0].operations) == 2


def test_conflicting_rows_stay_an_error_naming_both(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv", LONG, [[A, "add", "/team", "ops"], [A, "add", "/team", "dev"]]
    )
    lines = _problems(path)
    assert lines == [
        f"{path}:3:value: conflicts with row 2, which changes the same attribute "
        "of the same image — keep only the change you want"
    ]


@pytest.mark.parametrize("command", ["validate", "plan", "apply"])
def test_warnings_are_printed_and_do_not_fail_the_run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    path = write_sheet(
        tmp_path / "s.csv", LONG, [[A, "add", "/team", "ops"], [A, "add", "/team", "ops"]]
    )
    extra = {"validate": [], "plan": IMAGES[:3], "apply": IMAGES}[command]
    assert main([command, str(path), *extra]) == 0
    assert f"{path}:3:value: warning: the same change as row 2" in capsys.readouterr().err


# ----------------------------------------------------------------- invisible characters

INVISIBLE = [
    *map(chr, range(0x200B, 0x2010)),
    *map(chr, range(0x202A, 0x202F)),
    *map(chr, range(0x2066, 0x206A)),
    "\ufeff",
]


@pytest.mark.parametrize("character", INVISIBLE, ids=[f"U+{ord(c):04X}" for c in INVISIBLE])
@pytest.mark.parametrize("column", ["name", "__description"])
def test_invisible_characters_are_refused_in_names_and_descriptions(
    tmp_path: Path,
    character: str,
    column: str,
) -> None:
    path = write_sheet(tmp_path / "s.csv", ["image_id", column], [[A, f"web{character}01"]])
    lines = _problems(path)
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:2:{column}: {column} holds an invisible ")
    assert f"(U+{ord(character):04X}) at position 4 — delete the invisible character" in lines[0]


def test_a_leading_bom_is_not_a_stray_one_but_a_second_is(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(codecs.BOM_UTF8 + f"image_id,name\n{A},\ufeffweb\n".encode())
    assert _problems(path)[0].startswith(f"{path}:2:name: name holds an invisible")


# ----------------------------------------------------------------------- odd headers


@pytest.mark.parametrize("empty", [300, 1000])
def test_trailing_empty_header_cells_are_dropped_as_excel_does(tmp_path: Path, empty: int) -> None:
    tail = "," * empty
    path = tmp_path / "s.csv"
    path.write_text(f"image_id,name{tail}\n{A},web{tail}\n{B},db{tail}\n\n", encoding="utf-8")
    sheet = read_sheet(path)
    assert list(sheet.frame.columns) == ["image_id", "name"]
    assert [patch.body() for patch in sheet.patches] == [
        [{"op": "replace", "path": "/name", "value": "web"}],
        [{"op": "replace", "path": "/name", "value": "db"}],
    ]


def test_cells_under_dropped_header_cells_must_be_empty(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text(f"image_id,name,,,\n{A},web,,,\n{B},db,,stray,\n{C},x\n", encoding="utf-8")
    assert _problems(path) == [
        f"{path}:3:#4: the cell holds 'stray', but its column has no header — give the "
        "column a header, or clear the cell"
    ]


def test_empty_and_duplicate_header_names_come_before_any_row(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text(f"image_id,name,,Name,team,,\n{A},web,x,y,ops,,\n", encoding="utf-8")
    lines = _problems(path)
    assert [line.split(" — ")[0] for line in lines] == [
        f"{path}:1:#3: a column has no header",
        f"{path}:1:Name: column 'name' appears more than once",
    ]


def test_a_very_wide_sheet_is_validated(tmp_path: Path) -> None:
    """bench/wide_headers.py times 10**5 columns; here enough to take the wide path."""
    keys = [f"k{number:05d}" for number in range(1, 3000)]
    path = write_sheet(
        tmp_path / "s.csv",
        ["image_id", *keys],
        [[A, *(["v"] * len(keys))], [B, *([""] * (len(keys) - 1)), "last"]],
    )
    sheet = read_sheet(path)
    assert len(sheet.frame.columns) == 3000
    assert [len(patch.operations) for patch in sheet.patches] == [2999, 1]
    assert sheet.patches[0].operations[-1].path == "/k02999"
    assert sheet.patches[1].body() == [{"op": "add", "path": "/k02999", "value": "last"}]


def test_a_row_too_long_for_a_very_wide_header_is_located(tmp_path: Path) -> None:
    keys = [f"k{number:05d}" for number in range(1, 1000)]
    path = tmp_path / "s.csv"
    path.write_text(
        ",".join(["image_id", *keys]) + "\n" + ",".join([A, *(["v"] * len(keys)), "extra"]) + "\n",
        encoding="utf-8",
    )
    assert _problems(path)[0].startswith(f"{path}:2:: the row does not fit the header")


def test_a_nul_in_a_data_cell_is_that_rows_problem_so_skip_invalid_leaves_it_out(
    tmp_path: Path,
) -> None:
    sheet = tmp_path / "s.csv"
    sheet.write_bytes(
        b"image_id,name\n"
        b"0b1c6a3e-5f0d-4a53-9c1e-2f6d8a1b7c01,a\x00b\n"
        b"0b1c6a3e-5f0d-4a53-9c1e-2f6d8a1b7c02,ok\n"
    )
    with pytest.raises(SheetError) as refused:
        read_sheet(sheet)
    assert [(p.row, p.column) for p in refused.value.problems] == [(2, "name")]
    read = read_sheet(sheet, skip_invalid=True)
    assert [patch.image_id for patch in read.patches] == ["0b1c6a3e-5f0d-4a53-9c1e-2f6d8a1b7c02"]
    assert list(read.invalid) == [2]
