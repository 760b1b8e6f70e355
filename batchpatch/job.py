"""One run from sheet to report: the library entry point the CLI is a thin layer over."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from batchpatch.auth import Auth
from batchpatch.client import ImsClient
from batchpatch.models import Limits, Outcome, Status
from batchpatch.report import default_report_path, write_report
from batchpatch.runner import OutcomeCallback, run_patches
from batchpatch.sheet import Sheet, read_sheet

#: Exit codes, shared by every command (see the README).
EXIT_OK = 0
EXIT_ROWS_NOT_DONE = 1
EXIT_INVALID = 2
EXIT_STOPPED = 3


@dataclass(frozen=True)
class RunResult:
    """A finished (or stopped) run: one outcome per source row, and where the report is."""

    sheet: Sheet
    outcomes: Sequence[Outcome]
    report_path: Path
    requests: int
    seconds: float
    stopped: bool

    @property
    def counts(self) -> Counter[str]:
        return Counter(str(outcome.status) for outcome in self.outcomes)

    @property
    def exit_code(self) -> int:
        if self.stopped:
            return EXIT_STOPPED
        if all(outcome.status.done for outcome in self.outcomes):
            return EXIT_OK
        return EXIT_ROWS_NOT_DONE

    def summary(self) -> str:
        """One line: counts by status, wall time, request rate, report path."""
        counts = self.counts
        parts = ", ".join(f"{counts[str(status)]} {status}" for status in Status
                          if counts[str(status)])
        rate = self.requests / self.seconds if self.seconds > 0 else 0.0
        return (f"{len(self.outcomes)} rows: {parts or 'nothing to do'} | "
                f"{self.requests} requests in {self.seconds:.1f} s ({rate:.1f}/s) | "
                f"report: {self.report_path}")


def row_outcomes(sheet: Sheet, by_image: dict[str, Outcome]) -> list[Outcome]:
    """Spread image outcomes over source rows; rows never reached are ``not_attempted``."""
    outcomes: list[Outcome | None] = [None] * sheet.row_count
    for row in sheet.idle_rows:
        outcomes[row] = Outcome(image_id="", status=Status.UNCHANGED)
    for patch in sheet.patches:
        outcome = by_image.get(patch.image_id) or Outcome(patch.image_id, Status.NOT_ATTEMPTED)
        for row in patch.rows:
            outcomes[row] = outcome
    if any(outcome is None for outcome in outcomes):
        raise AssertionError("a source row was left without an outcome")
    return [outcome for outcome in outcomes if outcome is not None]


async def apply_sheet(
    sheet: Sheet | str | Path,
    *,
    endpoint: str,
    auth: Auth,
    limits: Limits | None = None,
    report_path: str | Path | None = None,
    sheet_name: str | None = None,
    on_outcome: OutcomeCallback | None = None,
    stop: anyio.Event | None = None,
    abort: anyio.Event | None = None,
) -> RunResult:
    """Send one PATCH per image of ``sheet`` (a path, or a ``Sheet`` already read), write the
    report, and return the result.

    Raises ``SheetError``/``OptionsError`` (nothing sent) for bad input.  Failed rows are
    in the result, not raised.  ``stop`` starts no new request; ``abort`` also cuts off
    those in flight (see ``run_patches``); either way the report covers every row.
    """
    if not isinstance(sheet, Sheet):
        sheet = read_sheet(sheet, sheet_name=sheet_name)
    limits = limits or Limits()
    report = Path(report_path) if report_path else default_report_path(sheet.path)
    started = time.perf_counter()
    async with ImsClient(endpoint, auth, timeout=limits.timeout,
                         connections=limits.concurrency) as client:
        by_image = await run_patches(sheet.patches, client, limits,
                                     on_outcome=on_outcome, stop=stop, abort=abort)
    seconds = time.perf_counter() - started
    outcomes = row_outcomes(sheet, by_image)
    write_report(sheet, outcomes, report)
    stopped = len(by_image) < len(sheet.patches)
    return RunResult(sheet, outcomes, report, sum(o.attempts for o in by_image.values()),
                     seconds, stopped)
