"""The journal writes each image's plan once: a retry's ``sending`` line and an outcome
whose plan is unchanged carry none, a succeeded outcome says ``"applied": true`` instead
of the plan with its changes in place, and reading the journal back gives every plan as
the run held it."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from batchpatch.journal import Journal
from batchpatch.ledger import Ledger
from batchpatch.models import ImagePatch, Operation, Outcome, PartOutcome, Status
from batchpatch.plan import UPDATE, mark_done, plan_image, settle, unplanned

IMAGE = "00000000-0000-4000-8000-00000000000a"
ENDPOINT = "http://127.0.0.1:9"
PATCH = ImagePatch(
    IMAGE,
    (Operation("replace", "/name", "renamed"), Operation("add", "/__os_bit", "64")),
    (2, 3),
)
ACTIVE = {"id": IMAGE, "name": "old", "status": "active", "min_ram": 0}


def open_journal(path: Path, ledger: Ledger) -> Journal:
    return Journal(path, ledger, sheet_sha256="0" * 64, endpoint=ENDPOINT)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[1:]]


def succeeded(attempts: int) -> Outcome:
    part = PartOutcome("attributes", Status.SUCCEEDED, 200, request_id="r1")
    return Outcome(IMAGE, Status.SUCCEEDED, 200, request_id="r1", attempts=attempts, parts=(part,))


def restored_plan(path: Path) -> Any:
    ledger = Ledger()
    journal = open_journal(path, ledger)
    journal.close(finished=False)
    entry = ledger.get(IMAGE)
    assert entry is not None
    return entry.plan, entry.outcome


def test_a_retried_and_succeeded_image_has_its_plan_written_once(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    ledger = Ledger()
    journal = open_journal(path, ledger)
    plan = plan_image(PATCH, ACTIVE)
    ledger.sending(plan)
    ledger.sending(plan)  # a retry: the same plan again
    done = mark_done(plan, {UPDATE})
    ledger.finish(succeeded(2), done)
    journal.close(finished=False)

    first, retry, outcome = lines(path)
    assert first["event"] == "sending"
    assert first["plan"]["image_id"] == IMAGE
    assert retry["event"] == "sending"
    assert "plan" not in retry
    assert outcome["event"] == "outcome"
    assert outcome["applied"] is True
    assert "plan" not in outcome

    plan_read, outcome_read = restored_plan(path)
    assert plan_read == done  # the before values kept, every change marked applied
    assert all(change.applied for change in plan_read.changes if change.planned is not None)
    assert outcome_read == succeeded(2)


def test_an_image_left_in_doubt_keeps_the_plan_its_sending_line_wrote(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    ledger = Ledger()
    journal = open_journal(path, ledger)
    plan = unplanned(PATCH)
    ledger.sending(plan)
    lost = Outcome(IMAGE, Status.FAILED, None, "timeout", "no answer", attempts=1)
    ledger.finish(lost, plan, in_doubt=True)  # kept in doubt: restored on reading
    journal.close(finished=False)

    _, outcome = lines(path)
    assert "plan" not in outcome
    assert "applied" not in outcome
    plan_read, _ = restored_plan(path)
    assert plan_read == plan
    assert not any(change.applied for change in plan_read.changes)


def test_an_outcome_whose_plan_changed_since_sending_writes_it_whole(tmp_path: Path) -> None:
    """A read-back after an ambiguous answer settles the plan anew: that plan is not the
    sent one with its changes in place, so the line holds it."""
    path = tmp_path / "run.journal"
    ledger = Ledger()
    journal = open_journal(path, ledger)
    plan = plan_image(PATCH, ACTIVE)
    ledger.sending(plan)
    half_applied = dict(ACTIVE, name="renamed")
    settled, _ = settle(plan, half_applied)
    gateway = Outcome(IMAGE, Status.FAILED, 502, "", "bad gateway", attempts=1)
    ledger.finish(gateway, settled, in_doubt=True)
    journal.close(finished=False)

    _, outcome = lines(path)
    assert outcome["plan"]["image_id"] == IMAGE
    assert "applied" not in outcome
    plan_read, _ = restored_plan(path)
    assert plan_read == settled


def test_a_journal_carried_into_a_fresh_one_keeps_every_plan(tmp_path: Path) -> None:
    """Resuming copies what was restored into a new journal: the plans stay readable from
    it alone, though the lines that first held them are gone."""
    path = tmp_path / "run.journal"
    ledger = Ledger()
    journal = open_journal(path, ledger)
    plan = plan_image(PATCH, ACTIVE)
    ledger.sending(plan)
    done = mark_done(plan, {UPDATE})
    ledger.finish(succeeded(1), done)
    journal.close(finished=False)

    open_journal(path, Ledger()).close(finished=False)  # restored, then written afresh
    plan_read, outcome_read = restored_plan(path)
    assert plan_read == done
    assert outcome_read == succeeded(1)


def test_every_field_of_an_outcome_is_written_and_read_back(tmp_path: Path) -> None:
    """The outcome line spells its fields out: one added to ``Outcome`` (or ``PartOutcome``)
    and not to the line would be lost on resume, and this test says so."""
    part = PartOutcome("tags", Status.SUCCEEDED, 204, "code-p", "message-p", "request-p")
    outcome = Outcome(IMAGE, Status.SUCCEEDED, 200, "code", "message", "request", 3, 41, (part,))
    assert {f.name for f in fields(Outcome)} == set(vars_of(outcome))
    path = tmp_path / "run.journal"
    ledger = Ledger()
    journal = open_journal(path, ledger)
    ledger.finish(outcome, unplanned(PATCH))
    journal.close(finished=False)
    _, outcome_read = restored_plan(path)
    assert outcome_read == outcome
    assert {f.name for f in fields(PartOutcome)} <= set(lines(path)[-1]["parts"][0])


def vars_of(outcome: Outcome) -> dict[str, Any]:
    """The fields ``outcome`` holds a value other than the default in."""
    return {
        f.name: getattr(outcome, f.name)
        for f in fields(outcome)
        if getattr(outcome, f.name) != f.default
    }


def test_a_plan_holding_text_utf8_cannot_hold_is_journaled_and_read_back(tmp_path: Path) -> None:
    """An image read back with a lone surrogate in a value (the standard library reads
    ``"\\ud83d"`` so) is planned with it as ``before``: its lines are written, not a crash."""
    path = tmp_path / "run.journal"
    ledger = Ledger()
    journal = open_journal(path, ledger)
    plan = plan_image(PATCH, dict(ACTIVE, name="caf\ud83d"))
    ledger.sending(plan)
    journal.close(finished=False)
    assert journal.error is None
    plan_read, _ = restored_plan(path)
    assert plan_read == plan
    assert plan_read.changes[0].before == "caf\ud83d"
