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
from dataclasses import field, replace
from typing import Any

from batchpatch.errors import Reason
from batchpatch.models import ImagePatch, JsonValue, Operation, Status
from batchpatch.schema import MAX_TAGS, RENAME, TAG_PREFIX, is_tag, tag_key
from batchpatch.values import value

ACTIVE = "active"
NOT_FOUND = "not_found"

#: The two parts of an image's work: its PATCH, and its tag calls.
ATTRIBUTES, TAGS = "attributes", "tags"
#: The requests an image's work is made of, in the order they are sent (``delete`` goes
#: before ``create`` when the image would otherwise pass its tag limit in between).
UPDATE, CREATE, DELETE = "update", "create", "delete"


@value
class Change:
    """One requested change, as planned: what the attribute is now and will be.

    ``source`` is the spreadsheet row that asked for it (as in ``ImagePatch.sources``)."""

    source: int
    attribute: str
    requested: Operation
    planned: Operation | None  # None: already in place, nothing to send
    before: JsonValue | None
    exists: bool
    #: A rename: the key (``old`` or ``tag:old``) whose value moves to ``attribute``;
    #: ``before``/``exists`` are then the new key's, and ``planned`` is
    #: ``Operation("rename", <new path>, <the value moved>)``.  The undo of a succeeded
    #: rename is the rename of ``attribute`` back to ``renamed_from``.
    renamed_from: str | None = None
    #: Put in place by this run (or the run it resumes) while another part of the image's
    #: work is still to do: not sent again, and its row is about its own changes.
    applied: bool = False

    def now_applied(self) -> Change:
        """This change, put in place (built directly: ``replace`` costs twice as much, and
        this runs for every change that succeeds)."""
        return Change(
            self.source,
            self.attribute,
            self.requested,
            self.planned,
            self.before,
            self.exists,
            self.renamed_from,
            True,
        )

    @property
    def after(self) -> JsonValue | None:
        if self.renamed_from is not None:
            return self.planned.value if self.planned is not None else self.before
        return None if self.requested.op == "remove" else self.requested.value

    @property
    def part(self) -> str:
        """Which request carries this change: the PATCH (attributes) or the tag calls."""
        return TAGS if is_tag(self.attribute) else ATTRIBUTES

    @property
    def pending(self) -> bool:
        """Still to send: planned and not yet applied."""
        return self.planned is not None and not self.applied

    @property
    def moved(self) -> JsonValue | None:
        """A rename's value, as the old key held it (None when nothing is moved)."""
        return self.planned.value if self.renamed_from and self.planned is not None else None


@value
class TagWrite:
    """One tag call: ``action`` (``create`` sets every tag of ``tags``, ``delete`` removes
    them; IMS checks only lengths on delete, so a value may be "")."""

    action: str
    tags: Mapping[str, str]


@value
class ImagePlan:
    """What will happen to one image: sent (``status`` None) or not, and why not."""

    image_id: str
    status: Status | None
    reason: str
    changes: tuple[Change, ...]
    name: str = ""
    observed: bool = True  # False when the image was never read (``--no-plan``)
    #: How many tags the image has now, when they were read (the tag limit's check and
    #: the order of the tag calls need it); None when not read.
    tag_count: int | None = None
    #: The plan-time problems (``status`` ``invalid``): each row at fault and what is
    #: wrong there, every one of them (not only the first).
    problems: tuple[tuple[int, Reason], ...] = ()
    #: ``patch`` and ``requests()``, worked out once: a plan never changes, and a request
    #: asks for each several times (not copied by ``replace``, not compared).
    _derived: tuple[ImagePatch, tuple[str, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    #: ``all_applied()``, once made: the journal knows it by identity.
    _all_applied: ImagePlan | None = field(default=None, init=False, repr=False, compare=False)

    def with_changes(self, changes: tuple[Change, ...]) -> ImagePlan:
        """This plan with ``changes`` instead (built directly, as ``Change.now_applied``)."""
        return ImagePlan(
            self.image_id,
            self.status,
            self.reason,
            changes,
            self.name,
            self.observed,
            self.tag_count,
            self.problems,
        )

    def all_applied(self) -> ImagePlan:
        """This plan with every change still to send marked ``applied``: what it becomes
        once each of its requests has succeeded (made once, then the same object)."""
        applied = self._all_applied
        if applied is None:
            applied = self.with_changes(
                tuple(change.now_applied() if change.pending else change for change in self.changes)
            )
            nothing_left = (ImagePatch(self.image_id, (), ()), ())  # what _worked_out finds
            object.__setattr__(applied, "_derived", nothing_left)  # caches, not changes
            object.__setattr__(self, "_all_applied", applied)
        return applied

    @property
    def problem_row(self) -> int:
        """The row of the first plan-time problem (0: none)."""
        return self.problems[0][0] if self.problems else 0

    @property
    def problem(self) -> Reason | None:
        """The first plan-time problem, if any."""
        return self.problems[0][1] if self.problems else None

    def row_reason(self, row: int) -> str:
        """Why ``row`` of an image refused at plan time is ``invalid``: its own problems,
        or the row that is at fault (an image's changes are sent together or not at all)."""
        own = [str(reason) for at, reason in self.problems if at == row]
        if own or not self.problems:
            return "; ".join(own) or self.reason
        first = self.problems[0][1]
        return (
            f"row {self.problem_row} of the same image is invalid ({first.what}); an image's "
            "changes are sent together or not at all"
        )

    @property
    def patch(self) -> ImagePatch:
        """The PATCH to send: only the attribute changes not yet in place (a rename as
        add new + remove old, one atomic request)."""
        return self._worked_out()[0]

    def _worked_out(self) -> tuple[ImagePatch, tuple[str, ...]]:
        derived = self._derived
        if derived is None:
            patch = self._patch()
            first = (UPDATE,) if patch.operations else ()
            derived = (patch, first + tuple(write.action for write in self.tag_writes()))
            object.__setattr__(self, "_derived", derived)  # a cache, not a change
        return derived

    def _patch(self) -> ImagePatch:
        operations: list[Operation] = []
        sources: list[int] = []
        for change in self.changes:
            if not change.pending or change.part != ATTRIBUTES or change.planned is None:
                continue
            if change.renamed_from is not None:
                value = change.planned.value
                operations += [
                    Operation("add", change.planned.path, value),
                    Operation("remove", "/" + change.renamed_from),
                ]
                sources += [change.source, change.source]
            else:
                operations.append(change.planned)
                sources.append(change.source)
        return ImagePatch(self.image_id, tuple(operations), tuple(sources))

    def tag_writes(self) -> list[TagWrite]:
        """The tag calls still to send, in order: one ``create`` with every tag set or
        changed, one ``delete`` with every tag removed (a rename is in both); ``delete``
        first when creating first would take the image past ``MAX_TAGS`` in between."""
        create: dict[str, str] = {}
        delete: dict[str, str] = {}
        for change in self.changes:
            if change.pending and change.part == TAGS and change.planned is not None:
                _tag_write(change, change.planned, create, delete)
        writes = [TagWrite(CREATE, create)] if create else []
        if delete:
            first = self._delete_first(create)
            writes.insert(0 if first else len(writes), TagWrite(DELETE, delete))
        return writes

    def _delete_first(self, create: Mapping[str, str]) -> bool:
        if self.tag_count is None:
            return False
        new_keys = sum(
            1
            for change in self.changes
            if change.part == TAGS
            and change.pending
            and not change.exists
            and tag_key(change.attribute) in create
        )
        return self.tag_count + new_keys > MAX_TAGS

    def requests(self) -> tuple[str, ...]:
        """The requests still to send, in order: ``update`` (the PATCH), then the tag calls."""
        return self._worked_out()[1]

    def write(self, kind: str) -> TagWrite | None:
        """The tag call ``kind`` still to send, if any."""
        return next((w for w in self.tag_writes() if w.action == kind), None)

    @property
    def parts(self) -> set[str]:
        """The parts of this image's work the sheet asks something of."""
        return {change.part for change in self.changes}

    @property
    def patch_requested(self) -> ImagePatch:
        """The changes as the sheet asked for them, before planning."""
        return ImagePatch(
            self.image_id,
            tuple(c.requested for c in self.changes),
            tuple(c.source for c in self.changes),
        )

    def row_status(self, mine: Sequence[Change]) -> Status | None:
        """What the plan decided of the row whose changes are ``mine``: a row whose every
        change is already in place is ``unchanged``, whatever else."""
        if self.status is None and mine and all(change.planned is None for change in mine):
            return Status.UNCHANGED
        return self.status


def _tag_write(
    change: Change, planned: Operation, create: dict[str, str], delete: dict[str, str]
) -> None:
    """Add what ``change`` asks of the tag calls to ``create`` and ``delete``."""
    key = tag_key(change.attribute)
    if change.renamed_from is not None:
        create[key] = str(planned.value)
        delete[tag_key(change.renamed_from)] = str(planned.value)
    elif planned.op == "remove":
        delete[key] = "" if change.before is None else str(change.before)
    else:
        create[key] = str(planned.value)


def tag_view(tags: Mapping[str, str]) -> dict[str, Any]:
    """An image's tags as the planner compares them: ``tag:KEY`` entries."""
    return {TAG_PREFIX + key: value for key, value in tags.items()}


def plan_image(
    patch: ImagePatch,
    image: Mapping[str, Any] | None,
    tags: Mapping[str, str] | None = None,
) -> ImagePlan:
    """Plan ``patch`` against ``image`` (None when no such image exists) and its current
    ``tags`` (None when they were not read: the tag changes are planned against an image
    without tags, and the tag limit is left to the service)."""
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
    state = {k: v for k, v in image.items() if not is_tag(k)} | tag_view(tags or {})
    changes: list[Change] = []
    problems: list[tuple[int, Reason]] = []
    for operation, source in zip(patch.operations, patch.sources, strict=True):
        change, reason = _plan_change(operation, source, state)
        changes.append(change)
        if reason is not None:
            problems.append((source, reason))
    count = None if tags is None else len(tags)
    planned_changes = tuple(changes)
    if count is not None and (over := _over_limit(planned_changes, state, count)):
        problems.append(over)
    if problems:
        return ImagePlan(
            patch.image_id,
            Status.INVALID,
            str(problems[0][1]),
            planned_changes,
            name,
            tag_count=count,
            problems=tuple(problems),
        )
    if all(change.planned is None for change in planned_changes):
        return ImagePlan(
            patch.image_id,
            Status.UNCHANGED,
            "already as asked",
            planned_changes,
            name,
            tag_count=count,
        )
    return ImagePlan(patch.image_id, None, "", planned_changes, name, tag_count=count)


def _plan_change(
    operation: Operation, source: int, state: dict[str, Any]
) -> tuple[Change, Reason | None]:
    """What ``operation`` will do to ``state`` (updated as it goes), and why it cannot be
    done, if it cannot (a rename whose new key holds another value)."""
    attribute = operation.path.lstrip("/")
    if operation.op == RENAME:
        return _plan_rename(operation, source, state)
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
    return Change(source, attribute, operation, planned, before, exists), None


def _plan_rename(
    operation: Operation, source: int, state: dict[str, Any]
) -> tuple[Change, Reason | None]:
    """A rename planned: nothing to do when the old key is gone and the new one is there
    (a rerun); refused when the new key holds another value, or neither key is there."""
    old, new = operation.path.lstrip("/"), str(operation.value)
    exists, before = new in state, state.get(new)
    change = Change(source, new, operation, None, before, exists, renamed_from=old)
    if old not in state:
        if exists:
            return change, None
        return change, Reason(
            f"neither {old} nor {new} is on this image: nothing to rename",
            "check the key, or delete the row",
        )
    value = state[old]
    if exists and not same_value(before, value):
        return change, Reason(
            f"{new} already holds {_show(before)} ({old} holds {_show(value)})",
            f"rename to a free key, or remove {new} first",
        )
    path = new if is_tag(new) else "/" + new
    state[new] = value
    state.pop(old)
    return replace(change, planned=Operation(RENAME, path, value)), None


def _over_limit(
    changes: Sequence[Change], state: Mapping[str, Any], count: int
) -> tuple[int, Reason] | None:
    """The plan-time tag limit: the image's tags after the change, counted from its
    current ones, at the last row that adds a tag."""
    after = sum(1 for key in state if is_tag(key))
    adding = [c.source for c in changes if c.part == TAGS and c.pending and not c.exists]
    if after <= MAX_TAGS or not adding:
        return None
    return adding[-1], Reason(
        f"the image would carry {after} tags (it has {count} now); an image may carry "
        f"{MAX_TAGS} at most",
        "remove tags first (<remove>), or set fewer",
    )


def plan_all(
    patches: Sequence[ImagePatch], images: Mapping[str, Mapping[str, Any]]
) -> list[ImagePlan]:
    return [plan_image(patch, images.get(patch.image_id)) for patch in patches]


def unplanned(patch: ImagePatch) -> ImagePlan:
    """A plan that sends the patch as written (``--no-plan``): nothing is known of the image.

    A tag's ``add``/``replace`` is a ``create`` either way (IMS overwrites), a ``remove`` a
    ``delete`` (of a missing tag: success).  A rename needs the old value, so it cannot be
    sent as written (``--no-plan`` refuses it); here it stands for "not sent yet"."""
    changes = []
    for operation, source in zip(patch.operations, patch.sources, strict=True):
        attribute = operation.path.lstrip("/")
        if operation.op == RENAME:
            new = str(operation.value)
            path = new if is_tag(new) else "/" + new
            changes.append(
                Change(source, new, operation, Operation(RENAME, path), None, False, attribute)
            )
        else:
            changes.append(Change(source, attribute, operation, operation, None, False))
    return ImagePlan(patch.image_id, None, "", tuple(changes), observed=False)


def mark_done(plan: ImagePlan, done: set[str] | frozenset[str]) -> ImagePlan:
    """``plan`` with every pending change whose requests are all in ``done`` (ended with
    success) marked ``applied``."""
    if done.issuperset(plan.requests()):  # the usual end: every request succeeded
        return plan.all_applied()
    changes = []
    for change in plan.changes:
        if change.pending:
            kinds = (UPDATE,) if change.part == ATTRIBUTES else tag_kinds(change)
            if set(kinds) <= done:
                change = change.now_applied()
        changes.append(change)
    return plan.with_changes(tuple(changes))


def tag_kinds(change: Change) -> tuple[str, ...]:
    """The tag calls that carry ``change`` (a rename: both)."""
    if change.renamed_from is not None:
        return (CREATE, DELETE)
    return (DELETE,) if change.requested.op == "remove" else (CREATE,)


def settle(
    sent: ImagePlan,
    image: Mapping[str, Any] | None,
    *,
    could_apply: bool = True,
    tags: Mapping[str, str] | None = None,
    kind: str | None = None,
) -> tuple[ImagePlan, bool]:
    """After a write of ``sent`` whose answer may not tell the truth, and the image read
    back (``image``, its ``tags`` when they were read): ``(plan, applied)``.

    ``kind`` names the request in doubt (``update``, ``create``, ``delete``); None settles
    every part (a run resuming one that died mid-image).  Each request is judged alone:
    it took effect exactly when every change it carried is in place now (IMS applies a
    patch list atomically; a tag call is taken to be all or nothing too).  Then those
    changes are marked ``applied`` and ``applied`` is True.  Otherwise nothing of it was
    applied: a change found in place was in place without this run (its row is
    ``unchanged``), the others are still to send, with ``add``/``replace`` chosen from the
    image.  ``before`` stays what the first plan saw.  ``could_apply`` False says the write
    is known to have been refused (``IMG.0035``): everything in place was in place already.
    With ``kind`` None, ``applied`` says the whole image is done by the writes in doubt.
    """
    plan, applied = sent, True
    if kind in (None, UPDATE) and any(c.pending and c.part == ATTRIBUTES for c in sent.changes):
        plan, applied = _settle_attributes(plan, image, tags, could_apply)
        if plan.status in (Status.FAILED, Status.SKIPPED):
            return plan, False
    for tag_call in (CREATE, DELETE):
        if kind in (None, tag_call) and tags is not None:
            plan, done = _settle_tags(plan, tags, tag_call)
            applied = applied and done
    if kind is None:
        return _verdict(plan)
    return plan, applied


def _settle_attributes(
    sent: ImagePlan,
    image: Mapping[str, Any] | None,
    tags: Mapping[str, str] | None,
    could_apply: bool,
) -> tuple[ImagePlan, bool]:
    """``settle`` of the PATCH (see there)."""
    again = plan_image(sent.patch_requested, image, tags)
    if again.status in (Status.FAILED, Status.SKIPPED):
        return replace(sent, status=again.status, reason=again.reason), False
    pairs = list(zip(sent.changes, again.changes, strict=True))

    def carried(change: Change) -> bool:
        return change.pending and change.part == ATTRIBUTES

    if could_apply and all(now.planned is None for was, now in pairs if carried(was)):
        marked = [replace(w, applied=True) if carried(w) else w for w, _ in pairs]
        return _changed(sent, marked), True
    return _changed(
        sent,
        [
            replace(was, planned=now.planned, exists=now.exists) if carried(was) else was
            for was, now in pairs
        ],
    ), False


def _settle_tags(sent: ImagePlan, tags: Mapping[str, str], kind: str) -> tuple[ImagePlan, bool]:
    """``settle`` of one tag call (see there), against the image's ``tags`` read back."""
    view = tag_view(tags)

    def carried(change: Change) -> bool:
        return change.pending and change.part == TAGS and kind in tag_kinds(change)

    done = all(_effect_in_place(c, view, kind) for c in sent.changes if carried(c))
    changes = []
    for change in sent.changes:
        whole = carried(change) and all(
            _effect_in_place(change, view, k) for k in tag_kinds(change)
        )
        if whole and done:
            change = replace(change, applied=True)
        elif whole and change.renamed_from is None:
            change = replace(change, planned=None)
        changes.append(change)
    return _changed(sent, changes), done


def _effect_in_place(change: Change, view: Mapping[str, Any], kind: str) -> bool:
    """Whether what tag call ``kind`` does for ``change`` shows in ``view``."""
    if change.renamed_from is not None:
        if kind == DELETE:
            return change.renamed_from not in view
        return change.attribute in view and same_value(view[change.attribute], change.moved)
    if kind == DELETE:
        return change.attribute not in view
    return change.attribute in view and same_value(view[change.attribute], change.after)


def _changed(plan: ImagePlan, changes: Sequence[Change]) -> ImagePlan:
    return replace(plan, changes=tuple(changes))


def _verdict(plan: ImagePlan) -> tuple[ImagePlan, bool]:
    """A plan settled in every part: still to send (status None), done by the writes in
    doubt (``applied``), or in place without them (``unchanged``)."""
    if any(change.pending for change in plan.changes):
        return replace(plan, status=None, reason=""), False
    if any(change.applied for change in plan.changes):
        return plan, True
    return replace(plan, status=Status.UNCHANGED, reason="already as asked"), False


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
    data: dict[str, Any] = {
        "image_id": plan.image_id,
        "name": plan.name,
        "status": None if plan.status is None else plan.status.value,
        "reason": plan.reason,
        "observed": plan.observed,
        "changes": [_change_json(change) for change in plan.changes],
    }
    if plan.tag_count is not None:
        data["tag_count"] = plan.tag_count
    return data


def _change_json(change: Change) -> dict[str, Any]:
    planned = change.planned
    data: dict[str, Any] = {
        "row": change.source,
        "attribute": change.attribute,
        "requested": change.requested.to_json(),
        "planned": None if planned is None else planned.to_json(),
        "before": change.before,
        "exists": change.exists,
    }
    if change.renamed_from is not None:
        data["renamed_from"] = change.renamed_from
    if change.applied:
        data["applied"] = True
    return data


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
                renamed_from=_text_or_none(change.get("renamed_from")),
                applied=change.get("applied") is True,
            )
            for change in entry["changes"]
        ),
        tag_count=_count_or_none(entry.get("tag_count")),
    )


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {value!r}")
    return value


def _count_or_none(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"expected a count, got {value!r}")
    return value


def _operation(data: Mapping[str, Any]) -> Operation:
    path = str(data["path"])
    if data["op"] not in ("add", "replace", "remove", RENAME) or not (
        path.startswith("/") or is_tag(path)
    ):
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
    if plan.status in (Status.FAILED, Status.SKIPPED, Status.INVALID):
        return [f"{title}: {plan.status} — {plan.reason}"]
    lines = [f"{title}: {'unchanged' if plan.status == Status.UNCHANGED else 'update'}"]
    for change in plan.changes:
        if change.renamed_from is not None:
            lines.append(_describe_rename(change))
        elif change.planned is None:
            shown = "absent" if change.requested.op == "remove" else _show(change.before)
            lines.append(f"  = {change.attribute}: {shown} (already as asked)")
        elif change.planned.op == "remove":
            lines.append(f"  - {change.attribute} (was {_show(change.before)})")
        elif change.planned.op == "add":
            lines.append(f"  + {change.attribute}: {_show(change.after)}")
        else:
            lines.append(f"  {change.attribute}: {_show(change.before)} → {_show(change.after)}")
    return lines


def _describe_rename(change: Change) -> str:
    if change.planned is None:
        return f"  = {change.attribute}: {_show(change.before)} (already renamed)"
    return f"  {change.renamed_from} → {change.attribute}: {_show(change.moved)}"


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
