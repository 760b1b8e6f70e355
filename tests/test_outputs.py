"""No file a run writes is the sheet, the plan being applied, or another file of the run —
whatever path leads there (``./``, ``..``, symbolic or hard links) — and killed writes leave
nothing behind for good."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from batchpatch import TokenAuth, apply_sheet, make_plan
from batchpatch.errors import OptionsError
from batchpatch.fake import FakeConfig, running_fake
from batchpatch.files import remove_stale_temporaries, temporary_name_pattern
from batchpatch.lock import lock_path
from tests.e2e import ROOT, TOKEN, cli_environment, quiet_environment, run_main, sample_images
from tests.sheets import write_sheet

IMAGES = sample_images()
A, B = IMAGES[0]["id"], IMAGES[1]["id"]


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    quiet_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)


def sheet_in(folder: Path) -> Path:
    return write_sheet(folder / "s.csv", ["image_id", "name"], [[A, "renamed"]])


def symlink_to(target: str) -> Callable[[Path], str]:
    def make(folder: Path) -> str:
        (folder / "link.json").symlink_to(folder / target)
        return "link.json"

    return make


def hardlink_to(target: str) -> Callable[[Path], str]:
    def make(folder: Path) -> str:
        os.link(folder / target, folder / "hard.json")
        return "hard.json"

    return make


def dotted(target: str) -> Callable[[Path], str]:
    def make(folder: Path) -> str:
        (folder / "sub").mkdir()
        return f"./sub/../{target}"

    return make


def plain(target: str) -> Callable[[Path], str]:
    return lambda folder: target


CLASHES = [
    pytest.param([], plain("s.csv"), "--summary s.csv is the sheet itself", id="summary-sheet"),
    pytest.param(
        [],
        dotted("s.csv"),
        "--summary sub/../s.csv is the sheet s.csv itself",
        id="summary-sheet-dotted",
    ),
    pytest.param(
        [],
        symlink_to("s.csv"),
        "--summary link.json is the sheet s.csv itself",
        id="summary-sheet-symlink",
    ),
    pytest.param(
        [],
        hardlink_to("s.csv"),
        "--summary hard.json is the sheet s.csv itself",
        id="summary-sheet-hardlink",
    ),
    pytest.param(
        ["--report", "r.csv"],
        plain("r.csv"),
        "--summary r.csv is the report itself",
        id="summary-report-not-yet-written",
    ),
    pytest.param(
        [],
        plain("s.results.csv.journal"),
        "--summary s.results.csv.journal is the journal itself",
        id="summary-journal",
    ),
    pytest.param(
        ["--plan", "plan.json"],
        symlink_to("plan.json"),
        "--summary link.json is the plan plan.json itself",
        id="summary-plan",
    ),
    pytest.param(
        [],
        lambda folder: str(lock_path(folder / "s.csv")),
        "--summary {lock} is the run lock itself",
        id="summary-lock",
    ),
]


@pytest.mark.parametrize(("extra", "summary", "message"), CLASHES)
def test_an_output_that_is_an_input_or_another_output_is_refused_before_anything_is_sent(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    summary: Callable[[Path], str],
    message: str,
) -> None:
    sheet = sheet_in(tmp_path)
    (tmp_path / "plan.json").write_text("{}")
    files = {path: path.read_bytes() for path in tmp_path.iterdir()}
    summary_path = summary(tmp_path)
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        code, _, err = run_main(
            capsys, ["apply", "s.csv", "--endpoint", fake.url, "--summary", summary_path, *extra]
        )
        stats = fake.stats.snapshot()
    assert code == 2, err
    assert stats.total_requests == 0
    message = message.format(lock=summary_path)
    assert err.startswith(f"Error: {message} — give --summary another path"), err
    assert {path: path.read_bytes() for path in files} == files
    assert not (tmp_path / "s.results.csv").exists()
    assert sheet.read_bytes() == files[sheet]


@pytest.mark.parametrize(
    "report",
    [
        pytest.param(symlink_to("s.csv"), id="symlink"),
        pytest.param(hardlink_to("s.csv"), id="hardlink"),
        pytest.param(dotted("s.csv"), id="dotted"),
    ],
)
def test_the_report_is_never_the_sheet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], report: Callable[[Path], str]
) -> None:
    sheet = sheet_in(tmp_path)
    original = sheet.read_bytes()
    name = report(tmp_path)
    if name.endswith(".json"):  # the report must have the sheet's extension: rename the link
        (tmp_path / name).rename(tmp_path / "other.csv")
        name = "other.csv"
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        code, _, err = run_main(
            capsys, ["apply", "s.csv", "--endpoint", fake.url, "--report", name]
        )
        stats = fake.stats.snapshot()
    assert code == 2, err
    assert f"--report {Path(name)} is the sheet" in err
    assert stats.total_requests == 0
    assert sheet.read_bytes() == original


@pytest.mark.parametrize(
    "out",
    [
        pytest.param(plain("s.csv"), id="same-name"),
        pytest.param(hardlink_to("s.csv"), id="hardlink"),
    ],
)
def test_plan_out_is_never_the_sheet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], out: Callable[[Path], str]
) -> None:
    sheet = sheet_in(tmp_path)
    original = sheet.read_bytes()
    name = out(tmp_path)
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        code, _, err = run_main(capsys, ["plan", "s.csv", "--endpoint", fake.url, "--out", name])
        stats = fake.stats.snapshot()
    assert code == 2, err
    assert err.startswith(f"Error: --out {name} is the sheet"), err
    assert stats.total_requests == 0
    assert sheet.read_bytes() == original


def test_the_library_refuses_in_its_own_words(tmp_path: Path) -> None:
    sheet = sheet_in(tmp_path)
    os.link(sheet, tmp_path / "copy.csv")
    original = sheet.read_bytes()

    async def apply() -> None:
        await apply_sheet(
            sheet, endpoint=fake.url, auth=TokenAuth(TOKEN), report_path=tmp_path / "copy.csv"
        )

    async def plan() -> None:
        await make_plan(sheet, endpoint=fake.url, auth=TokenAuth(TOKEN), out=sheet)

    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        with pytest.raises(
            OptionsError,
            match=r"^the report path .*copy\.csv is the sheet "
            r".*s\.csv itself — write the report to another file$",
        ):
            anyio.run(apply)
        with pytest.raises(
            OptionsError,
            match=r"^the plan file path .*s\.csv is the sheet "
            r"itself — write the plan file to another file$",
        ):
            anyio.run(plan)
        stats = fake.stats.snapshot()
    assert stats.total_requests == 0
    assert sheet.read_bytes() == original


def test_a_dry_run_never_replaces_the_real_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[A, "renamed"], [B, "other"]])
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        code, _, err = run_main(capsys, ["apply", str(sheet), "--endpoint", fake.url])
        assert code == 0, err
        real = (tmp_path / "s.results.csv").read_bytes()
        write_sheet(sheet, ["image_id", "name"], [[A, "renamed-again"], [B, "other"]])
        code, out, err = run_main(
            capsys, ["apply", str(sheet), "--endpoint", fake.url, "--dry-run"]
        )
        stats = fake.stats.snapshot()
    assert code == 0, err
    assert stats.patches_by_image == {A: 1, B: 1}  # the real run's PATCHes only
    assert (tmp_path / "s.results.csv").read_bytes() == real
    assert "renamed-again" in (tmp_path / "s.dryrun.csv").read_text()
    assert out.rstrip().endswith(f"report: {tmp_path / 's.dryrun.csv'}")


def test_stale_temporaries_are_told_apart_from_everything_else(tmp_path: Path) -> None:
    import fcntl

    target = tmp_path / "r.csv"
    old = time.time() - 3600

    def planted(name: str, *, mtime: float = old) -> Path:
        path = tmp_path / name
        path.write_text("half a report")
        os.utime(path, (mtime, mtime))
        return path

    stale = planted(".r.csv.abcd_123.tmp.csv")
    fresh = planted(".r.csv.fresh000.tmp.csv", mtime=time.time() + 60)
    busy = planted(".r.csv.busy0000.tmp.csv")
    other_file = planted(".r.csv.abcd_123.tmp.csv.keep")
    other_output = planted(".q.csv.abcd_123.tmp.csv")
    user_file = planted("r.csv.abcd_123.tmp.csv")
    victim = planted("precious.txt")
    link = tmp_path / ".r.csv.link0000.tmp.csv"
    link.symlink_to(victim)
    assert temporary_name_pattern(target).fullmatch(stale.name)
    holder = os.open(busy, os.O_RDONLY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # a write under way in another run
        removed = remove_stale_temporaries(target, older_than=time.time())
    finally:
        os.close(holder)
    assert removed == [stale]
    assert not stale.exists()
    for kept in (fresh, busy, other_file, other_output, user_file, victim, link):
        assert kept.exists() or kept.is_symlink(), kept
    assert victim.read_text() == "half a report"


KILLED_WRITE = """
import os, signal, sys
from pathlib import Path
from batchpatch.files import atomic_write

def die(temporary):
    temporary.write_text("half a summa")
    os.kill(os.getpid(), signal.SIGKILL)

atomic_write(Path(sys.argv[1]), die)
"""


def test_a_killed_write_leaves_a_temporary_that_the_next_run_removes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sheet = sheet_in(tmp_path)
    for written in ("s.results.csv", "summary.json"):
        killed = subprocess.run(
            [sys.executable, "-c", KILLED_WRITE, str(tmp_path / written)],
            cwd=ROOT,
            env=cli_environment(),
            check=False,
        )
        assert killed.returncode == -9
    left = sorted(path.name for path in tmp_path.glob(".*.tmp*"))
    assert [name.split(".")[1] for name in left] == ["s", "summary"]
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        code, _, err = run_main(
            capsys,
            [
                "apply",
                str(sheet),
                "--endpoint",
                fake.url,
                "--summary",
                str(tmp_path / "summary.json"),
            ],
        )
    assert code == 0, err
    assert list(tmp_path.glob(".*.tmp*")) == []
    assert (tmp_path / "summary.json").read_text().startswith("{")
