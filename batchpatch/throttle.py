"""Limits on request starts: a no-burst rate and a cap on requests in flight.

Pure anyio.  The clock and the sleep are injectable so tests can drive time by hand.
Every wait for a start can be cut short by a stop event (a signal), and no hold on every
start lasts longer than ``MAX_HOLD`` seconds, whatever a ``Retry-After`` asked.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

import anyio

from batchpatch.models import Limits

log = logging.getLogger("batchpatch.throttle")

#: The adaptive rate never drops below this many requests per second.
MINIMUM_RATE = 0.2
#: No hold on every start lasts longer than this (the cap on one ``Retry-After``).
MAX_HOLD = 600.0

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """Schedules request starts ``1 / rate`` seconds apart (GCRA with no burst allowance).

    The first start goes at once; after an idle spell the next start also goes at once, but
    credit never accumulates, so no window of one second ever holds more than ``rate + 1``
    starts, at start-up or later.
    """

    __slots__ = ("_clock", "_interval", "_lock", "_next_start", "_sleep")

    def __init__(
        self, rate: float, *, clock: Clock | None = None, sleep: Sleep | None = None
    ) -> None:
        self._interval = 1.0 / rate
        self._clock = clock or anyio.current_time
        self._sleep = sleep or anyio.sleep
        self._next_start: float | None = None
        self._lock = anyio.Lock()

    @property
    def rate(self) -> float:
        return 1.0 / self._interval

    @rate.setter
    def rate(self, rate: float) -> None:
        self._interval = 1.0 / rate

    def hold(self, seconds: float) -> None:
        """Let no start happen for ``seconds`` from now (a ``Retry-After``), at most
        ``MAX_HOLD``; a value that is not a finite number of seconds ahead is ignored."""
        if not 0 < seconds < math.inf:
            return
        until = self._clock() + min(seconds, MAX_HOLD)
        self._next_start = until if self._next_start is None else max(self._next_start, until)

    async def wait(self, stop: anyio.Event | None = None) -> bool:
        """Return True when the next request may start; False at once when ``stop`` is set
        first (before or during the wait: then no slot is used up)."""
        async with self._lock:
            now = self._clock()
            start = now if self._next_start is None else max(now, self._next_start)
            if start > now and not await sleep_unless_stopped(self._sleep, start - now, stop):
                return False
            if stop is not None and stop.is_set():
                return False
            # The next slot follows the scheduled one, not the (late) wake-up, so event-loop
            # lag does not eat into the rate; idle time still earns no credit.
            self._next_start = start + self._interval
            return True

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate:g}/s, next_start={self._next_start})"


class Pacer:
    """The two limits every request start passes, adapting to how the service answers.

    A start needs a free slot (``capacity``), then its turn in the rate.  ``acquire``
    returns a token to hand back to ``release``.  Reads and writes of one run share one
    pacer, since they share the service's quota.

    Adaptive (AIMD, after Scrapy's AutoThrottle, plus what it lacks): a throttling answer
    (429, ``APIGW.0308``, ``IMG.0060``) multiplies the rate by ``DECREASE`` at once, shrinks
    the concurrency in proportion, and honours ``Retry-After`` by holding every start;
    healthy answers add ``increase / rate`` each, about ``increase`` requests/s per second,
    never above the configured rate.  Answers to requests started before the last decrease
    do not decrease again, so one burst of 429s counts once.
    """

    DECREASE = 0.5

    __slots__ = ("_clock", "_last_decrease", "capacity", "increase", "limits", "minimum", "rate")

    def __init__(
        self, limits: Limits, *, clock: Clock | None = None, sleep: Sleep | None = None
    ) -> None:
        self.limits = limits
        self.rate = RateLimiter(limits.rate, clock=clock, sleep=sleep)
        self.capacity = anyio.CapacityLimiter(limits.concurrency)
        self.minimum = min(limits.rate, MINIMUM_RATE)
        self.increase = max(1.0, limits.rate / 10)
        self._clock = clock or anyio.current_time
        self._last_decrease = float("-inf")

    def now(self) -> float:
        return self._clock()

    async def acquire(self, stop: anyio.Event | None = None) -> object:
        """A slot and a turn in the rate.  When ``stop`` is set during the wait for the
        turn, the slot is returned at once without a turn: the caller sees ``stop`` set,
        releases it and starts nothing (a signal during a ``Retry-After`` hold)."""
        borrower = object()
        await self.capacity.acquire_on_behalf_of(borrower)
        try:
            await self.rate.wait(stop)
        except BaseException:
            self.capacity.release_on_behalf_of(borrower)
            raise
        return borrower

    def release(self, borrower: object) -> None:
        self.capacity.release_on_behalf_of(borrower)

    def throttled(self, started: float, retry_after: float | None, why: str) -> None:
        """The service said "slow down" to a request started at ``started``."""
        if retry_after is not None and 0 < retry_after < math.inf:
            retry_after = min(retry_after, MAX_HOLD)
            self.rate.hold(retry_after)
            log.debug(
                "throttle: holding every start for %.1f s (Retry-After, %s)", retry_after, why
            )
        if started < self._last_decrease:
            return
        self._last_decrease = self.now()
        self._set(max(self.minimum, self.rate.rate * self.DECREASE), why)

    def healthy(self) -> None:
        """A request was answered without a throttling signal."""
        if self.rate.rate < self.limits.rate:
            self._set(
                min(self.limits.rate, self.rate.rate + self.increase / self.rate.rate),
                "healthy answers",
            )

    def _set(self, rate: float, why: str) -> None:
        before_rate, before_slots = self.rate.rate, self.capacity.total_tokens
        self.rate.rate = rate
        slots = max(1, round(self.limits.concurrency * rate / self.limits.rate))
        if slots != before_slots:
            self.capacity.total_tokens = slots
        if rate < before_rate or slots != before_slots or rate == self.limits.rate:
            log.debug(
                "throttle: rate %.2f → %.2f/s, concurrency %d → %d (%s)",
                before_rate,
                rate,
                before_slots,
                slots,
                why,
            )

    def __repr__(self) -> str:
        return (
            f"Pacer({self.rate!r}, in_flight={self.capacity.borrowed_tokens}"
            f"/{self.capacity.total_tokens})"
        )


async def sleep_unless_stopped(sleep: Sleep, seconds: float, stop: anyio.Event | None) -> bool:
    """``sleep(seconds)``, cut short when ``stop`` is set; True when it slept the whole time."""
    if stop is None:
        await sleep(seconds)
        return True
    if stop.is_set():
        return False
    slept = False
    async with anyio.create_task_group() as group:

        async def doze() -> None:
            nonlocal slept
            await sleep(seconds)
            slept = True
            group.cancel_scope.cancel()

        async def watch() -> None:
            await stop.wait()
            group.cancel_scope.cancel()

        group.start_soon(doze)
        group.start_soon(watch)
    return slept
