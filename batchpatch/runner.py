"""The fan-out: one producer starts one request per image under the pacer; each worker
retries its image until it has a true outcome.  A failed image is data, never an exception.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import anyio
from anyio.abc import TaskGroup

from batchpatch.client import LOGIN_FAILED, TLS_FAILED, ApiResponse, ImsClient
from batchpatch.errors import ReadFailed
from batchpatch.inventory import Reader, read_image
from batchpatch.models import INTERRUPTED, ImagePatch, Operation, Outcome, Status
from batchpatch.plan import ImagePlan, plan_image
from batchpatch.retry import RetryPolicy, Verdict, is_throttled, tell_pacer
from batchpatch.throttle import Pacer, sleep_unless_stopped

log = logging.getLogger("batchpatch.runner")

#: IMS answers 400 IMG.0046 when the image is not ``active``: the row is skipped, not failed.
NOT_ACTIVE = "IMG.0046"
#: ``replace`` of an attribute the image does not have.
ATTRIBUTE_CONFLICT = "IMG.0035"

OutcomeCallback = Callable[[Outcome], None]
SendingCallback = Callable[[str], None]


@dataclass(frozen=True)
class Safeguards:
    """When to stop a run early.

    ``max_failures``: stop once this many images failed.  ``max_failure_rate``: stop once
    more than this share of at least ``min_sample`` finished images failed (the S3 Batch
    Operations rule, with a smaller default sample).  Authentication failures always stop.
    """

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    max_failures: int | None = None
    max_failure_rate: float | None = None
    min_sample: int = 100


def outcome_of(patch: ImagePatch, response: ApiResponse, attempts: int,
               elapsed_ms: int) -> Outcome:
    """What ``response`` means for the rows of ``patch``."""
    if response.ok:
        status = Status.SUCCEEDED
    elif response.status == 400 and response.error_code == NOT_ACTIVE:
        status = Status.SKIPPED
    else:
        status = Status.FAILED
    message = response.error_message
    if status == Status.FAILED and attempts > 1:
        message = f"{message} (gave up after {attempts} attempts)".strip()
    return Outcome(
        image_id=patch.image_id,
        status=status,
        http_status=response.status,
        error_code=response.error_code,
        error_message=message,
        request_id=response.request_id,
        attempts=attempts,
        elapsed_ms=elapsed_ms,
    )


class Runner:
    """Sends the plans' patches; collects one outcome per image; knows why it stopped."""

    def __init__(
        self,
        client: ImsClient,
        pacer: Pacer,
        safeguards: Safeguards | None = None,
        *,
        on_outcome: OutcomeCallback | None = None,
        on_sending: SendingCallback | None = None,
        stop: anyio.Event | None = None,
        abort: anyio.Event | None = None,
        add_on_conflict: bool = False,
    ) -> None:
        self.client, self.pacer = client, pacer
        self.safeguards = safeguards or Safeguards()
        self.outcomes: dict[str, Outcome] = {}
        self.stop_reason = ""
        self._on_outcome, self._on_sending = on_outcome, on_sending
        self._stop, self._abort = stop or anyio.Event(), abort
        self._add_on_conflict = add_on_conflict
        self._failed = self._succeeded = 0
        self._reader = Reader(client, pacer, self.safeguards.policy)

    async def run(self, plans: Sequence[ImagePlan]) -> dict[str, Outcome]:
        """Send every plan's patch; return the outcome of each image that was attempted.

        Starts are paced by one producer loop, so the queue stays in sheet order; each
        image is in exactly one plan, so no image is ever patched by two requests at once.
        The first request goes alone: bad credentials show on one request, not on many.
        When ``stop`` is set no new request starts and those in flight finish; when
        ``abort`` is set those in flight are cancelled too and recorded as interrupted.
        """
        in_flight = anyio.CancelScope()

        async def cancel_on_abort() -> None:
            if self._abort is not None:
                await self._abort.wait()
                in_flight.cancel()

        async with anyio.create_task_group() as watcher:
            watcher.start_soon(cancel_on_abort)
            with in_flight:
                async with anyio.create_task_group() as requests:
                    await self._produce(plans, requests)
            watcher.cancel_scope.cancel()
        if not self.stop_reason and self._abort is not None and self._abort.is_set():
            self.stop_reason = "stopped at once; requests in flight were cut off"
        elif not self.stop_reason and self._stop.is_set():
            self.stop_reason = "stopped by a signal; requests in flight were finished"
        return self.outcomes

    async def _produce(self, plans: Sequence[ImagePlan], requests: TaskGroup) -> None:
        for position, plan in enumerate(plans):
            borrower = await self.pacer.acquire(self._stop)
            if self._stop.is_set():
                self.pacer.release(borrower)
                return
            if position == 0:
                await self._image(plan, borrower)
            else:
                requests.start_soon(self._image, plan, borrower)

    async def _image(self, plan: ImagePlan, borrower: object) -> None:
        started = time.perf_counter()
        sent = [0]  # PATCHes sent so far, still readable when the attempt is cut off
        try:
            outcome = await self._attempt(plan, started, sent)
        except anyio.get_cancelled_exc_class():
            self._record(interrupted(plan.image_id, started, sent[0]))
            raise
        finally:
            self.pacer.release(borrower)
        self._record(outcome)

    async def _attempt(self, plan: ImagePlan, started: float, counter: list[int]) -> Outcome:
        """Try one image until it has a true outcome.  ``counter[0]`` counts the PATCHes."""
        policy = self.safeguards.policy
        requested = plan.patch_requested
        patch, converted = plan.patch, False
        while True:
            counter[0] += 1
            attempts = counter[0]
            sent_at = self.pacer.now()
            if self._on_sending is not None:
                self._on_sending(plan.image_id)
            response = await self.client.update_image(patch.image_id, patch.body())
            verdict = policy.verdict(response)
            tell_pacer(self.pacer, response, verdict, sent_at)
            if verdict == Verdict.OK:
                return outcome_of(patch, response, attempts, _since(started))
            if verdict == Verdict.PERMANENT:
                if self._add_on_conflict and not converted and _conflict(patch, response):
                    patch, converted = as_adds(patch), True
                    await self.pacer.rate.wait()
                    continue
                return outcome_of(patch, response, attempts, _since(started))
            last = attempts >= policy.max_attempts
            if last and verdict != Verdict.AMBIGUOUS:
                return outcome_of(patch, response, attempts, _since(started))
            log.info("%s after attempt %d: %s %s", "checking" if last else "retrying",
                     plan.image_id, attempts, response.status or "", response.error_code)
            stop = self._stop if verdict == Verdict.RETRY else None  # nothing in doubt
            if not await sleep_unless_stopped(policy.sleep, policy.wait(attempts, response), stop):
                return not_retried(patch, response, attempts, _since(started))
            if verdict == Verdict.AMBIGUOUS:  # even after the last attempt: tell the truth
                settled = await self._read_back(requested, response, attempts, started)
                if isinstance(settled, Outcome):
                    return settled
                if last:
                    return outcome_of(patch, response, attempts, _since(started))
                patch = settled
            if not await self.pacer.rate.wait(stop):
                return not_retried(patch, response, attempts, _since(started))

    async def _read_back(self, requested: ImagePatch, response: ApiResponse, attempts: int,
                         started: float) -> Outcome | ImagePatch:
        """After a write with no answer: the outcome if the image settles it, else what to send.

        The image is read until a read succeeds (within the attempt budget), so a write is
        never repeated blind.
        """
        policy = self.safeguards.policy
        for reads in range(1, policy.max_attempts + 1):
            try:
                image = await read_image(self._reader, requested.image_id)
            except ReadFailed as failure:
                log.info("reading %s back failed: %s", requested.image_id, failure.message)
                await policy.sleep(policy.wait(reads, response))
                continue
            replanned = plan_image(requested, image)
            if replanned.status == Status.UNCHANGED:
                return Outcome(requested.image_id, Status.SUCCEEDED, error_code="",
                               error_message="the answer was lost, but reading the image "
                               "back shows the change in place", attempts=attempts,
                               elapsed_ms=_since(started))
            if replanned.status is not None:
                return Outcome(requested.image_id, replanned.status,
                               error_message=replanned.reason, attempts=attempts,
                               elapsed_ms=_since(started))
            return replanned.patch
        return outcome_of(requested, response, attempts, _since(started))

    def _record(self, outcome: Outcome) -> None:
        self.outcomes[outcome.image_id] = outcome
        if self._on_outcome is not None:
            self._on_outcome(outcome)
        if outcome.status == Status.SUCCEEDED:
            self._succeeded += 1
        elif outcome.status == Status.FAILED:
            self._failed += 1
            self._check_thresholds(outcome)

    def _check_thresholds(self, outcome: Outcome) -> None:
        guards, reason = self.safeguards, ""
        finished = len(self.outcomes)
        if (outcome.http_status == 401 or outcome.error_code == LOGIN_FAILED
                or (outcome.http_status == 403 and not self._succeeded)):
            auth = self.client.auth
            reason = (f"authentication failed using {auth.kind} from {auth.source} "
                      f"({outcome.http_status or ''} {outcome.error_code}: "
                      f"{outcome.error_message})")
        elif outcome.error_code == TLS_FAILED:
            reason = outcome.error_message
        elif guards.max_failures is not None and self._failed >= guards.max_failures:
            reason = f"{self._failed} images failed (--max-failures {guards.max_failures})"
        elif (guards.max_failure_rate is not None and finished >= guards.min_sample
              and self._failed / finished > guards.max_failure_rate):
            reason = (f"{self._failed} of {finished} images failed, more than "
                      f"{guards.max_failure_rate:.0%} (--max-failure-rate)")
        if reason and not self.stop_reason:
            self.stop_reason = reason
            log.warning("stopping: %s", reason)
            self._stop.set()


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


def not_retried(patch: ImagePatch, response: ApiResponse, attempts: int,
                elapsed_ms: int) -> Outcome:
    """A retry the run stopped before sending: the last answer stands (a 429 applied
    nothing, so the message says so)."""
    outcome = outcome_of(patch, response, attempts, elapsed_ms)
    note = "not applied; " if is_throttled(response) else ""
    return replace(outcome, error_message=f"{outcome.error_message} ({note}the run stopped "
                   "before retrying)".strip())


def interrupted(image_id: str, started: float, attempts: int) -> Outcome:
    """The outcome of a request cut off mid-flight: nobody knows whether it was applied."""
    return Outcome(
        image_id=image_id,
        status=Status.FAILED,
        error_code=INTERRUPTED,
        error_message="stopped while the request was in flight; "
        "the change may or may not have been applied",
        attempts=attempts,
        elapsed_ms=_since(started),
    )


def _since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
