"""One sheet across two regions: two fake IMS servers on 127.0.0.1, one a region.

Each region gets its own endpoint (``--region-endpoint``), credentials scoped to its own
project (the fakes refuse another project's signature), its own pacer and its own runner;
the regions run side by side over one ledger, journal and report.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from batchpatch.fake import FakeConfig, FakeServer, running_fake
from tests.e2e import run_cli
from tests.sheets import write_sheet
from tests.test_cli import read_report
from tests.test_rate import most_in_any_window

REGION_A, REGION_B = "cn-north-4", "ap-southeast-1"
PROJECT_A, PROJECT_B = "a" * 32, "b" * 32
AK, SK = "HPUAREGIONSTESTKEY01", "regions-test-secret-key-not-real"
AKSK = {"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK}


def images(prefix: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{prefix}-{n}")),
            "name": f"{prefix}-{n:02d}",
            "status": "active",
            "min_ram": 0,
            "__imagetype": "private",
        }
        for n in range(count)
    ]


IMAGES_A, IMAGES_B = images("region-a", 10), images("region-b", 10)


def fake_config(project: str, *, access_key: str = AK, latency: float = 0.05) -> FakeConfig:
    return FakeConfig(access_key=access_key, secret_key=SK, project_id=project, latency=latency)


@contextmanager
def two_regions(
    config_a: FakeConfig | None = None, config_b: FakeConfig | None = None
) -> Iterator[tuple[FakeServer, FakeServer]]:
    """Region A's fake and region B's, each seeded with its own images only."""
    with ExitStack() as stack:
        a = stack.enter_context(running_fake(IMAGES_A, config_a or fake_config(PROJECT_A)))
        b = stack.enter_context(running_fake(IMAGES_B, config_b or fake_config(PROJECT_B)))
        yield a, b


def region_args(a: FakeServer, b: FakeServer) -> list[str]:
    """Region A is the run's own (``--region``); both endpoints point at the fakes; IAM
    (for region B's project id) is region B's fake."""
    return ["--region", REGION_A, *endpoint_args(a.url, b.url, b.url)]


def endpoint_args(a_url: str, b_url: str, iam: str) -> list[str]:
    """Region A's and region B's endpoints, and IAM's."""
    return [
        "--region-endpoint",
        f"{REGION_A}={a_url}",
        "--region-endpoint",
        f"{REGION_B}={b_url}",
        "--iam-endpoint",
        iam,
    ]


def two_region_sheet(path: Path, *, blank_a: bool = True) -> Path:
    """Region A's rows without a region cell (they go where the run goes), region B's
    named, interleaved."""
    rows: list[list[object]] = []
    for image_a, image_b in zip(IMAGES_A, IMAGES_B, strict=True):
        rows.append([image_a["id"], "" if blank_a else REGION_A, f"{image_a['name']}-new"])
        rows.append([image_b["id"], REGION_B, f"{image_b['name']}-new"])
    return write_sheet(path, ["image_id", "Region", "name"], rows)


def aksk(project_a: str = PROJECT_A) -> dict[str, str]:
    return {**AKSK, "HUAWEICLOUD_SDK_PROJECT_ID": project_a}


def test_each_region_gets_only_its_images_its_project_and_its_own_rate(tmp_path: Path) -> None:
    sheet = two_region_sheet(tmp_path / "s.csv")
    summary = tmp_path / "summary.json"
    rate = 10
    with two_regions() as (a, b):
        result = run_cli(
            [
                "apply",
                str(sheet),
                *region_args(a, b),
                "--rate",
                str(rate),
                "--concurrency",
                "2",
                "--summary",
                str(summary),
            ],
            token=None,
            environ=aksk(),
        )
        stats_a, stats_b = a.stats.snapshot(), b.stats.snapshot()
        names_a = {i: image["name"] for i, image in a.store.images.items()}
        names_b = {i: image["name"] for i, image in b.store.images.items()}
    assert result.returncode == 0, result.stderr
    # each fake saw only its own images, and each was changed once
    assert set(stats_a.applied_by_image) == {image["id"] for image in IMAGES_A}
    assert set(stats_b.applied_by_image) == {image["id"] for image in IMAGES_B}
    assert set(stats_a.applied_by_image.values()) == set(stats_b.applied_by_image.values()) == {1}
    assert all(name.endswith("-new") for name in [*names_a.values(), *names_b.values()])
    # signed with each region's project: A's from the environment, B's looked up in IAM
    assert set(stats_a.project_ids) == {PROJECT_A}
    assert set(stats_b.project_ids) == {PROJECT_B}
    assert stats_b.requests_by_kind["projects"] == 1
    # each region under its own rate, counted per rolling second at each fake
    for stats in (stats_a, stats_b):
        ims = [
            t for e, t in zip(stats.log, stats.arrivals, strict=True) if e.path != "/v3/projects"
        ]
        assert most_in_any_window(ims, 1.0) <= rate + 1
    # side by side: region B's requests began before region A's last one arrived, and A's
    # before B's last (both fakes share this process's monotonic clock)
    assert min(stats_b.arrivals) < max(stats_a.arrivals)
    assert min(stats_a.arrivals) < max(stats_b.arrivals)
    # together faster than either rate alone allows: 40 requests (20 a region) started
    # within a span one region at --rate 10 needs at least 3.9 s for
    everything = sorted([*stats_a.arrivals_of("PATCH"), *stats_b.arrivals_of("PATCH")])
    assert most_in_any_window(everything, 1.0) > rate + 1
    report = read_report(tmp_path / "s.results.csv")
    assert set(report["status"]) == {"succeeded"}
    figures = json.loads(summary.read_text())["regions"]
    assert set(figures) == {REGION_A, REGION_B}
    for region, fake_stats in ((REGION_A, stats_a), (REGION_B, stats_b)):
        assert figures[region]["counts"] == {"succeeded": 10}
        assert figures[region]["images"] == 10
        assert (
            figures[region]["requests"]
            == fake_stats.requests_by_kind["patch"] + (fake_stats.requests_by_kind["list"])
        )
        assert figures[region]["stop_reason"] == ""


def test_one_regions_bad_credentials_stop_only_that_region(tmp_path: Path) -> None:
    sheet = two_region_sheet(tmp_path / "s.csv", blank_a=False)
    summary = tmp_path / "summary.json"
    refusing = fake_config(PROJECT_B, access_key="HPUAOTHERACCOUNTKEY9")
    with two_regions(config_b=refusing) as (a, b):
        result = run_cli(
            [
                "apply",
                str(sheet),
                *region_args(a, b),
                "--rate",
                "50",
                "--summary",
                str(summary),
            ],
            token=None,
            environ=aksk(),
        )
        stats_a, stats_b = a.stats.snapshot(), b.stats.snapshot()
    assert result.returncode == 3, result.stderr
    assert f"region {REGION_B}" in result.stderr
    assert set(stats_a.applied_by_image) == {image["id"] for image in IMAGES_A}
    assert not stats_b.applied_by_image
    report = read_report(tmp_path / "s.results.csv")
    by_id = dict(zip(report["image_id"], report["status"], strict=True))
    assert {by_id[image["id"]] for image in IMAGES_A} == {"succeeded"}
    assert {by_id[image["id"]] for image in IMAGES_B} <= {"failed", "not_attempted"}
    figures = json.loads(summary.read_text())["regions"]
    assert figures[REGION_A]["stop_reason"] == ""
    assert figures[REGION_B]["stop_kind"] in {"auth", "read_failed"}
    assert "not sent" in " ".join(report["error_message"])


def test_an_unknown_region_is_located_and_nothing_is_sent(tmp_path: Path) -> None:
    rows = [[IMAGES_A[0]["id"], REGION_A, "x"], [IMAGES_B[0]["id"], "mars-north-1", "y"]]
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "region", "name"], rows)
    with two_regions() as (a, b):
        result = run_cli(["apply", str(sheet), *region_args(a, b)], token=None, environ=aksk())
        sent = a.stats.snapshot().total_requests + b.stats.snapshot().total_requests
    assert result.returncode == 2, result.stderr
    assert f"{sheet}:3:region: unknown region 'mars-north-1' — use one of" in result.stderr
    assert sent == 0


#: Routing cells apply refuses before sending anything (``validate`` too: test_regions_fixes),
#: as (rows, the row at fault, its column, what the message says).
ROUTING_MISTAKES = [
    pytest.param(
        [[IMAGES_A[0]["id"], "my-lab", "", "x"]],
        2,
        "region",
        "unknown region 'my-lab'",
        id="unknown-region",
    ),
    pytest.param(
        [[IMAGES_A[0]["id"], REGION_A, "not-a-project", "x", ""]],
        2,
        "project_id",
        "not a project id",
        id="bad-project-id",
    ),
    pytest.param(
        [[IMAGES_A[0]["id"], REGION_A, "", "x", ""], [IMAGES_A[0]["id"], REGION_B, "", "", "1"]],
        3,
        "region",
        f"which row 2 sends to region {REGION_A}",
        id="two-regions-one-image",
    ),
    pytest.param(
        [
            [IMAGES_A[0]["id"], REGION_B, PROJECT_A, "x"],
            [IMAGES_A[1]["id"], REGION_B, PROJECT_B, "y"],
        ],
        3,
        "project_id",
        "which other rows give project id",
        id="two-projects-one-region",
    ),
]


@pytest.mark.parametrize(("cells", "row", "column", "what"), ROUTING_MISTAKES)
def test_routing_cells_are_checked_where_they_stand(
    tmp_path: Path, cells: list[list[object]], row: int, column: str, what: str
) -> None:
    header = ["image_id", "region", "project_id", "name", "min_ram"]
    sheet = write_sheet(tmp_path / "s.csv", header, cells)
    with two_regions() as (a, b):
        result = run_cli(["apply", str(sheet), *region_args(a, b)], token=None, environ=aksk())
        sent = a.stats.snapshot().total_requests + b.stats.snapshot().total_requests
    assert result.returncode == 2, result.stderr
    assert f"{sheet}:{row}:{column}: " in result.stderr
    assert what in result.stderr
    assert sent == 0


def test_a_premade_token_cannot_serve_a_second_region(tmp_path: Path) -> None:
    sheet = two_region_sheet(tmp_path / "s.csv")
    with two_regions() as (a, b):
        result = run_cli(["apply", str(sheet), *region_args(a, b)])
        sent = a.stats.snapshot().total_requests + b.stats.snapshot().total_requests
    assert result.returncode == 2, result.stderr
    assert f"names the regions {REGION_B}" in result.stderr
    assert "AK/SK" in result.stderr
    assert "IAM password login" in result.stderr
    assert sent == 0


def test_a_custom_key_called_region_is_changed_with_a_slash_or_in_a_long_sheet(
    tmp_path: Path,
) -> None:
    wide = write_sheet(tmp_path / "w.csv", ["image_id", "/region"], [[IMAGES_A[0]["id"], "emea"]])
    long = write_sheet(
        tmp_path / "l.csv",
        ["image_id", "region", "op", "path", "value"],
        [[IMAGES_B[0]["id"], REGION_B, "add", "/region", "apac"]],
    )
    with two_regions() as (a, b):
        results = [
            run_cli(["apply", str(sheet), *region_args(a, b)], token=None, environ=aksk())
            for sheet in (wide, long)
        ]
        image_a, image_b = a.store.images[IMAGES_A[0]["id"]], b.store.images[IMAGES_B[0]["id"]]
    assert [result.returncode for result in results] == [0, 0], results[1].stderr
    assert (image_a["region"], image_b["region"]) == ("emea", "apac")


def test_a_dry_run_names_the_region_of_each_request(tmp_path: Path) -> None:
    sheet = two_region_sheet(tmp_path / "s.csv")
    with two_regions() as (a, b):
        result = run_cli(
            ["apply", str(sheet), *region_args(a, b), "--dry-run"], token=None, environ=aksk()
        )
        applied = a.stats.snapshot().applied_by_image + b.stats.snapshot().applied_by_image
    assert result.returncode == 0, result.stderr
    assert not applied
    assert result.stdout.count(f"# region {REGION_B}\nPATCH {b.url}/v2/cloudimages/") == 10
    assert result.stdout.count(f"# region {REGION_A}\nPATCH {a.url}/v2/cloudimages/") == 10


def test_a_failure_threshold_stops_its_own_region_only(tmp_path: Path) -> None:
    sheet = two_region_sheet(tmp_path / "s.csv")
    failing_b = FakeConfig(project_id=PROJECT_B, script={IMAGES_B[0]["id"]: ["IMG.0060"]})
    with two_regions(config_b=failing_b) as (a, b):
        result = run_cli(
            [
                "apply",
                str(sheet),
                *region_args(a, b),
                "--rate",
                "100",
                "--max-attempts",
                "1",
                "--max-failures",
                "1",
            ],
            token=None,
            environ=aksk(),
        )
        applied_a, applied_b = (
            a.stats.snapshot().applied_by_image,
            b.stats.snapshot().applied_by_image,
        )
    # one failure in region B stops region B; region A, which had none, finishes
    assert result.returncode == 3, result.stderr
    assert f"region {REGION_B}: 1 images failed (--max-failures 1)" in result.stderr
    assert set(applied_a) == {image["id"] for image in IMAGES_A}
    assert not applied_b  # B's first PATCH goes alone, fails, and stops the region
    report = read_report(tmp_path / "s.results.csv")
    statuses = dict(zip(report["image_id"], report["status"], strict=True))
    assert statuses[IMAGES_B[0]["id"]] == "failed"
    assert {statuses[image["id"]] for image in IMAGES_B[1:]} == {"not_attempted"}


def test_plan_reads_each_region_and_apply_sends_the_saved_plan(tmp_path: Path) -> None:
    sheet = two_region_sheet(tmp_path / "s.csv")
    saved = tmp_path / "plan.json"
    with two_regions() as (a, b):
        planned = run_cli(
            ["plan", str(sheet), *region_args(a, b), "--out", str(saved)],
            token=None,
            environ=aksk(),
        )
        applied = run_cli(
            ["apply", str(sheet), *region_args(a, b), "--plan", str(saved)],
            token=None,
            environ=aksk(),
        )
        stats_a, stats_b = a.stats.snapshot(), b.stats.snapshot()
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.count(f"[{REGION_B}] ") == len(IMAGES_B)
    assert planned.stdout.count(f"[{REGION_A}] ") == len(IMAGES_A)
    assert applied.returncode == 0, applied.stderr
    assert set(stats_a.applied_by_image) == {image["id"] for image in IMAGES_A}
    assert set(stats_b.applied_by_image) == {image["id"] for image in IMAGES_B}


def test_an_iam_login_gets_one_token_a_region_and_aksk_one_project_a_region(
    tmp_path: Path,
) -> None:
    from batchpatch.auth import AkSkAuth, PasswordAuth
    from batchpatch.credentials import Target
    from batchpatch.routing import route
    from batchpatch.sheet import read_sheet

    rows = [[IMAGES_A[0]["id"], "", "", "x"], [IMAGES_B[0]["id"], REGION_B, PROJECT_B, "y"]]
    sheet = read_sheet(
        write_sheet(tmp_path / "s.csv", ["image_id", "region", "project_id", "name"], rows)
    )
    login = PasswordAuth("https://iam.example", "ops", "pw", "acme", project_name=REGION_A)
    routes = route(sheet, Target("https://ims.a", "https://iam.example", login, REGION_A))
    assert routes is not None
    auth_a, auth_b = (routes.targets[r].auth for r in (REGION_A, REGION_B))
    assert isinstance(auth_b, PasswordAuth)
    assert auth_a is login
    assert auth_b is not login
    assert (auth_b.project_name, auth_b.project_id, auth_b.user) == (REGION_B, PROJECT_B, "ops")
    keys = AkSkAuth(AK, SK, PROJECT_A)
    routes = route(sheet, Target("https://ims.a", "https://iam.example", keys, REGION_A))
    assert routes is not None
    assert [routes.targets[r].auth.project_id for r in (REGION_A, REGION_B)] == [
        PROJECT_A,
        PROJECT_B,
    ]
    assert routes.targets[REGION_B].endpoint == f"https://ims.{REGION_B}.myhuaweicloud.com"


def test_export_of_two_regions_is_one_sheet_that_applies_back_untouched(tmp_path: Path) -> None:
    out = tmp_path / "all.csv"
    with two_regions() as (a, b):
        exported = run_cli(
            [
                "export",
                "--out",
                str(out),
                "--region",
                REGION_A,
                "--region",
                REGION_B,
                *region_args(a, b)[2:],
            ],
            token=None,
            environ=aksk(),
        )
        applied = run_cli(["apply", str(out), *region_args(a, b)], token=None, environ=aksk())
        patched = a.stats.snapshot().patch_requests + b.stats.snapshot().patch_requests
    assert exported.returncode == 0, exported.stderr
    table = read_report(out)
    assert table.columns[:2].tolist() == ["image_id", "region"]
    regions = dict(zip(table["image_id"], table["region"], strict=True))
    assert regions == {
        **{image["id"]: REGION_A for image in IMAGES_A},
        **{image["id"]: REGION_B for image in IMAGES_B},
    }
    assert applied.returncode == 0, applied.stderr
    assert patched == 0


def test_the_undo_of_a_two_region_run_goes_back_to_each_region(tmp_path: Path) -> None:
    sheet = two_region_sheet(tmp_path / "s.csv", blank_a=False)
    with two_regions(fake_config(PROJECT_A, latency=0), fake_config(PROJECT_B, latency=0)) as (
        a,
        b,
    ):
        before = {
            i: image["name"] for i, image in [*a.store.images.items(), *b.store.images.items()]
        }
        args = [*region_args(a, b), "--rate", "1000"]
        done = run_cli(["apply", str(sheet), *args], token=None, environ=aksk())
        assert done.returncode == 0, done.stderr
        undo = tmp_path / "s.undo.csv"
        undo_rows = read_report(undo)
        assert set(undo_rows["region"]) == {REGION_A, REGION_B}

        done = run_cli(["apply", str(undo), *args], token=None, environ=aksk())

        assert done.returncode == 0, done.stderr
        after = {
            i: image["name"] for i, image in [*a.store.images.items(), *b.store.images.items()]
        }
        assert after == before
        assert b.stats.snapshot().applied_by_image.total() == 20  # each B image twice, none of A's
        assert set(b.stats.snapshot().applied_by_image) == {image["id"] for image in IMAGES_B}
