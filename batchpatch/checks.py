"""Local checks of a sheet, before anything is sent: every problem, located, at once.

Works on the ``Changes`` the sheet asks for (built by ``sheet`` from a ``grid.Grid``),
vectorised where the check allows.  Rows are spreadsheet rows throughout, as a person sees
them (the header is row 1 of a sheet with nothing above it).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from batchpatch.errors import Problem, Reason
from batchpatch.grid import CellNote, Grid
from batchpatch.models import JsonValue
from batchpatch.report import INPUT_SUFFIX, RESULT_COLUMNS, fed_back_results, is_report
from batchpatch.routing import routing_columns
from batchpatch.schema import (
    IMS_SCHEMA,
    LONG_OPS,
    MAX_TAGS,
    RENAME,
    Schema,
    UntypedValue,
    cannot_remove,
    check_attribute,
    is_tag,
)

Shape = Literal["long", "wide"]

LONG_COLUMNS = frozenset({"image_id", "op", "path", "value"})

#: The columns of ``Changes.frame``, in order: one row per requested change.
#:
#: ``row``: the spreadsheet row (int) · ``image_id``: trimmed, lower-cased ·
#: ``op``: trimmed, lower-cased, as written (maybe not an op) · ``attribute``: without a
#: leading ``/`` · ``value``: the cell's text as read · ``column``: the header of the cell
#: holding the value · ``attribute_column``: the header of the cell naming the attribute
#: (``path`` in a long sheet, the value's own column in a wide one) · ``typed``: the JSON
#: value to send, None where there is none (``remove``) or it cannot be typed.
CHANGE_COLUMNS = (
    "row",
    "image_id",
    "op",
    "attribute",
    "value",
    "column",
    "attribute_column",
    "typed",
)


@dataclass(frozen=True)
class Changes:
    """Every change a sheet asks for, in sheet order: ``frame`` holds exactly
    ``CHANGE_COLUMNS``; ``shape`` is the sheet's, ``id_column`` the header of its image
    ids (and ``op_column`` of a long sheet's ops), ``header`` all of its header, and
    ``header_row`` the row the header is on."""

    frame: pd.DataFrame
    shape: Shape
    id_column: str
    header: tuple[str, ...]
    header_row: int = 1
    op_column: str = "op"

    def __post_init__(self) -> None:
        if tuple(self.frame.columns) != CHANGE_COLUMNS:
            raise ValueError(
                f"changes need the columns {CHANGE_COLUMNS}, not {tuple(self.frame.columns)}"
            )

    def without(self, mask: Any) -> Changes:
        """These changes less those ``mask`` selects."""
        return replace(self, frame=self.frame[~mask])


def passive_columns(header: list[str]) -> set[str]:
    """Columns carried into the report but never sent: ``#comment`` columns, the result
    columns of a report fed back in (only then: elsewhere ``after`` may be a custom key),
    and the routing columns ``region`` and ``project_id`` (``routing``)."""
    comments = {column for column in header if column.startswith("#")}
    return comments | fed_back_results(header) | routing_columns(header)


def attribute_names(header: list[str]) -> dict[str, str]:
    """The attribute each column of a wide sheet changes: its header without a leading ``/``;
    in a report fed back in, ``after (input)`` is the input column ``after`` again."""
    report = is_report(header)
    names = {}
    for column in header:
        attribute = column.lstrip("/")
        original = attribute.removesuffix(INPUT_SUFFIX)
        if report and original != attribute and original.lower() in RESULT_COLUMNS:
            attribute = original
        names[column] = attribute
    return names


def column_problems(
    file: str, columns: list[str], long: bool, row: int = 1, schema: Schema = IMS_SCHEMA
) -> list[Problem]:
    """Problems with the header row itself (reported at ``row``, the header's)."""
    problems = []
    passive = passive_columns(columns)
    attributes = attribute_names(columns)
    for column in columns:  # empty and repeated names the reader refused already
        if column in passive or column.lower() == "image_id":
            continue
        elif long and column.lower() not in LONG_COLUMNS:
            problems.append(
                Problem(
                    file,
                    row,
                    column,
                    Reason(
                        f"unknown column {column!r}",
                        "delete it, or start its header with # to keep it as a comment",
                    ),
                )
            )
        elif not long and (reason := schema.check_attribute(*_header_change(attributes[column]))):
            problems.append(
                Problem(
                    file,
                    row,
                    column,
                    Reason(reason.what, reason.fix + ", or start the header with # for a comment"),
                )
            )
    return problems


def _header_change(attribute: str) -> tuple[str, str]:
    """What a wide header is checked as: a tag column may name a legacy key outside the
    strict rule (its ``<remove>`` cells delete it; a cell setting it is refused at the
    cell), any other column is checked as an attribute to set."""
    return attribute, "remove" if is_tag(attribute) else "add"


@dataclass(frozen=True)
class Checked:
    """What the checks made of a sheet's changes: the ones to send (each verbatim repeat
    dropped, since it is sent once), every located problem, and the warnings (repeats)."""

    changes: Changes
    problems: list[Problem]
    warnings: list[Problem]


def check(file: str, changes: Changes, grid: Grid, schema: Schema = IMS_SCHEMA) -> Checked:
    """Every problem of ``changes`` read from ``grid``, in the order ``invalid_rows`` takes a
    row's first reason from: the header, each change's cells, the changes themselves (once
    each: repeats dropped), the reader's own problems, and the cells written as something
    their attribute cannot take, all by ``schema``'s rules."""
    problems = cell_problems(file, changes, schema)
    repeats: pd.DataFrame | None = _repeats(changes.frame)
    labels, warnings = repeated_changes(file, changes.frame, repeats)
    kept = changes
    if labels:  # the repeats of what is left are found again
        kept, repeats = changes.without(changes.frame.index.isin(labels)), None
    problems += change_problems(file, kept, schema, repeats)
    problems += grid.problems
    problems += _note_problems(file, kept.frame, grid.notes, schema)
    return Checked(kept, problems, warnings + _tag_counts(file, kept.frame))


def cell_problems(file: str, changes: Changes, schema: Schema = IMS_SCHEMA) -> list[Problem]:
    """The header's problems, then those of each change's cells on their own."""
    frame = changes.frame
    long = changes.shape == "long"
    problems = column_problems(file, list(changes.header), long, changes.header_row, schema)
    problems += _located(
        file,
        frame,
        frame["image_id"] == "",
        changes.id_column,
        Reason("image_id is empty", "fill in the image's id, or delete the row"),
    )
    if long:
        problems += _long_cell_problems(file, changes)
    return problems + _untyped(file, frame, schema)


def _long_cell_problems(file: str, changes: Changes) -> list[Problem]:
    """The op, path and value cells of a long sheet, each on its own."""
    frame = changes.frame
    value_column = frame["column"]
    blank_value = frame["value"].str.strip() == ""
    tag = frame["attribute"].str.startswith("tag:")
    setting = frame["op"].isin(("add", "replace")) & ~tag  # a tag's value may be empty
    return [
        *_located(
            file,
            frame,
            ~frame["op"].isin(LONG_OPS),
            changes.op_column,
            Reason(
                "op must be add, replace, remove or rename",
                "write one of add, replace, remove, rename",
            ),
        ),
        *_located(
            file,
            frame,
            (frame["op"] == RENAME) & blank_value,
            value_column,
            Reason(
                "rename needs the new key in value",
                "write the new key, e.g. /new_key or tag:new_key",
            ),
        ),
        *_located(
            file,
            frame,
            frame["attribute"] == "",
            frame["attribute_column"],
            Reason("path is empty", "write the attribute to change, e.g. /name"),
        ),
        *_located(
            file,
            frame,
            setting & blank_value,
            value_column,
            Reason(
                "add and replace need a value",
                "fill in the value, or use op remove to delete the attribute",
            ),
        ),
        *_located(
            file,
            frame,
            (frame["op"] == "remove") & ~blank_value,
            value_column,
            Reason("remove takes no value", "clear the value, or use add or replace to set one"),
        ),
    ]


def _untyped(file: str, frame: pd.DataFrame, schema: Schema) -> list[Problem]:
    """Values that cannot become the JSON their attribute takes."""
    problems = []
    needs_type = (
        frame["typed"].isna()
        & frame["op"].isin(("add", "replace"))
        & (frame["attribute"] != "")
        & (frame["value"].str.strip() != "")
    )
    for row, attribute, value, column in _columns(
        frame[needs_type], "row", "attribute", "value", "column"
    ):
        try:
            schema.typed_value(attribute, value)
        except UntypedValue as error:
            problems.append(Problem(file, int(row), column, error.reason))
    return problems


def change_problems(
    file: str,
    changes: Changes,
    schema: Schema = IMS_SCHEMA,
    repeats: pd.DataFrame | None = None,
) -> list[Problem]:
    """Problems of single changes, and of changes that clash within one image
    (``repeats``: what ``_repeats`` finds in ``changes``, when it is known already)."""
    frame = changes.frame
    return (
        _id_problems(file, changes, schema)
        + _single_change_problems(file, changes, schema)
        + _clashes(file, frame, schema, _repeats(frame) if repeats is None else repeats)
        + _quota_problems(file, frame, schema)
        + _renamed_onto(file, frame)
        + _renames_crossing(file, frame)
    )


def _id_problems(file: str, changes: Changes, schema: Schema) -> list[Problem]:
    """Each row whose image id cannot be one, once a row (a wide row holds several changes);
    every distinct id is checked once, none that the schema's ``plain_image_id`` pattern
    (see ``schema.ImsSchema``) matches."""
    rows = changes.frame
    pattern = getattr(schema, "plain_image_id", None)
    if pattern is not None:  # a row's changes share its id: matched before rows are told
        rows = rows[~_matches(rows["image_id"], pattern)]
    rows = rows.drop_duplicates("row")
    codes, ids = factorized(rows["image_id"])
    reasons = [schema.check_image_id(image_id) if image_id else None for image_id in ids.tolist()]
    bad = np.flatnonzero(np.array([reason is not None for reason in reasons], dtype=bool)[codes])
    row_numbers = rows["row"].to_numpy()[bad].tolist()
    return [
        Problem(file, int(row), changes.id_column, reason)
        for row, reason in zip(row_numbers, (reasons[code] for code in codes[bad]), strict=True)
        if reason is not None
    ]


def _matches(texts: Any, pattern: str) -> npt.NDArray[np.bool_]:
    """Whether each of ``texts`` fully matches ``pattern``, by pyarrow (RE2); all False
    when a text cannot be made UTF-8 (a lone surrogate: those are asked one by one)."""
    try:
        array = pa.array(texts, pa.string())
    except (UnicodeError, pa.ArrowException):
        return np.zeros(len(texts), dtype=bool)
    matched = pc.match_substring_regex(array, rf"\A(?:{pattern})\z")
    return np.asarray(matched.to_numpy(zero_copy_only=False), dtype=bool)


def _single_change_problems(file: str, changes: Changes, schema: Schema) -> list[Problem]:
    """Each change's op on its attribute, and its value, in sheet order (at most one problem
    a change).  Each distinct (attribute, op) is asked about once, and each distinct value
    of an attribute once: a sheet of a million rows names a handful of attributes."""
    frame = changes.frame
    long = changes.shape == "long"
    checked = (frame["attribute"] != "").to_numpy() & frame["op"].isin(LONG_OPS).to_numpy()
    pair, firsts = distinct(frame["attribute"], frame["op"])
    pair_reasons = [
        _attribute_reason(attribute, op, long, schema) if checked[first] else None
        for first, attribute, op in zip(
            firsts.tolist(),
            frame["attribute"].iloc[firsts].tolist(),
            frame["op"].iloc[firsts].tolist(),
            strict=True,
        )
    ]
    refused = np.array([reason is not None for reason in pair_reasons], dtype=bool)[pair]
    found: dict[int, Problem] = {}
    for position in np.flatnonzero(checked & refused).tolist():
        reason = pair_reasons[pair[position]]
        assert reason is not None
        change = frame.iloc[position]
        found[position] = Problem(file, int(change["row"]), str(change["attribute_column"]), reason)
    has_value = checked & ~refused & pd.notna(frame["typed"]).to_numpy()
    renaming = (frame["op"] == RENAME).to_numpy()
    found.update(_value_problems(file, frame, has_value & renaming, _rename_check))
    patterns = getattr(schema, "plain_text", None)
    found.update(_value_problems(file, frame, has_value & ~renaming, schema.check_value, patterns))
    return [found[position] for position in sorted(found)]


def _rename_check(old: str, new: JsonValue) -> Reason | None:
    return rename_reason(old, str(new))


def _value_problems(
    file: str,
    frame: pd.DataFrame,
    mask: npt.NDArray[np.bool_],
    check_value: Callable[[str, JsonValue], Reason | None],
    patterns: Callable[[str], str | None] | None = None,
) -> dict[int, Problem]:
    """Position → the problem ``check_value`` finds with the typed value of each change
    ``mask`` selects, asked once per distinct (attribute, cell text), which the typed
    value follows from; cells whose text the ``patterns`` of their attribute match (see
    ``schema.ImsSchema.plain_text``) need no asking."""
    positions = np.flatnonzero(mask)
    if patterns is not None and len(positions):
        positions = positions[~_plain(frame, positions, patterns)]
    if not len(positions):
        return {}
    pair, firsts = distinct(frame["attribute"].iloc[positions], frame["value"].iloc[positions])
    asked = positions[firsts]
    typed = frame["typed"].to_numpy(dtype=object)
    reasons = [
        check_value(attribute, value)
        for attribute, value in zip(
            frame["attribute"].iloc[asked].tolist(), typed[asked].tolist(), strict=True
        )
    ]
    bad = np.flatnonzero(np.array([reason is not None for reason in reasons], dtype=bool)[pair])
    problems = {}
    for index in bad.tolist():
        reason = reasons[pair[index]]
        assert reason is not None
        change = frame.iloc[int(positions[index])]
        problems[int(positions[index])] = Problem(
            file, int(change["row"]), str(change["column"]), reason
        )
    return problems


def _plain(
    frame: pd.DataFrame, positions: npt.NDArray[np.intp], patterns: Callable[[str], str | None]
) -> npt.NDArray[np.bool_]:
    """Whether the cell text of each change at ``positions`` fully matches the pattern
    ``patterns`` gives for its attribute: one pyarrow (RE2) match per distinct pattern."""
    attributes = frame["attribute"].iloc[positions]
    codes, names = factorized(attributes)
    chosen = np.empty(len(names), dtype=object)
    chosen[:] = [patterns(name) for name in names.tolist()]
    pattern_codes, pattern_texts = pd.factorize(chosen[codes], sort=False)
    plain = np.zeros(len(positions), dtype=bool)
    texts = frame["value"].iloc[positions]
    for code, pattern in enumerate(pattern_texts.tolist()):
        members = np.flatnonzero(pattern_codes == code)
        plain[members] = _matches(texts.iloc[members], pattern)
    return plain


def distinct(*columns: Any) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """A code for each distinct combination of ``columns`` (equally long arrays or Series),
    by position, and the first position of each code (codes in order of first appearance,
    as ``pd.factorize`` numbers them).  The columns are factorised one by one, so the
    combined codes never overflow."""
    codes = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        own, uniques = factorized(column, use_na_sentinel=False)
        codes, _ = pd.factorize(codes * max(len(uniques), 1) + own, sort=False)
        codes = codes.astype(np.int64)
    return codes.astype(np.intp), first_positions(codes)


def factorized(column: Any, *, use_na_sentinel: bool = True) -> tuple[npt.NDArray[np.intp], Any]:
    """``pd.factorize(column)``, a Series by its array: the uniques of a Series are made an
    Index, which turns text held by pyarrow into Python strings (a million of them, for a
    column of a million distinct values)."""
    values: Any = column.array if isinstance(column, pd.Series) else column
    return pd.factorize(values, sort=False, use_na_sentinel=use_na_sentinel)


def first_positions(codes: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """Where each code first appears, for codes numbered in order of first appearance (as
    ``pd.factorize`` numbers them): where a code exceeds every code before it.  One pass,
    no sort."""
    if not len(codes):
        return np.zeros(0, dtype=np.intp)
    highest = np.maximum.accumulate(codes)
    new = np.empty(len(codes), dtype=bool)
    new[0] = True
    new[1:] = highest[1:] > highest[:-1]
    return np.flatnonzero(new)


def rename_reason(old: str, new: str) -> Reason | None:
    """Why ``old`` cannot be renamed to ``new`` (both as a sheet names them), or None."""
    if is_tag(old) != is_tag(new):
        return Reason(
            f"rename moves a tag to a tag or a key to a key, not {old} to {new}",
            "write tag:NEW for a tag, /new_key for a key",
        )
    if old == new:
        return Reason(f"rename of {old} to itself", "write the new key in value")
    return check_attribute(new, "add" if is_tag(new) else RENAME)  # a new tag: the strict rule


def _renamed_onto(file: str, frame: pd.DataFrame) -> list[Problem]:
    """A rename whose new key another row of the same image changes: the two would fight
    over it (another rename onto it is ``_renames_crossing``'s)."""
    renames = frame[(frame["op"] == RENAME) & frame["typed"].notna() & (frame["image_id"] != "")]
    if renames.empty:
        return []
    touched: dict[tuple[str, str], int] = {}
    renaming = frame[frame["image_id"].isin(renames["image_id"].unique())]
    for row, image_id, attribute, op in _columns(renaming, "row", "image_id", "attribute", "op"):
        if op != RENAME:
            touched.setdefault((image_id, attribute), int(row))
    problems = []
    for row, image_id, new, column in _columns(renames, "row", "image_id", "typed", "column"):
        other = touched.get((image_id, str(new)), int(row))
        if other != int(row):
            problems.append(
                Problem(
                    file,
                    int(row),
                    column,
                    Reason(
                        f"row {other} also changes {new} of the same image",
                        "keep only one of the two changes",
                    ),
                )
            )
    return problems


@dataclass(frozen=True)
class _Rename:
    row: int
    column: str  # the new key's (value)
    path_column: str  # the old key's (path)
    old: str
    new: str

    def column_of(self, key: str) -> str:
        return self.path_column if key == self.old else self.column


def _renames_crossing(file: str, frame: pd.DataFrame) -> list[Problem]:
    """Two renames of one image that share a key (a chain ``g → h``, ``h → i``; a swap;
    one source or one target): the plan of one would undo or contradict the other, and a
    rerun could not tell which ran.  Refused at both rows."""
    renames = frame[(frame["op"] == RENAME) & frame["typed"].notna() & (frame["image_id"] != "")]
    by_image: dict[str, list[_Rename]] = {}
    for row, image_id, old, new, column, path_column in _columns(
        renames, "row", "image_id", "attribute", "typed", "column", "attribute_column"
    ):
        rename = _Rename(int(row), str(column), str(path_column), old, str(new))
        by_image.setdefault(image_id, []).append(rename)
    problems = []
    for image_renames in by_image.values():
        for position, first in enumerate(image_renames):
            for second in image_renames[position + 1 :]:
                if {first.old, first.new} & {second.old, second.new}:
                    problems += _crossing(file, first, second)
    return problems


def _crossing(file: str, first: _Rename, second: _Rename) -> list[Problem]:
    """Both rows' problems for two renames of one image that share a key."""
    if first.new == second.old and first.old != second.new:
        fix = f"rename in one step: one row renaming {first.old} to {second.new}"
    elif second.new == first.old and second.old != first.new:
        fix = f"rename in one step: one row renaming {second.old} to {first.new}"
    elif {first.old, first.new} == {second.old, second.new}:
        fix = "a swap cannot be one sheet: rename one key to a free key in a run of its own first"
    else:
        fix = "keep only one of the two renames"
    shared = sorted({first.old, first.new} & {second.old, second.new})[0]
    return [
        Problem(
            file,
            mine.row,
            mine.column_of(shared),
            Reason(f"row {other.row} also renames {shared} of the same image", fix),
        )
        for mine, other in ((first, second), (second, first))
    ]


def _tag_counts(file: str, frame: pd.DataFrame) -> list[Problem]:
    """Warnings (not problems) for images the sheet alone gives more than ``MAX_TAGS``
    tags: the sheet may only restate tags the image carries already (an untouched export
    of an image with legacy tags past the limit), which the plan finds unchanged.  The plan
    refuses, located, a change that adds a tag to an image that would then carry more."""
    setting = frame["op"].isin(("add", "replace")) & frame["attribute"].str.startswith("tag:")
    renamed = frame["op"] == RENAME
    renamed[renamed] = frame.loc[renamed, "typed"].astype(str).str.startswith("tag:")
    keys = pd.concat(
        [
            frame.loc[setting, ["image_id", "attribute", "row", "column"]],
            frame.loc[renamed, ["image_id", "typed", "row", "column"]].rename(
                columns={"typed": "attribute"}
            ),
        ]
    )
    keys = keys[keys["image_id"] != ""].drop_duplicates(["image_id", "attribute"])
    problems = []
    order, groups = _image_groups(keys["image_id"])
    for members in groups:
        if len(members) > MAX_TAGS:
            last = keys.iloc[order[members.start : members.stop]].sort_values("row").iloc[-1]
            problems.append(
                Problem(
                    file,
                    int(last["row"]),
                    str(last["column"]),
                    Reason(
                        f"warning: the sheet sets {len(members)} tags on this image; an image "
                        f"may carry {MAX_TAGS} at most",
                        "the plan refuses it unless the image carries those tags already; "
                        f"set {MAX_TAGS} tags at most per image",
                    ),
                )
            )
    return problems


def _image_groups(image_ids: pd.Series[Any]) -> tuple[npt.NDArray[np.intp], list[range]]:
    """What ``groupby("image_id", sort=False)`` finds, without a frame per image (a
    million-row sheet has 250,000 images): see ``grouped_order``."""
    codes, _ = factorized(image_ids)
    return grouped_order(codes)


def grouped_order(codes: npt.NDArray[np.intp]) -> tuple[npt.NDArray[np.intp], list[range]]:
    """The positions ordered code by code (codes numbered in order of first appearance, as
    ``pd.factorize`` does; each code's positions ascending), and the range of that order
    each code takes."""
    order, sizes = grouped_sizes(codes)
    bounds = [0, *np.cumsum(sizes).tolist()]
    return order, [range(start, end) for start, end in itertools.pairwise(bounds)]


def grouped_sizes(
    codes: npt.NDArray[np.intp],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """``grouped_order``'s order, and how many positions each code has (none of them 0),
    in that order.  Codes are sorted in the narrowest integer type that holds them: few
    codes (ops, attributes) sort by radix in one pass."""
    narrow = codes
    if len(codes) and int(codes.min()) >= 0:
        narrow = codes.astype(np.min_scalar_type(int(codes.max())))
    order = np.argsort(narrow, kind="stable")
    if not len(order):
        return order, np.zeros(0, dtype=np.intp)
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(narrow[order])) + 1, [len(order)]))
    return order, np.diff(bounds)


def _attribute_reason(attribute: str, op: str, long: bool, schema: Schema) -> Reason | None:
    """Why ``op`` may not touch ``attribute``; a wide sheet's header was checked already,
    so only removing an attribute every image has, and setting a tag whose key only a
    removal may name (a legacy key), are left."""
    if long:
        return schema.check_attribute(attribute, op)
    if op == "remove" and attribute in schema.base_attributes:
        return cannot_remove(attribute)
    if (
        is_tag(attribute)
        and op != "remove"
        and schema.check_attribute(attribute, "remove") is None  # else the header says why
        and (reason := schema.check_attribute(attribute, op))
    ):
        return Reason(
            f"{reason.what}: this column can only delete the tag (<remove>)",
            f"clear the cell; to keep the value under a valid key, rename it in a long sheet "
            f"(image_id,rename,{attribute},tag:NEW_KEY)",
        )
    return None


def _note_problems(
    file: str, frame: pd.DataFrame, notes: Mapping[tuple[int, str], CellNote], schema: Schema
) -> list[Problem]:
    """Cells sent to an attribute that cannot take what the program shows in them."""
    if not notes:
        return []
    problems = []
    for row, column, attribute in _columns(frame, "row", "column", "attribute"):
        note = notes.get((int(row), column))
        if note is None or (note.kind == "boolean" and attribute in schema.flag_attributes):
            continue
        which = (
            "does not take (only the true/false flags do)"
            if note.kind == "boolean"
            else "cannot take as it is"
        )
        problems.append(
            Problem(
                file, int(row), column, Reason(f"{note.what}, which {attribute} {which}", note.fix)
            )
        )
    return problems


def repeated_changes(
    file: str, frame: pd.DataFrame, repeats: pd.DataFrame | None = None
) -> tuple[list[Any], list[Problem]]:
    """Changes that repeat an earlier row verbatim (same image, attribute, op and typed
    value): the index labels to drop, since the change is sent once, and one warning per
    repeating row and the row it repeats — at the column when one cell repeats, for the row
    as a whole (saying how many cells) when several do, so that a wide sheet's copied row
    is one line, not one per cell."""
    repeats = _repeats(frame) if repeats is None else repeats
    identical = repeats[repeats["identical"]]
    if identical.empty:
        return [], []
    changes_per_row = frame["row"].value_counts()
    groups = identical.groupby(["row", "first_row"], sort=False)["column"].agg(["size", "first"])
    warnings = [
        _repeat_warning(
            file,
            int(row),
            int(first_row),
            int(size),
            str(column),
            whole_row=int(size) == int(changes_per_row[row]),
        )
        for (row, first_row), size, column in zip(
            groups.index.tolist(), groups["size"].tolist(), groups["first"].tolist(), strict=True
        )
    ]
    return identical["label"].tolist(), warnings


def _repeat_warning(
    file: str, row: int, first_row: int, cells: int, column: str, *, whole_row: bool
) -> Problem:
    """The warning that ``cells`` changes of ``row`` (``column``'s when one) repeat
    ``first_row``'s; deleting the row is the fix only when nothing else is in it."""
    them = "it" if cells == 1 else "them"
    fix = "delete one of the two rows" if whole_row else f"clear {them} in one of the two rows"
    if cells == 1:
        what = f"warning: the same change as row {first_row}"
        return Problem(file, row, column, Reason(what, f"it is sent once; {fix}"))
    what = f"warning: the same changes as row {first_row}, in {cells:,} cells"
    return Problem(file, row, "", Reason(what, f"they are sent once; {fix}"))


#: The columns ``_repeats`` answers with.
_REPEAT_COLUMNS = ["label", "row", "column", "first_row", "identical"]


def _repeats(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per change to an attribute of an image that an earlier row already
    changes: its index ``label``, ``row``, ``column``, the ``first_row`` changing it, and
    whether it is ``identical`` (same op and typed value).  Joined, not looped: a wide
    sheet's copied row repeats 10**5 changes."""
    key = ["image_id", "attribute"]
    repeated = frame.duplicated(key, keep="first") & (frame["image_id"] != "")
    if not repeated.any():
        return pd.DataFrame({name: [] for name in _REPEAT_COLUMNS})
    firsts = frame.drop_duplicates(key)[[*key, "row", "op", "typed"]].rename(
        columns={"row": "first_row", "op": "first_op", "typed": "first_typed"}
    )
    subset = frame[repeated]
    joined = (
        subset[[*key, "row", "column", "op", "typed"]]
        .assign(label=subset.index)
        .merge(firsts, on=key, how="left")
    )
    joined["identical"] = [
        (op, typed) == (first_op, first_typed)
        for op, typed, first_op, first_typed in _columns(
            joined, "op", "typed", "first_op", "first_typed"
        )
    ]
    return joined[_REPEAT_COLUMNS]


def _clashes(
    file: str, frame: pd.DataFrame, schema: Schema, repeats: pd.DataFrame
) -> list[Problem]:
    """Two different changes to one attribute of one image, and attributes that cannot
    coexist.  Verbatim repeats are not clashes: ``repeated_changes`` warns of them."""
    renames = set(frame.loc[frame["op"] == RENAME, "row"].tolist())
    problems = [
        Problem(
            file,
            row,
            column,
            Reason(
                f"conflicts with row {first_row}, which changes the same attribute of the same "
                "image",
                "keep only the change you want",
            ),
        )
        for row, column, first_row, identical in _columns(
            repeats, "row", "column", "first_row", "identical"
        )
        if not identical and not {row, first_row} <= renames  # two renames: _renames_crossing
    ]
    exclusive = frozenset().union(*(group | excludes for group, excludes in schema.exclusive))
    setting = frame[frame["op"].isin(("add", "replace")) & frame["attribute"].isin(exclusive)]
    setting = setting[
        (~setting["attribute"].isin(schema.flag_attributes) | (setting["typed"] == "true"))
        & (setting["image_id"] != "")
    ]
    order, groups = _image_groups(setting["image_id"])
    attributes = setting["attribute"].to_numpy(dtype=object)[order].tolist()
    for members in groups:
        reason = schema.check_combination(set(attributes[members.start : members.stop]))
        if reason:
            last = setting.iloc[order[members.stop - 1]]
            problems.append(Problem(file, int(last["row"]), str(last["column"]), reason))
    return problems


def _quota_problems(file: str, frame: pd.DataFrame, schema: Schema) -> list[Problem]:
    """An image whose changes set more properties than the API's quota allows: located at
    the change that goes past it."""
    if getattr(schema, "quota_free", False):  # see schema.ImsSchema
        return []
    setting = frame[frame["op"].isin(("add", "replace")) & (frame["image_id"] != "")]
    setting = setting.drop_duplicates(["image_id", "attribute"])
    order, groups = _image_groups(setting["image_id"])
    attributes = setting["attribute"].to_numpy(dtype=object)[order].tolist()
    problems = []
    for members in groups:
        position = schema.over_quota(attributes[members.start : members.stop])
        if position is not None:
            change = setting.iloc[order[members[position]]]
            problems.append(
                Problem(
                    file,
                    int(change["row"]),
                    str(change["attribute_column"]),
                    Reason(
                        f"this image's changes set more properties than the service allows "
                        f"({position} are already set by earlier changes)",
                        "split the properties over fewer images, or ask the operator to raise "
                        "the property quota",
                    ),
                )
            )
    return problems


def invalid_rows(frame: pd.DataFrame, problems: list[Problem]) -> dict[int, str]:
    """Spreadsheet row → reason for every data row with a problem (its first), and for every
    other row of its image (an image's changes are sent together or not at all)."""
    reasons: dict[int, str] = {}
    for problem in problems:
        reasons.setdefault(problem.row, f"{problem.column}: {problem.reason}")
    culprits: dict[str, int] = {}
    for row, image_id in _columns(frame[frame["row"].isin(list(reasons))], "row", "image_id"):
        if image_id:
            culprits[image_id] = min(culprits.get(image_id, int(row)), int(row))
    for row, image_id in _columns(frame[frame["image_id"].isin(list(culprits))], "row", "image_id"):
        reasons.setdefault(
            int(row),
            f"row {culprits[image_id]} of the same image is invalid; "
            "an image's changes are sent together or not at all",
        )
    return reasons


def _located(
    file: str, frame: pd.DataFrame, mask: pd.Series, column: Any, reason: Reason
) -> list[Problem]:
    """A problem at each change ``mask`` selects, in ``column`` (a header, or a Series of
    them per change)."""
    if not bool(np.any(mask)):
        return []
    selected = frame[mask]
    columns = (
        selected[column.name].tolist()
        if isinstance(column, pd.Series)
        else [column] * len(selected)
    )
    return [
        Problem(file, int(row), name, reason)
        for row, name in zip(selected["row"].tolist(), columns, strict=True)
    ]


def _columns(frame: pd.DataFrame, *names: str) -> Iterator[tuple[Any, ...]]:
    return zip(*(frame[name].tolist() for name in names), strict=True)  # lists: fast to walk
