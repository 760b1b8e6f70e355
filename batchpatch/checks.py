"""Local checks of a sheet, before anything is sent: every problem, located, at once.

Works on the table of changes ``sheet`` builds (one row per requested change: ``row``,
``image_id``, ``op``, ``attribute``, ``value``, ``column``, ``typed``), vectorised where
the check allows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd

from batchpatch.errors import Problem
from batchpatch.schema import (
    BASE_ATTRIBUTES,
    EXCLUSIVE,
    FLAG_ATTRIBUTES,
    cannot_remove,
    check_attribute,
    check_combination,
    check_image_id,
    check_value,
)

#: The first data row of a sheet is row 2 for a person looking at it: row 1 is the header.
FIRST_DATA_ROW = 2

#: Columns batchpatch writes into a report.  A report fed back in as input keeps them, but
#: they are never taken for attributes to change.
RESULT_COLUMNS = frozenset(
    {"status", "http_status", "error_code", "error_message", "request_id", "attempts",
     "elapsed_ms", "before", "after"}
)
LONG_COLUMNS = frozenset({"image_id", "op", "path", "value"})
EXCLUSIVE_ATTRIBUTES = frozenset().union(*(group | excludes for group, excludes in EXCLUSIVE))


#: A header with all of these is a report fed back in as a sheet.
REPORT_MARKERS = frozenset({"status", "http_status", "error_code", "error_message",
                            "request_id", "attempts", "elapsed_ms"})


def passive_columns(header: list[str]) -> set[str]:
    """Columns carried into the report but never sent: ``#comment`` columns, and the result
    columns of a report fed back in (only then: elsewhere ``after`` may be a custom key)."""
    lowered = {column.lower() for column in header}
    is_report = lowered >= REPORT_MARKERS
    return {column for column in header
            if column.startswith("#") or (is_report and column.lower() in RESULT_COLUMNS)}


#: The report keeps an input column named like a result column (``after``) as
#: ``after (input)``.
INPUT_SUFFIX = " (input)"


def attribute_names(header: list[str]) -> dict[str, str]:
    """The attribute each column of a wide sheet changes: its header without a leading ``/``;
    in a report fed back in, ``after (input)`` is the input column ``after`` again."""
    lowered = {column.lower() for column in header}
    is_report = lowered >= REPORT_MARKERS
    names = {}
    for column in header:
        attribute = column.lstrip("/")
        original = attribute.removesuffix(INPUT_SUFFIX)
        if is_report and original != attribute and original.lower() in RESULT_COLUMNS:
            attribute = original
        names[column] = attribute
    return names


def duplicate_columns(file: str, header: list[str]) -> list[Problem]:
    """Columns that name the same thing (``name``, `` Name``, ``/name``): which one counts?"""
    seen: dict[str, str] = {}
    problems = []
    for column in header:
        key = column.lower().lstrip("/")
        if key and key in seen:
            problems.append(Problem(file, 1, column,
                                    f"column {seen[key]!r} appears more than once",
                                    "keep one column per attribute"))
        seen.setdefault(key, column)
    return problems


def header_problems(file: str, header: list[str]) -> list[Problem]:
    """Empty and repeated header names, found before any frame is built from the rows."""
    empty = [Problem(file, 1, f"#{position}", "a column has no header",
                     "name the column, or delete it")
             for position, column in enumerate(header, start=1) if not column]
    return empty + duplicate_columns(file, header)


def column_problems(file: str, columns: list[str], long: bool) -> list[Problem]:
    """Problems with the header row itself (reported at row 1)."""
    problems = []
    passive = passive_columns(columns)
    attributes = attribute_names(columns)
    for position, column in enumerate(columns, start=1):
        if not column:
            problems.append(Problem(file, 1, f"#{position}", "a column has no header",
                                    "name the column, or delete it"))
        elif column in passive or column.lower() == "image_id":
            continue
        elif long and column.lower() not in LONG_COLUMNS:
            problems.append(Problem(file, 1, column, f"unknown column {column!r}",
                                    "delete it, or start its header with # to keep it as "
                                    "a comment"))
        elif not long:
            reason = check_attribute(attributes[column], "add")
            if reason:
                message, _, fix = reason.partition(" — ")
                problems.append(Problem(file, 1, column, message,
                                        fix + ", or start the header with # for a comment"))
    return problems


def change_problems(file: str, changes: pd.DataFrame, long: bool) -> list[Problem]:
    """Problems of single changes, and of changes that clash within one image."""
    problems: list[Problem] = []

    def add(row: Any, column: str, reason: str) -> None:
        message, _, fix = reason.partition(" — ")
        problems.append(Problem(file, int(row) + FIRST_DATA_ROW, column, message, fix))

    id_reasons = {image_id: check_image_id(image_id)
                  for image_id in changes["image_id"].unique().tolist() if image_id}
    for row, image_id, column in _columns(changes.drop_duplicates("row"),
                                          "row", "image_id", "id_column"):
        reason = id_reasons.get(image_id)
        if reason:
            add(row, column, reason)
    for row, op, attribute, column, attribute_column, typed in _columns(
        changes, "row", "op", "attribute", "column", "attribute_column", "typed"
    ):
        if not attribute or op not in ("add", "replace", "remove"):
            continue
        reason = check_attribute(attribute, op) if long else (
            cannot_remove(attribute) if op == "remove" and attribute in BASE_ATTRIBUTES
            else None)
        if reason:
            add(row, str(attribute_column), reason)
        elif typed is not None and (reason := check_value(attribute, typed)):
            add(row, column, reason)
    problems += _clashes(file, changes)
    return problems


def repeated_changes(file: str, changes: pd.DataFrame) -> tuple[list[Any], list[Problem]]:
    """Changes that repeat an earlier row verbatim (same image, attribute, op and typed
    value): the index labels to drop, since the change is sent once, and a warning each."""
    labels, warnings = [], []
    for label, row, column, first_row, identical in _repeats(changes):
        if identical:
            labels.append(label)
            warnings.append(Problem(file, row + FIRST_DATA_ROW, column,
                                    f"warning: the same change as row {first_row + FIRST_DATA_ROW}",
                                    "it is sent once; delete one of the two rows"))
    return labels, warnings


def _repeats(changes: pd.DataFrame) -> Iterator[tuple[Any, int, str, int, bool]]:
    """``(label, row, column, first row, identical)`` for each change to an attribute of an
    image that an earlier row already changes; identical when op and typed value match."""
    key = ["image_id", "attribute"]
    repeated = changes.duplicated(key, keep="first") & (changes["image_id"] != "")
    if not repeated.any():
        return
    firsts = changes.drop_duplicates(key)
    first = {(image_id, attribute): (row, op, typed) for image_id, attribute, row, op, typed
             in _columns(firsts, "image_id", "attribute", "row", "op", "typed")}
    subset = changes[repeated]
    for label, (image_id, attribute, row, column, op, typed) in zip(
        subset.index.tolist(),
        _columns(subset, "image_id", "attribute", "row", "column", "op", "typed"), strict=True,
    ):
        first_row, first_op, first_typed = first[(image_id, attribute)]
        yield label, int(row), str(column), int(first_row), (op, typed) == (first_op, first_typed)


def _clashes(file: str, changes: pd.DataFrame) -> list[Problem]:
    """Two different changes to one attribute of one image, and attributes that cannot
    coexist.  Verbatim repeats are not clashes: ``repeated_changes`` warns of them."""
    problems = [
        Problem(file, row + FIRST_DATA_ROW, column,
                f"conflicts with row {first_row + FIRST_DATA_ROW}, which changes the same "
                "attribute of the same image", "keep only the change you want")
        for _, row, column, first_row, identical in _repeats(changes) if not identical
    ]
    setting = changes[changes["op"].isin(("add", "replace"))
                      & changes["attribute"].isin(EXCLUSIVE_ATTRIBUTES)]
    setting = setting[(~setting["attribute"].isin(FLAG_ATTRIBUTES) | (setting["typed"] == "true"))
                      & (setting["image_id"] != "")]
    for _, group in setting.groupby("image_id", sort=False):
        reason = check_combination(set(group["attribute"]))
        if reason:
            message, _, fix = reason.partition(" — ")
            last = group.iloc[-1]
            problems.append(Problem(file, int(last["row"]) + FIRST_DATA_ROW,
                                    str(last["column"]), message, fix))
    return problems


def invalid_rows(changes: pd.DataFrame, problems: list[Problem],
                 first_row: int = FIRST_DATA_ROW) -> dict[int, str]:
    """Row → reason for every row with a problem, and for every other row of its image."""
    reasons: dict[int, str] = {}
    for problem in problems:
        row = problem.row - first_row
        if row >= 0 and row not in reasons:
            reasons[row] = f"{problem.column}: {problem.message} — {problem.fix}"
    culprits: dict[str, int] = {}
    for row, image_id in _columns(changes[changes["row"].isin(list(reasons))],
                                  "row", "image_id"):
        if image_id:
            culprits[image_id] = min(culprits.get(image_id, int(row)), int(row))
    for row, image_id in _columns(changes[changes["image_id"].isin(list(culprits))],
                                  "row", "image_id"):
        reasons.setdefault(
            int(row),
            f"row {culprits[image_id] + first_row} of the same image is invalid; "
            "an image's changes are sent together or not at all",
        )
    return reasons


def _columns(frame: pd.DataFrame, *names: str) -> Iterator[tuple[Any, ...]]:
    return zip(*(frame[name].tolist() for name in names), strict=True)  # lists: fast to walk
