"""A 2xx is success only when its body is the patched image: anything else is read back,
and the row reports what the image shows (or ``failed``, "unexpected answer")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from batchpatch.auth import TokenAuth
from batchpatch.client import (
    UNEXPECTED_ANSWER,
    UNPARSEABLE_ANSWER,
    ImsClient,
    classify_answer,
    patched_problem,
)
from batchpatch.fake import FakeConfig, running_fake
from batchpatch.retry import RetryPolicy, Verdict
from tests.e2e import TOKEN, main_exit_code
from tests.sheets import write_sheet
from tests.test_cli import read_report
from tests.wire import FAST_RETRIES, account

REMOVE_TEAM = [{"op": "remove", "path": "/team"}]


@pytest.mark.parametrize(
    ("fault", "code", "applied"),
    [
        pytest.param("wrong_id", UNEXPECTED_ANSWER, True, id="another-image"),
        pytest.param("error_200", UNEXPECTED_ANSWER, False, id="error-body"),
        pytest.param("empty_204", UNEXPECTED_ANSWER, True, id="empty-204"),
        pytest.param("not_json", UNPARSEABLE_ANSWER, True, id="not-json"),
        pytest.param("deep_body", UNPARSEABLE_ANSWER, True, id="deep-json"),
        pytest.param("bad_encoding", UNPARSEABLE_ANSWER, True, id="not-utf8"),
        pytest.param("ok", "", True, id="the-patched-image"),
    ],
)
def test_a_2xx_counts_only_with_the_patched_image(fault: str, code: str, applied: bool) -> None:
    images = account(1)
    image_id = images[0]["id"]
    config = FakeConfig(token=TOKEN, script={image_id: [fault]})

    async def patch(url: str) -> Any:
        async with ImsClient(url, TokenAuth(TOKEN), timeout=10, connections=1) as client:
            return await client.update_image(image_id, REMOVE_TEAM)

    with running_fake(images, config) as fake:
        response = anyio.run(patch, fake.url)
        state = fake.store.images[image_id]
    assert response.error_code == code
    assert response.ok is (code == "")
    verdict = RetryPolicy().verdict(classify_answer(response))
    assert verdict == (Verdict.OK if not code else Verdict.AMBIGUOUS)
    assert ("team" not in state) is applied
    if code:
        assert response.error_message.startswith(("unexpected answer", "unparseable answer"))


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        pytest.param({"id": "x", "team": "new"}, "", id="as-sent"),
        pytest.param({"id": "x", "team": "other"}, "team is not the value sent", id="value"),
        pytest.param({"id": "y", "team": "new"}, "body of image 'y'", id="other-id"),
        pytest.param({"id": "x", "team": "new", "gone": "1"}, "still has gone", id="not-removed"),
        pytest.param({"id": "x", "team": "new", "flag": True}, "", id="flag-shown-as-bool"),
        pytest.param([], "no image in the body", id="a-list"),
        pytest.param(
            {"error_code": "APIGW.0301", "error_msg": "no"}, "an error body", id="gateway-error"
        ),
    ],
)
def test_the_body_must_show_every_value_sent(body: Any, problem: str) -> None:
    operations = [
        {"op": "replace", "path": "/team", "value": "new"},
        {"op": "remove", "path": "/gone"},
        {"op": "add", "path": "/flag", "value": "true"},
    ]
    if problem == "" and isinstance(body, dict) and "flag" not in body:
        operations = operations[:2]
    found = patched_problem(200, body, "x", operations)
    assert (problem in found) if problem else found == ""


def test_unexpected_answers_are_read_back_and_end_in_the_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = account(6)
    ids = [image["id"] for image in images]
    script = {
        ids[0]: ["wrong_id"],  # applied: reading back shows it
        ids[1]: ["error_200"],  # not applied: read back, sent again
        ids[2]: ["empty_204"],  # applied
        ids[3]: ["not_json"],  # applied
        ids[4]: ["error_200"] * 3,  # never applied: failed, "unexpected answer"
        ids[5]: ["gzip_huge"],  # applied; a gzip bomb answer is not read whole
    }
    sheet = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "op", "path", "value"],
        [[image_id, "remove", "/team", ""] for image_id in ids],
    )
    config = FakeConfig(token=TOKEN, script=script, huge_bytes=17 * 1024 * 1024)
    with running_fake(images, config) as fake:
        code = main_exit_code(
            monkeypatch,
            [
                "apply",
                str(sheet),
                "--endpoint",
                fake.url,
                "--max-attempts",
                "3",
                "--quiet",
                *FAST_RETRIES,
            ],
            {"BATCHPATCH_AUTH_TOKEN": TOKEN},
        )
        applied = fake.stats.snapshot().applied_by_image
        state = fake.store.images
    assert code == 1
    report = read_report(tmp_path / "s.results.csv")
    assert report["status"].tolist() == ["succeeded"] * 4 + ["failed", "succeeded"]
    assert report["attempts"].tolist() == ["1", "2", "1", "1", "3", "1"]
    assert report.loc[4, "error_message"].startswith("unexpected answer")
    assert report.loc[4, "error_code"] == UNEXPECTED_ANSWER
    assert "may or may not" not in report.loc[4, "error_message"]
    assert dict(applied) == {image_id: 1 for image_id in ids if image_id != ids[4]}
    assert ["team" in state[image_id] for image_id in ids] == [False] * 4 + [True, False]
