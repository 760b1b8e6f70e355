"""The IMS HTTP client: the only module that talks aiohttp.

Every call returns an ``ApiResponse``; transport failures are data too (``status`` None),
so the runner decides what a failure means for a row.  Nothing here logs or raises with
request headers, so credentials cannot leak through it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from batchpatch.auth import Auth

CONTENT_TYPE = "application/json;charset=utf-8"
USER_AGENT = "batchpatch/0.1"

#: Header names whose values are secrets: masked wherever a request is shown.
SECRET_HEADERS = frozenset({"x-auth-token", "authorization", "x-security-token"})

#: ``error_code`` values for failures that never got an HTTP answer.  After a timeout or a
#: lost connection a write may or may not have been applied; a refused connection sent nothing.
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
CONNECT_FAILED = "connect_failed"


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """What one request came back with."""

    status: int | None
    body: Any = None
    error_code: str = ""
    error_message: str = ""
    request_id: str = ""
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def maybe_applied(self) -> bool:
        """No answer came after the request may have reached the service."""
        return self.error_code in (TIMEOUT, CONNECTION_ERROR)


def encode_body(body: Any) -> bytes:
    """The exact bytes sent (and, with AK/SK, signed): compact UTF-8 JSON."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def parse_error(status: int, payload: bytes) -> tuple[str, str, str]:
    """``(code, message, request_id)`` from an error body in either IMS or gateway shape.

    IMS: ``{"error": {"code": "IMG.0035", "message": ...}}``; API gateway:
    ``{"error_code": "APIGW.0308", "error_msg": ..., "request_id": ...}``.
    """
    try:
        data = json.loads(payload)
    except ValueError:
        text = payload.decode("utf-8", "replace").strip()
        return "", text[:300] or f"HTTP {status} with no body", ""
    if isinstance(data, dict):
        if "error_code" in data or "error_msg" in data:
            return (str(data.get("error_code", "")), str(data.get("error_msg", "")),
                    str(data.get("request_id", "")))
        inner = data.get("error")
        if isinstance(inner, dict):
            return str(inner.get("code", "")), str(inner.get("message", "")), ""
    return "", json.dumps(data, ensure_ascii=False)[:300], ""


class ImsClient:
    """Calls IMS at ``endpoint`` (``https://ims.REGION.myhuaweicloud.com``)."""

    def __init__(self, endpoint: str, auth: Auth, *, timeout: float, connections: int) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._auth = auth
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ImsClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connections),
            timeout=self._timeout,
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def image_url(self, image_id: str) -> str:
        return f"{self.endpoint}/v2/cloudimages/{quote(image_id, safe='')}"

    async def update_image(self, image_id: str, operations: list[dict[str, Any]]) -> ApiResponse:
        """``PATCH /v2/cloudimages/{image_id}`` with one atomic list of operations."""
        return await self._send("PATCH", self.image_url(image_id), encode_body(operations))

    async def list_images(self, query: dict[str, str]) -> ApiResponse:
        """``GET /v2/cloudimages`` with the given filters (one page)."""
        url = f"{self.endpoint}/v2/cloudimages"
        if query:
            url += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}"
                                  for k, v in sorted(query.items()))
        return await self._send("GET", url, b"")

    async def preview_update(self, image_id: str, operations: list[dict[str, Any]]) -> str:
        """The PATCH that ``update_image`` would send, as text, with secrets masked."""
        url, body = self.image_url(image_id), encode_body(operations)
        headers = await self._headers("PATCH", url, body)
        lines = [f"PATCH {url}"]
        lines += [f"{name}: {'***' if name.lower() in SECRET_HEADERS else value}"
                  for name, value in sorted(headers.items())]
        return "\n".join([*lines, "", body.decode("utf-8")])

    async def _headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        return {"Content-Type": CONTENT_TYPE, "User-Agent": USER_AGENT,
                **await self._auth.headers(method, url, body)}

    async def _send(self, method: str, url: str, body: bytes) -> ApiResponse:
        if self._session is None:
            raise RuntimeError("use ImsClient as an async context manager")
        headers = await self._headers(method, url, body)
        try:
            async with self._session.request(
                method, url, data=body or None, headers=headers, allow_redirects=False
            ) as response:
                payload = await response.read()
                request_id = response.headers.get("X-Request-Id", "")
                if 200 <= response.status < 300:
                    return ApiResponse(response.status, _json_or_none(payload),
                                       request_id=request_id)
                code, message, body_request_id = parse_error(response.status, payload)
                return ApiResponse(response.status, None, code, message,
                                   request_id or body_request_id,
                                   parse_retry_after(response.headers.get("Retry-After")))
        except TimeoutError:
            return ApiResponse(None, None, TIMEOUT,
                               f"no answer within {self._timeout.total:g} s "
                               "(the change may or may not have been applied)")
        except aiohttp.ClientConnectorError as error:
            return ApiResponse(None, None, CONNECT_FAILED, _describe(error))
        except aiohttp.ClientError as error:
            return ApiResponse(None, None, CONNECTION_ERROR, _describe(error))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _json_or_none(payload: bytes) -> Any:
    try:
        return json.loads(payload) if payload else None
    except ValueError:
        return None


def _describe(error: aiohttp.ClientError) -> str:
    """A one-line account of a transport error that never includes request headers."""
    if isinstance(error, aiohttp.ClientConnectorError):
        return (f"cannot connect to {error.host}:{error.port} "
                f"({error.os_error.strerror or error}); nothing was sent")
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the server closed the connection (the change may or may not have been applied)"
    return f"{type(error).__name__}: {error}"
