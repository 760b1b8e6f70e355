"""The HTML page of a run across two regions breaks its figures down by region, and says
what the summary's ``regions`` object says, number for number; each region's numbers are
its own fake's."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from batchpatch.fake import FakeConfig, running_fake
from batchpatch.fake.stats import StatsSnapshot
from tests.e2e import TOKEN, run_cli
from tests.sheets import write_sheet
from tests.test_regions import (
    IMAGES_A,
    IMAGES_B,
    PROJECT_A,
    PROJECT_B,
    REGION_A,
    REGION_B,
    aksk,
    fake_config,
    region_args,
    two_region_sheet,
    two_regions,
)


class Tables(HTMLParser):
    """Every table of a page by its id, as rows of {header: cell text}."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[dict[str, str]]] = {}
        self._header: list[str] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._id = ""
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._id, self._header = dict(attrs).get("id") or "", []
            self.tables[self._id] = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if not self._header:
                self._header = self._row
            else:
                self.tables[self._id].append(dict(zip(self._header, self._row, strict=False)))
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def by_region(self, ident: str) -> dict[str, dict[str, str]]:
        return {row["region"]: row for row in self.tables[ident]}


def number(text: str) -> float:
    return float(text.replace(",", ""))


def ims_requests(stats: StatsSnapshot) -> int:
    """The IMS requests a fake answered (its IAM lookups are not a region's requests)."""
    return stats.total_requests - stats.requests_by_kind["projects"]


def run_two(tmp_path: Path, config_a: FakeConfig, config_b: FakeConfig, *extra: str) -> Any:
    sheet = two_region_sheet(tmp_path / "s.csv")
    summary = tmp_path / "summary.json"
    with two_regions(config_a, config_b) as (a, b):
        done = run_cli(
            [
                "apply",
                str(sheet),
                *region_args(a, b),
                "--rate",
                "200",
                "--backoff",
                "0.001",
                "--summary",
                str(summary),
                *extra,
            ],
            token=None,
            environ=aksk(),
        )
        stats = {REGION_A: a.stats.snapshot(), REGION_B: b.stats.snapshot()}
    page = Tables((tmp_path / "summary.html").read_text(encoding="utf-8"))
    return done, stats, page, json.loads(summary.read_text(encoding="utf-8"))


def test_the_page_shows_each_regions_figures_as_its_fake_saw_them(tmp_path: Path) -> None:
    """Region B throttles two requests and answers slower: the page's region B row has
    those two throttled answers, B's requests and B's latency; A's row has A's."""
    throttle_b = {IMAGES_B[0]["id"]: ["429"], IMAGES_B[3]["id"]: ["429"]}
    config_a = fake_config(PROJECT_A, latency=0.01)
    config_b = FakeConfig(
        access_key=config_a.access_key,
        secret_key=config_a.secret_key,
        project_id=PROJECT_B,
        latency=0.06,
        script=throttle_b,
    )
    done, stats, page, summary = run_two(tmp_path, config_a, config_b)
    assert done.returncode == 0, done.stderr
    regions = page.by_region("regions")
    statuses = page.by_region("region-statuses")
    assert set(regions) == set(statuses) == {REGION_A, REGION_B}
    for region, seen, images, latency in (
        (REGION_A, stats[REGION_A], IMAGES_A, 10.0),
        (REGION_B, stats[REGION_B], IMAGES_B, 60.0),
    ):
        row = regions[region]
        assert number(row["requests"]) == ims_requests(seen)
        assert number(row["throttled"]) == seen.faults["429"]
        assert number(row["images"]) == len(images)
        assert row["stopped early"] == "no"
        p50, p95, p99 = (number(row[f"{p} (ms)"]) for p in ("p50", "p95", "p99"))
        assert 0 < p50 <= p95 <= p99
        assert p99 >= latency  # the slowest answers are PATCHes, which the fake holds so long
        assert number(statuses[region]["succeeded"]) == len(images)
        # the summary says the same, number for number
        figures = summary["regions"][region]
        assert figures["requests"] == number(row["requests"])
        assert figures["throttled"] == number(row["throttled"])
        assert figures["latency_ms"] == {"p50": p50, "p95": p95, "p99": p99}
        assert figures["counts"] == {"succeeded": len(images)}
        assert figures["endpoint"] == row["endpoint"]
    assert stats[REGION_B].faults["429"] == 2
    assert number(regions[REGION_A]["throttled"]) == 0


def test_the_page_says_which_region_stopped_and_why(tmp_path: Path) -> None:
    """Region B refuses the keys: its row says it stopped and why, as the summary does;
    region A's says it did not, and its rows are all succeeded."""
    refusing = fake_config(PROJECT_B, access_key="HPUAOTHERACCOUNTKEY9")
    done, stats, page, summary = run_two(tmp_path, fake_config(PROJECT_A), refusing)
    assert done.returncode == 3, done.stderr
    regions = page.by_region("regions")
    statuses = page.by_region("region-statuses")
    assert regions[REGION_A]["stopped early"] == "no"
    assert regions[REGION_B]["stopped early"] == summary["regions"][REGION_B]["stop_reason"]
    assert regions[REGION_B]["stopped early"] not in ("", "no")
    assert number(statuses[REGION_A]["succeeded"]) == len(IMAGES_A)
    assert number(statuses[REGION_A].get("not_attempted") or "0") == 0
    b_counts = {k: number(v) for k, v in statuses[REGION_B].items() if k != "region"}
    assert b_counts == {k: summary["regions"][REGION_B]["counts"].get(k, 0) for k in b_counts}
    assert b_counts.get("succeeded", 0) == 0
    assert sum(b_counts.values()) == len(IMAGES_B)
    assert number(regions[REGION_B]["requests"]) == ims_requests(stats[REGION_B])


def test_a_run_of_one_region_has_no_region_section(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[IMAGES_A[0]["id"], "x"]])
    with running_fake(IMAGES_A, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(
            ["apply", str(sheet), "--endpoint", fake.url, "--html", str(tmp_path / "p.html")]
        )
    assert done.returncode == 0, done.stderr
    page = Tables((tmp_path / "p.html").read_text(encoding="utf-8"))
    assert "regions" not in page.tables
    assert "overview" in page.tables
