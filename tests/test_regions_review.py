"""The corners of a run across regions: a stop (what a signal does) and a resume of both
regions, a plan one region refuses, a region ``--only`` leaves no row, progress lines
counting every region, and tags signed and addressed with each region's project."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import anyio

from batchpatch.auth import AkSkAuth
from batchpatch.credentials import Target
from batchpatch.fake import FakeConfig, FakeServer, running_fake
from batchpatch.job import RunResult, apply_sheet
from batchpatch.ledger import Ledger
from batchpatch.models import Limits, Outcome
from batchpatch.progress import ProgressLines
from batchpatch.routing import route
from batchpatch.sheet import read_sheet
from batchpatch.telemetry import Telemetry
from tests.e2e import run_cli
from tests.sheets import write_sheet
from tests.test_cli import read_report
from tests.test_regions import (
    AK,
    IMAGES_A,
    IMAGES_B,
    PROJECT_A,
    PROJECT_B,
    REGION_A,
    REGION_B,
    SK,
    aksk,
    fake_config,
    images,
    region_args,
    two_region_sheet,
    two_regions,
)


def apply_two(
    sheet: Path,
    a: FakeServer,
    b: FakeServer,
    *,
    stop_after: int | None = None,
    ledger: Ledger | None = None,
    telemetry: Telemetry | None = None,
) -> RunResult:
    """``apply_sheet`` across both fakes (region A the run's own, AK/SK with its project;
    region B's project looked up in B's IAM), at one request at a time a region; with
    ``stop_after``, the run's stop is set (as a signal sets it) after that many outcomes."""
    read = read_sheet(sheet)
    base = Target(a.url, b.url, AkSkAuth(AK, SK, PROJECT_A), REGION_A)
    routes = route(read, base, {REGION_A: a.url, REGION_B: b.url})
    assert routes is not None
    stop = anyio.Event()
    seen: list[Outcome] = []

    def count(outcome: Outcome) -> None:
        seen.append(outcome)
        if stop_after is not None and len(seen) >= stop_after:
            stop.set()

    async def run() -> RunResult:
        return await apply_sheet(
            read,
            endpoint=a.url,
            auth=base.auth,
            limits=Limits(concurrency=1, rate=100),
            routes=routes,
            stop=stop,
            on_outcome=count,
            ledger=ledger,
            telemetry=telemetry,
        )

    return anyio.run(run)


def report_statuses(path: Path) -> dict[str, str]:
    report = read_report(path)
    return dict(zip(report["image_id"], report["status"], strict=True))


def test_a_stop_stops_both_regions_and_a_rerun_resumes_both(tmp_path: Path) -> None:
    sheet = two_region_sheet(tmp_path / "s.csv")
    journal = tmp_path / "s.results.csv.journal"
    slow_a, slow_b = fake_config(PROJECT_A, latency=0.05), fake_config(PROJECT_B, latency=0.05)
    with two_regions(slow_a, slow_b) as (a, b):
        stopped = apply_two(sheet, a, b, stop_after=4)
        first = a.stats.snapshot().applied_by_image, b.stats.snapshot().applied_by_image
        assert journal.exists()
        statuses = report_statuses(tmp_path / "s.results.csv")
        resumed = apply_two(sheet, a, b)
        stats_a, stats_b = a.stats.snapshot(), b.stats.snapshot()
    assert stopped.exit_code == 3
    assert stopped.stop is not None
    figures = {f.region: f for f in stopped.regions}
    assert figures[REGION_A].stop_reason  # both stopped
    assert figures[REGION_B].stop_reason
    assert len(first[0]) < len(IMAGES_A)
    assert len(first[1]) < len(IMAGES_B)
    assert "not_attempted" in {statuses[image["id"]] for image in IMAGES_A}
    assert "not_attempted" in {statuses[image["id"]] for image in IMAGES_B}
    assert resumed.exit_code == 0, resumed.stop_reason
    for stats, region_images in ((stats_a, IMAGES_A), (stats_b, IMAGES_B)):
        assert set(stats.applied_by_image) == {image["id"] for image in region_images}
        assert set(stats.applied_by_image.values()) == {1}  # nothing applied twice
    assert not journal.exists()


def test_a_plan_one_region_refuses_sends_nothing_in_any_region(tmp_path: Path) -> None:
    """Region B's first image already has the ten tags IMS allows; the sheet adds one
    more: the plan refuses it (exit 2), and region A — whose read pass is done long before
    region B's — sends nothing either."""
    full = [f"k{n}=v{n}" for n in range(10)]
    images_b = [{**IMAGES_B[0], "tags": full}, *IMAGES_B[1:]]
    rows = [[image["id"], "", f"{image['name']}-new", ""] for image in IMAGES_A]
    rows.append([IMAGES_B[0]["id"], REGION_B, "", "extra"])
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "region", "name", "tag:new"], rows)
    with (
        running_fake(IMAGES_A, fake_config(PROJECT_A, latency=0)) as a,
        running_fake(images_b, fake_config(PROJECT_B, latency=0.3)) as b,
    ):
        done = run_cli(["apply", str(sheet), *region_args(a, b)], token=None, environ=aksk())
        patched_a = a.stats.snapshot().patch_requests
        written_b = b.stats.snapshot().patch_requests + b.stats.snapshot().tag_write_requests
    assert done.returncode == 2, done.stderr
    assert f"{sheet}:{len(rows) + 1}:" in done.stderr
    assert "Traceback" not in done.stderr
    assert patched_a == written_b == 0


def test_only_leaves_a_region_without_rows_alone(tmp_path: Path) -> None:
    """The second run feeds the report back with ``--only failed``: only region B had a
    failure, so region A's fake is not contacted at all, and the summary says A had no
    image in that run."""
    sheet = two_region_sheet(tmp_path / "s.csv", blank_a=False)
    failing = fake_config(PROJECT_B)
    failing = FakeConfig(
        access_key=failing.access_key,
        secret_key=failing.secret_key,
        project_id=PROJECT_B,
        script={IMAGES_B[0]["id"]: ["IMG.0060"]},
    )
    report = tmp_path / "s.results.csv"
    with two_regions(config_b=failing) as (a, b):
        args = [*region_args(a, b), "--rate", "200", "--max-attempts", "1"]
        first = run_cli(["apply", str(sheet), *args], token=None, environ=aksk())
        before_a = a.stats.snapshot().total_requests
        again = tmp_path / "again.csv"
        again.write_bytes(report.read_bytes())
        summary = tmp_path / "summary.json"
        second = run_cli(
            ["apply", str(again), *args, "--only", "failed", "--summary", str(summary)],
            token=None,
            environ=aksk(),
        )
        after_a = a.stats.snapshot().total_requests
        applied_b = b.stats.snapshot().applied_by_image
    assert first.returncode == 1, first.stderr
    assert second.returncode == 0, second.stderr
    assert after_a == before_a  # region A: nothing asked, not even a read
    assert applied_b[IMAGES_B[0]["id"]] == 1
    figures = json.loads(summary.read_text(encoding="utf-8"))["regions"]
    assert figures[REGION_A]["images"] == 0
    assert figures[REGION_A]["requests"] == 0
    assert figures[REGION_B]["images"] == 1
    rows = read_report(tmp_path / "again.results.csv")
    assert set(rows["status"]) == {"succeeded"}
    assert len(rows) == len(IMAGES_A) + len(IMAGES_B)


def test_progress_lines_count_every_regions_images(tmp_path: Path) -> None:
    sheet = two_region_sheet(tmp_path / "s.csv")
    throttling = fake_config(PROJECT_B, latency=0)
    throttling = FakeConfig(
        access_key=throttling.access_key,
        secret_key=throttling.secret_key,
        project_id=PROJECT_B,
        script={IMAGES_B[1]["id"]: ["429"]},
    )
    ledger, telemetry = Ledger(), Telemetry()
    lines = ProgressLines(ledger, len(IMAGES_A) + len(IMAGES_B), lambda: telemetry.throttled)
    lines.listen()
    with two_regions(fake_config(PROJECT_A, latency=0), throttling) as (a, b):
        result = apply_two(sheet, a, b, ledger=ledger, telemetry=telemetry)
        throttled = a.stats.snapshot().faults["429"] + b.stats.snapshot().faults["429"]
    assert result.exit_code == 0, result.stop_reason
    fields = lines.fields()
    assert (fields["done"], fields["total"]) == (20, 20)
    assert fields["counts"] == {"succeeded": 20}
    assert fields["throttled"] == throttled == 1


def test_tags_in_two_regions_use_each_regions_project(tmp_path: Path) -> None:
    """Tag writes go to ``/v2/{project_id}/images/…/tags`` of each region's own project
    (the fakes refuse any other); region A's rows need no tag, so region A never asks for
    a project id (only region B's is looked up, once)."""
    tagged_b = images("tagged-b", 3)
    rows = [[image["id"], "", f"{image['name']}-new", ""] for image in IMAGES_A[:3]]
    rows += [[image["id"], REGION_B, "", "prod"] for image in tagged_b]
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "region", "name", "tag:env"], rows)
    with (
        running_fake(IMAGES_A, fake_config(PROJECT_A, latency=0)) as a,
        running_fake(tagged_b, fake_config(PROJECT_B, latency=0)) as b,
    ):
        environ = {k: v for k, v in aksk().items() if k != "HUAWEICLOUD_SDK_PROJECT_ID"}
        done = run_cli(
            ["apply", str(sheet), *region_args(a, b), "--rate", "200"],
            token=None,
            environ=environ,
        )
        stats_a, stats_b = a.stats.snapshot(), b.stats.snapshot()
        tags_b = {i: b.store.image_tags(i) for i in (image["id"] for image in tagged_b)}
    assert done.returncode == 0, done.stderr
    assert tags_b == {image["id"]: {"env": "prod"} for image in tagged_b}
    tag_paths = {e.path for e in stats_b.log if "/tags" in e.path}
    assert tag_paths
    assert all(p.startswith(f"/v2/{PROJECT_B}/images/") for p in tag_paths)
    assert stats_b.requests_by_kind["projects"] == 1  # region B's lookup, not region A's
    assert stats_a.requests_by_kind["projects"] == 0
    assert not [e for e in stats_a.log if "/tags" in e.path]


def test_a_region_id_that_is_random_never_reaches_a_fake(tmp_path: Path) -> None:
    """An image id routed to region B that region B does not have fails in region B only
    (it is not looked for in region A)."""
    stranger = str(uuid.uuid4())
    rows: list[list[Any]] = [[IMAGES_A[0]["id"], "", "x"], [stranger, REGION_B, "y"]]
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "region", "name"], rows)
    with two_regions() as (a, b):
        done = run_cli(["apply", str(sheet), *region_args(a, b)], token=None, environ=aksk())
        paths_a = [e.path for e in a.stats.snapshot().log]
    assert done.returncode == 1, done.stderr
    assert not [p for p in paths_a if stranger in p]
    statuses = report_statuses(tmp_path / "s.results.csv")
    assert statuses[IMAGES_A[0]["id"]] == "succeeded"
    assert statuses[stranger] == "failed"
