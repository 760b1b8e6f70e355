"""Plain, frozen data shared by every layer: patches, outcomes, limits."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from batchpatch.values import value

JsonValue = str | int


@value
class Operation:
    """One JSON-patch operation of an IMS UpdateImage body."""

    op: str
    path: str
    value: JsonValue | None = None

    def to_json(self) -> dict[str, Any]:
        if self.op == "remove":
            return {"op": self.op, "path": self.path}
        return {"op": self.op, "path": self.path, "value": self.value}


@value
class ImagePatch:
    """Every change a sheet asks of one image, in sheet order: sent as one atomic PATCH.

    ``sources[i]`` is the spreadsheet row that asked for ``operations[i]`` (a wide row
    asks for several): the row number a person sees, the header being row 1 of a sheet with
    nothing above it.  Every model counts rows this way; only ``Sheet.rows`` knows where
    they start.
    """

    image_id: str
    operations: tuple[Operation, ...]
    sources: tuple[int, ...]

    @property
    def rows(self) -> tuple[int, ...]:
        """The spreadsheet rows of this image, in sheet order; they share its outcome."""
        return tuple(sorted(set(self.sources)))

    def body(self) -> list[dict[str, Any]]:
        return [operation.to_json() for operation in self.operations]


class Status(StrEnum):
    """What happened to a row, as written in the report's ``status`` column."""

    SUCCEEDED = "succeeded"
    UNCHANGED = "unchanged"
    PLANNED = "planned"
    FAILED = "failed"
    SKIPPED = "skipped"
    INVALID = "invalid"
    NOT_ATTEMPTED = "not_attempted"

    @property
    def done(self) -> bool:
        """True when the row is (or, in a dry run, would be) as the sheet asks."""
        return self in _DONE


_DONE = frozenset({Status.SUCCEEDED, Status.UNCHANGED, Status.PLANNED})

#: ``error_code`` values of writes that got no answer after they may have reached the
#: service: they may or may not have been applied, so the image must be read back.
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
INTERRUPTED = "interrupted"
MAYBE_APPLIED = frozenset({TIMEOUT, CONNECTION_ERROR, INTERRUPTED})


@value
class PartOutcome:
    """The answer one request of an image's work ended with (``part``: ``attributes`` for
    the PATCH, ``tags`` for a tag call), so each row is reported by its own request."""

    part: str
    status: Status
    http_status: int | None = None
    error_code: str = ""
    error_message: str = ""
    request_id: str = ""


@value
class Outcome:
    """The recorded fate of one image (and so of every row that asked for it).

    ``parts``: when the image's work was more than one request (a PATCH and tag calls),
    each request's own ending; the image's fields are then the first failed one's (its
    message prefixed with its part), or the last one's."""

    image_id: str
    status: Status
    http_status: int | None = None
    error_code: str = ""
    error_message: str = ""
    request_id: str = ""
    attempts: int = 0
    elapsed_ms: int | None = None
    parts: tuple[PartOutcome, ...] = ()

    @property
    def maybe_applied(self) -> bool:
        return self.error_code in MAYBE_APPLIED


DEFAULT_CONCURRENCY = 8
DEFAULT_RATE = 10.0
DEFAULT_TIMEOUT = 30.0
#: The range of ``rate`` (request starts per second): below it a run would wait hours per
#: request, above it the interval is too small to schedule.
MIN_RATE, MAX_RATE = 0.01, 100_000.0
#: The most requests in flight a run may ask for.
MAX_CONCURRENCY = 1000


@dataclass(frozen=True, slots=True)
class Limits:
    """How hard the run may push the service.

    ``rate`` caps request *starts* per second with no burst (the first start is immediate,
    each next one at least ``1/rate`` later); ``concurrency`` caps requests in flight.
    """

    concurrency: int = DEFAULT_CONCURRENCY
    rate: float = DEFAULT_RATE
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be a whole number from 1 to {MAX_CONCURRENCY}")
        if not MIN_RATE <= self.rate <= MAX_RATE:
            raise ValueError(f"rate must be from {MIN_RATE:g} to {MAX_RATE:g} requests per second")
        if not self.timeout > 0:
            raise ValueError("timeout must be greater than 0 seconds")
