"""One run per sheet and per report: the lock follows the sheet's identity (device and
inode) and the report's path, lives in a per-user folder, and never follows a symlink."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from batchpatch.fake import FakeConfig, running_fake
from batchpatch.lock import hold_run, lock_folder, lock_path, report_lock_path, run_lock
from tests.e2e import TOKEN, CliRunner, cli_runner
from tests.sheets import write_sheet

IMAGES: list[dict[str, Any]] = [
    {
        "id": str(uuid.UUID(int=n + 1, version=4)),
        "name": f"image-{n}",
        "status": "active",
        "min_ram": 0,
    }
    for n in range(2)
]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> CliRunner:
    return cli_runner(monkeypatch, capsys)


def a_sheet(folder: Path, name: str = "s.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_sheet(folder / name, ["image_id", "name"], [[IMAGES[0]["id"], "renamed"]])


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_link_to_a_sheet_is_the_same_sheet(tmp_path: Path, cli: CliRunner, link: str) -> None:
    sheet = a_sheet(tmp_path / "real")
    other = tmp_path / "elsewhere" / "alias.csv"
    other.parent.mkdir()
    if link == "symlink":
        other.symlink_to(sheet)
    else:
        os.link(sheet, other)
    assert lock_path(other) == lock_path(sheet)
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake, run_lock(lock_path(sheet)):
        code, _, err = cli("apply", str(other), "--endpoint", fake.url)
        assert fake.stats.total_requests == 0
    assert code == 2
    assert f"another batchpatch run (pid {os.getpid()}) is working on this sheet" in err


def test_two_copies_of_a_sheet_cannot_share_a_report(tmp_path: Path, cli: CliRunner) -> None:
    first, second = a_sheet(tmp_path / "a"), a_sheet(tmp_path / "b")
    report = tmp_path / "out" / "shared.csv"
    report.parent.mkdir()
    (tmp_path / "link-to-out").symlink_to(report.parent)
    assert lock_path(first) != lock_path(second)  # copies are different sheets
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake, hold_run(first, report):
        # the same report however it is spelled: through a symlinked folder, with ./
        spelled = tmp_path / "link-to-out" / "." / "shared.csv"
        code, _, err = cli("apply", str(second), "--endpoint", fake.url, "--report", str(spelled))
        assert fake.stats.total_requests == 0
    assert code == 2
    assert f"another batchpatch run (pid {os.getpid()}) is working on the report" in err
    assert report_lock_path(spelled) == report_lock_path(report)


def test_a_sheet_in_a_read_only_folder_is_applied(tmp_path: Path, cli: CliRunner) -> None:
    folder = tmp_path / "read-only"
    sheet = a_sheet(folder)
    report = tmp_path / "out.csv"
    before = sorted(os.listdir(folder))
    folder.chmod(0o555)
    try:
        with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
            code, out, err = cli(
                "apply", str(sheet), "--endpoint", fake.url, "--report", str(report)
            )
            applied = fake.store.images[IMAGES[0]["id"]]["name"]
    finally:
        folder.chmod(0o755)
    assert code == 0, err
    assert applied == "renamed"
    assert "1 succeeded" in out
    assert sorted(os.listdir(folder)) == before  # nothing written beside the sheet
    assert not lock_path(sheet).exists()  # a finished run removes its lock files
    assert not report_lock_path(report).exists()


def test_the_lock_folder_is_private_to_the_user() -> None:
    info = os.lstat(lock_folder())
    assert info.st_uid == os.getuid()
    assert info.st_mode & 0o077 == 0


@pytest.mark.parametrize("which", ["sheet", "report"])
def test_a_symlink_planted_at_a_lock_path_is_never_followed(
    tmp_path: Path, cli: CliRunner, which: str
) -> None:
    sheet = a_sheet(tmp_path)
    report = tmp_path / "s.results.csv"
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    planted = lock_path(sheet) if which == "sheet" else report_lock_path(report)
    planted.symlink_to(victim)
    try:
        with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
            code, _, err = cli("apply", str(sheet), "--endpoint", fake.url)
            assert fake.stats.total_requests == 0
    finally:
        planted.unlink()
    assert victim.read_text() == "keep me\n"
    assert code == 2
    assert "is a symbolic link, which batchpatch never follows" in err


def test_a_copy_with_its_own_report_runs_while_the_original_is_locked(
    tmp_path: Path, cli: CliRunner
) -> None:
    sheet = a_sheet(tmp_path / "a")
    copy = tmp_path / "b" / "s.csv"
    copy.parent.mkdir()
    shutil.copy(sheet, copy)
    with (
        running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake,
        hold_run(sheet, tmp_path / "a" / "s.results.csv"),
    ):
        code, _, err = cli("apply", str(copy), "--endpoint", fake.url)
    assert code == 0, err
