"""The per-image retry loop, table-driven on injected time: a scripted client stands in for
the service (the network paths are covered end to end elsewhere), a fake clock for time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from batchpatch.auth import TokenAuth
from batchpatch.client import ApiResponse, classify_answer, images_in
from batchpatch.models import CONNECTION_ERROR, TIMEOUT, ImagePatch, Limits, Operation, Status
from batchpatch.plan import unplanned
from batchpatch.retry import RetryPolicy
from batchpatch.runner import Runner, Safeguards
from batchpatch.throttle import Pacer
from tests.test_retry import Highest
from tests.test_throttle import FakeClock

IMAGE = "0b1c6a3e-5f0d-4a53-9c1e-2f6d8a1b7c01"
OK = ApiResponse(200, {"id": IMAGE})


class ScriptedClient:
    """Answers each PATCH with the next scripted response; applies the patch to ``image``
    when the script says it was applied (``"applied"`` after a lost answer)."""

    auth = TokenAuth("t", source="test")
    endpoint = "scripted"
    listing = "scripted/images"
    requests = 0
    classify = staticmethod(classify_answer)
    images = staticmethod(images_in)

    def describe(self) -> str:
        return "token from test"

    def __init__(self, script: Sequence[ApiResponse | tuple[ApiResponse, str]]) -> None:
        self.script = list(script)
        self.image: dict[str, Any] = {"id": IMAGE, "status": "active", "name": "old"}
        self.patches = 0
        self.reads = 0

    async def update_image(self, image_id: str, operations: list[dict[str, Any]]) -> ApiResponse:
        self.patches += 1
        step = self.script.pop(0)
        response, effect = step if isinstance(step, tuple) else (step, "")
        if response.ok or effect == "applied":
            for operation in operations:
                self.image[operation["path"].lstrip("/")] = operation["value"]
        return response

    async def list_images(self, query: dict[str, str]) -> ApiResponse:
        self.reads += 1
        return ApiResponse(200, {"images": [dict(self.image)]})


LOST = ApiResponse(None, error_code=CONNECTION_ERROR, error_message="lost")


@pytest.mark.parametrize(
    ("script", "status", "attempts", "patches", "waits"),
    [
        pytest.param([OK], Status.SUCCEEDED, 1, 1, [], id="first-time"),
        pytest.param(
            [ApiResponse(503), ApiResponse(503), OK],
            Status.SUCCEEDED,
            3,
            3,
            [0.5, 1.0],
            id="transient-twice",
        ),
        pytest.param(
            [ApiResponse(429, error_code="APIGW.0308", retry_after=7.0), OK],
            Status.SUCCEEDED,
            2,
            2,
            [7.0],
            id="retry-after",
        ),
        pytest.param(
            [ApiResponse(400, error_code="IMG.0060"), OK],
            Status.SUCCEEDED,
            2,
            2,
            [0.5],
            id="flow-control",
        ),
        pytest.param(
            [(LOST, "applied")],
            Status.SUCCEEDED,
            1,
            1,
            [0.5],
            id="lost-but-applied: read back, not resent",
        ),
        pytest.param([LOST, OK], Status.SUCCEEDED, 2, 2, [0.5], id="lost-not-applied: resent"),
        pytest.param(
            [ApiResponse(None, error_code=TIMEOUT), OK],
            Status.SUCCEEDED,
            2,
            2,
            [0.5],
            id="timeout-not-applied",
        ),
        pytest.param(
            [ApiResponse(400, error_code="IMG.0035")], Status.FAILED, 1, 1, [], id="permanent"
        ),
        pytest.param(
            [ApiResponse(400, error_code="IMG.0046")], Status.SKIPPED, 1, 1, [], id="not-active"
        ),
        pytest.param([ApiResponse(503)] * 3, Status.FAILED, 3, 3, [0.5, 1.0], id="gives-up"),
        pytest.param(
            [ApiResponse(500), ApiResponse(500), (LOST, "applied")],
            Status.SUCCEEDED,
            3,
            3,
            [0.5, 1.0, 2.0],
            id="lost-on-the-last-attempt-still-read-back",
        ),
    ],
)
@pytest.mark.anyio
async def test_retry_loop(
    script: list[Any], status: Status, attempts: int, patches: int, waits: list[float]
) -> None:
    clock = FakeClock()
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)
        await clock.sleep(seconds)

    client = ScriptedClient(script)
    pacer = Pacer(Limits(concurrency=2, rate=1000), clock=clock, sleep=clock.sleep)
    policy = RetryPolicy(max_attempts=3, base=0.5, cap=30, random=Highest(), sleep=sleep)
    runner = Runner(client, pacer, Safeguards(policy))  # type: ignore[arg-type]
    patch = ImagePatch(IMAGE, (Operation("replace", "/name", "new"),), (2,))
    outcomes = await runner.run([unplanned(patch)])
    outcome = outcomes[IMAGE]
    assert (outcome.status, outcome.attempts, client.patches) == (status, attempts, patches)
    assert waited == waits
    assert client.image["name"] == ("new" if status == Status.SUCCEEDED else "old")
