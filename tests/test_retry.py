"""The retry policy and the adaptive pacer, table-driven on injected time: no real sleeps."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from batchpatch.client import (
    CONNECT_FAILED,
    ApiResponse,
    classify_answer,
    is_throttled,
    parse_retry_after,
)
from batchpatch.models import CONNECTION_ERROR, TIMEOUT, Limits
from batchpatch.retry import MAX_RETRY_AFTER, RetryPolicy, Verdict
from batchpatch.throttle import Pacer
from tests.test_throttle import FakeClock


@pytest.mark.parametrize(
    ("response", "verdict"),
    [
        pytest.param(ApiResponse(200), Verdict.OK, id="200"),
        pytest.param(ApiResponse(None, error_code=TIMEOUT), Verdict.AMBIGUOUS, id="timeout"),
        pytest.param(
            ApiResponse(None, error_code=CONNECTION_ERROR), Verdict.AMBIGUOUS, id="connection-lost"
        ),
        pytest.param(
            ApiResponse(None, error_code=CONNECT_FAILED), Verdict.RETRY, id="connect-refused"
        ),
        pytest.param(ApiResponse(500), Verdict.AMBIGUOUS, id="500"),
        pytest.param(ApiResponse(502), Verdict.AMBIGUOUS, id="502"),
        pytest.param(ApiResponse(503), Verdict.RETRY, id="503"),
        pytest.param(ApiResponse(504), Verdict.AMBIGUOUS, id="504"),
        pytest.param(ApiResponse(429, error_code="APIGW.0308"), Verdict.RETRY, id="429"),
        pytest.param(ApiResponse(400, error_code="IMG.0060"), Verdict.RETRY, id="flow-control"),
        pytest.param(ApiResponse(400, error_code="IMG.0061"), Verdict.RETRY, id="unknown-error"),
        pytest.param(ApiResponse(400, error_code="IMG.0035"), Verdict.PERMANENT, id="conflict"),
        pytest.param(ApiResponse(400, error_code="IMG.0046"), Verdict.PERMANENT, id="not-active"),
        pytest.param(ApiResponse(404, error_code="IMG.0027"), Verdict.PERMANENT, id="404"),
        pytest.param(ApiResponse(401, error_code="APIGW.0301"), Verdict.PERMANENT, id="401"),
        pytest.param(ApiResponse(403, error_code="APIGW.0302"), Verdict.PERMANENT, id="403"),
    ],
)
def test_verdicts(response: ApiResponse, verdict: Verdict) -> None:
    assert RetryPolicy().verdict(classify_answer(response)) == verdict


class Highest(random.Random):
    """Full jitter at its top: ``uniform(a, b)`` is ``b``."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        pytest.param(1, None, 0.5, id="first"),
        pytest.param(2, None, 1.0, id="doubles"),
        pytest.param(4, None, 4.0, id="still-doubling"),
        pytest.param(10, None, 30.0, id="capped"),
        pytest.param(1, 7.0, 7.0, id="retry-after-wins"),
        pytest.param(9, 0.0, 0.0, id="retry-after-zero"),
        pytest.param(1, 10_000.0, MAX_RETRY_AFTER, id="retry-after-bounded"),
    ],
)
def test_waits(attempt: int, retry_after: float | None, expected: float) -> None:
    policy = RetryPolicy(base=0.5, cap=30.0, random=Highest())
    response = ApiResponse(503, retry_after=retry_after)
    assert policy.wait(attempt, response) == pytest.approx(expected)


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    policy = RetryPolicy(base=1.0, cap=8.0, random=random.Random(7))
    waits = [policy.wait(3, ApiResponse(503)) for _ in range(500)]
    assert 0.0 <= min(waits) < 0.2
    assert 3.8 < max(waits) <= 4.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("3", 3.0, id="seconds"),
        pytest.param("1.5", 1.5, id="fraction"),
        pytest.param("-4", None, id="negative"),
        pytest.param("soon", None, id="garbage"),
        pytest.param(
            format_datetime(datetime.now(UTC) - timedelta(minutes=1), usegmt=True),
            0.0,
            id="date-past",
        ),
    ],
)
def test_retry_after_header(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_retry_after_as_a_future_date() -> None:
    header = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    assert 80 < (parse_retry_after(header) or 0) <= 90


def test_throttling_halves_the_rate_and_shrinks_concurrency_once_per_burst() -> None:
    # Changed with issue 12: a storm (Pacer.STORM throttled answers in a row) halves the
    # rate when nothing was let through to measure the limit from; a lone one cuts 1 %.
    clock = FakeClock()
    pacer = Pacer(Limits(concurrency=8, rate=40), clock=clock, sleep=clock.sleep)
    sent = clock.now
    clock.now += 0.1
    for _ in range(Pacer.STORM):
        pacer.throttled(sent, None, "APIGW.0308")
    assert (pacer.rate.rate, pacer.capacity.total_tokens) == (20, 4)
    pacer.throttled(sent, None, "APIGW.0308")  # same burst: started before the decrease
    assert pacer.rate.rate == 20
    clock.now += 0.1
    for _ in range(Pacer.STORM):  # requests started after it: count
        pacer.throttled(clock.now, None, "IMG.0060")
    assert (pacer.rate.rate, pacer.capacity.total_tokens) == (10, 2)


def test_healthy_answers_recover_additively_and_never_pass_the_configured_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(Limits(concurrency=4, rate=20), clock=clock, sleep=clock.sleep)
    for _ in range(Pacer.STORM):  # a storm, nothing let through to measure from: halves
        pacer.throttled(clock.now, None, "429")
    assert pacer.rate.rate == 10
    steps = 0
    while pacer.rate.rate < 20:
        pacer.healthy()
        steps += 1
    assert pacer.rate.rate == 20
    assert pacer.capacity.total_tokens == 4
    assert 10 < steps < 200  # additive: gradual, not a jump back
    pacer.healthy()
    assert pacer.rate.rate == 20


def test_the_rate_never_falls_below_the_minimum() -> None:
    clock = FakeClock()
    pacer = Pacer(Limits(concurrency=2, rate=1), clock=clock, sleep=clock.sleep)
    for _ in range(20):
        clock.now += 1
        pacer.throttled(clock.now, None, "429")
    assert pacer.rate.rate == pytest.approx(0.2)
    assert pacer.capacity.total_tokens == 1


@pytest.mark.anyio
async def test_retry_after_holds_every_start() -> None:
    clock = FakeClock()
    pacer = Pacer(Limits(concurrency=2, rate=100), clock=clock, sleep=clock.sleep)
    await pacer.rate.wait()
    pacer.throttled(clock.now, 5.0, "APIGW.0308")
    await pacer.rate.wait()
    assert clock.now == pytest.approx(105.0)


@pytest.mark.parametrize(
    ("response", "throttled"),
    [
        pytest.param(ApiResponse(429), True, id="429"),
        pytest.param(ApiResponse(400, error_code="IMG.0060"), True, id="img-0060"),
        pytest.param(ApiResponse(503), False, id="503"),
        pytest.param(ApiResponse(400, error_code="IMG.0035"), False, id="conflict"),
    ],
)
def test_what_counts_as_throttling(response: ApiResponse, throttled: bool) -> None:
    assert is_throttled(response) is throttled
