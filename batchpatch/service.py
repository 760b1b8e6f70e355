"""The seam between a run and the service it changes: one small interface, no HTTP in sight.

The runner, the inventory, the retry loop and the job only ever talk to an
``ImageService``: they send an image's operations, read images, and ask the service what an
answer *means* (``classify``) as a neutral ``AnswerKind``.  Everything particular to one
API — its paths, headers, error bodies, which codes mean "throttled" or "not active", and
the check that a 2xx body really is the patched image — stays in that service's adapter
(``client.ImsClient`` for Huawei Cloud IMS).

How the next ones slot in, without touching the runner or the job:

* **A second API (OpenStack Glance)**: a ``GlanceClient`` implementing ``ImageService``
  (``PATCH /v2/images/{id}`` with ``application/openstack-images-v2.1-json-patch``, a 409
  for a conflict, a 413 with ``Retry-After`` for throttling …), with its own ``classify``
  mapping those answers onto the same ``AnswerKind`` values; the CLI (or a library caller)
  constructs it instead of ``ImsClient`` and hands it to ``job``.
* **A second request type per image (the tag API)**: an image's work becomes a sequence of
  requests (the PATCH, then one call per tag).  ``update_image`` stays the one write the
  runner knows: an adapter that also sets tags sends the PATCH and then the tag calls inside
  it and answers with the first answer that is not ``OK`` (or the last one), so each request
  is still classified by the same rules and the runner still sees one answer per attempt.
  When the steps need their own retries, the runner's per-image step becomes a loop over
  ``plan.requests`` with the same ``retry.attempt`` per request; the ledger already keeps
  one fate per image whatever its number of requests.

``tests/memory_service.py`` holds an in-memory service implementing this interface, which
tests drive the runner and the job through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, Protocol

from batchpatch.models import MAYBE_APPLIED
from batchpatch.values import value

#: A 2xx whose body is not what the request asked for (another image, an error body, no
#: body): the write may or may not have been applied, so the image is read back.
UNEXPECTED_ANSWER = "unexpected_answer"
#: An answer that could not be read: too large, not JSON, too deep, not text.
UNPARSEABLE_ANSWER = "unparseable_answer"
#: Answers that are not the success they claim to be.
NOT_SUCCESS = frozenset({UNEXPECTED_ANSWER, UNPARSEABLE_ANSWER})
#: Added to the message of an answer whose ``effect_unknown`` is set, until a read-back
#: knows better (then the run says what it found instead).
EFFECT_UNKNOWN = " (the change may or may not have been applied)"

Image = dict[str, Any]


@value
class ApiResponse:
    """What one request came back with: the status (None for no answer), the parsed body,
    and the error the service (or the transport) gave, in the service's own codes.

    ``error_message`` is the bare account of what happened ("no answer within 30 s");
    ``effect_unknown`` says the request may have reached the service with nothing to tell
    whether it took effect.  ``message`` joins the two for a person; a run that read the
    image back uses ``error_message`` with what it found instead.
    """

    status: int | None
    body: Any = None
    error_code: str = ""
    error_message: str = ""
    request_id: str = ""
    retry_after: float | None = None
    effect_unknown: bool = False

    @property
    def message(self) -> str:
        """``error_message``, saying so when nobody knows whether the change was applied."""
        return self.error_message + (EFFECT_UNKNOWN if self.effect_unknown else "")

    @property
    def ok(self) -> bool:
        """A 2xx that is what it claims: an unexpected or unreadable body is not success."""
        return (
            self.status is not None
            and 200 <= self.status < 300
            and self.error_code not in NOT_SUCCESS
        )

    @property
    def unexpected(self) -> bool:
        """A 2xx that does not show the request's effect, or an answer that cannot be read."""
        return self.error_code in NOT_SUCCESS

    @property
    def maybe_applied(self) -> bool:
        """No answer came after the request may have reached the service."""
        return self.error_code in MAYBE_APPLIED


class AnswerKind(Enum):
    """What an answer means for a run, whatever service gave it."""

    OK = "ok"
    #: "Slow down": nothing was done; the pacer backs off and the request is sent again.
    THROTTLED = "throttled"
    #: The request was not served (no connection, service unavailable): sent again.
    UNAVAILABLE = "unavailable"
    #: The write may have been applied without an answer saying so: read back first.
    MAYBE_APPLIED = "maybe_applied"
    #: The image is not in a state that accepts changes: its rows are ``skipped``.
    NOT_ACTIVE = "not_active"
    #: The change does not fit the image (``replace`` of an attribute it lacks).
    CONFLICT = "conflict"
    #: The credentials were refused: the run stops.
    AUTH_FAILED = "auth_failed"
    #: Refused for this caller; a stop only when nothing succeeded yet (bad credentials).
    FORBIDDEN = "forbidden"
    #: The service's certificate could not be verified: the run stops.
    TLS_FAILED = "tls_failed"
    #: Any other refusal: the image fails, the run goes on.
    REFUSED = "refused"

    @property
    def stops_run(self) -> bool:
        """Whatever the other images would get, this answer will be theirs too."""
        return self in (AnswerKind.AUTH_FAILED, AnswerKind.TLS_FAILED)


class ImageService(Protocol):
    """The one interface a run uses to change and read images (see the module docstring).

    ``list_images`` takes a query in the run's neutral vocabulary: ``{"id": ID}`` for one
    image, or ``{"limit": N, "marker": ID}`` for one page in id order; the adapter turns it
    into its API's filters.  Answers are never raised: transport failures are answers too
    (``status`` None), so the run decides what a failure means for a row.
    """

    @property
    def endpoint(self) -> str:
        """Where the service is, for messages and the journal's identity."""

    @property
    def listing(self) -> str:
        """Where ``list_images`` reads, for messages about the listing (IMS: the URL of
        ``GET /v2/cloudimages``)."""

    @property
    def requests(self) -> int:
        """Requests sent to the service so far."""

    async def update_image(self, image_id: str, operations: list[dict[str, Any]]) -> ApiResponse:
        """One atomic write of ``operations``; ``ok`` only when the answer shows them."""

    async def list_images(self, query: Mapping[str, str]) -> ApiResponse:
        """One page of images (see the class docstring for ``query``)."""

    async def preview_update(self, image_id: str, operations: list[dict[str, Any]]) -> str:
        """The write ``update_image`` would send, as text, secrets masked (a dry run)."""

    def classify(self, answer: ApiResponse) -> AnswerKind:
        """What ``answer`` means, in the service's rules."""

    def images(self, answer: ApiResponse) -> list[Image] | None:
        """The images a successful ``list_images`` answer carries; None if it has no list."""

    def describe(self) -> str:
        """Which credentials are used, for a message when they are refused (no secret)."""

    # --- tags (IMS: the v2 tag API, whose paths carry the project id) ----------------------

    async def tag_project(self) -> str:
        """The project the tag calls address, resolved once; raises ``OptionsError`` when
        there is none (call it before the first tag call: nothing is sent then)."""

    async def read_tags(self, image_id: str) -> ApiResponse:
        """One image's tags (see ``tags``)."""

    async def change_tags(self, image_id: str, action: str, tags: Mapping[str, str]) -> ApiResponse:
        """One ``create`` (set every tag given, overwriting) or ``delete`` (remove every key
        given; values may be "") of one image's tags; ``ok`` only for the documented
        success (IMS: 204, no body)."""

    async def preview_tags(self, image_id: str, action: str, tags: Mapping[str, str]) -> str:
        """The tag call ``change_tags`` would send, as text, secrets masked (a dry run)."""

    async def list_tag_keys(self) -> ApiResponse:
        """Every tag key of the account's images with its values (see ``tag_keys``)."""

    async def find_tagged(self, keys: Sequence[str], offset: int, limit: int) -> ApiResponse:
        """One page (``limit`` <= 1000, from ``offset``) of the images holding any of
        ``keys`` (1 to 10), each with all its tags (see ``tagged``)."""

    def tags(self, answer: ApiResponse) -> dict[str, str] | None:
        """The tags a successful ``read_tags`` answer carries; None without them."""

    def tag_keys(self, answer: ApiResponse) -> dict[str, list[str]] | None:
        """``{key: [values]}`` of a successful ``list_tag_keys`` answer; None without it."""

    def tagged(self, answer: ApiResponse) -> tuple[dict[str, dict[str, str]], int] | None:
        """``({image_id: all its tags}, total_count)`` of a ``find_tagged`` answer."""
