"""batchpatch --api glance against a real glance-api 33 on 127.0.0.1 (``pytest -m glance``).

One glance-api for the session (tools/glance_peer.py: a cached venv, SQLite, no Keystone),
its property quota lowered to 12 so that a 413 can be met; images are made through Glance's
own API (``POST /v2/images``, ``PUT …/file``), then the CLI runs in process.  PATCHes are
counted from Glance's side: its access log, read after one more request has been answered
(the one worker answers in order, so every earlier request is logged by then).
"""

from __future__ import annotations

import csv
import http.client
import importlib.util
import json
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest

from batchpatch.auth import NoAuth
from batchpatch.glance import PATCH_CONTENT_TYPE, GlanceClient
from batchpatch.service import AnswerKind
from tests.e2e import ROOT, run_cli
from tests.sheets import write_sheet

pytestmark = pytest.mark.glance

QUOTA = 12
#: Requests in flight while seeding: enough to keep Glance's one worker busy between them.
SEEDERS = 4


def _peer_module() -> Any:
    spec = importlib.util.spec_from_file_location("glance_peer", ROOT / "tools" / "glance_peer.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("glance_peer", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class Peer:
    """The running Glance, and a tiny client of its own API for seeding and checking."""

    def __init__(self, glance: Any) -> None:
        self.glance = glance
        self.url: str = glance.url

    def call(self, method: str, path: str, body: Any = None, content_type: str = "") -> Any:
        connection = http.client.HTTPConnection("127.0.0.1", self.glance.port, timeout=60)
        data = body if isinstance(body, bytes) else None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type or "application/json"} if body is not None else {}
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        assert response.status < 300, (method, path, response.status, payload[:300])
        return json.loads(payload) if payload.strip() else None

    def create(self, name: str, **properties: str) -> str:
        """An active image (raw/bare, three bytes), with ``properties``."""
        image = self.call(
            "POST",
            "/v2/images",
            {"name": name, "disk_format": "raw", "container_format": "bare", **properties},
        )
        self.call("PUT", f"/v2/images/{image['id']}/file", b"abc", "application/octet-stream")
        return str(image["id"])

    def create_many(self, names: Sequence[str]) -> list[str]:
        """Active images named ``names``, created ``SEEDERS`` at a time (in that order)."""
        with ThreadPoolExecutor(SEEDERS) as seeders:
            return list(seeders.map(self.create, names))

    def image(self, image_id: str) -> dict[str, Any]:
        image: dict[str, Any] = self.call("GET", f"/v2/images/{image_id}")
        return image

    def patches(self) -> int:
        """PATCHes Glance has answered so far."""
        self.call("GET", "/v2/images?limit=1")  # answered only after all before it are logged
        return int(self.glance.requests("PATCH"))

    def answered(self, request: str) -> int:
        """Requests starting ``METHOD /path?query`` Glance has answered so far."""
        self.call("GET", "/v2/images?limit=1")  # answered only after all before it are logged
        lines = self.glance.access_log.read_text(encoding="utf-8", errors="replace")
        return lines.count(f'"{request}')


@pytest.fixture(scope="session")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    glance_peer = _peer_module()
    try:
        with glance_peer.running(tmp_path_factory.mktemp("glance"), property_quota=QUOTA) as glance:
            yield Peer(glance)
    except glance_peer.PeerError as error:
        pytest.fail(f"the Glance peer did not start: {error}")


@pytest.fixture(autouse=True)
def _no_openstack_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OS_"):
            monkeypatch.delenv(name)


def _cli(peer: Peer, *args: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = run_cli(
        [args[0], "--api", "glance", "--endpoint", peer.url, *args[1:]],
        token=None,
        timeout=300,
        environ=environ,
    )
    return done.returncode, done.stdout, done.stderr


def _report(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as report:
        return list(csv.DictReader(report))


def test_wide_csv_applies_then_a_rerun_sends_nothing(peer: Peer, tmp_path: Path) -> None:
    first = peer.create("wide-a", owner_team="platform")
    second = peer.create("wide-b")
    sheet = write_sheet(
        tmp_path / "wide.csv",
        ["image_id", "name", "min_ram", "protected", "owner_team", "build"],
        [[first, "wide-a2", "1024", "", "platform-web", "20261201"], [second, "", "", "no", "", 7]],
    )
    before = peer.patches()
    code, _, err = _cli(peer, "apply", str(sheet), "--quiet")
    assert code == 0, err
    assert peer.patches() - before == 2
    image = peer.image(first)
    assert (image["name"], image["min_ram"], image["owner_team"], image["build"]) == (
        "wide-a2",
        1024,
        "platform-web",
        "20261201",  # a number in the sheet, the string Glance requires for a property
    )
    assert peer.image(second)["build"] == "7"
    assert peer.image(second)["name"] == "wide-b"  # a blank cell is no change
    rows = _report(tmp_path / "wide.results.csv")
    assert [row["status"] for row in rows] == ["succeeded", "succeeded"]
    assert all(row["request_id"].startswith("req-") for row in rows)

    stamps = [peer.image(image_id)["updated_at"] for image_id in (first, second)]
    before = peer.patches()
    code, _, err = _cli(peer, "apply", str(sheet), "--quiet")
    assert code == 0, err
    assert peer.patches() == before  # counted by Glance: no PATCH at all
    assert [peer.image(image_id)["updated_at"] for image_id in (first, second)] == stamps
    assert [row["status"] for row in _report(tmp_path / "wide.results.csv")] == ["unchanged"] * 2


def test_long_xlsx_chooses_add_or_replace_from_the_image(peer: Peer, tmp_path: Path) -> None:
    image_id = peer.create("long-a", team="ops", stale="yes")
    sheet = write_sheet(
        tmp_path / "long.xlsx",
        ["image_id", "op", "path", "value"],
        [
            [image_id, "replace", "/cost_center", "cc-1"],  # absent: sent as add, never a 409
            [image_id, "add", "team", "sre"],  # present: sent as replace
            [image_id, "remove", "/stale", ""],
            [image_id, "replace", "/visibility", "community"],
            [image_id, "replace", "min_disk", 2],
        ],
    )
    code, out, err = _cli(peer, "plan", str(sheet))
    assert code == 0, err
    assert '+ cost_center: "cc-1"' in out
    assert 'team: "ops" → "sre"' in out
    assert '- stale (was "yes")' in out
    before = peer.patches()
    code, _, err = _cli(peer, "apply", str(sheet), "--quiet")
    assert code == 0, err
    assert peer.patches() - before == 1  # one atomic PATCH for the image's five rows
    image = peer.image(image_id)
    assert (image["cost_center"], image["team"], image["visibility"], image["min_disk"]) == (
        "cc-1",
        "sre",
        "community",
        2,
    )
    assert "stale" not in image


def test_dry_run_shows_the_glance_request_and_sends_no_write(peer: Peer, tmp_path: Path) -> None:
    image_id = peer.create("dry-a")
    sheet = write_sheet(tmp_path / "dry.csv", ["image_id", "name"], [[image_id, "dry-b"]])
    before = peer.patches()
    secret = "gAAAAB-keystone-token-not-for-eyes"
    code, out, err = _cli(peer, "apply", str(sheet), "--dry-run", environ={"OS_AUTH_TOKEN": secret})
    assert code == 0, err
    assert f"PATCH {peer.url}/v2/images/{image_id}" in out
    assert f"Content-Type: {PATCH_CONTENT_TYPE}" in out
    assert "X-Auth-Token: ***" in out
    assert secret not in out + err
    assert '[{"op":"replace","path":"/name","value":"dry-b"}]' in out
    assert peer.patches() == before
    assert peer.image(image_id)["name"] == "dry-a"


def test_an_image_that_does_not_exist_fails_and_the_others_go_on(
    peer: Peer, tmp_path: Path
) -> None:
    real, missing = peer.create("exists"), str(uuid.uuid4())
    sheet = write_sheet(
        tmp_path / "missing.csv", ["image_id", "name"], [[missing, "x"], [real, "exists-2"]]
    )
    code, _, err = _cli(peer, "apply", str(sheet), "--quiet")
    assert code == 1, err
    rows = _report(tmp_path / "missing.results.csv")
    assert [(row["status"], row["error_code"]) for row in rows] == [
        ("failed", "not_found"),
        ("succeeded", ""),
    ]
    assert peer.image(real)["name"] == "exists-2"


def test_the_property_quota_is_glances_413_in_the_report(peer: Peer, tmp_path: Path) -> None:
    image_id = peer.create("quota", **{f"p{n}": "v" for n in range(QUOTA - 1)})
    sheet = write_sheet(
        tmp_path / "quota.csv", ["image_id", "extra1", "extra2"], [[image_id, "a", "b"]]
    )
    code, _, err = _cli(peer, "apply", str(sheet), "--quiet")
    assert code == 1, err
    (row,) = _report(tmp_path / "quota.results.csv")
    assert (row["status"], row["http_status"]) == ("failed", "413")
    assert f"Maximum: {QUOTA}" in row["error_message"]
    assert "<br" not in row["error_message"]
    assert row["request_id"].startswith("req-")


def test_no_plan_replace_of_a_missing_property_meets_409_and_is_sent_as_add(
    peer: Peer, tmp_path: Path
) -> None:
    image_id = peer.create("noplan")
    sheet = write_sheet(
        tmp_path / "noplan.csv",
        ["image_id", "op", "path", "value"],
        [[image_id, "replace", "/tier", "gold"]],
    )
    before = peer.patches()
    code, _, err = _cli(peer, "apply", str(sheet), "--quiet", "--no-plan")
    assert code == 0, err
    assert peer.patches() - before == 2  # the replace (409 from Glance), then the add
    assert peer.image(image_id)["tier"] == "gold"


async def _answers(peer: Peer, image_id: str) -> dict[str, Any]:
    async with GlanceClient(peer.url, NoAuth(), timeout=30, connections=2) as client:
        missing = await client.update_image(image_id, [{"op": "remove", "path": "/nosuch"}])
        reserved = await client.update_image(
            image_id, [{"op": "add", "path": "/os_glance_x", "value": "x"}]
        )
        read_only = await client.update_image(
            image_id, [{"op": "replace", "path": "/status", "value": "queued"}]
        )
        unknown = await client.update_image(
            str(uuid.uuid4()), [{"op": "replace", "path": "/name", "value": "x"}]
        )
        one = await client.list_images({"id": image_id})
        none = await client.list_images({"id": str(uuid.uuid4())})
        return {
            "missing": missing,
            "reserved": reserved,
            "read_only": read_only,
            "unknown": unknown,
            "kinds": [
                client.classify(answer) for answer in (missing, reserved, read_only, unknown)
            ],
            "one": client.images(one),
            "none": client.images(none),
        }


def test_glances_refusals_are_mapped_and_their_messages_cleaned(peer: Peer) -> None:
    image_id = peer.create("refusals")
    answers = anyio.run(_answers, peer, image_id)
    assert answers["kinds"] == [
        AnswerKind.CONFLICT,
        AnswerKind.REFUSED,
        AnswerKind.REFUSED,
        AnswerKind.REFUSED,
    ]
    assert [answers[key].status for key in ("missing", "reserved", "read_only", "unknown")] == [
        409,
        403,
        403,
        404,
    ]
    assert answers["missing"].error_message.endswith("Property nosuch does not exist.")
    assert answers["reserved"].error_message == "Attribute 'os_glance_x' is reserved."
    assert answers["read_only"].error_message == "Attribute 'status' is read-only."
    assert answers["unknown"].error_message.startswith("No image found with ID")
    assert all(answers[key].request_id.startswith("req-") for key in ("missing", "unknown"))
    assert [image["id"] for image in answers["one"]] == [image_id]
    assert answers["none"] == []


class _WrongMediaType(GlanceClient):
    async def _headers(self, method: str, url: str, body: bytes) -> dict[str, str]:
        return await super()._headers(method, url, body) | {"Content-Type": "application/json"}


async def _wrong_media_type(peer: Peer, image_id: str) -> tuple[int | None, str, AnswerKind]:
    async with _WrongMediaType(peer.url, NoAuth(), timeout=30, connections=1) as client:
        answer = await client.update_image(
            image_id, [{"op": "replace", "path": "/name", "value": "x"}]
        )
        return answer.status, answer.error_message, client.classify(answer)


def test_a_wrong_media_type_is_glances_415(peer: Peer) -> None:
    status, message, kind = anyio.run(_wrong_media_type, peer, peer.create("media"))
    assert (status, kind) == (415, AnswerKind.REFUSED)
    assert message.startswith("The request media type application/json is not supported")


async def _all_pages(peer: Peer) -> tuple[int, set[str]]:
    async with GlanceClient(peer.url, NoAuth(), timeout=30, connections=1) as client:
        pages, ids = 0, set()
        async for answer in client.pages(limit=2):
            pages += 1
            ids |= {image["id"] for image in client.images(answer) or []}
        return pages, ids


def test_the_listing_follows_glances_next_links(peer: Peer) -> None:
    made = {peer.create(f"page-{n}") for n in range(3)}
    pages, ids = anyio.run(_all_pages, peer)
    assert made <= ids
    assert pages >= (len(ids) + 1) // 2


def test_a_few_hundred_images_at_full_speed(peer: Peer, tmp_path: Path) -> None:
    ids = peer.create_many([f"bulk-{n}" for n in range(200)])
    sheet = write_sheet(
        tmp_path / "bulk.csv",
        ["image_id", "name", "batch"],
        [[image_id, f"bulk-{n}-v2", n] for n, image_id in enumerate(ids)],
    )
    before = peer.patches()
    code, _, err = _cli(
        peer, "apply", str(sheet), "--quiet", "--rate", "1000", "--concurrency", "2"
    )  # Glance's one worker answers one request at a time: more in flight only queue
    assert code == 0, err
    assert peer.patches() - before == 200
    rows = _report(tmp_path / "bulk.results.csv")
    assert {row["status"] for row in rows} == {"succeeded"}
    assert peer.image(ids[137])["batch"] == "137"


# --- export and undo (after the bulk test: the listing then holds a few hundred images) ---


def _export(peer: Peer, out: Path, *filters: str) -> tuple[int, str, str]:
    return _cli(peer, "export", "--out", str(out), *(f"--filter={f}" for f in filters))


def test_export_writes_glances_columns_and_applied_untouched_sends_nothing(
    peer: Peer, tmp_path: Path
) -> None:
    image_id = peer.create("export-a", team="web", build="0042")
    peer.call(
        "PATCH",
        f"/v2/images/{image_id}",
        [
            {"op": "replace", "path": "/tags", "value": ["blue", "amber"]},
            {"op": "replace", "path": "/min_ram", "value": 512},
            {"op": "replace", "path": "/protected", "value": True},
        ],
        PATCH_CONTENT_TYPE,
    )
    listed = len(peer.call("GET", "/v2/images?limit=1000")["images"])
    out = tmp_path / "export.csv"
    code, out_text, err = _export(peer, out)
    assert code == 0, err
    assert f"exported {listed} images" in out_text  # no IMS default filter under Glance
    rows = _report(out)
    header = list(rows[0])
    assert header[:7] == [
        "image_id",
        "name",
        "visibility",
        "min_ram",
        "min_disk",
        "protected",
        "os_hidden",
    ]
    assert {"team", "build", "#tags", "#owner", "#status", "#disk_format"} <= set(header)
    assert not [column for column in header if column.startswith("tag:") or column == "tags"]
    (row,) = [row for row in rows if row["image_id"] == image_id]
    assert (row["team"], row["build"], row["min_ram"], row["protected"]) == (
        "web",
        "0042",
        "512",
        "true",
    )
    assert row["#tags"] == "amber, blue"

    before = peer.patches()
    code, _, err = _cli(peer, "apply", str(out), "--quiet")
    assert code == 0, err
    assert peer.patches() == before  # counted by Glance: no PATCH at all
    statuses = {result["status"] for result in _report(tmp_path / "export.results.csv")}
    assert statuses == {"unchanged"}


def test_an_edited_export_changes_exactly_the_edited_cell(peer: Peer, tmp_path: Path) -> None:
    image_id = peer.create("export-edit", team="web")
    out = tmp_path / "edit.csv"
    code, _, err = _export(peer, out, "name=export-edit")
    assert code == 0, err
    (row,) = _report(out)
    row["team"] = "api"
    write_sheet(out, list(row), [list(row.values())])
    before = peer.image(image_id)
    patches = peer.patches()
    code, _, err = _cli(peer, "apply", str(out), "--quiet")
    assert code == 0, err
    assert peer.patches() - patches == 1
    after = peer.image(image_id)
    assert _without_stamp(after) == _without_stamp(before) | {"team": "api"}


def test_a_glance_filter_is_glances_query(peer: Peer, tmp_path: Path) -> None:
    wanted = peer.create("filtered", cohort="c-7")
    peer.create("filtered-not", cohort="c-8")
    out = tmp_path / "filtered.csv"
    code, _, err = _export(peer, out, "cohort=c-7")  # a custom-property filter in Glance
    assert code == 0, err
    assert [row["image_id"] for row in _report(out)] == [wanted]
    code, _, err = _export(peer, tmp_path / "bad.csv", "visibility=mine")
    assert code == 2
    assert "visibility is one of public, private, shared, community, all in Glance" in err
    assert peer.image(wanted)["cohort"] == "c-7"


async def _export_in_pages(peer: Peer, out: Path) -> Any:
    from batchpatch.export import export_images
    from batchpatch.glance_export import GLANCE_EXPORT

    async with GlanceClient(peer.url, NoAuth(), timeout=60, connections=2) as client:
        return await export_images(
            out, endpoint=peer.url, auth=NoAuth(), service=client, rules=GLANCE_EXPORT, page_size=25
        )


def test_the_export_follows_next_over_many_pages(peer: Peer, tmp_path: Path) -> None:
    listed = {image["id"] for image in peer.call("GET", "/v2/images?limit=1000")["images"]}
    assert len(listed) > 100  # the bulk test's images are there
    gets = peer.answered("GET /v2/images?limit=25")
    result = anyio.run(_export_in_pages, peer, tmp_path / "paged.csv")
    pages = peer.answered("GET /v2/images?limit=25") - gets  # the first page and each next
    assert {row["image_id"] for row in _report(tmp_path / "paged.csv")} == listed
    assert result.images == len(listed)
    assert pages == result.requests == len(listed) // 25 + 1  # the last page has no next


def _without_stamp(image: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in image.items() if key != "updated_at"}


def test_undo_restores_the_images_exactly_and_undo_of_undo_the_edit(
    peer: Peer, tmp_path: Path
) -> None:
    first = peer.create("undo-a", team="web", stale="yes")
    second = peer.create("undo-b", tier="3")
    sheet = write_sheet(
        tmp_path / "edit.xlsx",
        ["image_id", "op", "path", "value"],
        [
            [first, "replace", "/name", "undo-a2"],
            [first, "replace", "/team", "api"],
            [first, "remove", "/stale", ""],
            [first, "add", "/added", "new"],
            [first, "replace", "/min_ram", 2048],
            [first, "replace", "/protected", "true"],
            [second, "replace", "/visibility", "community"],
            [second, "replace", "/os_hidden", "yes"],
            [second, "replace", "/tier", 4],
        ],
    )
    original = {image_id: peer.image(image_id) for image_id in (first, second)}
    code, _, err = _cli(peer, "apply", str(sheet), "--quiet")
    assert code == 0, err
    edited = {image_id: peer.image(image_id) for image_id in (first, second)}
    assert edited[first]["protected"] is True
    assert edited[second]["tier"] == "4"

    undo, redo = tmp_path / "edit.undo.xlsx", tmp_path / "redo.csv"
    code, _, err = _cli(peer, "apply", str(undo), "--quiet", "--undo", str(redo))
    assert code == 0, err
    for image_id, image in original.items():
        assert _without_stamp(peer.image(image_id)) == _without_stamp(image)

    code, _, err = _cli(peer, "apply", str(tmp_path / "redo.csv"), "--quiet")
    assert code == 0, err
    for image_id, image in edited.items():
        assert _without_stamp(peer.image(image_id)) == _without_stamp(image)
