"""The undo sheet: a long sheet that puts back what a run changed, built from the plan's
before-values.

For every change a run put in place (by this run or by the interrupted run it resumed; the
change was planned, not found already in place) — every change of an image that
``succeeded``, and every part that took effect of an image that failed in another part
(``Change.applied``: its PATCH went through and its tag call failed, or the reverse):

* an attribute (or tag) that did not exist and was added → ``remove`` it;
* one that existed and was replaced (or set again with ``add``) → ``replace`` it with the
  value it had;
* one that was removed → ``add`` it back with the value it had (a key-only tag: a blank
  value, which a long sheet reads as a key-only tag);
* a ``rename`` of a key → the reverse ``rename``; a rename onto a key that already held the
  same value → ``add`` of the old key (the new one keeps the value it had).

A change is addressed as in any long sheet: ``/attribute`` or ``tag:KEY``.  Each value is
written as the text the sheet reader turns back into exactly the old JSON value
(``sheetwrite.cell_text``), so ``batchpatch apply`` of the undo sheet restores the earlier
state, and the undo sheet of that run restores the edit.  A value no cell can hold (an
empty string, a JSON ``true`` where sheets send ``"true"``, a value the local checks now
refuse) is left out and named in ``UndoSheet.left_out``: never a wrong undo.

A run that finds an undo sheet already at its undo path (a rerun finishing what an earlier
run left) **merges** with it (``merge``), so that the one sheet returns to the state before
the earliest run: per image and path, the earlier run's row wins (it holds the older
value); a path only the later run changed gets the later run's row.  A ``rename`` row
stands for two paths (its new key, emptied, and its old key, given the moved value); when
the other run changed one of them too, it is written as plain rows instead: ``remove`` of
the new key, ``add`` of the old key with the value moved (known to the run that renamed,
or read from the later run's before-value of the new key), or, when that value is known to
neither, a note to restore it by hand.

Images sent without a plan (``--no-plan``) have no before-values: they are counted in
``UndoSheet.unobserved`` and get no undo rows.  Failed parts, skipped and unsent images
are not in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from batchpatch.errors import InputError, OptionsError, Reason
from batchpatch.ledger import Entry
from batchpatch.models import Status
from batchpatch.plan import Change, ImagePlan
from batchpatch.schema import IMS_SCHEMA, RENAME, Schema, is_tag
from batchpatch.sheetwrite import cell_text, unquoted, write_table

#: The undo sheet's header: a long sheet.
UNDO_HEADER = ("image_id", "op", "path", "value")
#: Where a tag's key is named in a long sheet's ``path``.
TAG_PREFIX = "tag:"
#: The columns a run across regions adds.
REGION, PROJECT = "region", "project_id"

UndoRow = tuple[str, str, str, str]


@dataclass(frozen=True)
class UndoSheet:
    """The rows that undo a run, what could not be undone exactly, and how many changed
    images had no before-values (sent without a plan).

    ``moved``: each reverse rename's value, as a cell, by ``(image_id, path)`` of its row
    (the merge needs it when it must write a rename as plain rows); ``regions``: each
    image's region, and ``projects`` its project id, for a sheet with ``region`` and
    ``project_id`` columns."""

    rows: list[UndoRow] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    unobserved: int = 0
    moved: dict[tuple[str, str], str] = field(default_factory=dict)
    regions: dict[str, str] = field(default_factory=dict)
    projects: dict[str, str] = field(default_factory=dict)

    @property
    def images(self) -> int:
        return len({row[0] for row in self.rows})

    def note(self) -> str:
        """What a person should know about this undo sheet, "" when nothing."""
        notes = []
        if self.unobserved:
            notes.append(
                f"{self.unobserved} changed image(s) were sent without a plan (--no-plan), "
                "so their earlier values are unknown and the undo sheet cannot restore them"
            )
        if self.left_out:
            notes.append(
                f"{len(self.left_out)} change(s) cannot be undone by a sheet "
                f"({'; '.join(self.left_out[:5])}"
                f"{' …' if len(self.left_out) > 5 else ''}): restore them by hand"
            )
        return "; ".join(notes)


def default_undo_path(sheet_path: Path, report: Path) -> Path:
    """``changes.csv`` → ``changes.undo.csv``, in the report's folder."""
    return report.with_name(f"{sheet_path.stem}.undo{sheet_path.suffix}")


def undo_sheet(entries: Iterable[Entry], schema: Schema = IMS_SCHEMA) -> UndoSheet:
    """The undo of every change the ledger shows put in place, in ledger (sheet) order:
    every change of a ``succeeded`` image, and the parts that took effect of any other;
    each value written as ``schema`` (the rules the run's sheet was read by) reads it back."""
    undo = UndoSheet()
    unobserved = 0
    for entry in entries:
        plan = entry.plan
        if entry.outcome is None or plan is None:
            continue
        taken = _taken(plan, succeeded=entry.outcome.status == Status.SUCCEEDED)
        if not taken:
            continue
        if not plan.observed:
            unobserved += 1
            continue
        _add_image(undo, plan.image_id, taken, schema)
    return UndoSheet(undo.rows, undo.left_out, unobserved, undo.moved)


def _taken(plan: ImagePlan, *, succeeded: bool) -> list[Change]:
    """The changes of ``plan`` that are in place by this run (or the run it resumed)."""
    return [c for c in plan.changes if c.planned is not None and (succeeded or c.applied)]


def _add_image(undo: UndoSheet, image_id: str, changes: Sequence[Change], schema: Schema) -> None:
    """The image's reversals, last change first (what the run did, taken back in turn)."""
    for change in reversed(changes):
        row = reverse(image_id, change, schema)
        if row is None:
            undo.left_out.append(f"{image_id} {change.attribute} (was {change.before!r})")
            continue
        undo.rows.append(row)
        moved = _moved_text(change)
        if row[1] == RENAME and moved is not None:
            undo.moved[(image_id, row[2])] = moved


def path_of(attribute: str) -> str:
    """How a long sheet names ``attribute``: ``tag:KEY`` for a tag, else ``/attribute``."""
    return attribute if attribute.startswith(TAG_PREFIX) else "/" + attribute


def value_text(attribute: str, value: object, schema: Schema = IMS_SCHEMA) -> str | None:
    """The cell that gives ``attribute`` back exactly ``value``; a key-only tag's empty
    value is a blank cell (a long sheet's blank value sets a key-only tag)."""
    if is_tag(attribute) and value == "":
        return ""
    return cell_text(attribute, value, exact=True, schema=schema)


def reverse(image_id: str, change: Change, schema: Schema = IMS_SCHEMA) -> UndoRow | None:
    """The long-sheet row that undoes ``change``; None when no cell holds the old value."""
    planned = change.planned
    assert planned is not None
    path = path_of(change.attribute)
    if planned.op == RENAME or change.renamed_from:
        return _reverse_rename(image_id, change)
    if planned.op != "remove" and not change.exists:
        return (image_id, "remove", path, "")
    text = value_text(change.attribute, change.before, schema)
    if text is None:
        return None
    return (image_id, "add" if planned.op == "remove" else "replace", path, text)


def _moved_text(change: Change) -> str | None:
    if not change.renamed_from:
        return None
    return value_text(change.renamed_from, change.moved)


def _reverse_rename(image_id: str, change: Change) -> UndoRow | None:
    """``rename old → new`` is undone by ``rename new → old``: the change's attribute is
    the new key, ``renamed_from`` the old one (``old`` or ``tag:old``).  When the new key
    already held the moved value, it held it before too: only the old key comes back
    (``add`` of its value), else the reverse rename would take the new key away."""
    old = change.renamed_from
    if not old:
        return None
    if change.exists:
        moved = _moved_text(change)
        return None if moved is None else (image_id, "add", path_of(old), moved)
    return (image_id, RENAME, path_of(change.attribute), old)


# -- merging with an earlier run's undo sheet ----------------------------------------------


@dataclass(frozen=True)
class _Step:
    """One row as the merge sees it: the paths it gives back (a rename: its new key,
    emptied, then its old key, given the moved value) and, for a rename, the value moved
    as a cell when known (None for a row read back from a file)."""

    row: UndoRow
    moved: str | None = None

    @property
    def paths(self) -> tuple[str, ...]:
        _, op, path, value = self.row
        return (path, path_of(value)) if op == RENAME else (path,)

    def before(self, path: str) -> str | None:
        """The value ``path`` had before this row's run, as a cell; None when absent or
        unknown."""
        _, op, _, value = self.row
        if op in ("add", "replace"):
            return value
        if op == RENAME and path == self.paths[1]:
            return self.moved
        return None


def _steps(undo: UndoSheet) -> dict[str, list[_Step]]:
    by_image: dict[str, list[_Step]] = {}
    for row in undo.rows:
        step = _Step(row, undo.moved.get((row[0], row[2])))
        by_image.setdefault(row[0], []).append(step)
    return by_image


def merge(earlier: UndoSheet, later: UndoSheet) -> UndoSheet:
    """One undo sheet that returns to the state before ``earlier``'s run (see the module's
    docstring): per image and path, ``earlier``'s row wins; ``later``'s notes are kept."""
    merged = UndoSheet(
        left_out=list(later.left_out),
        unobserved=later.unobserved,
        regions={**earlier.regions, **later.regions},
        projects={**earlier.projects, **later.projects},
    )
    old, new = _steps(earlier), _steps(later)
    for image_id in dict.fromkeys([*old, *new]):
        _merge_image(merged, old.get(image_id, []), new.get(image_id, []))
    return merged


def _merge_image(merged: UndoSheet, olds: Sequence[_Step], news: Sequence[_Step]) -> None:
    winners: dict[str, tuple[_Step, bool]] = {}
    for step in olds:
        for path in step.paths:
            winners.setdefault(path, (step, True))
    old_paths = set(winners)
    new_paths = {path for step in news for path in step.paths}
    for step in news:
        for path in step.paths:
            winners.setdefault(path, (step, False))
    written: set[int] = set()
    for path, (step, is_old) in winners.items():
        if step.row[1] != RENAME:
            merged.rows.append(step.row)
        elif id(step) not in written:
            others = new_paths if is_old else old_paths
            if not set(step.paths) & others:
                written.add(id(step))
                merged.rows.append(step.row)
                if step.moved is not None:
                    merged.moved[(step.row[0], step.row[2])] = step.moved
            else:
                _split_rename(merged, step, path, news if is_old else ())


def _split_rename(merged: UndoSheet, step: _Step, path: str, news: Sequence[_Step]) -> None:
    """Write the half of a reverse rename that ``path`` is (the other run changed the other
    key): the new key was absent before, the old key held the moved value."""
    image_id, _, new_key, _ = step.row
    if path == new_key:
        merged.rows.append((image_id, "remove", new_key, ""))
        return
    value = step.moved
    if value is None:  # an earlier run's rename: the later run saw the value in new_key
        value = next((s.before(new_key) for s in news if new_key in s.paths), None)
    if value is None:
        merged.left_out.append(f"{image_id} {path} (renamed to {new_key}, then changed again)")
    else:
        merged.rows.append((image_id, "add", path, value))


def read_undo(path: Path) -> UndoSheet | None:
    """The undo sheet an earlier run left at ``path`` (None when there is none), to merge
    with; ``OptionsError`` when the file there is not an undo sheet batchpatch can read."""
    if not path.exists():
        return None
    from batchpatch.sheet import read_sheet

    fix = "move it away, or give --undo another path"
    try:
        sheet = read_sheet(path)
    except InputError as error:
        raise OptionsError(
            str(
                Reason(
                    f"the undo path {path} holds a file that is not an undo sheet ({error})", fix
                )
            )
        ) from None
    columns = [str(column) for column in sheet.frame.columns]
    if columns not in (list(UNDO_HEADER), [*UNDO_HEADER, REGION], [*UNDO_HEADER, REGION, PROJECT]):
        raise OptionsError(
            str(
                Reason(
                    f"the undo path {path} holds a sheet that is not an undo sheet (its "
                    f"columns are {', '.join(columns)}, not {', '.join(UNDO_HEADER)})",
                    fix,
                )
            )
        )
    return _undo_of(sheet.frame.to_dict("records"))


def _undo_of(records: Sequence[Mapping[object, object]]) -> UndoSheet:
    undo = UndoSheet()
    for record in records:
        cells = [unquoted(str(record.get(name, "") or "")) for name in UNDO_HEADER]
        if not cells[0]:
            continue
        undo.rows.append((cells[0], cells[1], cells[2], cells[3]))
        region, project = (str(record.get(name, "") or "") for name in (REGION, PROJECT))
        if region:
            undo.regions[cells[0]] = region
        if project:
            undo.projects[cells[0]] = project
    return undo


def write_undo(
    path: Path,
    undo: UndoSheet,
    regions: Mapping[str, str] | None = None,
    projects: Mapping[str, str] | None = None,
) -> Path:
    """Write the undo sheet (its format by extension), atomically.  A run across regions
    (``regions``: each image's region, with those ``undo.regions`` holds) gives it a
    ``region`` column, so that applying it sends each row back to where it was changed, and
    a ``project_id`` column (``projects``: each image's project id, with ``undo.projects``),
    so that it reaches the same project without looking any up."""
    regions = {**undo.regions, **(regions or {})}
    if not regions:
        return write_table(path, UNDO_HEADER, undo.rows, sheet="undo")
    projects = {**undo.projects, **(projects or {})}
    if not projects:
        rows = [(*row, regions.get(row[0], "")) for row in undo.rows]
        return write_table(path, (*UNDO_HEADER, REGION), rows, sheet="undo")
    placed = [(*row, regions.get(row[0], ""), projects.get(row[0], "")) for row in undo.rows]
    return write_table(path, (*UNDO_HEADER, REGION, PROJECT), placed, sheet="undo")
