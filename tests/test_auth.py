"""Authentication end to end against the fake IMS: AK/SK signing verified by the server, IAM
logins with token reuse and refresh, bad credentials costing one request, clock skew, and
no secret in any output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from batchpatch.fake import FakeConfig, running_fake
from tests.e2e import run_cli, start_cli
from tests.sheets import write_sheet
from tests.test_resume import outcome_lines, wait_for

AK, SK = "HPUAFAKEACCESSKEY0001", "fake-SK-9b1e2c7d-never-print-me"
PROJECT = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
USER, PASSWORD, DOMAIN = "ops-bot", "pa55-w0rd-never-print-me", "acme"
IMAGES: list[dict[str, Any]] = [
    {
        "id": str(uuid.UUID(int=n + 1, version=4)),
        "name": f"image-{n:02d}",
        "status": "active",
        "min_ram": 0,
    }
    for n in range(6)
]
AKSK_ENV = {
    "HUAWEICLOUD_SDK_AK": AK,
    "HUAWEICLOUD_SDK_SK": SK,
    "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT,
}
LOGIN_ENV = {
    "BATCHPATCH_IAM_USER": USER,
    "BATCHPATCH_IAM_PASSWORD": PASSWORD,
    "BATCHPATCH_IAM_DOMAIN": DOMAIN,
    "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT,
}


def renames(tmp_path: Path, name: str = "s.csv") -> Path:
    return write_sheet(
        tmp_path / name,
        ["image_id", "name"],
        [[image["id"], f"signed-{n}"] for n, image in enumerate(IMAGES)],
    )


def test_ak_sk_signed_run_is_verified_by_the_server(tmp_path: Path) -> None:
    sheet = renames(tmp_path)
    config = FakeConfig(access_key=AK, secret_key=SK, project_id=PROJECT)
    with running_fake(IMAGES, config) as fake:
        done = run_cli(
            ["apply", str(sheet), "--endpoint", fake.url, "--rate", "100"],
            token=None,
            environ=AKSK_ENV,
        )
        stats = fake.stats.snapshot()
        state = fake.store.images
    assert done.returncode == 0, done.stderr
    assert [state[image["id"]]["name"] for image in IMAGES] == [
        f"signed-{n}" for n in range(len(IMAGES))
    ]
    assert stats.auth_successes["aksk"] == 2 * len(IMAGES)  # every read and write verified
    assert stats.project_ids == {PROJECT: 2 * len(IMAGES)}
    assert not stats.auth_failures


@pytest.mark.parametrize(
    "plan", [pytest.param([], id="plan"), pytest.param(["--no-plan"], id="no-plan")]
)
def test_a_wrong_secret_key_costs_one_request_and_names_its_source(
    tmp_path: Path, plan: list[str]
) -> None:
    sheet = renames(tmp_path)
    with running_fake(IMAGES, FakeConfig(access_key=AK, secret_key=SK)) as fake:
        done = run_cli(
            ["apply", str(sheet), "--endpoint", fake.url, *plan],
            token=None,
            environ={**AKSK_ENV, "HUAWEICLOUD_SDK_SK": "a-stale-secret"},
        )
        stats = fake.stats.snapshot()
        assert fake.auth.locked_until(AK) is None
    assert done.returncode == 3
    assert sum(stats.auth_failures.values()) == 1  # far from the lockout at 5
    assert "verify aksk signature fail" in done.stderr
    assert "ak/sk from environment variables HUAWEICLOUD_SDK_AK/HUAWEICLOUD_SDK_SK" in (done.stderr)
    assert "a-stale-secret" not in done.stdout + done.stderr


def test_clock_skew_is_explained(tmp_path: Path) -> None:
    sheet = renames(tmp_path)
    config = FakeConfig(access_key=AK, secret_key=SK, clock_offset=-40 * 60)
    with running_fake(IMAGES, config) as fake:
        done = run_cli(["apply", str(sheet), "--endpoint", fake.url], token=None, environ=AKSK_ENV)
    assert done.returncode == 3
    assert "this machine's clock is 40 minutes ahead of the service's Date header" in done.stderr


def test_iam_login_token_is_reused_and_renewed_once_when_it_expires(tmp_path: Path) -> None:
    sheet = renames(tmp_path)
    journal = tmp_path / "s.results.csv.journal"
    config = FakeConfig(
        iam_user=USER, iam_password=PASSWORD, iam_domain=DOMAIN, project_id=PROJECT, latency=0.2
    )
    with running_fake(IMAGES, config) as fake:
        process = start_cli(
            [
                "apply",
                str(sheet),
                "--endpoint",
                fake.url,
                "--iam-endpoint",
                fake.url,
                "--concurrency",
                "1",
                "--rate",
                "100",
            ],
            token=None,
            environ=LOGIN_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        wait_for(lambda: outcome_lines(journal) >= 2, "two images done")
        assert fake.expire_tokens() == 1  # the token dies mid-run
        stdout, stderr = process.communicate(timeout=60)
        stats = fake.stats.snapshot()
        state = fake.store.images
    assert process.returncode == 0, stderr
    assert stats.tokens_issued == 2  # one login, one renewal: not one per request
    assert stats.auth_failures["APIGW.0307/token-expired"] == 1
    assert [state[image["id"]]["name"] for image in IMAGES] == [
        f"signed-{n}" for n in range(len(IMAGES))
    ]
    assert PASSWORD not in stdout + stderr


def test_a_refused_iam_login_stops_the_run(tmp_path: Path) -> None:
    sheet = renames(tmp_path)
    config = FakeConfig(iam_user=USER, iam_password=PASSWORD, iam_domain=DOMAIN)
    with running_fake(IMAGES, config) as fake:
        done = run_cli(
            ["apply", str(sheet), "--endpoint", fake.url, "--iam-endpoint", fake.url],
            token=None,
            environ={**LOGIN_ENV, "BATCHPATCH_IAM_PASSWORD": "wrong-password"},
        )
        stats = fake.stats.snapshot()
    assert done.returncode == 3
    assert "IAM refused the login: HTTP 401" in done.stderr
    # One login, refused; not one request reached IMS.
    assert [(entry.method, entry.path, entry.status) for entry in stats.log] == [
        ("POST", "/v3/auth/tokens", 401)
    ]
    assert "wrong-password" not in done.stdout + done.stderr


@pytest.mark.process
def test_no_secret_appears_in_any_output_of_a_full_run(tmp_path: Path) -> None:
    """Every way a run speaks — stdout, stderr at --debug in both log formats, the report,
    the journal of a stopped run, a saved plan, the summary, a dry run — holds no secret."""
    sheet = renames(tmp_path)
    secrets = [SK, PASSWORD]
    config = FakeConfig(
        access_key=AK,
        secret_key=SK,
        iam_user=USER,
        iam_password=PASSWORD,
        iam_domain=DOMAIN,
        project_id=PROJECT,
        latency=0.2,
        error_503=0.2,
        seed=3,
    )
    texts: list[str] = []
    with running_fake(IMAGES, config) as fake:
        common = [
            "--endpoint",
            fake.url,
            "--iam-endpoint",
            fake.url,
            "--debug",
            "--backoff",
            "0.01",
            "--rate",
            "100",
        ]
        for environ in (AKSK_ENV, LOGIN_ENV):
            for extra in (["--log-format", "json"], ["--dry-run"], ["--no-plan"]):
                done = run_cli(
                    [
                        "apply",
                        str(sheet),
                        *common,
                        *extra,
                        "--summary",
                        str(tmp_path / "summary.json"),
                    ],
                    token=None,
                    environ=environ,
                )
                texts += [
                    done.stdout,
                    done.stderr,
                    (tmp_path / "s.results.csv").read_text(),
                    (tmp_path / "summary.json").read_text(),
                ]
        planned = run_cli(
            ["plan", str(sheet), "--endpoint", fake.url, "--out", str(tmp_path / "plan.json")],
            token=None,
            environ=AKSK_ENV,
        )
        texts += [planned.stdout, planned.stderr, (tmp_path / "plan.json").read_text()]
        whoami = run_cli(["whoami", "--endpoint", fake.url], token=None, environ=AKSK_ENV)
        texts += [whoami.stdout, whoami.stderr]
        other = write_sheet(
            tmp_path / "t.csv",
            ["image_id", "name"],
            [[image["id"], f"later-{n}"] for n, image in enumerate(IMAGES)],
        )
        journal = tmp_path / "t.results.csv.journal"
        process = start_cli(
            ["apply", str(other), *common, "--concurrency", "1"],
            token=None,
            environ=AKSK_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        wait_for(lambda: outcome_lines(journal) >= 1, "an outcome journaled")
        process.send_signal(signal.SIGKILL)
        process.communicate()
        texts.append(journal.read_text())
    everything = "\n".join(texts)
    assert AK[:4] in everything  # the outputs were really collected
    for secret in secrets:
        assert secret not in everything
    assert all(json.loads(line) for line in texts[1].splitlines())
    assert os.environ.get("HUAWEICLOUD_SDK_SK") != SK
