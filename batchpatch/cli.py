"""The command line: parse options, call the library, show progress, map errors to exit codes.

Everything it does is available from Python through ``batchpatch.apply_sheet``.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
from tqdm import tqdm

from batchpatch.auth import Auth, TokenAuth, token_from_environment
from batchpatch.errors import InputError, OptionsError, SheetError
from batchpatch.job import EXIT_INVALID, RunResult, apply_sheet
from batchpatch.models import (
    DEFAULT_CONCURRENCY,
    DEFAULT_RATE,
    DEFAULT_TIMEOUT,
    Limits,
    Outcome,
)
from batchpatch.regions import ims_endpoint
from batchpatch.sheet import Sheet, read_sheet


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number greater than 0, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse that exits with our code 2 and an ``Error:`` line, never a usage dump."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_INVALID, f"Error: {message} — see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="batchpatch",
        description="Apply a CSV or Excel sheet of metadata changes to Huawei Cloud IMS images.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    apply = commands.add_parser(
        "apply", help="send the sheet's changes, one PATCH per image, and write a report",
        description="Send the sheet's changes (one PATCH per image) and write a results report."
        " The IAM token is read from the environment variable BATCHPATCH_AUTH_TOKEN.",
    )
    apply.add_argument("sheet", type=Path, help="the CSV, TSV or XLSX sheet of changes")
    where = apply.add_mutually_exclusive_group()
    where.add_argument("--endpoint", metavar="URL", help="IMS endpoint, e.g. "
                       "https://ims.ap-southeast-1.myhuaweicloud.com")
    where.add_argument("--region", metavar="REGION",
                       help="region id; the endpoint is https://ims.REGION.myhuaweicloud.com")
    where.add_argument("--fake", action="store_true",
                       help="start the embedded fake IMS, seeded from --fake-images, and use it")
    apply.add_argument("--fake-images", type=Path, metavar="FILE",
                       help="images for --fake (default: images.json beside the sheet)")
    apply.add_argument("--sheet", dest="sheet_name", metavar="NAME",
                       help="the worksheet of an XLSX file (default: the first)")
    apply.add_argument("--report", type=Path, metavar="PATH",
                       help="where to write the report (default: SHEET_STEM.results.EXT)")
    apply.add_argument("--concurrency", type=_positive_int, default=DEFAULT_CONCURRENCY,
                       metavar="N", help="requests in flight at most (default: %(default)s)")
    apply.add_argument("--rate", type=_positive_float, default=DEFAULT_RATE, metavar="R",
                       help="request starts per second at most, no burst (default: %(default)s)")
    apply.add_argument("--timeout", type=_positive_float, default=DEFAULT_TIMEOUT,
                       metavar="SECONDS", help="per-request timeout (default: %(default)s)")
    apply.add_argument("--quiet", action="store_true", help="no progress bar")

    fake = commands.add_parser(
        "fake-ims", add_help=False,
        help="run the fake IMS server used by the tests and the demo (see fake-ims --help)",
    )
    fake.add_argument("fake_args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["fake-ims"]:
        from batchpatch.fake import main as fake_main

        return fake_main(arguments[1:])
    options = build_parser().parse_args(arguments)
    try:
        return _apply(options)
    except SheetError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        print(f"Error: {len(error.problems)} problem(s) in the sheet; nothing was sent",
              file=sys.stderr)
        return EXIT_INVALID
    except InputError as error:
        print(f"Error: {error}", file=sys.stderr)
        return EXIT_INVALID


def _apply(options: argparse.Namespace) -> int:
    limits = Limits(options.concurrency, options.rate, options.timeout)
    sheet = read_sheet(options.sheet, sheet_name=options.sheet_name)
    with _target(options) as (endpoint, auth):
        result = anyio.run(_run, options, sheet, endpoint, auth, limits)
    print(result.summary())
    return result.exit_code


@contextmanager
def _target(options: argparse.Namespace) -> Iterator[tuple[str, Auth]]:
    """The endpoint and credentials to use; with ``--fake``, a fake IMS running meanwhile."""
    if options.fake:
        from batchpatch.fake import load_images, running_fake

        images_path = options.fake_images or options.sheet.parent / "images.json"
        if not images_path.is_file():
            raise OptionsError(f"{images_path}: no images file for --fake — "
                               "give one with --fake-images FILE")
        with running_fake(load_images(images_path)) as fake:
            print(f"fake IMS at {fake.url} seeded from {images_path}", file=sys.stderr)
            yield fake.url, TokenAuth("fake-token", source="--fake")
        return
    if options.endpoint:
        parts = urlsplit(options.endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OptionsError(f"--endpoint {options.endpoint!r} is not an http(s) URL — "
                               "write it like https://ims.ap-southeast-1.myhuaweicloud.com")
        endpoint = options.endpoint
    elif options.region:
        endpoint = ims_endpoint(options.region)
    else:
        raise OptionsError("no service to talk to — give --endpoint URL or --region REGION "
                           "(or --fake to try against the embedded fake IMS)")
    if options.fake_images:
        raise OptionsError("--fake-images goes with --fake")
    yield endpoint, token_from_environment()


async def _run(options: argparse.Namespace, sheet: Sheet, endpoint: str, auth: Auth,
               limits: Limits) -> RunResult:
    stop, abort = anyio.Event(), anyio.Event()
    counts: Counter[str] = Counter()
    hidden = options.quiet or not sys.stderr.isatty()
    bar = nullcontext() if hidden else tqdm(unit="image", file=sys.stderr, dynamic_ncols=True)

    def progress(outcome: Outcome) -> None:
        counts[str(outcome.status)] += 1
        if isinstance(bar, tqdm):
            bar.update(1)
            bar.set_postfix(counts, refresh=False)

    with bar:
        async with anyio.create_task_group() as group:
            group.start_soon(_stop_on_signal, stop, abort)
            result = await apply_sheet(
                sheet, endpoint=endpoint, auth=auth, limits=limits,
                report_path=options.report,
                on_outcome=progress, stop=stop, abort=abort,
            )
            group.cancel_scope.cancel()
    if stop.is_set():
        print("Stopped by signal: in-flight requests finished, the rest are not_attempted",
              file=sys.stderr)
    return result


async def _stop_on_signal(stop: anyio.Event, abort: anyio.Event) -> None:
    """First SIGINT/SIGTERM: start no new request.  A second one: cut off those in flight."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            (abort if stop.is_set() else stop).set()
