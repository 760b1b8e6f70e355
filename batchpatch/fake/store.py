"""The fake's images: loading them, patching them atomically, listing them.

The store is shared between the server's event loop thread and the tests reading the final
state from another thread, so every access holds one lock and hands out deep copies.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchpatch.fake.errors import FakeApiError, invalid_format
from batchpatch.fake.rules import apply_ops, parse_ops
from batchpatch.fake.tags import TagQuery, Tags, created, deleted, seed_tags, tag_strings

Image = dict[str, Any]

DEFAULT_LIMIT = 500

#: ListImages parameters whose semantics the fake does not model; refusing them beats
#: silently answering as if they had been applied.
UNSUPPORTED_FILTERS = frozenset(
    {"sort_key", "sort_dir", "member_status", "flavor_id", "architecture"}
)  # fmt: skip
#: The time filters: ``OP:ISO-TIME`` (IMS ListImages), compared as instants.
TIME_FILTERS = frozenset({"created_at", "updated_at"})
_TIME_OPS: dict[str, Callable[[datetime, datetime], bool]] = {
    "gt": lambda have, wanted: have > wanted,
    "gte": lambda have, wanted: have >= wanted,
    "lt": lambda have, wanted: have < wanted,
    "lte": lambda have, wanted: have <= wanted,
    "eq": lambda have, wanted: have == wanted,
    "neq": lambda have, wanted: have != wanted,
}


class ImageFileError(ValueError):
    """An images file that cannot be loaded; the message names the file and the problem."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class ImageStore:
    """Images keyed by id, in insertion order, with the UpdateImage, ListImages and tag rules.

    Each image's tags are kept beside it, in the order they were first set; the image
    object's ``tags`` field shows them as ``key=value`` strings sorted by key (see
    ``fake.tags.tag_strings``; IMS documents no order) when the image has tags or its seed
    had the field.  A tag write does not touch ``updated_at``
    (undocumented; this keeps an undone tag change byte-for-byte equal to the original).
    """

    def __init__(
        self, images: Iterable[Mapping[str, Any]] = (), *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self._images = {image["id"]: image for image in checked_images(images)}
        self._tags: dict[str, Tags] = {}
        self._shows_tags: set[str] = set()
        for image_id, image in self._images.items():
            if "tags" in image:
                self._shows_tags.add(image_id)
                self._tags[image_id] = seed_tags(image["tags"])
                image["tags"] = tag_strings(self._tags[image_id])
        self._clock = clock
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<ImageStore images={len(self._images)}>"

    @property
    def images(self) -> dict[str, Image]:
        """A deep copy of every image, keyed by id, in insertion order."""
        with self._lock:
            return copy.deepcopy(self._images)

    def get(self, image_id: str) -> Image | None:
        """A deep copy of one image, or None."""
        with self._lock:
            return copy.deepcopy(self._images.get(image_id))

    def apply_patch(self, image_id: str, body: object) -> Image:
        """Apply a decoded UpdateImage body; return the whole updated image.

        Raises FakeApiError for a malformed body, an unknown or inactive image, or the first
        operation that fails, in which case the image is left untouched.
        """
        ops = parse_ops(body)
        with self._lock:
            image = self._images.get(image_id)
            if image is None:
                raise FakeApiError.ims("IMG.0027", status=404)
            if image.get("status") != "active":
                raise FakeApiError.ims("IMG.0046")
            patched = apply_ops(image, ops)
            patched["updated_at"] = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
            self._images[image_id] = patched
            return copy.deepcopy(patched)

    @property
    def tags(self) -> dict[str, Tags]:
        """Every image's tags (images with none included), keyed by id, in insertion order."""
        with self._lock:
            return {image_id: dict(self._tags.get(image_id, {})) for image_id in self._images}

    def image_tags(self, image_id: str) -> Tags:
        """One image's tags; 404 IMG.0027 for an unknown image."""
        with self._lock:
            self._known(image_id)
            return dict(self._tags.get(image_id, {}))

    def create_tags(self, image_id: str, tags: Mapping[str, str]) -> None:
        """Set ``tags`` (overwriting values); IMG.0116, nothing set, past the quota."""
        with self._lock:
            self._known(image_id)
            self._set_tags(image_id, created(self._tags.get(image_id, {}), tags))

    def delete_tags(self, image_id: str, keys: Iterable[str]) -> None:
        """Remove the tags with these keys; a key the image lacks is no error."""
        with self._lock:
            self._known(image_id)
            self._set_tags(image_id, deleted(self._tags.get(image_id, {}), list(keys)))

    def tag_values(self) -> dict[str, list[str]]:
        """ListImagesTags: every key of the tenant's tags with its distinct values, sorted."""
        values: dict[str, set[str]] = {}
        with self._lock:
            for tags in self._tags.values():
                for key, value in tags.items():
                    values.setdefault(key, set()).add(value)
        return {key: sorted(values[key]) for key in sorted(values)}

    def query_tags(self, query: TagQuery) -> tuple[list[Image], int]:
        """ListImageByTags: one page of resources (``[]`` for ``count``) and the total."""
        with self._lock:
            found = [
                (image_id, image, self._tags.get(image_id, {}))
                for image_id, image in self._images.items()
                if query.selects(image_id, str(image.get("name", "")), self._tags.get(image_id, {}))
            ]
        if query.action == "count":
            return [], len(found)
        page = found[query.offset : query.offset + query.limit]
        return [_resource(image_id, image, tags) for image_id, image, tags in page], len(found)

    def _known(self, image_id: str) -> None:
        if image_id not in self._images:
            raise FakeApiError.ims("IMG.0027", status=404)

    def _set_tags(self, image_id: str, tags: Tags) -> None:
        """Store an image's tags and show them in its ``tags`` field (lock held)."""
        self._tags[image_id] = tags
        image = self._images[image_id]
        if tags or image_id in self._shows_tags:
            image["tags"] = tag_strings(tags)
        else:
            image.pop("tags", None)

    def list_images(
        self,
        filters: Mapping[str, str] | None = None,
        limit: int = DEFAULT_LIMIT,
        marker: str | None = None,
    ) -> list[Image]:
        """One page of ListImages: the images after ``marker`` that match every filter.

        A filter is an exact match on the attribute's text (JSON text for numbers and
        booleans), so ``id``, ``name``, ``status``, ``__imagetype`` and the like all work.
        Two forms are special: ``enterprise_project_id=all_granted_eps`` matches every image,
        and ``id=in:ID1,ID2`` matches any of the listed ids (an assumption: the fake accepts
        the ``in:`` form for ``id`` only).
        """
        filters = dict(filters or {})
        unsupported = sorted(UNSUPPORTED_FILTERS.intersection(filters))
        if unsupported:
            raise invalid_format(f"the fake does not support the query parameter {unsupported[0]}")
        times = {key: _time_filter(key, filters.pop(key)) for key in TIME_FILTERS & set(filters)}
        tag = filters.pop("tag", None)
        if limit < 1:
            raise invalid_format("limit must be a positive integer")
        with self._lock:
            ids = list(self._images)
            if marker is not None:
                if marker not in self._images:
                    raise invalid_format("marker is not the id of an image")
                ids = ids[ids.index(marker) + 1 :]
            page = []
            for image_id in ids:
                image = self._images[image_id]
                if (
                    all(_matches(image, key, wanted) for key, wanted in filters.items())
                    and all(_in_time(image, key, test) for key, test in times.items())
                    and (tag is None or _tagged(self._tags.get(image_id, {}), tag))
                ):
                    page.append(copy.deepcopy(image))
                    if len(page) == limit:
                        break
            return page


def _resource(image_id: str, image: Image, tags: Tags) -> Image:
    """One ``resources`` entry of a ListImageByTags answer."""
    return {
        "resource_id": image_id,
        "resource_name": image.get("name", ""),
        "resource_detail": {"status": image.get("status")},
        "tags": [{"key": key, "value": value} for key, value in tags.items()],
    }


def _time_filter(key: str, text: str) -> tuple[Callable[[datetime, datetime], bool], datetime]:
    """``created_at=gt:2026-01-01T00:00:00Z`` as (comparison, instant); 400 otherwise."""
    op, _, when = text.partition(":")
    instant = _instant(when)
    if op not in _TIME_OPS or instant is None:
        raise invalid_format(f"{key} must be OP:TIME, OP one of {', '.join(_TIME_OPS)}")
    return _TIME_OPS[op], instant


def _instant(text: str) -> datetime | None:
    """An ISO 8601 time (UTC when it names no zone), or None."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _in_time(
    image: Image, key: str, test: tuple[Callable[[datetime, datetime], bool], datetime]
) -> bool:
    """Whether the image's ``key`` time passes ``test``; an image without one never does."""
    have = _instant(str(image.get(key, "")))
    return have is not None and test[0](have, test[1])


def _tagged(tags: Tags, wanted: str) -> bool:
    """ListImages' ``tag=KEY=VALUE``: the image carries that tag (``tag=KEY``: the key with
    an empty value).  A legacy tag stored as one key ``a.b`` answers ``tag=a=b`` too."""
    key, equals, value = wanted.partition("=")
    if tags.get(key) == value:
        return True
    return bool(equals) and tags.get(f"{key}.{value}") == ""


def _matches(image: Image, key: str, wanted: str) -> bool:
    if key == "id" and wanted.startswith("in:"):
        return image["id"] in wanted[len("in:") :].split(",")
    if key == "enterprise_project_id" and wanted == "all_granted_eps":
        return True
    if key not in image:
        return False
    value = image[key]
    return (value if isinstance(value, str) else json.dumps(value)) == wanted


def checked_images(images: Iterable[object]) -> list[Image]:
    """Deep copies of ``images``, each checked to be an object with a unique string id."""
    checked: list[Image] = []
    seen: set[str] = set()
    for number, image in enumerate(images, start=1):
        if not isinstance(image, Mapping):
            raise ValueError(f"image {number} is not a JSON object")
        image_id = image.get("id")
        if not isinstance(image_id, str) or not image_id:
            raise ValueError(f'image {number} has no "id" string')
        if image_id in seen:
            raise ValueError(f"image {number} repeats the id {image_id!r}")
        try:
            seed_tags(image.get("tags"))
        except ValueError as exc:
            raise ValueError(f"image {number}: {exc}") from None
        seen.add(image_id)
        checked.append(copy.deepcopy(dict(image)))
    return checked


def load_images(path: str | Path) -> list[Image]:
    """Read a JSON file holding a list of images or ``{"images": [...]}``.

    Raises ImageFileError naming the file and what is wrong with it.
    """
    try:
        data = json.loads(Path(path).read_bytes())
    except OSError as exc:
        raise ImageFileError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ImageFileError(f"{path}: not valid JSON: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("images"), list):
        data = data["images"]
    if not isinstance(data, list):
        raise ImageFileError(f'{path}: expected a JSON list of images or {{"images": [...]}}')
    try:
        return checked_images(data)
    except ValueError as exc:
        raise ImageFileError(f"{path}: {exc}") from exc
