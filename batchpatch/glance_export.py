"""``batchpatch export --api glance``: Glance's part of the export (``GLANCE_EXPORT``).

* **Filters** are Glance's ``GET /v2/images`` query: ``name``, ``visibility``, ``status``,
  ``owner``, ``tag``, ``protected``, ``os_hidden``, ``member_status``, ``disk_format``,
  ``container_format``, ``size_min``/``size_max``, ``created_at``/``updated_at=OP:TIME``,
  and any other name is a custom-property filter (Glance's own rule: ``--filter
  team=web`` lists the images whose ``team`` is ``web``).  IMS's ``__imagetype=private``
  would be such a property filter and match nothing, so Glance has **no default filter**:
  the export holds what Glance lists by default — the images the caller may use (its
  project's own, whatever their visibility, public ones, and shared ones it accepted;
  community and hidden images only when asked with ``visibility=community`` or
  ``os_hidden=true``).  ``visibility=private`` would not mean "our images" (a project's
  images may be shared or public, and an admin sees every project's private ones):
  ``--filter owner=PROJECT_ID`` does.
* **Paging** follows Glance's ``next`` link (``/v2/images?limit=…&marker=…``) until a page
  has none.  A short page does not end the listing in Glance: it caps ``limit`` at
  ``api_limit_max`` and drops images the caller may not see after the database paged.
  Each page is one paced read through the run's retry loop.
* **Columns**: ``name``, ``visibility``, ``min_ram``, ``min_disk``, ``protected``,
  ``os_hidden``, then every custom property (strings, as Glance keeps them).  ``tags``
  (a list of labels, not ``tag:KEY`` pairs), ``owner`` (changing it hands the image to
  another project), ``disk_format``/``container_format`` (fixed once active) and the
  read-only attributes are ``#`` context columns; reserved ``os_glance_*`` keys are left
  out with a note.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit

from batchpatch.errors import Reason
from batchpatch.export import ExportRules, time_filter_problem
from batchpatch.glance import LISTING_PATH
from batchpatch.glance_schema import (
    BOOLEAN_ATTRIBUTES,
    GLANCE_SCHEMA,
    QUEUED_ONLY,
    READ_ONLY,
    VISIBILITIES,
)
from batchpatch.inventory import Reader, _images, endless_paging
from batchpatch.service import ApiResponse, Image

__all__ = ["GLANCE_EXPORT", "glance_filter_problem", "list_following_next", "next_query"]

FIRST_COLUMNS = ("name", "visibility", "min_ram", "min_disk", "protected", "os_hidden")
CONTEXT = (
    "status",
    "owner",
    "tags",
    "disk_format",
    "container_format",
    "size",
    "created_at",
    "updated_at",
)
#: Query names the listing sets itself (``limit`` and ``marker`` are refused for every API).
_OWN = {"sort": "the export sorts its rows by id itself"}
_CHOICES = {
    "visibility": (*VISIBILITIES, "all"),
    "member_status": ("pending", "accepted", "rejected", "all"),
    "protected": ("true", "false"),
    "os_hidden": ("true", "false"),
}


def glance_filter_problem(key: str, value: str) -> Reason | None:
    """Why Glance's ``GET /v2/images`` would refuse ``key=value``, or None (an unknown
    name is a custom-property filter there, so it is taken)."""
    if key in _OWN:
        return Reason(f"{key} cannot be a filter", f"leave it out: {_OWN[key]}")
    if key == "changes-since":
        return Reason(
            "changes-since is gone from Glance v2", "write updated_at=gt:2026-01-01T00:00:00Z"
        )
    choices = _CHOICES.get(key)
    if choices is not None and value not in choices:
        return Reason(f"{key} is one of {', '.join(choices)} in Glance", "write one of them")
    return time_filter_problem(key, value)


def next_query(answer: ApiResponse) -> dict[str, str] | None:
    """The query of the ``next`` link of a Glance page, None when there is none (the last
    page) or it leaves ``/v2/images``."""
    body = answer.body if answer.ok else None
    following = body.get("next") if isinstance(body, dict) else None
    if not isinstance(following, str):
        return None
    parts = urlsplit(following)
    if parts.scheme or parts.netloc or parts.path.rstrip("/") != LISTING_PATH:
        return None
    return dict(parse_qsl(parts.query, keep_blank_values=True))


async def _page(reader: Reader, query: Mapping[str, str]) -> ApiResponse:
    """One page, paced and retried like every read of a run; its whole answer (the caller
    needs the ``next`` link, not just the images)."""
    borrower = await reader.pacer.acquire()
    try:
        return await reader.page(query)
    finally:
        reader.pacer.release(borrower)


async def list_following_next(
    reader: Reader, filters: Mapping[str, str], page_size: int
) -> list[Image]:
    """Every image Glance lists under ``filters``: the first page, then each ``next`` link
    until a page has none.  A link bringing no new image, or a marker seen before, is a
    listing that would never end: ``ReadFailed``."""
    query = dict(filters) | {"limit": str(page_size)}
    found: dict[str, Image] = {}
    markers: set[str] = set()
    while True:
        answer = await _page(reader, query)
        page = _images(reader.client, answer)
        fresh = [image for image in page if str(image.get("id", "")) not in found]
        found.update((str(image.get("id", "")), image) for image in fresh)
        following = next_query(answer)
        if following is None:
            return list(found.values())
        marker = following.get("marker", "")
        if not fresh or marker in markers:
            raise endless_paging(reader.client.listing, marker)
        markers.add(marker)
        query = following


GLANCE_EXPORT = ExportRules(
    schema=GLANCE_SCHEMA,
    updatable=frozenset(FIRST_COLUMNS) | BOOLEAN_ATTRIBUTES,
    read_only=READ_ONLY | QUEUED_ONLY | {"owner", "tags"},
    first_columns=FIRST_COLUMNS,
    context=CONTEXT,
    default_filters={},
    filter_problem=glance_filter_problem,
    listing=list_following_next,
    tag_columns=False,
)
