"""Saving a plan to JSON and loading it back, so ``apply --plan`` sends exactly what was seen.

A plan is bound to the sheet it was made from (by SHA-256) and to the endpoint: applying it
with another sheet or against another service is refused, nothing sent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchpatch import fastjson
from batchpatch.errors import Namer, OptionsError, Reason
from batchpatch.files import atomic_write
from batchpatch.models import ImagePatch, Operation, Status
from batchpatch.plan import Change, ImagePlan, plan_from_json, plan_to_json, same_value
from batchpatch.schema import RENAME, TAG_PREFIX, Schema, check_attribute, check_value
from batchpatch.sheet import Sheet

#: The plan file's format.  ``/2`` numbers each change's row as the spreadsheet row (``/1``
#: held 0-based positions: such a plan is refused, to be made again, never misread).
FORMAT = "batchpatch-plan/2"


def sheet_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_plan(path: Path, sheet: Sheet, endpoint: str, plans: list[ImagePlan]) -> Path:
    """Write the plan atomically; it holds no credentials."""
    document = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sheet": str(sheet.path),
        "sheet_name": sheet.sheet_name,
        "sheet_sha256": sheet_digest(sheet.path),
        "endpoint": endpoint,
        "images": [_plan_json(plan) for plan in plans],
    }
    return atomic_write(
        path,
        lambda temporary: temporary.write_text(
            json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8"
        ),
    )


def load_plan(path: str | Path, sheet: Sheet, endpoint: str) -> list[ImagePlan]:
    """The plans saved in ``path``, checked against ``sheet`` and ``endpoint``."""
    path = Path(path)
    try:
        document = fastjson.loads_text(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OptionsError(
            wording=lambda name: str(
                Reason(
                    f"{path}: no such plan file", f"make one with {name('make_plan', 'PLAN.json')}"
                )
            )
        ) from None
    except (OSError, ValueError) as error:
        cause = error
        raise OptionsError(
            wording=lambda name: str(
                Reason(f"{path}: not a readable plan ({cause})", _remade(name))
            )
        ) from None
    _check_format(path, document)
    if document.get("sheet_sha256") != sheet_digest(sheet.path):
        raise OptionsError(
            str(
                Reason(
                    f"{path}: the plan was made from another version of {sheet.path}",
                    "plan the sheet again",
                )
            )
        )
    if document.get("sheet_name") != sheet.sheet_name:
        raise OptionsError(
            parameter="sheet_name",
            wording=lambda name: str(
                Reason(
                    f"{path}: the plan was made from worksheet {document.get('sheet_name')!r}",
                    f"use {name('sheet_name', '')} to match it",
                )
            ),
        )
    if document.get("endpoint") != endpoint:
        raise OptionsError(
            str(
                Reason(
                    f"{path}: the plan was made against {document.get('endpoint')}",
                    "apply it to the same endpoint, or plan again",
                )
            )
        )
    try:
        plans = [_plan_from(entry) for entry in document["images"]]
    except (KeyError, TypeError, ValueError) as error:
        raise OptionsError(
            str(Reason(f"{path}: the plan is damaged ({error!r})", "make it again"))
        ) from None
    check_plans(sheet, plans, str(path))
    return plans


def _edited(what: str) -> OptionsError:
    """An error saying ``what`` is wrong with an edited plan, and to make it again."""
    return OptionsError(wording=lambda name: f"{what}; {_remade(name)}")


def _remade(name: Namer) -> str:
    """How to make a plan file again, in the words of ``name``."""
    return f"make it again with {name('make_plan', 'PLAN.json')}"


def _check_format(path: Path, document: object) -> None:
    """Refuse anything but a plan of this ``FORMAT``, saying when an older batchpatch made it."""
    found = document.get("format") if isinstance(document, dict) else None
    if found == FORMAT:
        return
    if isinstance(found, str) and found.startswith("batchpatch-plan/"):
        raise OptionsError(
            wording=lambda name: str(
                Reason(
                    f"{path}: a plan of another batchpatch version "
                    f"({found}, this one reads {FORMAT})",
                    _remade(name),
                )
            )
        )
    raise OptionsError(
        wording=lambda name: str(Reason(f"{path}: not a batchpatch plan ({FORMAT})", _remade(name)))
    )


def check_plans(sheet: Sheet, plans: Sequence[ImagePlan], source: str = "the plan") -> None:
    """Raise ``OptionsError`` unless ``plans`` ask exactly what ``sheet`` asks.

    A saved plan may choose ``add`` or ``replace`` for a change and leave out changes it
    found already in place, nothing else: each image's changes are the sheet's, in the
    sheet's order, with the same rows, paths and values.  Every operation it would send
    also passes the local checks, as if it came from the sheet.
    """
    expected = {patch.image_id: patch for patch in sheet.patches}
    found = [plan.image_id for plan in plans]
    if set(found) != expected.keys() or len(set(found)) != len(found):
        raise OptionsError(
            wording=lambda name: str(
                Reason(
                    f"{source}: the plan's images do not match {sheet.path}",
                    f"it was edited; {_remade(name)}",
                )
            )
        )
    for plan in plans:
        problem = (
            plan_mismatch(plan, expected[plan.image_id])
            or _status_problem(plan)
            or _local_problem(plan, sheet.schema)
        )
        if problem:
            raise _edited(f"{source}: image {plan.image_id}: {problem} — the plan was edited")


def plan_mismatch(plan: ImagePlan, patch: ImagePatch) -> str:
    """How ``plan`` departs from the sheet's ``patch`` for its image ("" when it does not)."""
    if len(plan.changes) != len(patch.operations):
        return (
            f"the plan holds {len(plan.changes)} changes where the sheet asks "
            f"{len(patch.operations)}"
        )
    for number, (change, asked, row) in enumerate(
        zip(plan.changes, patch.operations, patch.sources, strict=True), start=1
    ):
        renaming = asked.op == RENAME
        if (
            change.source != row
            or not _same_operation(change.requested, asked)
            or change.attribute != (str(asked.value) if renaming else asked.path.lstrip("/"))
            or change.renamed_from != (asked.path.lstrip("/") if renaming else None)
            or change.applied
        ):
            return (
                f"change {number} ({_shown(change.requested)}, row {change.source}) is not "
                f"what the sheet asks there ({_shown(asked)}, row {row})"
            )
        if change.planned is not None and not _planned_from(change.planned, asked):
            return (
                f"change {number} would send {_shown(change.planned)} where the sheet "
                f"asks {_shown(asked)}"
            )
        if change.planned is None and not _in_place(change):
            return (
                f"change {number} ({_shown(asked)}) is left out as already in place, but "
                "the plan's own reading of the image says it is not"
            )
    return ""


def _status_problem(plan: ImagePlan) -> str:
    """How the plan's verdict on its image contradicts its own changes ("" when it does not):
    ``unchanged`` only when every change is in place, "update" only when one is not."""
    sending = any(change.planned is not None for change in plan.changes)
    if plan.status == Status.UNCHANGED and sending:
        return "it is marked unchanged, but its own changes say some are not in place"
    if plan.status is None and not sending:
        return "it is marked for update, but every change is left out"
    return ""


def _in_place(change: Change) -> bool:
    """Whether the image as the plan read it already holds what ``change`` asks: the only
    reason a plan may leave a change out (a rename: the new key is there)."""
    if change.renamed_from is not None:
        return change.exists
    if change.requested.op == "remove":
        return not change.exists
    return change.exists and same_value(change.before, change.requested.value)


_SETTING = frozenset({"add", "replace"})


def _planned_from(planned: Operation, asked: Operation) -> bool:
    """``planned`` is ``asked``, or ``asked`` with ``add`` and ``replace`` swapped (a
    rename: a rename to the key the sheet names)."""
    if asked.op == RENAME:
        new = str(asked.value)
        return planned.op == RENAME and planned.path.lstrip("/") == new
    same_op = planned.op == asked.op or {planned.op, asked.op} <= _SETTING
    return same_op and planned.path == asked.path and _same_value(planned.value, asked.value)


def _same_operation(one: Operation, other: Operation) -> bool:
    return (one.op, one.path) == (other.op, other.path) and _same_value(one.value, other.value)


def _same_value(one: object, other: object) -> bool:
    """Equal and of one JSON type: ``true`` is not ``1``, ``"1024"`` is not ``1024``."""
    return type(one) is type(other) and one == other


def _local_problem(plan: ImagePlan, schema: Schema) -> str:
    """Why an operation the plan would send fails the sheet's local checks ("" if none)."""
    for operation in plan.patch.operations:
        attribute = operation.path.lstrip("/")
        reason = schema.check_attribute(attribute, operation.op)
        if reason is None and operation.op != "remove":
            value = operation.value
            if not isinstance(value, str | int):
                return f"{_shown(operation)}: {attribute} has no value to send"
            reason = schema.check_value(attribute, value)
        if reason:
            return f"{_shown(operation)}: {reason.what}"
    for write in plan.tag_writes():
        for key, value in write.tags.items():
            tag = TAG_PREFIX + key
            reason = check_attribute(tag, "add")
            if reason is None and write.action == "create":
                reason = check_value(tag, value)
            if reason:
                return f"tag {write.action} of {key!r}: {reason.what}"
    return ""


def _shown(operation: Operation) -> str:
    return json.dumps(operation.to_json(), ensure_ascii=False)


def _plan_json(plan: ImagePlan) -> dict[str, Any]:
    return plan_to_json(plan)


def _plan_from(entry: dict[str, Any]) -> ImagePlan:
    return plan_from_json(entry)
