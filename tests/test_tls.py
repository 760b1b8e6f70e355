"""TLS is verified by default; --ca-bundle trusts a private CA.  The fake serves HTTPS on
127.0.0.1 with a certificate made here by openssl."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import threading
from pathlib import Path

import pytest

from batchpatch.fake import FakeConfig, running_fake
from tests.certs import self_signed
from tests.e2e import TOKEN, run_cli, sample_images
from tests.sheets import write_sheet

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1, and a server context serving it."""
    return self_signed(tmp_path)


def test_tls_is_verified_unless_the_ca_is_given(
    tmp_path: Path, certificate: tuple[Path, ssl.SSLContext]
) -> None:
    cert, tls = certificate
    images = sample_images()
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[images[0]["id"], "tls"]])
    with running_fake(images, FakeConfig(token=TOKEN), tls=tls) as fake:
        assert fake.url.startswith("https://127.0.0.1:")
        refused = run_cli(["apply", str(sheet), "--endpoint", fake.url, "--max-attempts", "1"])
        assert fake.stats.total_requests == 0
        trusted = run_cli(["apply", str(sheet), "--endpoint", fake.url, "--ca-bundle", str(cert)])
        state = fake.store.images
    assert refused.returncode == 3
    assert "certificate verify failed" in refused.stderr
    assert trusted.returncode == 0, trusted.stderr
    assert state[images[0]["id"]]["name"] == "tls"


class ConnectProxy:
    """A minimal HTTPS proxy on 127.0.0.1: answers CONNECT, then pipes bytes both ways, and
    counts the tunnels it opened."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(10)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *_: object) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        method, target = request.decode("latin-1").split(" ")[:2]
        if method != "CONNECT":
            writer.close()
            return
        self.tunnels.append(target)
        host, port = target.rsplit(":", 1)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            finally:
                sink.close()

        await asyncio.gather(
            pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True
        )


def test_https_proxy_from_the_environment_is_used(
    tmp_path: Path, certificate: tuple[Path, ssl.SSLContext]
) -> None:
    cert, tls = certificate
    images = sample_images()
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[images[0]["id"], "proxied"]])
    proxy = ConnectProxy()
    with running_fake(images, FakeConfig(token=TOKEN), tls=tls) as fake, proxy as proxy_url:
        done = run_cli(
            ["apply", str(sheet), "--endpoint", fake.url, "--ca-bundle", str(cert)],
            environ={"HTTPS_PROXY": proxy_url},
        )
        state = fake.store.images
    assert done.returncode == 0, done.stderr
    assert proxy.tunnels
    assert all(tunnel == fake.url.removeprefix("https://") for tunnel in proxy.tunnels)
    assert state[images[0]["id"]]["name"] == "proxied"
