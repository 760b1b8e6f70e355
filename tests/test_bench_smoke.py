"""``python -m bench`` at tiny sizes, so the benchmark cannot rot: every scenario runs, against
servers it starts itself, and writes its table and JSON.  No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import ROOT, cli_environment

TINY = ["--images", "40", "--latency-images", "20", "--sdk-images", "5", "--rows", "400"]
TINY += ["--xlsx-rows", "50", "--memory", "20,40", "--quota-images", "20", "--rounds", "2"]


@pytest.mark.slow  # about a minute of process start-ups: .ci/run runs it with `pytest -m slow`
def test_every_scenario_runs_and_is_recorded(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", *TINY, "--out", str(out)],
        cwd=ROOT,
        env=cli_environment(token=None),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    runs = results["runs"]
    for key in ("zero/aiohttp", "zero/requests", "zero/batchpatch", "zero/batchpatch-read"):
        assert runs[key]["ok"] == runs[key]["images"] == 40, key
    for key in ("50ms/aiohttp", "50ms/batchpatch", "50ms/batchpatch-read"):
        assert runs[key]["ok"] == 20, key
        assert len(runs[key]["rounds"]) == 2, key  # each round kept, the best one's figures
        assert runs[key]["seconds"] == min(runs[key]["rounds"]), key
    assert runs["zero/sdk"]["ok"] == runs["50ms/sdk"]["ok"] == 5
    assert runs["memory/40"]["ok"] == 40
    assert runs["scale/validate-csv"]["exit"] == 0
    assert runs["scale/validate-xlsx"]["exit"] == 0
    assert runs["scale/report-csv"]["rows"] == 400
    rounds = results["per_round"]
    assert len(rounds["zero/batchpatch"]) == len(rounds["zero/aiohttp"]) == 2
    mine, base = rounds["zero/batchpatch"], rounds["zero/aiohttp"]
    paired = sorted(m / b for m, b in zip(mine, base, strict=True))
    figures = {row["figure"]: row for row in results["figures"]}
    ratio = figures["0 ms: batchpatch --no-plan / aiohttp"]["value"]
    assert ratio == pytest.approx(sum(paired) / 2)  # the median of the rounds' own ratios
    assert "50 ms: batchpatch / SDK loop" in figures
    assert any(figure.startswith("quota") for figure in figures)
    assert results["machine"]["packages"]["huaweicloudsdkims"]
    assert results["machine"]["cpu_count"] >= 1
    assert "0 ms: batchpatch --no-plan / aiohttp" in done.stdout  # the table
