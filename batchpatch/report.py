"""Writing the results report: the input's rows and columns, in its format, plus outcomes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from batchpatch.checks import INPUT_SUFFIX, RESULT_COLUMNS, passive_columns
from batchpatch.errors import OptionsError
from batchpatch.files import atomic_write, trial_write
from batchpatch.models import Outcome, Status
from batchpatch.sheet import Sheet
from batchpatch.textfile import encode_report

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


def report_frame(sheet: Sheet, rows: Sequence[RowResult]) -> pd.DataFrame:
    """The source columns (made safe), then the result columns; ``rows[i]`` is row i."""
    outcomes = [row.outcome for row in rows]
    header = list(sheet.frame.columns)
    fed_back = passive_columns(header)  # a report fed back in: its old results are replaced
    source = sheet.frame.drop(
        columns=[
            column for column in header if column in fed_back and column.lower() in RESULT_COLUMNS
        ]
    )
    frame = pd.DataFrame(
        {
            _kept_name(column): source[column].astype(str).map(neutralise)
            for column in source.columns
        },
        index=range(len(source)),
    )
    frame["status"] = [str(outcome.status) for outcome in outcomes]
    frame["http_status"] = pd.array([o.http_status for o in outcomes], dtype="Int64")
    frame["error_code"] = [neutralise(o.error_code) for o in outcomes]
    frame["error_message"] = [neutralise(o.error_message) for o in outcomes]
    frame["request_id"] = [neutralise(o.request_id) for o in outcomes]
    frame["attempts"] = pd.array([o.attempts for o in outcomes], dtype="Int64")
    frame["elapsed_ms"] = pd.array([o.elapsed_ms for o in outcomes], dtype="Int64")
    frame["before"] = [neutralise(row.before) for row in rows]
    frame["after"] = [neutralise(row.after) for row in rows]
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
