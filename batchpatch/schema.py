"""What IMS lets a user change, and the JSON type each attribute takes in a PATCH body.

Facts from the IMS UpdateImage and Image Attributes pages (see shared/reference).  Cells
arrive as text; ``typed_value`` turns the text into what the API expects.
"""

from __future__ import annotations

import re

from batchpatch.models import JsonValue

OPS = ("add", "replace", "remove")

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

#: Every image has these, so a wide sheet can always ``replace`` them; anything else may be
#: absent, and ``replace`` of an absent attribute fails with IMG.0035, so it gets ``add``.
ALWAYS_PRESENT = frozenset({"name", "min_ram"})

_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})
_DIGITS = re.compile(r"[0-9]+")


def attribute_of(path: str) -> str:
    """The attribute name of a patch path or a sheet column: ``/name`` and ``name`` alike."""
    return path.strip().lstrip("/")


def typed_value(attribute: str, text: str) -> JsonValue:
    """The JSON value to send for ``attribute`` given a cell's ``text``.

    Raises ``ValueError`` whose message reads "what is wrong — how to fix it".
    """
    if attribute in INTEGER_ATTRIBUTES:
        cleaned = text.strip()
        if cleaned.endswith(".0"):  # a whole number that passed through a float somewhere
            cleaned = cleaned[:-2]
        if not _DIGITS.fullmatch(cleaned):
            raise ValueError(
                f"{attribute} must be a whole number of MB, got {text!r}"
                f" — write digits only, e.g. 1024"
            )
        return int(cleaned)
    if attribute in FLAG_ATTRIBUTES:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return "true"
        if lowered in _FALSE:
            return "false"
        raise ValueError(f"{attribute} must be true or false, got {text!r} — write true or false")
    return text
