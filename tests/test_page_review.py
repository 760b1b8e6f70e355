"""Review of the HTML page: error codes the plan found are counted (not as requests), and a
run across regions names the endpoints and project ids its requests actually went to."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from batchpatch.fake import FakeConfig, running_fake
from tests.e2e import TOKEN, run_cli
from tests.sheets import write_sheet
from tests.test_regions import (
    PROJECT_A,
    PROJECT_B,
    REGION_A,
    REGION_B,
    aksk,
    region_args,
    two_region_sheet,
    two_regions,
)
from tests.test_regions_page import Tables

IMAGES: list[dict[str, Any]] = [
    {"id": str(uuid.UUID(int=n + 1, version=4)), "name": f"image-{n}", "status": "active"}
    for n in range(2)
]
MISSING = "00000000-0000-4000-8000-00000000dead"


def test_plan_stage_error_codes_are_counted_on_the_page(tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "name"],
        [[IMAGES[0]["id"], "new-0"], [MISSING, "ghost"], [MISSING.replace("dead", "beef"), "g2"]],
    )
    page = tmp_path / "run.html"
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(["apply", str(sheet), "--endpoint", fake.url, "--html", str(page)])
        sent = fake.stats.snapshot().total_requests
    assert done.returncode == 1, done.stderr
    tables = Tables(page.read_text(encoding="utf-8")).tables
    assert [(row["error code"], row["images"]) for row in tables["plan-errors"]] == [
        ("not_found", "2")
    ]
    assert tables["plan-errors"][0]["example image id"] in {MISSING, MISSING[:-4] + "beef"}
    assert [row["error code"] for row in tables["errors"]] == ["none"]  # no answer had one
    requests = re.search(
        r"<td>requests</td><td class='n' data-value='(\d+)'>", page.read_text(encoding="utf-8")
    )
    assert requests is not None
    assert int(requests.group(1)) == sent  # the plan's codes are not requests


class Items(Tables):
    """The page's tables, and the text of each list item."""

    def __init__(self, text: str) -> None:
        self.items: list[str] = []
        self._item: list[str] | None = None
        super().__init__(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "li":
            self._item = []
        super().handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "li" and self._item is not None:
            self.items.append("".join(self._item).strip())
            self._item = None
        super().handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        if self._item is not None:
            self._item.append(data)
        super().handle_data(data)


def test_a_run_across_regions_names_the_endpoints_and_projects_it_used(tmp_path: Path) -> None:
    sheet = two_region_sheet(tmp_path / "s.csv")
    page = tmp_path / "run.html"
    with two_regions() as (a, b):
        done = run_cli(
            ["apply", str(sheet), *region_args(a, b), "--rate", "200", "--html", str(page)],
            token=None,
            environ=aksk(),
        )
    assert done.returncode == 0, done.stderr
    text = page.read_text(encoding="utf-8")
    assert "myhuaweicloud.com" not in text  # no endpoint the run never used
    parsed = Items(text)
    settings = {row["setting"]: row["value"] for row in parsed.tables["settings"]}
    assert settings[f"endpoint ({REGION_A})"] == a.url
    assert settings[f"endpoint ({REGION_B})"] == b.url
    assert "endpoint" not in settings
    items = parsed.items
    region_lines = [item for item in items if item.startswith("region ")]
    assert region_lines == [f"region {REGION_A}:", f"region {REGION_B}:"]
    projects = [item for item in items if item.startswith("project id:")]
    assert len(projects) == 2, items
    assert projects[0].startswith(f"project id: {PROJECT_A} (from "), projects
    assert projects[1] == f"project id: {PROJECT_B} (looked up in IAM)"
    assert f"endpoint: {a.url} (from --region-endpoint)" in items
    assert f"endpoint: {b.url} (from --region-endpoint)" in items
