"""Resume tells the truth: after a ``kill -9`` with a PATCH in flight the image is read back
in every mode (read pass, ``--plan``, ``--no-plan``), also after the sheet was edited, nothing
is sent twice, and every row keeps its plan status and ``before``."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from batchpatch.auth import TokenAuth
from batchpatch.fake import FakeConfig, FakeServer, running_fake
from batchpatch.job import apply_sheet
from batchpatch.journal import Journal
from batchpatch.ledger import Ledger
from batchpatch.models import Limits, Outcome, Status
from batchpatch.plan import plan_from_json
from batchpatch.retry import RetryPolicy
from batchpatch.runner import Safeguards
from tests.e2e import TOKEN, run_cli, start_cli
from tests.sheets import write_sheet
from tests.test_cli import read_report
from tests.test_readback import LONG, account
from tests.test_resume import wait_for

#: Real processes and wall-clock rates: run by `.ci/run` (`pytest -m process`), not by the
#: README's quick command, which must stay under 90 s on two cores.
pytestmark = pytest.mark.process

#: The fake holds each PATCH this long, so a kill lands while one is in flight; the fake
#: applies it all the same once the wait is over (it is not told the client died).
IN_FLIGHT = 1.0
#: A resumed run waits up to the request timeout after the dead run's last write in doubt
#: before reading it back; kept short (above ``IN_FLIGHT``) so the tests stay quick.
QUICK_TIMEOUT = ["--timeout", str(IN_FLIGHT * 2)]


def kill_with_a_patch_in_flight(fake: FakeServer, args: list[str]) -> None:
    """Run ``batchpatch ARGS`` and SIGKILL it while the fake holds its first PATCH."""
    process = start_cli(
        [*args, "--endpoint", fake.url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: fake.stats.snapshot().in_flight > 0, "a PATCH in flight")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL


def killed_while_patching(fake: FakeServer, args: list[str], journal: Path) -> None:
    """``kill_with_a_patch_in_flight``, then wait until the fake has applied that PATCH:
    the dead run's write took effect, unanswered."""
    kill_with_a_patch_in_flight(fake, args)
    wait_for(lambda: fake.stats.snapshot().applied_by_image, "the in-flight PATCH applied")
    assert '"event":"sending"' in journal.read_text()


@pytest.mark.parametrize(
    ("mode", "statuses", "befores"),
    [
        pytest.param("read-pass", ["succeeded", "unchanged"], ["image-00", "0"], id="read-pass"),
        pytest.param("plan-file", ["succeeded", "unchanged"], ["image-00", "0"], id="plan-file"),
        pytest.param("no-plan", ["succeeded", "succeeded"], ["", ""], id="no-plan"),
    ],
)
def test_a_patch_in_flight_at_a_kill_is_read_back_on_resume(
    tmp_path: Path, mode: str, statuses: list[str], befores: list[str]
) -> None:
    images = account(1)
    image_id = images[0]["id"]
    sheet = write_sheet(
        tmp_path / "s.csv",
        LONG,
        [[image_id, "replace", "/name", "renamed"], [image_id, "replace", "/min_ram", "0"]],
    )
    journal = tmp_path / "s.results.csv.journal"
    args = ["apply", str(sheet), "--rate", "200", *QUICK_TIMEOUT]
    with running_fake(images, FakeConfig(token=TOKEN, latency=IN_FLIGHT)) as fake:
        if mode == "plan-file":
            plan_file = tmp_path / "plan.json"
            made = run_cli(["plan", str(sheet), "--endpoint", fake.url, "--out", str(plan_file)])
            assert made.returncode == 0, made.stderr
            args += ["--plan", str(plan_file)]
        elif mode == "no-plan":
            args.append("--no-plan")
        killed_while_patching(fake, args, journal)
        resumed = run_cli([*args, "--endpoint", fake.url])
        stats = fake.stats.snapshot()
        state = fake.store.images
    assert resumed.returncode == 0, resumed.stderr
    assert stats.patch_requests == 1  # the dead run's; the resume read it back instead
    assert dict(stats.applied_by_image) == {image_id: 1}
    assert state[image_id]["name"] == "renamed"
    report = read_report(tmp_path / "s.results.csv")
    assert report["status"].tolist() == statuses
    assert report["before"].tolist() == befores
    assert report.loc[0, "error_message"].startswith("applied by the interrupted run")
    assert not journal.exists()


@pytest.mark.parametrize("mode", ["read-pass", "no-plan"])
def test_after_the_sheet_is_edited_the_old_journal_is_still_read_back(
    tmp_path: Path, mode: str
) -> None:
    images = account(2)
    first, second = (image["id"] for image in images)
    rows = [[first, "replace", "/name", "renamed"], [first, "replace", "/min_ram", "0"]]
    sheet = write_sheet(tmp_path / "s.csv", LONG, rows)
    journal = tmp_path / "s.results.csv.journal"
    args = [
        "apply",
        str(sheet),
        "--rate",
        "200",
        *QUICK_TIMEOUT,
        *(["--no-plan"] if mode == "no-plan" else []),
    ]
    with running_fake(images, FakeConfig(token=TOKEN, latency=IN_FLIGHT)) as fake:
        killed_while_patching(fake, args, journal)
        write_sheet(sheet, LONG, [[second, "replace", "/name", "added-later"], *rows])
        resumed = run_cli([*args, "--endpoint", fake.url])
        stats = fake.stats.snapshot()
        state = fake.store.images
    assert resumed.returncode == 0, resumed.stderr
    assert "belongs to another version of the sheet" in resumed.stderr
    assert dict(stats.applied_by_image) == {first: 1, second: 1}  # the first not sent again
    assert (state[first]["name"], state[second]["name"]) == ("renamed", "added-later")
    report = read_report(tmp_path / "s.results.csv")
    unchanged_row = "succeeded" if mode == "no-plan" else "unchanged"
    assert report["status"].tolist() == ["succeeded", "succeeded", unchanged_row]
    assert report.loc[1, "error_message"].startswith("applied by the interrupted run")


@pytest.mark.anyio
async def test_rows_an_earlier_run_finished_keep_their_status_and_before(
    tmp_path: Path,
) -> None:
    images = account(2)
    first, second = (image["id"] for image in images)
    sheet = write_sheet(
        tmp_path / "s.csv",
        LONG,
        [
            [first, "replace", "/name", "renamed"],
            [first, "replace", "/min_ram", "0"],  # already as asked
            [second, "replace", "/name", "later"],
        ],
    )
    safeguards = Safeguards(RetryPolicy(max_attempts=1, base=0.001, cap=0.01), max_failures=1)
    config = FakeConfig(token=TOKEN, script={second: ["503"]})
    with running_fake(images, config) as fake:

        async def apply() -> list[tuple[str, str]]:
            result = await apply_sheet(
                sheet,
                endpoint=fake.url,
                auth=TokenAuth(TOKEN, source="test"),
                limits=Limits(concurrency=1, rate=1000),
                safeguards=safeguards,
            )
            return [(str(row.outcome.status), row.before) for row in result.rows]

        stopped = await apply()  # the second image fails: --max-failures stops the run
        assert (tmp_path / "s.results.csv.journal").exists()
        resumed = await apply()
        stats = fake.stats.snapshot()
    assert stopped == [("succeeded", "image-00"), ("unchanged", "0"), ("failed", "image-01")]
    assert resumed == [("succeeded", "image-00"), ("unchanged", "0"), ("succeeded", "image-01")]
    assert dict(stats.applied_by_image) == {first: 1, second: 1}


def test_the_journal_keeps_plans_and_what_is_in_doubt_across_generations(tmp_path: Path) -> None:
    path = tmp_path / "r.csv.journal"
    plan = {"image_id": "a", "status": None, "reason": "", "changes": []}
    first = Journal(path, Ledger(), sheet_sha256="s", endpoint="e")
    first.sending("a", plan)
    first.outcome(Outcome("a", Status.SUCCEEDED, 200), plan)
    first.sending("b", {**plan, "image_id": "b"})
    first.outcome(Outcome("b", Status.FAILED, 502, "APIGW.0201"), in_doubt=True)  # unread
    first.sending("c")
    first.outcome(Outcome("c", Status.FAILED, None, "timeout"), in_doubt=False)  # read back
    first.close(finished=False)
    for _generation in range(2):  # what a resume carries into its fresh journal survives
        ledger = Ledger()
        again = Journal(path, ledger, sheet_sha256="s", endpoint="e")
        assert set(ledger.done()) == {"a"}
        assert ledger.in_doubt() == {"b"}
        assert ledger.plans() == {
            "a": plan_from_json(plan),
            "b": plan_from_json({**plan, "image_id": "b"}),
        }
        again.close(finished=False)


def test_a_rerun_straight_after_a_kill_waits_for_the_dead_runs_write_to_land(
    tmp_path: Path,
) -> None:
    # The fake holds the dead run's PATCH for IN_FLIGHT seconds and applies it then. A rerun
    # that read the image at once would find the change missing and send it a second time;
    # it waits until the request timeout has passed since that write went out.
    images = account(1)
    image_id = images[0]["id"]
    sheet = write_sheet(tmp_path / "s.csv", LONG, [[image_id, "replace", "/name", "renamed"]])
    journal = tmp_path / "s.results.csv.journal"
    args = ["apply", str(sheet), "--rate", "200", "--timeout", str(IN_FLIGHT * 2.5)]
    with running_fake(images, FakeConfig(token=TOKEN, latency=IN_FLIGHT)) as fake:
        kill_with_a_patch_in_flight(fake, args)
        assert not fake.stats.snapshot().applied_by_image  # still held by the fake
        resumed = run_cli([*args, "--endpoint", fake.url])
        stats = fake.stats.snapshot()
    assert resumed.returncode == 0, resumed.stderr
    assert dict(stats.applied_by_image) == {image_id: 1}
    assert stats.patch_requests == 1
    assert "its last write may still be applied" in resumed.stderr
    report = read_report(tmp_path / "s.results.csv")
    assert report.loc[0, "error_message"].startswith("applied by the interrupted run")
    assert not journal.exists()  # finished: nothing left to resume
