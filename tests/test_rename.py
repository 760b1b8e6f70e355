"""Key migrations: the long-sheet op rename, for extension keys and for tags."""

from __future__ import annotations

from pathlib import Path

from batchpatch.fake import running_fake
from tests.sheets import write_sheet
from tests.tagfixtures import LONG_HEADER, A, B, apply, config, images, report_rows


def test_an_attribute_rename_is_one_patch_and_a_rerun_sends_nothing(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "s.csv", LONG_HEADER, [[A, "rename", "/team", "owner_team"]])
    with running_fake(images(), config()) as fake:
        code, _, err = apply(fake, sheet)
        assert code == 0, err
        image = fake.store.get(A)
        assert (image.get("owner_team"), "team" in image) == ("core", False)
        assert fake.stats.patches_by_image[A] == 1
        (row,) = report_rows(tmp_path / "s.results.csv")
        code, _, err = apply(fake, sheet)
        assert code == 0, err
        assert fake.stats.patch_requests == 1
    assert row["status"] == "succeeded"
    assert '"team":"core"' in row["before"]
    assert '"owner_team":"core"' in row["after"]
    (again,) = report_rows(tmp_path / "s.results.csv")
    assert again["status"] == "unchanged"


def test_a_tag_rename_creates_then_deletes(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "s.csv", LONG_HEADER, [[A, "rename", "tag:env", "tag:stage"]])
    with running_fake(images(a=["env=prod", "x=1"]), config()) as fake:
        code, _, err = apply(fake, sheet)
        assert code == 0, err
        assert fake.store.tags[A] == {"x": "1", "stage": "prod"}
        bodies = [e.path for e in fake.stats.log if e.path.endswith("/tags/action")]
        code, _, _ = apply(fake, sheet)
        assert fake.stats.tag_write_requests == 2
    assert len(bodies) == 2
    assert code == 0


def test_a_tag_rename_at_the_limit_deletes_first(tmp_path: Path) -> None:
    ten = [f"k{n}=v" for n in range(9)] + ["env=prod"]
    sheet = write_sheet(tmp_path / "s.csv", LONG_HEADER, [[A, "rename", "tag:env", "tag:stage"]])
    with running_fake(images(a=ten), config()) as fake:
        code, out, err = apply(fake, sheet, "--dry-run")
        assert code == 0, err
        assert out.index('"action":"delete"') < out.index('"action":"create"')
        code, _, err = apply(fake, sheet)
        assert code == 0, err  # create first would have hit the 10-tag quota (IMG.0116)
        assert fake.store.tags[A]["stage"] == "prod"
        assert "env" not in fake.store.tags[A]


def test_a_rename_onto_a_key_holding_another_value_is_refused(tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "s.csv",
        LONG_HEADER,
        [[A, "rename", "tag:env", "tag:stage"], [B, "rename", "tag:env", "tag:stage"]],
    )
    with running_fake(images(a=["env=prod", "stage=dev"], b=["env=1"]), config()) as fake:
        code, _, err = apply(fake, sheet)
        assert code == 2
        assert (
            f'{sheet}:2:path: tag:stage already holds "dev" (tag:env holds "prod") — '
            "rename to a free key, or remove tag:stage first" in err
        )
        assert fake.stats.tag_write_requests == 0


def test_a_rename_already_done_or_onto_the_same_value_needs_nothing_more(tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "s.csv",
        LONG_HEADER,
        [[A, "rename", "tag:env", "tag:stage"], [B, "rename", "tag:env", "tag:stage"]],
    )
    with running_fake(images(a=["stage=prod"], b=["env=1", "stage=1"]), config()) as fake:
        code, _, err = apply(fake, sheet)
        assert code == 0, err
        assert fake.store.tags[B] == {"stage": "1"}
        assert fake.stats.tag_write_requests == 2  # b only: create (idempotent) + delete
    assert [row["status"] for row in report_rows(tmp_path / "s.results.csv")] == [
        "unchanged",
        "succeeded",
    ]


def test_rename_is_refused_without_a_plan(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "s.csv", LONG_HEADER, [[A, "rename", "/team", "owner_team"]])
    with running_fake(images(), config()) as fake:
        code, _, err = apply(fake, sheet, "--no-plan")
        assert code == 2
        refused = f"{sheet}:2:op: a rename needs the image's current value — leave out --no-plan"
        assert refused in err
        assert fake.stats.total_requests == 0
