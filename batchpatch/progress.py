"""Progress as log lines, for runs with no terminal to draw a bar on (cron, CI, systemd).

Every ``--progress-every`` seconds one line says how far the run is: images done of the
total, counts by status, the current rate, throttled answers so far and the time left.
Each failed image gets a line of its own, and a run that resumes says so once.  All of them
go to the ``batchpatch.events`` logger with their values as ``fields``, so ``--log-format
json`` makes each one a JSON object with those fields, and text shows the message alone.

The clock and the sleep are injectable, so tests drive the ticker without waiting.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from batchpatch.ledger import Entry, Event, Ledger
from batchpatch.models import Outcome, Status

#: The logger of the lines meant for the person (or scheduler) watching a run.
EVENTS = "batchpatch.events"
DEFAULT_EVERY = 15.0

events = logging.getLogger(EVENTS)
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def tell_event(event: str, message: str, level: int = logging.INFO, **fields: Any) -> None:
    """One line for the watcher: ``message`` as text, or a JSON object of ``fields``."""
    events.log(level, "%s", message, extra={"fields": {"event": event, **fields}})


def tell(message: str) -> None:
    """A line for the watcher that is information, not a warning (the undo sheet's path):
    shown by default and with ``--quiet``, ``"level": "info"`` as JSON."""
    events.info("%s", message)


def printable(text: str) -> str:
    """``text`` on one line: control characters (a forged line break) shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ProgressLines:
    """Tells progress lines about a run whose images are in ``ledger`` (``total`` of them).

    ``throttled`` counts the "slow down" answers so far (the run's telemetry).
    """

    def __init__(
        self,
        ledger: Ledger,
        total: int,
        throttled: Callable[[], int] = lambda: 0,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.ledger, self.total, self.throttled, self.clock = ledger, total, throttled, clock
        self._started = self._last_time = clock()
        self._last_finished = 0
        #: Images an earlier run finished (a resume), told as settled: done, yet not part
        #: of this run's rate.
        self.resumed = 0

    def __repr__(self) -> str:
        return f"<ProgressLines {self.done}/{self.total}>"

    @property
    def done(self) -> int:
        """Images settled so far, those a resumed run found done included."""
        return sum(self.ledger.progress.values())

    @property
    def finished(self) -> int:
        """Images this run settled (the rate and the time left are reckoned from them)."""
        return self.done - self.resumed

    def listen(self) -> None:
        """Count the images an earlier run finished apart, and tell a line for every image
        that fails, as it fails: by its answer, or by the plan (``not_found``)."""
        self.ledger.listen(self._on_event)

    def _on_event(self, event: Event, entry: Entry, outcome: Outcome | None) -> None:
        if event == Event.SENDING or outcome is None:
            return
        if event == Event.SETTLED and entry.earlier:
            self.resumed += 1
        elif outcome.status == Status.FAILED:
            tell_failure(outcome)

    async def tick(self, every: float, sleep: Sleep = anyio.sleep) -> None:
        """One line every ``every`` seconds, until cancelled."""
        while True:
            await sleep(every)
            self.tell()

    def tell(self) -> None:
        """One progress line, now."""
        fields = self.fields()
        tell_event("progress", progress_text(fields), **fields)

    def fields(self) -> dict[str, Any]:
        """Where the run stands: done/total, counts, images per second this run finished
        since the last line, throttled answers so far, and the seconds left at that rate
        (images a resumed run found done count as done, never toward the rate)."""
        now, done, finished = self.clock(), self.done, self.finished
        elapsed = now - self._last_time
        rate = (finished - self._last_finished) / elapsed if elapsed > 0 else 0.0
        if rate <= 0 and now > self._started:  # nothing finished lately: the whole run's
            rate = finished / (now - self._started)
        self._last_time, self._last_finished = now, finished
        left = max(self.total - done, 0)
        return {
            "done": done,
            "total": self.total,
            "counts": dict(sorted(self.ledger.progress.items())),
            "images_per_second": round(rate, 2),
            "throttled": self.throttled(),
            "eta_seconds": 0 if not left else (math.ceil(left / rate) if rate > 0 else None),
        }


def progress_text(fields: dict[str, Any]) -> str:
    """``progress: 412/1,000 images done | 400 succeeded, 12 failed | 9.8 images/s |
    3 throttled | ETA 1m00s``."""
    counts = ", ".join(f"{n:,} {status}" for status, n in fields["counts"].items())
    return (
        f"progress: {fields['done']:,}/{fields['total']:,} images done"
        f" | {counts or 'nothing finished yet'}"
        f" | {fields['images_per_second']:.1f} images/s"
        f" | {fields['throttled']:,} throttled"
        f" | ETA {_duration(fields['eta_seconds'])}"
    )


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "unknown"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def tell_failure(outcome: Outcome) -> None:
    """One line for an image that failed: its id, status, error code and request id."""
    code = outcome.error_code or (f"HTTP {outcome.http_status}" if outcome.http_status else "")
    message = printable(outcome.error_message)
    text = f"failed: {outcome.image_id}" + (f" {code}" if code else "")
    text += f" (request id {outcome.request_id})" if outcome.request_id else ""
    tell_event(
        "image_failed",
        text + (f": {message}" if message else ""),
        logging.WARNING,
        image_id=outcome.image_id,
        status=str(outcome.status),
        error_code=outcome.error_code,
        request_id=outcome.request_id,
        http_status=outcome.http_status,
        error_message=outcome.error_message,
    )


def tell_resume(total: int, done: int, in_doubt: int) -> None:
    """``resuming: 412 of 1,000 images already done, 3 in doubt to read back``."""
    tell_event(
        "resume",
        f"resuming: {done:,} of {total:,} images already done, {in_doubt:,} in doubt to read back",
        total=total,
        done=done,
        in_doubt=in_doubt,
    )
