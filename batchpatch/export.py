"""``batchpatch export``: the images as the wide sheet ``apply`` reads, so that editing a
cell and applying the sheet changes exactly that cell — and applying it untouched sends
nothing.

The images come from the service's listing, filtered with its own query names (IMS
ListImages: ``__imagetype``, ``status``, ``name``, ``tag``, ``created_at=gt:…`` …; by default
``__imagetype=private``, the account's own images), paged with ``marker`` to the end.  The
sheet holds ``image_id``, the attributes a user may change (``schema.UPDATABLE``), every
custom key found on the images, ``tag:KEY`` columns, and read-only context as ``#`` comment
columns (never sent).  Rows are in id order.

All of that is IMS's, gathered in ``IMS_EXPORT``; another API brings its own
``ExportRules`` (OpenStack Glance: ``glance_export.GLANCE_EXPORT``): its filters and their
defaults, its columns, how its listing pages, and the schema the cells are written for.

Every cell is written as the text the sheet reader and the planner turn back into the
value already there (``sheetwrite.cell_text``).  A value no cell can hold that way (a JSON
list, an empty string, a value the local checks would refuse) is left blank — blank means
"no change" — and counted in a note, so the untouched export still plans ``unchanged``.
An image that is not ``active`` cannot be updated: its row holds only the context columns.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchpatch.auth import Auth
from batchpatch.checks import LONG_COLUMNS
from batchpatch.errors import OptionsError, ReadFailed, Reason
from batchpatch.inventory import Reader, endless_paging
from batchpatch.models import Limits
from batchpatch.outputs import RunFile, check_outputs, clear_stale_temporaries
from batchpatch.plan import ACTIVE
from batchpatch.retry import RetryPolicy
from batchpatch.schema import (
    IMS_SCHEMA,
    READ_ONLY,
    TAG_PREFIX,
    UPDATABLE,
    Schema,
    check_tag_key,
)
from batchpatch.service import Image, ImageService
from batchpatch.sheetwrite import cell_text, check_table_writable, table_format, write_table
from batchpatch.throttle import Pacer

#: The ListImages query parameters a filter may name (IMS API reference, ListImages).
LIST_FILTERS = frozenset(
    {
        "__imagetype", "__isregistered", "__os_bit", "__os_type", "__platform",
        "__support_diskintensive", "__support_highperformance", "__support_kvm",
        "__support_kvm_gpu_type", "__support_kvm_infiniband", "__support_largememory",
        "__support_xen", "__support_xen_gpu_type", "__support_xen_hana", "__whole_image",
        "__system__cmkid", "architecture", "container_format", "created_at", "disk_format",
        "enterprise_project_id", "flavor_id", "id", "member_status", "min_disk", "min_ram",
        "name", "owner", "protected", "status", "tag", "updated_at", "virtual_env_type",
        "visibility",
    }
)  # fmt: skip
#: Parameters the export sets itself.
_OWN_PARAMETERS = {
    "limit": "the export pages to the end by itself",
    "marker": "the export pages to the end by itself",
    "sort_key": "the export sorts its rows by id itself",
    "sort_dir": "the export sorts its rows by id itself",
}
DEFAULT_FILTERS: Mapping[str, str] = {"__imagetype": "private"}
_TIME_FILTER = re.compile(r"(gt|gte|lt|lte|eq|neq):\S+")
PAGE_SIZE = 500

#: Attribute columns every export has, in this order; other updatable attributes follow
#: when an image holds them.
_FIRST_COLUMNS = (
    "name",
    "__description",
    "min_ram",
    "max_ram",
    "hw_firmware_type",
    "enterprise_project_id",
)
#: Read-only context, written as ``#`` comment columns.
CONTEXT = (
    "status",
    "__imagetype",
    "visibility",
    "__platform",
    "__os_type",
    "__os_version",
    "min_disk",
    "size",
    "created_at",
    "updated_at",
)

#: The tags of the exported images ({image_id: {key: value}}), read by the caller.
TagReader = Callable[[ImageService, Pacer], Awaitable[Mapping[str, Mapping[str, str]]]]
#: Every image of a listing: ``(reader, filters, page size)`` → the images.
Lister = Callable[[Reader, Mapping[str, str], int], Awaitable[list[Image]]]


def parse_filters(
    texts: Sequence[str], *, label: str = "--filter", rules: ExportRules | None = None
) -> dict[str, str]:
    """``KEY=VALUE`` texts as a listing query (IMS's ListImages unless ``rules`` are another
    API's), the defaults under it; ``OptionsError`` saying how to write the filter otherwise."""
    rules = rules or IMS_EXPORT
    given: dict[str, str] = {}
    for text in texts:
        key, equals, value = text.partition("=")
        key = key.strip()
        problem = _filter_problem(key, value, bool(equals), given, rules)
        if problem is not None:
            raise OptionsError(f"{label} {text!r}: {problem}")
        given[key] = value
    return dict(rules.default_filters) | given


def _filter_problem(
    key: str, value: str, equals: bool, given: Mapping[str, str], rules: ExportRules
) -> Reason | None:
    if not equals or not key or not value:
        return Reason("a filter is KEY=VALUE", "write it as e.g. --filter status=active")
    if key in _OWN_PARAMETERS:
        return Reason(f"{key} cannot be a filter", f"leave it out: {_OWN_PARAMETERS[key]}")
    if key in given:
        return Reason(f"{key} is filtered twice", "keep one --filter per key")
    return rules.filter_problem(key, value)


def ims_filter_problem(key: str, value: str) -> Reason | None:
    """Why IMS's ListImages would not take ``key=value`` as a filter, or None."""
    if key not in LIST_FILTERS:
        return Reason(
            f"{key!r} is not a ListImages query parameter",
            "use one of " + ", ".join(sorted(LIST_FILTERS)),
        )
    return time_filter_problem(key, value)


def time_filter_problem(key: str, value: str) -> Reason | None:
    """``created_at``/``updated_at`` take ``OP:TIME`` (IMS and Glance alike)."""
    if key in ("created_at", "updated_at") and not _TIME_FILTER.fullmatch(value):
        return Reason(
            f"{key} takes OP:TIME",
            f"write e.g. {key}=gt:2026-01-01T00:00:00Z (OP: gt gte lt lte eq neq)",
        )
    return None


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: where, how many images and columns, the requests it cost, and
    notes on what it could not write."""

    path: Path
    images: int
    columns: int
    requests: int
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"exported {self.images} images ({self.columns} columns) to {self.path} | "
            f"{self.requests} requests"
        )


def check_export_files(out: Path, *, flags: bool = False, inputs: Sequence[RunFile] = ()) -> None:
    """Before anything is read: the export is a sheet format, overwrites none of the files
    the run reads, and can be written."""
    label = "--out" if flags else "the export path"
    table_format(out, label=label)
    check_outputs(inputs, [RunFile("the export", out, label if flags else "")])
    clear_stale_temporaries([RunFile("the export", out)])
    check_table_writable(out, ["image_id"], label=label)


async def export_images(
    out: str | Path,
    *,
    endpoint: str,
    auth: Auth,
    limits: Limits | None = None,
    filters: Mapping[str, str] | None = None,
    ca_bundle: str | None = None,
    service: ImageService | None = None,
    policy: RetryPolicy | None = None,
    page_size: int = PAGE_SIZE,
    read_tags: TagReader | None = None,
    rules: ExportRules | None = None,
) -> ExportResult:
    """List the images ``filters`` select (default: the ``rules``' defaults, IMS's
    ``__imagetype=private``) and write them to ``out`` (.csv, .tsv or .xlsx) as the wide
    sheet ``apply`` reads.

    ``read_tags`` reads the images' tags for the ``tag:KEY`` columns (none without it).
    ``service`` replaces the IMS client built from ``endpoint`` and ``auth``; ``rules`` are
    its API's (``IMS_EXPORT`` by default).  Raises ``ReadFailed`` when the listing cannot be
    read, ``OptionsError`` for a bad ``out``.
    """
    from batchpatch.job import open_service

    path = Path(out)
    check_export_files(path)
    limits = limits or Limits()
    rules = rules or IMS_EXPORT
    query = dict(rules.default_filters) if filters is None else dict(filters)
    async with open_service(service, endpoint, auth, limits, ca_bundle) as client:
        pacer = Pacer(limits)
        try:
            reader = Reader(client, pacer, policy or RetryPolicy())
            images = await rules.listing(reader, query, page_size)
            tags, tag_notes = await tags_if_readable(read_tags, client, pacer)
        except ReadFailed as failure:
            raise failure.for_export() from None
        requests = client.requests
    header, rows, notes = export_table(images, tags, rules)
    write_table(path, header, rows)
    return ExportResult(path, len(rows), len(header), requests, tag_notes + notes)


async def tags_if_readable(
    read_tags: TagReader | None, client: ImageService, pacer: Pacer
) -> tuple[Mapping[str, Mapping[str, str]], list[str]]:
    """The images' tags, or none and a note saying why when the tag API cannot be used
    (no project id): the attributes are still worth exporting, and a sheet without
    ``tag:KEY`` columns changes no tag when applied."""
    if read_tags is None:
        return {}, []
    try:
        return await read_tags(client, pacer), []
    except OptionsError as error:
        return {}, [f"no tag:KEY columns written: {error}"]


async def list_all(reader: Reader, filters: Mapping[str, str], page_size: int) -> list[Image]:
    """Every image the listing holds under ``filters``, page by page (``marker`` = the last
    id of the page before) until a page comes back short.  A page bringing no new id, or a
    marker seen before, is a service that ignores ``marker``: ``ReadFailed``."""
    found: dict[str, Image] = {}
    markers: set[str] = set()
    marker = ""
    while True:
        query = dict(filters) | {"limit": str(page_size)} | ({"marker": marker} if marker else {})
        page = await reader.paced(query)
        fresh = [image for image in page if str(image.get("id", "")) not in found]
        found.update((str(image.get("id", "")), image) for image in fresh)
        if len(page) < page_size:
            return list(found.values())
        marker = str(page[-1].get("id", ""))
        if not fresh or marker in markers:
            raise endless_paging(reader.client.listing, marker)
        markers.add(marker)


def export_table(
    images: Sequence[Image],
    tags: Mapping[str, Mapping[str, str]],
    rules: ExportRules | None = None,
) -> tuple[list[str], list[list[str]], list[str]]:
    """The export's header, its rows (in id order) and notes on what it left out."""
    rules = rules or IMS_EXPORT
    ordered = sorted(images, key=lambda image: str(image.get("id", "")))
    attributes, skipped_keys = _attribute_columns(ordered, rules)
    tag_keys, odd_keys = _tag_columns(ordered, tags)
    context = [key for key in rules.context if any(key in image for image in ordered)]
    header = [
        "image_id",
        *attributes,
        *(TAG_PREFIX + key for key in tag_keys),
        *("#" + key for key in context),
    ]
    blanked: list[str] = []
    rows = []
    for image in ordered:
        image_id = str(image.get("id", ""))
        changeable = image.get("status") == ACTIVE
        values: dict[str, object] = dict(image)
        values.update({TAG_PREFIX + key: value for key, value in tags.get(image_id, {}).items()})
        row = [image_id]
        for column in header[1 : 1 + len(attributes) + len(tag_keys)]:
            row.append(_cell(column, values, blanked, image_id, rules) if changeable else "")
        row += [_context_text(image.get(key)) for key in context]
        rows.append(row)
    return header, rows, _legacy_note(odd_keys) + _notes(skipped_keys, blanked, ordered)


def _tag_columns(
    images: Sequence[Image], tags: Mapping[str, Mapping[str, str]]
) -> tuple[list[str], list[str]]:
    """The tag keys the exported images carry that a ``tag:KEY`` column can name, and the
    legacy keys outside the strict rules (left out: the column would set them, which is
    refused; a long sheet can rename or remove them)."""
    keys = {key for image in images for key in tags.get(str(image.get("id", "")), {})}
    odd = sorted(key for key in keys if check_tag_key(TAG_PREFIX + key) is not None)
    return sorted(keys - set(odd)), [TAG_PREFIX + key for key in odd]


def _attribute_columns(images: Sequence[Image], rules: ExportRules) -> tuple[list[str], list[str]]:
    """The attribute columns (updatable ones first, then custom keys, sorted) and the keys
    the images hold that a sheet cannot change (left out)."""
    keys = {key for image in images for key in image}
    first = rules.first_columns
    updatable = [*first, *sorted(keys & rules.updatable - set(first))]
    custom, skipped = [], []
    for key in sorted(keys - rules.updatable - rules.read_only - set(rules.context)):
        if (
            not key.strip()
            or key.lower() in LONG_COLUMNS
            or rules.schema.check_attribute(key, "add") is not None
        ):
            skipped.append(key)
        else:
            custom.append(key)
    return updatable + custom, skipped


def _cell(
    column: str,
    values: Mapping[str, object],
    blanked: list[str],
    image_id: str,
    rules: ExportRules,
) -> str:
    if column not in values or values[column] is None:
        return ""
    value = values[column]
    text = cell_text(column, value, exact=False, schema=rules.schema)
    if text is None:
        if not (isinstance(value, str) and not value.strip()):  # blank: nothing lost
            blanked.append(f"{image_id} {column}")
        return ""
    return text


def _context_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):  # e.g. Glance's tags, in no fixed order
        return ", ".join(sorted(str(item) for item in value))
    return str(value)


def _legacy_note(odd_keys: list[str]) -> list[str]:
    """The legacy tag keys left out, and how to migrate them: a wide ``tag:KEY`` column
    would set the key, which the strict rule refuses, so only a long sheet can move it."""
    if not odd_keys:
        return []
    shown = ", ".join(odd_keys[:10]) + (" …" if len(odd_keys) > 10 else "")
    return [
        f"left out {len(odd_keys)} legacy tag key(s) outside the rules a new tag must follow: "
        f"{shown} — to migrate one, apply a long sheet (image_id,op,path,value) with the row "
        "IMAGE_ID,rename,tag:OLD,tag:new_key, or IMAGE_ID,remove,tag:OLD, to delete it"
    ]


def _notes(skipped_keys: list[str], blanked: list[str], images: Sequence[Image]) -> list[str]:
    notes = []
    if skipped_keys:
        notes.append(
            f"left out {len(skipped_keys)} key(s) a sheet cannot change: "
            + ", ".join(skipped_keys[:10])
            + (" …" if len(skipped_keys) > 10 else "")
        )
    if blanked:
        notes.append(
            f"left {len(blanked)} cell(s) blank whose value a sheet cannot hold as it is "
            f"(blank sends nothing): {', '.join(blanked[:5])}{' …' if len(blanked) > 5 else ''}"
        )
    inactive = sum(1 for image in images if image.get("status") != ACTIVE)
    if inactive:
        notes.append(
            f"{inactive} image(s) are not active and cannot be updated: their rows show "
            "only the # context columns"
        )
    return notes


@dataclass(frozen=True)
class ExportRules:
    """What one API's export lists and writes: the filters it takes and their defaults, the
    attribute columns (``first_columns``, then the other ``updatable`` ones an image holds,
    then custom keys), the keys that are never columns (``read_only``), the ``#`` context
    columns, how its listing pages (``listing``), the ``schema`` its cells are written for,
    and whether it has ``tag:KEY`` columns."""

    schema: Schema
    updatable: frozenset[str]
    read_only: frozenset[str]
    first_columns: tuple[str, ...]
    context: tuple[str, ...]
    default_filters: Mapping[str, str]
    filter_problem: Callable[[str, str], Reason | None]
    listing: Lister
    tag_columns: bool = True

    def default_filter_text(self) -> str:
        """The defaults as ``--filter`` would write them, "none" without any."""
        return " ".join(f"{k}={v}" for k, v in self.default_filters.items()) or "none"


#: IMS's export (see the module docstring).
IMS_EXPORT = ExportRules(
    schema=IMS_SCHEMA,
    updatable=UPDATABLE,
    read_only=READ_ONLY,
    first_columns=_FIRST_COLUMNS,
    context=CONTEXT,
    default_filters=DEFAULT_FILTERS,
    filter_problem=ims_filter_problem,
    listing=list_all,
)
