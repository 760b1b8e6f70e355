"""ImsClient's tag calls against the fake IMS over real sockets: paths, bodies, answer checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import pytest

from batchpatch.auth import TokenAuth
from batchpatch.client import ImsClient
from batchpatch.fake import FakeConfig, FakeServer, running_fake
from batchpatch.service import AnswerKind, ApiResponse

TOKEN = "tag-client-token"
PROJECT = "3c3c3c3c3c3c4c3c8c3c3c3c3c3c3c3c"
IMAGES: list[dict[str, Any]] = [
    {"id": "img-1", "name": "a", "status": "active", "tags": ["team=blue"]},
    {"id": "img-2", "name": "b", "status": "active", "tags": []},
]
T = TypeVar("T")


def with_client(fake: FakeServer, use: Callable[[ImsClient], Awaitable[T]]) -> T:
    async def run() -> T:
        auth = TokenAuth(TOKEN, project_id=PROJECT)
        async with ImsClient(fake.url, auth, timeout=10, connections=4) as client:
            return await use(client)

    return anyio.run(run)


def offline() -> ImsClient:
    """A client for its parsers and ``classify`` only: it sends nothing."""
    return ImsClient("http://127.0.0.1:9", TokenAuth(TOKEN), timeout=1, connections=1)


def serve(**config: Any) -> Any:
    return running_fake(IMAGES, FakeConfig(token=TOKEN, project_id=PROJECT, **config))


def test_change_read_and_list_tags_round_trip() -> None:
    async def use(client: ImsClient) -> tuple[ApiResponse, ...]:
        created = await client.change_tags("img-2", "create", {"env": "prod", "team": "red"})
        deleted = await client.change_tags("img-1", "delete", {"team": ""})
        return (
            created,
            deleted,
            await client.read_tags("img-2"),
            await client.list_tag_keys(),
            await client.find_tagged(["env", "team"], 0, 1000),
        )

    with serve() as fake:
        created, deleted, read, keys, found = with_client(fake, use)
        tags = fake.store.tags
        log = [(entry.method, entry.path) for entry in fake.stats.log]
    assert (created.ok, created.status, deleted.ok) == (True, 204, True)
    assert tags == {"img-1": {}, "img-2": {"env": "prod", "team": "red"}}
    client = offline()
    assert client.tags(read) == {"env": "prod", "team": "red"}
    assert client.tag_keys(keys) == {"env": ["prod"], "team": ["red"]}
    assert client.tagged(found) == ({"img-2": {"env": "prod", "team": "red"}}, 1)
    assert log[0] == ("POST", f"/v2/{PROJECT}/images/img-2/tags/action")
    assert log[3:] == [
        ("GET", f"/v2/{PROJECT}/images/tags"),
        ("POST", f"/v2/{PROJECT}/images/resource_instances/action"),
    ]


def test_a_refused_tag_write_carries_the_ims_code_and_request_id() -> None:
    async def use(client: ImsClient) -> ApiResponse:
        return await client.change_tags("img-1", "create", {"bad key": "v"})

    with serve() as fake:
        answer = with_client(fake, use)
        request_id_seen = answer.request_id
    assert (answer.status, answer.error_code, answer.ok) == (400, "IMG.0115", False)
    assert len(request_id_seen) == 32
    assert offline().classify(answer) is AnswerKind.REFUSED


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        pytest.param("429", AnswerKind.THROTTLED, id="throttled"),
        pytest.param("reset_after", AnswerKind.MAYBE_APPLIED, id="lost-answer"),
        pytest.param("504_after", AnswerKind.MAYBE_APPLIED, id="gateway-timeout"),
        pytest.param("error_200", AnswerKind.MAYBE_APPLIED, id="error-in-a-200"),
        pytest.param("not_json", AnswerKind.MAYBE_APPLIED, id="unparseable"),
    ],
)
def test_a_faulted_tag_write_is_classified_like_a_patch(fault: str, kind: AnswerKind) -> None:
    async def use(client: ImsClient) -> tuple[ApiResponse, AnswerKind]:
        answer = await client.change_tags("img-2", "create", {"env": "dev"})
        return answer, client.classify(answer)

    with serve(tag_script={"img-2": [fault]}) as fake:
        answer, seen = with_client(fake, use)
    assert (answer.ok, seen) == (False, kind)


def test_a_200_with_a_body_where_204_is_due_is_unexpected() -> None:
    async def use(client: ImsClient) -> ApiResponse:
        return await client.change_tags("img-2", "create", {"env": "dev"})

    with serve(tag_script={"img-2": ["error_200"]}) as fake:
        answer = with_client(fake, use)
    assert answer.unexpected
    assert "error body" in answer.message


def test_a_tag_read_without_a_tag_list_is_unexpected() -> None:
    async def use(client: ImsClient) -> tuple[ApiResponse, ApiResponse]:
        return await client.read_tags("img-1"), await client.find_tagged(["team"], 0, 10)

    with serve(kind_script={"tag_read": ["error_200"], "tag_query": ["error_200"]}) as fake:
        read, found = with_client(fake, use)
    assert read.unexpected
    assert found.unexpected
    assert offline().tags(read) is None


def test_preview_shows_the_tag_call_with_the_token_masked() -> None:
    async def use(client: ImsClient) -> str:
        return await client.preview_tags("img-1", "delete", {"team": ""})

    with serve() as fake:
        text = with_client(fake, use)
        sent = fake.stats.total_requests
    assert text.splitlines()[0] == f"POST {fake.url}/v2/{PROJECT}/images/img-1/tags/action"
    assert "X-Auth-Token: ***" in text
    assert TOKEN not in text
    assert text.endswith('{"action":"delete","tags":[{"key":"team","value":""}]}')
    assert sent == 0


def test_bad_arguments_are_programming_errors() -> None:
    async def use(client: ImsClient) -> None:
        with pytest.raises(ValueError, match="action"):
            await client.change_tags("img-1", "Create", {"k": "v"})
        with pytest.raises(ValueError, match="1 to 10 keys"):
            await client.find_tagged([f"k{n}" for n in range(11)], 0, 10)

    with serve() as fake:
        with_client(fake, use)
