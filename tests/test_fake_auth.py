"""The fake's gateway authentication (AK/SK, tokens, lockout), its clock, and its IAM tokens.

Requests go over real sockets with aiohttp's client.  They are signed by Huawei's own SDK
signer (the oracle) when ``huaweicloudsdkcore`` is importable, and by a small signer written
here, independently of ``batchpatch.fake.signing``; both are checked against the official
test vectors.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import select
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
import pytest
import yarl

from batchpatch.fake import FakeConfig, FakeServer, main, running_fake
from batchpatch.fake import signing as fake_signing
from batchpatch.fake.auth import LOCKOUT_FAILURES, LOCKOUT_SECONDS
from batchpatch.fake.cli import OptionsError, build_parser, config_from_args
from tests.fakeclient import Reply, new_session
from tests.fakeclient import send as send_to

try:
    from huaweicloudsdkcore.sdk_request import SdkRequest
    from huaweicloudsdkcore.signer.signer import Signer
except ImportError:  # the oracle is optional; the local signer still runs every test
    HAVE_SDK = False
else:
    HAVE_SDK = True

ROOT = Path(__file__).resolve().parents[1]
AK = "FAKEAKID0123456789AB"
SK = "fake-secret-0123456789abcdefghijklmnop"
TOKEN = "configured-token-0123456789"
IAM_USER, IAM_PASSWORD, IAM_DOMAIN = "ims-robot", "iam-password-4567", "acme"
PROJECT_ID = "0123456789abcdef0123456789abcdef"
REGION = "cn-north-4"
GW = "Incorrect IAM authentication information"
VERIFY_FAIL = f"{GW}: verify aksk signature fail"
DATE_FAIL = f"{GW}: the x-sdk-date is expired or in the future"
LOCKED = f"{GW}: AK access failed to reach the limit,forbidden"
SDK_DATE = "%Y%m%dT%H%M%SZ"
TOKEN_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")

IMAGES: list[dict[str, Any]] = [
    {"id": "img-1", "name": "web-01", "status": "active", "min_ram": 0},
    {"id": "img 7:x", "name": "odd-id", "status": "active", "min_ram": 0},
]
ORIGINAL = {image["id"]: image for image in IMAGES}
RENAME = b'[{"op": "replace", "path": "/name", "value": "renamed"}]'
JSON = "application/json;charset=utf-8"

#: Every kind of credential at once: the AK/SK, a configured token, an IAM user, a project.
FULL = FakeConfig(
    access_key=AK,
    secret_key=SK,
    token=TOKEN,
    project_id=PROJECT_ID,
    iam_user=IAM_USER,
    iam_password=IAM_PASSWORD,
    iam_domain=IAM_DOMAIN,
)

SIGNERS = [
    pytest.param("sdk", id="sdk", marks=pytest.mark.skipif(not HAVE_SDK, reason="no SDK")),
    pytest.param("local", id="local"),
]
DEFAULT_SIGNER = "sdk" if HAVE_SDK else "local"


# --- Two signers: the official SDK's, and one written here from the spec ---------------------


def local_authorization(
    ak: str,
    sk: str,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes,
    signed: list[str] | None = None,
) -> str:
    """SDK-HMAC-SHA256 from ims-api-facts §6, in a few lines of its own."""
    lower = {name.lower(): value.strip() for name, value in headers.items()}
    names = signed if signed is not None else sorted(n for n in lower if "_" not in n)
    uri = "/".join(quote(part, safe="~") for part in unquote(path).split("/"))
    uri += "" if uri.endswith("/") else "/"
    canonical_query = "&".join(
        f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(query)
    )
    payload = hashlib.sha256(body).hexdigest()
    if body and "x-sdk-content-sha256" in lower:
        payload = lower["x-sdk-content-sha256"]
    lines = "".join(f"{name}:{lower.get(name, '')}\n" for name in names)
    canonical = "\n".join([method, uri, canonical_query, lines, ";".join(names), payload])
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = f"SDK-HMAC-SHA256\n{lower['x-sdk-date']}\n{digest}"
    signature = hmac.new(sk.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    return f"SDK-HMAC-SHA256 Access={ak}, SignedHeaders={';'.join(names)}, Signature={signature}"


def sdk_authorization(
    ak: str,
    sk: str,
    method: str,
    host: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes,
) -> dict[str, str]:
    """The headers Huawei's SDK signer sends (Host and Authorization added)."""
    request = SdkRequest(
        method=method,
        schema="http",
        host=host,
        resource_path=path,
        query_params=list(query),
        header_params=dict(headers),
        body=body,
    )
    return dict(Signer(SimpleNamespace(ak=ak, sk=sk)).sign(request).header_params)


VECTOR_HEADERS = {"X-Sdk-Date": "20200608T023900Z", "TEST_UNDERSCORE": "TEST_VALUE"}
VECTOR_HOST = "service.endpoint.myhuaweicloud.com"
VECTORS = [
    pytest.param("GET", b"", "cfb4171acec81de07d50e53d57eb77edd537414d66ddb1d7d780f128e12cd842",
                 id="get"),
    pytest.param("POST", b'{"name":"test","id":1}',
                 "436b1ac0a1ae03705934bb70ef2f2e09f7bfed2117d731a38235053199323a1f", id="post"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "body", "expected"), VECTORS)
def test_the_fakes_signature_matches_the_official_vectors(
    method: str, body: bytes, expected: str
) -> None:
    headers = {"host": VECTOR_HOST, "x-sdk-date": VECTOR_HEADERS["X-Sdk-Date"]}
    signed = ("host", "x-sdk-date")
    canonical = fake_signing.canonical_request(
        method, "/resources", [("size", "1")], headers, signed,
        fake_signing.payload_sha256(body),
    )  # fmt: skip
    to_sign = fake_signing.string_to_sign(canonical, "20200608T023900Z")
    assert fake_signing.signature("SecretKey", to_sign) == expected


@pytest.mark.parametrize("signer", SIGNERS)
@pytest.mark.parametrize(("method", "body", "expected"), VECTORS)
def test_the_test_signers_match_the_official_vectors(
    signer: str, method: str, body: bytes, expected: str
) -> None:
    query = [("size", "1")]
    if signer == "sdk":
        headers = sdk_authorization(
            "AccessKey", "SecretKey", method, VECTOR_HOST, "/resources", query,
            VECTOR_HEADERS, body,
        )  # fmt: skip
        authorization = headers["Authorization"]
    else:
        headers = {**VECTOR_HEADERS, "Host": VECTOR_HOST}
        authorization = local_authorization(
            "AccessKey", "SecretKey", method, "/resources", query, headers, body
        )
    assert authorization == (
        f"SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=host;x-sdk-date, Signature={expected}"
    )


#: The SDK's query vector [("limit",1),("enable",True),("test","一 (&=?!#%.*)"),
#: ("path","/tmp/123"),("multi",[1,2,3])] in its canonical form, which is also what it sends.
CANONICAL_QUERY = (
    "enable=true&limit=1&multi=1&multi=2&multi=3&path=%2Ftmp%2F123"
    "&test=%E4%B8%80%20%28%26%3D%3F%21%23%25.%2A%29"
)


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(CANONICAL_QUERY, id="as-the-sdk-sends-it"),
        pytest.param("&".join(reversed(CANONICAL_QUERY.split("&"))), id="reordered"),
        pytest.param(CANONICAL_QUERY.replace("%20", "+"), id="plus-for-space"),
    ],
)
def test_the_canonical_query_matches_the_official_vector(sent: str) -> None:
    assert fake_signing.canonical_query(fake_signing.query_pairs(sent)) == CANONICAL_QUERY


@pytest.mark.parametrize(
    ("raw_path", "canonical"),
    [
        pytest.param("/v2/cloudimages", "/v2/cloudimages/", id="slash-added"),
        pytest.param("/v2/cloudimages/", "/v2/cloudimages/", id="slash-kept"),
        pytest.param("/v2/cloudimages/img%207%3Ax", "/v2/cloudimages/img%207%3Ax/", id="quoted"),
        pytest.param("/v2/a:b@c+d~e", "/v2/a%3Ab%40c%2Bd~e/", id="reserved-encoded"),
        pytest.param("", "/", id="empty"),
    ],
)
def test_the_canonical_uri(raw_path: str, canonical: str) -> None:
    assert fake_signing.canonical_uri(raw_path) == canonical


# --- Talking to the fake ---------------------------------------------------------------------


@dataclass
class Call:
    """One request, its parts kept apart so a test can tamper with them after signing."""

    method: str
    path: str  # raw, %-encoded
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def url(self, server: FakeServer) -> yarl.URL:
        query = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in self.query)
        return yarl.URL(server.url + self.path + (f"?{query}" if query else ""), encoded=True)


def sdk_date(when: datetime) -> str:
    return when.astimezone(UTC).strftime(SDK_DATE)


def signed_call(
    server: FakeServer,
    method: str = "PATCH",
    path: str = "/v2/cloudimages/img-1",
    *,
    body: bytes | None = None,
    query: list[tuple[str, str]] | None = None,
    ak: str = AK,
    sk: str = SK,
    date: datetime | None = None,
    headers: dict[str, str] | None = None,
    signer: str = DEFAULT_SIGNER,
    signed: list[str] | None = None,
) -> Call:
    """A request signed as a client would sign it, dated by the fake's clock by default."""
    if body is None:
        body = RENAME if method == "PATCH" else b""
    query = list(query or [])
    all_headers = {
        "Content-Type": JSON,
        "X-Project-Id": PROJECT_ID,
        "X-Sdk-Date": sdk_date(date or server.clock.now()),
        **(headers or {}),
    }
    host = server.url.removeprefix("http://")
    if signer == "sdk" and signed is None:
        all_headers = sdk_authorization(ak, sk, method, host, path, query, all_headers, body)
    else:
        all_headers["Host"] = host
        all_headers["Authorization"] = local_authorization(
            ak, sk, method, path, query, all_headers, body, signed
        )
    return Call(method, path, sorted(query), all_headers, body)


async def send(session: aiohttp.ClientSession, server: FakeServer, call: Call) -> Reply:
    return await send_to(
        session, call.method, call.url(server), raw=call.body or None, headers=call.headers
    )


async def send_one(server: FakeServer, call: Call) -> Reply:
    async with new_session() as session:
        return await send(session, server, call)


def plain_call(method: str = "GET", path: str = "/v2/cloudimages", **headers: str) -> Call:
    return Call(method, path, headers={"Content-Type": JSON, **headers},
                body=RENAME if method == "PATCH" else b"")  # fmt: skip


def gateway_body(reply: Reply, code: str, message: str) -> dict[str, str]:
    return {"error_code": code, "error_msg": message, "request_id": reply.headers["X-Request-Id"]}


# --- AK/SK: what passes ----------------------------------------------------------------------


ACCEPTED = [
    pytest.param(dict(), id="patch"),
    pytest.param(dict(path="/v2/cloudimages/img%207%3Ax"), id="patch-quoted-id"),
    pytest.param(dict(method="GET", path="/v2/cloudimages",
                      query=[("name", "a b+/~*"), ("limit", "1"), ("__imagetype", "private")]),
                 id="list-with-query"),
    pytest.param(dict(method="GET", path="/v2/cloudimages", query=[("id", "2"), ("id", "1")]),
                 id="list-repeated-key"),
    pytest.param(dict(method="GET", path="/v2/cloudimages", headers={"Content-Type": "text/plain"}),
                 id="list-unsigned-payload-empty-body"),
    pytest.param(dict(headers={"X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"}),
                 id="patch-unsigned-payload"),
    pytest.param(dict(headers={"TEST_UNDERSCORE": "unsigned", "User-Agent": "x/1"}),
                 id="underscore-header-unsigned"),
    pytest.param(dict(date_shift=-(900 - 30)), id="date-near-the-past-limit"),
    pytest.param(dict(date_shift=900 - 30), id="date-near-the-future-limit"),
]  # fmt: skip


@pytest.mark.asyncio
@pytest.mark.parametrize("signer", SIGNERS)
@pytest.mark.parametrize("options", ACCEPTED)
async def test_a_rightly_signed_request_passes(signer: str, options: dict[str, Any]) -> None:
    options = dict(options)
    shift = options.pop("date_shift", 0)
    with running_fake(IMAGES, FULL) as server:
        date = server.clock.now() + timedelta(seconds=shift)
        reply = await send_one(server, signed_call(server, signer=signer, date=date, **options))
        assert reply.status == 200, reply.body
        stats = server.stats.snapshot()
    assert stats.auth_successes == Counter({"aksk": 1})
    assert stats.project_ids == Counter({PROJECT_ID: 1})
    assert stats.auth_failures == Counter()
    if options.get("method", "PATCH") == "PATCH":
        image_id = unquote(options.get("path", "/v2/cloudimages/img-1").rsplit("/", 1)[1])
        assert reply.body["id"] == image_id
        assert reply.body["name"] == "renamed"


# --- AK/SK: what is refused ------------------------------------------------------------------

Tamper = Callable[[Call], None]


def _set_header(name: str, value: str | None) -> Tamper:
    def tamper(call: Call) -> None:
        if value is None:
            del call.headers[name]
        else:
            call.headers[name] = value

    return tamper


def _set(attribute: str, value: Any) -> Tamper:
    return lambda call: setattr(call, attribute, value)


@dataclass(frozen=True)
class Refusal:
    sign: dict[str, Any]
    tamper: Tamper | None
    status: int
    code: str
    message: str
    reason: str
    date_shift: float = 0.0


REFUSALS = [
    pytest.param(Refusal(dict(sk="not-the-secret"), None, 401, "APIGW.0301", VERIFY_FAIL,
                         "signature"), id="wrong-sk"),
    pytest.param(Refusal(dict(ak="NOSUCHAK"), None, 401, "APIGW.0301",
                         f"{GW}: Get secretKey failed,ak:NOSUCHAK,err:ak not exist",
                         "ak-unknown"), id="unknown-ak"),
    pytest.param(Refusal({}, _set("body", RENAME.replace(b"renamed", b"hijacked")), 401,
                         "APIGW.0301", VERIFY_FAIL, "signature"), id="tampered-body"),
    pytest.param(Refusal({}, _set_header("Content-Type", "application/json"), 401, "APIGW.0301",
                         VERIFY_FAIL, "signature"), id="tampered-signed-header"),
    pytest.param(Refusal({}, _set_header("X-Project-Id", "another-project"), 401, "APIGW.0301",
                         VERIFY_FAIL, "signature"), id="tampered-project-header"),
    pytest.param(Refusal({}, _set("path", "/v2/cloudimages/img%207%3Ax"), 401, "APIGW.0301",
                         VERIFY_FAIL, "signature"), id="tampered-path"),
    pytest.param(Refusal(dict(method="GET", path="/v2/cloudimages", query=[("limit", "1")]),
                         _set("query", [("limit", "2")]), 401, "APIGW.0301", VERIFY_FAIL,
                         "signature"), id="tampered-query"),
    pytest.param(Refusal({}, None, 401, "APIGW.0301", DATE_FAIL, "date", date_shift=-960),
                 id="stale-date"),
    pytest.param(Refusal({}, None, 401, "APIGW.0301", DATE_FAIL, "date", date_shift=960),
                 id="future-date"),
    pytest.param(Refusal({}, _set_header("X-Sdk-Date", None), 401, "APIGW.0301", DATE_FAIL,
                         "date"), id="missing-date"),
    pytest.param(Refusal({}, _set_header("X-Sdk-Date", "2026-11-28T01:02:03Z"), 401,
                         "APIGW.0301", DATE_FAIL, "date"), id="malformed-date"),
    pytest.param(Refusal(dict(signed=["content-type", "x-project-id", "x-sdk-date"]), None, 401,
                         "APIGW.0301", VERIFY_FAIL, "signature"), id="host-not-signed"),
    pytest.param(Refusal(dict(signed=["content-type", "host", "x-project-id"]), None, 401,
                         "APIGW.0301", VERIFY_FAIL, "signature"), id="date-not-signed"),
    pytest.param(Refusal(dict(headers={"X-Extra": "1"},
                              signed=["host", "x-extra", "x-sdk-date"]),
                         _set_header("X-Extra", None), 401, "APIGW.0301", VERIFY_FAIL,
                         "signature"), id="signed-header-missing"),
    pytest.param(Refusal({}, _set_header("Authorization", f"SDK-HMAC-SHA256 Access={AK}"), 401,
                         "APIGW.0301", VERIFY_FAIL, "signature"), id="malformed-authorization"),
    pytest.param(Refusal(dict(headers={"X-Project-Id": "another-project"}), None, 403,
                         "APIGW.0310", "The project is unavailable.", "project"),
                 id="other-project"),
]  # fmt: skip


@pytest.mark.asyncio
@pytest.mark.parametrize("case", REFUSALS)
async def test_a_wrongly_signed_request_is_refused_with_the_gateway_body(case: Refusal) -> None:
    with running_fake(IMAGES, FULL) as server:
        date = server.clock.now() + timedelta(seconds=case.date_shift)
        call = signed_call(server, date=date, **case.sign)
        if case.tamper is not None:
            case.tamper(call)
        reply = await send_one(server, call)
        stats = server.stats.snapshot()
        images = server.store.images
    assert reply.status == case.status
    assert reply.body == gateway_body(reply, case.code, case.message)
    assert stats.auth_failures == Counter({f"{case.code}/{case.reason}": 1})
    assert stats.auth_successes == Counter()
    assert stats.max_in_flight == 0  # refused before the handler
    assert images == ORIGINAL


# --- Lockout ---------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "failures",
    [
        pytest.param(["sk"] * 5, id="five-wrong-signatures"),
        pytest.param(["date", "sk", "date", "sk", "date"], id="dates-and-signatures-mixed"),
    ],
)
async def test_five_failures_in_a_row_lock_the_ak_for_five_minutes(failures: list[str]) -> None:
    assert len(failures) == LOCKOUT_FAILURES
    with running_fake(IMAGES, FULL) as server:
        async with new_session() as session:

            async def attempt(kind: str = "right") -> Reply:
                if kind == "sk":
                    return await send(session, server, signed_call(server, sk="wrong"))
                if kind == "date":
                    stale = server.clock.now() - timedelta(hours=1)
                    return await send(session, server, signed_call(server, date=stale))
                return await send(session, server, signed_call(server))

            answers = [await attempt(kind) for kind in failures]
            assert [reply.status for reply in answers] == [401] * LOCKOUT_FAILURES
            assert LOCKED not in {reply.body["error_msg"] for reply in answers}

            locked = await attempt()  # the right signature, refused
            assert locked.status == 401
            assert locked.body == gateway_body(locked, "APIGW.0301", LOCKED)
            assert server.auth.locked_until(AK) is not None
            # The token path is not the AK's: it still works.
            token_reply = await send(session, server, plain_call(**{"X-Auth-Token": TOKEN}))
            assert token_reply.status == 200

            server.advance_clock(LOCKOUT_SECONDS - 1)
            assert (await attempt()).body["error_msg"] == LOCKED
            server.advance_clock(1)
            unlocked = await attempt()
            assert unlocked.status == 200, unlocked.body
        stats = server.stats.snapshot()
    assert server.auth.locked_until(AK) is None
    assert stats.auth_failures["APIGW.0301/locked"] == 2
    assert sum(stats.auth_failures.values()) == LOCKOUT_FAILURES + 2
    assert stats.auth_successes == Counter({"aksk": 1, "token": 1})


@pytest.mark.asyncio
async def test_a_success_resets_the_count_and_unknown_aks_do_not_lock_the_known_one() -> None:
    with running_fake(IMAGES, FULL) as server:
        async with new_session() as session:
            statuses = []
            for _ in range(2):
                for _ in range(LOCKOUT_FAILURES - 1):
                    reply = await send(session, server, signed_call(server, sk="wrong"))
                    statuses.append(reply.status)
                statuses.append((await send(session, server, signed_call(server))).status)
            for _ in range(LOCKOUT_FAILURES + 1):
                reply = await send(session, server, signed_call(server, ak="OTHER", sk="x"))
                statuses.append(reply.status)
            statuses.append((await send(session, server, signed_call(server))).status)
        stats = server.stats.snapshot()
    wrong = [401] * (LOCKOUT_FAILURES - 1)
    assert statuses == [*wrong, 200, *wrong, 200, *[401] * (LOCKOUT_FAILURES + 1), 200]
    assert stats.auth_failures == Counter(
        {"APIGW.0301/signature": 2 * (LOCKOUT_FAILURES - 1),
         "APIGW.0301/ak-unknown": LOCKOUT_FAILURES + 1}
    )  # fmt: skip


# --- The clock -------------------------------------------------------------------------------


def response_time(reply: Reply) -> float:
    return parsedate_to_datetime(reply.headers["Date"]).timestamp()


@pytest.mark.asyncio
@pytest.mark.parametrize("offset", [-3600.0, 0.0, 3 * 86400.0], ids=["behind", "exact", "ahead"])
async def test_every_response_is_dated_by_the_fakes_clock(offset: float) -> None:
    config = FakeConfig(token=TOKEN, clock_offset=offset)
    with running_fake(IMAGES, config) as server:
        before = time.time()
        async with new_session() as session:
            replies = [
                await send(session, server, plain_call(**{"X-Auth-Token": TOKEN})),
                await send(session, server, plain_call()),
                await send(session, server, plain_call(path="/nowhere")),
                await send(session, server, plain_call("PATCH", "/v2/cloudimages/img-404",
                                                       **{"X-Auth-Token": TOKEN})),
            ]  # fmt: skip
        after = time.time()
    assert [reply.status for reply in replies] == [200, 401, 404, 404]
    for reply in replies:
        assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", reply.headers["Date"])
        # The header has whole seconds; allow for that truncation.
        assert before + offset - 1 <= response_time(reply) <= after + offset + 1


@pytest.mark.asyncio
async def test_a_client_with_a_skewed_clock_can_correct_it_from_the_date_header() -> None:
    config = replace(FULL, clock_offset=1200.0)  # the client is 20 minutes behind
    with running_fake(IMAGES, config) as server:
        async with new_session() as session:
            naive = await send(session, server, signed_call(server, date=datetime.now(UTC)))
            server_now = datetime.fromtimestamp(response_time(naive), UTC)
            corrected = await send(session, server, signed_call(server, date=server_now))
    assert naive.status == 401
    assert naive.body == gateway_body(naive, "APIGW.0301", DATE_FAIL)
    assert corrected.status == 200, corrected.body


@pytest.mark.asyncio
async def test_max_skew_is_configurable() -> None:
    config = replace(FULL, max_skew=60.0)
    with running_fake(IMAGES, config) as server:
        async with new_session() as session:
            now = server.clock.now()
            inside = signed_call(server, date=now - timedelta(seconds=50))
            outside = signed_call(server, date=now - timedelta(seconds=90))
            statuses = [(await send(session, server, call)).status for call in (inside, outside)]
    assert statuses == [200, 401]


# --- Tokens, configured and issued -----------------------------------------------------------


def token_request(
    user: str = IAM_USER,
    password: str = IAM_PASSWORD,
    domain: str = IAM_DOMAIN,
    project: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"domain": {"name": domain}, "name": user, "password": password}
                },
            },
            "scope": {"project": project or {"name": REGION}},
        }
    }


async def ask_token(
    session: aiohttp.ClientSession, server: FakeServer, body: object, *, query: str = "",
    raw: bytes | None = None,
) -> Reply:  # fmt: skip
    data = raw if raw is not None else json.dumps(body).encode()
    return await send_to(
        session,
        "POST",
        f"{server.url}/v3/auth/tokens{query}",
        raw=data,
        headers={"Content-Type": "application/json;charset=utf8"},
    )


def with_token(token: str) -> Call:
    return plain_call(**{"X-Auth-Token": token})


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("query", "catalog"),
    [pytest.param("?nocatalog=true", False, id="nocatalog"), pytest.param("", True, id="catalog")],
)
async def test_iam_issues_a_token_that_the_gateway_accepts(query: str, catalog: bool) -> None:
    config = replace(FULL, token_lifetime=7200.0)
    with running_fake(IMAGES, config) as server:
        async with new_session() as session:
            issued = await ask_token(session, server, token_request(), query=query)
            token = issued.headers["X-Subject-Token"]
            used = await send(session, server, with_token(token))
        stats = server.stats.snapshot()
    assert issued.status == 201
    assert re.fullmatch(r"[A-Za-z0-9_-]{64,}", token)
    body = issued.body["token"]
    assert body["methods"] == ["password"]
    assert body["user"]["name"] == IAM_USER
    assert body["user"]["domain"]["name"] == IAM_DOMAIN
    assert body["project"] == {"name": REGION, "id": PROJECT_ID}
    assert ("catalog" in body) is catalog
    assert TOKEN_TIME.fullmatch(body["expires_at"])
    assert TOKEN_TIME.fullmatch(body["issued_at"])
    issued_at = datetime.strptime(body["issued_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    expires_at = datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    lifetime = (expires_at - issued_at).total_seconds()
    assert lifetime == pytest.approx(7200, abs=1e-5)  # each time rounded to microseconds
    assert token not in json.dumps(issued.body)
    assert used.status == 200
    assert stats.tokens_issued == 1
    assert stats.auth_successes == Counter({"iam-token": 1})


@pytest.mark.asyncio
async def test_expire_tokens_turns_every_issued_token_into_apigw_0307() -> None:
    with running_fake(IMAGES, FULL) as server:
        async with new_session() as session:
            first = (await ask_token(session, server, token_request())).headers["X-Subject-Token"]
            second = (await ask_token(session, server, token_request())).headers["X-Subject-Token"]
            assert first != second
            assert server.expire_tokens() == 2
            expired = [await send(session, server, with_token(t)) for t in (first, second)]
            configured = await send(session, server, with_token(TOKEN))
            fresh = (await ask_token(session, server, token_request())).headers["X-Subject-Token"]
            renewed = await send(session, server, with_token(fresh))
        stats = server.stats.snapshot()
    for reply in expired:
        assert reply.status == 401
        assert reply.body == gateway_body(reply, "APIGW.0307", "The token must be updated.")
    assert configured.status == 200  # config.token is not an issued token
    assert renewed.status == 200
    assert stats.tokens_issued == 3
    assert stats.auth_failures == Counter({"APIGW.0307/token-expired": 2})


@pytest.mark.asyncio
async def test_an_issued_token_expires_after_its_lifetime_on_the_fakes_clock() -> None:
    with running_fake(IMAGES, replace(FULL, token_lifetime=60.0)) as server:
        async with new_session() as session:
            token = (await ask_token(session, server, token_request())).headers["X-Subject-Token"]
            server.advance_clock(59.0)
            alive = await send(session, server, with_token(token))
            server.advance_clock(1.0)
            dead = await send(session, server, with_token(token))
    assert alive.status == 200
    assert (dead.status, dead.body["error_code"]) == (401, "APIGW.0307")


def keystone(status: int, title: str, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "title": title, "message": message}}


WRONG = keystone(401, "Unauthorized", "The username or password is wrong.")

TOKEN_REFUSALS = [
    pytest.param(token_request(password="guess"), 401, WRONG, "IAM.401/password",
                 id="wrong-password"),
    pytest.param(token_request(user="someone"), 401, WRONG, "IAM.401/password", id="wrong-user"),
    pytest.param(token_request(domain="other"), 401, WRONG, "IAM.401/password",
                 id="wrong-domain"),
    pytest.param(token_request(project={"id": "f" * 32}), 401,
                 keystone(401, "Unauthorized",
                          "The request you have made requires authentication."),
                 "IAM.401/scope", id="other-project-id"),
    pytest.param(b"{not json", 400, None, "IAM.400/malformed", id="not-json"),
    pytest.param([], 400, None, "IAM.400/malformed", id="not-an-object"),
    pytest.param({"auth": {}}, 400, None, "IAM.400/malformed", id="no-identity"),
    pytest.param({"auth": {"identity": {"methods": ["token"]}}}, 400, None,
                 "IAM.400/malformed", id="not-the-password-method"),
    pytest.param(token_request(user=""), 400, None, "IAM.400/malformed", id="empty-user"),
    pytest.param(token_request(password=""), 400, None, "IAM.400/malformed",
                 id="empty-password"),
    pytest.param(token_request(domain=""), 400, None, "IAM.400/malformed", id="no-domain"),
    pytest.param(token_request(project={"domain": "x"}), 400, None, "IAM.400/malformed",
                 id="project-without-name-or-id"),
    pytest.param({"auth": {**token_request()["auth"], "scope": {"domain": {"name": "acme"}}}},
                 400, None, "IAM.400/malformed", id="domain-scope"),
]  # fmt: skip


@pytest.mark.asyncio
@pytest.mark.parametrize(("body", "status", "expected", "key"), TOKEN_REFUSALS)
async def test_iam_refuses_wrong_or_malformed_token_requests(
    body: object, status: int, expected: dict[str, Any] | None, key: str
) -> None:
    with running_fake(IMAGES, FULL) as server:
        async with new_session() as session:
            raw = body if isinstance(body, bytes) else None
            reply = await ask_token(session, server, body, raw=raw)
        stats = server.stats.snapshot()
    assert reply.status == status
    assert "X-Subject-Token" not in reply.headers
    if expected is not None:
        assert reply.body == expected
    else:
        error = reply.body["error"]
        assert (error["code"], error["title"]) == (400, "Bad Request")
        assert error["message"]
    assert stats.auth_failures == Counter({key: 1})
    assert stats.tokens_issued == 0


@pytest.mark.asyncio
async def test_the_token_route_is_neither_faulted_nor_throttled() -> None:
    config = replace(FULL, error_503=1.0, rate_limit=1)
    with running_fake(IMAGES, config) as server:
        async with new_session() as session:
            replies = [await ask_token(session, server, token_request()) for _ in range(3)]
    assert [reply.status for reply in replies] == [201] * 3


# --- Which credentials pass under which configuration ----------------------------------------

UNVERIFIED = "SDK-HMAC-SHA256 Access=ANY, SignedHeaders=host;x-sdk-date, Signature=" + "0" * 64

MODES = [
    pytest.param({}, {"X-Auth-Token": "anything"}, 200, "any-token", id="open-any-token"),
    pytest.param({}, {"Authorization": UNVERIFIED}, 200, "aksk-unverified",
                 id="open-well-formed-signature"),
    pytest.param({}, {"Authorization": "SDK-HMAC-SHA256 garbage"}, 401, "APIGW.0301/signature",
                 id="open-malformed-signature"),
    pytest.param({}, {}, 401, "APIGW.0301/token-missing", id="open-no-credential"),
    pytest.param({"access_key": AK, "secret_key": SK}, {"X-Auth-Token": "anything"}, 401,
                 "APIGW.0301/token-invalid", id="aksk-refuses-unknown-tokens"),
    pytest.param({"access_key": AK, "secret_key": SK, "token": TOKEN}, {"X-Auth-Token": TOKEN},
                 200, "token", id="aksk-accepts-the-configured-token"),
    pytest.param({"token": TOKEN}, {"Authorization": UNVERIFIED}, 401, "APIGW.0301/ak-unknown",
                 id="token-only-knows-no-ak"),
    pytest.param({"iam_user": IAM_USER, "iam_password": IAM_PASSWORD},
                 {"X-Auth-Token": "anything"}, 401, "APIGW.0301/token-invalid",
                 id="iam-refuses-unissued-tokens"),
    pytest.param({"project_id": PROJECT_ID},
                 {"Authorization": UNVERIFIED.replace("host;", "host;x-project-id;"),
                  "X-Project-Id": "other"}, 403, "APIGW.0310/project",
                 id="open-still-checks-a-signed-project"),
]  # fmt: skip


@pytest.mark.asyncio
@pytest.mark.parametrize(("config", "headers", "status", "outcome"), MODES)
async def test_which_credentials_pass(
    config: dict[str, Any], headers: dict[str, str], status: int, outcome: str
) -> None:
    with running_fake(IMAGES, FakeConfig(**config)) as server:
        reply = await send_one(server, plain_call(**headers))
        stats = server.stats.snapshot()
    assert reply.status == status
    if status == 200:
        assert stats.auth_successes == Counter({outcome: 1})
    else:
        assert stats.auth_failures == Counter({outcome: 1})


@pytest.mark.asyncio
async def test_iam_issues_to_anyone_when_no_credential_is_configured() -> None:
    with running_fake(IMAGES) as server:
        async with new_session() as session:
            issued = await ask_token(session, server, token_request("who", "ever", "any"))
    assert issued.status == 201
    assert issued.body["token"]["user"]["name"] == "who"


# --- Secrets stay secret ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_secrets_never_reach_a_repr_a_log_or_an_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    shown = repr(FULL)
    assert AK in shown  # an identifier, not a secret
    for secret in (SK, TOKEN, IAM_PASSWORD):
        assert secret not in shown
    with running_fake(IMAGES, FULL) as server:
        async with new_session() as session:
            issued = await ask_token(session, server, token_request())
            token = issued.headers["X-Subject-Token"]
            replies = [
                issued,
                await ask_token(session, server, token_request(password=IAM_PASSWORD + "x")),
                await send(session, server, with_token(token)),
                await send(session, server, with_token(TOKEN + "x")),
                await send(session, server, signed_call(server)),
                await send(session, server, signed_call(server, sk=SK + "x")),
            ]
        seen = " ".join([repr(server), repr(server.stats), repr(server.stats.snapshot()),
                         repr(server.auth), repr(server.clock), caplog.text])  # fmt: skip
    assert [reply.status for reply in replies] == [201, 401, 200, 401, 200, 401]
    answers = json.dumps([reply.body for reply in replies])
    for secret in (SK, TOKEN, IAM_PASSWORD, token):
        assert secret not in seen
        assert secret not in answers


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        pytest.param({"access_key": AK}, "set access_key and secret_key together", id="ak-alone"),
        pytest.param({"secret_key": SK}, "set access_key and secret_key together", id="sk-alone"),
        pytest.param({"iam_user": IAM_USER}, "set iam_user and iam_password", id="user-alone"),
        pytest.param({"token": ""}, "token must not be empty", id="empty-token"),
        pytest.param({"access_key": "", "secret_key": SK}, "access_key must not be empty",
                     id="empty-ak"),
        pytest.param({"max_skew": 0}, "max_skew must be a finite number > 0", id="zero-skew"),
        pytest.param({"token_lifetime": float("inf")}, "token_lifetime must be",
                     id="endless-tokens"),
        pytest.param({"clock_offset": float("nan")}, "clock_offset must be finite",
                     id="nan-offset"),
    ],
)  # fmt: skip
def test_fake_config_refuses_half_or_empty_credentials_and_bad_times(
    fields: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)) as caught:
        FakeConfig(**fields)
    assert SK not in str(caught.value)


# --- The command line ------------------------------------------------------------------------

ENV = {"T_AK": AK, "T_SK": SK, "T_USER": IAM_USER, "T_PASSWORD": IAM_PASSWORD}


@pytest.fixture
def images_file(tmp_path: Path) -> Path:
    path = tmp_path / "images.json"
    path.write_text(json.dumps(IMAGES), encoding="utf-8")
    return path


def config_for(argv: list[str], images_file: Path, environ: dict[str, str]) -> FakeConfig:
    args = build_parser().parse_args(["--images", str(images_file), *argv])
    return config_from_args(args, environ)


CREDENTIAL_FILES = [
    pytest.param(f"# fake-ims\nak={AK}\n\n sk = {SK} \n", id="key-value"),
    pytest.param(f"User Name,Access Key Id,Secret Access Key\nrobot,{AK},{SK}\n",
                 id="console-csv"),
    pytest.param(f"\ufeffAccess Key Id,Secret Access Key\r\n{AK},{SK}\r\n", id="csv-bom-crlf"),
]  # fmt: skip


@pytest.mark.parametrize("content", CREDENTIAL_FILES)
def test_the_cli_reads_an_ak_sk_from_a_credentials_file(
    tmp_path: Path, images_file: Path, content: str
) -> None:
    path = tmp_path / "credentials"
    path.write_text(content, encoding="utf-8")
    config = config_for(["--credentials-file", str(path)], images_file, {})
    assert (config.access_key, config.secret_key) == (AK, SK)


def test_the_cli_maps_the_auth_options_onto_the_config(images_file: Path) -> None:
    argv = ["--ak-env", "T_AK", "--sk-env", "T_SK", "--iam-user-env", "T_USER",
            "--iam-password-env", "T_PASSWORD", "--iam-domain", IAM_DOMAIN, "--project-id",
            PROJECT_ID, "--token-lifetime", "600", "--clock-offset", "-90.5", "--max-skew",
            "120"]  # fmt: skip
    config = config_for(argv, images_file, ENV)
    assert config == FakeConfig(
        access_key=AK, secret_key=SK, iam_user=IAM_USER, iam_password=IAM_PASSWORD,
        iam_domain=IAM_DOMAIN, project_id=PROJECT_ID, token_lifetime=600.0,
        clock_offset=-90.5, max_skew=120.0,
    )  # fmt: skip


CLI_ERRORS = [
    pytest.param(["--ak-env", "T_AK", "--sk-env", "NOPE"], "NOPE named by --sk-env is unset",
                 id="sk-variable-unset"),
    pytest.param(["--ak-env", "EMPTY", "--sk-env", "T_SK"], "EMPTY named by --ak-env is unset or "
                 "empty", id="ak-variable-empty"),
    pytest.param(["--ak-env", "T_AK"], "--ak-env and --sk-env go together", id="ak-without-sk"),
    pytest.param(["--ak-env", "T_AK", "--sk-env", "T_SK", "--credentials-file", "creds"],
                 "either --credentials-file or --ak-env", id="file-and-variables"),
    pytest.param(["--iam-user-env", "T_USER"], "--iam-user-env and --iam-password-env go "
                 "together", id="user-without-password"),
    pytest.param(["--iam-user-env", "T_USER", "--iam-password-env", "NOPE"],
                 "NOPE named by --iam-password-env", id="password-variable-unset"),
    pytest.param(["--iam-domain", "acme"], "--iam-domain needs --iam-user-env",
                 id="domain-without-user"),
    pytest.param(["--credentials-file", "missing"], "cannot read the credentials file",
                 id="file-missing"),
    pytest.param(["--credentials-file", "creds"], "line 2 is not 'ak=…' or 'sk=…'",
                 id="file-bad-line"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "message"), CLI_ERRORS)
def test_the_cli_refuses_missing_or_conflicting_credentials(
    tmp_path: Path,
    images_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "creds").write_text(f"ak={AK}\n{SK}\n", encoding="utf-8")  # line 2: no "sk="
    monkeypatch.delenv("NOPE", raising=False)
    monkeypatch.setenv("EMPTY", "")
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert main(["--images", str(images_file), *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("Error: ")
    assert message in err
    assert SK not in err
    with pytest.raises(OptionsError):
        config_for(argv, images_file, {**ENV, "EMPTY": ""})


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-skew", "0"),
        ("--token-lifetime", "-1"),
        ("--clock-offset", "inf"),
        ("--clock-offset", "soon"),
    ],
)
def test_the_cli_refuses_bad_times(images_file: Path, flag: str, value: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--images", str(images_file), f"{flag}={value}"])
    assert exited.value.code == 2


@contextmanager
def fake_process(argv: list[str], env: dict[str, str]) -> Iterator[str]:
    """``python -m batchpatch.fake`` with these options; yields its URL, then stops it."""
    command = [sys.executable, "-m", "batchpatch.fake", "--port", "0", *argv]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    with subprocess.Popen(
        command, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            assert select.select([process.stdout], [], [], 20)[0], "no URL line within 20 s"
            match = re.fullmatch(r"URL (http://\S+)\n", process.stdout.readline())
            assert match
            yield match[1]
            process.terminate()
            _, err = process.communicate(timeout=10)
        finally:
            process.kill()
    assert process.returncode == 0, err
    assert SK not in err


@pytest.mark.asyncio
async def test_the_fake_ims_process_verifies_signatures_against_its_skewed_clock(
    images_file: Path,
) -> None:
    argv = ["--images", str(images_file), "--ak-env", "T_AK", "--sk-env", "T_SK",
            "--clock-offset", "-7200"]  # fmt: skip
    with fake_process(argv, ENV) as url:
        server = SimpleNamespace(url=url, clock=SimpleNamespace(now=lambda: datetime.now(UTC)))
        async with new_session() as session:
            naive = await send(session, server, signed_call(server))  # type: ignore[arg-type]
            skewed = datetime.fromtimestamp(response_time(naive), UTC)
            right = await send(session, server, signed_call(server, date=skewed))  # type: ignore[arg-type]
            wrong = await send(session, server, signed_call(server, date=skewed, sk="x"))  # type: ignore[arg-type]
    assert naive.body["error_msg"] == DATE_FAIL
    assert right.status == 200, right.body
    assert wrong.body["error_msg"] == VERIFY_FAIL
