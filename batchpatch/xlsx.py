"""Reading one worksheet of an XLSX workbook as Excel shows it, safely and in bounded memory.

The workbook is a zip of XML parts.  They are streamed through expat with every DTD refused
(so no entity can be declared, expanded or fetched: no billion laughs, no external entities),
each part's uncompressed size capped (zip bombs), and only occupied cells kept (a stray cell
at ``XFD1048576`` costs one cell, not a dense grid of seventeen billion).  The used range is
checked before any table is built: a cell far from the data is a located problem.  The
worksheet's regular rows take a faster path (``xlsx_scan``) that reads them exactly as the
handlers do, and the table is built on numpy arrays of the cells' rows and columns.

What comes out is a ``Worksheet``: the header and the data as text columns, the sheet's name,
where the data starts, and the located problems of single cells; ``read_grid`` hands it on
as the ``grid.Grid`` every reader returns.  A cell is the text Excel
shows: shared and inline strings as written, a formula by its saved value, a date as
``YYYY-MM-DD`` (`` HH:MM:SS`` added only when it has a time), a boolean as ``true``/``false``,
a number as its digits (``1024``, never ``1024.0``).  Booleans, percentages and durations are
remembered as ``grid.CellNote`` (saying what Excel shows and how to store it as text), so the
checks can refuse them where the attribute cannot take them.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
import zlib
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NoReturn
from xml.parsers import expat

import numpy as np
import pandas as pd
import pyarrow as pa

from batchpatch.errors import OptionsError, Problem, Reason, SheetError
from batchpatch.grid import EMPTY, NO_ROWS, CellKind, CellNote, Grid, duplicate_columns, whole_file

#: Uncompressed bytes read from any one part of the workbook at most (zip bombs stop here).
MAX_PART_BYTES = 256 * 1024 * 1024
#: Occupied cells kept at most (about a million rows of four cells).
MAX_CELLS = 4_000_000
#: Rows times columns of the table built at most, blank cells included.
MAX_TABLE_CELLS = 20_000_000
#: A cell after this many empty rows is not part of the data.
MAX_EMPTY_ROWS = 1_000
#: Excel's own limits.
MAX_ROW, MAX_COLUMN, MAX_TEXT = 1_048_576, 16_384, 32_767

_NAMESPACES = (
    "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "http://purl.oclc.org/ooxml/spreadsheetml/main",  # Strict Open XML
    "http://schemas.openxmlformats.org/package/2006/relationships",
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
    "http://purl.oclc.org/ooxml/officeDocument/relationships",
)
_SEPARATOR = "\x01"  # between namespace and local name; cannot occur in either
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")  # how OOXML writes characters XML cannot hold

_Format = Literal["", "date", "time", "percent", "duration"]


class _Unreadable(Exception):
    """The workbook cannot be read at all; the message says why, for a whole-file problem."""


@dataclass(frozen=True)
class Worksheet:
    """One worksheet read as text.

    ``columns`` holds one list of cell texts per header name (every list as long as the
    data), ``first_row`` is the Excel row number of the first data row, ``problems`` are
    located problems of single cells (Excel row numbers), and ``kinds`` remembers the cells
    that are not plain text or numbers, by (0-based data row, header name); ``numbers``
    the 0-based data rows of each column's cells written as plain numbers (the report
    writes them as numbers again).
    """

    name: str
    header: tuple[str, ...]
    columns: tuple[list[str], ...]
    first_row: int
    problems: tuple[Problem, ...] = ()
    kinds: dict[tuple[int, str], tuple[CellKind, str, str]] = field(default_factory=dict)
    numbers: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def notes(self) -> dict[tuple[int, str], CellNote]:
        """The cells that are not plain text or numbers, by (Excel row, header name)."""
        return {
            (row + self.first_row, column): _note(kind, reference, shown)
            for (row, column), (kind, reference, shown) in self.kinds.items()
        }


def _note(kind: CellKind, reference: str, shown: str) -> CellNote:
    as_text = (
        f"format column {reference.rstrip('0123456789')} as Text (Format Cells → "
        "Number → Text) and type the value again"
    )
    if kind == "boolean":
        return CellNote(kind, f"cell {reference} holds the logical value {shown}", as_text)
    what = "a percentage" if kind == "percent" else "a duration"
    return CellNote(kind, f"cell {reference} is formatted as {what} (Excel shows {shown})", as_text)


def read_grid(path: Path, sheet_name: str | None) -> Grid:
    """The worksheet ``sheet_name`` of ``path`` (or the one Excel opens on) as a ``Grid``."""
    worksheet = read_worksheet(path, sheet_name)
    frame = pd.DataFrame(
        {
            name: _text_column(cells)
            for name, cells in zip(worksheet.header, worksheet.columns, strict=True)
        }
    )
    return Grid(
        frame,
        worksheet.first_row,
        "xlsx",
        worksheet.problems,
        worksheet.notes(),
        sheet_name=worksheet.name,
        numbers=worksheet.numbers,
    )


def _text_column(cells: list[str]) -> pd.Series[str]:
    """A column of the frame, of the ``str`` dtype: built by arrow from the texts (all of
    them ``str``), not checked one by one again as pandas does for a list."""
    return pd.Series(pa.array(cells, pa.large_string()), dtype=str)


def read_worksheet(path: Path, sheet_name: str | None) -> Worksheet:
    """The worksheet ``sheet_name`` of ``path``, or the one Excel opens on.

    Raises ``SheetError`` for a workbook that cannot be read or a table that cannot be
    built (every problem located), ``OptionsError`` when ``sheet_name`` names no worksheet.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return _read(path, _Parts(archive), sheet_name)
    except _Unreadable as error:
        raise SheetError(
            [
                _whole_file(
                    path,
                    f"not a readable Excel workbook: {error}",
                    "open it in Excel and save it again as .xlsx",
                )
            ]
        ) from None
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        OSError,
        zlib.error,
        NotImplementedError,
        RuntimeError,
        ValueError,
    ) as error:
        raise SheetError(
            [
                _whole_file(
                    path,
                    _not_a_workbook(path, error),
                    "open it in Excel and save it again as .xlsx (without a password)",
                )
            ]
        ) from None


def _not_a_workbook(path: Path, error: BaseException) -> str:
    try:
        with path.open("rb") as file:
            start = file.read(8)
    except OSError:
        start = b""
    if start.startswith(b"\xd0\xcf\x11\xe0"):  # an OLE file: an old .xls, or encrypted
        return "not a readable Excel workbook (an old .xls, or protected by a password)"
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"not a readable Excel workbook ({detail})"


def _whole_file(path: Path, message: str, fix: str) -> Problem:
    return whole_file(str(path), Reason(message, fix))


# ----------------------------------------------------------------------------- safe XML


def _local(name: str) -> str:
    """``name`` without its namespace, if the namespace is one of the workbook's."""
    namespace, _, local = name.rpartition(_SEPARATOR)
    return local if not namespace or namespace in _NAMESPACES else name


def _refuse_dtd(*_: object) -> NoReturn:
    raise _Unreadable(
        "an XML part declares a DTD, which a workbook never needs (entity expansion is refused)"
    )


def _parser(
    start: Callable[[str, dict[str, str]], None],
    end: Callable[[str], None],
    text: Callable[[str], None] | None = None,
    *,
    namespaces: bool = True,
) -> Any:
    """An expat parser that refuses any DTD, hence every entity declaration or reference.

    Without ``namespaces``, names come as written (``c``, ``x:c``): faster, for the big
    parts whose element names are known."""
    parser = expat.ParserCreate(namespace_separator=_SEPARATOR if namespaces else None)
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.ExternalEntityRefHandler = _refuse_dtd
    parser.buffer_text = True
    parser.buffer_size = 1 << 16
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    if text is not None:
        parser.CharacterDataHandler = text
    return parser


class _Parts:
    """The parts of the zip, found by name as Excel does (case-insensitively)."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self.names = {info.filename.lower(): info for info in archive.infolist()}

    def has(self, name: str) -> bool:
        return name.lower() in self.names

    def chunks(self, name: str) -> Iterator[bytes]:
        """The bytes of part ``name``, a megabyte at a time, refusing more than
        ``MAX_PART_BYTES``."""
        info = self.names.get(name.lower())
        if info is None:
            raise _Unreadable(f"the part {name} is missing")
        read = 0
        with self.archive.open(info) as stream:
            while chunk := stream.read(1 << 20):
                read += len(chunk)
                if read > MAX_PART_BYTES:
                    raise _Unreadable(
                        f"the part {name} unpacks to more than {MAX_PART_BYTES >> 20} MB"
                    )
                yield chunk

    def parse(self, name: str, parser: Any) -> None:
        """Feed part ``name`` to ``parser``, refusing more than ``MAX_PART_BYTES``."""
        try:
            for chunk in self.chunks(name):
                parser.Parse(chunk, False)
            parser.Parse(b"", True)
        except expat.ExpatError as error:
            raise _Unreadable(
                f"the part {name} is not well-formed XML "
                f"({expat.ErrorString(error.code)}, line {error.lineno})"
            ) from None
        except LookupError:  # expat's answer to an XML declaration of an unknown encoding
            raise _Unreadable(
                f"the part {name} is not well-formed XML (it declares an unknown encoding)"
            ) from None

    def elements(self, name: str, wanted: set[str]) -> list[tuple[str, str, dict[str, str]]]:
        """``(parent, element, attributes)`` of every element named in ``wanted``, in order;
        names without their namespace, attributes too."""
        found: list[tuple[str, str, dict[str, str]]] = []
        stack = [""]

        def start(tag: str, attributes: dict[str, str]) -> None:
            local = _local(tag)
            if local in wanted:
                found.append(
                    (stack[-1], local, {_local(key): value for key, value in attributes.items()})
                )
            stack.append(local)

        def end(_: str) -> None:
            stack.pop()

        self.parse(name, _parser(start, end))
        return found


# --------------------------------------------------------------------- workbook and sheets


@dataclass(frozen=True)
class _Entry:
    name: str
    state: str
    part: str | None  # None: not a worksheet (a chart sheet, a dialog sheet)


@dataclass(frozen=True)
class _Book:
    entries: tuple[_Entry, ...]
    active_tab: int
    date1904: bool
    shared_strings: str | None
    styles: str | None


def _relations(parts: _Parts, part: str) -> dict[str, tuple[str, str]]:
    """Relationship id → (the part it points to, its type's last word) for ``part``."""
    folder = PurePosixPath(part).parent
    rels = str(folder / "_rels" / (PurePosixPath(part).name + ".rels"))
    if not parts.has(rels):
        return {}
    relations = {}
    for _, _, attributes in parts.elements(rels, {"Relationship"}):
        target = attributes.get("Target", "")
        if attributes.get("TargetMode") == "External" or not target:
            continue
        resolved = target.lstrip("/") if target.startswith("/") else _normalised(folder, target)
        relations[attributes.get("Id", "")] = (
            resolved,
            attributes.get("Type", "").rsplit("/", 1)[-1],
        )
    return relations


def _normalised(folder: PurePosixPath, target: str) -> str:
    segments: list[str] = []
    for segment in (folder / target).parts:
        if segment == "..":
            if segments:
                segments.pop()
        elif segment != ".":
            segments.append(segment)
    return "/".join(segments)


def _book(parts: _Parts) -> _Book:
    root = {type_: target for target, type_ in _relations(parts, "").values()}
    workbook = root.get("officeDocument", "xl/workbook.xml")
    relations = _relations(parts, workbook)
    by_type = {type_: target for target, type_ in relations.values()}
    found = parts.elements(workbook, {"sheet", "workbookView", "workbookPr"})
    entries = []
    for parent, element, attributes in found:
        if element == "sheet" and parent == "sheets":
            target, type_ = relations.get(attributes.get("id", ""), ("", ""))
            entries.append(
                _Entry(
                    attributes.get("name", ""),
                    attributes.get("state", "visible"),
                    target if type_ == "worksheet" and parts.has(target) else None,
                )
            )
    views = [attributes for _, element, attributes in found if element == "workbookView"]
    active_tab = _integer(views[0].get("activeTab", "0")) if views else 0
    date1904 = any(
        attributes.get("date1904", "").lower() in ("1", "true")
        for _, element, attributes in found
        if element == "workbookPr"
    )
    return _Book(
        tuple(entries),
        active_tab,
        date1904,
        _existing(parts, by_type.get("sharedStrings")),
        _existing(parts, by_type.get("styles")),
    )


def _existing(parts: _Parts, name: str | None) -> str | None:
    return name if name is not None and parts.has(name) else None


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def _chosen(path: Path, book: _Book, sheet_name: str | None) -> _Entry:
    """The named worksheet, else the active tab if it is a visible worksheet, else the first
    visible worksheet: the one Excel opens on.  Hidden worksheets only when named."""
    worksheets = [entry for entry in book.entries if entry.part is not None]
    if sheet_name is not None:
        for entry in book.entries:
            if entry.name == sheet_name:
                if entry.part is None:
                    raise OptionsError(
                        f"{path}: {sheet_name!r} is not a worksheet (a chart "
                        f"sheet?) — choose one of: {_names(worksheets)}"
                    )
                return entry
        raise OptionsError(
            f"{path}: no sheet named {sheet_name!r} — choose one of: {_names(worksheets)}"
        )
    visible = [entry for entry in worksheets if entry.state == "visible"]
    if not visible:
        raise SheetError(
            [
                whole_file(
                    str(path),
                    Reason.worded(
                        "the workbook has no visible worksheet",
                        lambda name: (
                            "name the worksheet to read with " + name("sheet_name", "NAME")
                        ),
                    ),
                )
            ]
        )
    if 0 <= book.active_tab < len(book.entries) and book.entries[book.active_tab] in visible:
        return book.entries[book.active_tab]
    return visible[0]


def _names(entries: list[_Entry]) -> str:
    return (
        ", ".join(
            repr(entry.name) + ("" if entry.state == "visible" else f" ({entry.state})")
            for entry in entries
        )
        or "(none)"
    )


# -------------------------------------------------------------------- strings and formats


#: Stands in the shared strings for a text longer than Excel allows (XML cannot hold NUL).
_TOO_LONG = "\x00too long\x00"


class _Strings:
    """The shared strings table: each ``<si>``'s text, phonetic runs left out."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.names: dict[str, str] = {}
        self._chunks: list[str] = []
        self._size = 0
        self._phonetic = 0
        self._in_text = False

    def _local(self, tag: str) -> str:
        local = self.names.get(tag)
        if local is None:
            local = self.names[tag] = tag.rpartition(":")[2]
        return local

    def start(self, tag: str, _: dict[str, str]) -> None:
        local = self._local(tag)
        if local == "t":
            self._in_text = not self._phonetic
        elif local == "si":
            self._chunks, self._size = [], 0
        elif local == "rPh":
            self._phonetic += 1

    def end(self, tag: str) -> None:
        local = self._local(tag)
        if local == "t":
            self._in_text = False
        elif local == "si":
            if len(self.texts) >= MAX_CELLS:
                raise _Unreadable(f"the shared strings hold more than {MAX_CELLS:,} texts")
            self.texts.append(
                _TOO_LONG if self._size > MAX_TEXT else _unescaped("".join(self._chunks))
            )
        elif local == "rPh":
            self._phonetic -= 1

    def text(self, data: str) -> None:
        if self._in_text and self._size <= MAX_TEXT:
            self._chunks.append(data)
            self._size += len(data)


def _unescaped(text: str) -> str:
    return _ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), text) if "_x" in text else text


#: Built-in number formats (ECMA-376 §18.8.30, and the East Asian ones Excel adds).
_BUILT_IN: dict[int, _Format] = {
    9: "percent",
    10: "percent",
    **dict.fromkeys(
        (14, 15, 16, 17, 22, 27, 28, 29, 30, 31, 36, 50, 51, 52, 53, 54, 57, 58), "date"
    ),
    **dict.fromkeys((18, 19, 20, 21, 32, 33, 34, 35, 55, 56), "time"),
    **dict.fromkeys((45, 46, 47), "duration"),
}
_LITERALS = re.compile(r'"[^"]*"|\\.|_.|\*.')
_ELAPSED = re.compile(r"\[(h+|m+|s+)\]", re.IGNORECASE)
_BRACKETS = re.compile(r"\[[^\]]*\]")


def format_kind(code: str) -> _Format:
    """What a custom number format shows a number as: a date, a time of day, a duration, a
    percentage, or just the number ("")."""
    cleaned = _LITERALS.sub("", code)
    if _ELAPSED.search(cleaned):
        return "duration"
    cleaned = _BRACKETS.sub("", cleaned).lower().replace("general", "")
    if "%" in cleaned:
        return "percent"
    cleaned = cleaned.replace("am/pm", "").replace("a/p", "")
    if "y" in cleaned or "d" in cleaned or ("m" in cleaned and not re.search("[hs]", cleaned)):
        return "date"
    return "time" if re.search("[hs]", cleaned) else ""


def _cell_formats(parts: _Parts, styles: str | None) -> list[_Format]:
    """The number format kind of each cell style (``<c s="N">``)."""
    if styles is None:
        return []
    custom: dict[int, _Format] = {}
    formats: list[_Format] = []
    for parent, element, attributes in parts.elements(styles, {"numFmt", "xf"}):
        identifier = _integer(attributes.get("numFmtId", "0"))
        if element == "numFmt" and parent == "numFmts":
            custom[identifier] = format_kind(attributes.get("formatCode", ""))
        elif parent == "cellXfs":
            formats.append(custom.get(identifier, _BUILT_IN.get(identifier, "")))
    return formats


# ----------------------------------------------------------------------- the worksheet XML


@dataclass
class _Cells:
    """The occupied cells of a worksheet, sparse: parallel arrays, in document order."""

    rows: array[int] = field(default_factory=lambda: array("i"))
    columns: array[int] = field(default_factory=lambda: array("i"))
    texts: list[str] = field(default_factory=list)
    numeric: array[int] = field(default_factory=lambda: array("b"))  # 1: a plain number
    kinds: dict[tuple[int, int], tuple[CellKind, str]] = field(default_factory=dict)
    problems: list[tuple[int, int, str, str]] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)


class _SheetReader:
    """Expat handlers that turn ``<c>`` elements into ``_Cells``; memory grows with the
    occupied cells only.  Written for speed: a dictionary lookup and a few comparisons per
    XML event, names without their prefix (the parser runs without namespace processing)."""

    def __init__(self, strings: _Strings, formats: list[_Format], date1904: bool) -> None:
        self.cells = _Cells()
        self.strings, self.date1904 = strings, date1904
        self.formats: dict[str, _Format] = {
            str(index): kind for index, kind in enumerate(formats) if kind
        }
        self.names: dict[str, str] = {}
        self.letters: dict[str, int] = {}
        self.row, self.row_text, self.column = 0, "\0", 0  # "\0": no row number seen yet
        self.type, self.style, self.formula = "n", "", False
        self.plain_number = 0
        self.value: str | None = None
        self.chunks: list[str] = []
        self.size = 0
        self.capturing = False
        self.phonetic = 0

    def start(self, tag: str, attributes: dict[str, str]) -> None:
        local = self.names.get(tag) or self._learn(tag)
        if local == "c":  # the hot path, inlined: once per cell
            reference = attributes.get("r")
            if reference is None:
                self._next_column()
            else:
                letters = reference.rstrip("0123456789")
                self.column = self.letters.get(letters) or self._column(letters, reference)
                digits = reference[len(letters) :]
                if digits != self.row_text:
                    self._move_to_row(digits)
            self.type = attributes.get("t") or "n"
            self.style = attributes.get("s", "")
            self.formula, self.value, self.plain_number = False, None, 0
            self.chunks, self.size, self.capturing = [], 0, False
        elif local == "v" or local == "t":
            self.capturing = not self.phonetic
        elif local == "f":
            self.formula = True
        elif local == "row":
            self._start_row(attributes.get("r"))
        elif local == "rPh":
            self.phonetic += 1
        elif local == "mergeCell":
            self.cells.merged.append(attributes.get("ref", ""))

    def end(self, tag: str) -> None:
        local = self.names.get(tag) or self._learn(tag)
        if local == "c":
            self._end_cell()
        elif local == "v":
            self.value = "".join(self.chunks)
            self.chunks, self.size, self.capturing = [], 0, False
        elif local == "t":
            self.capturing = False
        elif local == "rPh":
            self.phonetic -= 1

    def text(self, data: str) -> None:
        if self.capturing and self.size <= MAX_TEXT:
            self.chunks.append(data)
            self.size += len(data)

    def _learn(self, tag: str) -> str:
        local = self.names[tag] = tag.rpartition(":")[2]
        return local

    def _start_row(self, number: str | None) -> None:
        self.row = _checked_row(number, self.row + 1)
        self.row_text, self.column = str(self.row), 0

    def _next_column(self) -> None:
        """A cell without a reference is the one after the previous cell of its row."""
        self.column += 1
        if self.column > MAX_COLUMN:
            raise _Unreadable(f"row {self.row} runs past Excel's last column, XFD")
        if not self.row:
            raise _Unreadable("a cell lies outside any row")

    def _column(self, letters: str, reference: str) -> int:
        column = _column_number(letters)
        if not column:
            raise _Unreadable(f"the cell reference {reference!r} is not valid")
        self.letters[letters] = column
        return column

    def _move_to_row(self, digits: str) -> None:
        if digits:
            self.row, self.row_text = _checked_row(digits, self.row), digits
        elif not self.row:
            raise _Unreadable("a cell lies outside any row")

    def _end_cell(self) -> None:
        kind = self.type
        if self.formula and self.value is None and not self.chunks:
            self._no_saved_value()  # whatever its type: nothing Excel showed was saved
            return
        if kind == "s":
            try:
                text = self.strings.texts[int(self.value or "")]
            except (ValueError, IndexError):
                text = self._missing_string()
            if text is _TOO_LONG:
                text = self._too_long()
        elif kind == "inlineStr":
            text = self._inline()
        else:
            text = self._text()
        if text:
            cells = self.cells
            if len(cells.texts) >= MAX_CELLS:
                raise _Unreadable(f"the worksheet holds more than {MAX_CELLS:,} cells")
            cells.rows.append(self.row)
            cells.columns.append(self.column)
            cells.texts.append(text)
            cells.numeric.append(self.plain_number)

    def _inline(self) -> str:
        if self.size > MAX_TEXT:
            self._too_long()
            return ""
        return _unescaped("".join(self.chunks))

    def _text(self) -> str:
        value, kind = self.value, self.type
        if kind == "str":
            return _unescaped(value or "")
        if self.formula and not value:
            self._no_saved_value()
            return ""
        if kind == "e":
            self._problem(f"shows the error {value}", "correct the formula, or type the value")
            return ""
        if kind == "b":
            return self._boolean(value or "")
        if kind == "d":
            return _iso_date(value or "")
        return self._number(value or "")

    def _no_saved_value(self) -> None:
        self._problem(
            "holds a formula with no saved value",
            "open the workbook in Excel and save it (Excel saves the value), "
            "or paste the values only (Paste Special → Values)",
        )

    def _missing_string(self) -> str:
        self._problem(
            "refers to a shared string the workbook does not hold",
            "type the cell again and save the workbook in Excel",
        )
        return ""

    def _too_long(self) -> str:
        self._problem(
            f"holds more than {MAX_TEXT:,} characters, more than Excel allows", "shorten the text"
        )
        return ""

    def _boolean(self, value: str) -> str:
        text = {"1": "true", "0": "false"}.get(value.strip(), value.strip().lower())
        self.cells.kinds[(self.row, self.column)] = ("boolean", text.upper())
        return text

    def _number(self, value: str) -> str:
        if not value:
            return ""
        try:
            number = float(value)
        except ValueError:
            return value
        kind = self.formats.get(self.style, "")
        if kind == "date" or kind == "time":
            return _date_text(number, self.date1904, kind == "time") or _number_text(number)
        if kind == "percent" or kind == "duration":  # kept as shown, refused for attributes
            shown = _shown(kind, number)
            self.cells.kinds[(self.row, self.column)] = (kind, shown)
            return shown
        self.plain_number = 1
        return _number_text(number)

    def _problem(self, message: str, fix: str) -> None:
        if len(self.cells.problems) >= MAX_CELLS:
            raise _Unreadable(f"the worksheet holds more than {MAX_CELLS:,} broken cells")
        self.cells.problems.append((self.row, self.column, message, fix))


def _checked_row(text: str | None, default: int) -> int:
    row = default if text is None else _integer(text)
    if not 1 <= row <= MAX_ROW:
        raise _Unreadable(f"a row number ({text}) lies outside Excel's rows 1 to {MAX_ROW:,}")
    return row


def _column_number(letters: str) -> int:
    """1 for A, 16,384 for XFD; 0 for anything that is not column letters."""
    if not 1 <= len(letters) <= 3 or not letters.isascii() or not letters.isalpha():
        return 0
    number = 0
    for letter in letters.upper():
        number = number * 26 + ord(letter) - ord("A") + 1
    return number if number <= MAX_COLUMN else 0


def column_letters(number: int) -> str:
    letters = ""
    while number:
        number, remainder = divmod(number - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def _number_text(number: float) -> str:
    """A number as digits: whole numbers without ``.0``, others to Excel's 15 digits."""
    if number.is_integer():
        return str(int(number))
    return format(number, ".15g")


def _shown(kind: str, number: float) -> str:
    if kind == "percent":
        return _number_text(round(number * 100, 13)) + "%"
    hours, seconds = divmod(round(number * 86400), 3600)
    return f"{hours}:{seconds // 60:02d}:{seconds % 60:02d}"


_EPOCH_1900 = dt.datetime(1899, 12, 30)
_EPOCH_1904 = dt.datetime(1904, 1, 1)
_LAST_SERIAL = 2_958_466  # 10000-01-01 in the 1900 system: Excel shows #### from here


def _date_text(serial: float, date1904: bool, time_only: bool) -> str | None:
    """An Excel date serial as ``YYYY-MM-DD`` (and `` HH:MM:SS`` when it has a time), or
    ``HH:MM:SS`` for a time of day; None when Excel itself cannot show it as a date."""
    if not 0 <= serial < _LAST_SERIAL:
        return None
    days, seconds = divmod(round(serial * 86400), 86400)
    clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    if time_only:
        return clock
    if date1904:
        day = _EPOCH_1904 + dt.timedelta(days=days)
    elif days == 60:  # Lotus 1-2-3's 29 February 1900, which Excel keeps
        return "1900-02-29" + (f" {clock}" if seconds else "")
    else:
        day = _EPOCH_1900 + dt.timedelta(days=days + (1 if days < 60 else 0))
    return day.strftime("%Y-%m-%d") + (f" {clock}" if seconds else "")


def _iso_date(text: str) -> str:
    """A ``t="d"`` cell (an ISO 8601 date, as Strict Open XML writes them)."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return text
    clock = moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d") + ("" if clock == "00:00:00" else f" {clock}")


# ------------------------------------------------------------------------------ the table


def _read(path: Path, parts: _Parts, sheet_name: str | None) -> Worksheet:
    name, cells = _worksheet_cells(path, parts, sheet_name)
    return _Table(path, name, cells).worksheet()


def _worksheet_cells(path: Path, parts: _Parts, sheet_name: str | None) -> tuple[str, _Cells]:
    """The name and the occupied cells of the worksheet to read."""
    book = _book(parts)
    entry = _chosen(path, book, sheet_name)
    strings = _Strings()
    if book.shared_strings is not None:
        parts.parse(
            book.shared_strings, _parser(strings.start, strings.end, strings.text, namespaces=False)
        )
    formats = _cell_formats(parts, book.styles)
    assert entry.part is not None
    return entry.name, _sheet_cells(parts, entry.part, strings, formats, book)


def _sheet_cells(
    parts: _Parts, part: str, strings: _Strings, formats: list[_Format], book: _Book
) -> _Cells:
    """The occupied cells of worksheet ``part``: through the fast path (``xlsx_scan``) when
    it can read them, else (and for every error) through the handlers alone."""
    cells = xlsx_scan.scanned_cells(
        parts.chunks(part), _SheetReader(strings, formats, book.date1904)
    )
    if cells is not None:
        return cells
    reader = _SheetReader(strings, formats, book.date1904)
    parts.parse(part, _parser(reader.start, reader.end, reader.text, namespaces=False))
    return reader.cells


class _Table:
    """The occupied cells made a table: header row, the columns under it, every problem of
    its range found before any column is built."""

    def __init__(self, path: Path, name: str, cells: _Cells) -> None:
        self.path, self.name, self.cells = path, name, cells
        if not cells.texts:
            raise SheetError([whole_file(str(path), EMPTY)])
        # the cells' rows and columns as numpy arrays over the same memory: one pass each
        # in C, rather than in Python, over every cell of the sheet
        self.rows = np.frombuffer(cells.rows, dtype=np.intc)
        self.columns = np.frombuffer(cells.columns, dtype=np.intc)
        self.header_row = int(self.rows.min())
        self.header: dict[int, str] = {}
        for index in np.flatnonzero(self.rows == self.header_row).tolist():
            self.header[int(self.columns[index])] = cells.texts[index].strip()
        self.labels: dict[int, str] = {}

    def worksheet(self) -> Worksheet:
        kept, fatal = self._columns()
        last_row = self._last_row(set(kept), fatal)
        self.labels = {column: self.header.get(column) or f"#{column}" for column in kept}
        fatal += self._header_problems(kept)
        located = self._cell_problems(last_row)
        if fatal:
            raise SheetError(fatal + located)
        if last_row == self.header_row:
            raise SheetError([whole_file(str(self.path), NO_ROWS)])
        if (last_row - self.header_row) * len(kept) > MAX_TABLE_CELLS:
            raise SheetError(
                [
                    _whole_file(
                        self.path,
                        f"the table is too large ({last_row:,} rows by {len(kept):,} columns)",
                        "split the sheet into smaller ones",
                    )
                ]
            )
        return self._built(kept, last_row, tuple(located))

    def _columns(self) -> tuple[list[int], list[Problem]]:
        """The table's columns (named, or holding data next to named ones), and a problem for
        each column of data cut off from the table by an empty column."""
        named = [column for column, text in self.header.items() if text]
        below = self.rows > self.header_row
        used = set(np.unique(self.columns[below]).tolist())
        end = max(named, default=0) + 1
        while end in used:
            end += 1
        kept = sorted({*named, *(column for column in used if column < end)})
        far = sorted(column for column in used if column > end)[:10]
        firsts = {column: int(self.rows[below & (self.columns == column)].min()) for column in far}
        return kept, [self._stray(firsts[column], column, "to the right of") for column in far]

    def _last_row(self, kept: set[int], fatal: list[Problem]) -> int:
        """The last row of the data in the ``kept`` columns: the rows after a run of
        ``MAX_EMPTY_ROWS`` empty rows are not part of it (a problem names their first cell)."""
        in_kept = np.isin(self.columns, sorted(kept))
        rows = np.unique(self.rows[(self.rows > self.header_row) & in_kept])  # sorted
        previous = np.concatenate(([self.header_row], rows[:-1]))
        gaps = np.flatnonzero(rows - previous > MAX_EMPTY_ROWS)
        if gaps.size:
            row = int(rows[gaps[0]])
            column = int(self.columns[(self.rows == row) & in_kept].min())
            fatal.append(self._stray(row, column, "below"))
            return int(previous[gaps[0]])
        return int(rows[-1]) if rows.size else self.header_row

    def _stray(self, row: int, column: int, where: str) -> Problem:
        reference = f"{column_letters(column)}{row}"
        return Problem(
            str(self.path),
            row,
            self.header.get(column) or f"#{column}",
            Reason(
                f"cell {reference} lies far {where} the data, outside the table",
                f"delete it (select {reference}, then Delete), or move it next to the table",
            ),
        )

    def _header_problems(self, kept: list[int]) -> list[Problem]:
        problems = [
            Problem(
                str(self.path),
                self.header_row,
                f"#{column}",
                Reason("a column has no header", "name the column, or delete it"),
            )
            for column in kept
            if not self.header.get(column)
        ]
        names = [self.header[column] for column in kept if self.header.get(column)]
        return problems + duplicate_columns(str(self.path), names, self.header_row)

    def _cell_problems(self, last_row: int) -> list[Problem]:
        problems = [
            Problem(
                str(self.path),
                row,
                self._label(column),
                Reason(f"cell {column_letters(column)}{row} {message}", fix),
            )
            for row, column, message, fix in self.cells.problems
        ]
        for reference in self.cells.merged:
            problems += self._merged(reference, last_row)
            if len(problems) > MAX_CELLS:
                raise SheetError(
                    [
                        _whole_file(
                            self.path,
                            "the sheet holds too many merged cells",
                            "unmerge every cell (select all, then "
                            "Merge & Center off) and fill them in",
                        )
                    ]
                )
        return problems

    def _label(self, column: int) -> str:
        return self.labels.get(column) or self.header.get(column) or f"#{column}"

    def _merged(self, reference: str, last_row: int) -> list[Problem]:
        """One problem per table row a merged range covers (each reads as blank but one)."""
        first, _, last = reference.partition(":")
        (top, left), (bottom, _) = _coordinates(first), _coordinates(last or first)
        if not top or not left:
            return []
        rows = range(max(top, self.header_row), min(bottom, last_row) + 1) or range(top, top + 1)
        return [
            Problem(
                str(self.path),
                row,
                self._label(left),
                Reason(f"merged cells {reference}", "unmerge them and fill in every cell"),
            )
            for row in rows
        ]

    def _built(self, kept: list[int], last_row: int, problems: tuple[Problem, ...]) -> Worksheet:
        first_row = self.header_row + 1
        position = {column: index for index, column in enumerate(kept)}
        inside = (self.rows >= first_row) & (self.rows <= last_row)
        texts = np.array(self.cells.texts, dtype=object)
        columns = [
            self._column(texts, inside & (self.columns == column), first_row, last_row)
            for column in kept
        ]
        kinds = self._kinds(position, first_row, last_row)
        return Worksheet(
            self.name,
            tuple(self.labels[column] for column in kept),
            tuple(columns),
            first_row,
            problems,
            kinds,
            self._numbers(position, inside, first_row),
        )

    def _kinds(
        self, position: dict[int, int], first_row: int, last_row: int
    ) -> dict[tuple[int, str], tuple[CellKind, str, str]]:
        """The kind of each kept cell that is not plain text, by (data row, column label)."""
        return {
            (row - first_row, self.labels[column]): (kind, f"{column_letters(column)}{row}", shown)
            for (row, column), (kind, shown) in self.cells.kinds.items()
            if first_row <= row <= last_row and column in position
        }

    def _column(self, texts: Any, cells: Any, first_row: int, last_row: int) -> list[str]:
        """The texts of one column of the table: its ``cells`` (a mask) in their rows."""
        index = np.flatnonzero(cells)
        offsets = self.rows[index] - first_row
        column = np.full(last_row - first_row + 1, "", dtype=object)
        if np.all(np.diff(offsets) > 0):  # in order, each row once
            column[offsets] = texts[index]
        else:  # a cell written twice: the later one is what Excel shows
            for offset, at in zip(offsets.tolist(), index.tolist(), strict=True):
                column[offset] = self.cells.texts[at]
        values: list[str] = column.tolist()
        return values

    def _numbers(
        self, position: dict[int, int], inside: Any, first_row: int
    ) -> dict[str, tuple[int, ...]]:
        """The 0-based data rows of each kept column's cells written as plain numbers (in
        the order the sheet first has one)."""
        numeric = np.frombuffer(self.cells.numeric, dtype=np.int8).astype(bool)
        index = np.flatnonzero(numeric & inside & np.isin(self.columns, list(position)))
        columns, offsets = self.columns[index], self.rows[index] - first_row
        found = []
        for column in position:
            chosen = np.flatnonzero(columns == column)
            if chosen.size:
                found.append((int(chosen[0]), self.labels[column], offsets[chosen].tolist()))
        return {label: tuple(rows) for _, label, rows in sorted(found)}


def _coordinates(reference: str) -> tuple[int, int]:
    """(row, column) of ``A1``-style ``reference``, or (0, 0) if it is not one."""
    cleaned = reference.replace("$", "")
    letters = cleaned.rstrip("0123456789")
    digits = cleaned[len(letters) :]
    column = _column_number(letters)
    row = int(digits) if digits.isdigit() and len(digits) <= 7 else 0
    return (row, column) if column and 1 <= row <= MAX_ROW else (0, 0)


# ------------------------------------------------------------ what the report carries over


def sheet_names(path: Path) -> list[str]:
    """The names of the workbook's sheets, in tab order (worksheets and chart sheets)."""
    with zipfile.ZipFile(path) as archive:
        return [entry.name for entry in _book(_Parts(archive)).entries]


def check_every_part(path: Path) -> None:
    """Stream every XML part of the workbook through the parser the reader uses (DTDs
    refused, sizes capped), before a library that parses them all (openpyxl, carrying the
    other worksheets into the report) sees them.  Raises ``ValueError`` saying which part
    is unsafe or unreadable."""
    try:
        with zipfile.ZipFile(path) as archive:
            parts = _Parts(archive)
            for info in archive.infolist():
                if info.filename.lower().endswith((".xml", ".rels", ".vml")):
                    parts.parse(info.filename, _parser(_ignore_start, _ignore_end))
    except _Unreadable as error:
        raise ValueError(str(error)) from None


def _ignore_start(_: str, __: dict[str, str]) -> None:
    """Nothing to collect: the parse alone is the check."""


def _ignore_end(_: str) -> None:
    """Nothing to collect: the parse alone is the check."""


# The fast path builds on this module; imported last, once every name it uses is defined
# (at import, not on the first read, so its regular expressions are compiled then).
from batchpatch import xlsx_scan  # noqa: E402
