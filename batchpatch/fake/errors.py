"""The errors the fake answers with, in the two body shapes the real service uses.

IMS itself answers ``{"error": {"code": "IMG.xxxx", "message": ...}}``; the API gateway in front
of it answers ``{"error_code": "APIGW.xxxx", "error_msg": ..., "request_id": ...}``.  One
exception type carries both, and the code's prefix picks the shape, so handlers (and, later,
fault injection) raise any of them the same way.
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
    "IMG.0035": "An attribute conflict occurred during the modification.",
    "IMG.0046": "The image is unavailable.",
    "IMG.0054": "The image description format is invalid.",
    "IMG.0055": "The memory or disk size is invalid.",
    "IMG.0060": "The number of tasks exceeds the flow control limit.",
    "IMG.0061": "Unknown system error.",
    "IMG.0105": "The operation is not supported.",
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
        return {"error": {"code": self.code, "message": self.message}}


def invalid_format(detail: str) -> FakeApiError:
    """IMG.0001 with a hint of what was wrong, the fake's most common refusal."""
    return FakeApiError.ims("IMG.0001", detail)


def throttled(limit: int, retry_after: float | None = None) -> FakeApiError:
    """The gateway's 429 APIGW.0308; ``retry_after`` adds ``Retry-After`` in whole seconds."""
    headers = {} if retry_after is None else {"Retry-After": str(math.ceil(retry_after))}
    return FakeApiError(429, "APIGW.0308", THROTTLED.format(limit=limit), headers=headers)
