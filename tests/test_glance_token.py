"""A Keystone token that expires mid-run under --api glance: a password login logs in again
(at the fake's IAM, which speaks Keystone's v3 token API) and the request is sent once more;
a fixed token's 401 stands.  Glance's side is a small stand-in on 127.0.0.1 answering what
keystonemiddleware answers for a token it no longer takes (not the real Glance: it has no
Keystone in the tests)."""

from __future__ import annotations

import json

import anyio
from aiohttp import web

from batchpatch.auth import Auth, PasswordAuth, TokenAuth
from batchpatch.fake import FakeConfig, running_fake
from batchpatch.glance import GlanceClient
from batchpatch.service import AnswerKind
from tests.e2e import sample_images
from tests.local_server import serving

IMAGE = "0b1c6a3e-5f0d-4a53-9c1e-2f6d8a1b7c01"
USER, PASSWORD, DOMAIN = "alice", "pw-7f3e-not-real", "acme"
#: keystonemiddleware's answer to a token it does not take.
UNAUTHORIZED = {
    "error": {
        "code": 401,
        "title": "Unauthorized",
        "message": "The request you have made requires authentication.",
    }
}


class StandIn:
    """Refuses the first token it is shown (it "expired"), takes every other one, and
    answers a PATCH with the image it asked for."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    async def patch(self, request: web.Request) -> web.Response:
        token = request.headers.get("X-Auth-Token", "")
        self.tokens.append(token)
        if token == self.tokens[0]:
            return web.json_response(UNAUTHORIZED, status=401)
        operations = json.loads(await request.read())
        image = {"id": request.match_info["image_id"], "status": "active"}
        return web.json_response(image | {op["path"][1:]: op["value"] for op in operations})


def _app(stand_in: StandIn) -> web.Application:
    app = web.Application()
    app.router.add_patch("/v2/images/{image_id}", stand_in.patch)
    return app


async def _patch(stand_in: StandIn, auth: Auth) -> AnswerKind:
    async with (
        serving(_app(stand_in)) as url,
        GlanceClient(url, auth, timeout=10, connections=1) as glance,
    ):
        answer = await glance.update_image(
            IMAGE, [{"op": "replace", "path": "/name", "value": "renewed"}]
        )
        return glance.classify(answer)


def test_an_expired_keystone_token_is_renewed_by_logging_in_again() -> None:
    config = FakeConfig(iam_user=USER, iam_password=PASSWORD, iam_domain=DOMAIN)
    with running_fake(sample_images(), config) as fake:
        auth = PasswordAuth(fake.url, USER, PASSWORD, DOMAIN, project_name="demo")
        stand_in = StandIn()
        kind = anyio.run(_patch, stand_in, auth)
    assert kind == AnswerKind.OK
    assert auth.logins == 2  # the token Glance refused, then a fresh one
    assert len(stand_in.tokens) == 2
    assert stand_in.tokens[0] != stand_in.tokens[1]


def test_a_fixed_tokens_401_stands_and_stops_the_run() -> None:
    stand_in = StandIn()
    kind = anyio.run(_patch, stand_in, TokenAuth("gAAAA-fixed"))
    assert kind == AnswerKind.AUTH_FAILED
    assert stand_in.tokens == ["gAAAA-fixed"]  # not sent again: nothing could renew it
