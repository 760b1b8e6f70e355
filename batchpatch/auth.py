"""How requests prove who sends them: a pre-made token, AK/SK signing, or an IAM token got
with a user name and password.  Secrets come only from the environment, a profile or a file
(see ``credentials``), never from the command line, and never appear in a ``repr``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit

import anyio

from batchpatch.signer import DATE_HEADER, authorization, sdk_date

TOKEN_VARIABLE = "BATCHPATCH_AUTH_TOKEN"

#: Renew an IAM token this long before it expires (they last 24 h).
TOKEN_MARGIN = 600.0


class TokenIssuer(Protocol):
    """What an ``Auth`` may ask of the HTTP client: an IAM token for a request body."""

    async def issue_token(self, url: str, body: bytes) -> tuple[str, float]: ...


@dataclass(frozen=True)
class ProjectLookup:
    """Where to look up a project id that is not configured, the official SDK's way:
    ``GET {iam_endpoint}/v3/projects?name={region}``, signed with the run's credentials."""

    iam_endpoint: str
    region: str


class Auth(Protocol):
    """Adds the authentication headers to one request, given every header and the exact
    body bytes sent."""

    @property
    def source(self) -> str:
        """Where the credentials came from, for messages (never the secret itself)."""

    @property
    def kind(self) -> str:
        """``token``, ``ak/sk`` or ``iam password``."""

    @property
    def project_id(self) -> str:
        """The configured project id ("" when none is): the tag API's paths need one."""

    @property
    def project_lookup(self) -> ProjectLookup | None:
        """How to look the project id up when it is not configured; None: it cannot be."""

    async def authorize(
        self, issuer: TokenIssuer, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]: ...

    def expired(self, sent: Mapping[str, str] | None = None) -> bool:
        """After a token-expiry answer to a request sent with the headers ``sent``: forget
        that token (unless a newer one replaced it already); True when a retry can help."""


def mask(secret: str) -> str:
    """Enough to tell two keys apart, never enough to use one."""
    return f"{secret[:4]}…({len(secret)} chars)" if len(secret) > 8 else "***"


@dataclass(frozen=True)
class TokenAuth:
    """A pre-made IAM token sent as ``X-Auth-Token``."""

    token: str = field(repr=False)
    source: str = "token"
    kind: str = "token"
    project_id: str = ""
    project_lookup: ProjectLookup | None = field(default=None, compare=False)

    async def authorize(
        self, issuer: TokenIssuer, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        return {"X-Auth-Token": self.token}

    def expired(self, sent: Mapping[str, str] | None = None) -> bool:
        return False

    def __repr__(self) -> str:
        return f"TokenAuth(source={self.source!r}, token=***, project_id={self.project_id!r})"


@dataclass(frozen=True)
class AkSkAuth:
    """AK/SK request signing (``SDK-HMAC-SHA256``); ``X-Project-Id`` and, for temporary
    credentials, ``X-Security-Token`` are sent and signed."""

    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    project_id: str = ""
    security_token: str = field(default="", repr=False)
    source: str = "ak/sk"
    kind: str = "ak/sk"
    clock: Callable[[], datetime] | None = field(default=None, repr=False, compare=False)
    project_lookup: ProjectLookup | None = field(default=None, repr=False, compare=False)

    async def authorize(
        self, issuer: TokenIssuer, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        added = {DATE_HEADER: sdk_date(self.clock() if self.clock else None)}
        if self.project_id:
            added["X-Project-Id"] = self.project_id
        if self.security_token:
            added["X-Security-Token"] = self.security_token
        parts = urlsplit(url)
        signed = {**headers, **added}
        added["Authorization"] = authorization(
            self.access_key,
            self.secret_key,
            method,
            parts.path or "/",
            parse_qsl(parts.query, keep_blank_values=True),
            signed,
            body,
        )
        return added

    def expired(self, sent: Mapping[str, str] | None = None) -> bool:
        return False

    def __repr__(self) -> str:
        return (
            f"AkSkAuth(source={self.source!r}, access_key={mask(self.access_key)}, "
            f"project_id={self.project_id!r})"
        )


@dataclass
class PasswordAuth:
    """An IAM user's project-scoped token, got from ``POST {iam}/v3/auth/tokens``, cached
    until ``TOKEN_MARGIN`` before it expires, and got again after an expiry answer.

    However many requests are in flight when the token goes stale, one login gets the next
    one: logins are serialised, a request that waited for another's login uses its token,
    and an expiry answer to a request sent with a token already replaced forgets nothing.
    So each revoked token costs one login, however often it is revoked mid-run.
    """

    iam_endpoint: str
    user: str
    password: str = field(repr=False)
    domain: str
    project_name: str = ""
    project_id: str = ""
    source: str = "iam password"
    kind: str = "iam password"
    clock: Callable[[], float] = field(default=time.time, repr=False)
    _token: str = field(default="", repr=False)
    _expires: float = 0.0
    _login: anyio.Lock | None = field(default=None, repr=False, compare=False)
    #: Logins made so far (tests and debugging: one per expiry, however many in flight).
    logins: int = 0
    project_lookup: ProjectLookup | None = field(default=None, repr=False, compare=False)

    async def authorize(
        self, issuer: TokenIssuer, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        if not self._fresh():
            if self._login is None:
                self._login = anyio.Lock()
            async with self._login:
                if not self._fresh():  # nobody logged in while this request waited
                    self._token, self._expires = await issuer.issue_token(
                        self.iam_endpoint.rstrip("/") + "/v3/auth/tokens?nocatalog=true",
                        self._request_body(),
                    )
                    self.logins += 1
        return {"X-Auth-Token": self._token}

    def _fresh(self) -> bool:
        return bool(self._token) and self.clock() <= self._expires - TOKEN_MARGIN

    def expired(self, sent: Mapping[str, str] | None = None) -> bool:
        used = self._token if sent is None else sent.get("X-Auth-Token", "")
        if not used:
            return False
        if used == self._token:
            self._token = ""
        return True

    def _request_body(self) -> bytes:
        project = {"id": self.project_id} if self.project_id else {"name": self.project_name}
        return json.dumps(
            {
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {
                            "user": {
                                "domain": {"name": self.domain},
                                "name": self.user,
                                "password": self.password,
                            }
                        },
                    },
                    "scope": {"project": project},
                }
            }
        ).encode("utf-8")

    def __repr__(self) -> str:
        return (
            f"PasswordAuth(source={self.source!r}, user={self.user!r}, "
            f"domain={self.domain!r}, iam_endpoint={self.iam_endpoint!r})"
        )
