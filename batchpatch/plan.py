"""Planning: what each image's patch will really do, given the image as it is now.

Pure: no I/O.  For each image it drops the changes already in place, chooses ``add`` or
``replace`` from whether the attribute exists, and tells images that cannot be changed
(not found, not ``active``) apart, so that a rerun of the same sheet sends nothing and
``replace`` of a missing attribute never reaches the service.

``settle`` is the same planning after a write whose answer may not tell the truth: it decides
from the image read back whether the write took effect, and per row who put each change in
place, so the report says ``succeeded`` only for what this run (or the run it resumes) did.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from batchpatch.models import ImagePatch, JsonValue, Operation, Status

ACTIVE = "active"
NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class Change:
    """One requested change, as planned: what the attribute is now and will be.

    ``source`` is the spreadsheet row that asked for it (as in ``ImagePatch.sources``)."""

    source: int
    attribute: str
    requested: Operation
    planned: Operation | None  # None: already in place, nothing to send
    before: JsonValue | None
    exists: bool

    @property
    def after(self) -> JsonValue | None:
        return None if self.requested.op == "remove" else self.requested.value


@dataclass(frozen=True, slots=True)
class ImagePlan:
    """What will happen to one image: sent (``status`` None) or not, and why not."""

    image_id: str
    status: Status | None
    reason: str
    changes: tuple[Change, ...]
    name: str = ""
    observed: bool = True  # False when the image was never read (``--no-plan``)

    @property
    def patch(self) -> ImagePatch:
        """The operations to send: only the changes not yet in place."""
        sending = [change for change in self.changes if change.planned is not None]
        return ImagePatch(
            self.image_id,
            tuple(change.planned for change in sending if change.planned),
            tuple(change.source for change in sending),
        )

    @property
    def patch_requested(self) -> ImagePatch:
        """The changes as the sheet asked for them, before planning."""
        return ImagePatch(
            self.image_id,
            tuple(c.requested for c in self.changes),
            tuple(c.source for c in self.changes),
        )

    def row_status(self, row: int) -> Status | None:
        """A row (spreadsheet row) whose every change is already in place is ``unchanged``,
        whatever else."""
        mine = [change for change in self.changes if change.source == row]
        if self.status is None and mine and all(change.planned is None for change in mine):
            return Status.UNCHANGED
        return self.status


def plan_image(patch: ImagePatch, image: Mapping[str, Any] | None) -> ImagePlan:
    """Plan ``patch`` against ``image`` (None when no such image exists)."""
    if image is None:
        return ImagePlan(
            patch.image_id,
            Status.FAILED,
            "no image with this id was found",
            unplanned(patch).changes,
        )
    name = str(image.get("name", ""))
    if image.get("status") != ACTIVE:
        return ImagePlan(
            patch.image_id,
            Status.SKIPPED,
            f"the image is {image.get('status')!r}; only active images can be updated",
            unplanned(patch).changes,
            name,
        )
    state = dict(image)
    changes = []
    for operation, source in zip(patch.operations, patch.sources, strict=True):
        attribute = operation.path.lstrip("/")
        exists = attribute in state
        before = state.get(attribute)
        planned: Operation | None
        if operation.op == "remove":
            planned = operation if exists else None
            state.pop(attribute, None)
        elif exists and same_value(before, operation.value):
            planned = None
        else:
            planned = Operation("replace" if exists else "add", operation.path, operation.value)
            state[attribute] = operation.value
        changes.append(Change(source, attribute, operation, planned, before, exists))
    planned_changes = tuple(changes)
    if all(change.planned is None for change in planned_changes):
        return ImagePlan(
            patch.image_id, Status.UNCHANGED, "already as asked", planned_changes, name
        )
    return ImagePlan(patch.image_id, None, "", planned_changes, name)


def plan_all(
    patches: Sequence[ImagePatch], images: Mapping[str, Mapping[str, Any]]
) -> list[ImagePlan]:
    return [plan_image(patch, images.get(patch.image_id)) for patch in patches]


def unplanned(patch: ImagePatch) -> ImagePlan:
    """A plan that sends the patch as written (``--no-plan``): nothing is known of the image."""
    return ImagePlan(
        patch.image_id,
        None,
        "",
        tuple(
            Change(source, operation.path.lstrip("/"), operation, operation, None, False)
            for operation, source in zip(patch.operations, patch.sources, strict=True)
        ),
        observed=False,
    )


def settle(
    sent: ImagePlan, image: Mapping[str, Any] | None, *, could_apply: bool = True
) -> tuple[ImagePlan, bool]:
    """After ``sent.patch`` was written with an answer that may not tell the truth, and
    ``image`` was read back: ``(plan, applied)``.

    IMS applies a patch list atomically, so the write took effect exactly when every change
    it carried is in place now: then ``applied`` is True and the plan is ``sent`` itself
    (its rows take the image's outcome).  Otherwise nothing of it was applied, and the plan
    is ``sent`` planned again: a change found in place was in place without this run (its
    row is ``unchanged``), the others are what is still to send, with ``add``/``replace``
    chosen from the image.  ``before`` stays what the first plan saw.  ``could_apply``
    False says the write is known to have been refused (``IMG.0035``): everything in place
    was in place already.
    """
    again = plan_image(sent.patch_requested, image)
    if again.status in (Status.FAILED, Status.SKIPPED):
        return replace(sent, status=again.status, reason=again.reason), False
    pairs = list(zip(sent.changes, again.changes, strict=True))
    if could_apply and all(now.planned is None for was, now in pairs if was.planned is not None):
        return sent, True
    changes = tuple(
        was if was.planned is None else replace(was, planned=now.planned, exists=now.exists)
        for was, now in pairs
    )
    if all(change.planned is None for change in changes):
        return replace(
            sent, status=Status.UNCHANGED, reason="already as asked", changes=changes
        ), False
    return replace(sent, status=None, reason="", changes=changes), False


def rebased(plan: ImagePlan, patch: ImagePatch) -> ImagePlan | None:
    """``plan`` with its rows renumbered to ``patch``'s spreadsheet rows, if it asks exactly
    what ``patch`` asks (the same operations in the same order); None if the sheet now asks
    otherwise."""
    if (
        plan.image_id != patch.image_id
        or tuple(change.requested for change in plan.changes) != patch.operations
    ):
        return None
    return replace(
        plan,
        changes=tuple(
            replace(change, source=source)
            for change, source in zip(plan.changes, patch.sources, strict=True)
        ),
    )


def plan_to_json(plan: ImagePlan) -> dict[str, Any]:
    """``plan`` as plain JSON, for plan files and the journal; ``plan_from_json`` reverses it.

    Each change's ``row`` is its spreadsheet row (plan files and journals before
    ``batchpatch-plan/2`` and ``batchpatch-journal/2`` held 0-based positions)."""
    return {
        "image_id": plan.image_id,
        "name": plan.name,
        "status": None if plan.status is None else str(plan.status),
        "reason": plan.reason,
        "observed": plan.observed,
        "changes": [
            {
                "row": change.source,
                "attribute": change.attribute,
                "requested": change.requested.to_json(),
                "planned": None if change.planned is None else change.planned.to_json(),
                "before": change.before,
                "exists": change.exists,
            }
            for change in plan.changes
        ],
    }


def plan_from_json(entry: Mapping[str, Any]) -> ImagePlan:
    """The plan ``plan_to_json`` wrote; ``KeyError``/``TypeError``/``ValueError`` if damaged."""
    return ImagePlan(
        image_id=str(entry["image_id"]),
        status=None if entry["status"] is None else Status(entry["status"]),
        reason=str(entry["reason"]),
        name=str(entry.get("name", "")),
        observed=bool(entry.get("observed", True)),
        changes=tuple(
            Change(
                source=int(change["row"]),
                attribute=str(change["attribute"]),
                requested=_operation(change["requested"]),
                planned=None if change["planned"] is None else _operation(change["planned"]),
                before=change["before"],
                exists=bool(change["exists"]),
            )
            for change in entry["changes"]
        ),
    )


def _operation(data: Mapping[str, Any]) -> Operation:
    if data["op"] not in ("add", "replace", "remove") or not str(data["path"]).startswith("/"):
        raise ValueError(f"bad operation {data!r}")
    return Operation(str(data["op"]), str(data["path"]), data.get("value"))


def same_value(current: Any, wanted: JsonValue | None) -> bool:
    """Whether the image already holds ``wanted`` (IMS may show a flag as a JSON bool)."""
    if isinstance(current, bool) and isinstance(wanted, str):
        return str(current).lower() == wanted
    return bool(current == wanted)


def describe(plan: ImagePlan) -> list[str]:
    """Lines of a human diff: ``name: "old" → "new"``, ``+ key: "v"``, ``- key``."""
    title = f"{plan.image_id}" + (f" ({plan.name})" if plan.name else "")
    if plan.status in (Status.FAILED, Status.SKIPPED):
        return [f"{title}: {plan.status} — {plan.reason}"]
    lines = [f"{title}: {'unchanged' if plan.status == Status.UNCHANGED else 'update'}"]
    for change in plan.changes:
        if change.planned is None:
            shown = "absent" if change.requested.op == "remove" else _show(change.before)
            lines.append(f"  = {change.attribute}: {shown} (already as asked)")
        elif change.planned.op == "remove":
            lines.append(f"  - {change.attribute} (was {_show(change.before)})")
        elif change.planned.op == "add":
            lines.append(f"  + {change.attribute}: {_show(change.after)}")
        else:
            lines.append(f"  {change.attribute}: {_show(change.before)} → {_show(change.after)}")
    return lines


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
