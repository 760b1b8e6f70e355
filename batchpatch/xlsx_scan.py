"""A fast path through the worksheet XML: the regular rows read by regular expressions.

Expat calls Python about six times per cell, which made a 200,000-row workbook take seconds.
Almost every row a spreadsheet program writes has one shape,
``<row r=".."><c r="A2" t=".."><v>..</v></c>...</row>``.  So the complete rows of each
megabyte read are split by one regular expression into the groups of their cells, and
when all of those are plain (inline strings, shared strings, whole numbers, empty cells),
they are added with list operations, never a Python step per cell; otherwise the rows are
read one at a time, each cell that is not plain finished by ``_SheetReader._end_cell``
itself, with the state the handlers would have set.  Everything else (the XML before
``<sheetData>``, every row of another shape, everything after the rows) still goes, in
document order, through an expat parser with the very handlers of ``xlsx._SheetReader``
(DTDs refused), so the two paths cannot drift apart:

- a row is read fast only while that parser stands directly inside
  ``<worksheet><sheetData>`` (so no element, comment or CDATA section is open around it);
- a fast row holds only ``c``, ``f``, ``v``, ``is`` and ``t`` elements, double-quoted
  attribute values without ``&``, tabs or line breaks, each attribute once, and text
  whose only references are the five predefined entities; a row with anything else (rich
  text, comments, character references, characters XML forbids, ``]]>``) goes to the
  parser, which checks it.

Removing a well-formed element from a document leaves it well-formed exactly when it was,
so the parser still refuses every broken part.  Whenever anything goes wrong on the fast
path (a problem that stops the read, a part that is not UTF-8, a text longer than Excel
allows) it gives up, and the caller reads the part again with the handlers alone: errors
are then raised, and worded, exactly as before.  ``tests/test_xlsx_scan.py`` reads
generated, damaged and odd workbooks both ways and finds the same.
"""

from __future__ import annotations

import codecs
import re
from array import array
from collections.abc import Callable, Iterable, Iterator
from itertools import compress, repeat
from operator import and_, eq, is_, is_not

from batchpatch import xlsx

_WS = "[ \t\r\n]"
_NAME = "[A-Za-z_][A-Za-z0-9_.:-]*"
_VALUE = '"[^"<&\t\n\r]*"'  # double quotes, nothing expat would replace
_ATTRIBUTE = f"{_WS}+{_NAME}{_WS}*={_WS}*{_VALUE}"
_PAIRS = re.compile(f'{_WS}+({_NAME}){_WS}*={_WS}*"([^"<&\t\n\r]*)"')

#: One cell of the regular shape: r first, then an optional formula, then an ``<is><t>``
#: (one run of text) or a ``<v>``.  Groups: column letters, row digits, the other
#: attributes, the formula, "" if there is an ``<is>`` (else None), its text, "" if there
#: is a ``<v>``, its text.
_CELL_SOURCE = (
    f'<c{_WS}+r="([A-Za-z]{{1,3}})([0-9]{{1,7}})"((?:{_ATTRIBUTE})*){_WS}*'
    f"(?:/>|>{_WS}*"
    f"(?:(<f(?:{_ATTRIBUTE})*{_WS}*(?:/>|>[^<]*</f>)){_WS}*)?"
    f"(?:<is>(){_WS}*<t(?:{_ATTRIBUTE})*{_WS}*(?:/>|>([^<]*)</t>){_WS}*</is>{_WS}*"
    f"|<v>()([^<]*)</v>{_WS}*)?"
    f"</c>){_WS}*"
)
_CELL = re.compile(_CELL_SOURCE)
#: The same groups for the shapes spreadsheet programs write, as the regular expression
#: engine runs them fastest (no formula, no white space, ``<t>`` without attributes).
_LEAN_CELL = re.compile(
    f'<c r="([A-Za-z]{{1,3}})([0-9]{{1,7}})"((?: {_NAME}={_VALUE})*)()'
    "(?:><is>()<t>([^<]*)</t></is></c>|><v>()([^<]*)</v></c>|/>|></c>)"
)
_ROW = re.compile(
    f"<row(?:{_ATTRIBUTE})*{_WS}*"
    f"(?:/>|>{_WS}*(?:{re.sub(r'[(](?![?])', '(?:', _CELL_SOURCE)})*</row>)"
)
#: What may stand between two cells: the ends and starts of rows, white space.
_BETWEEN = re.compile(
    f"(?:{_WS}|</row>|<row(?:{_ATTRIBUTE})*{_WS}*/?>)*"
)  # {_WS}+ backtracks exponentially
_ROW_TAG = re.compile(f"(</row>)|(<row)((?:{_ATTRIBUTE})*){_WS}*(/?)>|{_WS}+")
_NEXT_ROW = re.compile(f'</row><row r="([0-9]{{1,7}})"((?: {_NAME}={_VALUE})*)>')
_NEXT_ROWS = _NEXT_ROW
_ROW_END = re.compile(f"</row{_WS}*>")
_SHEET_DATA = re.compile(f"<sheetData{_WS}*>")
_SPACE = re.compile(f"{_WS}*")
#: What a fast row may not hold: characters XML forbids, ``]]>``, and any reference but
#: the five predefined entities (a character reference goes to the parser, which checks it).
_IRREGULAR = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]|]]>|&(?!(?:amp|lt|gt|quot|apos);)"
)
_CONTROL = bytes([*range(9), 11, 12, *range(14, 32)])
_INTEGER = "-?[1-9][0-9]{0,14}|0"
_PLAIN_INTEGER = re.compile(_INTEGER)
_PLAIN_INTEGERS = re.compile(f"(?:\x00(?:{_INTEGER}))*")  # each after a NUL
_NUL = "\x00"
_DECLARED = re.compile(rb"<\?xml[^>]*encoding[ \t\r\n]*=[ \t\r\n]*[\"']([^\"']*)[\"']")
#: Unread text that may wait for the end of its row at most, before the parser takes over.
_MAX_PENDING = 8 << 20
#: Distinct attribute sets remembered at most.
_MAX_REMEMBERED = 10_000

_Read = Callable[[str, str | None, str | None, str | None, str | None], str | None]
#: How the cells with one set of attributes are read: the reading, the cell's type and
#: style, and 1 when what is read is a plain number.
_Mode = tuple[_Read, str, str, int]


class _GiveUp(Exception):
    """The fast path stops; the caller reads the part with the handlers alone."""


def scanned_cells(chunks: Iterable[bytes], reader: xlsx._SheetReader) -> xlsx._Cells | None:
    """The cells of the worksheet XML in ``chunks`` as ``reader`` reads them, or None when
    the fast path gave up (then ``reader`` is spoilt: read the part again with a new one)."""
    try:
        return _Scan(reader).run(chunks)
    except Exception:  # any failure: the handlers alone read it again, and say what is wrong
        return None


class _Scan:
    """Feeds one worksheet part through the fast path and ``reader``'s parser, in order."""

    def __init__(self, reader: xlsx._SheetReader) -> None:
        self.reader = reader
        self.stack: list[str] = []
        self.parser = xlsx._parser(self._start, self._end, self._text, namespaces=False)
        self.text = ""
        self.position = 0
        self.irregular = 0  # where the first character a fast row may not hold lies
        self.forbidden = False  # whether a character XML forbids may be in the text
        self.stage = "prefix"  # then "rows", then "rest" (everything goes to the parser)
        self.modes: dict[str, _Mode] = {}
        self.row_attributes: set[str] = set()
        self.kinds: dict[str, str] = {}
        self.careful = 0  # rows before this position are read one at a time

    def _start(self, tag: str, attributes: dict[str, str]) -> None:
        self.stack.append(tag)
        self.reader.start(tag, attributes)

    def _end(self, tag: str) -> None:
        self.stack.pop()
        self.reader.end(tag)

    def _text(self, data: str) -> None:
        self.reader.text(data)
        if self.reader.size > xlsx.MAX_TEXT:
            raise _GiveUp  # what the handlers keep of a long text depends on how it is fed

    def run(self, chunks: Iterable[bytes]) -> xlsx._Cells:
        decoder = codecs.getincrementaldecoder("utf-8")()
        first = True
        for chunk in chunks:
            if first and not _declares_utf8(chunk):
                raise _GiveUp
            first = False
            self.forbidden = self.forbidden or _may_be_forbidden(chunk)
            self._take(decoder.decode(chunk))
        self._take(decoder.decode(b"", True))
        self._feed(len(self.text))
        self.parser.Parse("", True)
        return self.reader.cells

    def _take(self, more: str) -> None:
        self.text = self.text[self.position :] + more
        self.position = 0
        self.irregular = self._first_irregular(0)
        if self.stage == "prefix":
            self._prefix()
        if self.stage == "rows":
            self._rows()
        if self.stage == "rest":
            self._feed(len(self.text))
        elif len(self.text) - self.position > _MAX_PENDING:
            self.stage = "rest"
            self._feed(len(self.text))

    def _first_irregular(self, start: int) -> int:
        """Where the first character a fast row may not hold lies, from ``start`` on."""
        text = self.text
        if self.forbidden:
            found = _IRREGULAR.search(text, start)
            return found.start() if found else len(text) + 1
        first = text.find("]]>", start)
        first = len(text) + 1 if first < 0 else first
        ampersand = text.find("&", start, first)
        while ampersand >= 0:
            if not text.startswith(("&amp;", "&lt;", "&gt;", "&quot;", "&apos;"), ampersand):
                return ampersand
            ampersand = text.find("&", ampersand + 1, first)
        return first

    def _feed(self, end: int) -> None:
        """Hand the text up to ``end`` to the parser."""
        if end > self.position:
            self.parser.Parse(self.text[self.position : end], False)
            self.position = end

    def _prefix(self) -> None:
        found = _SHEET_DATA.search(self.text, self.position)
        if found is None:  # keep what may be the start of <sheetData>
            self._feed(max(self.position, self.text.rfind("<")))
            return
        self._feed(found.end())
        self.stage = "rows"

    def _at_rows(self) -> bool:
        """Whether the parser stands directly inside ``<worksheet><sheetData>``."""
        stack = self.stack
        return len(stack) == 2 and stack[1] == "sheetData" and stack[0] == "worksheet"

    def _rows(self) -> None:
        text = self.text
        while True:
            position = _SPACE.match(text, self.position).end()  # type: ignore[union-attr]
            if position == len(text):
                return
            if position > self.irregular:
                self.irregular = self._first_irregular(position)
            if not text.startswith("<row", position) or not self._at_rows():
                self.stage = "rest"
                return
            self.position = position
            if position >= self.careful and self._batch():
                continue
            row = _ROW.match(text, position)
            if row is not None and row.end() <= self.irregular:
                self._pieces(_CELL.split(row.group()), row.group())
                self.position = row.end()
            elif not self._slow_row():
                return

    def _batch(self) -> bool:
        """Read every complete row from the position on (up to the first irregular
        character) in one go, if all of them have the lean shape; False if not."""
        end = self.text.rfind("</row>", self.position, self.irregular) + len("</row>")
        if end <= self.position:
            return False
        source = self.text[self.position : end]
        pieces = _LEAN_CELL.split(source)
        if not self._all_at_once(pieces, source):
            if not _BETWEEN.fullmatch("".join(pieces[::9])):
                self.careful = end  # row by row up to there
                return False
            self._pieces(pieces, source)
        self.position = end
        return True

    def _all_at_once(self, pieces: list[str | None], source: str) -> bool:
        """Read the cells of a batch with list operations rather than one at a time, when
        all of them are plain (inline strings, shared strings, whole numbers, empty cells)
        and every row but the first starts with its number; False, and nothing read, if
        not.  A cell with its reference reads the same inside a row or out of one."""
        if len(pieces) < 10 or "&" in source or "\r" in source or "_x" in source:
            return False
        batch = _Batch(pieces)
        starts = _row_starts("".join(pieces[9:-1:9]))  # type: ignore[arg-type]
        codes = None if starts is None else self._codes(batch)
        texts = None if codes is None else self._texts(batch, codes)
        if starts is None or codes is None or texts is None:
            return False
        numbers, rests = starts
        if numbers and (min(numbers) < 1 or max(numbers) > xlsx.MAX_ROW):
            raise _GiveUp  # the handlers say what is wrong
        for rest in set(rests):
            self._row_checked(rest)
        self._add_batch(batch, codes, texts)
        return True

    def _add_batch(self, batch: _Batch, codes: list[str], texts: list[str | None]) -> None:
        reader = self.reader
        row, row_text, column, inside = self._between(
            batch.first, reader.row, reader.row_text, reader.column, False
        )
        numbers = {digits: int(digits) for digits in set(batch.digits)}  # a row's cells share
        if not inside or min(numbers.values()) < 1 or max(numbers.values()) > xlsx.MAX_ROW:
            raise _GiveUp
        rows = array("i", map(numbers.__getitem__, batch.digits))
        known = reader.letters
        for letter in set(batch.letters).difference(known):
            reader._column(letter, letter)
        columns = array("i", map(known.__getitem__, batch.letters))
        numeric = array("b", _numeric(batch, codes))
        cells = reader.cells
        keep = list(map(bool, texts))
        if all(keep):
            cells.rows.extend(rows)
            cells.columns.extend(columns)
            cells.texts.extend(texts)  # type: ignore[arg-type]
            cells.numeric.extend(numeric)
        else:
            cells.rows.extend(compress(rows, keep))
            cells.columns.extend(compress(columns, keep))
            cells.texts.extend(compress(texts, keep))  # type: ignore[arg-type]
            cells.numeric.extend(compress(numeric, keep))
        row, row_text, column, inside = self._between(
            batch.last, rows[-1], batch.digits[-1], columns[-1], True
        )
        if inside or len(cells.texts) > xlsx.MAX_CELLS:
            raise _GiveUp
        reader.row, reader.row_text, reader.column = row, row_text, column

    def _codes(self, batch: _Batch) -> list[str] | None:
        """What the attributes of each cell of a batch make it: "i" an inline string, "s"
        a shared string, "n" a number, "f" a formatted number; None if any cell is something
        else or holds what its attributes do not allow."""
        table = self.kinds
        if len(table) > _MAX_REMEMBERED:
            table.clear()
        for rest in set(batch.rests).difference(table):
            table[rest] = self._kind_code(rest)
        codes = list(map(table.__getitem__, batch.rests))
        inline = map(is_not, batch.inlines, repeat(None))
        valued = map(is_not, batch.vs, repeat(None))
        empty = map(is_, batch.inlines, batch.vs)  # both None: the one way they are the same
        if (
            set(compress(codes, inline)) <= {"i"}
            and set(compress(codes, valued)) <= {"n", "s"}
            and set(compress(codes, empty)) <= {"i", "n", "f"}  # empty: the handlers keep nothing
        ):
            return codes
        return None

    def _kind_code(self, rest: str) -> str:
        read, kind, _, _ = self._mode(rest)
        if read is _inline:
            return "i"
        if read is _number:
            return "n"
        if isinstance(read, _Shared):
            return "s"
        return "f" if kind == "n" else "x"

    def _texts(self, batch: _Batch, codes: list[str]) -> list[str | None] | None:
        """The text of each cell of a batch (None for empty ones); None if a number is not
        written plainly, a shared string is missing or a text too long."""
        texts = [
            value if run is None else run
            for run, value in zip(batch.runs, batch.values, strict=True)
        ]
        numbers = list(compress(batch.values, _numeric(batch, codes)))
        if numbers and not _PLAIN_INTEGERS.fullmatch(_NUL + _NUL.join(numbers)):  # type: ignore[arg-type]
            return None
        if "s" in codes:
            strings = self.reader.strings.texts
            try:
                texts = [
                    strings[int(text)] if code == "s" else text  # type: ignore[arg-type]
                    for code, text in zip(codes, texts, strict=True)
                ]
            except (ValueError, IndexError):
                return None
            if any(text is xlsx._TOO_LONG for text in texts):
                return None
        longest = max(map(len, filter(None, texts)), default=0)
        return texts if longest <= xlsx.MAX_TEXT else None

    def _slow_row(self) -> bool:
        """Hand the row at the position to the parser; False to wait for more text."""
        end = _ROW_END.search(self.text, self.position)
        if end is None:
            return False
        row = self.text[self.position : end.end()]
        if "<!" in row or "<?" in row:  # a comment or CDATA may hide where the row ends
            self.stage = "rest"
            return False
        self._feed(end.end())
        return True

    def _pieces(self, pieces: list[str | None], source: str) -> None:
        """Read whole rows split by a cell pattern: the text between the cells (row tags,
        white space), then each cell's eight groups, then the text after it, and so on."""
        reader = self.reader
        cells = reader.cells
        add_row, add_column = cells.rows.append, cells.columns.append
        add_text, add_numeric = cells.texts.append, cells.numeric.append
        letters, modes = reader.letters, self.modes
        row, row_text, column, inside = self._between(
            pieces[0] or "", reader.row, reader.row_text, reader.column, False
        )
        groups = iter(pieces[1:])
        for letter, digits, rest, formula, inline, run, v, value, between in zip(
            *[groups] * 9, strict=True
        ):
            if not inside:
                raise _GiveUp  # a cell outside any row: for the handlers
            column = letters.get(letter) or reader._column(letter, letter + digits)
            if digits != row_text:
                row, row_text = xlsx._checked_row(digits, row), digits
            read, kind, style, number = modes.get(rest) or self._mode(rest)
            text = read(formula, inline, run, v, value)
            if text is None:
                reader.row, reader.column = row, column
                self._finish(kind, style, (formula, inline, run, v, value))
            elif text:
                add_row(row)
                add_column(column)
                add_text(text)
                add_numeric(number)
            if between:
                row, row_text, column, inside = self._between(
                    between, row, row_text, column, inside
                )
        if inside or len(cells.texts) > xlsx.MAX_CELLS:
            raise _GiveUp  # the handlers say there are too many
        reader.row, reader.row_text, reader.column = row, row_text, column

    def _between(
        self, between: str, row: int, row_text: str, column: int, inside: bool
    ) -> tuple[int, str, int, bool]:
        """Where the row tags between two cells leave the row, its text, the column and
        whether a row is open."""
        found = _NEXT_ROW.fullmatch(between)
        if found is not None and inside:
            self._row_checked(found.group(2))
            row = xlsx._checked_row(found.group(1), row + 1)
            return row, str(row), 0, True
        position = 0
        for tag in _ROW_TAG.finditer(between):
            if tag.start() != position:
                raise _GiveUp
            position = tag.end()
            if tag.group(1) or tag.group(2):
                inside = _toggled(inside, bool(tag.group(1)))
            if tag.group(2):
                row = xlsx._checked_row(_attributes(tag.group(3)).get("r"), row + 1)
                row_text, column, inside = str(row), 0, not tag.group(4)
        if position != len(between):
            raise _GiveUp
        return row, row_text, column, inside

    def _row_checked(self, rest: str) -> None:
        """Refuse a row's attributes after ``r`` that repeat one (not well-formed)."""
        if rest not in self.row_attributes:
            if "r" in _attributes(rest):
                raise _GiveUp
            if len(self.row_attributes) < _MAX_REMEMBERED:
                self.row_attributes.add(rest)

    def _mode(self, rest: str) -> _Mode:
        """How cells with the attributes ``rest`` (after ``r``) are read."""
        attributes = _attributes(rest)
        if "r" in attributes:
            raise _GiveUp  # a second r: not well-formed
        kind, style = attributes.get("t") or "n", attributes.get("s", "")
        mode: _Mode
        if kind == "inlineStr":
            mode = (_inline, kind, style, 0)
        elif kind == "s":
            mode = (_Shared(self.reader.strings.texts), kind, style, 0)
        elif kind == "n" and style not in self.reader.formats:
            mode = (_number, kind, style, 1)
        else:
            mode = (_other, kind, style, 0)
        if len(self.modes) < _MAX_REMEMBERED:
            self.modes[rest] = mode
        return mode

    def _finish(self, kind: str, style: str, groups: tuple[str | None, ...]) -> None:
        """Finish a cell as the handlers do: set their state, then ``_end_cell``."""
        formula, inline, run, v, value = groups
        value, run = value or "", run or ""
        if len(value) > xlsx.MAX_TEXT or len(run) > xlsx.MAX_TEXT:
            raise _GiveUp  # how expat splits a long text decides what the handlers keep
        reader = self.reader
        reader.type, reader.style, reader.formula = kind, style, bool(formula)
        reader.value = _characters(value) if v is not None else None
        run = _characters(run) if inline is not None else ""
        reader.chunks, reader.size = ([run] if run else []), len(run)
        reader.plain_number = 0
        reader._end_cell()


def _inline(formula: str | None, inline: str | None, run: str | None, *_: str | None) -> str | None:
    """An inline string's text; None for the handlers to finish."""
    if formula or inline is None or run is None or len(run) > xlsx.MAX_TEXT:
        return None
    if "&" in run or "\r" in run:
        run = _characters(run)
    return xlsx._unescaped(run) if "_x" in run else run


def _number(
    formula: str | None, _: str | None, __: str | None, v: str | None, value: str | None
) -> str | None:
    """A whole number written as Excel shows it; None for the handlers to finish."""
    if formula or v is None or value is None or not _PLAIN_INTEGER.fullmatch(value):
        return None
    return value


def _other(*_: str | None) -> str | None:
    """Every other cell the handlers finish."""
    return None


class _Shared:
    """Reads ``t="s"`` cells: the shared string they point to."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def __call__(
        self, formula: str | None, _: str | None, __: str | None, v: str | None, value: str | None
    ) -> str | None:
        """The shared string; None when the handlers must finish (and say why not)."""
        if formula or v is None or value is None:
            return None
        try:
            text = self.texts[int(_characters(value))]
        except (ValueError, IndexError):
            return None
        return None if text is xlsx._TOO_LONG else text


class _Batch:
    """The groups of the cells of a batch, each in one list, and the text before and after."""

    def __init__(self, pieces: list[str | None]) -> None:
        self.first, self.last = pieces[0] or "", pieces[-1] or ""
        self.letters: list[str] = pieces[1::9]  # type: ignore[assignment]
        self.digits: list[str] = pieces[2::9]  # type: ignore[assignment]
        self.rests: list[str] = pieces[3::9]  # type: ignore[assignment]
        self.inlines, self.runs = pieces[5::9], pieces[6::9]
        self.vs, self.values = pieces[7::9], pieces[8::9]


def _numeric(batch: _Batch, codes: list[str]) -> Iterator[bool]:
    """For each cell of a batch, whether it holds a number (a ``<v>``, attributes of one)."""
    return map(and_, map(is_not, batch.vs, repeat(None)), map(eq, codes, repeat("n")))


def _row_starts(middle: str) -> tuple[list[int], list[str]] | None:
    """The numbers and other attributes of the row starts (``</row><row r="N" ...>``) that
    make up ``middle``, or None if it holds anything else."""
    parts = _NEXT_ROWS.split(middle)
    if "".join(parts[::3]):
        return None
    return list(map(int, parts[1::3])), parts[2::3]


def _toggled(inside: bool, leaving: bool) -> bool:
    """Leave (``leaving``) or enter a row; a row within a row, or an end without a start,
    is for the handlers."""
    if inside != leaving:
        raise _GiveUp
    return not inside


def _attributes(source: str) -> dict[str, str]:
    pairs = _PAIRS.findall(source)
    attributes = dict(pairs)
    if len(attributes) != len(pairs):
        raise _GiveUp  # an attribute twice: not well-formed
    return attributes


def _characters(raw: str) -> str:
    """Character data as expat hands it on: line ends made ``\\n``, entities replaced."""
    if "\r" in raw:
        raw = raw.replace("\r\n", "\n").replace("\r", "\n")
    if "&" in raw:
        raw = (
            raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", '"')
            .replace("&apos;", "'")
            .replace("&amp;", "&")
        )
    return raw


def _may_be_forbidden(chunk: bytes) -> bool:
    """Whether ``chunk`` may hold a character XML forbids (a control character, U+FFFE or
    U+FFFF), cheaply: they are rare, and then the text is searched for them."""
    return len(chunk.translate(None, _CONTROL)) != len(chunk) or b"\xef\xbf" in chunk


def _declares_utf8(start: bytes) -> bool:
    """Whether the part is UTF-8: no byte order mark, no other encoding declared."""
    if not start.startswith(b"<"):
        return False
    declared = _DECLARED.match(start)
    return declared is None or declared.group(1).lower() in (b"utf-8", b"utf8")
