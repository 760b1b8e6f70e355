"""The XLSX report is a sheet to open: styled header, frozen and filtered, fitted widths,
status colours, numbers as numbers, ids as text; the input's other sheets are kept."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from openpyxl.styles import Font

from batchpatch.fake import FakeConfig, running_fake
from batchpatch.models import Outcome, Status
from batchpatch.report import MAX_WIDTH, MAX_WRAPPED_WIDTH, RowResult, write_report
from batchpatch.sheet import read_sheet
from tests.e2e import TOKEN, run_cli, sample_images
from tests.sheets import write_sheet

IMAGES = sample_images()
IDS = [image["id"] for image in IMAGES]
A, B, C = IDS[:3]
GREEN, BLUE, AMBER, GREY, RED = "C6EFCE", "DDEBF7", "FFEB9C", "EDEDED", "FFC7CE"
FILLS = {
    Status.SUCCEEDED: GREEN,
    Status.UNCHANGED: GREEN,
    Status.PLANNED: BLUE,
    Status.SKIPPED: AMBER,
    Status.NOT_ATTEMPTED: GREY,
    Status.FAILED: RED,
    Status.INVALID: RED,
}


def _workbook(path: Path, sheets: dict[str, list[list[Any]]], active: str) -> Path:
    book = openpyxl.Workbook()
    book.remove(book.worksheets[0])
    for title, rows in sheets.items():
        worksheet = book.create_sheet(title)
        for row in rows:
            worksheet.append(row)
    book.active = book.sheetnames.index(active)
    book.save(path)
    return path


def _columns(worksheet: Any) -> dict[str, int]:
    return {cell.value: cell.column for cell in worksheet[1]}


def _report_of_every_status(tmp_path: Path) -> tuple[Any, dict[str, int]]:
    statuses = list(FILLS)
    header = ["image_id", "name", "min_ram", "#note"]
    rows = [
        [IDS[n], f"img-{n}", 1024 * (n + 1), "0042" if n == 0 else n + 0.5]
        for n in range(len(statuses))
    ]
    sheet = read_sheet(write_sheet(tmp_path / "s.xlsx", header, rows))
    results = [
        RowResult(
            Outcome(IDS[n], status, 200, "", "x" * 300 if n == 0 else "", "f" * 32, 1, 9),
            '{"name":"old"}',
            '{"name":"' + "n" * 200 + '"}',
        )
        for n, status in enumerate(statuses)
    ]
    path = write_report(sheet, results, tmp_path / "r.xlsx")
    worksheet = openpyxl.load_workbook(path).active
    return worksheet, _columns(worksheet)


def test_header_is_bold_frozen_and_filtered(tmp_path: Path) -> None:
    worksheet, columns = _report_of_every_status(tmp_path)
    assert all(cell.font.b for cell in worksheet[1])
    assert worksheet.freeze_panes == "A2"
    last = openpyxl.utils.get_column_letter(len(columns))
    assert worksheet.auto_filter.ref == f"A1:{last}{len(FILLS) + 1}"
    assert not worksheet.cell(2, 1).font.b


def test_status_cells_are_coloured_by_outcome(tmp_path: Path) -> None:
    worksheet, columns = _report_of_every_status(tmp_path)
    for row, (status, colour) in enumerate(FILLS.items(), start=2):
        cell = worksheet.cell(row, columns["status"])
        assert cell.value == str(status)
        assert cell.fill.fill_type == "solid"
        assert cell.fill.fgColor.rgb.endswith(colour), status
    assert worksheet.cell(2, columns["name"]).fill.fill_type is None  # other cells plain


def test_numbers_stay_numbers_and_ids_stay_text(tmp_path: Path) -> None:
    worksheet, columns = _report_of_every_status(tmp_path)
    ram = worksheet.cell(2, columns["min_ram"])
    assert (ram.value, ram.data_type) == (1024, "n")
    assert worksheet.cell(3, columns["#note"]).value == 1.5
    assert worksheet.cell(2, columns["#note"]).value == "0042"  # written as text: text
    for name in ("http_status", "attempts", "elapsed_ms"):
        assert isinstance(worksheet.cell(2, columns[name]).value, int), name
    image_id = worksheet.cell(2, columns["image_id"])
    assert (image_id.value, image_id.data_type, image_id.number_format) == (A, "s", "@")
    assert worksheet.cell(2, columns["request_id"]).number_format == "@"


def test_widths_fit_within_bounds_and_long_text_wraps(tmp_path: Path) -> None:
    worksheet, columns = _report_of_every_status(tmp_path)

    def width(name: str) -> float:
        letter = openpyxl.utils.get_column_letter(columns[name])
        return float(worksheet.column_dimensions[letter].width)

    assert 36 <= width("image_id") <= MAX_WIDTH  # a whole UUID shows
    assert width("name") < width("image_id")
    assert width("after") == MAX_WRAPPED_WIDTH
    assert width("error_message") == MAX_WRAPPED_WIDTH
    for name in ("before", "after", "error_message"):
        assert worksheet.cell(2, columns[name]).alignment.wrap_text, name
    assert not worksheet.cell(2, columns["name"]).alignment.wrap_text


def test_the_other_sheets_are_kept_and_the_results_replace_the_sheet_read(
    tmp_path: Path,
) -> None:
    path = _workbook(
        tmp_path / "book.xlsx",
        {
            "Read me": [["how to use this workbook"], [None, 42]],
            "Changes": [["image_id", "name", "min_ram"], [A, "kept-a", 2048], [B, "kept-b", None]],
            "Lookup": [["team", "cost"], ["web", 3.5]],
        },
        active="Changes",
    )
    book = openpyxl.load_workbook(path)
    book["Read me"]["A1"].font = Font(italic=True, color="FF0000")
    book["Read me"].column_dimensions["A"].width = 41
    book["Lookup"].merge_cells("A3:B3")
    book.save(path)
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(["apply", str(path), "--endpoint", fake.url])
    assert done.returncode == 0, done.stderr
    report = openpyxl.load_workbook(tmp_path / "book.results.xlsx")
    assert report.sheetnames == ["Read me", "Changes", "Lookup"]
    assert report.active.title == "Changes"
    notes, lookup, results = report["Read me"], report["Lookup"], report["Changes"]
    assert [list(r) for r in notes.iter_rows(values_only=True)] == [
        ["how to use this workbook", None],
        [None, 42],
    ]
    assert notes["A1"].font.i
    assert notes["A1"].font.color.rgb.endswith("FF0000")
    assert notes.column_dimensions["A"].width == 41
    assert list(lookup.iter_rows(values_only=True))[:2] == [("team", "cost"), ("web", 3.5)]
    assert [str(r) for r in lookup.merged_cells.ranges] == ["A3:B3"]
    columns = _columns(results)
    assert [results.cell(row, columns["status"]).value for row in (2, 3)] == ["succeeded"] * 2
    assert results.cell(2, columns["min_ram"]).value == 2048
    assert results.freeze_panes == "A2"
    assert results.cell(2, columns["status"]).fill.fgColor.rgb.endswith(GREEN)
    assert openpyxl.load_workbook(path).sheetnames == ["Read me", "Changes", "Lookup"]


def test_a_results_sheet_alone_keeps_the_name_read(tmp_path: Path) -> None:
    path = _workbook(
        tmp_path / "one.xlsx", {"Renames": [["image_id", "name"], [A, "x"]]}, "Renames"
    )
    sheet = read_sheet(path)
    written = write_report(sheet, [RowResult(Outcome(A, Status.SUCCEEDED))], tmp_path / "r.xlsx")
    assert openpyxl.load_workbook(written).sheetnames == ["Renames"]


def test_an_unsafe_part_in_another_sheet_stops_the_run_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    plain = _workbook(
        tmp_path / "plain.xlsx",
        {"Changes": [["image_id", "name"], [A, "x"]], "Other": [["a"]]},
        active="Changes",
    )
    hostile = tmp_path / "hostile.xlsx"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(hostile, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "xl/worksheets/sheet2.xml":
                assert not data.startswith(b"<?xml")
                data = b'<!DOCTYPE worksheet [<!ENTITY x "boom">]>' + data
            target.writestr(info, data)
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(["apply", str(hostile), "--endpoint", fake.url])
        requests = fake.stats.snapshot().total_requests
    assert done.returncode == 2
    assert requests == 0
    assert "other sheets cannot be copied into the report" in done.stderr
    assert "DTD" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "hostile.results.xlsx").exists()


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_text_reports_stay_plain(tmp_path: Path, suffix: str) -> None:
    sheet = read_sheet(write_sheet(tmp_path / f"s{suffix}", ["image_id", "min_ram"], [[A, "512"]]))
    path = write_report(
        sheet,
        [RowResult(Outcome(A, Status.FAILED, 400, "E", "m", "r", 1, 3))],
        tmp_path / f"r{suffix}",
    )
    separator = "\t" if suffix == ".tsv" else ","
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    assert lines[1] == separator.join([A, "512", "failed", "400", "E", "m", "r", "1", "3", "", ""])
