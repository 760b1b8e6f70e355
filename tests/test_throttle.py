"""The no-burst rate limiter, on a hand-driven clock: no real sleeps."""

from __future__ import annotations

import itertools

import pytest

from batchpatch.throttle import JITTER_MARGIN, RateLimiter


class FakeClock:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(
    ("rate", "starts", "expected_gaps"),
    [
        pytest.param(10.0, 4, [0.1, 0.1, 0.1], id="10-per-second"),
        pytest.param(0.5, 3, [2.0, 2.0], id="one-every-two-seconds"),
        pytest.param(1000.0, 3, [0.001, 0.001], id="fast"),
    ],
)
@pytest.mark.anyio
async def test_starts_are_spaced_with_no_burst(
    rate: float, starts: int, expected_gaps: list[float]
) -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(starts):
        await limiter.wait()
        times.append(clock.now)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps == pytest.approx(expected_gaps)
    assert times[0] == 100.0  # the first start goes at once


@pytest.mark.anyio
async def test_idle_time_earns_no_burst_credit() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, clock=clock, sleep=clock.sleep)
    await limiter.wait()
    clock.now += 60  # a long idle spell
    await limiter.wait()
    assert clock.sleeps == []
    await limiter.wait()
    assert clock.sleeps == [pytest.approx(0.5)]


@pytest.mark.anyio
async def test_late_wake_ups_do_not_slow_the_rate_nor_make_a_burst() -> None:
    # Changed with issue 12: a rolling second now holds at most `rate` starts (it was
    # rate + 1), so lag is caught up on the spacing and charged once per window, not per gap.
    clock = FakeClock()

    async def oversleep(seconds: float) -> None:
        clock.now += seconds + 0.03

    limiter = RateLimiter(10.0, clock=clock, sleep=oversleep)
    times = []
    for _ in range(31):
        await limiter.wait()
        times.append(clock.now)
    # 30 gaps charged 30 ms each would take 3.9 s; three windows charged once take 3.12 s
    assert times[-1] - times[0] == pytest.approx(3 * (1.0 + JITTER_MARGIN + 0.03))
    for start in times:  # ...and never more than `rate` starts in any one-second window
        assert sum(start <= other < start + 1.0 for other in times) <= 10


def test_repr_shows_state() -> None:
    assert repr(RateLimiter(4)).startswith("RateLimiter(rate=4/s")
