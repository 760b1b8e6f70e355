"""Writing the results report: the input's rows and columns, in its format, plus outcomes."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from batchpatch.errors import OptionsError
from batchpatch.files import atomic_write, trial_write
from batchpatch.models import Outcome, Status
from batchpatch.textfile import encode_report

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


def worksheet_name(name: str | None) -> str:
    """The report's worksheet name: the input's, made one Excel accepts (no ``\\ / ? * [ ] :``
    nor control characters, no apostrophe at either end, 31 characters at most, not the
    reserved ``History``); ``results`` when nothing is left."""
    cleaned = _SHEET_NAME_REFUSED.sub("_", _CONTROL.sub("_", name or ""))
    cleaned = cleaned[:_SHEET_NAME_LENGTH].strip("'").strip()
    if not cleaned:
        return "results"
    return "History_" if cleaned.lower() == "history" else cleaned


@dataclass(frozen=True, slots=True)
class RowResult:
    """What happened to one source row, and its attributes before and after, as text."""

    outcome: Outcome
    before: str = ""
    after: str = ""


def _whole(values: list[Any]) -> Any:
    return pd.array(values, dtype="Int64")  # a blank cell where there is no number


def _texts(values: list[Any]) -> Any:
    return [neutralise(value) for value in values]


#: The result columns a report adds after the source columns, in order, each with the cell
#: it holds for a row and how a column of them is stored.  The one definition: every other
#: use (``RESULT_COLUMNS``, ``REPORT_MARKERS``, the reader's ``fed_back_results``) derives
#: from it.
_RESULTS: dict[str, tuple[Callable[[RowResult], Any], Callable[[list[Any]], Any]]] = {
    "status": (lambda row: str(row.outcome.status), list),
    "http_status": (lambda row: row.outcome.http_status, _whole),
    "error_code": (lambda row: row.outcome.error_code, _texts),
    "error_message": (lambda row: row.outcome.error_message, _texts),
    "request_id": (lambda row: row.outcome.request_id, _texts),
    "attempts": (lambda row: row.outcome.attempts, _whole),
    "elapsed_ms": (lambda row: row.outcome.elapsed_ms, _whole),
    "before": (lambda row: row.before, _texts),
    "after": (lambda row: row.after, _texts),
}

#: The result columns, in the order the report writes them after the source columns.
RESULT_COLUMNS: tuple[str, ...] = tuple(_RESULTS)

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
    source = sheet.frame.drop(columns=sorted(fed_back_results(list(sheet.frame.columns))))
    frame = pd.DataFrame(
        {
            _kept_name(column): source[column].astype(str).map(neutralise)
            for column in source.columns
        },
        index=range(len(source)),
    )
    for name, (cell, stored) in _RESULTS.items():
        frame[name] = stored([cell(row) for row in rows])
    return frame


def _kept_name(column: str) -> str:
    """An input column named like a result column (a custom key ``after``, say) keeps its
    values under ``after (input)``, beside the result column.  Header cells are made safe
    like data cells."""
    return neutralise(column + INPUT_SUFFIX if column.lower() in RESULT_COLUMNS else column)


def write_report(sheet: Sheet, rows: Sequence[RowResult], path: Path) -> Path:
    """Write the report atomically (a crash never leaves half a file) and return its path."""
    if len(rows) != sheet.row_count:
        raise ValueError("a report needs exactly one result per source row")
    frame = report_frame(sheet, rows)
    return atomic_write(path, lambda temporary: _write_frame(sheet, frame, temporary))


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
        frame.to_excel(
            temporary, index=False, sheet_name=worksheet_name(sheet.sheet_name), engine="openpyxl"
        )
    else:
        text = frame.to_csv(index=False, sep=sheet.delimiter)  # the input's delimiter
        temporary.write_bytes(encode_report(text, sheet.encoding))
