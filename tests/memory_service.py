"""An in-memory ``ImageService``: the test double that shows the service seam.

It knows nothing of HTTP nor of IMS: images are dicts in memory, answers are
``ApiResponse`` values in its own small vocabulary, and ``classify`` maps them onto the
neutral ``AnswerKind`` — exactly what a second adapter (Glance) would do.  A script of
faults per image makes it answer "slow down" (``throttle``), apply a write and lose the
answer (``lose_after_apply``), or refuse as not active.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from batchpatch.service import AnswerKind, ApiResponse, Image

THROTTLE = "throttle"
LOSE_AFTER_APPLY = "lose_after_apply"

_KINDS = {
    "slow_down": AnswerKind.THROTTLED,
    "lost": AnswerKind.MAYBE_APPLIED,
    "no_such_key": AnswerKind.CONFLICT,
    "frozen": AnswerKind.NOT_ACTIVE,
}


@dataclass
class MemoryService:
    """Images in ``store``; ``faults[image_id]`` is the list of faults its next writes meet."""

    store: dict[str, Image]
    faults: dict[str, list[str]] = field(default_factory=dict)
    endpoint: str = "memory://images"
    listing: str = "memory://images/list"
    requests: int = 0
    #: Every call, as ``(method, image_id or query)``, in order.
    calls: list[tuple[str, str]] = field(default_factory=list)
    #: Writes that took effect, per image.
    applied: dict[str, int] = field(default_factory=dict)

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
            found = _page(self.store, query)
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
