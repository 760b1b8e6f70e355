"""The tag API's project id: configured (environment or profile, any credential kind), else
looked up once in IAM the official SDK's way, else a clear error naming how to set it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest

from batchpatch.auth import AkSkAuth, Auth, PasswordAuth, ProjectLookup, TokenAuth
from batchpatch.client import ImsClient
from batchpatch.credentials import (
    ENV_AK,
    ENV_IAM_DOMAIN,
    ENV_IAM_ENDPOINT,
    ENV_IAM_PASSWORD,
    ENV_IAM_USER,
    ENV_PROJECT,
    ENV_SK,
    Settings,
    resolve,
)
from batchpatch.errors import OptionsError
from batchpatch.fake import FakeConfig, FakeServer, running_fake
from batchpatch.fake.config import DEFAULT_PROJECT_ID

AK, SK = "AKTESTPROJECTLOOKUP01", "sk-project-lookup-secret-0123456789"
TOKEN = "project-lookup-token-abcdef"
PROJECT = "1d1d1d1d1d1d4d1d8d1d1d1d1d1d1d1d"
REGION = "cn-north-4"
IMAGES: list[dict[str, Any]] = [{"id": "img-1", "name": "a", "status": "active", "tags": []}]


def resolved(environ: Mapping[str, str], **settings: Any) -> Auth:
    base = {"BATCHPATCH_CONFIG": "/nonexistent/batchpatch.toml"}
    return resolve(Settings(region=REGION, **settings), base | dict(environ)).auth


# --- where a configured project id comes from ----------------------------------------------


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({ENV_AK: AK, ENV_SK: SK}, id="ak-sk"),
        pytest.param({"BATCHPATCH_AUTH_TOKEN": TOKEN}, id="token"),
        pytest.param(
            {ENV_IAM_USER: "u", ENV_IAM_PASSWORD: "p", ENV_IAM_DOMAIN: "d"}, id="iam-password"
        ),
    ],
)
def test_the_environment_gives_the_project_id_to_every_credential_kind(
    environ: dict[str, str],
) -> None:
    auth = resolved(environ | {ENV_PROJECT: PROJECT})
    assert auth.project_id == PROJECT
    assert auth.project_lookup == ProjectLookup(f"https://iam.{REGION}.myhuaweicloud.com", REGION)


def test_a_profile_gives_the_project_id_with_a_token(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[profiles.p]\ntoken_env = "T"\nproject_id = "{PROJECT}"\n')
    auth = resolved({"T": TOKEN, ENV_PROJECT: "ignored"}, profile="p", config=config)
    assert isinstance(auth, TokenAuth)
    assert auth.project_id == PROJECT


def test_the_iam_endpoint_variable_says_where_to_look_it_up() -> None:
    auth = resolved({"BATCHPATCH_AUTH_TOKEN": TOKEN, ENV_IAM_ENDPOINT: "https://iam.example"})
    assert (auth.project_id, auth.project_lookup) == (
        "",
        ProjectLookup("https://iam.example", REGION),
    )


def test_whoami_shows_a_tokens_project_id_never_the_token() -> None:
    environ = {"BATCHPATCH_CONFIG": "/nonexistent", "BATCHPATCH_AUTH_TOKEN": TOKEN}
    lines = resolve(Settings(region=REGION), environ | {ENV_PROJECT: PROJECT}).describe()
    assert f"project id: {PROJECT}" in lines
    assert not any(TOKEN in line for line in lines)


# --- the lookup ----------------------------------------------------------------------------


def lookups(fake: FakeServer) -> int:
    return fake.stats.requests_by_kind["projects"]


def tag_project(fake: FakeServer, auth: Auth, calls: int = 1) -> list[str]:
    """``calls`` concurrent ``tag_project()`` on one client, and a tag read with it."""

    async def run() -> list[str]:
        async with ImsClient(fake.url, auth, timeout=10, connections=4) as client:
            found: list[str] = []

            async def one() -> None:
                found.append(await client.tag_project())

            async with anyio.create_task_group() as group:
                for _ in range(calls):
                    group.start_soon(one)
            assert (await client.read_tags("img-1")).ok
            assert client.requests == 1  # the lookup is IAM's, not counted as IMS's
            return found

    return anyio.run(run)


def lookup_of(fake: FakeServer) -> ProjectLookup:
    return ProjectLookup(fake.url, REGION)


def test_ak_sk_without_a_project_id_looks_it_up_once_signed() -> None:
    config = FakeConfig(access_key=AK, secret_key=SK)
    with running_fake(IMAGES, config) as fake:
        auth = AkSkAuth(AK, SK, project_lookup=lookup_of(fake))
        found = tag_project(fake, auth, calls=5)
        assert lookups(fake) == 1
        assert fake.stats.auth_successes["aksk"] == 2  # the lookup and the read, both signed
        assert fake.stats.log[0].path == "/v3/projects"
    assert found == [DEFAULT_PROJECT_ID] * 5


def test_a_token_looks_it_up_too() -> None:
    with running_fake(IMAGES, FakeConfig(token=TOKEN, project_id=PROJECT)) as fake:
        found = tag_project(fake, TokenAuth(TOKEN, project_lookup=lookup_of(fake)))
    assert found == [PROJECT]


def test_an_iam_login_looks_up_the_project_its_token_is_scoped_to() -> None:
    config = FakeConfig(iam_user="u", iam_password="p", iam_domain="d")
    with running_fake(IMAGES, config) as fake:
        auth = PasswordAuth(fake.url, "u", "p", "d", project_name=REGION)
        auth.project_lookup = lookup_of(fake)
        found = tag_project(fake, auth)
        logins = fake.stats.tokens_issued
    assert found[0] != DEFAULT_PROJECT_ID  # the token's project, which the tag path accepts
    assert logins == 1


def test_a_configured_project_id_needs_no_lookup() -> None:
    with running_fake(IMAGES, FakeConfig(token=TOKEN, project_id=PROJECT)) as fake:
        found = tag_project(fake, TokenAuth(TOKEN, project_id=PROJECT))
        assert lookups(fake) == 0
    assert found == [PROJECT]


def test_a_run_without_tags_never_looks_it_up() -> None:
    async def run(fake: FakeServer) -> None:
        auth = TokenAuth(TOKEN, project_lookup=lookup_of(fake))
        async with ImsClient(fake.url, auth, timeout=10, connections=1) as client:
            assert (await client.list_images({"id": "img-1"})).ok

    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        anyio.run(run, fake)
        assert lookups(fake) == 0


def failure(fake: FakeServer, auth: Auth) -> str:
    async def run() -> str:
        async with ImsClient(fake.url, auth, timeout=10, connections=1) as client:
            with pytest.raises(OptionsError) as raised:
                await client.read_tags("img-1")
            return raised.value.text(lambda name, value: f"--{name.replace('_', '-')} {value}")

    message = anyio.run(run)
    assert fake.stats.requests_by_kind["tag_read"] == 0  # nothing sent to IMS
    return message


def test_several_projects_ask_the_user_to_choose() -> None:
    other = "2e2e2e2e2e2e4e2e8e2e2e2e2e2e2e2e"
    config = FakeConfig(token=TOKEN, project_id=PROJECT, extra_projects=(other,))
    with running_fake(IMAGES, config) as fake:
        message = failure(fake, TokenAuth(TOKEN, project_lookup=lookup_of(fake)))
    assert message == (
        f"IAM at {fake.url} lists 2 projects named {REGION} ({PROJECT}, {other}) — choose one: "
        f"set {ENV_PROJECT} or project_id in the profile"
    )


def test_no_region_and_no_project_id_is_a_clear_error() -> None:
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        message = failure(fake, TokenAuth(TOKEN, project_lookup=ProjectLookup(fake.url, "")))
        assert lookups(fake) == 0
    assert message == (
        f"the tag API needs a project id — set {ENV_PROJECT} (with credentials from the "
        "environment) or project_id in the profile, or give --region REGION so it can be "
        "looked up in IAM"
    )


def test_a_refused_lookup_says_why_and_never_shows_the_secret() -> None:
    config = FakeConfig(access_key=AK, secret_key=SK)
    with running_fake(IMAGES, config) as fake:
        wrong = AkSkAuth(AK, "not-the-secret-key-00000000", project_lookup=lookup_of(fake))
        message = failure(fake, wrong)
    assert message.startswith(f"cannot look up the project id of region {REGION} in IAM at ")
    assert "HTTP 401 APIGW.0301" in message
    assert f"set {ENV_PROJECT}" in message
    assert "not-the-secret-key" not in message
    assert SK not in message
