"""The fake's wall clock: the real UTC time plus an offset that tests can move.

It dates every response (``Date``), judges ``X-Sdk-Date`` and times IAM tokens and AK
lockouts.  A nonzero offset plays a client whose clock is wrong by minus that much; moving
the clock forward lets a test see a lockout end or a token expire without sleeping.  Read on
the server's event loop thread and moved from a test's, so it holds a lock.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime


class FakeClock:
    """Seconds since the epoch, as the fake sees them: ``time_source() + offset``."""

    __slots__ = ("_lock", "_offset", "_time_source")

    def __init__(self, offset: float = 0.0, *, time_source: Callable[[], float] = time.time):
        _check_finite("offset", offset)
        self._offset = offset
        self._time_source = time_source
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<FakeClock offset={self.offset:+g}s>"

    @property
    def offset(self) -> float:
        """Seconds the fake's clock is ahead of the real time (negative: behind)."""
        with self._lock:
            return self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock by ``seconds`` (backwards if negative)."""
        _check_finite("seconds", seconds)
        with self._lock:
            self._offset += seconds

    def time(self) -> float:
        """The fake's time, in seconds since the epoch."""
        with self._lock:
            offset = self._offset
        return self._time_source() + offset

    def now(self) -> datetime:
        """The fake's time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.time(), UTC)


def http_date(when: datetime) -> str:
    """An RFC 7231 IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return format_datetime(when.astimezone(UTC), usegmt=True)


def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, not {value}")
