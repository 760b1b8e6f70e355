"""The fake IMS HTTP API: its routes, the gateway's checks, faults, and instrumentation.

Routes: ``PATCH /v2/cloudimages/{image_id}`` (UpdateImage) and ``GET /v2/cloudimages``
(ListImages), behind the gateway (authentication, then the rate limit and faults); and IAM's
``POST /v3/auth/tokens``, which needs no authentication and suffers no faults.  Every
response carries ``X-Request-Id`` and a ``Date`` from the fake's clock.

An injected reset closes the connection's transport from the handler; aiohttp then fails to
write the response it is handed, takes that for a client disconnection and stays quiet, so
the client sees the connection end with no response (aiohttp's client raises
``ServerDisconnectedError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import NoReturn

from aiohttp import web

from batchpatch.fake.answers import is_answer_fault, patch_answer, unreadable_answer
from batchpatch.fake.auth import FakeAuth, IncomingRequest
from batchpatch.fake.clock import http_date
from batchpatch.fake.config import FakeConfig, FaultKind
from batchpatch.fake.errors import (
    API_NOT_FOUND,
    BACKEND_TIMEOUT,
    BACKEND_UNAVAILABLE,
    BAD_GATEWAY,
    TOKEN_EXPIRED,
    AuthRefused,
    FakeApiError,
    invalid_format,
    throttled,
)
from batchpatch.fake.faults import FaultPlan
from batchpatch.fake.iam import parse_password_auth, token_body
from batchpatch.fake.stats import FakeStats, RequestKind
from batchpatch.fake.store import DEFAULT_LIMIT, ImageStore

#: The API gateway refuses bodies above 12 MB (APIGW.0201, ims-api-facts §3.3).
MAX_BODY_BYTES = 12 * 1024 * 1024

#: The gateway's default limit, shown in a scripted 429's message when no rate_limit is set.
DEFAULT_THROTTLE_LIMIT = 200
#: The logged status of a request answered by closing its connection (nginx's 444) ...
CLOSED_WITHOUT_RESPONSE = 444
#: ... and of one whose client went away while it hung (nginx's 499).
CLIENT_CLOSED = 499
#: How often a hanging request checks whether its client is still there.
HANG_POLL = 0.01

REQUEST_ID = web.RequestKey("request_id", str)
FAULT = web.RequestKey("fault", str)
_ROUTE_KINDS: dict[str, RequestKind] = {
    "update_image": "patch",
    "list_images": "list",
    "issue_token": "token",
}
_DIGITS = re.compile(r"[0-9]+")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(
    store: ImageStore,
    config: FakeConfig | None = None,
    stats: FakeStats | None = None,
    *,
    auth: FakeAuth | None = None,
) -> web.Application:
    """The aiohttp application serving ``store``; pass ``stats`` to read what it saw.

    ``auth`` holds the issued tokens, the lockouts and the clock; pass one to reach them
    (it must be built from the same ``config``).
    """
    config = config or FakeConfig()
    api = _FakeIms(store, config, stats or FakeStats(), auth or FakeAuth(config))
    app = web.Application(middlewares=[api.gateway], client_max_size=MAX_BODY_BYTES)
    app.on_shutdown.append(api.release_hangs)
    app.router.add_patch("/v2/cloudimages/{image_id}", api.update_image, name="update_image")
    app.router.add_get("/v2/cloudimages", api.list_images, name="list_images", allow_head=False)
    app.router.add_post("/v3/auth/tokens", api.issue_token, name="issue_token")
    app.on_response_prepare.append(api.stamp)
    return app


class _FakeIms:
    def __init__(
        self, store: ImageStore, config: FakeConfig, stats: FakeStats, auth: FakeAuth
    ) -> None:
        self.store = store
        self.config = config
        self.stats = stats
        self.auth = auth
        self.faults = FaultPlan(config, clock=auth.clock.time)  # limits move with the clock
        self.stopping = asyncio.Event()
        #: How many ``revoke`` faults have revoked every token so far.
        self.revocations = 0

    async def release_hangs(self, app: web.Application) -> None:
        """On shutdown, end the hanging requests so stopping never waits for them."""
        self.stopping.set()

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
            response = await self._answer(request, handler, kind, image_id)
            status = response.status
            return response
        except _NoResponse as dropped:
            status = dropped.status
            if request.transport is not None:
                request.transport.close()
            # aiohttp cannot write this to the closing transport and counts it a disconnect.
            return web.Response(status=500)
        finally:
            self.stats.request_finished(index, status)

    async def _answer(
        self, request: web.Request, handler: Handler, kind: RequestKind | None, image_id: str | None
    ) -> web.StreamResponse:
        try:
            if request.match_info.http_exception is not None or kind is None:
                raise FakeApiError(404, "APIGW.0101", API_NOT_FOUND)
            if kind == "token":  # IAM: no gateway checks, no faults
                return await handler(request)
            await self._authenticate(request)
            fault = self._choose_fault(kind, image_id)
            if fault is not None:
                request[FAULT] = fault
            return await handler(request)
        except FakeApiError as exc:
            error = exc
            if isinstance(exc, AuthRefused):
                self.stats.auth_failed(exc.stats_key)
        except web.HTTPException as exc:  # e.g. 413 from reading a too large body
            error = FakeApiError(exc.status, "APIGW.0201", f"API request error: {exc.reason}")
        return web.json_response(
            error.body(request[REQUEST_ID]), status=error.status, headers=error.headers
        )

    async def _authenticate(self, request: web.Request) -> None:
        headers = request.headers
        body = await request.read() if self.auth.needs_body(headers) else b""
        url = request.rel_url
        outcome = self.auth.check(
            IncomingRequest(request.method, url.raw_path, url.raw_query_string, headers, body)
        )
        self.stats.auth_succeeded(outcome.method, outcome.project_id)

    def _choose_fault(self, kind: RequestKind, image_id: str | None) -> FaultKind | None:
        """The rate limit, then the script, then the dice; a 429 is answered here."""
        if not self.faults.admit():
            self.stats.fault_injected("rate_limit")
            raise self._throttled()
        fault = self.faults.choose(kind, image_id)
        if fault is not None:
            self.stats.fault_injected(fault)
        if fault == "429":
            raise self._throttled()
        return fault

    def _throttled(self) -> FakeApiError:
        """The gateway's 429, with ``retry_after_header`` verbatim when one is configured."""
        config = self.config
        error = throttled(config.throttle_limit or DEFAULT_THROTTLE_LIMIT, config.retry_after)
        if config.retry_after_header is not None:
            error.headers["Retry-After"] = config.retry_after_header
        return error

    def _revoke_if(self, fault: str | None) -> int:
        """A ``revoke`` fault revokes every token now; returns the count a request started at."""
        if fault == "revoke":
            self.auth.expire_tokens()
            self.revocations += 1
            return self.revocations - 1
        return self.revocations

    def _refuse_if_revoked(self, request: web.Request, started_at: int) -> None:
        """A PATCH in flight with an IAM token when tokens were revoked: 401, as if its
        token had been checked now."""
        token = request.headers.get("X-Auth-Token")
        if started_at != self.revocations and token and token != self.config.token:
            raise AuthRefused(401, "APIGW.0307", TOKEN_EXPIRED, reason="token-expired")

    async def update_image(self, request: web.Request) -> web.Response:
        image_id = request.match_info["image_id"]
        fault = request.get(FAULT)
        revocations = self._revoke_if(fault)
        self.stats.patch_started(image_id)
        try:
            raw = await request.read()
            delay = self.faults.delay()
            if delay:
                await asyncio.sleep(delay)
            self._refuse_if_revoked(request, revocations)
            if fault == "error_200":  # nothing applied, yet a 200
                return patch_answer(fault, {}, self.config)
            if fault == "hang":
                await self._hang(request)
            if fault == "reset_before":
                raise _NoResponse(CLOSED_WITHOUT_RESPONSE)
            _raise_error_fault(fault)
            try:
                image = self.store.apply_patch(image_id, _decode_json(raw))
            except FakeApiError:
                if fault == "reset_after":  # nothing applied, and still no answer
                    raise _NoResponse(CLOSED_WITHOUT_RESPONSE) from None
                _raise_gateway_error_after(fault)  # the gateway's answer hides IMS's
                raise
            self.stats.patch_applied(image_id)
            if fault == "reset_after":
                raise _NoResponse(CLOSED_WITHOUT_RESPONSE)
            _raise_gateway_error_after(fault)
        finally:
            self.stats.patch_finished(image_id)
        if is_answer_fault(fault):
            return patch_answer(str(fault), image, self.config)
        return web.json_response(image)

    async def _hang(self, request: web.Request) -> NoReturn:
        """Answer never: wait until the client disconnects or the server stops."""
        while not self.stopping.is_set():
            # Without handler cancellation, aiohttp tells a handler of a lost client only by
            # dropping the request's transport, so look at it now and then.
            transport = request.transport
            if transport is None or transport.is_closing():
                raise _NoResponse(CLIENT_CLOSED)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HANG_POLL):
                    await self.stopping.wait()
        raise _NoResponse(CLOSED_WITHOUT_RESPONSE)

    async def list_images(self, request: web.Request) -> web.Response:
        _raise_error_fault(request.get(FAULT))
        query = request.query
        filters = {key: value for key, value in query.items() if key not in ("limit", "marker")}
        marker = None if self.config.ignore_marker else query.get("marker")
        images = self.store.list_images(filters, _parse_limit(query.get("limit")), marker)
        if self.config.list_answer is not None:
            return unreadable_answer(self.config.list_answer, self.config)
        return web.json_response({"images": images})

    async def issue_token(self, request: web.Request) -> web.Response:
        """IAM's KeystoneCreateUserTokenByPassword: 201 with the token in X-Subject-Token."""
        auth_request = parse_password_auth(await request.read())
        token = self.auth.issue_token(auth_request)
        self.stats.token_issued()
        body = token_body(
            auth_request,
            issued_at=token.issued_at,
            expires_at=token.expires_at,
            project_id=token.project_id,
            catalog=not request.query.get("nocatalog"),
        )
        return web.json_response(body, status=201, headers={"X-Subject-Token": token.value})

    async def stamp(self, request: web.Request, response: web.StreamResponse) -> None:
        """Stamp every response, aiohttp's own error pages included, with the request's id
        and the fake clock's date."""
        response.headers["X-Request-Id"] = request.get(REQUEST_ID) or uuid.uuid4().hex
        response.headers["Date"] = http_date(self.auth.clock.now())


class _NoResponse(Exception):
    """Close the connection without answering; ``status`` is what the log records."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _raise_error_fault(fault: str | None) -> None:
    """Raise the error answer of an injected 500, 503 or IMG.0060; other faults pass."""
    if fault == "500":
        raise FakeApiError.ims("IMG.0061", status=500)
    if fault == "503":
        raise FakeApiError(503, "APIGW.0201", BACKEND_UNAVAILABLE)
    if fault == "IMG.0060":
        raise FakeApiError.ims("IMG.0060")


def _raise_gateway_error_after(fault: str | None) -> None:
    """Raise the gateway's 502 or 504 of a PATCH IMS has handled (applied or not)."""
    if fault == "502_after":
        raise FakeApiError(502, "APIGW.0201", BAD_GATEWAY)
    if fault == "504_after":
        raise FakeApiError(504, "APIGW.0201", BACKEND_TIMEOUT)


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
