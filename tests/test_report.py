"""The report file itself: made safe for spreadsheets, written atomically, normal permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from batchpatch.models import Outcome, Status
from batchpatch.report import RowResult, neutralise, write_report
from batchpatch.sheet import read_sheet
from tests.sheets import write_sheet

A = "0b1c6a3e-5f0d-4a53-9c1e-2f6d8a1b7c01"


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        pytest.param("=SUM(A1)", "'=SUM(A1)", id="formula"),
        pytest.param("+cmd", "'+cmd", id="plus"),
        pytest.param("-1+2", "'-1+2", id="minus-expression"),
        pytest.param("@x", "'@x", id="at"),
        pytest.param("-5", "-5", id="negative-number"),
        pytest.param("+7.5", "+7.5", id="signed-number"),
        pytest.param("plain", "plain", id="plain"),
        pytest.param("bell\x07", "bell\ufffd", id="control-character"),
    ],
)
def test_cells_are_made_safe(cell: str, shown: str) -> None:
    assert neutralise(cell) == shown


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_control_characters_from_the_service_cannot_break_the_report(
    tmp_path: Path, suffix: str
) -> None:
    sheet = read_sheet(write_sheet(tmp_path / f"s{suffix}", ["image_id", "name"], [[A, "x"]]))
    outcome = Outcome(A, Status.FAILED, 400, "IMG.0001", "bad\x00body\x1b[31m", "r" * 32, 1, 5)
    path = write_report(sheet, [RowResult(outcome)], tmp_path / f"r{suffix}")
    frame = (
        pd.read_excel(path, dtype=str, engine="calamine")
        if suffix == ".xlsx"
        else pd.read_csv(path, dtype=str)
    )
    assert frame.loc[0, "error_message"] == "bad\ufffdbody\ufffd[31m"


def test_reports_get_the_usual_permissions(tmp_path: Path) -> None:
    sheet = read_sheet(write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[A, "x"]]))
    umask = os.umask(0o022)
    try:
        path = write_report(sheet, [RowResult(Outcome(A, Status.SUCCEEDED))], tmp_path / "r.csv")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_input_columns_named_like_results_are_attributes_and_kept(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "s.csv", ["image_id", "name", "after"], [[A, "", "v2"]])
    sheet = read_sheet(path)
    assert sheet.patches[0].body() == [{"op": "add", "path": "/after", "value": "v2"}]
    written = write_report(
        sheet, [RowResult(Outcome(A, Status.SUCCEEDED), "", "x")], tmp_path / "r.csv"
    )
    frame = pd.read_csv(written, dtype=str, keep_default_na=False)
    assert frame.loc[0, "after (input)"] == "v2"
    assert frame.loc[0, "after"] == "x"


def test_a_report_fed_back_in_replaces_its_old_results(tmp_path: Path) -> None:
    header = [
        "image_id",
        "name",
        "status",
        "http_status",
        "error_code",
        "error_message",
        "request_id",
        "attempts",
        "elapsed_ms",
        "before",
        "after",
    ]
    path = write_sheet(
        tmp_path / "s.csv", header, [[A, "x", "failed", "503", "", "busy", "r", "5", "9", "", ""]]
    )
    sheet = read_sheet(path)
    assert sheet.patches[0].body() == [{"op": "replace", "path": "/name", "value": "x"}]
    written = write_report(
        sheet, [RowResult(Outcome(A, Status.SUCCEEDED, 200))], tmp_path / "r.csv"
    )
    frame = pd.read_csv(written, dtype=str, keep_default_na=False)
    assert list(frame.columns) == header
    assert frame.loc[0, "status"] == "succeeded"
