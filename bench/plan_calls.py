"""Which read strategy is cheaper for the plan, by sheet size: calls and wall time.

Runs both strategies of ``batchpatch.inventory`` against the fake IMS on 127.0.0.1, for
sheets of 10, 1,000 and 100,000 images in an account holding the sheet's images plus
``--extra`` others, and prints a table.  Not a test: numbers vary with the machine.

    .venv/bin/python bench/plan_calls.py [--extra 2000] [--rate 1000] [--sizes 10,1000,100000]
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

import anyio

from batchpatch.auth import TokenAuth
from batchpatch.client import ImsClient
from batchpatch.fake import running_fake
from batchpatch.inventory import Reader, read_by_id, read_paged
from batchpatch.models import Limits
from batchpatch.throttle import Pacer


def account(size: int) -> list[dict[str, Any]]:
    return [
        {"id": str(uuid.UUID(int=n + 1, version=4)), "name": f"image-{n}", "status": "active"}
        for n in range(size)
    ]


async def measure(url: str, ids: list[str], strategy: str, limits: Limits) -> float:
    started = time.perf_counter()
    async with ImsClient(
        url, TokenAuth("bench"), timeout=60, connections=limits.concurrency
    ) as client:
        reader = Reader(client, Pacer(limits))
        found = (
            await read_by_id(reader, ids)
            if strategy == "by-id"
            else await read_paged(reader, set(ids))
        )
    assert len(found) == len(ids)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=1_000.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sizes", default="10,1000,100000")
    parser.add_argument(
        "--by-id-max",
        type=int,
        default=5_000,
        help="skip by-id above this size (it costs one call per image)",
    )
    options = parser.parse_args()
    limits = Limits(options.concurrency, options.rate, 60)
    print(f"{'images':>8} {'account':>8} {'strategy':>8} {'calls':>7} {'seconds':>8}")
    for size in (int(n) for n in options.sizes.split(",")):
        images = account(size + options.extra)
        ids = [image["id"] for image in images[options.extra :]]  # the last pages
        for strategy in ("by-id", "paged"):
            if strategy == "by-id" and size > options.by_id_max:
                print(f"{size:>8} {len(images):>8} {strategy:>8} {size:>7} {'(skipped)':>8}")
                continue
            with running_fake(images) as fake:
                seconds = anyio.run(measure, fake.url, ids, strategy, limits)
                calls = fake.stats.list_requests
            print(f"{size:>8} {len(images):>8} {strategy:>8} {calls:>7} {seconds:>8.2f}")


if __name__ == "__main__":
    main()
