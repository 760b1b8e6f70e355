"""Reading a CSV, TSV or XLSX sheet into validated, per-image patches.

One direction (see ``grid``): a reader turns the file into a ``Grid`` of text cells
(``textfile`` for CSV/TSV, ``xlsx`` for workbooks: every detail of the file format stays
there), this module turns the grid into ``checks.Changes``, ``checks`` finds every located
problem, and this module groups the valid changes into one patch per image.  Every cell is
read as text (ids never become floats, ``1024`` never ``1024.0``), then typed by its
attribute.  Work is vectorised with pandas; the only per-row Python is building the
operation objects themselves.

Two shapes, told apart by the header:

* long: ``image_id, op, path, value``: one change a row, several rows an image allowed;
* wide: ``image_id`` plus a column an attribute; a blank cell means "no change" and the
  cell ``<remove>`` means "remove this attribute".
"""

from __future__ import annotations

import contextlib
import gc
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from batchpatch.checks import (
    CHANGE_COLUMNS,
    Changes,
    Shape,
    attribute_names,
    check,
    distinct,
    factorized,
    grouped_order,
    grouped_sizes,
    invalid_rows,
    passive_columns,
)
from batchpatch.errors import OptionsError, Problem, Reason, SheetError
from batchpatch.grid import Grid
from batchpatch.models import ImagePatch, JsonValue, Operation
from batchpatch.schema import (
    IMS_SCHEMA,
    OPS,
    REMOVE_MARKER,
    RENAME,
    Schema,
    UntypedValue,
    is_tag,
)
from batchpatch.sheetwrite import unquoted
from batchpatch.textfile import read_grid as read_text_grid
from batchpatch.xlsx import read_grid as read_workbook_grid

SheetFormat = Literal["csv", "tsv", "xlsx"]

_FORMATS: dict[str, SheetFormat] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "tsv",  # Excel's "Unicode Text" (UTF-16, tab-separated)
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
}

#: The first data row of a sheet with nothing above its header: row 1 is the header.
FIRST_DATA_ROW = 2


@dataclass(frozen=True)
class Sheet:
    """A loaded sheet: its source rows as text, and the patches they ask for.

    ``frame`` keeps the source columns exactly as read, for the report (written with
    ``encoding`` and ``delimiter``; ``encoding_label`` says how the encoding was chosen).
    ``warnings`` are located notes that do not stop a run (a change repeated verbatim).
    ``idle_rows`` are rows that ask for no change at all (a wide row with every cell
    blank, or a verbatim repeat).  ``invalid`` maps the rows left out (only with
    ``skip_invalid``) to the reason; an image with one invalid row is left out whole,
    since its patch is applied as one.  ``idle_rows``, ``invalid`` and the patches'
    ``sources`` are spreadsheet rows, as a person sees them; ``frame``'s first row is
    spreadsheet row ``first_row`` (``rows`` lists them all, in ``frame``'s order).
    ``numbers``: a workbook's cells written as numbers (``grid.Grid.numbers``).
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
    #: Read with ``skip_invalid``: what the plan finds cannot be done (the tag limit, a
    #: rename onto a taken key) leaves those images out too, instead of stopping the run.
    skip_invalid: bool = False
    numbers: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    #: The attribute rules the sheet was checked by (IMS's unless the caller chose others).
    schema: Schema = IMS_SCHEMA

    @property
    def rows(self) -> range:
        """The spreadsheet row of each of ``frame``'s rows, in order: the one place that
        turns a position in the frame into the row a person sees."""
        return range(self.first_row, self.first_row + len(self.frame))

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


def read_sheet(
    path: str | Path,
    *,
    sheet_name: str | None = None,
    skip_invalid: bool = False,
    encoding: str | None = None,
    delimiter: str | None = None,
    schema: Schema = IMS_SCHEMA,
) -> Sheet:
    """Load ``path``, check every row by ``schema``'s rules, and turn it into one patch per
    image.

    ``encoding`` and ``delimiter`` force how a CSV/TSV file is read (see ``textfile``);
    by default both are told from the file, and only when certain.  Raises ``SheetError``
    with every located problem at once, or ``OptionsError`` when the file itself cannot be
    used.  With ``skip_invalid``, problems confined to rows leave those rows' images out
    (see ``Sheet.invalid``) instead.  Identical repeated changes are sent once and listed
    in ``Sheet.warnings``.
    """
    path = Path(path)
    with _collector_paused():
        return _read_sheet(path, sheet_name, skip_invalid, encoding, delimiter, schema)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a sheet is read: building a million
    operations and their patches would otherwise run it hundreds of times, each over every
    object built so far (nothing read here forms a cycle).  Turned back on, its first
    collection would still walk every object built meanwhile (a third of a second for a
    million rows), so they are handed to the oldest generation unwalked first: frozen
    (which also resets the young generation's count) and thawed into the oldest one —
    unless the caller froze objects of its own, which thawing would thaw too."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            if not gc.get_freeze_count():
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def _read_sheet(
    path: Path,
    sheet_name: str | None,
    skip_invalid: bool,
    encoding: str | None,
    delimiter: str | None,
    schema: Schema,
) -> Sheet:
    grid = read_grid(path, sheet_name=sheet_name, encoding=encoding, delimiter=delimiter)
    changes = grid_changes(str(path), grid, schema)
    checked = check(str(path), changes, grid, schema)
    problems = checked.problems
    outside = any(not grid.first_row <= p.row <= grid.last_row for p in problems)
    if problems and (not skip_invalid or outside):
        raise SheetError(problems)
    invalid = invalid_rows(changes.frame, problems)
    shape, warnings, valid = changes.shape, tuple(checked.warnings), checked.changes.frame
    del changes, checked  # the frames a million rows hold, before the patches are built
    if invalid:
        valid = valid[~valid["row"].isin(list(invalid))]
    valid = valid[list(_GROUPED_BY)]  # the other columns' memory is free for the patches
    pa.default_memory_pool().release_unused()  # and arrow's, which its pool would keep
    patches, idle = _group(valid, grid, invalid)
    del valid
    return Sheet(
        path,
        grid.format,
        grid.encoding,
        grid.sheet_name,
        shape,
        grid.frame,
        patches,
        idle,
        invalid,
        grid.first_row,
        delimiter=grid.delimiter,
        encoding_label=grid.encoding_label,
        warnings=warnings,
        skip_invalid=skip_invalid,
        numbers=grid.numbers,
        schema=schema,
    )


def read_grid(
    path: Path,
    *,
    sheet_name: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
) -> Grid:
    """The cells of ``path``, read by the reader of its format (see ``sheet_format``)."""
    fmt = sheet_format(path)
    if not path.is_file():
        raise OptionsError(f"{path}: no such file — check the path to the sheet")
    if fmt == "xlsx":
        if encoding is not None or delimiter is not None:
            raise OptionsError(
                wording=lambda name: (
                    f"{name('encoding', '')} and {name('delimiter', '')} apply only to CSV and "
                    "TSV files"
                )
            )
        return read_workbook_grid(path, sheet_name)
    if sheet_name is not None:
        raise OptionsError.about(
            "sheet_name", repr(sheet_name), lambda named: f"{named} applies only to Excel workbooks"
        )
    return read_text_grid(path, fmt, encoding, delimiter)


def grid_changes(file: str, grid: Grid, schema: Schema = IMS_SCHEMA) -> Changes:
    """Every change the cells of ``grid`` ask for, told apart by the header: a long sheet
    has ``op`` and ``path`` columns, a wide one a column per attribute."""
    frame = grid.frame
    lowered = {column.lower(): column for column in frame.columns}
    if "image_id" not in lowered:
        _raise(
            file,
            1,
            Reason(
                "no image_id column",
                "name the column holding the image ids 'image_id' in the header row",
            ),
        )
    if "op" in lowered and "path" in lowered:
        return _long_changes(grid, lowered, schema)
    return _wide_changes(file, grid, lowered["image_id"], schema)


def _long_changes(grid: Grid, lowered: dict[str, str], schema: Schema) -> Changes:
    frame = grid.frame
    id_column, op_column, path_column = lowered["image_id"], lowered["op"], lowered["path"]
    value_column = lowered.get("value")
    values = frame[value_column] if value_column else pd.Series("", index=frame.index)
    cells = pd.DataFrame(
        {
            "row": np.arange(len(frame)) + grid.first_row,
            "image_id": _trimmed(frame[id_column]),
            "op": _trimmed(frame[op_column]),
            "attribute": frame[path_column].str.strip().str.lstrip("/"),
            "value": values.astype(str),
            "column": _constant(value_column or "value", len(frame)),
            "attribute_column": _constant(path_column, len(frame)),
        }
    )
    blank_row = (cells[["image_id", "op", "attribute"]] == "").all(axis=1) & (
        cells["value"].str.strip() == ""
    )
    # a blank line asks for nothing
    if blank_row.any():
        cells = cells[~blank_row]
    return _changes(cells, "long", id_column, grid, schema, op_column)


def _trimmed(cells: pd.Series[Any]) -> pd.Series[Any]:
    """``cells`` trimmed and lower-cased; the column itself when it is so already (a
    million ids held once, not twice), told at once when no cell holds anything but
    printable ASCII other than capitals (nothing to trim, nothing to lower)."""
    if _only_lower_ascii(cells):
        return cells
    trimmed = cells.str.strip().str.lower()
    return cells if bool((trimmed == cells).all()) else trimmed


#: A character that trimming or lower-casing may change: anything but printable ASCII
#: other than the capitals (RE2 spelling).
_MAY_CHANGE = "[^!-@\\[-~]"


def _only_lower_ascii(cells: pd.Series[Any]) -> bool:
    """True when no cell holds a character ``_MAY_CHANGE`` names (False when unsure)."""
    try:
        array = pa.array(cells.array, pa.string())
    except (UnicodeError, pa.ArrowException, TypeError):
        return False
    return not pc.any(pc.match_substring_regex(array, _MAY_CHANGE)).as_py()


def _constant(text: str, length: int) -> Any:
    """A column holding ``text`` ``length`` times, in a byte a cell (a long sheet's header
    names, on every change)."""
    return pd.Categorical.from_codes(np.zeros(length, dtype=np.int8), categories=pd.Index([text]))


def _wide_changes(file: str, grid: Grid, id_column: str, schema: Schema) -> Changes:
    frame = grid.frame
    passive = passive_columns(list(frame.columns))
    attributes = [
        column for column in frame.columns if column != id_column and column not in passive
    ]
    if not attributes:
        _raise(
            file,
            1,
            Reason(
                "no attribute columns next to image_id",
                "add a column per attribute to change, e.g. name or __description",
            ),
        )
    cells = _cells_by_row(grid, id_column, attributes)
    removing = cells["value"].str.strip().str.lower() == REMOVE_MARKER
    cells["attribute"], cells["op"] = _attributes_and_ops(
        cells["column"], removing, list(frame.columns), schema
    )
    cells.loc[removing, "value"] = ""
    cells = cells.reset_index(drop=True)
    cells["attribute_column"] = cells["column"]
    return _changes(cells, "wide", id_column, grid, schema)


def _attributes_and_ops(
    columns: pd.Series[Any], removing: pd.Series[Any], header: list[str], schema: Schema
) -> tuple[pd.Series[Any], pd.Series[Any]]:
    """The attribute each wide cell changes (its column's) and its op: ``remove`` where
    the cell says so, else ``replace`` for a base attribute and ``add`` for any other.
    Worked out once per column and taken by arrow for the cells (``str`` columns)."""
    codes, distinct_columns = pd.factorize(columns)
    names = attribute_names(header)
    attributes = [names[column] for column in distinct_columns.tolist()]
    base = np.array([attribute in schema.base_attributes for attribute in attributes], bool)
    choices = np.where(removing.to_numpy(dtype=bool), 0, np.where(base[codes], 1, 2))
    texts = pa.array(attributes, pa.large_string()).take(codes)
    ops = pa.array(["remove", "replace", "add"], pa.large_string()).take(choices)
    return (
        pd.Series(texts, index=columns.index, dtype=str),
        pd.Series(ops, index=columns.index, dtype=str),
    )


def _cells_by_row(grid: Grid, id_column: str, attributes: list[str]) -> pd.DataFrame:
    """``row, image_id, column, value`` for every non-blank attribute cell, in sheet order
    (row by row, left to right).  Built from one 2-D array, not column by column, so 10**5
    columns cost what 10**5 cells do."""
    frame = grid.frame
    if len(attributes) <= _ARROW_WIDTH and all(
        _is_arrow_text(frame[column]) for column in (id_column, *attributes)
    ):
        return _arrow_cells_by_row(grid, id_column, attributes)
    values = frame[attributes].to_numpy(dtype=object)
    rows, width = values.shape
    melted = pd.DataFrame(
        {
            "row": np.repeat(np.arange(rows) + grid.first_row, width),
            "image_id": np.repeat(frame[id_column].str.strip().str.lower().to_numpy(), width),
            "column": np.tile(np.array(attributes, dtype=object), rows),
            "value": pd.Series(values.ravel(), dtype=object).astype(str),
        }
    )
    return melted[melted["value"].str.strip() != ""]


#: Up to so many attribute columns, a wide sheet of arrow-backed text columns is melted
#: by arrow, column by column (beyond, the per-column work would outweigh the cells').
_ARROW_WIDTH = 256


def _is_arrow_text(column: pd.Series[Any]) -> bool:
    """Whether ``column`` is the ``str`` dtype on arrow storage (how a workbook is read)."""
    dtype = column.dtype
    return isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"


def _arrow_cells_by_row(grid: Grid, id_column: str, attributes: list[str]) -> pd.DataFrame:
    """``_cells_by_row`` for arrow-backed text columns: the same frame, the same dtypes,
    its text columns taken by arrow from the sheet's (no Python string per cell)."""
    frame = grid.frame
    rows, width = len(frame), len(attributes)
    dtype = frame[id_column].dtype
    cell_rows = np.repeat(np.arange(rows), width)
    cell_columns = np.tile(np.arange(width), rows)
    values = pa.concat_arrays([_large_text(frame[column]) for column in attributes])
    image_ids = _large_text(frame[id_column].str.strip().str.lower())
    names = pa.array(attributes, pa.large_string())
    melted = pd.DataFrame(
        {
            "row": cell_rows + grid.first_row,
            "image_id": pd.Series(image_ids.take(cell_rows), dtype=dtype),
            "column": pd.Series(names.take(cell_columns), dtype=dtype),
            "value": pd.Series(values.take(cell_columns * rows + cell_rows), dtype=dtype),
        }
    )
    return melted[melted["value"].str.strip() != ""]


def _large_text(column: pd.Series[Any]) -> pa.Array:
    """The arrow array under an arrow-backed text column, in one chunk."""
    array = pa.array(column.array, pa.large_string())
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _changes(
    cells: pd.DataFrame,
    shape: Shape,
    id_column: str,
    grid: Grid,
    schema: Schema,
    op_column: str = "op",
) -> Changes:
    """The one constructor of a sheet's ``Changes``: ``cells`` plus the ``typed`` column,
    the JSON value to send (None where there is none, or it cannot be typed: the checks
    say why)."""
    frame = cells.assign(
        typed=pd.Series(_typed_column(cells, schema), index=cells.index, dtype=object)
    )
    return Changes(
        frame[list(CHANGE_COLUMNS)],
        shape,
        id_column,
        tuple(grid.frame.columns),
        grid.header_row,
        op_column,
    )


def _typed_column(cells: pd.DataFrame, schema: Schema) -> npt.NDArray[Any]:
    """``_typed`` of every change, as an object array, worked out (op, attribute) by (op,
    attribute): a value the schema sends as the cell's text (``typed_as_text``) is that
    text when it is plainly not blank and not quoted (vectorised); any other value is
    asked once per distinct cell text."""
    values = cells["value"].to_numpy(dtype=object)
    typed = np.full(len(cells), None, dtype=object)
    as_text = getattr(schema, "typed_as_text", None)
    plain = (
        cells["value"].str.contains("[!-~]", regex=True) & ~cells["value"].str.startswith("'")
    ).to_numpy(dtype=bool)
    for op, attribute, positions in _by_op_and_attribute(cells):
        if op == RENAME or op not in OPS or op == "remove" or not attribute:
            pass  # asked below, once per distinct text
        elif is_tag(attribute):
            typed[positions] = values[positions]
            continue
        elif as_text is not None and as_text(attribute):
            fast = positions[plain[positions]]
            typed[fast] = values[fast]
            positions = positions[~plain[positions]]
        typed[positions] = _typed_values(op, attribute, values[positions], schema)
    return typed


def _typed_values(op: str, attribute: str, values: npt.NDArray[Any], schema: Schema) -> Any:
    """``_typed`` of ``values`` (cell texts of one op on one attribute): once per distinct."""
    codes, uniques = factorized(values)
    answers = np.empty(len(uniques), dtype=object)
    answers[:] = [_typed(op, attribute, value, schema) for value in uniques.tolist()]
    return answers[codes]


#: What a change's typed value follows from.
_TYPED_BY = ("op", "attribute", "value")


def _typed(op: str, attribute: str, value: str, schema: Schema) -> JsonValue | None:
    """The JSON value a change sends: None where there is none (``remove``), or it cannot
    be typed (the checks say why).  A tag may be set to the empty value (a long sheet's
    blank cell); a rename's value is the new key, without a leading ``/``."""
    if op == RENAME:
        return value.strip().lstrip("/") or None
    if op == "remove" or op not in OPS or not attribute:
        return None
    if is_tag(attribute):
        return value
    if not value.strip():
        return None
    try:
        return schema.typed_value(attribute, unquoted(value))
    except UntypedValue:
        return None


def operation_path(attribute: str) -> str:
    """The path an operation carries: ``/attribute`` for an attribute, ``tag:KEY`` as is."""
    return attribute if is_tag(attribute) else "/" + attribute


#: The columns of the valid changes the patches are built from.
_GROUPED_BY = ("row", "image_id", "op", "attribute", "typed")


def _group(
    changes: pd.DataFrame, grid: Grid, invalid: Mapping[int, str]
) -> tuple[tuple[ImagePatch, ...], tuple[int, ...]]:
    """One patch per image, images in order of first appearance, changes in sheet order;
    and the rows that ask for nothing (neither a change nor invalid), both as spreadsheet
    rows (what ``ImagePatch.sources`` holds).  Built from arrays: the image by image order
    from a stable sort of the codes numbering the images, each patch the next so many
    operations and rows of it (no slice or range object per image)."""
    codes, images = _image_codes(changes["image_id"])
    order, sizes = grouped_sizes(codes)
    del codes
    counts = sizes.tolist()
    operations = iter(_operations(changes)[order].tolist())
    rows = changes["row"].to_numpy()
    sources = iter(rows[order].tolist())
    del order
    patches = tuple(
        map(
            ImagePatch,
            images,
            map(tuple, map(itertools.islice, itertools.repeat(operations), counts)),
            map(tuple, map(itertools.islice, itertools.repeat(sources), counts)),
        )
    )
    every = np.arange(grid.first_row, grid.last_row + 1)
    busy = np.concatenate((rows, np.fromiter(invalid, dtype=np.int64, count=len(invalid))))
    idle = every[~np.isin(every, busy)]
    return patches, tuple(idle.tolist())


def _image_codes(image_ids: pd.Series[Any]) -> tuple[npt.NDArray[np.intp], list[str]]:
    """A code for each change's image, numbered in order of first appearance, and the
    images by code, as text."""
    codes, uniques = factorized(image_ids)
    return codes, [str(image_id) for image_id in uniques.tolist()]


def _by_op_and_attribute(
    changes: pd.DataFrame,
) -> Iterator[tuple[str, str, npt.NDArray[np.intp]]]:
    """Each distinct (op, attribute) of ``changes``, in order of first appearance, with the
    positions of its changes."""
    pair, firsts = distinct(changes["op"], changes["attribute"])
    order, groups = grouped_order(pair)
    heads = zip(
        changes["op"].iloc[firsts].tolist(), changes["attribute"].iloc[firsts].tolist(), strict=True
    )
    for (op, attribute), members in zip(heads, groups, strict=True):
        yield op, attribute, order[members.start : members.stop]


def _operations(changes: pd.DataFrame) -> npt.NDArray[Any]:
    """The ``Operation`` of each change, as an object array, made (op, attribute) by (op,
    attribute): the path once per attribute, no Python work per change but the object."""
    typed = changes["typed"].to_numpy(dtype=object)
    made = np.empty(len(changes), dtype=object)
    for op, attribute, positions in _by_op_and_attribute(changes):
        count = len(positions)
        made[positions] = list(
            map(
                Operation,
                itertools.repeat(op, count),
                itertools.repeat(operation_path(attribute), count),
                typed[positions].tolist(),
            )
        )
    return made


def _raise(file: str, row: int, reason: Reason) -> NoReturn:
    raise SheetError([Problem(file, row, "", reason)])
