"""What the IMS tag API's answers must look like, and what they carry.

The ``*_problem`` functions say why a 2xx is not what its call answers ("" when it is), so
the client can turn it into an unexpected answer (read back, as for a PATCH); the ``*_in``
functions take a checked answer apart.  Facts: ``/work/shared/reference/ims-tags.md`` §1.2
and §1.4.
"""

from __future__ import annotations

from typing import Any

from batchpatch.service import ApiResponse

TAG_ACTIONS = ("create", "delete")
#: ``resource_instances/action``: at most 10 keys a filter, 1000 images a page.
MAX_QUERY_KEYS = 10
MAX_QUERY_LIMIT = 1000

TagList = dict[str, str]


def no_content_problem(response: ApiResponse) -> str:
    """A tag write answers 204 with no body; anything else proves nothing."""
    if response.status == 204 and response.body is None:
        return ""
    if _is_error_body(response.body):
        return "an error body in a success answer"
    return f"HTTP {response.status} with a body where 204 with no body was expected"


def tags_problem(response: ApiResponse) -> str:
    return "" if tags_in(response) is not None else "no tag list in the body"


def tag_keys_problem(response: ApiResponse) -> str:
    return "" if tag_keys_in(response) is not None else "no tag key list in the body"


def tagged_problem(response: ApiResponse) -> str:
    return "" if tagged_in(response) is not None else "no resources and total_count in the body"


def tags_in(response: ApiResponse) -> TagList | None:
    """``{"tags": [{"key", "value"}, ...]}`` as a dict; None if the body is not that."""
    body = response.body
    return _pairs(body.get("tags")) if isinstance(body, dict) else None


def tag_keys_in(response: ApiResponse) -> dict[str, list[str]] | None:
    """``{"tags": [{"key", "values": [...]}, ...]}`` as a dict; None if it is not that."""
    items = response.body.get("tags") if isinstance(response.body, dict) else None
    if not isinstance(items, list):
        return None
    keys: dict[str, list[str]] = {}
    for item in items:
        key = item.get("key") if isinstance(item, dict) else None
        values = item.get("values") if isinstance(item, dict) else None
        if not isinstance(key, str) or not isinstance(values, list) or not _strings(values):
            return None
        keys[key] = [str(value) for value in values]
    return keys


def tagged_in(response: ApiResponse) -> tuple[dict[str, TagList], int] | None:
    """``({image_id: all its tags}, total_count)`` from a ``filter`` answer; None if the
    body is not one."""
    body = response.body
    if not isinstance(body, dict):
        return None
    total, resources = body.get("total_count"), body.get("resources")
    if not isinstance(total, int) or isinstance(total, bool) or not isinstance(resources, list):
        return None
    found: dict[str, TagList] = {}
    for resource in resources:
        image_id = resource.get("resource_id") if isinstance(resource, dict) else None
        tags = _pairs(resource.get("tags")) if isinstance(resource, dict) else None
        if not isinstance(image_id, str) or tags is None:
            return None
        found[image_id] = tags
    return found, total


def _pairs(items: object) -> TagList | None:
    if not isinstance(items, list):
        return None
    pairs: TagList = {}
    for item in items:
        key = item.get("key") if isinstance(item, dict) else None
        value = item.get("value", "") if isinstance(item, dict) else None
        if not isinstance(key, str) or not isinstance(value, str):
            return None
        pairs[key] = value
    return pairs


def _strings(values: Any) -> bool:
    return isinstance(values, list) and all(isinstance(value, str) for value in values)


def _is_error_body(body: object) -> bool:
    return isinstance(body, dict) and ("error" in body or "error_code" in body)
