"""Progress where there is no terminal: a line every --progress-every seconds, a line for a
resumed run, and a terminal's bar left as it was."""

from __future__ import annotations

import io
import logging
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from batchpatch.cli import main
from batchpatch.fake import FakeConfig, running_fake
from batchpatch.journal import Journal, journal_path
from batchpatch.ledger import Ledger
from batchpatch.models import Outcome, Status
from batchpatch.planfile import sheet_digest
from batchpatch.progress import EVENTS, ProgressLines
from tests.e2e import SAMPLES, TOKEN, _logging_restored, run_cli, start_cli
from tests.sheets import write_sheet

IMAGES: list[dict[str, Any]] = [
    {"id": str(uuid.UUID(int=n + 1, version=4)), "name": f"image-{n}", "status": "active"}
    for n in range(4)
]
IDS = [image["id"] for image in IMAGES]
PROGRESS = re.compile(
    r"^progress: (\d+)/8 images done \| .+ \| \d+\.\d images/s \| \d+ throttled \| ETA \S+$"
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def finish(ledger: Ledger, image_id: str, status: Status) -> None:
    ledger.finish(Outcome(image_id, status))


def test_a_line_says_done_total_counts_rate_throttled_and_eta(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, ledger, throttled = Clock(), Ledger(), [0]
    lines = ProgressLines(ledger, 1000, lambda: throttled[0], clock=clock)
    for n in range(400):
        finish(ledger, f"s{n}", Status.SUCCEEDED)
    for n in range(12):
        finish(ledger, f"f{n}", Status.FAILED)
    clock.now += 40  # 412 images in 40 s
    throttled[0] = 3
    with caplog.at_level(logging.INFO, logger=EVENTS):
        lines.tell()
    assert caplog.messages == [
        "progress: 412/1,000 images done | 12 failed, 400 succeeded | 10.3 images/s | "
        "3 throttled | ETA 0m58s"
    ]
    assert caplog.records[0].fields == {  # type: ignore[attr-defined]
        "event": "progress",
        "done": 412,
        "total": 1000,
        "counts": {"failed": 12, "succeeded": 400},
        "images_per_second": 10.3,
        "throttled": 3,
        "eta_seconds": 58,
    }
    # The rate is the current one: since the last line, not since the start.
    for n in range(300):
        finish(ledger, f"t{n}", Status.SUCCEEDED)
    clock.now += 10
    assert lines.fields()["images_per_second"] == 30.0
    assert lines.fields()["eta_seconds"] == 21  # nothing since: 288 left at 712 in 50 s


def test_eta_is_unknown_before_anything_finished_and_zero_at_the_end() -> None:
    clock, ledger = Clock(), Ledger()
    lines = ProgressLines(ledger, 2, clock=clock)
    assert lines.fields()["eta_seconds"] is None
    clock.now += 5
    assert lines.fields()["eta_seconds"] is None
    finish(ledger, "a", Status.SUCCEEDED)
    finish(ledger, "b", Status.UNCHANGED)
    clock.now += 1
    assert lines.fields()["eta_seconds"] == 0


@pytest.mark.anyio
async def test_the_ticker_tells_a_line_each_interval_without_waiting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, ledger = Clock(), Ledger()
    lines = ProgressLines(ledger, 3, clock=clock)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) > 3:
            raise anyio.get_cancelled_exc_class()
        clock.now += seconds
        finish(ledger, f"i{len(waits)}", Status.SUCCEEDED)

    with (
        caplog.at_level(logging.INFO, logger=EVENTS),
        pytest.raises(anyio.get_cancelled_exc_class()),
    ):
        await lines.tick(15.0, sleep)
    assert waits == [15.0] * 4
    assert [record.fields["done"] for record in caplog.records] == [1, 2, 3]  # type: ignore[attr-defined]
    assert caplog.messages[0].startswith("progress: 1/3 images done | 1 succeeded | 0.1 images/s")


@pytest.mark.process
def test_lines_from_a_real_process_with_stderr_to_a_pipe(tmp_path: Path) -> None:
    """16 requests at 10 a second take over 1.5 s, so lines every 0.05 s must come."""
    for name in ("changes.csv", "images.json"):
        shutil.copy(SAMPLES / name, tmp_path / name)
    process = start_cli(
        ["apply", str(tmp_path / "changes.csv"), "--fake", "--progress-every", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    found = [PROGRESS.match(line) for line in err.splitlines()]
    done = [int(match.group(1)) for match in found if match]
    assert done, err
    assert done == sorted(done)
    assert "8 rows: 8 succeeded" in out


def test_quiet_and_dry_run_tell_no_progress(tmp_path: Path) -> None:
    for name in ("changes.csv", "images.json"):
        shutil.copy(SAMPLES / name, tmp_path / name)
    for extra in (["--quiet"], ["--dry-run"]):
        done = run_cli(
            ["apply", str(tmp_path / "changes.csv"), "--fake", "--progress-every", "0.01", *extra]
        )
        assert done.returncode == 0, done.stderr
        assert "progress:" not in done.stderr


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_bar_and_no_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("changes.csv", "images.json"):
        shutil.copy(SAMPLES / name, tmp_path / name)
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setenv("BATCHPATCH_CONFIG", "/dev/null")
    with _logging_restored():
        code = main(["apply", str(tmp_path / "changes.csv"), "--fake", "--progress-every", "0.01"])
    assert code == 0
    shown = terminal.getvalue()
    assert "8/8" in shown  # tqdm's bar
    assert "progress:" not in shown


def left_by_a_killed_run(sheet: Path, endpoint: str) -> None:
    """A journal: the first image done, the second sent with no answer (in doubt)."""
    report = sheet.with_name(sheet.stem + ".results.csv")
    journal = Journal(
        journal_path(report), Ledger(), sheet_sha256=sheet_digest(sheet), endpoint=endpoint
    )
    journal.sending(IDS[0], at=0.0)
    journal.outcome(Outcome(IDS[0], Status.SUCCEEDED, 200, attempts=1))
    journal.sending(IDS[1], at=0.0)
    journal.close(finished=False)


@pytest.mark.parametrize("quiet", [[], ["--quiet"]], ids=["default", "quiet"])
def test_a_resumed_run_says_so_in_one_line(tmp_path: Path, quiet: list[str]) -> None:
    sheet = write_sheet(
        tmp_path / "s.csv", ["image_id", "name"], [[i, f"new-{n}"] for n, i in enumerate(IDS)]
    )
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        left_by_a_killed_run(sheet, fake.url)
        done = run_cli(["apply", str(sheet), "--endpoint", fake.url, *quiet])
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("resuming")]
    assert lines == ["resuming: 1 of 4 images already done, 1 in doubt to read back"]
