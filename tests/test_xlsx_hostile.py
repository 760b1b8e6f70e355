"""Hostile and huge XLSX files end with a located problem or a result: never a traceback, an
abort or unbounded memory.  Every file is built here, by hand, with zipfile."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchpatch import xlsx
from batchpatch.errors import OptionsError, Problem, SheetError
from batchpatch.sheet import Sheet, read_sheet
from tests.e2e import ROOT, cli_environment
from tests.xlsx_parts import MAIN, build, cell, one_sheet, rows, text, worksheet

A = "0b1c6a3e-5f0d-4a53-9c1e-2f6d8a1b7c01"
HEADER = [text("A1", "image_id"), text("B1", "name")]
DATA = [text("A2", A), text("B2", "web")]

LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{n} "{("&lol" + str(n - 1) + ";") * 10}">' for n in range(2, 10)
    ).replace("&lol1;", "&lol;")
    + "]>"
)
EXTERNAL = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(SheetError) as caught:
        read_sheet(path)
    return caught.value.problems


def only_problem(path: Path) -> Problem:
    (problem,) = problems_of(path)
    return problem


# ------------------------------------------------------------------------------ the XML


def test_billion_laughs_in_the_worksheet(tmp_path: Path) -> None:
    sheet = worksheet(rows(HEADER, [text("A2", A), text("B2", "&lol9;")]), prolog=LAUGHS)
    problem = only_problem(build(tmp_path / "s.xlsx", [("Changes", sheet)]))
    assert (problem.row, problem.column) == (0, "")
    assert "declares a DTD" in problem.message
    assert "lollol" not in str(problem)


def test_external_entity_in_the_workbook(tmp_path: Path) -> None:
    path = build(
        tmp_path / "s.xlsx", [("&secret;", worksheet(rows(HEADER, DATA)))], workbook_prolog=EXTERNAL
    )
    problem = only_problem(path)
    assert "declares a DTD" in problem.message
    assert "root:" not in str(problem)


@pytest.mark.parametrize(
    "part", ["xl/styles.xml", "xl/sharedStrings.xml", "_rels/.rels", "xl/_rels/workbook.xml.rels"]
)
def test_a_dtd_in_any_part_is_refused(tmp_path: Path, part: str) -> None:
    path = one_sheet(tmp_path / "s.xlsx", rows(HEADER, DATA))
    _replace_part(path, part, lambda xml: LAUGHS + xml)
    assert "declares a DTD" in only_problem(path).message


def _replace_part(path: Path, part: str, change: object) -> None:
    with zipfile.ZipFile(path) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    contents[part] = change(contents[part].decode()).encode()  # type: ignore[operator]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in contents.items():
            archive.writestr(name, data)


@pytest.mark.parametrize(
    ("sheet_data", "message"),
    [
        pytest.param("<row><c r='A1'>", "is not well-formed XML", id="truncated"),
        pytest.param(
            '<row r="1"><c r="1A"><v>1</v></c></row>', "cell reference '1A'", id="bad-reference"
        ),
        pytest.param(
            '<row r="1"><c r="XFE1"><v>1</v></c></row>',
            "cell reference 'XFE1'",
            id="beyond-last-column",
        ),
        pytest.param('<row r="0"><c><v>1</v></c></row>', "outside Excel's rows", id="row-zero"),
        pytest.param(
            '<row r="9999999"><c><v>1</v></c></row>', "outside Excel's rows", id="beyond-last-row"
        ),
    ],
)
def test_broken_worksheet_xml(tmp_path: Path, sheet_data: str, message: str) -> None:
    path = build(
        tmp_path / "s.xlsx",
        [
            (
                "Changes",
                f'<worksheet xmlns="{MAIN}"><sheetData>{sheet_data}</sheetData></worksheet>'
                if "<row><c r='A1'>" not in sheet_data
                else f'<worksheet xmlns="{MAIN}">{sheet_data}',
            )
        ],
    )
    problem = only_problem(path)
    assert (problem.row, problem.column) == (0, "")
    assert message in problem.message


# ------------------------------------------------------------------------------ the zip


def test_a_corrupt_zip_member(tmp_path: Path) -> None:
    path = one_sheet(tmp_path / "s.xlsx", rows(HEADER, DATA))
    data = bytearray(path.read_bytes())
    offset = data.index(b"xl/worksheets/sheet1.xml") + len("xl/worksheets/sheet1.xml") + 4
    data[offset] ^= 0xFF  # inside the compressed sheet: a CRC or inflate error
    path.write_bytes(bytes(data))
    problem = only_problem(path)
    assert problem.message.startswith("not a readable Excel workbook")


def test_an_old_or_encrypted_workbook(tmp_path: Path) -> None:
    path = tmp_path / "s.xlsx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    problem = only_problem(path)
    assert "an old .xls, or protected by a password" in problem.message
    assert "without a password" in problem.fix


def test_a_zip_bomb_stops_at_the_part_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(xlsx, "MAX_PART_BYTES", 1 << 20)
    padding = " " * (3 << 20)  # three megabytes of blanks that compress to almost nothing
    path = build(tmp_path / "s.xlsx", [("Changes", worksheet(rows(HEADER, DATA) + padding))])
    assert path.stat().st_size < 50_000
    problem = only_problem(path)
    assert problem.message == (
        "not a readable Excel workbook: the part xl/worksheets/sheet1.xml unpacks to more than 1 MB"
    )


def test_too_many_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xlsx, "MAX_CELLS", 10)
    path = one_sheet(tmp_path / "s.xlsx", rows(HEADER, *([text("A2", A)] for _ in range(20))))
    assert "holds more than 10 cells" in only_problem(path).message


def test_a_table_too_large_to_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xlsx, "MAX_TABLE_CELLS", 100)
    path = one_sheet(tmp_path / "s.xlsx", rows(HEADER, DATA, [text("A900", A)]))
    problem = only_problem(path)
    assert problem.message == "the table is too large (900 rows by 2 columns)"


def test_text_longer_than_excel_allows(tmp_path: Path) -> None:
    path = one_sheet(tmp_path / "s.xlsx", rows(HEADER, [text("A2", A), text("B2", "x" * 40_000)]))
    problem = only_problem(path)
    assert (problem.row, problem.column) == (2, "name")
    assert problem.message == "cell B2 holds more than 32,767 characters, more than Excel allows"


# ------------------------------------------------------------------------- stray cells


@pytest.mark.parametrize(
    ("stray", "row", "column", "message"),
    [
        pytest.param(
            "XFD5", 5, "#16384", "cell XFD5 lies far to the right of the data", id="far-right"
        ),
        pytest.param(
            "A1048576", 1048576, "image_id", "cell A1048576 lies far below the data", id="far-below"
        ),
        pytest.param(
            "XFD1048576",
            1048576,
            "#16384",
            "cell XFD1048576 lies far to the right of the data",
            id="far-corner",
        ),
    ],
)
def test_a_stray_cell_far_from_the_data_is_located(
    tmp_path: Path, stray: str, row: int, column: str, message: str
) -> None:
    path = one_sheet(
        tmp_path / "s.xlsx",
        rows(HEADER, DATA)
        + rows([cell(stray, "1")], start=int(stray.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))),
    )
    problem = only_problem(path)
    assert (problem.row, problem.column) == (row, column)
    assert problem.message.startswith(message)
    assert problem.fix.startswith(f"delete it (select {stray}, then Delete)")


def test_data_next_to_the_table_is_not_stray(tmp_path: Path) -> None:
    path = one_sheet(
        tmp_path / "s.xlsx",
        rows(HEADER, [*DATA, text("C2", "oops")], [text("A900", A), text("B900", "db")]),
    )
    problem = only_problem(path)
    assert (problem.row, problem.column, problem.message) == (1, "#3", "a column has no header")


@pytest.mark.parametrize("stray", ["XFD1048576", "XFD5"])
def test_a_stray_cell_costs_no_memory_in_a_real_process(tmp_path: Path, stray: str) -> None:
    """Once a 5 KB file aborted the process (exit 134) or took 13.5 GB: the process itself
    is what is tested, so it runs as one, and its peak memory is measured."""
    path = one_sheet(
        tmp_path / "s.xlsx",
        rows(HEADER, DATA) + rows([cell(stray, "1")], start=int(stray.lstrip("XFD"))),
    )
    assert path.stat().st_size < 5_000
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("w") as stdout, err.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "batchpatch", "validate", str(path)],
            cwd=ROOT,
            env=cli_environment(),
            stdout=stdout,
            stderr=stderr,
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    assert child.returncode == 2, err.read_text()
    assert f"cell {stray} lies far to the right of the data" in err.read_text()
    assert "Traceback" not in err.read_text()
    assert usage.ru_maxrss < 1024 * 1024  # kilobytes: under 1 GB


# ---------------------------------------------------------------------------- fuzzing


@settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_damage_to_the_worksheet_xml_is_read_or_located(
    tmp_path: Path, data: st.DataObject
) -> None:
    xml = worksheet(
        rows(HEADER, DATA, [text("A3", A), cell("B3", "2", formula="1+1")]),
        after='<mergeCells><mergeCell ref="B2:B3"/></mergeCells>',
    ).encode()
    position = data.draw(st.integers(0, len(xml) - 1))
    replacement = data.draw(
        st.binary(max_size=8)
        | st.sampled_from(
            [
                b"<",
                b">",
                b'"',
                b"&",
                b"<!DOCTYPE x>",
                b"&#0;",
                b"r=",
                b"XFD",
                b"1048577",
                b"t='b'",
                b"t='e'",
                b"t='s'",
                b"t='d'",
                b"<v>",
                b"</c>",
                b"s='99'",
                b"<c/>",
                b"<row/>",
            ]
        )
    )
    cut = data.draw(st.integers(0, 8))
    damaged = xml[:position] + replacement + xml[position + cut :]
    path = build(tmp_path / "s.xlsx", [("Changes", "")])
    _replace_part(path, "xl/worksheets/sheet1.xml", lambda _: damaged.decode("latin-1"))
    try:
        outcome: Sheet | Exception = read_sheet(path)
    except (SheetError, OptionsError) as error:
        outcome = error
    if isinstance(outcome, SheetError):
        assert all(problem.message and problem.fix for problem in outcome.problems)
