"""What the IMS tag API accepts: request bodies, tag rules, and the tag query's filters.

Pure functions over plain values; the facts and their sources are in
``/work/shared/reference/ims-tags.md`` §1.  Where the docs disagree the fake takes the strict
reading: on ``create`` a key is 1-36 characters of ``A-Z a-z 0-9 _ -`` and CJK ideographs, a
value 0-43 characters of those plus ``.``, at most 10 tags per image (400 IMG.0115 / IMG.0116);
``delete`` checks only the lengths (key <= 127, value <= 255), so a legacy tag with odd
characters can always be deleted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from batchpatch.fake.errors import FakeApiError, invalid_format

Tags = dict[str, str]

MAX_TAGS_PER_IMAGE = 10
KEY_MAX = 36
VALUE_MAX = 43
DELETE_KEY_MAX = 127
DELETE_VALUE_MAX = 255
TAG_ACTIONS = ("create", "delete")
QUERY_ACTIONS = ("filter", "count")
#: The tag query's filter lists: at most 10 keys, each with at most 10 values.
QUERY_FILTERS = ("tags", "tags_any", "not_tags", "not_tags_any")
QUERY_MAX_KEYS = 10
QUERY_MAX_VALUES = 10
QUERY_LIMIT_DEFAULT = 10
QUERY_LIMIT_MAX = 1000
MATCH_KEYS = ("resource_name", "resource_id")

_KEY = re.compile(r"[A-Za-z0-9_\-\u4e00-\u9fff]{1,36}")
_VALUE = re.compile(r"[A-Za-z0-9_.\-\u4e00-\u9fff]{0,43}")
_DIGITS = re.compile(r"[0-9]+")


def invalid_tag() -> FakeApiError:
    return FakeApiError.ims("IMG.0115")


def too_many_tags() -> FakeApiError:
    return FakeApiError.ims("IMG.0116")


# --- writes ------------------------------------------------------------------------------


def parse_tag_action(body: object) -> tuple[str, Tags]:
    """``{"action": "create"|"delete", "tags": [{"key", "value"}, ...]}`` → (action, tags).

    Raises IMG.0001 for a body of the wrong shape, IMG.0115 for a tag the action refuses
    or a key given twice.
    """
    if not isinstance(body, Mapping):
        raise invalid_format("the body must be a JSON object")
    action = body.get("action")
    if action not in TAG_ACTIONS:
        raise invalid_format('action must be "create" or "delete"')
    items = body.get("tags")
    if not isinstance(items, list) or not items:
        raise invalid_format("tags must be a non-empty list")
    tags: Tags = {}
    for item in items:
        key, value = _tag_item(item)
        if key in tags:
            raise invalid_tag()
        tags[key] = value
    check = check_created if action == "create" else check_deleted
    for key, value in tags.items():
        check(key, value)
    return str(action), tags


def parse_add_tag(body: object) -> tuple[str, str]:
    """AddImageTag's ``{"tag": {"key", "value"}}`` → (key, value), checked as for create."""
    if not isinstance(body, Mapping):
        raise invalid_format("the body must be a JSON object")
    key, value = _tag_item(body.get("tag"))
    check_created(key, value)
    return key, value


def _tag_item(item: object) -> tuple[str, str]:
    """One ``{"key": K, "value": V}``; a missing value is the empty string."""
    if not isinstance(item, Mapping):
        raise invalid_format("a tag must be an object with a key and a value")
    key, value = item.get("key"), item.get("value", "")
    if not isinstance(key, str) or not isinstance(value, str):
        raise invalid_format("a tag's key and value must be strings")
    return key, value


def check_created(key: str, value: str) -> None:
    """The strict rule set for a tag being created (IMG.0115)."""
    if not _KEY.fullmatch(key) or not _VALUE.fullmatch(value):
        raise invalid_tag()


def check_deleted(key: str, value: str) -> None:
    """Delete checks lengths only: a key 1-127 characters, a value up to 255 (IMG.0115)."""
    if not key.strip() or len(key) > DELETE_KEY_MAX or len(value) > DELETE_VALUE_MAX:
        raise invalid_tag()


def created(current: Mapping[str, str], tags: Mapping[str, str]) -> Tags:
    """``current`` with ``tags`` set (existing keys overwritten in place); IMG.0116 when the
    image would hold more than 10 tags and the call adds a key (an assumption: changing a
    value of an image already past the limit, with legacy tags, is allowed)."""
    result = dict(current) | dict(tags)
    if len(result) > MAX_TAGS_PER_IMAGE and not set(tags) <= set(current):
        raise too_many_tags()
    return result


def deleted(current: Mapping[str, str], keys: Sequence[str]) -> Tags:
    """``current`` without ``keys``; a key it does not hold is no error (the value given
    with a key is not compared: the docs say deleting is by key)."""
    gone = set(keys)
    return {key: value for key, value in current.items() if key not in gone}


def tag_strings(tags: Mapping[str, str]) -> list[str]:
    """The image object's ``tags`` field: ``key=value`` strings (``key`` alone for an empty
    value) — the form ListImages' ``tag=key=value`` filter suggests; clients must not parse it.

    Sorted by key: IMS documents no order for this field, so the fake shows a canonical
    one, and an image whose tags were deleted and set again (an undo) reads as before."""
    return [f"{key}={value}" if value else key for key, value in sorted(tags.items())]


def seed_tags(field_value: object) -> Tags:
    """The tags an images file gives an image in its ``tags`` field: a list of
    ``"key=value"`` strings (or ``"key"``), of ``{"key", "value"}`` objects, or an object
    mapping keys to values.  Raises ValueError for anything else."""
    if field_value is None:
        return {}
    if isinstance(field_value, Mapping):
        items: list[object] = [{"key": k, "value": v} for k, v in field_value.items()]
    elif isinstance(field_value, list):
        items = list(field_value)
    else:
        raise ValueError("tags must be a list or an object")
    tags: Tags = {}
    for item in items:
        if isinstance(item, str):
            key, _, value = item.partition("=")
        elif isinstance(item, Mapping) and isinstance(item.get("key"), str):
            key, value = item["key"], item.get("value", "")
        else:
            raise ValueError(f"cannot read the tag {item!r}")
        if not isinstance(value, str):
            raise ValueError(f"the tag {key!r} has a value that is not a string")
        tags[key] = value
    return tags


# --- the tag query (ListImageByTags) -----------------------------------------------------


@dataclass(frozen=True)
class TagQuery:
    """A checked ``resource_instances/action`` body."""

    action: str
    filters: Mapping[str, Mapping[str, frozenset[str]]] = field(default_factory=dict)
    without_any_tag: bool = False
    matches: Mapping[str, str] = field(default_factory=dict)
    limit: int = QUERY_LIMIT_DEFAULT
    offset: int = 0

    def selects(self, image_id: str, name: str, tags: Mapping[str, str]) -> bool:
        """Whether an image with this id, name and these tags is in the answer."""
        if "resource_id" in self.matches and image_id != self.matches["resource_id"]:
            return False
        if "resource_name" in self.matches and self.matches["resource_name"] not in name:
            return False
        if self.without_any_tag:
            return not tags
        return all(_filter_holds(kind, wanted, tags) for kind, wanted in self.filters.items())


def _filter_holds(kind: str, wanted: Mapping[str, frozenset[str]], tags: Mapping[str, str]) -> bool:
    hits = [key in tags and (not values or tags[key] in values) for key, values in wanted.items()]
    if kind == "tags":
        return all(hits)
    if kind == "tags_any":
        return any(hits)
    if kind == "not_tags":
        return not all(hits)
    return not any(hits)  # not_tags_any


def parse_tag_query(body: object) -> TagQuery:
    """Check a ListImageByTags body (IMG.0001 for anything the docs rule out).

    Query keys and values are not character-checked (the docs: for legacy data).
    ``limit`` and ``offset`` are strings, as in the docs' examples and the SDK.
    """
    if not isinstance(body, Mapping):
        raise invalid_format("the body must be a JSON object")
    action = body.get("action")
    if action not in QUERY_ACTIONS:
        raise invalid_format('action must be "filter" or "count"')
    without = body.get("without_any_tag", False)
    if not isinstance(without, bool):
        raise invalid_format("without_any_tag must be true or false")
    filters = {kind: _query_tags(kind, body[kind]) for kind in QUERY_FILTERS if kind in body}
    return TagQuery(
        action=str(action),
        filters=filters,
        without_any_tag=without,
        matches=_query_matches(body.get("matches", [])),
        limit=_count_string(body, "limit", QUERY_LIMIT_DEFAULT, low=1, high=QUERY_LIMIT_MAX),
        offset=_count_string(body, "offset", 0, low=0, high=None),
    )


def _query_tags(kind: str, items: object) -> dict[str, frozenset[str]]:
    if not isinstance(items, list) or not items or len(items) > QUERY_MAX_KEYS:
        raise invalid_format(f"{kind} must be a list of 1 to {QUERY_MAX_KEYS} tags")
    wanted: dict[str, frozenset[str]] = {}
    for item in items:
        key = item.get("key") if isinstance(item, Mapping) else None
        values = item.get("values") if isinstance(item, Mapping) else None
        if not isinstance(key, str) or not key or key in wanted:
            raise invalid_format(f"{kind} needs unique, non-empty keys")
        wanted[key] = _query_values(kind, values)
    return wanted


def _query_values(kind: str, values: object) -> frozenset[str]:
    """A filter's ``values``: up to 10 distinct strings; none means any value."""
    if not isinstance(values, list) or len(values) > QUERY_MAX_VALUES:
        raise invalid_format(f"{kind}: values must be a list of up to 10 strings")
    strings = [value for value in values if isinstance(value, str)]
    if len(strings) != len(values) or len(set(strings)) != len(strings):
        raise invalid_format(f"{kind}: values must be distinct strings")
    return frozenset(strings)


def _query_matches(items: object) -> dict[str, str]:
    if not isinstance(items, list):
        raise invalid_format("matches must be a list")
    matches: dict[str, str] = {}
    for item in items:
        key = item.get("key") if isinstance(item, Mapping) else None
        value = item.get("value") if isinstance(item, Mapping) else None
        if key not in MATCH_KEYS or key in matches or not isinstance(value, str):
            raise invalid_format("matches: keys resource_name or resource_id, once each")
        matches[str(key)] = value
    return matches


def _count_string(
    body: Mapping[str, Any], name: str, default: int, *, low: int, high: int | None
) -> int:
    if name not in body:
        return default
    text = body[name]
    if not isinstance(text, str) or not _DIGITS.fullmatch(text):
        raise invalid_format(f"{name} must be a string of digits")
    number = int(text)
    if number < low or (high is not None and number > high):
        bounds = f"{low} to {high}" if high is not None else f"at least {low}"
        raise invalid_format(f"{name} must be {bounds}")
    return number
