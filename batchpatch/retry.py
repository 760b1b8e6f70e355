"""When to try a request again, how long to wait first, and the one loop that does it.

The loop (``attempt``) is the only retry loop of batchpatch: reads use it as it is, writes
add what only they need through ``Hooks`` (a read-back after an ambiguous answer, the
conversion of a refused ``replace``).  The policy is one object (urllib3's ``Retry`` is the
model); which answers are which is the service's call (``ImageService.classify``), so the
rules below are how the IMS adapter judges, mapped here from ``AnswerKind`` to a verdict.

* transient: no answer, 500/502/503/504, 429, ``APIGW.0308``, ``IMG.0060`` (IMS flow
  control), ``IMG.0061`` (unknown system error): retried with exponential backoff and full
  jitter, capped; a ``Retry-After`` from the service wins over the computed wait;
* permanent: every other 4xx: never retried;
* ambiguous: an answer that may have come after the backend applied the write; the caller
  must read the image back before anything is sent again (the runner's
  ``Hooks.ambiguous``).  Which answers:

  - no answer at all (timeout, connection lost after sending);
  - 502 and 504: the API gateway forwarded the PATCH and IMS's own answer did not reach it
    (APIGW.0201 "Backend timeout.", ims-api-facts §3.3), so IMS may have applied it;
  - 500: IMS lists 500 among UpdateImage's answers, with IMG.0061 "Unknown system error.";
    an unknown error inside IMS says nothing about whether the update was committed;
  - any other answer judged ``Verdict.AMBIGUOUS`` (a 2xx that is not the patched image, for
    one): the runner reads back on the verdict, whatever led to it.

  Not ambiguous, retried blind: 503 (the gateway's "Backend unavailable." and IAM's
  APIGW.0613 say the request was not served; HTTP 503 is a refusal by definition), 429 /
  ``APIGW.0308`` and ``IMG.0060`` (flow control refuses the request before any work) and a
  refused connection (nothing was sent).  A read-back costs one GET, so erring towards
  "ambiguous" is cheap, while erring the other way applies a change twice.
* unexpected: a 2xx that is not the patched image (another image's body, an error body,
  no body) or an answer that cannot be read: ambiguous too, since it proves nothing either
  way;
* a TLS certificate failure is permanent: only a fix (``--ca-bundle``) helps.

Every ``Retry-After`` is capped at ``MAX_RETRY_AFTER`` (600 s) when it is parsed, and a
value that is not a finite time to come counts as none.

The random source is injectable so tests are exact.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

import anyio

from batchpatch.service import AnswerKind, ApiResponse, ImageService
from batchpatch.throttle import MAX_HOLD, Pacer, Sleep, sleep_unless_stopped
from batchpatch.values import value

log = logging.getLogger("batchpatch.retry")

#: Never hold for one ``Retry-After`` longer than this, however long the service asks.
MAX_RETRY_AFTER = MAX_HOLD

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BACKOFF = 0.5
DEFAULT_MAX_BACKOFF = 30.0

T = TypeVar("T")


class Verdict(Enum):
    OK = "ok"
    RETRY = "retry"
    AMBIGUOUS = "ambiguous"
    PERMANENT = "permanent"


_VERDICTS = {
    AnswerKind.OK: Verdict.OK,
    AnswerKind.THROTTLED: Verdict.RETRY,
    AnswerKind.UNAVAILABLE: Verdict.RETRY,
    AnswerKind.MAYBE_APPLIED: Verdict.AMBIGUOUS,
}


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` requests in all; waits of ``uniform(0, min(cap, base·2^(n-1)))``.

    ``random`` and ``sleep`` are injectable, so retry loops run on a test's own time.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    base: float = DEFAULT_BACKOFF
    cap: float = DEFAULT_MAX_BACKOFF
    random: random.Random = field(default_factory=random.Random, compare=False, repr=False)
    sleep: Sleep = field(default=anyio.sleep, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be a whole number of at least 1")

    def verdict(self, kind: AnswerKind) -> Verdict:
        """Send again, read back first, or take the answer as it is."""
        return _VERDICTS.get(kind, Verdict.PERMANENT)

    def wait(self, attempt: int, response: ApiResponse) -> float:
        """Seconds to wait after the ``attempt``-th request got ``response``."""
        if response.retry_after is not None:
            return min(response.retry_after, MAX_RETRY_AFTER)
        return self.random.uniform(0.0, min(self.cap, self.base * 2 ** (attempt - 1)))


def tell_pacer(pacer: Pacer, response: ApiResponse, kind: AnswerKind, sent_at: float) -> None:
    """What an answer says about the service's load: "slow down", healthy, or neither (a
    5xx or no answer says nothing about our rate)."""
    if kind == AnswerKind.THROTTLED:
        pacer.throttled(sent_at, response.retry_after, response.error_code or str(response.status))
    elif kind not in (AnswerKind.UNAVAILABLE, AnswerKind.MAYBE_APPLIED):
        pacer.healthy()


class Ending(Enum):
    """How ``attempt`` ended."""

    #: The last answer stands: a success, a refusal, or the last of the attempts.
    ANSWERED = "answered"
    #: A hook settled the request (``Attempt.settled`` holds what it found).
    SETTLED = "settled"
    #: The last answer was ambiguous and nothing settled it.
    UNSETTLED = "unsettled"
    #: The run stopped during a wait, before the request was sent again.
    STOPPED = "stopped"


@value
class Attempt(Generic[T]):
    """The end of one request's tries: the last answer, its kind, and how many were sent."""

    ending: Ending
    answer: ApiResponse
    kind: AnswerKind
    attempts: int
    settled: T | None = None


@value
class Hooks(Generic[T]):
    """What a caller adds to the loop.  Each hook returns a settled value (the loop ends
    with it) or None (send again: the hook may have changed what ``send`` sends).

    ``refused``: after a permanent refusal (no hook: the refusal stands).  ``ambiguous``:
    after the wait that follows an answer that may hide an applied write, told whether that
    was the last attempt (no hook: treated as a retry).  ``stop``: cuts short the waits
    before a blind retry (never those after an ambiguous answer: something is in doubt).
    """

    refused: Callable[[ApiResponse, AnswerKind, int], Awaitable[T | None]] | None = None
    ambiguous: Callable[[ApiResponse, int], Awaitable[T | None]] | None = None
    stop: anyio.Event | None = None


async def attempt(
    send: Callable[[], Awaitable[ApiResponse]],
    service: ImageService,
    policy: RetryPolicy,
    pacer: Pacer,
    hooks: Hooks[T] | None = None,
    *,
    what: str = "",
    first: tuple[ApiResponse, float] | None = None,
) -> Attempt[T]:
    """Send until the answer is final: judge each answer, tell the pacer, wait (backoff,
    then a turn in the rate), and stop at ``policy.max_attempts``.  The caller has waited
    for the first request's turn already; ``first``: the caller sent it too, and this is
    its answer and when it went out (``pacer.now()``), not yet judged nor told."""
    hooks = hooks or Hooks()
    attempts = 0
    while True:
        if first is None:
            sent_at = pacer.now()
            answer = await send()
        else:
            (answer, sent_at), first = first, None
        attempts += 1
        kind = service.classify(answer)
        verdict = policy.verdict(kind)
        tell_pacer(pacer, answer, kind, sent_at)
        if verdict is Verdict.OK:  # the usual answer, without a step through _next_step
            return Attempt(Ending.ANSWERED, answer, kind, attempts)
        ending = await _next_step(answer, kind, verdict, attempts, policy, hooks, what)
        if ending is not None:
            return ending
        if not await pacer.rate.wait(hooks.stop if verdict == Verdict.RETRY else None):
            return Attempt(Ending.STOPPED, answer, kind, attempts)


async def _next_step(
    answer: ApiResponse,
    kind: AnswerKind,
    verdict: Verdict,
    attempts: int,
    policy: RetryPolicy,
    hooks: Hooks[T],
    what: str,
) -> Attempt[T] | None:
    """How the loop ends after an answer that is not ``OK``, or None to send again after a
    turn in the rate."""
    if verdict == Verdict.PERMANENT and hooks.refused is None:
        return Attempt(Ending.ANSWERED, answer, kind, attempts)
    if verdict == Verdict.PERMANENT:
        return _ended(
            await hooks.refused(answer, kind, attempts) if hooks.refused else None,
            answer,
            kind,
            attempts,
            otherwise=None,
        )
    ambiguous = verdict == Verdict.AMBIGUOUS and hooks.ambiguous is not None
    last = attempts >= policy.max_attempts
    if last and not ambiguous:
        return Attempt(Ending.ANSWERED, answer, kind, attempts)
    log.info(
        "%s %s after attempt %d: %s %s",
        "checking" if last else "retrying",
        what,
        attempts,
        answer.status or "",
        answer.error_code,
    )
    stop = hooks.stop if verdict == Verdict.RETRY else None  # nothing in doubt
    if not await sleep_unless_stopped(policy.sleep, policy.wait(attempts, answer), stop):
        return Attempt(Ending.STOPPED, answer, kind, attempts)
    if not ambiguous or hooks.ambiguous is None:
        return None
    settled = await hooks.ambiguous(answer, attempts)  # even after the last attempt
    return _ended(settled, answer, kind, attempts, otherwise=Ending.UNSETTLED if last else None)


def _ended(
    settled: T | None,
    answer: ApiResponse,
    kind: AnswerKind,
    attempts: int,
    *,
    otherwise: Ending | None,
) -> Attempt[T] | None:
    if settled is not None:
        return Attempt(Ending.SETTLED, answer, kind, attempts, settled)
    if otherwise is None:
        return None
    return Attempt(otherwise, answer, kind, attempts)
