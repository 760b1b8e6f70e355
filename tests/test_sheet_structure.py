"""The sheet stage's structure: reasons as (what, fix), one report-column definition, typed
changes, and a reader's Grid that knows nothing past the file format."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from batchpatch import checks, report
from batchpatch.checks import CHANGE_COLUMNS, Changes, passive_columns
from batchpatch.errors import Problem, Reason, SheetError
from batchpatch.models import Outcome, Status
from batchpatch.report import RESULT_COLUMNS, RowResult, write_report
from batchpatch.schema import check_attribute
from batchpatch.sheet import grid_changes, read_grid, read_sheet
from tests.sheets import write_sheet

A = "0b1c6a3e-5f0d-4a53-9c1e-2f6d8a1b7c01"


def test_a_reason_keeps_dashes_inside_either_half(tmp_path: Path) -> None:
    """No "what — fix" text is split again: a fix that itself holds " — " reaches the
    problem whole, and the what is never cut at the first dash."""
    reason = Reason("a — b", "c — d")
    problem = Problem("f.csv", 2, "name", reason)
    assert (problem.message, problem.fix) == ("a — b", "c — d")
    assert str(problem) == "f.csv:2:name: a — b — c — d"


def test_schema_reasons_are_structured_and_the_header_extends_the_fix(tmp_path: Path) -> None:
    reason = check_attribute("Team", "add")
    assert reason == Reason(
        "custom attribute 'Team' must be lower-case letters, digits, _ . : -",
        "rename it in lower case",
    )
    path = write_sheet(tmp_path / "s.csv", ["image_id", "Team"], [[A, "ops"]])
    with pytest.raises(SheetError) as caught:
        read_sheet(path)
    (problem,) = caught.value.problems
    assert problem.reason == Reason(
        reason.what, reason.fix + ", or start the header with # for a comment"
    )


def test_the_report_columns_come_from_one_definition(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "s.csv", ["image_id", "name", "after"], [[A, "x", "y"]])
    sheet = read_sheet(path)
    out = write_report(
        sheet, [RowResult(Outcome(A, Status.SUCCEEDED, http_status=200))], tmp_path / "r.csv"
    )
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert tuple(written.columns) == ("image_id", "name", "after (input)", *RESULT_COLUMNS)
    assert set(RESULT_COLUMNS) > report.REPORT_MARKERS
    assert checks.RESULT_COLUMNS is RESULT_COLUMNS  # imported, not written again


def test_a_fed_back_report_is_recognised_by_the_same_definition(tmp_path: Path) -> None:
    """The reader takes every column the report writes as a result, never as an attribute
    (``after`` included, because the rest of the definition is there)."""
    header = ["image_id", "name", "after (input)", *RESULT_COLUMNS]
    assert passive_columns(header) == set(RESULT_COLUMNS)
    path = write_sheet(
        tmp_path / "r.csv",
        header,
        [[A, "web", "v2", "succeeded", "200", "", "", "", "1", "5", "", ""]],
    )
    sheet = read_sheet(path)
    assert [patch.body() for patch in sheet.patches] == [
        [
            {"op": "replace", "path": "/name", "value": "web"},
            {"op": "add", "path": "/after", "value": "v2"},
        ]
    ]


def test_changes_hold_exactly_their_documented_columns(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "op", "path", "value"],
        [[A, "replace", "/min_ram", "1024"]],
    )
    grid = read_grid(path)
    changes = grid_changes(str(path), grid)
    assert tuple(changes.frame.columns) == CHANGE_COLUMNS
    assert changes.frame.to_dict("records") == [
        {
            "row": 2,
            "image_id": A,
            "op": "replace",
            "attribute": "min_ram",
            "value": "1024",
            "column": "value",
            "attribute_column": "path",
            "typed": 1024,
        }
    ]
    with pytest.raises(ValueError, match="changes need the columns"):
        Changes(changes.frame.drop(columns=["typed"]), "long", "image_id", ("image_id",))


def test_rows_are_spreadsheet_rows_from_the_reader_on(tmp_path: Path) -> None:
    """Blank lines above a CSV header move every row down, in the grid and the changes."""
    path = tmp_path / "s.csv"
    path.write_text(f"\n\nimage_id,name\n{A},web\n", encoding="utf-8")
    grid = read_grid(path)
    assert (grid.header_row, grid.first_row, grid.last_row) == (3, 4, 4)
    assert grid_changes(str(path), grid).frame["row"].tolist() == [4]
