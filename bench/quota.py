"""How much of an API gateway's quota a run uses, and how often it trips it.

The fake IMS runs on a thread of this process as a gateway that admits at most
``gateway_rate`` requests in any rolling second (and, unless told otherwise, also holds a
token bucket of ``gateway_rate`` refilled at ``gateway_rate`` per second), answering 429
``APIGW.0308`` beyond.  ``batchpatch apply`` runs as a real process against it, renaming
``images`` images (one GET page per 500 images first, then one PATCH each: reads and writes
share the quota), and everything is judged by when requests *arrived* at the gateway:

* ``admitted_rate``: requests the gateway let through per second of the busy period (first
  arrival to last);
* ``utilisation``: that, over ``gateway_rate``;
* ``throttled_fraction``: the share of all requests answered 429, and
  ``throttled_fraction_after_10s`` the same for requests arriving 10 s or more after the first;
* ``busiest_second``: the most requests (admitted or not) that arrived in any rolling second;
* ``wall_s``: the run's wall time, process start to exit; ``client_cpu_s`` the CPU time
  batchpatch used, and ``load`` the machine's 1-minute load average as the run ended: on a
  shared machine a client starved of CPU cannot keep up with any rate, which shows as a low
  ``utilisation`` with few 429s, whatever the throttle does.

``rate`` is batchpatch's ``--rate``: the limit when it is known (``--rate 200``), or well
above it when it is not (``--rate 1000``), for the adaptive throttle to find.

    python -m bench.quota                       # both scenarios at full size
    python -m bench.quota --capacity            # first: what the machine manages unlimited
    python -m bench.quota --rate 1000 --images 500
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batchpatch.fake import FakeConfig, StatsSnapshot, running_fake

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-quota-token-not-a-secret"
#: The first seconds of a run with an unknown limit are spent finding it.
SETTLING = 10.0
#: The two scenarios of issue 12: the limit known, and the limit unknown.
SCENARIOS = ({"rate": 200.0}, {"rate": 1000.0})


def run_quota(
    rate: float,
    images: int,
    gateway_rate: float = 200,
    *,
    concurrency: int = 64,
    token_bucket: bool = True,
    latency: float = 0.0,
    read_pass: bool = True,
    timeout: float = 900.0,
) -> dict[str, float]:
    """Run one apply of ``images`` single renames at ``--rate rate`` against a gateway of
    ``gateway_rate`` requests/s and return the figures of the module's docstring."""
    store = make_images(images)
    limit = gateway_rate or None  # 0: no gateway limit (what the machine manages)
    config = FakeConfig(
        token=TOKEN,
        rate_limit=limit,
        token_bucket=limit if token_bucket else None,
        latency=latency,
    )
    with tempfile.TemporaryDirectory(prefix="bench-quota-") as directory:
        sheet = write_renames(Path(directory) / "renames.csv", store)
        with running_fake(store, config) as fake:
            cpu_before, started = children_cpu(), time.perf_counter()
            done = apply(sheet, fake.url, rate, concurrency, read_pass=read_pass, timeout=timeout)
            wall, cpu = time.perf_counter() - started, children_cpu() - cpu_before
            stats = fake.stats.snapshot()
    figures = judge(stats, gateway_rate)
    figures.update(wall_s=wall, client_cpu_s=cpu, load=os.getloadavg()[0])
    figures.update(exit_code=float(done.returncode), images=float(images))
    figures.update(rate=rate, gateway_rate=gateway_rate, concurrency=float(concurrency))
    return figures


def children_cpu() -> float:
    """CPU seconds used so far by this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def make_images(count: int) -> list[dict[str, Any]]:
    """``count`` active images with ids that are the same on every run."""
    return [
        {"id": str(uuid.UUID(int=number + 1, version=4)), "name": f"quota-{number}"}
        | {"status": "active", "visibility": "private", "__imagetype": "private"}
        for number in range(count)
    ]


def write_renames(path: Path, images: Sequence[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["image_id", "name"])
        writer.writerows([image["id"], f"renamed-{n}"] for n, image in enumerate(images))
    return path


def apply(
    sheet: Path, url: str, rate: float, concurrency: int, *, read_pass: bool, timeout: float
) -> subprocess.CompletedProcess[str]:
    """``batchpatch apply`` as a real process (the fake keeps this one's interpreter)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("BATCHPATCH_")}
    env |= {"BATCHPATCH_AUTH_TOKEN": TOKEN, "BATCHPATCH_CONFIG": os.devnull}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    arguments = [sys.executable, "-m", "batchpatch", "apply", str(sheet), "--endpoint", url]
    arguments += ["--quiet", "--rate", f"{rate:g}", "--concurrency", str(concurrency)]
    arguments += [] if read_pass else ["--no-plan"]
    return subprocess.run(
        arguments, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def judge(stats: StatsSnapshot, gateway_rate: float) -> dict[str, float]:
    """The figures, from the gateway's arrival log alone."""
    arrivals = list(stats.arrivals)
    if not arrivals:
        return {"requests": 0.0}
    first, last = arrivals[0], arrivals[-1]
    busy = max(last - first, 1e-9)
    refused = [entry.status == 429 for entry in stats.log]
    late = [was for was, when in zip(refused, arrivals, strict=True) if when >= first + SETTLING]
    admitted = len(refused) - sum(refused)
    return {
        "requests": float(len(arrivals)),
        "throttled": float(sum(refused)),
        "busy_s": busy,
        "admitted_rate": admitted / busy,
        "utilisation": admitted / busy / gateway_rate if gateway_rate else 0.0,
        "throttled_fraction": sum(refused) / len(refused),
        "throttled_fraction_after_10s": sum(late) / len(late) if late else 0.0,
        "busiest_second": float(most_in_any_second(arrivals)),
    }


def most_in_any_second(times: Sequence[float]) -> int:
    """The most arrivals in any half-open second ``[t, t + 1)`` (``times`` sorted)."""
    return max(
        (bisect.bisect_left(times, start + 1.0) - i for i, start in enumerate(times)), default=0
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, action="append", help="batchpatch's --rate")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--gateway-rate", type=float, default=200)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--no-token-bucket", action="store_true", help="the sliding window only")
    parser.add_argument(
        "--capacity",
        action="store_true",
        help="first run with no gateway limit at --rate 100000: what this machine manages now",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    options = parser.parse_args(argv)
    runs = [(rate, options.gateway_rate) for rate in options.rate or [s["rate"] for s in SCENARIOS]]
    runs = [(100_000.0, 0.0), *runs] if options.capacity else runs
    results = []
    for rate, gateway_rate in runs:
        figures = run_quota(
            rate,
            options.images,
            gateway_rate,
            concurrency=options.concurrency,
            token_bucket=not options.no_token_bucket,
        )
        results.append(figures)
        print(format_row(figures), flush=True)
    if options.json is not None:
        options.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0 if all(figures.get("exit_code") == 0 for figures in results) else 1


def format_row(figures: dict[str, float]) -> str:
    return (
        f"--rate {figures['rate']:g} vs gateway {figures['gateway_rate']:g}/s, "
        f"{figures['images']:g} images: admitted {figures['admitted_rate']:.1f}/s "
        f"(utilisation {figures['utilisation']:.3f}), throttled "
        f"{figures['throttled_fraction']:.2%} ({figures['throttled_fraction_after_10s']:.2%} "
        f"after 10 s), busiest second {figures['busiest_second']:g}, "
        f"busy {figures['busy_s']:.1f} s, wall {figures['wall_s']:.1f} s "
        f"(client CPU {figures['client_cpu_s']:.1f} s, load {figures['load']:.1f}), "
        f"exit {figures['exit_code']:g}"
    )


if __name__ == "__main__":
    sys.exit(main())
