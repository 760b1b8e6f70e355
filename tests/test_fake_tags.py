"""The fake IMS's tag API over real sockets: its rules, limits, error bodies, faults, counters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from batchpatch.fake import FakeConfig, FakeServer, ImageFileError, load_images, running_fake
from batchpatch.fake.config import DEFAULT_PROJECT_ID
from batchpatch.fake.errors import IMS_MESSAGES
from tests.fakeclient import DROPPED, Reply, request, token_headers, url_of

TOKEN = "test-token"
PROJECT = "5e6f7a8b9c0d4e1f8a2b3c4d5e6f7a8b"
BASE = f"/v2/{PROJECT}/images"

IMAGES: list[dict[str, Any]] = [
    {"id": "img-1", "name": "web-01", "status": "active", "tags": []},
    {"id": "img-2", "name": "web-02", "status": "active", "tags": ["team=blue", "legacy"]},
    {"id": "img-3", "name": "db-01", "status": "queued", "tags": {"team": "red"}},
    {"id": "img-4", "name": "db-02", "status": "active"},
]  # fmt: skip


def call(fake: FakeServer, method: str, path: str, body: object = None) -> Reply:
    raw = None if body is None else json.dumps(body).encode()
    return request(method, url_of(fake, path), raw=raw, headers=token_headers(TOKEN))


def action(fake: FakeServer, image_id: str, verb: str, tags: dict[str, str]) -> Reply:
    items = [{"key": key, "value": value} for key, value in tags.items()]
    return call(fake, "POST", f"{BASE}/{image_id}/tags/action", {"action": verb, "tags": items})


def query(fake: FakeServer, **body: object) -> Reply:
    return call(fake, "POST", f"{BASE}/resource_instances/action", body)


def code(reply: Reply) -> str:
    return str(reply.body["error"]["code"])


def config(**kwargs: Any) -> FakeConfig:
    return FakeConfig(token=TOKEN, project_id=PROJECT, **kwargs)


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    with running_fake(IMAGES, config()) as server:
        yield server


# --- tags/action ---------------------------------------------------------------------------


def test_create_sets_overwrites_and_repeats_with_204_and_no_body(fake: FakeServer) -> None:
    first = action(fake, "img-1", "create", {"team": "blue", "env": "prod"})
    again = action(fake, "img-1", "create", {"team": "green", "env": "prod"})
    assert (first.status, first.body, again.status, again.body) == (204, None, 204, None)
    assert fake.store.tags["img-1"] == {"team": "green", "env": "prod"}
    assert fake.store.images["img-1"]["tags"] == ["env=prod", "team=green"]  # sorted by key
    stats = fake.stats.snapshot()
    assert (stats.tag_write_requests, stats.patch_requests) == (2, 0)
    assert stats.tag_applied_by_image == {"img-1": 2}


def test_delete_removes_by_key_and_a_missing_tag_is_no_error(fake: FakeServer) -> None:
    reply = action(fake, "img-2", "delete", {"team": "", "absent": "", "odd key*": ""})
    assert (reply.status, reply.body) == (204, None)
    assert fake.store.tags["img-2"] == {"legacy": ""}
    assert fake.store.images["img-2"]["tags"] == ["legacy"]


def test_tags_on_an_image_that_is_not_active_are_allowed(fake: FakeServer) -> None:
    assert action(fake, "img-3", "create", {"env": "dev"}).status == 204
    assert fake.store.tags["img-3"] == {"team": "red", "env": "dev"}


def test_an_image_without_a_tags_field_gains_one_and_loses_it_again(fake: FakeServer) -> None:
    action(fake, "img-4", "create", {"env": "dev"})
    assert fake.store.images["img-4"]["tags"] == ["env=dev"]
    action(fake, "img-4", "delete", {"env": ""})
    assert fake.store.get("img-4") == IMAGES[3]


BAD_CREATES = [
    pytest.param({"": "v"}, id="empty-key"),
    pytest.param({"k" * 37: "v"}, id="key-too-long"),
    pytest.param({"a.b": "v"}, id="dot-in-key"),
    pytest.param({"a b": "v"}, id="space-in-key"),
    pytest.param({"k": "v" * 44}, id="value-too-long"),
    pytest.param({"k": "a/b"}, id="slash-in-value"),
    pytest.param({"k": "a=b"}, id="equals-in-value"),
]


@pytest.mark.parametrize("tags", BAD_CREATES)
def test_create_refuses_a_tag_outside_the_strict_rules(
    fake: FakeServer, tags: dict[str, str]
) -> None:
    reply = action(fake, "img-1", "create", {"ok": "fine", **tags})
    assert (reply.status, reply.body) == (
        400,
        {"error": {"code": "IMG.0115", "message": "The image tag is invalid."}},
    )
    assert fake.store.tags["img-1"] == {}


def test_create_accepts_the_edges_of_the_strict_rules(fake: FakeServer) -> None:
    tags = {"k" * 36: "v" * 43, "键_-9": "值.1-_", "empty": ""}
    assert action(fake, "img-1", "create", tags).status == 204
    assert fake.store.tags["img-1"] == tags


def test_delete_checks_only_lengths(fake: FakeServer) -> None:
    assert action(fake, "img-1", "delete", {"k" * 127: "v" * 255}).status == 204
    assert code(action(fake, "img-1", "delete", {"k" * 128: ""})) == "IMG.0115"
    assert code(action(fake, "img-1", "delete", {"k": "v" * 256})) == "IMG.0115"


def test_ten_tags_fit_and_an_eleventh_is_over_the_quota(fake: FakeServer) -> None:
    ten = {f"k{n}": "v" for n in range(10)}
    assert action(fake, "img-1", "create", ten).status == 204
    assert action(fake, "img-1", "create", {"k0": "changed"}).status == 204  # overwrite fits
    reply = action(fake, "img-1", "create", {"k10": "v"})
    assert (reply.status, reply.body["error"]) == (
        400,
        {"code": "IMG.0116", "message": IMS_MESSAGES["IMG.0116"]},
    )
    assert fake.store.tags["img-1"] == ten | {"k0": "changed"}


BAD_BODIES = [
    pytest.param({"action": "Create", "tags": [{"key": "k", "value": "v"}]}, "IMG.0001",
                 id="action-case"),
    pytest.param({"action": "create", "tags": []}, "IMG.0001", id="no-tags"),
    pytest.param({"action": "create"}, "IMG.0001", id="tags-missing"),
    pytest.param({"action": "create", "tags": [{"key": 1, "value": "v"}]}, "IMG.0001",
                 id="key-not-a-string"),
    pytest.param({"action": "create", "tags": [{"key": "k", "value": "a"},
                                               {"key": "k", "value": "b"}]}, "IMG.0115",
                 id="key-twice"),
    pytest.param({"action": "delete", "tags": [{"key": "k"}, {"key": "k"}]}, "IMG.0115",
                 id="key-twice-on-delete"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "expected"), BAD_BODIES)
def test_tag_action_refuses_a_malformed_body(fake: FakeServer, body: object, expected: str) -> None:
    reply = call(fake, "POST", f"{BASE}/img-1/tags/action", body)
    assert (reply.status, code(reply)) == (400, expected)


def test_an_unknown_image_is_404(fake: FakeServer) -> None:
    reply = action(fake, "img-x", "create", {"k": "v"})
    assert (reply.status, code(reply)) == (404, "IMG.0027")
    assert call(fake, "GET", f"{BASE}/img-x/tags").status == 404


def test_a_project_that_is_not_the_accounts_is_refused(fake: FakeServer) -> None:
    reply = call(fake, "GET", f"/v2/{DEFAULT_PROJECT_ID}/images/img-1/tags")
    assert (reply.status, reply.body) == (
        400,
        {"error": {"code": "IMG.0030", "message": IMS_MESSAGES["IMG.0030"]}},
    )
    assert fake.stats.auth_failures == {"IMG.0030/path-project": 1}


def test_without_a_configured_project_the_default_one_is_the_accounts() -> None:
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as server:
        reply = call(server, "GET", f"/v2/{DEFAULT_PROJECT_ID}/images/img-2/tags")
    assert reply.status == 200


def test_tag_calls_need_authentication(fake: FakeServer) -> None:
    reply = request("GET", url_of(fake, f"{BASE}/img-1/tags"), headers=token_headers(None))
    assert (reply.status, reply.body["error_code"]) == (401, "APIGW.0301")


# --- add one, delete one, reads ------------------------------------------------------------


def test_add_one_and_delete_one(fake: FakeServer) -> None:
    added = call(fake, "POST", f"{BASE}/img-1/tags", {"tag": {"key": "env", "value": "prod"}})
    bad = call(fake, "POST", f"{BASE}/img-1/tags", {"tag": {"key": "e v", "value": "x"}})
    assert (added.status, added.body, code(bad)) == (204, None, "IMG.0115")
    assert fake.store.tags["img-1"] == {"env": "prod"}
    gone = call(fake, "DELETE", f"{BASE}/img-1/tags/env")
    missing = call(fake, "DELETE", f"{BASE}/img-1/tags/env")
    assert (gone.status, gone.body, missing.status) == (204, None, 204)
    assert fake.store.tags["img-1"] == {}
    assert fake.stats.tag_writes_by_image == {"img-1": 4}


def test_reads_answer_an_images_tags_and_the_tenants_keys(fake: FakeServer) -> None:
    one = call(fake, "GET", f"{BASE}/img-2/tags")
    assert (one.status, one.body) == (
        200,
        {"tags": [{"key": "team", "value": "blue"}, {"key": "legacy", "value": ""}]},
    )
    every = call(fake, "GET", f"{BASE}/tags")
    assert every.body == {
        "tags": [{"key": "legacy", "values": [""]}, {"key": "team", "values": ["blue", "red"]}]
    }
    stats = fake.stats.snapshot()
    assert (stats.tag_read_requests, stats.tag_write_requests) == (2, 0)


def test_the_image_objects_tags_field_lists_strings(fake: FakeServer) -> None:
    reply = call(fake, "GET", "/v2/cloudimages?id=img-3")
    assert reply.body["images"][0]["tags"] == ["team=red"]


def test_an_images_file_with_unreadable_tags_is_refused(tmp_path: Any) -> None:
    path = tmp_path / "images.json"
    path.write_text(json.dumps([{"id": "a", "tags": [7]}]))
    with pytest.raises(ImageFileError, match="image 1: cannot read the tag 7"):
        load_images(path)


# --- resource_instances/action -------------------------------------------------------------


def ids(reply: Reply) -> list[str]:
    return [resource["resource_id"] for resource in reply.body["resources"]]


def test_filter_answers_resources_with_their_tags(fake: FakeServer) -> None:
    reply = query(fake, action="filter", tags_any=[{"key": "team", "values": []}])
    assert reply.status == 200
    assert reply.body == {
        "total_count": 2,
        "resources": [
            {"resource_id": "img-2", "resource_name": "web-02",
             "resource_detail": {"status": "active"},
             "tags": [{"key": "team", "value": "blue"}, {"key": "legacy", "value": ""}]},
            {"resource_id": "img-3", "resource_name": "db-01",
             "resource_detail": {"status": "queued"}, "tags": [{"key": "team", "value": "red"}]},
        ],
    }  # fmt: skip


QUERIES = [
    pytest.param({"tags": [{"key": "team", "values": ["red"]}]}, ["img-3"], id="tags-value"),
    pytest.param({"tags": [{"key": "team", "values": []}, {"key": "legacy", "values": []}]},
                 ["img-2"], id="tags-all"),
    pytest.param({"tags_any": [{"key": "legacy", "values": []}, {"key": "team",
                                                                 "values": ["red"]}]},
                 ["img-2", "img-3"], id="tags-any"),
    pytest.param({"not_tags": [{"key": "team", "values": ["blue"]}]}, ["img-1", "img-3", "img-4"],
                 id="not-tags"),
    pytest.param({"not_tags_any": [{"key": "team", "values": []}]}, ["img-1", "img-4"],
                 id="not-tags-any"),
    pytest.param({"without_any_tag": True, "tags": [{"key": "team", "values": []}]},
                 ["img-1", "img-4"], id="without-any-tag"),
    pytest.param({"matches": [{"key": "resource_name", "value": "web"}]}, ["img-1", "img-2"],
                 id="name-match"),
    pytest.param({"matches": [{"key": "resource_id", "value": "img-4"}]}, ["img-4"],
                 id="id-match"),
    pytest.param({}, ["img-1", "img-2", "img-3", "img-4"], id="no-filter"),
    pytest.param({"limit": "2", "offset": "1"}, ["img-2", "img-3"], id="page"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "expected"), QUERIES)
def test_filter_selects(fake: FakeServer, body: dict[str, object], expected: list[str]) -> None:
    assert ids(query(fake, action="filter", **body)) == expected


def test_count_answers_only_the_total(fake: FakeServer) -> None:
    reply = query(fake, action="count", tags_any=[{"key": "team", "values": []}])
    assert reply.body == {"total_count": 2}


BAD_QUERIES = [
    pytest.param({"action": "Filter"}, id="action-case"),
    pytest.param({"action": "filter", "limit": 5}, id="limit-a-number"),
    pytest.param({"action": "filter", "limit": "1001"}, id="limit-over-1000"),
    pytest.param({"action": "filter", "limit": "0"}, id="limit-zero"),
    pytest.param({"action": "filter", "offset": "-1"}, id="offset-negative"),
    pytest.param({"action": "filter", "tags": []}, id="empty-tags"),
    pytest.param({"action": "filter", "tags_any": [{"key": f"k{n}", "values": []}
                                                   for n in range(11)]}, id="eleven-keys"),
    pytest.param({"action": "filter", "tags": [{"key": "k", "values": [str(n)
                                                                       for n in range(11)]}]},
                 id="eleven-values"),
    pytest.param({"action": "filter", "tags": [{"key": "k", "values": []},
                                               {"key": "k", "values": []}]}, id="key-twice"),
    pytest.param({"action": "filter", "matches": [{"key": "name", "value": "x"}]},
                 id="match-key"),
]  # fmt: skip


@pytest.mark.parametrize("body", BAD_QUERIES)
def test_a_malformed_query_is_refused(fake: FakeServer, body: dict[str, object]) -> None:
    reply = query(fake, **body)
    assert (reply.status, code(reply)) == (400, "IMG.0001")


def test_limit_1000_is_allowed(fake: FakeServer) -> None:
    assert query(fake, action="filter", limit="1000").body["total_count"] == 4


# --- faults, throttling, IAM ---------------------------------------------------------------


def test_a_scripted_429_on_a_tag_write_applies_nothing_and_the_retry_does() -> None:
    with running_fake(IMAGES, config(tag_script={"img-1": ["429"]})) as server:
        throttled = action(server, "img-1", "create", {"k": "v"})
        retried = action(server, "img-1", "create", {"k": "v"})
        stats = server.stats.snapshot()
    assert (throttled.status, throttled.body["error_code"], retried.status) == (
        429,
        "APIGW.0308",
        204,
    )
    assert (stats.tag_write_requests, stats.tag_applied_by_image) == (2, {"img-1": 1})
    assert stats.faults == {"429": 1}


def test_a_lost_answer_after_a_tag_write_still_applied_it() -> None:
    with running_fake(IMAGES, config(tag_script={"img-1": ["reset_after", "504_after"]})) as fake:
        lost = action(fake, "img-1", "create", {"k": "v"})
        gateway = action(fake, "img-1", "delete", {"k": ""})
        tags = fake.store.tags["img-1"]
        applied = fake.stats.tag_applied_by_image
    assert (lost.status, gateway.status, gateway.body["error_code"]) == (DROPPED, 504, "APIGW.0201")
    assert (tags, applied) == ({}, {"img-1": 2})


def test_a_200_that_is_not_the_204_applies_nothing() -> None:
    with running_fake(IMAGES, config(tag_script={"img-1": ["error_200"]})) as fake:
        reply = action(fake, "img-1", "create", {"k": "v"})
        tags = fake.store.tags["img-1"]
    assert (reply.status, reply.body["error"]["code"], tags) == (200, "IMG.0061", {})


def test_a_kind_script_aims_at_tag_reads() -> None:
    script = {"tag_query": ["429", "reset_before"], "tag_read": ["500"], "tag_list": ["503"]}
    with running_fake(IMAGES, config(kind_script=script)) as fake:
        statuses = [
            query(fake, action="filter").status,
            query(fake, action="count").status,
            call(fake, "GET", f"{BASE}/img-1/tags").status,
            call(fake, "GET", f"{BASE}/tags").status,
            query(fake, action="count").status,
            call(fake, "GET", f"{BASE}/img-1/tags").status,
        ]
        faults = fake.stats.faults
    assert statuses == [429, DROPPED, 500, 503, 200, 200]
    assert faults == {"429": 1, "503": 1, "500": 1, "reset_before": 1}


def test_random_faults_reach_tag_writes_as_they_reach_patches() -> None:
    with running_fake(IMAGES, config(reset_after=1.0)) as fake:
        lost = action(fake, "img-1", "create", {"k": "v"})
        read = call(fake, "GET", f"{BASE}/img-1/tags")  # a GET draws only 500 and 503
    assert (lost.status, read.status, read.body) == (
        DROPPED,
        200,
        {"tags": [{"key": "k", "value": "v"}]},
    )


def test_iam_lists_the_accounts_projects_for_a_region() -> None:
    extra = "7a7a7a7a7a7a4a7a8a7a7a7a7a7a7a7a"
    with running_fake(IMAGES, config(extra_projects=(extra,), rate_limit=1)) as fake:
        replies = [call(fake, "GET", "/v3/projects?name=cn-north-4") for _ in range(2)]
    assert [reply.status for reply in replies] == [200, 200]  # IAM: no IMS rate limit
    projects = replies[0].body["projects"]
    assert [(p["id"], p["name"]) for p in projects] == [
        (PROJECT, "cn-north-4"),
        (extra, "cn-north-4"),
    ]


def test_iam_projects_need_authentication(fake: FakeServer) -> None:
    reply = request("GET", url_of(fake, "/v3/projects?name=r"), headers=token_headers(None))
    assert reply.status == 401
