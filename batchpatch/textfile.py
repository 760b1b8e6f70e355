"""Decoding a delimited-text sheet and telling its delimiter, without guessing.

A sheet decoded in the wrong encoding still "works": ``Zürich`` saved by a Western Excel
(cp1252) decodes as GB18030 into ``Z黵ich``, which is a valid image name.  So bytes are
turned into text only when the encoding is *certain*:

* a byte-order mark says so: UTF-8, UTF-16 LE or UTF-16 BE (Excel's "Unicode Text");
* the whole file is valid UTF-8 (every other encoding Excel writes fails UTF-8's strict
  rules on real text, so valid UTF-8 is UTF-8);
* the operator said so with ``--encoding NAME``;
* or the file is not UTF-8 at all and exactly one of the two encodings Excel's plain "CSV"
  uses — cp1252 (Western Windows) and GBK/GB18030 (Simplified Chinese Windows) — is a
  plausible reading of it.  See ``detect_legacy`` for what plausible means; when both are,
  the file is refused rather than guessed.

A file that is partly UTF-8 and partly not (one line pasted from elsewhere) is refused,
naming the lines that are not UTF-8: decoding it either way garbles some cells.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
import pandas as pd

from batchpatch.errors import Namer, OptionsError, Problem, Reason, SheetError
from batchpatch.grid import EMPTY, NO_ROWS, Grid, duplicate_columns, header_problems, whole_file

#: The encodings detection may choose between, and what ``encoding`` is suggested as.
LEGACY_ENCODINGS = ("cp1252", "gb18030")


def suggestion(name: Namer) -> str:
    """Which encodings to name when detection cannot tell, worded by ``name``: the
    library's ``encoding=gb18030``, the CLI's ``--encoding gb18030``."""
    return (
        f"give {name('encoding', 'gb18030')} (Chinese Excel) or "
        f"{name('encoding', 'cp1252')} (Western Excel)"
    )


#: Delimiters sniffed from the header line, in order of preference on a tie.
DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": ",", ";": ";", "tab": "\t", "\\t": "\t", "\t": "\t", "|": "|"}

#: Byte-order mark → the codec of the text after it, the codec the report is written
#: with, and the ``--encoding`` names that agree with the mark.
_BOMS = (
    (codecs.BOM_UTF8, "utf-8", "utf-8-sig", {"utf-8", "utf-8-sig"}),
    (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16-le", {"utf-16", "utf-16-le"}),
    (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16-be", {"utf-16", "utf-16-be"}),
)
#: Western text has accented letters alone or in pairs; three non-ASCII characters in a row
#: are what GBK's two-byte characters look like when read as cp1252.
_CP1252_RUN = re.compile(r"[^\x00-\x7f]{3,}")
_DROP_ASCII = dict.fromkeys(range(0x80))
#: Largest share of GBK characters outside GB2312 (the common set a Chinese text is almost
#: wholly made of) for a GBK decoding to count as plausible.
_RARE_SHARE = 0.1
#: charset-normalizer's "mess" ratio above which it does not believe a decoding.
_CHAOS_LIMIT = 0.2


@dataclass(frozen=True)
class Decoded:
    """A sheet's text, the codec its report is written with, and how the codec was chosen
    (``"BOM"``, ``"detected"``, ``"given"`` by the caller, or ``""`` for plain UTF-8)."""

    text: str
    encoding: str
    how: str = ""

    @property
    def label(self) -> str:
        """What ``validate``, ``plan`` and the summary show, e.g. ``cp1252 (detected)``."""
        name = "utf-8" if self.encoding == "utf-8-sig" else self.encoding
        return f"{name} ({self.how})" if self.how else name


def decode(file: str, raw: bytes, encoding: str | None = None) -> Decoded:
    """``raw`` as text, in an encoding that is certain (see the module docstring).

    Raises ``SheetError`` naming the lines that are not UTF-8 when it is not certain, and
    ``OptionsError`` for an unknown ``encoding`` or one a byte-order mark contradicts.
    """
    bom = next((entry for entry in _BOMS if raw.startswith(entry[0])), None)
    if encoding is not None:
        return _forced(file, raw, encoding, bom)
    if bom is not None:
        return _with_bom(file, raw, bom)
    if _looks_utf16(raw):
        raise SheetError([whole_file(file, _UTF16_WITHOUT_BOM)])
    try:
        return Decoded(raw.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        pass
    if b"\x00" in raw:
        raise SheetError(
            [
                whole_file(
                    file,
                    Reason(
                        "the file holds NUL bytes and is not UTF-8, so it is not a text sheet",
                        "save it as 'CSV UTF-8', or as 'Unicode Text' (UTF-16 with a "
                        "byte-order mark)",
                    ),
                )
            ]
        )
    bad = _non_utf8_lines(raw)
    if _has_utf8_text(raw):
        raise SheetError(
            [
                Problem(
                    file,
                    line,
                    "",
                    Reason.worded(
                        "this line is not UTF-8, but the rest of the file is",
                        lambda name: (
                            "retype the line's special characters and save the sheet "
                            f"as 'CSV UTF-8'; if the whole file is in another encoding, "
                            f"{suggestion(name)}"
                        ),
                    ),
                )
                for line in bad
            ]
        )
    detected = detect_legacy(raw)
    if detected is None:
        raise SheetError(
            [
                Problem(
                    file,
                    bad[0],
                    "",
                    Reason.worded(
                        "the line is not UTF-8, and the file's encoding cannot be told for certain",
                        lambda name: f"save the sheet as 'CSV UTF-8', or {suggestion(name)}",
                    ),
                )
            ]
        )
    return Decoded(raw.decode(detected), detected, "detected")


#: How much of a file is looked at to tell UTF-16 without a byte-order mark.
_UTF16_SAMPLE = 1 << 16
_UTF16_WITHOUT_BOM = Reason(
    "the file looks like UTF-16 without a byte-order mark (every other byte is NUL)",
    "save it again as 'CSV UTF-8' or 'Unicode Text'",
)


def _looks_utf16(raw: bytes) -> bool:
    """Whether ``raw`` is UTF-16 text without its byte-order mark.

    A sheet's header and ids are ASCII, which UTF-16 writes as the character and a NUL,
    so one half of the bytes (the odd ones in little-endian, the even ones in big-endian)
    is mostly NUL and the other half has (almost) none.  Such a file is valid UTF-8 full
    of NUL characters; it is refused rather than read as UTF-16, since which of the two
    byte orders (or whether it is UTF-16 at all) is not certain without the mark.
    """
    sample = raw[:_UTF16_SAMPLE]
    if len(sample) < 4 or b"\x00" not in sample:
        return False
    halves = sample[0::2].count(0) / len(sample[0::2]), sample[1::2].count(0) / len(sample[1::2])
    return max(halves) >= 0.5 and min(halves) <= 0.05


def detect_legacy(raw: bytes) -> str | None:
    """The one encoding of ``LEGACY_ENCODINGS`` ``raw`` is confidently in, or None.

    GB18030 decodes almost any byte string, so "decodes without error" proves nothing, and
    short texts are genuinely ambiguous: cp1252 ``Größe`` (``Gr F6 DF e``) is also valid
    GB2312, and GBK ``x中y`` is also cp1252 ``xÖÐy``.  So each reading is judged on its own:

    1. cp1252 is plausible when the bytes decode strictly and the text has no run of three
       or more non-ASCII characters (Western words have accents alone or in pairs; two
       Chinese characters read as cp1252 are an unbroken run of four);
    2. GBK is plausible when the bytes decode strictly as GBK (so no GB18030 four-byte
       sequences, which Excel's "CSV" never writes) and at most 10 % of its Chinese
       characters are outside the common GB2312 set (cp1252 ``Zürich`` read as GBK is
       ``Z黵ich``, a rare character);
    3. exactly one reading must be plausible — when both are (a GBK file whose Chinese
       characters all stand alone, ``A区B``; a German file whose only accents happen to
       form GB2312 pairs) the file is refused and the operator names the encoding;
    4. and charset-normalizer, asked about that one encoding alone, must find the text not
       messy.  It can only refuse a reading, never choose one.
    """
    plausible = [encoding for encoding in LEGACY_ENCODINGS if _plausible(raw, encoding)]
    if len(plausible) != 1 or not _tidy(raw, plausible[0]):
        return None
    return plausible[0]


def _plausible(raw: bytes, encoding: str) -> bool:
    """Whether ``raw`` reads as text of ``encoding`` (rules 1 and 2 of ``detect_legacy``)."""
    try:
        text = raw.decode("gbk" if encoding == "gb18030" else encoding)
    except UnicodeDecodeError:
        return False
    return _looks_cp1252(text) if encoding == "cp1252" else _looks_gbk(text)


def _tidy(raw: bytes, encoding: str) -> bool:
    """charset-normalizer's verdict: ``raw`` read as ``encoding`` is not a mess."""
    from charset_normalizer import from_bytes

    return from_bytes(raw, cp_isolation=[encoding], threshold=_CHAOS_LIMIT).best() is not None


def _looks_cp1252(text: str) -> bool:
    return _CP1252_RUN.search(text) is None and not any(
        unicodedata.category(character) == "Cc" for character in text if ord(character) > 0x7F
    )


def _looks_gbk(text: str) -> bool:
    wide = text.translate(_DROP_ASCII)
    # GB2312 characters are two bytes each; what cannot be encoded is outside the set.
    rare = len(wide) - len(wide.encode("gb2312", errors="ignore")) // 2
    return bool(wide) and rare <= _RARE_SHARE * len(wide)


_Bom = tuple[bytes, str, str, set[str]]


def _with_bom(file: str, raw: bytes, bom: _Bom) -> Decoded:
    mark, codec, written, _ = bom
    return Decoded(_strict(file, raw[len(mark) :], codec), written, "BOM")


def _forced(file: str, raw: bytes, encoding: str, bom: _Bom | None) -> Decoded:
    name = _text_codec(encoding)
    if bom is not None:
        if name not in bom[3]:
            raise OptionsError(
                parameter="encoding",
                wording=lambda name: (
                    f"{name('encoding', encoding)}: the file starts with a {bom[1]} "
                    f"byte-order mark — drop {name('encoding', '')}, the mark says it all"
                ),
            )
        return _with_bom(file, raw, bom)
    if name == "utf-8":
        name = "utf-8-sig"  # tolerate a BOM the same way
    elif _has_utf8_text(raw) and not _non_utf8_lines(raw):
        raise OptionsError(
            parameter="encoding",
            wording=lambda name: (
                f"{name('encoding', encoding)}: the file is UTF-8 text — drop "
                f"{name('encoding', '')}, UTF-8 is read as such"
            ),
        )
    return Decoded(_strict(file, raw, name), name, "given")


#: Codecs Python looks up but that turn no bytes into text: ``undefined`` always fails.
_NOT_TEXT = frozenset({"undefined"})


def _text_codec(encoding: str) -> str:
    """The codec ``encoding`` names, when it is one that decodes bytes into text.

    ``rot13``, ``hex``, ``base64`` or ``zlib`` are codecs Python knows but bytes-to-bytes
    (or text-to-text) transforms: decoding a sheet with them raises ``LookupError``.
    """
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        info = None
    if info is not None and getattr(info, "_is_text_encoding", True) and info.name not in _NOT_TEXT:
        return info.name
    what = "not an encoding Python knows" if info is None else "a codec but not a text encoding"
    raise OptionsError.about(
        "encoding",
        repr(encoding),
        lambda named: f"{named} is {what} — use a name such as utf-8, gb18030, cp1252 or utf-16",
    )


def _strict(file: str, raw: bytes, codec: str) -> str:
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as error:
        line = _line_of(raw, error.start, codec)
        raise SheetError(
            [
                Problem(
                    file,
                    line,
                    "",
                    Reason.worded(
                        f"the line is not valid {codec} text (byte 0x{raw[error.start]:02x})",
                        lambda name: (
                            "save the sheet again in one encoding ('CSV UTF-8' is "
                            f"best), or {suggestion(name)}"
                        ),
                    ),
                )
            ]
        ) from None


def _line_of(raw: bytes, offset: int, codec: str) -> int:
    """The 1-based line holding byte ``offset`` (UTF-16 counts two-byte newlines)."""
    newline = "\n".encode(codec.replace("-sig", "")) if codec != "utf-16" else b"\n\x00"
    return raw[:offset].count(newline) + 1


def _non_utf8_lines(raw: bytes) -> list[int]:
    lines = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            lines.append(number)
    return lines


def _has_utf8_text(raw: bytes) -> bool:
    """True when some line holds non-ASCII characters that are valid UTF-8."""
    for line in raw.split(b"\n"):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            continue
        return True
    return False


def encode_report(text: str, encoding: str | None) -> bytes:
    """``text`` in the input's encoding, with the byte-order mark the input had (Excel needs
    it to open UTF-16 text).  A legacy encoding that cannot hold some character of the
    report (a Chinese image name in a cp1252 report) falls back to UTF-8 with a BOM, which
    every Excel opens, rather than losing the report after the changes were sent."""
    codec = encoding or "utf-8"
    if codec in ("utf-16-le", "utf-16-be"):
        mark = codecs.BOM_UTF16_LE if codec == "utf-16-le" else codecs.BOM_UTF16_BE
        return mark + text.encode(codec, errors="replace")
    try:
        return text.encode(codec)
    except UnicodeEncodeError:
        return text.encode("utf-8-sig", errors="replace")  # never fails: a lone surrogate → ?


def encode_utf8_report(utf8: bytes, encoding: str | None) -> bytes:
    """``encode_report`` of the text ``utf8`` holds (valid UTF-8): a UTF-8 report is those
    bytes as they are (with the mark for ``utf-8-sig``), not decoded and encoded again."""
    if (encoding or "utf-8") == "utf-8":
        return utf8
    if encoding == "utf-8-sig":
        return codecs.BOM_UTF8 + utf8
    return encode_report(utf8.decode("utf-8"), encoding)


def delimiter_option(text: str) -> str:
    """The delimiter the ``delimiter`` parameter names (``,`` ``;`` ``tab``/``\\t`` ``|``)."""
    try:
        return _DELIMITER_NAMES[text.lower()]
    except KeyError:
        raise OptionsError.about(
            "delimiter",
            repr(text),
            lambda named: f"{named} is not one batchpatch reads — use , ; tab or |",
        ) from None


def sniff_delimiter(header_line: str, default: str) -> str:
    """The delimiter of a sheet told from its header line: the candidate that splits it
    into the most cells (quoted text ignored); ``default`` when none or a tie includes it."""
    unquoted = re.sub(r'"[^"]*"', "", header_line)
    counts = {candidate: unquoted.count(candidate) for candidate in DELIMITERS}
    best = max(counts.values())
    if best == 0:
        return default
    tied = [candidate for candidate in DELIMITERS if counts[candidate] == best]
    return default if default in tied else tied[0]


def header_cells(text: str, delimiter: str) -> list[str]:
    """The first record of ``text`` split into cells as a CSV reader would (fed line by
    line: the record ends long before a million-row text does)."""
    return next(csv.reader(_lines(text), delimiter=delimiter), [])


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text``, each with its ``\n``, as ``io.StringIO(text)`` reads them,
    without copying the whole text first."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


# ------------------------------------------------------------------- the grid of cells

#: Above this many columns a sheet is parsed into one block of cells: pandas' per-column
#: work (a dtype conversion, an index) would cost seconds per 10,000 columns.
_WIDE = 500
#: The first spreadsheet row under the header, when no blank line stands above it.
_FIRST_DATA_ROW = 2
_MISFIT_FIX = (
    "make every row have as many cells as the header, quoting cells that contain the separator"
)


@dataclass(frozen=True)
class _Layout:
    """Where a text sheet's cells are: the text from the header on, the blank lines above
    it (so rows are numbered as shown), the delimiter, the header cells, and how many of
    them count (trailing empty ones dropped)."""

    body: str
    skipped: int
    delimiter: str
    header: list[str]
    kept: int


def read_grid(
    path: Path, fmt: Literal["csv", "tsv"], encoding: str | None, delimiter: str | None
) -> Grid:
    """Decode ``path``, find its delimiter, check the header, then parse only the named
    columns into a ``Grid``.

    ``encoding`` and ``delimiter`` force how the file is read; by default both are told
    from the file, and only when certain.  Trailing empty header cells (Excel exports often
    end every line in hundreds of commas) are dropped before any frame is built, so they
    cost nothing; the cells under them must be empty.
    """
    raw = path.read_bytes()
    decoded = decode(str(path), raw, encoding)
    layout = _layout(path, decoded.text, "\t" if fmt == "tsv" else ",", delimiter)
    problems = _layout_problems(path, layout)
    if problems:
        raise SheetError(problems)
    # A NUL in a data cell is that row's problem (``skip_invalid`` leaves the row out), not
    # the file's: the cell is located, and read without the NUL so the rest can be checked.
    nul_cells = _nul_cells(path, layout) if "\x00" in layout.body else []
    if nul_cells:
        layout = dataclasses.replace(layout, body=layout.body.replace("\x00", ""))
    if layout.kept > _WIDE:
        cells = _parse_wide(path, layout)
    else:
        columns = layout.kept if layout.kept < len(layout.header) else None
        # plain UTF-8 read whole: its bytes are the body's, no second copy needed
        same = decoded.encoding == "utf-8" and layout.body is decoded.text
        data = raw if same else layout.body.encode("utf-8")
        del raw
        decoded = dataclasses.replace(decoded, text="")  # the text is parsed from data now
        layout = dataclasses.replace(layout, body="")
        cells = _parse(path, data, layout.delimiter, columns, layout.skipped)
        del data
    return Grid(
        _with_header(path, cells),
        _FIRST_DATA_ROW + layout.skipped,
        fmt,
        encoding=decoded.encoding,
        delimiter=layout.delimiter,
        encoding_label=decoded.label,
        problems=tuple(nul_cells),
    )


def _layout(path: Path, text: str, default: str, delimiter: str | None) -> _Layout:
    if not text.strip():
        _raise(whole_file(str(path), EMPTY))
    body = text.lstrip("\r\n")
    skipped = text[: len(text) - len(body)].count("\n")
    separator = (
        delimiter_option(delimiter)
        if delimiter is not None
        else sniff_delimiter(_first_line_of(body), default)
    )
    header = header_cells(body, separator)
    kept = len(header)
    while kept > 1 and not header[kept - 1].strip():
        kept -= 1
    return _Layout(body, skipped, separator, header, kept)


def _first_line_of(text: str) -> str:
    """The first line of ``text``, without copying the rest (``split`` would: a second copy
    of a million-row text)."""
    end = text.find("\n")
    return text if end < 0 else text[:end]


def _layout_problems(path: Path, layout: _Layout) -> list[Problem]:
    """The header's problems (a NUL in it among them) and cells under no header."""
    problems = header_problems(str(path), [cell.strip() for cell in layout.header[: layout.kept]])
    if "\x00" in layout.body:
        problems += [p for p in _nul_cells(path, layout) if p.row <= layout.skipped + 1]
    if layout.kept < len(layout.header):
        problems += _cells_beyond_header(path, layout)
    return problems


def _parse_wide(path: Path, layout: _Layout) -> pd.DataFrame:
    """A very wide sheet's cells as one 2-D block; short rows padded with empty cells."""
    columns = layout.kept
    rows = []
    for line, cells in _records(layout.body, layout.delimiter):
        if len(cells) > columns and any(cell.strip() for cell in cells[columns:]):
            _raise(
                Problem(
                    str(path),
                    line + layout.skipped,
                    "",
                    Reason(
                        f"the row does not fit the header ({len(cells)} cells, "
                        f"the header has {columns})",
                        _MISFIT_FIX,
                    ),
                )
            )
        rows.append(cells[:columns] + [""] * (columns - len(cells)))
    return pd.DataFrame(np.array(rows, dtype=object), dtype=object)


def _parse(
    path: Path, data: bytes, separator: str, columns: int | None, skipped: int
) -> pd.DataFrame:
    """Every cell as text; the first ``columns`` only when given."""
    options: dict[str, Any] = {
        "sep": separator,
        "dtype": str,
        "keep_default_na": False,
        "header": None,
        "skip_blank_lines": False,
    }
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
                Problem(
                    str(path),
                    int(line.group(1)) + skipped if line else 0,
                    "",
                    Reason(f"the row does not fit the header ({_first_line(error)})", _MISFIT_FIX),
                )
            )
    return grid


def _records(body: str, separator: str) -> Iterator[tuple[int, list[str]]]:
    """``(line the record starts on, cells)`` for every record of ``body``."""
    reader = csv.reader(io.StringIO(body, newline=""), delimiter=separator)
    start = 1
    for cells in reader:
        yield start, cells
        start = reader.line_num + 1


def _nul_cells(path: Path, layout: _Layout) -> list[Problem]:
    """Each cell holding a NUL character, at its row and column."""
    reason = Reason(
        "the cell holds a NUL character (byte 0, invisible)",
        "delete it; if many cells hold them, save the sheet again as 'CSV UTF-8'",
    )
    return [
        Problem(str(path), line + layout.skipped, _column_name(layout.header, position), reason)
        for line, cells in _records(layout.body, layout.delimiter)
        for position, cell in enumerate(cells)
        if "\x00" in cell
    ]


def _cells_beyond_header(path: Path, layout: _Layout) -> list[Problem]:
    """Cells with text under the header cells dropped as empty.  Most lines end in exactly
    the delimiters of those empty cells, which is checked without parsing; only otherwise
    is every record parsed."""
    kept = layout.kept
    tail = layout.delimiter * (len(layout.header) - kept)
    lines = layout.body.split("\n")
    if all(line.rstrip("\r").endswith(tail) or not line.strip() for line in lines):
        return []
    return [
        Problem(
            str(path),
            line + layout.skipped,
            f"#{kept + offset + 1}",
            Reason(
                f"the cell holds {cell.strip()[:40]!r}, but its column has no header",
                "give the column a header, or clear the cell",
            ),
        )
        for line, cells in _records(layout.body, layout.delimiter)
        if line > 1
        for offset, cell in enumerate(cells[kept:])
        if cell.strip()
    ]


def _column_name(header: list[str], position: int) -> str:
    name = header[position].strip() if position < len(header) else ""
    return name or f"#{position + 1}"


def _with_header(path: Path, cells: pd.DataFrame) -> pd.DataFrame:
    """The first row of ``cells`` made the header: stripped, checked to name each column once."""
    if cells.empty:
        _raise(whole_file(str(path), EMPTY))
    header = [str(cell).strip() for cell in cells.iloc[0]]
    frame = cells.iloc[1:].reset_index(drop=True)
    if frame.empty:
        _raise(whole_file(str(path), NO_ROWS))
    duplicates = duplicate_columns(str(path), header)
    if duplicates:
        raise SheetError(duplicates)
    frame.columns = pd.Index(header, dtype=object)  # plain strings: fast to walk
    return frame


def _raise(problem: Problem) -> NoReturn:
    raise SheetError([problem])


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
