"""Review of the XLSX report of a workbook with other sheets: every other part is the
input's byte for byte (formulas keep their saved values), the styles the results need are
appended to the input's, the results sheet is active at the read sheet's place, the
calculation chain is dropped; memory does not grow with the results as a whole load would."""

from __future__ import annotations

import re
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from batchpatch.models import Outcome, Status
from batchpatch.report import RowResult, write_report
from batchpatch.sheet import read_sheet
from tests.e2e import sample_images

IMAGES = sample_images()
IDS = [image["id"] for image in IMAGES]
STYLED_PARTS = {"xl/styles.xml", "xl/workbook.xml"}


def _rezipped(path: Path, change: dict[str, Any]) -> Path:
    """``path`` with some parts changed: ``change[name]`` is the new bytes, or a function
    of the old ones; None drops the part."""
    copy = path.with_name("edited-" + path.name)
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(copy, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            data = source.read(info)
            if info.filename in change:
                new = change.pop(info.filename)
                data = new(data) if callable(new) else new
            out.writestr(info, data)
        for name, data in change.items():
            out.writestr(name, data)
    copy.replace(path)
    return path


def _book(path: Path, *, active: str = "Changes", rows: int = 3) -> Path:
    """Notes (a formula, a merged range), Changes (the sheet read), a hidden Lookup."""
    book = openpyxl.Workbook()
    notes = book.active
    notes.title = "Notes"
    notes["A1"], notes["A2"], notes["B1"] = "read me", "=1+2", 42
    notes.merge_cells("A3:C4")
    changes = book.create_sheet("Changes")
    changes.append(["image_id", "name", "min_ram"])
    for n in range(rows):
        changes.append([IDS[n % len(IDS)] if n < len(IDS) else _id(n), f"img-{n}", 1024])
    lookup = book.create_sheet("Lookup")
    lookup["A1"] = "hidden"
    lookup.sheet_state = "hidden"
    book.defined_names["Answer"] = openpyxl.workbook.defined_name.DefinedName(
        "Answer", attr_text="Notes!$A$2"
    )
    book.active = book.sheetnames.index(active)
    for worksheet in book.worksheets:
        worksheet.sheet_view.tabSelected = worksheet.title == active
    book.save(path)
    return _rezipped(  # Excel saves a formula with its value; openpyxl cannot
        path,
        {
            "xl/worksheets/sheet1.xml": lambda xml: re.sub(
                rb"<f>1\+2</f><v\s*/?>(</v>)?", b"<f>1+2</f><v>3</v>", xml
            )
        },
    )


def _id(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-000000000000"


def _report(path: Path, sheet_name: str | None = None) -> Path:
    sheet = read_sheet(path, sheet_name=sheet_name)
    rows = [RowResult(Outcome(_id(n), Status.SUCCEEDED, 200)) for n in range(sheet.row_count)]
    return write_report(sheet, rows, path.with_name("report.xlsx"))


def _parts(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def test_every_other_part_is_the_inputs_byte_for_byte(tmp_path: Path) -> None:
    source = _book(tmp_path / "book.xlsx")
    assert b"<f>1+2</f><v>3</v>" in _parts(source)["xl/worksheets/sheet1.xml"]
    before, after = _parts(source), _parts(_report(source))
    assert list(after) == list(before)  # the same parts, in the same order
    changed = {name for name in before if before[name] != after[name]}
    assert changed <= {"xl/worksheets/sheet2.xml", *STYLED_PARTS}
    assert "xl/worksheets/sheet2.xml" in changed  # the results
    assert b"<f>1+2</f><v>3</v>" in after["xl/worksheets/sheet1.xml"]  # the saved value


def test_the_results_are_styled_active_and_in_place(tmp_path: Path) -> None:
    report = openpyxl.load_workbook(_report(_book(tmp_path / "book.xlsx")))
    assert report.sheetnames == ["Notes", "Changes", "Lookup"]
    assert report["Lookup"].sheet_state == "hidden"
    assert report.active.title == "Changes"
    assert report.defined_names["Answer"].attr_text == "Notes!$A$2"
    assert [str(r) for r in report["Notes"].merged_cells.ranges] == ["A3:C4"]
    results = report["Changes"]
    header = [cell.value for cell in results[1]]
    assert header[:4] == ["image_id", "name", "min_ram", "status"]
    assert all(cell.font.b for cell in results[1])
    assert results.freeze_panes == "A2"
    assert results.auto_filter.ref == f"A1:{openpyxl.utils.get_column_letter(len(header))}4"
    status = results.cell(2, header.index("status") + 1)
    assert (status.value, status.fill.fill_type) == ("succeeded", "solid")
    assert status.fill.fgColor.rgb.endswith("C6EFCE")
    assert status.font.color.rgb.endswith("006100")
    image_id = results.cell(2, 1)
    assert (image_id.value, image_id.number_format) == (IDS[0], "@")
    assert results.cell(2, 3).value == 1024  # a number again
    assert results.cell(2, header.index("after") + 1).value is None
    assert results.column_dimensions["A"].width >= 36
    assert not results.cell(2, 2).font.b
    # the other sheets' formats mean what they meant
    assert report["Notes"]["A1"].font.b is False


def test_another_active_sheet_is_unselected_and_the_results_become_active(
    tmp_path: Path,
) -> None:
    source = _book(tmp_path / "book.xlsx", active="Notes")
    before = _parts(source)["xl/worksheets/sheet1.xml"]
    assert b'tabSelected="1"' in before
    written = _report(source, sheet_name="Changes")
    after = _parts(written)["xl/worksheets/sheet1.xml"]
    assert after == before.replace(b' tabSelected="1"', b"", 1)  # that mark alone
    report = openpyxl.load_workbook(written)
    assert report.active.title == "Changes"
    assert [w.title for w in report.worksheets if w.sheet_view.tabSelected] == ["Changes"]


def test_the_calculation_chain_is_dropped(tmp_path: Path) -> None:
    """Excel's chain may list formulas of the sheet read, which the results no longer
    have: Excel would call the file damaged.  It rebuilds the chain itself."""
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    kind = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/calcChain"
    content = "application/vnd.openxmlformats-officedocument.spreadsheetml.calcChain+xml"
    source = _rezipped(
        _book(tmp_path / "book.xlsx"),
        {
            "xl/_rels/workbook.xml.rels": lambda xml: xml.replace(
                b"</Relationships>",
                f'<Relationship Id="rIdCalc" Type="{kind}" Target="calcChain.xml"/>'
                "</Relationships>".encode(),
            ),
            "[Content_Types].xml": lambda xml: xml.replace(
                b"</Types>",
                f'<Override PartName="/xl/calcChain.xml" ContentType="{content}"/>'
                "</Types>".encode(),
            ),
            "xl/calcChain.xml": f'<calcChain xmlns="{main}"><c r="A2" i="1"/></calcChain>',
        },
    )
    parts = _parts(_report(source))
    assert "xl/calcChain.xml" not in parts
    assert b"calcChain" not in parts["xl/_rels/workbook.xml.rels"]
    assert b"calcChain" not in parts["[Content_Types].xml"]
    assert openpyxl.load_workbook(tmp_path / "report.xlsx").sheetnames[1] == "Changes"


def test_the_report_reads_back_as_a_sheet(tmp_path: Path) -> None:
    """Fed back in (``--only failed``), the report's results sheet is read like any."""
    written = _report(_book(tmp_path / "book.xlsx"))
    again = read_sheet(written, sheet_name="Changes")
    assert list(again.frame["status"]) == ["succeeded"] * 3
    assert again.frame["image_id"].iloc[0] == IDS[0]


def _peak(path: Path) -> int:
    sheet = read_sheet(path)
    rows = [RowResult(Outcome(_id(n), Status.SUCCEEDED, 200)) for n in range(sheet.row_count)]
    tracemalloc.start()
    try:
        write_report(sheet, rows, path.with_name(path.stem + ".report.xlsx"))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
@pytest.mark.parametrize("rows", [3000])
def test_memory_with_other_sheets_stays_close_to_the_results_alone(
    tmp_path: Path, rows: int
) -> None:
    """The whole-workbook load this replaces took over twice the memory of the streamed
    report alone; copying the other parts adds a buffer, not the rows."""
    alone = openpyxl.Workbook()
    alone.active.title = "Changes"
    alone.active.append(["image_id", "name", "min_ram"])
    for n in range(rows):
        alone.active.append([_id(n), f"img-{n}", 1024])
    alone.save(tmp_path / "alone.xlsx")
    with_notes = _book(tmp_path / "notes.xlsx", rows=rows)
    assert _peak(with_notes) < 1.3 * _peak(tmp_path / "alone.xlsx")
