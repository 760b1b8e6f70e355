"""Header values found safe are remembered, so a long token is searched once; a value not
seen before is still searched (a token that turns bad mid-run is refused, not sent)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from batchpatch.client import LOGIN_FAILED, SAFE_VALUES_KEPT, ImsClient
from batchpatch.fake import FakeConfig, running_fake
from tests.wire import account

TOKEN = "t" * 4000  # an IAM token is kilobytes long


@dataclass
class TurningToken:
    """Hands out ``tokens`` in turn, one per request."""

    tokens: list[str]
    source: str = "test tokens"
    kind: str = "token"
    project_id: str = ""
    project_lookup: None = None
    handed: int = field(default=0)

    async def authorize(
        self, issuer: object, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        token = self.tokens[min(self.handed, len(self.tokens) - 1)]
        self.handed += 1
        return {"X-Auth-Token": token}

    def expired(self, sent: Mapping[str, str] | None = None) -> bool:
        return False


@pytest.mark.anyio
async def test_a_token_that_turns_bad_after_safe_ones_is_refused_before_sending() -> None:
    images = account(3)
    bad = TOKEN[:100] + "\nX-Evil: 1"
    auth = TurningToken([TOKEN, TOKEN, bad])
    operations = [{"op": "replace", "path": "/name", "value": "renamed"}]
    with running_fake(images, FakeConfig()) as fake:
        async with ImsClient(fake.url, auth, timeout=10, connections=2) as client:  # type: ignore[arg-type]
            answers = [await client.update_image(image["id"], operations) for image in images]
        sent = fake.stats.total_requests
    assert [answer.error_code for answer in answers] == ["", "", LOGIN_FAILED]
    assert "control character" in answers[2].error_message
    assert sent == 2


@pytest.mark.anyio
async def test_values_of_every_request_differing_do_not_grow_without_bound() -> None:
    """AK/SK signs every request anew: the remembered values stay few."""
    images = account(1)
    auth = TurningToken([f"token-{n}" for n in range(SAFE_VALUES_KEPT * 3)])
    operations = [{"op": "replace", "path": "/name", "value": "renamed"}]
    with running_fake(images, FakeConfig()) as fake:
        async with ImsClient(fake.url, auth, timeout=10, connections=1) as client:  # type: ignore[arg-type]
            for _ in range(SAFE_VALUES_KEPT * 3):
                answer = await client.update_image(images[0]["id"], operations)
                assert answer.ok
            remembered = len(client._safe_values)
    assert remembered <= SAFE_VALUES_KEPT + 4
