"""The IMS HTTP client: the only module that talks aiohttp.

Every call returns an ``ApiResponse``; transport failures are data too (``status`` None),
so the runner decides what a failure means for a row.  Nothing here logs or raises with
request headers, so credentials cannot leak through it.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from batchpatch.auth import Auth
from batchpatch.errors import AuthFailed
from batchpatch.models import CONNECTION_ERROR, MAYBE_APPLIED, TIMEOUT

CONTENT_TYPE = "application/json;charset=utf-8"
USER_AGENT = "batchpatch/0.1"

#: AK/SK signatures are refused beyond this many seconds between the client's and the
#: service's clocks.
MAX_CLOCK_SKEW = 900.0

#: Header names whose values are secrets: masked wherever a request is shown.
SECRET_HEADERS = frozenset({"x-auth-token", "authorization", "x-security-token"})

#: ``error_code`` of a refused connection: nothing was sent.  (After a ``TIMEOUT`` or a
#: ``CONNECTION_ERROR`` a write may or may not have been applied.)
CONNECT_FAILED = "connect_failed"
#: No request was sent: IAM would not give a token.
LOGIN_FAILED = "iam_login_failed"


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
        return self.error_code in MAYBE_APPLIED


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
        return "", text[:300] or "(no body)", ""  # the status is told by the caller
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

    def __init__(self, endpoint: str, auth: Auth, *, timeout: float, connections: int,
                 ca_bundle: str | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._auth = auth
        self._ssl = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        #: Requests sent to IMS so far (IAM logins not included).
        self.requests = 0

    async def __aenter__(self) -> ImsClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._connections, ssl=self._ssl),
            timeout=self._timeout,
            trust_env=True,  # HTTPS_PROXY / NO_PROXY from the environment
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def auth(self) -> Auth:
        return self._auth

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
        """Every header that goes on the wire, so that AK/SK signs exactly what is sent."""
        headers = {"Content-Type": CONTENT_TYPE, "Host": urlsplit(url).netloc.rpartition("@")[2],
                   "User-Agent": USER_AGENT}
        return headers | await self._auth.authorize(self, method, url, headers, body)

    async def issue_token(self, url: str, body: bytes) -> tuple[str, float]:
        """An IAM token and when it expires (epoch seconds), from ``POST /v3/auth/tokens``."""
        if self._session is None:
            raise RuntimeError("use ImsClient as an async context manager")
        try:
            async with self._session.post(
                url, data=body, headers={"Content-Type": "application/json;charset=utf8",
                                         "User-Agent": USER_AGENT}, allow_redirects=False,
            ) as response:
                payload = await response.read()
                token = response.headers.get("X-Subject-Token", "")
                if response.status in (200, 201) and token:
                    return token, _expiry(payload)
                code, message, _ = parse_error(response.status, payload)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise AuthFailed(f"cannot reach IAM at {url.split('?')[0]}: {error}") from None
        raise AuthFailed(f"IAM refused the login: HTTP {response.status} {code} {message}"
                         .strip())

    async def _send(self, method: str, url: str, body: bytes) -> ApiResponse:
        response = await self._send_once(method, url, body)
        if _token_expired(response) and self._auth.expired():
            response = await self._send_once(method, url, body)  # with a fresh token
        return response

    async def _send_once(self, method: str, url: str, body: bytes) -> ApiResponse:
        if self._session is None:
            raise RuntimeError("use ImsClient as an async context manager")
        try:
            headers = await self._headers(method, url, body)
        except AuthFailed as failure:
            return ApiResponse(None, None, LOGIN_FAILED, str(failure))
        self.requests += 1
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
                if response.status == 401:
                    message += _skew_note(response.headers.get("Date"))
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


def _token_expired(response: ApiResponse) -> bool:
    """A 401 that says the token is stale (``APIGW.0307``, or ``APIGW.0301`` "token expires")."""
    return response.status == 401 and (
        response.error_code == "APIGW.0307"
        or (response.error_code == "APIGW.0301" and "token" in response.error_message.lower()
            and "expire" in response.error_message.lower()))


def _skew_note(date_header: str | None) -> str:
    """A hint when this machine's clock is off the service's by more than AK/SK allows."""
    if not date_header:
        return ""
    try:
        server = parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return ""
    skew = (datetime.now(UTC) - server.astimezone(UTC)).total_seconds()
    if abs(skew) <= MAX_CLOCK_SKEW:
        return ""
    return (f" (this machine's clock is {abs(skew) / 60:.0f} minutes "
            f"{'ahead of' if skew > 0 else 'behind'} the service's Date header; AK/SK "
            "signatures must be within 15 minutes of it — set the clock right, e.g. with NTP)")


def _expiry(payload: bytes) -> float:
    """``token.expires_at`` as epoch seconds; a day from now if the body does not say."""
    try:
        expires = json.loads(payload)["token"]["expires_at"]
        return datetime.fromisoformat(str(expires).replace("Z", "+00:00")).timestamp()
    except (ValueError, KeyError, TypeError):
        return datetime.now(UTC).timestamp() + 86_400


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
