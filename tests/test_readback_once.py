"""A write's read-back is one read through the one retry loop: the read's own retries are
the policy's, never multiplied by a second loop around it.  A read-back that still fails
leaves the image in doubt on the ledger, and the write is not sent again blind."""

from __future__ import annotations

import pytest

from batchpatch.client import ApiResponse
from batchpatch.ledger import Ledger
from batchpatch.models import CONNECTION_ERROR, ImagePatch, Limits, Operation, Status
from batchpatch.plan import unplanned
from batchpatch.retry import RetryPolicy
from batchpatch.runner import Runner, Safeguards
from batchpatch.throttle import Pacer
from tests.test_retry import Highest
from tests.test_runner import IMAGE, ScriptedClient
from tests.test_throttle import FakeClock

LOST = ApiResponse(None, error_code=CONNECTION_ERROR, error_message="lost")


class Unreadable(ScriptedClient):
    """Every read is answered 503: the image cannot be read back."""

    async def list_images(self, query: dict[str, str]) -> ApiResponse:
        self.reads += 1
        return ApiResponse(503, error_code="APIGW.0503", error_message="busy")


@pytest.mark.parametrize("max_attempts", [1, 3])
@pytest.mark.anyio
async def test_a_failed_read_back_reads_as_often_as_the_policy_says_and_stays_in_doubt(
    max_attempts: int,
) -> None:
    clock = FakeClock()
    client = Unreadable([LOST])
    pacer = Pacer(Limits(concurrency=1, rate=1000), clock=clock, sleep=clock.sleep)
    policy = RetryPolicy(max_attempts=max_attempts, random=Highest(), sleep=clock.sleep)
    ledger = Ledger()
    runner = Runner(client, pacer, Safeguards(policy), ledger=ledger)  # type: ignore[arg-type]
    patch = ImagePatch(IMAGE, (Operation("replace", "/name", "new"),), (2,))
    outcome = (await runner.run([unplanned(patch)]))[IMAGE]
    assert client.patches == 1  # never sent again blind
    assert client.reads == max_attempts  # one read_image: its retries are the policy's
    assert outcome.status == Status.FAILED
    assert "could not be read back" in outcome.error_message
    assert ledger.in_doubt() == {IMAGE}
