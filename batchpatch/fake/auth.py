"""Who may call the fake: AK/SK signatures, X-Auth-Tokens, IAM tokens and AK lockouts.

The gateway decides before routing to IMS and before any fault.  Every refusal is an
AuthRefused with the gateway body ``{"error_code", "error_msg", "request_id"}``; the
messages of APIGW.0301 start "Incorrect IAM authentication information: ".

A request whose ``Authorization`` header starts with ``SDK-HMAC-SHA256`` is judged by AK/SK
(X-Auth-Token is then ignored).  In order, with the reason slug FakeStats counts it under:

- the header is not ``SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…``: 401
  APIGW.0301 "…: verify aksk signature fail" (``signature``);
- no AK/SK is configured but another credential is, or the AK is not ``access_key``: 401
  APIGW.0301 "…: Get secretKey failed,ak:<AK>,err:ak not exist" (``ak-unknown``);
- the AK is locked out: 401 APIGW.0301 "…: AK access failed to reach the limit,forbidden"
  (``locked``);
- X-Sdk-Date is missing, not ``YYYYMMDDTHHMMSSZ``, or more than ``max_skew`` seconds from the
  fake's clock: 401 APIGW.0301 "…: the x-sdk-date is expired or in the future" (``date``);
- SignedHeaders lacks ``host`` or ``x-sdk-date`` or names a header the request lacks, or the
  signature differs (wrong SK, tampered method, path, query, signed header or body): 401
  APIGW.0301 "…: verify aksk signature fail" (``signature``);
- a signed X-Project-Id differs from ``project_id`` (when set): 403 APIGW.0310 "The project
  is unavailable." (``project``).

With no credential configured at all, any well-formed header passes unverified.  A request
without such a header is judged by ``X-Auth-Token``: absent or empty is 401 APIGW.0301 "…:
x-auth-token not found" (``token-missing``); a token the fake's IAM issued passes until it
expires on the fake's clock, then it is 401 APIGW.0307 "The token must be updated."
(``token-expired``); ``config.token`` passes; with any credential configured every other
token is 401 APIGW.0301 "…: decrypt token fail" (``token-invalid``), with none it passes.

Lockout, like Huawei's: the fifth failure in a row of the configured AK (a ``date`` or
``signature`` refusal) locks that AK for ``LOCKOUT_SECONDS`` of the fake's clock; while it
is locked, even a right signature is refused (and not counted); a right signature resets the
count (a 403 ``project`` included), and so does the lockout.  Unknown AKs are not tracked.
"""

from __future__ import annotations

import hmac
import math
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from multidict import MultiMapping

from batchpatch.fake.clock import FakeClock
from batchpatch.fake.config import FakeConfig
from batchpatch.fake.errors import (
    IAM_AUTH_FAILED,
    PROJECT_UNAVAILABLE,
    TOKEN_EXPIRED,
    AuthRefused,
)
from batchpatch.fake.iam import PasswordAuth, fake_id
from batchpatch.fake.signing import (
    CONTENT_SHA256_HEADER,
    EMPTY_BODY_SHA256,
    Authorization,
    canonical_request,
    is_sdk_hmac,
    parse_authorization,
    parse_sdk_date,
    payload_sha256,
    query_pairs,
    signature,
    string_to_sign,
)

#: Consecutive failures of one AK that lock it, and for how long (HW: "more than five times
#: in a row … locked for 5 minutes"; ims-api-facts §3.3).
LOCKOUT_FAILURES = 5
LOCKOUT_SECONDS = 300.0
#: Random bytes in an issued token (86 URL-safe characters).
TOKEN_BYTES = 64

VERIFY_FAILED = f"{IAM_AUTH_FAILED}: verify aksk signature fail"
DATE_OUT_OF_RANGE = f"{IAM_AUTH_FAILED}: the x-sdk-date is expired or in the future"
AK_LOCKED = f"{IAM_AUTH_FAILED}: AK access failed to reach the limit,forbidden"
#: What IAM answers for a wrong user, password or domain (an assumption: Keystone's body
#: shape with Huawei's wording).
WRONG_PASSWORD = "The username or password is wrong."
PROJECT_MISMATCH = "The request you have made requires authentication."


class IncomingRequest(NamedTuple):
    """What the gateway authenticates: the request as it came over the wire."""

    method: str
    raw_path: str
    raw_query: str
    headers: MultiMapping[str]
    body: bytes = b""


class AuthOutcome(NamedTuple):
    """How a caller got in: ``aksk``, ``aksk-unverified``, ``iam-token``, ``token`` (the
    configured one) or ``any-token``; the signed X-Project-Id, if any; and the project an
    IAM-issued token is scoped to."""

    method: str
    project_id: str | None = None
    token_project: str | None = None


@dataclass(frozen=True)
class IssuedToken:
    """A token IAM issued; its value stays out of ``repr``.  Times are the fake clock's."""

    value: str = field(repr=False)
    issued_at: float
    expires_at: float
    project_id: str


class FakeAuth:
    """The fake's credentials, issued tokens and lockouts, shared by its requests.

    Used from the server's event loop thread and, through ``expire_tokens`` and the clock,
    from tests on theirs; every piece of state is read and written under one lock.
    """

    def __init__(self, config: FakeConfig, *, clock: FakeClock | None = None) -> None:
        self.config = config
        self.clock = clock or FakeClock(config.clock_offset)
        self._lock = threading.Lock()
        self._failures: Counter[str] = Counter()
        self._locked_until: dict[str, float] = {}
        self._tokens: dict[str, float] = {}  # value -> expiry on the fake clock
        self._token_projects: dict[str, str] = {}  # value -> the project it is scoped to

    def __repr__(self) -> str:
        with self._lock:
            tokens, locked = len(self._tokens), len(self._locked_until)
        return f"<FakeAuth issued_tokens={tokens} locked_aks={locked} clock={self.clock!r}>"

    # --- IMS requests, through the gateway -----------------------------------------------

    def needs_body(self, headers: MultiMapping[str]) -> bool:
        """Whether ``check`` will hash the body: a signature it is going to verify."""
        return self.config.access_key is not None and is_sdk_hmac(headers.get("Authorization", ""))

    def check(self, request: IncomingRequest) -> AuthOutcome:
        """Let the request in, or raise AuthRefused (see the module's table)."""
        authorization = request.headers.get("Authorization", "")
        if is_sdk_hmac(authorization):
            return self._check_signed(request, authorization)
        return self._check_token(request.headers.get("X-Auth-Token", ""))

    def _check_token(self, token: str) -> AuthOutcome:
        if not token:
            raise _unauthorized("x-auth-token not found", "token-missing")
        now = self.clock.time()
        with self._lock:
            expires_at = self._tokens.get(token)
            scope = self._token_projects.get(token)
        if expires_at is not None:
            if now >= expires_at:
                raise AuthRefused(401, "APIGW.0307", TOKEN_EXPIRED, reason="token-expired")
            return AuthOutcome("iam-token", token_project=scope)
        if self.config.token is not None and _same(token, self.config.token):
            return AuthOutcome("token")
        if self.config.checks_credentials:
            raise _unauthorized("decrypt token fail", "token-invalid")
        return AuthOutcome("any-token")

    def _check_signed(self, request: IncomingRequest, header: str) -> AuthOutcome:
        parsed = parse_authorization(header)
        if parsed is None:
            raise AuthRefused(401, "APIGW.0301", VERIFY_FAILED, reason="signature")
        config = self.config
        if config.access_key is None and not config.checks_credentials:
            return self._admit_project(request, parsed, "aksk-unverified")
        if config.access_key is None or parsed.access_key != config.access_key:
            raise _unauthorized(
                f"Get secretKey failed,ak:{parsed.access_key},err:ak not exist", "ak-unknown"
            )
        ak = parsed.access_key
        now = self.clock.time()
        with self._lock:
            until = self._locked_until.get(ak)
            if until is not None and now < until:
                raise AuthRefused(401, "APIGW.0301", AK_LOCKED, reason="locked")
            self._locked_until.pop(ak, None)
        try:
            self._verify(request, parsed, now)
        except AuthRefused:
            with self._lock:
                self._failures[ak] += 1
                if self._failures[ak] >= LOCKOUT_FAILURES:
                    del self._failures[ak]
                    self._locked_until[ak] = now + LOCKOUT_SECONDS
            raise
        with self._lock:
            self._failures.pop(ak, None)
        return self._admit_project(request, parsed, "aksk")

    def _verify(self, request: IncomingRequest, parsed: Authorization, now: float) -> None:
        secret_key = self.config.secret_key or ""  # set with access_key, by FakeConfig's check
        headers = request.headers
        sdk_date = headers.get("X-Sdk-Date", "")
        when = parse_sdk_date(sdk_date)
        if when is None or abs(when.timestamp() - now) > self.config.max_skew:
            raise AuthRefused(401, "APIGW.0301", DATE_OUT_OF_RANGE, reason="date")
        signed = parsed.signed_headers
        if "host" not in signed or "x-sdk-date" not in signed:
            raise AuthRefused(401, "APIGW.0301", VERIFY_FAILED, reason="signature")
        values = {name: ",".join(headers.getall(name)) for name in signed if name in headers}
        if len(values) != len(set(signed)):
            raise AuthRefused(401, "APIGW.0301", VERIFY_FAILED, reason="signature")
        pairs = query_pairs(request.raw_query)
        for payload_hash in _payload_hashes(request):
            canonical = canonical_request(
                request.method, request.raw_path, pairs, values, signed, payload_hash
            )
            expected = signature(secret_key, string_to_sign(canonical, sdk_date))
            if _same(expected, parsed.signature):
                return
        raise AuthRefused(401, "APIGW.0301", VERIFY_FAILED, reason="signature")

    def _admit_project(
        self, request: IncomingRequest, parsed: Authorization, method: str
    ) -> AuthOutcome:
        project_id = None
        if "x-project-id" in parsed.signed_headers:
            project_id = request.headers.get("X-Project-Id")
        wanted = self.config.project_id
        if project_id is not None and wanted is not None and project_id != wanted:
            raise AuthRefused(403, "APIGW.0310", PROJECT_UNAVAILABLE, reason="project")
        return AuthOutcome(method, project_id)

    # --- IAM tokens ------------------------------------------------------------------------

    def issue_token(self, auth: PasswordAuth) -> IssuedToken:
        """A new token for the configured IAM user, or AuthRefused (401, Keystone's shape)."""
        config = self.config
        if config.iam_user is None or config.iam_password is None:
            right = not config.checks_credentials
        else:
            right = (
                _same(auth.user, config.iam_user)
                & _same(auth.password, config.iam_password)
                & (config.iam_domain is None or auth.domain == config.iam_domain)
            )
        if not right:
            raise AuthRefused.keystone(401, WRONG_PASSWORD, reason="password")
        project_id = config.project_id
        if auth.project_id is not None:
            if project_id is not None and auth.project_id != project_id:
                raise AuthRefused.keystone(401, PROJECT_MISMATCH, reason="scope")
            project_id = auth.project_id
        if project_id is None:
            project_id = fake_id("project", auth.domain, auth.project_name or "")
        now = self.clock.time()
        token = IssuedToken(
            secrets.token_urlsafe(TOKEN_BYTES), now, now + config.token_lifetime, project_id
        )
        with self._lock:
            self._tokens[token.value] = token.expires_at
            self._token_projects[token.value] = token.project_id
        return token

    # --- test hooks ------------------------------------------------------------------------

    def expire_tokens(self) -> int:
        """Expire every token issued so far, now; return how many there were."""
        with self._lock:
            for value in self._tokens:
                self._tokens[value] = -math.inf
            return len(self._tokens)

    def locked_until(self, access_key: str) -> float | None:
        """When the AK's lockout ends on the fake's clock, or None if it is not locked."""
        now = self.clock.time()
        with self._lock:
            until = self._locked_until.get(access_key)
        return until if until is not None and now < until else None


def _payload_hashes(request: IncomingRequest) -> tuple[str, ...]:
    """The payload hashes a signer may have used.

    A non-empty body: the declared X-Sdk-Content-Sha256 (e.g. ``UNSIGNED-PAYLOAD``) if
    there is one, else the body's SHA-256.  An empty body: the empty hash (what Huawei's
    own SDK signs even when it declares UNSIGNED-PAYLOAD), or the declared value.
    """
    declared = request.headers.get(CONTENT_SHA256_HEADER)
    if request.body:
        return (declared,) if declared else (payload_sha256(request.body),)
    return (EMPTY_BODY_SHA256,) if not declared else (EMPTY_BODY_SHA256, declared)


def _same(given: str, expected: str) -> bool:
    """Compare secrets in constant time (any text, not only ASCII)."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _unauthorized(detail: str, reason: str) -> AuthRefused:
    return AuthRefused(401, "APIGW.0301", f"{IAM_AUTH_FAILED}: {detail}", reason=reason)
