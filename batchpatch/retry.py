"""When to try a request again, and how long to wait first.  One place for the whole policy.

* transient: no answer, 500/502/503/504, 429, ``APIGW.0308``, ``IMG.0060`` (IMS flow
  control), ``IMG.0061`` (unknown system error): retried with exponential backoff and full
  jitter, capped; a ``Retry-After`` from the service wins over the computed wait;
* permanent: every other 4xx: never retried;
* ambiguous: an answer that may have come after the backend applied the write; the caller
  must read the image back before anything is sent again (see ``runner``).  Which answers:

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

import random
from dataclasses import dataclass, field
from enum import Enum

import anyio

from batchpatch.client import CONNECT_FAILED, MAX_RETRY_AFTER, ApiResponse
from batchpatch.throttle import Pacer, Sleep

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Answers after which a write may have been applied (see the module docstring).
AMBIGUOUS_STATUSES = frozenset({500, 502, 504})
TRANSIENT_CODES = frozenset({"APIGW.0308", "IMG.0060", "IMG.0061"})
#: Answers that mean "slow down", as opposed to "something broke".
THROTTLE_CODES = frozenset({"APIGW.0308", "IMG.0060"})

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BACKOFF = 0.5
DEFAULT_MAX_BACKOFF = 30.0


class Verdict(Enum):
    OK = "ok"
    RETRY = "retry"
    AMBIGUOUS = "ambiguous"
    PERMANENT = "permanent"


def is_throttled(response: ApiResponse) -> bool:
    return response.status == 429 or response.error_code in THROTTLE_CODES


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

    def verdict(self, response: ApiResponse) -> Verdict:
        if response.ok:
            return Verdict.OK
        if response.unexpected:  # proves nothing: the image is read back
            return Verdict.AMBIGUOUS
        if response.maybe_applied or response.status in AMBIGUOUS_STATUSES:
            return Verdict.AMBIGUOUS
        if (response.error_code == CONNECT_FAILED or response.status in TRANSIENT_STATUSES
                or response.error_code in TRANSIENT_CODES):
            return Verdict.RETRY
        return Verdict.PERMANENT

    def wait(self, attempt: int, response: ApiResponse) -> float:
        """Seconds to wait after the ``attempt``-th request got ``response``."""
        if response.retry_after is not None:
            return min(response.retry_after, MAX_RETRY_AFTER)
        return self.random.uniform(0.0, min(self.cap, self.base * 2 ** (attempt - 1)))


def tell_pacer(pacer: Pacer, response: ApiResponse, verdict: Verdict, sent_at: float) -> None:
    """What an answer says about the service's load: "slow down", healthy, or neither (a
    5xx or no answer says nothing about our rate)."""
    if is_throttled(response):
        pacer.throttled(sent_at, response.retry_after,
                        response.error_code or str(response.status))
    elif verdict in (Verdict.OK, Verdict.PERMANENT):
        pacer.healthy()
