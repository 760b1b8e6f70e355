"""Each region's endpoint and project id from the profile: ``[profiles.NAME.regions.REGION]``.

Precedence, checked against two fake IMS servers that each accept only their own project's
signature: the sheet's ``project_id`` column > the profile's per-region ``project_id`` >
the IAM lookup; ``--region-endpoint`` > the profile's per-region ``endpoint`` > the
default URL.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
    fake_config,
    two_region_sheet,
    two_regions,
)

PROJECT_B2 = "c" * 32  # a second project in region B, named only by the sheet
KEYS = {"MY_AK": AK, "MY_SK": SK}


def write_config(path: Path, a: str | None, b: dict[str, str]) -> Path:
    """A default profile in region A (its table gives ``a`` as endpoint and its project),
    with ``b`` as region B's table."""
    lines = [
        "[profiles.default]",
        f'region = "{REGION_A}"',
        'ak_env = "MY_AK"',
        'sk_env = "MY_SK"',
        "",
        f"[profiles.default.regions.{REGION_A}]",
        f'project_id = "{PROJECT_A}"',
        *([f'endpoint = "{a}"'] if a else []),
        "",
        f"[profiles.default.regions.{REGION_B}]",
        *(f'{key} = "{value}"' for key, value in b.items()),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run(config: Path, sheet: Path, *extra: str) -> tuple[int, str]:
    done = run_cli(
        ["apply", str(sheet), "--rate", "200", *extra],
        token=None,
        environ={**KEYS, "BATCHPATCH_CONFIG": str(config)},
    )
    return done.returncode, done.stderr


def with_project_column(path: Path, project_b: str) -> Path:
    """Region A's rows as usual; region B's rows name ``project_b`` in a project_id column."""
    rows = [[image["id"], "", "", f"{image['name']}-new"] for image in IMAGES_A]
    rows += [[image["id"], REGION_B, project_b, f"{image['name']}-new"] for image in IMAGES_B]
    return write_sheet(path, ["image_id", "region", "project_id", "name"], rows)


def test_the_profile_gives_each_region_its_endpoint_and_project(tmp_path: Path) -> None:
    """No --region, no --region-endpoint, no project id anywhere but the profile: each
    region's rows reach its fake, signed with its project, and IAM is never asked."""
    sheet = two_region_sheet(tmp_path / "s.csv")
    with two_regions() as (a, b):
        config = write_config(
            tmp_path / "config.toml", a.url, {"endpoint": b.url, "project_id": PROJECT_B}
        )
        code, stderr = run(config, sheet)
        stats_a, stats_b = a.stats.snapshot(), b.stats.snapshot()
    assert code == 0, stderr
    assert set(stats_a.applied_by_image) == {image["id"] for image in IMAGES_A}
    assert set(stats_b.applied_by_image) == {image["id"] for image in IMAGES_B}
    assert (set(stats_a.project_ids), set(stats_b.project_ids)) == ({PROJECT_A}, {PROJECT_B})
    assert stats_a.requests_by_kind["projects"] == stats_b.requests_by_kind["projects"] == 0


def test_the_sheets_project_column_comes_before_the_profiles(tmp_path: Path) -> None:
    sheet = with_project_column(tmp_path / "s.csv", PROJECT_B2)
    with two_regions(config_b=fake_config(PROJECT_B2)) as (a, b):
        config = write_config(
            tmp_path / "config.toml", a.url, {"endpoint": b.url, "project_id": PROJECT_B}
        )
        code, stderr = run(config, sheet)
        stats_b = b.stats.snapshot()
    assert code == 0, stderr
    assert set(stats_b.project_ids) == {PROJECT_B2}
    assert set(stats_b.applied_by_image) == {image["id"] for image in IMAGES_B}


def test_the_profiles_project_comes_before_the_iam_lookup(tmp_path: Path) -> None:
    """Region B's fake would answer the lookup with another project than the profile's:
    the profile's is used, and IAM is not asked."""
    sheet = two_region_sheet(tmp_path / "s.csv")
    with two_regions() as (a, b):
        config = write_config(
            tmp_path / "config.toml", a.url, {"endpoint": b.url, "project_id": PROJECT_B}
        )
        code, stderr = run(config, sheet, "--iam-endpoint", a.url)  # IAM would say PROJECT_A
        stats_a, stats_b = a.stats.snapshot(), b.stats.snapshot()
    assert code == 0, stderr
    assert set(stats_b.project_ids) == {PROJECT_B}
    assert stats_a.requests_by_kind["projects"] == 0


def test_without_a_project_in_the_profile_it_is_looked_up_in_iam(tmp_path: Path) -> None:
    sheet = two_region_sheet(tmp_path / "s.csv")
    with two_regions() as (a, b):
        config = write_config(tmp_path / "config.toml", a.url, {"endpoint": b.url})
        code, stderr = run(config, sheet, "--iam-endpoint", b.url)
        stats_b = b.stats.snapshot()
    assert code == 0, stderr
    assert stats_b.requests_by_kind["projects"] == 1
    assert set(stats_b.project_ids) == {PROJECT_B}


def test_region_endpoint_option_comes_before_the_profiles_endpoint(tmp_path: Path) -> None:
    """The profile sends region B to region A's fake; ``--region-endpoint`` sends it to
    region B's, which then gets every region B image, and region A's fake none of them."""
    sheet = two_region_sheet(tmp_path / "s.csv")
    with two_regions() as (a, b):
        config = write_config(
            tmp_path / "config.toml", a.url, {"endpoint": a.url, "project_id": PROJECT_B}
        )
        code, stderr = run(config, sheet, "--region-endpoint", f"{REGION_B}={b.url}")
        stats_a, stats_b = a.stats.snapshot(), b.stats.snapshot()
    assert code == 0, stderr
    assert set(stats_b.applied_by_image) == {image["id"] for image in IMAGES_B}
    assert set(stats_a.applied_by_image) == {image["id"] for image in IMAGES_A}
    assert set(stats_a.project_ids) == {PROJECT_A}


def test_the_run_options_region_endpoint_comes_before_the_profile_for_its_own_region(
    tmp_path: Path,
) -> None:
    """The profile's table for the run's own region points at region B's fake; the
    option points it at region A's."""
    sheet = two_region_sheet(tmp_path / "s.csv")
    with two_regions() as (a, b):
        config = write_config(
            tmp_path / "config.toml", b.url, {"endpoint": b.url, "project_id": PROJECT_B}
        )
        code, stderr = run(config, sheet, "--region-endpoint", f"{REGION_A}={a.url}")
        stats_a = a.stats.snapshot()
    assert code == 0, stderr
    assert set(stats_a.applied_by_image) == {image["id"] for image in IMAGES_A}


def test_a_region_named_only_in_the_profile_is_a_known_region(tmp_path: Path) -> None:
    """A region outside the official list (a dedicated cloud) that the profile gives an
    endpoint may stand in the sheet's region column."""
    rows = [[IMAGES_B[0]["id"], "dc-private-1", "x"]]
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "region", "name"], rows)
    with two_regions() as (a, b):
        config = tmp_path / "config.toml"
        write_config(config, a.url, {})
        text = config.read_text(encoding="utf-8")
        text += f'\n[profiles.default.regions.dc-private-1]\nendpoint = "{b.url}"\n'
        config.write_text(text + f'project_id = "{PROJECT_B}"\n', encoding="utf-8")
        code, stderr = run(config, sheet)
        applied = b.stats.snapshot().applied_by_image
    assert code == 0, stderr
    assert set(applied) == {IMAGES_B[0]["id"]}


@pytest.mark.parametrize(
    ("table", "says"),
    [
        pytest.param({"endpoint": "ims.example"}, "endpoint is not an http(s) URL", id="url"),
        pytest.param({"project_id": "not-hex"}, "project_id is not a project id", id="project"),
        pytest.param({"access_key": "x"}, "unknown keys access_key", id="unknown-key"),
        pytest.param(
            {"endpoint": "http://ims.example.com"}, "plain http:// to another machine", id="http"
        ),
    ],
)
def test_a_bad_region_table_is_refused_before_anything_is_sent(
    tmp_path: Path, table: dict[str, str], says: str
) -> None:
    sheet = two_region_sheet(tmp_path / "s.csv")
    with two_regions() as (a, b):
        config = write_config(tmp_path / "config.toml", a.url, table)
        code, stderr = run(config, sheet)
        sent = a.stats.snapshot().total_requests + b.stats.snapshot().total_requests
    assert code == 2, stderr
    assert says in stderr
    assert f"region {REGION_B}" in stderr
    assert "Traceback" not in stderr
    assert sent == 0


def whoami(config: Path, *args: str) -> tuple[int, str, str]:
    done = run_cli(
        ["whoami", *args], token=None, environ={**KEYS, "BATCHPATCH_CONFIG": str(config)}
    )
    return done.returncode, done.stdout, done.stderr


def test_whoami_shows_each_regions_endpoint_and_project_and_where_they_come_from(
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path / "config.toml",
        None,
        {"endpoint": "https://ims.b.example", "project_id": PROJECT_B},
    )
    code, out, err = whoami(
        config,
        "--region",
        REGION_A,
        "--region",
        "eu-west-101",
        "--region-endpoint",
        "eu-west-101=https://ims.c.example",
    )
    assert code == 0, err
    blocks = {block.split(":")[0]: block for block in out.split("\nregion ")[1:]}
    assert set(blocks) == {REGION_A, "eu-west-101", REGION_B}
    profile = f"profile 'default' in {config}"
    assert f"endpoint: https://ims.{REGION_A}.myhuaweicloud.com" in blocks[REGION_A]
    assert f"project id: {PROJECT_A} (from {profile})" in blocks[REGION_A]
    assert "endpoint: https://ims.c.example (from --region-endpoint)" in blocks["eu-west-101"]
    assert "project id: looked up in IAM at https://iam." in blocks["eu-west-101"]
    assert f"endpoint: https://ims.b.example (from {profile})" in blocks[REGION_B]
    assert f"project id: {PROJECT_B} (from {profile})" in blocks[REGION_B]
    assert SK not in out
    assert AK not in out  # the access key is shown masked only


def test_whoami_of_one_region_is_as_before(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", None, {})
    code, out, err = whoami(config, "--region", REGION_A)
    assert code == 0, err
    assert "\nregion " not in out
    assert f"project id: {PROJECT_A}" in out  # the own region's table gives its project


def test_a_read_region_report_keeps_each_rows_region(tmp_path: Path) -> None:
    """The report of a profile-routed run names each row's region as the sheet did."""
    sheet = two_region_sheet(tmp_path / "s.csv", blank_a=False)
    with two_regions() as (a, b):
        config = write_config(
            tmp_path / "config.toml", a.url, {"endpoint": b.url, "project_id": PROJECT_B}
        )
        code, stderr = run(config, sheet)
    assert code == 0, stderr
    report = read_report(tmp_path / "s.results.csv")
    regions = dict(zip(report["image_id"], report["Region"], strict=True))
    assert {regions[image["id"]] for image in IMAGES_A} == {REGION_A}
    assert {regions[image["id"]] for image in IMAGES_B} == {REGION_B}
