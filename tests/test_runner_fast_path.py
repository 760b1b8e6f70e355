"""A lone PATCH that succeeds at once skips the retry loop: its outcome is the one the loop
would have made (``outcome_of``, then ``combined``), field for field."""

from __future__ import annotations

import dataclasses

import pytest

from batchpatch.models import ImagePatch, Operation
from batchpatch.plan import UPDATE, mark_done, unplanned
from batchpatch.runner import _patched, _Work, combined, outcome_of
from batchpatch.service import AnswerKind, ApiResponse

IMAGE = "00000000-0000-4000-8000-00000000000a"
PATCH = ImagePatch(
    IMAGE, (Operation("replace", "/name", "n"), Operation("add", "/__os_bit", "64")), (2, 3)
)


@pytest.mark.parametrize(
    "answer",
    [
        ApiResponse(200, {"id": IMAGE, "name": "n", "__os_bit": "64"}, request_id="req-1"),
        ApiResponse(204, None, "", "a note the service gave", "req-2"),
    ],
)
def test_the_fast_outcome_is_the_loops(answer: ApiResponse) -> None:
    plan = unplanned(PATCH)
    work = _Work(plan)
    work.sent = 1
    fast = _patched(work, answer)
    elapsed = fast.elapsed_ms or 0
    outcome = outcome_of(plan.patch, answer, 1, elapsed, kind=AnswerKind.OK)
    loop, _ = combined(mark_done(plan, {UPDATE}), [(UPDATE, outcome, AnswerKind.OK)], 1, elapsed)
    assert dataclasses.asdict(fast) == dataclasses.asdict(loop)
    assert work.plan == mark_done(plan, {UPDATE})
