"""The undo sheet's harder cases: an image only half applied, a rerun merging with the first
run's undo sheet, a rename onto a key that already held the value, key-only tags, the fake's
store restored byte for byte (its ``tags`` field included), and the messages naming the
undo path when it collides with another file of the run.

Runs go through ``batchpatch.cli.main`` in process against the fake over real sockets; the
fake's clock is fixed so that its ``updated_at`` stamps compare.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from batchpatch.fake import FakeConfig, FakeServer, running_fake
from batchpatch.fake.store import ImageStore
from batchpatch.fake.tags import tag_strings
from batchpatch.undo import UndoSheet, merge
from tests.e2e import CliRunner, cli_runner
from tests.tagfixtures import PROJECT, A, B, C, config

STAMP = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
HEADER = "image_id,op,path,value\n"


def _image(image_id: str, tags: list[str], **attributes: Any) -> dict[str, Any]:
    return {
        "id": image_id,
        "name": f"image-{image_id[-1]}",
        "status": "active",
        "min_ram": 0,
        "__imagetype": "private",
        "updated_at": "2026-01-01T08:00:00Z",
        "tags": tags,
        **attributes,
    }


def _fake(images: list[dict[str, Any]], settings: FakeConfig | None = None) -> Any:
    return running_fake(ImageStore(images, clock=lambda: STAMP), settings or config())


def _state(fake: FakeServer) -> bytes:
    """The fake's whole store, attributes and tags, as bytes to compare."""
    return json.dumps(
        [fake.store.images, fake.store.tags], sort_keys=True, ensure_ascii=False
    ).encode()


def _rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))[1:]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> CliRunner:
    runner = cli_runner(monkeypatch, capsys)
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT)
    return runner


def _apply(run: CliRunner, fake: FakeServer, sheet: Path, *more: str) -> tuple[int, str]:
    code, _, stderr = run(
        "apply", str(sheet), "--endpoint", fake.url, "--rate", "1000", "--quiet", *more
    )
    return code, stderr


# -- 1. half-failed images, and a rerun merging with the first run's undo ------------------


@pytest.fixture
def half_failing() -> Iterator[FakeServer]:
    """A's tag calls and B's PATCH fail five times each: A gets only its PATCH, B only its
    tag calls, C everything."""
    images = [
        _image(A, ["env=dev"], owner_team="platform"),
        _image(B, ["env=dev"], owner_team="platform"),
        _image(C, ["env=dev"]),
    ]
    settings = config(tag_script={A: ["500"] * 5}, script={B: ["500"] * 5})
    with _fake(images, settings) as server:
        yield server


HALF_SHEET = f"image_id,owner_team,tag:env,tag:new\n{A},p2,prod,n\n{B},p2,prod,n\n{C},,prod,\n"


def test_the_applied_part_of_a_failed_image_is_in_the_undo(
    run: CliRunner, half_failing: FakeServer, tmp_path: Path
) -> None:
    sheet = tmp_path / "fa.csv"
    sheet.write_text(HALF_SHEET, encoding="utf-8")

    code, stderr = _apply(run, half_failing, sheet, "--max-attempts", "5", "--backoff", "0.01")

    assert code == 1, stderr
    assert sorted(_rows(tmp_path / "fa.undo.csv")) == sorted(
        [
            [A, "replace", "/owner_team", "platform"],  # A's PATCH went through
            [B, "remove", "tag:new", ""],  # B's tag calls went through
            [B, "replace", "tag:env", "dev"],
            [C, "replace", "tag:env", "dev"],
        ]
    )


def test_a_rerun_merges_with_the_first_undo_and_the_merged_undo_restores_the_store(
    run: CliRunner, half_failing: FakeServer, tmp_path: Path
) -> None:
    original = _state(half_failing)
    sheet = tmp_path / "fa.csv"
    sheet.write_text(HALF_SHEET, encoding="utf-8")
    assert _apply(run, half_failing, sheet, "--max-attempts", "5", "--backoff", "0.01")[0] == 1

    code, stderr = _apply(run, half_failing, sheet, "--backoff", "0.01")  # finishes the rest

    assert code == 0, stderr
    undo = tmp_path / "fa.undo.csv"
    assert f"undo: {undo} (merged with the earlier run's)" in stderr
    code, stderr = _apply(run, half_failing, undo)
    assert code == 0, stderr
    assert _state(half_failing) == original


def test_merge_keeps_the_earlier_row_of_each_path_and_the_later_runs_other_paths() -> None:
    earlier = UndoSheet([(A, "replace", "/owner_team", "platform"), (A, "replace", "tag:env", "a")])
    later = UndoSheet([(A, "replace", "tag:env", "b"), (A, "remove", "tag:new", "")])

    assert merge(earlier, later).rows == [
        (A, "replace", "/owner_team", "platform"),
        (A, "replace", "tag:env", "a"),
        (A, "remove", "tag:new", ""),
    ]


def test_merge_splits_a_rename_whose_keys_the_other_run_changed() -> None:
    # run 1 renamed /old → /new (value "m"); run 2 then changed /new from "m" to "m2"
    earlier = UndoSheet([(A, "rename", "/new", "old")])
    later = UndoSheet([(A, "replace", "/new", "m")])
    assert merge(earlier, later).rows == [(A, "remove", "/new", ""), (A, "add", "/old", "m")]
    # run 1 changed /old from "x" to "m"; run 2 then renamed /old → /new (value "m")
    earlier = UndoSheet([(B, "replace", "/old", "x")])
    later = UndoSheet([(B, "rename", "/new", "old")], moved={(B, "/new"): "m"})
    assert merge(earlier, later).rows == [(B, "replace", "/old", "x"), (B, "remove", "/new", "")]
    # run 1 renamed tag:old → tag:new, run 2 added tag:old: the moved value is unknown
    earlier = UndoSheet([(C, "rename", "tag:new", "tag:old")])
    merged = merge(earlier, UndoSheet([(C, "remove", "tag:old", "")]))
    assert merged.rows == [(C, "remove", "tag:new", "")]
    assert "tag:old" in merged.note()


def test_an_undo_path_holding_another_sheet_is_refused_before_anything_is_sent(
    run: CliRunner, half_failing: FakeServer, tmp_path: Path
) -> None:
    sheet = tmp_path / "fa.csv"
    sheet.write_text(HALF_SHEET, encoding="utf-8")
    (tmp_path / "fa.undo.csv").write_text(f"image_id,name\n{A},x\n", encoding="utf-8")

    code, stderr = _apply(run, half_failing, sheet)

    assert code == 2
    assert f"the undo path {tmp_path / 'fa.undo.csv'} holds a sheet that is not an undo" in stderr
    assert "move it away, or give --undo another path" in stderr
    assert half_failing.stats.patch_requests == half_failing.stats.tag_write_requests == 0


# -- 4. a rename onto a key that already held the value ------------------------------------


def test_undo_of_a_rename_onto_a_key_holding_the_value_restores_both_keys(
    run: CliRunner, tmp_path: Path
) -> None:
    images = [_image(A, ["old=same", "new=same"], oldkey="s", newkey="s")]
    with _fake(images) as fake:
        original = _state(fake)
        sheet = tmp_path / "rn.csv"
        sheet.write_text(
            f"{HEADER}{A},rename,/oldkey,newkey\n{A},rename,tag:old,tag:new\n", encoding="utf-8"
        )
        assert _apply(run, fake, sheet)[0] == 0
        edited = _state(fake)
        assert fake.store.images[A]["tags"] == ["new=same"]

        assert _apply(run, fake, tmp_path / "rn.undo.csv")[0] == 0
        assert _state(fake) == original
        assert _apply(run, fake, tmp_path / "rn.undo.undo.csv")[0] == 0
        assert _state(fake) == edited


# -- 5. key-only tags ----------------------------------------------------------------------


def test_key_only_tags_are_undone_and_the_undo_of_the_undo_round_trips(
    run: CliRunner, tmp_path: Path
) -> None:
    with _fake([_image(A, ["empty=", "env=dev"]), _image(B, ["k=v"])]) as fake:
        original = _state(fake)
        sheet = tmp_path / "em.csv"
        sheet.write_text(f"{HEADER}{A},remove,tag:empty,\n{B},add,tag:new,\n", encoding="utf-8")
        code, stderr = _apply(run, fake, sheet)
        assert code == 0, stderr
        assert "cannot be undone" not in stderr
        edited = _state(fake)
        undo = tmp_path / "em.undo.csv"
        assert _rows(undo) == [[A, "add", "tag:empty", ""], [B, "remove", "tag:new", ""]]

        assert _apply(run, fake, undo)[0] == 0
        assert _state(fake) == original
        assert _rows(tmp_path / "em.undo.undo.csv") == [
            [A, "remove", "tag:empty", ""],
            [B, "add", "tag:new", ""],
        ]
        assert _apply(run, fake, tmp_path / "em.undo.undo.csv")[0] == 0
        assert _state(fake) == edited


# -- 9. byte for byte, the tags field included ---------------------------------------------


def test_the_fake_shows_an_images_tags_sorted_by_key() -> None:
    assert tag_strings({"team": "core", "env": "dev", "flag": ""}) == [
        "env=dev",
        "flag",
        "team=core",
    ]


def test_apply_then_undo_restores_the_store_byte_for_byte(run: CliRunner, tmp_path: Path) -> None:
    images = [
        _image(A, ["env=dev", "team=core"], owner_team="platform", __description="desc one"),
        _image(B, ["env=prod"], min_ram=1024),
        _image(C, [], hw_firmware_type="uefi"),
    ]
    with _fake(images) as fake:
        original = _state(fake)
        sheet = tmp_path / "eb.csv"
        sheet.write_text(
            "image_id,name,__description,owner_team,tag:env,tag:team,tag:new,min_ram\n"
            f"{A},renamed,<remove>,<remove>,<remove>,core2,n1,\n"
            f"{B},,new desc,added,prod2,,<remove>,2048\n"
            f"{C},,,,,t3,,\n",
            encoding="utf-8",
        )
        assert _apply(run, fake, sheet)[0] == 0
        edited = _state(fake)

        assert _apply(run, fake, tmp_path / "eb.undo.csv")[0] == 0
        assert _state(fake) == original
        assert fake.store.images[A]["tags"] == ["env=dev", "team=core"]
        assert _apply(run, fake, tmp_path / "eb.undo.undo.csv")[0] == 0
        assert _state(fake) == edited


# -- 11. the messages naming a colliding undo path -----------------------------------------


def _error(run: CliRunner, tmp_path: Path, *args: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)
    for name in ("v.csv", "w.csv"):
        Path(name).write_text(f"image_id,name\n{A},x\n", encoding="utf-8")
    code, _, stderr = run("apply", *args, "--endpoint", "http://127.0.0.1:9")
    assert code == 2, stderr
    return stderr.strip()


def test_a_summary_page_on_the_undo_sheet_is_named_as_the_page_beside_the_summary(
    run: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ("v.csv", "--undo", "v.results.html", "--summary", "v.results.json")
    assert _error(run, tmp_path, *args, monkeypatch=monkeypatch) == (
        "Error: the HTML page v.results.html (beside --summary v.results.json) is the undo "
        "sheet itself — give --summary another path (its page is written beside it, as .html)"
    )


def test_the_default_undo_path_on_the_report_is_named_as_the_default(
    run: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ("w.csv", "--report", "w.undo.csv")
    assert _error(run, tmp_path, *args, monkeypatch=monkeypatch) == (
        "Error: the default undo path w.undo.csv (<sheet stem>.undo.<ext> beside the report) "
        "is the report itself — give --undo PATH, or another --report"
    )


def test_an_undo_path_given_on_the_report_is_named_by_its_option(
    run: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ("w.csv", "--undo", "w.results.csv")
    assert _error(run, tmp_path, *args, monkeypatch=monkeypatch) == (
        "Error: --undo w.results.csv is the report itself — give --undo another path"
    )
