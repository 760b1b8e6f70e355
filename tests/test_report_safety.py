"""The report can always be written — whatever the input's header, worksheet name or the
service's answers hold — and that is known before anything is sent; a report fed back in
as a sheet maps its ``X (input)`` columns back to ``X``."""

from __future__ import annotations

import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

import batchpatch.report
from batchpatch.fake import FakeConfig, running_fake
from batchpatch.models import Outcome, Status
from batchpatch.report import RowResult, worksheet_name, write_report
from batchpatch.sheet import read_sheet
from tests.e2e import TOKEN, quiet_environment, run_main, sample_images
from tests.sheets import write_sheet

IMAGES = sample_images()
A, B = IMAGES[0]["id"], IMAGES[1]["id"]


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    quiet_environment(monkeypatch)


def workbook_named(path: Path, title: str, header: list[str], rows: list[list[str]]) -> Path:
    """An XLSX whose only worksheet is called ``title`` — also a title Excel itself would
    refuse, as other programs write them — holding ``header`` and ``rows``."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "PLACEHOLDER"
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    escaped = title.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
    parts["xl/workbook.xml"] = parts["xl/workbook.xml"].replace(
        b'name="PLACEHOLDER"', f'name="{escaped}"'.encode()
    )
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("title", "written"),
    [
        pytest.param("a/b*c?", "a_b_c_", id="refused-characters"),
        pytest.param(
            "renames for the second quarter of 2026",
            "renames for the second quarter",
            id="longer-than-31",
        ),
    ],
)
def test_an_xlsx_report_is_written_whatever_the_header_and_worksheet_name(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    title: str,
    written: str,
) -> None:
    sheet = workbook_named(
        tmp_path / "s.xlsx",
        title,
        ["image_id", "name", "#note_x0007_", "#=cmd"],
        [[A, "renamed", "c", "d"]],
    )
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        code, _, err = run_main(capsys, ["apply", str(sheet), "--endpoint", fake.url])
        stats = fake.stats.snapshot()
    assert code == 0, err
    assert stats.patches_by_image == {A: 1}
    report = openpyxl.load_workbook(tmp_path / "s.results.xlsx")
    assert report.sheetnames == [written]
    header = [cell.value for cell in next(report[written].iter_rows(max_row=1))]
    assert header[:4] == ["image_id", "name", "#note\ufffd", "#=cmd"]
    assert header[4] == "status"


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        pytest.param(None, "results", id="csv-input"),
        pytest.param("changes", "changes", id="plain"),
        pytest.param("a/b\\c?d*e[f]g:h", "a_b_c_d_e_f_g_h", id="every-refused-character"),
        pytest.param("x" * 40, "x" * 31, id="too-long"),
        pytest.param("'quoted'", "quoted", id="apostrophes-at-the-ends"),
        pytest.param("bell\x07", "bell_", id="control-character"),
        pytest.param("History", "History_", id="reserved"),
        pytest.param("''", "results", id="nothing-left"),
    ],
)
def test_worksheet_names_are_made_ones_excel_accepts(name: str | None, safe: str) -> None:
    assert worksheet_name(name) == safe


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_lone_surrogates_from_the_service_cannot_break_the_report(
    tmp_path: Path, suffix: str
) -> None:
    sheet = read_sheet(write_sheet(tmp_path / f"s{suffix}", ["image_id", "name"], [[A, "x"]]))
    outcome = Outcome(A, Status.FAILED, 400, "IMG.0001", "bad \ud800 answer", "", 1, 5)
    path = write_report(sheet, [RowResult(outcome)], tmp_path / f"r{suffix}")
    frame = (
        pd.read_excel(path, dtype=str, engine="calamine")
        if suffix == ".xlsx"
        else pd.read_csv(path, dtype=str)
    )
    assert frame.loc[0, "error_message"] == "bad \ufffd answer"


def test_a_report_that_cannot_be_written_is_known_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[A, "renamed"]])
    (tmp_path / "blocker").write_text("a file where the report's folder should be")
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        code, _, err = run_main(
            capsys,
            [
                "apply",
                str(sheet),
                "--endpoint",
                fake.url,
                "--report",
                str(tmp_path / "blocker" / "r.csv"),
            ],
        )
        stats = fake.stats.snapshot()
    assert code == 2, err
    assert "cannot write in" in err
    assert "choose a folder you can write to" in err
    assert stats.total_requests == 0


def test_any_refusal_of_the_report_writer_comes_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object) -> None:
        raise ValueError("a cell the writer cannot hold")

    monkeypatch.setattr(batchpatch.report, "_write_frame", refuse)
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[A, "renamed"]])
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        code, _, err = run_main(capsys, ["apply", str(sheet), "--endpoint", fake.url])
        stats = fake.stats.snapshot()
    assert code == 2, err
    assert "could not be written (a cell the writer cannot hold)" in err
    assert stats.total_requests == 0
    assert [path.name for path in tmp_path.iterdir() if ".tmp" in path.name] == []


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_report_fed_back_in_maps_its_input_columns_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    sheet = write_sheet(
        tmp_path / f"s{suffix}",
        ["image_id", "name", "after"],
        [[A, "first-name", "v1"], [B, "", "w1"]],
    )
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        code, _, err = run_main(capsys, ["apply", str(sheet), "--endpoint", fake.url])
        assert code == 0, err
        report_path = tmp_path / f"s.results{suffix}"
        report = read(report_path)
        assert list(report.columns[:3]) == ["image_id", "name", "after (input)"]
        report.loc[0, ["name", "after (input)"]] = ["second-name", "v2"]
        write_sheet(report_path, list(report.columns), report.to_numpy().tolist())
        code, _, err = run_main(capsys, ["apply", str(report_path), "--endpoint", fake.url])
        state = fake.store.images
    assert code == 0, err
    assert (state[A]["name"], state[A]["after"]) == ("second-name", "v2")
    assert state[B]["after"] == "w1"
    again = read(tmp_path / f"s.results.results{suffix}")
    assert list(again.columns) == list(report.columns)
    assert again["after (input)"].tolist() == ["v2", "w1"]
    assert again["status"].tolist() == ["succeeded", "unchanged"]


def read(path: Path) -> pd.DataFrame:
    if path.suffix == ".xlsx":
        return pd.read_excel(path, dtype=str, keep_default_na=False, engine="calamine")
    return pd.read_csv(path, dtype=str, keep_default_na=False)
