"""Comma, semicolon, tab and pipe are told from the header line; ``--delimiter`` forces one;
the report is written with the input's delimiter (issue 8, point 2)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from batchpatch.cli import main
from batchpatch.errors import OptionsError, SheetError
from batchpatch.sheet import read_sheet
from batchpatch.textfile import sniff_delimiter
from tests.e2e import SAMPLES, sample_images

A, B = (image["id"] for image in sample_images()[:2])
IMAGES = ["--fake", "--fake-images", str(SAMPLES / "images.json"), "--quiet"]


def _write(path: Path, delimiter: str, rows: list[list[str]]) -> Path:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


ROWS = [
    ["image_id", "name", "__description"],
    [A, "web", "a description, with a comma; a semicolon | and a pipe"],
    [B, "db", "plain"],
]


@pytest.mark.parametrize(
    "delimiter", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab", "pipe"]
)
@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_the_delimiter_is_sniffed_from_the_header(
    tmp_path: Path, delimiter: str, suffix: str
) -> None:
    sheet = read_sheet(_write(tmp_path / f"s{suffix}", delimiter, ROWS))
    assert sheet.delimiter == delimiter
    assert list(sheet.frame.columns) == ROWS[0]
    assert sheet.patches[0].operations[1].value == ROWS[1][2]


def test_european_excel_semicolons_apply_and_report_with_semicolons(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sheet = _write(tmp_path / "s.csv", ";", ROWS)
    assert main(["apply", str(sheet), *IMAGES]) == 0
    capsys.readouterr()
    report = (tmp_path / "s.results.csv").read_text(encoding="utf-8")
    assert report.startswith("image_id;name;__description;status;")
    rows = list(csv.reader(io.StringIO(report), delimiter=";"))
    assert rows[1][:3] == ROWS[1]
    assert main(["validate", str(sheet)]) == 0
    assert "delimiter: ;" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("option", "delimiter"), [(",", ","), (";", ";"), ("tab", "\t"), ("\\t", "\t"), ("|", "|")]
)
def test_delimiter_option_forces_one(tmp_path: Path, option: str, delimiter: str) -> None:
    # A header with no delimiter at all cannot be sniffed; the option says.
    path = tmp_path / "s.csv"
    path.write_text(f"image_id{delimiter}name\n{A}{delimiter}x\n", encoding="utf-8")
    assert read_sheet(path, delimiter=option).patches[0].operations[0].value == "x"


def test_a_forced_delimiter_wins_over_the_sniffed_one(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text(f"image_id;name;#note,with,commas\n{A};web;x,y,z\n", encoding="utf-8")
    with pytest.raises(SheetError):  # sniffed as comma: no image_id column
        read_sheet(path)
    sheet = read_sheet(path, delimiter=";")
    assert list(sheet.frame.columns) == ["image_id", "name", "#note,with,commas"]
    assert sheet.frame.iloc[0, 2] == "x,y,z"


def test_an_unknown_delimiter_option_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "s.csv", ",", ROWS)
    with pytest.raises(OptionsError, match=r"use , ; tab or \|"):
        read_sheet(path, delimiter=":")
    assert main(["validate", str(path), "--delimiter", ":"]) == 2
    assert "Error: --delimiter ':'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("header", "default", "expected"),
    [
        pytest.param("image_id", ",", ",", id="one-column-takes-the-default"),
        pytest.param("image_id", "\t", "\t", id="one-column-tsv"),
        pytest.param('"a;b",c,d', ",", ",", id="quoted-text-ignored"),
        pytest.param("a;b|c;d", ",", ";", id="most-cells-wins"),
        pytest.param("a;b,c", ",", ",", id="a-tie-keeps-the-extension-default"),
        pytest.param("a;b|c", "\t", ";", id="a-tie-otherwise-in-order"),
    ],
)
def test_sniffing_rules(header: str, default: str, expected: str) -> None:
    assert sniff_delimiter(header, default) == expected
