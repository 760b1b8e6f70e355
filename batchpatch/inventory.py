"""Reading the images a sheet names, as they are now, with as few calls as the size allows.

Two ways, chosen by how many images the sheet names (see bench/plan_calls.py), both in
``ImageService.list_images``'s neutral queries:

* up to ``BY_ID_LIMIT`` images: one ``{"id": ID}`` query each (IMS: ``GET
  /v2/cloudimages?id=ID``), concurrently under the run's pacer: n calls whatever the size
  of the account;
* more: page through ``{"limit": 500, "marker": …}`` and stop as soon as every id has been
  seen: at most ⌈images in the account / 500⌉ calls.  A service that ignores ``marker``
  would page forever: a page that brings no new id, or a marker seen before, stops the read
  with ``ReadFailed`` naming the service's listing (``ImageService.listing``).

An ``id`` query names a single exact id (as IMS's ListImages documents it), so ids are
never batched into one filter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import anyio

from batchpatch.errors import ReadFailed, ReadStopped
from batchpatch.retry import Attempt, RetryPolicy, attempt
from batchpatch.service import ApiResponse, Image, ImageService
from batchpatch.throttle import Pacer

BY_ID_LIMIT = 50
PAGE_SIZE = 500

__all__ = ["Image", "Reader", "fetch_images", "read_image"]


@dataclass
class Reader:
    """Image reads under the run's pacer, through the one retry loop (a read is always
    safe to repeat, so a lost answer is simply asked again)."""

    client: ImageService
    pacer: Pacer
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    stop: anyio.Event | None = None

    async def images(self, query: dict[str, str]) -> list[Image]:
        """One page of images; the caller has already waited for its turn to start."""
        return _images(self.client, await self.page(query))

    async def page(self, query: Mapping[str, str]) -> ApiResponse:
        """One page's whole answer (a ``next`` link too), read through the one retry loop;
        the caller has already waited for its turn to start."""
        tried: Attempt[None] = await attempt(
            lambda: self.client.list_images(query),
            self.client,
            self.policy,
            self.pacer,
            what="a read",
        )
        return tried.answer

    async def paced(self, query: dict[str, str]) -> list[Image]:
        """``images`` after waiting for a free slot and a turn in the rate."""
        borrower = await self.pacer.acquire()
        if self.stop is not None and self.stop.is_set():
            self.pacer.release(borrower)
            raise ReadStopped("stopped by a signal while the current images were being read")
        try:
            return await self.images(query)
        finally:
            self.pacer.release(borrower)


async def fetch_images(reader: Reader, ids: Sequence[str]) -> dict[str, Image]:
    """The current images among ``ids`` (absent ones are simply missing from the result).

    Raises ``ReadFailed`` when the service does not answer a read successfully: without
    the current state no plan can be trusted.
    """
    if len(ids) <= BY_ID_LIMIT:
        return await read_by_id(reader, ids)
    return await read_paged(reader, set(ids))


async def read_by_id(reader: Reader, ids: Sequence[str]) -> dict[str, Image]:
    found: dict[str, Image] = {}

    async def read(image_id: str) -> None:
        images = await reader.paced({"id": image_id})
        found.update((image_id, image) for image in images if image.get("id") == image_id)

    await read_each(ids, read)
    return found


async def read_each(ids: Sequence[str], read: Callable[[str], Awaitable[None]]) -> None:
    """``read`` every id: the first alone (bad credentials show on one request, not on
    many), the rest concurrently; the first ``ReadFailed``/``ReadStopped`` cancels the
    others and is raised."""
    failures: list[ReadFailed | ReadStopped] = []

    async def guarded(image_id: str) -> None:
        try:
            await read(image_id)
        except (ReadFailed, ReadStopped) as failure:
            failures.append(failure)
            group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for position, image_id in enumerate(ids):
            if position == 0:
                await guarded(image_id)
                if failures:
                    break
            else:
                group.start_soon(guarded, image_id)
    if failures:
        raise failures[0]


async def read_paged(reader: Reader, wanted: set[str]) -> dict[str, Image]:
    found: dict[str, Image] = {}
    seen: set[str] = set()
    markers: set[str] = set()
    marker = ""
    while wanted - found.keys():
        query = {"limit": str(PAGE_SIZE)} | ({"marker": marker} if marker else {})
        page = await reader.paced(query)
        found.update((image["id"], image) for image in page if image.get("id") in wanted)
        if not page:  # not a short page: a service may cap ``limit`` below ours (Glance)
            break
        ids = {str(image.get("id", "")) for image in page}
        marker = str(page[-1].get("id", ""))
        if not ids - seen or marker in markers:
            raise endless_paging(reader.client.listing, marker)
        seen |= ids
        markers.add(marker)
    return found


def endless_paging(listing: str, marker: str) -> ReadFailed:
    """The service answered a page it had answered before: it does not honour ``marker``."""
    return ReadFailed(
        200,
        "",
        f"the image listing at {listing} answered the same "
        f"page again (marker {marker[:64]!r}): it does not page with marker, "
        "so the images cannot all be read",
        "",
    )


async def read_image(reader: Reader, image_id: str) -> Image | None:
    """One image as it is now, or None when it does not exist; ``ReadFailed`` otherwise.

    The caller holds a slot already (a write's read-back), so only the rate is waited for.
    """
    await reader.pacer.rate.wait()
    for image in await reader.images({"id": image_id}):
        if image.get("id") == image_id:
            return image
    return None


def _images(service: ImageService, response: ApiResponse) -> list[Image]:
    if not response.ok:
        raise ReadFailed(
            response.status,
            response.error_code,
            response.message,
            response.request_id,
            kind=service.classify(response),
        )
    images = service.images(response)
    if images is None:
        raise ReadFailed(
            response.status,
            "",
            f"the image listing at {service.listing} answered without an images list",
            response.request_id,
        )
    return images
