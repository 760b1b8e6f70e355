"""The fan-out: one producer starts one request per image under the limits; each worker
turns its answer into an ``Outcome``.  A failed image is data, never an exception.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import anyio
from anyio.abc import TaskGroup

from batchpatch.client import ApiResponse, ImsClient
from batchpatch.models import ImagePatch, Operation, Outcome, Status
from batchpatch.throttle import Pacer

#: IMS answers 400 IMG.0046 when the image is not ``active``: the row is skipped, not failed.
NOT_ACTIVE = "IMG.0046"
#: ``replace`` of an attribute the image does not have.
ATTRIBUTE_CONFLICT = "IMG.0035"

OutcomeCallback = Callable[[Outcome], None]


def outcome_of(patch: ImagePatch, response: ApiResponse, attempts: int,
               elapsed_ms: int) -> Outcome:
    """What ``response`` means for the rows of ``patch``."""
    if response.ok:
        status = Status.SUCCEEDED
    elif response.status == 400 and response.error_code == NOT_ACTIVE:
        status = Status.SKIPPED
    else:
        status = Status.FAILED
    return Outcome(
        image_id=patch.image_id,
        status=status,
        http_status=response.status,
        error_code=response.error_code,
        error_message=response.error_message,
        request_id=response.request_id,
        attempts=attempts,
        elapsed_ms=elapsed_ms,
    )


async def run_patches(
    patches: Sequence[ImagePatch],
    client: ImsClient,
    pacer: Pacer,
    *,
    on_outcome: OutcomeCallback | None = None,
    stop: anyio.Event | None = None,
    abort: anyio.Event | None = None,
    add_on_conflict: bool = False,
) -> dict[str, Outcome]:
    """Send every patch once; return the outcome of each image that was attempted.

    Starts are paced by one producer loop, so the queue stays in sheet order; each image
    is in exactly one patch, so no image is ever patched by two requests at once.  When
    ``stop`` is set no new request starts and those in flight finish; when ``abort`` is
    set those in flight are cancelled too and recorded as interrupted.

    ``add_on_conflict`` (for runs without a plan): a patch answered with ``IMG.0035`` is
    sent once more with every ``replace`` turned into ``add``, which sets an attribute
    whether or not the image has it.
    """
    outcomes: dict[str, Outcome] = {}
    stop = stop or anyio.Event()

    def record(outcome: Outcome) -> None:
        outcomes[outcome.image_id] = outcome
        if on_outcome is not None:
            on_outcome(outcome)

    async def send(patch: ImagePatch, borrower: object) -> None:
        started = time.perf_counter()
        attempts = 1
        try:
            response = await client.update_image(patch.image_id, patch.body())
            if add_on_conflict and _conflict(patch, response):
                await pacer.rate.wait()
                attempts = 2
                response = await client.update_image(patch.image_id, as_adds(patch).body())
        except anyio.get_cancelled_exc_class():
            record(interrupted(patch, started, attempts))
            raise
        finally:
            pacer.release(borrower)
        record(outcome_of(patch, response, attempts=attempts, elapsed_ms=_since(started)))

    async def produce(requests: TaskGroup) -> None:
        for patch in patches:
            borrower = await pacer.acquire()
            if stop.is_set():
                pacer.release(borrower)
                return
            requests.start_soon(send, patch, borrower)

    in_flight = anyio.CancelScope()

    async def cancel_on_abort() -> None:
        if abort is not None:
            await abort.wait()
            in_flight.cancel()

    async with anyio.create_task_group() as watcher:
        watcher.start_soon(cancel_on_abort)
        with in_flight:
            async with anyio.create_task_group() as requests:
                await produce(requests)
        watcher.cancel_scope.cancel()
    return outcomes


def as_adds(patch: ImagePatch) -> ImagePatch:
    """``patch`` with every ``replace`` turned into ``add`` (RFC 6902: add sets or replaces)."""
    return ImagePatch(
        patch.image_id,
        tuple(Operation("add", o.path, o.value) if o.op == "replace" else o
              for o in patch.operations),
        patch.sources,
    )


def _conflict(patch: ImagePatch, response: ApiResponse) -> bool:
    return (response.status == 400 and response.error_code == ATTRIBUTE_CONFLICT
            and any(operation.op == "replace" for operation in patch.operations))


def interrupted(patch: ImagePatch, started: float, attempts: int) -> Outcome:
    """The outcome of a request cut off mid-flight: nobody knows whether it was applied."""
    return Outcome(
        image_id=patch.image_id,
        status=Status.FAILED,
        error_code="interrupted",
        error_message="stopped while the request was in flight; "
        "the change may or may not have been applied",
        attempts=attempts,
        elapsed_ms=_since(started),
    )


def _since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
