"""What every sheet reader hands on: a ``Grid`` of text cells under a header.

A sheet is read in one direction: bytes → ``Grid`` (the reader: ``textfile`` for CSV/TSV,
``xlsx`` for workbooks, each holding every detail of its file format) → ``checks.Changes``
(``sheet``) → located problems (``checks``) → patches (``sheet``).  Past the reader nothing
knows about encodings, delimiters, byte-order marks or XML: only about the cells and the
spreadsheet rows they sit on (the header is row 1 of a sheet without blank rows above it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

from batchpatch.errors import Problem, Reason

CellKind = Literal["boolean", "percent", "duration"]


@dataclass(frozen=True, slots=True)
class CellNote:
    """A cell that is not plain text or a number where it was written (a workbook's
    logical value, a percentage, a duration): its text is what the program shows, which
    only some attributes can take.  ``what`` starts with the cell ("cell B2 holds the
    logical value TRUE"), ``fix`` says how to store it as text instead."""

    kind: CellKind
    what: str
    fix: str


@dataclass(frozen=True)
class Grid:
    """A sheet's cells, read: ``frame`` holds the data rows as text, one column per header
    cell (stripped, each named once); ``first_row`` is the spreadsheet row of the first
    data row (the header is the row above it).

    ``problems`` are the reader's located problems of single cells, which do not stop the
    reading (so every problem of a sheet is reported at once); ``notes`` remembers the cells
    written as something else than text, by (spreadsheet row, header name); ``numbers`` a
    workbook's cells written as plain numbers, by header name: their 0-based rows in
    ``frame`` (the report writes them as numbers again).  The other
    fields describe the file, so the report can be written like it: its ``format``, the
    ``encoding`` and ``delimiter`` of a text file (and how the encoding was chosen,
    ``encoding_label``), the worksheet ``sheet_name`` of a workbook.
    """

    frame: pd.DataFrame
    first_row: int
    format: Literal["csv", "tsv", "xlsx"]
    problems: tuple[Problem, ...] = ()
    notes: Mapping[tuple[int, str], CellNote] = field(default_factory=dict)
    encoding: str | None = None
    delimiter: str = ","
    encoding_label: str = ""
    sheet_name: str | None = None
    numbers: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def header(self) -> list[str]:
        return list(self.frame.columns)

    @property
    def header_row(self) -> int:
        return self.first_row - 1

    @property
    def last_row(self) -> int:
        return self.first_row + len(self.frame) - 1


def header_problems(file: str, header: list[str], row: int = 1) -> list[Problem]:
    """Empty and repeated header names, found before any frame is built from the rows."""
    empty = [
        Problem(
            file,
            row,
            f"#{position}",
            Reason("a column has no header", "name the column, or delete it"),
        )
        for position, column in enumerate(header, start=1)
        if not column
    ]
    return empty + duplicate_columns(file, header, row)


def duplicate_columns(file: str, header: list[str], row: int = 1) -> list[Problem]:
    """Columns that name the same thing (``name``, `` Name``, ``/name``): which one counts?
    Tag keys are case-sensitive: ``tag:Env`` and ``tag:env`` are two tags, two columns."""
    seen: dict[str, str] = {}
    problems = []
    for column in header:
        key = _column_key(column)
        if key and key in seen:
            problems.append(
                Problem(
                    file,
                    row,
                    column,
                    Reason(
                        f"column {seen[key]!r} appears more than once",
                        "keep one column per attribute",
                    ),
                )
            )
        seen.setdefault(key, column)
    return problems


def _column_key(column: str) -> str:
    """What a header names, for telling repeats: an attribute in any case, with or without
    a leading ``/``; a tag (``tag:KEY``) with its key as written."""
    name = column.lstrip("/")
    return name if name.startswith("tag:") else name.lower()


def whole_file(file: str, reason: Reason) -> Problem:
    """A problem of the file as a whole (row 0, no column)."""
    return Problem(file, 0, "", reason)


#: The reason of a sheet with nothing in it, and of one with a header only.
EMPTY = Reason("the sheet is empty", "add a header row and at least one change")
NO_ROWS = Reason("the sheet has a header but no rows", "add at least one change under the header")
