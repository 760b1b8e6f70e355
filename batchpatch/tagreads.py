"""Reading images' current tags with as few calls as the sheet allows, and all of them for
an export.

Two ways to read tags, in ``ImageService``'s terms (IMS: ListImageTags per image, and
ListImageByTags ``resource_instances/action``, 1,000 images a page, each with all its tags):

* ``read_tags`` per image: one call each, concurrently under the run's pacer;
* ``find_tagged`` over the sheet's tag keys, in groups of at most 10 keys (the API's limit):
  pages of 1,000 images holding any key of the group.

The cost rule of ``current_tags``, for n images whose rows change tags and k distinct keys
(G = ⌈k / 10⌉ key groups):

* n <= G: n per-image reads;
* otherwise the first page of each group (G calls).  Each page tells how many pages are
  left; while some are, whichever is fewer is done: the pages left, or one read per image
  not yet seen in any answer.  An image seen in any answer is known completely (the
  answers carry all its tags); one seen in none, once every group is paged through, holds
  none of the keys.

An image that may gain a tag (``whole``) and was seen in no answer is then read on its own,
since the 10-tag limit needs all its tags.  So the cost is n reads at most plus G (only when
n > G), and for a sheet whose images already carry one of its keys, G calls per 1,000 images
(measured in tests/test_tag_reads.py and bench/tag_calls.py).

Reads are safe to repeat: each goes through the one retry loop (``retry.attempt``) and the
run's pacer, like the read pass in ``batchpatch.inventory``; an answer that is not a
success after the retries raises ``ReadFailed``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence

import anyio

from batchpatch.errors import ReadFailed, ReadStopped
from batchpatch.inventory import read_each
from batchpatch.retry import Attempt, RetryPolicy, attempt
from batchpatch.service import ApiResponse, ImageService
from batchpatch.throttle import Pacer

#: ``find_tagged``'s limits (IMS ListImageByTags): keys per query, images per page.
KEYS_PER_QUERY = 10
PAGE_SIZE = 1000

Tags = dict[str, str]

__all__ = ["KEYS_PER_QUERY", "PAGE_SIZE", "TagReader", "all_tags", "current_tags", "key_groups"]


def key_groups(keys: Iterable[str]) -> list[list[str]]:
    """The distinct keys, sorted, in groups of at most ``KEYS_PER_QUERY``."""
    ordered = sorted(set(keys))
    return [ordered[n : n + KEYS_PER_QUERY] for n in range(0, len(ordered), KEYS_PER_QUERY)]


class TagReader:
    """Tag reads under a run's pacer, through the one retry loop."""

    def __init__(
        self,
        service: ImageService,
        pace: Pacer,
        policy: RetryPolicy | None = None,
        stop: anyio.Event | None = None,
    ) -> None:
        self.service = service
        self.pace = pace
        self.policy = policy or RetryPolicy()
        self.stop = stop

    async def _read(self, send: Callable[[], Awaitable[ApiResponse]], what: str) -> ApiResponse:
        """One read, after a free slot and a turn in the rate; retried; ``ReadFailed``
        unless it ends in a success."""
        borrower = await self.pace.acquire()
        try:
            if self.stop is not None and self.stop.is_set():
                raise ReadStopped("stopped by a signal while the current tags were being read")
            tried: Attempt[None] = await attempt(
                send, self.service, self.policy, self.pace, what=what
            )
        finally:
            self.pace.release(borrower)
        answer = tried.answer
        if not answer.ok:
            kind = self.service.classify(answer)
            raise ReadFailed(
                answer.status, answer.error_code, answer.message, answer.request_id, kind=kind
            )
        return answer

    async def image(self, image_id: str) -> Tags:
        """One image's tags."""
        answer = await self._read(lambda: self.service.read_tags(image_id), "a tag read")
        tags = self.service.tags(answer)
        if tags is None:
            raise _no_list(answer, f"the tags of image {image_id}")
        return tags

    async def images(self, image_ids: Sequence[str]) -> dict[str, Tags]:
        """Each image's tags; the first read alone (bad credentials show on one request)."""
        found: dict[str, Tags] = {}

        async def read(image_id: str) -> None:
            found[image_id] = await self.image(image_id)

        await read_each(image_ids, read)
        return found

    async def page(self, keys: Sequence[str], offset: int) -> tuple[dict[str, Tags], int]:
        """One page of the images holding any of ``keys``, and how many there are in all."""
        answer = await self._read(
            lambda: self.service.find_tagged(keys, offset, PAGE_SIZE), "a tag query"
        )
        page = self.service.tagged(answer)
        if page is None:
            raise _no_list(answer, "the images by tag")
        return page

    async def keys(self) -> dict[str, list[str]]:
        """Every tag key of the account with its values."""
        answer = await self._read(self.service.list_tag_keys, "a tag key listing")
        keys = self.service.tag_keys(answer)
        if keys is None:
            raise _no_list(answer, "the tag keys")
        return keys


class _Paging:
    """The key groups of a tag query and the offset each has reached."""

    def __init__(self, groups: list[list[str]]) -> None:
        self.groups = groups
        self.offsets = [0] * len(groups)
        self.totals = [0] * len(groups)

    def record(self, group: int, found: int, total: int) -> None:
        self.offsets[group] += PAGE_SIZE if found else 0
        self.totals[group] = total if found else self.offsets[group]

    @property
    def pages_left(self) -> int:
        return sum(
            max(0, math.ceil((total - offset) / PAGE_SIZE))
            for offset, total in zip(self.offsets, self.totals, strict=True)
        )

    def next_group(self) -> int:
        """A group with a page left (the caller checked there is one)."""
        return next(
            n for n, (o, t) in enumerate(zip(self.offsets, self.totals, strict=True)) if o < t
        )


async def current_tags(
    service: ImageService,
    image_ids: Sequence[str],
    keys: Iterable[str],
    pace: Pacer,
    *,
    policy: RetryPolicy | None = None,
    stop: anyio.Event | None = None,
    whole: Collection[str] = (),
) -> dict[str, Tags]:
    """Every listed image's current tags, by the cost rule in this module's docstring; an
    image found in no answer holds none of ``keys`` — and those in ``whole`` (images whose
    every tag is needed: they may gain one, and IMS allows 10) are then read on their own.
    Raises ``ReadFailed``."""
    reader = TagReader(service, pace, policy, stop)
    ids = list(dict.fromkeys(image_ids))
    groups = key_groups(keys)
    if not ids or not groups:
        return {image_id: {} for image_id in ids}
    if len(ids) <= len(groups):
        return await reader.images(ids)
    wanted = set(ids)
    found: dict[str, Tags] = {}
    paging = _Paging(groups)
    for group, group_keys in enumerate(groups):
        page, total = await reader.page(group_keys, 0)
        paging.record(group, len(page), total)
        found.update((i, tags) for i, tags in page.items() if i in wanted)
    while paging.pages_left:
        unseen = [i for i in ids if i not in found]
        if len(unseen) <= paging.pages_left:
            found.update(await reader.images(unseen))
            break
        group = paging.next_group()
        page, total = await reader.page(groups[group], paging.offsets[group])
        paging.record(group, len(page), total)
        found.update((i, tags) for i, tags in page.items() if i in wanted)
    found.update(await reader.images([i for i in ids if i not in found and i in whole]))
    return {i: found.get(i, {}) for i in ids}


async def all_tags(
    service: ImageService,
    pace: Pacer,
    *,
    policy: RetryPolicy | None = None,
    stop: anyio.Event | None = None,
) -> dict[str, Tags]:
    """Every tagged image of the account with all its tags, for an export: the tag keys
    (one call), then ``find_tagged`` over them in groups of 10, paged to the end:
    1 + Σ ⌈images holding a key of the group / 1000⌉ calls."""
    reader = TagReader(service, pace, policy, stop)
    found: dict[str, Tags] = {}
    for group in key_groups(await reader.keys()):
        paging = _Paging([group])
        page, total = await reader.page(group, 0)
        paging.record(0, len(page), total)
        found.update(page)
        while paging.pages_left:
            page, total = await reader.page(group, paging.offsets[0])
            paging.record(0, len(page), total)
            found.update(page)
    return found


def _no_list(answer: ApiResponse, what: str) -> ReadFailed:
    return ReadFailed(answer.status, "", f"the service answered without {what}", answer.request_id)
