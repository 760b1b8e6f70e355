"""Fault injection in the fake IMS: scripted and random faults, the rate limit, resets, hangs.

Every request goes over a real socket with aiohttp's client, so a dropped connection or a
hang is seen exactly as a client of the real service would see it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from batchpatch.fake import FakeConfig, FakeServer, main, running_fake
from batchpatch.fake import cli as fake_cli
from batchpatch.fake.config import FAULT_KINDS
from batchpatch.fake.faults import FaultPlan, SlidingWindow
from batchpatch.fake.harness import SHUTDOWN_TIMEOUT
from tests.fakeclient import DROPPED, Reply, new_session, token_headers, url_of
from tests.fakeclient import send as send_to

TOKEN = "fault-token"
IMAGES: list[dict[str, Any]] = [
    {"id": f"img-{n}", "name": f"web-{n}", "status": "active", "min_ram": 0} for n in (1, 2, 3)
]
ORIGINAL = {image["id"]: image for image in IMAGES}
THROTTLED = (
    "The throttling threshold has been reached: policy user over ratelimit,limit:{},time:1 second"
)


def rename(name: str) -> list[dict[str, str]]:
    return [{"op": "replace", "path": "/name", "value": name}]


async def send(
    session: aiohttp.ClientSession,
    fake: FakeServer,
    method: str,
    image_id: str | None = None,
    *,
    name: str = "renamed",
    token: str | None = TOKEN,
    give_up_after: float | None = None,
) -> Reply:
    """One PATCH of ``image_id`` (or one GET of the list); a disconnect is DROPPED."""
    path = "/v2/cloudimages" + (f"/{image_id}" if image_id else "")
    if method != "PATCH":
        headers = token_headers(token, content_type=None)
        return await send_to(
            session, method, url_of(fake, path), headers=headers, give_up_after=give_up_after
        )
    headers = token_headers(token, content_type="application/json")
    return await send_to(
        session,
        method,
        url_of(fake, path),
        json_body=rename(name),
        headers=headers,
        give_up_after=give_up_after,
    )


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    """Wait for a condition the server reaches on its own thread (polling, with a deadline)."""
    deadline = time.monotonic() + within
    for _ in range(100_000):
        if check():
            return
        assert time.monotonic() < deadline, "the server never got there"
        await asyncio.sleep(0.005)


# --- Scripted faults, one kind at a time -----------------------------------------------------

IMS_500 = {"error": {"code": "IMG.0061", "message": "Unknown system error."}}
IMS_0060 = {
    "error": {"code": "IMG.0060", "message": "The number of tasks exceeds the flow control limit."}
}
GW_503 = {"error_code": "APIGW.0201", "error_msg": "Backend unavailable."}


def gw_429(limit: int) -> dict[str, str]:
    return {"error_code": "APIGW.0308", "error_msg": THROTTLED.format(limit)}


SCRIPTED = [
    pytest.param("ok", {}, 200, None, None, True, id="ok"),
    pytest.param("500", {}, 500, IMS_500, None, False, id="500"),
    pytest.param("503", {}, 503, GW_503, None, False, id="503"),
    pytest.param("IMG.0060", {}, 400, IMS_0060, None, False, id="img-0060"),
    pytest.param("429", {}, 429, gw_429(200), None, False, id="429-gateway-default-limit"),
    pytest.param("429", {"rate_limit": 20}, 429, gw_429(20), None, False,
                 id="429-configured-limit"),
    pytest.param("429", {"retry_after": 1.2}, 429, gw_429(200), "2", False,
                 id="429-retry-after-rounded-up"),
    pytest.param("429", {"retry_after": 0}, 429, gw_429(200), "0", False, id="429-retry-after-0"),
    pytest.param("reset_before", {}, DROPPED, None, None, False, id="reset-before"),
    pytest.param("reset_after", {}, DROPPED, None, None, True, id="reset-after"),
]  # fmt: skip


@pytest.mark.asyncio
@pytest.mark.parametrize(("fault", "extra", "status", "body", "retry_after", "applied"), SCRIPTED)
async def test_a_scripted_fault_answers_and_applies_as_its_kind_says(
    fault: str,
    extra: dict[str, Any],
    status: int | str,
    body: dict[str, Any] | None,
    retry_after: str | None,
    applied: bool,
) -> None:
    config = FakeConfig(token=TOKEN, script={"img-1": [fault, "ok"]}, **extra)
    with running_fake(IMAGES, config) as fake:
        async with new_session() as client:
            first = await send(client, fake, "PATCH", "img-1", name="first")
            after_first = fake.store.images
            second = await send(client, fake, "PATCH", "img-1", name="second")
        snap = fake.stats.snapshot()

    assert first.status == status
    if body is not None:
        if "error_code" in body:  # the gateway's shape carries the request id
            body = {**body, "request_id": first.headers["X-Request-Id"]}
        assert first.body == body
    assert first.headers.get("Retry-After") == retry_after
    assert after_first["img-1"]["name"] == ("first" if applied else "web-1")
    assert {k: v for k, v in after_first.items() if k != "img-1"} == {
        k: v for k, v in ORIGINAL.items() if k != "img-1"
    }
    # The next item, "ok", answers normally: the script is used in order, once.
    assert (second.status, second.body["name"]) == (200, "second")
    assert snap.applied_by_image == Counter({"img-1": 1 + applied})
    assert snap.patches_by_image == Counter({"img-1": 2})
    assert snap.faults == (Counter() if fault == "ok" else Counter({fault: 1}))
    logged = 444 if status == DROPPED else status
    assert [entry.status for entry in snap.log] == [logged, 200]
    assert snap.in_flight == 0


@pytest.mark.asyncio
async def test_a_script_comes_before_the_dice_and_only_for_its_image() -> None:
    config = FakeConfig(token=TOKEN, error_500=1.0, script={"img-1": ["503", "ok", "IMG.0060"]})
    with running_fake(IMAGES, config) as fake:
        async with new_session() as client:
            img1 = [(await send(client, fake, "PATCH", "img-1")).status for _ in range(5)]
            img2 = [(await send(client, fake, "PATCH", "img-2")).status for _ in range(2)]
        snap = fake.stats.snapshot()
    # "ok" forbids the random 500 too; once the script is used up, the dice decide.
    assert img1 == [503, 200, 400, 500, 500]
    assert img2 == [500, 500]
    assert snap.applied_by_image == Counter({"img-1": 1})
    assert snap.faults == Counter({"503": 1, "IMG.0060": 1, "500": 4})


@pytest.mark.asyncio
async def test_decisions_go_auth_then_rate_limit_then_script() -> None:
    config = FakeConfig(token=TOKEN, rate_limit=2, script={"img-1": ["500", "503"]})
    with running_fake(IMAGES, config) as fake:
        async with new_session() as client:
            refused = [await send(client, fake, "PATCH", "img-1", token=None) for _ in range(3)]
            statuses = [
                (await send(client, fake, "PATCH", "img-1")).status,
                (await send(client, fake, "GET")).status,
                (await send(client, fake, "PATCH", "img-1")).status,
            ]
        snap = fake.stats.snapshot()
    # 401s are never faulted and use neither the window nor the script; the throttled
    # PATCH leaves the script's "503" for a later one.
    assert [outcome.status for outcome in refused] == [401] * 3
    assert statuses == [500, 200, 429]
    assert snap.faults == Counter({"500": 1, "rate_limit": 1})
    assert snap.applied_by_image == Counter()


# --- Hangs -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_hang_times_the_client_out_and_ends_when_it_leaves() -> None:
    config = FakeConfig(token=TOKEN, script={"img-1": ["hang"]})
    with running_fake(IMAGES, config) as fake:
        async with new_session() as client:
            with pytest.raises(TimeoutError):
                await send(client, fake, "PATCH", "img-1", give_up_after=0.2)
            await eventually(lambda: fake.stats.snapshot().in_flight == 0)
            assert fake.store.images == ORIGINAL
            again = await send(client, fake, "PATCH", "img-1", name="again")
        snap = fake.stats.snapshot()
    assert again.status == 200
    assert [entry.status for entry in snap.log] == [499, 200]  # 499: the client went away
    assert snap.faults == Counter({"hang": 1})
    assert snap.applied_by_image == Counter({"img-1": 1})


@pytest.mark.asyncio
async def test_a_hang_does_not_hold_up_shutdown() -> None:
    config = FakeConfig(token=TOKEN, hang=1.0)
    async with new_session() as client:
        with running_fake(IMAGES, config) as fake:
            pending = asyncio.ensure_future(send(client, fake, "PATCH", "img-1"))
            await eventually(lambda: fake.stats.snapshot().in_flight == 1)
            stopping = time.monotonic()
        stopped_in = time.monotonic() - stopping
        outcome = await pending
    assert stopped_in < SHUTDOWN_TIMEOUT / 2  # not left to aiohttp's shutdown timeout
    assert outcome.status == DROPPED
    assert fake.stats.log[0].status == 444
    assert fake.store.images == ORIGINAL


# --- The rate limit --------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("retry_after", "header"),
    [
        pytest.param(None, None, id="no-retry-after"),
        pytest.param(0.3, "1", id="retry-after-rounded-up"),
        pytest.param(3, "3", id="retry-after-whole"),
    ],
)
async def test_a_burst_over_the_rate_limit_gets_exactly_the_excess_refused(
    retry_after: float | None, header: str | None
) -> None:
    limit, burst = 10, 25
    config = FakeConfig(token=TOKEN, rate_limit=limit, retry_after=retry_after)
    with running_fake(IMAGES, config) as fake:
        async with new_session() as client:
            requests = [
                send(client, fake, *(("PATCH", f"img-{n % 3 + 1}") if n % 2 else ("GET",)))
                for n in range(burst)
            ]
            outcomes = await asyncio.gather(*requests)
        snap = fake.stats.snapshot()
    assert max(snap.arrivals) - min(snap.arrivals) < 1, "the burst was too slow to test"
    refused = [outcome for outcome in outcomes if outcome.status == 429]
    assert len(refused) == burst - limit
    assert all(outcome.status == 200 for outcome in outcomes if outcome.status != 429)
    for outcome in refused:
        assert outcome.body == {**gw_429(limit), "request_id": outcome.headers["X-Request-Id"]}
        assert outcome.headers.get("Retry-After") == header
    assert snap.faults == Counter({"rate_limit": burst - limit})
    patched = sum(1 for n, outcome in enumerate(outcomes) if n % 2 and outcome.status == 200)
    assert sum(snap.applied_by_image.values()) == patched


@pytest.mark.parametrize(
    ("limit", "arrivals", "admitted"),
    [
        pytest.param(2, [0, 0.1, 0.5, 0.99], [True, True, False, False], id="full-window"),
        pytest.param(2, [0, 0.1, 1.0, 1.05, 1.1], [True, True, True, False, True],
                     id="slides-as-admissions-age"),
        pytest.param(1, [0, 0.5, 0.9, 1.0], [True, False, False, True],
                     id="refusals-do-not-extend-it"),
        pytest.param(3, [5, 5, 5, 5], [True, True, True, False], id="same-instant"),
    ],
)  # fmt: skip
def test_the_sliding_window_admits_at_most_limit_per_second(
    limit: int, arrivals: list[float], admitted: list[bool]
) -> None:
    now = iter(arrivals)
    window = SlidingWindow(limit, clock=lambda: next(now))
    assert [window.admit() for _ in arrivals] == admitted


# --- Random faults ---------------------------------------------------------------------------

RATES: dict[str, Any] = {"error_500": 0.15, "error_503": 0.1, "flow_control": 0.1,
                         "reset_before": 0.05, "reset_after": 0.05}  # fmt: skip
PATCHES, GETS = 240, 60


async def _random_run(seed: int) -> tuple[list[int | str], Any]:
    config = FakeConfig(token=TOKEN, seed=seed, **RATES)
    with running_fake(IMAGES, config) as fake:
        async with new_session() as client:
            statuses = [
                (await send(client, fake, "PATCH", f"img-{n % 3 + 1}", name=f"n{n}")).status
                for n in range(PATCHES)
            ]
            statuses += [(await send(client, fake, "GET")).status for _ in range(GETS)]
        return statuses, fake.stats.snapshot()


@pytest.mark.asyncio
async def test_random_faults_are_reproducible_with_a_seed_and_near_their_rates() -> None:
    statuses, snap = await _random_run(seed=7)
    again, _ = await _random_run(seed=7)
    other, _ = await _random_run(seed=8)
    assert statuses == again
    assert statuses != other

    patches, gets = statuses[:PATCHES], statuses[PATCHES:]
    faults = snap.faults
    # Each fault shows as its status, and nothing else fails.
    assert faults["500"] == statuses.count(500)
    assert faults["503"] == statuses.count(503)
    assert faults["IMG.0060"] == statuses.count(400)
    assert faults["reset_before"] + faults["reset_after"] == statuses.count(DROPPED)
    assert statuses.count(200) + faults.total() == PATCHES + GETS
    assert [entry.status for entry in snap.log] == [444 if s == DROPPED else s for s in statuses]
    # A GET draws only 500 and 503.
    assert set(gets) <= {200, 500, 503}
    # Roughly at the configured rates (loose: a third to two and a half times the mean).
    draws = {"error_500": PATCHES + GETS, "error_503": PATCHES + GETS}
    kinds = {"error_500": "500", "error_503": "503", "flow_control": "IMG.0060",
             "reset_before": "reset_before", "reset_after": "reset_after"}  # fmt: skip
    for name, rate in RATES.items():
        mean = draws.get(name, PATCHES) * rate
        assert mean / 3 <= faults[kinds[name]] <= mean * 2.5, (name, faults)
    # Applied: each PATCH answered 200, and each reset_after, once; nothing else.
    assert snap.applied_by_image.total() == patches.count(200) + faults["reset_after"]


def test_the_plan_draws_jitter_within_bounds_and_reproducibly() -> None:
    config = FakeConfig(latency=0.5, jitter=0.25, seed=3)
    delays = [FaultPlan(config).delay() for _ in range(2)]
    plan = FaultPlan(config)
    many = [plan.delay() for _ in range(200)]
    assert delays[0] == delays[1] == many[0]
    assert all(0.5 <= delay <= 0.75 for delay in many)
    assert max(many) - min(many) > 0.2  # spread over the range, not stuck
    assert FaultPlan(FakeConfig(latency=0.5)).delay() == 0.5


# --- FakeConfig ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        pytest.param({"jitter": -0.1}, "jitter must be", id="negative-jitter"),
        pytest.param({"jitter": float("inf")}, "jitter must be", id="infinite-jitter"),
        pytest.param({"latency": float("nan")}, "latency must be", id="nan-latency"),
        pytest.param({"error_500": 1.5}, "error_500 must be a probability", id="above-1"),
        pytest.param({"hang": -0.01}, "hang must be a probability", id="negative"),
        pytest.param({"error_503": float("nan")}, "error_503 must be", id="nan-probability"),
        pytest.param({"reset_before": 0.6, "reset_after": 0.6}, "sum to 1.2", id="sum-above-1"),
        pytest.param({"rate_limit": 0}, "rate_limit must be", id="rate-zero"),
        pytest.param({"rate_limit": 2.5}, "whole number", id="rate-fraction"),
        pytest.param({"rate_limit": float("inf")}, "rate_limit must be", id="rate-infinite"),
        pytest.param({"retry_after": -1}, "retry_after must be", id="negative-retry-after"),
        pytest.param({"script": {"img-1": ["ok", "404"]}}, "unknown fault '404'",
                     id="script-unknown-fault"),
        pytest.param({"script": {"img-1": "500"}}, "not the string", id="script-string"),
    ],
)  # fmt: skip
def test_fake_config_refuses_bad_fault_settings(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        FakeConfig(**fields)


def test_fake_config_freezes_its_script_and_stays_hashable() -> None:
    faults = ["500", "ok"]
    config = FakeConfig(script={"img-1": faults}, error_500=0.5, hang=0.5, rate_limit=20.0)
    faults.append("hang")
    assert config.script == {"img-1": ("500", "ok")}
    with pytest.raises(TypeError):
        config.script["img-2"] = ("ok",)  # type: ignore[index]
    assert config == FakeConfig(script={"img-1": ("500", "ok")}, error_500=0.5, hang=0.5,
                                rate_limit=20)  # fmt: skip
    assert hash(config) == hash(FakeConfig(error_500=0.5, hang=0.5, rate_limit=20))
    assert config.throttle_limit == 20
    assert set(FAULT_KINDS) == {"ok", "500", "503", "429", "IMG.0060", "reset_before",
                                "reset_after", "hang", "502_after", "504_after"}  # fmt: skip


@pytest.mark.parametrize(
    "method", [pytest.param("GET", id="get"), pytest.param("PATCH", id="patch")]
)
@pytest.mark.parametrize(
    ("fields", "get_status", "patch_status"),
    [
        pytest.param({"error_500": 1.0}, 500, 500, id="error-500"),
        pytest.param({"error_503": 1.0}, 503, 503, id="error-503"),
        pytest.param({"flow_control": 1.0}, 200, 400, id="flow-control-is-patch-only"),
        pytest.param({"reset_before": 1.0}, 200, DROPPED, id="reset-is-patch-only"),
    ],
)
@pytest.mark.asyncio
async def test_certain_random_faults_hit_the_routes_they_name(
    method: str, fields: dict[str, Any], get_status: int, patch_status: int | str
) -> None:
    with running_fake(IMAGES, FakeConfig(token=TOKEN, **fields)) as fake:
        async with new_session() as client:
            outcome = await send(client, fake, method, "img-1" if method == "PATCH" else None)
    assert outcome.status == (patch_status if method == "PATCH" else get_status)


# --- The CLI ---------------------------------------------------------------------------------


@pytest.fixture
def images_file(tmp_path: Path) -> Path:
    path = tmp_path / "images.json"
    path.write_text(json.dumps(IMAGES), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("flags", "fields"),
    [
        pytest.param([], {}, id="no-faults"),
        pytest.param(["--jitter", "0.5"], {"jitter": 0.5}, id="jitter"),
        pytest.param(["--error-500", "0.1", "--error-503", "0.2", "--flow-control", "0.3"],
                     {"error_500": 0.1, "error_503": 0.2, "flow_control": 0.3}, id="errors"),
        pytest.param(["--reset-before", "0.3", "--reset-after", "0.3", "--hang", "0.4"],
                     {"reset_before": 0.3, "reset_after": 0.3, "hang": 0.4},
                     id="drops-summing-to-1"),
        pytest.param(["--rate-limit", "20", "--retry-after", "2.5"],
                     {"rate_limit": 20, "retry_after": 2.5}, id="rate-limit"),
        pytest.param(["--seed", "42", "--error-500", "1"], {"seed": 42, "error_500": 1.0},
                     id="seed"),
    ],
)  # fmt: skip
def test_fake_ims_main_builds_the_config_from_the_fault_flags(
    images_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    fields: dict[str, Any],
) -> None:
    served: list[FakeConfig] = []

    async def serve(store: object, config: FakeConfig, host: str, port: int) -> None:
        served.append(config)

    monkeypatch.setattr(fake_cli, "_serve", serve)
    assert main(["--images", str(images_file), *flags]) == 0
    assert served == [FakeConfig(**fields)]


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        pytest.param(["--error-500", "1.5"], "argument --error-500: must be a probability",
                     id="above-1"),
        pytest.param(["--error-503", "-0.1"], "argument --error-503: must be a probability",
                     id="negative"),
        pytest.param(["--hang", "nan"], "argument --hang: must be a probability", id="nan"),
        pytest.param(["--flow-control", "often"], "argument --flow-control: not a probability",
                     id="not-a-number"),
        pytest.param(["--reset-before", ""], "argument --reset-before: not a probability",
                     id="empty"),
        pytest.param(["--reset-after", "2"], "argument --reset-after: must be", id="reset-2"),
        pytest.param(["--rate-limit", "0"], "argument --rate-limit: must be a whole number",
                     id="rate-zero"),
        pytest.param(["--rate-limit", "2.5"], "argument --rate-limit: not a whole number",
                     id="rate-fraction"),
        pytest.param(["--retry-after", "-1"], "argument --retry-after: must be a finite",
                     id="negative-retry-after"),
        pytest.param(["--jitter", "inf"], "argument --jitter: must be a finite", id="jitter-inf"),
        pytest.param(["--seed", "x"], "argument --seed: not a whole number", id="seed-text"),
    ],
)  # fmt: skip
def test_fake_ims_main_refuses_bad_fault_flags(
    images_file: Path, capsys: pytest.CaptureFixture[str], flags: list[str], problem: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--images", str(images_file), *flags])
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"Error: {problem}")
    assert "Traceback" not in err


def test_fake_ims_main_refuses_probabilities_summing_above_1(
    images_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--images", str(images_file), "--error-500", "0.6", "--hang", "0.6"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: the fault probabilities")
    assert "sum to 1.2" in err
    assert "Traceback" not in err
