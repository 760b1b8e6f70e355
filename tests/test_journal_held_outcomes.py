"""While a run sends, an outcome line goes to the OS with the next line written in the same
step of the event loop (the worker's next ``sending``), and at the end of that step at the
latest; without a running loop, and on close, at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio.lowlevel
import pytest

from batchpatch.journal import Journal
from batchpatch.ledger import Ledger
from batchpatch.models import ImagePatch, Operation, Outcome, PartOutcome, Status
from batchpatch.plan import UPDATE, mark_done, unplanned

ENDPOINT = "http://127.0.0.1:9"
FIRST = "00000000-0000-4000-8000-00000000000a"
SECOND = "00000000-0000-4000-8000-00000000000b"


def plan_of(image_id: str) -> Any:
    return unplanned(ImagePatch(image_id, (Operation("replace", "/name", "n"),), (2,)))


def open_journal(path: Path, ledger: Ledger) -> Journal:
    return Journal(path, ledger, sheet_sha256="0" * 64, endpoint=ENDPOINT)


def events(path: Path) -> list[tuple[str, str]]:
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[1:]]
    return [(entry["event"], entry["image_id"]) for entry in entries]


def finish(ledger: Ledger, image_id: str) -> None:
    plan = plan_of(image_id)
    part = PartOutcome("attributes", Status.SUCCEEDED, 200)
    outcome = Outcome(image_id, Status.SUCCEEDED, 200, attempts=1, parts=(part,))
    ledger.finish(outcome, mark_done(plan, {UPDATE}))


@pytest.mark.anyio
async def test_an_outcome_goes_out_with_the_next_sending_line(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    ledger = Ledger()
    journal = open_journal(path, ledger)
    ledger.sending(plan_of(FIRST))
    assert events(path) == [("sending", FIRST)]  # before the request can go out
    finish(ledger, FIRST)
    assert events(path) == [("sending", FIRST)]  # held, no await in between
    ledger.sending(plan_of(SECOND))
    assert events(path) == [("sending", FIRST), ("outcome", FIRST), ("sending", SECOND)]
    journal.close(finished=False)


@pytest.mark.anyio
async def test_an_outcome_alone_is_written_once_the_loop_turns(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    ledger = Ledger()
    journal = open_journal(path, ledger)
    ledger.sending(plan_of(FIRST))
    finish(ledger, FIRST)
    await anyio.lowlevel.checkpoint()  # one step of the loop: nothing more is needed
    assert events(path) == [("sending", FIRST), ("outcome", FIRST)]
    journal.close(finished=False)


@pytest.mark.anyio
async def test_closing_writes_what_is_held(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    ledger = Ledger()
    journal = open_journal(path, ledger)
    ledger.sending(plan_of(FIRST))
    finish(ledger, FIRST)
    journal.close(finished=False)
    assert events(path) == [("sending", FIRST), ("outcome", FIRST)]
    resumed = Ledger()
    open_journal(path, resumed).close(finished=False)
    entry = resumed.get(FIRST)
    assert entry is not None
    assert entry.outcome is not None
    assert entry.outcome.status == Status.SUCCEEDED
    assert not entry.in_doubt


def test_without_a_running_loop_an_outcome_is_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    ledger = Ledger()
    journal = open_journal(path, ledger)
    ledger.sending(plan_of(FIRST))
    finish(ledger, FIRST)
    assert events(path) == [("sending", FIRST), ("outcome", FIRST)]
    journal.close(finished=False)
