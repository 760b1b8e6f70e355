"""JSON on the per-request path (request bodies, answers, journal lines): orjson where it
gives what the standard library gives, the standard library where it would not.

orjson is several times faster at the small documents sent and read once per image.  Where
it differs from the standard library, the standard library reads or writes instead, so a
value or an error is exactly the standard library's:

* reading, orjson refuses ``NaN``, ``Infinity``, numbers beyond a double, lone surrogates
  and nesting past 1,024 levels (then the standard library reads), and it reads integers
  outside 64 bits as floats (so a document with a run of 19 digits, which every such
  integer has, is read by the standard library from the start);
* writing, orjson refuses integers beyond 64 bits (the standard library writes), and it
  would write a non-finite float as ``null``: every non-finite float read here is a
  ``NonFinite``, which orjson refuses, so the standard library writes ``NaN`` or
  ``Infinity`` as it always did.

Output is compact UTF-8 JSON either way.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
#: For text that UTF-8 cannot hold (a lone surrogate, read from an answer): escaped as
#: ``\ud83d``, which reads back as the same text.
_escaped = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), check_circular=False)

#: Every digit as ``0``, every other byte as a space: a run of 19 digits is then a run of
#: 19 zeros.
_DIGITS_AS_ZEROS = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
_LONG_NUMBER = b"0" * 19


class NonFinite(float):
    """A ``NaN`` or an infinity read from JSON: a float, which orjson does not write (so the
    standard library writes it, as ``NaN``/``Infinity``, never as ``null``)."""

    __slots__ = ()


def _number(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else NonFinite(value)


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON bytes."""
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return _standard(value)


def dumps_line(value: Any) -> bytes:
    """``dumps(value)`` and a line break, made in one go."""
    try:
        return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)
    except (orjson.JSONEncodeError, TypeError):
        return _standard(value) + b"\n"


def _standard(value: Any) -> bytes:
    """What the standard library writes of ``value``, as UTF-8; non-ASCII escaped when the
    text holds what UTF-8 cannot (a lone surrogate)."""
    try:
        return _compact.encode(value).encode("utf-8")
    except UnicodeEncodeError:
        return _escaped.encode(value).encode("ascii")


def flat_text(values: dict[str, Any]) -> str:
    """``values`` as the standard library's compact text (``ensure_ascii=False``, so a lone
    surrogate stays one); by orjson, several times faster, when every value is text, a
    whole number, a flag or null, which both write alike (floats they do not: ``1e-05``)."""
    for value in values.values():
        if type(value) not in _ALIKE:
            return _compact.encode(values)
    try:
        return orjson.dumps(values).decode("utf-8")
    except orjson.JSONEncodeError:  # text UTF-8 cannot hold, integers beyond 64 bits
        return _compact.encode(values)


_ALIKE = frozenset({str, int, bool, type(None)})


def loads(payload: bytes) -> Any:
    """The JSON document ``payload``, as ``json.loads`` reads it (and raises as it does)."""
    if _LONG_NUMBER not in payload.translate(_DIGITS_AS_ZEROS):
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass
    return loads_text(payload)


def loads_text(text: str | bytes) -> Any:
    """``json.loads(text)``, with every non-finite number a ``NonFinite``."""
    return json.loads(text, parse_constant=NonFinite, parse_float=_number)
