"""How many calls the read pass costs, counted at the fake server, by sheet size."""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import pytest

from batchpatch import inventory
from batchpatch.auth import TokenAuth
from batchpatch.fake import FakeConfig, running_fake
from batchpatch.inventory import BY_ID_LIMIT, PAGE_SIZE
from batchpatch.job import make_plan
from batchpatch.models import Limits
from tests.e2e import TOKEN, run_cli
from tests.sheets import write_sheet

ACCOUNT_SIZE = 1_200


def account(size: int) -> list[dict[str, Any]]:
    return [
        {
            "id": str(uuid.UUID(int=n + 1, version=4)),
            "name": f"image-{n}",
            "status": "active",
            "min_ram": 0,
        }
        for n in range(size)
    ]


@pytest.mark.parametrize(
    ("rows", "expected_calls"),
    [
        pytest.param(10, 10, id="10-rows-by-id"),
        pytest.param(BY_ID_LIMIT, BY_ID_LIMIT, id="at-the-limit-by-id"),
        pytest.param(BY_ID_LIMIT + 1, math.ceil(ACCOUNT_SIZE / PAGE_SIZE), id="paged"),
        pytest.param(1_000, math.ceil(ACCOUNT_SIZE / PAGE_SIZE), id="1000-rows-paged"),
    ],
)
def test_read_pass_call_count(tmp_path: Path, rows: int, expected_calls: int) -> None:
    images = account(ACCOUNT_SIZE)
    # Spread the sheet's images over the whole account, so paging cannot stop early.
    chosen = [*images[:: ACCOUNT_SIZE // rows][: rows - 1], images[-1]]
    sheet = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "name"],
        [[image["id"], f"renamed-{n}"] for n, image in enumerate(chosen)],
    )
    with running_fake(images, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(
            ["plan", str(sheet), "--endpoint", fake.url, "--rate", "1000", "--concurrency", "16"]
        )
        stats = fake.stats.snapshot()
    assert done.returncode == 0, done.stderr
    assert stats.list_requests == expected_calls
    assert stats.patch_requests == 0
    assert done.stdout.splitlines()[-1] == f"{rows} images: {rows} update"


def test_paging_stops_once_every_image_is_found(tmp_path: Path) -> None:
    images = account(ACCOUNT_SIZE)
    chosen = images[: BY_ID_LIMIT + 1]  # all on the first page
    sheet = write_sheet(
        tmp_path / "s.csv", ["image_id", "name"], [[image["id"], "x"] for image in chosen]
    )
    with running_fake(images, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(["plan", str(sheet), "--endpoint", fake.url, "--rate", "1000"])
        assert fake.stats.list_requests == 1
    assert done.returncode == 0, done.stderr


def test_an_unreadable_account_stops_the_run_with_exit_3_and_a_full_report(
    tmp_path: Path,
) -> None:
    images = account(3)
    sheet = write_sheet(
        tmp_path / "s.csv", ["image_id", "name"], [[image["id"], "x"] for image in images]
    )
    with running_fake(images, FakeConfig(token="the-right-one")) as fake:
        done = run_cli(["apply", str(sheet), "--endpoint", fake.url], token="a-stale-one")
        stats = fake.stats.snapshot()
    assert done.returncode == 3
    assert stats.patch_requests == 0
    assert "could not read the current images: HTTP 401 APIGW.0301" in done.stderr
    report = (tmp_path / "s.results.csv").read_text()
    assert report.count("not_attempted") == 3


@pytest.mark.slow
@pytest.mark.anyio
async def test_read_pass_for_100000_rows_pages_the_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100,000 rows cost ⌈account / page size⌉ calls, not 100,000, and every image is
    planned.  Pages of 5,000 instead of 500 keep the test cheap: the calls the real page
    size costs are counted by ``test_read_pass_call_count``."""
    page_size = 5_000
    monkeypatch.setattr(inventory, "PAGE_SIZE", page_size)
    size = 100_000
    images = account(size + 1_000)
    path = tmp_path / "big.csv"
    path.write_text(
        "image_id,name\n"
        + "".join(f"{image['id']},big-{n}\n" for n, image in enumerate(images[1_000:]))
    )
    with running_fake(images) as fake:
        plans = await make_plan(
            path, endpoint=fake.url, auth=TokenAuth("t"), limits=Limits(concurrency=4, rate=1_000)
        )
        stats = fake.stats.snapshot()
    assert stats.list_requests == math.ceil((size + 1_000) / page_size)  # 21 calls
    assert len(plans) == size
    assert all(plan.status is None for plan in plans)
