"""One run from sheet to report: the library entry point the CLI is a thin layer over.

A run is four plain stages, each a function below:

1. read the sheet (``read_sheet``) and check the outputs;
2. choose the plan source (``PlanSource``: ``ReadPass``, ``SavedPlan`` or ``AsWritten``),
   and with it each pending image's plan (``_Run.choose_plans``), after settling what an
   earlier run left in doubt;
3. send the plans that still change something (``_Run.send``, through the ``Runner``);
4. write the report, one row per source row (``rows_of``).

Every image's fate is in one ``Ledger``, which the journal persists and everything else
(progress, thresholds, report, summary) reads.  The job talks to the service only through
``service.ImageService``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio

from batchpatch import fastjson
from batchpatch.auth import Auth
from batchpatch.client import ImsClient
from batchpatch.errors import (
    Namer,
    OptionsError,
    Problem,
    ReadFailed,
    ReadStopped,
    Reason,
    SheetError,
    StopReason,
    WriteFailed,
)
from batchpatch.exits import (
    EXIT_INVALID,
    EXIT_MEANINGS,
    EXIT_OK,
    EXIT_ROWS_NOT_DONE,
    EXIT_STOPPED,
    apply_exit_code,
)
from batchpatch.inventory import Reader, fetch_images
from batchpatch.journal import Journal, journal_path, unsettled_writes
from batchpatch.ledger import Entry, Event, Ledger, Listener
from batchpatch.lock import hold_run
from batchpatch.models import ImagePatch, Limits, Outcome, PartOutcome, Status
from batchpatch.outputs import (
    RunFile,
    apply_files,
    check_outputs,
    check_plan_files,
    clear_stale_temporaries,
)
from batchpatch.plan import (
    Change,
    ImagePlan,
    plan_image,
    rebased,
    settle,
    unplanned,
)
from batchpatch.planfile import check_plans, save_plan, sheet_digest
from batchpatch.progress import tell_resume
from batchpatch.regional import RegionFigures, RegionsRun, run_regions
from batchpatch.report import RowResult, check_report_writable, default_report_path
from batchpatch.report import write_report as _write_report_file
from batchpatch.rerun import select_rows
from batchpatch.routing import Routes
from batchpatch.runner import (
    JOURNAL_FAILED,
    OutcomeCallback,
    Runner,
    Safeguards,
    collector_spared,
    partly_done,
)
from batchpatch.schema import RENAME, is_tag, tag_key
from batchpatch.service import ImageService
from batchpatch.sheet import Sheet, read_sheet
from batchpatch.sheetwrite import check_table_writable
from batchpatch.tagreads import current_tags
from batchpatch.telemetry import RecordingService, Telemetry
from batchpatch.throttle import Pacer, sleep_unless_stopped
from batchpatch.undo import (
    UNDO_HEADER,
    default_undo_path,
    merge,
    read_undo,
    undo_sheet,
    write_undo,
)

log = logging.getLogger("batchpatch")

__all__ = [
    "AS_WRITTEN",
    "EXIT_INVALID",
    "EXIT_MEANINGS",
    "EXIT_OK",
    "EXIT_ROWS_NOT_DONE",
    "EXIT_STOPPED",
    "READ_PASS",
    "AsWritten",
    "PlanSource",
    "ReadPass",
    "RunResult",
    "SavedPlan",
    "apply_sheet",
    "make_plan",
    "plan_sheet",
    "row_results",
    "rows_of",
]

#: ``error_code`` of rows the plan keeps from being sent, by their status.
PLAN_REFUSALS = {Status.FAILED: "not_found", Status.SKIPPED: "not_active"}

RequestPrinter = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class ReadPass:
    """Read every image first and send only what still changes something (the default)."""


@dataclass(frozen=True)
class SavedPlan:
    """Send exactly these plans (``planfile.load_plan``), checked against the sheet."""

    plans: Sequence[ImagePlan]


@dataclass(frozen=True)
class AsWritten:
    """Read nothing first; send the sheet as written.  A ``replace`` the service refuses as
    a conflict (IMS: ``IMG.0035``) is retried as ``add``."""


#: Where each image's plan comes from.
PlanSource = ReadPass | SavedPlan | AsWritten
READ_PASS, AS_WRITTEN = ReadPass(), AsWritten()


def plan_source(plan: PlanSource | bool | Sequence[ImagePlan]) -> PlanSource:
    """``plan`` as a ``PlanSource``; ``True``/``False``/a list of plans are the older
    spellings of ``ReadPass()``/``AsWritten()``/``SavedPlan(plans)``."""
    if isinstance(plan, ReadPass | SavedPlan | AsWritten):
        return plan
    if isinstance(plan, bool):
        return READ_PASS if plan else AS_WRITTEN
    return SavedPlan(list(plan))


@dataclass(frozen=True)
class RunResult:
    """A finished (or stopped) run: one result per source row, and where the report is.

    ``stop`` is the structured reason (``kind``, and ``text(namer)`` in a caller's words);
    ``stop_reason`` the same in the library's words ("" when the run finished); ``ledger``
    every image's fate; ``undo_path`` the undo sheet written (None when the run changed
    nothing, or nothing it changed can be undone by a sheet), ``undo_note`` what to know
    about it ("" when nothing).
    """

    sheet: Sheet
    rows: Sequence[RowResult]
    report_path: Path
    requests: int
    seconds: float
    stop_reason: str = ""
    stop: StopReason | None = None
    ledger: Ledger | None = None
    undo_path: Path | None = None
    undo_note: str = ""
    #: Each region's figures, when the sheet's rows go to several (``regional``).
    regions: tuple[RegionFigures, ...] = ()
    #: The undo sheet was merged with the one an earlier run left at its path.
    undo_merged: bool = False

    @property
    def outcomes(self) -> list[Outcome]:
        return [row.outcome for row in self.rows]

    @property
    def counts(self) -> Counter[str]:
        """Rows by status (the rows are the ledger's view of each source row)."""
        return Counter(str(row.outcome.status) for row in self.rows)

    @property
    def exit_code(self) -> int:
        return apply_exit_code(
            (row.outcome.status for row in self.rows), stopped=bool(self.stop_reason)
        )

    def summary(self) -> str:
        """One line: counts by status, wall time, request rate, report path."""
        counts = self.counts
        parts = ", ".join(
            f"{counts[str(status)]} {status}" for status in Status if counts[str(status)]
        )
        rate = self.requests / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{len(self.rows)} rows: {parts or 'nothing to do'} | "
            f"{self.requests} requests in {self.seconds:.1f} s ({rate:.1f}/s) | "
            + (f"encoding: {self.sheet.encoding_label} | " if self.sheet.encoding_label else "")
            + f"report: {self.report_path}"
        )


async def plan_sheet(sheet: Sheet, reader: Reader) -> list[ImagePlan]:
    """Read the images ``sheet`` names (and the tags of those it changes tags of) and plan
    each patch against what is there now; ``SheetError`` for what the plan finds cannot be
    done (the tag limit, a rename onto a key holding another value)."""
    ids = [patch.image_id for patch in sheet.patches]
    images = await fetch_images(reader, ids)
    tags = await read_current_tags(reader, sheet.patches)
    plans = [
        plan_image(patch, images.get(patch.image_id), tags.get(patch.image_id))
        for patch in sheet.patches
    ]
    refuse_plan_problems(sheet, plans)
    return plans


def tag_keys(patch: ImagePatch) -> set[str]:
    """The tag keys ``patch`` touches (a rename: both)."""
    keys = set()
    for operation in patch.operations:
        path = operation.path.lstrip("/")
        if is_tag(path):
            keys.add(tag_key(path))
            if operation.op == RENAME:
                keys.add(tag_key(str(operation.value)))
    return keys


async def read_current_tags(
    reader: Reader, patches: Sequence[ImagePatch]
) -> dict[str, dict[str, str]]:
    """The current tags of the images whose patches touch tags (none read otherwise), by
    ``tagreads.current_tags``'s rule; an image that may gain a tag is known whole (the tag
    limit and the order of its tag calls need every tag it has)."""
    touching = {patch.image_id: tag_keys(patch) for patch in patches}
    touching = {image_id: keys for image_id, keys in touching.items() if keys}
    if not touching:
        return {}
    gaining = {p.image_id for p in patches if p.image_id in touching and _may_gain_tags(p)}
    keys = sorted(set().union(*touching.values()))
    return await current_tags(
        reader.client,
        list(touching),
        keys,
        reader.pacer,
        policy=reader.policy,
        stop=reader.stop,
        whole=gaining,
    )


def _may_gain_tags(patch: ImagePatch) -> bool:
    return any(
        is_tag(operation.path) and operation.op in ("add", "replace", RENAME)
        for operation in patch.operations
    )


def plan_problems(sheet: Sheet, plans: Sequence[ImagePlan]) -> list[Problem]:
    """What the plan found cannot be done, located at the row and column that ask it:
    every problem of every image."""
    return [
        Problem(str(sheet.path), row, _problem_column(sheet, plan, row), reason)
        for plan in plans
        for row, reason in plan.problems
    ]


def refuse_plan_problems(sheet: Sheet, plans: Sequence[ImagePlan]) -> None:
    """Raise ``SheetError`` (exit 2, nothing sent) with every plan-time problem."""
    problems = plan_problems(sheet, plans)
    if problems:
        raise SheetError(sorted(problems, key=lambda problem: problem.row))


def _problem_column(sheet: Sheet, plan: ImagePlan, row: int) -> str:
    """The column a plan-time problem of ``row`` is shown at: a long sheet's ``path``, a
    wide sheet's column of the change."""
    change = next(c for c in plan.changes if c.source == row)
    columns = [str(column) for column in sheet.frame.columns]
    lowered = {column.lower(): column for column in columns}
    if sheet.shape == "long":
        return lowered.get("path", "path")
    return next((c for c in columns if c.lstrip("/") == change.attribute), change.attribute)


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
    plan: PlanSource | bool | Sequence[ImagePlan] = READ_PASS,
    dry_run: bool = False,
    restart: bool = False,
    ca_bundle: str | None = None,
    on_request: RequestPrinter | None = None,
    on_outcome: OutcomeCallback | None = None,
    stop: anyio.Event | None = None,
    abort: anyio.Event | None = None,
    ledger: Ledger | None = None,
    service: ImageService | None = None,
    undo_path: str | Path | None = None,
    routes: Routes | None = None,
    telemetry: Telemetry | None = None,
    only: Collection[str] | None = None,
) -> RunResult:
    """Apply ``sheet`` (a path, or a ``Sheet`` already read) and write the report.

    ``plan``: ``ReadPass()`` reads the current images first and sends only what still
    changes something; ``SavedPlan(plans)`` (``planfile.load_plan``) sends exactly those;
    ``AsWritten()`` sends the sheet as written, turning ``replace`` into ``add`` where IMS
    answers ``IMG.0035`` (``True``, a list of plans and ``False`` still mean the same).
    ``dry_run`` sends no write: each PATCH is handed to ``on_request`` as text instead
    and its rows are reported ``planned``.  ``stop`` starts no new request; ``abort``
    also cuts off those in flight.  Either way, the report covers every row.

    Outcomes are journaled beside the report as they happen; rerunning a run that did not
    finish resumes it (``restart`` ignores the journal).  One run per report at a time.
    ``ledger`` (optional) is the record the run keeps each image's fate in: listen to it
    for progress.  A run that changes something writes an undo sheet (``undo.py``) to
    ``undo_path``, by default ``<sheet stem>.undo.<ext>`` beside the report; a dry run
    writes none.  ``service`` replaces the IMS client built from ``endpoint`` and
    ``auth`` (another API, or a test double); ``endpoint`` still names it in the journal.
    ``routes`` (``routing.route``) sends each image to its region's endpoint with that
    region's credentials, the regions side by side, each under its own ``limits``
    (``regional``); the journal then names every region's endpoint.
    ``telemetry`` (optional) records every request's timing and answer (the HTML page).
    ``only`` (statuses, for a report fed back in as the sheet) sends only the rows whose
    earlier status it lists; the others keep their earlier outcome (see ``rerun``).

    Raises ``SheetError``/``OptionsError`` (nothing sent) for bad input.  Failed rows are
    in the result, not raised.
    """
    if not isinstance(sheet, Sheet):
        sheet = read_sheet(
            sheet,
            sheet_name=sheet_name,
            skip_invalid=skip_invalid,
            encoding=encoding,
            delimiter=delimiter,
        )
    earlier: dict[int, RowResult] = {}
    source = plan_source(plan)
    if only is not None:
        sheet, earlier = select_rows(sheet, only)  # the fed-back report's rows, its path
        if isinstance(source, AsWritten) and not dry_run:
            _refuse_blind_rerun_of_unfinished(sheet.path, sheet, ",".join(sorted(only)))
    report = Path(report_path) if report_path else default_report_path(sheet.path, dry_run=dry_run)
    undo = None if dry_run else Path(undo_path or default_undo_path(sheet.path, report))
    started = time.time()
    outputs = _check_inputs(
        sheet, report, source, dry_run=dry_run, undo=undo, undo_default=not undo_path
    )
    stop = stop if stop is not None else anyio.Event()  # also set when the journal fails
    ledger = ledger if ledger is not None else Ledger()
    if on_outcome is not None:
        ledger.listen(_outcome_listener(on_outcome))
    run = _Run(
        sheet,
        report,
        endpoint,
        auth,
        limits or Limits(),
        safeguards or Safeguards(),
        source,
        dry_run,
        ca_bundle,
        on_request,
        stop,
        abort,
        ledger,
        service,
        skip_invalid,
        undo=undo,
        routes=routes,
        telemetry=telemetry,
        earlier=earlier,
    )
    with hold_run(sheet.path, report):
        clear_stale_temporaries(outputs, started=started)
        if dry_run:
            return await _written(run.execute(None), report, None)
        journal = Journal(
            journal_path(report),
            ledger,
            sheet_sha256=sheet_digest(sheet.path),
            endpoint=endpoint if routes is None else routes.identity,
            restart=restart,
            on_failure=lambda _: stop.set(),
        )
        finished = False
        try:
            result = await _written(run.execute(journal), report, journal)
            finished = not result.stop_reason
        except (SheetError, OptionsError):  # found before anything was sent
            finished = True
            raise
        finally:
            journal.close(finished=finished)
        return result


def _check_inputs(
    sheet: Sheet,
    report: Path,
    source: PlanSource,
    *,
    dry_run: bool,
    undo: Path | None = None,
    undo_default: bool = False,
) -> list[RunFile]:
    """Stage 1's checks, before anything is sent: outputs never overwrite inputs, the
    report has the sheet's format and can be written, a saved plan fits the sheet.
    Returns the run's outputs."""
    inputs, outputs = apply_files(
        sheet.path, report, dry_run=dry_run, undo=undo, undo_default=undo_default
    )
    check_outputs(inputs, outputs)
    if report.suffix.lower() != sheet.path.suffix.lower():
        raise OptionsError.about(
            "report_path",
            str(report),
            lambda named: (
                f"{named} must have the sheet's extension ({sheet.path.suffix}), since the "
                "report is written in its format"
            ),
        )
    if isinstance(source, AsWritten):
        _refuse_renames_as_written(sheet)
    if isinstance(source, SavedPlan):
        check_plans(sheet, source.plans)
    check_report_writable(sheet, report)  # find out now, not after the changes were sent
    if undo is not None:
        check_table_writable(undo, UNDO_HEADER, label="the undo path")
        read_undo(undo)  # an earlier run's undo sheet is merged with: it must read as one
    return outputs


def _refuse_blind_rerun_of_unfinished(report: Path, selected: Sheet, only: str) -> None:
    """A report fed back in whose own run did not finish still has that run's journal
    beside it, naming the writes it never heard back about: sent again as written, without
    reading the images, those of the ``selected`` rows would be applied twice (exit 2,
    nothing sent).  A journal that cannot be read is taken to name some."""
    journal = journal_path(report)
    unsettled = unsettled_writes(journal)
    if unsettled is not None:
        unsettled &= {patch.image_id for patch in selected.patches}
        if not unsettled:
            return
    what = (
        "cannot be read, so it may name writes that were applied"
        if unsettled is None
        else f"names {len(unsettled)} write(s) that may have been applied (image "
        f"{min(unsettled)}{' …' if len(unsettled) > 1 else ''})"
    )

    def say(name: Namer) -> str:
        as_written = name("plan", "AS_WRITTEN").removeprefix("use ")
        return str(
            Reason(
                f"{report}: the run that wrote this report did not finish — its journal "
                f"{journal} {what}, and {name('only', only)} with {as_written} would send "
                "them again without reading the images",
                f"rerun that run's own command to resume it, or leave out {as_written}",
            )
        )

    raise OptionsError(parameter="only", wording=say)


def _refuse_renames_as_written(sheet: Sheet) -> None:
    """A rename moves the value the old key holds, which only reading the image tells:
    each rename row is refused where it is (exit 2, nothing sent)."""
    rows = [
        row
        for patch in sheet.patches
        for operation, row in zip(patch.operations, patch.sources, strict=True)
        if operation.op == RENAME
    ]
    if rows:
        column = next((str(c) for c in sheet.frame.columns if str(c).lower() == "op"), "op")
        reason = Reason.worded(
            "a rename needs the image's current value",
            lambda name: f"leave out {name('plan', 'AS_WRITTEN').removeprefix('use ')}",
        )
        raise SheetError([Problem(str(sheet.path), row, column, reason) for row in rows])


def _outcome_listener(on_outcome: OutcomeCallback) -> Listener:
    """``on_outcome`` told of every outcome the ledger gets, sent or settled without."""

    def tell(event: Event, entry: Entry, outcome: Outcome | None) -> None:
        if event != Event.SENDING and outcome is not None:
            on_outcome(outcome)

    return tell


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


async def _written(
    execution: Awaitable[RunResult], report: Path, journal: Journal | None
) -> RunResult:
    """The run's result, unless the journal or the report could not be written (a full
    disk): then the run stops (exit 3) saying which file still holds every outcome."""
    try:
        result = await execution
    except _ReportNotWritten as failure:
        why = _why(failure.error)
        if journal is None:
            message = Reason(f"could not write the report {report}: {why}", "free space and rerun")
        elif journal.error is None:
            message = Reason(
                f"could not write the report {report}: {why}",
                f"the journal at {journal.path} holds every outcome; free space and rerun",
            )
        else:
            message = Reason(
                f"could not write the report {report} ({why}) nor the journal at "
                f"{journal.path} ({_why(journal.error)})",
                "free space and rerun",
            )
        raise WriteFailed(str(message)) from None
    if journal is not None and journal.error is not None:
        reason = str(
            Reason(
                f"could not write the journal at {journal.path}: {_why(journal.error)}",
                "no request was started after that; the report holds every outcome; "
                "free space and rerun",
            )
        )
        return dataclasses.replace(result, stop_reason=reason, stop=StopReason("journal", reason))
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
    source: PlanSource
    dry_run: bool
    ca_bundle: str | None
    on_request: RequestPrinter | None
    stop: anyio.Event
    abort: anyio.Event | None
    ledger: Ledger
    service: ImageService | None = None
    skip_invalid: bool = False
    undo: Path | None = None
    routes: Routes | None = None
    telemetry: Telemetry | None = None
    earlier: Mapping[int, RowResult] = field(default_factory=dict)  # rows ``only`` left out
    #: Awaited after the plans, before anything is sent (``regional``: every region planned).
    before_send: Callable[[], Awaitable[None]] | None = None

    async def execute(self, journal: Journal | None) -> RunResult:
        """Stages 2 to 4: choose the plans, send, write the report; the journal (when
        given) has restored what an earlier run left into the ledger, and appends each of
        its events.  The garbage collector is spared throughout (``collector_spared``)."""
        with collector_spared:
            return await self._execute(journal)

    async def _execute(self, journal: Journal | None) -> RunResult:
        started = time.perf_counter()
        resume = _Resume.of(self.sheet, self.ledger, journal)
        regions = None
        if self.routes is not None:
            regions = await run_regions(self, resume, self.routes, _Resume.only)
            stop, requests = regions.stop, regions.total_requests
        else:
            async with self._service() as client:
                if self.telemetry is not None:
                    client = RecordingService(client, self.telemetry)
                stop = await self._plan_and_send(client, resume)
                requests = client.requests
        if self.telemetry is not None:
            self.telemetry.finish()
        rows = rows_of(self.sheet, self.ledger, self.earlier)
        write_report(self.sheet, rows, self.report)
        undo_path, undo_note, undo_merged = self._write_undo(regions)
        return RunResult(
            self.sheet,
            rows,
            self.report,
            requests,
            time.perf_counter() - started,
            "" if stop is None else str(stop),
            stop,
            self.ledger,
            undo_path,
            undo_note,
            () if regions is None else regions.figures(rows),
            undo_merged,
        )

    def _write_undo(self, regions: RegionsRun | None = None) -> tuple[Path | None, str, bool]:
        """Write the undo sheet of what the ledger shows changed (none in a dry run, or
        when nothing was): its path, what a person should know about it, and whether it
        was merged with the undo sheet an earlier run left at its path (``undo.merge``)."""
        if self.undo is None:
            return None, "", False
        undo = undo_sheet(self.ledger, self.sheet.schema)
        note = undo.note()
        if not undo.rows:
            return None, note, False
        try:
            earlier = read_undo(self.undo)
            if earlier is not None:  # a rerun: one sheet back to before the earliest run
                undo = merge(earlier, undo)
            merged = earlier is not None
            if self.routes is None or regions is None:
                return write_undo(self.undo, undo), undo.note(), merged
            cells, projects = self.routes.cells(), regions.project_of_images()
            return write_undo(self.undo, undo, cells, projects), undo.note(), merged
        except (OSError, OptionsError) as error:
            why = _why(error) if isinstance(error, OSError) else str(error)
            failed = f"could not write the undo sheet {self.undo}: {why}"
            return None, f"{failed}; {note}" if note else failed, False

    def _service(self) -> Any:
        return open_service(self.service, self.endpoint, self.auth, self.limits, self.ca_bundle)

    async def _plan_and_send(self, client: ImageService, resume: _Resume) -> StopReason | None:
        if any(tag_keys(patch) for patch in self.sheet.patches):
            await client.tag_project()  # OptionsError (nothing sent) when there is none
        pacer = Pacer(self.limits)
        reader = Reader(client, pacer, self.safeguards.policy, self.stop)
        try:
            await self.choose_plans(resume, reader)
        except ReadStopped as stopped:
            if self.ledger.unrecorded:  # another region's write failed to be journaled
                return StopReason("journal", JOURNAL_FAILED)
            return StopReason("signal", str(stopped))
        except ReadFailed as failure:
            return _read_failed(failure, client)
        if self.before_send is not None:
            await self.before_send()
        return await self.send(client, pacer)

    async def choose_plans(self, resume: _Resume, reader: Reader) -> None:
        """Stage 2: each pending image's plan, from the plan source, into the ledger.

        Images that need it are read first: all of them with a read pass, else those an
        earlier run left in doubt or the sheet now asks otherwise of.  An image in doubt
        that reads as done was applied by that run."""
        in_doubt = resume.in_doubt(self.ledger)
        to_read = (
            {patch.image_id for patch in resume.pending}
            if isinstance(self.source, ReadPass)
            else in_doubt | resume.asked_anew
        )
        images: dict[str, Any] = {}
        tags: dict[str, dict[str, str]] = {}
        if to_read:
            await self._let_earlier_writes_land(in_doubt)
            reading = [p for p in resume.pending if p.image_id in to_read]
            images = await _unless_aborted(
                self.abort, fetch_images(reader, [p.image_id for p in reading])
            )
            tags = await _unless_aborted(self.abort, read_current_tags(reader, reading))
        saved = (
            {p.image_id: p for p in self.source.plans} if isinstance(self.source, SavedPlan) else {}
        )
        for patch in resume.pending if to_read or saved else ():  # else each stays unplanned
            image_id, image = patch.image_id, images.get(patch.image_id)
            earlier = self.ledger.plan_of(image_id)
            if image_id in in_doubt and image_id not in resume.asked_anew and earlier is not None:
                self._settle_earlier(earlier, image, tags.get(image_id))
            elif image_id in to_read:
                self.ledger.plan(plan_image(patch, image, tags.get(image_id)))
            elif image_id in saved:  # else the ledger holds ``unplanned(patch)`` already
                self.ledger.plan(saved[image_id])
            if image_id in to_read:  # read: its state is known now
                self.ledger.answered(image_id, in_doubt=False)
        self._refuse_plan_problems()

    def _refuse_plan_problems(self) -> None:
        """What the plan found cannot be done (the tag limit, a rename onto a taken key):
        exit 2 with every problem located, nothing sent; with ``skip_invalid`` those
        images' rows are ``invalid`` and the rest is sent."""
        plans = [e.plan for e in self.ledger if e.plan is not None and e.outcome is None]
        if not (self.skip_invalid or self.sheet.skip_invalid):
            refuse_plan_problems(self.sheet, plans)

    async def _let_earlier_writes_land(self, in_doubt: set[str]) -> None:
        """Wait until the request timeout has passed since the earlier run's last write in
        doubt (``in_doubt``, the images the sheet names): a write it sent just before it
        died may still be on its way to being applied, and reading the image before then
        would send it a second time."""
        last_write = self.ledger.last_doubtful_write()
        if not in_doubt or last_write is None:
            return
        wait = min(last_write + self.limits.timeout - time.time(), self.limits.timeout)
        if wait <= 0:
            return
        log.warning(
            "waiting %.1f s before reading back %d image(s) the interrupted run was "
            "writing: its last write may still be applied (the request timeout is "
            "%g s)",
            wait,
            len(in_doubt),
            self.limits.timeout,
        )
        if not await sleep_unless_stopped(anyio.sleep, wait, self.stop):
            raise ReadStopped(
                "stopped by a signal before the images the interrupted run "
                "was writing were read back"
            )

    def _settle_earlier(
        self, earlier: ImagePlan, image: dict[str, Any] | None, tags: dict[str, str] | None
    ) -> None:
        """An image an earlier run left in doubt, read back (attributes and tags): applied
        by it, or replanned — each part on its own, so a run killed between an image's
        PATCH and its tag call sends only the tag call."""
        settled, applied = settle(earlier, image, tags=tags)
        self.ledger.plan(settled)
        if applied:  # journaled, not counted: this run sent nothing
            self.ledger.finish(
                Outcome(settled.image_id, Status.SUCCEEDED, error_message=APPLIED_BY_EARLIER_RUN),
                counted=False,
            )

    async def send(self, client: ImageService, pacer: Pacer) -> StopReason | None:
        """Stage 3: send every plan that still changes something; why the run stopped,
        if it did."""
        self._announce_unsent()
        sendable = [
            entry.plan
            for entry in self.ledger
            if entry.plan is not None and entry.plan.status is None and entry.outcome is None
        ]
        if self.dry_run:
            await self._preview(client, sendable)
            return None
        runner = Runner(
            client,
            pacer,
            self.safeguards,
            ledger=self.ledger,
            stop=self.stop,
            abort=self.abort,
            add_on_conflict=isinstance(self.source, AsWritten),
        )
        attempted = await runner.run(sendable)
        if runner.stop is None and len(attempted) < len(sendable):
            return StopReason("not_attempted", "stopped before every image was attempted")
        return runner.stop

    def _announce_unsent(self) -> None:
        """Tell the ledger's listeners (progress) of every image settled without a write:
        what an earlier run finished or this run confirmed, and what the plan decided."""
        for entry in self.ledger:
            if entry.announced:
                continue
            if entry.outcome is not None:
                self.ledger.announce(entry)
            elif entry.plan is not None and entry.plan.status is not None:
                self.ledger.announce(entry, _plan_outcome(entry.plan))

    async def _preview(self, client: ImageService, sendable: Sequence[ImagePlan]) -> None:
        """A dry run: each PATCH handed to ``on_request`` as text, its rows ``planned``."""
        for item in sendable:
            if self.on_request is not None:
                if item.patch.operations:
                    self.on_request(await client.preview_update(item.image_id, item.patch.body()))
                for write in item.tag_writes():
                    self.on_request(
                        await client.preview_tags(item.image_id, write.action, dict(write.tags))
                    )
            self.ledger.finish(Outcome(item.image_id, Status.PLANNED), counted=False, event=None)


def _plan_outcome(plan: ImagePlan) -> Outcome:
    """What the plan decided for an image (``not_found``, ``not_active``, unchanged), as the
    outcome progress tells: a failed image's line carries its error code and reason."""
    status = plan.status or Status.UNCHANGED
    return Outcome(
        plan.image_id, status, error_code=PLAN_REFUSALS.get(status, ""), error_message=plan.reason
    )


def open_service(
    service: ImageService | None, endpoint: str, auth: Auth, limits: Limits, ca_bundle: str | None
) -> Any:
    """An async context giving the service a run talks to: ``service`` as it is (the
    caller's: used, not closed), else an IMS client for ``endpoint`` under ``limits``."""
    if service is not None:
        return _Borrowed(service)
    return ImsClient(
        endpoint,
        auth,
        timeout=limits.timeout,
        connections=limits.concurrency,
        ca_bundle=ca_bundle,
    )


class _Borrowed:
    """A service the caller owns, used as the run's without opening or closing it."""

    def __init__(self, service: ImageService) -> None:
        self.service = service

    async def __aenter__(self) -> ImageService:
        return self.service

    async def __aexit__(self, *exc_info: object) -> None:
        return None


def _read_failed(failure: ReadFailed, client: ImageService) -> StopReason:
    """The images could not be read: the run stops, naming the credentials if refused."""
    suffix = f" (credentials used: {client.describe()})" if failure.refused_credentials else ""
    return StopReason("read_failed", "", lambda name: failure.text(name) + suffix)


#: Why an image a dead run was writing is ``succeeded`` without a write of this run.
APPLIED_BY_EARLIER_RUN = (
    "applied by the interrupted run: reading the image back shows the change in place"
)


@dataclass(frozen=True)
class _Resume:
    """What the sheet asks, against what the journal of an unfinished earlier run restored
    into the ledger (every image's outcome, plan and doubt is read from the ledger).

    ``pending``: the sheet's patches still to plan, and send if they change something —
    all of them but the images the earlier run finished that the sheet asks the same of
    (those keep their recorded outcome and plan).  ``asked_anew``: images it finished or
    left in doubt that the sheet (edited since) now asks something else of — or whose plan
    it did not record — read and planned afresh, so nothing it applied is sent twice.
    Pending images still in doubt in the ledger, and not asked anew, carry the plan their
    write carried: they are read back and settled before anything is sent.
    """

    pending: list[ImagePatch]
    asked_anew: set[str]

    @classmethod
    def of(cls, sheet: Sheet, ledger: Ledger, journal: Journal | None) -> _Resume:
        """Sort the sheet's patches against the ledger, leaving in it only the images the
        sheet names, in its order, each with its plan (send-as-written for a pending image
        not in doubt, which stands if the images cannot be read)."""
        restored = len(ledger) > 0  # else every image is new: nothing to sort out
        earlier_in_doubt, earlier_done = len(ledger.in_doubt()), len(ledger.done())
        resume = cls([], set())
        if restored:
            other_sheet = journal is not None and journal.other_sheet
            for patch in sheet.patches:
                resume._sort(patch, ledger, other_sheet=other_sheet)
            ledger.keep_only([patch.image_id for patch in sheet.patches])
        else:  # the first run: each image pending, sent as written unless planned
            resume.pending.extend(sheet.patches)
            for patch in sheet.patches:
                ledger.plan(unplanned(patch))
        if journal is not None:
            resume.tell(journal, ledger, earlier_in_doubt, earlier_done)
            if restored:
                resume.tell_resumed(ledger)
                _announce_earlier(ledger)
        return resume

    def _sort(self, patch: ImagePatch, ledger: Ledger, *, other_sheet: bool) -> None:
        image_id, entry = patch.image_id, ledger.get(patch.image_id)
        if entry is None:  # not in the journal
            self.pending.append(patch)
            ledger.plan(unplanned(patch))
            return
        earlier = _earlier_plan(entry, patch, other_sheet=other_sheet)
        done = entry.outcome is not None and entry.outcome.status.done
        if done and earlier is not None:  # kept: not sent again, not journaled again
            ledger.restore(image_id, entry.outcome, earlier, in_doubt=False)
            return
        self.pending.append(patch)
        if entry.in_doubt and not done and earlier is not None:
            ledger.plan(earlier)  # read back and settled against it
        else:
            self.asked_anew.add(image_id)
            ledger.restore(image_id, None, unplanned(patch), in_doubt=entry.in_doubt and not done)

    def only(self, image_ids: set[str]) -> _Resume:
        """The part of this resume that concerns ``image_ids`` (one region's images)."""
        pending = [patch for patch in self.pending if patch.image_id in image_ids]
        return _Resume(pending, self.asked_anew & image_ids)

    def in_doubt(self, ledger: Ledger) -> set[str]:
        """The pending images whose last write (the earlier run's) may have been applied."""
        doubtful = ledger.in_doubt()
        return {patch.image_id for patch in self.pending if patch.image_id in doubtful}

    def tell(self, journal: Journal, ledger: Ledger, in_doubt: int, done: int) -> None:
        """Say what is resumed, and when the journal is of another sheet or service
        (``in_doubt`` and ``done``: how many images the journal left so)."""
        if journal.other_endpoint:
            log.warning(
                "the journal %s was written against %s, not this endpoint: it is set "
                "aside and nothing in it is resumed",
                journal.path,
                journal.other_endpoint,
            )
        if journal.other_sheet:
            kept = sum(1 for entry in ledger if entry.earlier)
            log.warning(
                "the journal %s belongs to another version of the sheet: the %d "
                "images it had in doubt are read back before anything is sent, and "
                "of the %d it finished, the %d the sheet asks the same of are not "
                "sent again",
                journal.path,
                in_doubt,
                done,
                kept,
            )

    def tell_resumed(self, ledger: Ledger) -> None:
        """``resuming: 412 of 1,000 images already done, 3 in doubt to read back``, when
        the journal left anything done or in doubt."""
        kept = sum(1 for entry in ledger if entry.earlier)
        in_doubt = len(self.in_doubt(ledger))
        if kept or in_doubt:
            tell_resume(len(ledger), kept, in_doubt)


def _announce_earlier(ledger: Ledger) -> None:
    """Tell progress now of the images the earlier run finished, so its lines start from
    the resumed count (not from 0 until sending begins)."""
    for entry in ledger:
        if entry.earlier and not entry.announced:
            ledger.announce(entry)


def _earlier_plan(entry: Entry, patch: ImagePatch, *, other_sheet: bool) -> ImagePlan | None:
    """The plan the earlier run recorded for ``patch``'s image, renumbered to the sheet's
    rows; None when the sheet now asks otherwise.  A journal of this very sheet that
    recorded no plan (or a damaged one) stands for sending the sheet as written."""
    if entry.plan is None:
        return None if other_sheet else unplanned(patch)
    return rebased(entry.plan, patch)


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


def rows_of(
    sheet: Sheet, ledger: Ledger, earlier: Mapping[int, RowResult] | None = None
) -> list[RowResult]:
    """Stage 4: the report's rows, read from the ledger (and ``earlier``: rows kept as an
    earlier run's report gave them)."""
    return row_results(sheet, list(ledger.plans().values()), ledger.outcomes(), earlier)


def row_results(
    sheet: Sheet,
    plans: Sequence[ImagePlan],
    sent: dict[str, Outcome],
    earlier: Mapping[int, RowResult] | None = None,
) -> list[RowResult]:
    """One result per source row, in sheet order; rows never reached are ``not_attempted``;
    ``earlier`` rows as they are."""
    results: dict[int, RowResult] = {}
    for row, reason in sheet.invalid.items():
        results[row] = RowResult(Outcome("", Status.INVALID, error_message=reason))
    for row in sheet.idle_rows:
        results[row] = RowResult(Outcome("", Status.UNCHANGED))
    long = sheet.shape == "long"
    for plan in plans:
        image_outcome = sent.get(plan.image_id) or Outcome(plan.image_id, Status.NOT_ATTEMPTED)
        for row, mine in _changes_by_row(plan):
            before, after = _before_after(plan, mine, long=long)
            results[row] = RowResult(_row_outcome(plan, row, mine, image_outcome), before, after)
    results.update(earlier or {})
    missing = [row for row in sheet.rows if row not in results]
    if missing:
        raise AssertionError(f"rows {missing} were left without an outcome")
    return [results[row] for row in sheet.rows]


def _changes_by_row(plan: ImagePlan) -> list[tuple[int, tuple[Change, ...]]]:
    """Each row of ``plan``, in order, with its changes (an image of one row: one pair)."""
    changes = plan.changes
    if len(changes) == 1:
        return [(changes[0].source, changes)]
    by_row: dict[int, list[Change]] = {}
    for change in changes:
        by_row.setdefault(change.source, []).append(change)
    return [(row, tuple(by_row[row])) for row in sorted(by_row)]


def _row_outcome(plan: ImagePlan, row: int, mine: Sequence[Change], image: Outcome) -> Outcome:
    """The outcome of ``row``, whose changes are ``mine``: what the plan decided of it
    (refused, or every change already in place), else what became of the image's work."""
    status = plan.row_status(mine)
    if status is None:
        return _own_outcome(plan, mine, image)
    if status == Status.UNCHANGED:
        return Outcome(plan.image_id, Status.UNCHANGED)
    return Outcome(
        plan.image_id,
        status,
        error_code=PLAN_REFUSALS.get(status, ""),
        error_message=plan.row_reason(row),
    )


def _told_by(image: Outcome, part: PartOutcome) -> bool:
    """Whether ``image`` already gives what ``part`` says of a row's answer."""
    return (
        image.http_status == part.http_status
        and image.error_code == part.error_code
        and image.error_message == part.error_message
        and image.request_id == part.request_id
    )


def _own_outcome(plan: ImagePlan, mine: Sequence[Change], image: Outcome) -> Outcome:
    """A row's outcome is about its own changes (``mine``): the request that carried them
    (the PATCH or a tag call) when the image's work was several; a row whose changes this
    run (or the run it resumes) put in place is ``succeeded`` whatever became of the rest,
    and one only some of whose changes are in place is ``failed``, never "not attempted"."""
    parts = {change.part for change in mine if change.planned is not None}
    # the image not done, its row may still be (told only then: most images are done)
    in_place = not image.status.done and all(c.applied or c.planned is None for c in mine)
    part = _telling_part(image, parts, in_place=in_place)
    if part is None:
        if in_place:
            return Outcome(plan.image_id, Status.SUCCEEDED, error_message=APPLIED_BY_EARLIER_RUN)
        return image
    status = Status.SUCCEEDED
    if not part.status.done:
        status = partly_done(part.status, some_done=any(c.applied for c in mine))
    if image.status == status and _told_by(image, part):
        return image  # the usual case: the image's one request, as the image has it
    return dataclasses.replace(
        image,
        status=status,
        http_status=part.http_status,
        error_code=part.error_code,
        error_message=part.error_message,
        request_id=part.request_id,
    )


def _telling_part(image: Outcome, parts: set[str], *, in_place: bool) -> PartOutcome | None:
    """The request of ``image`` that tells a row carried by ``parts``: the first of them
    that failed, else the first; the first that succeeded when the row's changes are all
    in place (``in_place``: the image's other requests, a tag call of the same part
    included, may have failed)."""
    first: PartOutcome | None = None
    for part in image.parts:
        if part.part not in parts:
            continue
        if in_place:
            if part.status.done:
                return part
        elif first is None or not part.status.done:
            first = part
            if not part.status.done:
                break
    return first


def _before_after(plan: ImagePlan, changes: Sequence[Change], *, long: bool) -> tuple[str, str]:
    """A row's attributes (its ``changes``) before and after, as text (long) or a JSON
    object (wide); ``before`` is blank when the image was not read (``--no-plan``)."""
    known = plan.observed
    if len(changes) == 1 and changes[0].renamed_from is None:  # most rows: one change
        change = changes[0]
        if long:
            return (_text(change.before) if known else "", _text(change.after))
        before = _json({change.attribute: change.before}) if known else ""
        return (before, _json({change.attribute: change.after}))
    befores = {c.attribute: c.before for c in changes}
    afters = {c.attribute: c.after for c in changes}
    for change in changes:
        if change.renamed_from is not None:  # the old key too: its value, then gone
            befores[change.renamed_from] = change.moved
            afters[change.renamed_from] = None
    return (_json(befores) if known else "", _json(afters))


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)


def _json(values: dict[str, Any]) -> str:
    return fastjson.flat_text(values)


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
    service: ImageService | None = None,
) -> list[ImagePlan]:
    """Read the images ``sheet`` names and plan every patch; save the plan to ``out``.

    ``service`` replaces the IMS client built from ``endpoint`` and ``auth`` (another
    API, or a test double), as in ``apply_sheet``; ``endpoint`` still names it in the plan.
    Sends no write.  Raises ``ReadFailed`` when the images cannot be read.
    """
    if not isinstance(sheet, Sheet):
        sheet = read_sheet(sheet, sheet_name=sheet_name, encoding=encoding, delimiter=delimiter)
    if out is not None:
        check_plan_files(sheet.path, Path(out))
        clear_stale_temporaries([RunFile("the plan file", Path(out))])
    limits = limits or Limits()
    async with open_service(service, endpoint, auth, limits, ca_bundle) as client:
        if any(tag_keys(patch) for patch in sheet.patches):
            await client.tag_project()
        plans = await plan_sheet(sheet, Reader(client, Pacer(limits)))
    if out is not None:
        save_plan(Path(out), sheet, endpoint, plans)
    return plans
