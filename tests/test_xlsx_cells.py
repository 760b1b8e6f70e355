"""XLSX cells are read as Excel shows them, from the worksheet Excel opens on."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import openpyxl
import pytest

from batchpatch.cli import main
from batchpatch.errors import OptionsError, Problem, SheetError
from batchpatch.models import JsonValue
from batchpatch.sheet import read_sheet
from batchpatch.xlsx import format_kind, read_worksheet
from tests.xlsx_parts import (
    CUSTOM_DATE,
    CUSTOM_PERCENT,
    DATE,
    DATETIME,
    DURATION,
    PERCENT,
    TIME,
    build,
    cell,
    one_sheet,
    rows,
    text,
    worksheet,
)

A = "0b1c6a3e-5f0d-4a53-9c1e-2f6d8a1b7c01"
B = "1f2e3d4c-6b7a-4c8d-9e0f-1a2b3c4d5e02"


def problems_of(path: Path) -> list[Problem]:
    with pytest.raises(SheetError) as caught:
        read_sheet(path)
    return caught.value.problems


def sent(path: Path, **options: object) -> list[tuple[str, JsonValue]]:
    """(path, value) of every operation the sheet asks for, in order."""
    sheet = read_sheet(path, **options)  # type: ignore[arg-type]
    return [
        (operation.path, operation.value)
        for patch in sheet.patches
        for operation in patch.operations
    ]


def wide(path: Path, column: str, value_cell: str, **options: object) -> Path:
    """A wide sheet: image_id and one attribute ``column`` whose B2 is ``value_cell``."""
    return one_sheet(
        path,
        rows([text("A1", "image_id"), text("B1", column)], [text("A2", A), value_cell]),
        **options,
    )


# ------------------------------------------------------------------- which worksheet


def _book_of_tabs(path: Path, active: int, states: dict[str, str]) -> Path:
    workbook = openpyxl.Workbook()
    first = workbook.active
    assert first is not None
    first.title = "Notes"
    for index, title in enumerate(["Notes", "Changes", "Old"]):
        sheet = first if index == 0 else workbook.create_sheet(title)
        sheet.append(["image_id", "name"])
        sheet.append([A, f"from-{title.lower()}"])
        sheet.sheet_state = states.get(title, "visible")  # type: ignore[assignment]
    workbook.active = active
    workbook.save(path)
    return path


@pytest.mark.parametrize(
    ("active", "states", "expected"),
    [
        pytest.param(0, {}, "Notes", id="first-tab-active"),
        pytest.param(1, {}, "Changes", id="active-tab-not-first"),
        pytest.param(0, {"Notes": "hidden"}, "Changes", id="hidden-first-tab"),
        pytest.param(0, {"Notes": "veryHidden"}, "Changes", id="very-hidden-first-tab"),
        pytest.param(2, {"Old": "hidden"}, "Notes", id="hidden-active-tab"),
    ],
)
def test_the_worksheet_excel_opens_on_is_read(
    tmp_path: Path, active: int, states: dict[str, str], expected: str
) -> None:
    path = _book_of_tabs(tmp_path / "book.xlsx", active, states)
    sheet = read_sheet(path)
    assert sheet.sheet_name == expected
    assert sent(path) == [("/name", f"from-{expected.lower()}")]


def test_a_hidden_worksheet_is_read_only_when_named(tmp_path: Path) -> None:
    path = _book_of_tabs(tmp_path / "book.xlsx", 0, {"Notes": "hidden", "Old": "veryHidden"})
    assert sent(path, sheet_name="Old") == [("/name", "from-old")]
    assert read_sheet(path, sheet_name="Notes").sheet_name == "Notes"
    with pytest.raises(OptionsError) as caught:
        read_sheet(path, sheet_name="old")
    assert "no sheet named 'old'" in str(caught.value)
    assert "'Notes' (hidden)" in str(caught.value)
    assert "'Old' (veryHidden)" in str(caught.value)


def test_a_workbook_without_visible_worksheet(tmp_path: Path) -> None:
    path = build(
        tmp_path / "s.xlsx",
        [("Only", worksheet(rows([text("A1", "image_id")])))],
        states=["hidden"],
    )
    (problem,) = problems_of(path)
    assert (problem.row, problem.message) == (0, "the workbook has no visible worksheet")
    assert "sheet_name=NAME" in problem.fix


@pytest.mark.parametrize("command", ["validate", "plan", "apply"])
def test_the_output_names_the_worksheet_used(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _book_of_tabs(tmp_path / "book.xlsx", 1, {})
    images = tmp_path / "images.json"
    images.write_text(f'[{{"id": "{A}", "name": "old", "status": "active", "min_ram": 0}}]')
    arguments = [
        command,
        str(path),
        *{"validate": [], "plan": ["--fake"], "apply": ["--fake", "--quiet"]}[command],
    ]
    assert main(arguments) == 0
    output = capsys.readouterr()
    where = output.err if command == "apply" else output.out
    assert "sheet: Changes" in where.splitlines()


# ------------------------------------------------------------------------- cell types


@pytest.mark.parametrize(
    ("value_cell", "column", "expected"),
    [
        pytest.param(cell("B2", "3", formula="1+2"), "team", "3", id="formula-number"),
        pytest.param(
            cell("B2", "web-2026", kind="str", formula='"web-"&2026'),
            "name",
            "web-2026",
            id="formula-text",
        ),
        pytest.param(
            cell("B2", "1", kind="b", formula="TRUE()"),
            "__support_kvm",
            "true",
            id="formula-boolean-for-a-flag",
        ),
        pytest.param(cell("B2", "1024.0"), "min_ram", 1024, id="stored-float-for-integer"),
        pytest.param(cell("B2", "42"), "team", "42", id="whole-number-for-text"),
        pytest.param(
            cell("B2", "0.30000000000000004"), "team", "0.3", id="fifteen-digits-as-excel"
        ),
        pytest.param(cell("B2", "45322", style=DATE), "team", "2024-01-31", id="date"),
        pytest.param(
            cell("B2", "45322.5208333333", style=DATETIME),
            "team",
            "2024-01-31 12:30:00",
            id="date-and-time",
        ),
        pytest.param(
            cell("B2", "45322", style=DATETIME),
            "team",
            "2024-01-31",
            id="date-time-format-at-midnight",
        ),
        pytest.param(
            cell("B2", "45322", style=CUSTOM_DATE), "team", "2024-01-31", id="custom-date-format"
        ),
        pytest.param(cell("B2", "0.75", style=TIME), "team", "18:00:00", id="time-of-day"),
        pytest.param(cell("B2", "1", kind="b"), "__support_kvm", "true", id="true-flag"),
        pytest.param(
            cell("B2", "0", kind="b"), "hw_vif_multiqueue_enabled", "false", id="false-flag"
        ),
        pytest.param(
            cell("B2", "2024-01-31T00:00:00Z", kind="d"), "team", "2024-01-31", id="iso-date-cell"
        ),
        pytest.param(
            '<c r="B2" t="inlineStr"><is><r><t>web</t></r><r><t>-1</t></r>'
            "<rPh><t>ウェブ</t></rPh></is></c>",
            "name",
            "web-1",
            id="rich-text",
        ),
    ],
)
def test_a_cell_is_sent_as_excel_shows_it(
    tmp_path: Path, value_cell: str, column: str, expected: JsonValue
) -> None:
    path = wide(tmp_path / "s.xlsx", column, value_cell)
    assert sent(path) == [(f"/{column}", expected)]


def test_dates_in_the_1904_date_system(tmp_path: Path) -> None:
    path = wide(tmp_path / "s.xlsx", "team", cell("B2", "43860", style=DATE), date1904=True)
    assert sent(path) == [("/team", "2024-01-31")]


def test_dates_and_booleans_written_by_openpyxl(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["image_id", "team", "built", "__support_kvm"])
    sheet.append([A, dt.date(2024, 1, 31), dt.datetime(2024, 1, 31, 8, 5, 9), True])
    workbook.save(tmp_path / "s.xlsx")
    assert sent(tmp_path / "s.xlsx") == [
        ("/team", "2024-01-31"),
        ("/built", "2024-01-31 08:05:09"),
        ("/__support_kvm", "true"),
    ]


def test_shared_strings_are_read(tmp_path: Path) -> None:
    path = one_sheet(
        tmp_path / "s.xlsx",
        rows(
            [cell("A1", "0", kind="s"), cell("B1", "1", kind="s")],
            [cell("A2", "2", kind="s"), cell("B2", "3", kind="s")],
        ),
        shared=["image_id", "__description", A, "caf_x00E9_ _x005F_x0041_"],
    )
    assert sent(path) == [("/__description", "café _x0041_")]


@pytest.mark.parametrize(
    ("value_cell", "column", "message"),
    [
        pytest.param(
            cell("B2", "0.5", style=PERCENT),
            "team",
            "cell B2 is formatted as a percentage (Excel shows 50%)",
            id="percent",
        ),
        pytest.param(
            cell("B2", "0.125", style=CUSTOM_PERCENT),
            "__description",
            "cell B2 is formatted as a percentage (Excel shows 12.5%)",
            id="custom-percent",
        ),
        pytest.param(
            cell("B2", "1.5", style=DURATION),
            "team",
            "cell B2 is formatted as a duration (Excel shows 36:00:00)",
            id="duration",
        ),
        pytest.param(
            cell("B2", "1", kind="b"),
            "team",
            "cell B2 holds the logical value TRUE, which team does not take",
            id="boolean-for-text",
        ),
        pytest.param(
            cell("B2", "0", kind="b"),
            "name",
            "cell B2 holds the logical value FALSE, which name does not take",
            id="boolean-for-name",
        ),
    ],
)
def test_cells_an_attribute_cannot_take_are_located(
    tmp_path: Path, value_cell: str, column: str, message: str
) -> None:
    problems = problems_of(wide(tmp_path / "s.xlsx", column, value_cell))
    assert [(p.row, p.column) for p in problems] == [(2, column)]
    assert problems[0].message.startswith(message)
    assert problems[0].fix.startswith("format column B as Text")


def test_booleans_in_a_long_sheet_follow_the_path(tmp_path: Path) -> None:
    path = one_sheet(
        tmp_path / "s.xlsx",
        rows(
            [text("A1", "image_id"), text("B1", "op"), text("C1", "path"), text("D1", "value")],
            [
                text("A2", A),
                text("B2", "add"),
                text("C2", "/__support_kvm"),
                cell("D2", "1", kind="b"),
            ],
            [text("A3", B), text("B3", "add"), text("C3", "/team"), cell("D3", "0", kind="b")],
        ),
    )
    problems = problems_of(path)
    assert [(p.row, p.column) for p in problems] == [(3, "value")]
    assert "logical value FALSE, which team does not take" in problems[0].message


def test_a_percentage_in_a_comment_column_is_carried_as_shown(tmp_path: Path) -> None:
    path = one_sheet(
        tmp_path / "s.xlsx",
        rows(
            [text("A1", "image_id"), text("B1", "name"), text("C1", "#done")],
            [text("A2", A), text("B2", "web"), cell("C2", "0.5", style=PERCENT)],
        ),
    )
    sheet = read_sheet(path)
    assert sheet.frame.loc[0, "#done"] == "50%"
    assert sent(path) == [("/name", "web")]


@pytest.mark.parametrize(
    ("value_cell", "message", "fix"),
    [
        pytest.param(
            cell("B2", "", formula="1+2"),
            "cell B2 holds a formula with no saved value",
            "open the workbook in Excel and save it",
            id="no-saved-value",
        ),
        pytest.param(
            cell("B2", "#DIV/0!", kind="e", formula="1/0"),
            "cell B2 shows the error #DIV/0!",
            "correct the formula",
            id="error",
        ),
        pytest.param(
            cell("B2", "7", kind="s"),
            "cell B2 refers to a shared string the workbook does not hold",
            "type the cell again",
            id="missing-string",
        ),
    ],
)
def test_cells_without_a_value_to_send(
    tmp_path: Path, value_cell: str, message: str, fix: str
) -> None:
    problems = problems_of(wide(tmp_path / "s.xlsx", "team", value_cell))
    assert [(p.row, p.column, p.message) for p in problems] == [(2, "team", message)]
    assert problems[0].fix.startswith(fix)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        pytest.param("General", "", id="general"),
        pytest.param("0.00", "", id="decimals"),
        pytest.param("0.00E+00", "", id="scientific"),
        pytest.param('#,##0 "MB"', "", id="quoted-unit"),
        pytest.param("@", "", id="text"),
        pytest.param("[Red]0.0;[Blue]-0.0", "", id="colours"),
        pytest.param("0%", "percent", id="percent"),
        pytest.param('0 "%"', "", id="quoted-percent-sign"),
        pytest.param("[h]:mm:ss", "duration", id="elapsed-hours"),
        pytest.param("[mm]:ss", "duration", id="elapsed-minutes"),
        pytest.param("yyyy-mm-dd", "date", id="iso"),
        pytest.param('yyyy"年"m"月"d"日"', "date", id="chinese"),
        pytest.param("[$-409]mmmm d, yyyy", "date", id="locale"),
        pytest.param("mmm", "date", id="month"),
        pytest.param("h:mm AM/PM", "time", id="clock"),
        pytest.param("hh:mm:ss", "time", id="clock-seconds"),
    ],
)
def test_number_format_kinds(code: str, kind: str) -> None:
    assert format_kind(code) == kind


# ------------------------------------------------------------------------------ header


def test_the_header_is_the_first_row_with_cells(tmp_path: Path) -> None:
    path = one_sheet(
        tmp_path / "s.xlsx",
        rows(
            [text("B3", "image_id"), text("C3", "min_ram")],
            [text("B4", A), text("C4", "lots")],
            start=3,
        ),
    )
    problems = problems_of(path)
    assert [(p.row, p.column) for p in problems] == [(4, "min_ram")]
    assert read_worksheet(path, None).first_row == 4


def test_trailing_empty_header_cells_are_dropped(tmp_path: Path) -> None:
    blanks = "".join(f'<c r="{letter}1" s="1"/>' for letter in ("D", "E", "XFD"))
    path = one_sheet(
        tmp_path / "s.xlsx",
        rows(
            [text("A1", "image_id"), text("B1", "name"), text("C1", ""), blanks],
            [text("A2", A), text("B2", "web")],
        ),
    )
    assert list(read_sheet(path).frame.columns) == ["image_id", "name"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(
            ["image_id", "name", " Name"],
            [(1, "Name", "column 'name' appears more than once")],
            id="duplicate",
        ),
        pytest.param(["image_id", "", "name"], [(1, "#2", "a column has no header")], id="empty"),
    ],
)
def test_header_problems_come_before_any_table(
    tmp_path: Path, header: list[str], expected: list[tuple[int, str, str]]
) -> None:
    letters = "ABC"
    path = one_sheet(
        tmp_path / "s.xlsx",
        rows(
            [text(f"{letter}1", name) for letter, name in zip(letters, header, strict=True)],
            [text("A2", A), text("B2", "x"), text("C2", "y")],
        ),
    )
    with pytest.raises(SheetError) as caught:
        read_worksheet(path, None)  # the reader itself: no frame is built
    assert [(p.row, p.column, p.message) for p in caught.value.problems] == expected
