"""The undo sheet: a long sheet that puts back what a run changed, built from the plan's
before-values.

For every change a run put in place (the image ``succeeded``, by this run or by the
interrupted run it resumed; the change was planned, not found already in place):

* an attribute (or tag) that did not exist and was added → ``remove`` it;
* one that existed and was replaced (or set again with ``add``) → ``replace`` it with the
  value it had;
* one that was removed → ``add`` it back with the value it had;
* a ``rename`` of a key → the reverse ``rename``.

A change is addressed as in any long sheet: ``/attribute`` or ``tag:KEY``.  Each value is
written as the text the sheet reader turns back into exactly the old JSON value
(``sheetwrite.cell_text``), so ``batchpatch apply`` of the undo sheet restores the earlier
state, and the undo sheet of that run restores the edit.  A value no cell can hold (an
empty string, a JSON ``true`` where sheets send ``"true"``, a value the local checks now
refuse) is left out and named in ``UndoSheet.left_out``: never a wrong undo.

Images sent without a plan (``--no-plan``) have no before-values: they are counted in
``UndoSheet.unobserved`` and get no undo rows.  Failed, skipped and unsent images are not in
it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from batchpatch.ledger import Entry
from batchpatch.models import Status
from batchpatch.plan import Change, ImagePlan
from batchpatch.schema import IMS_SCHEMA, Schema
from batchpatch.sheetwrite import cell_text, write_table

#: The undo sheet's header: a long sheet.
UNDO_HEADER = ("image_id", "op", "path", "value")
#: Where a tag's key is named in a long sheet's ``path``.
TAG_PREFIX = "tag:"

UndoRow = tuple[str, str, str, str]


@dataclass(frozen=True)
class UndoSheet:
    """The rows that undo a run, what could not be undone exactly, and how many changed
    images had no before-values (sent without a plan)."""

    rows: list[UndoRow] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    unobserved: int = 0

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
    """The undo of every image the ledger shows ``succeeded``, in ledger (sheet) order;
    each value written as ``schema`` (the rules the run's sheet was read by) reads it back."""
    undo = UndoSheet()
    unobserved = 0
    for entry in entries:
        plan = entry.plan
        if entry.outcome is None or entry.outcome.status != Status.SUCCEEDED or plan is None:
            continue
        if not plan.observed:
            unobserved += any(change.planned is not None for change in plan.changes)
            continue
        _add_image(undo, plan, schema)
    return UndoSheet(undo.rows, undo.left_out, unobserved)


def _add_image(undo: UndoSheet, plan: ImagePlan, schema: Schema) -> None:
    """The image's reversals, last change first (what the run did, taken back in turn)."""
    for change in reversed(plan.changes):
        if change.planned is None:
            continue  # already in place: the run did not change it
        row = reverse(plan.image_id, change, schema)
        if row is None:
            undo.left_out.append(f"{plan.image_id} {change.attribute} (was {change.before!r})")
        else:
            undo.rows.append(row)


def path_of(attribute: str) -> str:
    """How a long sheet names ``attribute``: ``tag:KEY`` for a tag, else ``/attribute``."""
    return attribute if attribute.startswith(TAG_PREFIX) else "/" + attribute


def reverse(image_id: str, change: Change, schema: Schema = IMS_SCHEMA) -> UndoRow | None:
    """The long-sheet row that undoes ``change``; None when no cell holds the old value."""
    planned = change.planned
    assert planned is not None
    path = path_of(change.attribute)
    if planned.op == "rename" or getattr(change, "renamed_from", None):
        return _reverse_rename(image_id, change)
    if planned.op != "remove" and not change.exists:
        return (image_id, "remove", path, "")
    text = cell_text(change.attribute, change.before, exact=True, schema=schema)
    if text is None:
        return None
    return (image_id, "add" if planned.op == "remove" else "replace", path, text)


def _reverse_rename(image_id: str, change: Change) -> UndoRow | None:
    """``rename old → new`` is undone by ``rename new → old``: the change's attribute is
    the new key, ``renamed_from`` the old one (``old`` or ``tag:old``, the tag planner's
    ``Change`` field; None where the planner knows no renames)."""
    old = getattr(change, "renamed_from", None)
    if not old:
        return None
    return (image_id, "rename", path_of(change.attribute), str(old))


def write_undo(
    path: Path,
    undo: UndoSheet,
    regions: Mapping[str, str] | None = None,
    projects: Mapping[str, str] | None = None,
) -> Path:
    """Write the undo sheet (its format by extension), atomically.  A run across regions
    (``regions``: each image's region) gives it a ``region`` column, so that applying it
    sends each row back to where it was changed, and a ``project_id`` column (``projects``:
    each image's project id), so that it reaches the same project without looking any up."""
    if not regions:
        return write_table(path, UNDO_HEADER, undo.rows, sheet="undo")
    if projects is None:
        rows = [(*row, regions.get(row[0], "")) for row in undo.rows]
        return write_table(path, (*UNDO_HEADER, "region"), rows, sheet="undo")
    placed = [(*row, regions.get(row[0], ""), projects.get(row[0], "")) for row in undo.rows]
    return write_table(path, (*UNDO_HEADER, "region", "project_id"), placed, sheet="undo")
