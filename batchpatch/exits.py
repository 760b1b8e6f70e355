"""Exit codes, and the rules that choose them for ``apply`` and ``plan``: one place.

0: every row succeeded or was already as asked; 1: finished, but some rows were not done;
2: invalid input or options, nothing was sent; 3: stopped early (the report covers every
row); 4: ``plan --detailed-exitcode`` only, changes are pending.  See the README.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from batchpatch.errors import InputError, RunAborted
from batchpatch.models import Status
from batchpatch.plan import ImagePlan

EXIT_OK = 0
EXIT_ROWS_NOT_DONE = 1
EXIT_INVALID = 2
EXIT_STOPPED = 3
EXIT_CHANGES_PENDING = 4
EXIT_MEANINGS = {
    EXIT_OK: "every row succeeded or was already as asked",
    EXIT_ROWS_NOT_DONE: "finished, but some rows were not done (failed or skipped)",
    EXIT_INVALID: "invalid input or options; nothing was sent",
    EXIT_STOPPED: "stopped early; the report covers every row",
    EXIT_CHANGES_PENDING: "the plan has changes to send (plan --detailed-exitcode)",
}


def apply_exit_code(statuses: Iterable[Status], *, stopped: bool) -> int:
    """``apply``: 3 when the run stopped early, else 0 when every row is done, else 1."""
    if stopped:
        return EXIT_STOPPED
    return EXIT_OK if all(status.done for status in statuses) else EXIT_ROWS_NOT_DONE


def plan_exit_code(plans: Sequence[ImagePlan], *, detailed: bool = False) -> int:
    """``plan``: 1 when some image cannot be changed (not found, not active), else 0.

    ``detailed`` (``--detailed-exitcode``, for a drift check that gates on the plan) tells
    "nothing would change" (0) from "changes are pending" (4).  An image that cannot be
    changed still gives 1 first: the plan is incomplete, and a gate must not read it as
    mere drift."""
    blocked = any(plan.status in (Status.FAILED, Status.SKIPPED) for plan in plans)
    if blocked:
        return EXIT_ROWS_NOT_DONE
    pending = any(plan.status is None for plan in plans)
    return EXIT_CHANGES_PENDING if detailed and pending else EXIT_OK


def error_exit_code(error: BaseException) -> int | None:
    """The exit code of a run that ended in ``error`` instead of a result: 2 for bad input
    or options (nothing was sent), 3 for a run stopped early (also by a signal outside the
    run); None for anything else, which is a bug and must not be dressed as a verdict."""
    if isinstance(error, InputError):
        return EXIT_INVALID
    if isinstance(error, RunAborted | KeyboardInterrupt):
        return EXIT_STOPPED
    return None
