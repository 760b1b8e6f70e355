"""The process never crashes and keeps its exit code: a closed stderr, a stdout reader that
goes away, SIGHUP, log calls at ``--debug``, option errors as JSON, statuses said once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from batchpatch.client import parse_error
from batchpatch.errors import ReadFailed
from batchpatch.fake import FakeConfig, running_fake
from tests.e2e import ROOT, TOKEN, CliRunner, cli_environment, cli_runner
from tests.sheets import write_sheet
from tests.test_cli import read_report
from tests.test_resume import outcome_lines, wait_for

#: Real processes and wall-clock rates: run by `.ci/run` (`pytest -m process`), not by the
#: README's quick command, which must stay under 90 s on two cores.
pytestmark = pytest.mark.process

IMAGES: list[dict[str, Any]] = [
    {"id": str(uuid.UUID(int=n + 1, version=4)), "name": f"image-{n:02d}", "status": "active"}
    for n in range(8)
]
IDS = [image["id"] for image in IMAGES]
BROKEN = ("Traceback", "Logging error", "Exception ignored", "BrokenPipeError")


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> CliRunner:
    return cli_runner(monkeypatch, capsys)


def renames(folder: Path) -> Path:
    rows = [[image_id, f"renamed-{n:02d}"] for n, image_id in enumerate(IDS)]
    return write_sheet(folder / "s.csv", ["image_id", "name"], rows)


def batchpatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "batchpatch", *args]


# --- Streams that are closed or go away -----------------------------------------------------


def test_a_closed_stderr_changes_nothing(tmp_path: Path) -> None:
    sheet = renames(tmp_path)
    # A retry at --debug writes to stderr; with stderr closed that write must go nowhere,
    # not into the journal or the report that took its descriptor.
    config = FakeConfig(token=TOKEN, script={IDS[0]: ("500", "ok")})
    with running_fake(IMAGES, config) as fake:
        command = [
            "sh",
            "-c",
            'exec "$0" "$@" 2>&-',
            *batchpatch(
                "apply", str(sheet), "--endpoint", fake.url, "--debug", "--backoff", "0.01"
            ),
        ]
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=cli_environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        names = [fake.store.images[image_id]["name"] for image_id in IDS]
    assert done.returncode == 0, done.stdout
    assert done.stdout.startswith("8 rows: 8 succeeded")
    assert names == [f"renamed-{n:02d}" for n in range(len(IDS))]
    report = read_report(tmp_path / "s.results.csv")
    assert report["status"].tolist() == ["succeeded"] * len(IDS)
    assert "retrying" not in (tmp_path / "s.results.csv").read_text()


@pytest.mark.parametrize(
    "dry_run", [pytest.param(False, id="apply"), pytest.param(True, id="dry-run")]
)
def test_a_stdout_reader_that_goes_away_loses_nothing(tmp_path: Path, dry_run: bool) -> None:
    sheet = renames(tmp_path)
    summary = tmp_path / "summary.json"
    reading, writing = os.pipe()
    os.close(reading)  # `| head -0`: nobody will read what the run prints
    try:
        with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
            done = subprocess.run(
                batchpatch(
                    "apply",
                    str(sheet),
                    "--endpoint",
                    fake.url,
                    "--summary",
                    str(summary),
                    *(["--dry-run"] if dry_run else []),
                ),
                cwd=ROOT,
                env=cli_environment(),
                stdout=writing,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
                check=False,
            )
    finally:
        os.close(writing)
    assert done.returncode == 0, done.stderr
    assert not any(sign in done.stderr for sign in BROKEN), done.stderr
    data = json.loads(summary.read_text())
    assert (data["exit_code"], data["rows"]) == (0, len(IDS))
    report = tmp_path / ("s.dryrun.csv" if dry_run else "s.results.csv")
    statuses = read_report(report)["status"].tolist()
    assert statuses == ["planned" if dry_run else "succeeded"] * len(IDS)


@pytest.mark.parametrize(
    "nohup", [pytest.param(False, id="sighup"), pytest.param(True, id="under-nohup")]
)
def test_sighup_stops_like_sigterm_and_the_report_covers_every_row(
    tmp_path: Path, nohup: bool
) -> None:
    sheet = renames(tmp_path)
    journal = tmp_path / "s.results.csv.journal"
    ignore = 'trap "" HUP; ' if nohup else ""  # nohup's way: SIGHUP ignored from the start
    with running_fake(IMAGES, FakeConfig(token=TOKEN, latency=0.15)) as fake:
        process = subprocess.Popen(
            [
                "sh",
                "-c",
                ignore + 'exec "$0" "$@"',
                *batchpatch(
                    "apply",
                    str(sheet),
                    "--endpoint",
                    fake.url,
                    "--concurrency",
                    "1",
                    "--rate",
                    "200",
                ),
            ],
            cwd=ROOT,
            env=cli_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(
            lambda: outcome_lines(journal) >= 1 and fake.stats.snapshot().in_flight > 0,
            "a request in flight",
        )
        process.send_signal(signal.SIGHUP)
        _, stderr = process.communicate(timeout=60)
    statuses = read_report(tmp_path / "s.results.csv")["status"].tolist()
    assert len(statuses) == len(IDS)
    if nohup:
        assert process.returncode == 0, stderr
        assert statuses == ["succeeded"] * len(IDS)
        return
    assert process.returncode == 3, stderr
    assert "Stopped early: stopped by a signal" in stderr
    assert "not_attempted" in statuses
    assert "failed" not in statuses  # the request in flight was let finish
    assert journal.exists()  # so that a rerun resumes


# --- Log calls never raise ------------------------------------------------------------------


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_faulty_run_at_debug_logs_without_a_logging_error(
    tmp_path: Path, cli: CliRunner, log_format: str
) -> None:
    sheet = renames(tmp_path)
    script = {
        IDS[0]: ("500", "503", "ok"),
        IDS[1]: ("reset_after",),
        IDS[2]: ("reset_before", "reset_before"),
        IDS[3]: ("429", "ok"),
        IDS[4]: ("IMG.0060", "ok"),
    }
    with running_fake(IMAGES, FakeConfig(token=TOKEN, script=script)) as fake:
        code, _, err = cli(
            "apply",
            str(sheet),
            "--endpoint",
            fake.url,
            "--debug",
            "--log-format",
            log_format,
            "--max-attempts",
            "2",
            "--backoff",
            "0.01",
            "--rate",
            "100",
        )
    assert code == 1  # IDS[2] failed twice
    assert not any(sign in err for sign in BROKEN), err
    lines = err.splitlines()
    assert any("retrying" in line for line in lines)
    assert any("checking" in line for line in lines)
    if log_format == "json":
        entries = [json.loads(line) for line in lines]
        assert {"debug", "info"} & {entry["level"] for entry in entries}


@pytest.mark.parametrize(
    "spelling", [["--log-format", "json"], ["--log-format=json"], ["--log-f", "json"]]
)
def test_option_errors_are_json_lines_when_json_logs_were_asked_for(
    tmp_path: Path, cli: CliRunner, spelling: list[str]
) -> None:
    code, out, err = cli("apply", str(tmp_path / "s.csv"), *spelling, "--concurrency", "0")
    assert code == 2
    assert out == ""
    [entry] = [json.loads(line) for line in err.splitlines()]
    assert entry["level"] == "error"
    assert entry["message"] == (
        "Error: argument --concurrency: expected a whole number of "
        "at least 1 and at most 1000, got '0' — see 'batchpatch apply --help'"
    )


def test_option_errors_stay_plain_text_otherwise(tmp_path: Path, cli: CliRunner) -> None:
    code, _, err = cli("apply", str(tmp_path / "s.csv"), "--concurrency", "0")
    assert code == 2
    assert err == (
        "Error: argument --concurrency: expected a whole number of at least 1 and at most "
        "1000, got '0' — see 'batchpatch apply --help'\n"
    )


# --- Each status said once ------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"   "])
def test_an_answer_without_a_body_names_its_status_once(payload: bytes) -> None:
    code, message, request_id = parse_error(302, payload)
    assert "302" not in message
    failure = ReadFailed(302, code, message, request_id)
    assert str(failure).count("302") == 1
    assert "could not read the current images: HTTP 302 (no body)" in str(failure)
