"""``sleep_unless_stopped`` on the real clock (one cancel scope) says what happened: True
after the whole sleep, False when the stop came first (at once, not at the sleep's end)."""

from __future__ import annotations

import anyio
import pytest

from batchpatch.throttle import sleep_unless_stopped


@pytest.mark.anyio
async def test_a_whole_sleep_is_true() -> None:
    assert await sleep_unless_stopped(anyio.sleep, 0.001, anyio.Event())


@pytest.mark.anyio
async def test_a_stop_during_the_sleep_cuts_it_short() -> None:
    stop = anyio.Event()
    results: list[bool] = []

    async def sleeper() -> None:
        results.append(await sleep_unless_stopped(anyio.sleep, 3600, stop))

    with anyio.fail_after(60):  # the hour-long sleep must end with the stop, not after it
        async with anyio.create_task_group() as group:
            group.start_soon(sleeper)
            await anyio.wait_all_tasks_blocked()
            stop.set()
    assert results == [False]


@pytest.mark.anyio
async def test_a_stop_set_before_is_false_at_once() -> None:
    stop = anyio.Event()
    stop.set()
    with anyio.fail_after(60):
        assert not await sleep_unless_stopped(anyio.sleep, 3600, stop)
