"""Rerunning part of a report: ``only`` (``--only failed,not_attempted``) on a report fed
back in as the sheet.

The report's ``status`` column says what happened to each row last time.  Only the rows
whose status is listed are planned and sent again; every other row keeps its earlier
outcome (status, HTTP status, error, request id, attempts, timing, before and after) in
the new report, as it was.  Selection is by row, not by image: a row left out asks for
nothing, so an image whose other rows succeeded gets only the changes of its listed rows.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from typing import Any

from batchpatch.errors import OptionsError, Problem, Reason, SheetError
from batchpatch.models import ImagePatch, Outcome, Status
from batchpatch.report import RowResult, fed_back_results, is_report
from batchpatch.sheet import Sheet

#: Every status a report writes, as ``--only`` names them.
STATUS_NAMES = tuple(str(status) for status in Status)


def only_statuses(names: Iterable[str]) -> frozenset[Status]:
    """The statuses ``names`` lists (any case, blanks around them ignored); ``ValueError``
    naming the valid ones for a name that is none, or for no name at all."""
    chosen = [name.strip().lower() for name in names if name.strip()]
    unknown = [name for name in chosen if name not in STATUS_NAMES]
    if unknown or not chosen:
        what = f"unknown status {', '.join(map(repr, unknown))}" if unknown else "no status"
        raise ValueError(f"{what} — choose from {', '.join(STATUS_NAMES)}")
    return frozenset(Status(name) for name in chosen)


def select_rows(sheet: Sheet, only: Collection[str]) -> tuple[Sheet, dict[int, RowResult]]:
    """``sheet`` left with the rows whose earlier status is in ``only``, and the earlier
    result of every other row, by spreadsheet row.  Raises ``OptionsError`` when ``only``
    names no status or ``sheet`` is not a report, ``SheetError`` for a row whose status
    cell holds no status a report writes."""
    try:
        statuses = only_statuses(only)
    except ValueError as error:
        why = str(error)
        raise OptionsError.about("only", ",".join(only), lambda named: f"{named}: {why}") from None
    columns = _result_columns(sheet, ",".join(sorted(statuses)))
    earlier = _earlier_statuses(sheet, columns["status"])
    chosen = {row for row, status in earlier.items() if status in statuses}
    kept = {
        row: _earlier_result(sheet, columns, position, earlier[row])
        for position, row in enumerate(sheet.rows)
        if row not in chosen
    }
    narrowed = replace(
        sheet,
        patches=tuple(
            _narrowed(patch, chosen) for patch in sheet.patches if chosen & set(patch.sources)
        ),
        idle_rows=tuple(row for row in sheet.idle_rows if row in chosen),
        invalid={row: why for row, why in sheet.invalid.items() if row in chosen},
    )
    return narrowed, kept


def _result_columns(sheet: Sheet, only: str) -> dict[str, str]:
    """The result columns of a report fed back in, by their lower-case name."""
    header = [str(column) for column in sheet.frame.columns]
    if not is_report(header):
        raise OptionsError.about(
            "only",
            only,
            lambda named: (
                f"{named} picks rows by the status an earlier run gave them, but {sheet.path} "
                "is not a report (it has no result columns) — give the report of an earlier "
                f"run (e.g. {sheet.path.stem}.results{sheet.path.suffix}) as the sheet, or "
                "leave the option out"
            ),
        )
    return {column.lower(): column for column in fed_back_results(header)}


def _earlier_statuses(sheet: Sheet, column: str) -> dict[int, Status]:
    """Each row's earlier status; a located problem for each cell that holds none."""
    statuses: dict[int, Status] = {}
    problems = []
    for row, cell in zip(sheet.rows, sheet.frame[column].tolist(), strict=True):
        text = str(cell).strip().lower()
        if text in STATUS_NAMES:
            statuses[row] = Status(text)
        else:
            problems.append(
                Problem(
                    str(sheet.path),
                    row,
                    column,
                    Reason(
                        f"{str(cell)!r} is not a status a report writes",
                        f"write one of {', '.join(STATUS_NAMES)}, as the earlier run did",
                    ),
                )
            )
    if problems:
        raise SheetError(problems)
    return statuses


def _earlier_result(
    sheet: Sheet, columns: Mapping[str, str], position: int, status: Status
) -> RowResult:
    """A row's result as the report fed back in recorded it."""

    def cell(name: str) -> str:
        column = columns.get(name)
        return "" if column is None else str(sheet.frame[column].iat[position]).strip()

    image_column = next((str(c) for c in sheet.frame.columns if str(c).lower() == "image_id"), None)
    image_id = "" if image_column is None else str(sheet.frame[image_column].iat[position])
    outcome = Outcome(
        image_id.strip().lower(),
        status,
        _whole(cell("http_status")),
        cell("error_code"),
        cell("error_message"),
        cell("request_id"),
        _whole(cell("attempts")) or 0,
        _whole(cell("elapsed_ms")),
    )
    return RowResult(outcome, cell("before"), cell("after"))


def _whole(text: str) -> int | None:
    """A whole number as the report wrote it (``200``; a spreadsheet may show ``200.0``)."""
    try:
        number: Any = float(text)
    except ValueError:
        return None
    return int(number) if number == number and abs(number) != float("inf") else None


def _narrowed(patch: ImagePatch, rows: set[int]) -> ImagePatch:
    """``patch`` with only the changes the ``rows`` ask for."""
    pairs = [
        (op, row) for op, row in zip(patch.operations, patch.sources, strict=True) if row in rows
    ]
    return ImagePatch(patch.image_id, tuple(op for op, _ in pairs), tuple(row for _, row in pairs))
