"""Nothing IMS-specific outside the adapter: the inventory names the service's own listing,
the runner composes its notes from the answer's structure (never from the adapter's
wording), and ``make_plan`` plans through any ``ImageService`` — shown with the in-memory
double, which is not IMS."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import anyio
import pytest

from batchpatch.auth import TokenAuth
from batchpatch.errors import ReadFailed
from batchpatch.inventory import BY_ID_LIMIT, PAGE_SIZE, Reader, fetch_images
from batchpatch.job import SavedPlan, apply_sheet, make_plan
from batchpatch.models import ImagePatch, Limits, Status
from batchpatch.planfile import load_plan
from batchpatch.runner import NOT_APPLIED, outcome_of
from batchpatch.service import ApiResponse
from batchpatch.sheet import read_sheet
from batchpatch.throttle import Pacer
from tests.memory_service import MemoryService
from tests.sheets import write_sheet

LIMITS = Limits(concurrency=2, rate=10_000)
IMS_WORDS = ("ListImages", "/v2/cloudimages", "IMG.", "APIGW")


def _store(count: int) -> dict[str, dict[str, str]]:
    ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(count)]
    return {image_id: {"id": image_id, "status": "active", "name": "old"} for image_id in ids}


class IgnoresMarker(MemoryService):
    """Answers the first page whatever the marker: paging would never end."""

    async def list_images(self, query: Mapping[str, str]) -> ApiResponse:
        return await super().list_images({k: v for k, v in query.items() if k != "marker"})


class NoList(MemoryService):
    """Answers a listing with a body that holds no list of images."""

    async def list_images(self, query: Mapping[str, str]) -> ApiResponse:
        self.requests += 1
        return ApiResponse(200, {"nothing": "here"})


def _read(service: MemoryService, ids: list[str]) -> ReadFailed:
    async def read() -> None:
        await fetch_images(Reader(service, Pacer(LIMITS)), ids)

    with pytest.raises(ReadFailed) as caught:
        anyio.run(read)
    return caught.value


def test_endless_paging_names_the_services_own_listing() -> None:
    store = _store(PAGE_SIZE + 1)
    service = IgnoresMarker(store)
    failure = _read(service, sorted(store)[-(BY_ID_LIMIT + 1) :])
    text = str(failure)
    assert f"the image listing at {service.listing} answered the same page again" in text
    assert "does not page with marker" in text
    assert not [word for word in IMS_WORDS if word in text]
    assert service.requests == 2  # the second identical page stops the read


def test_an_answer_without_a_list_names_the_services_own_listing() -> None:
    service = NoList(_store(1))
    text = str(_read(service, list(service.store)))
    assert f"the image listing at {service.listing} answered without an images list" in text
    assert not [word for word in IMS_WORDS if word in text]


PATCH = ImagePatch("img-1", (), ())


def test_an_answer_of_unknown_effect_says_so_until_a_read_back_knows() -> None:
    lost = ApiResponse(None, error_code="lost", error_message="gone", effect_unknown=True)
    assert lost.message == "gone (the change may or may not have been applied)"
    assert outcome_of(PATCH, lost, 1, 0).error_message == lost.message
    assert outcome_of(PATCH, lost, 1, 0, note=NOT_APPLIED).error_message == (
        "gone; reading the image back shows it was not applied"
    )


def test_the_runner_does_not_parse_the_adapters_wording() -> None:
    """An adapter's bare message that happens to use the same words is kept as it is:
    only ``effect_unknown`` decides what the note replaces."""
    own = "refused (the change may or may not have been applied)"
    answer = ApiResponse(409, error_code="x", error_message=own)
    assert answer.message == own
    assert outcome_of(PATCH, answer, 1, 0, note=NOT_APPLIED).error_message == own + NOT_APPLIED


def test_make_plan_reads_and_plans_through_the_memory_service(tmp_path: Path) -> None:
    store = _store(3)
    ids = sorted(store)
    store[ids[2]]["status"] = "frozen"
    service = MemoryService(store)
    sheet_path = write_sheet(
        tmp_path / "s.csv", ["image_id", "name"], [[ids[0], "new"], [ids[1], "old"], [ids[2], "x"]]
    )
    out = tmp_path / "plan.json"

    async def plan() -> list[object]:
        return list(
            await make_plan(
                sheet_path,
                endpoint="memory://images",
                auth=TokenAuth("unused"),
                limits=LIMITS,
                out=out,
                service=service,
            )
        )

    plans = anyio.run(plan)
    assert [call[0] for call in service.calls] == ["list"] * 3  # reads only, no write
    assert json.loads(out.read_text(encoding="utf-8"))["endpoint"] == "memory://images"
    sheet = read_sheet(sheet_path)
    saved = load_plan(out, sheet, "memory://images")
    assert [p.image_id for p in saved] == [getattr(p, "image_id", "") for p in plans]
    by_id = {p.image_id: p for p in saved}
    assert [op.op for op in by_id[ids[0]].patch.operations] == ["replace"]
    assert by_id[ids[1]].status == Status.UNCHANGED  # already as asked: nothing to send

    async def send() -> None:
        await apply_sheet(
            sheet,
            endpoint="memory://images",
            auth=TokenAuth("unused"),
            limits=LIMITS,
            plan=SavedPlan(saved),
            service=service,
        )

    anyio.run(send)
    assert service.store[ids[0]]["name"] == "new"
    assert service.applied == {ids[0]: 1}  # the saved plan sent only what changes something
