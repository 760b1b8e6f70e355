"""TLS is verified by default; --ca-bundle trusts a private CA.  The fake serves HTTPS on
127.0.0.1 with a certificate made here by openssl."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from batchpatch.fake import FakeConfig, running_fake
from tests.e2e import TOKEN, run_cli, sample_images
from tests.sheets import write_sheet

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def test_tls_is_verified_unless_the_ca_is_given(tmp_path: Path,
                                                certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    images = sample_images()
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[images[0]["id"], "tls"]])
    with running_fake(images, FakeConfig(token=TOKEN), tls=tls) as fake:
        assert fake.url.startswith("https://127.0.0.1:")
        refused = run_cli(["apply", str(sheet), "--endpoint", fake.url, "--max-attempts", "1"])
        assert fake.stats.total_requests == 0
        trusted = run_cli(["apply", str(sheet), "--endpoint", fake.url, "--ca-bundle",
                           str(cert)])
        state = fake.store.images
    assert refused.returncode == 3
    assert "certificate verify failed" in refused.stderr
    assert trusted.returncode == 0, trusted.stderr
    assert state[images[0]["id"]]["name"] == "tls"
