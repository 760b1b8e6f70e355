"""What keeps the client's overhead low (issue 12 point 3), each without loosening a rule:
a free slot and a due turn taken without a trip through the event loop, one worker per slot
taking images in sheet order, no turn in the rate spent on nothing, every journal line in
the OS before its request, the configured rate kept exactly, the garbage collector spared
while sending and restored after."""

from __future__ import annotations

import gc
import logging
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.lowlevel import checkpoint

from batchpatch.journal import Journal
from batchpatch.ledger import Ledger
from batchpatch.models import ImagePatch, Limits, Operation, Status
from batchpatch.plan import ImagePlan, unplanned
from batchpatch.runner import GC_SPACING, Runner
from batchpatch.service import ApiResponse
from batchpatch.throttle import Pacer, RateLimiter
from tests.test_runner import ScriptedClient
from tests.test_throttle import FakeClock

IDS = [str(uuid.UUID(int=n + 1, version=4)) for n in range(12)]


def plans(ids: list[str]) -> list[ImagePlan]:
    return [
        unplanned(ImagePatch(i, (Operation("replace", "/name", f"new-{n}"),), (n + 2,)))
        for n, i in enumerate(ids)
    ]


class OrderedClient(ScriptedClient):
    """Answers every PATCH with the patched image, noting the order the PATCHes came in and
    the collector's threshold while each was sent."""

    def __init__(self) -> None:
        super().__init__([])
        self.order: list[str] = []
        self.thresholds: set[tuple[int, int, int]] = set()

    async def update_image(self, image_id: str, operations: list[dict[str, Any]]) -> ApiResponse:
        self.order.append(image_id)
        self.thresholds.add(gc.get_threshold())
        await checkpoint()  # an answer takes a trip through the loop, as a socket's does
        return ApiResponse(200, {"id": image_id, "name": operations[0]["value"]})


class CountingLimiter(RateLimiter):
    """Counts the turns it gives."""

    __slots__ = ("turns",)

    def __init__(self, rate: float) -> None:
        super().__init__(rate)
        self.turns = 0

    def _started(self, due: float, now: float) -> None:
        self.turns += 1
        super()._started(due, now)


@pytest.mark.anyio
async def test_a_free_slot_and_a_due_turn_are_taken_without_a_trip_through_the_loop() -> None:
    clock = FakeClock()
    pacer = Pacer(Limits(4, 1000.0, 30.0), clock=clock, sleep=clock.sleep)
    others: list[str] = []

    async def other() -> None:
        others.append("ran")

    async with anyio.create_task_group() as group:
        group.start_soon(other)  # runs at this task's first checkpoint
        borrower = await pacer.acquire()
        assert others == []  # nothing else ran: no checkpoint was taken
        pacer.release(borrower)
    assert others == ["ran"]


@pytest.mark.anyio
async def test_no_start_jumps_ahead_of_a_caller_waiting_for_its_turn() -> None:
    clock, wake = FakeClock(), anyio.Event()

    async def sleep(seconds: float) -> None:  # asleep until the test wakes it
        await wake.wait()
        clock.now += seconds

    limiter = RateLimiter(1.0, clock=clock, sleep=sleep)
    assert limiter.try_start()  # the first start goes at once
    assert not limiter.try_start()  # the next is a second away
    starts: list[float] = []

    async def waiter() -> None:
        await limiter.wait()
        starts.append(clock.now)

    async with anyio.create_task_group() as group:
        group.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()  # the waiter is asleep, first in line
        clock.now += 5  # the turn is due, the waiter not awake yet
        assert not limiter.try_start()  # nobody takes the turn from it
        wake.set()
    assert starts == [106.0]  # it woke (a second's sleep, on the moved clock) and started


@pytest.mark.anyio
async def test_workers_start_the_images_in_sheet_order_and_spend_no_turn_on_nothing() -> None:
    client = OrderedClient()
    pacer = Pacer(Limits(8, 1000.0, 30.0))
    pacer.rate = limiter = CountingLimiter(1000.0)
    outcomes = await Runner(client, pacer).run(plans(IDS[:3]))  # fewer images than slots
    assert client.order == IDS[:3]
    assert {o.status for o in outcomes.values()} == {Status.SUCCEEDED}
    assert limiter.turns == 3  # idle workers took no turn (at 10/s each would cost 0.1 s)
    assert pacer.capacity.borrowed_tokens == 0

    client = OrderedClient()
    await Runner(client, Pacer(Limits(4, 1000.0, 30.0))).run(plans(IDS))
    assert client.order == IDS  # four workers, one order


@pytest.mark.anyio
async def test_a_stop_during_the_run_starts_nothing_more() -> None:
    stop = anyio.Event()

    class Stopping(OrderedClient):
        async def update_image(
            self, image_id: str, operations: list[dict[str, Any]]
        ) -> ApiResponse:
            if len(self.order) == 3:
                stop.set()
            return await super().update_image(image_id, operations)

    client = Stopping()
    pacer = Pacer(Limits(2, 1000.0, 30.0))
    outcomes = await Runner(client, pacer, stop=stop).run(plans(IDS))
    assert 4 <= len(client.order) <= 5  # those holding a turn when it came, no more
    assert len(outcomes) == len(client.order)
    assert pacer.capacity.borrowed_tokens == 0


def test_each_journal_line_is_in_the_os_before_the_call_returns(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    ledger = Ledger()
    journal = Journal(path, ledger, sheet_sha256="s", endpoint="e")
    plan = plans(IDS[:1])[0]
    ledger.sending(plan)
    # read through another descriptor, with the journal still open and never flushed
    assert '"event":"sending"' in path.read_text(encoding="utf-8").splitlines()[-1]
    journal.close(finished=False)
    journal.close(finished=True)  # a second close only removes the finished journal
    assert not path.exists()
    assert journal.error is None


def test_the_configured_rate_is_kept_exactly_and_healthy_answers_leave_it_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pacer = Pacer(Limits(64, 100_000.0, 30.0))
    assert pacer.rate.rate == 100_000.0  # not 1 / (1 / 100000), a hair below
    with caplog.at_level(logging.DEBUG, logger="batchpatch.throttle"):
        for _ in range(3):
            pacer.healthy()
    assert caplog.records == []  # at the configured rate already: nothing re-set
    assert pacer.capacity.total_tokens == 64


@pytest.mark.anyio
async def test_the_collector_is_spared_while_sending_and_restored_after() -> None:
    before = gc.get_threshold()
    client = OrderedClient()
    await Runner(client, Pacer(Limits(4, 1000.0, 30.0))).run(plans(IDS[:6]))
    assert client.thresholds == {(before[0] * GC_SPACING, before[1], before[2])}
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0  # nothing left frozen out of collection


@pytest.mark.anyio
async def test_runners_side_by_side_restore_the_collector_when_the_last_one_ends() -> None:
    before = gc.get_threshold()
    clients = [OrderedClient(), OrderedClient()]
    async with anyio.create_task_group() as group:
        for n, client in enumerate(clients):
            runner = Runner(client, Pacer(Limits(2, 1000.0, 30.0)))
            group.start_soon(runner.run, plans(IDS[n * 6 : n * 6 + 6 - n * 3]))
    assert [len(client.order) for client in clients] == [6, 3]
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
