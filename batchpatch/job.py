"""One run from sheet to report: the library entry point the CLI is a thin layer over.

read the sheet → read the current images and plan (unless told not to) → send the patches
that still change something → one outcome per source row → the report.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio

from batchpatch.auth import Auth
from batchpatch.client import LOGIN_FAILED, ImsClient
from batchpatch.errors import OptionsError, ReadFailed, ReadStopped, WriteFailed
from batchpatch.inventory import Reader, fetch_images
from batchpatch.journal import Journal, journal_path
from batchpatch.lock import hold_run
from batchpatch.models import ImagePatch, Limits, Outcome, Status
from batchpatch.outputs import (
    RunFile,
    apply_files,
    check_outputs,
    check_plan_files,
    clear_stale_temporaries,
)
from batchpatch.plan import (
    ImagePlan,
    plan_all,
    plan_from_json,
    plan_image,
    plan_to_json,
    rebased,
    settle,
    unplanned,
)
from batchpatch.planfile import check_plans, save_plan, sheet_digest
from batchpatch.report import RowResult, check_report_writable, default_report_path
from batchpatch.report import write_report as _write_report_file
from batchpatch.runner import OutcomeCallback, Runner, Safeguards, SendingCallback
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
    started = time.time()
    report = (Path(report_path) if report_path
              else default_report_path(sheet.path, dry_run=dry_run))
    files = apply_files(sheet.path, report, dry_run=dry_run)
    check_outputs(*files)
    if report.suffix.lower() != sheet.path.suffix.lower():
        raise OptionsError(f"--report {report} must have the sheet's extension "
                           f"({sheet.path.suffix}), since the report is written in its format")
    if not isinstance(plan, bool):
        check_plans(sheet, plan)
    check_report_writable(sheet, report)  # find out now, not after the changes were sent
    stop = stop if stop is not None else anyio.Event()  # also set when the journal fails
    run = _Run(sheet, report, endpoint, auth, limits, safeguards or Safeguards(), plan,
               dry_run, ca_bundle, on_request, on_outcome, stop, abort)
    with hold_run(sheet.path, report):
        clear_stale_temporaries(files[1], started=started)
        if dry_run:
            return await _written(run.execute(None), report, None)
        journal = Journal(journal_path(report), sheet_sha256=sheet_digest(sheet.path),
                          endpoint=endpoint, restart=restart,
                          on_failure=lambda _: stop.set())
        finished = False
        try:
            result = await _written(run.execute(journal), report, journal)
            finished = not result.stop_reason
        finally:
            journal.close(finished=finished)
        return result


class _ReportNotWritten(Exception):
    """The report's file could not be written; ``apply_sheet`` says what holds the outcomes."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def write_report(sheet: Sheet, rows: Sequence[RowResult], path: Path) -> Path:
    """``report.write_report``, with a failed write (a full disk) told apart from a bug."""
    try:
        return _write_report_file(sheet, rows, path)
    except OSError as error:
        raise _ReportNotWritten(error) from error


async def _written(execution: Awaitable[RunResult], report: Path,
                   journal: Journal | None) -> RunResult:
    """The run's result, unless the journal or the report could not be written (a full
    disk): then the run stops (exit 3) saying which file still holds every outcome."""
    try:
        result = await execution
    except _ReportNotWritten as failure:
        why = _why(failure.error)
        if journal is None:
            message = f"could not write the report {report}: {why} — free space and rerun"
        elif journal.error is None:
            message = (f"could not write the report {report}: {why} — the journal at "
                       f"{journal.path} holds every outcome; free space and rerun")
        else:
            message = (f"could not write the report {report} ({why}) nor the journal at "
                       f"{journal.path} ({_why(journal.error)}) — free space and rerun")
        raise WriteFailed(message) from None
    if journal is not None and journal.error is not None:
        reason = (f"could not write the journal at {journal.path}: {_why(journal.error)} — "
                  "no request was started after that; the report holds every outcome; "
                  "free space and rerun")
        return dataclasses.replace(result, stop_reason=reason)
    return result


def _why(error: OSError) -> str:
    return error.strerror or str(error)


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
        sheet, auth = self.sheet, self.auth
        pacer = Pacer(self.limits)
        started = time.perf_counter()
        resume = _Resume.of(sheet, journal)
        start = _Start([unplanned(patch) for patch in resume.pending], resume.kept, {})
        stop_reason = ""
        async with ImsClient(self.endpoint, auth, timeout=self.limits.timeout,
                             connections=self.limits.concurrency,
                             ca_bundle=self.ca_bundle) as client:
            try:
                start = await self._start(resume, Reader(client, pacer, self.safeguards.policy,
                                                         self.stop))
            except ReadStopped as stopped:
                stop_reason = str(stopped)
            except ReadFailed as failure:
                stop_reason = str(failure)
                if failure.status in (401, 403) or failure.code == LOGIN_FAILED:
                    stop_reason += f" (credentials used: {auth.kind} from {auth.source})"
            else:
                stop_reason = await self._send(client, pacer, journal, start)
            requests = client.requests
        seconds = time.perf_counter() - started
        rows = row_results(sheet, [*start.plans, *start.kept], start.outcomes)
        write_report(sheet, rows, self.report)
        return RunResult(sheet, rows, self.report, requests, seconds, stop_reason)

    async def _start(self, resume: _Resume, reader: Reader) -> _Start:
        """Each pending image's plan, reading first the images that need it: all of them
        with a read pass, else those an earlier run left in doubt or the sheet now asks
        otherwise of.  An image in doubt that reads as done was applied by that run."""
        plan, pending = self.plan, resume.pending
        to_read = ({patch.image_id for patch in pending} if plan is True
                   else resume.in_doubt | resume.asked_anew)
        images = {}
        if to_read:
            images = await _unless_aborted(self.abort, fetch_images(
                reader, [patch.image_id for patch in pending if patch.image_id in to_read]))
        saved = {} if isinstance(plan, bool) else {p.image_id: p for p in plan}
        start = _Start([], resume.kept, dict(resume.recorded))
        for patch in pending:
            image_id, image = patch.image_id, images.get(patch.image_id)
            earlier = resume.in_doubt_plans.get(image_id)
            if earlier is not None:
                settled, applied = settle(earlier, image)
                start.plans.append(settled)
                if applied:
                    start.outcomes[image_id] = start.confirmed[image_id] = Outcome(
                        image_id, Status.SUCCEEDED, error_message=APPLIED_BY_EARLIER_RUN)
            elif image_id in to_read:
                start.plans.append(plan_image(patch, image))
            else:
                start.plans.append(saved.get(image_id) or unplanned(patch))
        return start

    async def _send(self, client: ImsClient, pacer: Pacer, journal: Journal | None,
                    start: _Start) -> str:
        """Send every plan that still changes something; the reason the run stopped, if so."""
        on_outcome = self.on_outcome
        self._announce(journal, start)
        sendable = [p for p in start.plans
                    if p.status is None and p.image_id not in start.outcomes]
        if self.dry_run:
            await self._preview(client, sendable, start)
            return ""

        def record(outcome: Outcome) -> None:  # the runner has its plan and doubt by now
            if journal is not None:
                journal.outcome(outcome, plan_to_json(runner.plans[outcome.image_id]),
                                in_doubt=outcome.image_id in runner.unsettled)
            if on_outcome is not None:
                on_outcome(outcome)

        runner = Runner(client, pacer, self.safeguards, on_outcome=record,
                        on_sending=_journal_sending(journal),
                        stop=self.stop, abort=self.abort, add_on_conflict=self.plan is False)
        start.outcomes.update(await runner.run(sendable))
        start.plans = [runner.plans.get(plan.image_id, plan) for plan in start.plans]
        if not runner.stop_reason and len(runner.outcomes) < len(sendable):
            return "stopped before every image was attempted"
        return runner.stop_reason


    def _announce(self, journal: Journal | None, start: _Start) -> None:
        """Journal what reading back confirmed; count every image settled without a write."""
        by_id = {plan.image_id: plan for plan in start.plans}
        for image_id, outcome in start.confirmed.items():
            if journal is not None:
                journal.outcome(outcome, plan_to_json(by_id[image_id]), in_doubt=False)
        if self.on_outcome is not None:
            for outcome in start.settled():
                self.on_outcome(outcome)

    async def _preview(self, client: ImsClient, sendable: Sequence[ImagePlan],
                       start: _Start) -> None:
        """A dry run: each PATCH handed to ``on_request`` as text, its rows ``planned``."""
        for item in sendable:
            if self.on_request is not None:
                self.on_request(await client.preview_update(item.image_id, item.patch.body()))
            start.outcomes[item.image_id] = Outcome(item.image_id, Status.PLANNED)


#: Why an image a dead run was writing is ``succeeded`` without a write of this run.
APPLIED_BY_EARLIER_RUN = ("applied by the interrupted run: reading the image back shows the "
                          "change in place")


@dataclass
class _Start:
    """Where sending starts: each pending image's plan, the plans of images an earlier run
    finished (they decide those rows), and every outcome known before a write is sent."""

    plans: list[ImagePlan]
    kept: list[ImagePlan]
    outcomes: dict[str, Outcome]
    confirmed: dict[str, Outcome] = field(default_factory=dict)

    def settled(self) -> list[Outcome]:
        """The outcomes of images settled without a write of this run."""
        return [*self.outcomes.values(), *(Outcome(plan.image_id, plan.status)
                                           for plan in self.plans
                                           if plan.status is not None
                                           and plan.image_id not in self.outcomes)]


@dataclass(frozen=True)
class _Resume:
    """What the journal of an unfinished earlier run means for this sheet.

    ``kept``: images it finished that the sheet asks the same of now (not sent again; their
    recorded plan decides their rows).  ``in_doubt_plans``: images it was writing, or whose
    write got an answer nobody could trust, with the plan that write carried: read back
    and settled before anything is sent.  ``asked_anew``: images it touched that the sheet
    (edited since) now asks something else of — or whose plan it did not record — read
    and planned afresh, so nothing it applied is sent twice.  ``in_doubt``: every image
    it had in doubt, whatever the sheet asks now.
    """

    pending: list[ImagePatch]
    kept: list[ImagePlan]
    recorded: dict[str, Outcome]
    in_doubt_plans: dict[str, ImagePlan]
    asked_anew: set[str]
    in_doubt: set[str]

    @classmethod
    def of(cls, sheet: Sheet, journal: Journal | None) -> _Resume:
        if journal is None:
            return cls(list(sheet.patches), [], {}, {}, set(), set())
        resume = cls([], [], {}, {}, set(), set(journal.in_doubt))
        for patch in sheet.patches:
            image_id = patch.image_id
            earlier = _earlier_plan(journal, patch)
            if image_id in journal.recorded and earlier is not None:
                resume.kept.append(earlier)
                resume.recorded[image_id] = journal.recorded[image_id]
                continue
            resume.pending.append(patch)
            if image_id in journal.in_doubt and earlier is not None:
                resume.in_doubt_plans[image_id] = earlier
            elif image_id in journal.in_doubt or image_id in journal.recorded:
                resume.asked_anew.add(image_id)
        resume.tell(journal)
        return resume

    def tell(self, journal: Journal) -> None:
        """Say what is resumed, and when the journal is of another sheet or service."""
        if journal.other_endpoint:
            log.warning("the journal %s was written against %s, not this endpoint: it is set "
                        "aside and nothing in it is resumed", journal.path,
                        journal.other_endpoint)
        if journal.other_sheet:
            log.warning("the journal %s belongs to another version of the sheet: the %d "
                        "images it had in doubt are read back before anything is sent, and "
                        "of the %d it finished, the %d the sheet asks the same of are not "
                        "sent again", journal.path, len(journal.in_doubt),
                        len(journal.recorded), len(self.kept))
        if self.recorded:
            log.info("resuming: %d images already done are not sent again",
                     len(self.recorded))


def _earlier_plan(journal: Journal, patch: ImagePatch) -> ImagePlan | None:
    """The plan the journal holds for ``patch``'s image, renumbered to the sheet's rows;
    None when the sheet now asks otherwise.  A journal of this very sheet that recorded no
    plan (an older format) stands for sending the sheet as written."""
    raw = journal.plans.get(patch.image_id)
    if raw is None:
        return None if journal.other_sheet else unplanned(patch)
    try:
        plan = plan_from_json(raw)
    except (KeyError, TypeError, ValueError):
        return None  # a damaged plan: read the image and plan afresh
    return rebased(plan, patch)


def _journal_sending(journal: Journal | None) -> SendingCallback | None:
    if journal is None:
        return None
    return lambda plan: journal.sending(plan.image_id, plan_to_json(plan))


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
    out: str | Path | None = None,
    ca_bundle: str | None = None,
) -> list[ImagePlan]:
    """Read the images ``sheet`` names and plan every patch; save the plan to ``out``.

    Sends no write.  Raises ``ReadFailed`` when the images cannot be read.
    """
    if not isinstance(sheet, Sheet):
        sheet = read_sheet(sheet, sheet_name=sheet_name, encoding=encoding, delimiter=delimiter)
    if out is not None:
        check_plan_files(sheet.path, Path(out))
        clear_stale_temporaries([RunFile("the plan file", Path(out))])
    limits = limits or Limits()
    async with ImsClient(endpoint, auth, timeout=limits.timeout,
                         connections=limits.concurrency, ca_bundle=ca_bundle) as client:
        plans = await plan_sheet(sheet, Reader(client, Pacer(limits)))
    if out is not None:
        save_plan(Path(out), sheet, endpoint, plans)
    return plans
