"""The OpenStack Glance v2 adapter of ``service.ImageService``.

Glance is where IMS came from, so most of the IMS client holds: one atomic JSON-patch
write per image, the same transport, caps and token handling (``client.ImsClient``, which
this class extends).  What differs is Glance's and lives here:

* ``PATCH /v2/images/{id}`` with ``Content-Type: application/openstack-images-v2.1-json-patch``
  (anything else is a 415); reads are ``GET /v2/images/{id}`` for one image and
  ``GET /v2/images?limit=&marker=`` for a page, whose ``next`` link ``pages`` follows;
* errors come as ``{"message", "code", "title"}`` once ``Accept: application/json`` is
  sent (HTML or plain text otherwise), the message padded with ``<br />`` and blank lines,
  which are stripped; the request id is the ``x-openstack-request-id`` header;
* what the answers mean (``classify_glance``): 409 is a conflict (``replace``/``remove`` of a
  property the image lacks), 403 a refusal of that attribute (read-only, reserved
  ``os_glance_`` prefix, a base attribute removed), 404 no such image, 413 the property
  quota — unless it carries ``Retry-After``, Glance's old rate-limit answer — and 415 the
  media type; 429 and 503 are throttling and unavailability exactly as for IMS;
* a 401 is Keystone's (keystonemiddleware in front of Glance) refusing an expired or
  revoked token: a password login logs in again and the request is sent once more
  (``_send``); a fixed token cannot be renewed, so its 401 stands and stops the run.

Facts: shared/reference/glance-peer.md (62 PATCH cases against glance-api 33.0.0).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from batchpatch.client import (
    CONNECT_FAILED,
    LOGIN_FAILED,
    TLS_FAILED,
    TOKEN_RESENDS,
    USER_AGENT,
    ClientResponse,
    ImsClient,
    _success,
    check_patched,
    encode_body,
    oversize_answer,
    parse_retry_after,
    read_capped,
)
from batchpatch.service import AnswerKind, ApiResponse, Image

__all__ = ["PATCH_CONTENT_TYPE", "GlanceClient", "classify_glance", "parse_glance_error"]

PATCH_CONTENT_TYPE = "application/openstack-images-v2.1-json-patch"
REQUEST_ID_HEADER = "x-openstack-request-id"
#: Statuses after which a write may have been applied (the server may have committed it).
AMBIGUOUS_STATUSES = frozenset({500, 502, 504})
#: The answer to a page that does not exist: Glance's ``next`` is never followed elsewhere.
LISTING_PATH = "/v2/images"

_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
#: The first line of the plain-text form: ``409 Conflict``.
_STATUS_LINE = re.compile(r"\A\s*\d{3} [^\n]*\n")


def clean_message(text: str) -> str:
    """Glance's message without its ``<br />`` padding, tags and runs of white space."""
    text = html.unescape(_TAG.sub(" ", _BREAK.sub(" ", text)))
    return _SPACE.sub(" ", text).strip()


def parse_glance_error(status: int, payload: bytes) -> tuple[str, str]:
    """``(code, message)`` of a Glance error body: JSON ``{"message", "code", "title"}``,
    or the plain-text and HTML forms (``"409 Conflict\\n\\n<message>"``); ``code`` is the
    title (``Conflict``), the message cleaned of Glance's markup."""
    text = payload.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and "message" in data:
        return str(data.get("title", "")), clean_message(str(data["message"]))[:1000]
    if isinstance(data, dict) and isinstance(data.get("error"), dict):  # Keystone's shape
        inner = data["error"]
        return str(inner.get("title", "")), clean_message(str(inner.get("message", "")))[:1000]
    body = re.sub(r"<title>.*?</title>|<h1>.*?</h1>", " ", text, flags=re.DOTALL)
    message = clean_message(_STATUS_LINE.sub("", body, count=1))
    return "", message[:1000] or f"HTTP {status} (no message)"


def classify_glance(response: ApiResponse) -> AnswerKind:
    """What a Glance answer means for a run (see the module docstring)."""
    if response.ok:
        return AnswerKind.OK
    if response.unexpected or response.maybe_applied or response.status in AMBIGUOUS_STATUSES:
        return AnswerKind.MAYBE_APPLIED
    if response.status == 429 or (response.status == 413 and response.retry_after is not None):
        return AnswerKind.THROTTLED
    if response.status == 503 or response.error_code == CONNECT_FAILED:
        return AnswerKind.UNAVAILABLE
    if response.status == 401 or response.error_code == LOGIN_FAILED:
        return AnswerKind.AUTH_FAILED
    if response.error_code == TLS_FAILED:
        return AnswerKind.TLS_FAILED
    if response.status == 409:
        return AnswerKind.CONFLICT
    return AnswerKind.REFUSED


def _image_list(body: Any) -> list[Image] | None:
    images = body.get("images") if isinstance(body, dict) else None
    if not isinstance(images, list):
        return None
    return [image for image in images if isinstance(image, dict)]


class GlanceClient(ImsClient):
    """Calls Glance at ``endpoint`` (e.g. ``http://127.0.0.1:9292``, without ``/v2``)."""

    async def __aenter__(self) -> GlanceClient:
        await super().__aenter__()
        return self

    def classify(self, answer: ApiResponse) -> AnswerKind:
        return classify_glance(answer)

    def images(self, answer: ApiResponse) -> list[Image] | None:
        return _image_list(answer.body)

    @property
    def listing(self) -> str:
        return self.endpoint + LISTING_PATH

    def image_url(self, image_id: str) -> str:
        return f"{self.listing}/{quote(image_id, safe='')}"

    async def list_images(self, query: Mapping[str, str]) -> ApiResponse:
        """``{"id": ID}``: ``GET /v2/images/{ID}``, answered as a list of that one image (none
        when Glance says 404); else one page, ``GET /v2/images?limit=&marker=``."""
        if "id" in query:
            return await self._one_image(query["id"])
        url = self.listing
        if query:
            url += "?" + "&".join(
                f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(query.items())
            )
        return await self._send("GET", url, b"")

    async def _one_image(self, image_id: str) -> ApiResponse:
        answer = await self._send("GET", self.image_url(image_id), b"")
        if answer.status == 404:  # the answer to "which images have this id": none
            return ApiResponse(200, {"images": []}, request_id=answer.request_id)
        if answer.ok and isinstance(answer.body, dict):
            return ApiResponse(
                answer.status, {"images": [answer.body]}, request_id=answer.request_id
            )
        return answer

    async def pages(self, limit: int = 500) -> AsyncIterator[ApiResponse]:
        """Every page of the listing, following Glance's ``next`` link until there is none
        (or an answer is not a page: it is the last one yielded).  A ``next`` that leaves
        ``/v2/images`` of this endpoint, or repeats itself, is not followed."""
        url: str | None = f"{self.listing}?limit={limit}"
        seen: set[str] = set()
        while url is not None:
            seen.add(url)
            answer = await self._send("GET", url, b"")
            yield answer
            url = self._next_url(answer)
            if url in seen:
                return

    def _next_url(self, answer: ApiResponse) -> str | None:
        following = answer.body.get("next") if answer.ok and isinstance(answer.body, dict) else None
        if not isinstance(following, str):
            return None
        parts = urlsplit(following)
        if parts.scheme or parts.netloc or not parts.path.startswith(LISTING_PATH):
            return None
        return self.endpoint + following

    async def _send(self, method: str, url: str, body: bytes) -> ApiResponse:
        """Send; after a 401, again with a fresh token when the credentials can get one, at
        most ``TOKEN_RESENDS`` times.  Keystone gives no "expired" code of its own, so any
        401 counts.  Re-sending is safe even for a PATCH: keystonemiddleware refuses the
        token before Glance sees the request, so the refused attempt applied nothing."""
        response, sent = await self._send_once(method, url, body)
        for _ in range(TOKEN_RESENDS):
            if not (response.status == 401 and self._auth.expired(sent)):
                break
            response, sent = await self._send_once(method, url, body)  # with a fresh token
        return response

    async def update_image(self, image_id: str, operations: list[dict[str, Any]]) -> ApiResponse:
        """``PATCH /v2/images/{id}``: one atomic JSON patch (Glance applies all or nothing);
        ``ok`` only when the answer is the patched image."""
        response = await self._send("PATCH", self.image_url(image_id), encode_body(operations))
        return check_patched(response, image_id, operations)

    async def _headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        headers = {
            "Accept": "application/json",  # else Glance's errors come as HTML or plain text
            "Host": urlsplit(url).netloc.rpartition("@")[2],
            "User-Agent": USER_AGENT,
        }
        if method == "PATCH":
            headers["Content-Type"] = PATCH_CONTENT_TYPE
        return headers | await self._auth.authorize(self, method, url, headers, body)

    async def _answer(self, response: ClientResponse) -> ApiResponse:
        status = response.status
        request_id = response.headers.get(REQUEST_ID_HEADER, "")
        payload = await read_capped(response, self.max_answer)
        if payload is None:
            return oversize_answer(status, self.max_answer, request_id)
        if 200 <= status < 300:
            return _success(status, payload, request_id)
        code, message = parse_glance_error(status, payload)
        return ApiResponse(
            status,
            None,
            code,
            message,
            request_id,
            parse_retry_after(response.headers.get("Retry-After")),
        )
