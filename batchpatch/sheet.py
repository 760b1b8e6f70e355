"""Reading a CSV, TSV or XLSX sheet into validated, per-image patches.

Every cell is read as text (ids never become floats, ``1024`` never ``1024.0``), then typed
by its attribute.  Work is vectorised with pandas; the only per-row Python is building the
operation objects themselves.

Two shapes, told apart by the header:

* long: ``image_id, op, path, value``: one change a row, several rows an image allowed;
* wide: ``image_id`` plus a column an attribute; a blank cell means "no change" and the
  cell ``<remove>`` means "remove this attribute".
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
import pandas as pd

from batchpatch.checks import (
    FIRST_DATA_ROW,
    attribute_names,
    change_problems,
    column_problems,
    duplicate_columns,
    header_problems,
    invalid_rows,
    passive_columns,
    repeated_changes,
)
from batchpatch.errors import OptionsError, Problem, SheetError
from batchpatch.models import ImagePatch, JsonValue, Operation
from batchpatch.schema import BASE_ATTRIBUTES, OPS, REMOVE_MARKER, typed_value
from batchpatch.textfile import (
    Decoded,
    decode,
    delimiter_option,
    header_cells,
    sniff_delimiter,
)
from batchpatch.xlsx import Worksheet, read_worksheet

SheetFormat = Literal["csv", "tsv", "xlsx"]
Shape = Literal["long", "wide"]

_FORMATS: dict[str, SheetFormat] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "tsv",  # Excel's "Unicode Text" (UTF-16, tab-separated)
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
}



@dataclass(frozen=True)
class Sheet:
    """A loaded sheet: its source rows as text, and the patches they ask for.

    ``frame`` keeps the source columns exactly as read, for the report (written with
    ``encoding`` and ``delimiter``; ``encoding_label`` says how the encoding was chosen).
    ``warnings`` are located notes that do not stop a run (a change repeated verbatim).
    ``idle_rows`` are rows that ask for no change at all (a wide row with every cell
    blank, or a verbatim repeat).  ``invalid`` maps the rows left out (only with
    ``skip_invalid``) to the reason; an image with one invalid row is left out whole,
    since its patch is applied as one.
    """

    path: Path
    format: SheetFormat
    encoding: str | None
    sheet_name: str | None
    shape: Shape
    frame: pd.DataFrame
    patches: tuple[ImagePatch, ...]
    idle_rows: tuple[int, ...]
    invalid: Mapping[int, str] = field(default_factory=dict)
    first_row: int = FIRST_DATA_ROW
    delimiter: str = ","
    encoding_label: str = ""
    warnings: tuple[Problem, ...] = ()

    def row_number(self, position: int) -> int:
        """The row number a person sees for the 0-based source row ``position``."""
        return position + self.first_row

    @property
    def row_count(self) -> int:
        return len(self.frame)


def sheet_format(path: Path) -> SheetFormat:
    """The format of ``path`` by its extension, or an ``OptionsError`` saying which work."""
    try:
        return _FORMATS[path.suffix.lower()]
    except KeyError:
        known = ", ".join(sorted(_FORMATS))
        raise OptionsError(
            f"{path}: unsupported sheet type {path.suffix or '(no extension)'!r}"
            f" — save the sheet as one of {known}"
        ) from None


def read_sheet(path: str | Path, *, sheet_name: str | None = None,
               skip_invalid: bool = False, encoding: str | None = None,
               delimiter: str | None = None) -> Sheet:
    """Load ``path``, check every row, and turn it into one patch per image.

    ``encoding`` and ``delimiter`` force how a CSV/TSV file is read (see ``textfile``);
    by default both are told from the file, and only when certain.  Raises ``SheetError``
    with every located problem at once, or ``OptionsError`` when the file itself cannot be
    used.  With ``skip_invalid``, problems confined to rows leave those rows' images out
    (see ``Sheet.invalid``) instead.  Identical repeated changes are sent once and listed
    in ``Sheet.warnings``.
    """
    path = Path(path)
    fmt = sheet_format(path)
    if not path.is_file():
        raise OptionsError(f"{path}: no such file — check the path to the sheet")
    problems: list[Problem] = []
    text: _Delimited | None = None
    worksheet: Worksheet | None = None
    if fmt == "xlsx":
        if encoding is not None or delimiter is not None:
            raise OptionsError("--encoding and --delimiter apply only to CSV and TSV files")
        worksheet = read_worksheet(path, sheet_name)
        frame, chosen, skipped_lines = _read_xlsx(worksheet)
    else:
        if sheet_name is not None:
            raise OptionsError(f"--sheet {sheet_name!r} applies only to Excel workbooks")
        text = _read_delimited(path, fmt, encoding, delimiter)
        chosen, skipped_lines = None, text.skipped
        frame = _with_header(path, text.grid)
    shape, changes = _changes(path, frame, problems)
    changes, warnings = _without_repeats(path, changes, skipped_lines)
    problems += change_problems(str(path), changes, long=shape == "long")
    problems = [replace(p, row=p.row + skipped_lines) if p.row else p for p in problems]
    if worksheet is not None:  # located in Excel's own row numbers already
        problems += [*worksheet.problems, *worksheet.value_problems(
            str(path), *(changes[name].tolist() for name in ("row", "column", "attribute")))]
    last_row = len(frame) + FIRST_DATA_ROW - 1 + skipped_lines
    beyond_rows = any(not FIRST_DATA_ROW + skipped_lines <= p.row <= last_row for p in problems)
    if problems and (not skip_invalid or beyond_rows):
        raise SheetError(problems)
    invalid = invalid_rows(changes, problems, first_row=FIRST_DATA_ROW + skipped_lines)
    valid = changes[~changes["row"].isin(list(invalid))]
    patches, idle = _group(valid, len(frame), invalid)
    return Sheet(path, fmt, text.decoded.encoding if text else None, chosen, shape, frame,
                 patches, idle, invalid, FIRST_DATA_ROW + skipped_lines,
                 delimiter=text.delimiter if text else ",",
                 encoding_label=text.decoded.label if text else "",
                 warnings=tuple(warnings))


def _without_repeats(path: Path, changes: pd.DataFrame,
                     skipped_lines: int) -> tuple[pd.DataFrame, list[Problem]]:
    """``changes`` with identical repeats dropped (each is sent once), and a warning each."""
    labels, warnings = repeated_changes(str(path), changes)
    warnings = [replace(w, row=w.row + skipped_lines) for w in warnings]
    return changes.drop(index=labels), warnings


@dataclass(frozen=True)
class _Delimited:
    """A CSV/TSV file read: its grid of cells (header first), how it was decoded, its
    delimiter, and the blank lines above the header (so rows are numbered as shown)."""

    grid: pd.DataFrame
    decoded: Decoded
    delimiter: str
    skipped: int


def _read_delimited(path: Path, fmt: SheetFormat, encoding: str | None,
                    delimiter: str | None) -> _Delimited:
    """Decode, find the delimiter, check the header, then parse only the named columns.

    Trailing empty header cells (Excel exports often end every line in hundreds of
    commas) are dropped before any frame is built, so they cost nothing; the cells under
    them must be empty.
    """
    decoded = _decode(path, path.read_bytes(), encoding)
    text = decoded.text
    if not text.strip():
        _raise(_whole_file(path, "the sheet is empty", "add a header row and at least one change"))
    body = text.lstrip("\r\n")
    skipped = text[: len(text) - len(body)].count("\n")
    default = "\t" if fmt == "tsv" else ","
    separator = delimiter_option(delimiter) if delimiter is not None else sniff_delimiter(
        body.split("\n", 1)[0], default)
    header = header_cells(body, separator)
    kept = len(header)
    while kept > 1 and not header[kept - 1].strip():
        kept -= 1
    problems = header_problems(str(path), [cell.strip() for cell in header[:kept]])
    if "\x00" in body:
        problems += _nul_cells(path, body, separator, header, skipped)
    if kept < len(header):
        problems += _cells_beyond_header(path, body, separator, kept, len(header), skipped)
    if problems:
        raise SheetError(problems)
    if kept > _WIDE:
        grid = _parse_wide(path, body, separator, kept, skipped)
    else:
        grid = _parse(path, body.encode("utf-8"), separator,
                      kept if kept < len(header) else None, skipped)
    return _Delimited(grid, decoded, separator, skipped)


#: Above this many columns a sheet is parsed into one block of cells: pandas' per-column
#: work (a dtype conversion, an index) would cost seconds per 10,000 columns.
_WIDE = 500


def _parse_wide(path: Path, body: str, separator: str, columns: int,
                skipped: int) -> pd.DataFrame:
    """A very wide sheet's cells as one 2-D block; short rows padded with empty cells."""
    rows = []
    for line, cells in _records(body, separator):
        if len(cells) > columns and any(cell.strip() for cell in cells[columns:]):
            _raise(Problem(str(path), line + skipped, "",
                           f"the row does not fit the header ({len(cells)} cells, "
                           f"the header has {columns})",
                           "make every row have as many cells as the header, quoting cells "
                           "that contain the separator"))
        rows.append(cells[:columns] + [""] * (columns - len(cells)))
    return pd.DataFrame(np.array(rows, dtype=object), dtype=object)


def _parse(path: Path, data: bytes, separator: str, columns: int | None,
           skipped: int) -> pd.DataFrame:
    """Every cell as text; the first ``columns`` only when given."""
    options: dict[str, Any] = {"sep": separator, "dtype": str, "keep_default_na": False,
                               "header": None, "skip_blank_lines": False}
    if columns is not None:
        options["usecols"] = range(columns)
    grid: pd.DataFrame
    try:
        grid = pd.read_csv(io.BytesIO(data), engine="pyarrow", **options)
    except Exception:  # pyarrow's messages do not say where; ask the C parser, which does
        try:
            grid = pd.read_csv(io.BytesIO(data), engine="c", **options)
        except (pd.errors.ParserError, ValueError) as error:
            line = re.search(r"line (\d+)", str(error))
            _raise(
                Problem(str(path), int(line.group(1)) + skipped if line else 0, "",
                        f"the row does not fit the header ({_first_line(error)})",
                        "make every row have as many cells as the header, quoting cells "
                        "that contain the separator")
            )
    return grid


def _records(body: str, separator: str) -> Iterator[tuple[int, list[str]]]:
    """``(line the record starts on, cells)`` for every record of ``body``."""
    reader = csv.reader(io.StringIO(body), delimiter=separator)
    start = 1
    for cells in reader:
        yield start, cells
        start = reader.line_num + 1


def _nul_cells(path: Path, body: str, separator: str, header: list[str],
               skipped: int) -> list[Problem]:
    """Each cell holding a NUL character, at its row and column."""
    return [
        Problem(str(path), line + skipped, _column_name(header, position),
                "the cell holds a NUL character (byte 0, invisible)",
                "delete it; if many cells hold them, save the sheet again as 'CSV UTF-8'")
        for line, cells in _records(body, separator)
        for position, cell in enumerate(cells) if "\x00" in cell
    ]


def _cells_beyond_header(path: Path, body: str, separator: str, kept: int, total: int,
                         skipped: int) -> list[Problem]:
    """Cells with text under the header cells dropped as empty.  Most lines end in exactly
    the delimiters of those empty cells, which is checked without parsing; only otherwise
    is every record parsed."""
    tail = separator * (total - kept)
    lines = body.split("\n")
    if all(line.rstrip("\r").endswith(tail) or not line.strip() for line in lines):
        return []
    return [
        Problem(str(path), line + skipped, f"#{kept + offset + 1}",
                f"the cell holds {cell.strip()[:40]!r}, but its column has no header",
                "give the column a header, or clear the cell")
        for line, cells in _records(body, separator) if line > 1
        for offset, cell in enumerate(cells[kept:]) if cell.strip()
    ]


def _column_name(header: list[str], position: int) -> str:
    name = header[position].strip() if position < len(header) else ""
    return name or f"#{position + 1}"


def _with_header(path: Path, grid: pd.DataFrame) -> pd.DataFrame:
    """The first row of ``grid`` made the header: stripped, checked to name each column once."""
    if grid.empty:
        _raise(_whole_file(path, "the sheet is empty", "add a header row and at least one change"))
    header = [str(cell).strip() for cell in grid.iloc[0]]
    frame = grid.iloc[1:].reset_index(drop=True)
    if frame.empty:
        _raise(Problem(str(path), 0, "", "the sheet has a header but no rows",
                       "add at least one change under the header"))
    duplicates = duplicate_columns(str(path), header)
    if duplicates:
        raise SheetError(duplicates)
    frame.columns = pd.Index(header, dtype=object)  # plain strings: fast to walk
    return frame


def _decode(path: Path, raw: bytes, encoding: str | None) -> Decoded:
    """The file's text, decoded only in an encoding that is certain (``textfile.decode``)."""
    return decode(str(path), raw, encoding)


def _read_xlsx(worksheet: Worksheet) -> tuple[pd.DataFrame, str, int]:
    """The frame of ``worksheet``, its name, and how many rows stand above its header."""
    frame = pd.DataFrame(dict(zip(worksheet.header, worksheet.columns, strict=True)),
                         dtype=str)
    return frame, worksheet.name, worksheet.first_row - FIRST_DATA_ROW


def _changes(path: Path, frame: pd.DataFrame,
             problems: list[Problem]) -> tuple[Shape, pd.DataFrame]:
    """One row per requested change: ``row, image_id, op, attribute, value, column, typed``.

    Problems found on the way are added to ``problems``.
    """
    lowered = {column.lower(): column for column in frame.columns}
    if "image_id" not in lowered:
        _raise(Problem(str(path), 1, "", "no image_id column",
                       "name the column holding the image ids 'image_id' in the header row"))
    long = "op" in lowered and "path" in lowered
    problems += column_problems(str(path), list(frame.columns), long)
    if long:
        return "long", _long_changes(path, frame, lowered, problems)
    return "wide", _wide_changes(path, frame, lowered, problems)


def _long_changes(path: Path, frame: pd.DataFrame, lowered: dict[str, str],
                  problems: list[Problem]) -> pd.DataFrame:
    id_column, op_column, path_column = lowered["image_id"], lowered["op"], lowered["path"]
    value_column = lowered.get("value")
    values = frame[value_column] if value_column else pd.Series("", index=frame.index)
    changes = pd.DataFrame(
        {
            "row": np.arange(len(frame)),
            "image_id": frame[id_column].str.strip().str.lower(),
            "op": frame[op_column].str.strip().str.lower(),
            "attribute": frame[path_column].str.strip().str.lstrip("/"),
            "value": values.astype(str),
            "column": value_column or "value",
            "id_column": id_column,
            "attribute_column": path_column,
        }
    )
    blank_row = (changes[["image_id", "op", "attribute"]] == "").all(axis=1) & (
        changes["value"].str.strip() == "")
    changes = changes[~blank_row]  # an empty line asks for nothing
    problems += _common_problems(path, changes, id_column)
    problems += _located(path, changes, ~changes["op"].isin(OPS), op_column,
                         "op must be add, replace or remove",
                         "write one of add, replace, remove")
    problems += _located(path, changes, changes["attribute"] == "", path_column,
                         "path is empty", "write the attribute to change, e.g. /name")
    needs_value = changes["op"].isin(("add", "replace")) & (changes["value"].str.strip() == "")
    problems += _located(path, changes, needs_value, value_column or "value",
                         "add and replace need a value",
                         "fill in the value, or use op remove to delete the attribute")
    stray_value = (changes["op"] == "remove") & (changes["value"].str.strip() != "")
    problems += _located(path, changes, stray_value, value_column or "value",
                         "remove takes no value",
                         "clear the value, or use add or replace to set one")
    return _typed(path, changes, problems)


def _wide_changes(path: Path, frame: pd.DataFrame, lowered: dict[str, str],
                  problems: list[Problem]) -> pd.DataFrame:
    id_column = lowered["image_id"]
    passive = passive_columns(list(frame.columns))
    attributes = [column for column in frame.columns
                  if column != id_column and column not in passive]
    if not attributes:
        _raise(Problem(str(path), 1, "", "no attribute columns next to image_id",
                       "add a column per attribute to change, e.g. name or __description"))
    melted = _cells_by_row(frame, id_column, attributes)
    removing = melted["value"].str.strip().str.lower() == REMOVE_MARKER
    melted["attribute"] = melted["column"].map(attribute_names(list(frame.columns)))
    melted["op"] = np.where(
        removing, "remove",
        np.where(melted["attribute"].isin(BASE_ATTRIBUTES), "replace", "add"),
    )
    melted.loc[removing, "value"] = ""
    changes = melted.reset_index(drop=True).assign(id_column=id_column)
    changes["attribute_column"] = changes["column"]
    problems += _common_problems(path, changes, id_column)
    return _typed(path, changes, problems)


def _cells_by_row(frame: pd.DataFrame, id_column: str, attributes: list[str]) -> pd.DataFrame:
    """``row, image_id, column, value`` for every non-blank attribute cell, in sheet order
    (row by row, left to right).  Built from one 2-D array, not column by column, so 10**5
    columns cost what 10**5 cells do."""
    values = frame[attributes].to_numpy(dtype=object)
    rows, width = values.shape
    melted = pd.DataFrame({
        "row": np.repeat(np.arange(rows), width),
        "image_id": np.repeat(frame[id_column].str.strip().str.lower().to_numpy(), width),
        "column": np.tile(np.array(attributes, dtype=object), rows),
        "value": pd.Series(values.ravel(), dtype=object).astype(str),
    })
    return melted[melted["value"].str.strip() != ""]


def _common_problems(path: Path, changes: pd.DataFrame, id_column: str) -> list[Problem]:
    return _located(path, changes, changes["image_id"] == "", id_column,
                    "image_id is empty", "fill in the image's id, or delete the row")


def _typed(path: Path, changes: pd.DataFrame, problems: list[Problem]) -> pd.DataFrame:
    """Add the ``typed`` column: the JSON value to send (None where it cannot be typed)."""
    typed: list[JsonValue | None] = [None] * len(changes)
    for position, (row, op, attribute, value, column) in enumerate(
        zip(*(changes[name].tolist() for name in ("row", "op", "attribute", "value", "column")),
            strict=True)
    ):
        if op == "remove" or op not in OPS or not attribute or not value.strip():
            continue
        try:
            typed[position] = typed_value(attribute, value)
        except ValueError as error:
            message, _, fix = str(error).partition(" — ")
            problems.append(Problem(str(path), int(row) + FIRST_DATA_ROW, column, message, fix))
    return changes.assign(typed=pd.Series(typed, index=changes.index, dtype=object))


def _group(
    changes: pd.DataFrame, row_count: int, invalid: Mapping[int, str]
) -> tuple[tuple[ImagePatch, ...], tuple[int, ...]]:
    """One patch per image, images in order of first appearance, changes in sheet order;
    and the rows that ask for nothing (neither a change nor invalid)."""
    ops = [
        Operation(op, "/" + attribute, value)
        for op, attribute, value in zip(
            changes["op"].tolist(), changes["attribute"].tolist(), changes["typed"].tolist(),
            strict=True,
        )
    ]
    rows = changes["row"].to_numpy()
    row_list = rows.tolist()
    # Vectorised grouping: codes number the images in order of first appearance (the changes
    # are in sheet order), a stable sort keeps each image's changes in sheet order.
    codes, images = pd.factorize(changes["image_id"], sort=False)
    order = np.argsort(codes, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(codes[order])) + 1) if len(order) else []
    patches = [
        ImagePatch(str(image_id), tuple(ops[p] for p in positions),
                   tuple(row_list[p] for p in positions))
        for image_id, positions in zip(images.tolist(), (g.tolist() for g in groups),
                                       strict=True)
    ]
    busy = np.zeros(row_count, dtype=bool)
    busy[rows] = True
    busy[list(invalid)] = True
    return tuple(patches), tuple(int(row) for row in np.flatnonzero(~busy))


def _located(
    path: Path, changes: pd.DataFrame, mask: pd.Series, column: str, message: str, fix: str
) -> list[Problem]:
    return [
        Problem(str(path), int(row) + FIRST_DATA_ROW, column, message, fix)
        for row in changes.loc[mask, "row"]
    ]


def _whole_file(path: Path, message: str, fix: str) -> Problem:
    return Problem(str(path), 0, "", message, fix)


def _raise(problem: Problem) -> NoReturn:
    raise SheetError([problem])


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
