"""A two-region run killed mid-way resumes across both regions: nothing applied twice."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.e2e import run_cli, start_cli
from tests.test_cli import read_report
from tests.test_regions import (
    IMAGES_A,
    IMAGES_B,
    PROJECT_A,
    PROJECT_B,
    aksk,
    fake_config,
    region_args,
    two_region_sheet,
    two_regions,
)
from tests.test_resume import outcome_lines, wait_for

#: Real processes: run by `.ci/run` (`pytest -m process`), not by the README's quick command.
pytestmark = pytest.mark.process


def test_sigkill_then_rerun_resumes_both_regions(tmp_path: Path) -> None:
    sheet = two_region_sheet(tmp_path / "s.csv")
    journal = tmp_path / "s.results.csv.journal"
    slow_a, slow_b = fake_config(PROJECT_A, latency=0.2), fake_config(PROJECT_B, latency=0.2)
    with two_regions(slow_a, slow_b) as (a, b):
        args = [
            "apply",
            str(sheet),
            *region_args(a, b),
            "--concurrency",
            "2",
            "--rate",
            "50",
            "--timeout",
            "2",
        ]
        process = start_cli(
            args,
            token=None,
            environ=aksk(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(
                lambda: (
                    outcome_lines(journal) >= 2
                    and a.stats.snapshot().applied_by_image.total() >= 1
                    and b.stats.snapshot().applied_by_image.total() >= 1
                ),
                "progress in both regions",
            )
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        assert process.returncode == -signal.SIGKILL
        wait_for(
            lambda: a.stats.snapshot().in_flight == 0 and b.stats.snapshot().in_flight == 0,
            "the dead run's PATCHes",
        )
        applied_before = (
            a.stats.snapshot().applied_by_image.total(),
            b.stats.snapshot().applied_by_image.total(),
        )
        assert journal.exists()
        resumed = run_cli(args, token=None, environ=aksk())
        stats_a, stats_b = a.stats.snapshot(), b.stats.snapshot()
    assert resumed.returncode == 0, resumed.stderr
    assert applied_before[0] < len(IMAGES_A) or applied_before[1] < len(IMAGES_B)
    for stats, images in ((stats_a, IMAGES_A), (stats_b, IMAGES_B)):
        assert set(stats.applied_by_image) == {image["id"] for image in images}
        assert set(stats.applied_by_image.values()) == {1}  # nothing applied twice
    report = read_report(tmp_path / "s.results.csv")
    assert set(report["status"]) == {"succeeded"}
    assert not journal.exists()
