"""The fake IMS HTTP API: its routes, the gateway's checks, faults, and instrumentation.

Routes: ``PATCH /v2/cloudimages/{image_id}`` (UpdateImage) and ``GET /v2/cloudimages``
(ListImages), and the v2 tag API under ``/v2/{project_id}/images``: ``{image_id}/tags/action``
(BatchAddOrDeleteTags), ``POST {image_id}/tags`` (AddImageTag), ``DELETE
{image_id}/tags/{key}`` (DeleteImageTag), ``GET {image_id}/tags`` (ListImageTags), ``GET
tags`` (ListImagesTags) and ``POST resource_instances/action`` (ListImageByTags) — all behind
the gateway (authentication, the path's project id for the tag API, then the rate limit and
faults); and IAM's ``POST /v3/auth/tokens``, which needs no authentication, and ``GET
/v3/projects?name=REGION``, which does; neither suffers the IMS rate limit or faults.
Every response carries ``X-Request-Id`` and a ``Date`` from the fake's clock.

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
from batchpatch.fake.auth import AuthOutcome, FakeAuth, IncomingRequest
from batchpatch.fake.clock import http_date
from batchpatch.fake.config import LIST_ANSWER_FAULTS, FakeConfig, FaultKind
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
from batchpatch.fake.tags import check_deleted, parse_add_tag, parse_tag_action, parse_tag_query

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
#: The account's domain id in IAM's project answers.
DOMAIN_ID = "9d8c7b6a5f4e4d3c8b2a1f0e9d8c7b6a"

REQUEST_ID = web.RequestKey("request_id", str)
FAULT = web.RequestKey("fault", str)
OUTCOME = web.RequestKey("outcome", AuthOutcome)
_ROUTE_KINDS: dict[str, RequestKind] = {
    "update_image": "patch",
    "list_images": "list",
    "issue_token": "token",
    "tag_action": "tag_write",
    "add_tag": "tag_write",
    "delete_tag": "tag_write",
    "image_tags": "tag_read",
    "tenant_tags": "tag_list",
    "query_tags": "tag_query",
    "list_projects": "projects",
}
#: The kinds whose path carries ``{project_id}``, checked against the account's.
_PROJECT_PATHS = frozenset({"tag_write", "tag_read", "tag_list", "tag_query"})
#: Tag-script answers that replace a tag call's answer (``error_200`` applies nothing).
_UNREADABLE = frozenset(LIST_ANSWER_FAULTS)
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
    app.router.add_get("/v3/projects", api.list_projects, name="list_projects", allow_head=False)
    add_tag_routes(app, api)
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
        self.faults = FaultPlan(config)
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
            outcome = await self._authenticate(request)
            request[OUTCOME] = outcome
            if kind == "projects":  # IAM: authenticated, but no IMS rate limit or faults
                return await handler(request)
            if kind in _PROJECT_PATHS:
                check_path_project(request.match_info["project_id"], outcome, self.config)
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

    async def _authenticate(self, request: web.Request) -> AuthOutcome:
        headers = request.headers
        body = await request.read() if self.auth.needs_body(headers) else b""
        url = request.rel_url
        outcome = self.auth.check(
            IncomingRequest(request.method, url.raw_path, url.raw_query_string, headers, body)
        )
        self.stats.auth_succeeded(outcome.method, outcome.project_id)
        return outcome

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

    # --- tags ------------------------------------------------------------------------------

    async def tag_action(self, request: web.Request) -> web.Response:
        """BatchAddOrDeleteTags: one ``create`` or ``delete`` of several tags, 204."""

        def write(body: object) -> None:
            action, tags = parse_tag_action(body)
            if action == "create":
                self.store.create_tags(image_id, tags)
            else:
                self.store.delete_tags(image_id, tags)

        image_id = request.match_info["image_id"]
        return await self._tag_write(request, image_id, write)

    async def add_tag(self, request: web.Request) -> web.Response:
        """AddImageTag: one tag, created or overwritten, 204."""

        def write(body: object) -> None:
            key, value = parse_add_tag(body)
            self.store.create_tags(image_id, {key: value})

        image_id = request.match_info["image_id"]
        return await self._tag_write(request, image_id, write)

    async def delete_tag(self, request: web.Request) -> web.Response:
        """DeleteImageTag: one key, 204 whether or not the image has it (an assumption)."""
        image_id, key = request.match_info["image_id"], request.match_info["key"]

        def write(body: object) -> None:
            check_deleted(key, "")
            self.store.delete_tags(image_id, [key])

        return await self._tag_write(request, image_id, write, needs_body=False)

    async def _tag_write(
        self,
        request: web.Request,
        image_id: str,
        write: Callable[[object], None],
        *,
        needs_body: bool = True,
    ) -> web.Response:
        """A tag write through the same fault stages as a PATCH; 204 with no body."""
        fault = request.get(FAULT)
        raw = await request.read()
        delay = self.faults.delay()
        if delay:
            await asyncio.sleep(delay)
        if fault == "error_200":  # nothing applied, yet a 200
            return patch_answer("error_200", {}, self.config)
        await self._unanswered_before(request, fault)
        _raise_error_fault(fault)
        try:
            write(_decode_json(raw) if needs_body else None)
        except FakeApiError:
            if fault == "reset_after":
                raise _NoResponse(CLOSED_WITHOUT_RESPONSE) from None
            _raise_gateway_error_after(fault)
            raise
        self.stats.tags_applied(image_id)
        if fault == "reset_after":
            raise _NoResponse(CLOSED_WITHOUT_RESPONSE)
        _raise_gateway_error_after(fault)
        if fault in _UNREADABLE:
            return unreadable_answer(str(fault), self.config)
        return web.Response(status=204)

    async def _unanswered_before(self, request: web.Request, fault: str | None) -> None:
        """The faults that leave a request unanswered before anything is done."""
        if fault == "hang":
            await self._hang(request)
        if fault == "reset_before":
            raise _NoResponse(CLOSED_WITHOUT_RESPONSE)

    async def _tag_read(self, request: web.Request, answer: Callable[[], object]) -> web.Response:
        """A tag read: the GET faults (and any scripted one), then ``answer()`` as JSON."""
        fault = request.get(FAULT)
        await self._unanswered_before(request, fault)
        _raise_error_fault(fault)
        _raise_gateway_error_after(fault)
        if fault == "error_200":
            return patch_answer("error_200", {}, self.config)
        body = answer()
        if fault == "reset_after":
            raise _NoResponse(CLOSED_WITHOUT_RESPONSE)
        if fault in _UNREADABLE:
            return unreadable_answer(str(fault), self.config)
        return web.json_response(body)

    async def image_tags(self, request: web.Request) -> web.Response:
        """ListImageTags: ``{"tags": [{"key", "value"}, ...]}``."""
        image_id = request.match_info["image_id"]

        def answer() -> object:
            tags = self.store.image_tags(image_id)
            return {"tags": [{"key": key, "value": value} for key, value in tags.items()]}

        return await self._tag_read(request, answer)

    async def tenant_tags(self, request: web.Request) -> web.Response:
        """ListImagesTags: every key of the tenant's image tags with its values."""

        def answer() -> object:
            values = self.store.tag_values()
            return {"tags": [{"key": key, "values": values[key]} for key in values]}

        return await self._tag_read(request, answer)

    async def query_tags(self, request: web.Request) -> web.Response:
        """ListImageByTags: ``filter`` a page of images with their tags, or ``count`` them."""
        query = parse_tag_query(_decode_json(await request.read()))

        def answer() -> object:
            resources, total = self.store.query_tags(query)
            if query.action == "count":
                return {"total_count": total}
            return {"total_count": total, "resources": resources}

        return await self._tag_read(request, answer)

    async def list_projects(self, request: web.Request) -> web.Response:
        """IAM's KeystoneListProjects, ``?name=REGION``: the account's project(s).

        The fake does not know its region, so any name answers the account's project (for
        an IAM-issued token: the project it is scoped to) and ``extra_projects``, all named
        after the query (no name: named ``default``).
        """
        name = request.query.get("name") or "default"
        main = request[OUTCOME].token_project or self.config.account_project_id
        ids = [main, *self.config.extra_projects]
        return web.json_response({"projects": [_project(pid, name) for pid in ids]})

    async def stamp(self, request: web.Request, response: web.StreamResponse) -> None:
        """Stamp every response, aiohttp's own error pages included, with the request's id
        and the fake clock's date."""
        response.headers["X-Request-Id"] = request.get(REQUEST_ID) or uuid.uuid4().hex
        response.headers["Date"] = http_date(self.auth.clock.now())


def add_tag_routes(app: web.Application, api: _FakeIms) -> None:
    """The v2 tag API; the tag query first, so ``resource_instances`` is no image id."""
    base = "/v2/{project_id}/images"
    router = app.router
    router.add_post(f"{base}/resource_instances/action", api.query_tags, name="query_tags")
    router.add_get(f"{base}/tags", api.tenant_tags, name="tenant_tags", allow_head=False)
    router.add_post(f"{base}/{{image_id}}/tags/action", api.tag_action, name="tag_action")
    router.add_post(f"{base}/{{image_id}}/tags", api.add_tag, name="add_tag")
    router.add_delete(f"{base}/{{image_id}}/tags/{{key}}", api.delete_tag, name="delete_tag")
    router.add_get(f"{base}/{{image_id}}/tags", api.image_tags, name="image_tags",
                   allow_head=False)  # fmt: skip


def check_path_project(project_id: str, outcome: AuthOutcome, config: FakeConfig) -> None:
    """A tag path's ``{project_id}`` must be the account's (or one of ``extra_projects``,
    or the project an IAM token is scoped to), and equal a signed X-Project-Id if one was
    sent.  Otherwise 400 IMG.0030 "The project ID and token in the request are invalid."
    (an assumption: the real code for this refusal is not documented; IMS answers its
    IMG codes with 400)."""
    accepted = {config.account_project_id, *config.extra_projects}
    if outcome.token_project is not None:
        accepted = {outcome.token_project}
    signed = outcome.project_id
    if project_id not in accepted or (signed is not None and signed != project_id):
        message = FakeApiError.ims("IMG.0030").message
        raise AuthRefused(400, "IMG.0030", message, reason="path-project")


def _project(project_id: str, name: str) -> dict[str, object]:
    """One project as Keystone lists it (trimmed)."""
    return {
        "id": project_id,
        "name": name,
        "enabled": True,
        "is_domain": False,
        "description": "",
        "domain_id": DOMAIN_ID,
        "parent_id": DOMAIN_ID,
    }


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
