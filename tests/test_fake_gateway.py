"""The fake's gateway limits over real sockets: a sliding window and a token bucket of R per
second, reads and writes on one quota, 429 ``APIGW.0308`` beyond.

The fake's clock is frozen (a time source the test moves by hand), so which request is
beyond the limit depends on the order of the requests only, never on how fast they went.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from batchpatch.fake import FakeClock, FakeConfig, FakeServer, running_fake
from batchpatch.fake import cli as fake_cli
from tests.fakeclient import Reply, new_session, token_headers, url_of
from tests.fakeclient import send as send_to

TOKEN = "gateway-token"
IMAGES: list[dict[str, Any]] = [
    {"id": f"img-{n}", "name": f"web-{n}", "status": "active"} for n in (1, 2, 3)
]
THROTTLED = (
    "The throttling threshold has been reached: policy user over ratelimit,limit:{},time:1 second"
)


def frozen_clock() -> FakeClock:
    """The fake's clock on a time source that stands still unless ``advance`` moves it."""
    return FakeClock(time_source=lambda: 1_767_225_600.0)  # 2026-01-01T00:00:00Z


async def burst(fake: FakeServer, count: int) -> list[Reply]:
    """``count`` requests one after the other, PATCHes and GETs in turn."""
    replies = []
    async with new_session() as session:
        for n in range(count):
            if n % 2:
                headers = token_headers(TOKEN, content_type=None)
                replies.append(
                    await send_to(session, "GET", url_of(fake, "/v2/cloudimages"), headers=headers)
                )
            else:
                path = f"/v2/cloudimages/img-{n % 3 + 1}"
                body = [{"op": "replace", "path": "/name", "value": f"n{n}"}]
                headers = token_headers(TOKEN, content_type="application/json")
                replies.append(
                    await send_to(
                        session, "PATCH", url_of(fake, path), json_body=body, headers=headers
                    )
                )
    return replies


def statuses(replies: list[Reply]) -> list[int | str]:
    return [reply.status for reply in replies]


@pytest.mark.asyncio
async def test_the_window_refuses_beyond_r_in_a_rolling_second_reads_and_writes_alike() -> None:
    clock = frozen_clock()
    with running_fake(IMAGES, FakeConfig(token=TOKEN, rate_limit=5), clock=clock) as fake:
        first = await burst(fake, 7)
        clock.advance(0.999)  # the five admitted are still inside the window
        still = await burst(fake, 1)
        clock.advance(0.001)  # now they are a second old: out of it
        later = await burst(fake, 6)
        snap = fake.stats.snapshot()
    assert statuses(first) == [200] * 5 + [429] * 2
    assert statuses(still) == [429]
    assert statuses(later) == [200] * 5 + [429]
    for reply in (*first[5:], *still, later[5]):
        assert reply.body == {
            "error_code": "APIGW.0308",
            "error_msg": THROTTLED.format(5),
            "request_id": reply.headers["X-Request-Id"],
        }
    assert snap.faults == Counter({"rate_limit": 4})
    refused_methods = {entry.method for entry in snap.log if entry.status == 429}
    assert refused_methods == {"GET", "PATCH"}  # one quota for both


@pytest.mark.asyncio
async def test_the_token_bucket_refills_at_r_per_second() -> None:
    clock = frozen_clock()
    config = FakeConfig(token=TOKEN, token_bucket=4)
    with running_fake(IMAGES, config, clock=clock) as fake:
        full = await burst(fake, 5)
        clock.advance(0.5)  # two tokens back
        refilled = await burst(fake, 3)
        clock.advance(60)  # a long idle spell fills the bucket, no more
        idle = await burst(fake, 5)
    assert statuses(full) == [200] * 4 + [429]
    assert full[4].body["error_msg"] == THROTTLED.format(4)
    assert statuses(refilled) == [200, 200, 429]
    assert statuses(idle) == [200] * 4 + [429]


@pytest.mark.asyncio
async def test_with_both_limits_a_request_must_pass_both_and_a_refusal_uses_up_neither() -> None:
    clock = frozen_clock()
    config = FakeConfig(token=TOKEN, rate_limit=4, token_bucket=4)
    with running_fake(IMAGES, config, clock=clock) as fake:
        first = await burst(fake, 6)
        clock.advance(0.5)  # the bucket has two tokens again, the window no room yet
        half = await burst(fake, 2)
        clock.advance(0.5)  # a second on: the window is empty, the bucket full again
        second = await burst(fake, 5)
    assert statuses(first) == [200] * 4 + [429] * 2
    assert statuses(half) == [429, 429]
    assert statuses(second) == [200] * 4 + [429]


def test_the_fake_cli_takes_both_limits() -> None:
    args = fake_cli.build_parser().parse_args(
        ["--images", "x.json", "--rate-limit", "200", "--token-bucket", "150"]
    )
    config = fake_cli.config_from_args(args, {})
    assert (config.rate_limit, config.token_bucket, config.throttle_limit) == (200, 150, 200)


@pytest.mark.parametrize("value", [0, 2.5, float("inf")])
def test_a_token_bucket_must_be_a_whole_number_of_requests(value: float) -> None:
    with pytest.raises(ValueError, match="token_bucket must be a whole number"):
        FakeConfig(token_bucket=value)
