"""``--log-format json``: progress lines, the resume line and each failed image are JSON
objects with their values as fields; text shows the same lines as plain messages."""

from __future__ import annotations

import csv
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

from batchpatch.fake import FakeConfig, running_fake
from batchpatch.logs import JsonFormatter, TextFormatter
from batchpatch.models import Outcome, Status
from batchpatch.progress import EVENTS, tell_failure
from tests.e2e import TOKEN, run_cli
from tests.sheets import write_sheet
from tests.test_progress_lines import left_by_a_killed_run

IMAGES: list[dict[str, Any]] = [
    {"id": str(uuid.UUID(int=n + 1, version=4)), "name": f"image-{n}", "status": "active"}
    for n in range(4)
]
IDS = [image["id"] for image in IMAGES]


def report_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as file:
        return list(csv.DictReader(file))


def run(tmp_path: Path, *extra: str, resume: bool = False) -> tuple[int, str, list[dict[str, str]]]:
    """Rename the four images at 10 requests a second (8 requests: over 0.7 s) with a
    progress line every 0.05 s; the second image's writes are all answered 503."""
    sheet = write_sheet(
        tmp_path / "s.csv", ["image_id", "name"], [[i, f"new-{n}"] for n, i in enumerate(IDS)]
    )
    script = {IDS[1]: ["503", "503"]}
    with running_fake(IMAGES, FakeConfig(token=TOKEN, script=script)) as fake:
        if resume:
            left_by_a_killed_run(sheet, fake.url)
        done = run_cli(
            [
                "apply",
                str(sheet),
                "--endpoint",
                fake.url,
                "--max-attempts",
                "2",
                "--backoff",
                "0.001",
                "--progress-every",
                "0.05",
                *extra,
            ]
        )
    return done.returncode, done.stderr, report_rows(tmp_path / "s.results.csv")


def test_json_lines_carry_progress_and_failed_images_as_fields(tmp_path: Path) -> None:
    code, err, report = run(tmp_path, "--log-format", "json")
    assert code == 1, err
    lines = [json.loads(line) for line in err.splitlines()]  # every line is one object
    failed = [line for line in lines if line.get("event") == "image_failed"]
    assert len(failed) == 1
    assert {k: failed[0][k] for k in ("image_id", "status", "error_code", "request_id")} == {
        "image_id": IDS[1],
        "status": "failed",
        "error_code": report[1]["error_code"],
        "request_id": report[1]["request_id"],
    }
    assert failed[0]["error_code"]
    assert failed[0]["request_id"]
    assert failed[0]["level"] == "warning"
    progress = [line for line in lines if line.get("event") == "progress"]
    assert progress, err
    for line in progress:
        assert line["total"] == 4
        assert line["done"] == sum(line["counts"].values())
        assert set(line) >= {"images_per_second", "throttled", "eta_seconds", "message"}
    assert TOKEN not in err


def test_text_lines_are_plain_messages(tmp_path: Path) -> None:
    code, err, report = run(tmp_path)
    assert code == 1, err
    failed = [line for line in err.splitlines() if line.startswith("failed: ")]
    assert failed == [
        f"failed: {IDS[1]} {report[1]['error_code']} (request id {report[1]['request_id']}): "
        f"{report[1]['error_message']}"
    ]
    assert any(line.startswith("progress: ") for line in err.splitlines())


def test_the_resume_line_as_json(tmp_path: Path) -> None:
    code, err, _ = run(tmp_path, "--log-format", "json", "--quiet", resume=True)
    assert code == 1, err
    lines = [json.loads(line) for line in err.splitlines()]
    resumed = [line for line in lines if line.get("event") == "resume"]
    assert len(resumed) == 1
    assert (resumed[0]["total"], resumed[0]["done"], resumed[0]["in_doubt"]) == (4, 1, 1)
    assert resumed[0]["message"] == "resuming: 1 of 4 images already done, 1 in doubt to read back"
    assert not [line for line in lines if line.get("event") == "progress"]  # --quiet


def test_a_service_message_cannot_forge_a_text_line(caplog: pytest.LogCaptureFixture) -> None:
    outcome = Outcome(IDS[0], Status.FAILED, 400, "X.1", "bad\nINFO batchpatch: forged", "rid")
    with caplog.at_level(logging.INFO, logger=EVENTS):
        tell_failure(outcome)
    record = caplog.records[0]
    assert TextFormatter().format(record) == (
        f"failed: {IDS[0]} X.1 (request id rid): bad\\nINFO batchpatch: forged"
    )
    as_json = json.loads(JsonFormatter().format(record))
    assert as_json["error_message"] == "bad\nINFO batchpatch: forged"  # JSON keeps it exact
    assert as_json["logger"] == EVENTS
    assert as_json["event"] == "image_failed"
