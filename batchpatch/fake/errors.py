"""The errors the fake answers with, in the three body shapes the real services use.

IMS itself answers ``{"error": {"code": "IMG.xxxx", "message": ...}}``; the API gateway in front
of it answers ``{"error_code": "APIGW.xxxx", "error_msg": ..., "request_id": ...}``; IAM's
Keystone API answers ``{"error": {"code": 401, "title": "Unauthorized", "message": ...}}``
(the fake's codes ``IAM.<status>`` pick that shape).  One exception type carries all three,
and the code's prefix picks the shape, so handlers and fault injection raise them alike.
AuthRefused, its subclass, also names the reason a caller was turned away, for the stats.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: The exact messages of the IMS codes the fake uses (ims-api-facts §3.2).
IMS_MESSAGES: dict[str, str] = {
    "IMG.0001": "The request message format is invalid.",
    "IMG.0002": "The image name contains more than 128 characters.",
    "IMG.0003": "The image name format is invalid.",
    "IMG.0004": "The description contains more than 1024 characters.",
    "IMG.0007": "The request body is empty.",
    "IMG.0027": "The image ID in the request does not exist.",
    "IMG.0030": "The project ID and token in the request are invalid.",
    "IMG.0035": "An attribute conflict occurred during the modification.",
    "IMG.0046": "The image is unavailable.",
    "IMG.0054": "The image description format is invalid.",
    "IMG.0055": "The memory or disk size is invalid.",
    "IMG.0060": "The number of tasks exceeds the flow control limit.",
    "IMG.0061": "Unknown system error.",
    "IMG.0105": "The operation is not supported.",
    "IMG.0115": "The image tag is invalid.",
    "IMG.0116": "The number of image tags exceeds the quota.",
    "IMG.0141": "The value of hw_firmware_type is not uefi or bios.",
}

API_NOT_FOUND = "The API does not exist or has not been published in the environment."
IAM_AUTH_FAILED = "Incorrect IAM authentication information"
#: The gateway's 429 message, in the form seen in the wild (ims-api-facts §3.3).
THROTTLED = (
    "The throttling threshold has been reached: policy user over ratelimit,limit:{limit},"
    "time:1 second"
)
BACKEND_UNAVAILABLE = "Backend unavailable."
#: The gateway's answers when IMS's own answer did not reach it (APIGW.0201, 502 and 504).
BAD_GATEWAY = "Bad gateway."
BACKEND_TIMEOUT = "Backend timeout."
TOKEN_EXPIRED = "The token must be updated."
PROJECT_UNAVAILABLE = "The project is unavailable."
#: The titles of the Keystone error bodies, by status.
KEYSTONE_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden"}


class FakeApiError(Exception):
    """A refusal: the HTTP status, the service's error code, its message, extra headers."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    @classmethod
    def ims(cls, code: str, detail: str | None = None, *, status: int = 400) -> FakeApiError:
        """An IMS error with its documented message; ``detail`` is appended for IMG.0001."""
        message = IMS_MESSAGES[code]
        if detail:
            message = f"{message} ({detail})"
        return cls(status, code, message)

    def body(self, request_id: str) -> dict[str, Any]:
        """The JSON body, shaped as the layer that owns this code would shape it."""
        if self.code.startswith("APIGW."):
            return {"error_code": self.code, "error_msg": self.message, "request_id": request_id}
        if self.code.startswith("IAM."):
            title = KEYSTONE_TITLES.get(self.status, "Error")
            return {"error": {"code": self.status, "title": title, "message": self.message}}
        return {"error": {"code": self.code, "message": self.message}}


class AuthRefused(FakeApiError):
    """A caller turned away by the gateway or IAM; ``reason`` is a short slug for the stats."""

    def __init__(self, status: int, code: str, message: str, *, reason: str) -> None:
        super().__init__(status, code, message)
        self.reason = reason

    @classmethod
    def keystone(cls, status: int, message: str, *, reason: str) -> AuthRefused:
        """An IAM (Keystone API) refusal, answered in Keystone's body shape."""
        return cls(status, f"IAM.{status}", message, reason=reason)

    @property
    def stats_key(self) -> str:
        """``CODE/reason``, e.g. ``APIGW.0301/signature``: its key in FakeStats.auth_failures."""
        return f"{self.code}/{self.reason}"


def invalid_format(detail: str) -> FakeApiError:
    """IMG.0001 with a hint of what was wrong, the fake's most common refusal."""
    return FakeApiError.ims("IMG.0001", detail)


def throttled(limit: int, retry_after: float | None = None) -> FakeApiError:
    """The gateway's 429 APIGW.0308; ``retry_after`` adds ``Retry-After`` in whole seconds."""
    headers = {} if retry_after is None else {"Retry-After": str(math.ceil(retry_after))}
    return FakeApiError(429, "APIGW.0308", THROTTLED.format(limit=limit), headers=headers)
