"""One client run, in its own process, timed from inside: ``python -m bench.clients KIND ...``.

Each kind renames every image of ``--ids`` (one per line) to ``{label}-{n}`` against
``--url`` and prints one JSON line: ``seconds`` (the work alone, after imports), ``images``,
``ok`` (2xx answers), ``cpu_s`` (the CPU time of that work, every thread) and ``maxrss_kb``
(this process's peak RSS).  A separate process per run
keeps runs from sharing a heap or an event loop, lets the caller pin it to a core, and makes
``maxrss_kb`` the run's own.

Every kind is timed after the imports of its entry point (``IMPORTS``: aiohttp for the
bare loop, the SDK's modules, ``batchpatch.cli``); what the work itself imports on the way
(batchpatch's CSV reader, anyio's event-loop backend) is part of the work.

Kinds: ``aiohttp`` (one ClientSession, ``--concurrency`` workers: the bare loop every figure
is a ratio to), ``requests`` (``--concurrency`` threads, a Session each), ``sdk`` (the
official SDK's ``ImsClient.update_image`` in a plain loop, as its examples write it),
``batchpatch`` (``batchpatch apply --no-plan`` in process on a sheet written first, untimed),
``batchpatch-read`` (the same with the read pass); and, with ``--ids`` naming a sheet,
``validate`` (``batchpatch validate SHEET``) and ``report`` (writing its report).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import importlib
import io
import json
import os
import resource
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TOKEN = "bench-token-not-a-secret"
CONTENT_TYPE = "application/json;charset=utf-8"


def operations(label: str, number: int) -> list[dict[str, str]]:
    """The one change every client sends for image ``number``: a rename."""
    return [{"op": "replace", "path": "/name", "value": f"{label}-{number}"}]


async def _aiohttp_loop(url: str, ids: list[str], label: str, concurrency: int) -> int:
    import aiohttp

    work = iter(enumerate(ids))
    ok = 0
    headers = {"Content-Type": CONTENT_TYPE, "X-Auth-Token": TOKEN}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal ok
            for number, image_id in work:
                body = json.dumps(operations(label, number)).encode()
                async with session.patch(f"{url}/v2/cloudimages/{image_id}", data=body) as answer:
                    await answer.read()
                    ok += answer.status < 300

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


def run_aiohttp(url: str, ids: list[str], label: str, concurrency: int) -> int:
    return asyncio.run(_aiohttp_loop(url, ids, label, concurrency))


def _threaded(
    ids: list[str], threads: int, send: Callable[[Any, int, str], bool], make: Callable[[], Any]
) -> int:
    """``send(client, number, image_id)`` for every image, from ``threads`` threads that each
    made their own client with ``make()``; the number of sends that succeeded."""
    work = iter(enumerate(ids))
    lock = threading.Lock()
    counts: list[int] = []

    def next_item() -> tuple[int, str] | None:
        with lock:
            return next(work, None)

    def worker() -> None:
        client, ok = make(), 0
        while (item := next_item()) is not None:
            ok += send(client, *item)
        counts.append(ok)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(counts)


def run_requests(url: str, ids: list[str], label: str, concurrency: int) -> int:
    import requests

    def make() -> requests.Session:
        session = requests.Session()
        session.headers.update({"Content-Type": CONTENT_TYPE, "X-Auth-Token": TOKEN})
        return session

    def send(session: requests.Session, number: int, image_id: str) -> bool:
        body = json.dumps(operations(label, number)).encode()
        answer = session.patch(f"{url}/v2/cloudimages/{image_id}", data=body, timeout=60)
        return answer.status_code < 300

    return _threaded(ids, concurrency, send, make)


def run_sdk(url: str, ids: list[str], label: str, concurrency: int) -> int:
    """The SDK as its examples use it: AK/SK credentials, one client, one call per image
    (``concurrency`` > 1 gives each of that many threads its own client)."""
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkims.v2 import ImsClient, UpdateImageRequest, UpdateImageRequestBody

    def make() -> Any:
        credentials = BasicCredentials("BENCHAK0000000000000", "bench-sk-not-a-secret", "0" * 32)
        return ImsClient.new_builder().with_credentials(credentials).with_endpoint(url).build()

    def send(client: Any, number: int, image_id: str) -> bool:
        body = [UpdateImageRequestBody(**change) for change in operations(label, number)]
        client.update_image(UpdateImageRequest(image_id=image_id, body=body))
        return True  # the SDK raises on an error answer

    return _threaded(ids, concurrency, send, make)


def write_sheet(path: Path, ids: list[str], label: str) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["image_id", "name"])
        writer.writerows([image_id, f"{label}-{n}"] for n, image_id in enumerate(ids))
    return path


@contextlib.contextmanager
def _quiet_cli() -> Iterator[None]:
    """The CLI's environment for a run: the token, no config file; its output discarded."""
    os.environ["BATCHPATCH_AUTH_TOKEN"] = TOKEN
    os.environ["BATCHPATCH_CONFIG"] = os.devnull
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def run_batchpatch(url: str, ids: list[str], label: str, concurrency: int, plan: bool) -> int:
    from batchpatch.cli import main

    with tempfile.TemporaryDirectory() as folder:
        sheet = write_sheet(Path(folder) / "sheet.csv", ids, label)
        args = ["apply", str(sheet), "--endpoint", url, "--quiet"]
        args += ["--concurrency", str(concurrency), "--rate", "100000"]
        args += [] if plan else ["--no-plan"]
        started, cpu = time.perf_counter(), time.process_time()
        with _quiet_cli():
            code = main(args)
        _TIMED["seconds"] = time.perf_counter() - started
        _TIMED["cpu_s"] = time.process_time() - cpu
    return len(ids) if code == 0 else 0


_TIMED: dict[str, float] = {}
_BATCHPATCH = ("batchpatch.cli",)
#: What each kind imports before its timer starts.
IMPORTS: dict[str, tuple[str, ...]] = {
    "aiohttp": ("aiohttp",),
    "requests": ("requests",),
    "sdk": ("huaweicloudsdkcore.auth.credentials", "huaweicloudsdkims.v2"),
    "batchpatch": _BATCHPATCH,
    "batchpatch-read": _BATCHPATCH,
    "validate": _BATCHPATCH,
    "report": _BATCHPATCH,
}
KINDS: dict[str, Callable[[str, list[str], str, int], int]] = {
    "aiohttp": run_aiohttp,
    "requests": run_requests,
    "sdk": run_sdk,
    "batchpatch": lambda url, ids, label, n: run_batchpatch(url, ids, label, n, plan=False),
    "batchpatch-read": lambda url, ids, label, n: run_batchpatch(url, ids, label, n, plan=True),
}


def run_validate(sheet: str) -> dict[str, Any]:
    """``batchpatch validate SHEET``, timed in process (the CLI's own work, after imports)."""
    from batchpatch.cli import main

    started, cpu = time.perf_counter(), time.process_time()
    with _quiet_cli():
        code = main(["validate", sheet])
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": seconds, "cpu_s": cpu_s, "exit": code}


def run_report(sheet: str) -> dict[str, Any]:
    """Write the report of ``sheet`` with every image succeeded, timed (the read is not).

    As a run's: each image's outcome shared by its rows, with its own request id and time,
    and each row its own before and after."""
    from batchpatch.models import Outcome, Status
    from batchpatch.report import RowResult, write_report
    from batchpatch.sheet import read_sheet

    read = read_sheet(Path(sheet))
    outcomes: dict[str, Outcome] = {}
    rows = []
    for row, image_id in enumerate(read.frame["image_id"].astype(str).tolist()):
        outcome = outcomes.get(image_id)
        if outcome is None:
            number = len(outcomes)
            request_id = uuid.UUID(int=number + 1).hex
            elapsed = 20 + number % 380
            outcome = Outcome(image_id, Status.SUCCEEDED, 200, "", "", request_id, 1, elapsed)
            outcomes[image_id] = outcome
        rows.append(RowResult(outcome, f"old-{row}", f"new-{row}"))
    with tempfile.TemporaryDirectory() as folder:
        started, cpu = time.perf_counter(), time.process_time()
        write_report(read, rows, Path(folder) / f"report{Path(sheet).suffix}")
        seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": seconds, "cpu_s": cpu_s, "rows": len(rows)}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=[*KINDS, "validate", "report"])
    parser.add_argument("--url", default="")
    parser.add_argument("--ids", default="", help="file of image ids, or a sheet (validate)")
    parser.add_argument("--label", default="bench")
    parser.add_argument("--concurrency", type=int, default=64)
    options = parser.parse_args(argv)
    for module in IMPORTS[options.kind]:
        importlib.import_module(module)
    if options.kind in ("validate", "report"):
        result = (run_validate if options.kind == "validate" else run_report)(options.ids)
    else:
        ids = Path(options.ids).read_text().split()
        started, cpu = time.perf_counter(), time.process_time()
        ok = KINDS[options.kind](options.url, ids, options.label, options.concurrency)
        seconds = _TIMED.get("seconds", time.perf_counter() - started)
        cpu_s = _TIMED.get("cpu_s", time.process_time() - cpu)
        result = {"seconds": seconds, "cpu_s": cpu_s, "images": len(ids), "ok": ok}
    result["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
