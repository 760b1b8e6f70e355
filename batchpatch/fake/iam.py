"""IAM's ``POST /v3/auth/tokens`` (password method): reading the request, shaping the answer.

The request body is Keystone's (ims-api-facts §7)::

    {"auth": {"identity": {"methods": ["password"],
                           "password": {"user": {"domain": {"name": D}, "name": U,
                                                 "password": P}}},
              "scope": {"project": {"name": REGION}}}}     # or {"project": {"id": ID}}

A body that does not have this shape is a 400 in Keystone's error shape; whether the
credentials are right is FakeAuth's business.  The answer's body is a trimmed Keystone token:
``expires_at``, ``issued_at``, ``methods``, ``project``, ``user``, and ``catalog`` (always
empty) unless the query has a non-empty ``nocatalog``.  The token itself travels only in the
``X-Subject-Token`` response header.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from batchpatch.fake.errors import AuthRefused

#: How Keystone writes a token's times: UTC, microseconds, ``Z``.
TOKEN_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_ID_NAMESPACE = uuid.UUID("6f1d3c52-2b1e-4c44-9a43-4f0e7e1a9b10")


@dataclass(frozen=True)
class PasswordAuth:
    """What a password-method token request asks for; the password stays out of ``repr``."""

    user: str
    password: str = field(repr=False)
    domain: str
    project_name: str | None
    project_id: str | None


def parse_password_auth(raw: bytes) -> PasswordAuth:
    """Read a token request body; raise a 400 AuthRefused naming what is missing."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise _malformed("The request body is not valid JSON.") from None
    auth = _object(body, "auth", "auth")
    identity = _object(auth, "identity", "auth.identity")
    methods = identity.get("methods")
    if not isinstance(methods, list) or "password" not in methods:
        raise _malformed('auth.identity.methods must be a list holding "password".')
    user = _object(_object(identity, "password", "auth.identity.password"), "user",
                   "auth.identity.password.user")  # fmt: skip
    domain = _object(user, "domain", "auth.identity.password.user.domain")
    domain_name = domain.get("name", domain.get("id"))
    if not isinstance(domain_name, str) or not domain_name:
        raise _malformed("auth.identity.password.user.domain needs a name (or an id).")
    name, password = user.get("name"), user.get("password")
    if not isinstance(name, str) or not name:
        raise _malformed("auth.identity.password.user needs a name.")
    if not isinstance(password, str) or not password:
        raise _malformed("auth.identity.password.user needs a password.")
    project = _object(_object(auth, "scope", "auth.scope"), "project", "auth.scope.project")
    project_name, project_id = project.get("name"), project.get("id")
    if not any(isinstance(value, str) and value for value in (project_name, project_id)):
        raise _malformed("auth.scope.project needs a name (the region id) or an id.")
    return PasswordAuth(
        user=name,
        password=password,
        domain=domain_name,
        project_name=project_name if isinstance(project_name, str) and project_name else None,
        project_id=project_id if isinstance(project_id, str) and project_id else None,
    )


def token_body(
    auth: PasswordAuth,
    *,
    issued_at: float,
    expires_at: float,
    project_id: str,
    catalog: bool,
) -> dict[str, Any]:
    """The JSON body of a 201 answer (the token itself is not in it)."""
    project: dict[str, Any] = {"id": project_id}
    if auth.project_name is not None:
        project["name"] = auth.project_name
    token: dict[str, Any] = {
        "expires_at": token_time(expires_at),
        "issued_at": token_time(issued_at),
        "methods": ["password"],
        "project": project,
        "user": {
            "name": auth.user,
            "id": fake_id("user", auth.domain, auth.user),
            "domain": {"name": auth.domain, "id": fake_id("domain", auth.domain)},
        },
    }
    if catalog:
        token["catalog"] = []
    return {"token": token}


def token_time(seconds: float) -> str:
    """Seconds since the epoch as Keystone writes them, e.g. ``2026-11-29T01:02:03.000000Z``."""
    return datetime.fromtimestamp(seconds, UTC).strftime(TOKEN_TIME_FORMAT)


def fake_id(*parts: str) -> str:
    """A stable 32-hex-digit id (the shape of Huawei's ids) derived from names."""
    return uuid.uuid5(_ID_NAMESPACE, "/".join(parts)).hex


def _object(parent: object, key: str, path: str) -> dict[str, Any]:
    value = parent.get(key) if isinstance(parent, dict) else None
    if not isinstance(value, dict):
        raise _malformed(f"{path} must be a JSON object.")
    return value


def _malformed(message: str) -> AuthRefused:
    return AuthRefused.keystone(400, message, reason="malformed")
