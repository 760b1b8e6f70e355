"""The table built from a worksheet's occupied cells (``xlsx._Table``, on numpy arrays)
is the one the previous pure-Python build made: same header, columns, kinds, numbers and
problems, or the same error, for generated sparse cells."""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from batchpatch.errors import Problem, SheetError
from batchpatch.grid import EMPTY, whole_file
from batchpatch.xlsx import (
    MAX_EMPTY_ROWS,
    Worksheet,
    _Cells,
    _Table,
)


class _PreviousTable:
    """``xlsx._Table`` as it was before it used numpy: one Python pass over the cells per
    question.  The oracle the numpy one must agree with."""

    def __init__(self, path: Path, name: str, cells: _Cells) -> None:
        self.path, self.name, self.cells = path, name, cells
        if not cells.texts:
            raise SheetError([whole_file(str(path), EMPTY)])
        self.header_row = min(cells.rows)
        self.header = {
            column: text.strip() for row, column, text in self._all() if row == self.header_row
        }
        self.labels: dict[int, str] = {}

    def _all(self) -> Iterator[tuple[int, int, str]]:
        return zip(self.cells.rows, self.cells.columns, self.cells.texts, strict=True)

    worksheet = _Table.worksheet  # the same questions in the same order
    _kinds = _Table._kinds

    def _columns(self) -> tuple[list[int], list[Problem]]:
        """The table's columns (named, or holding data next to named ones), and a problem for
        each column of data cut off from the table by an empty column."""
        named = [column for column, text in self.header.items() if text]
        used = {
            column
            for row, column in zip(self.cells.rows, self.cells.columns, strict=True)
            if row > self.header_row
        }
        end = max(named, default=0) + 1
        while end in used:
            end += 1
        kept = sorted({*named, *(column for column in used if column < end)})
        far = sorted(column for column in used if column > end)[:10]
        firsts: dict[int, int] = {}
        wanted = set(far)
        for row, column in zip(self.cells.rows, self.cells.columns, strict=True):
            if column in wanted and row > self.header_row:
                firsts[column] = min(firsts.get(column, row), row)
        return kept, [self._stray(firsts[column], column, "to the right of") for column in far]

    def _last_row(self, kept: set[int], fatal: list[Problem]) -> int:
        """The last row of the data in the ``kept`` columns: the rows after a run of
        ``MAX_EMPTY_ROWS`` empty rows are not part of it (a problem names their first cell)."""
        rows = sorted(
            {
                row
                for row, column in zip(self.cells.rows, self.cells.columns, strict=True)
                if row > self.header_row and column in kept
            }
        )
        previous = self.header_row
        for row in rows:
            if row - previous > MAX_EMPTY_ROWS:
                column = min(
                    c
                    for r, c in zip(self.cells.rows, self.cells.columns, strict=True)
                    if r == row and c in kept
                )
                fatal.append(self._stray(row, column, "below"))
                return previous
            previous = row
        return previous

    # How a problem is worded is not what is compared: both tables word it the same way.
    _stray = _Table._stray
    _header_problems = _Table._header_problems
    _cell_problems = _Table._cell_problems
    _label = _Table._label
    _merged = _Table._merged

    def _built(self, kept: list[int], last_row: int, problems: tuple[Problem, ...]) -> Worksheet:
        first_row = self.header_row + 1
        height = last_row - self.header_row
        position = {column: index for index, column in enumerate(kept)}
        columns = [[""] * height for _ in kept]
        for row, column, text in self._all():
            if first_row <= row <= last_row:
                columns[position[column]][row - first_row] = text
        kinds = self._kinds(position, first_row, last_row)
        return Worksheet(
            self.name,
            tuple(self.labels[column] for column in kept),
            tuple(columns),
            first_row,
            problems,
            kinds,
            self._numbers(position, first_row, last_row),
        )

    def _numbers(
        self, position: dict[int, int], first_row: int, last_row: int
    ) -> dict[str, tuple[int, ...]]:
        """The 0-based data rows of each kept column's cells written as plain numbers."""
        numbers: dict[str, list[int]] = {}
        cells = self.cells
        for row, column, numeric in zip(cells.rows, cells.columns, cells.numeric, strict=True):
            if numeric and first_row <= row <= last_row and column in position:
                numbers.setdefault(self.labels[column], []).append(row - first_row)
        return {label: tuple(rows) for label, rows in numbers.items()}


_NAMES = ("image_id", "name", "min_ram", "tags", "__description")


@st.composite
def _cells(draw: st.DrawFn) -> _Cells:
    """A header row (now and then with a gap or a name twice), then data cells: mostly
    under it, now and then far to the right or far below, some written twice."""
    cells = _Cells()
    top = draw(st.integers(1, 3))
    width = draw(st.integers(1, 5))
    names = list(_NAMES[:width])
    if draw(st.integers(0, 9)) == 0:
        names[-1] = names[0]
    gap = draw(st.sampled_from([None] * 9 + list(range(1, width))))  # now and then no name
    header = [(top, column + 1, name) for column, name in enumerate(names) if column != gap]
    if draw(st.integers(0, 5)) == 0:  # a header cell written twice: the later one counts
        header.append((top, 1, draw(st.sampled_from(["tags", " image_id ", "min_ram"]))))
    body = []
    for _ in range(draw(st.sampled_from([0] + [1] * 3 + [5] * 5 + [40] * 3))):
        far = draw(st.integers(0, 30))  # now and then a cell far below, or far to the right
        row = draw(st.sampled_from([1200, 2600])) if far == 0 else draw(st.integers(1, 12))
        column = {1: 40, 2: width + 1}.get(far) or draw(st.integers(1, width))
        body.append((row, column, draw(st.sampled_from(["web", "2048", "x", " y "]))))
    for row, column, text in header + [(top + row, column, text) for row, column, text in body]:
        cells.rows.append(row)
        cells.columns.append(column)
        cells.texts.append(text)
        cells.numeric.append(int(text == "2048"))
        if text == "x" and draw(st.booleans()):
            cells.kinds[(row, column)] = ("boolean", "TRUE")
        if text == " y " and draw(st.booleans()):
            cells.problems.append((row, column, "shows the error #N/A", "correct it"))
    if draw(st.integers(0, 4)) == 0:
        cells.merged.append(
            draw(st.sampled_from(["A2:B3", "C1:C9", "B2", "ZZ", "A1:A2", "A3:A3000"]))
        )
    return cells


def _copy(cells: _Cells) -> _Cells:
    return _Cells(
        array("i", cells.rows),
        array("i", cells.columns),
        list(cells.texts),
        array("b", cells.numeric),
        dict(cells.kinds),
        list(cells.problems),
        list(cells.merged),
    )


def _outcome(table: type, cells: _Cells) -> object:
    try:
        return table(Path("s.xlsx"), "Changes", cells).worksheet()
    except SheetError as error:
        return [str(problem) for problem in error.problems]


@settings(max_examples=300, deadline=None)
@given(cells=_cells())
def test_the_table_is_the_one_the_previous_build_made(cells: _Cells) -> None:
    assert _outcome(_Table, _copy(cells)) == _outcome(_PreviousTable, _copy(cells))
