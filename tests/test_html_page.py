"""The HTML page of a run: its numbers are the fake's, it needs no network, and no value on
it (an image id, an error code, a file name) can become markup."""

from __future__ import annotations

import csv
import json
import math
import random
import uuid
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from batchpatch.auth import TokenAuth
from batchpatch.fake import FakeConfig, running_fake
from batchpatch.htmlpage import render_page, summary_page_path
from batchpatch.job import apply_sheet
from batchpatch.models import Limits
from batchpatch.service import AnswerKind, ApiResponse
from batchpatch.telemetry import MAX_ERROR_CODES, OTHER_CODES, LatencyHistogram, Telemetry
from tests.e2e import TOKEN, run_cli
from tests.sheets import write_sheet

IMAGES: list[dict[str, Any]] = [
    {"id": str(uuid.UUID(int=n + 1, version=4)), "name": f"image-{n}", "status": "active"}
    for n in range(5)
]
IDS = [image["id"] for image in IMAGES]


class Page(HTMLParser):
    """The page read back: every table's rows by the table's id, the rate chart's bars,
    the start tags seen, and the whole text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.bars: list[tuple[int, int]] = []
        self.tags: Counter[str] = Counter()
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.attributes += attrs
        found = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(found.get("id") or "", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag == "td":  # header cells (th) are left out
            self._cell = []
        elif tag == "g" and "data-requests" in found:
            self.bars.append((int(found["data-requests"] or 0), int(found["data-throttled"] or 0)))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._table is not None:
            self._table[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def table(self, ident: str) -> dict[str, str]:
        """A two-column (or wider) table as {first cell: second cell}."""
        return {row[0]: row[1] for row in self.tables[ident] if len(row) > 1}


def number(text: str) -> float:
    return float(text.replace(",", ""))


def test_the_page_shows_what_the_fake_saw(tmp_path: Path) -> None:
    """Two 429s (then a success), three 503s that fail their image, a missing image: the
    page's counts are the fake's, request for request."""
    missing = str(uuid.UUID(int=99, version=4))
    sheet = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "name"],
        [[IDS[0], "a1"], [IDS[1], "b1"], [IDS[2], "c1"], [missing, "d1"]],
    )
    script = {IDS[0]: ["429", "429"], IDS[1]: ["503"] * 3}
    page_path, summary = tmp_path / "run.html", tmp_path / "summary.json"
    with running_fake(IMAGES, FakeConfig(token=TOKEN, script=script)) as fake:
        done = run_cli(
            [
                "apply",
                str(sheet),
                "--endpoint",
                fake.url,
                "--rate",
                "1000",
                "--max-attempts",
                "3",
                "--backoff",
                "0.001",
                "--html",
                str(page_path),
                "--summary",
                str(summary),
            ]
        )
        stats = fake.stats.snapshot()
    assert done.returncode == 1, done.stderr
    text = page_path.read_text(encoding="utf-8")
    assert (tmp_path / "summary.html").read_text(encoding="utf-8") == text  # beside --summary
    page = Page(text)

    overview = page.table("overview")
    assert number(overview["requests"]) == stats.total_requests == 4 + 3 + 3 + 1
    assert number(overview["throttled answers"]) == stats.faults["429"] == 2
    assert (number(overview["rows"]), number(overview["images"])) == (4, 4)
    assert overview["exit code"].startswith("1: ")
    assert overview["started"] <= overview["ended"]
    assert sum(r for r, _ in page.bars) == stats.total_requests
    assert sum(t for _, t in page.bars) == 2

    with (tmp_path / "s.results.csv").open(encoding="utf-8-sig", newline="") as file:
        report = list(csv.DictReader(file))
    assert {k: number(v) for k, v in page.table("statuses").items()} == Counter(
        row["status"] for row in report
    )
    assert page.table("statuses") == {"succeeded": "2", "failed": "2"}
    assert {k: number(v) for k, v in page.table("http-statuses").items()} == Counter(
        str(entry.status) for entry in stats.log
    )
    answers = page.table("answers")
    assert number(answers[AnswerKind.THROTTLED.value]) == 2
    assert number(answers[AnswerKind.UNAVAILABLE.value]) == 3

    errors = {row[0]: row[1:] for row in page.tables["errors"] if row}
    assert set(errors) == {"APIGW.0308", report[1]["error_code"]}
    assert errors["APIGW.0308"][0] == "2"
    assert errors[report[1]["error_code"]] == ["3", report[1]["request_id"]]  # the latest
    assert len(errors["APIGW.0308"][1]) >= 16  # an X-Request-Id of the fake

    latency = {k: number(v) for k, v in page.table("latency").items()}
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]

    settings = page.table("settings")
    assert (settings["--rate"], settings["--max-attempts"]) == ("1,000", "3")
    assert settings["endpoint"] == fake.url
    assert "token: ***" in "".join(page.text)
    assert TOKEN not in text
    # Self-contained: nothing to fetch, nothing to run.
    assert page.tags["script"] == page.tags["link"] == page.tags["img"] == 0
    linked = {value for _, value in page.attributes if value and "//" in value}
    assert linked == {"http://www.w3.org/2000/svg"}  # the SVG namespace, never fetched
    assert page.tags["svg"] == 2


def test_no_hostile_value_becomes_markup(tmp_path: Path) -> None:
    """A file name, an error code, a request id and a setting made of markup are shown as
    text: the page parses to no element they could have smuggled in."""
    folder = tmp_path / "<script>alert(1)"
    folder.mkdir()
    sheet = write_sheet(
        folder / "<img src=x onerror=alert(2)>.csv", ["image_id", "name"], [[IDS[0], "x"]]
    )
    telemetry = Telemetry()
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        result = anyio_run_apply(sheet, fake.url, telemetry)
    hostile = ApiResponse(
        400, None, "<script>alert(3)</script>", "</td></table><b>msg", "'\"><img src=y>"
    )
    telemetry.record(0.0, 0.01, hostile, AnswerKind.REFUSED)
    text = render_page(
        result,
        telemetry,
        settings={"--report": "<iframe src=//evil>"},
        credentials=["iam user: <svg onload=alert(4)>"],
    )
    page = Page(text)
    assert page.tags["script"] == page.tags["img"] == page.tags["iframe"] == page.tags["b"] == 0
    assert page.tags["svg"] == 2  # the two charts, not the credential's
    assert not [name for name, _ in page.attributes if name.startswith("on")]
    shown = "".join(page.text)
    for value in (
        "<script>alert(3)</script>",
        "'\"><img src=y>",
        "<img src=x onerror=alert(2)>.csv",
        "<script>alert(1)",
        "<iframe src=//evil>",
        "<svg onload=alert(4)>",
    ):
        assert value in shown
    assert "default-src 'none'" in text  # and were anything missed, the page may not run it


def anyio_run_apply(sheet: Path, endpoint: str, telemetry: Telemetry) -> Any:
    import anyio

    async def run() -> Any:
        return await apply_sheet(
            sheet,
            endpoint=endpoint,
            auth=TokenAuth(TOKEN, source="test"),
            limits=Limits(rate=1000),
            telemetry=telemetry,
        )

    return anyio.run(run)


@pytest.mark.parametrize(
    ("seed", "size"), [pytest.param(1, 1, id="one"), pytest.param(2, 10_000, id="many")]
)
def test_latency_percentiles_are_within_two_percent(seed: int, size: int) -> None:
    chance = random.Random(seed)
    latencies = [chance.lognormvariate(-3, 1.2) for _ in range(size)]
    histogram = LatencyHistogram()
    for latency in latencies:
        histogram.add(latency)
    ordered = sorted(latencies)
    for share in (0.5, 0.95, 0.99, 1.0):
        exact = ordered[max(1, math.ceil(share * size)) - 1]
        found = histogram.percentile(share)
        assert found is not None
        assert exact <= found <= exact * 1.02 + 1e-12


def test_memory_stays_bounded_for_a_large_run() -> None:
    """50,000 requests over an hour keep a counter per second, not one object per request;
    unknown error codes past the cap are counted together."""
    clock = iter(range(10**9))
    telemetry = Telemetry(clock=lambda: float(next(clock)) / 1e6)
    for n in range(50_000):
        code = f"X.{n % 500}"
        answer = ApiResponse(503, None, code, "busy", f"r{n}")
        telemetry.record(n / 14, n / 14 + 0.05, answer, AnswerKind.UNAVAILABLE)
    assert telemetry.requests == 50_000
    assert len(telemetry.seconds) <= 3600
    assert len(telemetry.codes) == MAX_ERROR_CODES + 1
    assert telemetry.codes[OTHER_CODES].count == 50_000 - MAX_ERROR_CODES * 100
    assert len(telemetry.latency._buckets) < 5


@pytest.mark.parametrize(
    ("summary", "page"),
    [("summary.json", "summary.html"), ("run", "run.html"), ("x.html", "x.html.html")],
)
def test_the_summary_page_sits_beside_the_summary(summary: str, page: str) -> None:
    assert summary_page_path(Path("out") / summary) == Path("out") / page


@pytest.mark.parametrize(
    ("option", "clash"),
    [
        pytest.param(["--html", "s.csv"], "--html", id="html-is-the-sheet"),
        pytest.param(["--html", "s.results.csv"], "--html", id="html-is-the-report"),
        pytest.param(["--summary", "s.json", "--html", "s.json"], "--html", id="html-is-summary"),
        pytest.param(
            ["--summary", "images.json"],
            "the HTML page images.html (beside --summary images.json)",
            id="summary-page-is-an-input",
        ),
    ],
)
def test_a_page_never_overwrites_an_input_or_another_output(
    tmp_path: Path, option: list[str], clash: str
) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[IDS[0], "x"]])
    images = tmp_path / "images.html"  # the --fake images file, under a page's name
    images.write_text(json.dumps([{"id": IDS[0], "name": "a", "status": "active"}]))
    done = run_cli(
        ["apply", str(sheet), "--fake", "--fake-images", str(images), *option], cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr
    assert clash in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "s.results.csv").exists()
