"""A crash-safe record of a run, so a rerun picks up where a stopped run left off.

One JSON object per line, appended and flushed as things happen: a header naming the sheet
(by SHA-256) and the endpoint, ``sending`` before each PATCH, and each image's outcome.  A
``kill -9`` at any moment loses no recorded outcome; at worst the last line is torn, and a
torn line is ignored on reading.  The journal is removed once a run finishes; only an
unfinished run leaves one behind.

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
new port, and a fresh service, every run).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from batchpatch.models import Outcome, Status

FORMAT = "batchpatch-journal/1"


def journal_path(report_path: Path) -> Path:
    """The journal lives beside the report: ``changes.results.csv.journal``."""
    return report_path.with_name(report_path.name + ".journal")


class Journal:
    """Appends a run's events to ``path``; ``recorded`` holds what an earlier run left."""

    def __init__(self, path: Path, *, sheet_sha256: str, endpoint: str,
                 restart: bool = False) -> None:
        self.path = path
        self.recorded: dict[str, Outcome] = {}
        self.in_doubt: set[str] = set()
        #: The latest plan recorded for each image, as ``plan.plan_to_json`` wrote it.
        self.plans: dict[str, dict[str, Any]] = {}
        self.other_sheet = False
        self.other_endpoint = ""
        identity = {"sheet_sha256": sheet_sha256, "endpoint": endpoint}
        if path.exists() and not restart:
            self._load(identity)
        # What an earlier run left is carried into a fresh journal, which replaces the old
        # one only once it is complete: a kill in between loses nothing.
        fresh = path.with_name(path.name + ".new")
        self._file: IO[str] = fresh.open("w", encoding="utf-8")
        self._write({"format": FORMAT, **identity})
        for outcome in self.recorded.values():
            self.outcome(outcome, self.plans.get(outcome.image_id))
        for image_id in self.in_doubt:
            self.sending(image_id, self.plans.get(image_id))
        os.replace(fresh, path)

    def sending(self, image_id: str, plan: dict[str, Any] | None = None) -> None:
        """A PATCH of ``image_id`` is about to go out, carrying ``plan``'s changes."""
        self._write({"event": "sending", "image_id": image_id}
                    | ({} if plan is None else {"plan": plan}))

    def outcome(self, outcome: Outcome, plan: dict[str, Any] | None = None, *,
                in_doubt: bool | None = None) -> None:
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
        self._file.close()
        if finished:
            self.path.unlink(missing_ok=True)

    def _write(self, entry: dict[str, Any]) -> None:
        self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._file.flush()

    def _load(self, identity: dict[str, str]) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        header = _parse(lines[0]) if lines else None
        if not header or header.get("format") != FORMAT:
            return  # not a journal of ours: start afresh
        if header.get("endpoint") != identity["endpoint"]:
            self.other_endpoint = str(header.get("endpoint"))
            return  # another service's images: nothing here is about ours
        self.other_sheet = header.get("sheet_sha256") != identity["sheet_sha256"]
        sending: set[str] = set()
        for line in lines[1:]:
            entry = _parse(line)
            if entry is None:
                continue
            if isinstance(entry.get("plan"), dict):
                self.plans[str(entry.get("image_id"))] = entry["plan"]
            if entry.get("event") == "sending":
                sending.add(entry["image_id"])
            elif entry.get("event") == "outcome":
                self._settle(_outcome(entry), entry.get("in_doubt"), sending)
        self.in_doubt = sending - self.recorded.keys()

    def _settle(self, outcome: Outcome, in_doubt: object, sending: set[str]) -> None:
        """Fold one recorded outcome into what is known: done, in doubt, or neither."""
        self.recorded.pop(outcome.image_id, None)
        if outcome.status.done:
            self.recorded[outcome.image_id] = outcome
            sending.discard(outcome.image_id)
        elif in_doubt if isinstance(in_doubt, bool) else outcome.maybe_applied:
            sending.add(outcome.image_id)  # its write may have been applied: still in doubt
        else:
            sending.discard(outcome.image_id)


def _parse(line: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None  # a line torn by a crash
    return entry if isinstance(entry, dict) else None


def _outcome(entry: dict[str, Any]) -> Outcome:
    return Outcome(
        image_id=str(entry["image_id"]),
        status=Status(entry["status"]),
        http_status=entry.get("http_status"),
        error_code=str(entry.get("error_code", "")),
        error_message=str(entry.get("error_message", "")),
        request_id=str(entry.get("request_id", "")),
        attempts=int(entry.get("attempts", 0)),
        elapsed_ms=entry.get("elapsed_ms"),
    )

