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
tells ``on_failure`` (``apply_sheet`` then starts no new request).

The journal is the ledger's persistence (``ledger.Ledger``): ``attach`` appends each of a
run's ledger events as it happens, and what an earlier run left is loaded back into a ledger
(``earlier``), of which ``recorded`` and ``in_doubt`` are views.

On resume, images whose recorded outcome is done are not sent again, and images that were
being sent when the run died, or whose last write got an answer that may not tell the truth
(no answer, a 502 …) and was not settled by reading the image back, are read back before
anything is sent.

Each ``sending`` and ``outcome`` line also holds the image's plan as it stood (``plan``: the
before values, and which changes were already in place), so a resumed run reports every row
as the run that did the work saw it — ``unchanged`` stays ``unchanged``, ``before`` is kept —
and a read-back can tell which changes the dead run's write carried.

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
import json
import logging
import math
import os
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from batchpatch.errors import OptionsError, WriteFailed
from batchpatch.ledger import Entry, Event, Ledger
from batchpatch.models import Outcome, Status
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
    """Appends a run's events to ``path``; ``recorded`` holds what an earlier run left."""

    def __init__(
        self,
        path: Path,
        *,
        sheet_sha256: str,
        endpoint: str,
        restart: bool = False,
        on_failure: Callable[[OSError], None] | None = None,
    ) -> None:
        """Open a fresh journal at ``path``, carrying over what an earlier run left there.

        Raises ``OptionsError`` when a folder is in the way and ``WriteFailed`` when the
        journal cannot be written (nothing has been sent then).  Once open, a failed write
        never raises: it is kept in ``error`` and handed to ``on_failure`` (say, to stop
        the run), and nothing more is written.
        """
        self.path = path
        #: What the earlier run's journal holds: outcomes that are done, images in doubt.
        self.earlier = Ledger()
        #: Lines of the earlier journal that were ignored as damaged.
        self.damaged = 0
        #: The first write that failed, if any.
        self.error: OSError | None = None
        self._on_failure: Callable[[OSError], None] | None = None
        #: The latest plan recorded for each image, as ``plan.plan_to_json`` wrote it.
        self.plans: dict[str, dict[str, Any]] = {}
        #: When the earlier run sent each image's latest write (epoch seconds).
        self.sent_at: dict[str, float] = {}
        self.other_sheet = False
        self.other_endpoint = ""
        identity = {"sheet_sha256": sheet_sha256, "endpoint": endpoint}
        _refuse_folder(path)
        _remove_stale_copies(path)
        if not restart:
            self._load(identity)
        if self.damaged:
            log.warning(
                "the journal at %s: ignored %d damaged line(s) (a line torn by a "
                "killed run is normal)",
                path,
                self.damaged,
            )
        # What an earlier run left is carried into a fresh journal, which replaces the old
        # one only once it is complete: a kill in between loses nothing.
        self._file = self._create_fresh(identity)
        self._on_failure = on_failure

    @property
    def recorded(self) -> dict[str, Outcome]:
        """Images the earlier run finished (done), by id."""
        return self.earlier.done()

    @property
    def in_doubt(self) -> set[str]:
        """Images the earlier run was writing, or whose write may have been applied."""
        return self.earlier.in_doubt()

    @property
    def last_doubtful_write(self) -> float | None:
        """When (epoch seconds) the earlier run last sent a write still in doubt; None if
        it sent none, or the journal does not say."""
        return max((self.sent_at[i] for i in self.in_doubt if i in self.sent_at), default=None)

    def attach(self, ledger: Ledger) -> None:
        """Append each of ``ledger``'s later events (a PATCH sent, an outcome) as it happens."""
        ledger.listen(self._append)

    def _append(self, event: Event, entry: Entry, outcome: Outcome | None) -> None:
        plan = None if entry.plan is None else plan_to_json(entry.plan)
        if event == Event.SENDING:
            self.sending(entry.image_id, plan)
        elif event == Event.OUTCOME and outcome is not None:
            self.outcome(outcome, plan, in_doubt=entry.in_doubt)

    def _create_fresh(self, identity: dict[str, str]) -> IO[str]:
        """A new journal holding the header and what was carried over, renamed into place.

        It is made by ``mkstemp`` (a new file, never a planted symlink) beside ``path``."""
        try:
            descriptor, name = tempfile.mkstemp(
                dir=self.path.parent, suffix=_FRESH_SUFFIX, prefix=f".{self.path.name}."
            )
        except OSError as error:
            raise self._unwritable(error) from None
        fresh = Path(name)
        file = os.fdopen(descriptor, "w", encoding="utf-8")
        self._file = file
        self._write({"format": FORMAT, **identity})
        for outcome in self.recorded.values():
            self.outcome(outcome, self.plans.get(outcome.image_id))
        for image_id in sorted(self.in_doubt):  # when it was sent, not now
            self.sending(image_id, self.plans.get(image_id), self.sent_at.get(image_id))
        try:
            if self.error is None:
                os.replace(fresh, self.path)
        except OSError as error:
            self.error = error
        if self.error is not None:
            with contextlib.suppress(OSError):
                file.close()
            fresh.unlink(missing_ok=True)
            raise self._unwritable(self.error)
        return file

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
        self._write(
            {
                "event": "sending",
                "image_id": image_id,
                "at": round(time.time() if at is None else at, 3),
            }
            | ({} if plan is None else {"plan": plan})
        )

    def outcome(
        self, outcome: Outcome, plan: dict[str, Any] | None = None, *, in_doubt: bool | None = None
    ) -> None:
        """``outcome`` is final for this run; ``plan`` decides its rows.  ``in_doubt``: its
        last write may have been applied and no read-back settled it (default: the outcome
        got no answer)."""
        entry = {"event": "outcome", **asdict(outcome), "status": str(outcome.status)}
        if plan is not None:
            entry["plan"] = plan
        if in_doubt is not None:
            entry["in_doubt"] = in_doubt
        self._write(entry)

    def close(self, *, finished: bool) -> None:
        """Close; a finished run's journal is removed, an unfinished one kept for resume."""
        try:
            self._file.close()
        except OSError as error:  # the last lines could not be flushed
            self._failed(error)
        if finished:
            self.path.unlink(missing_ok=True)

    def _write(self, entry: dict[str, Any]) -> None:
        if self.error is not None:
            return  # after a failed write, a later line could follow a torn one
        try:
            self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self._file.flush()
        except OSError as error:
            self._failed(error)

    def _failed(self, error: OSError) -> None:
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
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            descriptor = os.open(self.path, flags)
        except FileNotFoundError:
            return []
        except OSError as error:
            log.warning(
                "the journal at %s cannot be read (%s); it is ignored and replaced",
                self.path,
                error.strerror or error,
            )
            return []
        with os.fdopen(descriptor, "rb") as file:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                log.warning(
                    "the journal at %s is not a regular file; it is ignored and replaced", self.path
                )
                return []
            data = file.read()
        lines = data.decode("utf-8", "surrogateescape").split("\n")
        kept = [line for line in lines if line.strip() and _parse(line) is not None]
        self.damaged += sum(1 for line in lines if line.strip()) - len(kept)
        return kept

    def _load(self, identity: dict[str, str]) -> None:
        lines = self._lines()
        header = _parse(lines[0]) if lines else None
        if not header or header.get("format") != FORMAT:
            self._set_aside(header)
            return  # not a journal of ours: start afresh
        if header.get("endpoint") != identity["endpoint"]:
            self.other_endpoint = str(header.get("endpoint"))
            return  # another service's images: nothing here is about ours
        self.other_sheet = header.get("sheet_sha256") != identity["sheet_sha256"]
        recorded: dict[str, Outcome] = {}
        sending: set[str] = set()
        for line in lines[1:]:
            entry = _parse(line)
            if entry is None:
                continue
            if isinstance(entry.get("plan"), dict):
                self.plans[str(entry.get("image_id"))] = entry["plan"]
            if entry.get("event") == "sending":
                sending.add(entry["image_id"])
                self._note_sent_at(entry)
            elif entry.get("event") == "outcome":
                _settle(_outcome(entry), entry.get("in_doubt"), recorded, sending)
        for image_id, outcome in recorded.items():
            self.earlier.restore(image_id, outcome, self._plan(image_id), in_doubt=False)
        for image_id in sorted(sending - recorded.keys()):
            self.earlier.restore(image_id, None, self._plan(image_id), in_doubt=True)

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

    def _note_sent_at(self, entry: dict[str, Any]) -> None:
        at = entry.get("at")
        if isinstance(at, int | float) and not isinstance(at, bool) and math.isfinite(at):
            self.sent_at[entry["image_id"]] = float(at)

    def _plan(self, image_id: str) -> ImagePlan | None:
        """The latest plan recorded for ``image_id``; None when none was, or it is damaged."""
        raw = self.plans.get(image_id)
        try:
            return None if raw is None else plan_from_json(raw)
        except (KeyError, TypeError, ValueError):
            return None


def _settle(
    outcome: Outcome, in_doubt: object, recorded: dict[str, Outcome], sending: set[str]
) -> None:
    """Fold one recorded outcome into what is known: done, in doubt, or neither."""
    recorded.pop(outcome.image_id, None)
    if outcome.status.done:
        recorded[outcome.image_id] = outcome
        sending.discard(outcome.image_id)
    elif in_doubt if isinstance(in_doubt, bool) else outcome.maybe_applied:
        sending.add(outcome.image_id)  # its write may have been applied: still in doubt
    else:
        sending.discard(outcome.image_id)


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
        entry = json.loads(line)
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
