"""Never lose a row: the journal, resume after SIGKILL, the run lock, the JSON summary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from batchpatch.fake import FakeConfig, running_fake
from batchpatch.journal import Journal
from batchpatch.ledger import Ledger
from batchpatch.lock import lock_path, run_lock
from batchpatch.models import Outcome, Status
from tests.e2e import TOKEN, run_cli, start_cli
from tests.sheets import write_sheet
from tests.test_cli import read_report

#: Real processes and wall-clock rates: run by `.ci/run` (`pytest -m process`), not by the
#: README's quick command, which must stay under 90 s on two cores.
pytestmark = pytest.mark.process

IMAGES: list[dict[str, Any]] = [
    {
        "id": str(uuid.UUID(int=n + 1, version=4)),
        "name": f"image-{n:02d}",
        "status": "active",
        "min_ram": 0,
    }
    for n in range(16)
]


def test_journal_keeps_done_outcomes_and_flags_images_in_doubt(tmp_path: Path) -> None:
    path = tmp_path / "r.csv.journal"
    first = Journal(path, Ledger(), sheet_sha256="abc", endpoint="http://127.0.0.1:1")
    first.sending("a")
    first.outcome(Outcome("a", Status.SUCCEEDED, 200, attempts=1))
    first.sending("b")
    first.outcome(Outcome("b", Status.FAILED, 503, "", "busy", attempts=5))
    first.sending("e")
    first.outcome(Outcome("e", Status.FAILED, None, "timeout", "no answer", attempts=5))
    first.sending("c")  # killed while c was in flight
    first.close(finished=False)
    with path.open("a") as file:
        file.write('{"event": "outcome", "image_id": "d", "sta')  # a line torn by the kill
    ledger = Ledger()
    again = Journal(path, ledger, sheet_sha256="abc", endpoint="http://127.0.0.1:1")
    assert set(ledger.done()) == {"a"}
    assert ledger.done()["a"].http_status == 200
    assert ledger.in_doubt() == {"c", "e"}  # e got no answer: it may have been applied
    again.close(finished=False)
    assert path.exists()
    ledger = Ledger()
    other = Journal(path, ledger, sheet_sha256="another sheet", endpoint="http://127.0.0.1:1")
    assert other.other_sheet  # kept: its images in doubt must still be read back
    assert ledger.in_doubt() == {"c", "e"}
    other.close(finished=True)
    assert not path.exists()


def test_restart_ignores_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path, Ledger(), sheet_sha256="s", endpoint="e")
    journal.outcome(Outcome("a", Status.SUCCEEDED))
    journal.close(finished=False)
    resumed_ledger, restarted_ledger = Ledger(), Ledger()
    resumed = Journal(path, resumed_ledger, sheet_sha256="s", endpoint="e")
    assert resumed_ledger.done()
    resumed.close(finished=False)
    restarted = Journal(path, restarted_ledger, sheet_sha256="s", endpoint="e", restart=True)
    assert not restarted_ledger.done()
    restarted.close(finished=True)


def outcome_lines(journal: Path) -> int:
    try:
        return journal.read_text().count('"event":"outcome"')
    except FileNotFoundError:
        return 0


def wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    """Poll a condition the test cannot be told about (another process's file)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.mark.parametrize(
    "done_before_kill",
    [
        pytest.param(0, id="before-any-outcome"),
        pytest.param(1, id="after-one"),
        pytest.param(7, id="mid-run"),
    ],
)
def test_sigkill_then_rerun_finishes_with_nothing_applied_twice(
    tmp_path: Path, done_before_kill: int
) -> None:
    rows = [[image["id"], f"renamed-{n:02d}", "512"] for n, image in enumerate(IMAGES)]
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name", "min_ram"], rows)
    journal = tmp_path / "s.results.csv.journal"
    # A short timeout: the rerun waits that long after the dead run's last write in doubt.
    args = ["apply", str(sheet), "--concurrency", "3", "--rate", "200", "--timeout", "2"]
    with running_fake(IMAGES, FakeConfig(token=TOKEN, latency=0.15)) as fake:
        process = start_cli(
            [*args, "--endpoint", fake.url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_for(
                lambda: (
                    journal.exists()
                    and outcome_lines(journal) >= done_before_kill
                    and fake.stats.patch_requests > done_before_kill
                ),
                "progress",
            )
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        assert process.returncode == -signal.SIGKILL
        # The fake finishes what the dead run had in flight (it is not told the client
        # died); the rerun starts once that has settled, as any later rerun would.
        wait_for(lambda: fake.stats.snapshot().in_flight == 0, "the dead run's PATCHes")
        assert journal.exists()
        killed_at = outcome_lines(journal)
        resumed = run_cli([*args, "--endpoint", fake.url])
        state = fake.store.images
        stats = fake.stats.snapshot()
    assert resumed.returncode == 0, resumed.stderr
    assert all(count == 1 for count in stats.applied_by_image.values())
    assert set(stats.applied_by_image) == {image["id"] for image in IMAGES}
    for n, image in enumerate(IMAGES):
        assert (state[image["id"]]["name"], state[image["id"]]["min_ram"]) == (
            f"renamed-{n:02d}",
            512,
        )
    report = read_report(tmp_path / "s.results.csv")
    assert report["image_id"].tolist() == [image["id"] for image in IMAGES]
    statuses = report["status"].tolist()
    # Whichever run applied a change, its row says so: the journal's outcomes are kept and
    # changes the killed run made while in flight are confirmed by reading them back.
    assert set(statuses) == {"succeeded"}
    assert killed_at <= len(statuses)
    assert not journal.exists()  # a finished run leaves no journal


def test_a_second_run_on_the_same_sheet_is_refused_while_one_holds_the_lock(
    tmp_path: Path,
) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[IMAGES[0]["id"], "x"]])
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake, run_lock(lock_path(sheet)):
        done = run_cli(["apply", str(sheet), "--endpoint", fake.url])
        other_report = run_cli(
            [
                "apply",
                str(sheet),
                "--endpoint",
                fake.url,
                "--report",
                str(tmp_path / "elsewhere.csv"),
            ]
        )
        assert fake.stats.total_requests == 0
    assert other_report.returncode == 2  # the lock is the sheet's, whatever the report
    assert done.returncode == 2
    assert f"another batchpatch run (pid {os.getpid()}) is working on this sheet" in done.stderr
    images = tmp_path / "images.json"
    images.write_text(json.dumps(IMAGES))
    again = run_cli(["apply", str(sheet), "--fake-images", str(images), "--fake"])
    assert again.returncode == 0, again.stderr  # released with the holder: this run got it
    assert "another batchpatch run" not in again.stderr


def test_summary_and_json_logs_for_scheduled_runs(tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "name"],
        [[IMAGES[0]["id"], "x"], [IMAGES[1]["id"], IMAGES[1]["name"]]],
    )
    summary = tmp_path / "summary.json"
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(
            [
                "apply",
                str(sheet),
                "--endpoint",
                fake.url,
                "--summary",
                str(summary),
                "--log-format",
                "json",
                "--debug",
            ]
        )
    assert done.returncode == 0, done.stderr
    data = json.loads(summary.read_text())
    assert data["exit_code"] == 0
    assert data["meaning"] == "every row succeeded or was already as asked"
    assert data["counts"] == {"succeeded": 1, "unchanged": 1}
    assert (data["rows"], data["images"], data["requests"]) == (2, 2, 3)  # 2 reads, 1 write
    assert data["report"] == str(tmp_path / "s.results.csv")
    for line in done.stderr.splitlines():
        entry = json.loads(line)
        assert set(entry) == {"time", "level", "logger", "message"}
    assert TOKEN not in done.stderr + summary.read_text()


@pytest.mark.parametrize(
    "signals", [pytest.param(1, id="sigint-graceful"), pytest.param(2, id="second-sigint-at-once")]
)
def test_a_signal_stops_cleanly_and_a_rerun_resumes(tmp_path: Path, signals: int) -> None:
    rows = [[image["id"], f"stopped-{n:02d}"] for n, image in enumerate(IMAGES)]
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], rows)
    journal = tmp_path / "s.results.csv.journal"
    args = ["apply", str(sheet), "--concurrency", "2", "--rate", "200", "--timeout", "2"]
    with running_fake(IMAGES, FakeConfig(token=TOKEN, latency=0.3)) as fake:
        process = start_cli(
            [*args, "--endpoint", fake.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        wait_for(
            lambda: outcome_lines(journal) >= 2 and fake.stats.snapshot().in_flight > 0,
            "requests in flight",
        )
        process.send_signal(signal.SIGINT)
        assert process.stderr is not None
        first_line = process.stderr.readline()  # the first signal has been handled
        assert first_line.startswith("Stopping: no new requests")
        if signals == 2:
            process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 3, stderr
        report = read_report(tmp_path / "s.results.csv")
        statuses = report["status"].tolist()
        assert "not_attempted" in statuses
        assert len(statuses) == len(IMAGES)
        if signals == 1:
            assert "Stopped early: stopped by a signal" in stderr
            assert "failed" not in statuses  # in-flight requests were let finish
        else:
            assert "Stopped early: stopped at once; requests in flight were cut off" in stderr
            assert set(report.loc[report["status"] == "failed", "error_code"]) <= {"interrupted"}
        assert journal.exists()
        wait_for(lambda: fake.stats.snapshot().in_flight == 0, "the cut-off PATCHes")
        resumed = run_cli([*args, "--endpoint", fake.url])
        state = fake.store.images
        stats = fake.stats.snapshot()
    assert resumed.returncode == 0, resumed.stderr
    assert all(count == 1 for count in stats.applied_by_image.values())
    assert [state[image["id"]]["name"] for image in IMAGES] == [row[1] for row in rows]
    assert set(read_report(tmp_path / "s.results.csv")["status"]) <= {"succeeded", "unchanged"}


@pytest.mark.parametrize("signals", [pytest.param(1, id="graceful"), pytest.param(2, id="at-once")])
def test_a_signal_during_the_read_pass_stops_the_run(tmp_path: Path, signals: int) -> None:
    rows = [[image["id"], f"never-{n:02d}"] for n, image in enumerate(IMAGES)]
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], rows)
    config = FakeConfig(token=TOKEN, rate_limit=2, retry_after=2)  # reads crawl
    with running_fake(IMAGES, config) as fake:
        process = start_cli(
            ["apply", str(sheet), "--endpoint", fake.url, "--rate", "50"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        wait_for(lambda: fake.stats.snapshot().list_requests >= 3, "reads under way")
        process.send_signal(signal.SIGINT)
        assert process.stderr is not None
        assert process.stderr.readline().startswith("Stopping: no new requests")
        if signals == 2:
            process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert fake.stats.snapshot().patch_requests == 0
    assert process.returncode == 3, stderr
    assert "while the current images were being read" in stderr
    report = read_report(tmp_path / "s.results.csv")
    assert set(report["status"]) == {"not_attempted"}


def test_json_logs_cover_every_line_a_stopped_run_writes(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[IMAGES[0]["id"], "x"]])
    with running_fake(IMAGES, FakeConfig(token="the-right-one")) as fake:
        done = run_cli(
            ["apply", str(sheet), "--endpoint", fake.url, "--log-format", "json"],
            token="a-wrong-one",
        )
    assert done.returncode == 3
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    assert any(entry["message"].startswith("Stopped early:") for entry in entries)
    assert {entry["level"] for entry in entries} <= {"warning", "error"}
