"""--api glance without a Glance: its schema (validate), error bodies, answer kinds, and the
OpenStack ways to authenticate (Keystone v3 login tested against the fake's IAM)."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from batchpatch.auth import NoAuth, PasswordAuth, TokenAuth
from batchpatch.client import ImsClient
from batchpatch.credentials import Settings
from batchpatch.errors import AuthFailed, OptionsError
from batchpatch.fake import FakeConfig, running_fake
from batchpatch.glance import GlanceClient, classify_glance, parse_glance_error
from batchpatch.glance_auth import resolve_glance
from batchpatch.service import AnswerKind, ApiResponse
from tests.e2e import run_cli, sample_images
from tests.sheets import write_sheet

IMAGE = "0b1c6a3e-5f0d-4a53-9c1e-2f6d8a1b7c01"


@pytest.fixture(autouse=True)
def _no_openstack_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OS_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("payload", "code", "message"),
    [
        pytest.param(
            b'{"message": "There was a conflict when trying to complete your request.<br />'
            b'<br />\\nProperty nosuch does not exist.\\n\\n", "code": "409 Conflict", '
            b'"title": "Conflict"}',
            "Conflict",
            "There was a conflict when trying to complete your request. "
            "Property nosuch does not exist.",
            id="json",
        ),
        pytest.param(
            b"403 Forbidden\n\nAttribute 'id' is read-only.\n\n   ",
            "",
            "Attribute 'id' is read-only.",
            id="text-plain",
        ),
        pytest.param(
            b"<html>\n <head>\n  <title>400 Bad Request</title>\n </head>\n <body>\n"
            b"  <h1>400 Bad Request</h1>\n  Invalid operation: `test`.<br /><br />\n"
            b"\n\n\n </body>\n</html>",
            "",
            "Invalid operation: `test`.",
            id="html",
        ),
    ],
)
def test_glance_error_bodies_lose_their_markup(payload: bytes, code: str, message: str) -> None:
    assert parse_glance_error(400, payload) == (code, message)


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        pytest.param(ApiResponse(409, None, "Conflict"), AnswerKind.CONFLICT, id="409"),
        pytest.param(ApiResponse(403, None, "Forbidden"), AnswerKind.REFUSED, id="403"),
        pytest.param(ApiResponse(404), AnswerKind.REFUSED, id="404"),
        pytest.param(ApiResponse(413), AnswerKind.REFUSED, id="413-quota"),
        pytest.param(ApiResponse(413, retry_after=3.0), AnswerKind.THROTTLED, id="413-limit"),
        pytest.param(ApiResponse(415), AnswerKind.REFUSED, id="415"),
        pytest.param(ApiResponse(429, retry_after=1.0), AnswerKind.THROTTLED, id="429"),
        pytest.param(ApiResponse(503, retry_after=2.0), AnswerKind.UNAVAILABLE, id="503"),
        pytest.param(ApiResponse(500), AnswerKind.MAYBE_APPLIED, id="500"),
        pytest.param(ApiResponse(401), AnswerKind.AUTH_FAILED, id="401"),
        pytest.param(ApiResponse(200, {"id": "x"}), AnswerKind.OK, id="200"),
    ],
)
def test_glance_answers_map_onto_the_runs_kinds(answer: ApiResponse, kind: AnswerKind) -> None:
    assert classify_glance(answer) == kind


def _validate(sheet: Path, api: str = "glance") -> tuple[int, str]:
    done = run_cli(["validate", str(sheet), "--api", api], token=None)
    return done.returncode, done.stderr + done.stdout


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        pytest.param("status", "queued", "1:status: status is read-only", id="read-only"),
        pytest.param("checksum", "abc", "1:checksum: checksum is read-only", id="read-only-2"),
        pytest.param(
            "os_glance_x", "y", "1:os_glance_x: os_glance_x: the os_glance_ prefix", id="reserved"
        ),
        pytest.param("min_ram", "abc", "2:min_ram: min_ram must be a whole number", id="integer"),
        pytest.param("min_disk", "1.5", "2:min_disk: min_disk must be a whole", id="integer-2"),
        pytest.param("protected", "maybe", "2:protected: protected must be true", id="boolean"),
        pytest.param("os_hidden", "2", "2:os_hidden: os_hidden must be true", id="boolean-2"),
        pytest.param("visibility", "bogus", "2:visibility: visibility must be one of", id="enum"),
        pytest.param("name", "n" * 256, "2:name: name is 256 characters long", id="name-length"),
        pytest.param("disk_format", "qcow2", "1:disk_format: disk_format can be", id="queued"),
        pytest.param("name", "<remove>", "2:name: name cannot be removed", id="base-removed"),
        pytest.param("a/b", "x", "1:a/b: property name 'a/b' holds / or ~", id="pointer"),
    ],
)
def test_validate_speaks_glances_rules(
    tmp_path: Path, column: str, value: str, message: str
) -> None:
    """Each problem located at its cell (a wide sheet's attribute at its header), exit 2."""
    sheet = write_sheet(tmp_path / "bad.csv", ["image_id", column], [[IMAGE, value]])
    code, output = _validate(sheet)
    assert code == 2
    assert f"bad.csv:{message}" in output


def test_glance_takes_what_ims_refuses_and_the_api_chooses_the_rules(tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "ok.csv",
        ["image_id", "visibility", "min_disk", "protected", "Build_Number"],
        [[IMAGE, "community", "20", "yes", "1024"]],
    )
    assert _validate(sheet)[0] == 0
    code, output = _validate(sheet, "ims")
    assert code == 2
    assert "ok.csv:1:visibility: visibility is read-only" in output


def test_numbers_become_strings_and_flags_json_booleans(tmp_path: Path) -> None:
    from batchpatch.glance_schema import GLANCE_SCHEMA
    from batchpatch.sheet import read_sheet

    sheet = write_sheet(
        tmp_path / "typed.xlsx",
        ["image_id", "build", "min_ram", "os_hidden", "visibility"],
        [[IMAGE, 1024, 512, "TRUE", "Public"]],
    )
    (patch,) = read_sheet(sheet, schema=GLANCE_SCHEMA).patches
    assert [(op.path, op.value) for op in patch.operations] == [
        ("/build", "1024"),
        ("/min_ram", 512),
        ("/os_hidden", True),
        ("/visibility", "public"),
    ]


def test_the_property_quota_is_checked_at_the_change_past_it(tmp_path: Path) -> None:
    header = ["image_id", "name", *(f"p{n}" for n in range(129))]
    sheet = write_sheet(tmp_path / "quota.csv", header, [[IMAGE, "n", *(["v"] * 129)]])
    code, output = _validate(sheet)
    assert code == 2
    assert "quota.csv:2:p128: this image's changes set more properties than" in output
    assert "p127" not in output


def _settings(endpoint: str | None = "http://127.0.0.1:9292") -> Settings:
    return Settings(endpoint=endpoint)


@pytest.mark.parametrize("variable", ["OS_AUTH_TOKEN", "OS_TOKEN"])
def test_a_keystone_token_from_the_environment(variable: str) -> None:
    target = resolve_glance(_settings(), environ={variable: "gAAAA-secret"})
    assert target.auth == TokenAuth("gAAAA-secret", source=variable)
    assert "gAAAA-secret" not in repr(target)


def test_no_credentials_is_a_glance_without_keystone() -> None:
    assert isinstance(resolve_glance(_settings(), environ={}).auth, NoAuth)


def test_the_endpoint_is_required() -> None:
    with pytest.raises(OptionsError, match="no Glance endpoint"):
        resolve_glance(_settings(None), environ={})


def _clouds(path: Path, auth: str) -> Path:
    path.write_text(
        "clouds:\n  lab:\n    image_endpoint_override: http://127.0.0.1:9292\n" + auth,
        encoding="utf-8",
    )
    return path


def test_os_cloud_reads_clouds_yaml_from_os_client_config_file(tmp_path: Path) -> None:
    clouds = _clouds(
        tmp_path / "c.yaml",
        "    auth:\n      auth_url: https://keystone.example:5000/v3\n"
        "      username: alice\n      password: s3cr3t-pw\n      project_name: demo\n"
        "      user_domain_name: Users\n      project_domain_name: Projects\n",
    )
    target = resolve_glance(
        _settings(None), "lab", environ={"OS_CLIENT_CONFIG_FILE": str(clouds), "HOME": "/x"}
    )
    auth = target.auth
    assert isinstance(auth, PasswordAuth)
    assert (auth.iam_endpoint, auth.user, auth.domain, auth.project_name) == (
        "https://keystone.example:5000",
        "alice",
        "Users",
        "demo",
    )
    assert auth.project_domain == "Projects"
    assert target.endpoint == "http://127.0.0.1:9292"
    assert "s3cr3t-pw" not in repr(target)


def test_os_cloud_finds_clouds_yaml_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clouds(tmp_path / "clouds.yaml", "    auth_type: none\n")
    monkeypatch.chdir(tmp_path)
    target = resolve_glance(_settings(None), "lab", environ={"HOME": str(tmp_path / "home")})
    assert isinstance(target.auth, NoAuth)
    with pytest.raises(OptionsError, match="no such cloud"):
        resolve_glance(_settings(None), "other", environ={"HOME": str(tmp_path / "home")})


async def _login(url: str, password: str) -> ApiResponse:
    target = resolve_glance(
        _settings(url),
        environ={
            "OS_AUTH_URL": url + "/v3",
            "OS_USERNAME": "alice",
            "OS_PASSWORD": password,
            "OS_PROJECT_NAME": "ap-southeast-1",
            "OS_USER_DOMAIN_NAME": "acme",
            "OS_PROJECT_DOMAIN_NAME": "acme",
        },
    )
    async with GlanceClient(target.endpoint, target.auth, timeout=10, connections=1) as glance:
        headers = await target.auth.authorize(glance, "GET", url, {}, b"")
    # The fake IMS admits only tokens its IAM issued: the login got a real one.
    async with ImsClient(url, TokenAuth(headers["X-Auth-Token"]), timeout=10, connections=1) as ims:
        return await ims.list_images({"limit": "1"})


def test_a_keystone_v3_password_login_against_the_fakes_iam() -> None:
    config = FakeConfig(iam_user="alice", iam_password="pw-123456", iam_domain="acme")
    with running_fake(sample_images(), config) as fake:
        assert anyio.run(_login, fake.url, "pw-123456").status == 200
        with pytest.raises(AuthFailed, match="refused the login: HTTP 401"):
            anyio.run(_login, fake.url, "wrong")


def test_tag_columns_are_refused_under_glance(tmp_path: Path) -> None:
    sheet = tmp_path / "tags.csv"
    sheet.write_text("image_id,name,tag:env\n" + IMAGE + ",x,prod\n", encoding="utf-8")
    done = run_cli(["validate", str(sheet), "--api", "glance"])
    assert done.returncode == 2
    assert "tags.csv:1:tag:env: tag:KEY addresses a Huawei IMS" in done.stderr
