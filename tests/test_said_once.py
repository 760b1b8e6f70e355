"""Messages say each status, and each error code, once: a ListImages answer that cannot be
parsed stops the run with "HTTP 200" and "unparseable answer" named a single time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from batchpatch.client import check_patched
from batchpatch.fake import FakeConfig, running_fake
from batchpatch.service import UNEXPECTED_ANSWER, ApiResponse
from tests.e2e import TOKEN, main_exit_code
from tests.sheets import write_sheet
from tests.wire import account

MB = 1024 * 1024


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param("not_json", id="not-json"),
        pytest.param("huge_body", id="huge"),
        pytest.param("deep_body", id="deep"),
        pytest.param("bad_encoding", id="encoding"),
    ],
)
def test_an_unreadable_list_answer_names_its_status_and_code_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    answer: str,
) -> None:
    images = account(1)
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "team"], [[images[0]["id"], "new"]])
    config = FakeConfig(token=TOKEN, list_answer=answer, huge_bytes=17 * MB)
    with running_fake(images, config) as fake:
        code = main_exit_code(
            monkeypatch,
            ["apply", str(sheet), "--endpoint", fake.url, "--quiet", "--max-attempts", "1"],
            {"BATCHPATCH_AUTH_TOKEN": TOKEN},
        )
    err = capsys.readouterr().err
    assert code == 3
    line = next(line for line in err.splitlines() if "could not read the current images" in line)
    assert line.count("HTTP 200") == 1, line
    assert len(re.findall(r"unparseable[ _]answer", line)) == 1, line


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(None, id="no-image"),
        pytest.param({"error_code": "APIGW.0301", "error_msg": "no"}, id="error-body"),
        pytest.param({"id": "other"}, id="other-image"),
        pytest.param({"id": "x", "team": "old"}, id="value"),
    ],
)
def test_an_unexpected_answer_leaves_its_status_to_the_status_column(body: object) -> None:
    sent = [{"op": "replace", "path": "/team", "value": "new"}]
    response = check_patched(ApiResponse(200, body), "x", sent)
    assert response.error_code == UNEXPECTED_ANSWER
    assert "HTTP" not in response.error_message
    assert response.status == 200
