"""The fan-out: one producer starts one request per image under the pacer; each worker
retries its image until it has a true outcome.  A failed image is data, never an exception.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import anyio
from anyio.abc import TaskGroup

from batchpatch.client import LOGIN_FAILED, TLS_FAILED, ApiResponse, ImsClient
from batchpatch.errors import ReadFailed
from batchpatch.inventory import Image, Reader, read_image
from batchpatch.models import INTERRUPTED, ImagePatch, Outcome, Status
from batchpatch.plan import ImagePlan, settle
from batchpatch.retry import RetryPolicy, Verdict, is_throttled, tell_pacer
from batchpatch.throttle import Pacer, sleep_unless_stopped

log = logging.getLogger("batchpatch.runner")

#: IMS answers 400 IMG.0046 when the image is not ``active``: the row is skipped, not failed.
NOT_ACTIVE = "IMG.0046"
#: ``replace`` of an attribute the image does not have.
ATTRIBUTE_CONFLICT = "IMG.0035"

#: Added to the message of a write read back as not applied, after its last attempt.
NOT_APPLIED = "; reading the image back shows it was not applied"
#: What an answer says when it cannot know: dropped once a read-back knows.
_UNSURE = re.compile(r"\s*\(?the change may or may not have been applied\)?")

OutcomeCallback = Callable[[Outcome], None]
#: Told before each PATCH, with the plan whose changes it carries.
SendingCallback = Callable[[ImagePlan], None]


@dataclass
class _Work:
    """One image's attempt as it goes: its plan (what is still to send), the PATCHes sent,
    and whether its last write may have been applied without anyone knowing yet."""

    plan: ImagePlan
    sent: int = 0
    converted: bool = False
    in_doubt: bool = False


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
               elapsed_ms: int, *, note: str = "") -> Outcome:
    """What ``response`` means for the rows of ``patch``; ``note`` adds what a read-back
    found (and then replaces the answer's own "may or may not have been applied")."""
    if response.ok:
        status = Status.SUCCEEDED
    elif response.status == 400 and response.error_code == NOT_ACTIVE:
        status = Status.SKIPPED
    else:
        status = Status.FAILED
    message = response.error_message
    if note:
        message = _UNSURE.sub("", message).strip() + note
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
        #: Each attempted image's plan as its attempt ended: it decides the image's rows
        #: (a read-back may have found some changes in place without this run).
        self.plans: dict[str, ImagePlan] = {}
        #: Images whose last write may have been applied and was never read back to settle.
        self.unsettled: set[str] = set()
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
        work = _Work(plan)  # still readable when the attempt is cut off
        try:
            outcome = await self._attempt(plan, started, work)
        except anyio.get_cancelled_exc_class():
            self._record(interrupted(plan.image_id, started, work.sent, in_doubt=work.in_doubt),
                         work)
            raise
        finally:
            self.pacer.release(borrower)
        self._record(outcome, work)

    async def _attempt(self, plan: ImagePlan, started: float, work: _Work) -> Outcome:
        """Try one image until it has a true outcome; ``work`` keeps its plan and count."""
        policy = self.safeguards.policy
        while True:
            response, verdict = await self._send(work)
            attempts = work.sent
            if verdict == Verdict.OK:
                return outcome_of(work.plan.patch, response, attempts, _since(started))
            if verdict == Verdict.PERMANENT:
                refused = await self._after_refusal(work, response, started)
                if refused is not None:
                    return refused
                await self.pacer.rate.wait()
                continue
            last = attempts >= policy.max_attempts
            if last and verdict != Verdict.AMBIGUOUS:
                return outcome_of(work.plan.patch, response, attempts, _since(started))
            log.info("%s %s after attempt %d: %s %s", "checking" if last else "retrying",
                     plan.image_id, attempts, response.status or "", response.error_code)
            stop = self._stop if verdict == Verdict.RETRY else None  # nothing in doubt
            if not await sleep_unless_stopped(policy.sleep, policy.wait(attempts, response), stop):
                return not_retried(work.plan.patch, response, attempts, _since(started))
            if verdict == Verdict.AMBIGUOUS:  # even after the last attempt: tell the truth
                settled = await self._read_back(work, response, started)
                if settled is not None:
                    return settled
                if last:
                    return outcome_of(work.plan.patch, response, attempts, _since(started),
                                      note=NOT_APPLIED)
            if not await self.pacer.rate.wait(stop):
                return not_retried(work.plan.patch, response, attempts, _since(started))

    async def _send(self, work: _Work) -> tuple[ApiResponse, Verdict]:
        """One PATCH of what ``work`` still has to change; the image is in doubt until the
        answer (or a read-back) says otherwise."""
        work.sent += 1
        work.in_doubt = True
        sent_at = self.pacer.now()
        if self._on_sending is not None:
            self._on_sending(work.plan)
        response = await self.client.update_image(work.plan.image_id, work.plan.patch.body())
        verdict = self.safeguards.policy.verdict(response)
        tell_pacer(self.pacer, response, verdict, sent_at)
        work.in_doubt = verdict == Verdict.AMBIGUOUS
        return response, verdict

    async def _after_refusal(self, work: _Work, response: ApiResponse,
                             started: float) -> Outcome | None:
        """The outcome of a refused write; None to send again.

        Without a read pass (``add_on_conflict``) an ``IMG.0035`` is answered by reading the
        image once and planning against it: a ``replace`` of a missing attribute becomes
        ``add``, a ``remove`` of a missing one is already as asked (its row ``unchanged``).
        """
        if (self._add_on_conflict and not work.converted
                and _conflict(work.plan.patch, response)):
            work.converted = True
            return await self._read_back(work, response, started, could_apply=False)
        return outcome_of(work.plan.patch, response, work.sent, _since(started))

    async def _read_back(self, work: _Work, response: ApiResponse, started: float, *,
                         could_apply: bool = True) -> Outcome | None:
        """After a write whose answer may not tell the truth: the outcome if the image
        settles it, else None with ``work.plan`` now holding only what is still to send.

        The image is read until a read succeeds (within the attempt budget), so a write is
        never repeated blind; if it cannot be read, the image stays in doubt.
        """
        policy = self.safeguards.policy
        for reads in range(1, policy.max_attempts + 1):
            try:
                image = await read_image(self._reader, work.plan.image_id)
            except ReadFailed as failure:
                log.info("reading %s back failed: %s", work.plan.image_id, failure.message)
                await policy.sleep(policy.wait(reads, response))
                continue
            return self._settled(work, image, response, started, could_apply=could_apply)
        work.in_doubt = could_apply
        return outcome_of(work.plan.patch, response, work.sent, _since(started),
                          note="; the image could not be read back" if could_apply else "")

    def _settled(self, work: _Work, image: Image | None, response: ApiResponse,
                 started: float, *, could_apply: bool) -> Outcome | None:
        plan, applied = settle(work.plan, image, could_apply=could_apply)
        work.plan, work.in_doubt = plan, False
        if applied:
            return Outcome(plan.image_id, Status.SUCCEEDED, response.status,
                           error_message=shown_in_place(response),
                           request_id=response.request_id, attempts=work.sent,
                           elapsed_ms=_since(started))
        if plan.status is not None:
            return Outcome(plan.image_id, plan.status, response.status,
                           error_message=plan.reason, request_id=response.request_id,
                           attempts=work.sent, elapsed_ms=_since(started))
        return None

    def _record(self, outcome: Outcome, work: _Work) -> None:
        self.plans[outcome.image_id] = work.plan
        if work.in_doubt:
            self.unsettled.add(outcome.image_id)
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


def shown_in_place(response: ApiResponse) -> str:
    """Why a write whose answer could not be trusted is ``succeeded``."""
    if response.status is None:
        return "the answer was lost, but reading the image back shows the change in place"
    return (f"the service answered HTTP {response.status} {response.error_code}".rstrip()
            + ", but reading the image back shows the change in place")


def _conflict(patch: ImagePatch, response: ApiResponse) -> bool:
    return (response.status == 400 and response.error_code == ATTRIBUTE_CONFLICT
            and any(operation.op in ("replace", "remove") for operation in patch.operations))


def not_retried(patch: ImagePatch, response: ApiResponse, attempts: int,
                elapsed_ms: int) -> Outcome:
    """A retry the run stopped before sending: the last answer stands (a 429 applied
    nothing, so the message says so)."""
    outcome = outcome_of(patch, response, attempts, elapsed_ms)
    note = "not applied; " if is_throttled(response) else ""
    return replace(outcome, error_message=f"{outcome.error_message} ({note}the run stopped "
                   "before retrying)".strip())


def interrupted(image_id: str, started: float, attempts: int, *,
                in_doubt: bool = True) -> Outcome:
    """The outcome of an image cut off mid-attempt: with a request in flight (or an
    ambiguous answer not yet read back) nobody knows whether it was applied."""
    return Outcome(
        image_id=image_id,
        status=Status.FAILED,
        error_code=INTERRUPTED,
        error_message="stopped while the request was in flight; "
        "the change may or may not have been applied" if in_doubt else
        "stopped between attempts; the last attempt was not applied",
        attempts=attempts,
        elapsed_ms=_since(started),
    )


def _since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
