"""One token refresh for all: when IAM tokens are revoked with requests in flight, one
login gets the next token and every request refused with the old one is sent again, also
when the re-sent request meets the next revocation; a few re-sends at most per request."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from batchpatch.auth import PasswordAuth
from batchpatch.client import TOKEN_RESENDS, ImsClient
from batchpatch.fake import FakeConfig, running_fake
from batchpatch.fake.stats import StatsSnapshot
from tests.e2e import main_exit_code
from tests.sheets import write_sheet
from tests.test_cli import read_report
from tests.wire import account

USER, PASSWORD, DOMAIN = "ops-robot", "pw-9d1c-not-real", "acme"
PROJECT = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"

#: An IAM password login from the environment, against the fake's IAM.
IAM_LOGIN = {
    "BATCHPATCH_IAM_USER": USER,
    "BATCHPATCH_IAM_PASSWORD": PASSWORD,
    "BATCHPATCH_IAM_DOMAIN": DOMAIN,
    "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT,
}


def iam_config(**knobs: object) -> FakeConfig:
    knobs = {"latency": 0.05, **knobs}
    return FakeConfig(iam_user=USER, iam_password=PASSWORD, iam_domain=DOMAIN, **knobs)  # type: ignore[arg-type]


def test_repeated_revocations_with_8_in_flight_finish_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = account(60)
    ids = [image["id"] for image in images]
    revokers = [ids[10], ids[30], ids[50]]  # far apart: each revocation settles first
    sheet = write_sheet(
        tmp_path / "s.csv", ["image_id", "team"], [[image_id, "new"] for image_id in ids]
    )
    config = iam_config(script={image_id: ["revoke"] for image_id in revokers})
    environ = dict(IAM_LOGIN)
    with running_fake(images, config) as fake:
        code = main_exit_code(
            monkeypatch,
            [
                "apply",
                str(sheet),
                "--endpoint",
                fake.url,
                "--iam-endpoint",
                fake.url,
                "--concurrency",
                "8",
                "--rate",
                "1000",
                "--quiet",
            ],
            environ,
        )
        stats = fake.stats.snapshot()
        state = fake.store.images
    assert code == 0
    assert set(read_report(tmp_path / "s.results.csv")["status"]) == {"succeeded"}
    assert stats.tokens_issued == 1 + len(revokers)  # one login per revocation, not per request
    # the other requests in flight were refused with the old token too
    assert stats.auth_failures["APIGW.0307/token-expired"] > len(revokers)
    assert dict(stats.applied_by_image) == dict.fromkeys(ids, 1)
    assert {state[image_id]["team"] for image_id in ids} == {"new"}


def test_requests_refused_together_share_one_login() -> None:
    """Eight reads refused with the same revoked token: one login, eight answers."""
    images = account(8)

    async def read_all(url: str, fake_expire: object) -> tuple[list[bool], int]:
        auth = PasswordAuth(url, USER, PASSWORD, DOMAIN, project_id=PROJECT)
        async with ImsClient(url, auth, timeout=10, connections=8) as client:
            await client.list_images({"id": images[0]["id"]})  # the first login
            assert callable(fake_expire)
            fake_expire()
            answers: list[bool] = [False] * len(images)

            async def read(n: int) -> None:
                response = await client.list_images({"id": images[n]["id"]})
                answers[n] = response.ok

            async with anyio.create_task_group() as group:
                for n in range(len(images)):
                    group.start_soon(read, n)
        return answers, auth.logins

    with running_fake(images, iam_config()) as fake:
        answers, logins = anyio.run(read_all, fake.url, fake.expire_tokens)
        stats = fake.stats.snapshot()
    assert answers == [True] * len(images)
    assert logins == stats.tokens_issued == 2
    assert stats.auth_failures["APIGW.0307/token-expired"] == len(images)


def apply_with_a_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, revoke_at: list[int]
) -> tuple[int, StatsSnapshot, dict[str, dict[str, object]], list[str]]:
    """The hostile review's run: ``size`` images, a revocation at each image of
    ``revoke_at``, 0.3 s of latency, an IAM login from a profile, 8 in flight."""
    images = account(size)
    ids = [image["id"] for image in images]
    sheet = write_sheet(
        tmp_path / "s.csv", ["image_id", "team"], [[image_id, "new"] for image_id in ids]
    )
    config = iam_config(latency=0.3, script={ids[n]: ["revoke"] for n in revoke_at})
    with running_fake(images, config) as fake:
        profile = tmp_path / "cfg.toml"
        profile.write_text(
            f'[profiles.t]\nendpoint = "{fake.url}"\niam_endpoint = "{fake.url}"\n'
            f'project_id = "{PROJECT}"\niam_user_env = "U"\niam_password_env = "P"\n'
            f'iam_domain = "{DOMAIN}"\n',
            encoding="utf-8",
        )
        code = main_exit_code(
            monkeypatch,
            [
                "apply",
                str(sheet),
                "--config",
                str(profile),
                "--profile",
                "t",
                "--concurrency",
                "8",
                "--rate",
                "1000",
                "--quiet",
            ],
            {"U": USER, "P": PASSWORD},
        )
        stats = fake.stats.snapshot()
        state = fake.store.images
    return code, stats, state, ids


@pytest.mark.parametrize(
    "revoke_at",
    [
        pytest.param([10, 11], id="two-close-together"),
        pytest.param([10, 20, 30], id="at-10-20-30"),
        pytest.param([10, 11, 12], id="three-in-a-row"),
    ],
)
def test_revocations_close_together_cost_one_login_each_and_finish_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, revoke_at: list[int]
) -> None:
    """A request re-sent with the new token may meet the next revocation: it is sent
    again with the token after that, and the run still finishes with every row done."""
    code, stats, state, ids = apply_with_a_profile(tmp_path, monkeypatch, 40, revoke_at)
    assert code == 0
    assert set(read_report(tmp_path / "s.results.csv")["status"]) == {"succeeded"}
    assert stats.tokens_issued == len(revoke_at) + 1  # one login per revocation
    assert dict(stats.applied_by_image) == dict.fromkeys(ids, 1)
    assert {state[image_id]["team"] for image_id in ids} == {"new"}


def test_a_gateway_refusing_every_fresh_token_stops_the_run_after_a_few_logins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every token refused, each fresh one too: the PATCH is re-sent ``TOKEN_RESENDS``
    times, each 401 having applied nothing, then the last 401 stops the run (exit 3)."""
    images = account(3)
    ids = [image["id"] for image in images]
    sheet = write_sheet(
        tmp_path / "s.csv", ["image_id", "team"], [[image_id, "new"] for image_id in ids]
    )
    config = iam_config(script={ids[0]: ["revoke"] * (TOKEN_RESENDS + 5)})
    environ = dict(IAM_LOGIN)
    with running_fake(images, config) as fake:
        code = main_exit_code(
            monkeypatch,
            [
                "apply",
                str(sheet),
                "--endpoint",
                fake.url,
                "--iam-endpoint",
                fake.url,
                "--concurrency",
                "1",
                "--quiet",
            ],
            environ,
        )
        stats = fake.stats.snapshot()
        state = fake.store.images
    assert code == 3
    report = read_report(tmp_path / "s.results.csv")
    assert list(report["status"]) == ["failed", "not_attempted", "not_attempted"]
    assert stats.patches_by_image[ids[0]] == 1 + TOKEN_RESENDS
    assert stats.tokens_issued == 1 + TOKEN_RESENDS  # bounded, not a login storm
    assert not stats.applied_by_image
    assert {state[image_id]["team"] for image_id in ids} == {"old"}
