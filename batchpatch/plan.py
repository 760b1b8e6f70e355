"""Planning: what each image's patch will really do, given the image as it is now.

Pure: no I/O.  For each image it drops the changes already in place, chooses ``add`` or
``replace`` from whether the attribute exists, and tells images that cannot be changed
(not found, not ``active``) apart, so that a rerun of the same sheet sends nothing and
``replace`` of a missing attribute never reaches the service.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from batchpatch.models import ImagePatch, JsonValue, Operation, Status

ACTIVE = "active"
NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class Change:
    """One requested change, as planned: what the attribute is now and will be."""

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
        return ImagePatch(self.image_id,
                          tuple(change.planned for change in sending if change.planned),
                          tuple(change.source for change in sending))

    @property
    def patch_requested(self) -> ImagePatch:
        """The changes as the sheet asked for them, before planning."""
        return ImagePatch(self.image_id, tuple(c.requested for c in self.changes),
                          tuple(c.source for c in self.changes))

    def row_status(self, row: int) -> Status | None:
        """A row whose every change is already in place is ``unchanged``, whatever else."""
        mine = [change for change in self.changes if change.source == row]
        if self.status is None and mine and all(change.planned is None for change in mine):
            return Status.UNCHANGED
        return self.status


def plan_image(patch: ImagePatch, image: Mapping[str, Any] | None) -> ImagePlan:
    """Plan ``patch`` against ``image`` (None when no such image exists)."""
    if image is None:
        return ImagePlan(patch.image_id, Status.FAILED, "no image with this id was found",
                         unplanned(patch).changes)
    name = str(image.get("name", ""))
    if image.get("status") != ACTIVE:
        return ImagePlan(patch.image_id, Status.SKIPPED,
                         f"the image is {image.get('status')!r}; only active images "
                         "can be updated", unplanned(patch).changes, name)
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
        return ImagePlan(patch.image_id, Status.UNCHANGED, "already as asked",
                         planned_changes, name)
    return ImagePlan(patch.image_id, None, "", planned_changes, name)


def plan_all(patches: Sequence[ImagePatch],
             images: Mapping[str, Mapping[str, Any]]) -> list[ImagePlan]:
    return [plan_image(patch, images.get(patch.image_id)) for patch in patches]


def unplanned(patch: ImagePatch) -> ImagePlan:
    """A plan that sends the patch as written (``--no-plan``): nothing is known of the image."""
    return ImagePlan(patch.image_id, None, "", tuple(
        Change(source, operation.path.lstrip("/"), operation, operation, None, False)
        for operation, source in zip(patch.operations, patch.sources, strict=True)
    ), observed=False)


def same_value(current: Any, wanted: JsonValue | None) -> bool:
    """Whether the image already holds ``wanted`` (IMS may show a flag as a JSON bool)."""
    if isinstance(current, bool):
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
