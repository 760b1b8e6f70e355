"""Does the adaptive throttle settle near a service's rate limit, without a storm of 429s?

Runs the real CLI against the fake IMS on 127.0.0.1 limited to ``--limit`` requests a second,
with batchpatch asked for ``--rate`` (well above the limit), and prints the rate achieved in
each second at the server and how many requests were throttled.  Not a test: numbers vary.

    PYTHONPATH=. .venv/bin/python bench/throttle_settle.py [--limit 20] [--rate 60] [--images 400]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import uuid
from collections import Counter
from pathlib import Path

from batchpatch.fake import FakeConfig, running_fake
from tests.e2e import TOKEN, run_cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--rate", type=float, default=60.0)
    parser.add_argument("--images", type=int, default=400)
    options = parser.parse_args()
    images = [
        {"id": str(uuid.UUID(int=n + 1, version=4)), "name": f"image-{n}", "status": "active"}
        for n in range(options.images)
    ]
    with tempfile.TemporaryDirectory() as directory:
        sheet = Path(directory) / "s.csv"
        with sheet.open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["image_id", "name"])
            writer.writerows([image["id"], f"settled-{n}"] for n, image in enumerate(images))
        with running_fake(images, FakeConfig(token=TOKEN, rate_limit=options.limit)) as fake:
            done = run_cli(
                [
                    "apply",
                    str(sheet),
                    "--endpoint",
                    fake.url,
                    "--no-plan",
                    "--rate",
                    str(options.rate),
                    "--concurrency",
                    "16",
                    "--max-attempts",
                    "20",
                    "--backoff",
                    "0.2",
                ],
                timeout=600,
            )
            stats = fake.stats.snapshot()
    arrivals = stats.arrivals_of("PATCH")
    start = arrivals[0]
    per_second = Counter(int(moment - start) for moment in arrivals)
    print(
        f"exit {done.returncode}; {len(arrivals)} PATCHes, "
        f"{stats.faults['rate_limit']} throttled (429) by a limit of {options.limit}/s"
    )
    print("second: requests arriving at the server")
    for second in sorted(per_second):
        print(f"{second:>6}: {per_second[second]:>4}")


if __name__ == "__main__":
    main()
