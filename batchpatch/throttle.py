"""Limits on request starts: a no-burst rate and a cap on requests in flight.

Pure anyio.  The clock and the sleep are injectable so tests can drive time by hand; the
default clock is ``time.monotonic``, the clock of asyncio's loop (``anyio.current_time``
looks the running backend up on every call: a tenth of a start's cost).
Every wait for a start can be cut short by a stop event (a signal), and no hold on every
start lasts longer than ``MAX_HOLD`` seconds, whatever a ``Retry-After`` asked.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

import anyio

from batchpatch.models import Limits

log = logging.getLogger("batchpatch.throttle")

#: The adaptive rate never drops below this many requests per second.
MINIMUM_RATE = 0.2
#: No hold on every start lasts longer than this (the cap on one ``Retry-After``).
MAX_HOLD = 600.0
#: The gateway's window: it admits at most ``rate`` requests in any rolling second.
WINDOW = 1.0
#: Seconds added to that window on our side, for the jitter between a start here and its
#: arrival there (task switch, socket, the server's own loop): ``rate`` starts are spread
#: over at least ``WINDOW + JITTER_MARGIN``, so ``rate`` arrivals still fit in one second
#: when some arrive a little sooner after the start than others (a loaded machine or a new
#: connection delays the first of them by several milliseconds).  It costs 1.5 % of the
#: rate (10 ms let R + 1 arrive in a second on a loaded machine; 20 ms cost 0.5 % of R more).
JITTER_MARGIN = 0.015
#: The most starts remembered for the window rule; above this rate the window is shorter.
HISTORY = 20_000

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class RateLimiter:
    """Schedules request starts ``1 / rate`` seconds apart, never more than ``rate`` (whole
    requests) in any rolling second.

    Two rules, both on this clock.  The spacing: each start is due ``1 / rate`` after the
    previous one was due, so a late wake-up (event-loop lag under one interval) does not
    slow the rate; after a longer stall, or when the caller came after its turn (waiting
    for a slot, idle), the spacing counts from the late start: time lost earns no credit,
    so there is never a burst, at start-up or later.
    The window: a start waits until the ``n``-th start before it (``n`` = the rate, whole)
    is ``WINDOW + margin`` old, counted on the actual start times, so no rolling second
    ever holds more than ``n`` starts, whatever the lag, the catch-up, a rate just lowered
    or the retries did.  Below 2 per second the window is the spacing from the last start.
    """

    __slots__ = (
        "_clock",
        "_interval",
        "_lock",
        "_next_start",
        "_rate",
        "_sleep",
        "_starts",
        "margin",
    )

    def __init__(
        self,
        rate: float,
        *,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        margin: float = JITTER_MARGIN,
    ) -> None:
        self._rate, self._interval = rate, 1.0 / rate
        self._clock = clock or time.monotonic
        self._sleep = sleep or anyio.sleep
        self._next_start: float | None = None
        self._starts: deque[float] = deque(maxlen=_history_for(rate))
        self._lock = anyio.Lock()
        self.margin = margin

    @property
    def rate(self) -> float:
        return self._rate  # as set: ``1 / (1 / rate)`` may differ from it in the last bit

    @rate.setter
    def rate(self, rate: float) -> None:
        self._rate, self._interval = rate, 1.0 / rate
        needed = _history_for(rate)
        if self._starts.maxlen is not None and self._starts.maxlen < needed:
            self._starts = deque(self._starts, maxlen=needed)

    def hold(self, seconds: float) -> None:
        """Let no start happen for ``seconds`` from now (a ``Retry-After``), at most
        ``MAX_HOLD``; a value that is not a finite number of seconds ahead is ignored."""
        if not 0 < seconds < math.inf:
            return
        until = self._clock() + min(seconds, MAX_HOLD)
        self._next_start = until if self._next_start is None else max(self._next_start, until)

    def earliest(self) -> float:
        """When the next start may go, by both rules (at or before now: at once)."""
        due = -math.inf if self._next_start is None else self._next_start
        return max(due, self._window_opens())

    def _window_opens(self) -> float:
        """When the oldest of the last ``n`` starts leaves the window (-inf: not yet full)."""
        per_window = self.rate * WINDOW
        if per_window < 2:
            return self._starts[-1] + self._interval if self._starts else -math.inf
        count = min(int(per_window + 1e-9), HISTORY)
        if len(self._starts) < count:
            return -math.inf
        span = WINDOW if count < HISTORY else count * self._interval
        return self._starts[-count] + span + self.margin

    def try_start(self, stop: anyio.Event | None = None) -> bool:
        """Take the next start now, if it is due and nobody is waiting for one: True then.
        The same rules as ``wait``, read at the same moment, without a trip through the
        event loop (two anyio checkpoints cost as much as the rest of a start)."""
        if self._lock.locked() or (stop is not None and stop.is_set()):
            return False
        now = self._clock()
        if self.earliest() > now:
            return False
        self._started(now, now)
        return True

    async def wait(self, stop: anyio.Event | None = None) -> bool:
        """Return True when the next request may start; False at once when ``stop`` is set
        first (before or during the wait: then no slot is used up)."""
        if self.try_start(stop):
            return True
        if stop is not None and stop.is_set():
            return False
        async with self._lock:
            slept = False
            while True:
                now, due = self._clock(), self.earliest()
                if due <= now:
                    break
                # Asleep, then asked again: a hold or a lower rate may have come meanwhile.
                if not await sleep_unless_stopped(self._sleep, due - now, stop):
                    return False
                slept = True
            if stop is not None and stop.is_set():
                return False
            self._started(due if slept else now, now)
            return True

    def _started(self, due: float, now: float) -> None:
        """Record a start at ``now`` that was due at ``due`` (``now`` when the caller came
        after its turn: waiting for a slot, or idle, earns nothing).  A wake-up late by less
        than an interval (event-loop lag): the next is due one interval after ``due``, so
        lag is not charged.  Later than that (a stall), one interval from now: the time lost
        earns no catch-up, so a stall never turns into a burst."""
        late = now - due
        self._next_start = (due if late < self._interval else now) + self._interval
        self._starts.append(now)

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate:g}/s, next_start={self._next_start})"


class Pacer:
    """The two limits every request start passes, adapting to how the service answers.

    A start needs a free slot (``capacity``), then its turn in the rate.  ``acquire``
    returns a token to hand back to ``release``.  Reads and writes of one run share one
    pacer, since they share the service's quota.

    Adaptive, after TCP CUBIC's idea (remember where the trouble began, hold just under it,
    probe above it slowly) with the throttling answers as the loss signal (429,
    ``APIGW.0308``, ``IMG.0060``):

    * a lone throttling answer, amid healthy ones (jitter at the limit, a neighbour's
      burst), lowers the rate by ``LONE_CUT`` (1 %) only; above the ceiling (probing) it
      marks the limit instead: the ceiling moves to the rate, which goes back to ``HOLD``;
    * a storm, ``STORM`` of them in a row with no healthy answer between, means the rate
      is well above the service's limit: the limit is measured as the healthy answers of
      the last second (a gateway refuses exactly what is beyond its limit, so what it let
      through is the limit) and remembered as the ceiling; the rate drops to ``HOLD``
      (97 %) of it, at least by ``STORM_CUT``.  With no healthy answer to measure from, it
      halves.  The window rule then lets the gateway's window drain before the next start.
      Answers to requests started before that drop do not count again;
    * healthy answers raise the rate: quickly (a fifth of the ceiling per second) up to
      ``HOLD`` of the ceiling, then slowly (``PROBE``, 0.5 % of it per second) above, so a
      raised limit is found; 5 % (and one request) above it without a refusal, it is
      forgotten.  With
      no ceiling, by ``increase`` per second; never above the configured rate;
    * a ``Retry-After`` holds every start that long (at most ``MAX_HOLD``);
    * the concurrency shrinks in proportion to the rate.
    """

    LONE_CUT = 0.99
    STORM = 3
    HOLD = 0.97
    STORM_CUT = 0.9
    DECREASE = 0.5
    RECOVER = 0.2
    PROBE = 0.005
    STALE = 1.05

    __slots__ = (
        "_answered",
        "_clock",
        "_in_a_row",
        "_last_decrease",
        "_rate_before",
        "capacity",
        "ceiling",
        "increase",
        "limits",
        "minimum",
        "rate",
    )

    def __init__(
        self, limits: Limits, *, clock: Clock | None = None, sleep: Sleep | None = None
    ) -> None:
        self.limits = limits
        self.rate = RateLimiter(limits.rate, clock=clock, sleep=sleep)
        self.capacity = anyio.CapacityLimiter(limits.concurrency)
        self.minimum = min(limits.rate, MINIMUM_RATE)
        self.increase = max(1.0, limits.rate / 10)
        #: The rate at which the service began refusing (requests/s), None until a storm.
        self.ceiling: float | None = None
        self._clock = clock or time.monotonic
        self._last_decrease = float("-inf")
        self._answered: deque[float] = deque()  # when the last second's healthy answers came
        self._in_a_row = 0  # throttling answers since the last healthy one
        self._rate_before = limits.rate  # the rate when the first of them came

    def now(self) -> float:
        return self._clock()

    def try_acquire(self, stop: anyio.Event | None = None) -> object | None:
        """``acquire`` when a slot is free and the turn is due now, without awaiting
        anything (the usual start at full speed); None otherwise."""
        borrower = object()
        try:
            self.capacity.acquire_on_behalf_of_nowait(borrower)
        except anyio.WouldBlock:
            return None
        if self.rate.try_start(stop):
            return borrower
        self.capacity.release_on_behalf_of(borrower)
        return None

    async def acquire(self, stop: anyio.Event | None = None) -> object:
        """A slot and a turn in the rate.  When ``stop`` is set during the wait for the
        turn, the slot is returned at once without a turn: the caller sees ``stop`` set,
        releases it and starts nothing (a signal during a ``Retry-After`` hold)."""
        borrower = object()
        try:  # a free slot is taken without a trip through the event loop
            self.capacity.acquire_on_behalf_of_nowait(borrower)
        except anyio.WouldBlock:
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
        if not self._in_a_row:
            self._rate_before = self.rate.rate
        self._in_a_row += 1
        if self._in_a_row < self.STORM:
            self._lone(why)
            return
        self._in_a_row = 0
        self._last_decrease = self.now()
        self._storm(why)

    def _lone(self, why: str) -> None:
        """One refusal amid healthy answers.  Above the ceiling (probing), it marks the
        limit: the ceiling moves there and the rate goes back to just under it; below it,
        it is jitter at the limit: a 1 % cut."""
        rate = self.rate.rate
        if self.ceiling is not None and rate > self.ceiling:
            self.ceiling = rate
            self._set(max(self.minimum, self.HOLD * rate), f"a lone {why} above the ceiling")
            return
        self._set(max(self.minimum, rate * self.LONE_CUT), f"a lone {why}")

    def _storm(self, why: str) -> None:
        """Many refusals in a row: drop to just under what the service let through (from
        the rate before the first of them: the lone cuts on the way do not add up)."""
        admitted = self._admitted_last_second()
        if admitted < 1:
            self._set(max(self.minimum, self._rate_before * self.DECREASE), f"{why} storm")
            return
        self.ceiling = float(admitted)
        target = min(self.HOLD * admitted, self.STORM_CUT * self._rate_before)
        self._set(
            max(self.minimum, target),
            f"{why} storm; the service let {admitted} requests through in the last second",
        )

    def healthy(self) -> None:
        """A request was answered without a throttling signal."""
        now = self.now()
        self._answered.append(now)
        self._forget_before(now - WINDOW)
        self._in_a_row = 0
        rate = self.rate.rate
        if rate < self.limits.rate:
            self._set(min(self.limits.rate, rate + self._step(rate) / rate), "healthy answers")

    def _step(self, rate: float) -> float:
        """How many requests/s the rate grows by per second of healthy answers."""
        if self.ceiling is None:
            return self.increase
        if rate > self.ceiling * self.STALE + 1:
            self.ceiling = None  # no storm well above it: the limit was raised
            return self.increase
        if rate < self.HOLD * self.ceiling:
            return max(self.increase, self.RECOVER * self.ceiling)
        return self.PROBE * self.ceiling

    def _admitted_last_second(self) -> int:
        self._forget_before(self.now() - WINDOW)
        return len(self._answered)

    def _forget_before(self, horizon: float) -> None:
        answered = self._answered
        while answered and answered[0] <= horizon:
            answered.popleft()

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
            f"Pacer({self.rate!r}, ceiling={self.ceiling}, "
            f"in_flight={self.capacity.borrowed_tokens}/{self.capacity.total_tokens})"
        )


def _history_for(rate: float) -> int:
    """How many start times the window rule needs at ``rate``."""
    return min(HISTORY, max(2, math.ceil(rate * WINDOW) + 1))


async def sleep_unless_stopped(sleep: Sleep, seconds: float, stop: anyio.Event | None) -> bool:
    """``sleep(seconds)``, cut short when ``stop`` is set; True when it slept the whole time."""
    if stop is None:
        await sleep(seconds)
        return True
    if stop.is_set():
        return False
    if sleep is anyio.sleep:  # the real clock: one cancel scope, not a task group of two
        with anyio.move_on_after(seconds):
            await stop.wait()
        return not stop.is_set()
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
