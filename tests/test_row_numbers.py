"""One row-numbering convention in the models: the spreadsheet row a person sees (the header
is row 1 of a sheet with nothing above it).  Plans and journals of the previous format,
which held 0-based positions, are refused or set aside, never misread."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from batchpatch.fake import FakeConfig, running_fake
from batchpatch.journal import Journal
from batchpatch.ledger import Ledger
from batchpatch.models import Operation, Outcome, Status
from batchpatch.plan import plan_image, plan_to_json
from batchpatch.planfile import sheet_digest
from batchpatch.sheet import read_sheet
from tests.e2e import TOKEN, CliRunner, cli_runner
from tests.sheets import write_sheet
from tests.test_cli import read_report

IMAGES: list[dict[str, Any]] = [
    {"id": str(uuid.UUID(int=n + 1, version=4)), "name": f"image-{n}", "status": "active"}
    for n in range(3)
]
A, B, C = (image["id"] for image in IMAGES)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> CliRunner:
    return cli_runner(monkeypatch, capsys)


def _blank_lines_above_the_header(path: Path) -> Path:
    """A CSV whose header sits on line 3: A is asked for on lines 4 and 7, B on 5 (invalid),
    line 6 is blank.  Those line numbers are the rows a person sees."""
    path.write_text(
        "\n\nimage_id,op,path,value\n"
        f"{A},replace,/name,web\n"
        f"{B},replace,/min_ram,lots\n"
        ",,,\n"
        f"{A},add,/team,ops\n",
        encoding="utf-8",
    )
    return path


def test_every_model_holds_the_rows_a_person_sees(tmp_path: Path) -> None:
    sheet = read_sheet(_blank_lines_above_the_header(tmp_path / "s.csv"), skip_invalid=True)
    (patch,) = sheet.patches
    assert (patch.image_id, patch.sources, patch.rows) == (A, (4, 7), (4, 7))
    assert list(sheet.invalid) == [5]
    assert sheet.idle_rows == (6,)
    assert list(sheet.rows) == [4, 5, 6, 7]  # the frame's rows, in order
    plan = plan_image(patch, IMAGES[0])
    assert [change.source for change in plan.changes] == [4, 7]
    assert [change["row"] for change in plan_to_json(plan)["changes"]] == [4, 7]


def test_the_report_and_the_skip_notice_use_the_same_rows(tmp_path: Path, cli: CliRunner) -> None:
    path = _blank_lines_above_the_header(tmp_path / "s.csv")
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        code, _, err = cli("apply", str(path), "--endpoint", fake.url, "--skip-invalid")
        assert fake.stats.patches_by_image == {A: 1}
    assert code == 1, err  # a row was invalid
    assert f"{path}:5: skipped as invalid: value: min_ram must be a whole number" in err
    report = read_report(tmp_path / "s.results.csv")
    assert report["status"].tolist() == ["succeeded", "invalid", "unchanged", "succeeded"]


def _plan_file(tmp_path: Path, cli: CliRunner, endpoint: str) -> tuple[Path, Path]:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[A, "new-a"], [B, "new-b"]])
    out = tmp_path / "p.json"
    code, _, err = cli("plan", str(sheet), "--endpoint", endpoint, "--out", str(out))
    assert code == 0, err
    return sheet, out


def test_a_plan_saved_by_the_previous_version_is_refused(tmp_path: Path, cli: CliRunner) -> None:
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        sheet, out = _plan_file(tmp_path, cli, fake.url)
        document = json.loads(out.read_text(encoding="utf-8"))
        assert [image["changes"][0]["row"] for image in document["images"]] == [2, 3]
        document["format"] = "batchpatch-plan/1"
        for image in document["images"]:  # as that version wrote them: 0-based
            for change in image["changes"]:
                change["row"] -= 2
        out.write_text(json.dumps(document), encoding="utf-8")
        code, _, err = cli("apply", str(sheet), "--endpoint", fake.url, "--plan", str(out))
        assert fake.stats.patch_requests == 0
    assert code == 2
    assert f"{out}: a plan of another batchpatch version (batchpatch-plan/1" in err
    assert "make it again with 'batchpatch plan SHEET --out PLAN.json'" in err
    assert "Traceback" not in err


def test_a_journal_of_the_previous_version_is_set_aside_with_a_warning(
    tmp_path: Path, cli: CliRunner
) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[A, "new-a"], [B, "new-b"]])
    journal_path = tmp_path / "s.results.csv.journal"
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        # What the previous version left when killed: A done (its plan's row 0-based).
        old = Journal(journal_path, Ledger(), sheet_sha256=sheet_digest(sheet), endpoint=fake.url)
        plan = plan_image(read_sheet(sheet).patches[0], IMAGES[0])
        entry = plan_to_json(plan)
        entry["changes"][0]["row"] = 0
        old.outcome(Outcome(A, Status.SUCCEEDED, 200, attempts=1), entry)
        old.close(finished=False)
        lines = journal_path.read_text(encoding="utf-8").splitlines()
        header = json.loads(lines[0]) | {"format": "batchpatch-journal/1"}
        journal_path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
        code, _, err = cli("apply", str(sheet), "--endpoint", fake.url)
        assert fake.stats.patches_by_image == {A: 1, B: 1}  # A is not taken as done
    assert code == 0, err
    assert (
        f"the journal at {journal_path} was written by another version of batchpatch "
        "(batchpatch-journal/1" in err
    )
    assert "it is set aside and nothing in it is resumed" in err
    report = read_report(tmp_path / "s.results.csv")
    assert report["status"].tolist() == ["succeeded", "succeeded"]
    assert report["before"].tolist() == ['{"name":"image-0"}', '{"name":"image-1"}']


def test_a_changes_row_is_a_spreadsheet_row_in_a_plan_file(tmp_path: Path, cli: CliRunner) -> None:
    """The rows in a saved plan are the sheet's own: a plan mismatch names them as such."""
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        sheet, out = _plan_file(tmp_path, cli, fake.url)
        document = json.loads(out.read_text(encoding="utf-8"))
        document["images"][1]["changes"][0]["row"] = 2  # B's change moved to A's row
        out.write_text(json.dumps(document), encoding="utf-8")
        code, _, err = cli("apply", str(sheet), "--endpoint", fake.url, "--plan", str(out))
        assert fake.stats.patch_requests == 0
    assert code == 2
    shown = json.dumps(Operation("replace", "/name", "new-b").to_json())
    assert f"change 1 ({shown}, row 2) is not what the sheet asks there ({shown}, row 3)" in err
