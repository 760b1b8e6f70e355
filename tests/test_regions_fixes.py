"""What a hostile review of the run across regions found, each pinned against two fake IMS
servers on 127.0.0.1 (region A the run's own, region B another): the undo sheet carries
each row's project id, ``validate`` refuses what ``apply`` refuses, one region's
credentials failing in ``plan`` is exit 3 for that region only, a blank region cell and
the run's own region's name are one region, the run's own region always has a name, and
``export`` gives the configured project id to the configured region only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchpatch.fake import running_fake
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
    ROUTING_MISTAKES,
    SK,
    aksk,
    endpoint_args,
    fake_config,
    region_args,
    two_region_sheet,
    two_regions,
)

OTHER_KEY = "HPUAOTHERACCOUNTKEY9"  # an access key neither region's IAM knows
FAST = ["--rate", "1000"]


def names(*fakes: object) -> dict[str, str]:
    return {i: image["name"] for fake in fakes for i, image in fake.store.images.items()}  # type: ignore[attr-defined]


def sheet_with_projects(path: Path) -> Path:
    """Both regions named, each row with its region's project id."""
    rows = [[i["id"], REGION_A, PROJECT_A, f"{i['name']}-new"] for i in IMAGES_A]
    rows += [[i["id"], REGION_B, PROJECT_B, f"{i['name']}-new"] for i in IMAGES_B]
    return write_sheet(path, ["image_id", "region", "project_id", "name"], rows)


def with_iam(a_url: str, b_url: str, iam: str) -> list[str]:
    return ["--region", REGION_A, *endpoint_args(a_url, b_url, iam)]


# 1. the undo sheet carries each row's project id ------------------------------------------


def test_the_undo_of_a_run_with_project_ids_from_the_sheet_needs_no_iam(tmp_path: Path) -> None:
    sheet = sheet_with_projects(tmp_path / "s.csv")
    refusing_iam = fake_config(PROJECT_B, access_key=OTHER_KEY, latency=0)
    with (
        two_regions(fake_config(PROJECT_A, latency=0), fake_config(PROJECT_B, latency=0)) as (a, b),
        running_fake([], refusing_iam) as iam,
    ):
        before = names(a, b)
        args = [*with_iam(a.url, b.url, iam.url), *FAST]
        done = run_cli(["apply", str(sheet), *args], token=None, environ=aksk())
        assert done.returncode == 0, done.stderr
        undo = tmp_path / "s.undo.csv"
        rows = read_report(undo)
        undone = run_cli(["apply", str(undo), *args], token=None, environ=aksk())
        after = names(a, b)
        iam_requests = iam.stats.snapshot().total_requests
    assert rows.columns.tolist() == ["image_id", "op", "path", "value", "region", "project_id"]
    projects = dict(zip(rows["region"], rows["project_id"], strict=True))
    assert projects == {REGION_A: PROJECT_A, REGION_B: PROJECT_B}
    assert undone.returncode == 0, undone.stderr
    assert after == before
    assert iam_requests == 0


def test_the_undo_carries_the_project_id_looked_up_in_iam(tmp_path: Path) -> None:
    sheet = two_region_sheet(tmp_path / "s.csv", blank_a=False)
    with two_regions(fake_config(PROJECT_A, latency=0), fake_config(PROJECT_B, latency=0)) as (
        a,
        b,
    ):
        done = run_cli(["apply", str(sheet), *region_args(a, b), *FAST], token=None, environ=aksk())
    assert done.returncode == 0, done.stderr
    rows = read_report(tmp_path / "s.undo.csv")
    projects = dict(zip(rows["region"], rows["project_id"], strict=True))
    assert projects == {REGION_A: PROJECT_A, REGION_B: PROJECT_B}


def test_a_failed_lookup_says_where_another_regions_project_id_goes(tmp_path: Path) -> None:
    sheet = two_region_sheet(tmp_path / "s.csv", blank_a=False)
    refusing_iam = fake_config(PROJECT_B, access_key=OTHER_KEY, latency=0)
    with two_regions() as (a, b), running_fake([], refusing_iam) as iam:
        done = run_cli(
            ["apply", str(sheet), *with_iam(a.url, b.url, iam.url), *FAST],
            token=None,
            environ=aksk(),
        )
    assert done.returncode == 3, done.stderr
    lines = [line for line in done.stderr.splitlines() if "cannot look up" in line]
    assert lines
    for line in lines:
        assert_hint(line)


def assert_hint(line: str) -> None:
    assert f"region {REGION_B}" in line
    assert "the sheet's project_id column" in line
    assert f"[profiles.NAME.regions.{REGION_B}]" in line
    assert "HUAWEICLOUD_SDK_PROJECT_ID" not in line


# 3. validate refuses what apply refuses ----------------------------------------------------


@pytest.mark.parametrize(("cells", "row", "column", "what"), ROUTING_MISTAKES)
def test_validate_refuses_the_routing_cells_apply_refuses(
    tmp_path: Path, cells: list[list[object]], row: int, column: str, what: str
) -> None:
    header = ["image_id", "region", "project_id", "name", "min_ram"]
    sheet = write_sheet(tmp_path / "s.csv", header, [[*row, ""][:5] for row in cells])
    validated = run_cli(["validate", str(sheet)], token=None)  # apply: test_regions
    assert validated.returncode == 2, validated.stderr
    assert f"{sheet}:{row}:{column}: " in validated.stderr
    assert what in validated.stderr


def test_validate_knows_a_region_given_an_endpoint_and_the_runs_own_region(
    tmp_path: Path,
) -> None:
    image = IMAGES_A[0]["id"]
    custom = write_sheet(
        tmp_path / "c.csv", ["image_id", "region", "name"], [[image, "my-lab", "x"]]
    )
    long = write_sheet(
        tmp_path / "l.csv",
        ["image_id", "region", "op", "path", "value"],
        [[image, "", "replace", "/name", "x"], [image, REGION_A, "replace", "/min_ram", "1"]],
    )
    lab = run_cli(
        ["validate", str(custom), "--region-endpoint", "my-lab=https://ims.lab.example"],
        token=None,
    )
    own = run_cli(["validate", str(long), "--region", REGION_A], token=None)
    unnamed = run_cli(["validate", str(long)], token=None)
    assert lab.returncode == 0, lab.stderr
    assert own.returncode == 0, own.stderr
    assert unnamed.returncode == 2
    assert "--region or the profile's region names it" in unnamed.stderr


# 4. one region's credentials failing in plan: exit 3, the other region still planned ------


def test_plan_of_a_region_whose_iam_lookup_is_refused_exits_3_and_plans_the_other(
    tmp_path: Path,
) -> None:
    sheet = two_region_sheet(tmp_path / "s.csv", blank_a=False)
    out = tmp_path / "plan.json"
    refusing_iam = fake_config(PROJECT_B, access_key=OTHER_KEY, latency=0)
    with two_regions() as (a, b), running_fake([], refusing_iam) as iam:
        done = run_cli(
            ["plan", str(sheet), *with_iam(a.url, b.url, iam.url), "--out", str(out)],
            token=None,
            environ=aksk(),
        )
    assert done.returncode == 3, done.stderr
    planned = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert len([line for line in planned if line.startswith(f"[{REGION_A}]")]) == 10
    assert not [line for line in planned if line.startswith(f"[{REGION_B}]")]
    assert f"region {REGION_B}: cannot look up the project id" in done.stderr
    assert f"1 region(s) not planned ({REGION_B})" in done.stderr
    assert not out.exists()


def test_plan_of_a_region_that_refuses_the_credentials_exits_3(tmp_path: Path) -> None:
    sheet = sheet_with_projects(tmp_path / "s.csv")
    with two_regions(config_b=fake_config(PROJECT_B, access_key=OTHER_KEY)) as (a, b):
        done = run_cli(["plan", str(sheet), *region_args(a, b)], token=None, environ=aksk())
    assert done.returncode == 3, done.stderr
    assert f"[{REGION_A}]" in done.stdout
    assert f"region {REGION_B}: could not read the current images: HTTP 401" in done.stderr


# 9. a blank region cell and the run's own region's name are one region ---------------------


def test_a_blank_cell_and_the_runs_own_region_are_one_region(tmp_path: Path) -> None:
    image = IMAGES_A[0]
    rows = [
        [image["id"], "", "replace", "/name", "renamed"],
        [image["id"], REGION_A, "replace", "/min_ram", "512"],
        [IMAGES_B[0]["id"], REGION_B, "replace", "/name", "renamed-b"],
    ]
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "region", "op", "path", "value"], rows)
    with two_regions() as (a, b):
        done = run_cli(["apply", str(sheet), *region_args(a, b), *FAST], token=None, environ=aksk())
        changed = a.store.images[image["id"]]
        patches = a.stats.snapshot().applied_by_image
    assert done.returncode == 0, done.stderr
    assert (changed["name"], changed["min_ram"]) == ("renamed", 512)
    assert patches[image["id"]] == 1


# 10. the run's own region always has a name ------------------------------------------------


def test_without_region_the_runs_own_region_is_named_by_its_endpoint(tmp_path: Path) -> None:
    sheet = two_region_sheet(tmp_path / "s.csv")
    summary = tmp_path / "summary.json"
    with two_regions(fake_config(PROJECT_A, latency=0), fake_config(PROJECT_B, latency=0)) as (
        a,
        b,
    ):
        before = names(a, b)
        args = ["--endpoint", a.url, *region_args(a, b)[2:], *FAST]
        label = a.url.split("://", 1)[1].rstrip("/")
        planned = run_cli(["plan", str(sheet), *args], token=None, environ=aksk())
        done = run_cli(
            ["apply", str(sheet), *args, "--summary", str(summary)], token=None, environ=aksk()
        )
        undo = read_report(tmp_path / "s.undo.csv")
        undone = run_cli(["apply", str(tmp_path / "s.undo.csv"), *args], token=None, environ=aksk())
        after = names(a, b)
    assert planned.returncode == 0, planned.stderr
    assert f"[{label}] " in planned.stdout
    assert done.returncode == 0, done.stderr
    assert f"regions: {label} (10 images), {REGION_B} (10 images)" in done.stderr
    assert set(json.loads(summary.read_text())["regions"]) == {label, REGION_B}
    # the label is no region: the undo sheet leaves the run's own region's cells blank
    assert set(undo["region"].fillna("")) == {"", REGION_B}
    assert undone.returncode == 0, undone.stderr
    assert after == before


# 12a. export gives the configured project id to the configured region only ---------------


def export_args(a_url: str, b_url: str, out: Path) -> list[str]:
    regions = ["--region", REGION_B, "--region", REGION_A]
    return ["export", "--out", str(out), *regions, *endpoint_args(a_url, b_url, b_url)]


def test_export_names_the_region_its_configured_project_id_failed_in(tmp_path: Path) -> None:
    out = tmp_path / "all.csv"
    with two_regions() as (a, b):
        done = run_cli(export_args(a.url, b.url, out), token=None, environ=aksk())
    assert done.returncode == 3, done.stderr
    assert f"Error: region {REGION_B}: could not read the current images" in done.stderr
    assert "the first --region" in done.stderr
    assert not out.exists()


def test_export_gives_the_profiles_project_id_to_the_profiles_region(tmp_path: Path) -> None:
    out = tmp_path / "all.csv"
    config = tmp_path / "config.toml"
    config.write_text(
        "[profiles.default]\n"
        f'region = "{REGION_A}"\n'
        'ak_env = "MY_AK"\nsk_env = "MY_SK"\n'
        f'project_id = "{PROJECT_A}"\n',
        encoding="utf-8",
    )
    environ = {"MY_AK": AK, "MY_SK": SK, "BATCHPATCH_CONFIG": str(config)}
    with two_regions() as (a, b):
        done = run_cli(export_args(a.url, b.url, out), token=None, environ=environ)
        looked_up = b.stats.snapshot().requests_by_kind["projects"]
    assert done.returncode == 0, done.stderr
    table = read_report(out)
    assert table.columns[:3].tolist() == ["image_id", "region", "project_id"]
    projects = dict(zip(table["region"], table["project_id"], strict=True))
    assert projects == {REGION_A: PROJECT_A, REGION_B: PROJECT_B}
    assert looked_up == 1
