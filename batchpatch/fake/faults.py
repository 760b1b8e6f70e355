"""Deciding which fault, if any, a request suffers: the rate limit, the script, the dice.

Only the server's event loop uses these objects, so they hold no locks.  What was decided
is counted in FakeStats by the app, not here.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import cast

from batchpatch.fake.config import PATCH_FAULT_FIELDS, FakeConfig, FaultKind
from batchpatch.fake.stats import RequestKind

Clock = Callable[[], float]

#: The random faults in the order their probabilities partition one uniform draw.
_DRAWN: tuple[FaultKind, ...] = (
    "500", "503", "IMG.0060", "reset_before", "reset_after", "hang", "502_after", "504_after"
)  # fmt: skip
#: The random faults a GET can draw: the first two.
_LIST_FAULTS = 2
#: The kinds that draw every random fault (the rest draw a GET's).
_WRITES = frozenset({"patch", "tag_write"})
#: The kinds that draw no random fault (IAM's routes).
_UNFAULTED = frozenset({"token", "projects"})


def _queues(script: Mapping[str, Sequence[str]]) -> dict[str, deque[str]]:
    return {key: deque(faults) for key, faults in script.items() if faults}


class SlidingWindow:
    """Admit at most ``limit`` requests in any ``period`` seconds; refusals are not counted.

    Exact, unlike a token bucket refilling during a burst: of N requests arriving within one
    period, exactly ``limit`` are admitted and N - limit refused.
    """

    __slots__ = ("_admitted", "_clock", "limit", "period")

    def __init__(self, limit: int, *, period: float = 1.0, clock: Clock = time.monotonic) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, not {limit}")
        self.limit = limit
        self.period = period
        self._clock = clock
        self._admitted: deque[float] = deque()

    def __repr__(self) -> str:
        return f"<SlidingWindow limit={self.limit} period={self.period} used={len(self._admitted)}>"

    def admit(self) -> bool:
        """Whether a request arriving now may pass; if so, it is counted."""
        now = self._clock()
        while self._admitted and self._admitted[0] <= now - self.period:
            self._admitted.popleft()
        if len(self._admitted) >= self.limit:
            return False
        self._admitted.append(now)
        return True


class FaultPlan:
    """The fault decisions of one server, from its FakeConfig."""

    def __init__(self, config: FakeConfig, *, clock: Clock = time.monotonic) -> None:
        self.config = config
        self._random = random.Random(config.seed)
        self._scripts = _queues(config.script)
        self._tag_scripts = _queues(config.tag_script)
        self._kind_scripts = _queues(config.kind_script)
        limit = config.throttle_limit
        self._window = None if limit is None else SlidingWindow(limit, clock=clock)
        self._bounds: list[float] = []
        total = 0.0
        for name in PATCH_FAULT_FIELDS:
            total += getattr(config, name)
            self._bounds.append(total)

    def __repr__(self) -> str:
        pending = sum(len(faults) for faults in self._scripts.values())
        return f"<FaultPlan window={self._window!r} scripted_pending={pending}>"

    def admit(self) -> bool:
        """The rate limit: whether a request arriving now passes the gateway."""
        return self._window is None or self._window.admit()

    def choose(self, method: RequestKind, image_id: str | None) -> FaultKind | None:
        """The fault for an admitted request, None for none; uses up a script item.

        The image's script (a PATCH's or a tag write's) goes first, then the kind's script,
        then the dice.  Tag-script items beyond FaultKind (``error_200``, the unreadable
        answers) come back as they are; the handlers know them.
        """
        scripts = {"patch": self._scripts, "tag_write": self._tag_scripts}.get(method, {})
        for script in (scripts.get(image_id or ""), self._kind_scripts.get(method)):
            if script:
                fault = script.popleft()
                return None if fault == "ok" else cast(FaultKind, fault)  # checked by config
        if not self._bounds[-1] or method in _UNFAULTED:
            return None  # no random faults configured: draw nothing
        draw = self._random.random()
        candidates = len(_DRAWN) if method in _WRITES else _LIST_FAULTS
        for bound, fault in zip(self._bounds[:candidates], _DRAWN, strict=False):
            if draw < bound:
                return fault
        return None

    def delay(self) -> float:
        """Seconds a PATCH waits before it is handled: the latency plus a jitter draw."""
        jitter = self._random.uniform(0, self.config.jitter) if self.config.jitter else 0.0
        return self.config.latency + jitter
