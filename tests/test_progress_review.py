"""Review of the watcher's lines: a resumed run's progress starts from what it resumed and
reckons its rate from its own images only; an image the plan failed (``not_found``) gets
its ``image_failed`` line; the undo line is information, not a warning."""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from batchpatch.fake import FakeConfig, running_fake
from batchpatch.journal import Journal, journal_path
from batchpatch.ledger import Event, Ledger
from batchpatch.models import Outcome, Status
from batchpatch.planfile import sheet_digest
from batchpatch.progress import EVENTS, ProgressLines
from tests.e2e import TOKEN, run_cli
from tests.sheets import write_sheet

IMAGES: list[dict[str, Any]] = [
    {"id": str(uuid.UUID(int=n + 1, version=4)), "name": f"image-{n}", "status": "active"}
    for n in range(5)
]
IDS = [image["id"] for image in IMAGES]
MISSING = "00000000-0000-4000-8000-00000000dead"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def resumed(ledger: Ledger, image_id: str) -> None:
    """An image an earlier run finished: restored from its journal, then told as settled
    (as the job tells it when the run resumes)."""
    entry = ledger.restore(image_id, Outcome(image_id, Status.SUCCEEDED), None, in_doubt=False)
    ledger.announce(entry)


def test_resumed_images_are_done_but_not_part_of_the_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, ledger = Clock(), Ledger()
    lines = ProgressLines(ledger, 100, clock=clock)
    lines.listen()
    for n in range(25):
        resumed(ledger, f"earlier-{n}")
    assert lines.done == 25
    clock.now += 10
    for n in range(5):
        ledger.finish(Outcome(f"now-{n}", Status.SUCCEEDED))
    with caplog.at_level(logging.INFO, logger=EVENTS):
        lines.tell()
    fields = caplog.records[0].fields  # type: ignore[attr-defined]
    assert fields["done"] == 30
    assert fields["images_per_second"] == 0.5  # 5 in 10 s, not 30 in 10 s
    assert fields["eta_seconds"] == 140  # 70 left at 0.5 a second
    assert caplog.messages[0].startswith("progress: 30/100 images done | 30 succeeded | 0.5 ")


def killed_run_journal(sheet: Path, endpoint: str) -> None:
    """Four images done, the fifth sent just now with no answer (in doubt)."""
    report = sheet.with_name(sheet.stem + ".results.csv")
    journal = Journal(
        journal_path(report), Ledger(), sheet_sha256=sheet_digest(sheet), endpoint=endpoint
    )
    for image_id in IDS[:4]:
        journal.sending(image_id, at=time.time())
        journal.outcome(Outcome(image_id, Status.SUCCEEDED, 200, attempts=1))
    journal.sending(IDS[4], at=time.time())
    journal.close(finished=False)


def json_lines(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_a_resumed_run_counts_from_the_resumed_images_while_it_waits(tmp_path: Path) -> None:
    """The run waits (``--timeout``) before reading back the image in doubt: its lines
    meanwhile say 4 of 5 done, nothing of this run's yet (no rate, no ETA)."""
    sheet = write_sheet(
        tmp_path / "s.csv", ["image_id", "name"], [[i, f"new-{n}"] for n, i in enumerate(IDS)]
    )
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        killed_run_journal(sheet, fake.url)
        done = run_cli(
            [
                "apply",
                str(sheet),
                "--endpoint",
                fake.url,
                "--timeout",
                "1",
                "--progress-every",
                "0.02",
                "--log-format",
                "json",
            ]
        )
    assert done.returncode == 0, done.stderr
    lines = json_lines(done.stderr)
    resume = [line for line in lines if line.get("event") == "resume"]
    assert [(r["done"], r["in_doubt"]) for r in resume] == [(4, 1)]
    progress = [line for line in lines if line.get("event") == "progress"]
    assert progress, done.stderr
    assert all(line["done"] >= 4 for line in progress), progress
    waiting = [line for line in progress if line["done"] == 4]
    assert waiting, progress  # the wait of --timeout 1 s, told every 0.02 s
    assert all((line["images_per_second"], line["eta_seconds"]) == (0.0, None) for line in waiting)


def test_an_image_the_plan_failed_gets_its_line(tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "s.csv", ["image_id", "name"], [[IDS[0], "new-0"], [MISSING, "ghost"]]
    )
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(
            ["apply", str(sheet), "--endpoint", fake.url, "--log-format", "json", "--restart"]
        )
    assert done.returncode == 1, done.stderr
    failed = [line for line in json_lines(done.stderr) if line.get("event") == "image_failed"]
    assert [(f["image_id"], f["status"], f["error_code"]) for f in failed] == [
        (MISSING, "failed", "not_found")
    ]
    assert failed[0]["error_message"]  # the plan's reason


def test_the_plan_failure_line_as_text(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[MISSING, "ghost"]])
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(["apply", str(sheet), "--endpoint", fake.url])
    failed = [line for line in done.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1, done.stderr
    assert failed[0].startswith(f"failed: {MISSING} not_found: "), failed


def test_settled_failures_from_a_resume_are_not_told_twice() -> None:
    """Only failures of this run are told: an image the earlier run finished is counted,
    never told as failed."""
    ledger, told = Ledger(), []
    lines = ProgressLines(ledger, 3)
    lines.listen()
    ledger.listen(lambda event, entry, outcome: told.append(event))
    resumed(ledger, "a")
    assert (lines.resumed, lines.finished, told) == (1, 0, [Event.SETTLED])


def run_with_undo(tmp_path: Path, *extra: str) -> Any:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[IDS[0], "renamed"]])
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(["apply", str(sheet), "--endpoint", fake.url, "--restart", *extra])
    assert done.returncode == 0, done.stderr
    return done, sheet.with_name("s.undo.csv")


def test_the_undo_line_is_information_in_json(tmp_path: Path) -> None:
    done, undo = run_with_undo(tmp_path, "--log-format", "json")
    lines = [line for line in json_lines(done.stderr) if line["message"].startswith("undo:")]
    assert len(lines) == 1, done.stderr
    assert lines[0]["level"] == "info"
    assert lines[0]["logger"] == EVENTS
    assert lines[0]["message"] == (
        f"undo: {undo} — 'batchpatch apply {undo}' puts back what this run changed"
    )
    assert not [line for line in json_lines(done.stderr) if line["level"] == "warning"]


@pytest.mark.parametrize("extra", [[], ["--quiet"]], ids=["default", "quiet"])
def test_the_undo_line_is_shown_as_text_also_when_quiet(tmp_path: Path, extra: list[str]) -> None:
    done, undo = run_with_undo(tmp_path, *extra)
    lines = [line for line in done.stderr.splitlines() if line.startswith("undo:")]
    assert lines == [f"undo: {undo} — 'batchpatch apply {undo}' puts back what this run changed"], (
        done.stderr
    )
