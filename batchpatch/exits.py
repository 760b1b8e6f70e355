"""Exit codes, and the rules that choose them for ``apply`` and ``plan``: one place.

0: every row succeeded or was already as asked; 1: finished, but some rows were not done;
2: invalid input or options, nothing was sent; 3: stopped early (the report covers every
row).  See the README.
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
EXIT_MEANINGS = {
    EXIT_OK: "every row succeeded or was already as asked",
    EXIT_ROWS_NOT_DONE: "finished, but some rows were not done (failed or skipped)",
    EXIT_INVALID: "invalid input or options; nothing was sent",
    EXIT_STOPPED: "stopped early; the report covers every row",
}


def apply_exit_code(statuses: Iterable[Status], *, stopped: bool) -> int:
    """``apply``: 3 when the run stopped early, else 0 when every row is done, else 1."""
    if stopped:
        return EXIT_STOPPED
    return EXIT_OK if all(status.done for status in statuses) else EXIT_ROWS_NOT_DONE


def plan_exit_code(plans: Sequence[ImagePlan]) -> int:
    """``plan``: 1 when some image cannot be changed (not found, not active), else 0."""
    blocked = any(plan.status in (Status.FAILED, Status.SKIPPED) for plan in plans)
    return EXIT_ROWS_NOT_DONE if blocked else EXIT_OK


def error_exit_code(error: BaseException) -> int | None:
    """The exit code of a run that ended in ``error`` instead of a result: 2 for bad input
    or options (nothing was sent), 3 for a run stopped early (also by a signal outside the
    run); None for anything else, which is a bug and must not be dressed as a verdict."""
    if isinstance(error, InputError):
        return EXIT_INVALID
    if isinstance(error, RunAborted | KeyboardInterrupt):
        return EXIT_STOPPED
    return None
