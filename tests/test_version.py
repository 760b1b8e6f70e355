"""``batchpatch --version``, and the version in the User-Agent of every request, as the
server saw it."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

from batchpatch.fake import FakeConfig, running_fake
from tests.e2e import TOKEN, main_exit_code, run_cli, sample_images
from tests.sheets import write_sheet
from tests.test_token_refresh import IAM_LOGIN, iam_config

IMAGES = sample_images()
A, B = (image["id"] for image in IMAGES[:2])
AGENT = f"batchpatch/{version('batchpatch')}"


def test_version_prints_the_package_version_and_exits_0() -> None:
    done = run_cli(["--version"], token=None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"batchpatch {version('batchpatch')}"
    assert done.stderr == ""


def test_the_version_is_not_a_placeholder() -> None:
    assert version("batchpatch")[0].isdigit()
    assert "unknown" not in AGENT


def test_reads_and_writes_carry_the_version_in_the_user_agent(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[A, "ua-a"], [B, "ua-b"]])
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(["apply", str(sheet), "--endpoint", fake.url, "--quiet"])
        stats = fake.stats.snapshot()
    assert done.returncode == 0, done.stderr
    assert stats.list_requests == 2
    assert stats.patch_requests == 2
    assert dict(stats.user_agents) == {AGENT: stats.total_requests}


def test_the_iam_login_carries_it_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[A, "ua-iam"]])
    with running_fake(IMAGES, iam_config()) as fake:
        code = main_exit_code(
            monkeypatch,
            ["apply", str(sheet), "--endpoint", fake.url, "--iam-endpoint", fake.url, "--quiet"],
            IAM_LOGIN,
        )
        stats = fake.stats.snapshot()
    assert code == 0
    assert stats.tokens_issued == 1
    assert dict(stats.user_agents) == {AGENT: stats.total_requests}
