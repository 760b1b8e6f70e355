"""Endpoints and credentials are safe before anything is sent: no userinfo, no plain http to
another machine unless asked, no header value aiohttp would refuse, sane limits; a TLS
certificate failure stops the run at once."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import pytest

from batchpatch.fake import FakeConfig, running_fake
from tests.certs import self_signed
from tests.e2e import TOKEN, main_exit_code
from tests.sheets import write_sheet
from tests.test_cli import read_report
from tests.wire import account

TOKEN_ENV = {"BATCHPATCH_AUTH_TOKEN": TOKEN}


@pytest.mark.parametrize(
    "endpoint",
    [
        pytest.param(
            "https://robot:s3cr3t-pw@ims.ap-southeast-1.myhuaweicloud.com", id="user-pass"
        ),
        pytest.param("https://s3cr3t-pw@ims.ap-southeast-1.myhuaweicloud.com", id="user-only"),
        pytest.param("ftp://robot:s3cr3t-pw@ims.example", id="not-http"),
    ],
)
@pytest.mark.parametrize("command", ["whoami", "apply"])
def test_userinfo_in_an_endpoint_is_refused_and_never_echoed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    endpoint: str,
    command: str,
) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "team"], [[account(1)[0]["id"], "x"]])
    args = [command, "--endpoint", endpoint] + (
        [str(sheet), "--dry-run"] if command == "apply" else []
    )
    code = main_exit_code(monkeypatch, args, TOKEN_ENV)
    out, err = capsys.readouterr()
    assert code == 2
    assert "s3cr3t-pw" not in out + err
    assert err.startswith("Error: ")
    assert not (tmp_path / "s.results.csv").exists()


@pytest.mark.parametrize(
    ("endpoint", "allowed"),
    [
        pytest.param("http://ims.example.com", False, id="remote-host"),
        pytest.param("http://10.0.0.7:8080", False, id="private-address"),
        pytest.param("http://127.0.0.1:9", True, id="loopback-v4"),
        pytest.param("http://127.8.9.10:9", True, id="loopback-net"),
        pytest.param("http://[::1]:9", True, id="loopback-v6"),
        pytest.param("http://localhost:9", True, id="localhost"),
        pytest.param("https://ims.example.com", True, id="https"),
    ],
)
def test_plain_http_is_for_this_machine_only(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    endpoint: str,
    allowed: bool,
) -> None:
    code = main_exit_code(monkeypatch, ["whoami", "--endpoint", endpoint], TOKEN_ENV)
    err = capsys.readouterr().err
    assert code == (0 if allowed else 2)
    if not allowed:
        assert "--allow-insecure-http" in err
        assert (
            main_exit_code(
                monkeypatch, ["whoami", "--endpoint", endpoint, "--allow-insecure-http"], TOKEN_ENV
            )
            == 0
        )


def test_a_plain_http_iam_endpoint_is_refused_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {
        "BATCHPATCH_IAM_USER": "u",
        "BATCHPATCH_IAM_PASSWORD": "p-not-shown",
        "BATCHPATCH_IAM_DOMAIN": "d",
    }
    code = main_exit_code(
        monkeypatch,
        ["whoami", "--region", "ap-southeast-1", "--iam-endpoint", "http://iam.example.com"],
        environ,
    )
    assert code == 2
    assert "iam endpoint http://iam.example.com is plain http://" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("environ", "source"),
    [
        pytest.param(
            {"BATCHPATCH_AUTH_TOKEN": "tok-a\nX-Evil: 1"},
            "environment variable BATCHPATCH_AUTH_TOKEN",
            id="token-newline",
        ),
        pytest.param(
            {"HUAWEICLOUD_SDK_AK": "AK\rEVIL", "HUAWEICLOUD_SDK_SK": "sk-value"},
            "environment variables HUAWEICLOUD_SDK_AK",
            id="ak-carriage-return",
        ),
        pytest.param(
            {
                "HUAWEICLOUD_SDK_AK": "AKAKAK",
                "HUAWEICLOUD_SDK_SK": "sk-value",
                "HUAWEICLOUD_SDK_PROJECT_ID": "p\x1broj",
            },
            "environment variables HUAWEICLOUD_SDK_AK",
            id="project-escape",
        ),
    ],
)
def test_a_credential_aiohttp_would_refuse_is_rejected_before_sending(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    environ: dict[str, str],
    source: str,
) -> None:
    images = account(1)
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "team"], [[images[0]["id"], "x"]])
    with running_fake(images, FakeConfig()) as fake:
        code = main_exit_code(monkeypatch, ["apply", str(sheet), "--endpoint", fake.url], environ)
        sent = fake.stats.total_requests
    err = capsys.readouterr().err
    assert (code, sent) == (2, 0)
    assert source in err
    assert "control character" in err
    assert "EVIL" not in err
    assert "tok-a" not in err


@pytest.mark.parametrize(
    ("option", "value", "accepted"),
    [
        pytest.param("--rate", "5e-324", False, id="rate-denormal"),
        pytest.param("--rate", "1e-9", False, id="rate-31-years"),
        pytest.param("--rate", "0.009", False, id="rate-below"),
        pytest.param("--rate", "100001", False, id="rate-above"),
        pytest.param("--rate", "nan", False, id="rate-nan"),
        pytest.param("--rate", "0.01", True, id="rate-lowest"),
        pytest.param("--rate", "100000", True, id="rate-highest"),
        pytest.param("--concurrency", "0", False, id="concurrency-zero"),
        pytest.param("--concurrency", "1000000", False, id="concurrency-huge"),
        pytest.param("--concurrency", "1000", True, id="concurrency-most"),
    ],
)
def test_rate_and_concurrency_are_bounded(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    accepted: bool,
) -> None:
    images = account(1)
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "team"], [[images[0]["id"], "x"]])
    with running_fake(images, FakeConfig(token=TOKEN)) as fake:
        code = main_exit_code(
            monkeypatch,
            ["apply", str(sheet), "--endpoint", fake.url, "--dry-run", option, value],
            TOKEN_ENV,
        )
    err = capsys.readouterr().err
    assert code == (0 if accepted else 2), err
    if not accepted:
        assert f"argument {option}: expected" in err


@pytest.fixture
def tls(tmp_path: Path) -> ssl.SSLContext:
    """A server context with a self-signed certificate for 127.0.0.1 nobody trusts."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    return self_signed(tmp_path)[1]


@pytest.mark.parametrize("mode", [["--no-plan"], []], ids=["write", "read"])
def test_a_certificate_failure_stops_at_once_with_a_ca_bundle_hint(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tls: ssl.SSLContext,
    mode: list[str],
) -> None:
    images = account(3)
    sheet = write_sheet(
        tmp_path / "s.csv", ["image_id", "team"], [[image["id"], "x"] for image in images]
    )
    with running_fake(images, FakeConfig(token=TOKEN), tls=tls) as fake:
        code = main_exit_code(
            monkeypatch,
            ["apply", str(sheet), "--endpoint", fake.url, "--quiet", "--backoff", "30", *mode],
            TOKEN_ENV,
        )
    err = capsys.readouterr().err
    assert code == 3
    assert "--ca-bundle" in err
    assert "certificate" in err
    report = read_report(tmp_path / "s.results.csv")
    if mode:  # the first write went alone, was not retried, and stopped the run
        assert report["attempts"].tolist() == ["1", "0", "0"]
        assert report["status"].tolist() == ["failed", "not_attempted", "not_attempted"]
        assert report.loc[0, "error_code"] == "tls_failed"
    else:
        assert set(report["status"]) == {"not_attempted"}
