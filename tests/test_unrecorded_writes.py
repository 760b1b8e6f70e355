"""A write the journal could not record does not go out: once the ledger is ``unrecorded``
(the journal's write failed), the next request of an image — its tag call after its PATCH,
or a retry — stays unsent, and its part of the report says so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from batchpatch.job import AS_WRITTEN, RunResult
from batchpatch.ledger import Entry, Event, Ledger
from batchpatch.models import ImagePatch, Limits, Operation, Outcome, Status
from batchpatch.plan import unplanned
from batchpatch.retry import RetryPolicy
from batchpatch.runner import NOT_APPLIED, NOT_SENT, Runner, Safeguards
from batchpatch.throttle import Pacer
from tests.e2e import ROOT
from tests.memory_service import THROTTLE, MemoryService, apply_in_memory
from tests.sheets import write_sheet
from tests.test_retry import Highest
from tests.test_runner import IMAGE as RUNNER_IMAGE
from tests.test_runner import LOST, ScriptedClient
from tests.test_throttle import FakeClock

IMAGE = "00000000-0000-4000-8000-000000000001"


def _failing_at(ledger: Ledger, nth_sending: int) -> list[int]:
    """Play a journal whose write fails at the ``nth_sending`` sending line."""
    seen: list[int] = []

    def listener(event: Event, entry: Entry, outcome: Outcome | None) -> None:
        if event is Event.SENDING:
            seen.append(1)
            if len(seen) == nth_sending:
                ledger.unrecorded = True

    ledger.listen(listener)
    return seen


def _run(sheet: Path, service: MemoryService, ledger: Ledger) -> RunResult:
    return apply_in_memory(sheet, service, plan=AS_WRITTEN, ledger=ledger)


def test_the_tag_call_after_a_patch_is_not_sent_once_the_journal_failed(tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "s.csv", ["image_id", "name", "tag:env"], [[IMAGE, "new", "prod"]]
    )
    service = MemoryService({IMAGE: {"id": IMAGE, "status": "active", "name": "old"}})
    ledger = Ledger()
    _failing_at(ledger, nth_sending=2)
    result = _run(sheet, service, ledger)
    assert service.applied == {IMAGE: 1}  # the PATCH, recorded, went out
    assert service.tag_applied == {}  # the tag call, unrecorded, did not
    assert [call[0] for call in service.calls].count("update") == 1
    (row,) = result.rows
    assert row.outcome.status is Status.FAILED  # partly changed: not "not attempted"
    assert NOT_SENT in row.outcome.error_message
    entry = ledger.get(IMAGE)
    assert entry is not None
    assert not entry.in_doubt  # nothing it does not know of went out


def test_in_a_long_sheet_each_row_says_how_its_own_request_ended(tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "op", "path", "value"],
        [[IMAGE, "replace", "/name", "new"], [IMAGE, "add", "tag:env", "prod"]],
    )
    service = MemoryService({IMAGE: {"id": IMAGE, "status": "active", "name": "old"}})
    ledger = Ledger()
    _failing_at(ledger, nth_sending=2)
    result = _run(sheet, service, ledger)
    name_row, tag_row = result.rows
    assert name_row.outcome.status is Status.SUCCEEDED
    assert tag_row.outcome.status is Status.NOT_ATTEMPTED
    assert NOT_SENT in tag_row.outcome.error_message


def test_a_retry_is_not_sent_once_the_journal_failed(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[IMAGE, "new"]])
    service = MemoryService(
        {IMAGE: {"id": IMAGE, "status": "active", "name": "old"}}, faults={IMAGE: [THROTTLE]}
    )
    ledger = Ledger()
    _failing_at(ledger, nth_sending=2)
    result = _run(sheet, service, ledger)
    assert [call[0] for call in service.calls].count("update") == 1  # the retry stayed unsent
    assert service.applied == {}
    (row,) = result.rows
    assert row.outcome.status is Status.FAILED  # the first answer stands
    assert row.outcome.attempts == 1
    entry = ledger.get(IMAGE)
    assert entry is not None
    assert not entry.in_doubt


def test_nothing_goes_out_once_the_journal_failed_before_the_first_write(
    tmp_path: Path,
) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[IMAGE, "new"]])
    service = MemoryService({IMAGE: {"id": IMAGE, "status": "active", "name": "old"}})
    ledger = Ledger()
    _failing_at(ledger, nth_sending=1)
    result = _run(sheet, service, ledger)
    assert service.applied == {}
    assert [call for call in service.calls if call[0] == "update"] == []
    (row,) = result.rows
    assert row.outcome.status is Status.NOT_ATTEMPTED


@pytest.mark.anyio
async def test_a_run_the_journal_stopped_says_so_not_a_signal() -> None:
    """The journal's failure sets the run's stop event; the runner must not take it for a
    signal (a run across regions reports each region's own reason)."""
    ledger, stop = Ledger(), anyio.Event()
    ledger.unrecorded = True
    stop.set()
    service = MemoryService({IMAGE: {"id": IMAGE, "status": "active", "name": "old"}})
    runner = Runner(service, Pacer(Limits(concurrency=1, rate=1000)), ledger=ledger, stop=stop)
    patch = ImagePatch(IMAGE, (Operation("replace", "/name", "new"),), (2,))
    await runner.run([unplanned(patch)])
    assert runner.stop is not None
    assert runner.stop.kind == "journal"
    assert service.calls == []


#: Opens a journal under a file size limit too small for its first line, then reports
#: whether the caller's ledger was left blocked.
_OPEN_UNDER_LIMIT = """
import json, resource, signal, sys
from pathlib import Path
from batchpatch.errors import WriteFailed
from batchpatch.journal import Journal
from batchpatch.ledger import Ledger
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (20, resource.RLIM_INFINITY))
ledger = Ledger()
try:
    Journal(Path(sys.argv[1]), ledger, sheet_sha256="0" * 64, endpoint="http://127.0.0.1:9")
except WriteFailed:
    print(json.dumps({"refused": True, "unrecorded": ledger.unrecorded}))
"""


def test_a_journal_that_could_not_be_opened_leaves_the_ledger_usable(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _OPEN_UNDER_LIMIT, str(tmp_path / "r.journal")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    assert json.loads(done.stdout) == {"refused": True, "unrecorded": False}


@pytest.mark.anyio
async def test_an_unsent_retry_after_a_read_back_says_the_change_was_not_applied() -> None:
    """The answer was lost, the read-back found the change not applied, and the retry
    could not be journaled: the outcome says what the read-back found, not "may or may not
    have been applied"."""
    clock = FakeClock()
    client = ScriptedClient([LOST])
    ledger = Ledger()
    _failing_at(ledger, nth_sending=2)
    policy = RetryPolicy(max_attempts=3, base=0.5, cap=30, random=Highest(), sleep=clock.sleep)
    pacer = Pacer(Limits(concurrency=1, rate=1000), clock=clock, sleep=clock.sleep)
    runner = Runner(client, pacer, Safeguards(policy), ledger=ledger)  # type: ignore[arg-type]
    patch = ImagePatch(RUNNER_IMAGE, (Operation("replace", "/name", "new"),), (2,))
    outcome = (await runner.run([unplanned(patch)]))[RUNNER_IMAGE]
    assert client.patches == 1
    assert outcome.status is Status.FAILED
    assert NOT_APPLIED in outcome.error_message
    assert "may or may not" not in outcome.error_message


def test_rows_of_a_tag_create_and_a_tag_delete_each_say_their_own(tmp_path: Path) -> None:
    """Both rows' changes go by ``tags`` calls: the one whose call went out succeeded, the
    one whose call the journal could not record was not attempted."""
    sheet = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "op", "path", "value"],
        [[IMAGE, "add", "tag:env", "prod"], [IMAGE, "remove", "tag:old", ""]],
    )
    service = MemoryService(
        {IMAGE: {"id": IMAGE, "status": "active", "name": "old"}}, tag_store={IMAGE: {"old": "x"}}
    )
    ledger = Ledger()
    _failing_at(ledger, nth_sending=2)
    result = _run(sheet, service, ledger)
    (first_call, _), *rest = [call for call in service.calls if call[0].endswith("_tags")]
    assert rest == []  # the second tag call stayed unsent
    add_row, remove_row = result.rows
    sent_row, unsent_row = (
        (add_row, remove_row)
        if first_call == "create_tags"
        else (
            remove_row,
            add_row,
        )
    )
    assert sent_row.outcome.status is Status.SUCCEEDED
    assert unsent_row.outcome.status is Status.NOT_ATTEMPTED
    assert NOT_SENT in unsent_row.outcome.error_message
