"""A formula cell with no saved value is a located error whatever its type attribute: Excel
showed something that the file does not hold, so nothing can be sent for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchpatch.cli import main
from tests.test_xlsx_cells import problems_of, sent, wide
from tests.xlsx_parts import cell

MESSAGE = "cell B2 holds a formula with no saved value"


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("str", id="string"),
        pytest.param("b", id="boolean"),
        pytest.param("n", id="number"),
        pytest.param("e", id="error"),
        pytest.param("inlineStr", id="inline-string"),
        pytest.param("s", id="shared-string"),
        pytest.param("", id="no-type"),
    ],
)
def test_a_formula_with_no_saved_value_is_a_located_error(tmp_path: Path, kind: str) -> None:
    sheet = wide(tmp_path / "s.xlsx", "team", cell("B2", "", kind=kind, formula='CONCAT("a","b")'))
    problems = problems_of(sheet)
    assert [(p.row, p.column, p.message) for p in problems] == [(2, "team", MESSAGE)]
    assert problems[0].fix.startswith("open the workbook in Excel and save it")


def test_validate_refuses_a_string_formula_with_no_saved_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sheet = wide(tmp_path / "s.xlsx", "team", cell("B2", "", kind="str", formula='CONCAT("a")'))
    assert main(["validate", str(sheet)]) == 2
    err = capsys.readouterr().err
    assert f"s.xlsx:2:team: {MESSAGE}" in err


@pytest.mark.parametrize(
    ("value_cell", "expected"),
    [
        pytest.param(cell("B2", "ab", kind="str", formula='CONCAT("a","b")'), "ab", id="string"),
        pytest.param(
            '<c r="B2" t="inlineStr"><f>T("x")</f><is><t>x</t></is></c>', "x", id="inline"
        ),
    ],
)
def test_a_formula_with_a_saved_value_sends_that_value(
    tmp_path: Path, value_cell: str, expected: str
) -> None:
    assert sent(wide(tmp_path / "s.xlsx", "team", value_cell)) == [("/team", expected)]


def test_a_string_formula_whose_saved_value_is_empty_is_an_empty_cell(tmp_path: Path) -> None:
    sheet = wide(tmp_path / "s.xlsx", "team", '<c r="B2" t="str"><f>T(1)</f><v></v></c>')
    assert sent(sheet) == []
