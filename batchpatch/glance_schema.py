"""What Glance v2 lets a user change, as a ``schema.Schema`` (``GLANCE_SCHEMA``).

From Glance's image schema (``GET /v2/schemas/image``) and its answers to PATCH
(shared/reference/glance-peer.md): the base attributes and their JSON types, the read-only
ones (403), the reserved ``os_glance_`` prefix (403), custom properties that must be strings
(a number or null is a 400, so a spreadsheet's ``1024`` is sent as ``"1024"``), and the
property quota (``image_property_quota``, 128 by default: a 413 beyond it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from batchpatch.errors import Reason
from batchpatch.models import JsonValue
from batchpatch.schema import (
    UntypedValue,
    cannot_remove,
    check_image_id,
    invisible_character,
    is_tag,
)

#: Glance's default ``image_property_quota``.
PROPERTY_QUOTA = 128
#: Glance's column sizes (MySQL): keys and names up to 255 characters, values up to 65535.
MAX_KEY, MAX_NAME, MAX_VALUE = 255, 255, 65535
RESERVED_PREFIX = "os_glance_"

VISIBILITIES = ("public", "private", "shared", "community")
INTEGER_ATTRIBUTES = frozenset({"min_ram", "min_disk"})
BOOLEAN_ATTRIBUTES = frozenset({"protected", "os_hidden"})
#: Every image has these (Glance's base properties a user may change): never removed.
BASE_ATTRIBUTES = frozenset({"name", "visibility", "owner"}) | INTEGER_ATTRIBUTES
BASE_ATTRIBUTES |= BOOLEAN_ATTRIBUTES
#: Base properties Glance lets a user change only while the image is ``queued``: a run
#: changes active images only.
QUEUED_ONLY = frozenset({"disk_format", "container_format"})
READ_ONLY = frozenset(
    {
        "id",
        "status",
        "checksum",
        "size",
        "virtual_size",
        "created_at",
        "updated_at",
        "self",
        "file",
        "schema",
        "direct_url",
        "locations",
        "os_hash_algo",
        "os_hash_value",
        "stores",
    }
)

_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})
_DIGITS = re.compile(r"[0-9]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class GlanceSchema:
    """Glance's rules (see the module docstring); ``property_quota`` as the operator set it."""

    base_attributes = BASE_ATTRIBUTES
    flag_attributes = BOOLEAN_ATTRIBUTES
    exclusive: tuple[tuple[frozenset[str], frozenset[str]], ...] = ()

    def __init__(self, property_quota: int = PROPERTY_QUOTA) -> None:
        self.property_quota = property_quota

    def typed_value(self, attribute: str, text: str) -> JsonValue:
        """Integers for ``min_ram``/``min_disk``, JSON booleans for the flags, the enum's
        spelling for ``visibility``, text for everything else (custom properties are
        strings in Glance)."""
        if attribute in INTEGER_ATTRIBUTES:
            cleaned = text.strip().removesuffix(".0")
            if not _DIGITS.fullmatch(cleaned):
                raise UntypedValue(
                    Reason(
                        f"{attribute} must be a whole number, got {text!r}",
                        "write digits only, e.g. 1024",
                    )
                )
            return int(cleaned)
        if attribute in BOOLEAN_ATTRIBUTES:
            lowered = text.strip().lower()
            if lowered in _TRUE | _FALSE:
                return lowered in _TRUE
            raise UntypedValue(
                Reason(f"{attribute} must be true or false, got {text!r}", "write true or false")
            )
        if attribute == "visibility":
            return text.strip().lower()
        return text

    def check_image_id(self, image_id: str) -> Reason | None:
        return check_image_id(image_id)

    def check_attribute(self, attribute: str, op: str) -> Reason | None:
        """Why ``op`` may not touch ``attribute`` in Glance, or None."""
        if attribute in READ_ONLY:
            return Reason(f"{attribute} is read-only", "remove this change; Glance sets it")
        if attribute.startswith(RESERVED_PREFIX):
            return Reason(
                f"{attribute}: the {RESERVED_PREFIX} prefix is reserved for Glance",
                "choose another property name",
            )
        if attribute in QUEUED_ONLY:
            return Reason(
                f"{attribute} can be changed only while an image is queued",
                "remove this change; batchpatch changes active images",
            )
        if attribute == "tags":
            return Reason("tags are a list, not a property", "remove this change")
        if is_tag(attribute):
            return Reason(
                "tag:KEY addresses a Huawei IMS key=value tag; Glance's tags are plain labels",
                "remove this change, or run with --api ims",
            )
        if op == "remove" and attribute in BASE_ATTRIBUTES:
            return cannot_remove(attribute)
        return _key_problem(attribute)

    def check_value(self, attribute: str, value: JsonValue) -> Reason | None:
        """Why Glance would refuse ``value`` (already typed) for ``attribute``, or None."""
        if attribute == "visibility" and value not in VISIBILITIES:
            return Reason(
                f"visibility must be one of {', '.join(VISIBILITIES)}, got {value!r}",
                "write one of them",
            )
        if not isinstance(value, str):
            return None
        if attribute == "name" and len(value) > MAX_NAME:
            return Reason(f"name is {len(value)} characters long", f"shorten it to {MAX_NAME}")
        if len(value) > MAX_VALUE:
            return Reason(
                f"{attribute} is {len(value)} characters long", f"shorten it to {MAX_VALUE}"
            )
        if attribute == "name" and (reason := invisible_character(value)):
            return Reason(f"name {reason.what}", reason.fix)
        hidden = _CONTROL.search(value)
        if hidden:
            return Reason(
                f"{attribute} holds an invisible control character (U+{ord(hidden.group()):04X})",
                "delete it",
            )
        return None

    def check_combination(self, attributes: set[str]) -> Reason | None:
        return None

    def over_quota(self, attributes: Sequence[str]) -> int | None:
        """The custom property that takes one image past ``property_quota`` properties
        (counting only those the sheet sets: the ones the image has already are Glance's
        to count, with a 413)."""
        custom = [
            position
            for position, attribute in enumerate(attributes)
            if attribute not in BASE_ATTRIBUTES
        ]
        return custom[self.property_quota] if len(custom) > self.property_quota else None


def _key_problem(attribute: str) -> Reason | None:
    """A custom property's key Glance cannot store, or that a JSON pointer cannot name."""
    if len(attribute) > MAX_KEY:
        return Reason(
            f"property name is {len(attribute)} characters long", f"shorten it to {MAX_KEY}"
        )
    if "/" in attribute or "~" in attribute:
        return Reason(
            f"property name {attribute!r} holds / or ~", "rename it without those characters"
        )
    if _CONTROL.search(attribute) or attribute != attribute.strip():
        return Reason(
            f"property name {attribute!r} holds spaces at its ends or control characters",
            "remove them",
        )
    return None


GLANCE_SCHEMA = GlanceSchema()
