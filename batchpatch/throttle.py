"""Limits on request starts: a no-burst rate and a cap on requests in flight.

Pure anyio.  The clock and the sleep are injectable so tests can drive time by hand.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from batchpatch.models import Limits

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """Spaces request starts at least ``1 / rate`` seconds apart (GCRA with no burst).

    The first start goes at once; after an idle spell the next start also goes at once, but
    credit never accumulates, so there is no burst above ``rate`` at start-up or later.
    """

    __slots__ = ("_clock", "_interval", "_lock", "_next_start", "_sleep")

    def __init__(self, rate: float, *, clock: Clock | None = None,
                 sleep: Sleep | None = None) -> None:
        self._interval = 1.0 / rate
        self._clock = clock or anyio.current_time
        self._sleep = sleep or anyio.sleep
        self._next_start: float | None = None
        self._lock = anyio.Lock()

    @property
    def rate(self) -> float:
        return 1.0 / self._interval

    async def wait(self) -> None:
        """Return when the next request may start."""
        async with self._lock:
            now = self._clock()
            if self._next_start is not None and self._next_start > now:
                await self._sleep(self._next_start - now)
                now = max(self._clock(), self._next_start)  # a late wake-up keeps the gap
            self._next_start = now + self._interval

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate:g}/s, next_start={self._next_start})"


class Pacer:
    """The two limits every request start passes: a free slot, then its turn in the rate.

    ``acquire`` returns a token to hand back to ``release`` when the request is done.
    Reads and writes of one run share one pacer, since they share the service's quota.
    """

    __slots__ = ("capacity", "rate")

    def __init__(self, limits: Limits, *, clock: Clock | None = None,
                 sleep: Sleep | None = None) -> None:
        self.rate = RateLimiter(limits.rate, clock=clock, sleep=sleep)
        self.capacity = anyio.CapacityLimiter(limits.concurrency)

    async def acquire(self) -> object:
        borrower = object()
        await self.capacity.acquire_on_behalf_of(borrower)
        try:
            await self.rate.wait()
        except BaseException:
            self.capacity.release_on_behalf_of(borrower)
            raise
        return borrower

    def release(self, borrower: object) -> None:
        self.capacity.release_on_behalf_of(borrower)

    def __repr__(self) -> str:
        return (f"Pacer({self.rate!r}, in_flight={self.capacity.borrowed_tokens}"
                f"/{self.capacity.total_tokens})")
