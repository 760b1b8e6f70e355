"""``plan --detailed-exitcode``: 0 when nothing would change, 4 when changes are pending;
1 (an image that cannot be changed) and 2 (invalid input) as without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchpatch.exits import EXIT_CHANGES_PENDING, EXIT_MEANINGS
from batchpatch.fake import FakeConfig, running_fake
from tests.e2e import TOKEN, run_cli, sample_images
from tests.sheets import write_sheet

IMAGES = sample_images()
A, B = (image["id"] for image in IMAGES[:2])
NAME_A, NAME_B = IMAGES[0]["name"], IMAGES[1]["name"]


def _plan(
    tmp_path: Path,
    rows: list[list[object]],
    *flags: str,
    images: list[dict[str, object]] | None = None,
) -> tuple[int, int]:
    """Exit code of ``plan`` on a wide sheet of renames, and the PATCHes the fake got."""
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], rows)
    with running_fake(images or IMAGES, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(["plan", str(sheet), "--endpoint", fake.url, *flags])
        patches = fake.stats.snapshot().patch_requests
    assert "Traceback" not in done.stderr
    return done.returncode, patches


@pytest.mark.parametrize(
    ("rows", "flags", "code"),
    [
        pytest.param([[A, NAME_A], [B, NAME_B]], ["--detailed-exitcode"], 0, id="in-place-0"),
        pytest.param([[A, NAME_A], [B, "drifted"]], ["--detailed-exitcode"], 4, id="pending-4"),
        pytest.param([[A, NAME_A], [B, "drifted"]], [], 0, id="pending-without-flag-0"),
    ],
)
def test_pending_changes_exit_4_only_when_asked(
    tmp_path: Path, rows: list[list[object]], flags: list[str], code: int
) -> None:
    assert _plan(tmp_path, rows, *flags) == (code, 0)


def test_an_image_that_cannot_be_changed_still_exits_1(tmp_path: Path) -> None:
    images = [{**IMAGES[0], "status": "queued"}, *IMAGES[1:]]
    rows = [[A, "frozen"], [B, "drifted"]]  # one pending, one blocked: the plan is incomplete
    assert _plan(tmp_path, rows, "--detailed-exitcode", images=images) == (1, 0)


def test_invalid_input_still_exits_2(tmp_path: Path) -> None:
    assert _plan(tmp_path, [["not-a-uuid", "x"]], "--detailed-exitcode") == (2, 0)


def test_exit_4_has_a_meaning() -> None:
    assert EXIT_CHANGES_PENDING == 4
    assert "changes" in EXIT_MEANINGS[4]
