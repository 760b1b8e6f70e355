"""The hostile review of tags, export and renames (issue 11): each failure it found, fixed.

Tag keys are case-sensitive in wide sheets too; a sheet restating more than 10 tags an image
carries is a warning, not a refusal (the plan refuses a tag added past 10); two renames of
one image that share a key are refused at both rows; legacy keys can be removed and renamed
away; every plan problem of an image is reported at its own row; the fake serves ListImages'
``tag`` and time filters, and export's read errors give export's advice; a project id that is
not 32 hexadecimal digits stops the run before anything is sent.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import anyio
import pytest

from batchpatch.auth import AkSkAuth, ProjectLookup
from batchpatch.client import ImsClient
from batchpatch.errors import OptionsError, SheetError
from batchpatch.fake import FakeConfig, running_fake
from batchpatch.grid import duplicate_columns
from batchpatch.sheet import read_sheet
from tests.e2e import TOKEN, run_cli
from tests.sheets import write_sheet
from tests.tagfixtures import LONG_HEADER, PROJECT, A, B, apply, cli, config, images, report_rows


def owned(**tags: list[str]) -> list[dict[str, Any]]:
    """``images(**tags)`` as the account's own (what export lists by default)."""
    return [image | {"__imagetype": "private"} for image in images(**tags)]


def problems(path: Path) -> list[str]:
    with pytest.raises(SheetError) as raised:
        read_sheet(path)
    return [str(problem) for problem in raised.value.problems]


def writes(fake: Any) -> tuple[int, int]:
    return fake.stats.patch_requests, fake.stats.tag_write_requests


def rows_of(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


# --- 2. tag keys differing only in case ------------------------------------------------------


def test_tag_columns_differing_in_case_are_two_columns_attributes_are_not() -> None:
    assert duplicate_columns("s.csv", ["image_id", "tag:Env", "tag:env"]) == []
    (repeat,) = duplicate_columns("s.csv", ["image_id", "name", "/Name"])
    assert str(repeat).startswith("s.csv:1:/Name: column 'name' appears more than once")
    (same,) = duplicate_columns("s.csv", ["image_id", "tag:env", "/tag:env"])
    assert same.column == "/tag:env"


def test_an_export_of_keys_differing_in_case_applies_sending_nothing(tmp_path: Path) -> None:
    out = tmp_path / "case.csv"
    with running_fake(owned(a=["Env=a", "env=b"]), config()) as fake:
        code, _, err = cli(fake, "export", "--out", str(out))
        assert code == 0, err
        assert {"tag:Env", "tag:env"} <= set(rows_of(out)[0])
        code, out_text, err = apply(fake, out)
        assert code == 0, err
        assert writes(fake) == (0, 0)
        assert "unchanged" in out_text


# --- 3. more than 10 tags: validate warns, the plan decides ---------------------------------


def test_an_untouched_export_of_an_image_with_12_tags_sends_nothing(tmp_path: Path) -> None:
    out = tmp_path / "many.csv"
    twelve = [f"t{n}=v" for n in range(12)]
    with running_fake(owned(a=twelve), config()) as fake:
        assert cli(fake, "export", "--out", str(out))[0] == 0
        code, _, err = apply(fake, out)
        assert code == 0, err
        assert writes(fake) == (0, 0)
        assert "warning: the sheet sets 12 tags on this image" in err


def test_changing_a_value_at_12_tags_is_sent_adding_a_key_is_refused(tmp_path: Path) -> None:
    twelve = [f"t{n}=v" for n in range(12)]
    change = write_sheet(tmp_path / "c.csv", ["image_id", "tag:t0"], [[A, "new"]])
    add = write_sheet(tmp_path / "a.csv", ["image_id", "tag:t0", "tag:extra"], [[A, "", "x"]])
    with running_fake(images(a=twelve), config()) as fake:
        code, _, err = apply(fake, add)
        assert code == 2
        assert f"{add}:2:tag:extra: the image would carry 13 tags (it has 12 now)" in err
        assert writes(fake) == (0, 0)
        code, _, err = apply(fake, change)
        assert code == 0, err
        assert fake.store.tags[A]["t0"] == "new"


# --- 6. renames sharing a key ---------------------------------------------------------------


def test_chained_renames_are_refused_at_both_rows_saying_rename_in_one_step(
    tmp_path: Path,
) -> None:
    rows = [
        [A, "rename", "tag:g", "tag:h"],
        [A, "rename", "tag:h", "tag:i"],
        [A, "rename", "/ka", "kb"],
        [A, "rename", "/kb", "kc"],
        [B, "rename", "tag:a", "tag:b"],
        [B, "rename", "tag:b", "tag:a"],
    ]
    path = write_sheet(tmp_path / "s.csv", LONG_HEADER, rows)
    one_step = "rename in one step: one row renaming"
    swap = "a swap cannot be one sheet"
    assert problems(path) == [
        f"{path}:2:value: row 3 also renames tag:h of the same image — {one_step} tag:g to tag:i",
        f"{path}:3:path: row 2 also renames tag:h of the same image — {one_step} tag:g to tag:i",
        f"{path}:4:value: row 5 also renames kb of the same image — {one_step} ka to kc",
        f"{path}:5:path: row 4 also renames kb of the same image — {one_step} ka to kc",
        f"{path}:6:path: row 7 also renames tag:a of the same image — {swap}: rename one key to "
        "a free key in a run of its own first",
        f"{path}:7:value: row 6 also renames tag:a of the same image — {swap}: rename one key "
        "to a free key in a run of its own first",
    ]


def test_two_renames_of_one_key_are_refused_once_at_each_row(tmp_path: Path) -> None:
    rows = [[A, "rename", "tag:g", "tag:h"], [A, "rename", "tag:g", "tag:i"]]
    found = problems(write_sheet(tmp_path / "s.csv", LONG_HEADER, rows))
    assert [line.split(": ", 1)[1] for line in found] == [
        "row 3 also renames tag:g of the same image — keep only one of the two renames",
        "row 2 also renames tag:g of the same image — keep only one of the two renames",
    ]


# --- 7. legacy keys -------------------------------------------------------------------------


def test_legacy_keys_may_be_removed_or_renamed_away_not_created(tmp_path: Path) -> None:
    long_key = "k" * 46
    good = write_sheet(
        tmp_path / "g.csv",
        LONG_HEADER,
        [
            [A, "remove", "tag:a.b", ""],
            [A, "rename", "tag:Cost Center", "tag:cost_center"],
            [A, "remove", f"tag:{long_key}", ""],
        ],
    )
    assert len(read_sheet(good).patches[0].operations) == 3
    bad = write_sheet(
        tmp_path / "b.csv",
        LONG_HEADER,
        [
            [A, "add", "tag:c.d", "v"],
            [B, "rename", "tag:x", "tag:bad key"],
            [B, "remove", "tag:", ""],
        ],
    )
    found = problems(bad)
    assert found[0].startswith(f"{bad}:2:path: tag key 'c.d' may hold only")
    assert found[1].startswith(f"{bad}:3:value: tag key 'bad key' may hold only")
    assert found[2].startswith(f"{bad}:4:path: the tag key after tag: is empty")
    too_long = write_sheet(tmp_path / "t.csv", LONG_HEADER, [[A, "remove", "tag:" + "k" * 128, ""]])
    assert "is 128 characters long; no tag can have it" in problems(too_long)[0]


def test_a_wide_column_of_a_legacy_key_removes_it_but_cannot_set_it(tmp_path: Path) -> None:
    remove = write_sheet(tmp_path / "r.csv", ["image_id", "tag:Cost Center"], [[A, "<remove>"]])
    assert read_sheet(remove).patches[0].operations[0].op == "remove"
    setting = write_sheet(tmp_path / "s.csv", ["image_id", "tag:a.b"], [[A, "v"]])
    (found,) = problems(setting)
    assert found.startswith(
        f"{setting}:2:tag:a.b: tag key 'a.b' may hold only letters A-Z a-z, digits, _ - and "
        "Chinese characters: this column can only delete the tag (<remove>) — clear the cell"
    )
    assert "image_id,rename,tag:a.b,tag:NEW_KEY" in found


def test_legacy_tags_are_migrated_by_a_long_sheet_the_export_note_says_how(
    tmp_path: Path,
) -> None:
    seeded = owned()
    seeded[0]["tags"] = [{"key": "a.b", "value": ""}, {"key": "Cost Center", "value": "x"}]
    out = tmp_path / "e.csv"
    sheet = write_sheet(
        tmp_path / "m.csv",
        LONG_HEADER,
        [[A, "remove", "tag:a.b", ""], [A, "rename", "tag:Cost Center", "tag:cost_center"]],
    )
    with running_fake(seeded, config()) as fake:
        code, _, err = cli(fake, "export", "--out", str(out))
        assert code == 0, err
        assert "left out 2 legacy tag key(s)" in err
        assert "IMAGE_ID,rename,tag:OLD,tag:new_key" in err
        assert not any(column.startswith("tag:") for column in rows_of(out)[0])
        code, _, err = apply(fake, sheet)
        assert code == 0, err
        assert fake.store.tags[A] == {"cost_center": "x"}


# --- 8. the fake's ListImages filters; export's own advice -----------------------------------


def dated(**extra: Any) -> list[dict[str, Any]]:
    found = owned(a=["k1=v"], b=[], c=["k1=w"])
    found[1]["tags"] = [{"key": "a.b", "value": ""}]
    for day, image in enumerate(found, start=1):
        image["created_at"] = f"2026-01-0{day}T00:00:00Z"
        image["updated_at"] = f"2026-02-0{day}T00:00:00Z"
        image.update(extra)
    return found


ALL = ["image-a", "image-b", "image-c"]
FILTERS = [
    pytest.param({"tag": "k1=v"}, ["image-a"], id="tag"),
    pytest.param({"tag": "a=b"}, ["image-b"], id="legacy-tag"),
    pytest.param({"created_at": "gt:2026-01-01T00:00:00Z"}, ["image-b", "image-c"], id="gt"),
    pytest.param({"created_at": "gte:2026-01-02T00:00:00Z"}, ["image-b", "image-c"], id="gte"),
    pytest.param({"created_at": "lt:2026-01-02T00:00:00Z"}, ["image-a"], id="lt"),
    pytest.param({"updated_at": "lte:2026-02-02T00:00:00+00:00"}, ALL[:2], id="lte"),
    pytest.param({"created_at": "eq:2026-01-03T00:00:00Z"}, ["image-c"], id="eq"),
    pytest.param({"updated_at": "neq:2026-02-03T00:00:00Z"}, ALL[:2], id="neq"),
    pytest.param({"__platform": "Ubuntu", "__os_type": "Linux"}, ALL, id="platform"),
    pytest.param({"visibility": "private", "enterprise_project_id": "0"}, ALL, id="eps"),
    pytest.param({"name": "image-b", "status": "active"}, ["image-b"], id="name"),
]


@pytest.mark.parametrize(("query", "expected"), FILTERS)
def test_the_fake_serves_the_filters_export_advertises(
    tmp_path: Path, query: dict[str, str], expected: list[str]
) -> None:
    out = tmp_path / "f.csv"
    seeded = dated(__platform="Ubuntu", __os_type="Linux", visibility="private")
    for image in seeded:
        image["enterprise_project_id"] = "0"
    filters = [part for key, value in query.items() for part in ("--filter", f"{key}={value}")]
    with running_fake(seeded, config()) as fake:
        code, _, err = cli(fake, "export", "--out", str(out), *filters)
        assert code == 0, err
        assert [row["name"] for row in rows_of(out)] == expected


def test_a_malformed_time_filter_is_a_400_and_export_gives_its_own_advice(tmp_path: Path) -> None:
    with running_fake(dated(), config()) as fake:
        listed = fake.store.list_images({"created_at": "gt:2026-01-02T00:00:00Z"})
        assert [image["name"] for image in listed] == ["image-c"]
        code, _, err = cli(
            fake, "export", "--out", str(tmp_path / "x.csv"), "--filter", "architecture=x86"
        )
    assert code == 3
    assert "could not list the images to export: HTTP 400 IMG.0001" in err
    assert "run the export again" in err
    assert "no-plan" not in err
    assert "as written" not in err


# --- 10. a rename with --no-plan ------------------------------------------------------------


def test_a_rename_with_no_plan_is_refused_at_its_row(tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "rnp.csv",
        LONG_HEADER,
        [[A, "add", "tag:x", "1"], [A, "rename", "tag:k", "tag:k2"], [B, "rename", "/a", "b"]],
    )
    with running_fake(images(a=["k=1"]), config()) as fake:
        code, _, err = apply(fake, sheet, "--no-plan")
        assert code == 2
        assert err.splitlines()[:2] == [
            f"{sheet}:3:op: a rename needs the image's current value — leave out --no-plan",
            f"{sheet}:4:op: a rename needs the image's current value — leave out --no-plan",
        ]
        assert fake.stats.total_requests == 0


# --- 12. every plan problem, at its own row -------------------------------------------------


def test_every_plan_problem_of_an_image_is_reported_at_its_own_row(tmp_path: Path) -> None:
    seeded = images(a=["old=v3", "new=other"])
    seeded[0].update(oldkey="a", newkey="other")
    sheet = write_sheet(
        tmp_path / "rn.csv",
        LONG_HEADER,
        [
            [A, "rename", "/oldkey", "newkey"],
            [A, "rename", "tag:old", "tag:new"],
            [A, "replace", "/team", "x"],
        ],
    )
    with running_fake(seeded, config()) as fake:
        code, _, err = apply(fake, sheet)
        assert code == 2
        assert err.splitlines()[:2] == [
            f'{sheet}:2:path: newkey already holds "other" (oldkey holds "a") — rename to a free '
            "key, or remove newkey first",
            f'{sheet}:3:path: tag:new already holds "other" (tag:old holds "v3") — rename to a '
            "free key, or remove tag:new first",
        ]
        code, _, err = apply(fake, sheet, "--skip-invalid")
        assert writes(fake) == (0, 0)
    messages = [row["error_message"] for row in report_rows(tmp_path / "rn.results.csv")]
    assert messages[0].startswith("newkey already holds")
    assert messages[1].startswith("tag:new already holds")
    assert messages[2].startswith("row 2 of the same image is invalid")


# --- 13. the project id's format ------------------------------------------------------------


@pytest.mark.parametrize("project", ["../../x", "abc def", "3C3C3C3C3C3C4C3C8C3C3C3C3C3C3C3C"])
def test_a_project_id_from_the_environment_is_checked_before_anything_is_sent(
    tmp_path: Path, project: str
) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "tag:env"], [[A, "prod"]])
    with running_fake(images(), config()) as fake:
        done = run_cli(
            ["apply", str(sheet), "--endpoint", fake.url, "--quiet"],
            environ={"HUAWEICLOUD_SDK_PROJECT_ID": project},
        )
        assert done.returncode == 2
        assert (
            f"environment variable HUAWEICLOUD_SDK_PROJECT_ID: {project!r} is not a project id "
            "(32 lower-case hexadecimal digits)" in done.stderr
        )
        assert fake.stats.total_requests == 0


def test_a_profile_project_id_is_checked_naming_the_profile(tmp_path: Path) -> None:
    config_file = tmp_path / "config.toml"
    config_file.write_text('[profiles.p]\ntoken_env = "T"\nproject_id = "../x"\n')
    done = run_cli(
        ["whoami", "--profile", "p", "--config", str(config_file), "--endpoint", "https://ims.x"],
        token=None,
        environ={"T": TOKEN},
    )
    assert done.returncode == 2
    assert f"profile 'p' in {config_file}: project_id: '../x' is not a project id" in done.stderr


def test_a_project_id_iam_answers_is_checked_too() -> None:
    async def looked_up(url: str) -> str:
        auth = AkSkAuth(
            "AKREVIEWPROJECT00001", "sk-review", project_lookup=ProjectLookup(url, "r1")
        )
        async with ImsClient(url, auth, timeout=10, connections=1) as client:
            return await client.tag_project()

    iam = FakeConfig(access_key="AKREVIEWPROJECT00001", secret_key="sk-review", project_id="../x")
    with running_fake(images(), iam) as fake:
        with pytest.raises(OptionsError, match=r"the project of region r1: '\.\./x' is not"):
            anyio.run(looked_up, fake.url)
        assert fake.stats.requests_by_kind["tag_read"] == 0


# --- the small ones ---------------------------------------------------------------------------


def test_export_takes_quiet_and_plan_of_nothing_says_so(tmp_path: Path) -> None:
    blank = write_sheet(tmp_path / "b.csv", ["image_id", "tag:env"], [[A, "   "]])
    with running_fake(images(), config()) as fake:
        code, _, err = cli(fake, "export", "--out", str(tmp_path / "e.csv"), quiet=True)
        assert "exported 0 images" not in err
        assert code == 0, err
        code, out, err = cli(fake, "plan", str(blank), quiet=False)
    assert code == 0, err
    assert out.splitlines()[-1] == "0 images: nothing to change"
    assert PROJECT  # the fixtures' project id is a valid one
