"""One ledger per run: the journal restores what an earlier run left straight into the
run's own ledger (the one a caller passes to ``apply_sheet``), and the resume reads each
image's outcome, plan and doubt from there — no second record beside it."""

from __future__ import annotations

from pathlib import Path

from batchpatch.job import READ_PASS
from batchpatch.journal import Journal, journal_path
from batchpatch.ledger import Ledger
from batchpatch.models import Outcome, Status
from batchpatch.planfile import sheet_digest
from batchpatch.report import default_report_path
from tests.memory_service import MemoryService, apply_in_memory
from tests.sheets import write_sheet

A, B, GONE = (f"00000000-0000-4000-8000-{n:012d}" for n in range(1, 4))


def test_a_resume_restores_into_the_callers_ledger_in_sheet_order(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[B, "new-b"], [A, "new-a"]])
    service = MemoryService(
        {
            A: {"id": A, "status": "active", "name": "new-a"},  # the dead run applied it
            B: {"id": B, "status": "active", "name": "old-b"},  # its write never landed
            GONE: {"id": GONE, "status": "active", "name": "old"},
        }
    )
    earlier = Journal(
        journal_path(default_report_path(sheet)),
        Ledger(),
        sheet_sha256=sheet_digest(sheet),
        endpoint=service.endpoint,
    )
    earlier.outcome(Outcome(A, Status.SUCCEEDED, 200, attempts=1))
    earlier.sending(B, at=1.0)  # long ago: nothing to wait for
    earlier.sending(GONE, at=1.0)  # in doubt, but this sheet no longer names it
    earlier.close(finished=False)
    ledger = Ledger()
    result = apply_in_memory(sheet, service, plan=READ_PASS, ledger=ledger)
    assert result.ledger is ledger
    assert [entry.image_id for entry in ledger] == [B, A]  # the sheet's order, GONE dropped
    kept, resent = ledger.get(A), ledger.get(B)
    assert kept is not None
    assert resent is not None
    assert kept.earlier  # the earlier run's outcome, on this run's entry
    assert kept.outcome == Outcome(A, Status.SUCCEEDED, 200, attempts=1)
    assert not resent.earlier
    assert not resent.in_doubt  # read back, then sent and answered
    assert resent.sent_at is not None
    assert resent.sent_at > 1.0  # this run's write, not the earlier one's
    assert ("update", A) not in service.calls
    assert [call for call in service.calls if call[1] == GONE] == []
    assert service.applied == {B: 1}
    assert result.counts == {"succeeded": 2}
    assert ledger.tally.finished == 1  # only B was reached by this run


def test_a_write_sent_after_an_outcome_leaves_the_image_in_doubt(tmp_path: Path) -> None:
    """The latest line wins: a later run (of an edited sheet) sent the image again and died
    before the answer, so its recorded success no longer says how the image stands."""
    path = tmp_path / "r.csv.journal"
    first = Journal(path, Ledger(), sheet_sha256="s", endpoint="e")
    first.sending("a", at=5.0)
    first.outcome(Outcome("a", Status.SUCCEEDED, 200))
    first.sending("a", at=9.0)
    first.close(finished=False)
    ledger = Ledger()
    Journal(path, ledger, sheet_sha256="s", endpoint="e").close(finished=False)
    assert ledger.done() == {}
    assert ledger.in_doubt() == {"a"}
    assert ledger.last_doubtful_write() == 9.0
