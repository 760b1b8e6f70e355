"""The one HTTP client tests use to talk to the fake IMS directly (not through batchpatch).

``send`` makes one request on a session and gives back a ``Reply`` whatever the status; a
connection the server dropped without an answer is ``Reply(DROPPED, ...)``, while a server
that is not listening at all still raises (``aiohttp.ClientConnectorError``).  ``request``
is the same for synchronous tests: one request on an event loop of its own.  No proxy from
the environment is ever used, so nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yarl
from multidict import CIMultiDict

from batchpatch.fake import FakeServer

#: A ``Reply.status`` for a connection closed by the server with no answer.
DROPPED = "dropped"
JSON = "application/json;charset=utf-8"
_NO_BODY = object()
_STREAMED = 1 << 20


@dataclass(frozen=True)
class Reply:
    """An answer: its status (or ``DROPPED``), headers and JSON body (None when empty)."""

    status: int | str
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    body: Any = None


def new_session() -> aiohttp.ClientSession:
    """A session with no pool limit (burst tests need every request on the wire at once)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), trust_env=False)


def url_of(fake: FakeServer | str, path: str) -> str:
    """``path`` (with its query) on ``fake`` or on a base URL."""
    return (fake if isinstance(fake, str) else fake.url) + path


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str | yarl.URL,
    *,
    json_body: object = _NO_BODY,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    give_up_after: float | None = None,
) -> Reply:
    """One request: ``json_body`` as JSON, or ``raw`` bytes as they are, or no body;
    ``give_up_after`` seconds at most (then ``TimeoutError``)."""
    content = json.dumps(json_body).encode() if json_body is not _NO_BODY else raw
    data: bytes | io.BytesIO | None = content
    if content is not None and len(content) > _STREAMED:  # aiohttp warns of large bytes
        data = io.BytesIO(content)
    try:
        async with session.request(
            method,
            url,
            data=data,
            headers=headers or {},
            timeout=aiohttp.ClientTimeout(total=give_up_after),
        ) as response:
            content = await response.read()
            return Reply(
                response.status,
                CIMultiDict(response.headers),
                json.loads(content) if content else None,
            )
    except aiohttp.ClientConnectorError:
        raise  # nothing listening: not a dropped answer
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        return Reply(DROPPED)


def request(
    method: str,
    url: str | yarl.URL,
    *,
    json_body: object = _NO_BODY,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float | None = 10,
) -> Reply:
    """``send`` for synchronous tests, on a session and event loop of its own."""

    async def one() -> Reply:
        async with new_session() as session:
            return await send(
                session,
                method,
                url,
                json_body=json_body,
                raw=raw,
                headers=headers,
                give_up_after=timeout,
            )

    return asyncio.run(one())


def token_headers(token: str | None, content_type: str | None = JSON) -> dict[str, str]:
    """The headers of a token-authenticated call (none for ``token`` None)."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    if token is not None:
        headers["X-Auth-Token"] = token
    return headers
