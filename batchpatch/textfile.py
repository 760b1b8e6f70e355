"""Decoding a delimited-text sheet and telling its delimiter, without guessing.

A sheet decoded in the wrong encoding still "works": ``Zürich`` saved by a Western Excel
(cp1252) decodes as GB18030 into ``Z黵ich``, which is a valid image name.  So bytes are
turned into text only when the encoding is *certain*:

* a byte-order mark says so: UTF-8, UTF-16 LE or UTF-16 BE (Excel's "Unicode Text");
* the whole file is valid UTF-8 (every other encoding Excel writes fails UTF-8's strict
  rules on real text, so valid UTF-8 is UTF-8);
* the operator said so with ``--encoding NAME``;
* or the file is not UTF-8 at all and exactly one of the two encodings Excel's plain "CSV"
  uses — cp1252 (Western Windows) and GBK/GB18030 (Simplified Chinese Windows) — is
  *confidently* detected.  See ``detect_legacy`` for what confident means.

A file that is partly UTF-8 and partly not (one line pasted from elsewhere) is refused,
naming the lines that are not UTF-8: decoding it either way garbles some cells.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from dataclasses import dataclass

from batchpatch.errors import OptionsError, Problem, SheetError

#: The encodings detection may choose between, and what ``--encoding`` is suggested as.
LEGACY_ENCODINGS = ("cp1252", "gb18030")
SUGGESTION = "give --encoding gb18030 (Chinese Excel) or --encoding cp1252 (Western Excel)"

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
    (``"BOM"``, ``"detected"``, ``"--encoding"`` or ``""`` for plain UTF-8)."""

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
    try:
        return Decoded(raw.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        pass
    if b"\x00" in raw:
        raise SheetError(
            [
                Problem(
                    file,
                    0,
                    "",
                    "the file holds NUL bytes and is not UTF-8, so it is not a text sheet",
                    "save it as 'CSV UTF-8', or as 'Unicode Text' (UTF-16 with a byte-order mark)",
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
                    "this line is not UTF-8, but the rest of the file is",
                    "retype the line's special characters and save the sheet as 'CSV UTF-8'; "
                    f"if the whole file is in another encoding, {SUGGESTION}",
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
                    "the line is not UTF-8, and the file's encoding cannot be told for certain",
                    f"save the sheet as 'CSV UTF-8', or {SUGGESTION}",
                )
            ]
        )
    return Decoded(raw.decode(detected), detected, "detected")


def detect_legacy(raw: bytes) -> str | None:
    """The one encoding of ``LEGACY_ENCODINGS`` ``raw`` is confidently in, or None.

    GB18030 decodes almost any byte string, so "decodes without error" proves nothing.
    Confident means all of:

    1. the bytes decode strictly in the encoding;
    2. the text looks like that encoding's text: for cp1252, no run of three or more
       non-ASCII characters (Western words have accents alone or in pairs, GBK's Chinese
       read as cp1252 is unbroken runs); for GBK, only two-byte characters (no GB18030
       four-byte ones, which Excel's "CSV" never writes), at most 10 % of them outside
       the common GB2312 set, and no letters glued to a Latin letter on both sides
       (``Z黵ich``);
    3. charset-normalizer, asked about that encoding alone, finds the text not messy;
    4. and exactly one encoding passes — when both do, the file is refused and the operator
       names the encoding with ``--encoding``.
    """
    from charset_normalizer import from_bytes

    plausible = []
    for encoding in LEGACY_ENCODINGS:
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        looks_right = _looks_cp1252(text) if encoding == "cp1252" else _looks_gbk(raw, text)
        if (
            looks_right
            and from_bytes(raw, cp_isolation=[encoding], threshold=_CHAOS_LIMIT).best() is not None
        ):
            plausible.append(encoding)
    return plausible[0] if len(plausible) == 1 else None


def _looks_cp1252(text: str) -> bool:
    return _CP1252_RUN.search(text) is None and not any(
        unicodedata.category(character) == "Cc" for character in text if ord(character) > 0x7F
    )


def _looks_gbk(raw: bytes, text: str) -> bool:
    try:
        raw.decode("gbk")  # GB18030's four-byte sequences are not GBK
    except UnicodeDecodeError:
        return False
    wide = text.translate(_DROP_ASCII)
    # GB2312 characters are two bytes each; what cannot be encoded is outside the set.
    rare = len(wide) - len(wide.encode("gb2312", errors="ignore")) // 2
    glued = re.search(r"[A-Za-z][^\x00-\x7f][A-Za-z]", text)
    return bool(wide) and rare <= _RARE_SHARE * len(wide) and glued is None


_Bom = tuple[bytes, str, str, set[str]]


def _with_bom(file: str, raw: bytes, bom: _Bom) -> Decoded:
    mark, codec, written, _ = bom
    return Decoded(_strict(file, raw[len(mark) :], codec), written, "BOM")


def _forced(file: str, raw: bytes, encoding: str, bom: _Bom | None) -> Decoded:
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise OptionsError(
            f"--encoding {encoding!r} is not an encoding Python knows — use a "
            "name such as utf-8, gb18030, cp1252 or utf-16"
        ) from None
    if bom is not None:
        if name not in bom[3]:
            raise OptionsError(
                f"--encoding {encoding}: the file starts with a {bom[1]} "
                "byte-order mark — drop --encoding, the mark says it all"
            )
        return _with_bom(file, raw, bom)
    if name == "utf-8":
        name = "utf-8-sig"  # tolerate a BOM the same way
    elif _has_utf8_text(raw) and not _non_utf8_lines(raw):
        raise OptionsError(
            f"--encoding {encoding}: the file is UTF-8 text — drop --encoding, "
            "UTF-8 is read as such"
        )
    return Decoded(_strict(file, raw, name), name, "--encoding")


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
                    f"the line is not valid {codec} text (byte 0x{raw[error.start]:02x})",
                    f"save the sheet again in one encoding ('CSV UTF-8' is best), or {SUGGESTION}",
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


def delimiter_option(text: str) -> str:
    """The delimiter ``--delimiter`` names (``,`` ``;`` ``tab``/``\\t`` ``|``)."""
    try:
        return _DELIMITER_NAMES[text.lower()]
    except KeyError:
        raise OptionsError(
            f"--delimiter {text!r} is not one batchpatch reads — use , ; tab or |"
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
    """The first record of ``text`` split into cells as a CSV reader would."""
    return next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
