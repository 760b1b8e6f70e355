"""Bounded waits and bounded reads: no ``Retry-After`` holds the run longer than 600 s, a
signal during a hold stops it at once, paging that goes round in circles stops, and no
answer is read past the size cap or crashes the run when it cannot be parsed."""

from __future__ import annotations

import signal
import subprocess
import tracemalloc
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import anyio
import pytest

from batchpatch.auth import TokenAuth
from batchpatch.client import (
    MAX_RETRY_AFTER,
    UNPARSEABLE_ANSWER,
    ImsClient,
    parse_retry_after,
)
from batchpatch.fake import FakeConfig, running_fake
from batchpatch.fake.answers import gzip_huge_body
from batchpatch.models import ImagePatch, Limits, Operation, Status
from batchpatch.plan import unplanned
from batchpatch.retry import RetryPolicy
from batchpatch.runner import Runner, Safeguards
from batchpatch.throttle import MAX_HOLD, Pacer, RateLimiter
from tests.e2e import TOKEN, main_exit_code, start_cli
from tests.sheets import write_sheet
from tests.test_cli import read_report
from tests.test_resume import wait_for
from tests.test_throttle import FakeClock
from tests.wire import account

WEEKS_AHEAD = format_datetime(datetime.now(UTC) + timedelta(weeks=3), usegmt=True)
MB = 1024 * 1024


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("99999", MAX_RETRY_AFTER, id="far-seconds"),
        pytest.param(WEEKS_AHEAD, MAX_RETRY_AFTER, id="date-weeks-ahead"),
        pytest.param("inf", None, id="inf"),
        pytest.param("-inf", None, id="minus-inf"),
        pytest.param("nan", None, id="nan"),
        pytest.param("1e400", None, id="overflows-to-inf"),
        pytest.param("-1", None, id="negative"),
        pytest.param("12", 12.0, id="plain"),
    ],
)
def test_retry_after_is_capped_and_non_finite_values_refused(
    header: str, expected: float | None
) -> None:
    assert parse_retry_after(header) == expected


@pytest.mark.parametrize("value", [1e9, float("inf"), float("nan"), -5.0])
def test_a_hold_never_exceeds_the_cap(value: float) -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    limiter.hold(value)
    anyio.run(limiter.wait)
    assert all(0 <= seconds <= MAX_HOLD for seconds in clock.sleeps)


def _patches(ids: list[str]) -> list[ImagePatch]:
    return [
        ImagePatch(image_id, (Operation("remove", "/team"),), (n,))
        for n, image_id in enumerate(ids, start=2)
    ]


@pytest.mark.parametrize(
    ("header", "longest"),
    [
        pytest.param("99999", MAX_RETRY_AFTER, id="far-seconds"),
        pytest.param(WEEKS_AHEAD, MAX_RETRY_AFTER, id="date-weeks-ahead"),
        pytest.param("inf", 0.5, id="inf-is-no-header"),
    ],
)
def test_a_far_retry_after_holds_the_run_600_s_at_most(header: str, longest: float) -> None:
    """On the test's own time: every sleep the run asks for is recorded, none is slept."""
    images = account(3)
    ids = [image["id"] for image in images]
    clock = FakeClock()
    config = FakeConfig(token=TOKEN, script={ids[0]: ["429"]}, retry_after_header=header)

    async def run(url: str) -> dict[str, Status]:
        async with ImsClient(url, TokenAuth(TOKEN), timeout=10, connections=2) as client:
            pacer = Pacer(Limits(2, 10), clock=clock, sleep=clock.sleep)
            policy = RetryPolicy(sleep=clock.sleep)
            outcomes = await Runner(client, pacer, Safeguards(policy)).run(
                [unplanned(patch) for patch in _patches(ids)]
            )
        return {image_id: outcome.status for image_id, outcome in outcomes.items()}

    with running_fake(images, config) as fake:
        statuses = anyio.run(run, fake.url)
    assert statuses == dict.fromkeys(ids, Status.SUCCEEDED)
    assert max(clock.sleeps) <= longest
    if longest == MAX_RETRY_AFTER:
        assert MAX_RETRY_AFTER in clock.sleeps  # honoured, up to the cap


def test_a_signal_during_a_hold_stops_at_once_and_the_429_is_not_applied() -> None:
    """The service asks for 500 s; the stop comes as the wait begins.  Nothing is in
    flight, so the run ends now (the guard would fail the test long before 500 s)."""
    images = account(3)
    ids = [image["id"] for image in images]
    config = FakeConfig(token=TOKEN, script={ids[0]: ["429"]}, retry_after_header="500")
    stop = anyio.Event()

    async def long_sleep(seconds: float) -> None:
        if seconds > 100:
            stop.set()  # the signal arrives during the hold
        await anyio.sleep(seconds)

    async def run(url: str) -> Runner:
        async with ImsClient(url, TokenAuth(TOKEN), timeout=10, connections=2) as client:
            runner = Runner(
                client,
                Pacer(Limits(2, 10), sleep=long_sleep),
                Safeguards(RetryPolicy(sleep=long_sleep)),
                stop=stop,
            )
            with anyio.fail_after(60):
                await runner.run([unplanned(patch) for patch in _patches(ids)])
        return runner

    with running_fake(images, config) as fake:
        runner = anyio.run(run, fake.url)
        state = fake.store.images
    outcomes = runner.ledger.outcomes()
    assert list(outcomes) == [ids[0]]
    outcome = outcomes[ids[0]]
    assert (outcome.status, outcome.http_status) == (Status.FAILED, 429)
    assert "not applied" in outcome.error_message
    assert "may or may not" not in outcome.error_message
    assert all("team" in state[image_id] for image_id in ids)


def test_a_producer_waiting_out_a_hold_stops_when_told() -> None:
    async def scenario() -> tuple[bool, bool]:
        pacer = Pacer(Limits(1, 10))
        stop = anyio.Event()
        pacer.throttled(pacer.now(), 500.0, "test")

        async def signal_once_waiting() -> None:
            await anyio.wait_all_tasks_blocked()  # the producer is asleep in the hold
            stop.set()

        async with anyio.create_task_group() as group:
            group.start_soon(signal_once_waiting)
            with anyio.fail_after(30):
                borrower = await pacer.acquire(stop)
        pacer.release(borrower)
        return stop.is_set(), await pacer.rate.wait(stop)

    assert anyio.run(scenario) == (True, False)


def test_paging_that_ignores_the_marker_stops_naming_the_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    images = account(501)  # a full page of 500, and the wanted ids beyond it
    wanted = [image["id"] for image in images[450:]]
    sheet = write_sheet(
        tmp_path / "s.csv", ["image_id", "team"], [[image_id, "new"] for image_id in wanted]
    )
    with running_fake(images, FakeConfig(token=TOKEN, ignore_marker=True)) as fake:
        code = main_exit_code(
            monkeypatch,
            ["apply", str(sheet), "--endpoint", fake.url, "--quiet"],
            {"BATCHPATCH_AUTH_TOKEN": TOKEN},
        )
        lists, patches = fake.stats.list_requests, fake.stats.patch_requests
    err = capsys.readouterr().err
    assert code == 3
    assert f"{fake.url}/v2/cloudimages" in err
    assert "does not page with marker" in err
    assert (lists, patches) == (2, 0)
    assert set(read_report(tmp_path / "s.results.csv")["status"]) == {"not_attempted"}


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param("huge_body", "over 16 MB", id="huge"),
        pytest.param("gzip_huge", "over 16 MB", id="gzip-bomb"),
        pytest.param("deep_body", "nested too deep", id="deep"),
        pytest.param("bad_encoding", "not UTF-8", id="encoding"),
        pytest.param("not_json", "not JSON", id="html"),
    ],
)
def test_an_unreadable_read_stops_the_run_with_a_report_not_a_traceback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answer: str,
    message: str,
) -> None:
    images = account(2)
    sheet = write_sheet(
        tmp_path / "s.csv", ["image_id", "team"], [[image["id"], "new"] for image in images]
    )
    config = FakeConfig(token=TOKEN, list_answer=answer, huge_bytes=17 * MB)
    with running_fake(images, config) as fake:
        code = main_exit_code(
            monkeypatch,
            ["apply", str(sheet), "--endpoint", fake.url, "--quiet", "--max-attempts", "1"],
            {"BATCHPATCH_AUTH_TOKEN": TOKEN},
        )
    err = capsys.readouterr().err
    assert code == 3
    assert "unparseable answer" in err
    assert message in err
    assert "Traceback" not in err
    assert set(read_report(tmp_path / "s.results.csv")["status"]) == {"not_attempted"}


def test_a_gzip_bomb_costs_no_more_than_the_cap() -> None:
    images = account(1)
    body_size = 32 * MB
    gzip_huge_body(body_size)  # the fake's compressed body, made before measuring
    config = FakeConfig(token=TOKEN, list_answer="gzip_huge", huge_bytes=body_size)

    async def read(url: str) -> tuple[str, int]:
        async with ImsClient(
            url, TokenAuth(TOKEN), timeout=30, connections=1, max_answer=1 * MB
        ) as client:
            tracemalloc.start()
            try:
                response = await client.list_images({})
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        return response.error_code, peak

    with running_fake(images, config) as fake:
        code, peak = anyio.run(read, fake.url)
    assert code == UNPARSEABLE_ANSWER
    assert peak < 8 * MB  # the body is 32 MB once decompressed


def test_sigint_during_a_retry_after_hold_ends_the_run_now(tmp_path: Path) -> None:
    """The real process: the hold is 500 s and the grace 300 s, so only stopping at once
    can end it within the guard's 60 s."""
    images = account(3)
    ids = [image["id"] for image in images]
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "team"], [[i, "new"] for i in ids])
    config = FakeConfig(token=TOKEN, script={ids[0]: ["429"]}, retry_after_header="500")
    with running_fake(images, config) as fake:
        process = start_cli(
            ["apply", str(sheet), "--endpoint", fake.url, "--no-plan", "--grace", "300"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        wait_for(lambda: fake.stats.faults["429"] == 1, "the 429")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        state = fake.store.images
    assert process.returncode == 3, stderr
    report = read_report(tmp_path / "s.results.csv")
    assert report["status"].tolist() == ["failed", "not_attempted", "not_attempted"]
    assert report.loc[0, "http_status"] == "429"
    assert "not applied" in report.loc[0, "error_message"]
    assert "may or may not" not in report.loc[0, "error_message"]
    assert all(state[image_id]["team"] == "old" for image_id in ids)
