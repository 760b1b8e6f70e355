"""Reading current tags over real sockets against the fake IMS, and the calls each way costs
(the cost rule documented in batchpatch/tagreads.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import pytest

from batchpatch.auth import TokenAuth
from batchpatch.client import ImsClient
from batchpatch.errors import ReadFailed
from batchpatch.fake import FakeConfig, FakeServer, running_fake
from batchpatch.models import Limits
from batchpatch.retry import RetryPolicy
from batchpatch.service import ImageService
from batchpatch.tagreads import all_tags, current_tags, key_groups
from batchpatch.throttle import Pacer
from tests.memory_service import MemoryService

TOKEN = "tag-reads-token"
PROJECT = "4b4b4b4b4b4b4b4b8b4b4b4b4b4b4b4b"
T = TypeVar("T")


async def no_wait(seconds: float) -> None:
    """The retry policy's sleep: these tests run on no clock."""


POLICY = RetryPolicy(sleep=no_wait)


def account(size: int, tagged: Callable[[int], dict[str, str]]) -> list[dict[str, Any]]:
    """``size`` images ``img-0000``…, image n carrying ``tagged(n)``."""
    return [
        {"id": f"img-{n:04d}", "name": f"n{n}", "status": "active", "tags": tagged(n)}
        for n in range(size)
    ]


def with_client(fake: FakeServer, use: Callable[[ImsClient, Pacer], Awaitable[T]]) -> T:
    async def run() -> T:
        auth = TokenAuth(TOKEN, project_id=PROJECT)
        async with ImsClient(fake.url, auth, timeout=30, connections=8) as client:
            return await use(client, Pacer(Limits(concurrency=8, rate=1000)))

    return anyio.run(run)


def read_current(
    images: list[dict[str, Any]], ids: list[str], keys: list[str], **config: Any
) -> tuple[dict[str, dict[str, str]], Counter[str]]:
    """``current_tags`` against a fake holding ``images``, and the requests by kind."""
    with running_fake(images, FakeConfig(token=TOKEN, project_id=PROJECT, **config)) as fake:
        found = with_client(
            fake, lambda client, pace: current_tags(client, ids, keys, pace, policy=POLICY)
        )
        return found, fake.stats.requests_by_kind


def ids_of(numbers: range | list[int]) -> list[str]:
    return [f"img-{n:04d}" for n in numbers]


def test_one_image_is_read_on_its_own() -> None:
    images = account(3, lambda n: {"team": "blue"} if n == 1 else {})
    found, calls = read_current(images, ids_of([1]), ["team"])
    assert found == {"img-0001": {"team": "blue"}}
    assert (calls["tag_read"], calls["tag_query"]) == (1, 0)


def test_a_sheet_of_thirty_costs_one_query_for_its_key() -> None:
    images = account(40, lambda n: {"team": f"t{n}", "other": "x"} if n % 2 else {"env": "e"})
    found, calls = read_current(images, ids_of(range(30)), ["team"])
    assert found == {
        f"img-{n:04d}": ({"team": f"t{n}", "other": "x"} if n % 2 else {}) for n in range(30)
    }
    assert (calls["tag_read"], calls["tag_query"]) == (0, 1)


def test_images_past_the_first_page_are_read_when_that_is_cheaper() -> None:
    """2,500 images carry the key: 3 pages; the 2 sheet images on the last page are read
    on their own after the first page (2 reads < 2 pages left)."""
    images = account(2500, lambda n: {"team": str(n)})
    found, calls = read_current(images, ids_of([0, 2400, 2499]), ["team"])
    assert found == {"img-0000": {"team": "0"}, "img-2400": {"team": "2400"},
                     "img-2499": {"team": "2499"}}  # fmt: skip
    assert (calls["tag_query"], calls["tag_read"]) == (1, 2)


def test_pages_are_followed_when_that_is_cheaper_than_reading_each() -> None:
    images = account(2500, lambda n: {"team": str(n)})
    wanted = ids_of(range(1000, 1010))  # ten images, all on the second page
    found, calls = read_current(images, wanted, ["team"])
    assert found == {image_id: {"team": str(int(image_id[4:]))} for image_id in wanted}
    assert (calls["tag_query"], calls["tag_read"]) == (2, 0)


def test_images_holding_none_of_the_keys_cost_one_query() -> None:
    images = account(12, lambda n: {"env": "dev"})
    found, calls = read_current(images, ids_of(range(12)), ["team"])
    assert found == {key: {} for key in ids_of(range(12))}
    assert (calls["tag_query"], calls["tag_read"]) == (1, 0)


def test_more_key_groups_than_images_reads_each_image() -> None:
    keys = [f"k{n:02d}" for n in range(11)]  # two groups of keys
    images = account(3, lambda n: {"k00": "a"})
    found, calls = read_current(images, ids_of([0, 1]), keys)
    assert found == {"img-0000": {"k00": "a"}, "img-0001": {"k00": "a"}}
    assert (calls["tag_read"], calls["tag_query"]) == (2, 0)


def test_no_keys_cost_nothing() -> None:
    found, calls = read_current(account(2, lambda n: {}), ids_of([0, 1]), [])
    assert found == {"img-0000": {}, "img-0001": {}}
    assert sum(calls.values()) == 0


def test_a_429_or_a_lost_answer_on_a_tag_read_is_asked_again() -> None:
    images = account(5, lambda n: {"team": "a"})
    script = {"tag_query": ["429", "reset_before"], "tag_read": ["503"]}
    found, calls = read_current(images, ids_of(range(5)), ["team"], kind_script=script)
    assert found == {key: {"team": "a"} for key in ids_of(range(5))}
    assert calls["tag_query"] == 3
    one, calls = read_current(images, ids_of([2]), ["team"], kind_script=script)
    assert (one, calls["tag_read"]) == ({"img-0002": {"team": "a"}}, 2)


def test_a_refused_read_stops_the_reading() -> None:
    images = account(2, lambda n: {})
    with pytest.raises(ReadFailed) as raised:
        read_current(images, ["img-none"], ["team"])
    assert (raised.value.status, raised.value.code) == (404, "IMG.0027")


def test_all_tags_pages_every_key_group_to_the_end() -> None:
    def tags(n: int) -> dict[str, str]:
        return {"k00": str(n)} if n < 1200 else {f"k{n % 11:02d}": "v", "extra": ""}

    images = account(1300, tags)
    with running_fake(images, FakeConfig(token=TOKEN, project_id=PROJECT)) as fake:
        found = with_client(fake, lambda client, pace: all_tags(client, pace, policy=POLICY))
        expected = {image_id: t for image_id, t in fake.store.tags.items() if t}
        calls = fake.stats.requests_by_kind
    assert found == expected
    # 1 key listing; keys "extra", "k00".."k08" (10): 2 pages; "k09", "k10": 1 page
    assert key_groups(["extra", *[f"k{n:02d}" for n in range(11)]])[1] == ["k09", "k10"]
    assert (calls["tag_list"], calls["tag_query"]) == (1, 3)


# --- the in-memory service (the seam other helpers test against) ---------------------------


def test_the_memory_service_serves_tags_through_the_same_seam() -> None:
    store = {f"m{n}": {"id": f"m{n}", "status": "active"} for n in range(4)}
    memory = MemoryService(store, tag_store={"m1": {"team": "a"}, "m3": {"env": "b"}})
    service: ImageService = memory  # it implements the whole interface

    async def run() -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
        pace = Pacer(Limits(concurrency=4, rate=1000))
        assert (await service.change_tags("m2", "create", {"team": "c"})).ok
        current = await current_tags(service, ["m0", "m1", "m2"], ["team"], pace)
        return current, await all_tags(service, pace)

    current, every = anyio.run(run)
    assert current == {"m0": {}, "m1": {"team": "a"}, "m2": {"team": "c"}}
    assert every == {"m1": {"team": "a"}, "m2": {"team": "c"}, "m3": {"env": "b"}}
    assert [call for call, _ in memory.calls] == [
        "create_tags", "find_tagged", "list_tag_keys", "find_tagged"
    ]  # fmt: skip
