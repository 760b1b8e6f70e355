"""SDK-HMAC-SHA256, the API gateway's AK/SK signature, as the server side computes it.

Written from Huawei's published algorithm (ims-api-facts §6), independently of any client::

    CanonicalRequest = METHOD \\n CanonicalURI \\n CanonicalQuery \\n CanonicalHeaders \\n
                       SignedHeaders \\n HexSHA256(payload)
    StringToSign     = "SDK-HMAC-SHA256" \\n X-Sdk-Date \\n HexSHA256(CanonicalRequest)
    Signature        = HexHMAC-SHA256(SK, StringToSign)

- Canonical URI: the raw request path, %-decoded, split on ``/``, each segment %-encoded
  with only ``A-Za-z0-9_.-~`` left as they are, joined with ``/``, always ending in ``/``.
- Canonical query: the decoded ``(key, value)`` pairs of the query, sorted as pairs, each
  part encoded the same way, ``key=value`` joined with ``&``.
- Canonical headers: for each signed header, in the listed order, its lowercase name,
  ``:``, its value stripped of leading and trailing whitespace, and ``\\n``.
- Payload: the hex SHA-256 of the exact body bytes; an ``X-Sdk-Content-Sha256`` header's
  value stands in for a non-empty body.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import NamedTuple
from urllib.parse import parse_qsl, quote, unquote

ALGORITHM = "SDK-HMAC-SHA256"
SDK_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
CONTENT_SHA256_HEADER = "X-Sdk-Content-Sha256"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()

_AUTHORIZATION = re.compile(
    r"SDK-HMAC-SHA256\s+Access=([^\s,]+)\s*,\s*SignedHeaders=([^\s,]+)\s*,"
    r"\s*Signature=([^\s,]+)\s*"
)
_SDK_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z")


class Authorization(NamedTuple):
    """The parts of an ``Authorization: SDK-HMAC-SHA256 …`` header."""

    access_key: str
    signed_headers: tuple[str, ...]
    signature: str


def is_sdk_hmac(value: str) -> bool:
    """Whether an Authorization header claims this algorithm (well-formed or not)."""
    return value.split(maxsplit=1)[:1] == [ALGORITHM]


def parse_authorization(value: str) -> Authorization | None:
    """The header's parts, or None if it is not exactly ``SDK-HMAC-SHA256 Access=…, …``."""
    match = _AUTHORIZATION.fullmatch(value.strip())
    if match is None:
        return None
    names = tuple(match[2].split(";"))
    if not all(names):
        return None
    return Authorization(match[1], tuple(name.lower() for name in names), match[3])


def parse_sdk_date(text: str | None) -> datetime | None:
    """An ``X-Sdk-Date`` value (``YYYYMMDDTHHMMSSZ``, UTC) as an aware datetime, or None."""
    if text is None or not _SDK_DATE.fullmatch(text):
        return None
    try:
        return datetime.strptime(text, SDK_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def _encode(text: str) -> str:
    return quote(text, safe="~")


def canonical_uri(raw_path: str) -> str:
    """The canonical form of a request's raw (still %-encoded) path."""
    uri = "/".join(_encode(segment) for segment in unquote(raw_path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """The decoded ``(key, value)`` pairs of a raw query string, blanks kept."""
    return parse_qsl(raw_query, keep_blank_values=True)


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """The canonical query string of decoded ``(key, value)`` pairs."""
    return "&".join(f"{_encode(key)}={_encode(value)}" for key, value in sorted(pairs))


def canonical_headers(headers: Mapping[str, str], signed_headers: Sequence[str]) -> str:
    """One ``name:value\\n`` line per signed header; ``headers`` is keyed by lowercase name.

    Raises KeyError for a signed header the request does not carry.
    """
    return "".join(f"{name}:{headers[name].strip()}\n" for name in signed_headers)


def payload_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def canonical_request(
    method: str,
    raw_path: str,
    pairs: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    return "\n".join(
        [
            method.upper(),
            canonical_uri(raw_path),
            canonical_query(pairs),
            canonical_headers(headers, signed_headers),
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def string_to_sign(canonical: str, sdk_date: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{sdk_date}\n{digest}"


def signature(secret_key: str, to_sign: str) -> str:
    """The hex HMAC-SHA256 of ``to_sign`` keyed by the secret key."""
    return hmac.new(secret_key.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
