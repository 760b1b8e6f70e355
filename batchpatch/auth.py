"""How requests prove who sends them.  Secrets come only from the environment (or, later,
a profile or a file), never from the command line, and never appear in a ``repr``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from batchpatch.errors import OptionsError

TOKEN_VARIABLE = "BATCHPATCH_AUTH_TOKEN"


class Auth(Protocol):
    """Adds the authentication headers to one request, given the exact bytes sent."""

    @property
    def source(self) -> str:
        """Where the credentials came from, for messages (never the secret itself)."""

    async def headers(self, method: str, url: str, body: bytes) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class TokenAuth:
    """A pre-made IAM token sent as ``X-Auth-Token``."""

    token: str = field(repr=False)
    source: str = "token"

    async def headers(self, method: str, url: str, body: bytes) -> Mapping[str, str]:
        return {"X-Auth-Token": self.token}

    def __repr__(self) -> str:
        return f"TokenAuth(source={self.source!r}, token=***)"


def token_from_environment(environ: Mapping[str, str] | None = None) -> TokenAuth:
    """The token in ``BATCHPATCH_AUTH_TOKEN``, or an ``OptionsError`` saying how to set it."""
    token = (environ if environ is not None else os.environ).get(TOKEN_VARIABLE, "").strip()
    if not token:
        raise OptionsError(
            f"no credentials: {TOKEN_VARIABLE} is not set — export {TOKEN_VARIABLE} with an "
            "IAM token (it is never accepted on the command line)"
        )
    return TokenAuth(token, source=f"environment variable {TOKEN_VARIABLE}")
