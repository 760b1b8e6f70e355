"""The one record of each image's fate in a run, which everything else reads.

An entry holds the plan its rows are judged by, where the image stands (planned, being
sent, finished), its outcome, and whether its last write may have been applied without
anyone knowing yet (``in_doubt``).  The journal persists the ledger's events and loads them
back into a ledger; progress, the stop thresholds, the report's rows and the summary's
counts are all read from it.  Nothing else keeps per-image outcomes or counts, so no view
can drift from another.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum

from batchpatch.models import Outcome, Status
from batchpatch.plan import ImagePlan


class Stage(Enum):
    """Where an image stands in this run."""

    PLANNED = "planned"
    SENDING = "sending"
    FINISHED = "finished"


@dataclass(slots=True)
class Entry:
    """One image's fate.  ``earlier``: its outcome was restored from an earlier run's
    journal, not reached by this run.  ``sent_at``: when (epoch seconds) its latest write
    went out, by this run or, restored, by the earlier one; None if none did or the journal
    does not say."""

    image_id: str
    plan: ImagePlan | None = None
    stage: Stage = Stage.PLANNED
    outcome: Outcome | None = None
    in_doubt: bool = False
    earlier: bool = False
    sent_at: float | None = None
    #: Listeners were told of its outcome (or of what its plan decided).
    announced: bool = False


class Event(Enum):
    """What listeners are told.  The journal writes ``SENDING`` and ``OUTCOME``; progress
    counts ``OUTCOME`` and ``SETTLED`` (an image settled without a write of this run)."""

    SENDING = "sending"
    OUTCOME = "outcome"
    SETTLED = "settled"


#: Told of each event as it happens: the entry after the change, and the outcome it is
#: told of (for ``SENDING``, the entry's outcome so far, usually None).
Listener = Callable[[Event, Entry, "Outcome | None"], None]


@dataclass
class Tally:
    """Counts of outcomes reached by this run (not restored ones): what thresholds read."""

    finished: int = 0
    failed: int = 0
    succeeded: int = 0
    by_status: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: Outcome) -> None:
        self.finished += 1
        self.by_status[str(outcome.status)] += 1
        if outcome.status == Status.SUCCEEDED:
            self.succeeded += 1
        elif outcome.status == Status.FAILED:
            self.failed += 1


class Ledger:
    """Each image's fate, by image id, in the order images were entered."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._listeners: list[Listener] = []
        #: Outcomes this run reached (restored ones are not counted).
        self.tally = Tally()
        #: Every outcome listeners were told of, by status: what progress shows.
        self.progress: Counter[str] = Counter()
        #: Set by the listener that keeps the record (the journal) once it cannot: a write
        #: it was not told of would be unknown to a resume, so no write may start after.
        self.unrecorded = False

    def listen(self, listener: Listener) -> None:
        """Tell ``listener`` of every later ``sending`` and ``outcome`` (the journal,
        progress)."""
        self._listeners.append(listener)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, image_id: str) -> Entry | None:
        return self._entries.get(image_id)

    def entry(self, image_id: str) -> Entry:
        """The entry of ``image_id``, made when there is none yet."""
        found = self._entries.get(image_id)
        if found is None:
            found = self._entries[image_id] = Entry(image_id)
        return found

    # -- events ------------------------------------------------------------------------

    def plan(self, plan: ImagePlan) -> Entry:
        """``plan`` is what the image's rows are judged by from now on."""
        entry = self.entry(plan.image_id)
        entry.plan = plan
        return entry

    def sending(self, plan: ImagePlan) -> bool:
        """A write carrying ``plan``'s changes is about to go out: in doubt until answered.

        False when it could not be recorded (``unrecorded``, now or before): then it must
        not go out, and the image is left as it was."""
        entry = self.plan(plan)
        if self.unrecorded:
            return False
        before = entry.stage, entry.in_doubt, entry.sent_at
        entry.stage, entry.in_doubt = Stage.SENDING, True
        entry.sent_at = time.time()
        self._tell(Event.SENDING, entry, entry.outcome)
        if self.unrecorded:
            entry.stage, entry.in_doubt, entry.sent_at = before
            return False
        return True

    def answered(self, image_id: str, *, in_doubt: bool) -> None:
        """An answer (or a read-back) says whether the image's last write is in doubt."""
        self.entry(image_id).in_doubt = in_doubt

    def finish(
        self,
        outcome: Outcome,
        plan: ImagePlan | None = None,
        *,
        in_doubt: bool = False,
        counted: bool = True,
        event: Event | None = Event.OUTCOME,
    ) -> Entry:
        """``outcome`` is final for this run; ``in_doubt``: its last write may have been
        applied and nothing settled it.  ``counted`` False keeps it out of the tally (an
        image settled before sending began); ``event`` None tells no listener (a dry run)."""
        entry = self.entry(outcome.image_id)
        entry.plan = plan or entry.plan
        entry.stage, entry.outcome, entry.in_doubt = Stage.FINISHED, outcome, in_doubt
        entry.earlier = False
        if counted:
            self.tally.add(outcome)
        if event is not None:
            self._tell(event, entry, outcome)
        return entry

    def announce(self, entry: Entry, outcome: Outcome | None = None) -> None:
        """Tell listeners (progress) that ``entry`` is settled without a write of this run:
        with its outcome, or ``outcome`` (what its plan decided)."""
        self._tell(Event.SETTLED, entry, outcome or entry.outcome)

    def restore(
        self,
        image_id: str,
        outcome: Outcome | None,
        plan: ImagePlan | None,
        *,
        in_doubt: bool,
        sent_at: float | None = None,
    ) -> Entry:
        """What an earlier run's journal says of an image, told to no listener."""
        entry = self.entry(image_id)
        entry.plan = plan or entry.plan
        entry.outcome, entry.in_doubt, entry.earlier = outcome, in_doubt, outcome is not None
        entry.sent_at = sent_at if sent_at is not None else entry.sent_at
        entry.stage = (
            Stage.FINISHED
            if outcome is not None
            else (Stage.SENDING if in_doubt else Stage.PLANNED)
        )
        return entry

    def keep_only(self, image_ids: Iterable[str]) -> None:
        """Keep the entries of ``image_ids`` (the sheet's), in that order, and drop the
        rest: an earlier run's image the sheet no longer names is neither sent nor
        reported by this run (its journal keeps it)."""
        entries = self._entries
        self._entries = {i: entries[i] for i in image_ids if i in entries}

    def _tell(self, event: Event, entry: Entry, outcome: Outcome | None) -> None:
        if event != Event.SENDING and outcome is not None:
            entry.announced = True
            self.progress[str(outcome.status)] += 1
        for listener in self._listeners:
            listener(event, entry, outcome)

    # -- views -------------------------------------------------------------------------

    def outcomes(self) -> dict[str, Outcome]:
        """Every image's outcome, restored or reached."""
        return {e.image_id: e.outcome for e in self if e.outcome is not None}

    def done(self) -> dict[str, Outcome]:
        """Outcomes that are done (not to be sent again)."""
        return {i: o for i, o in self.outcomes().items() if o.status.done}

    def in_doubt(self) -> set[str]:
        """Images whose last write may have been applied and was never settled."""
        return {e.image_id for e in self if e.in_doubt and not _done(e)}

    def last_doubtful_write(self) -> float | None:
        """When (epoch seconds) the latest write still in doubt went out; None if no image
        is in doubt, or none says when."""
        times = [e.sent_at for e in self if e.in_doubt and not _done(e) and e.sent_at is not None]
        return max(times, default=None)

    def plans(self) -> dict[str, ImagePlan]:
        return {e.image_id: e.plan for e in self if e.plan is not None}

    def plan_of(self, image_id: str) -> ImagePlan | None:
        entry = self._entries.get(image_id)
        return entry.plan if entry is not None else None

    def outcome_of(self, image_id: str) -> Outcome | None:
        entry = self._entries.get(image_id)
        return entry.outcome if entry is not None else None


def _done(entry: Entry) -> bool:
    return entry.outcome is not None and entry.outcome.status.done
