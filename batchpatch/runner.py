"""The fan-out: one producer starts one request per image under the pacer; each worker
retries its image until it has a true outcome.  A failed image is data, never an exception.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import anyio
from anyio.abc import TaskGroup

from batchpatch.errors import ReadFailed, Reason, StopReason, trust_private_ca
from batchpatch.inventory import Image, Reader, read_image
from batchpatch.ledger import Ledger
from batchpatch.models import INTERRUPTED, ImagePatch, Outcome, PartOutcome, Status
from batchpatch.plan import ATTRIBUTES, TAGS, UPDATE, ImagePlan, mark_done, settle
from batchpatch.retry import Attempt, Ending, Hooks, RetryPolicy, Verdict, attempt, tell_pacer
from batchpatch.service import AnswerKind, ApiResponse, ImageService
from batchpatch.throttle import Pacer

log = logging.getLogger("batchpatch.runner")

#: The requests of an image whose only change is its attributes, and their ending well.
_PATCH_ONLY, _UPDATED = (UPDATE,), frozenset({UPDATE})

#: Added to the message of a write read back as not applied, after its last attempt.
NOT_APPLIED = "; reading the image back shows it was not applied"

OutcomeCallback = Callable[[Outcome], None]
#: Told before each PATCH, with the plan whose changes it carries.
SendingCallback = Callable[[ImagePlan], None]


class _Unsent(Exception):
    """A write was not sent: the journal could not record that it was going out."""


#: Why a request of an image is ``not_attempted`` after others of it went out.
NOT_SENT = "not sent: the journal could not be written, so the run stopped"
#: Why the run stopped when the journal could not be written (the job names the file).
JOURNAL_FAILED = "the journal could not be written; no request was started after that"


class _Work:
    """One image's attempt as it goes: its plan (what is still to send) and the PATCHes
    sent.  Whether its last write may have been applied is on its ledger entry."""

    __slots__ = ("converted", "ended", "last", "plan", "sent", "started")

    def __init__(self, plan: ImagePlan) -> None:
        self.plan = plan
        self.started = time.perf_counter()
        self.sent = 0
        #: The request sent last, and its answer.
        self.last: tuple[str, ApiResponse] | None = None
        self.converted = False
        #: The requests (``update``, ``create``, ``delete``) that have ended, in order,
        #: with how each ended.
        self.ended: list[tuple[str, Outcome, AnswerKind]] = []

    @property
    def done(self) -> set[str]:
        return {request for request, _, _ in self.ended}

    @property
    def patch(self) -> ImagePatch:
        """The PATCH still to send (``plan.patch``)."""
        return self.plan.patch

    def next_request(self) -> str | None:
        """The next request still to send: the PATCH, then the tag calls."""
        requests = self.plan.requests()
        if not self.ended:
            return requests[0] if requests else None
        done = self.done
        return next((r for r in requests if r not in done), None)

    def outcome(self, response: ApiResponse, kind: AnswerKind, *, note: str = "") -> Outcome:
        return outcome_of(
            self.patch, response, self.sent, _since(self.started), note=note, kind=kind
        )


#: While a run executes, young objects are collected this many times less often (a request
#: makes no reference cycle, so this costs no memory; the few cycles a failure makes, an
#: exception's traceback, are still collected within 70,000 allocations).
GC_SPACING = 100


class _CollectorSpared:
    """Run (plan, send, report) with the cyclic garbage collector out of the way (see
    ``__enter__``), undone when the last user ends (regions send side by side, in one
    process, each inside the job's own use)."""

    def __init__(self) -> None:
        self._runners = 0
        self._threshold = gc.get_threshold()
        self._freezing = False

    def __enter__(self) -> None:
        """What exists when the first user enters (the sheet, the ledger) is frozen out of
        every collection, and young objects are collected ``GC_SPACING`` times less often.
        Every request makes short-lived objects (answers, outcomes, journal lines) and each
        collection walked everything alive: a tenth of the CPU at zero latency.  Reference
        counting still frees at once all that is not in a cycle."""
        if self._runners == 0:
            self._threshold = gc.get_threshold()
            # A caller's own frozen objects would be thawed with ours: then none are frozen.
            self._freezing = not gc.get_freeze_count()
            if self._freezing:
                gc.freeze()
            gc.set_threshold(self._threshold[0] * GC_SPACING, *self._threshold[1:])
        self._runners += 1

    def __exit__(self, *exc: object) -> None:
        self._runners -= 1
        if self._runners == 0:
            gc.set_threshold(*self._threshold)
            if self._freezing:
                gc.unfreeze()


collector_spared = _CollectorSpared()


class _Queue:
    """The plans still to start, in sheet order, and how many workers are waiting for a
    turn to start one: never more than there are plans left, so no turn in the rate is
    spent on nothing (at 10 requests/s, 63 idle workers would hold the run's end 6 s)."""

    __slots__ = ("_claimed", "_next", "_plans")

    def __init__(self, plans: Sequence[ImagePlan]) -> None:
        self._plans, self._next, self._claimed = plans, 0, 0

    def claim(self) -> bool:
        """Reserve one of the plans left (not which one); False when all are reserved."""
        if self._next + self._claimed >= len(self._plans):
            return False
        self._claimed += 1
        return True

    def unclaim(self) -> None:
        self._claimed -= 1

    def take(self) -> ImagePlan:
        """The next plan, in sheet order, for a worker that claimed one."""
        self._claimed -= 1
        plan = self._plans[self._next]
        self._next += 1
        return plan


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


def outcome_of(
    patch: ImagePatch,
    response: ApiResponse,
    attempts: int,
    elapsed_ms: int,
    *,
    note: str = "",
    kind: AnswerKind | None = None,
) -> Outcome:
    """What ``response`` (of ``kind``) means for the rows of ``patch``; ``note`` adds what
    a read-back found, to the answer's bare message (whether the change took effect is
    then known, so the answer's ``effect_unknown`` is not told)."""
    if response.ok:
        status = Status.SUCCEEDED
    elif kind == AnswerKind.NOT_ACTIVE:
        status = Status.SKIPPED
    else:
        status = Status.FAILED
    message = response.error_message.strip() + note if note else response.message
    if status == Status.FAILED and attempts > 1:
        message = f"{message} (gave up after {attempts} attempts)".strip()
    return Outcome(
        patch.image_id,
        status,
        response.status,
        response.error_code,
        message,
        response.request_id,
        attempts,
        elapsed_ms,
    )


class Runner:
    """Sends the plans' patches through ``service``; each image's fate goes into ``ledger``
    (the one record: thresholds read it too); knows why it stopped."""

    def __init__(
        self,
        client: ImageService,
        pacer: Pacer,
        safeguards: Safeguards | None = None,
        *,
        ledger: Ledger | None = None,
        on_outcome: OutcomeCallback | None = None,
        stop: anyio.Event | None = None,
        abort: anyio.Event | None = None,
        add_on_conflict: bool = False,
    ) -> None:
        self.client, self.pacer = client, pacer
        self.safeguards = safeguards or Safeguards()
        self.ledger = ledger if ledger is not None else Ledger()
        self.stop: StopReason | None = None
        self._on_outcome = on_outcome
        self._stop, self._abort = stop or anyio.Event(), abort
        self._add_on_conflict = add_on_conflict
        self._reader = Reader(client, pacer, self.safeguards.policy)

    @property
    def stop_reason(self) -> str:
        return "" if self.stop is None else str(self.stop)

    async def run(self, plans: Sequence[ImagePlan]) -> dict[str, Outcome]:
        """Send every plan's patch; return the outcome of each image that was attempted.

        Every start waits for a slot and a turn in the pacer, and takes the next plan only
        then, so requests start in sheet order; each image is in exactly one plan, so no
        image is ever patched by two requests at once.  The first request goes alone: bad
        credentials show on one request, not on many.
        When ``stop`` is set no new request starts and those in flight finish; when
        ``abort`` is set those in flight are cancelled too and recorded as interrupted.
        """
        in_flight = anyio.CancelScope()

        async def cancel_on_abort() -> None:
            if self._abort is not None:
                await self._abort.wait()
                in_flight.cancel()

        with collector_spared:
            async with anyio.create_task_group() as watcher:
                watcher.start_soon(cancel_on_abort)
                with in_flight:
                    async with anyio.create_task_group() as requests:
                        await self._produce(plans, requests)
                watcher.cancel_scope.cancel()
        self._note_signal()
        outcome_of = self.ledger.outcome_of
        return {
            plan.image_id: outcome
            for plan in plans
            if (outcome := outcome_of(plan.image_id)) is not None
        }

    def _note_signal(self) -> None:
        if self.stop is not None:
            return
        if self._abort is not None and self._abort.is_set():
            self.stop = StopReason("abort", "stopped at once; requests in flight were cut off")
        elif self.ledger.unrecorded:  # the journal failed: it set ``stop``, no signal did
            self.stop = StopReason("journal", JOURNAL_FAILED)
        elif self._stop.is_set():
            self.stop = StopReason(
                "signal", "stopped by a signal; requests in flight were finished"
            )

    async def _produce(self, plans: Sequence[ImagePlan], requests: TaskGroup) -> None:
        """The first image alone, then one worker per slot the pacer may give, each taking
        the next image once it has a slot and a turn (a task per image, or one producer
        handing images out, cost a trip through the event loop per start)."""
        queue = _Queue(plans)
        if await self._start_next(queue):
            for _ in range(min(self.pacer.limits.concurrency, len(plans) - 1)):
                requests.start_soon(self._worker, queue)

    async def _worker(self, queue: _Queue) -> None:
        while await self._start_next(queue):
            pass

    async def _start_next(self, queue: _Queue) -> bool:
        """Wait for a slot and a turn, then send the next image; False when there is none
        left or the run stops."""
        if self._stop.is_set() or not queue.claim():
            return False
        borrower = self.pacer.try_acquire(self._stop)  # None when stopped, or a wait is due
        if borrower is None:
            borrower = await self.pacer.acquire(self._stop)
            if self._stop.is_set():
                queue.unclaim()
                self.pacer.release(borrower)
                return False
        await self._image(queue.take(), borrower)
        return True

    async def _image(self, plan: ImagePlan, borrower: object) -> None:
        """Send ``plan``'s requests; the ledger is told of it before the first goes out
        (``sending``), and gets its outcome with the plan as it ended (``_record``)."""
        work = _Work(plan)  # still readable when the attempt is cut off
        try:
            outcome, kind = await self._attempt(work)
        except _Unsent:  # nothing of it went out: not attempted, as the images not taken
            return
        except anyio.get_cancelled_exc_class():
            self._record(
                interrupted(plan.image_id, work.started, work.sent, in_doubt=self._in_doubt(work)),
                work,
                None,
            )
            raise
        finally:
            self.pacer.release(borrower)
        self._record(outcome, work, kind)

    async def _attempt(self, work: _Work) -> tuple[Outcome, AnswerKind]:
        """Send each request of one image's work in turn (the PATCH, then the tag calls),
        each until it has a true outcome; one request failing does not keep the others
        back, unless the image cannot be changed or the run must stop.

        The usual image, a lone PATCH that succeeds at once, ends without the retry loop
        and its hooks (a tenth of the client's own work an image at zero latency); any
        other first answer goes on into the loop as its first attempt."""
        first = None
        if work.plan.requests() == _PATCH_ONLY:
            sent_at = self.pacer.now()
            answer = await self._send(work, UPDATE)
            kind = self.client.classify(answer)
            if self.safeguards.policy.verdict(kind) is Verdict.OK:
                tell_pacer(self.pacer, answer, kind, sent_at)
                return _patched(work, answer), kind
            first = (answer, sent_at)
        while (request := work.next_request()) is not None:
            try:
                outcome, kind = await self._attempt_request(work, request, first)
            except _Unsent:
                if not work.sent:
                    raise
                work.ended.append((request, *self._unsent(work, request)))
                break
            first = None
            work.ended.append((request, outcome, kind))
            if outcome.status.done:
                succeeded = {name for name, ended, _ in work.ended if ended.status.done}
                work.plan = mark_done(work.plan, succeeded)  # not a request that failed
                self.ledger.plan(work.plan)
            elif kind.stops_run or outcome.status == Status.SKIPPED or work.plan.status:
                break
        return combined(work.plan, work.ended, work.sent, _since(work.started))

    async def _attempt_request(
        self, work: _Work, request: str, first: tuple[ApiResponse, float] | None = None
    ) -> tuple[Outcome, AnswerKind]:
        """Try one request until it has a true outcome, through the one retry loop; the
        hooks add what only writes need (``first``: its first answer, already had)."""

        async def ambiguous(response: ApiResponse, attempts: int) -> Outcome | None:
            return await self._read_back(work, response, request)

        async def refused(response: ApiResponse, kind: AnswerKind, attempts: int) -> Outcome | None:
            return await self._after_refusal(work, response, kind, request)

        tried = await attempt(
            partial(self._send, work, request),  # not a coroutine of ours around it
            self.client,
            self.safeguards.policy,
            self.pacer,
            Hooks(refused=refused, ambiguous=ambiguous, stop=self._stop),
            what=work.plan.image_id,
            first=first,
        )
        return self._ended(work, tried), tried.kind

    def _ended(self, work: _Work, tried: Attempt[Outcome]) -> Outcome:
        if tried.ending == Ending.SETTLED and tried.settled is not None:
            return tried.settled
        if tried.ending == Ending.STOPPED:
            return self._not_retried(work, tried.answer, tried.attempts, tried.kind)
        if tried.ending == Ending.UNSETTLED:
            return work.outcome(tried.answer, tried.kind, note=NOT_APPLIED)
        return work.outcome(tried.answer, tried.kind)

    async def _send(self, work: _Work, request: str) -> ApiResponse:
        """One request of what ``work`` still has to change (the PATCH, or one tag call);
        the image is in doubt until the answer (or a read-back) says otherwise."""
        if not self.ledger.sending(work.plan):
            raise _Unsent
        work.sent += 1
        image_id = work.plan.image_id
        if request == UPDATE:
            response = await self.client.update_image(image_id, work.patch.body())
        else:
            write = work.plan.write(request)
            tags = dict(write.tags) if write is not None else {}
            response = await self.client.change_tags(image_id, request, tags)
        maybe_applied = self.client.classify(response) == AnswerKind.MAYBE_APPLIED
        self.ledger.answered(image_id, in_doubt=maybe_applied)
        work.last = (request, response)
        return response

    def _unsent(self, work: _Work, request: str) -> tuple[Outcome, AnswerKind]:
        """How ``request`` ended when it could not be sent (again): a retry's last answer
        stands; a request never sent is ``not_attempted``."""
        if work.last is not None and work.last[0] == request:
            answer = work.last[1]
            kind = self.client.classify(answer)
            return self._not_retried(work, answer, work.sent, kind), kind
        outcome = Outcome(
            work.plan.image_id,
            Status.NOT_ATTEMPTED,
            error_message=NOT_SENT,
            attempts=work.sent,
            elapsed_ms=_since(work.started),
        )
        return outcome, AnswerKind.UNAVAILABLE  # no answer: it says nothing of the service

    def _not_retried(
        self, work: _Work, answer: ApiResponse, attempts: int, kind: AnswerKind
    ) -> Outcome:
        """``not_retried`` of ``work``'s last answer, told whether a read-back settled it."""
        read_back = not self._in_doubt(work)
        return not_retried(
            work.patch, answer, attempts, _since(work.started), kind=kind, read_back=read_back
        )

    def _in_doubt(self, work: _Work) -> bool:
        """Whether ``work``'s last write may have been applied without anyone knowing."""
        entry = self.ledger.get(work.plan.image_id)
        return entry is not None and entry.in_doubt

    async def _after_refusal(
        self, work: _Work, response: ApiResponse, kind: AnswerKind, request: str = UPDATE
    ) -> Outcome | None:
        """The outcome of a refused write; None to send again.

        Without a read pass (``add_on_conflict``) a conflict (IMS: ``IMG.0035``) is
        answered by reading the image once and planning against it: a ``replace`` of a
        missing attribute becomes ``add``, a ``remove`` of a missing one is already as
        asked (its row ``unchanged``).
        """
        if (
            self._add_on_conflict
            and request == UPDATE
            and not work.converted
            and kind == AnswerKind.CONFLICT
            and _replaces_or_removes(work.patch)
        ):
            work.converted = True
            return await self._read_back(work, response, UPDATE, could_apply=False)
        return work.outcome(response, kind)

    async def _read_back(
        self, work: _Work, response: ApiResponse, request: str, *, could_apply: bool = True
    ) -> Outcome | None:
        """After a write whose answer may not tell the truth: the outcome if the image
        settles it, else None with ``work.plan`` now holding only what is still to send.

        The image is read once, through the one retry loop (``read_image`` retries a read
        as the policy says), so a write is never repeated blind; if it cannot be read, the
        image stays in doubt.
        """
        try:
            if request == UPDATE:
                image = await read_image(self._reader, work.plan.image_id)
                tags = None
            else:
                image, tags = None, await self._read_tags(work.plan.image_id)
        except ReadFailed as failure:
            log.info("reading %s back failed: %s", work.plan.image_id, failure.message)
        else:
            return self._settled(
                work, image, tags, response, request=request, could_apply=could_apply
            )
        self.ledger.answered(work.plan.image_id, in_doubt=could_apply)
        return work.outcome(
            response,
            self.client.classify(response),
            note="; the image could not be read back" if could_apply else "",
        )

    async def _read_tags(self, image_id: str) -> dict[str, str]:
        """An image's tags, read through the one retry loop (a read is safe to repeat);
        ``ReadFailed`` when they cannot be read."""
        tried: Attempt[None] = await attempt(
            lambda: self.client.read_tags(image_id),
            self.client,
            self.safeguards.policy,
            self.pacer,
            what="a tag read",
        )
        answer = tried.answer
        tags = self.client.tags(answer) if answer.ok else None
        if tags is None:
            raise ReadFailed(
                answer.status, answer.error_code, answer.message, answer.request_id, kind=tried.kind
            )
        return tags

    def _settled(
        self,
        work: _Work,
        image: Image | None,
        tags: dict[str, str] | None,
        response: ApiResponse,
        *,
        request: str,
        could_apply: bool,
    ) -> Outcome | None:
        plan, applied = settle(work.plan, image, could_apply=could_apply, tags=tags, kind=request)
        work.plan = plan
        self.ledger.plan(plan)
        self.ledger.answered(plan.image_id, in_doubt=False)
        if applied:
            return Outcome(
                plan.image_id,
                Status.SUCCEEDED,
                response.status,
                error_message=shown_in_place(response),
                request_id=response.request_id,
                attempts=work.sent,
                elapsed_ms=_since(work.started),
            )
        if plan.status is not None:
            return Outcome(
                plan.image_id,
                plan.status,
                response.status,
                error_message=plan.reason,
                request_id=response.request_id,
                attempts=work.sent,
                elapsed_ms=_since(work.started),
            )
        if request not in plan.requests():  # all it carried was in place without it
            return Outcome(plan.image_id, Status.UNCHANGED, response.status, "already as asked")
        return None

    def _record(self, outcome: Outcome, work: _Work, kind: AnswerKind | None) -> None:
        self.ledger.finish(outcome, work.plan, in_doubt=self._in_doubt(work))
        if self._on_outcome is not None:
            self._on_outcome(outcome)
        if outcome.status == Status.FAILED:
            self._check_thresholds(outcome, kind)

    def _check_thresholds(self, outcome: Outcome, kind: AnswerKind | None) -> None:
        reason = self._threshold(outcome, kind)
        if reason is not None and self.stop is None:
            self.stop = reason
            log.warning("stopping: %s", reason)
            self._stop.set()

    def _threshold(self, outcome: Outcome, kind: AnswerKind | None) -> StopReason | None:
        """Why the run must stop after this failure, if it must: refused credentials, a
        certificate that cannot be verified, or too many failures (read from the ledger)."""
        tally = self.ledger.tally
        if kind == AnswerKind.AUTH_FAILED or (kind == AnswerKind.FORBIDDEN and not tally.succeeded):
            return StopReason(
                "auth",
                f"authentication failed using {self.client.describe()} "
                f"({outcome.http_status or ''} {outcome.error_code}: "
                f"{outcome.error_message})",
            )
        if kind == AnswerKind.TLS_FAILED:
            fact = outcome.error_message
            return StopReason("tls", "", lambda name: str(Reason(fact, trust_private_ca(name))))
        return _too_many_failures(self.safeguards, tally.failed, tally.finished)


def _too_many_failures(guards: Safeguards, failed: int, finished: int) -> StopReason | None:
    if guards.max_failures is not None and failed >= guards.max_failures:
        limit = str(guards.max_failures)
        return StopReason(
            "max_failures",
            "",
            lambda name: f"{failed} images failed ({name('max_failures', limit)})",
        )
    if (
        guards.max_failure_rate is not None
        and finished >= guards.min_sample
        and failed / finished > guards.max_failure_rate
    ):
        rate = guards.max_failure_rate
        return StopReason(
            "max_failure_rate",
            "",
            lambda name: (
                f"{failed} of {finished} images failed, more than {rate:.0%} "
                f"({name('max_failure_rate', '')})"
            ),
        )
    return None


def _patched(work: _Work, answer: ApiResponse) -> Outcome:
    """The outcome of a lone PATCH that succeeded at its first attempt: what ``outcome_of``
    and ``combined`` make of it, built at once (the ledger takes the plan with it)."""
    work.plan = mark_done(work.plan, _UPDATED)
    said = (answer.status, answer.error_code, answer.message, answer.request_id)
    part = PartOutcome(ATTRIBUTES, Status.SUCCEEDED, *said)
    return Outcome(
        work.plan.image_id, Status.SUCCEEDED, *said, work.sent, _since(work.started), (part,)
    )


def combined(
    plan: ImagePlan, ended: list[tuple[str, Outcome, AnswerKind]], sent: int, elapsed_ms: int
) -> tuple[Outcome, AnswerKind]:
    """One image's outcome from the outcomes of its requests: the first that is not done
    (its message saying which part failed when the image has both), else the last; with
    each request's own ending in ``parts``, so each row is reported by its own request."""
    if not ended:
        return Outcome(plan.image_id, Status.UNCHANGED, attempts=sent), AnswerKind.OK
    failed = next((i for i, (_, outcome, _) in enumerate(ended) if not outcome.status.done), -1)
    both = failed >= 0 and {ATTRIBUTES, TAGS} <= plan.parts  # only a failure is prefixed
    parts = tuple([_part(request, outcome, prefix=both) for request, outcome, _ in ended])
    which = failed if failed >= 0 else len(ended) - 1
    _, outcome, kind = ended[which]
    status, message = outcome.status, outcome.error_message
    if failed >= 0:
        message = parts[which].error_message
        status = partly_done(status, some_done=any(p.status == Status.SUCCEEDED for p in parts))
    elif status != Status.SUCCEEDED and any(o.status == Status.SUCCEEDED for _, o, _ in ended):
        status = Status.SUCCEEDED
    # Built directly, not by ``replace`` (twice the cost, once per image).
    combined = Outcome(
        outcome.image_id,
        status,
        outcome.http_status,
        outcome.error_code,
        message,
        outcome.request_id,
        sent,
        elapsed_ms,
        parts,
    )
    return combined, kind


def partly_done(status: Status, *, some_done: bool) -> Status:
    """A ``not_attempted`` request of an image (or row) some of whose work took effect
    (``some_done``) leaves it partly changed: ``failed``, never "not attempted" (a rerun as
    written would send the part that took effect again)."""
    if status == Status.NOT_ATTEMPTED and some_done:
        return Status.FAILED
    return status


def _part(request: str, outcome: Outcome, *, prefix: bool) -> PartOutcome:
    part = ATTRIBUTES if request == UPDATE else TAGS
    message = outcome.error_message
    if prefix and message and not outcome.status.done:
        message = f"{part}: {message}"
    return PartOutcome(
        part, outcome.status, outcome.http_status, outcome.error_code, message, outcome.request_id
    )


def _replaces_or_removes(patch: ImagePatch) -> bool:
    return any(operation.op in ("replace", "remove") for operation in patch.operations)


def shown_in_place(response: ApiResponse) -> str:
    """Why a write whose answer could not be trusted is ``succeeded``."""
    if response.status is None:
        return "the answer was lost, but reading the image back shows the change in place"
    return (
        f"the service answered HTTP {response.status} {response.error_code}".rstrip()
        + ", but reading the image back shows the change in place"
    )


def not_retried(
    patch: ImagePatch,
    response: ApiResponse,
    attempts: int,
    elapsed_ms: int,
    *,
    kind: AnswerKind | None = None,
    read_back: bool = False,
) -> Outcome:
    """A retry the run stopped before sending: the last answer stands (a throttled request
    applied nothing, so the message says so; so does an answer that left the effect unknown
    when a read-back found it was not applied, ``read_back``)."""
    unknown_settled = read_back and kind == AnswerKind.MAYBE_APPLIED
    note = NOT_APPLIED if unknown_settled else ""
    outcome = outcome_of(patch, response, attempts, elapsed_ms, note=note, kind=kind)
    note = "not applied; " if kind == AnswerKind.THROTTLED else ""
    return replace(
        outcome,
        error_message=f"{outcome.error_message} ({note}the run stopped before retrying)".strip(),
    )


def interrupted(image_id: str, started: float, attempts: int, *, in_doubt: bool = True) -> Outcome:
    """The outcome of an image cut off mid-attempt: with a request in flight (or an
    ambiguous answer not yet read back) nobody knows whether it was applied."""
    return Outcome(
        image_id=image_id,
        status=Status.FAILED,
        error_code=INTERRUPTED,
        error_message="stopped while the request was in flight; "
        "the change may or may not have been applied"
        if in_doubt
        else "stopped between attempts; the last attempt was not applied",
        attempts=attempts,
        elapsed_ms=_since(started),
    )


def _since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
