"""``batchpatch fake-ims``: serve the fake IMS API for demos and end-to-end tests.

The first stdout line is ``URL http://HOST:PORT`` once the server listens, so a parent process
can start it on port 0 and read where it went; it then serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import sys

from batchpatch.fake.config import FakeConfig
from batchpatch.fake.harness import serving_fake
from batchpatch.fake.store import ImageFileError, ImageStore, load_images


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    config = FakeConfig(latency=args.latency, token=token)
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


def _fail(message: str, exit_code: int = 2) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return exit_code
