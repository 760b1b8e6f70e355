"""Tags applied end to end against the fake IMS over real sockets, the CLI in process."""

from __future__ import annotations

from pathlib import Path

from batchpatch.fake import running_fake
from tests.sheets import write_sheet
from tests.tagfixtures import LONG_HEADER, A, B, apply, cli, config, images, report_rows

WIDE = ["image_id", "name", "tag:env", "tag:keep", "tag:old"]


def test_attributes_and_tags_are_sent_and_a_rerun_sends_nothing(tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "s.csv",
        WIDE,
        [[A, "web", "prod", "k", "<remove>"], [B, "", "", "k", ""]],
    )
    with running_fake(images(a=["old=v1", "keep=k"], b=["keep=k"]), config()) as fake:
        code, _, err = apply(fake, sheet)
        assert code == 0, err
        assert fake.store.tags[A] == {"keep": "k", "env": "prod"}
        assert fake.store.get(A)["name"] == "web"
        writes = fake.stats.tag_write_requests
        assert writes == 2  # one create, one delete; image b's tag was already as asked
        first = report_rows(tmp_path / "s.results.csv")
        code, _, err = apply(fake, sheet)
        assert code == 0, err
        assert fake.stats.tag_write_requests == writes  # nothing sent again
        assert fake.stats.patch_requests == 1
    assert [row["status"] for row in first] == ["succeeded", "unchanged"]
    assert first[0]["http_status"] == "200"
    assert '"tag:old":"v1"' in first[0]["before"]
    assert '"tag:old":null' in first[0]["after"]
    again = report_rows(tmp_path / "s.results.csv")
    assert [row["status"] for row in again] == ["unchanged", "unchanged"]


def test_a_tag_row_reports_the_tag_call_and_says_the_tag_part_failed(tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "s.csv",
        LONG_HEADER,
        [[A, "replace", "/name", "web"], [A, "add", "tag:env", "prod"]],
    )
    with running_fake(images(), config(tag_script={A: ["503"]})) as fake:
        code, _, _ = apply(fake, sheet, "--max-attempts", "1")
        assert fake.store.get(A)["name"] == "web"
        assert fake.store.tags.get(A, {}) == {}
    assert code == 1
    attribute_row, tag_row = report_rows(tmp_path / "s.results.csv")
    assert (attribute_row["status"], attribute_row["http_status"]) == ("succeeded", "200")
    assert attribute_row["request_id"]
    assert (tag_row["status"], tag_row["http_status"]) == ("failed", "503")
    assert tag_row["error_message"].startswith("tags: ")
    assert tag_row["request_id"]
    assert tag_row["request_id"] != attribute_row["request_id"]


def test_a_throttled_tag_call_is_retried(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "s.csv", LONG_HEADER, [[A, "add", "tag:env", "prod"]])
    with running_fake(images(), config(tag_script={A: ["429"]})) as fake:
        code, _, err = apply(fake, sheet, "--backoff", "0.01")
        assert code == 0, err
        assert fake.stats.tag_write_requests == 2
        assert fake.store.tags[A] == {"env": "prod"}
    (row,) = report_rows(tmp_path / "s.results.csv")
    assert (row["status"], row["http_status"], row["attempts"]) == ("succeeded", "204", "2")


def test_a_lost_tag_answer_is_read_back_not_sent_again(tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "s.csv",
        LONG_HEADER,
        [[A, "add", "tag:env", "prod"], [A, "remove", "tag:old", ""]],
    )
    with running_fake(
        images(a=["old=1"]), config(tag_script={A: ["reset_after", "502_after"]})
    ) as fake:
        code, _, err = apply(fake, sheet, "--backoff", "0.01")
        assert code == 0, err
        assert fake.stats.tag_write_requests == 2  # the create once, the delete once
        assert fake.store.tags[A] == {"env": "prod"}
    rows = report_rows(tmp_path / "s.results.csv")
    assert [row["status"] for row in rows] == ["succeeded", "succeeded"]
    assert "reading the image back shows the change in place" in rows[1]["error_message"]


def test_the_tag_limit_is_checked_against_the_current_tags(tmp_path: Path) -> None:
    nine = [f"k{n}=v" for n in range(9)]
    sheet = write_sheet(
        tmp_path / "s.csv",
        LONG_HEADER,
        [[A, "add", "tag:x", "1"], [A, "add", "tag:y", "2"], [B, "add", "tag:x", "1"]],
    )
    with running_fake(images(a=nine), config()) as fake:
        code, _, err = apply(fake, sheet)
        assert code == 2
        assert (
            f"{sheet}:3:path: the image would carry 11 tags (it has 9 now); an image may "
            "carry 10 at most — remove tags first (<remove>), or set fewer" in err
        )
        assert fake.stats.tag_write_requests == 0
        assert not (tmp_path / "s.results.csv").exists()
        assert not (tmp_path / "s.results.csv.journal").exists()
        code, _, err = apply(fake, sheet, "--skip-invalid")
        assert code == 1, err
        assert fake.store.tags[B] == {"x": "1"}
        assert A not in fake.stats.tag_writes_by_image
    rows = report_rows(tmp_path / "s.results.csv")
    assert [row["status"] for row in rows] == ["invalid", "invalid", "succeeded"]
    assert "would carry 11 tags" in rows[0]["error_message"]


def test_dry_run_shows_the_tag_calls_and_sends_none(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "s.csv", WIDE, [[A, "", "prod", "", "<remove>"]])
    with running_fake(images(a=["old=v1"]), config()) as fake:
        code, out, err = apply(fake, sheet, "--dry-run")
        assert code == 0, err
        assert fake.stats.tag_write_requests == 0
    assert out.count("/tags/action") == 2
    assert '{"action":"create","tags":[{"key":"env","value":"prod"}]}' in out
    assert '{"action":"delete","tags":[{"key":"old","value":"v1"}]}' in out
    assert "PATCH" not in out  # no attribute change: no PATCH shown


def test_a_saved_plan_carries_the_tag_changes(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "s.csv", WIDE, [[A, "web", "prod", "", "<remove>"]])
    plan = tmp_path / "plan.json"
    with running_fake(images(a=["old=v1"]), config()) as fake:
        code, out, err = cli(fake, "plan", str(sheet), "--out", str(plan), quiet=False)
        assert code == 0, err
        assert 'tag:old (was "v1")' in out
        assert '+ tag:env: "prod"' in out
        code, _, err = apply(fake, sheet, "--plan", str(plan))
        assert code == 0, err
        assert fake.store.tags[A] == {"env": "prod"}


def test_no_plan_sends_tag_calls_without_reading_tags(tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "s.csv",
        LONG_HEADER,
        [[A, "replace", "tag:env", "prod"], [A, "remove", "tag:gone", ""]],
    )
    with running_fake(images(a=["env=dev"]), config()) as fake:
        code, _, err = apply(fake, sheet, "--no-plan")
        assert code == 0, err
        assert fake.stats.tag_read_requests == 0
        assert fake.store.tags[A] == {"env": "prod"}
