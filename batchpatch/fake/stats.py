"""What the fake saw: request counts, PATCH concurrency, and a log in arrival order.

Written from the server's event loop thread, read by tests from theirs, so every access holds
one lock; ``snapshot()`` gives a consistent view of everything at once.  Arrival times are
``time.monotonic()`` readings (or the injected clock's), so a test can compare them with its
own and with another process's on the same host.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

RequestKind = Literal[
    "patch", "list", "token", "tag_write", "tag_read", "tag_list", "tag_query", "projects"
]
#: The kinds that change tags: ``tags/action``, AddImageTag, DeleteImageTag.
TAG_WRITE_KINDS = frozenset({"tag_write"})
#: The kinds that read tags: one image's, the tenant's keys, the tag query.
TAG_READ_KINDS = frozenset({"tag_read", "tag_list", "tag_query"})
Clock = Callable[[], float]


class LogEntry(NamedTuple):
    """One request; ``status`` is None while the request is still being handled.

    A request answered with no response has the status nginx logs for it: 444 when the
    server closed the connection (an injected reset, or a hang ended by shutdown), 499 when
    the client went away first (from a hang).
    """

    method: str
    path: str
    image_id: str | None
    status: int | None


@dataclass(frozen=True)
class StatsSnapshot:
    """A consistent copy of FakeStats at one moment."""

    total_requests: int
    patch_requests: int
    list_requests: int
    in_flight: int
    max_in_flight: int
    overlaps: int
    log: tuple[LogEntry, ...]
    patches_by_image: Counter[str]
    #: ``arrivals[i]`` is when ``log[i]`` arrived (the clock read as its handling began);
    #: nondecreasing, since the log is in arrival order.
    arrivals: tuple[float, ...] = ()
    #: Injected faults by kind (see FakeStats).
    faults: Counter[str] = field(default_factory=Counter)
    #: How many PATCHes were applied (committed to the store) per image.
    applied_by_image: Counter[str] = field(default_factory=Counter)
    #: Tokens IAM issued (``POST /v3/auth/tokens`` answered 201).
    tokens_issued: int = 0
    #: Refused callers by ``CODE/reason`` (see FakeStats).
    auth_failures: Counter[str] = field(default_factory=Counter)
    #: Admitted requests by how they authenticated (see FakeStats).
    auth_successes: Counter[str] = field(default_factory=Counter)
    #: The signed X-Project-Id values of admitted AK/SK requests.
    project_ids: Counter[str] = field(default_factory=Counter)
    #: Every request by its kind (``patch``, ``list``, ``token``, ``tag_write``,
    #: ``tag_read``, ``tag_list``, ``tag_query``, ``projects``; unrouted ones are absent).
    requests_by_kind: Counter[str] = field(default_factory=Counter)
    #: Tag write requests received (``tags/action``, add one, delete one), per image ...
    tag_writes_by_image: Counter[str] = field(default_factory=Counter)
    #: ... and those the store committed, per image, whatever the client saw.
    tag_applied_by_image: Counter[str] = field(default_factory=Counter)

    @property
    def tag_write_requests(self) -> int:
        """How many tag write requests arrived (whatever their outcome)."""
        return sum(self.tag_writes_by_image.values())

    @property
    def tag_read_requests(self) -> int:
        """How many tag reads arrived: one image's tags, the tenant's keys, tag queries."""
        return sum(self.requests_by_kind[kind] for kind in TAG_READ_KINDS)

    def arrivals_of(self, method: str) -> list[float]:
        """The arrival times of the requests with this HTTP method, in arrival order."""
        return [
            when
            for entry, when in zip(self.log, self.arrivals, strict=True)
            if entry.method == method
        ]


class FakeStats:
    """Thread-safe counters the server updates and tests read.

    ``total_requests``, ``patch_requests``, ``list_requests``, ``patches_by_image`` and the
    log count every request on arrival, whatever its outcome (a 401 included).
    ``max_in_flight`` is the most PATCH requests handled at the same moment; ``overlaps``
    counts the PATCH requests that arrived while another PATCH for the same image was still
    being handled.  ``arrivals`` holds, for each log entry, the ``clock()`` reading taken as
    the server began handling it (``time.monotonic`` unless another clock is injected).

    ``faults`` counts injected faults by kind: the script's names (``"500"``, ``"503"``,
    ``"429"``, ``"IMG.0060"``, ``"reset_before"``, ``"reset_after"``, ``"hang"``), whether
    scripted or drawn, and ``"rate_limit"`` for requests the rate limit refused.
    ``applied_by_image`` counts, per image, the PATCHes the store committed, whatever the
    client saw (a ``reset_after`` included), so a test can prove nothing was applied twice;
    ``patches_by_image`` counts the PATCH requests received.

    Authentication.  ``auth_failures`` counts refusals by ``CODE/reason``: the gateway's
    (``APIGW.0301/token-missing``, ``…/token-invalid``, ``APIGW.0307/token-expired``,
    ``APIGW.0301/ak-unknown``, ``…/locked``, ``…/date``, ``…/signature``,
    ``APIGW.0310/project``) and IAM's (``IAM.400/malformed``, ``IAM.401/password``,
    ``IAM.401/scope``).  ``auth_successes`` counts admitted IMS requests by method:
    ``aksk``, ``aksk-unverified``, ``iam-token``, ``token``, ``any-token``.
    ``project_ids`` counts the signed X-Project-Id of admitted AK/SK requests;
    ``tokens_issued`` the tokens IAM issued.  Token values are never recorded.

    Tags.  ``requests_by_kind`` counts every routed request by kind; tag writes are not
    PATCHes: ``tag_writes_by_image`` counts the tag write requests received per image,
    ``tag_applied_by_image`` those the store committed; ``tag_write_requests`` and
    ``tag_read_requests`` are the totals a test asserts ("zero tag writes").
    """

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._log: list[LogEntry] = []
        self._arrivals: list[float] = []
        self._total = self._patches = self._lists = 0
        self._in_flight = self._max_in_flight = self._overlaps = 0
        self._in_flight_by_image: Counter[str] = Counter()
        self._patches_by_image: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._applied_by_image: Counter[str] = Counter()
        self._tokens_issued = 0
        self._auth_failures: Counter[str] = Counter()
        self._auth_successes: Counter[str] = Counter()
        self._project_ids: Counter[str] = Counter()
        self._by_kind: Counter[str] = Counter()
        self._tag_writes: Counter[str] = Counter()
        self._tag_applied: Counter[str] = Counter()

    def __repr__(self) -> str:
        s = self.snapshot()
        return (
            f"<FakeStats requests={s.total_requests} patches={s.patch_requests} "
            f"lists={s.list_requests} max_in_flight={s.max_in_flight} overlaps={s.overlaps}>"
        )

    # --- written by the server -------------------------------------------------------------

    def request_started(
        self, method: str, path: str, kind: RequestKind | None, image_id: str | None
    ) -> int:
        """Count, log and time an arriving request; return its index for ``request_finished``."""
        with self._lock:
            self._arrivals.append(self._clock())  # under the lock, so arrivals stay in order
            self._total += 1
            if kind is not None:
                self._by_kind[kind] += 1
            if kind in TAG_WRITE_KINDS and image_id is not None:
                self._tag_writes[image_id] += 1
            if kind == "list":
                self._lists += 1
            elif kind == "patch" and image_id is not None:
                self._patches += 1
                self._patches_by_image[image_id] += 1
            self._log.append(LogEntry(method, path, image_id, None))
            return len(self._log) - 1

    def request_finished(self, index: int, status: int) -> None:
        with self._lock:
            self._log[index] = self._log[index]._replace(status=status)

    def patch_started(self, image_id: str) -> None:
        """An authenticated PATCH handler starts: it is in flight until ``patch_finished``."""
        with self._lock:
            if self._in_flight_by_image[image_id]:
                self._overlaps += 1
            self._in_flight_by_image[image_id] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def patch_finished(self, image_id: str) -> None:
        with self._lock:
            self._in_flight -= 1
            self._in_flight_by_image[image_id] -= 1
            if not self._in_flight_by_image[image_id]:
                del self._in_flight_by_image[image_id]

    def fault_injected(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def patch_applied(self, image_id: str) -> None:
        """The store committed a PATCH of this image."""
        with self._lock:
            self._applied_by_image[image_id] += 1

    def tags_applied(self, image_id: str) -> None:
        """The store committed a tag write of this image."""
        with self._lock:
            self._tag_applied[image_id] += 1

    def auth_failed(self, key: str) -> None:
        """A caller was refused; ``key`` is ``CODE/reason``."""
        with self._lock:
            self._auth_failures[key] += 1

    def auth_succeeded(self, method: str, project_id: str | None = None) -> None:
        with self._lock:
            self._auth_successes[method] += 1
            if project_id is not None:
                self._project_ids[project_id] += 1

    def token_issued(self) -> None:
        with self._lock:
            self._tokens_issued += 1

    # --- read by tests ---------------------------------------------------------------------

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return StatsSnapshot(
                total_requests=self._total,
                patch_requests=self._patches,
                list_requests=self._lists,
                in_flight=self._in_flight,
                max_in_flight=self._max_in_flight,
                overlaps=self._overlaps,
                log=tuple(self._log),
                patches_by_image=Counter(self._patches_by_image),
                arrivals=tuple(self._arrivals),
                faults=Counter(self._faults),
                applied_by_image=Counter(self._applied_by_image),
                tokens_issued=self._tokens_issued,
                auth_failures=Counter(self._auth_failures),
                auth_successes=Counter(self._auth_successes),
                project_ids=Counter(self._project_ids),
                requests_by_kind=Counter(self._by_kind),
                tag_writes_by_image=Counter(self._tag_writes),
                tag_applied_by_image=Counter(self._tag_applied),
            )

    @property
    def total_requests(self) -> int:
        return self.snapshot().total_requests

    @property
    def patch_requests(self) -> int:
        return self.snapshot().patch_requests

    @property
    def list_requests(self) -> int:
        return self.snapshot().list_requests

    @property
    def max_in_flight(self) -> int:
        return self.snapshot().max_in_flight

    @property
    def overlaps(self) -> int:
        return self.snapshot().overlaps

    @property
    def log(self) -> list[LogEntry]:
        return list(self.snapshot().log)

    @property
    def patches_by_image(self) -> Counter[str]:
        return self.snapshot().patches_by_image

    @property
    def arrivals(self) -> list[float]:
        return list(self.snapshot().arrivals)

    @property
    def faults(self) -> Counter[str]:
        return self.snapshot().faults

    @property
    def applied_by_image(self) -> Counter[str]:
        return self.snapshot().applied_by_image

    @property
    def tokens_issued(self) -> int:
        return self.snapshot().tokens_issued

    @property
    def auth_failures(self) -> Counter[str]:
        return self.snapshot().auth_failures

    @property
    def auth_successes(self) -> Counter[str]:
        return self.snapshot().auth_successes

    @property
    def project_ids(self) -> Counter[str]:
        return self.snapshot().project_ids

    @property
    def requests_by_kind(self) -> Counter[str]:
        return self.snapshot().requests_by_kind

    @property
    def tag_write_requests(self) -> int:
        return self.snapshot().tag_write_requests

    @property
    def tag_read_requests(self) -> int:
        return self.snapshot().tag_read_requests

    @property
    def tag_writes_by_image(self) -> Counter[str]:
        return self.snapshot().tag_writes_by_image

    @property
    def tag_applied_by_image(self) -> Counter[str]:
        return self.snapshot().tag_applied_by_image
