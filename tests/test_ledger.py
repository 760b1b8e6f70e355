"""The ledger is the one record of each image's fate: the journal persists its events and
loads them back into a ledger; thresholds, progress and the report read it.  The library's
messages name its own parameters; the CLI's namer turns them into flags."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from batchpatch.auth import TokenAuth
from batchpatch.cli import flag_name, in_flags
from batchpatch.errors import OptionsError, ReadFailed, ReadStopped, SheetError, WriteFailed
from batchpatch.exits import (
    EXIT_INVALID,
    EXIT_OK,
    EXIT_ROWS_NOT_DONE,
    EXIT_STOPPED,
    apply_exit_code,
    error_exit_code,
)
from batchpatch.job import (
    AS_WRITTEN,
    READ_PASS,
    SavedPlan,
    apply_sheet,
    plan_source,
)
from batchpatch.journal import Journal
from batchpatch.ledger import Ledger
from batchpatch.models import ImagePatch, Operation, Outcome, Status
from batchpatch.plan import unplanned
from batchpatch.retry import RetryPolicy
from batchpatch.runner import Safeguards
from tests.memory_service import MemoryService, apply_in_memory
from tests.sheets import write_sheet


def test_the_journal_restores_the_ledger_it_persisted(tmp_path: Path) -> None:
    path = tmp_path / "r.csv.journal"
    ledger = Ledger()
    journal = Journal(path, ledger, sheet_sha256="s", endpoint="e")
    done, failed, sending = (
        unplanned(ImagePatch(i, (Operation("replace", "/name", "x"),), (n,)))
        for n, i in enumerate("abc", start=2)
    )
    for plan in (done, failed, sending):
        ledger.sending(plan)
    ledger.finish(Outcome("a", Status.SUCCEEDED, 200), done)
    ledger.finish(Outcome("b", Status.FAILED, 404), failed)
    journal.close(finished=False)

    earlier = Ledger()  # the next run's: the journal restores straight into it
    Journal(path, earlier, sheet_sha256="s", endpoint="e").close(finished=True)
    assert set(earlier.done()) == {"a"}
    assert earlier.in_doubt() == {"c"}  # sent, never answered
    assert earlier.plan_of("a") == done
    assert earlier.plan_of("c") == sending
    assert earlier.outcome_of("b") is None  # a refusal is neither done nor in doubt
    assert earlier.tally.finished == 0  # restored, not reached by this run
    sent, restored = ledger.get("c"), earlier.get("c")
    assert sent is not None
    assert sent.sent_at is not None
    assert restored is not None  # when its write went out is on the entry, restored too
    assert restored.sent_at == round(sent.sent_at, 3)


def test_thresholds_and_counts_are_read_from_the_ledger(tmp_path: Path) -> None:
    """Three images the service does not have: ``max_failures=2`` stops the run after two,
    in the library's words; the CLI's namer says the flag."""
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(3)]
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[i, "x"] for i in ids])
    service = MemoryService({})
    safeguards = Safeguards(RetryPolicy(max_attempts=1), max_failures=2)
    result = apply_in_memory(sheet, service, plan=AS_WRITTEN, safeguards=safeguards)
    assert result.stop is not None
    assert result.stop.kind == "max_failures"
    assert result.stop_reason == "2 images failed (max_failures=2)"
    assert result.stop.text(flag_name) == "2 images failed (--max-failures 2)"
    assert result.ledger is not None
    assert result.ledger.tally.failed == 2
    assert result.counts == {"failed": 2, "not_attempted": 1}
    assert result.exit_code == EXIT_STOPPED
    assert service.requests == 2


def test_library_errors_name_parameters_and_the_cli_names_flags(tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "s.csv", ["image_id", "name"], [["00000000-0000-4000-8000-000000000001", "x"]]
    )

    async def run() -> None:
        await apply_sheet(
            sheet,
            endpoint="memory://",
            auth=TokenAuth("t"),
            report_path=tmp_path / "r.xlsx",
            service=MemoryService({}),
        )

    with pytest.raises(OptionsError) as raised:
        anyio.run(run)
    error = raised.value
    assert error.parameter == "report_path"
    assert str(error).startswith(f"the report path {tmp_path / 'r.xlsx'} must have")
    assert "--" not in str(error)
    assert in_flags(error).startswith(f"--report {tmp_path / 'r.xlsx'} must have")

    failed = ReadFailed(503, "", "busy", "")
    assert "--no-plan" not in str(failed)
    assert "plan=AS_WRITTEN" in str(failed)
    assert "use --no-plan" in in_flags(failed)

    folder = tmp_path / "r.csv.journal"
    folder.mkdir()
    with pytest.raises(OptionsError) as journal_error:
        Journal(folder, Ledger(), sheet_sha256="s", endpoint="e").close(finished=True)
    assert str(journal_error.value).endswith("choose another report path")
    assert in_flags(journal_error.value).endswith("choose another --report")


def test_exit_rules_and_plan_sources() -> None:
    assert apply_exit_code([Status.SUCCEEDED, Status.UNCHANGED], stopped=False) == EXIT_OK
    assert apply_exit_code([Status.SUCCEEDED, Status.SKIPPED], stopped=False) == (
        EXIT_ROWS_NOT_DONE
    )
    assert apply_exit_code([Status.SUCCEEDED], stopped=True) == EXIT_STOPPED
    assert plan_source(True) == READ_PASS
    assert plan_source(False) == AS_WRITTEN
    assert plan_source([]) == SavedPlan([])


@pytest.mark.parametrize(
    ("error", "code"),
    [
        pytest.param(SheetError([]), EXIT_INVALID, id="sheet"),
        pytest.param(OptionsError("bad option"), EXIT_INVALID, id="options"),
        pytest.param(ReadStopped("signal"), EXIT_STOPPED, id="stopped"),
        pytest.param(WriteFailed("disk full"), EXIT_STOPPED, id="disk-full"),
        pytest.param(KeyboardInterrupt(), EXIT_STOPPED, id="signal-outside-the-run"),
        pytest.param(RuntimeError("a bug"), None, id="a-bug-has-no-verdict"),
    ],
)
def test_errors_map_to_exit_codes_in_one_place(error: BaseException, code: int | None) -> None:
    assert error_exit_code(error) == code
