"""``apply --only STATUS[,STATUS]`` on a report fed back in: only the rows whose earlier
status is listed are sent; every other row keeps its earlier outcome in the new report."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchpatch.fake import FakeConfig, running_fake
from batchpatch.journal import Journal, unsettled_writes
from batchpatch.ledger import Ledger
from batchpatch.models import Outcome, Status
from batchpatch.rerun import only_statuses
from tests.e2e import TOKEN, run_cli, sample_images
from tests.sheets import write_sheet
from tests.test_cli import read_report

IMAGES = sample_images()
A, B, C = (image["id"] for image in IMAGES[:3])
#: The earlier run's result columns a kept row must carry over exactly.
KEPT = ["status", "http_status", "error_code", "error_message", "request_id", "attempts"]


def _first_run(tmp_path: Path, suffix: str, fake_url: str) -> Path:
    """A run where B fails (503, one attempt allowed) and A, C succeed: its report."""
    sheet = write_sheet(
        tmp_path / f"s{suffix}",
        ["image_id", "name"],
        [[A, "only-a"], [B, "only-b"], [C, IMAGES[2]["name"]]],
    )
    done = run_cli(["apply", str(sheet), "--endpoint", fake_url, "--max-attempts", "1"])
    assert done.returncode == 1, done.stderr
    report = tmp_path / f"s.results{suffix}"
    assert read_report(report)["status"].tolist() == ["succeeded", "failed", "unchanged"]
    return report


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_only_failed_sends_the_failed_rows_and_keeps_the_others(
    tmp_path: Path, suffix: str
) -> None:
    config = FakeConfig(token=TOKEN, script={B: ["503"]})
    with running_fake(IMAGES, config) as fake:
        report = _first_run(tmp_path, suffix, fake.url)
        before = fake.stats.snapshot()
        second = tmp_path / f"again{suffix}"
        done = run_cli(
            [
                "apply",
                str(report),
                "--endpoint",
                fake.url,
                "--only",
                "failed",
                "--report",
                str(second),
            ]
        )
        after = fake.stats.snapshot()
        state = fake.store.images
    assert done.returncode == 0, done.stderr
    sent = after.patches_by_image - before.patches_by_image
    assert dict(sent) == {B: 1}  # A (succeeded) and C (unchanged) were not sent again
    assert after.list_requests - before.list_requests == 1  # nor read
    assert state[B]["name"] == "only-b"
    earlier, now = read_report(report), read_report(second)
    assert now["status"].tolist() == ["succeeded", "succeeded", "unchanged"]
    for row in (0, 2):  # kept exactly as the earlier run recorded them
        assert now.loc[row, [*KEPT, "before", "after"]].tolist() == (
            earlier.loc[row, [*KEPT, "before", "after"]].tolist()
        )
    assert now.loc[1, "request_id"] != earlier.loc[1, "request_id"]
    assert now.loc[1, "error_code"] == ""


def test_several_statuses_and_a_long_sheet(tmp_path: Path) -> None:
    """Selection is by row: an image's row that succeeded is not sent again, its failed
    row is; a row left out keeps its status even beside a row that is sent."""
    sheet = write_sheet(
        tmp_path / "r.csv",
        ["image_id", "op", "path", "value", *KEPT, "elapsed_ms", "before", "after"],
        [
            [A, "add", "team", "t1", "succeeded", "200", "", "", "req-a", "1", "5", "", "t1"],
            [
                A,
                "add",
                "cost",
                "c1",
                "failed",
                "503",
                "IMG.0060",
                "busy",
                "req-b",
                "5",
                "7",
                "",
                "",
            ],
            [B, "add", "team", "t2", "not_attempted", "", "", "", "", "0", "", "", ""],
            [C, "add", "team", "t3", "skipped", "", "not_active", "no", "", "0", "", "", ""],
        ],
    )
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(
            ["apply", str(sheet), "--endpoint", fake.url, "--only", "Failed, not_attempted"]
        )
        stats = fake.stats.snapshot()
        state = fake.store.images
    assert done.returncode == 1, done.stderr  # the kept skipped row is still not done
    assert dict(stats.patches_by_image) == {A: 1, B: 1}
    assert state[A].get("cost") == "c1"
    assert "team" not in state[A]  # row 2 was kept, not sent again
    report = read_report(tmp_path / "r.results.csv")
    assert report["status"].tolist() == ["succeeded", "succeeded", "succeeded", "skipped"]
    assert report.loc[0, "request_id"] == "req-a"
    assert report.loc[3, "error_code"] == "not_active"
    assert "4 rows: 3 succeeded, 1 skipped" in done.stdout


def test_unknown_status_names_exit_2_naming_the_valid_ones(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[A, "x"]])
    done = run_cli(["apply", str(sheet), "--fake", "--only", "failed,faild"])
    assert done.returncode == 2
    assert "unknown status 'faild'" in done.stderr
    assert "succeeded, unchanged, planned, failed, skipped, invalid, not_attempted" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "s.results.csv").exists()


def test_only_on_a_sheet_that_is_not_a_report_exits_2_with_the_fix(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[A, "x"]])
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(["apply", str(sheet), "--endpoint", fake.url, "--only", "failed"])
        stats = fake.stats.snapshot()
    assert done.returncode == 2
    assert stats.total_requests == 0
    assert "--only failed picks rows by the status an earlier run gave them" in done.stderr
    assert "is not a report" in done.stderr
    assert "s.results.csv) as the sheet, or leave the option out" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_status_cell_that_holds_no_status_is_located(tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "r.csv",
        ["image_id", "name", *KEPT, "elapsed_ms", "before", "after"],
        [[A, "x", "done?", "", "", "", "", "0", "", "", ""]],
    )
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(["apply", str(sheet), "--endpoint", fake.url, "--only", "failed"])
    assert done.returncode == 2
    assert done.stderr.startswith(f"{sheet}:2:status: 'done?' is not a status a report writes")


@pytest.mark.parametrize(
    ("names", "wanted"),
    [
        pytest.param(["failed"], {"failed"}, id="one"),
        pytest.param([" FAILED ", "not_attempted", ""], {"failed", "not_attempted"}, id="tidy"),
    ],
)
def test_status_names(names: list[str], wanted: set[str]) -> None:
    assert {str(status) for status in only_statuses(names)} == wanted


@pytest.mark.parametrize("names", [[""], ["ok"], ["failed", "done"]])
def test_bad_status_names(names: list[str]) -> None:
    with pytest.raises(ValueError, match="choose from succeeded"):
        only_statuses(names)


def test_only_as_written_on_the_report_of_an_unfinished_run_is_refused(tmp_path: Path) -> None:
    """That run's journal still names writes that may have been applied: sending the rows
    again as written would apply them twice.  With the read pass the rows are read first."""
    config = FakeConfig(token=TOKEN, script={B: ["503"]})
    with running_fake(IMAGES, config) as fake:
        report = _first_run(tmp_path, ".csv", fake.url)
        _unfinished_journal(tmp_path / "s.results.csv.journal", fake.url, sent=B)
        before = fake.stats.snapshot()
        again = ["apply", str(report), "--endpoint", fake.url, "--only", "failed"]
        blind = run_cli([*again, "--no-plan"])
        sent_blind = fake.stats.snapshot().patches_by_image - before.patches_by_image
        read_first = run_cli(again)
    assert blind.returncode == 2, blind.stderr
    assert "did not finish" in blind.stderr
    assert f"names 1 write(s) that may have been applied (image {B})" in blind.stderr
    assert "s.results.csv.journal" in blind.stderr
    assert "rerun that run's own command to resume it, or leave out --no-plan" in blind.stderr
    assert "Traceback" not in blind.stderr
    assert sent_blind.total() == 0
    assert read_first.returncode == 0, read_first.stderr


def _unfinished_journal(path: Path, endpoint: str, *, sent: str = "", failed: str = "") -> None:
    """The journal a run left that stopped with a write to ``sent`` unanswered, or after
    a definite failure of ``failed``."""
    journal = Journal(path, Ledger(), sheet_sha256="0" * 64, endpoint=endpoint)
    for image_id in filter(None, (sent, failed)):
        journal.sending(image_id, at=1.0)
    if failed:
        journal.outcome(Outcome(failed, Status.FAILED, 503, attempts=1), in_doubt=False)
    journal.close(finished=False)


def test_only_as_written_goes_ahead_when_the_unfinished_run_left_nothing_in_doubt(
    tmp_path: Path,
) -> None:
    config = FakeConfig(token=TOKEN, script={B: ["503"]})
    with running_fake(IMAGES, config) as fake:
        report = _first_run(tmp_path, ".csv", fake.url)
        _unfinished_journal(tmp_path / "s.results.csv.journal", fake.url, failed=B)
        before = fake.stats.snapshot()
        again = ["apply", str(report), "--endpoint", fake.url, "--only", "failed", "--no-plan"]
        done = run_cli(again)
        sent = fake.stats.snapshot().patches_by_image - before.patches_by_image
    assert done.returncode == 0, done.stderr
    assert dict(sent) == {B: 1}


def test_a_journal_that_is_not_one_counts_as_naming_writes_in_doubt(tmp_path: Path) -> None:
    assert unsettled_writes(tmp_path / "none.journal") == set()
    (tmp_path / "bad.journal").write_text("{}\n", encoding="utf-8")
    assert unsettled_writes(tmp_path / "bad.journal") is None
    _unfinished_journal(tmp_path / "j.journal", "http://127.0.0.1:9", sent=A, failed=B)
    assert unsettled_writes(tmp_path / "j.journal") == {A}
