"""The rate limit end to end: the real CLI against the fake IMS, judged by arrival times only.

The limiter spaces request *starts* in the CLI's process; what matters to the service is when
requests *arrive*, so every check here reads the fake's arrival log (``time.monotonic()`` as the
server began each request).  The checks only ever say "never faster than allowed": how fast
the tool manages to go is not tested.

A run reads the images it names before it patches them, and reads and writes share one rate
(they share the service's quota), so the limits are checked on all requests and on the
PATCHes alone.
"""

from __future__ import annotations

import bisect
import itertools
import random
import uuid
from pathlib import Path
from typing import Any

import pytest

from batchpatch.fake import FakeConfig, running_fake
from tests.e2e import TOKEN, run_cli
from tests.sheets import write_sheet

#: Real processes and wall-clock rates: run by `.ci/run` (`pytest -m process`), not by the
#: README's quick command, which must stay under 90 s on two cores.
pytestmark = pytest.mark.process

#: Seconds of PATCHes per run at the full rate: over one, so one-second windows of PATCHes
#: alone could overflow, yet short enough to keep the module quick.
PATCH_SECONDS = 1.5
#: Arrival times carry the jitter of two event loops and a socket between limiter and server,
#: on a 2-core machine whose other core runs other tests (pytest-xdist); this much, in all, is
#: forgiven over any span of arrivals.  A burst would be off by most of a second, not by this.
JITTER = 0.050
WINDOW = 1.0


def make_images(count: int, seed: int = 2026) -> list[dict[str, Any]]:
    """``count`` active images with lowercase UUID ids, the same ones on every run."""
    rng = random.Random(seed)
    return [
        {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "name": f"rate-base-{number:03d}",
            "status": "active",
            "visibility": "private",
            "min_ram": 0,
            "min_disk": 40,
            "__os_type": "Linux",
            "__imagetype": "private",
            "created_at": "2026-01-01T08:00:00Z",
            "updated_at": "2026-01-01T08:00:00Z",
            "tags": [],
        }
        for number in range(count)
    ]


def most_in_any_window(times: list[float], window: float) -> int:
    """The most arrivals in any half-open span ``[t, t + window)``.

    A busiest span can always be slid right until it starts at an arrival, so only those
    starts need checking.
    """
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, start + window) - i for i, start in enumerate(ordered)),
        default=0,
    )


def assert_never_faster_than(rate: int, arrivals: list[float], what: str) -> None:
    gaps_ms = [round((b - a) * 1000, 1) for a, b in itertools.pairwise(arrivals)]

    # (a) no span of one second holds more than the rate allows (+1 for clock granularity)
    busiest = most_in_any_window(arrivals, WINDOW)
    assert busiest <= rate + 1, f"{busiest} {what} arrived within 1 s; gaps (ms): {gaps_ms}"

    # (b) no burst, at start-up or later: any k arrivals in a row, the first k included,
    # are spread over at least (k - 1) / rate seconds
    k = min(rate, len(arrivals))
    for first in range(len(arrivals) - k + 1):
        spread = arrivals[first + k - 1] - arrivals[first]
        assert spread >= (k - 1) / rate - JITTER, (
            f"{what} {first + 1}..{first + k} arrived within {spread * 1000:.1f} ms, "
            f"not {(k - 1) / rate * 1000:.0f} ms; gaps (ms): {gaps_ms}"
        )


@pytest.mark.parametrize(
    ("rate", "concurrency", "latency"),
    [
        pytest.param(20, 8, 0.0, id="r20-c8"),
        pytest.param(10, 2, 0.15, id="r10-c2-slow-server"),
        pytest.param(50, 50, 0.0, id="r50-c50"),
    ],
)
def test_rate_limit_holds_at_the_server(
    tmp_path: Path, rate: int, concurrency: int, latency: float
) -> None:
    count = round(PATCH_SECONDS * rate)
    images = make_images(count)
    ids = [image["id"] for image in images]
    names = [f"renamed-{n:03d}" for n in range(count)]
    sheet = write_sheet(
        tmp_path / "renames.csv",
        ["image_id", "name"],
        [[i, n] for i, n in zip(ids, names, strict=True)],
    )
    with running_fake(images, FakeConfig(token=TOKEN, latency=latency)) as fake:
        # A real process: in this one the client would share the interpreter with the fake's
        # thread, whose arrival times would then bunch up whenever the client held it.
        done = run_cli(
            [
                "apply",
                str(sheet),
                "--endpoint",
                fake.url,
                "--quiet",
                "--rate",
                str(rate),
                "--concurrency",
                str(concurrency),
            ],
            in_process=False,
        )
        stats = fake.stats.snapshot()
        state = fake.store.images
    assert done.returncode == 0, done.stderr

    # (c) every image patched exactly once, never two at a time, within the concurrency cap
    assert stats.patches_by_image == dict.fromkeys(ids, 1)
    assert stats.overlaps == 0
    assert stats.max_in_flight <= concurrency
    assert [state[image_id]["name"] for image_id in ids] == names

    assert_never_faster_than(rate, list(stats.arrivals), "requests")
    assert_never_faster_than(rate, stats.arrivals_of("PATCH"), "PATCHes")
