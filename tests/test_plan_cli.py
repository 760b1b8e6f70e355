"""validate, plan, --out/--plan, --dry-run and --skip-invalid through the CLI (in process)."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import pytest

from batchpatch.fake import FakeConfig, running_fake
from tests.e2e import TOKEN, run_cli, sample_images
from tests.sheets import write_sheet
from tests.test_cli import read_report

IMAGES = sample_images()
A, B, C = (image["id"] for image in IMAGES[:3])


def test_validate_is_local_and_exits_0_or_2(tmp_path: Path) -> None:
    good = write_sheet(tmp_path / "good.csv", ["image_id", "name"], [[A, "x"], [B, "y"]])
    write_sheet(
        tmp_path / "bad.csv",
        ["image_id", "name", "min_ram"],
        [[A, " lead", "1"], ["1.23E+18", "x", "-5"]],
    )
    ok = run_cli(["validate", str(good)], token=None)
    assert ok.returncode == 0, ok.stderr
    assert "valid — 2 rows, 2 images, wide sheet" in ok.stdout
    failed = run_cli(["validate", "bad.csv"], token=None, cwd=tmp_path)
    assert failed.returncode == 2
    lines = failed.stderr.splitlines()
    assert lines[0].startswith("bad.csv:2:name: name starts or ends with a space — ")
    assert lines[1].startswith("bad.csv:3:image_id: image_id '1.23e+18' looks like a number")
    assert lines[2].startswith("bad.csv:3:min_ram: min_ram must be a whole number")
    assert "Traceback" not in failed.stderr


def test_plan_prints_a_diff_and_sends_no_write(tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "op", "path", "value"],
        [
            [A, "replace", "name", "new-name"],
            [A, "add", "fresh_key", "v"],
            [A, "remove", "__description", ""],
            [B, "replace", "name", IMAGES[1]["name"]],
            [C, "replace", "name", "frozen"],
        ],
    )
    images = [*IMAGES[:2], {**IMAGES[2], "status": "queued"}]
    with running_fake(images, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(["plan", str(sheet), "--endpoint", fake.url])
        stats = fake.stats.snapshot()
    assert done.returncode == 1, done.stderr  # one image would be skipped
    assert stats.patch_requests == 0
    assert stats.list_requests == 3
    out = done.stdout
    assert f"{A} ({IMAGES[0]['name']}): update" in out
    assert f'  name: "{IMAGES[0]["name"]}" → "new-name"' in out
    assert '  + fresh_key: "v"' in out
    assert f'  - __description (was "{IMAGES[0]["__description"]}")' in out
    assert f"{B} ({IMAGES[1]['name']}): unchanged" in out
    assert f"{C} ({IMAGES[2]['name']}): skipped — the image is 'queued'" in out
    assert out.splitlines()[-1] == "3 images: 1 update, 1 unchanged, 1 skipped"


def test_saved_plan_is_sent_exactly_and_bound_to_its_sheet(tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "name", "team"],
        [[A, "planned-name", "x"], [B, IMAGES[1]["name"], ""]],
    )
    plan_file = tmp_path / "plan.json"
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        planned = run_cli(["plan", str(sheet), "--endpoint", fake.url, "--out", str(plan_file)])
        assert planned.returncode == 0, planned.stderr
        saved = json.loads(plan_file.read_text())
        assert TOKEN not in plan_file.read_text()
        assert [image["status"] for image in saved["images"]] == [None, "unchanged"]
        # Someone adds "team" meanwhile: the plan still says add, and add is what is sent.
        applied = run_cli(["apply", str(sheet), "--endpoint", fake.url, "--plan", str(plan_file)])
        stats = fake.stats.snapshot()
        state = fake.store.images
    assert applied.returncode == 0, applied.stderr
    assert stats.list_requests == 2  # only the plan read; apply --plan read nothing
    assert stats.patches_by_image == {A: 1}
    assert (state[A]["name"], state[A]["team"]) == ("planned-name", "x")

    write_sheet(sheet, ["image_id", "name", "team"], [[A, "edited", "x"]])
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        refused = run_cli(["apply", str(sheet), "--endpoint", fake.url, "--plan", str(plan_file)])
        assert fake.stats.total_requests == 0
    assert refused.returncode == 2
    assert "the plan was made from another version" in refused.stderr


def test_dry_run_prints_exact_requests_masks_the_token_and_writes_nothing(
    tmp_path: Path,
) -> None:
    sheet = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "name", "min_ram"],
        [[A, "dry", "2048"], [B, IMAGES[1]["name"], ""]],
    )
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(["apply", str(sheet), "--endpoint", fake.url, "--dry-run"])
        stats = fake.stats.snapshot()
        state = fake.store.images
    assert done.returncode == 0, done.stderr
    assert stats.patch_requests == 0
    assert list(state.values()) == IMAGES
    assert TOKEN not in done.stdout + done.stderr
    assert done.stdout.startswith(
        f"PATCH {fake.url}/v2/cloudimages/{A}\n"
        "Content-Type: application/json;charset=utf-8\n"
        f"Host: {fake.url.removeprefix('http://')}\n"
        f"User-Agent: batchpatch/{version('batchpatch')}\n"
        "X-Auth-Token: ***\n\n"
        '[{"op":"replace","path":"/name","value":"dry"},'
        '{"op":"replace","path":"/min_ram","value":2048}]\n'
    )
    assert f"/v2/cloudimages/{B}" not in done.stdout  # already as asked: nothing to send
    report = read_report(tmp_path / "s.dryrun.csv")
    assert not (tmp_path / "s.results.csv").exists()  # the real run's report name is left alone
    assert report["status"].tolist() == ["planned", "unchanged"]


@pytest.mark.parametrize(
    "flag", [pytest.param([], id="refuse"), pytest.param(["--skip-invalid"], id="skip-invalid")]
)
def test_invalid_rows_are_refused_or_skipped(tmp_path: Path, flag: list[str]) -> None:
    sheet = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "op", "path", "value"],
        [
            [A, "replace", "/name", "good-name"],
            [B, "replace", "/name", "ok"],
            [B, "replace", "/hw_firmware_type", "efi"],
            [C, "replace", "/status", "active"],
        ],
    )
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(["apply", str(sheet), "--endpoint", fake.url, *flag])
        stats = fake.stats.snapshot()
    if not flag:
        assert done.returncode == 2
        assert stats.total_requests == 0
        assert "s.csv:4:value: hw_firmware_type must be bios or uefi" in done.stderr
        assert "s.csv:5:path: status is read-only" in done.stderr
        return
    assert done.returncode == 1, done.stderr
    assert stats.patches_by_image == {A: 1}
    report = read_report(tmp_path / "s.results.csv")
    assert report["status"].tolist() == ["succeeded", "invalid", "invalid", "invalid"]
    assert report.loc[1, "error_message"].startswith("row 4 of the same image is invalid")
    assert report.loc[2, "error_message"].startswith("value: hw_firmware_type must be")


def test_an_edited_plan_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[A, "p1"], [B, "p2"]])
    plan_file = tmp_path / "plan.json"
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        assert (
            run_cli(
                ["plan", str(sheet), "--endpoint", fake.url, "--out", str(plan_file)]
            ).returncode
            == 0
        )
        document = json.loads(plan_file.read_text())
        document["images"] = document["images"][:1]
        plan_file.write_text(json.dumps(document))
        refused = run_cli(["apply", str(sheet), "--endpoint", fake.url, "--plan", str(plan_file)])
        assert fake.stats.patch_requests == 0
    assert refused.returncode == 2
    assert "do not match" in refused.stderr
    assert "Traceback" not in refused.stderr
