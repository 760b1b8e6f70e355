"""A run killed between an image's PATCH and its tag call: the rerun sends only the tag call."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from batchpatch.fake import running_fake
from tests.e2e import start_cli
from tests.sheets import write_sheet
from tests.tagfixtures import ENV, LONG_HEADER, A, apply, config, images, report_rows
from tests.test_resume import wait_for

#: Real processes: run by `.ci/run` (`pytest -m process`), not by the README's quick command.
pytestmark = pytest.mark.process


def test_a_kill_between_patch_and_tag_call_is_finished_by_the_rerun(tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "s.csv",
        LONG_HEADER,
        [
            [A, "replace", "/name", "web"],
            [A, "add", "tag:env", "prod"],
            [A, "remove", "tag:old", ""],
        ],
    )
    journal = tmp_path / "s.results.csv.journal"
    args = ["--timeout", "2", "--quiet"]
    with running_fake(images(a=["old=1"]), config(tag_script={A: ["hang"]})) as fake:
        process = start_cli(["apply", str(sheet), "--endpoint", fake.url, *args], environ=ENV)
        try:
            wait_for(lambda: fake.stats.tag_write_requests >= 1, "the tag call to be sent")
            assert fake.store.get(A)["name"] == "web"  # the PATCH went through
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.wait(timeout=30)
        assert journal.exists()
        assert fake.store.tags[A] == {"old": "1"}  # the hung tag call applied nothing
        code, _, err = apply(fake, sheet, *args)
        assert code == 0, err
        assert fake.stats.patches_by_image[A] == 1  # the PATCH was not sent again
        assert fake.store.tags[A] == {"env": "prod"}
    rows = report_rows(tmp_path / "s.results.csv")
    assert [row["status"] for row in rows] == ["succeeded", "succeeded", "succeeded"]
    assert not journal.exists()
