"""``batchpatch fake-ims``: serve the fake IMS API for demos and end-to-end tests.

The first stdout line is ``URL http://HOST:PORT`` once the server listens, so a parent process
can start it on port 0 and read where it went; it then serves until SIGINT or SIGTERM.
The fault options map one to one onto FakeConfig's fields, which say what they do.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import sys
from typing import NoReturn

from batchpatch.fake.config import FakeConfig
from batchpatch.fake.harness import serving_fake
from batchpatch.fake.store import ImageFileError, ImageStore, load_images

_PROBABILITY_FLAGS = [
    ("--error-500", "answer a PATCH or GET 500 IMG.0061, applying nothing"),
    ("--error-503", "answer a PATCH or GET 503 APIGW.0201, applying nothing"),
    ("--flow-control", "answer a PATCH 400 IMG.0060, applying nothing"),
    ("--reset-before", "close a PATCH's connection unanswered, applying nothing"),
    ("--reset-after", "apply a PATCH, then close its connection unanswered"),
    ("--hang", "never answer a PATCH (until the client gives up or the server stops)"),
]


class _Parser(argparse.ArgumentParser):
    """Bad options are ``Error: …`` and exit status 2, as in the main CLI."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"Error: {message} — see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="batchpatch fake-ims",
        description="Serve a fake Huawei Cloud IMS API (UpdateImage and ListImages) "
        "over the images in a JSON file.",
    )
    parser.add_argument(
        "--images",
        required=True,
        metavar="FILE",
        help='JSON file: a list of image objects, or {"images": [...]}',
    )
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--latency",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="delay added to every PATCH (default 0)",
    )
    parser.add_argument(
        "--token-env",
        metavar="NAME",
        help="accept only the X-Auth-Token held by this environment variable (default: any token)",
    )
    faults = parser.add_argument_group(
        "faults", "probabilities P are in [0, 1]; the PATCH ones must sum to at most 1"
    )
    faults.add_argument(
        "--jitter",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="a further random delay of 0..SECONDS on every PATCH (default 0)",
    )
    for flag, effect in _PROBABILITY_FLAGS:
        faults.add_argument(flag, type=_probability, default=0.0, metavar="P", help=effect)
    faults.add_argument(
        "--rate-limit",
        type=_rate,
        metavar="N",
        help="admit N requests (PATCH and GET) per sliding second; answer 429 APIGW.0308 above",
    )
    faults.add_argument(
        "--retry-after",
        type=_seconds,
        metavar="SECONDS",
        help="send Retry-After (whole seconds, rounded up) with every 429",
    )
    faults.add_argument(
        "--seed", type=_integer, metavar="N", help="seed the random faults and the jitter"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        store = ImageStore(load_images(args.images))
    except ImageFileError as exc:
        return _fail(f"{exc}. Fix the file or point --images at another one.")
    token = None
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            return _fail(
                f"the environment variable {args.token_env} named by --token-env is unset or "
                "empty; set it to the token clients must send."
            )
    try:
        config = FakeConfig(
            latency=args.latency,
            token=token,
            jitter=args.jitter,
            error_500=args.error_500,
            error_503=args.error_503,
            flow_control=args.flow_control,
            rate_limit=args.rate_limit,
            retry_after=args.retry_after,
            reset_before=args.reset_before,
            reset_after=args.reset_after,
            hang=args.hang,
            seed=args.seed,
        )
    except ValueError as exc:
        return _fail(f"{exc}. Lower the fault options.")
    try:
        asyncio.run(_serve(store, config, args.host, args.port))
    except OSError as exc:
        return _fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", 1)
    return 0


async def _serve(store: ImageStore, config: FakeConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serving_fake(store, config, host=host, port=port) as server:
        print(f"URL {server.url}", flush=True)
        await stop.wait()


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text!r}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a probability: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], not {text!r}")
    return value


def _rate(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of requests >= 1, not {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _fail(message: str, exit_code: int = 2) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return exit_code
