"""Reading the images a sheet names, as they are now, with as few calls as the size allows.

Two ways, chosen by how many images the sheet names (see bench/plan_calls.py):

* up to ``BY_ID_LIMIT`` images: one ``GET /v2/cloudimages?id=ID`` each, concurrently
  under the run's pacer: n calls whatever the size of the account;
* more: page through ``GET /v2/cloudimages?limit=500&marker=…`` and stop as soon as every
  id has been seen: at most ⌈images in the account / 500⌉ calls.

ListImages documents ``id`` as a single exact id, so ids are never batched into one filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio

from batchpatch.client import ApiResponse, ImsClient
from batchpatch.errors import ReadFailed
from batchpatch.throttle import Pacer

BY_ID_LIMIT = 50
PAGE_SIZE = 500

Image = dict[str, Any]


async def fetch_images(client: ImsClient, ids: Sequence[str], pacer: Pacer) -> dict[str, Image]:
    """The current images among ``ids`` (absent ones are simply missing from the result).

    Raises ``ReadFailed`` when the service does not answer a read successfully: without
    the current state no plan can be trusted.
    """
    if len(ids) <= BY_ID_LIMIT:
        return await read_by_id(client, ids, pacer)
    return await read_paged(client, set(ids), pacer)


async def read_by_id(client: ImsClient, ids: Sequence[str], pacer: Pacer) -> dict[str, Image]:
    found: dict[str, Image] = {}
    failures: list[ReadFailed] = []

    async def read(image_id: str, borrower: object) -> None:
        try:
            response = await client.list_images({"id": image_id})
        finally:
            pacer.release(borrower)
        try:
            images = _images(response)
        except ReadFailed as failure:
            failures.append(failure)
            group.cancel_scope.cancel()
            return
        found.update((image_id, image) for image in images if image.get("id") == image_id)

    async with anyio.create_task_group() as group:
        for position, image_id in enumerate(ids):
            if position == 0:  # alone: bad credentials show on one request, not on many
                await read(image_id, await pacer.acquire())
                if failures:
                    break
            else:
                group.start_soon(read, image_id, await pacer.acquire())
    if failures:
        raise failures[0]
    return found


async def read_paged(client: ImsClient, wanted: set[str], pacer: Pacer) -> dict[str, Image]:
    found: dict[str, Image] = {}
    marker = ""
    while wanted - found.keys():
        query = {"limit": str(PAGE_SIZE)} | ({"marker": marker} if marker else {})
        borrower = await pacer.acquire()
        try:
            response = await client.list_images(query)
        finally:
            pacer.release(borrower)
        page = _images(response)
        found.update((image["id"], image) for image in page if image.get("id") in wanted)
        if len(page) < PAGE_SIZE:
            break
        marker = str(page[-1].get("id", ""))
    return found


def _images(response: ApiResponse) -> list[Image]:
    if not response.ok:
        raise ReadFailed(response.status, response.error_code, response.error_message,
                         response.request_id)
    images = response.body.get("images") if isinstance(response.body, dict) else None
    if not isinstance(images, list):
        raise ReadFailed(response.status, "", "ListImages answered without an images list",
                         response.request_id)
    return [image for image in images if isinstance(image, dict)]


async def read_image(client: ImsClient, image_id: str) -> Image | None:
    """One image as it is now, or None when it does not exist; ``ReadFailed`` otherwise."""
    for image in _images(await client.list_images({"id": image_id})):
        if image.get("id") == image_id:
            return image
    return None
