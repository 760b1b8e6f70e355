"""An in-memory ``ImageService``: the test double that shows the service seam.

It knows nothing of HTTP nor of IMS: images are dicts in memory, answers are
``ApiResponse`` values in its own small vocabulary, and ``classify`` maps them onto the
neutral ``AnswerKind`` — exactly what a second adapter (Glance) would do.  A script of
faults per image makes it answer "slow down" (``throttle``), apply a write and lose the
answer (``lose_after_apply``), or refuse as not active.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from batchpatch.errors import OptionsError
from batchpatch.service import AnswerKind, ApiResponse, Image

if TYPE_CHECKING:
    from batchpatch.job import RunResult

THROTTLE = "throttle"
LOSE_AFTER_APPLY = "lose_after_apply"
#: Tags one image may hold (IMS: 10).
TAG_LIMIT = 10

_KINDS = {
    "slow_down": AnswerKind.THROTTLED,
    "lost": AnswerKind.MAYBE_APPLIED,
    "no_such_key": AnswerKind.CONFLICT,
    "frozen": AnswerKind.NOT_ACTIVE,
    "too_many_tags": AnswerKind.REFUSED,
}


@dataclass
class MemoryService:
    """Images in ``store``; ``faults[image_id]`` is the list of faults its next writes meet."""

    store: dict[str, Image]
    faults: dict[str, list[str]] = field(default_factory=dict)
    endpoint: str = "memory://images"
    listing: str = "memory://images/list"
    requests: int = 0
    #: The most images one page holds, whatever ``limit`` asks (as Glance's api_limit_max).
    page_cap: int = 10**9
    #: Every call, as ``(method, image_id or query)``, in order.
    calls: list[tuple[str, str]] = field(default_factory=list)
    #: Writes that took effect, per image.
    applied: dict[str, int] = field(default_factory=dict)
    #: Each image's tags; an image absent here has none.
    tag_store: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Tag writes that took effect, per image.
    tag_applied: dict[str, int] = field(default_factory=dict)
    #: The tag calls' project; "" plays a run whose project id cannot be had.
    project: str = "memory-project"

    async def update_image(self, image_id: str, operations: list[dict[str, Any]]) -> ApiResponse:
        self.requests += 1
        self.calls.append(("update", image_id))
        fault = self.faults.get(image_id, []).pop(0) if self.faults.get(image_id) else ""
        if fault == THROTTLE:
            return ApiResponse(429, error_code="slow_down", error_message="slow down")
        image = self.store.get(image_id)
        if image is None:
            return ApiResponse(404, error_code="missing", error_message="no such image")
        if image.get("status") != "active":
            return ApiResponse(409, error_code="frozen", error_message="not active")
        patched = _patched(image, operations)
        if patched is None:
            return ApiResponse(409, error_code="no_such_key", error_message="no such key")
        self.store[image_id] = patched
        self.applied[image_id] = self.applied.get(image_id, 0) + 1
        if fault == LOSE_AFTER_APPLY:
            return ApiResponse(None, error_code="lost", error_message="the answer was lost")
        return ApiResponse(200, copy.deepcopy(patched))

    async def list_images(self, query: Mapping[str, str]) -> ApiResponse:
        self.requests += 1
        self.calls.append(("list", query.get("id", "")))
        if "id" in query:
            found = [self.store[query["id"]]] if query["id"] in self.store else []
        else:
            found = _page(self.store, query)[: self.page_cap]
        return ApiResponse(200, {"items": copy.deepcopy(found)})

    async def preview_update(self, image_id: str, operations: list[dict[str, Any]]) -> str:
        return f"UPDATE {image_id} {operations}"

    def classify(self, answer: ApiResponse) -> AnswerKind:
        if answer.ok:
            return AnswerKind.OK
        return _KINDS.get(answer.error_code, AnswerKind.REFUSED)

    def images(self, answer: ApiResponse) -> list[Image] | None:
        items = answer.body.get("items") if isinstance(answer.body, dict) else None
        return items if isinstance(items, list) else None

    def describe(self) -> str:
        return "no credentials (in memory)"

    # --- tags: the same faults script as writes, a limit of TAG_LIMIT tags per image ------

    async def tag_project(self) -> str:
        if not self.project:
            raise OptionsError("the tag API needs a project id — set one")
        return self.project

    async def read_tags(self, image_id: str) -> ApiResponse:
        self.requests += 1
        self.calls.append(("read_tags", image_id))
        if image_id not in self.store:
            return ApiResponse(404, error_code="missing", error_message="no such image")
        return ApiResponse(200, {"pairs": dict(self.tag_store.get(image_id, {}))})

    async def change_tags(self, image_id: str, action: str, tags: Mapping[str, str]) -> ApiResponse:
        self.requests += 1
        self.calls.append((f"{action}_tags", image_id))
        fault = self.faults.get(image_id, []).pop(0) if self.faults.get(image_id) else ""
        if fault == THROTTLE:
            return ApiResponse(429, error_code="slow_down", error_message="slow down")
        if image_id not in self.store:
            return ApiResponse(404, error_code="missing", error_message="no such image")
        current = dict(self.tag_store.get(image_id, {}))
        if action == "create":
            current |= dict(tags)
        else:
            current = {key: value for key, value in current.items() if key not in tags}
        if len(current) > TAG_LIMIT:
            return ApiResponse(400, error_code="too_many_tags", error_message="over the limit")
        self.tag_store[image_id] = current
        self.tag_applied[image_id] = self.tag_applied.get(image_id, 0) + 1
        if fault == LOSE_AFTER_APPLY:
            return ApiResponse(None, error_code="lost", error_message="the answer was lost")
        return ApiResponse(204)

    async def preview_tags(self, image_id: str, action: str, tags: Mapping[str, str]) -> str:
        return f"TAGS {action.upper()} {image_id} {dict(tags)}"

    async def list_tag_keys(self) -> ApiResponse:
        self.requests += 1
        self.calls.append(("list_tag_keys", ""))
        values: dict[str, set[str]] = {}
        for image_tags in self.tag_store.values():
            for key, value in image_tags.items():
                values.setdefault(key, set()).add(value)
        return ApiResponse(200, {"keys": {key: sorted(values[key]) for key in sorted(values)}})

    async def find_tagged(self, keys: Sequence[str], offset: int, limit: int) -> ApiResponse:
        self.requests += 1
        self.calls.append(("find_tagged", ",".join(keys)))
        wanted = set(keys)
        found = [
            image_id
            for image_id in sorted(self.store)
            if wanted & set(self.tag_store.get(image_id, {}))
        ]
        page = {
            image_id: dict(self.tag_store[image_id]) for image_id in found[offset : offset + limit]
        }
        return ApiResponse(200, {"found": page, "total": len(found)})

    def tags(self, answer: ApiResponse) -> dict[str, str] | None:
        pairs = answer.body.get("pairs") if isinstance(answer.body, dict) else None
        return pairs if isinstance(pairs, dict) else None

    def tag_keys(self, answer: ApiResponse) -> dict[str, list[str]] | None:
        keys = answer.body.get("keys") if isinstance(answer.body, dict) else None
        return keys if isinstance(keys, dict) else None

    def tagged(self, answer: ApiResponse) -> tuple[dict[str, dict[str, str]], int] | None:
        if not isinstance(answer.body, dict) or "found" not in answer.body:
            return None
        return answer.body["found"], answer.body["total"]


def _patched(image: Image, operations: list[dict[str, Any]]) -> Image | None:
    patched = copy.deepcopy(image)
    for operation in operations:
        key = str(operation["path"]).lstrip("/")
        if operation["op"] != "add" and key not in patched:
            return None
        if operation["op"] == "remove":
            del patched[key]
        else:
            patched[key] = operation["value"]
    return patched


def _page(images: Mapping[str, Image], query: Mapping[str, str]) -> list[Image]:
    ids = sorted(images)
    marker = query.get("marker", "")
    start = ids.index(marker) + 1 if marker in ids else 0
    return [images[i] for i in ids[start : start + int(query.get("limit", "500"))]]


def apply_in_memory(sheet: Path, service: MemoryService, **options: Any) -> RunResult:
    """``apply_sheet`` of ``sheet`` against ``service``, one request at a time, ``options``
    (``plan``, ``ledger``, ``safeguards``…) as given."""
    from batchpatch.auth import TokenAuth
    from batchpatch.job import apply_sheet
    from batchpatch.models import Limits

    async def run() -> RunResult:
        return await apply_sheet(
            sheet,
            endpoint=service.endpoint,
            auth=TokenAuth("unused"),
            limits=Limits(concurrency=1, rate=1000),
            service=service,
            **options,
        )

    return anyio.run(run)
