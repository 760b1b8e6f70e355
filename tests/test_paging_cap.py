"""A service that caps a page below the size asked (Glance's ``api_limit_max``): the read
pass pages on until an empty page, so no image is taken for missing."""

from __future__ import annotations

import uuid

import anyio

from batchpatch.inventory import Reader, fetch_images
from batchpatch.models import Limits
from batchpatch.throttle import Pacer
from tests.memory_service import MemoryService


def test_a_page_capped_below_the_limit_asked_is_not_the_last() -> None:
    ids = [str(uuid.UUID(int=n + 1, version=4)) for n in range(120)]
    service = MemoryService({i: {"id": i, "status": "active"} for i in ids}, page_cap=25)

    async def read() -> dict[str, object]:
        reader = Reader(service, Pacer(Limits(rate=10_000, concurrency=8)))
        return dict(await fetch_images(reader, ids))

    found = anyio.run(read)
    assert set(found) == set(ids)
    assert service.requests == 5  # 120 images, 25 a page
