"""The IMS HTTP client: the only module that talks aiohttp.

Every call returns an ``ApiResponse``; transport failures are data too (``status`` None),
so the runner decides what a failure means for a row.  Nothing here logs or raises with
request headers, so credentials cannot leak through it.
"""

from __future__ import annotations

import json
import math
import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import anyio
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from batchpatch import __version__, fastjson
from batchpatch.auth import Auth, NoAuth, TokenAuth
from batchpatch.credentials import lookup_project
from batchpatch.errors import AuthFailed
from batchpatch.models import CONNECTION_ERROR, TIMEOUT
from batchpatch.service import (
    NOT_SUCCESS,
    UNEXPECTED_ANSWER,
    UNPARSEABLE_ANSWER,
    AnswerKind,
    ApiResponse,
    Image,
)
from batchpatch.taganswers import (
    MAX_QUERY_KEYS,
    MAX_QUERY_LIMIT,
    TAG_ACTIONS,
    no_content_problem,
    tag_keys_in,
    tag_keys_problem,
    tagged_in,
    tagged_problem,
    tags_in,
    tags_problem,
)
from batchpatch.throttle import MAX_HOLD

__all__ = ["NOT_SUCCESS", "UNEXPECTED_ANSWER", "UNPARSEABLE_ANSWER", "ApiResponse", "ImsClient"]

CONTENT_TYPE = "application/json;charset=utf-8"
USER_AGENT = f"batchpatch/{__version__}"

#: AK/SK signatures are refused beyond this many seconds between the client's and the
#: service's clocks.
MAX_CLOCK_SKEW = 900.0

#: Header names whose values are secrets: masked wherever a request is shown.
SECRET_HEADERS = frozenset({"x-auth-token", "authorization", "x-security-token"})

#: How many times one request is re-sent after token-expiry answers: one per revocation
#: it meets while in flight (each costs one login, shared by every request refused with it).
TOKEN_RESENDS = 3

#: ``error_code`` of a refused connection: nothing was sent.  (After a ``TIMEOUT`` or a
#: ``CONNECTION_ERROR`` a write may or may not have been applied.)
CONNECT_FAILED = "connect_failed"
#: No request was sent: IAM would not give a token.
LOGIN_FAILED = "iam_login_failed"
#: The service's TLS certificate could not be verified: permanent, the run stops.
TLS_FAILED = "tls_failed"
#: No answer is read past this many bytes (after decompression): a huge body or a gzip bomb
#: costs at most this much memory.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
#: Bytes read at a time, so the cap is checked as the body arrives.
READ_CHUNK = 64 * 1024
#: Never hold for one ``Retry-After`` longer than this, however long the service asks.
MAX_RETRY_AFTER = MAX_HOLD

#: IMS answers 400 IMG.0046 when the image is not ``active``: the row is skipped, not failed.
NOT_ACTIVE = "IMG.0046"
#: ``replace`` (or ``remove``) of an attribute the image does not have.
ATTRIBUTE_CONFLICT = "IMG.0035"
#: Statuses and codes after which a request is sent again (see ``classify_answer``).
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
TRANSIENT_CODES = frozenset({"APIGW.0308", "IMG.0060", "IMG.0061"})
#: Answers after which a write may have been applied (see ``classify_answer``).
AMBIGUOUS_STATUSES = frozenset({500, 502, 504})
#: Answers that mean "slow down", as opposed to "something broke".
THROTTLE_CODES = frozenset({"APIGW.0308", "IMG.0060"})


#: The answer type adapters built on this client read (``glance``), so that aiohttp stays
#: imported here only.
ClientResponse = aiohttp.ClientResponse


def encode_body(body: Any) -> bytes:
    """The exact bytes sent (and, with AK/SK, signed): compact UTF-8 JSON."""
    return fastjson.dumps(body)


def parse_error(status: int, payload: bytes) -> tuple[str, str, str]:
    """``(code, message, request_id)`` from an error body in either IMS or gateway shape.

    IMS: ``{"error": {"code": "IMG.0035", "message": ...}}``; API gateway:
    ``{"error_code": "APIGW.0308", "error_msg": ..., "request_id": ...}``.
    """
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        text = payload.decode("utf-8", "replace").strip()
        return "", text[:300] or "(no body)", ""  # the status is told by the caller
    if isinstance(data, dict):
        if "error_code" in data or "error_msg" in data:
            return (
                str(data.get("error_code", "")),
                str(data.get("error_msg", "")),
                str(data.get("request_id", "")),
            )
        inner = data.get("error")
        if isinstance(inner, dict):
            return str(inner.get("code", "")), str(inner.get("message", "")), ""
    return "", json.dumps(data, ensure_ascii=False)[:300], ""


def is_throttled(response: ApiResponse) -> bool:
    return response.status == 429 or response.error_code in THROTTLE_CODES


def classify_answer(response: ApiResponse) -> AnswerKind:
    """What an IMS (or API gateway) answer means for a run.

    * throttled: 429, ``APIGW.0308``, ``IMG.0060`` (IMS flow control) — nothing was done;
    * unavailable: 503, ``IMG.0061`` on a 4xx, a refused connection — not served;
    * maybe applied: no answer after sending, 500/502/504 (the gateway forwarded the PATCH
      and IMS's own answer did not reach it, ims-api-facts §3.3; IMS lists 500 with
      IMG.0061 "Unknown system error."), and a 2xx that is not the patched image;
    * not active: ``IMG.0046``; conflict: ``IMG.0035``; auth failed: 401 or no IAM token;
      forbidden: 403; TLS failed: the certificate; refused: every other answer.
    """
    if response.ok:
        return AnswerKind.OK
    if response.unexpected or response.maybe_applied or response.status in AMBIGUOUS_STATUSES:
        return AnswerKind.MAYBE_APPLIED
    if is_throttled(response):
        return AnswerKind.THROTTLED
    if (
        response.error_code == CONNECT_FAILED
        or response.status in TRANSIENT_STATUSES
        or response.error_code in TRANSIENT_CODES
    ):
        return AnswerKind.UNAVAILABLE
    return _refusal_kind(response)


_REFUSALS_BY_CODE = {
    NOT_ACTIVE: AnswerKind.NOT_ACTIVE,
    ATTRIBUTE_CONFLICT: AnswerKind.CONFLICT,
    LOGIN_FAILED: AnswerKind.AUTH_FAILED,
    TLS_FAILED: AnswerKind.TLS_FAILED,
}


def _refusal_kind(response: ApiResponse) -> AnswerKind:
    if response.status == 401:
        return AnswerKind.AUTH_FAILED
    if response.status == 403:
        return AnswerKind.FORBIDDEN
    kind = _REFUSALS_BY_CODE.get(response.error_code, AnswerKind.REFUSED)
    if kind in (AnswerKind.NOT_ACTIVE, AnswerKind.CONFLICT) and response.status != 400:
        return AnswerKind.REFUSED
    return kind


def images_in(response: ApiResponse) -> list[Image] | None:
    """The images of a ListImages answer (``{"images": [...]}``); None without that list."""
    images = response.body.get("images") if isinstance(response.body, dict) else None
    if not isinstance(images, list):
        return None
    return [image for image in images if isinstance(image, dict)]


class ImsClient:
    """Calls IMS at ``endpoint`` (``https://ims.REGION.myhuaweicloud.com``): the IMS adapter
    of ``service.ImageService``."""

    def __init__(
        self,
        endpoint: str,
        auth: Auth,
        *,
        timeout: float,
        connections: int,
        ca_bundle: str | None = None,
        max_answer: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.max_answer = max_answer
        self._auth = auth
        self._ssl = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        #: Requests sent to IMS so far (IAM logins and project lookups not included).
        self.requests = 0
        self._project = auth.project_id
        self._project_lock: anyio.Lock | None = None
        #: ``proxy`` and ``proxy_auth`` by origin (read-only: callers spread them).
        self._proxies: dict[str, dict[str, Any]] = {}
        self._hosts: dict[str, str] = {}
        #: Header values already found safe: a token of kilobytes is searched once, not
        #: once per request (AK/SK's change every request: the set is kept small).
        self._safe_values: set[str] = set()
        #: Every request's headers, when the credentials give the same ones each time (a
        #: token, none): set on the session once, not merged into each request.
        self._fixed_headers: dict[str, str] | None = None

    async def __aenter__(self) -> ImsClient:
        self._fixed_headers = await self._same_every_time()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connections, ssl=self._ssl),
            timeout=self._timeout,
            # HTTPS_PROXY / NO_PROXY are read once per host (``_proxy``), not by aiohttp on
            # every request (a thread hop each: a third of the client's time at 0 latency).
            trust_env=False,
            headers=self._fixed_headers,
        )
        return self

    async def _same_every_time(self) -> dict[str, str] | None:
        """The headers of every request when the credentials never change them (a token
        given, none), and none of them holds a control character; else None (AK/SK signs
        each request, an IAM login's token is renewed: their headers are made per request).
        Host is left to aiohttp then: what it sends is the same."""
        if not isinstance(self._auth, TokenAuth | NoAuth):
            return None
        if type(self)._headers is not ImsClient._headers:
            return None  # another API's adapter makes its own (Glance's vary by method)
        headers = {"Content-Type": CONTENT_TYPE, "User-Agent": USER_AGENT}
        headers |= await self._auth.authorize(self, "", self.endpoint, headers, b"")
        return None if unsafe_header(headers) else headers

    def _proxy(self, url: str) -> dict[str, Any]:
        """The ``proxy`` and ``proxy_auth`` the environment sets for ``url``'s host."""
        origin = url.split("/", 3)[2] if "//" in url else url
        found = self._proxies.get(origin)
        if found is None:
            try:
                proxy, proxy_auth = get_env_proxy_for_url(URL(url))
            except LookupError:
                proxy, proxy_auth = None, None
            found = self._proxies[origin] = {"proxy": proxy, "proxy_auth": proxy_auth}
        return found

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def auth(self) -> Auth:
        return self._auth

    def classify(self, answer: ApiResponse) -> AnswerKind:
        return classify_answer(answer)

    def images(self, answer: ApiResponse) -> list[Image] | None:
        return images_in(answer)

    def describe(self) -> str:
        return f"{self._auth.kind} from {self._auth.source}"

    @property
    def listing(self) -> str:
        return f"{self.endpoint}/v2/cloudimages"

    # --- the tag API (project id in the path) ----------------------------------------------

    async def tag_project(self) -> str:
        """The project id in the tag API's paths: the configured one, else looked up once
        (see ``project.lookup_project``); raises ``OptionsError`` (exit 2) when there is
        none to be had.  Call it before the first tag call, so a missing project id stops
        the run before anything is sent."""
        if self._project:
            return self._project
        if self._project_lock is None:
            self._project_lock = anyio.Lock()
        async with self._project_lock:
            if not self._project:
                self._project = await lookup_project(self, self._auth)
        return self._project

    async def iam_get(self, url: str) -> ApiResponse:
        """One authenticated GET to IAM (not counted in ``requests``, which are IMS's)."""
        response, _ = await self._send_once("GET", url, b"", counted=False)
        return response

    async def _tags_base(self) -> str:
        return f"{self.endpoint}/v2/{quote(await self.tag_project(), safe='')}/images"

    async def _image_tags_url(self, image_id: str) -> str:
        return f"{await self._tags_base()}/{quote(image_id, safe='')}/tags"

    async def read_tags(self, image_id: str) -> ApiResponse:
        """``GET /v2/{project_id}/images/{image_id}/tags``: ``{"tags": [{"key", "value"}]}``."""
        response = await self._send("GET", await self._image_tags_url(image_id), b"")
        return _checked(response, tags_problem)

    async def change_tags(self, image_id: str, action: str, tags: Mapping[str, str]) -> ApiResponse:
        """``POST .../tags/action`` with one ``create`` or ``delete``; ``ok`` only for the
        204 with no body IMS answers (any other 2xx is an unexpected answer: read back)."""
        url, body = await self._tag_action(image_id, action, tags)
        return _checked(await self._send("POST", url, body), no_content_problem)

    async def preview_tags(self, image_id: str, action: str, tags: Mapping[str, str]) -> str:
        """The tag call ``change_tags`` would send, as text, with secrets masked."""
        url, body = await self._tag_action(image_id, action, tags)
        return await self._preview("POST", url, body)

    async def _tag_action(
        self, image_id: str, action: str, tags: Mapping[str, str]
    ) -> tuple[str, bytes]:
        if action not in TAG_ACTIONS:
            raise ValueError(f"action must be one of {TAG_ACTIONS}, not {action!r}")
        items = [{"key": key, "value": value} for key, value in tags.items()]
        body = encode_body({"action": action, "tags": items})
        return f"{await self._image_tags_url(image_id)}/action", body

    async def list_tag_keys(self) -> ApiResponse:
        """``GET /v2/{project_id}/images/tags``: every key of the account's tags, with values."""
        response = await self._send("GET", f"{await self._tags_base()}/tags", b"")
        return _checked(response, tag_keys_problem)

    async def find_tagged(self, keys: Sequence[str], offset: int, limit: int) -> ApiResponse:
        """``POST /v2/{project_id}/images/resource_instances/action``: one page (``limit``
        up to 1000) of the images holding any of ``keys`` (up to 10), with all their tags."""
        if not 1 <= len(keys) <= MAX_QUERY_KEYS or not 1 <= limit <= MAX_QUERY_LIMIT:
            raise ValueError("find_tagged takes 1 to 10 keys and a limit of 1 to 1000")
        body = {
            "action": "filter",
            "tags_any": [{"key": key, "values": []} for key in keys],
            "limit": str(limit),
            "offset": str(offset),
        }
        url = f"{await self._tags_base()}/resource_instances/action"
        return _checked(await self._send("POST", url, encode_body(body)), tagged_problem)

    def tags(self, answer: ApiResponse) -> dict[str, str] | None:
        return tags_in(answer)

    def tag_keys(self, answer: ApiResponse) -> dict[str, list[str]] | None:
        return tag_keys_in(answer)

    def tagged(self, answer: ApiResponse) -> tuple[dict[str, dict[str, str]], int] | None:
        return tagged_in(answer)

    def image_url(self, image_id: str) -> str:
        return f"{self.endpoint}/v2/cloudimages/{path_segment(image_id)}"

    async def update_image(self, image_id: str, operations: list[dict[str, Any]]) -> ApiResponse:
        """``PATCH /v2/cloudimages/{image_id}`` with one atomic list of operations.

        A 2xx counts only when its body is the patched image (see ``check_patched``).
        """
        response = await self._send("PATCH", self.image_url(image_id), encode_body(operations))
        return check_patched(response, image_id, operations)

    async def list_images(self, query: Mapping[str, str]) -> ApiResponse:
        """``GET /v2/cloudimages`` with the given filters (one page)."""
        url = self.listing
        if query:
            url += "?" + "&".join(
                f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(query.items())
            )
        return await self._send("GET", url, b"")

    async def preview_update(self, image_id: str, operations: list[dict[str, Any]]) -> str:
        """The PATCH that ``update_image`` would send, as text, with secrets masked."""
        return await self._preview("PATCH", self.image_url(image_id), encode_body(operations))

    async def _preview(self, method: str, url: str, body: bytes) -> str:
        """A request as text, headers sorted, secrets masked."""
        headers = await self._headers(method, url, body)
        lines = [f"{method} {url}"]
        lines += [
            f"{name}: {'***' if name.lower() in SECRET_HEADERS else value}"
            for name, value in sorted(headers.items())
        ]
        return "\n".join([*lines, "", body.decode("utf-8")])

    async def _headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        """Every header that goes on the wire, so that AK/SK signs exactly what is sent."""
        headers = {"Content-Type": CONTENT_TYPE, "Host": self._host(url), "User-Agent": USER_AGENT}
        return headers | await self._auth.authorize(self, method, url, headers, body)

    def _host(self, url: str) -> str:
        """The ``Host`` header of ``url``, split once per origin (not once per request)."""
        origin = url.split("/", 3)[2] if "//" in url else url
        host = self._hosts.get(origin)
        if host is None:
            host = self._hosts[origin] = urlsplit(url).netloc.rpartition("@")[2]
        return host

    def _unsafe_header(self, headers: Mapping[str, str]) -> str:
        """``unsafe_header(headers)``, remembering the values found safe."""
        safe = self._safe_values
        if all(value in safe for value in headers.values()):
            return ""
        unsafe = unsafe_header(headers)
        if not unsafe:
            if len(safe) > SAFE_VALUES_KEPT:
                safe.clear()
            safe.update(headers.values())
        return unsafe

    async def issue_token(self, url: str, body: bytes) -> tuple[str, float]:
        """An IAM token and when it expires (epoch seconds), from ``POST /v3/auth/tokens``."""
        if self._session is None:
            raise RuntimeError("use ImsClient as an async context manager")
        try:
            async with self._session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json;charset=utf8", "User-Agent": USER_AGENT},
                allow_redirects=False,
                **self._proxy(url),
            ) as response:
                payload = await read_capped(response, self.max_answer) or b""
                token = response.headers.get("X-Subject-Token", "")
                if response.status in (200, 201) and token:
                    return token, _expiry(payload)
                code, message, _ = parse_error(response.status, payload)
        except (aiohttp.ClientError, TimeoutError) as error:
            reason = _describe(error) if isinstance(error, aiohttp.ClientError) else "timed out"
            raise AuthFailed(f"cannot reach IAM at {url.split('?')[0]}: {reason}") from None
        raise AuthFailed(f"IAM refused the login: HTTP {response.status} {code} {message}".strip())

    async def _send(self, method: str, url: str, body: bytes) -> ApiResponse:
        """Send; after each token-expiry answer, again with a fresh token, at most
        ``TOKEN_RESENDS`` times.

        Every request that failed with a stale token is re-sent, and the login itself
        happens once per stale token however many were in flight (``Auth.expired`` is told
        which token failed, so a request refused with a token already replaced just uses the
        new one).  A re-sent request may meet the next revocation: it is sent again with the
        token after that one.  Re-sending is safe even for a PATCH: a 401 is the API
        gateway's refusal, given before IMS saw the request, so the refused attempt applied
        nothing.  The bound stops a gateway that refuses every fresh token from costing more
        than a few logins; the last 401 then stands and stops the run.
        """
        response, sent = await self._send_once(method, url, body)
        for _ in range(TOKEN_RESENDS):
            if not (_token_expired(response) and self._auth.expired(sent)):
                break
            response, sent = await self._send_once(method, url, body)  # with a fresh token
        return response

    async def _send_once(
        self, method: str, url: str, body: bytes, *, counted: bool = True
    ) -> tuple[ApiResponse, dict[str, str]]:
        """One request and the headers it went with."""
        if self._session is None:
            raise RuntimeError("use ImsClient as an async context manager")
        headers = self._fixed_headers
        if headers is None:
            try:
                headers = await self._headers(method, url, body)
            except AuthFailed as failure:
                return ApiResponse(None, None, LOGIN_FAILED, str(failure)), {}
            unsafe = self._unsafe_header(headers)
            if unsafe:
                return ApiResponse(
                    None,
                    None,
                    LOGIN_FAILED,
                    f"the {unsafe} header from {self._auth.source} holds a control "
                    "character (a line break?) — fix the credential",
                ), headers
        self.requests += counted
        try:
            async with self._session.request(
                method,
                url,
                data=body or None,
                headers=None if headers is self._fixed_headers else headers,
                allow_redirects=False,
                **self._proxy(url),
            ) as response:
                return await self._answer(response), headers
        except TimeoutError:
            return ApiResponse(
                None,
                None,
                TIMEOUT,
                f"no answer within {self._timeout.total:g} s",
                effect_unknown=True,
            ), headers
        except aiohttp.ClientConnectorError as error:
            code = TLS_FAILED if _certificate_failure(error) else CONNECT_FAILED
            return ApiResponse(None, None, code, _describe(error)), headers
        except aiohttp.ServerDisconnectedError as error:
            return ApiResponse(
                None, None, CONNECTION_ERROR, _describe(error), effect_unknown=True
            ), headers
        except aiohttp.ClientError as error:
            return ApiResponse(None, None, CONNECTION_ERROR, _describe(error)), headers

    async def _answer(self, response: aiohttp.ClientResponse) -> ApiResponse:
        """What ``response`` says, read up to ``max_answer`` bytes."""
        status = response.status
        request_id = response.headers.get("X-Request-Id", "")
        payload = await read_capped(response, self.max_answer)
        if payload is None:
            return oversize_answer(status, self.max_answer, request_id)
        if 200 <= status < 300:
            return _success(status, payload, request_id)
        code, message, body_request_id = parse_error(status, payload)
        if status == 401:
            message += _skew_note(response.headers.get("Date"))
        return ApiResponse(
            status,
            None,
            code,
            message,
            request_id or body_request_id,
            parse_retry_after(response.headers.get("Retry-After")),
        )


async def read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes | None:
    """The (decompressed) body, or None once it grows past ``cap`` bytes: never more is
    held, whatever the body's declared or compressed size.

    A body sent as is with a declared length within ``cap`` is read in one go (aiohttp
    stops at the declared length), the common case, and cheaper than reading by chunks."""
    length = response.content_length
    if length is not None and length <= cap and "Content-Encoding" not in response.headers:
        return await response.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(READ_CHUNK):
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _success(status: int, payload: bytes, request_id: str) -> ApiResponse:
    """A 2xx: its JSON body, or an unparseable answer (not JSON, too deep, not UTF-8)."""
    if not payload or payload.isspace():  # not ``strip()``: that copies the whole body
        return ApiResponse(status, None, request_id=request_id)
    try:
        body = fastjson.loads(payload)
    except RecursionError:
        problem = "JSON nested too deep to read"
    except UnicodeDecodeError:
        problem = "a body that is not UTF-8 text"
    except ValueError:
        problem = "a body that is not JSON"
    else:
        return ApiResponse(status, body, request_id=request_id)
    return ApiResponse(
        status, None, UNPARSEABLE_ANSWER, f"unparseable answer: {problem}", request_id
    )


def oversize_answer(status: int, max_answer: int, request_id: str) -> ApiResponse:
    """The answer to a body larger than ``max_answer`` bytes: unparseable, not read further."""
    return ApiResponse(
        status,
        None,
        UNPARSEABLE_ANSWER,
        f"unparseable answer: a body over {max_answer // (1024 * 1024)} MB (not read further)",
        request_id,
    )


def _checked(response: ApiResponse, problem_of: Callable[[ApiResponse], str]) -> ApiResponse:
    """``response`` as is, unless it is a 2xx that is not what the call answers: then an
    unexpected answer (a write may or may not have been applied, so it is read back)."""
    if not response.ok:
        return response
    problem = problem_of(response)
    if not problem:
        return response
    return ApiResponse(
        response.status,
        response.body,
        UNEXPECTED_ANSWER,
        f"unexpected answer: {problem}",
        response.request_id,
    )


def check_patched(
    response: ApiResponse, image_id: str, operations: list[dict[str, Any]]
) -> ApiResponse:
    """``response`` as is, unless it is a 2xx whose body is not the patched image: then an
    unexpected answer (the write may or may not have been applied, so it is read back)."""
    return _checked(
        response, lambda answer: patched_problem(answer.status, answer.body, image_id, operations)
    )


def patched_problem(
    status: int | None, body: Any, image_id: str, operations: list[dict[str, Any]]
) -> str:
    """Why ``body`` is not image ``image_id`` with ``operations`` applied; "" when it is."""
    if not isinstance(body, dict):
        return "no image in the body"
    if "id" not in body and ("error" in body or "error_code" in body):
        code, message, _ = parse_error(status or 200, encode_body(body))
        return f"an error body ({code} {message})".replace(" )", ")")
    if body.get("id") != image_id:
        return f"the body of image {str(body.get('id'))[:64]!r}"
    for operation in operations:
        key = str(operation.get("path", "")).lstrip("/")
        if operation.get("op") == "remove":
            if key in body:
                return f"the image still has {key}"
        elif not _same_value(operation.get("value"), body.get(key)):
            return f"the image's {key} is not the value sent"
    return ""


def _same_value(sent: Any, shown: Any) -> bool:
    """IMS shows some values in another JSON type than sent (flags, ``max_ram``)."""
    if sent == shown:
        return True
    if shown is None or isinstance(shown, (dict, list)):
        return False
    text = ("true" if shown else "false") if isinstance(shown, bool) else str(shown)
    return text == str(sent)


#: How many safe header values an ``ImsClient`` remembers at most.
SAFE_VALUES_KEPT = 64


def path_segment(text: str) -> str:
    """``text`` percent-encoded as one path segment (an id of plain characters, the usual
    case, is its own encoding: no ``quote`` once per request)."""
    return text if _PLAIN_SEGMENT.fullmatch(text) else quote(text, safe="")


#: Characters ``quote`` leaves as they are: letters, digits and ``_.-~``.
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9_.~-]+")


def unsafe_header(headers: Mapping[str, str]) -> str:
    """The name of a header whose value aiohttp would refuse (a control character), or ""."""
    if not _UNSAFE_HEADER_CHAR.search("".join(headers.values())):
        return ""  # the usual case: one search over every value at once
    for name, value in headers.items():
        if _UNSAFE_HEADER_CHAR.search(value):
            return name
    return ""


#: Control characters but tab, and DEL: what aiohttp refuses in a header value.
_UNSAFE_HEADER_CHAR = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), at most
    ``MAX_RETRY_AFTER``; None for no header, or a value that is not a finite time to come
    (``inf``, ``nan``, a negative number, a malformed date)."""
    if not value:
        return None
    seconds: float | None
    try:
        seconds = float(value)
    except ValueError:
        seconds = _seconds_until(value)
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)


def _seconds_until(http_date: str) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _token_expired(response: ApiResponse) -> bool:
    """A 401 that says the token is stale (``APIGW.0307``, or ``APIGW.0301`` "token expires")."""
    return response.status == 401 and (
        response.error_code == "APIGW.0307"
        or (
            response.error_code == "APIGW.0301"
            and "token" in response.error_message.lower()
            and "expire" in response.error_message.lower()
        )
    )


def _skew_note(date_header: str | None) -> str:
    """A hint when this machine's clock is off the service's by more than AK/SK allows."""
    if not date_header:
        return ""
    try:
        server = parsedate_to_datetime(date_header)
    except (TypeError, ValueError, IndexError, OverflowError):
        return ""
    skew = (datetime.now(UTC) - server.astimezone(UTC)).total_seconds()
    if abs(skew) <= MAX_CLOCK_SKEW:
        return ""
    return (
        f" (this machine's clock is {abs(skew) / 60:.0f} minutes "
        f"{'ahead of' if skew > 0 else 'behind'} the service's Date header; AK/SK "
        "signatures must be within 15 minutes of it — set the clock right, e.g. with NTP)"
    )


def _expiry(payload: bytes) -> float:
    """``token.expires_at`` as epoch seconds; a day from now if the body does not say."""
    try:
        expires = json.loads(payload)["token"]["expires_at"]
        return datetime.fromisoformat(str(expires).replace("Z", "+00:00")).timestamp()
    except (ValueError, KeyError, TypeError, RecursionError):
        return datetime.now(UTC).timestamp() + 86_400


def _certificate_failure(error: aiohttp.ClientConnectorError) -> bool:
    """The service's certificate was refused: no retry can help, only a fix."""
    return isinstance(error, aiohttp.ClientConnectorCertificateError) or (
        isinstance(error, aiohttp.ClientSSLError)
        and isinstance(error.os_error, ssl.SSLCertVerificationError)
    )


def _tls_message(error: aiohttp.ClientConnectorError) -> str:
    cause = getattr(error, "certificate_error", None) or error.os_error
    # The fix (``errors.trust_private_ca``) is the run's stop reason, in its caller's words.
    return (
        f"TLS failed at {error.host}:{error.port}: the service's certificate could not be "
        f"verified ({cause}); nothing was sent"
    )


def _describe(error: aiohttp.ClientError) -> str:
    """A one-line account of a transport error that never includes request headers."""
    if isinstance(error, aiohttp.ClientConnectorError) and _certificate_failure(error):
        return _tls_message(error)
    if isinstance(error, aiohttp.ClientConnectorError):
        return (
            f"cannot connect to {error.host}:{error.port} "
            f"({error.os_error.strerror or error}); nothing was sent"
        )
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    return f"{type(error).__name__}: {error}"
