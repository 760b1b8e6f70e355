"""``batchpatch.signer`` against Huawei's two official test vectors and, byte for byte, against
the official Python signer ``huaweicloudsdkcore.signer.signer.Signer`` (the oracle).

Only ``huaweicloudsdkcore.sdk_request`` and ``huaweicloudsdkcore.signer.signer`` are imported:
other SDK modules write ``~/.huaweicloud/application_id`` on import.

Restrictions on the generated requests, each to what batchpatch can send on the wire or to
where the SDK does something batchpatch never asks of it:

* Header names are HTTP tokens (RFC 9110 ``tchar``), unique case-insensitively: a dict from
  the client cannot hold the same name twice, and aiohttp would send both copies anyway.
* Header values are printable Latin-1 (VCHAR, SP, HTAB, U+00A0..U+00FF), never CR, LF, NUL or
  other controls, which HTTP forbids in a field value.  Leading and trailing SP/HTAB are
  generated on purpose (both signers strip them, U+00A0 included, with ``str.strip``).
* ``Host`` and ``X-Sdk-Date`` are always present (``authorization`` requires them; the SDK adds
  them only when missing), in any letter case.  The date is what ``sdk_date`` produces for a
  time between 2000 and 2099: the SDK parses and re-formats the header, so only the canonical
  form can be compared.
* ``Content-Type``, when present, starts with ``application/json`` or ``application/bson``, and
  no ``X-Sdk-Content-Sha256`` or ``Authorization`` header is generated.  For any other content
  type the SDK adds ``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD`` and signs that instead of the
  body hash, a mode our signer does not implement; batchpatch only sends JSON
  (``test_oracle_hashes_batchpatch_json_body`` checks the SDK keeps hashing it).
* Paths start with ``/`` and hold no raw ``?`` or ``#`` (they are what ``urlsplit(url).path``
  returns; the SDK fails on an empty path).  Anything else is fair: unicode, spaces, reserved
  characters, ``%XX`` escapes in either case (including ``%2F`` and bytes that are not UTF-8),
  a lone ``%``, empty segments, with or without a trailing slash.
* Query parameters are ``(str, str)`` pairs, as ``parse_qsl`` gives; the SDK's extra
  ``bool``/``int``/``list`` values cannot come from a URL.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from batchpatch.signer import authorization, sdk_date

try:
    from huaweicloudsdkcore.sdk_request import SdkRequest
    from huaweicloudsdkcore.signer.signer import Signer
except ImportError:  # pragma: no cover - the oracle is in the test extra
    SdkRequest = Signer = None

needs_oracle = pytest.mark.skipif(
    Signer is None, reason="huaweicloudsdkcore (the oracle) is not installed"
)

# --- the official vectors (huaweicloud-sdk-python-v3, huaweicloud-sdk-core/tests) ---------

AK, SK = "AccessKey", "SecretKey"
VECTOR_HOST = "service.endpoint.myhuaweicloud.com"
VECTOR_PATH = "/resources"
VECTOR_QUERY = [("size", "1")]
VECTOR_HEADERS = {"X-Sdk-Date": "20200608T023900Z", "TEST_UNDERSCORE": "TEST_VALUE"}
VECTORS = [
    pytest.param(
        "GET",
        b"",
        "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=host;x-sdk-date, "
        "Signature=cfb4171acec81de07d50e53d57eb77edd537414d66ddb1d7d780f128e12cd842",
        id="GET",
    ),
    pytest.param(
        "POST",
        b'{"name":"test","id":1}',
        "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=host;x-sdk-date, "
        "Signature=436b1ac0a1ae03705934bb70ef2f2e09f7bfed2117d731a38235053199323a1f",
        id="POST",
    ),
]


def oracle(
    access_key: str,
    secret_key: str,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
) -> str:
    """The SDK's ``Authorization`` for the same request.  It also checks the SDK added no
    header of its own (``Host``, ``X-Sdk-Date``, ``X-Sdk-Content-Sha256``), so both signers
    really saw the same request."""
    host = next(value for name, value in headers.items() if name.lower() == "host")
    request = SdkRequest(
        method=method,
        schema="https",
        host=host,
        resource_path=path,
        query_params=list(query),
        header_params=dict(headers),
        body=body,
    )
    signed = Signer(SimpleNamespace(ak=access_key, sk=secret_key)).sign(request)
    assert set(signed.header_params) == {*headers, "Authorization"}
    return signed.header_params["Authorization"]


@pytest.mark.parametrize(("method", "body", "expected"), VECTORS)
def test_official_vector(method: str, body: bytes, expected: str) -> None:
    headers = {**VECTOR_HEADERS, "Host": VECTOR_HOST}
    assert authorization(AK, SK, method, VECTOR_PATH, VECTOR_QUERY, headers, body) == expected


@pytest.mark.parametrize(("method", "body", "expected"), VECTORS)
def test_official_vector_underscore_header_is_unsigned(
    method: str, body: bytes, expected: str
) -> None:
    without = {"X-Sdk-Date": VECTOR_HEADERS["X-Sdk-Date"], "Host": VECTOR_HOST}
    changed = {**without, "TEST_UNDERSCORE": "another value"}
    for headers in (without, changed):
        assert authorization(AK, SK, method, VECTOR_PATH, VECTOR_QUERY, headers, body) == expected


@needs_oracle
@pytest.mark.parametrize(("method", "body", "expected"), VECTORS)
def test_official_vector_oracle(method: str, body: bytes, expected: str) -> None:
    request = SdkRequest(
        method=method,
        schema="https",
        host=VECTOR_HOST,
        resource_path=VECTOR_PATH,
        query_params=list(VECTOR_QUERY),
        header_params=dict(VECTOR_HEADERS),
        body=body,
    )
    signed = Signer(SimpleNamespace(ak=AK, sk=SK)).sign(request)
    assert signed.header_params["Authorization"] == expected


@needs_oracle
def test_oracle_hashes_batchpatch_json_body() -> None:
    """The SDK switches to ``UNSIGNED-PAYLOAD`` for non-JSON content types; batchpatch's
    ``Content-Type`` must keep the body hashed, as our signer always does."""
    headers = {
        "Content-Type": "application/json;charset=utf-8",
        "User-Agent": "batchpatch/0.1",
        "Host": "ims.cn-north-4.myhuaweicloud.com",
        "X-Sdk-Date": "20240101T000000Z",
    }
    body = b'[{"op":"replace","path":"/name","value":"x"}]'
    path = "/v2/cloudimages/8d5c1a0e-4b6f-4c1e-9a55-0c0e3f6f2a11"
    expected = oracle(AK, SK, "PATCH", path, [], headers, body)
    assert authorization(AK, SK, "PATCH", path, [], headers, body) == expected
    assert "SignedHeaders=content-type;host;user-agent;x-sdk-date," in expected


# --- strategies ----------------------------------------------------------------------------

TCHAR = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
VALUE_CHARS = " \t" + "".join(map(chr, range(0x21, 0x7F))) + "".join(map(chr, range(0xA0, 0x100)))
#: Names with a special meaning to the SDK or to our signer; generated only on purpose.
RESERVED = frozenset(
    {"host", "x-sdk-date", "content-type", "x-sdk-content-sha256", "authorization"}
)
JSON_TYPES = [
    "application/json",
    "application/json;charset=utf-8",
    "application/json; charset=UTF-8",
    "application/json-patch+json",
    "application/bson",
    "application/json;charset=utf-8 \t",
]
HOSTS = [
    "ims.cn-north-4.myhuaweicloud.com",
    "IMS.ap-southeast-1.MyHuaweiCloud.com",
    "ims.eu-west-101.myhuaweicloud.eu:443",
    "127.0.0.1:8080",
    "[::1]:8443",
]
URL_CHARS = st.characters(codec="utf-8", exclude_characters="/?#")
RESERVED_CHARS = st.sampled_from([*":@!$&'()*+,;= ~%-._", "%2F", "%2f", "%25", "%7E"])
KEY_CHARS = st.one_of(st.characters(codec="utf-8"), st.sampled_from(" +%&=/~?#;,\u4e00"))


@st.composite
def any_case(draw: st.DrawFn, word: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.swapcase() if flip else c for c, flip in zip(word, flips, strict=True))


def cased(words: Sequence[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(words).flatmap(any_case)


def escaped(data: bytes, upper: bool) -> str:
    return "".join(f"%{byte:02X}" if upper else f"%{byte:02x}" for byte in data)


methods = cased(["GET", "PATCH", "POST", "PUT", "DELETE"])
credentials = st.text(string.ascii_letters + string.digits + "+/=", min_size=1, max_size=40)
dates = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
).map(sdk_date)
hosts = st.one_of(
    st.sampled_from(HOSTS),
    st.from_regex(r"[a-zA-Z0-9-]{1,12}(\.[a-zA-Z0-9-]{1,12}){0,3}(:[0-9]{1,5})?", fullmatch=True),
)

segments = st.lists(
    st.one_of(
        URL_CHARS,
        RESERVED_CHARS,
        st.builds(escaped, st.binary(min_size=1, max_size=3), st.booleans()),
        st.builds(escaped, st.text(min_size=1, max_size=2).map(str.encode), st.booleans()),
    ),
    max_size=6,
).map("".join)
paths = st.builds(
    lambda parts, slash: "/" + "/".join(parts) + slash,
    st.lists(segments, max_size=5),
    st.sampled_from(["", "/"]),
)

query_keys = st.one_of(
    st.sampled_from(["limit", "marker", "name", "__imagetype", "a b"]),
    st.text(KEY_CHARS, max_size=8),
)
queries = st.lists(st.tuples(query_keys, st.text(KEY_CHARS, max_size=10)), max_size=6)

header_names = st.one_of(
    cased(
        [
            "User-Agent",
            "X-Project-Id",
            "X-Security-Token",
            "Accept",
            "X-Request-Id",
            "TEST_UNDERSCORE",
            "X_Project_Id",
            "_",
            "x-sdk-date_",
            "host_",
        ]
    ),
    st.text(TCHAR, min_size=1, max_size=16),
    st.builds("{}_{}".format, st.text(TCHAR, max_size=6), st.text(TCHAR, max_size=6)),
).filter(lambda name: name.lower() not in RESERVED)
whitespace = st.text(" \t", max_size=3)
header_values = st.builds(
    "{}{}{}".format, whitespace, st.text(VALUE_CHARS, max_size=24), whitespace
)


@st.composite
def header_sets(draw: st.DrawFn) -> dict[str, str]:
    headers = draw(
        st.lists(
            st.tuples(header_names, header_values),
            max_size=6,
            unique_by=lambda item: item[0].lower(),
        )
    )
    headers.append((draw(cased(["Host"])), draw(hosts)))
    headers.append((draw(cased(["X-Sdk-Date"])), draw(dates)))
    if draw(st.booleans()):
        headers.append((draw(cased(["Content-Type"])), draw(st.sampled_from(JSON_TYPES))))
    return dict(draw(st.permutations(headers)))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)
json_dumps: list[Callable[[Any], str]] = [
    json.dumps,
    lambda value: json.dumps(value, ensure_ascii=False, separators=(",", ":")),
]
bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=300),
    st.builds(
        lambda dump, value: dump(value).encode("utf-8"), st.sampled_from(json_dumps), json_values
    ),
)


# --- properties ----------------------------------------------------------------------------


@needs_oracle
@settings(max_examples=50, deadline=None)
@given(
    access_key=credentials,
    secret_key=credentials,
    method=methods,
    path=paths,
    query=queries,
    headers=header_sets(),
    body=bodies,
)
@example(
    access_key=AK,
    secret_key=SK,
    method="patch",
    path="/a b/~c/:@+/%2F%e4%B8%80//%zz%",
    query=[("k", "b"), ("k", "a"), ("", ""), ("一 (&=?!#%.*)", "/tmp/1 2+3")],
    headers={
        "host": VECTOR_HOST,
        "x-SDK-date": "20200608T023900Z",
        "X-Custom": " \tinner  \t space\xa0",
        "X_Hidden": "x",
        "Empty": "  ",
    },
    body=b"\x00\xff",
).via("hand-picked edge cases")
def test_matches_oracle(
    access_key: str,
    secret_key: str,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes,
) -> None:
    expected = oracle(access_key, secret_key, method, path, query, headers, body)
    assert authorization(access_key, secret_key, method, path, query, headers, body) == expected


image_ids = st.uuids().map(str)
patch_bodies = st.lists(
    st.fixed_dictionaries(
        {
            "op": st.sampled_from(["replace", "add", "remove"]),
            "path": st.sampled_from(
                ["/name", "/min_ram", "/__os_version", "/hw_firmware_type", "/tags"]
            ),
            "value": st.one_of(st.text(max_size=20), st.integers(0, 2**20)),
        }
    ),
    min_size=1,
    max_size=4,
).map(lambda ops: json.dumps(ops, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


@needs_oracle
@settings(max_examples=40, deadline=None)
@given(
    access_key=credentials,
    secret_key=credentials,
    image_id=image_ids,
    host=hosts,
    date=dates,
    version=st.from_regex(r"[0-9]{1,2}\.[0-9]{1,2}(\.[0-9]{1,3})?", fullmatch=True),
    project_id=st.one_of(st.none(), st.from_regex(r"[0-9a-f]{32}", fullmatch=True)),
    security_token=st.one_of(
        st.none(),
        st.text(string.ascii_letters + string.digits + "+/=-_.", min_size=1, max_size=200),
    ),
    body=patch_bodies,
)
def test_matches_oracle_for_batchpatch_patch(
    access_key: str,
    secret_key: str,
    image_id: str,
    host: str,
    date: str,
    version: str,
    project_id: str | None,
    security_token: str | None,
    body: bytes,
) -> None:
    """The header set batchpatch sends with an AK/SK-signed image PATCH."""
    headers = {
        "Content-Type": "application/json;charset=utf-8",
        "User-Agent": f"batchpatch/{version}",
        "Host": host,
        "X-Sdk-Date": date,
    }
    if project_id is not None:
        headers["X-Project-Id"] = project_id
    if security_token is not None:
        headers["X-Security-Token"] = security_token
    path = f"/v2/cloudimages/{image_id}"
    expected = oracle(access_key, secret_key, "PATCH", path, [], headers, body)
    assert authorization(access_key, secret_key, "PATCH", path, [], headers, body) == expected
    signed = expected.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert signed == sorted(name.lower() for name in headers)
