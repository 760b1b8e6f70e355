"""Writing the results report: the input's rows and columns, in its format, plus outcomes.

A CSV/TSV report is plain text.  An XLSX report is a sheet to open: a bold header row that
stays in view, a filter over the data, columns as wide as their cells (within bounds),
``before``/``after``/``error_message`` wrapped, the ``status`` cell coloured by outcome,
numbers the input held as numbers written as numbers, ids as text.  It replaces the
worksheet that was read (same name, same place); the workbook's other sheets are kept,
part for part (``xlsxinto``), in memory that does not grow with the rows.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import itertools
import os
import re
import zipfile
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from batchpatch.errors import OptionsError
from batchpatch.files import atomic_write, trial_write
from batchpatch.models import Outcome, Status
from batchpatch.textfile import encode_report, encode_utf8_report
from batchpatch.values import value
from batchpatch.xlsx import check_every_part, sheet_names
from batchpatch.xlsxinto import CannotCopy, Results, Style, check_parts, write_into

if TYPE_CHECKING:  # the sheet reader imports this module for the columns below
    from batchpatch.sheet import Sheet

#: Leading characters that make Excel or LibreOffice treat a cell as a formula (OWASP CSV
#: injection): the cell gets a leading apostrophe so it is shown as text, never run.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


def default_report_path(sheet_path: Path, *, dry_run: bool = False) -> Path:
    """``changes.csv`` → ``changes.results.csv``, beside the input; a dry run's report is
    ``changes.dryrun.csv``, so it never replaces the record of what a real run sent."""
    kind = "dryrun" if dry_run else "results"
    return sheet_path.with_name(f"{sheet_path.stem}.{kind}{sheet_path.suffix}")


#: Control characters a spreadsheet file cannot hold (XLSX refuses them outright), and lone
#: UTF-16 surrogates (a JSON answer can hold them; no file encoding can): in a report they
#: are shown as U+FFFD.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")

#: What Excel refuses in a worksheet name, and its longest name.
_SHEET_NAME_REFUSED = re.compile(r"[\\/?*\[\]:]")
_SHEET_NAME_LENGTH = 31


def neutralise(cell: str) -> str:
    """``cell`` made safe to open in a spreadsheet program (numbers stay as they are)."""
    cell = _CONTROL.sub("\ufffd", cell)
    if cell.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


#: What ``neutralised`` looks for at once: a control character (RE2 spelling), and the
#: formula characters a cell may start with.
_RISKY = "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f]"


def neutralised(cells: list[str]) -> list[str]:
    """``neutralise`` of each of ``cells``, asked only of the cells that need it: the
    others (nearly all) are found at once by pyarrow, so a million cells cost no Python
    call each.  Cells that cannot be made UTF-8 (a lone surrogate) are asked one by one."""
    try:
        array = pa.array(cells, pa.string())
    except (UnicodeError, pa.ArrowException, TypeError):
        return [neutralise(cell) for cell in cells]
    risky = pc.match_substring_regex(array, _RISKY)
    for start in _FORMULA_START:
        risky = pc.or_(risky, pc.starts_with(array, start))
    safe = list(cells)
    for position in np.flatnonzero(risky.to_numpy(zero_copy_only=False)).tolist():
        safe[position] = neutralise(cells[position])
    return safe


def worksheet_name(name: str | None) -> str:
    """The report's worksheet name: the input's, made one Excel accepts (no ``\\ / ? * [ ] :``
    nor control characters, no apostrophe at either end, 31 characters at most, not the
    reserved ``History``); ``results`` when nothing is left."""
    cleaned = _SHEET_NAME_REFUSED.sub("_", _CONTROL.sub("_", name or ""))
    cleaned = cleaned[:_SHEET_NAME_LENGTH].strip("'").strip()
    if not cleaned:
        return "results"
    return "History_" if cleaned.lower() == "history" else cleaned


@value
class RowResult:
    """What happened to one source row, and its attributes before and after, as text."""

    outcome: Outcome
    before: str = ""
    after: str = ""


def _whole(values: list[Any]) -> Any:
    return values  # whole numbers, None where there is none: Int64 in ``report_frame``


def _texts(values: list[Any]) -> Any:
    return neutralised(values)


def _words(values: list[Any]) -> Any:
    return list(map(str, values))


#: The result columns a report adds after the source columns, in order, each with the cell
#: it holds for a row (the path of the attribute holding it) and how a column
#: of them is stored.  The one definition: every other use (``RESULT_COLUMNS``,
#: ``REPORT_MARKERS``, the reader's ``fed_back_results``) derives from it.
_RESULTS: dict[str, tuple[str, Callable[[list[Any]], Any]]] = {
    "status": ("outcome.status", _words),
    "http_status": ("outcome.http_status", _whole),
    "error_code": ("outcome.error_code", _texts),
    "error_message": ("outcome.error_message", _texts),
    "request_id": ("outcome.request_id", _texts),
    "attempts": ("outcome.attempts", _whole),
    "elapsed_ms": ("outcome.elapsed_ms", _whole),
    "before": ("before", _texts),
    "after": ("after", _texts),
}


def _result_cells(rows: Sequence[RowResult]) -> Iterator[tuple[str, list[Any], Callable[..., Any]]]:
    """Each result column's name, its cells (one per row, as ``_RESULTS`` reads them) and
    how it is stored; the outcomes are taken out of the rows once, then read field by field
    (a getter of one attribute: C speed over a million rows)."""
    outcomes = list(map(attrgetter("outcome"), rows))
    for name, (path, stored) in _RESULTS.items():
        owner, _, field = path.rpartition(".")
        cells = list(map(attrgetter(field), outcomes if owner else rows))
        yield name, cells, stored


#: The result columns, in the order the report writes them after the source columns.
RESULT_COLUMNS: tuple[str, ...] = tuple(_RESULTS)
#: The result columns of whole numbers.
_NUMBERS = frozenset(name for name, (_, stored) in _RESULTS.items() if stored is _whole)

#: Result columns whose names are plain words a sheet may also use as attributes (custom
#: keys ``before``/``after``): they alone do not make a header a report's.
_COMMON_WORDS = frozenset({"before", "after"})

#: A header holding all of these is a report fed back in as a sheet.
REPORT_MARKERS = frozenset(RESULT_COLUMNS) - _COMMON_WORDS

#: The report keeps an input column named like a result column (``after``) as
#: ``after (input)``.
INPUT_SUFFIX = " (input)"


def is_report(header: Collection[str]) -> bool:
    """True when ``header`` is a report's: it holds every marker column (any case)."""
    return {column.lower() for column in header} >= REPORT_MARKERS


def fed_back_results(header: Collection[str]) -> set[str]:
    """The result columns of a report fed back in as a sheet (none for any other header):
    never changes to send, and replaced by the new results in the next report."""
    if not is_report(header):
        return set()
    return {column for column in header if column.lower() in RESULT_COLUMNS}


def report_frame(sheet: Sheet, rows: Sequence[RowResult]) -> pd.DataFrame:
    """The source columns (made safe), then the result columns; ``rows`` are in sheet order,
    one for each of ``sheet.rows``."""
    columns = report_columns(sheet, rows)
    results = {name: columns.pop(name) for name in RESULT_COLUMNS}
    frame = pd.DataFrame(columns, index=range(sheet.row_count))
    for name, values in results.items():
        frame[name] = pd.array(values, dtype="Int64") if name in _NUMBERS else values
    return frame


def report_columns(sheet: Sheet, rows: Sequence[RowResult]) -> dict[str, list[Any]]:
    """``report_frame``'s columns as lists of cells (None for a missing number), without
    the frame: what the CSV report is written from."""
    source = sheet.frame.drop(columns=sorted(fed_back_results(list(sheet.frame.columns))))
    columns = {
        _kept_name(str(column)): _source_cells(sheet, str(column), source[column])
        for column in source
    }
    for name, cells, stored in _result_cells(rows):
        columns[name] = stored(cells)
    return columns


def _source_cells(sheet: Sheet, column: str, cells: pd.Series[Any]) -> list[Any]:
    """A source column's cells made safe; in a workbook, the cells written as numbers are
    numbers again (never in the id column: an id is text, even one Excel made a number)."""
    texts = cells.astype(str).tolist()
    safe: list[Any] = neutralised(texts)
    if sheet.format == "xlsx" and column.lower() != "image_id":
        for position in sheet.numbers.get(column, ()):
            if position < len(texts):
                safe[position] = _as_number(texts[position])
    return safe


def _as_number(text: str) -> int | float | str:
    """The digits the reader made of a number cell, as that number (text if they are not)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _kept_name(column: str) -> str:
    """An input column named like a result column (a custom key ``after``, say) keeps its
    values under ``after (input)``, beside the result column.  Header cells are made safe
    like data cells."""
    return neutralise(column + INPUT_SUFFIX if column.lower() in RESULT_COLUMNS else column)


def write_report(sheet: Sheet, rows: Sequence[RowResult], path: Path) -> Path:
    """Write the report atomically (a crash never leaves half a file) and return its path."""
    if len(rows) != sheet.row_count:
        raise ValueError("a report needs exactly one result per source row")
    if sheet.format == "xlsx":
        frame = report_frame(sheet, rows)
        return atomic_write(path, lambda temporary: _write_frame(sheet, frame, temporary))
    pieces = _csv_report(sheet, rows)
    if pieces is not None:
        try:  # a legacy encoding joins every slice at once: within the ``try`` too
            encoded = _encoded(pieces, sheet.encoding)
            return atomic_write(path, lambda temporary: _write_pieces(temporary, encoded))
        except (UnicodeError, pa.ArrowException, TypeError, ValueError):
            pass  # a result cell pyarrow cannot hold, or a slice over its 2 GiB of text
    # a cell pyarrow cannot hold: the csv writer's, from lists of cells
    text = columns_csv(report_columns(sheet, rows), sheet.delimiter)
    encoded_text = [encode_report(text, sheet.encoding)]
    return atomic_write(path, lambda temporary: _write_pieces(temporary, encoded_text))


def _encoded(pieces: Iterator[Any], encoding: str | None) -> Iterable[Any]:
    """The UTF-8 ``pieces`` in the sheet's ``encoding``: as they are (after a BOM for
    ``utf-8-sig``), or joined and re-encoded."""
    if (encoding or "utf-8") not in ("utf-8", "utf-8-sig"):
        return [encode_utf8_report(b"".join(pieces), encoding)]
    if encoding == "utf-8-sig":
        return itertools.chain((codecs.BOM_UTF8,), pieces)
    return pieces


def _write_pieces(path: Path, pieces: Iterable[Any]) -> None:
    """``pieces`` (bytes, or buffers of them) one after the other, each written as it is
    made, never copied into one ``bytes``.  Each is written by a second thread while the
    next is made (a write lets go of the GIL): the report takes about as long as the
    longer of the two, not their sum.  A failed write raises here."""
    with path.open("wb") as file, ThreadPoolExecutor(max_workers=1) as writer:
        writing: Future[int] | None = None
        for piece in pieces:
            if writing is not None:
                writing.result()
            writing = writer.submit(file.write, memoryview(piece))
        if writing is not None:
            writing.result()


# ------------------------------------------------------------- the CSV report, by column

#: A report column for the CSV writer: its cells as pyarrow text, or the one text every
#: cell of it holds (joined once, not once a row).
_Column: TypeAlias = "pa.Array | str"


def _csv_report(sheet: Sheet, rows: Sequence[RowResult]) -> Iterator[Any] | None:
    """The CSV report as pieces of UTF-8, built column by column (what ``columns_csv``
    writes of ``report_columns``, without a Python object per source cell); None when a
    source cell cannot be made UTF-8 (a lone surrogate) or a column does not fit one
    pyarrow array (over 2 GiB).

    The rows are made a slice at a time as the pieces are taken — the result columns of
    the slice's rows, then its text joined — so the memory in use stays a slice's (reused
    slice after slice, not the whole report's, which the OS would have to hand out page by
    page).  A result cell pyarrow cannot hold raises as its slice is made."""
    try:
        source = _source_arrays(sheet)
    except (UnicodeError, pa.ArrowException, TypeError, ValueError):
        return None
    return _report_pieces(source, rows, sheet.delimiter)


def _source_arrays(sheet: Sheet) -> dict[str, pa.Array]:
    """The source columns of a CSV/TSV sheet's report, made safe, as pyarrow text."""
    source = sheet.frame.drop(columns=sorted(fed_back_results(list(sheet.frame.columns))))
    return {_kept_name(str(column)): _safe(_arrow_texts(source[column])) for column in source}


def _report_pieces(
    source: dict[str, pa.Array], rows: Sequence[RowResult], delimiter: str
) -> Iterator[Any]:
    yield _csv_head([*source, *RESULT_COLUMNS], delimiter)
    for start in range(0, len(rows), SLICE_ROWS):
        chunk = rows[start : start + SLICE_ROWS]
        columns: dict[str, _Column] = {
            name: texts.slice(start, len(chunk)) for name, texts in source.items()
        }
        for name, cells, stored in _result_cells(chunk):
            columns[name] = _result_column(cells, stored)
        yield from _csv_rows(columns, delimiter, len(chunk))


def _arrow_texts(cells: pd.Series[Any]) -> pa.Array:
    """A source column's cells as one pyarrow text array (``astype(str)`` of anything that
    is not text already)."""
    if pd.api.types.is_string_dtype(cells.dtype) and not cells.hasnans:
        texts = pa.array(cells.array, pa.string())
    else:
        texts = pa.array(cells.astype(str).tolist(), pa.string())
    return _one_array(texts)


def _result_column(values: list[Any], stored: Callable[[list[Any]], Any]) -> _Column:
    """A result column's cells (as ``_RESULTS`` reads them) as a ``_Column``: the one text
    when every row holds the same (a run's rows mostly do: ``succeeded``, ``200``, blank)."""
    if values and _all_same(values):
        first = values[0]
        text = "" if first is None else first if isinstance(first, str) else str(first)
        return neutralise(text) if stored is _texts else text
    texts: pa.Array
    if stored is _whole:
        texts = pc.fill_null(pc.cast(pa.array(values, pa.int64()), pa.string()), "")
    elif stored is _words:
        texts = _one_array(pa.array(stored(values), pa.string()))
    else:
        texts = _safe(pc.fill_null(_one_array(pa.array(values, pa.string())), ""))
    return texts


def _all_same(values: list[Any]) -> bool:
    """Whether every one of ``values`` is the first; a column of varied cells is told by
    its last or middle one mostly, without a pass over it."""
    first = values[0]
    if values[-1] != first or values[len(values) // 2] != first:
        return False
    return values.count(first) == len(values)


def _one_array(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``texts`` as one array (pyarrow makes a chunked one of more than 2 GiB of text;
    combining it then fails, and the report takes the csv writer's way)."""
    return texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts


def _byte_view(texts: pa.Array) -> tuple[npt.NDArray[Any], npt.NDArray[np.uint8]]:
    """The offsets of ``texts`` (a string array) and its UTF-8 bytes, as numpy views."""
    _, offsets, data = texts.buffers()
    width = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    bounds = np.frombuffer(offsets, dtype=width)[texts.offset : texts.offset + len(texts) + 1]
    if data is None:
        return bounds, np.zeros(0, dtype=np.uint8)
    return bounds, np.frombuffer(data, dtype=np.uint8)


#: The first bytes of a cell that ``neutralise`` may change.
_FORMULA_BYTES = np.zeros(256, dtype=bool)
_FORMULA_BYTES[[ord(start) for start in _FORMULA_START]] = True


def _safe(texts: pa.Array) -> pa.Array:
    """``neutralised`` of ``texts``, told first from its bytes alone: no control character
    (UTF-8 uses no byte below 0x20 inside longer characters) and no cell starting with a
    formula character means nothing to change."""
    bounds, data = _byte_view(texts)
    starts = bounds[:-1][bounds[1:] > bounds[:-1]]
    if not _has_byte(texts, _CONTROL_BYTES) and not _FORMULA_BYTES[data[starts]].any():
        return texts
    return pa.array(neutralised(texts.to_pylist()), pa.string())


def _quoted_fast(texts: pa.Array, quote: str) -> pa.Array:
    """``_quoted``, told first from the bytes (every quoting character is ASCII)."""
    wanted = np.zeros(256, dtype=bool)
    wanted[[ord(character) for character in quote]] = True
    return _quoted(texts, quote) if _has_byte(texts, wanted) else texts


#: The bytes of the control characters ``neutralise`` replaces.
_CONTROL_BYTES = np.zeros(256, dtype=bool)
_CONTROL_BYTES[[*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20)]] = True


def _has_byte(texts: pa.Array, wanted: npt.NDArray[np.bool_]) -> bool:
    """Whether some cell of ``texts`` holds a byte ``wanted`` marks.  The bytes below a
    space (rare in a sheet) are ruled out by the smallest byte, each other byte by one
    ``bytes.find`` (a ``memchr``): a few milliseconds for a million cells."""
    bounds, data = _byte_view(texts)
    cells = data[bounds[0] : bounds[-1]]
    if not cells.size:
        return False
    if wanted[:0x20].any() and cells.min() < 0x20 and wanted[cells[cells < 0x20]].any():
        return True
    others = (np.flatnonzero(wanted[0x20:]) + 0x20).tolist()
    if not others:
        return False
    text = cells.tobytes()
    return any(text.find(byte) >= 0 for byte in others)


def _quoted_text(text: str, quote: str) -> str:
    """One cell quoted as the csv writer quotes it."""
    if any(character in text for character in quote):
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv_pieces(columns: dict[str, _Column], delimiter: str, height: int) -> Iterator[Any]:
    """The CSV text of ``columns`` (``height`` rows) as pieces of UTF-8: the header's
    bytes, then the rows (``_csv_rows``), as ``columns_csv`` writes it."""
    yield _csv_head(list(columns), delimiter)
    yield from _csv_rows(columns, delimiter, height)


def _csv_head(names: Sequence[str], delimiter: str) -> bytes:
    quote = _quoting(delimiter)
    return (delimiter.join(_quoted_text(name, quote) for name in names) + os.linesep).encode()


def _csv_rows(columns: dict[str, _Column], delimiter: str, height: int) -> Iterator[Any]:
    """The rows of ``columns`` as pyarrow buffers of UTF-8, as ``columns_csv`` writes them:
    the cells of each column quoted where needed, runs of constant columns joined once,
    then the rows joined by pyarrow a slice at a time."""
    if not height:
        return
    quote = _quoting(delimiter)
    parts: list[_Column] = []
    for column in columns.values():
        cell = _quoted_text(column, quote) if isinstance(column, str) else column
        if isinstance(cell, str) and parts and isinstance(parts[-1], str):
            parts[-1] = parts[-1] + delimiter + cell
        else:
            parts.append(cell if isinstance(cell, str) else _quoted_fast(cell, quote))
    last = parts[-1]
    if isinstance(last, str):
        parts[-1] = last + os.linesep
    else:
        parts[-1] = pc.binary_join_element_wise(last, os.linesep, "")
    if len(parts) == 1 and isinstance(parts[0], str):
        yield parts[0].encode("utf-8") * height
        return
    for start in range(0, height, SLICE_ROWS):  # each joined slice stays far below 2 GiB
        sliced = [
            part if isinstance(part, str) else part.slice(start, SLICE_ROWS) for part in parts
        ]
        joined = sliced[0] if len(sliced) == 1 else pc.binary_join_element_wise(*sliced, delimiter)
        yield _utf8_buffer(joined)


#: Rows joined at a time into one pyarrow array (whose text may not pass 2 GiB).
SLICE_ROWS = 65_536


def _utf8_buffer(texts: pa.Array) -> pa.Buffer:
    """Every cell of ``texts`` one after the other, as UTF-8: the slice of its data buffer
    between its first and last offset (a string array without nulls stores them so)."""
    if not len(texts):
        return pa.py_buffer(b"")
    bounds, _ = _byte_view(texts)
    return texts.buffers()[2][int(bounds[0]) : int(bounds[-1])]


#: Rows the trial write of a report holds: the header and worksheet name are what vary from
#: sheet to sheet (data cells are made safe one by one), so one row is proof enough.
_TRIAL_ROWS = 1


def check_report_writable(sheet: Sheet, path: Path) -> None:
    """Write the report's header and first rows (every row ``not_attempted``) to a temporary
    file beside ``path`` and remove it: raises ``OptionsError`` if the real report could not
    be written, before anything is sent."""
    head = sheet.frame.head(_TRIAL_ROWS)
    trial = replace(sheet, frame=head)
    rows = [RowResult(Outcome("", Status.NOT_ATTEMPTED))] * len(head)
    try:
        trial_write(
            path, lambda temporary: _write_frame(trial, report_frame(trial, rows), temporary)
        )
    except OSError as error:
        raise OptionsError(
            f"the report path {path}: cannot write in {path.parent} "
            f"({error.strerror or error}) — choose a folder you can write "
            "to"
        ) from None
    except (ValueError, TypeError, UnicodeError) as error:
        raise OptionsError(
            f"the report {path} could not be written ({error}) — report it as "
            "a bug; meanwhile save the sheet as CSV"
        ) from None


def _write_frame(sheet: Sheet, frame: pd.DataFrame, temporary: Path) -> None:
    if sheet.format == "xlsx":
        _write_workbook(sheet, frame, temporary)
    else:
        text = csv_text(frame, sheet.delimiter)  # the input's delimiter
        temporary.write_bytes(encode_report(text, sheet.encoding))


def csv_text(frame: pd.DataFrame, delimiter: str) -> str:
    """``frame`` as ``frame.to_csv(index=False, sep=delimiter)`` writes it (see
    ``columns_csv``)."""
    return columns_csv(
        {
            str(name): [None if value is pd.NA else value for value in frame[name].tolist()]
            for name in frame.columns
        },
        delimiter,
    )


def columns_csv(columns: dict[str, list[Any]], delimiter: str) -> str:
    """The CSV text of ``columns`` (header → cells, None blank) as pandas' ``to_csv``
    writes it: minimal quoting (a cell holding the delimiter, a quote or a line break is
    quoted, its quotes doubled), the platform's line ends.  Joined column by column by
    pyarrow; by the csv writer when a cell cannot be made UTF-8 (a lone surrogate)."""
    try:
        return _joined(columns, delimiter)
    except (UnicodeError, pa.ArrowException):
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=delimiter, lineterminator=os.linesep)
        writer.writerow(list(columns))
        writer.writerows(zip(*columns.values(), strict=True))
        return buffer.getvalue()


def _joined(columns: dict[str, list[Any]], delimiter: str) -> str:
    """``columns_csv`` by pyarrow (see ``_csv_pieces``)."""
    height = len(next(iter(columns.values()), []))
    arrays: dict[str, _Column] = {name: _texts_of(values) for name, values in columns.items()}
    return b"".join(map(bytes, _csv_pieces(arrays, delimiter, height))).decode("utf-8")


@functools.cache
def _quoting(delimiter: str) -> str:
    """The characters that make the csv writer quote a cell (with this delimiter and line
    end), asked of the csv writer itself: which line-break characters count has changed
    between Python versions."""
    found = ""
    for character in {delimiter, '"', "\r", "\n", *os.linesep}:
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=delimiter, lineterminator=os.linesep).writerow(
            [f"a{character}b", "c"]
        )
        if buffer.getvalue().startswith('"'):
            found += character
    return found


def _texts_of(values: list[Any]) -> pa.Array:
    """Cells as text: strings as they are, numbers as their digits, None blank."""
    try:
        texts = pa.array(values, pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # not all text
        texts = pa.array([None if value is None else str(value) for value in values])
    return pc.fill_null(texts, "")


def _quoted(texts: pa.Array, quote: str) -> pa.Array:
    """``texts`` with each cell that holds one of the characters ``quote`` quoted, as the
    csv writer quotes it (most columns need none: they are returned as they are)."""
    needed = pc.match_substring(texts, quote[0])
    for character in quote[1:]:
        needed = pc.or_(needed, pc.match_substring(texts, character))
    if not pc.any(needed).as_py():
        return texts
    escaped = pc.binary_join_element_wise('"', pc.replace_substring(texts, '"', '""'), '"', "")
    return pc.if_else(needed, escaped, texts)


# ---------------------------------------------------------------------- the XLSX report

#: The ``status`` cell's fill and font colours, by outcome: green when done, blue when
#: planned, amber when skipped, grey when not attempted, red when failed or invalid
#: (Excel's own "Good", "Neutral" and "Bad" pairs, readable in print and on screen).
_STATUS_COLOURS: dict[str, tuple[str, str]] = {
    str(Status.SUCCEEDED): ("C6EFCE", "006100"),
    str(Status.UNCHANGED): ("C6EFCE", "006100"),
    str(Status.PLANNED): ("DDEBF7", "1F4E78"),
    str(Status.SKIPPED): ("FFEB9C", "9C5700"),
    str(Status.NOT_ATTEMPTED): ("EDEDED", "3A3A3A"),
    str(Status.FAILED): ("FFC7CE", "9C0006"),
    str(Status.INVALID): ("FFC7CE", "9C0006"),
}


@dataclass(frozen=True, slots=True)
class _Styles:
    """openpyxl's cell styles of the report: made on the first workbook written, as
    openpyxl is imported only then (a tenth of the CLI's start-up, for a CSV run)."""

    status: dict[str, tuple[Any, Any]]
    header_font: Any
    header_fill: Any
    wrap: Any


@functools.cache
def _styles() -> _Styles:
    from openpyxl.styles import Alignment, Font, PatternFill

    return _Styles(
        {
            status: (PatternFill("solid", start_color=fill), Font(color=font))
            for status, (fill, font) in _STATUS_COLOURS.items()
        },
        Font(bold=True),
        PatternFill("solid", start_color="D9D9D9"),
        Alignment(wrap_text=True, vertical="top"),
    )


#: Columns of long text, wrapped in a wider column; columns of ids, stored as text.
_WRAPPED = frozenset({"before", "after", "error_message"})
_IDS = frozenset({"image_id", "request_id"})
#: Column widths, in characters: at least, at most, and at most for wrapped columns.
MIN_WIDTH, MAX_WIDTH, MAX_WRAPPED_WIDTH = 8, 50, 60
_TEXT_FORMAT = "@"


def _write_workbook(sheet: Sheet, frame: pd.DataFrame, temporary: Path) -> None:
    """The report as a workbook: a new one holding the results alone, streamed (memory
    does not grow with the rows), unless the input has other sheets: then the input itself,
    its read worksheet replaced by the results."""
    columns = [str(column) for column in frame.columns]
    cells = [_column_values(frame[column]) for column in frame.columns]
    layout = _Layout(
        columns, [_width(name, values) for name, values in zip(columns, cells, strict=True)]
    )
    rows = zip(*cells, strict=True)
    others = _other_sheets(sheet)
    if others:
        _write_into_input(sheet, layout, rows, len(frame), temporary)
    else:
        _write_alone(worksheet_name(sheet.sheet_name), layout, rows, len(frame), temporary)


def _column_values(column: pd.Series[Any]) -> list[Any]:
    """A report column as the cells to write: None for a blank, Python numbers."""
    if str(column.dtype) == "Int64":
        return [None if pd.isna(value) else int(value) for value in column.tolist()]
    return [None if value == "" else value for value in column.tolist()]


def _width(name: str, values: list[Any]) -> float:
    """How wide a column is: its longest cell (or header, with room for the filter button),
    within bounds."""
    longest = max((len(str(value)) for value in values if value is not None), default=0)
    widest = MAX_WRAPPED_WIDTH if name in _WRAPPED else MAX_WIDTH
    return float(min(widest, max(MIN_WIDTH, longest + 2, len(name) + 4)))


@dataclass(frozen=True, slots=True)
class _Layout:
    """The report's header, and each column's width."""

    columns: list[str]
    widths: list[float]

    def shape(self, worksheet: Any, height: int) -> None:
        """Widths, the header row frozen, a filter over header and data."""
        from openpyxl.utils import get_column_letter

        for number, width in enumerate(self.widths, start=1):
            worksheet.column_dimensions[get_column_letter(number)].width = width
        worksheet.freeze_panes = "A2"
        last = get_column_letter(len(self.columns))
        worksheet.auto_filter.ref = f"A1:{last}{height + 1}"

    def style(self, cell: Any, column: str) -> None:
        """Give a data cell its column's style (the status cell the outcome's colours)."""
        if column == "status":
            fill, font = _styles().status.get(str(cell.value), (None, None))
            if fill is not None:
                cell.fill, cell.font = fill, font
        elif column in _WRAPPED:
            cell.alignment = _styles().wrap
        elif column in _IDS:
            cell.number_format = _TEXT_FORMAT

    def styled_positions(self) -> list[tuple[int, str]]:
        return [
            (position, column)
            for position, column in enumerate(self.columns)
            if column == "status" or column in _WRAPPED or column in _IDS
        ]


def _header_cell(cell: Any) -> None:
    styles = _styles()
    cell.font, cell.fill = styles.header_font, styles.header_fill


def _write_alone(title: str, layout: _Layout, rows: Any, height: int, temporary: Path) -> None:
    """A new workbook, written row by row (openpyxl's write-only mode)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    book = Workbook(write_only=True)
    worksheet = book.create_sheet(title)
    layout.shape(worksheet, height)
    header = []
    for column in layout.columns:
        cell = WriteOnlyCell(worksheet, column)
        _header_cell(cell)
        header.append(cell)
    worksheet.append(header)
    styled = layout.styled_positions()
    for row in rows:
        values: list[Any] = list(row)
        for position, column in styled:
            if values[position] is not None:
                cell = WriteOnlyCell(worksheet, values[position])
                layout.style(cell, column)
                values[position] = cell
        worksheet.append(values)
    book.save(temporary)


def _other_sheets(sheet: Sheet) -> list[str]:
    """The input workbook's sheets besides the one read (none if it cannot be opened now:
    the report then holds the results alone)."""
    try:
        return [name for name in sheet_names(sheet.path) if name != sheet.sheet_name]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return []


#: The results' cell formats, for a report written into the input workbook (``xlsxinto``).
_COPY_HEADER = Style(bold=True, fill="D9D9D9")
_COPY_STATUS = {
    status: Style(fill=fill, colour=font) for status, (fill, font) in _STATUS_COLOURS.items()
}
_COPY_WRAP, _COPY_TEXT = Style(wrap=True), Style(text=True)


def _copy_style(column: str, value: Any) -> Style | None:
    """A data cell's format in the copy: as ``_Layout.style`` gives it in a new workbook."""
    if column == "status":
        return _COPY_STATUS.get(str(value))
    if column in _WRAPPED:
        return _COPY_WRAP
    return _COPY_TEXT if column in _IDS else None


def _write_into_input(
    sheet: Sheet, layout: _Layout, rows: Any, height: int, temporary: Path
) -> None:
    """The input workbook with its read worksheet replaced by the results, at its place
    and under its name: every other part copied as it is (``xlsxinto``), in bounded
    memory.  A workbook that cannot be copied so is rewritten whole by openpyxl."""
    name = str(sheet.sheet_name)
    try:
        check_parts(sheet.path, name)
        if worksheet_name(name) == name:
            results = Results(
                layout.columns,
                layout.widths,
                rows,
                height,
                _COPY_HEADER,
                _copy_style,
                (*_COPY_STATUS.values(), _COPY_WRAP, _COPY_TEXT),
            )
            write_into(sheet.path, name, results, temporary)
            return
    except CannotCopy:
        pass
    except Exception as error:  # zip, XML and file errors each mean the same here
        raise _not_copied(sheet.path, error) from None
    _rewrite_whole(sheet, layout, rows, height, temporary)


def _not_copied(path: Path, error: BaseException) -> OptionsError:
    return OptionsError(
        f"{path}: the workbook's other sheets cannot be copied into the report ({error}) "
        "— open it in Excel and save it again, or move the sheet of changes into a "
        "workbook of its own"
    )


def _rewrite_whole(sheet: Sheet, layout: _Layout, rows: Any, height: int, temporary: Path) -> None:
    """The input workbook loaded whole by openpyxl, its read worksheet replaced: for the
    rare workbook ``xlsxinto`` cannot copy part by part."""
    book = _open_input(sheet.path)
    place = book.sheetnames.index(sheet.sheet_name)
    book.remove(book[sheet.sheet_name])
    worksheet = book.create_sheet(worksheet_name(sheet.sheet_name), place)
    layout.shape(worksheet, height)
    worksheet.append(layout.columns)
    for cell in worksheet[1]:
        _header_cell(cell)
    styled = layout.styled_positions()
    for number, row in enumerate(rows, start=2):
        worksheet.append(list(row))
        for position, column in styled:
            cell = worksheet.cell(number, position + 1)
            if cell.value is not None:
                layout.style(cell, column)
    for other in book.worksheets:
        other.sheet_view.tabSelected = other is worksheet
    book.active = place
    book.save(temporary)


def _open_input(path: Path) -> Any:
    """The input workbook, every part checked first as the reader checks the ones it reads
    (openpyxl parses them all).  Raises ``OptionsError`` when it cannot be carried over."""
    from openpyxl import load_workbook

    try:
        check_every_part(path)
        return load_workbook(path, keep_vba=path.suffix.lower() == ".xlsm", keep_links=True)
    except Exception as error:  # openpyxl raises many kinds; each means the same here
        raise _not_copied(path, error) from None
