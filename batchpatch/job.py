"""One run from sheet to report: the library entry point the CLI is a thin layer over.

read the sheet → read the current images and plan (unless told not to) → send the patches
that still change something → one outcome per source row → the report.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio

from batchpatch.auth import Auth
from batchpatch.client import LOGIN_FAILED, ImsClient
from batchpatch.errors import OptionsError, ReadFailed, ReadStopped
from batchpatch.inventory import Reader, fetch_images
from batchpatch.journal import Journal, journal_path
from batchpatch.lock import lock_path, run_lock
from batchpatch.models import Limits, Outcome, Status
from batchpatch.plan import ImagePlan, plan_all, plan_image, unplanned
from batchpatch.planfile import save_plan, sheet_digest
from batchpatch.report import RowResult, default_report_path, write_report
from batchpatch.runner import OutcomeCallback, Runner, Safeguards
from batchpatch.sheet import Sheet, read_sheet
from batchpatch.throttle import Pacer

log = logging.getLogger("batchpatch")

#: Exit codes, shared by every command (see the README).
EXIT_OK = 0
EXIT_ROWS_NOT_DONE = 1
EXIT_INVALID = 2
EXIT_STOPPED = 3
EXIT_MEANINGS = {
    EXIT_OK: "every row succeeded or was already as asked",
    EXIT_ROWS_NOT_DONE: "finished, but some rows were not done (failed or skipped)",
    EXIT_INVALID: "invalid input or options; nothing was sent",
    EXIT_STOPPED: "stopped early; the report covers every row",
}

#: ``error_code`` of rows the plan keeps from being sent, by their status.
PLAN_REFUSALS = {Status.FAILED: "not_found", Status.SKIPPED: "not_active"}

RequestPrinter = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class RunResult:
    """A finished (or stopped) run: one result per source row, and where the report is."""

    sheet: Sheet
    rows: Sequence[RowResult]
    report_path: Path
    requests: int
    seconds: float
    stop_reason: str = ""

    @property
    def outcomes(self) -> list[Outcome]:
        return [row.outcome for row in self.rows]

    @property
    def counts(self) -> Counter[str]:
        return Counter(str(row.outcome.status) for row in self.rows)

    @property
    def exit_code(self) -> int:
        if self.stop_reason:
            return EXIT_STOPPED
        if all(row.outcome.status.done for row in self.rows):
            return EXIT_OK
        return EXIT_ROWS_NOT_DONE

    def summary(self) -> str:
        """One line: counts by status, wall time, request rate, report path."""
        counts = self.counts
        parts = ", ".join(f"{counts[str(status)]} {status}" for status in Status
                          if counts[str(status)])
        rate = self.requests / self.seconds if self.seconds > 0 else 0.0
        return (f"{len(self.rows)} rows: {parts or 'nothing to do'} | "
                f"{self.requests} requests in {self.seconds:.1f} s ({rate:.1f}/s) | "
                + (f"encoding: {self.sheet.encoding_label} | " if self.sheet.encoding_label
                   else "")
                + f"report: {self.report_path}")


async def plan_sheet(sheet: Sheet, reader: Reader) -> list[ImagePlan]:
    """Read the images ``sheet`` names and plan each patch against what is there now."""
    ids = [patch.image_id for patch in sheet.patches]
    return plan_all(sheet.patches, await fetch_images(reader, ids))


async def apply_sheet(
    sheet: Sheet | str | Path,
    *,
    endpoint: str,
    auth: Auth,
    limits: Limits | None = None,
    safeguards: Safeguards | None = None,
    report_path: str | Path | None = None,
    sheet_name: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    skip_invalid: bool = False,
    plan: bool | Sequence[ImagePlan] = True,
    dry_run: bool = False,
    restart: bool = False,
    ca_bundle: str | None = None,
    on_request: RequestPrinter | None = None,
    on_outcome: OutcomeCallback | None = None,
    stop: anyio.Event | None = None,
    abort: anyio.Event | None = None,
) -> RunResult:
    """Apply ``sheet`` (a path, or a ``Sheet`` already read) and write the report.

    ``plan``: True reads the current images first and sends only what still changes
    something; a list of plans (``planfile.load_plan``) sends exactly those; False sends
    the sheet as written, turning ``replace`` into ``add`` where IMS answers ``IMG.0035``.
    ``dry_run`` sends no write: each PATCH is handed to ``on_request`` as text instead
    and its rows are reported ``planned``.  ``stop`` starts no new request; ``abort``
    also cuts off those in flight.  Either way, the report covers every row.

    Outcomes are journaled beside the report as they happen; rerunning a run that did not
    finish resumes it (``restart`` ignores the journal).  One run per report at a time.

    Raises ``SheetError``/``OptionsError`` (nothing sent) for bad input.  Failed rows are
    in the result, not raised.
    """
    if not isinstance(sheet, Sheet):
        sheet = read_sheet(sheet, sheet_name=sheet_name, skip_invalid=skip_invalid,
                           encoding=encoding, delimiter=delimiter)
    limits = limits or Limits()
    report = Path(report_path) if report_path else default_report_path(sheet.path)
    if report.resolve() == sheet.path.resolve():
        raise OptionsError(f"--report {report} is the sheet itself — write the report to "
                           "another file")
    try:  # find out now, not after the changes were sent
        report.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=report.parent):
            writable = True
    except OSError:
        writable = False
    if not writable:
        raise OptionsError(f"--report {report}: cannot write in {report.parent} — choose a "
                           "folder you can write to")
    if report.suffix.lower() != sheet.path.suffix.lower():
        raise OptionsError(f"--report {report} must have the sheet's extension "
                           f"({sheet.path.suffix}), since the report is written in its format")
    run = _Run(sheet, report, endpoint, auth, limits, safeguards or Safeguards(), plan,
               dry_run, ca_bundle, on_request, on_outcome, stop, abort)
    with run_lock(lock_path(sheet.path)):
        if dry_run:
            return await run.execute(None)
        journal = Journal(journal_path(report), sheet_sha256=sheet_digest(sheet.path),
                          endpoint=endpoint, restart=restart)
        finished = False
        try:
            result = await run.execute(journal)
            finished = not result.stop_reason
        finally:
            journal.close(finished=finished)
        return result


@dataclass(frozen=True)
class _Run:
    """``apply_sheet``'s arguments, held while one run executes."""

    sheet: Sheet
    report: Path
    endpoint: str
    auth: Auth
    limits: Limits
    safeguards: Safeguards
    plan: bool | Sequence[ImagePlan]
    dry_run: bool
    ca_bundle: str | None
    on_request: RequestPrinter | None
    on_outcome: OutcomeCallback | None
    stop: anyio.Event | None
    abort: anyio.Event | None

    async def execute(self, journal: Journal | None) -> RunResult:
        """Read, plan, send and report; journal each event when given a journal."""
        sheet, auth, plan, on_outcome = self.sheet, self.auth, self.plan, self.on_outcome
        pacer = Pacer(self.limits)
        started = time.perf_counter()
        recorded = journal.recorded if journal else {}
        if recorded:
            log.info("resuming: %d images already done are not sent again", len(recorded))
        pending = [patch for patch in sheet.patches if patch.image_id not in recorded]
        plans: list[ImagePlan] = [unplanned(patch) for patch in pending]
        sent: dict[str, Outcome] = {}
        stop_reason = ""

        def record(outcome: Outcome) -> None:
            if journal is not None:
                journal.outcome(outcome)
            if on_outcome is not None:
                on_outcome(outcome)

        async with ImsClient(self.endpoint, auth, timeout=self.limits.timeout,
                             connections=self.limits.concurrency,
                             ca_bundle=self.ca_bundle) as client:
            try:
                if not isinstance(plan, bool):
                    plans = [p for p in plan if p.image_id not in recorded]
                else:
                    # Without a plan, images a dead run was sending are still read back first.
                    to_read = ({p.image_id for p in pending} if plan
                               else journal.in_doubt if journal else set())
                    if to_read:
                        reader = Reader(client, pacer, self.safeguards.policy, self.stop)
                        images = await _unless_aborted(self.abort, fetch_images(
                            reader, [p.image_id for p in pending if p.image_id in to_read]))
                        plans = [plan_image(p, images.get(p.image_id)) if p.image_id in to_read
                                 else unplanned(p) for p in pending]
                        sent.update(_confirmed(plans, journal))
                        plans = [unplanned(p.patch_requested) if p.image_id in sent
                                 else p for p in plans]
            except ReadStopped as stopped:
                stop_reason = str(stopped)
            except ReadFailed as failure:
                stop_reason = str(failure)
                if failure.status in (401, 403) or failure.code == LOGIN_FAILED:
                    stop_reason += f" (credentials used: {auth.kind} from {auth.source})"
            else:
                settled = [*recorded.values(), *sent.values(),
                           *(Outcome(p.image_id, p.status) for p in plans if p.status is not None)]
                for outcome in sent.values():  # confirmed by reading back: worth recording
                    if journal is not None:
                        journal.outcome(outcome)
                if on_outcome is not None:  # images settled without a write count as progress
                    for outcome in settled:
                        on_outcome(outcome)
                sendable = [p for p in plans if p.status is None and p.image_id not in sent]
                if self.dry_run:
                    for item in sendable:
                        if self.on_request is not None:
                            self.on_request(await client.preview_update(item.image_id,
                                                                       item.patch.body()))
                        sent[item.image_id] = Outcome(item.image_id, Status.PLANNED)
                else:
                    runner = Runner(client, pacer, self.safeguards, on_outcome=record,
                                    on_sending=journal.sending if journal else None,
                                    stop=self.stop, abort=self.abort,
                                    add_on_conflict=plan is False)
                    sent.update(await runner.run(sendable))
                    stop_reason = runner.stop_reason
                    if not stop_reason and len(runner.outcomes) < len(sendable):
                        stop_reason = "stopped before every image was attempted"
            requests = client.requests
        seconds = time.perf_counter() - started
        kept = [unplanned(patch) for patch in sheet.patches if patch.image_id in recorded]
        rows = row_results(sheet, [*plans, *kept], {**recorded, **sent})
        write_report(sheet, rows, self.report)
        return RunResult(sheet, rows, self.report, requests, seconds, stop_reason)


async def _unless_aborted(abort: anyio.Event | None, work: Awaitable[T]) -> T:
    """``await work``, unless ``abort`` is set first: then ``ReadStopped``."""
    if abort is None:
        return await work
    done: list[T] = []
    failed: list[Exception] = []

    async def watch() -> None:
        await abort.wait()
        group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        try:
            done.append(await work)
        except Exception as error:  # raised below as itself, not in an exception group
            failed.append(error)
        group.cancel_scope.cancel()
    if failed:
        raise failed[0]
    if not done:
        raise ReadStopped("stopped at once while the current images were being read")
    return done[0]


def _confirmed(plans: Sequence[ImagePlan], journal: Journal | None) -> dict[str, Outcome]:
    """Images a dead run was writing that now read as done: that run applied them."""
    if journal is None:
        return {}
    return {
        plan.image_id: Outcome(plan.image_id, Status.SUCCEEDED,
                               error_message="applied by the interrupted run: reading the image "
                               "back shows the change in place")
        for plan in plans if plan.image_id in journal.in_doubt and plan.status == Status.UNCHANGED
    }


def row_results(sheet: Sheet, plans: Sequence[ImagePlan],
                sent: dict[str, Outcome]) -> list[RowResult]:
    """One result per source row, in order; rows never reached are ``not_attempted``."""
    results: list[RowResult | None] = [None] * sheet.row_count
    for row, reason in sheet.invalid.items():
        results[row] = RowResult(Outcome("", Status.INVALID, error_message=reason))
    for row in sheet.idle_rows:
        results[row] = RowResult(Outcome("", Status.UNCHANGED))
    for plan in plans:
        image_outcome = sent.get(plan.image_id) or Outcome(plan.image_id, Status.NOT_ATTEMPTED)
        for row in sorted({change.source for change in plan.changes}):
            status = plan.row_status(row)
            if status is None:
                outcome = image_outcome
            elif status == Status.UNCHANGED:
                outcome = Outcome(plan.image_id, Status.UNCHANGED)
            else:
                outcome = Outcome(plan.image_id, status, error_code=PLAN_REFUSALS[status],
                                  error_message=plan.reason)
            before, after = _before_after(plan, row, long=sheet.shape == "long")
            results[row] = RowResult(outcome, before, after)
    missing = [row for row, result in enumerate(results) if result is None]
    if missing:
        raise AssertionError(f"rows {missing} were left without an outcome")
    return [result for result in results if result is not None]


def _before_after(plan: ImagePlan, row: int, *, long: bool) -> tuple[str, str]:
    """The row's attributes before and after, as text (long) or a JSON object (wide);
    ``before`` is blank when the image was not read (``--no-plan``)."""
    known = plan.observed
    changes = [change for change in plan.changes if change.source == row]
    befores = {c.attribute: c.before for c in changes}
    afters = {c.attribute: c.after for c in changes}
    if long and len(changes) == 1:
        return (_text(changes[0].before) if known else "", _text(changes[0].after))
    return (_json(befores) if known else "", _json(afters))


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)


def _json(values: dict[str, Any]) -> str:
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"))


async def make_plan(
    sheet: Sheet | str | Path,
    *,
    endpoint: str,
    auth: Auth,
    limits: Limits | None = None,
    sheet_name: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    out: Path | None = None,
    ca_bundle: str | None = None,
) -> list[ImagePlan]:
    """Read the images ``sheet`` names and plan every patch; save the plan to ``out``.

    Sends no write.  Raises ``ReadFailed`` when the images cannot be read.
    """
    if not isinstance(sheet, Sheet):
        sheet = read_sheet(sheet, sheet_name=sheet_name, encoding=encoding, delimiter=delimiter)
    limits = limits or Limits()
    async with ImsClient(endpoint, auth, timeout=limits.timeout,
                         connections=limits.concurrency, ca_bundle=ca_bundle) as client:
        plans = await plan_sheet(sheet, Reader(client, Pacer(limits)))
    if out is not None:
        save_plan(out, sheet, endpoint, plans)
    return plans
