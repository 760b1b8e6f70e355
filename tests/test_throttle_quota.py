"""The throttle's rules for using a gateway's quota fully without tripping it, on a clock the
test drives: no sleeps, no timing assertions (simulated seconds only).

A gateway admits at most R requests in any rolling second (the fake's own SlidingWindow and
TokenBucket, on the test's clock).  With the limit known the throttle never schedules more
than R starts in a rolling second, whatever the lag; with it unknown it learns the ceiling
from where the refusals begin and holds just under it.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable

import pytest

from batchpatch.fake.faults import SlidingWindow, TokenBucket
from batchpatch.models import Limits
from batchpatch.throttle import JITTER_MARGIN, MAX_HOLD, Pacer, RateLimiter
from bench.quota import run_quota

pytestmark = pytest.mark.anyio

R = 200


class Clock:
    """Moves only when the throttle sleeps, by what it asked plus ``lag()`` (a late wake-up)."""

    def __init__(self, lag: Callable[[], float] = lambda: 0.0) -> None:
        self.now = 1000.0
        self.lag = lag
        self.before_sleep: Callable[[], None] | None = None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if self.before_sleep is not None:
            hook, self.before_sleep = self.before_sleep, None
            hook()
        self.now += seconds + self.lag()


def most_in_any_window(times: list[float], window: float = 1.0) -> int:
    """The most of ``times`` in any half-open span ``[t, t + window)``."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, start + window) - i for i, start in enumerate(ordered)),
        default=0,
    )


async def starts(limiter: RateLimiter, clock: Clock, count: int) -> list[float]:
    times = []
    for _ in range(count):
        assert await limiter.wait()
        times.append(clock.now)
    return times


# --- Never more than R starts in any rolling second -------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_no_rolling_second_gets_more_than_r_starts_whatever_the_lag(seed: int) -> None:
    rng = random.Random(seed)
    # late wake-ups up to just under an interval, and now and then a stall of 20-300 ms
    clock = Clock(lambda: rng.uniform(0.1, 0.3) if rng.random() < 0.01 else rng.uniform(0, 0.0049))
    times = await starts(RateLimiter(R, clock=clock, sleep=clock.sleep), clock, 3000)
    assert most_in_any_window(times) <= R
    assert most_in_any_window(times, 1.0 + JITTER_MARGIN) <= R  # with the margin, too


async def test_arrivals_jittered_under_the_margin_still_fit_the_gateways_window() -> None:
    rng = random.Random(7)
    clock = Clock(lambda: rng.uniform(0, 0.002))
    times = await starts(RateLimiter(R, clock=clock, sleep=clock.sleep), clock, 3000)
    arrivals = [start + rng.uniform(0, JITTER_MARGIN * 0.95) for start in times]
    assert most_in_any_window(arrivals) <= R


async def test_a_stall_is_not_caught_up_with_a_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(R, clock=clock, sleep=clock.sleep)
    before = await starts(limiter, clock, 300)
    clock.lag = lambda: 0.3  # one wake-up 300 ms late
    stalled = await starts(limiter, clock, 1)
    clock.lag = lambda: 0.0
    after = await starts(limiter, clock, 300)
    gaps = [b - a for a, b in zip(stalled + after, after, strict=False)]
    assert min(gaps) == pytest.approx(1 / R)  # the time lost is lost, not made up at once
    assert most_in_any_window(before + stalled + after) <= R


async def test_a_caller_late_for_its_turn_earns_no_catch_up() -> None:
    """The producer waited for a slot (requests in flight) past its turn: it starts at once,
    and the next start is a whole interval later, not sooner to make up for it."""
    clock = Clock()
    limiter = RateLimiter(R, clock=clock, sleep=clock.sleep)
    times = []
    for number in range(50):
        assert await limiter.wait()
        times.append(clock.now)
        if number % 2 == 0:
            clock.now += 0.009  # busy elsewhere: back 4 ms after its 5 ms turn
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) == pytest.approx(1 / R)


async def test_lag_under_an_interval_is_caught_up_on_the_spacing() -> None:
    clock = Clock(lambda: 0.002)  # every wake-up 2 ms late at a 5 ms interval
    times = await starts(RateLimiter(R, clock=clock, sleep=clock.sleep), clock, 2001)
    # ten windows of R starts, each charged the margin and one lag, not 2 ms per start
    assert times[-1] - times[0] == pytest.approx(10 * (1.0 + JITTER_MARGIN + 0.002))


async def test_after_the_rate_drops_the_window_drains_before_the_next_start() -> None:
    clock = Clock()
    limiter = RateLimiter(1000, clock=clock, sleep=clock.sleep)
    fast = await starts(limiter, clock, 300)
    limiter.rate = 194
    slow = await starts(limiter, clock, 400)
    every = fast + slow
    for start in slow:  # every start after the drop sees at most 194 in the second up to it
        assert sum(start - 1.0 < other <= start for other in every) <= 194
    assert slow[0] >= fast[-194] + 1.0


# --- A lone 429, a storm, the ceiling -----------------------------------------------------------


def answered_at(pacer: Pacer, clock: Clock, per_second: float, seconds: float) -> None:
    """Healthy answers arriving ``per_second`` for ``seconds``."""
    for _ in range(round(per_second * seconds)):
        clock.now += 1 / per_second
        pacer.healthy()


def test_a_lone_429_amid_healthy_answers_cuts_the_rate_by_one_percent_only() -> None:
    clock = Clock()
    pacer = Pacer(Limits(concurrency=64, rate=R), clock=clock, sleep=clock.sleep)
    answered_at(pacer, clock, R, 1.0)
    pacer.throttled(clock.now, None, "APIGW.0308")
    assert pacer.rate.rate == pytest.approx(R * Pacer.LONE_CUT)
    assert pacer.ceiling is None
    answered_at(pacer, clock, R, 0.5)
    pacer.throttled(clock.now, None, "APIGW.0308")  # another lone one, after healthy answers
    assert pacer.ceiling is None
    assert pacer.rate.rate > 0.97 * R


def test_a_storm_learns_the_ceiling_from_what_was_let_through_and_holds_just_under_it() -> None:
    clock = Clock()
    pacer = Pacer(Limits(concurrency=64, rate=1000), clock=clock, sleep=clock.sleep)
    answered_at(pacer, clock, 1000, 0.2)  # the gateway let 200 through, then refuses
    sent = clock.now
    for _ in range(Pacer.STORM):
        clock.now += 0.001
        pacer.throttled(sent, None, "APIGW.0308")
    assert pacer.ceiling == 200
    assert pacer.rate.rate == pytest.approx(Pacer.HOLD * 200)  # not 500: not a halving
    assert pacer.capacity.total_tokens == round(64 * Pacer.HOLD * 200 / 1000)
    for _ in range(50):  # the rest of the burst, started before the drop: counted once
        pacer.throttled(sent, None, "APIGW.0308")
    assert pacer.rate.rate == pytest.approx(Pacer.HOLD * 200)


def test_above_the_hold_the_rate_probes_slowly_and_below_it_recovers_fast() -> None:
    clock = Clock()
    pacer = Pacer(Limits(concurrency=64, rate=1000), clock=clock, sleep=clock.sleep)
    answered_at(pacer, clock, 1000, 0.2)
    for _ in range(Pacer.STORM):
        pacer.throttled(clock.now, None, "429")
    held = pacer.rate.rate
    answered_at(pacer, clock, held, 1.0)
    assert held < pacer.rate.rate <= held + 1.1  # half a percent of the ceiling a second
    for _ in range(Pacer.STORM - 1):  # two lone cuts, then healthy answers
        pacer.throttled(clock.now, None, "429")
    assert pacer.rate.rate < 0.97 * 200
    answered_at(pacer, clock, 190, 0.2)
    assert pacer.rate.rate >= Pacer.HOLD * 200  # back to the hold in a fifth of a second
    assert pacer.ceiling == 200


def test_a_lone_429_while_probing_above_the_ceiling_marks_the_limit() -> None:
    clock = Clock()
    pacer = Pacer(Limits(concurrency=64, rate=1000), clock=clock, sleep=clock.sleep)
    answered_at(pacer, clock, 1000, 0.2)
    for _ in range(Pacer.STORM):
        pacer.throttled(clock.now, None, "429")
    answered_at(pacer, clock, 200, 8.0)  # probing: now a little above the ceiling of 200
    probed = pacer.rate.rate
    assert 200 < probed < 210
    pacer.throttled(clock.now, None, "429")
    assert pacer.ceiling == pytest.approx(probed)  # where the refusals begin now
    assert pacer.rate.rate == pytest.approx(Pacer.HOLD * probed)  # back under it, not 1 %


def test_a_ceiling_passed_well_without_a_storm_is_forgotten() -> None:
    clock = Clock()
    pacer = Pacer(Limits(concurrency=64, rate=1000), clock=clock, sleep=clock.sleep)
    answered_at(pacer, clock, 1000, 0.2)
    for _ in range(Pacer.STORM):
        pacer.throttled(clock.now, None, "429")
    answered_at(pacer, clock, 200, 20.0)  # the limit was raised: 20 s without a refusal
    assert pacer.ceiling is None
    answered_at(pacer, clock, 400, 5.0)
    assert pacer.rate.rate > 300  # climbing at the configured pace again


async def test_a_retry_after_during_the_wait_for_a_slot_holds_that_start() -> None:
    clock = Clock()
    pacer = Pacer(Limits(concurrency=4, rate=R), clock=clock, sleep=clock.sleep)
    assert await pacer.rate.wait()
    clock.before_sleep = lambda: pacer.throttled(clock.now, 5.0, "APIGW.0308")
    assert await pacer.rate.wait()  # was asleep until its slot when the hold came
    assert clock.now == pytest.approx(1005.0)
    pacer.throttled(clock.now, 10_000.0, "APIGW.0308")
    assert await pacer.rate.wait()
    assert clock.now == pytest.approx(1005.0 + MAX_HOLD)  # capped


# --- The whole loop against a gateway, simulated ---------------------------------------------


async def simulate(
    rate: float, gateway: list[SlidingWindow | TokenBucket], clock: Clock, seconds: float
) -> tuple[Pacer, list[tuple[float, bool]]]:
    """One request at a time, answered at once: each start's arrival and whether it passed."""
    pacer = Pacer(Limits(concurrency=64, rate=rate), clock=clock, sleep=clock.sleep)
    seen: list[tuple[float, bool]] = []
    end = clock.now + seconds
    while clock.now < end:
        assert await pacer.rate.wait()
        now = clock.now
        admitted = all([limit.has_room(now) for limit in gateway])
        if admitted:
            for limit in gateway:
                limit.take(now)
            pacer.healthy()
        else:
            pacer.throttled(now, None, "APIGW.0308")
        seen.append((now, admitted))
    return pacer, seen


def gateway_of(clock: Clock, *, bucket: bool) -> list[SlidingWindow | TokenBucket]:
    limits: list[SlidingWindow | TokenBucket] = [SlidingWindow(R, clock=clock)]
    return [*limits, TokenBucket(R, clock=clock)] if bucket else limits


def after(seen: list[tuple[float, bool]], start: float) -> tuple[float, float]:
    """Admitted per second and the share refused, from ``start`` on."""
    late = [admitted for when, admitted in seen if when >= start]
    span = seen[-1][0] - start
    return sum(late) / span, late.count(False) / len(late)


@pytest.mark.parametrize("bucket", [False, True], ids=["window", "window+bucket"])
async def test_with_the_limit_known_the_quota_is_used_and_never_tripped(bucket: bool) -> None:
    rng = random.Random(5)
    clock = Clock(lambda: rng.uniform(0, 0.001))
    begin = clock.now
    _, seen = await simulate(R, gateway_of(clock, bucket=bucket), clock, 20)
    admitted_rate, refused = after(seen, begin)
    assert refused == 0
    assert admitted_rate >= 0.97 * R


@pytest.mark.parametrize("bucket", [False, True], ids=["window", "window+bucket"])
async def test_with_the_limit_unknown_the_ceiling_is_learned_and_held(bucket: bool) -> None:
    rng = random.Random(6)
    clock = Clock(lambda: rng.uniform(0, 0.001))
    begin = clock.now
    pacer, seen = await simulate(1000, gateway_of(clock, bucket=bucket), clock, 40)
    admitted_rate, refused = after(seen, begin + 10)
    assert refused < 0.02
    assert admitted_rate >= 0.90 * R
    assert 0.9 * R <= pacer.rate.rate <= 1.05 * R


# --- The benchmark, at a tiny size so it cannot rot ---------------------------------------------


def test_the_quota_benchmark_runs_and_reports_its_figures() -> None:
    figures = run_quota(rate=400, images=30, gateway_rate=200, concurrency=4)
    assert figures["exit_code"] == 0
    assert figures["requests"] >= 2 * 30  # few images: read one by one, then patched
    admitted = figures["admitted_rate"] * figures["busy_s"]
    assert admitted == pytest.approx(figures["requests"] - figures["throttled"])
    assert figures["utilisation"] == pytest.approx(figures["admitted_rate"] / 200)
    for name in ("throttled_fraction", "throttled_fraction_after_10s", "wall_s", "busiest_second"):
        assert name in figures
