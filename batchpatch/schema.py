"""What IMS lets a user change, and the JSON type each attribute takes in a PATCH body.

Facts from the IMS UpdateImage and Image Attributes pages (see shared/reference).  Cells
arrive as text; ``typed_value`` turns the text into what the API expects.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Protocol

from batchpatch.errors import Reason
from batchpatch.models import JsonValue

OPS = ("add", "replace", "remove")
#: A long sheet's op that moves a value to a new key (``/old`` → ``new``, ``tag:old`` →
#: ``tag:new``): planned into an add and a remove (a tag: a create and a delete).
RENAME = "rename"
LONG_OPS = (*OPS, RENAME)

#: How a sheet names a tag instead of an attribute: ``tag:KEY`` (a wide column, or a long
#: sheet's path).  Tags are changed through the tag API, not the PATCH.
TAG_PREFIX = "tag:"
#: The most tags an image may carry (IMS ims_03_0617; the strict reading of the docs).
MAX_TAGS = 10

#: The marker a wide sheet uses in a cell to ask for the attribute to be removed.  ``<`` and
#: ``>`` are not allowed in names or descriptions, so the marker cannot be a real value there.
REMOVE_MARKER = "<remove>"

#: Sent as JSON integers.
INTEGER_ATTRIBUTES = frozenset({"min_ram"})

#: Sent as the strings "true" / "false".
FLAG_ATTRIBUTES = frozenset(
    {
        "__support_kvm",
        "__support_xen",
        "__support_largememory",
        "__support_diskintensive",
        "__support_highperformance",
        "__support_xen_hana",
        "__support_kvm_infiniband",
        "__support_fc_inject",
        "__support_amd",
        "__support_kvm_hi1822_hisriov",
        "__support_kvm_hi1822_hivirtionet",
        "__is_config_init",
        "hw_vif_multiqueue_enabled",
    }
)

#: Every image has these: they can be changed, never removed, and a wide sheet without a plan
#: can always ``replace`` them (anything else may be absent, and ``replace`` of an absent
#: attribute fails with IMG.0035, so it gets ``add``).
BASE_ATTRIBUTES = frozenset({"name", "min_ram"})

_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})
_DIGITS = re.compile(r"[0-9]+")


class UntypedValue(ValueError):
    """A cell's text cannot become the JSON value its attribute takes; ``reason`` says
    why and how to fix it (``str()`` of the error is the printed reason)."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(str(reason))
        self.reason = reason


def typed_value(attribute: str, text: str) -> JsonValue:
    """The JSON value to send for ``attribute`` given a cell's ``text``.

    Raises ``UntypedValue`` (a ``ValueError``) holding the ``Reason``.
    """
    if attribute in INTEGER_ATTRIBUTES:
        cleaned = text.strip()
        if cleaned.endswith(".0"):  # a whole number that passed through a float somewhere
            cleaned = cleaned[:-2]
        if not _DIGITS.fullmatch(cleaned):
            raise UntypedValue(
                Reason(
                    f"{attribute} must be a whole number of MB, got {text!r}",
                    "write digits only, e.g. 1024",
                )
            )
        return int(cleaned)
    if attribute == "hw_firmware_type":
        return text.strip().lower()
    if attribute in FLAG_ATTRIBUTES:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return "true"
        if lowered in _FALSE:
            return "false"
        raise UntypedValue(
            Reason(f"{attribute} must be true or false, got {text!r}", "write true or false")
        )
    return text


#: The attributes a user may change besides their own extension keys (IMS UpdateImage).
UPDATABLE = (
    frozenset(
        {
            "name",
            "__description",
            "enterprise_project_id",
            "min_ram",
            "max_ram",
            "hw_firmware_type",
            "__support_xen_gpu_type",
            "__support_kvm_gpu_type",
        }
    )
    | FLAG_ATTRIBUTES
)

#: Attributes IMS reports but does not let a user change.
READ_ONLY = frozenset(
    {
        "id",
        "status",
        "visibility",
        "owner",
        "file",
        "self",
        "schema",
        "checksum",
        "size",
        "virtual_size",
        "protected",
        "container_format",
        "disk_format",
        "min_disk",
        "created_at",
        "updated_at",
        "active_at",
        "virtual_env_type",
        "__os_bit",
        "__os_type",
        "__os_version",
        "__platform",
        "__imagetype",
        "__isregistered",
        "__originalimagename",
        "__backup_id",
        "__productcode",
        "__image_size",
        "__image_source_type",
        "__data_origin",
        "__whole_image",
        "__system__cmkid",
        "__os_feature_list",
        "__account_code",
        "__is_offshelved",
        "__lazyloading",
        "__root_origin",
        "__sequence_num",
        "__support_agent_list",
        "__image_displayname",
        "__system_support_market",
        "__support_arm",
        "tags",
    }
)

#: Attributes that cannot be set on one image together (IMS UpdateImage): each group's
#: members exclude the listed flags when those are "true".
GPU_TYPES = frozenset({"__support_xen_gpu_type", "__support_kvm_gpu_type"})
EXCLUSIVE = (
    (GPU_TYPES | {"__support_xen_hana"}, frozenset({"__support_kvm", "__support_xen"})),
    (frozenset({"__support_kvm_infiniband"}), frozenset({"__support_xen"})),
)

_NAME = re.compile(r"[A-Za-z0-9\-._ \u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]{1,128}")
_CUSTOM_KEY = re.compile(r"[a-z0-9_][a-z0-9_.:\-]*")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SCIENTIFIC = re.compile(r"[0-9](\.[0-9]+)?e\+?[0-9]+", re.IGNORECASE)


def check_image_id(image_id: str) -> Reason | None:
    """Why ``image_id`` (already trimmed and lower-cased) cannot be an IMS id, or None."""
    if _UUID.fullmatch(image_id):
        return None
    if _SCIENTIFIC.fullmatch(image_id):
        return Reason(
            f"image_id {image_id!r} looks like a number Excel turned into scientific notation",
            "format the column as Text and paste the ids again",
        )
    return Reason(
        f"image_id {image_id!r} is not an image id (a UUID such as "
        "0b1c6a3e-5f0d-4a53-9c1e-2f6d8a1b7c01)",
        "copy the id from the console or ListImages",
    )


def is_tag(attribute: str) -> bool:
    """Whether ``attribute`` (as a sheet names it, without a leading ``/``) is a tag."""
    return attribute.startswith(TAG_PREFIX)


def tag_key(attribute: str) -> str:
    """The tag key of ``tag:KEY``."""
    return attribute[len(TAG_PREFIX) :]


_TAG_KEY = re.compile(r"[A-Za-z0-9_\-\u4e00-\u9fff]{1,36}")
_TAG_VALUE = re.compile(r"[A-Za-z0-9_.\-\u4e00-\u9fff]{0,43}")
_TAG_CHARACTERS = "letters A-Z a-z, digits, _ - and Chinese characters"


def check_tag_key(attribute: str) -> Reason | None:
    """Why ``tag:KEY`` names no valid tag key (1 to 36 of A-Z a-z 0-9 _ - and CJK), or None."""
    key = tag_key(attribute)
    if not key:
        return Reason("the tag key after tag: is empty", "write the key, e.g. tag:env")
    if len(key) > 36:
        return Reason(f"tag key {key!r} is {len(key)} characters long", "shorten it to 36 at most")
    if not _TAG_KEY.fullmatch(key):
        return Reason(
            f"tag key {key!r} may hold only {_TAG_CHARACTERS}", "remove the other characters"
        )
    return None


#: The longest key IMS's delete takes (it checks only lengths there, ims-tags.md §1.2).
MAX_DELETED_KEY = 127


def check_existing_tag_key(attribute: str) -> Reason | None:
    """Why ``tag:KEY`` cannot name a tag an image may carry already (one to remove, or to
    rename away), or None.  Only the delete's length check applies: a legacy key outside
    the strict rule (``a.b``, ``Cost Center``) must be removable, or it could never be
    migrated to a valid one."""
    key = tag_key(attribute)
    if not key:
        return Reason("the tag key after tag: is empty", "write the key, e.g. tag:env")
    if len(key) > MAX_DELETED_KEY:
        return Reason(
            f"tag key {key[:40]!r}… is {len(key)} characters long; no tag can have it",
            f"check the key: IMS keys are {MAX_DELETED_KEY} characters at most",
        )
    return None


def check_tag_value(attribute: str, value: object) -> Reason | None:
    """Why ``value`` is no valid tag value (0 to 43 of the key characters and ``.``), or None."""
    text = str(value)
    if len(text) > 43:
        return Reason(
            f"{attribute} value is {len(text)} characters long", "shorten it to 43 at most"
        )
    if not _TAG_VALUE.fullmatch(text):
        return Reason(
            f"{attribute} value {text!r} may hold only {_TAG_CHARACTERS} and .",
            "remove the other characters",
        )
    return None


def check_attribute(attribute: str, op: str) -> Reason | None:
    """Why ``op`` may not touch ``attribute`` (an attribute or ``tag:KEY``), or None.  A tag
    being created (``add``/``replace``) needs the strict key rule; one removed or renamed
    away (``remove``, a rename's old key) only has to be a key a tag can have."""
    if is_tag(attribute):
        if op in ("remove", RENAME):
            return check_existing_tag_key(attribute)
        return check_tag_key(attribute)
    return _tag_like(attribute, op) or _attribute_reason(attribute, op)


def _tag_like(attribute: str, op: str) -> Reason | None:
    """An attribute spelled like a tag or the tag list, or a rename of a system attribute."""
    if attribute.lower().startswith(TAG_PREFIX):
        return Reason(
            f"{attribute!r} looks like a tag, but tag: must be written in lower case",
            f"write tag:{tag_key(attribute)} (the key keeps its case)",
        )
    if attribute.lower() == "tags":
        return Reason(
            "tags cannot be changed as one attribute",
            "write one column tag:KEY per tag (a long sheet: path tag:KEY); the cell "
            f"{REMOVE_MARKER} deletes a tag",
        )
    if op == RENAME and attribute in UPDATABLE:
        return Reason(
            f"{attribute} cannot be renamed: rename moves your own keys and tags only",
            "use replace to change its value",
        )
    return None


def _attribute_reason(attribute: str, op: str) -> Reason | None:
    if attribute in READ_ONLY or attribute.lower() in READ_ONLY:
        return Reason(
            f"{attribute.lower()} is read-only",
            "remove this change; IMS does not let users change it",
        )
    if op == "remove" and attribute in BASE_ATTRIBUTES:
        return cannot_remove(attribute)
    if attribute in UPDATABLE:
        return None
    if attribute.lower() in UPDATABLE:
        return Reason(f"unknown attribute {attribute!r}", f"did you mean {attribute.lower()!r}?")
    if attribute.startswith("__"):
        return Reason(
            f"unknown system attribute {attribute!r}",
            "check the spelling; your own keys must not start with __",
        )
    if not _CUSTOM_KEY.fullmatch(attribute):
        return Reason(
            f"custom attribute {attribute!r} must be lower-case letters, digits, _ . : -",
            "rename it in lower case",
        )
    return None


def cannot_remove(attribute: str) -> Reason:
    return Reason(f"{attribute} cannot be removed", "replace it with a new value instead")


def check_value(attribute: str, value: JsonValue) -> Reason | None:
    """Why IMS would refuse ``value`` for ``attribute`` (already typed), or None."""
    if is_tag(attribute):
        return check_tag_value(attribute, value)
    if attribute in ("name", "__description") and (reason := invisible_character(str(value))):
        return Reason(f"{attribute} {reason.what}", reason.fix)
    hidden = _CONTROL.search(str(value))
    if hidden and attribute != "__description":  # line breaks there have their own message
        code = f"{ord(hidden.group()):04X}"
        return Reason(
            f"{attribute} holds an invisible control character (U+{code})",
            f"delete it (Excel shows it as _x{code}_)",
        )
    if attribute == "name":
        return _name_problem(str(value))
    if attribute == "__description":
        return _description_problem(str(value), hidden)
    if attribute == "hw_firmware_type" and value not in ("bios", "uefi"):
        return Reason(f"hw_firmware_type must be bios or uefi, got {value!r}", "write bios or uefi")
    if attribute == "max_ram" and not _DIGITS.fullmatch(str(value)):
        return Reason(f"max_ram must be a whole number of MB, got {value!r}", "write digits only")
    return None


def _name_problem(text: str) -> Reason | None:
    if len(text) > 128:
        return Reason(f"name is {len(text)} characters long", "shorten it to 128 at most")
    if text != text.strip():
        return Reason("name starts or ends with a space", "remove the space")
    if not _NAME.fullmatch(text):
        return Reason(
            "name may hold only letters, digits, - . _, spaces and Chinese characters",
            "remove the other characters",
        )
    return None


def _description_problem(text: str, hidden: re.Match[str] | None) -> Reason | None:
    if len(text) > 1024:
        return Reason(f"__description is {len(text)} characters long", "shorten it to 1024 at most")
    if any(character in text for character in "\r\n<>"):
        return Reason("__description contains a line break, < or >", "remove them")
    if hidden:
        return Reason(
            f"__description holds an invisible control character (U+{ord(hidden.group()):04X})",
            "delete it",
        )
    return None


#: Zero-width and bidirectional control characters: invisible in a console or a sheet, they
#: make two names that look the same differ, or show text in another order than it is
#: stored (a "Trojan Source" name).  U+FEFF is the byte-order mark; a leading one in a file
#: is taken off when it is decoded, so one left in a cell is always a stray.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def invisible_character(text: str) -> Reason | None:
    """Where ``text`` holds a zero-width or bidirectional control character, or None (the
    ``what`` reads "holds …", to follow the name of what holds it)."""
    found = _INVISIBLE.search(text)
    if found is None:
        return None
    code = f"U+{ord(found.group()):04X}"
    return Reason(
        f"holds an invisible {unicodedata.name(found.group(), 'formatting').lower()} "
        f"character ({code}) at position {found.start() + 1}",
        "delete the invisible character (retype the text around it if you cannot see where it is)",
    )


def check_combination(attributes: set[str]) -> Reason | None:
    """Why one image cannot end up with all of ``attributes`` set, or None."""
    for group, excludes in EXCLUSIVE:
        chosen, excluded = attributes & group, attributes & excludes
        if chosen and excluded:
            return Reason(
                f"{', '.join(sorted(chosen))} cannot coexist with "
                f"{', '.join(sorted(excluded))} on one image",
                "keep only one of them",
            )
    return None


class Schema(Protocol):
    """The attribute rules of one API, chosen once for a run (``IMS_SCHEMA`` here, the
    Glance rules in ``glance_schema``): the checks and the sheet reader ask it, never the
    name of the API."""

    @property
    def base_attributes(self) -> frozenset[str]:
        """Every image has these: replaced (never added) without a plan, never removed."""

    @property
    def flag_attributes(self) -> frozenset[str]:
        """The true/false attributes (a workbook's TRUE/FALSE cells may go to them)."""

    @property
    def exclusive(self) -> tuple[tuple[frozenset[str], frozenset[str]], ...]:
        """Groups of attributes that exclude the listed flags when those are true."""

    def typed_value(self, attribute: str, text: str) -> JsonValue:
        """The JSON value to send for a cell's ``text``; ``UntypedValue`` if it has none."""

    def check_image_id(self, image_id: str) -> Reason | None: ...

    def check_attribute(self, attribute: str, op: str) -> Reason | None: ...

    def check_value(self, attribute: str, value: JsonValue) -> Reason | None: ...

    def check_combination(self, attributes: set[str]) -> Reason | None: ...

    def over_quota(self, attributes: Sequence[str]) -> int | None:
        """The position in ``attributes`` (those one image's changes set, in sheet order)
        of the first that takes the image past the API's property quota; None if none."""


class ImsSchema:
    """IMS's rules: this module's functions.

    Besides the ``Schema`` protocol, hints that let the checks of a million-row sheet skip
    work (each optional; a schema without them is asked change by change):
    ``plain_image_id``, a pattern every id that fully matches passes ``check_image_id``;
    ``quota_free``, ``over_quota`` never finds one; ``typed_as_text`` and ``plain_text``.
    """

    base_attributes = BASE_ATTRIBUTES
    flag_attributes = FLAG_ATTRIBUTES
    exclusive = EXCLUSIVE
    plain_image_id = _UUID.pattern
    quota_free = True

    def typed_value(self, attribute: str, text: str) -> JsonValue:
        return typed_value(attribute, text)

    def check_image_id(self, image_id: str) -> Reason | None:
        return check_image_id(image_id)

    def check_attribute(self, attribute: str, op: str) -> Reason | None:
        return check_attribute(attribute, op)

    def check_value(self, attribute: str, value: JsonValue) -> Reason | None:
        return check_value(attribute, value)

    def check_combination(self, attributes: set[str]) -> Reason | None:
        return check_combination(attributes)

    def over_quota(self, attributes: Sequence[str]) -> int | None:
        return None

    def typed_as_text(self, attribute: str) -> bool:
        """Whether ``typed_value`` sends every text of ``attribute`` as it is (what the sheet
        reader need not ask about value by value).  Optional, like ``plain_text``."""
        return not (
            attribute in INTEGER_ATTRIBUTES
            or attribute in FLAG_ATTRIBUTES
            or attribute == "hw_firmware_type"
        )

    def plain_text(self, attribute: str) -> str | None:
        """A pattern such that a cell's text that fully matches it, made the value
        ``typed_value`` sends for ``attribute`` (and ``sheetwrite.unquoted`` before), is
        one ``check_value`` finds nothing wrong with; or None.  The checks match a million
        cells with it at once (pyarrow's RE2) and ask ``check_value`` only about the rest.
        Printable ASCII only, so RE2 and Python's ``re`` read every pattern alike; anything
        else (Chinese text, a line break) is checked one by one.  Optional: a schema
        without it has every value checked (once per distinct value)."""
        return _plain_text(attribute)


#: ``ImsSchema.plain_text``'s patterns: names of 1 to 128 such characters without a space
#: at either end; descriptions without ``<``, ``>`` (and shorter than RE2's repeat limit);
#: a tag value of 43 at most; the other text attributes printable ASCII.
_PLAIN_NAME = "[A-Za-z0-9._-]|[A-Za-z0-9._-][A-Za-z0-9._ -]{0,126}[A-Za-z0-9._-]"
_PLAIN_DESCRIPTION = "[ -;=?-~]{0,1000}"
_PLAIN_TAG_VALUE = "[A-Za-z0-9_.-]{0,43}"
_PLAIN_OTHER = "[ -~]*"
_PLAIN_SPECIAL = {
    "name": _PLAIN_NAME,
    "__description": _PLAIN_DESCRIPTION,
    "hw_firmware_type": "bios|uefi",
    "max_ram": "[0-9]+",
}


def _plain_text(attribute: str) -> str:
    if is_tag(attribute):
        return _PLAIN_TAG_VALUE
    return _PLAIN_SPECIAL.get(attribute, _PLAIN_OTHER)


IMS_SCHEMA: Schema = ImsSchema()
