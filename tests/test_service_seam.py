"""The service seam: the runner and the job run end to end against an in-memory service
that is not IMS (its own answer codes, its own list shape), through ``ImageService`` only.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from batchpatch.auth import TokenAuth
from batchpatch.job import AS_WRITTEN, READ_PASS, PlanSource, RunResult, apply_sheet
from batchpatch.ledger import Event, Ledger
from batchpatch.models import Limits, Status
from batchpatch.retry import RetryPolicy
from batchpatch.runner import Safeguards
from batchpatch.service import ImageService
from tests.memory_service import LOSE_AFTER_APPLY, THROTTLE, MemoryService
from tests.sheets import write_sheet
from tests.test_cli import read_report

IDS = [f"00000000-0000-4000-8000-{n:012d}" for n in range(1, 5)]


def _service(faults: dict[str, list[str]]) -> MemoryService:
    store = {
        image_id: {"id": image_id, "status": "active", "name": f"old-{n}"}
        for n, image_id in enumerate(IDS)
    }
    store[IDS[3]]["status"] = "frozen"
    return MemoryService(store, faults)


async def _recorded(waits: list[float], seconds: float) -> None:
    waits.append(seconds)  # the policy's backoff, on the test's own time


def _apply(
    tmp_path: Path, service: ImageService, plan: PlanSource, ledger: Ledger
) -> tuple[RunResult, list[float]]:
    sheet = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "name"],
        [[image_id, f"new-{n}"] for n, image_id in enumerate(IDS)],
    )
    waits: list[float] = []
    policy = RetryPolicy(max_attempts=3, sleep=lambda s: _recorded(waits, s))

    async def run() -> RunResult:
        return await apply_sheet(
            sheet,
            endpoint="memory://images",
            auth=TokenAuth("unused"),
            limits=Limits(concurrency=2, rate=1000),
            safeguards=Safeguards(policy),
            plan=plan,
            service=service,
            ledger=ledger,
        )

    return anyio.run(run), waits


@pytest.mark.parametrize("plan", [READ_PASS, AS_WRITTEN], ids=["read-pass", "as-written"])
def test_a_run_end_to_end_against_another_service(tmp_path: Path, plan: PlanSource) -> None:
    """A throttled answer is sent again; a write applied with its answer lost is read back
    and not sent twice; a not-active image is skipped — all judged by the service's own
    ``classify``, none by IMS codes."""
    service = _service({IDS[0]: [THROTTLE], IDS[1]: [LOSE_AFTER_APPLY]})
    told: list[tuple[Event, str]] = []
    ledger = Ledger()
    ledger.listen(lambda event, entry, outcome: told.append((event, entry.image_id)))
    result, waits = _apply(tmp_path, service, plan, ledger)

    assert [service.store[i]["name"] for i in IDS] == ["new-0", "new-1", "new-2", "old-3"]
    assert service.applied == {IDS[0]: 1, IDS[1]: 1, IDS[2]: 1}  # nothing applied twice
    report = read_report(tmp_path / "s.results.csv")
    assert report["status"].tolist() == ["succeeded", "succeeded", "succeeded", "skipped"]
    assert "reading the image back shows the change in place" in report.loc[1, "error_message"]
    assert report["attempts"].tolist()[:3] == ["2", "1", "1"]
    assert len(waits) == 2  # one backoff after the throttle, one before the read-back
    assert result.exit_code == 1
    assert result.requests == service.requests
    # The ledger is what the report and the summary were read from.
    assert ledger is result.ledger
    assert {i: o.status for i, o in ledger.outcomes().items()}[IDS[1]] == Status.SUCCEEDED
    assert result.counts == {"succeeded": 3, "skipped": 1}
    sendings = [image_id for event, image_id in told if event == Event.SENDING]
    assert sendings.count(IDS[0]) == 2
    assert sendings.count(IDS[1]) == 1


def test_the_memory_service_is_an_image_service() -> None:
    """Checked by mypy: the double implements the Protocol the runner and job use."""
    service: ImageService = _service({})
    assert service.describe() == "no credentials (in memory)"
