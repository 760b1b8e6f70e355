"""A crash-safe record of a run, so a rerun picks up where a stopped run left off.

One JSON object per line, appended and flushed as things happen: a header naming the sheet
(by SHA-256) and the endpoint, ``sending`` before each PATCH, and each image's outcome.  A
``kill -9`` at any moment loses no recorded outcome; at worst the last line is torn, and a
torn line — like any damaged one (not UTF-8, not an entry, an unknown status) — is ignored
on reading and counted in a warning.  The journal is removed once a run finishes; only an
unfinished run leaves one behind.

Its files are never opened through a symlink: the fresh journal is made by ``mkstemp``
and renamed into place, and the old one is read with ``O_NOFOLLOW``.  A write that fails
(a full disk) never raises into the run: the journal stops writing, keeps the error, and
tells ``on_failure`` (``apply_sheet`` then starts no new request) and the ledger: a write
whose ``sending`` line could not be written does not go out (``Ledger.unrecorded``).

The journal is the ledger's persistence (``ledger.Ledger``): opened on the run's ledger, it
first restores into it what an earlier run left (each image's outcome if done, or that it is
in doubt; its plan; when its last write went out), then appends each of the ledger's events
as it happens.  It keeps no record of its own.

On resume, images whose recorded outcome is done are not sent again, and images that were
being sent when the run died, or whose last write got an answer that may not tell the truth
(no answer, a 502 …) and was not settled by reading the image back, are read back before
anything is sent.

The lines also hold each image's plan as it stood (``plan``: the before values, and which
changes were already in place), so a resumed run reports every row as the run that did the
work saw it — ``unchanged`` stays ``unchanged``, ``before`` is kept — and a read-back can
tell which changes the dead run's write carried.  A plan is written once, not on every line:
a line without one leaves the image's plan as the line before left it (a retry sends the
plan its first attempt carried), and ``"applied": true`` on a succeeded outcome stands for
that plan with every change it still had to send now in place (``ImagePlan.all_applied``).
Encoding plans was a tenth of the client's CPU at zero latency.

A journal of another version of the sheet (same endpoint) is still loaded, and
``other_sheet`` says so: the caller decides what its records are worth for the new sheet
(images it had in doubt must be read back all the same).  A journal of another endpoint is
set aside (``other_endpoint`` names it): its images are another service's (``--fake`` gets a
new port, and a fresh service, every run).  So is, with a warning, a journal of another
``FORMAT`` (an older batchpatch's, whose plans number rows otherwise).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import math
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from batchpatch import fastjson
from batchpatch.errors import OptionsError, WriteFailed
from batchpatch.ledger import Entry, Event, Ledger
from batchpatch.models import Outcome, PartOutcome, Status
from batchpatch.plan import ImagePlan, plan_from_json, plan_to_json

#: The journal's format.  ``/2`` numbers the rows of the plans it holds as spreadsheet rows
#: (``/1`` held 0-based positions: such a journal is set aside with a warning, never misread).
FORMAT = "batchpatch-journal/2"
#: How the fresh journal a run writes before renaming it into place ends.
_FRESH_SUFFIX = ".new"

log = logging.getLogger("batchpatch.journal")


def journal_path(report_path: Path) -> Path:
    """The journal lives beside the report: ``changes.results.csv.journal``."""
    return report_path.with_name(report_path.name + ".journal")


class Journal:
    """Restores what an earlier run left at ``path`` into a ledger, then appends the
    ledger's events there."""

    def __init__(
        self,
        path: Path,
        ledger: Ledger,
        *,
        sheet_sha256: str,
        endpoint: str,
        restart: bool = False,
        on_failure: Callable[[OSError], None] | None = None,
    ) -> None:
        """Open a fresh journal at ``path`` on ``ledger`` (the run's): what an earlier run
        left there is restored into ``ledger`` and carried over, and every later ``sending``
        and ``outcome`` of ``ledger`` is appended.

        Raises ``OptionsError`` when a folder is in the way and ``WriteFailed`` when the
        journal cannot be written (nothing has been sent then).  Once open, a failed write
        never raises: it is kept in ``error`` and handed to ``on_failure`` (say, to stop
        the run), and nothing more is written.
        """
        self.path = path
        #: Told of a failed write once the journal is open (a journal that cannot be
        #: opened raises instead, and leaves the caller's ledger as it was).
        self._ledger: Ledger | None = None
        #: Lines of the earlier journal that were ignored as damaged.
        self.damaged = 0
        #: The first write that failed, if any.
        self.error: OSError | None = None
        self._on_failure: Callable[[OSError], None] | None = None
        self.other_sheet = False
        self.other_endpoint = ""
        #: The plan the latest line written of each image being sent holds.
        self._plans_written: dict[str, ImagePlan] = {}
        identity = {"sheet_sha256": sheet_sha256, "endpoint": endpoint}
        _refuse_folder(path)
        _remove_stale_copies(path)
        restored = [] if restart else self._load(identity, ledger)
        if self.damaged:
            log.warning(
                "the journal at %s: ignored %d damaged line(s) (a line torn by a "
                "killed run is normal)",
                path,
                self.damaged,
            )
        # What an earlier run left is carried into a fresh journal, which replaces the old
        # one only once it is complete: a kill in between loses nothing.
        self._file = self._create_fresh(identity, restored)
        self._on_failure = on_failure
        self._ledger = ledger
        ledger.listen(self._append)

    def _append(self, event: Event, entry: Entry, outcome: Outcome | None) -> None:
        if event == Event.SENDING:
            self.sending(entry.image_id, self._plan_once(entry), entry.sent_at)
        elif event == Event.OUTCOME and outcome is not None:
            written, plan = self._plans_written.pop(entry.image_id, None), entry.plan
            if plan is None or plan is written:
                self.outcome(outcome, in_doubt=entry.in_doubt)
            elif (
                written is not None
                and outcome.status == Status.SUCCEEDED
                and plan is written.all_applied()
            ):
                self.outcome(outcome, in_doubt=entry.in_doubt, all_applied=True)
            else:
                self.outcome(outcome, plan_to_json(plan), in_doubt=entry.in_doubt)

    def _plan_once(self, entry: Entry) -> dict[str, Any] | None:
        """The plan for ``entry``'s ``sending`` line; None when the image's latest line
        holds it already."""
        plan = entry.plan
        if plan is None or self._plans_written.get(entry.image_id) is plan:
            return None
        self._plans_written[entry.image_id] = plan
        return plan_to_json(plan)

    def _create_fresh(self, identity: dict[str, str], restored: Iterable[Entry]) -> int:
        """A new journal holding the header and the ``restored`` entries, renamed into place.

        It is made by ``mkstemp`` (a new file, never a planted symlink) beside ``path``."""
        try:
            descriptor, name = tempfile.mkstemp(
                dir=self.path.parent, suffix=_FRESH_SUFFIX, prefix=f".{self.path.name}."
            )
        except OSError as error:
            raise self._unwritable(error) from None
        fresh = Path(name)
        self._file = descriptor
        self._write({"format": FORMAT, **identity})
        for entry in restored:
            if entry.outcome is not None:
                self.outcome(entry.outcome, _plan_json(entry))
            else:  # in doubt: sent when it was sent, not now
                self.sending(entry.image_id, _plan_json(entry), entry.sent_at)
        try:
            if self.error is None:
                os.replace(fresh, self.path)
        except OSError as error:
            self.error = error
        if self.error is not None:
            with contextlib.suppress(OSError):
                os.close(descriptor)
            fresh.unlink(missing_ok=True)
            raise self._unwritable(self.error)
        return descriptor

    def _unwritable(self, error: OSError) -> WriteFailed:
        return WriteFailed(
            f"cannot write the journal at {self.path}: "
            f"{error.strerror or error} — nothing was sent; free space (or "
            "fix the folder's permissions) and rerun"
        )

    def sending(
        self, image_id: str, plan: dict[str, Any] | None = None, at: float | None = None
    ) -> None:
        """A PATCH of ``image_id`` is about to go out (or went out ``at``, epoch seconds),
        carrying ``plan``'s changes."""
        entry: dict[str, Any] = {"event": "sending", "image_id": image_id}
        entry["at"] = round(time.time() if at is None else at, 3)
        if plan is not None:
            entry["plan"] = plan
        self._write(entry)

    def outcome(
        self,
        outcome: Outcome,
        plan: dict[str, Any] | None = None,
        *,
        in_doubt: bool | None = None,
        all_applied: bool = False,
    ) -> None:
        """``outcome`` is final for this run; ``plan`` decides its rows (None: the plan of
        the image's latest line, with every change still to send in place when
        ``all_applied``).  ``in_doubt``: its last write may have been applied and no
        read-back settled it (default: the outcome got no answer)."""
        entry: dict[str, Any] = {  # every field of ``Outcome``, written out (no loop over them)
            "event": "outcome",
            "image_id": outcome.image_id,
            "status": outcome.status.value,
            "http_status": outcome.http_status,
            "error_code": outcome.error_code,
            "error_message": outcome.error_message,
            "request_id": outcome.request_id,
            "attempts": outcome.attempts,
            "elapsed_ms": outcome.elapsed_ms,
            "parts": [_part_json(part) for part in outcome.parts],
        }
        if plan is not None:
            entry["plan"] = plan
        elif all_applied:
            entry["applied"] = True
        if in_doubt is not None:
            entry["in_doubt"] = in_doubt
        self._write(entry)

    def close(self, *, finished: bool) -> None:
        """Close; a finished run's journal is removed, an unfinished one kept for resume."""
        if self._file >= 0:  # not closed already
            descriptor, self._file = self._file, -1
            try:
                os.close(descriptor)
            except OSError as error:
                self._failed(error)
        if finished:
            self.path.unlink(missing_ok=True)

    def _write(self, entry: dict[str, Any]) -> None:
        """One line, handed to the OS at once (one ``write``, no buffer of ours): a kill
        after this returns loses nothing of it."""
        if self.error is not None:
            return  # after a failed write, a later line could follow a torn one
        data = fastjson.dumps_line(entry)
        try:
            while data:  # a short write (a disk filling up) is followed by the rest
                data = data[os.write(self._file, data) :]
        except OSError as error:
            self._failed(error)

    def _failed(self, error: OSError) -> None:
        """Nothing more is written, and the ledger is told so: no write of the run may
        start unrecorded (a resume would not know it went out, and send it again)."""
        if self._ledger is not None:
            self._ledger.unrecorded = True
        if self.error is None:
            self.error = error
            if self._on_failure is not None:
                self._on_failure(error)

    def _lines(self) -> list[str]:
        """The earlier journal's lines that hold a whole, well-formed entry.

        Damaged lines (torn by a kill, not UTF-8, not an entry, fields of the wrong kind)
        are counted in ``damaged``.  The file is opened without following a symlink, and
        only a regular file is read.
        """
        try:
            text = _read_text(self.path)
        except _Unreadable as unreadable:
            log.warning("the journal at %s %s; it is ignored and replaced", self.path, unreadable)
            return []
        lines = [] if text is None else text.split("\n")
        kept = [line for line in lines if line.strip() and _parse(line) is not None]
        self.damaged += sum(1 for line in lines if line.strip()) - len(kept)
        return kept

    def _load(self, identity: dict[str, str], ledger: Ledger) -> list[Entry]:
        """Restore into ``ledger`` what the earlier journal says: images done, then images
        in doubt (by id); the entries restored, in that order."""
        lines = self._lines()
        header = _parse(lines[0]) if lines else None
        if not header or header.get("format") != FORMAT:
            self._set_aside(header)
            return []  # not a journal of ours: start afresh
        if header.get("endpoint") != identity["endpoint"]:
            self.other_endpoint = str(header.get("endpoint"))
            return []  # another service's images: nothing here is about ours
        self.other_sheet = header.get("sheet_sha256") != identity["sheet_sha256"]
        found = _replay(lines[1:])
        done = [e for e in found.values() if e.outcome is not None]
        in_doubt = sorted((e for e in found.values() if e.in_doubt), key=lambda e: e.image_id)
        return [
            ledger.restore(e.image_id, e.outcome, e.plan, in_doubt=e.in_doubt, sent_at=e.sent_at)
            for e in done + in_doubt
        ]

    def _set_aside(self, header: dict[str, Any] | None) -> None:
        """Warn when the journal is one another version of batchpatch wrote: it is not read."""
        found = None if header is None else header.get("format")
        if isinstance(found, str) and found.startswith("batchpatch-journal/"):
            log.warning(
                "the journal at %s was written by another version of batchpatch "
                "(%s, this one reads %s): it is set aside and nothing in it is resumed",
                self.path,
                found,
                FORMAT,
            )


def unsettled_writes(path: Path) -> set[str] | None:
    """The images the unfinished run whose journal is at ``path`` left in doubt (its last
    write to each may have been applied, and no answer or read-back said); empty when there
    is no journal, None when the file cannot be read as one of ours.  Only read."""
    try:
        text = _read_text(path)
    except _Unreadable:
        return None
    if text is None:
        return set()
    lines = text.split("\n")
    header = _parse(lines[0])
    if not header or header.get("format") != FORMAT:
        return None
    return {entry.image_id for entry in _replay(lines[1:]).values() if entry.in_doubt}


class _Unreadable(Exception):
    """A journal that is there but cannot be read (its message says why)."""


def _read_text(path: Path) -> str | None:
    """The journal's text (None when there is none), opened without following a symlink;
    ``_Unreadable`` when it cannot be read or is not a regular file."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise _Unreadable(f"cannot be read ({error.strerror or error})") from None
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise _Unreadable("is not a regular file")
        return file.read().decode("utf-8", "surrogateescape")


def _part_json(part: PartOutcome) -> dict[str, Any]:
    """Every field of ``part``, for its outcome's line."""
    return {
        "part": part.part,
        "status": part.status.value,
        "http_status": part.http_status,
        "error_code": part.error_code,
        "error_message": part.error_message,
        "request_id": part.request_id,
    }


def _replay(lines: Iterable[str]) -> dict[str, Entry]:
    """Each image's fate as the journal's lines leave it, the latest line winning: its
    outcome when done, else whether it is in doubt; its latest plan; when it was last sent.
    The result's order is that of each image's last outcome that is done."""
    found: dict[str, Entry] = {}
    for line in lines:
        record = _parse(line)
        if record is None:
            continue
        entry = found.setdefault(record["image_id"], Entry(record["image_id"]))
        if isinstance(record.get("plan"), dict):
            entry.plan = _plan(record["plan"])
        elif record.get("applied") is True and record.get("event") == "outcome":
            entry.plan = None if entry.plan is None else entry.plan.all_applied()
        if record.get("event") == "sending":
            entry.outcome, entry.in_doubt = None, True
            entry.sent_at = _sent_at(record) or entry.sent_at
        elif record.get("event") == "outcome":
            _settle(entry, _outcome(record), record.get("in_doubt"))
            if entry.outcome is not None:  # done: last in order
                found[entry.image_id] = found.pop(entry.image_id)
    return found


def _settle(entry: Entry, outcome: Outcome, in_doubt: object) -> None:
    """Fold one recorded outcome into what is known: done, in doubt, or neither."""
    if outcome.status.done:
        entry.outcome, entry.in_doubt = outcome, False
    else:  # its write may have been applied: still in doubt
        entry.outcome = None
        entry.in_doubt = in_doubt if isinstance(in_doubt, bool) else outcome.maybe_applied


def _sent_at(record: dict[str, Any]) -> float | None:
    at = record.get("at")
    if isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at):
        return float(at)
    return None


def _plan(raw: dict[str, Any]) -> ImagePlan | None:
    """The plan a line records; None when it is damaged."""
    try:
        return plan_from_json(raw)
    except (KeyError, TypeError, ValueError):
        return None


def _plan_json(entry: Entry) -> dict[str, Any] | None:
    return None if entry.plan is None else plan_to_json(entry.plan)


def _refuse_folder(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        raise OptionsError.about(
            "report_path",
            str(path.with_name(path.name.removesuffix(".journal"))),
            lambda report: (
                f"{path} is a folder where the journal goes — move it away, or "
                f"choose another {report}"
            ),
            value_shown=False,
        )


def _remove_stale_copies(path: Path) -> None:
    """Remove fresh journals a killed run left unfinished (the caller holds the lock)."""
    pattern = f".{glob.escape(path.name)}.*{_FRESH_SUFFIX}"
    for stale in path.parent.glob(pattern):
        with contextlib.suppress(OSError):
            stale.unlink()  # a symlink is removed itself, never what it points to


def _parse(line: str) -> dict[str, Any] | None:
    """The entry on ``line``, or None when the line is damaged: torn by a crash, not UTF-8,
    not an object, or an event without an image id or with an outcome that cannot be read."""
    try:
        line.encode("utf-8")  # lone surrogates: bytes that were not UTF-8
        entry = fastjson.loads_text(line)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    event = entry.get("event")
    if event is None:
        return entry if "format" in entry else None  # the header
    image_id = entry.get("image_id")
    if event not in ("sending", "outcome") or not isinstance(image_id, str) or not image_id:
        return None
    if event == "outcome":
        try:
            _outcome(entry)
        except (ValueError, TypeError):
            return None
    return entry


def _outcome(entry: dict[str, Any]) -> Outcome:
    """The outcome an entry records; ``ValueError``/``TypeError`` when it holds none."""
    return Outcome(
        image_id=str(entry["image_id"]),
        status=Status(entry["status"]),
        http_status=_whole_or_none(entry.get("http_status")),
        error_code=_text(entry.get("error_code")),
        error_message=_text(entry.get("error_message")),
        request_id=_text(entry.get("request_id")),
        attempts=_whole_or_none(entry.get("attempts")) or 0,
        elapsed_ms=_whole_or_none(entry.get("elapsed_ms")),
        parts=tuple(_part(part) for part in entry.get("parts") or ()),
    )


def _part(entry: Any) -> PartOutcome:
    """One request's ending within an outcome (a PATCH, a tag call): ``TypeError`` or
    ``ValueError`` when it holds none."""
    if not isinstance(entry, dict):
        raise TypeError(f"expected a part outcome, got {entry!r}")
    return PartOutcome(
        part=_text(entry.get("part")),
        status=Status(entry["status"]),
        http_status=_whole_or_none(entry.get("http_status")),
        error_code=_text(entry.get("error_code")),
        error_message=_text(entry.get("error_message")),
        request_id=_text(entry.get("request_id")),
    )


def _whole_or_none(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a whole number, got {value!r}")
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {value!r}")
    return value
