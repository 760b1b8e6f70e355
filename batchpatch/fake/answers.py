"""Answers that do not tell the truth, or that a client cannot afford to read.

A 2xx is not always the success it claims: proxies and broken backends answer 200 with
another image's body, with an error body, or with nothing at all; some answer with bodies
too large, too deep or not text.  ``FakeConfig.script`` (per image, for a PATCH) and
``FakeConfig.list_answer`` (for every ListImages) pick them by name; see ``ANSWER_FAULTS``.
"""

from __future__ import annotations

import functools
import gzip
import uuid

from aiohttp import web

from batchpatch.fake.config import ANSWER_FAULTS, FakeConfig
from batchpatch.fake.errors import IMS_MESSAGES

Image = dict[str, object]

#: The id a ``wrong_id`` answer shows: an image that is not the one patched.
OTHER_IMAGE_ID = str(uuid.UUID("00000000-0000-4000-8000-0000000000ff"))

#: The faults that apply nothing (``revoke`` is handled by the app: it answers 401).
NOTHING_APPLIED = frozenset({"error_200", "revoke"})


def is_answer_fault(fault: str | None) -> bool:
    return fault in ANSWER_FAULTS


def patch_answer(fault: str, image: Image, config: FakeConfig) -> web.Response:
    """The answer to a PATCH that suffers ``fault``; ``image`` is the image after it."""
    if fault == "wrong_id":
        return web.json_response(image | {"id": OTHER_IMAGE_ID, "name": "another-image"})
    if fault == "error_200":
        error = {"error": {"code": "IMG.0061", "message": IMS_MESSAGES["IMG.0061"]}}
        return web.json_response(error, status=200)
    if fault == "empty_204":
        return web.Response(status=204)
    return unreadable_answer(fault, config)


def unreadable_answer(fault: str, config: FakeConfig) -> web.Response:
    """A 200 a client must not trust or cannot afford: not JSON, huge, deep, not UTF-8."""
    if fault == "huge_body":
        return _json_bytes(huge_body(config.huge_bytes))
    if fault == "gzip_huge":
        response = _json_bytes(gzip_huge_body(config.huge_bytes))
        response.headers["Content-Encoding"] = "gzip"
        return response
    if fault == "deep_body":
        return _json_bytes(deep_body(config.deep_levels))
    if fault == "bad_encoding":
        return _json_bytes(b'{"images": [{"id": "\xff\xfe\xfd"}]}')
    return web.Response(status=200, text="<html><body>OK</body></html>", content_type="text/html")


def huge_body(size: int) -> bytes:
    """Valid JSON of ``size`` bytes (one long string), so only its size is wrong."""
    head, tail = b'{"images": [], "padding": "', b'"}'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


@functools.cache
def gzip_huge_body(size: int) -> bytes:
    """``huge_body(size)`` gzip-compressed: a few kilobytes on the wire (a gzip bomb)."""
    return gzip.compress(huge_body(size), compresslevel=6)


@functools.cache
def deep_body(levels: int) -> bytes:
    """JSON arrays nested ``levels`` deep: valid, but too deep for a recursive parser."""
    return b"[" * levels + b"]" * levels


def _json_bytes(body: bytes) -> web.Response:
    return web.Response(status=200, body=body, content_type="application/json")
