"""The fake IMS HTTP API: its two routes, the gateway's checks, and instrumentation."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from batchpatch.fake.config import FakeConfig
from batchpatch.fake.errors import API_NOT_FOUND, IAM_AUTH_FAILED, FakeApiError, invalid_format
from batchpatch.fake.stats import FakeStats, RequestKind
from batchpatch.fake.store import DEFAULT_LIMIT, ImageStore

#: The API gateway refuses bodies above 12 MB (APIGW.0201, ims-api-facts §3.3).
MAX_BODY_BYTES = 12 * 1024 * 1024

REQUEST_ID = web.RequestKey("request_id", str)
_ROUTE_KINDS: dict[str, RequestKind] = {"update_image": "patch", "list_images": "list"}
_DIGITS = re.compile(r"[0-9]+")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(
    store: ImageStore, config: FakeConfig | None = None, stats: FakeStats | None = None
) -> web.Application:
    """The aiohttp application serving ``store``; pass ``stats`` to read what it saw."""
    api = _FakeIms(store, config or FakeConfig(), stats or FakeStats())
    app = web.Application(middlewares=[api.gateway], client_max_size=MAX_BODY_BYTES)
    app.router.add_patch("/v2/cloudimages/{image_id}", api.update_image, name="update_image")
    app.router.add_get("/v2/cloudimages", api.list_images, name="list_images", allow_head=False)
    app.on_response_prepare.append(_send_request_id)
    return app


class _FakeIms:
    def __init__(self, store: ImageStore, config: FakeConfig, stats: FakeStats) -> None:
        self.store = store
        self.config = config
        self.stats = stats

    @web.middleware
    async def gateway(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """What the API gateway does before IMS: route, authenticate; plus bookkeeping."""
        request[REQUEST_ID] = uuid.uuid4().hex
        match = request.match_info
        image_id = match.get("image_id")
        kind = _ROUTE_KINDS.get(match.route.name or "")
        index = self.stats.request_started(request.method, request.path, kind, image_id)
        status = 500  # what aiohttp answers if a handler has a bug
        try:
            response = await self._answer(request, handler)
            status = response.status
            return response
        finally:
            self.stats.request_finished(index, status)

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.match_info.http_exception is not None:
                raise FakeApiError(404, "APIGW.0101", API_NOT_FOUND)
            self._authenticate(request)
            return await handler(request)
        except FakeApiError as exc:
            error = exc
        except web.HTTPException as exc:  # e.g. 413 from reading a too large body
            error = FakeApiError(exc.status, "APIGW.0201", f"API request error: {exc.reason}")
        return web.json_response(error.body(request[REQUEST_ID]), status=error.status)

    def _authenticate(self, request: web.Request) -> None:
        token = request.headers.get("X-Auth-Token")
        if not token:
            raise FakeApiError(401, "APIGW.0301", f"{IAM_AUTH_FAILED}: x-auth-token not found")
        if self.config.token is not None and token != self.config.token:
            raise FakeApiError(401, "APIGW.0301", f"{IAM_AUTH_FAILED}: decrypt token fail")

    async def update_image(self, request: web.Request) -> web.Response:
        image_id = request.match_info["image_id"]
        self.stats.patch_started(image_id)
        try:
            body = _decode_json(await request.read())
            if self.config.latency:
                await asyncio.sleep(self.config.latency)
            image = self.store.apply_patch(image_id, body)
        finally:
            self.stats.patch_finished(image_id)
        return web.json_response(image)

    async def list_images(self, request: web.Request) -> web.Response:
        query = request.query
        filters = {key: value for key, value in query.items() if key not in ("limit", "marker")}
        images = self.store.list_images(
            filters, _parse_limit(query.get("limit")), query.get("marker")
        )
        return web.json_response({"images": images})


def _decode_json(raw: bytes) -> object:
    if not raw.strip():
        raise FakeApiError.ims("IMG.0007")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except ValueError as exc:  # also UnicodeDecodeError
        raise invalid_format(f"the body is not valid JSON: {exc}") from exc


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _parse_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not _DIGITS.fullmatch(text):
        raise invalid_format("limit must be a positive integer")
    return int(text)


async def _send_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """Stamp every response, aiohttp's own error pages included, with the request's id."""
    response.headers["X-Request-Id"] = request.get(REQUEST_ID) or uuid.uuid4().hex
