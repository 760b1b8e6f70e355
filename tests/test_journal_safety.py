"""The journal's files: never through a planted symlink, damaged lines ignored and counted,
and a full disk (a real file size limit, ``RLIMIT_FSIZE``) ends in exit 3 with the outcomes
kept, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from batchpatch.fake import FakeConfig, running_fake
from batchpatch.journal import Journal
from batchpatch.ledger import Ledger
from batchpatch.models import Outcome, Status
from batchpatch.planfile import sheet_digest
from tests.e2e import ROOT, TOKEN, CliRunner, cli_environment, cli_runner
from tests.sheets import write_sheet
from tests.test_cli import read_report

IMAGES: list[dict[str, Any]] = [
    {
        "id": str(uuid.UUID(int=n + 1, version=4)),
        "name": f"image-{n:02d}",
        "status": "active",
        "min_ram": 0,
    }
    for n in range(16)
]
IDS = [image["id"] for image in IMAGES]

#: Runs ``python ARGS...`` with a file size limit, as a full disk would stop its writes.
LIMITED = (
    "import os, resource, sys; limit = int(sys.argv[1]); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> CliRunner:
    return cli_runner(monkeypatch, capsys)


def run_limited(limit: int, args: list[str]) -> subprocess.CompletedProcess[str]:
    """``batchpatch ARGS`` as a subprocess whose files cannot grow past ``limit`` bytes."""
    return subprocess.run(
        [sys.executable, "-c", LIMITED, str(limit), "-m", "batchpatch", *args],
        cwd=ROOT,
        env=cli_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def renames(folder: Path, count: int = len(IMAGES)) -> Path:
    return write_sheet(
        folder / "s.csv",
        ["image_id", "name"],
        [[image_id, f"renamed-{n:02d}"] for n, image_id in enumerate(IDS[:count])],
    )


# --- Symlinks are never followed ------------------------------------------------------------


def test_a_symlink_at_the_fresh_journals_old_path_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "r.csv.journal"
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    (tmp_path / "r.csv.journal.new").symlink_to(victim)
    journal = Journal(path, Ledger(), sheet_sha256="s", endpoint="e")
    journal.outcome(Outcome("a", Status.SUCCEEDED))
    journal.close(finished=False)
    assert victim.read_text() == "keep me\n"
    assert not path.is_symlink()
    assert '"image_id":"a"' in path.read_text()


def test_a_symlink_at_the_journal_path_is_replaced_never_written_through(
    tmp_path: Path, cli: CliRunner
) -> None:
    sheet = renames(tmp_path, 2)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    (tmp_path / "s.results.csv.journal").symlink_to(victim)
    (tmp_path / "s.results.csv.journal.new").symlink_to(victim)
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        code, _, err = cli("apply", str(sheet), "--endpoint", fake.url)
    assert code == 0, err
    assert victim.read_text() == "keep me\n"
    assert not (tmp_path / "s.results.csv.journal").exists()  # finished: removed


def test_fresh_journals_a_killed_run_left_are_removed_at_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "r.csv.journal"
    stale = tmp_path / ".r.csv.journal.k1ll3d.new"
    stale.write_text('{"format": "batchpatch-journal/1"}\n')
    unrelated = tmp_path / ".other.csv.journal.x.new"
    unrelated.write_text("")
    Journal(path, Ledger(), sheet_sha256="s", endpoint="e").close(finished=True)
    assert not stale.exists()
    assert unrelated.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [unrelated.name]


def test_a_folder_at_the_journal_path_is_refused_before_anything_is_sent(
    tmp_path: Path, cli: CliRunner
) -> None:
    sheet = renames(tmp_path, 2)
    (tmp_path / "s.results.csv.journal").mkdir()
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        code, _, err = cli("apply", str(sheet), "--endpoint", fake.url)
        assert fake.stats.total_requests == 0
    assert code == 2
    assert "s.results.csv.journal is a folder where the journal goes — move it away" in err
    assert "Traceback" not in err


# --- Damaged lines --------------------------------------------------------------------------

DAMAGED_LINES = [
    pytest.param(b'{"event": "outcome", "status": "succeeded"}', id="no-image-id"),
    pytest.param(
        b'{"event": "outcome", "image_id": "b", "status": "exploded"}', id="unknown-status"
    ),
    pytest.param(b'{"event": "sending", "image_id": "caf\xe9"}', id="not-utf-8"),
    pytest.param(
        b'{"event": "outcome", "image_id": "b", "status": "failed", "attempts": "x"}',
        id="wrong-type",
    ),
    pytest.param(b'{"event": "sending", "image_id": ["b"]}', id="id-not-text"),
    pytest.param(b'["not", "an", "entry"]', id="not-an-object"),
    pytest.param(b'{"no": "event"}', id="neither-header-nor-event"),
    pytest.param(b'{"event": "outcome", "image_id": "b", "sta', id="torn"),
]


@pytest.mark.parametrize("line", DAMAGED_LINES)
def test_a_damaged_line_is_ignored_and_counted(tmp_path: Path, line: bytes) -> None:
    path = tmp_path / "r.csv.journal"
    first = Journal(path, Ledger(), sheet_sha256="s", endpoint="e")
    first.outcome(Outcome("a", Status.SUCCEEDED, 200, attempts=1))
    first.sending("c")
    first.close(finished=False)
    with path.open("ab") as file:
        file.write(line + b"\n")
    ledger = Ledger()
    again = Journal(path, ledger, sheet_sha256="s", endpoint="e")
    assert again.damaged == 1
    assert set(ledger.done()) == {"a"}
    assert ledger.in_doubt() == {"c"}
    again.close(finished=True)


def test_a_line_separator_inside_a_message_does_not_split_its_line(tmp_path: Path) -> None:
    path = tmp_path / "r.csv.journal"
    first = Journal(path, Ledger(), sheet_sha256="s", endpoint="e")
    first.outcome(Outcome("a", Status.SUCCEEDED, error_message="one\u2028two\x0bthree"))
    first.close(finished=False)
    ledger = Ledger()
    again = Journal(path, ledger, sheet_sha256="s", endpoint="e")
    assert again.damaged == 0
    assert ledger.done()["a"].error_message == "one\u2028two\x0bthree"
    again.close(finished=True)


def test_a_rerun_over_a_damaged_journal_says_how_many_lines_it_ignored(
    tmp_path: Path, cli: CliRunner
) -> None:
    sheet = renames(tmp_path, 3)
    path = tmp_path / "s.results.csv.journal"
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        earlier = Journal(path, Ledger(), sheet_sha256=sheet_digest(sheet), endpoint=fake.url)
        earlier.outcome(Outcome(IDS[0], Status.SUCCEEDED, 200, attempts=1))
        earlier.close(finished=False)
        with path.open("ab") as file:
            file.write(b"\n".join(param.values[0] for param in DAMAGED_LINES) + b"\n")
        code, _, err = cli("apply", str(sheet), "--endpoint", fake.url)
        patched = set(fake.stats.snapshot().applied_by_image)
    assert code == 0, err
    assert f"ignored {len(DAMAGED_LINES)} damaged line(s)" in err
    assert "Traceback" not in err
    assert patched == set(IDS[1:3])  # the recorded outcome still counts: not sent again


# --- A full disk ----------------------------------------------------------------------------


def test_a_journal_that_cannot_grow_stops_the_run_and_the_report_keeps_every_row(
    tmp_path: Path, cli: CliRunner
) -> None:
    sheet = renames(tmp_path)
    args = ["apply", str(sheet), "--concurrency", "1", "--rate", "1000", "--timeout", "2"]
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        # --no-plan keeps the report small (no "before") while each image costs the journal
        # two lines: the journal reaches the limit first.
        done = run_limited(3000, [*args, "--no-plan", "--endpoint", fake.url])
        sent_before = fake.stats.patch_requests
        report = read_report(tmp_path / "s.results.csv")
        code, _, err = cli(*args, "--endpoint", fake.url)  # space freed: rerun
        stats = fake.stats.snapshot()
        names = [fake.store.images[image_id]["name"] for image_id in IDS]
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert (
        f"could not write the journal at {tmp_path / 's.results.csv.journal'}: "
        "File too large — no request was started after that; the report holds every "
        "outcome; free space and rerun"
    ) in done.stderr
    assert 0 < sent_before < len(IMAGES)
    assert len(report) == len(IMAGES)
    assert set(report["status"]) == {"succeeded", "not_attempted"}
    assert code == 0, err
    assert all(count == 1 for count in stats.applied_by_image.values())  # nothing twice
    assert names == [f"renamed-{n:02d}" for n in range(len(IMAGES))]


def test_a_report_that_cannot_be_written_points_to_the_journal(
    tmp_path: Path, cli: CliRunner
) -> None:
    # One image, forty rows with a long comment each: a small journal and a big report.
    sheet = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "op", "path", "value", "#note"],
        [[IDS[0], "add", f"key_{n:02d}", f"value-{n:02d}", "n" * 1000] for n in range(40)],
    )
    journal = tmp_path / "s.results.csv.journal"
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        done = run_limited(30_000, ["apply", str(sheet), "--endpoint", fake.url])
        left = sorted(p.name for p in tmp_path.iterdir())
        code, _, err = cli("apply", str(sheet), "--endpoint", fake.url)
        patches = fake.stats.patch_requests
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert (
        f"could not write the report {tmp_path / 's.results.csv'}: File too large — "
        f"the journal at {journal} holds every outcome; free space and rerun"
    ) in done.stderr
    assert left == ["s.csv", journal.name]  # no half report, no temp file left behind
    assert code == 0, err
    assert patches == 1  # the rerun took the outcome from the journal
    report = read_report(tmp_path / "s.results.csv")
    assert len(report) == 40
    assert "not_attempted" not in set(report["status"])
    assert not journal.exists()
    assert not os.path.exists(tmp_path / "s.results.csv.journal.new")


#: File size limits a hundred bytes apart put the failed write on a ``sending`` line or an
#: outcome line; two that hit a ``sending`` line run in the quick suite, the sweep with
#: ``-m process``.
FULL_DISK_LIMITS = [
    limit if limit in (2700, 2800) else pytest.param(limit, marks=pytest.mark.process)
    for limit in range(2200, 3400, 100)
]


@pytest.mark.parametrize("limit", FULL_DISK_LIMITS)
def test_a_write_the_full_disk_kept_out_of_the_journal_is_not_sent_so_a_rerun_applies_it_once(
    tmp_path: Path, cli: CliRunner, limit: int
) -> None:
    # Neither a failed ``sending`` line nor a failed outcome line may leave a PATCH
    # applied that the journal does not know of (a --no-plan rerun would send it again).
    sheet = renames(tmp_path)
    args = ["apply", str(sheet), "--concurrency", "1", "--rate", "1000", "--no-plan"]
    args += ["--timeout", "2"]  # an image left in doubt is read back 2 s after its write
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        done = run_limited(limit, [*args, "--endpoint", fake.url])
        report = read_report(tmp_path / "s.results.csv")
        applied_then = dict(fake.stats.snapshot().applied_by_image)
        code, _, err = cli(*args, "--endpoint", fake.url)
        applied = fake.stats.snapshot().applied_by_image
    assert done.returncode == 3, done.stderr
    assert "no request was started after that" in done.stderr
    succeeded = set(report.loc[report["status"] == "succeeded", "image_id"])
    assert succeeded == set(applied_then)  # the report tells what the fake took, no more
    assert set(report["status"]) <= {"succeeded", "not_attempted"}
    assert code == 0, err
    assert {image_id: applied[image_id] for image_id in IDS} == dict.fromkeys(IDS, 1)
