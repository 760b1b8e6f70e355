"""Log lines on stderr (text or JSON) and the JSON summary of a run, for scheduled jobs.

Nothing here ever formats a request's headers, so no secret can reach a log line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from batchpatch.files import atomic_write
from batchpatch.job import EXIT_MEANINGS, RunResult
from batchpatch.progress import EVENTS


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the record's ``fields``
    (a progress line's counts, a failed image's id and request id)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update({k: v for k, v in fields.items() if k not in line})
        return json.dumps(line, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message``; the lines meant for the watcher (progress, a resume, a
    failed image) are their message alone, as a cron log should read."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if record.name == EVENTS:
            return record.getMessage()
        return super().format(record)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A log handler that outlives its stream: when stderr is gone (a closed pipe, a
    hung-up terminal) the run goes on and further lines go to /dev/null.  Any other failure
    (a bug in a log call) is still shown, so a test can catch it."""

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            silence(self.stream)
        else:
            super().handleError(record)


def silence(stream: object) -> None:
    """Point the file descriptor under ``stream`` at /dev/null after a write to it failed
    (EPIPE, EIO): what is still buffered, and every later write, then go nowhere instead of
    raising again — at exit, too."""
    try:
        descriptor = stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test's capture): nothing to redirect
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, descriptor)
    finally:
        os.close(devnull)


def say(text: str, *, to_stderr: bool = False) -> None:
    """Print ``text`` on stdout (or stderr); a reader that went away (``| head``) or a
    closed stream never stops the run."""
    stream = sys.stderr if to_stderr else sys.stdout
    try:
        print(text, file=stream, flush=True)
    except OSError:
        silence(stream)


_json_notices = False


def notice(message: str, *, level: int = logging.WARNING) -> None:
    """A message for the person (or the scheduler) running batchpatch, on stderr: plain text,
    or a JSON log line when ``--log-format json`` asked for machine-readable logs."""
    if _json_notices:
        logging.getLogger("batchpatch.cli").log(level, message)
    else:
        say(message, to_stderr=True)


def configure_logging(style: str, *, debug: bool) -> None:
    """Send batchpatch's log to stderr: warnings by default, everything with ``debug``."""
    global _json_notices
    _json_notices = style == "json"
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if style == "json" else TextFormatter())
    logger = logging.getLogger("batchpatch")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    logger.propagate = False
    logging.getLogger(EVENTS).setLevel(logging.INFO)  # the watcher's lines, always


def write_summary(path: Path, result: RunResult) -> Path:
    """The run in one JSON object: counts, durations, and what the exit code means."""
    code = result.exit_code
    summary = {
        "exit_code": code,
        "meaning": EXIT_MEANINGS[code],
        "stop_reason": result.stop_reason,
        "sheet": str(result.sheet.path),
        "report": str(result.report_path),
        "rows": len(result.rows),
        "images": len(result.sheet.patches),
        "counts": dict(sorted(result.counts.items())),
        "requests": result.requests,
        "seconds": round(result.seconds, 3),
        "requests_per_second": round(result.requests / result.seconds, 2)
        if result.seconds > 0
        else 0.0,
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if result.regions:  # a sheet across regions: each region's part (regional.RegionFigures)
        summary["regions"] = {figures.region: figures.as_json() for figures in result.regions}
    return atomic_write(
        path,
        lambda temporary: temporary.write_text(json.dumps(summary, indent=1), encoding="utf-8"),
    )
