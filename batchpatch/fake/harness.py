"""Serving the fake for tests: on the caller's event loop, or on a thread with its own loop.

``running_fake`` is the one to reach for: a plain ``with`` works from sync tests and from code
running its own event loop alike, because the server never shares that loop.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiohttp import web

from batchpatch.fake.app import make_app
from batchpatch.fake.auth import FakeAuth
from batchpatch.fake.clock import FakeClock
from batchpatch.fake.config import FakeConfig
from batchpatch.fake.stats import FakeStats
from batchpatch.fake.store import ImageStore

#: How long stopping waits for requests still being handled before cancelling them.
SHUTDOWN_TIMEOUT = 1.0
_START_TIMEOUT = 10.0

Images = ImageStore | Iterable[Mapping[str, Any]]


@dataclass(frozen=True)
class FakeServer:
    """A listening fake: its base URL (no trailing slash) and what it holds and saw.

    ``auth`` holds its issued tokens, AK lockouts and clock.  The test hooks are safe to call
    from any thread while the server runs.
    """

    url: str
    store: ImageStore
    stats: FakeStats
    config: FakeConfig
    auth: FakeAuth

    @property
    def clock(self) -> FakeClock:
        """The fake's clock (real UTC time + ``config.clock_offset`` + any ``advance_clock``)."""
        return self.auth.clock

    def advance_clock(self, seconds: float) -> None:
        """Move the fake's clock, e.g. past a lockout or a token's expiry, without sleeping."""
        self.auth.clock.advance(seconds)

    def expire_tokens(self) -> int:
        """Expire every IAM token issued so far; return how many.  Later ones are fresh."""
        return self.auth.expire_tokens()


@asynccontextmanager
async def serving_fake(
    images: Images,
    config: FakeConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ssl.SSLContext | None = None,
    clock: FakeClock | None = None,
) -> AsyncIterator[FakeServer]:
    """Serve the fake on the running event loop until the block exits (HTTPS with ``tls``;
    ``clock``: the fake's clock, e.g. one on a time source the test moves by hand)."""
    store = images if isinstance(images, ImageStore) else ImageStore(images)
    config = config or FakeConfig()
    stats = FakeStats()
    auth = FakeAuth(config, clock=clock)
    runner = web.AppRunner(
        make_app(store, config, stats, auth=auth),
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=tls)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        url = base_url(bound_host, bound_port)
        if tls is not None:
            url = "https" + url.removeprefix("http")
        yield FakeServer(url, store, stats, config, auth)
    finally:
        await runner.cleanup()


@contextmanager
def running_fake(
    images: Images,
    config: FakeConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ssl.SSLContext | None = None,
    clock: FakeClock | None = None,
) -> Iterator[FakeServer]:
    """Serve the fake from a background thread with its own event loop until the block exits.

    ``images`` is an ImageStore or image dicts (copied).  Startup errors (say, the port is
    taken) are raised here; on exit the server stops and the thread is joined.
    """
    started: Future[tuple[FakeServer, Callable[[], object]]] = Future()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        try:
            async with serving_fake(
                images, config, host=host, port=port, tls=tls, clock=clock
            ) as server:
                started.set_result((server, partial(loop.call_soon_threadsafe, stop.set)))
                await stop.wait()
        except Exception as exc:
            if started.done():
                raise
            started.set_exception(exc)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="fake-ims", daemon=True)
    thread.start()
    server, request_stop = started.result(timeout=_START_TIMEOUT)
    try:
        yield server
    finally:
        request_stop()
        thread.join()


def base_url(host: str, port: int) -> str:
    """``http://host:port``, with an IPv6 address in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
