"""Writing sheets that ``apply`` reads back exactly: an export, an undo sheet.

A results report only has to be read by a person; the sheets written here are also read by
batchpatch again, so every cell must come back as the very text written:

* every cell is text — XLSX cells are string cells formatted as Text (``@``), so Excel never
  turns an id into ``1.23E+18``, ``007`` into ``7``, or a value starting with ``=`` into a
  formula (a string cell is never run);
* in CSV/TSV a value that Excel would run as a formula (``=`` ``+`` ``-`` ``@`` …, other
  than a plain number) gets the leading apostrophe the report gives it, and the sheet reader
  takes that apostrophe off again (``unquoted``), as Excel itself does with a typed ``'``;
* CSV/TSV are written as UTF-8 with a byte-order mark (what Excel needs to show Chinese),
  through a temporary file renamed into place.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from batchpatch.errors import OptionsError
from batchpatch.files import atomic_write, trial_write
from batchpatch.report import neutralise, neutralised

if TYPE_CHECKING:
    from batchpatch.schema import Schema

#: The extensions a written sheet may have, and the format each is written in.
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "tsv",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
}
#: Leading characters the report quotes with an apostrophe (see ``report.neutralise``).
_QUOTED = ("'=", "'+", "'-", "'@", "'\t", "'\r")


def unquoted(cell: str) -> str:
    """A cell's text without the apostrophe ``neutralise`` put before a formula character:
    ``'=SUM(A1)`` is the text ``=SUM(A1)``, as in Excel; any other cell is itself."""
    if cell.startswith(_QUOTED) and neutralise(cell[1:]) == cell:
        return cell[1:]
    return cell


def table_format(path: Path, *, label: str) -> str:
    """``csv``, ``tsv`` or ``xlsx`` for ``path``; ``OptionsError`` naming ``label`` if none."""
    try:
        return FORMATS[path.suffix.lower()]
    except KeyError:
        raise OptionsError(
            f"{label} {path}: a sheet is written as .csv, .tsv or .xlsx — "
            "give a path ending in one of them"
        ) from None


def write_table(
    path: Path, header: Sequence[str], rows: Sequence[Sequence[str]], *, sheet: str = "images"
) -> Path:
    """Write ``rows`` under ``header`` at ``path`` (format by extension), atomically."""
    fmt = table_format(path, label="the sheet path")
    return atomic_write(path, lambda temporary: _write(fmt, temporary, header, rows, sheet))


def check_table_writable(path: Path, header: Sequence[str], *, label: str) -> None:
    """Write ``header`` to a temporary file beside ``path`` and remove it: ``OptionsError``
    now if the real sheet could not be written later."""
    fmt = table_format(path, label=label)
    try:
        trial_write(path, lambda temporary: _write(fmt, temporary, header, [], "images"))
    except OSError as error:
        raise OptionsError(
            f"{label} {path}: cannot write in {path.parent} ({error.strerror or error}) — "
            "choose a folder you can write to"
        ) from None


def _write(
    fmt: str, temporary: Path, header: Sequence[str], rows: Sequence[Sequence[str]], sheet: str
) -> None:
    if fmt == "xlsx":
        _write_xlsx(temporary, header, rows, sheet)
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\r\n")
    writer.writerow([neutralise(cell) for cell in header])
    # Every cell checked at once (a regular expression each was most of an undo's time).
    safe = iter(neutralised([cell for row in rows for cell in row]))
    writer.writerows(list(islice(safe, len(row))) for row in rows)
    temporary.write_bytes(buffer.getvalue().encode("utf-8-sig"))


def _write_xlsx(
    temporary: Path, header: Sequence[str], rows: Sequence[Sequence[str]], sheet: str
) -> None:
    """String cells only, formatted as Text, header frozen and filterable."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    workbook = Workbook(write_only=True)
    worksheet = workbook.create_sheet(sheet)
    worksheet.freeze_panes = "A2"
    widths = [
        max([len(name), *(len(row[i]) for row in rows[:200])]) for i, name in enumerate(header)
    ]
    for position, width in enumerate(widths):
        letter = _column_letter(position)
        worksheet.column_dimensions[letter].width = min(max(width, 8), 60) + 2
        worksheet.column_dimensions[letter].number_format = "@"
    if header:
        worksheet.auto_filter.ref = f"A1:{_column_letter(len(header) - 1)}{len(rows) + 1}"
    bold = Font(bold=True)

    def cells(values: Sequence[str], *, title: bool = False) -> list[WriteOnlyCell]:
        made = []
        for value in values:
            cell = WriteOnlyCell(worksheet, value=value if value else None)
            if value:
                cell.data_type = "s"  # text, even when it starts with '=' (never a formula)
            cell.number_format = "@"
            if title:
                cell.font = bold
            made.append(cell)
        return made

    worksheet.append(cells(header, title=True))
    for row in rows:
        worksheet.append(cells(row))
    workbook.save(temporary)


def _column_letter(position: int) -> str:
    """``A`` for 0, ``Z`` for 25, ``AA`` for 26 …"""
    letters = ""
    position += 1
    while position:
        position, rest = divmod(position - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def cell_text(
    attribute: str, value: object, *, exact: bool, schema: Schema | None = None
) -> str | None:
    """The cell text that a sheet reader turns back into ``value`` for ``attribute``; None
    when no cell can (a list, a JSON ``true`` where the sheet sends ``"true"``, a value
    the local checks would refuse, the ``<remove>`` marker, a blank).

    ``exact`` asks for the very JSON value (an undo sheet must put back what was there);
    otherwise it is enough that the planner finds the value already in place (an export,
    applied untouched, must send nothing).  ``schema``: the API's rules the sheet will be
    read by (IMS's by default)."""
    from batchpatch.plan import same_value
    from batchpatch.schema import IMS_SCHEMA, REMOVE_MARKER, UntypedValue

    rules = schema or IMS_SCHEMA

    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | str):
        text = str(value)
    else:
        return None
    if not text.strip() or text.strip().lower() == REMOVE_MARKER or unquoted(text) != text:
        return None  # a blank asks nothing, the marker removes, '=… would lose its '
    try:
        typed = rules.typed_value(attribute, text)
    except UntypedValue:
        return None
    if rules.check_value(attribute, typed) is not None:
        return None
    if exact:
        return text if type(typed) is type(value) and typed == value else None
    return text if same_value(value, typed) else None
