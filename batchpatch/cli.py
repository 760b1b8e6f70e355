"""The command line: parse options, call the library, show progress, map errors to exit codes.

Everything it does is available from Python through ``batchpatch.apply_sheet`` and
``batchpatch.make_plan``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import tomllib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from tqdm import tqdm

from batchpatch import __version__
from batchpatch.auth import TokenAuth
from batchpatch.credentials import Settings, Target, default_config_path, resolve
from batchpatch.errors import (
    InputError,
    OptionsError,
    RunAborted,
    SheetError,
    Worded,
    library_name,
)
from batchpatch.exits import (
    EXIT_INVALID,
    EXIT_OK,
    EXIT_STOPPED,
    error_exit_code,
    plan_exit_code,
)
from batchpatch.export import (
    IMS_EXPORT,
    ExportResult,
    ExportRules,
    check_export_files,
    export_images,
    parse_filters,
)
from batchpatch.glance import GlanceClient
from batchpatch.glance_auth import resolve_glance
from batchpatch.glance_export import GLANCE_EXPORT
from batchpatch.glance_schema import GLANCE_SCHEMA
from batchpatch.htmlpage import summary_page_path, write_page
from batchpatch.job import (
    AS_WRITTEN,
    READ_PASS,
    PlanSource,
    RunResult,
    SavedPlan,
    apply_sheet,
    make_plan,
)
from batchpatch.ledger import Entry, Event, Ledger
from batchpatch.logs import configure_logging, notice, say, silence, write_summary
from batchpatch.models import (
    DEFAULT_CONCURRENCY,
    DEFAULT_RATE,
    DEFAULT_TIMEOUT,
    MAX_CONCURRENCY,
    MAX_RATE,
    MIN_RATE,
    Limits,
    Outcome,
)
from batchpatch.outputs import (
    RunFile,
    apply_files,
    check_outputs,
    check_plan_files,
    clear_stale_temporaries,
)
from batchpatch.plan import ImagePlan, describe
from batchpatch.planfile import load_plan, save_plan
from batchpatch.progress import DEFAULT_EVERY, ProgressLines, tell
from batchpatch.regional import RegionFailed, export_regions, plan_regions
from batchpatch.report import default_report_path
from batchpatch.rerun import only_statuses
from batchpatch.retry import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF,
    RetryPolicy,
)
from batchpatch.routing import (
    RegionTarget,
    Routes,
    known_regions,
    region_targets,
    route,
    routing_columns,
    sheet_regions,
)
from batchpatch.runner import Safeguards
from batchpatch.schema import IMS_SCHEMA, Schema
from batchpatch.service import ImageService
from batchpatch.sheet import Sheet, read_sheet
from batchpatch.tagreads import all_tags
from batchpatch.telemetry import Telemetry
from batchpatch.undo import default_undo_path

#: The flag of each library parameter, for messages the library words in its own terms.
FLAGS = {
    "report_path": "--report",
    "summary_path": "--summary",
    "html_path": "--html",
    "max_failures": "--max-failures",
    "max_failure_rate": "--max-failure-rate",
    "restart": "--restart",
    "ca_bundle": "--ca-bundle",
    "sheet_name": "--sheet",
    "min_sample": "--min-sample",
    "encoding": "--encoding",
    "delimiter": "--delimiter",
    "endpoint": "--endpoint",
    "region": "--region",
    "profile": "--profile",
    "config": "--config",
    "allow_insecure_http": "--allow-insecure-http",
    "fake": "--fake",
    "undo_path": "--undo",
    "only": "--only",
    "os_cloud": "--os-cloud",
}
#: Parameter values that are a flag of their own.
VALUE_FLAGS = {("plan", "AS_WRITTEN"): "--no-plan", ("plan", "SavedPlan"): "--plan"}
#: What the library names as a call, and the command line that does it.
COMMANDS = {"make_plan": "'batchpatch plan SHEET --out {value}'"}


def flag_name(parameter: str, value: str) -> str:
    """How the CLI names a library parameter set to ``value``: by its flag (a switch set
    to ``True`` is the flag alone)."""
    if (parameter, value) in VALUE_FLAGS:
        return "use " + VALUE_FLAGS[parameter, value]
    if parameter in COMMANDS:
        return COMMANDS[parameter].format(value=value)
    flag = FLAGS.get(parameter)
    if flag is None:
        return library_name(parameter, value)
    return flag if value == "True" else f"{flag} {value}".strip()


def in_flags(error: BaseException | Worded) -> str:
    """An error's message with the library's parameter names turned into flags."""
    return error.text(flag_name) if isinstance(error, Worded) else str(error)


def _number(
    kind: type[int] | type[float], accept: Callable[[float], bool], wanted: str
) -> Callable[[str], Any]:
    """An argparse type: ``kind`` parsed from text and checked by ``accept``."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, lambda value: value >= 1, "a whole number of at least 1")
_positive_float = _number(float, lambda value: 0 < value < math.inf, "a number greater than 0")
_fraction = _number(float, lambda value: 0 <= value <= 1, "a fraction from 0 to 1")
_rate = _number(
    float,
    lambda value: MIN_RATE <= value <= MAX_RATE,
    f"a number greater than 0, from {MIN_RATE:g} to {MAX_RATE:g}",
)
_concurrency = _number(
    int,
    lambda value: 1 <= value <= MAX_CONCURRENCY,
    f"a whole number of at least 1 and at most {MAX_CONCURRENCY}",
)


def _region_endpoint(text: str) -> tuple[str, str]:
    """An argparse type: ``REGION=URL``."""
    region, equals, url = text.partition("=")
    if not (equals and region.strip() and url.strip()):
        raise argparse.ArgumentTypeError(f"expected REGION=URL, got {text!r}")
    return region.strip().lower(), url.strip()


def _region_endpoint_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--region-endpoint REGION=URL`` (repeatable), into ``region_endpoints``."""
    parser.add_argument(
        "--region-endpoint",
        action="append",
        default=[],
        type=_region_endpoint,
        dest="region_endpoints",
        metavar="REGION=URL",
        help=help_text,
    )


class _Regions(argparse.Action):
    """``--region``: the first is the run's region; ``export`` takes more (``regions``)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        regions = [*(getattr(namespace, "regions", None) or []), str(values)]
        namespace.regions = regions
        setattr(namespace, self.dest, regions[0])


class _Parser(argparse.ArgumentParser):
    """argparse that exits with our code 2 and an ``Error:`` line, never a usage dump."""

    def error(self, message: str) -> Any:
        notice(f"Error: {message} — see '{self.prog} --help'", level=logging.ERROR)
        self.exit(EXIT_INVALID)


def _statuses(text: str) -> list[str]:
    """An argparse type: ``--only``'s comma-separated statuses, each one a report writes."""
    names = text.split(",")
    try:
        only_statuses(names)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return names


def _api_option(options: argparse.ArgumentParser) -> None:
    options.add_argument(
        "--api",
        choices=sorted(APIS),
        default="ims",
        help="the image API and its attribute rules: Huawei Cloud IMS, or OpenStack Glance "
        "v2 (default: %(default)s)",
    )


def _sheet_options() -> _Parser:
    options = _Parser(add_help=False)
    options.add_argument("sheet", type=Path, help="the CSV, TSV or XLSX sheet of changes")
    _api_option(options)
    options.add_argument(
        "--sheet",
        dest="sheet_name",
        metavar="NAME",
        help="the worksheet of an XLSX file (default: the one Excel opens on)",
    )
    options.add_argument(
        "--encoding",
        metavar="NAME",
        help="the encoding of a CSV/TSV file, e.g. gb18030 or cp1252 "
        "(default: UTF-8 or UTF-16 by its BOM, else detected when certain)",
    )
    options.add_argument(
        "--delimiter",
        metavar="CHAR",
        help="the delimiter of a CSV/TSV file: , ; tab or | (default: told from the header line)",
    )
    return options


def _service_options() -> _Parser:
    options = _Parser(add_help=False)
    where = options.add_mutually_exclusive_group()
    where.add_argument(
        "--endpoint",
        metavar="URL",
        help="IMS endpoint, e.g. https://ims.ap-southeast-1.myhuaweicloud.com",
    )
    where.add_argument(
        "--region",
        metavar="REGION",
        action=_Regions,
        help="region id; the endpoint is https://ims.REGION.myhuaweicloud.com "
        "(export: repeatable, one sheet with a region column)",
    )
    where.add_argument(
        "--fake",
        action="store_true",
        help="start the embedded fake IMS, seeded from --fake-images, and use it",
    )
    options.add_argument(
        "--fake-images",
        type=Path,
        metavar="FILE",
        help="images for --fake (default: images.json beside the sheet)",
    )
    _credential_options(options)
    options.add_argument(
        "--os-cloud",
        metavar="NAME",
        help="with --api glance: this cloud of clouds.yaml (default: $OS_CLOUD, else the "
        "OS_* variables)",
    )
    _region_endpoint_option(
        options,
        "the IMS endpoint of a region the sheet's region column names "
        "(default: https://ims.REGION.myhuaweicloud.com); repeatable",
    )
    options.add_argument(
        "--concurrency",
        type=_concurrency,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help="requests in flight at most (default: %(default)s)",
    )
    options.add_argument(
        "--rate",
        type=_rate,
        default=DEFAULT_RATE,
        metavar="R",
        help="request starts per second at most, no burst (default: %(default)s)",
    )
    options.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="per-request timeout (default: %(default)s)",
    )
    return options


def _credential_options(options: argparse.ArgumentParser) -> None:
    options.add_argument(
        "--profile",
        metavar="NAME",
        help="use this profile of the config file (see README: credentials)",
    )
    options.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="the config file (default: $BATCHPATCH_CONFIG, else "
        "config.toml in the platform's config folder)",
    )
    options.add_argument(
        "--iam-endpoint",
        metavar="URL",
        help="IAM endpoint for password logins (default: from the region)",
    )
    options.add_argument(
        "--ca-bundle",
        metavar="PATH",
        help="trust these CA certificates (a private CA); TLS is always verified",
    )
    options.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow plain http:// endpoints on other machines (credentials "
        "then cross the network unencrypted)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="batchpatch",
        description="Apply a CSV or Excel sheet of metadata changes to Huawei Cloud IMS images.",
    )
    parser.add_argument("--version", action="version", version=f"batchpatch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sheet, service = _sheet_options(), _service_options()

    apply = commands.add_parser(
        "apply",
        parents=[sheet, service],
        help="plan, then send the changes that are not in place yet; write a report",
        description="Read the images the sheet names, send one PATCH per image for the "
        "changes not in place yet, and write a results report. The IAM token is read from "
        "the environment variable BATCHPATCH_AUTH_TOKEN.",
    )
    apply.add_argument(
        "--report",
        type=Path,
        metavar="PATH",
        help="where to write the report (default: SHEET_STEM.results.EXT)",
    )
    apply.add_argument(
        "--undo",
        type=Path,
        metavar="PATH",
        help="where to write the undo sheet of what the run changed "
        "(default: SHEET_STEM.undo.EXT beside the report)",
    )
    how = apply.add_mutually_exclusive_group()
    how.add_argument(
        "--plan",
        type=Path,
        metavar="PLAN.json",
        dest="plan_file",
        help="send exactly the patches saved by 'batchpatch plan --out'",
    )
    how.add_argument(
        "--no-plan",
        action="store_true",
        help="skip the read pass; send the sheet as written, retrying a "
        "replace refused with IMG.0035 as add",
    )
    apply.add_argument(
        "--dry-run",
        action="store_true",
        help="print every request that would be sent; send no write",
    )
    apply.add_argument(
        "--skip-invalid",
        action="store_true",
        help="send the valid images; report the others as invalid",
    )
    apply.add_argument(
        "--only",
        type=_statuses,
        metavar="STATUS[,STATUS]",
        help="with a report fed back in as the sheet: send only the rows whose earlier "
        "status is listed (e.g. failed,not_attempted); the others keep their outcome",
    )
    apply.add_argument("--quiet", action="store_true", help="no progress bar")
    retries = apply.add_argument_group("retries and safeguards")
    retries.add_argument(
        "--max-attempts",
        type=_positive_int,
        default=DEFAULT_MAX_ATTEMPTS,
        metavar="N",
        help="requests per image at most, the first included (default: %(default)s)",
    )
    retries.add_argument(
        "--backoff",
        type=_positive_float,
        default=DEFAULT_BACKOFF,
        metavar="SECONDS",
        help="first retry wait, doubling each time, with full jitter (default: %(default)s)",
    )
    retries.add_argument(
        "--max-backoff",
        type=_positive_float,
        default=DEFAULT_MAX_BACKOFF,
        metavar="SECONDS",
        help="longest computed retry wait; a Retry-After "
        "from the service wins (default: %(default)s)",
    )
    retries.add_argument(
        "--max-failures",
        type=_positive_int,
        metavar="N",
        help="stop after N failed images (exit 3)",
    )
    retries.add_argument(
        "--max-failure-rate",
        type=_fraction,
        metavar="P",
        help="stop once more than P (0 to 1) of the finished images failed, "
        "counted from --min-sample images on (exit 3)",
    )
    retries.add_argument(
        "--min-sample",
        type=_positive_int,
        default=100,
        metavar="N",
        help="finished images before --max-failure-rate applies (default: %(default)s)",
    )
    retries.add_argument(
        "--grace",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="after SIGINT/SIGTERM/SIGHUP, how long requests in flight may finish "
        "(default: %(default)s)",
    )
    retries.add_argument(
        "--restart", action="store_true", help="ignore the journal of an unfinished earlier run"
    )
    output = apply.add_argument_group("output")
    output.add_argument(
        "--summary",
        type=Path,
        metavar="PATH",
        help="also write a JSON summary of the run here, and its HTML page beside it "
        "(PATH with .html for its extension)",
    )
    output.add_argument(
        "--html",
        type=Path,
        metavar="PATH",
        help="also write a self-contained HTML page of the run here: statuses, requests "
        "per second, latency, error codes, settings",
    )
    output.add_argument(
        "--progress-every",
        type=_positive_float,
        default=DEFAULT_EVERY,
        metavar="SECONDS",
        help="when stderr is not a terminal, log a progress line this often (default: %(default)s)",
    )
    output.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines on stderr as text or JSON objects (default: text)",
    )
    output.add_argument(
        "--debug",
        action="store_true",
        help="log every retry and throttle adjustment (secrets never shown)",
    )

    plan = commands.add_parser(
        "plan",
        parents=[sheet, service],
        help="show what apply would change, image by image; send nothing",
        description="Read the images the sheet names and print a per-image diff. Sends no write.",
    )
    plan.add_argument(
        "--out",
        type=Path,
        metavar="PLAN.json",
        help="save the exact patches, for 'apply --plan PLAN.json'",
    )
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when nothing would change, 4 when changes are pending",
    )

    export = commands.add_parser(
        "export",
        parents=[service],
        help="write the images as a sheet apply reads; applied untouched it sends nothing",
        description="List the images (ListImages, every page) and write them as the wide "
        "sheet apply reads: image_id, the attributes you may change, custom keys, tags, and "
        "read-only context as # columns.",
    )
    export.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE.xlsx|FILE.csv",
        help="where to write the sheet (.xlsx, .csv or .tsv)",
    )
    export.add_argument(
        "--filter",
        action="append",
        default=[],
        dest="filters",
        metavar="KEY=VALUE",
        help="a ListImages query parameter, e.g. status=active or "
        "created_at=gt:2026-01-01T00:00:00Z; repeatable (default: __imagetype=private; "
        "--api glance: Glance's GET /v2/images query, e.g. owner=PROJECT_ID, no default)",
    )
    _api_option(export)
    export.add_argument(
        "--quiet",
        action="store_true",
        help="accepted as by apply: export shows no progress bar either way",
    )

    whoami = commands.add_parser(
        "whoami",
        help="show the endpoint and credentials a run would use, secrets masked",
        description="Show which endpoint and credentials a run would use; sends nothing.",
    )
    where = whoami.add_mutually_exclusive_group()
    where.add_argument("--endpoint", metavar="URL")
    where.add_argument(
        "--region",
        metavar="REGION",
        action=_Regions,
        help="repeatable: each region's endpoint and project id as a sheet's rows get them",
    )
    _region_endpoint_option(
        whoami,
        "the IMS endpoint of a region (as for apply); repeatable",
    )
    _credential_options(whoami)

    validate = commands.add_parser(
        "validate",
        parents=[sheet],
        help="check every row locally (no network); exit 0 when valid, 2 when not",
        description="Check every row of the sheet locally, without any network access.",
    )
    validate.add_argument(
        "--region",
        metavar="REGION",
        help="the run's own region, which a blank region cell stands for (as for apply)",
    )
    _region_endpoint_option(
        validate,
        "a region the sheet's region column may name besides the known ones (as for "
        "apply); repeatable",
    )

    fake = commands.add_parser(
        "fake-ims",
        add_help=False,
        help="run the fake IMS server used by the tests and the demo (see fake-ims --help)",
    )
    fake.add_argument("fake_args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    _keep_standard_streams_open()
    if arguments[:1] == ["fake-ims"]:
        from batchpatch.fake import main as fake_main

        return fake_main(arguments[1:])
    # Before parsing, so that option errors are JSON lines too when JSON was asked for.
    configure_logging("json" if _asks_for_json(arguments) else "text", debug=False)
    options = build_parser().parse_args(arguments)
    command = {
        "apply": _apply,
        "plan": _plan,
        "validate": _validate,
        "whoami": _whoami,
        "export": _export,
    }[options.command]
    try:
        return command(options)
    except (InputError, RunAborted, KeyboardInterrupt) as error:
        _tell_error(error)
        code = error_exit_code(error)
        assert code is not None  # the three kinds caught are exactly those with a code
        return code


def _tell_error(error: BaseException) -> None:
    """Say on stderr, in flag names, why the command ended without a result."""
    if isinstance(error, SheetError):
        for problem in error.problems:
            notice(in_flags(problem), level=logging.ERROR)
        notice(
            f"Error: {len(error.problems)} problem(s) in the sheet; nothing was sent",
            level=logging.ERROR,
        )
    elif isinstance(error, KeyboardInterrupt):  # SIGINT outside the run, which has its own
        notice("Error: stopped by a signal", level=logging.ERROR)
    else:
        notice(f"Error: {in_flags(error)}", level=logging.ERROR)


def _keep_standard_streams_open() -> None:
    """Give a closed stdin, stdout or stderr (``2>&-``) /dev/null instead.

    Otherwise Python has no ``sys.stderr`` to write to, and the next file opened (the
    journal, the report) would get the free descriptor, so that whatever is written to the
    "stream" would land in it."""
    for descriptor in (0, 1, 2):
        try:
            os.fstat(descriptor)
        except OSError:
            devnull = os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor
            if devnull != descriptor:
                os.dup2(devnull, descriptor)
                os.close(devnull)
    if sys.stdout is None:
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(  # noqa: SIM115
            2, "w", encoding="utf-8", errors="backslashreplace", closefd=False
        )


def _asks_for_json(arguments: Sequence[str]) -> bool:
    """Whether ``--log-format json`` (or an abbreviation argparse accepts) is given."""
    for position, argument in enumerate(arguments):
        if argument == "--":
            break
        name, equals, value = argument.partition("=")
        if name.startswith("--l") and "--log-format".startswith(name):
            if not equals:
                value = arguments[position + 1] if position + 1 < len(arguments) else ""
            if value == "json":
                return True
    return False


def _read(options: argparse.Namespace, *, skip_invalid: bool = False) -> Sheet:
    """The sheet as the options say to read it, by the rules of its API; its warnings shown
    on stderr."""
    sheet = read_sheet(
        options.sheet,
        sheet_name=options.sheet_name,
        skip_invalid=skip_invalid,
        encoding=options.encoding,
        delimiter=options.delimiter,
        schema=APIS[options.api].schema,
    )
    for warning in sheet.warnings:
        notice(in_flags(warning))
    return sheet


def _read_as(sheet: Sheet) -> str:
    """How a CSV/TSV sheet was read, e.g. `` | encoding: cp1252 (detected) | delimiter: ;``."""
    if not sheet.encoding_label:
        return ""
    delimiter = "tab" if sheet.delimiter == "\t" else sheet.delimiter
    return f" | encoding: {sheet.encoding_label} | delimiter: {delimiter}"


def _validate(options: argparse.Namespace) -> int:
    sheet = _read(options)
    _check_routing(options, sheet, options.region or "")
    _print_worksheet(sheet, say)
    say(
        f"{options.sheet}: valid — {sheet.row_count} rows, {len(sheet.patches)} images, "
        f"{sheet.shape} sheet{_read_as(sheet)}"
    )
    return EXIT_OK


def _print_worksheet(sheet: Sheet, show: Callable[[str], None]) -> None:
    """Name the worksheet of a workbook that was read: it may not be the first tab."""
    if sheet.sheet_name is not None:
        show(f"sheet: {sheet.sheet_name}")


def _plan(options: argparse.Namespace) -> int:
    if options.out:
        check_plan_files(
            options.sheet, options.out, flags=True, other_inputs=_other_inputs(options)
        )
    _one_region_only(options)
    sheet = _read(options)
    _print_worksheet(sheet, say)
    if sheet.encoding_label:
        say(f"{options.sheet}: {sheet.row_count} rows{_read_as(sheet)}")
    failed: dict[str, RegionFailed] = {}
    with _target(options) as target:
        routes = _routes(options, sheet, target)
        if routes is None:
            plans = anyio.run(_make_plan, options, sheet, target)
        else:
            planned = anyio.run(plan_regions, sheet, routes, _limits(options))
            plans, failed = planned.plans, planned.failed
            if options.out and not failed:
                save_plan(options.out, sheet, routes.identity, plans)
    for plan in plans:
        region = "" if routes is None else f"[{routes.by_image[plan.image_id]}] "
        say(region + "\n".join(describe(plan)))
    counts = Counter("update" if plan.status is None else str(plan.status) for plan in plans)
    saved = f" | plan saved to {options.out}" if options.out and not failed else ""
    changes = ", ".join(f"{n} {what}" for what, n in counts.items()) or "nothing to change"
    say(f"{len(plans)} images: {changes}{saved}")
    if failed:
        return _regions_not_planned(failed, options.out)
    return plan_exit_code(plans, detailed=options.detailed_exitcode)


def _regions_not_planned(failed: Mapping[str, RegionFailed], out: Path | None) -> int:
    """Say why each region that could not be read was not planned (its credentials, its
    endpoint: exit 3, as a run of one region that cannot read its images)."""
    for error in failed.values():
        notice(f"Error: {in_flags(error)}", level=logging.ERROR)
    unsaved = f"; the plan was not saved to {out}" if out else ""
    notice(
        f"Error: {len(failed)} region(s) not planned ({', '.join(failed)}){unsaved}",
        level=logging.ERROR,
    )
    return EXIT_STOPPED


async def _make_plan(options: argparse.Namespace, sheet: Sheet, target: Target) -> list[ImagePlan]:
    async with _service(options, target) as service:
        return await make_plan(
            sheet,
            endpoint=target.endpoint,
            auth=target.auth,
            limits=_limits(options),
            out=options.out,
            ca_bundle=target.ca_bundle,
            service=service,
        )


def _apply(options: argparse.Namespace) -> int:
    configure_logging(options.log_format, debug=options.debug)
    if options.summary and options.summary.is_dir():
        raise OptionsError(f"--summary {options.summary} is a folder — give a file path")
    _check_apply_outputs(options)
    sheet = _read(options, skip_invalid=options.skip_invalid)
    _print_worksheet(sheet, notice)
    for row, reason in sorted(sheet.invalid.items()):
        notice(f"{options.sheet}:{row}: skipped as invalid: {reason}")
    _one_region_only(options)
    with _target(options) as target:
        routes = _routes(options, sheet, target)
        plan: PlanSource = AS_WRITTEN if options.no_plan else READ_PASS
        if options.plan_file:
            endpoint = target.endpoint if routes is None else routes.identity
            plan = SavedPlan(load_plan(options.plan_file, sheet, endpoint))
        # Recorded only when read: by an HTML page, or by progress lines (throttled answers).
        telemetry = Telemetry() if _pages(options) or _shows_lines(options) else None
        result = anyio.run(_run, options, sheet, target, plan, telemetry, routes)
        if telemetry is not None:
            _write_pages(options, result, telemetry, target, routes)
    if result.stop_reason:
        reason = result.stop.text(flag_name) if result.stop else result.stop_reason
        notice(f"Stopped early: {reason}")
    say(result.summary())
    if result.undo_path is not None:  # info, not a warning; shown even with --quiet
        merged = " (merged with the earlier run's)" if result.undo_merged else ""
        tell(
            f"undo: {result.undo_path}{merged} — 'batchpatch apply {result.undo_path}' puts "
            f"back what {'these runs' if merged else 'this run'} changed"
        )
    if result.undo_note:
        notice(f"Note: {result.undo_note}")
    if options.summary:
        try:
            write_summary(options.summary, result)
        except OSError as error:
            notice(
                f"Warning: could not write the summary to {options.summary}: "
                f"{error.strerror or error}"
            )
    return result.exit_code


def _pages(options: argparse.Namespace) -> list[RunFile]:
    """The HTML pages the run writes: ``--html``, and the one beside ``--summary``."""
    pages = [RunFile("the HTML page", options.html, "--html")] if options.html else []
    if options.summary:
        page = summary_page_path(options.summary)
        if not options.html or page != options.html:
            pages.append(
                RunFile(
                    "the summary's HTML page",
                    page,
                    "--summary",
                    subject=f"the HTML page {page} (beside --summary {options.summary})",
                    fix="give --summary another path (its page is written beside it, as .html)",
                )
            )
    return pages


def _write_pages(
    options: argparse.Namespace,
    result: RunResult,
    telemetry: Telemetry,
    target: Target,
    routes: Routes | None = None,
) -> None:
    """Write the run's HTML pages; one that cannot be written is a warning, as for the
    summary.  A run across regions names each region's endpoint and project id, the
    ones its requests went to."""
    settings = {
        "command": "apply --dry-run" if options.dry_run else "apply",
        **_page_endpoints(target, routes),
        "plan": "--no-plan"
        if options.no_plan
        else (f"--plan {options.plan_file}" if options.plan_file else "read pass"),
        **{
            f"--{name.replace('_', '-')}": getattr(options, name)
            for name in _PAGE_SETTINGS
            if getattr(options, name) is not None
        },
    }
    for page in _pages(options):
        try:
            write_page(
                page.path,
                result,
                telemetry,
                settings=settings,
                credentials=_page_credentials(target, routes, telemetry),
            )
        except OSError as error:
            notice(
                f"Warning: could not write the HTML page to {page.path}: {error.strerror or error}"
            )


def _page_endpoints(target: Target, routes: Routes | None) -> dict[str, str]:
    """The endpoint the run's requests went to, or each region's (``endpoint (REGION)``)."""
    if routes is None:
        return {"endpoint": target.endpoint}
    return {f"endpoint ({region})": t.endpoint for region, t in routes.targets.items()}


#: ``whoami`` lines a run across regions states per region instead.
_PER_REGION = ("endpoint:", "project id:", "project:")


def _page_credentials(target: Target, routes: Routes | None, telemetry: Telemetry) -> list[str]:
    """``whoami``'s lines (secrets masked); across regions, each region's endpoint and
    project id (the one IAM named, when the run looked it up) in place of the run's own."""
    if routes is None:
        return target.describe()
    shared = [line for line in target.describe() if not line.startswith(_PER_REGION)]
    for region, region_target in routes.targets.items():
        looked_up = telemetry.regions[region].project_id if region in telemetry.regions else ""
        shared += [
            f"  project id: {looked_up} (looked up in IAM)"
            if looked_up and line.startswith("  project id:")
            else line
            for line in region_target.describe()
        ]
    return shared


#: The options an HTML page lists (none of them can hold a secret).
_PAGE_SETTINGS = (
    "concurrency",
    "rate",
    "timeout",
    "max_attempts",
    "backoff",
    "max_backoff",
    "max_failures",
    "max_failure_rate",
    "min_sample",
    "skip_invalid",
    "restart",
    "report",
)


def _check_apply_outputs(options: argparse.Namespace) -> None:
    """Before anything is read or sent: no file the run writes is the sheet, the plan, or
    another file of the run; what a killed write of the summary left behind is removed."""
    report = options.report or default_report_path(options.sheet, dry_run=options.dry_run)
    inputs, outputs = apply_files(
        options.sheet,
        report,
        dry_run=options.dry_run,
        plan_file=options.plan_file,
        summary=options.summary,
        flags=True,
        other_inputs=_other_inputs(options),
        undo=options.undo or default_undo_path(options.sheet, report),
        undo_default=not options.undo,
    )
    check_outputs(inputs, outputs + _pages(options))
    if options.summary:
        clear_stale_temporaries([RunFile("the summary", options.summary)])
    clear_stale_temporaries(_pages(options))


def _other_inputs(options: argparse.Namespace) -> list[RunFile]:
    """The files a run reads besides the sheet and the plan, which no output may overwrite:
    the fake's images file (with --fake), the config file in use, the --ca-bundle file."""
    files: list[RunFile] = []
    if options.fake:
        files.append(RunFile("the images file of --fake", _fake_images_path(options)))
    config = options.config or default_config_path(os.environ)
    if config.is_file():  # not /dev/null, nor a config that is not there
        files.append(RunFile("the config file", config))
        files += _profile_files(config, options.profile or "default")
    if options.ca_bundle:
        files.append(RunFile("the CA bundle", Path(options.ca_bundle)))
    return files


def _profile_files(config: Path, profile: str) -> list[RunFile]:
    """The credentials file and CA bundle a profile names.  A config that cannot be read
    names none here: resolving the credentials reports it, after this check."""
    try:
        entry = tomllib.loads(config.read_text(encoding="utf-8")).get("profiles", {})[profile]
    except (
        OSError,
        UnicodeDecodeError,
        tomllib.TOMLDecodeError,
        KeyError,
        TypeError,
        AttributeError,
    ):
        return []
    if not isinstance(entry, dict):
        return []
    roles = {"credentials_file": "the credentials file", "ca_bundle": "the CA bundle"}
    return [
        RunFile(role, Path(str(entry[key])).expanduser())
        for key, role in roles.items()
        if isinstance(entry.get(key), str) and entry[key]
    ]


def _fake_images_path(options: argparse.Namespace) -> Path:
    beside = options.out if options.command == "export" else options.sheet
    return Path(options.fake_images or beside.parent / "images.json")


def _limits(options: argparse.Namespace) -> Limits:
    return Limits(options.concurrency, options.rate, options.timeout)


def _safeguards(options: argparse.Namespace) -> Safeguards:
    return Safeguards(
        RetryPolicy(options.max_attempts, options.backoff, options.max_backoff),
        max_failures=options.max_failures,
        max_failure_rate=options.max_failure_rate,
        min_sample=options.min_sample,
    )


@dataclass(frozen=True)
class _Api:
    """What ``--api`` chooses, once: the attribute rules, how the target is found, and the
    service adapter (None: the library's own IMS client)."""

    schema: Schema
    resolve: Callable[[argparse.Namespace, Settings], Target]
    service: type[GlanceClient] | None = None
    export: ExportRules = IMS_EXPORT


def _resolve_ims(options: argparse.Namespace, settings: Settings) -> Target:
    return resolve(settings)


def _resolve_glance(options: argparse.Namespace, settings: Settings) -> Target:
    if options.fake:
        raise OptionsError("--fake is a fake IMS — with --api glance give --endpoint URL")
    return resolve_glance(settings, options.os_cloud)


APIS = {
    "ims": _Api(IMS_SCHEMA, _resolve_ims),
    "glance": _Api(GLANCE_SCHEMA, _resolve_glance, GlanceClient, GLANCE_EXPORT),
}


@asynccontextmanager
async def _service(
    options: argparse.Namespace, target: Target
) -> AsyncIterator[ImageService | None]:
    """The adapter ``--api`` names, open for the block; None for IMS (the job opens its own)."""
    adapter = APIS[options.api].service
    if adapter is None:
        yield None
        return
    limits = _limits(options)
    async with adapter(
        target.endpoint,
        target.auth,
        timeout=limits.timeout,
        connections=limits.concurrency,
        ca_bundle=target.ca_bundle,
    ) as service:
        yield service


@contextmanager
def _target(options: argparse.Namespace) -> Iterator[Target]:
    """Where to send and how to authenticate; with ``--fake``, a fake IMS running meanwhile."""
    api = APIS[getattr(options, "api", "ims")]
    if options.fake and api.service is None:
        from batchpatch.fake import load_images, running_fake

        images_path = _fake_images_path(options)
        if not images_path.is_file():
            raise OptionsError(
                f"{images_path}: no images file for --fake — give one with --fake-images FILE"
            )
        try:
            images = load_images(images_path)
        except ValueError as error:
            raise OptionsError(f"{error} — fix the images file") from None
        with running_fake(images) as fake:
            notice(f"fake IMS at {fake.url} seeded from {images_path}", level=logging.INFO)
            project = fake.config.account_project_id
            auth = TokenAuth("fake-token", source="--fake", project_id=project)
            yield Target(fake.url, fake.url, auth)
        return
    if options.fake_images:
        raise OptionsError("--fake-images goes with --fake")
    target = api.resolve(options, _settings(options))
    for warning in target.warnings:
        notice(f"Warning: {warning}")
    yield target


def _settings(options: argparse.Namespace) -> Settings:
    return Settings(
        options.endpoint,
        options.region,
        options.iam_endpoint,
        options.profile,
        options.config,
        options.ca_bundle,
        options.allow_insecure_http,
    )


def _choose_own_region(options: argparse.Namespace, regions: Sequence[str]) -> None:
    """``export --region A --region B``: the run's own region, the one its configured
    project id (``HUAWEICLOUD_SDK_PROJECT_ID``, the profile's ``project_id``) belongs to,
    is the configured region (the profile's, or its endpoint's) when there is one, else
    the first ``--region``; every other region gets its own project id."""
    options.region = None
    try:
        configured = resolve(_settings(options)).region
    except OptionsError:  # no region configured: nothing but the options name one
        configured = ""
    if not configured:
        options.region = regions[0]


def _export(options: argparse.Namespace) -> int:
    """``batchpatch export``: the work is ``export.export_images``'s."""
    rules = APIS[options.api].export
    filters = parse_filters(options.filters, rules=rules)
    check_export_files(options.out, flags=True, inputs=_other_inputs(options))
    regions = getattr(options, "regions", None) or []
    if len(regions) > 1 and options.api != "ims":
        raise OptionsError(
            f"--region is given more than once: --api {options.api} has no Huawei Cloud "
            "regions — give one --endpoint"
        )
    if len(regions) > 1:
        _choose_own_region(options, regions)
    with _target(options) as target:
        if len(regions) > 1:
            insecure = options.allow_insecure_http
            endpoints = dict(options.region_endpoints)
            targets = region_targets(regions, target, endpoints, insecure=insecure)
            result = anyio.run(export_regions, options.out, targets, _limits(options), filters)
        else:
            result = anyio.run(_run_export, options, target, filters)
    for note in result.notes:
        notice(f"Note: {note}")
    say(result.summary())
    return EXIT_OK


async def _run_export(
    options: argparse.Namespace, target: Target, filters: dict[str, str]
) -> ExportResult:
    rules = APIS[options.api].export
    async with _service(options, target) as service:
        return await export_images(
            options.out,
            endpoint=target.endpoint,
            auth=target.auth,
            limits=_limits(options),
            filters=filters,
            ca_bundle=target.ca_bundle,
            read_tags=all_tags if rules.tag_columns else None,
            service=service,
            rules=rules,
        )


def _whoami(options: argparse.Namespace) -> int:
    options.fake, options.fake_images = False, None
    with _target(options) as target:
        say("\n".join(target.describe()))
        for region in _whoami_regions(options, target):
            say("\n".join(region.describe()))
    return EXIT_OK


def _whoami_regions(options: argparse.Namespace, target: Target) -> list[RegionTarget]:
    """The regions ``whoami`` also shows, as a sheet's rows would reach them: those
    ``--region`` (given more than once), ``--region-endpoint`` and the profile's region
    tables name, the run's own first; none when only the run's own is named."""
    endpoints = dict(options.region_endpoints)
    tabled = [r for r, table in target.regions.items() if table.endpoint or table.project_id]
    named = [*(getattr(options, "regions", None) or []), *endpoints, *tabled]
    regions = list(dict.fromkeys([target.region, *(r.strip().lower() for r in named)]))
    regions = [region for region in regions if region]
    if len(regions) < 2 and not endpoints:
        return []
    insecure = options.allow_insecure_http
    return region_targets(regions, target, endpoints, insecure=insecure)


def _one_region_only(options: argparse.Namespace) -> None:
    """``--region`` names the run's one region, except for ``export``."""
    if len(getattr(options, "regions", None) or []) > 1:
        raise OptionsError(
            "--region is given more than once — a sheet's rows go to other regions by a "
            "region column; only export takes several"
        )


def _check_routing(options: argparse.Namespace, sheet: Sheet, own: str) -> None:
    """The routing columns' cells checked as a run checks them before sending (``own``:
    the run's own region, when named): ``--api glance`` has no regions."""
    if options.api != "ims":
        if columns := routing_columns(list(sheet.frame.columns)):
            raise OptionsError(
                f"{sheet.path}: the {', '.join(sorted(columns))} column sends rows to Huawei "
                f"Cloud regions, which --api {options.api} has none of — remove the column, "
                "or run one sheet per endpoint"
            )
        return
    sheet_regions(sheet, known_regions(dict(options.region_endpoints)), own)


def _routes(options: argparse.Namespace, sheet: Sheet, target: Target) -> Routes | None:
    """Where each image goes when the sheet has a region column (with ``--fake``, every
    region's rows go to the one fake, once the regions are checked)."""
    endpoints = dict(options.region_endpoints)
    if options.api != "ims" or options.fake:
        _check_routing(options, sheet, "")
        return None
    routes = route(sheet, target, endpoints, insecure=options.allow_insecure_http)
    if routes is not None:
        notice(
            "regions: "
            + ", ".join(f"{r} ({len(routes.images_of(r))} images)" for r in routes.targets),
            level=logging.INFO,
        )
    return routes


async def _run(
    options: argparse.Namespace,
    sheet: Sheet,
    target: Target,
    plan: PlanSource,
    telemetry: Telemetry | None = None,
    routes: Routes | None = None,
) -> RunResult:
    stop, abort = anyio.Event(), anyio.Event()
    ledger = Ledger()  # the bar shows what the run's ledger holds
    hidden = options.quiet or options.dry_run or not sys.stderr.isatty()
    lines = None
    if _shows_lines(options):
        lines = ProgressLines(
            ledger, len(sheet.patches), lambda: telemetry.throttled if telemetry else 0
        )
        lines.listen()
    bar = (
        nullcontext()
        if hidden
        else tqdm(total=len(sheet.patches), unit="image", file=sys.stderr, dynamic_ncols=True)
    )

    def progress(event: Event, entry: Entry, outcome: Outcome | None) -> None:
        if event == Event.SENDING or outcome is None:
            return
        if isinstance(bar, tqdm) and not bar.disable:
            try:
                bar.update(1)
                bar.set_postfix(ledger.progress, refresh=False)
            except OSError:  # the terminal went away (SIGHUP): the run goes on without it
                bar.disable = True
                silence(sys.stderr)

    def show(request: str) -> None:
        say(request + "\n")

    if isinstance(bar, tqdm):  # a hidden bar needs no telling
        ledger.listen(progress)
    try:
        with bar:
            async with _service(options, target) as service, anyio.create_task_group() as group:
                group.start_soon(_stop_on_signal, stop, abort, options.grace)
                if lines is not None:
                    group.start_soon(lines.tick, options.progress_every)
                result = await apply_sheet(
                    sheet,
                    endpoint=target.endpoint,
                    auth=target.auth,
                    limits=_limits(options),
                    safeguards=_safeguards(options),
                    restart=options.restart,
                    ca_bundle=target.ca_bundle,
                    report_path=options.report,
                    plan=plan,
                    dry_run=options.dry_run,
                    on_request=show,
                    stop=stop,
                    abort=abort,
                    ledger=ledger,
                    undo_path=options.undo,
                    routes=routes,
                    telemetry=telemetry,
                    only=options.only,
                    service=service,
                )
                group.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise _sole(group) from None
    return result


def _shows_lines(options: argparse.Namespace) -> bool:
    """Progress is told in lines, not a bar: stderr is not a terminal (cron, CI)."""
    return not (options.quiet or options.dry_run or sys.stderr.isatty())


def _sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error a task group wrapped, so it is reported like any other."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def _stop_on_signal(stop: anyio.Event, abort: anyio.Event, grace: float) -> None:
    """First SIGINT/SIGTERM/SIGHUP: start no new request, and give those in flight ``grace``
    seconds.  A second signal, or the end of the grace period: cut them off.  SIGHUP (the
    terminal closed) is a stop like any other, so the report is still written — unless it
    was ignored when batchpatch started (``nohup``): then it stays ignored."""

    async def abort_after_grace() -> None:
        await anyio.sleep(grace)
        abort.set()

    async with anyio.create_task_group() as timers:
        hangup = () if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN else (signal.SIGHUP,)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, *hangup) as signals:
            async for _ in signals:
                if stop.is_set():
                    abort.set()
                else:
                    stop.set()
                    notice(
                        "Stopping: no new requests; waiting for those in flight "
                        "(signal again to stop at once)"
                    )
                    timers.start_soon(abort_after_grace)
