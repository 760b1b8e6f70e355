"""What a run's requests did, recorded at the service boundary in bounded memory.

``RecordingService`` wraps any ``ImageService`` and tells a ``Telemetry`` of every request:
when it went out, how long its answer took, its status, what the answer meant
(``AnswerKind``), its error code and request id.  The runner and the job see the same
interface as before, so nothing in them knows telemetry exists.

Memory does not grow with the number of requests: a 250,000-image run keeps one small
counter per second of the run (requests, throttled answers), one latency histogram with
buckets 2 % apart (so a percentile is within 2 % of the exact one), and per error code a
count and the latest request id seen — at most ``MAX_ERROR_CODES`` codes.  A run across
regions also keeps, per region, its requests, throttled answers, answer kinds and one
latency histogram (``RegionTally``): a handful of counters a region, whatever the run's size.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from batchpatch.service import AnswerKind, ApiResponse, Image, ImageService

Clock = Callable[[], float]

#: Latency buckets grow by this factor: a percentile read from them is within 2 %.
BUCKET_GROWTH = 1.02
#: The smallest latency told apart (seconds); anything faster falls in the first bucket.
SMALLEST_LATENCY = 0.0001
#: Error codes kept apart; the rest are counted together under ``OTHER_CODES``.
MAX_ERROR_CODES = 100
OTHER_CODES = "(other codes)"
#: The latency percentiles a run's page and summary show.
PERCENTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


@dataclass
class Second:
    """The requests sent during one second of the run."""

    requests: int = 0
    throttled: int = 0
    failed: int = 0


@dataclass
class CodeSeen:
    """How often one error code came back, and the latest request id that carried it (the
    one a failed row's report shows, when the image failed with it)."""

    count: int = 0
    request_id: str = ""


class LatencyHistogram:
    """Latencies in logarithmic buckets: bounded memory, percentiles within 2 %."""

    __slots__ = ("_buckets", "count", "largest", "smallest")

    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self.count = 0
        self.smallest = math.inf
        self.largest = 0.0

    def __repr__(self) -> str:
        return f"<LatencyHistogram count={self.count} buckets={len(self._buckets)}>"

    def add(self, seconds: float) -> None:
        if seconds <= SMALLEST_LATENCY:
            seconds, bucket = max(seconds, 0.0), 0
        else:
            bucket = math.ceil(math.log(seconds / SMALLEST_LATENCY, BUCKET_GROWTH))
        self._buckets[bucket] += 1
        self.count += 1
        if seconds < self.smallest:
            self.smallest = seconds
        if seconds > self.largest:
            self.largest = seconds

    def percentile(self, share: float) -> float | None:
        """The latency ``share`` (0 to 1) of the requests took at most; None if none."""
        if not self.count:
            return None
        rank = max(1, math.ceil(share * self.count))
        seen = 0
        for bucket in sorted(self._buckets):
            seen += self._buckets[bucket]
            if seen >= rank:
                return min(max(_upper_bound(bucket), self.smallest), self.largest)
        return self.largest  # not reached: the buckets hold every count


def _upper_bound(bucket: int) -> float:
    return float(SMALLEST_LATENCY * BUCKET_GROWTH**bucket)


@dataclass
class RegionTally:
    """One region's requests, throttled answers and latencies (a run across regions)."""

    requests: int = 0
    throttled: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    #: The project id IAM named for the region, when the run looked it up ("" if not).
    project_id: str = ""

    def add(self, seconds: float, kind: AnswerKind) -> None:
        self.requests += 1
        self.throttled += kind == AnswerKind.THROTTLED
        self.kinds[kind.value] += 1
        self.latency.add(seconds)


@dataclass
class Telemetry:
    """Every request of one run, summarised as it happens (see the module docstring).

    ``clock`` is monotonic (``time.monotonic`` unless a test injects one); ``wall`` gives
    the start and end as dates.
    """

    clock: Clock = time.monotonic
    wall: Clock = time.time
    seconds: dict[int, Second] = field(default_factory=dict)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    kinds: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    codes: dict[str, CodeSeen] = field(default_factory=dict)
    requests: int = 0
    #: Each region's part, by region, when requests carry a region (``RecordingService``).
    regions: dict[str, RegionTally] = field(default_factory=dict)
    started_at: float = field(init=False, default=0.0)
    ended_at: float | None = field(init=False, default=None)
    _origin: float = field(init=False, default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._origin, self.started_at = self.clock(), self.wall()

    @property
    def throttled(self) -> int:
        """Answers that said "slow down"."""
        return self.kinds[AnswerKind.THROTTLED.value]

    def now(self) -> float:
        """Seconds since the run started, by ``clock``."""
        return self.clock() - self._origin

    def finish(self) -> None:
        """The run is over: its end is now."""
        self.ended_at = self.wall()

    def record(
        self,
        sent: float,
        answered: float,
        answer: ApiResponse,
        kind: AnswerKind,
        region: str | None = None,
    ) -> None:
        """One request, sent and answered at these ``now()`` readings (to ``region``'s
        endpoint, when the run is across regions)."""
        self.requests += 1
        took = answered - sent
        if region is not None:
            self.region(region).add(took, kind)
        at = max(0, int(sent))
        second = self.seconds.get(at)
        if second is None:
            second = self.seconds[at] = Second()
        second.requests += 1
        self.latency.add(took)
        self.kinds[kind.value] += 1
        self.statuses[_STATUS_TEXT.get(answer.status) or _status_text(answer.status)] += 1
        if kind is not AnswerKind.OK:
            if kind is AnswerKind.THROTTLED:
                second.throttled += 1
            else:
                second.failed += 1
            self._count_code(_code_of(answer), answer.request_id)

    def _count_code(self, code: str, request_id: str) -> None:
        if code not in self.codes and len(self.codes) >= MAX_ERROR_CODES:
            code = OTHER_CODES
        seen = self.codes.setdefault(code, CodeSeen())
        seen.count += 1
        seen.request_id = request_id or seen.request_id

    def region(self, region: str) -> RegionTally:
        """``region``'s tally (an empty one, kept, when it has none yet)."""
        return self.regions.setdefault(region, RegionTally())

    def per_second(self) -> list[Second]:
        """Every second from the first request to the last, quiet ones included."""
        if not self.seconds:
            return []
        return [self.seconds.get(s, Second()) for s in range(max(self.seconds) + 1)]

    def duration(self) -> float:
        """Wall-clock seconds from the start to the end (or to now, if not over)."""
        end = self.ended_at if self.ended_at is not None else self.wall()
        return max(0.0, end - self.started_at)

    def dates(self) -> tuple[str, str]:
        """The start and end as ISO 8601 UTC dates."""
        end = self.ended_at if self.ended_at is not None else self.wall()
        return _iso(self.started_at), _iso(end)


def _status_text(status: int | None) -> str:
    return "no answer" if status is None else str(status)


#: ``_status_text`` of the usual statuses, made once.
_STATUS_TEXT = {status: _status_text(status) for status in (None, 200, 204, 429, 500, 503)}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _code_of(answer: ApiResponse) -> str:
    if answer.error_code:
        return answer.error_code
    return "no answer" if answer.status is None else f"HTTP {answer.status}"


class RecordingService:
    """An ``ImageService`` that tells ``telemetry`` of every request ``inner`` answers;
    with ``region``, each request is also counted as that region's."""

    def __init__(
        self, inner: ImageService, telemetry: Telemetry, region: str | None = None
    ) -> None:
        self.inner = inner
        self.telemetry = telemetry
        self.region = region

    def __repr__(self) -> str:
        return f"<RecordingService of {self.inner!r}: {self.telemetry.requests} requests>"

    @property
    def endpoint(self) -> str:
        return self.inner.endpoint

    @property
    def listing(self) -> str:
        return self.inner.listing

    @property
    def requests(self) -> int:
        return self.inner.requests

    async def _timed(self, request: Awaitable[ApiResponse]) -> ApiResponse:
        telemetry = self.telemetry
        sent = telemetry.now()
        answer = await request
        telemetry.record(sent, telemetry.now(), answer, self.inner.classify(answer), self.region)
        return answer

    async def update_image(self, image_id: str, operations: list[dict[str, Any]]) -> ApiResponse:
        return await self._timed(self.inner.update_image(image_id, operations))

    async def list_images(self, query: Mapping[str, str]) -> ApiResponse:
        return await self._timed(self.inner.list_images(query))

    async def tag_project(self) -> str:
        return await self.inner.tag_project()

    async def read_tags(self, image_id: str) -> ApiResponse:
        return await self._timed(self.inner.read_tags(image_id))

    async def change_tags(self, image_id: str, action: str, tags: Mapping[str, str]) -> ApiResponse:
        return await self._timed(self.inner.change_tags(image_id, action, tags))

    async def preview_tags(self, image_id: str, action: str, tags: Mapping[str, str]) -> str:
        return await self.inner.preview_tags(image_id, action, tags)

    async def list_tag_keys(self) -> ApiResponse:
        return await self._timed(self.inner.list_tag_keys())

    async def find_tagged(self, keys: Sequence[str], offset: int, limit: int) -> ApiResponse:
        return await self._timed(self.inner.find_tagged(keys, offset, limit))

    def tags(self, answer: ApiResponse) -> dict[str, str] | None:
        return self.inner.tags(answer)

    def tag_keys(self, answer: ApiResponse) -> dict[str, list[str]] | None:
        return self.inner.tag_keys(answer)

    def tagged(self, answer: ApiResponse) -> tuple[dict[str, dict[str, str]], int] | None:
        return self.inner.tagged(answer)

    async def preview_update(self, image_id: str, operations: list[dict[str, Any]]) -> str:
        return await self.inner.preview_update(image_id, operations)

    def classify(self, answer: ApiResponse) -> AnswerKind:
        return self.inner.classify(answer)

    def images(self, answer: ApiResponse) -> list[Image] | None:
        return self.inner.images(answer)

    def describe(self) -> str:
        return self.inner.describe()
