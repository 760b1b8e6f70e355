"""Running a sheet's regions side by side, over the run's one ledger.

Each region gets its own service (client), pacer and concurrency limit (``Limits`` are per
region: the API gateway's quota is), its own read pass and its own runner over that
region's plans; all regions run concurrently in one task group.  Every image's fate still
goes into the one ``Ledger`` (so the journal, the report and the summary stay single): each
region sees it through a ``RegionLedger``, which lists only the region's images and keeps
the region's own tally, so a failure threshold (``max_failures`` …) counts the region's
failures and stops that region only.  A region whose credentials fail stops alone too;
its unsent images are ``not_attempted`` with the region's reason.  A signal stops every
region (it sets the run's ``stop``, which each region's own stop follows).

No region sends before every region has its plans (``_Gate``): a plan one region refuses
(a located ``SheetError``: the tag limit, a rename onto a taken key) is bad input, exit 2
with nothing sent anywhere — as in a run of one region — not a cancellation of the other
regions' writes in flight.  A region with no image in the run (``--only`` left all of its
rows out) is not contacted at all.  Each region's requests are counted as its own in the
run's telemetry (``RecordingService(..., region=)``), so its figures carry its throttled
answers and latency percentiles.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import anyio

from batchpatch.auth import AkSkAuth, Auth
from batchpatch.client import ImsClient
from batchpatch.credentials import ENV_PROJECT, lookup_project
from batchpatch.errors import (
    AuthFailed,
    Namer,
    OptionsError,
    ReadFailed,
    RunAborted,
    SheetError,
    StopReason,
    Worded,
)
from batchpatch.export import PAGE_SIZE, ExportResult, export_table, list_all, tags_if_readable
from batchpatch.inventory import Image, Reader, fetch_images
from batchpatch.ledger import Entry, Ledger, Tally
from batchpatch.models import Limits, Outcome, Status
from batchpatch.plan import ImagePlan, plan_all
from batchpatch.routing import RegionTarget, Routes
from batchpatch.sheetwrite import write_table
from batchpatch.tagreads import all_tags
from batchpatch.telemetry import PERCENTILES, RecordingService, RegionTally, Telemetry
from batchpatch.throttle import Pacer

if TYPE_CHECKING:
    from batchpatch.report import RowResult
    from batchpatch.service import ImageService
    from batchpatch.sheet import Sheet

log = logging.getLogger("batchpatch.regional")

#: What keeps a region from being reached: its project id not looked up, its login
#: refused, its images not read — the region's own failure, never bad input.
REGION_FAILURES = (OptionsError, ReadFailed, AuthFailed)


class RegionFailed(RunAborted, Worded):
    """One region could not be reached (``REGION_FAILURES``): the cause in its own words,
    after the region's name; ``hint`` adds what the region's setup suggests (exit 3)."""

    def __init__(self, region: str, cause: Exception, hint: str = "") -> None:
        self.region, self.cause, self.hint = region, cause, hint
        super().__init__(self.text())

    def wording(self, name: Namer) -> str:
        cause = self.cause.text(name) if isinstance(self.cause, Worded) else str(self.cause)
        return f"region {self.region}: {cause}{self.hint}"


class RegionLedger:
    """The run's ledger as one region sees it: only the region's images when iterated,
    and the region's own tally; every event goes to the shared ledger."""

    def __init__(self, shared: Ledger, image_ids: Iterable[str]) -> None:
        self._shared = shared
        self._ids = frozenset(image_ids)
        self.tally = Tally()

    @property
    def image_ids(self) -> frozenset[str]:
        return self._ids

    def __iter__(self) -> Iterator[Entry]:
        return (entry for entry in self._shared if entry.image_id in self._ids)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._ids and image_id in self._shared

    def finish(self, outcome: Outcome, *args: Any, **kwargs: Any) -> Entry:
        entry = self._shared.finish(outcome, *args, **kwargs)
        if kwargs.get("counted", True):
            self.tally.add(outcome)
        return entry

    def __getattr__(self, name: str) -> Any:
        return getattr(self._shared, name)


class RegionRun(Protocol):
    """What a region needs of the job's run (``job._Run``): a copy of it with the region's
    endpoint, credentials, ledger view and stop, and the two stages it runs."""

    @property
    def sheet(self) -> Sheet: ...

    @property
    def ledger(self) -> Ledger: ...

    @property
    def stop(self) -> anyio.Event: ...

    @property
    def on_request(self) -> Callable[[str], None] | None: ...

    @property
    def limits(self) -> Limits: ...

    def _service(self) -> Any: ...

    def _plan_and_send(self, client: ImageService, resume: Any) -> Awaitable[StopReason | None]: ...


@dataclass(frozen=True)
class RegionFigures:
    """One region's part of a run, for the summary (and the HTML page)."""

    region: str
    endpoint: str
    images: int
    requests: int
    counts: dict[str, int]
    stop_reason: str = ""
    stop_kind: str = ""
    throttled: int = 0
    #: ``p50``/``p95``/``p99`` of the region's answers, in ms (None: no request sent).
    latency_ms: dict[str, float | None] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RegionsRun:
    """What running the regions gave: each region's stop (None: finished) and requests."""

    routes: Routes
    stops: dict[str, StopReason | None] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    #: The images each region had in this run (``--only`` may leave a region none).
    images: dict[str, int] = field(default_factory=dict)
    tallies: dict[str, RegionTally] = field(default_factory=dict)
    #: The project id each region's requests carried, once known (looked up or given).
    projects: dict[str, str] = field(default_factory=dict)

    def project_of_images(self) -> dict[str, str]:
        """Each image's project id: its region's ("" where none is known), so that a sheet
        written from this run (the undo sheet) reaches the same project without IAM."""
        known = {r: t.auth.project_id for r, t in self.routes.targets.items()}
        known.update(self.projects)
        return {image: known.get(region, "") for image, region in self.routes.by_image.items()}

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def stop(self) -> StopReason | None:
        """The run's stop: None when every region finished; one region's own reason when
        only it stopped, or all stopped alike (a signal); else each region's, named."""
        stopped = {r: s for r, s in self.stops.items() if s is not None}
        if not stopped:
            return None
        distinct = {(s.kind, str(s)) for s in stopped.values()}
        if len(stopped) == len(self.stops) and len(distinct) == 1:
            return next(iter(stopped.values()))
        kind = next(iter(stopped.values())).kind if len(stopped) == 1 else "regions"

        def wording(name: Namer) -> str:
            return "; ".join(f"region {r}: {s.text(name)}" for r, s in stopped.items())

        return StopReason(kind, "", wording)

    def figures(self, rows: Sequence[RowResult]) -> tuple[RegionFigures, ...]:
        """Each region's images, requests, row counts by status and stop reason."""
        counts: dict[str, Counter[str]] = {region: Counter() for region in self.routes.targets}
        for row in rows:
            region = self.routes.by_image.get(row.outcome.image_id)
            if region is not None:
                counts[region][str(row.outcome.status)] += 1
        return tuple(
            RegionFigures(
                region,
                target.endpoint,
                self.images.get(region, 0),
                self.requests.get(region, 0),
                dict(sorted(counts[region].items())),
                "" if self.stops.get(region) is None else str(self.stops[region]),
                "" if self.stops.get(region) is None else cast(StopReason, self.stops[region]).kind,
                *_answers(self.tallies.get(region)),
            )
            for region, target in self.routes.targets.items()
        )


def _answers(tally: RegionTally | None) -> tuple[int, dict[str, float | None]]:
    """A region's throttled answers and latency percentiles (ms, one decimal)."""
    tally = tally or RegionTally()
    latency: dict[str, float | None] = {}
    for name, share in PERCENTILES:
        seconds = tally.latency.percentile(share)
        latency[name] = None if seconds is None else round(seconds * 1000, 1)
    return tally.throttled, latency


class _Refused(Exception):
    """Another region's plans were refused (bad input): this region sends nothing."""


class _Gate:
    """No region sends before every region has planned (or stopped without sending); a
    region's refused plans (``refused``) then keep every region from sending."""

    def __init__(self, regions: int) -> None:
        self._left = regions
        self._open = anyio.Event()
        self.refused: SheetError | None = None

    def leave(self) -> None:
        """A region is done planning (it sends next, or never)."""
        self._left -= 1
        if self._left <= 0:
            self._open.set()

    async def passing(self) -> None:
        """Wait for every region's plans; raises ``_Refused`` when one region's were."""
        self.leave()
        await self._open.wait()
        if self.refused is not None:
            raise _Refused


async def run_regions(
    run: RegionRun, resume: Any, routes: Routes, subset: Callable[[Any, set[str]], Any]
) -> RegionsRun:
    """Plan and send every region's images concurrently; ``subset(resume, ids)`` is the
    part of ``resume`` (``job._Resume``) that concerns the images ``ids``."""
    result = RegionsRun(routes)
    stops = {region: anyio.Event() for region in routes.targets}
    in_run = {patch.image_id for patch in run.sheet.patches}
    regions = {region: routes.images_of(region) & in_run for region in routes.targets}
    for region, ids in regions.items():
        result.images[region] = len(ids)
        result.requests[region], result.stops[region] = 0, None
    gate = _Gate(sum(1 for ids in regions.values() if ids))

    async def follow_run_stop() -> None:
        await run.stop.wait()
        for event in stops.values():
            event.set()

    async with anyio.create_task_group() as outer:
        outer.start_soon(follow_run_stop)
        async with anyio.create_task_group() as group:
            for region, target in routes.targets.items():
                ids = regions[region]
                if ids:  # a region none of whose images is in the run is left alone
                    here = _Region(target, ids, stops[region], gate)
                    group.start_soon(_one_region, run, subset(resume, ids), here, result)
        outer.cancel_scope.cancel()
    if gate.refused is not None:
        raise gate.refused
    return result


@dataclass(frozen=True)
class _Region:
    """What one region runs with: its target, its images, its stop, the run's gate."""

    target: RegionTarget
    ids: set[str]
    stop: anyio.Event
    gate: _Gate


async def _one_region(run: RegionRun, resume: Any, part: _Region, result: RegionsRun) -> None:
    target, ids, region = part.target, part.ids, part.target.region
    view = RegionLedger(run.ledger, ids)
    passed = False

    async def before_send() -> None:
        nonlocal passed
        passed = True
        await part.gate.passing()

    here = _region_run(run, target, view, part.stop, before_send)
    telemetry: Telemetry = getattr(run, "telemetry", None) or Telemetry()
    result.tallies[region] = telemetry.region(region)
    requests = 0
    stopped: StopReason | None = None
    try:
        if target.lookup_project:
            looked_up = await _project_looked_up(target, run.limits)
            result.tallies[region].project_id = looked_up.project_id  # for the HTML page
            here = dataclasses.replace(here, auth=looked_up)
        result.projects[region] = here.auth.project_id
        async with here._service() as opened:
            client = RecordingService(opened, telemetry, region)
            try:
                stopped = await here._plan_and_send(client, resume)
            finally:
                requests = client.requests
    except OptionsError as error:  # its project id could not be looked up
        stopped = StopReason("auth", "", error.text)
    except SheetError as error:  # its plans are refused: nobody sends
        part.gate.refused = part.gate.refused or error
    except _Refused:
        pass
    finally:
        if not passed:
            part.gate.leave()
    result.requests[region] = requests
    result.stops[region] = stopped
    if stopped is not None:
        log.warning("region %s stopped: %s", region, stopped)
        _not_attempted(view, run.ledger, region, stopped)


def _region_run(
    run: RegionRun,
    target: RegionTarget,
    view: RegionLedger,
    stop: anyio.Event,
    before_send: Callable[[], Awaitable[None]],
) -> Any:
    """The job's run as one region runs it: the region's endpoint, credentials, images
    (its sheet lists only them: a tag check asks for the region's project only when the
    region's rows need tags), ledger view, stop and request label."""
    printer = run.on_request
    sheet = run.sheet
    patches = tuple(patch for patch in sheet.patches if patch.image_id in view.image_ids)
    return cast(Any, dataclasses.replace)(
        run,
        sheet=dataclasses.replace(sheet, patches=patches),
        endpoint=target.endpoint,
        auth=target.auth,
        ca_bundle=target.ca_bundle,
        ledger=cast(Ledger, view),
        stop=stop,
        on_request=None if printer is None else _labelled(printer, target.region),
        service=None,
        before_send=before_send,
    )


def _labelled(printer: Callable[[str], None], region: str) -> Callable[[str], None]:
    return lambda text: printer(f"# region {region}\n{text}")


def _client(target: RegionTarget, limits: Limits, auth: Auth | None = None) -> ImsClient:
    return ImsClient(
        target.endpoint,
        auth or target.auth,
        timeout=limits.timeout,
        connections=limits.concurrency,
        ca_bundle=target.ca_bundle,
    )


async def _project_looked_up(target: RegionTarget, limits: Limits) -> AkSkAuth:
    """The region's AK/SK credentials with the project id IAM names for the region
    (``GET /v3/projects?name=REGION``, signed with the same keys)."""
    auth = target.auth
    assert isinstance(auth, AkSkAuth)
    async with _client(target, limits) as client:
        project = await lookup_project(client, auth, how_to_set=_set_region_project(target))
    log.info("region %s: project id %s (looked up in IAM)", target.region, project)
    return dataclasses.replace(auth, project_id=project, project_lookup=None)


def _set_region_project(target: RegionTarget) -> Callable[[Namer], str]:
    """How to give a region other than the run's own its project id (the configured one,
    ``HUAWEICLOUD_SDK_PROJECT_ID`` or the profile's, is the run's own region's only)."""
    region = target.region
    return lambda name: (
        f"give region {region}'s project id in the sheet's project_id column, or as "
        f"project_id in the profile's [profiles.NAME.regions.{region}] table"
    )


@dataclass(frozen=True)
class RegionPlans:
    """``plan`` across regions: the plans of every region that could be read, and why
    each other region could not be (its images are not planned)."""

    plans: list[ImagePlan]
    failed: dict[str, RegionFailed]


async def plan_regions(sheet: Sheet, routes: Routes, limits: Limits) -> RegionPlans:
    """Read every region's images from its own endpoint, side by side, and plan the sheet
    against them (``batchpatch plan`` across regions).  A region whose project id cannot
    be looked up or whose images cannot be read is left out of the plans, named in
    ``failed``; the other regions are planned all the same."""
    found: dict[str, Image] = {}
    failed: dict[str, RegionFailed] = {}

    async def read(target: RegionTarget) -> None:
        ids = [
            p.image_id for p in sheet.patches if routes.by_image.get(p.image_id) == target.region
        ]
        try:
            auth = await _project_looked_up(target, limits) if target.lookup_project else None
            async with _client(target, limits, auth) as client:
                found.update(await fetch_images(Reader(client, Pacer(limits)), ids))
        except REGION_FAILURES as failure:
            failed[target.region] = RegionFailed(target.region, failure)

    async with anyio.create_task_group() as group:
        for target in routes.targets.values():
            group.start_soon(read, target)
    planned = [p for p in sheet.patches if routes.by_image.get(p.image_id) not in failed]
    return RegionPlans(plan_all(planned, found), failed)


async def export_regions(
    out: Path,
    targets: Sequence[RegionTarget],
    limits: Limits,
    filters: Mapping[str, str],
    page_size: int = PAGE_SIZE,
) -> ExportResult:
    """``batchpatch export --region A --region B``: list each region's images from its own
    endpoint, side by side, and write them as one wide sheet with a ``region`` column
    and a ``project_id`` column beside ``image_id`` (so ``apply`` sends each row back to its
    region and project, without looking a project id up).  A region that cannot be read
    is a ``RegionFailed`` naming it; nothing is written then."""
    listed: dict[str, list[Image]] = {}
    requests: dict[str, int] = {}
    tags: dict[str, Mapping[str, str]] = {}
    notes: list[str] = []
    projects: dict[str, str] = {}

    async def read(target: RegionTarget) -> None:
        try:
            await read_region(target)
        except REGION_FAILURES as failure:
            hint = _own_project_hint(target, failure)
            raise RegionFailed(target.region, failure, hint) from None

    async def read_region(target: RegionTarget) -> None:
        auth = await _project_looked_up(target, limits) if target.lookup_project else None
        projects[target.region] = (auth or target.auth).project_id
        async with _client(target, limits, auth) as client:
            pacer = Pacer(limits)
            listed[target.region] = await list_all(Reader(client, pacer), filters, page_size)
            found, tag_notes = await tags_if_readable(all_tags, client, pacer)
            tags.update(found)
            notes.extend(f"{target.region}: {note}" for note in tag_notes)
            requests[target.region] = client.requests

    try:
        async with anyio.create_task_group() as group:
            for target in targets:
                group.start_soon(read, target)
    except BaseExceptionGroup as failures:
        first = failures.exceptions[0]
        raise (first.for_export() if isinstance(first, ReadFailed) else first) from None
    region_of = {
        str(image.get("id", "")): region for region, images in listed.items() for image in images
    }
    header, rows, table_notes = export_table(
        [i for images in listed.values() for i in images], tags
    )
    header[1:1] = ["region", "project_id"]
    for row in rows:
        region = region_of.get(row[0], "")
        row[1:1] = [region, projects.get(region, "")]
    write_table(out, header, rows)
    return ExportResult(out, len(rows), len(header), sum(requests.values()), notes + table_notes)


def _own_project_hint(target: RegionTarget, failure: Exception) -> str:
    """For the region ``export`` takes as the run's own, when it refused the credentials:
    that it was given the run's configured project id, which may be another region's."""
    configured = target.auth.project_id and target.project_source == target.auth.source
    refused = isinstance(failure, ReadFailed) and failure.refused_credentials
    if not (configured and refused):
        return ""
    return (
        f"; region {target.region} is the run's own region here, so it was given the "
        f"configured project id ({ENV_PROJECT} or the profile's project_id): export takes "
        "the profile's region, else the first --region, as the run's own — put the "
        "project's region first, or give each region's project_id in the profile's "
        "[profiles.NAME.regions.REGION] tables"
    )


def _not_attempted(view: RegionLedger, ledger: Ledger, region: str, stopped: StopReason) -> None:
    """The region's images still without an outcome: ``not_attempted``, saying why (told to
    no listener: the journal keeps them pending for the rerun)."""
    why = f"not sent: region {region} stopped ({stopped})"
    for entry in list(view):
        if entry.outcome is None and (entry.plan is None or entry.plan.status is None):
            ledger.finish(
                Outcome(entry.image_id, Status.NOT_ATTEMPTED, error_message=why),
                counted=False,
                event=None,
            )


__all__ = [
    "RegionFailed",
    "RegionFigures",
    "RegionLedger",
    "RegionPlans",
    "RegionsRun",
    "run_regions",
]
