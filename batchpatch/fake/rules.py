"""What UpdateImage accepts: the patch body's shape, which attributes may change, value rules.

Pure functions over plain dicts; the facts and their sources are in
``/work/shared/reference/ims-api-facts.md`` §1-§3.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from batchpatch.fake.errors import FakeApiError, invalid_format

OPS = ("add", "replace", "remove")

#: Attributes users may not change (ims-api-facts §2.2).  The code the real service answers
#: for them is undocumented; the fake uses IMG.0105 "The operation is not supported."
READ_ONLY = frozenset(
    {
        "id", "status", "visibility", "owner", "file", "self", "schema", "checksum", "size",
        "virtual_size", "protected", "container_format", "disk_format", "min_disk",
        "created_at", "updated_at", "active_at", "virtual_env_type", "__os_bit", "__os_type",
        "__os_version", "__platform", "__imagetype", "__isregistered", "__originalimagename",
        "__backup_id", "__productcode", "__image_size", "__image_source_type", "__data_origin",
        "__whole_image", "__system__cmkid", "__os_feature_list", "__account_code",
        "__is_offshelved", "__lazyloading", "__root_origin", "__sequence_num",
        "__support_agent_list", "__image_displayname", "__system_support_market",
        "__support_arm", "tags",
    }
)  # fmt: skip

#: Updatable attributes that must stay on the image (removing them is refused with IMG.0105).
UNREMOVABLE = frozenset({"name", "min_ram"})

#: The ``__support_*`` attributes that hold a free GPU type string instead of "true"/"false".
GPU_TYPES = frozenset({"__support_xen_gpu_type", "__support_kvm_gpu_type"})

#: Flags outside the ``__support_`` prefix that also take "true"/"false".
OTHER_FLAGS = frozenset({"__is_config_init", "hw_vif_multiqueue_enabled"})

#: The attributes IMS defines that users may change (ims-api-facts §2.1), besides any
#: ``__support_*`` flag.  ``enterprise_project_id`` takes any string here.  Every other name
#: is a user's extension attribute.
UPDATABLE = (
    frozenset(
        {"name", "__description", "min_ram", "max_ram", "hw_firmware_type", "enterprise_project_id"}
    )
    | OTHER_FLAGS
    | GPU_TYPES
)

NAME_MAX = 128
DESCRIPTION_MAX = 1024
# ASCII letters and digits, "-", ".", "_", space, and CJK ideographs (Extension A, the unified
# block, compatibility ideographs): the Chinese doc's "中文"; the English pages omit it.
_NAME_CHARS = re.compile(r"[A-Za-z0-9._\- \u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_DESCRIPTION_FORBIDDEN = frozenset("\r\n<>")
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class PatchOp:
    """One checked operation: ``attribute`` is the path without its leading "/"."""

    op: str
    attribute: str
    value: object


def parse_ops(body: object) -> list[PatchOp]:
    """Check the decoded request body's shape and return its operations in order."""
    if not isinstance(body, list):
        raise invalid_format("the body must be a JSON array of operations")
    if not body:
        raise FakeApiError.ims("IMG.0007")
    ops = []
    for number, item in enumerate(body, start=1):
        if not isinstance(item, dict):
            raise invalid_format(f"operation {number} is not a JSON object")
        op, path = item.get("op"), item.get("path")
        if op not in OPS:
            raise invalid_format(f"operation {number}: op must be add, replace or remove")
        if not isinstance(path, str) or not path.startswith("/"):
            raise invalid_format(f"operation {number}: path must be a string starting with /")
        attribute = path[1:]
        if not attribute or "/" in attribute:
            raise invalid_format(f"operation {number}: path must name one attribute")
        if op != "remove" and "value" not in item:
            raise invalid_format(f"operation {number}: {op} needs a value")
        ops.append(PatchOp(op, attribute, item.get("value")))
    return ops


def apply_ops(image: dict[str, Any], ops: list[PatchOp]) -> dict[str, Any]:
    """Return a patched copy of ``image``; raise on the first operation that fails.

    Working on a copy is what makes a patch list atomic: the caller commits the result only
    when every operation passed.  ``add`` of an existing attribute replaces its value
    (RFC 6902 §4.1); ``replace`` or ``remove`` of a missing one is IMG.0035.
    """
    patched = copy.deepcopy(image)
    for op in ops:
        name = op.attribute
        if name in READ_ONLY or (op.op == "remove" and name in UNREMOVABLE):
            raise FakeApiError.ims("IMG.0105")
        if not _is_updatable_system(name) and name != name.lower():
            raise invalid_format(f"extension attribute {name!r} must not contain upper case")
        if op.op != "add" and name not in patched:
            raise FakeApiError.ims("IMG.0035")
        if op.op == "remove":
            del patched[name]
        else:
            patched[name] = stored_value(name, op.value)
    return patched


def stored_value(name: str, value: object) -> object:
    """Check ``value`` for attribute ``name`` and return what the image will hold."""
    if name in ("min_ram", "max_ram"):
        return _ram(name, value)
    if not isinstance(value, str):
        raise invalid_format(f"the value of /{name} must be a JSON string")
    if name == "name":
        _check_name(value)
    elif name == "__description":
        _check_description(value)
    elif name == "hw_firmware_type":
        if value not in ("bios", "uefi"):
            raise FakeApiError.ims("IMG.0141")
    elif _is_flag(name) and value not in ("true", "false"):
        raise invalid_format(f'the value of /{name} must be "true" or "false"')
    return value


def _ram(name: str, value: object) -> object:
    """``min_ram`` is a JSON number, ``max_ram`` a string of digits."""
    if name == "min_ram":
        # bool is an int subclass, but JSON true is not a size.
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise FakeApiError.ims("IMG.0055")
        return value
    if not isinstance(value, str) or not _DIGITS.fullmatch(value):
        raise FakeApiError.ims("IMG.0055")
    return value


def _check_name(name: str) -> None:
    if len(name) > NAME_MAX:
        raise FakeApiError.ims("IMG.0002")
    if name != name.strip(" ") or not _NAME_CHARS.fullmatch(name):
        raise FakeApiError.ims("IMG.0003")


def _check_description(description: str) -> None:
    if len(description) > DESCRIPTION_MAX:
        raise FakeApiError.ims("IMG.0004")
    if not _DESCRIPTION_FORBIDDEN.isdisjoint(description):
        raise FakeApiError.ims("IMG.0054")


def _is_flag(name: str) -> bool:
    return name in OTHER_FLAGS or (name.startswith("__support_") and name not in GPU_TYPES)


def _is_updatable_system(name: str) -> bool:
    return name in UPDATABLE or name.startswith("__support_")
