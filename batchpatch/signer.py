"""Huawei Cloud AK/SK request signing, ``SDK-HMAC-SHA256``, with the standard library only.

The algorithm (Huawei's API signing guide; the official SDK's
``huaweicloudsdkcore.signer.signer.Signer`` is the test oracle):

    CanonicalRequest = METHOD \\n CanonicalURI \\n CanonicalQuery \\n CanonicalHeaders \\n
                       SignedHeaders \\n hex(sha256(body))
    StringToSign     = "SDK-HMAC-SHA256" \\n X-Sdk-Date \\n hex(sha256(CanonicalRequest))
    Signature        = hex(hmac_sha256(SK, StringToSign))

* the canonical URI is the path, each segment percent-encoded (only ``~`` kept), and always
  ends in ``/`` (the URI sent does not need to);
* the query's ``(key, value)`` pairs are sorted, then both sides percent-encoded;
* every header is signed, lower-cased and sorted, except names containing ``_``;
* the body hash covers the exact bytes sent.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import quote, unquote

ALGORITHM = "SDK-HMAC-SHA256"
DATE_HEADER = "X-Sdk-Date"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"


def sdk_date(moment: datetime | None = None) -> str:
    """``YYYYMMDDTHHMMSSZ`` in UTC."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime(DATE_FORMAT)


def canonical_uri(path: str) -> str:
    segments = [quote(segment, safe="~") for segment in unquote(path).split("/")]
    uri = "/".join(segments)
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(query: Sequence[tuple[str, str]]) -> str:
    return "&".join(
        f"{quote(key, safe='~')}={quote(value, safe='~')}" for key, value in sorted(query)
    )


def signed_header_names(headers: Mapping[str, str]) -> list[str]:
    return sorted(name.lower() for name in headers if "_" not in name)


def canonical_request(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
) -> str:
    names = signed_header_names(headers)
    lowered = {name.lower(): value for name, value in headers.items()}
    canonical_headers = "".join(f"{name}:{str(lowered[name]).strip()}\n" for name in names)
    return "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            canonical_headers,
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ]
    )


def signature(secret_key: str, date: str, request: str) -> str:
    string_to_sign = "\n".join(
        [ALGORITHM, date, hashlib.sha256(request.encode("utf-8")).hexdigest()]
    )
    return hmac.new(
        secret_key.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256
    ).hexdigest()


def authorization(
    access_key: str,
    secret_key: str,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
) -> str:
    """The ``Authorization`` value for a request whose headers include ``X-Sdk-Date``."""
    date = next(value for name, value in headers.items() if name.lower() == "x-sdk-date")
    request = canonical_request(method, path, query, headers, body)
    return (
        f"{ALGORITHM} Access={access_key}, SignedHeaders="
        f"{';'.join(signed_header_names(headers))}, "
        f"Signature={signature(secret_key, date, request)}"
    )
