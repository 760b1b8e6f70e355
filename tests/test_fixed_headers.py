"""Headers set once on the session (a token, or no credentials) are exactly the headers each
request went with before: IMS gets its JSON content type and the token, and Glance, whose
adapter makes its own headers, still gets its JSON-patch content type and ``Accept``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from batchpatch.auth import Auth, NoAuth, TokenAuth
from batchpatch.client import CONTENT_TYPE, USER_AGENT, ImsClient
from batchpatch.glance import PATCH_CONTENT_TYPE, GlanceClient
from tests.local_server import serving

IMAGE = "00000000-0000-4000-8000-000000000001"
OPERATIONS = [{"op": "replace", "path": "/name", "value": "renamed"}]


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A server on 127.0.0.1 answering every PATCH with the patched image, keeping each
    request's headers."""
    seen: list[dict[str, str]] = []

    async def patched(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        body = {"id": request.match_info["id"], "name": "renamed", "status": "active"}
        return web.json_response(body)

    app = web.Application()
    app.router.add_patch("/v2/cloudimages/{id}", patched)
    app.router.add_patch("/v2/images/{id}", patched)
    async with serving(app) as url:
        yield url, seen


async def patch_twice(client: ImsClient) -> Any:
    async with client:
        for _ in range(2):
            answer = await client.update_image(IMAGE, OPERATIONS)
            assert answer.ok, answer
    return answer


@pytest.mark.anyio
async def test_ims_with_a_token_sends_its_headers_on_every_request(
    server: tuple[str, list[dict[str, str]]],
) -> None:
    url, seen = server
    await patch_twice(ImsClient(url, TokenAuth("token-abc"), timeout=5, connections=2))
    assert len(seen) == 2
    for headers in seen:
        assert headers["Content-Type"] == CONTENT_TYPE
        assert headers["X-Auth-Token"] == "token-abc"
        assert headers["User-Agent"] == USER_AGENT
        assert headers["Host"] == url.removeprefix("http://")


@pytest.mark.anyio
@pytest.mark.parametrize("auth", [NoAuth(), TokenAuth("token-abc")], ids=["none", "token"])
async def test_glance_keeps_its_own_headers(
    server: tuple[str, list[dict[str, str]]], auth: Auth
) -> None:
    url, seen = server
    await patch_twice(GlanceClient(url, auth, timeout=5, connections=2))
    assert len(seen) == 2
    for headers in seen:
        assert headers["Content-Type"] == PATCH_CONTENT_TYPE
        assert headers["Accept"] == "application/json"
        assert headers.get("X-Auth-Token") == (None if isinstance(auth, NoAuth) else "token-abc")
