"""Which region each image of a sheet goes to, and the endpoint and credentials of each.

A sheet may carry a ``region`` column and a ``project_id`` column (headers matched without
regard to case).  They are routing columns, never attributes: a custom property that is
really called ``region`` is changed with a ``/region`` header.  Each image goes to the
region its rows name (one region an image, since its changes are one request); rows
without a region go where the run goes (``--region``/``--endpoint``, the profile).

Each region's endpoint: ``region_endpoints[REGION]`` (``--region-endpoint REGION=URL``),
else the profile's ``[profiles.NAME.regions.REGION]`` ``endpoint``, else
``https://ims.REGION.myhuaweicloud.com`` (the run's own region: else the run's endpoint).
Its credentials, as the official SDK does it: AK/SK signs for every region, with the
region's project id (the ``project_id`` column, else the profile's table for the region,
else looked up per region in IAM when the run starts: ``GET /v3/projects?name=REGION``);
an IAM password login gets a token scoped to each region's project (one login a region);
a pre-made token is scoped to one project, so it serves only the run's own region.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from batchpatch.auth import TOKEN_VARIABLE, AkSkAuth, Auth, PasswordAuth, ProjectLookup, TokenAuth
from batchpatch.credentials import (
    ENV_AK,
    ENV_IAM_USER,
    ENV_SK,
    PROJECT_ID,
    RegionSettings,
    Target,
    safe_endpoint,
)
from batchpatch.errors import OptionsError, Problem, Reason, SheetError
from batchpatch.regions import IMS_REGIONS

if TYPE_CHECKING:
    from batchpatch.sheet import Sheet

#: The routing columns' names, lower-case.
REGION_COLUMN, PROJECT_COLUMN = "region", "project_id"
ROUTING_COLUMNS = frozenset({REGION_COLUMN, PROJECT_COLUMN})
#: How messages name the region of rows without a region cell.
OWN_REGION = "(the run's own)"
#: Where a region's endpoint or project id came from, as ``whoami`` and the page say it.
FROM_OPTION, FROM_COLUMN = "--region-endpoint", "the sheet's project_id column"


def routing_columns(header: Sequence[str]) -> set[str]:
    """The header cells that are routing columns (``region``, ``project_id``, any case)."""
    return {column for column in header if column.strip().lower() in ROUTING_COLUMNS}


@dataclass(frozen=True)
class RegionTarget:
    """Where one region's images go and how its requests prove who sends them.
    ``lookup_project``: the project id is to be looked up in IAM before the first request.
    ``endpoint_source`` and ``project_source`` say where each came from (``whoami``)."""

    region: str
    endpoint: str
    auth: Auth
    ca_bundle: str | None = None
    lookup_project: bool = False
    endpoint_source: str = ""
    project_source: str = ""

    def describe(self) -> list[str]:
        """``whoami``'s lines for this region (no secret: the credentials are the run's)."""
        if self.lookup_project:
            lookup = self.auth.project_lookup
            iam = f" at {lookup.iam_endpoint}" if lookup is not None else ""
            project = f"looked up in IAM{iam} when the run starts"
        elif self.auth.project_id:
            project = f"{self.auth.project_id} (from {self.project_source})"
        else:
            project = "(none: the default project)"
        return [
            f"region {self.region}:",
            f"  endpoint: {self.endpoint} (from {self.endpoint_source})",
            f"  project id: {project}",
            f"  credentials: {self.auth.kind} from {self.auth.source}",
        ]


@dataclass(frozen=True)
class Routes:
    """Every image's region (``by_image``) and every region's target (``targets``, in the
    order the sheet first names them; the run's own region under its name, or under
    ``unnamed`` when it has none: see ``own_region_label``)."""

    by_image: Mapping[str, str]
    targets: Mapping[str, RegionTarget]
    #: The label of the run's own region when no region names it ("": it has a name).
    unnamed: str = ""

    def cells(self) -> dict[str, str]:
        """Each image's region as a sheet's ``region`` column says it: its name, blank for
        the run's own region when that has no name (the label is no region to send to)."""
        return {
            image: "" if region == self.unnamed else region
            for image, region in self.by_image.items()
        }

    @property
    def identity(self) -> str:
        """The endpoints of the run, as its journal records them: ``REGION=URL`` sorted."""
        return " ".join(f"{r}={t.endpoint}" for r, t in sorted(self.targets.items()))

    def images_of(self, region: str) -> set[str]:
        return {image for image, where in self.by_image.items() if where == region}


@dataclass(frozen=True)
class _Cells:
    """What the routing columns of a sheet say: each image's region and project id cells
    (lower-cased, trimmed; "" where blank), with the row that first said so."""

    regions: dict[str, tuple[str, int]]
    projects: dict[str, tuple[str, int]]
    #: The run's own region's name ("": unknown), which a blank region cell stands for.
    own: str = ""


def own_region_label(base: Target) -> str:
    """How messages, the summary and the page name the run's own region: its region
    (``--region``, the profile's, or the one in an ``ims.REGION.myhuaweicloud.com``
    endpoint), else its endpoint's host — never "", which names no region."""
    region = base.region.strip().lower()
    if region:
        return region
    try:
        host = urlsplit(base.endpoint).netloc.rpartition("@")[2]
    except ValueError:
        host = ""
    return host or base.endpoint


def sheet_regions(
    sheet: Sheet, known: frozenset[str], own: str = ""
) -> tuple[dict[str, str], dict[str, str]]:
    """Each image's region ("" = the run's own) and each region's project id from the
    columns, checked: a located ``SheetError`` for an unknown region, two regions for one
    image, a project id that is not one, or two project ids for one region.  A blank
    region cell is the run's own region: ``own`` (its name, when known) and a blank cell
    are one region."""
    file, frame, first_row = str(sheet.path), sheet.frame, sheet.first_row
    columns = {column.strip().lower(): column for column in routing_columns(list(frame.columns))}
    if not columns:
        return {}, {}
    cells = _Cells({}, {}, own.strip().lower())
    problems: list[Problem] = []
    for patch in sheet.patches:
        for row in patch.sources:
            for name, column in columns.items():
                value = str(frame[column].iloc[row - first_row]).strip().lower()
                reason = _cell_reason(name, value, patch.image_id, row, cells, known)
                if reason is not None:
                    problems.append(Problem(file, row, column, reason))
    if problems:
        raise SheetError(sorted(problems, key=lambda p: p.row))
    by_image = {image: region for image, (region, _) in cells.regions.items()}
    projects: dict[str, str] = {}
    for image, (project, row) in cells.projects.items():
        region = by_image.get(image, "")
        other = projects.setdefault(region, project)
        if other != project:
            problems.append(
                Problem(
                    file,
                    row,
                    columns[PROJECT_COLUMN],
                    Reason(
                        f"project id {project} for region {region or OWN_REGION}, "
                        f"which other rows give project id {other}",
                        "one project a region: split the sheet in two runs",
                    ),
                )
            )
    if problems:
        raise SheetError(problems)
    return by_image, projects


def _cell_reason(
    name: str, value: str, image_id: str, row: int, cells: _Cells, known: frozenset[str]
) -> Reason | None:
    if name == REGION_COLUMN:
        if value and value not in known:
            return Reason(
                f"unknown region {value!r}",
                f"use one of {', '.join(sorted(known))}, or give its endpoint with "
                "--region-endpoint REGION=URL",
            )
        value = value or cells.own
        earlier, at = cells.regions.setdefault(image_id, (value, row))
        if earlier != value:
            return Reason(
                f"region {value or '(blank)'} for image {image_id}, which row {at} sends to "
                f"region {earlier or '(blank)'}",
                "an image's changes are one request to one region: give every row of the "
                "image the same region" + (_BLANK_IS_OWN if "" in (value, earlier) else ""),
            )
        return None
    if not value:
        return None
    if not PROJECT_ID.fullmatch(value):
        return Reason(
            "not a project id (32 hexadecimal digits)",
            "copy the project id from the console's My Credentials page, or leave it blank",
        )
    cells.projects.setdefault(image_id, (value, row))
    return None


#: Why a blank cell and a region's name differ when the run's own region is not named.
_BLANK_IS_OWN = (
    " (a blank cell is the run's own region, the same as a region's name only when "
    "--region or the profile's region names it)"
)


def known_regions(
    region_endpoints: Mapping[str, str], profile: Mapping[str, RegionSettings] | None = None
) -> frozenset[str]:
    """The regions a sheet may name: the official list and those given an endpoint (by
    ``--region-endpoint`` or the profile's table for the region)."""
    tabled = {region for region, table in (profile or {}).items() if table.endpoint}
    return IMS_REGIONS | {region.strip().lower() for region in region_endpoints} | tabled


def _checked_endpoints(
    region_endpoints: Mapping[str, str] | None, base: Target, *, insecure: bool
) -> dict[str, str]:
    """``--region-endpoint``'s endpoints by lower-case region, and the profile's tables',
    each refused when unsafe (``credentials.safe_endpoint``)."""
    endpoints = {k.strip().lower(): v for k, v in (region_endpoints or {}).items()}
    for region, url in endpoints.items():
        safe_endpoint(url, f"the endpoint of region {region}", allow_insecure_http=insecure)
    for region, table in base.regions.items():
        if table.endpoint:
            what = f"the endpoint of region {region} ({table.source})"
            safe_endpoint(table.endpoint, what, allow_insecure_http=insecure)
    return endpoints


def route(
    sheet: Sheet,
    base: Target,
    region_endpoints: Mapping[str, str] | None = None,
    *,
    insecure: bool = False,
) -> Routes | None:
    """The routes of ``sheet`` from the run's ``base`` target; None when the sheet has no
    routing column and ``region_endpoints`` does not name the run's own region (every
    image goes where the run goes, as without routing)."""
    endpoints = _checked_endpoints(region_endpoints, base, insecure=insecure)
    own = base.region.strip().lower()
    by_image, projects = sheet_regions(sheet, known_regions(endpoints, base.regions), own)
    if not by_image:  # no routing column: only an endpoint given for the run's own region
        if own not in endpoints:
            return None
        by_image = {patch.image_id: own for patch in sheet.patches}
    label = own_region_label(base)
    if not own and "" in projects:  # the run's own region's project, under its label
        projects[label] = projects.pop("")
    targets: dict[str, RegionTarget] = {}
    for image in by_image:
        region = by_image[image] or label
        by_image[image] = region
        if region not in targets:
            targets[region] = _target(region, label, base, endpoints, projects)
    _refuse_token(base.auth, [r for r in targets if r != label])
    return Routes(by_image, targets, "" if own else label)


def region_targets(
    regions: Sequence[str],
    base: Target,
    region_endpoints: Mapping[str, str] | None = None,
    *,
    insecure: bool = False,
) -> list[RegionTarget]:
    """The target of each of ``regions`` (``export --region A --region B``), from the
    run's ``base`` target (its region is ``regions[0]``)."""
    endpoints = _checked_endpoints(region_endpoints, base, insecure=insecure)
    known = known_regions(endpoints, base.regions)
    wanted = list(dict.fromkeys(region.strip().lower() for region in regions))
    for region in wanted:
        if region not in known:
            raise OptionsError(
                f"unknown region {region!r} — use one of {', '.join(sorted(known))}, or give "
                "its endpoint with --region-endpoint REGION=URL"
            )
    own = base.region.strip().lower()
    _refuse_token(base.auth, [region for region in wanted if region != own])
    return [_target(region, own, base, endpoints, {}) for region in wanted]


def _target(
    region: str,
    own: str,
    base: Target,
    endpoints: Mapping[str, str],
    projects: Mapping[str, str],
) -> RegionTarget:
    endpoint, endpoint_source = _endpoint_of(region, own, base, endpoints)
    project, project_source = _project_of(region, own, base, projects)
    auth = base.auth
    lookup = False
    if isinstance(auth, AkSkAuth):
        if region != own or project:
            lookup = not project
            where = ProjectLookup(base.iam_endpoint, region) if lookup else None
            auth = dataclasses.replace(auth, project_id=project, project_lookup=where)
    elif isinstance(auth, PasswordAuth) and (region != own or project):
        name = region if region != own else auth.project_name
        auth = dataclasses.replace(
            auth, project_name=name, project_id=project, _token="", _expires=0.0, logins=0
        )
        auth._login = None
    if lookup:
        project_source = f"IAM at {base.iam_endpoint}"
    elif not project_source and auth.project_id:
        project_source = base.auth.source
    return RegionTarget(
        region, endpoint, auth, base.ca_bundle, lookup, endpoint_source, project_source
    )


def _endpoint_of(
    region: str, own: str, base: Target, endpoints: Mapping[str, str]
) -> tuple[str, str]:
    """A region's endpoint and where it came from: ``--region-endpoint``, else the
    profile's table (the run's own region: the run's endpoint, which already heeds the
    table), else the default URL."""
    if region in endpoints:
        return endpoints[region], FROM_OPTION
    table = base.regions.get(region)
    if region == own:
        from_table = table is not None and table.endpoint == base.endpoint
        return base.endpoint, table.source if from_table and table else "the run's endpoint"
    if table is not None and table.endpoint:
        return table.endpoint, table.source
    return f"https://ims.{region}.myhuaweicloud.com", "the default URL"


def _project_of(
    region: str, own: str, base: Target, projects: Mapping[str, str]
) -> tuple[str, str]:
    """A region's project id ("" for none) and where it came from: the sheet's
    ``project_id`` column, else the profile's table for the region (the run's own region:
    its credentials already carry the table's)."""
    project = projects.get(region) or (projects.get("", "") if region == own else "")
    if project:
        return project, FROM_COLUMN
    table = base.regions.get(region)
    if region != own and table is not None and table.project_id:
        return table.project_id, table.source
    return "", ""


def _refuse_token(auth: Auth, others: Sequence[str]) -> None:
    """A pre-made token is scoped to one project: it cannot serve another region."""
    if isinstance(auth, TokenAuth) and others:
        raise OptionsError(
            f"the sheet names the regions {', '.join(sorted(others))}, but the credentials "
            f"({auth.source}) are a pre-made token, scoped to one project, which serves only "
            f"the run's own region — use AK/SK ({ENV_AK}/{ENV_SK}, which sign for every "
            f"region) or an IAM password login ({ENV_IAM_USER}…, one token a region) "
            f"instead of {TOKEN_VARIABLE}"
        )
