"""JSON on the per-request path (request bodies, answers, journal lines): orjson where it
gives what the standard library gives, the standard library where orjson refuses.

orjson is several times faster at the small documents sent and read once per image.  It
refuses what the standard library accepts (integers beyond 64 bits, ``NaN``, lone
surrogates, nesting past 1,024 levels); each such case falls back, so a value or an error
is exactly the standard library's.  Output is compact UTF-8 JSON in both cases.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON bytes."""
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return _compact.encode(value).encode("utf-8")


def loads(payload: bytes | str) -> Any:
    """The JSON document ``payload``, as ``json.loads`` reads it (and raises as it does)."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return json.loads(payload)
