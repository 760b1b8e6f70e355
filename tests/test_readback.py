"""A write whose answer may not tell the truth is read back before anything is sent again,
and the read-back decides each row: against the fake over real sockets, in-process."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from batchpatch.auth import TokenAuth
from batchpatch.client import ApiResponse
from batchpatch.fake import FakeConfig, FakeServer, running_fake
from batchpatch.fake.cli import build_parser, config_from_args
from batchpatch.job import RunResult, apply_sheet
from batchpatch.models import ImagePatch, Limits, Operation, Status
from batchpatch.plan import unplanned
from batchpatch.retry import RetryPolicy
from batchpatch.runner import Runner, Safeguards
from batchpatch.service import AnswerKind
from batchpatch.throttle import Pacer
from tests.e2e import TOKEN
from tests.sheets import write_sheet
from tests.test_runner import IMAGE, ScriptedClient
from tests.test_throttle import FakeClock

LONG = ["image_id", "op", "path", "value"]


def account(size: int) -> list[dict[str, Any]]:
    return [
        {
            "id": str(uuid.UUID(int=n + 1, version=4)),
            "name": f"image-{n:02d}",
            "status": "active",
            "min_ram": 0,
            "team": "old",
        }
        for n in range(size)
    ]


async def apply(
    sheet: Path, fake: FakeServer, *, plan: bool = True, max_attempts: int = 5
) -> RunResult:
    return await apply_sheet(
        sheet,
        endpoint=fake.url,
        auth=TokenAuth(TOKEN, source="test"),
        limits=Limits(concurrency=1, rate=1000, timeout=5),
        safeguards=Safeguards(RetryPolicy(max_attempts=max_attempts, base=0.001, cap=0.01)),
        plan=plan,
    )


def rows_of(result: RunResult) -> list[tuple[str, str]]:
    return [(str(row.outcome.status), row.before) for row in result.rows]


@pytest.mark.parametrize("fault", ["502_after", "504_after"])
@pytest.mark.parametrize(
    "plan", [pytest.param(True, id="read-pass"), pytest.param(False, id="no-plan")]
)
@pytest.mark.anyio
async def test_a_gateway_error_after_applying_is_read_back_not_resent(
    tmp_path: Path,
    fault: str,
    plan: bool,
) -> None:
    images = account(2)
    ids = [image["id"] for image in images]
    sheet = write_sheet(
        tmp_path / "s.csv",
        LONG,
        [[ids[0], "remove", "/team", ""], [ids[1], "replace", "/name", "renamed"]],
    )
    script = {image_id: [fault] for image_id in ids}
    with running_fake(images, FakeConfig(token=TOKEN, script=script)) as fake:
        result = await apply(sheet, fake, plan=plan)
        stats = fake.stats.snapshot()
        state = fake.store.images
    status = fault[:3]
    assert [str(outcome.status) for outcome in result.outcomes] == ["succeeded"] * 2
    assert dict(stats.applied_by_image) == {ids[0]: 1, ids[1]: 1}  # never twice
    assert stats.patch_requests == 2
    assert "team" not in state[ids[0]]
    assert state[ids[1]]["name"] == "renamed"
    for outcome in result.outcomes:
        assert outcome.error_message == (
            f"the service answered HTTP {status} APIGW.0201, but "
            "reading the image back shows the change in place"
        )
        assert outcome.http_status == int(status)


@pytest.mark.parametrize(
    ("fault", "reads"),
    [
        pytest.param("500", 2, id="500-is-read-back"),
        pytest.param("503", 1, id="503-is-a-refusal"),
        pytest.param("429", 1, id="429-is-a-refusal"),
        pytest.param("IMG.0060", 1, id="flow-control-is-a-refusal"),
    ],
)
@pytest.mark.anyio
async def test_only_answers_that_may_follow_an_apply_are_read_back(
    tmp_path: Path,
    fault: str,
    reads: int,
) -> None:
    images = account(1)
    image_id = images[0]["id"]
    sheet = write_sheet(tmp_path / "s.csv", LONG, [[image_id, "replace", "/name", "x"]])
    with running_fake(images, FakeConfig(token=TOKEN, script={image_id: [fault]})) as fake:
        result = await apply(sheet, fake)
        stats = fake.stats.snapshot()
    assert result.outcomes[0].status == Status.SUCCEEDED
    assert result.outcomes[0].attempts == 2
    assert stats.list_requests == reads  # the plan's read, plus one read-back for a 500
    assert dict(stats.applied_by_image) == {image_id: 1}


@pytest.mark.anyio
async def test_read_back_as_not_applied_never_says_may_or_may_not(tmp_path: Path) -> None:
    images = account(2)
    ids = [image["id"] for image in images]
    sheet = write_sheet(
        tmp_path / "s.csv",
        LONG,
        [[ids[0], "replace", "/name", "a"], [ids[1], "replace", "/name", "b"]],
    )
    script = {ids[0]: ["reset_before"], ids[1]: ["500"]}
    with running_fake(images, FakeConfig(token=TOKEN, script=script)) as fake:
        result = await apply(sheet, fake, plan=False, max_attempts=1)
    for outcome in result.outcomes:
        assert outcome.status == Status.FAILED
        assert "may or may not" not in outcome.error_message
        assert outcome.error_message.endswith("reading the image back shows it was not applied")
    assert result.outcomes[0].error_code == "connection_error"
    assert result.outcomes[1].error_code == "IMG.0061"


@pytest.mark.anyio
async def test_without_a_plan_each_row_is_decided_by_the_read_back(tmp_path: Path) -> None:
    images = account(4)
    a, b, c, d = (image["id"] for image in images)
    sheet = write_sheet(
        tmp_path / "s.csv",
        LONG,
        [
            [a, "remove", "/ghost", ""],  # absent, answered IMG.0035: nothing to do
            [b, "remove", "/ghost", ""],  # absent, in one PATCH with a rename
            [b, "replace", "/name", "b-new"],
            [c, "remove", "/team", ""],  # present, applied, answer lost: sent by us
            [d, "remove", "/ghost", ""],  # absent, answer lost, nothing applied
            [d, "replace", "/name", "d-new"],
        ],
    )
    script = {c: ["reset_after"], d: ["reset_after"]}
    with running_fake(images, FakeConfig(token=TOKEN, script=script)) as fake:
        result = await apply(sheet, fake, plan=False)
        stats = fake.stats.snapshot()
        state = fake.store.images
    assert [str(outcome.status) for outcome in result.outcomes] == [
        "unchanged",
        "unchanged",
        "succeeded",
        "succeeded",
        "unchanged",
        "succeeded",
    ]
    assert result.exit_code == 0
    assert dict(stats.applied_by_image) == {b: 1, c: 1, d: 1}
    assert (state[b]["name"], state[d]["name"]) == ("b-new", "d-new")
    assert "team" not in state[c]
    assert all(row.before == "" for row in result.rows)  # nothing was read before sending


@pytest.mark.anyio
async def test_a_read_back_keeps_unchanged_rows_and_their_before(tmp_path: Path) -> None:
    images = account(1)
    image_id = images[0]["id"]
    sheet = write_sheet(
        tmp_path / "s.csv",
        LONG,
        [[image_id, "replace", "/name", "new"], [image_id, "replace", "/min_ram", "0"]],
    )
    with running_fake(images, FakeConfig(token=TOKEN, script={image_id: ["502_after"]})) as fake:
        result = await apply(sheet, fake)
        stats = fake.stats.snapshot()
    assert rows_of(result) == [("succeeded", "image-00"), ("unchanged", "0")]
    assert dict(stats.applied_by_image) == {image_id: 1}


class Unconvinced(ScriptedClient):
    """A service that, like a check of 2xx bodies, finds some answers not to be trusted."""

    def classify(self, answer: ApiResponse) -> AnswerKind:  # type: ignore[override]
        body = answer.body
        if answer.ok and isinstance(body, dict) and body.get("id", IMAGE) != IMAGE:
            return AnswerKind.MAYBE_APPLIED
        return super().classify(answer)


@pytest.mark.anyio
async def test_any_ambiguous_verdict_leads_to_a_read_back() -> None:
    """The seam a check of 2xx bodies plugs into: the verdict alone starts the read-back,
    which finds the change in place, so nothing is sent again."""
    clock = FakeClock()
    wrong_image = ApiResponse(200, {"id": "another-image"})
    client = Unconvinced([wrong_image, ApiResponse(200, {"id": IMAGE})])
    pacer = Pacer(Limits(concurrency=1, rate=1000), clock=clock, sleep=clock.sleep)
    policy = RetryPolicy(max_attempts=3, sleep=clock.sleep)
    runner = Runner(client, pacer, Safeguards(policy))  # type: ignore[arg-type]
    patch = ImagePatch(IMAGE, (Operation("replace", "/name", "new"),), (2,))
    outcome = (await runner.run([unplanned(patch)]))[IMAGE]
    assert outcome.status == Status.SUCCEEDED
    assert (client.patches, client.reads) == (1, 1)
    assert client.image["name"] == "new"


@pytest.mark.parametrize(
    ("flag", "field", "status"),
    [
        pytest.param("--bad-gateway-after", "bad_gateway_after", 502, id="502"),
        pytest.param("--gateway-timeout-after", "gateway_timeout_after", 504, id="504"),
    ],
)
@pytest.mark.anyio
async def test_the_fake_applies_then_answers_a_gateway_error(
    tmp_path: Path, flag: str, field: str, status: int
) -> None:
    args = build_parser().parse_args(["--images", "unused.json", flag, "1"])
    config = config_from_args(args, {})
    assert getattr(config, field) == 1.0
    images = account(1)
    image_id = images[0]["id"]
    sheet = write_sheet(tmp_path / "s.csv", LONG, [[image_id, "replace", "/name", "x"]])
    with running_fake(images, config) as fake:
        result = await apply(sheet, fake, plan=False)
        stats = fake.stats.snapshot()
    assert stats.faults[f"{status}_after"] == 1
    assert dict(stats.applied_by_image) == {image_id: 1}
    assert result.outcomes[0].status == Status.SUCCEEDED
    assert result.outcomes[0].http_status == status
