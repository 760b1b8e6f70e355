"""Where credentials and endpoints come from, in what order, and that secrets stay hidden."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from batchpatch.auth import AkSkAuth, PasswordAuth, TokenAuth
from batchpatch.credentials import Settings, resolve
from batchpatch.errors import OptionsError
from tests.e2e import run_cli

AK, SK = "HPUAEXAMPLEACCESSKEY1", "s3cr3t-SK-that-must-never-show-0123456789"
TOKEN = "MIIEXAMPLE-token-that-must-never-show"
REGION = "ap-southeast-1"

CONFIG = f"""
[profiles.default]
region = "{REGION}"
ak_env = "PROFILE_AK"
sk_env = "PROFILE_SK"

[profiles.tokenish]
endpoint = "https://ims.cn-north-4.myhuaweicloud.com"
token_env = "PROFILE_TOKEN"

[profiles.filed]
region = "cn-north-4"
project_id = "0f1e2d3c0f1e2d3c0f1e2d3c0f1e2d3c"
credentials_file = "{{credentials}}"

[profiles.login]
region = "cn-north-4"
iam_user_env = "PROFILE_USER"
iam_password_env = "PROFILE_PASSWORD"
iam_domain = "acme"

[profiles.leaky]
region = "cn-north-4"
secret_key = "oops"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    credentials = tmp_path / "nightly.toml"
    credentials.write_text(f'access_key = "{AK}"\nsecret_key = "{SK}"\n')
    credentials.chmod(0o600)
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(credentials=credentials))
    return path


PROFILE_ENV = {
    "PROFILE_AK": "PROFAK000000000000001",
    "PROFILE_SK": "profile-sk",
    "PROFILE_TOKEN": TOKEN,
    "PROFILE_USER": "ops",
    "PROFILE_PASSWORD": "pw",
}
SDK_ENV = {
    "HUAWEICLOUD_SDK_AK": AK,
    "HUAWEICLOUD_SDK_SK": SK,
    "HUAWEICLOUD_SDK_PROJECT_ID": "0123456789abcdef0123456789abcdef",
}


@pytest.mark.parametrize(
    ("settings", "environ", "kind", "source"),
    [
        pytest.param(
            Settings(region=REGION), SDK_ENV, AkSkAuth, "HUAWEICLOUD_SDK_AK", id="sdk-env"
        ),
        pytest.param(
            Settings(region=REGION),
            {"BATCHPATCH_AUTH_TOKEN": TOKEN},
            TokenAuth,
            "BATCHPATCH_AUTH_TOKEN",
            id="token-env",
        ),
        pytest.param(
            Settings(region=REGION),
            {**SDK_ENV, "BATCHPATCH_AUTH_TOKEN": TOKEN},
            AkSkAuth,
            "HUAWEICLOUD_SDK_AK",
            id="ak-sk-beats-token",
        ),
        pytest.param(
            Settings(region=REGION),
            {
                "BATCHPATCH_IAM_USER": "u",
                "BATCHPATCH_IAM_PASSWORD": "p",
                "BATCHPATCH_IAM_DOMAIN": "acme",
            },
            PasswordAuth,
            "BATCHPATCH_IAM_USER",
            id="login-env",
        ),
        pytest.param(
            Settings(),
            {**PROFILE_ENV},
            AkSkAuth,
            "profile 'default'",
            id="default-profile-when-env-is-empty",
        ),
        pytest.param(
            Settings(region=REGION),
            {**PROFILE_ENV, **SDK_ENV},
            AkSkAuth,
            "HUAWEICLOUD_SDK_AK",
            id="env-beats-default-profile",
        ),
        pytest.param(
            Settings(profile="tokenish"),
            {**PROFILE_ENV, **SDK_ENV},
            TokenAuth,
            "profile 'tokenish'",
            id="named-profile-beats-env",
        ),
        pytest.param(
            Settings(profile="filed"), {}, AkSkAuth, "nightly.toml", id="credentials-file"
        ),
        pytest.param(
            Settings(profile="login"),
            PROFILE_ENV,
            PasswordAuth,
            "profile 'login'",
            id="profile-login",
        ),
    ],
)
def test_precedence(
    config: Path, settings: Settings, environ: dict[str, str], kind: type, source: str
) -> None:
    target = resolve(Settings(**{**settings.__dict__, "config": config}), environ)
    assert isinstance(target.auth, kind)
    assert source in target.auth.source
    assert SK not in repr(target.auth)
    assert TOKEN not in repr(target.auth)


@pytest.mark.parametrize(
    ("settings", "endpoint", "iam"),
    [
        pytest.param(
            Settings(region="cn-north-4"),
            "https://ims.cn-north-4.myhuaweicloud.com",
            "https://iam.cn-north-4.myhuaweicloud.com",
            id="region",
        ),
        pytest.param(
            Settings(endpoint="https://ims.eu-west-101.myhuaweicloud.com"),
            "https://ims.eu-west-101.myhuaweicloud.com",
            "https://iam.eu-west-101.myhuaweicloud.com",
            id="region-from-endpoint",
        ),
        pytest.param(
            Settings(endpoint="http://127.0.0.1:9"),
            "http://127.0.0.1:9",
            "https://iam.myhuaweicloud.com",
            id="global-iam",
        ),
        pytest.param(
            Settings(endpoint="http://127.0.0.1:9", iam_endpoint="http://127.0.0.1:8"),
            "http://127.0.0.1:9",
            "http://127.0.0.1:8",
            id="iam-override",
        ),
        pytest.param(
            Settings(profile="default", region="cn-north-4"),
            "https://ims.cn-north-4.myhuaweicloud.com",
            "https://iam.cn-north-4.myhuaweicloud.com",
            id="command-line-beats-profile",
        ),
        pytest.param(
            Settings(profile="default"),
            f"https://ims.{REGION}.myhuaweicloud.com",
            f"https://iam.{REGION}.myhuaweicloud.com",
            id="profile-region",
        ),
    ],
)
def test_endpoints(config: Path, settings: Settings, endpoint: str, iam: str) -> None:
    target = resolve(
        Settings(**{**settings.__dict__, "config": config}),
        {**PROFILE_ENV, "BATCHPATCH_AUTH_TOKEN": TOKEN},
    )
    assert (target.endpoint, target.iam_endpoint) == (endpoint, iam)


@pytest.mark.parametrize(
    ("settings", "environ", "message"),
    [
        pytest.param(
            Settings(region=REGION, config=Path("/nonexistent/config.toml")),
            {},
            "no credentials",
            id="nothing",
        ),
        pytest.param(
            Settings(region=REGION),
            {"HUAWEICLOUD_SDK_AK": AK},
            "HUAWEICLOUD_SDK_SK is not set",
            id="half-a-pair",
        ),
        pytest.param(Settings(profile="nope"), {}, "no profile 'nope'", id="unknown-profile"),
        pytest.param(
            Settings(profile="leaky"),
            {},
            "secrets belong in the environment",
            id="secret-in-profile",
        ),
        pytest.param(
            Settings(profile="tokenish"),
            {},
            "PROFILE_TOKEN, which is not set",
            id="variable-missing",
        ),
        pytest.param(Settings(endpoint="ftp://x"), SDK_ENV, "not an http\\(s\\) URL", id="ftp"),
        pytest.param(Settings(region="mars-1"), SDK_ENV, "unknown region", id="bad-region"),
        pytest.param(
            Settings(endpoint="http://127.0.0.1:9"),
            {
                "BATCHPATCH_IAM_USER": "u",
                "BATCHPATCH_IAM_PASSWORD": "p",
                "BATCHPATCH_IAM_DOMAIN": "a",
            },
            "needs a project",
            id="login-no-project",
        ),
    ],
)
def test_refusals(config: Path, settings: Settings, environ: dict[str, str], message: str) -> None:
    with pytest.raises(OptionsError, match=message) as caught:
        resolve(Settings(**{**settings.__dict__, "config": settings.config or config}), environ)
    assert SK not in str(caught.value)
    assert "oops" not in str(caught.value)


def test_a_readable_credentials_file_is_warned_about(config: Path, tmp_path: Path) -> None:
    (tmp_path / "nightly.toml").chmod(0o644)
    target = resolve(Settings(profile="filed", config=config), {})
    assert any(
        "can be read by others" in warning and "chmod 600" in warning for warning in target.warnings
    )


def test_whoami_masks_everything(config: Path) -> None:
    done = run_cli(
        ["whoami", "--config", str(config), "--region", "cn-north-4"], token=None, environ=SDK_ENV
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "endpoint: https://ims.cn-north-4.myhuaweicloud.com",
        "iam endpoint: https://iam.cn-north-4.myhuaweicloud.com",
        "credentials: ak/sk from environment variables HUAWEICLOUD_SDK_AK/HUAWEICLOUD_SDK_SK",
        "access key: HPUA…(21 chars)",
        "project id: 0123456789abcdef0123456789abcdef",
    ]
    assert SK not in done.stdout + done.stderr
    refused = run_cli(["whoami", "--profile", "leaky", "--config", str(config)], token=None)
    assert refused.returncode == 2
    assert "oops" not in refused.stderr


def test_secrets_are_never_accepted_as_options() -> None:
    done = run_cli(["apply", "x.csv", "--token", TOKEN], token=None)
    assert done.returncode == 2
    assert "unrecognized arguments" in done.stderr
    assert os.environ.get("BATCHPATCH_AUTH_TOKEN") != TOKEN


@pytest.mark.anyio
async def test_ak_sk_signs_project_and_security_token_headers() -> None:
    from datetime import UTC, datetime

    from batchpatch.signer import authorization

    auth = AkSkAuth(
        AK,
        SK,
        project_id="p-1",
        security_token="temporary-token",
        clock=lambda: datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    base = {"Content-Type": "application/json;charset=utf-8", "Host": "ims.example:8443"}
    added = await auth.authorize(
        None,
        "PATCH",
        "https://ims.example:8443/v2/cloudimages/x?a=1",  # type: ignore[arg-type]
        base,
        b"[]",
    )
    assert added["X-Sdk-Date"] == "20260102T030405Z"
    assert added["X-Project-Id"] == "p-1"
    assert added["X-Security-Token"] == "temporary-token"
    assert (
        "SignedHeaders=content-type;host;x-project-id;x-sdk-date;x-security-token,"
        in (added["Authorization"])
    )
    headers = {**base, **{k: v for k, v in added.items() if k != "Authorization"}}
    assert added["Authorization"] == authorization(
        AK, SK, "PATCH", "/v2/cloudimages/x", [("a", "1")], headers, b"[]"
    )
    assert "temporary-token" not in repr(auth)
