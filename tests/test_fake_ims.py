"""The fake IMS server over real sockets: the service's rules, its error bodies, its counters."""

from __future__ import annotations

import ast
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import batchpatch.fake
from batchpatch.fake import (
    FakeConfig,
    FakeServer,
    ImageFileError,
    ImageStore,
    load_images,
    main,
    running_fake,
    serving_fake,
)
from batchpatch.fake.app import MAX_BODY_BYTES
from batchpatch.fake.errors import IMS_MESSAGES
from tests import fakeclient
from tests.fakeclient import Reply, new_session, request, token_headers, url_of

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token"
REQUEST_ID = re.compile(r"[0-9a-f]{32}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
OLD_TIME = "2024-01-01T00:00:00Z"

IMAGES: list[dict[str, Any]] = [
    {
        "id": "img-1",
        "name": "web-01",
        "status": "active",
        "visibility": "private",
        "owner": "project-1",
        "min_ram": 0,
        "min_disk": 40,
        "protected": False,
        "__description": "the old description",
        "__os_type": "Linux",
        "__platform": "Ubuntu",
        "__imagetype": "private",
        "__support_kvm": "true",
        "hw_firmware_type": "bios",
        "custom_team": "blue",
        "tags": [],
        "created_at": OLD_TIME,
        "updated_at": OLD_TIME,
    },
    {"id": "img-2", "name": "web-02", "status": "active", "min_ram": 1024,
     "__imagetype": "private", "updated_at": OLD_TIME},
    {"id": "img-3", "name": "db-01", "status": "queued", "min_ram": 0,
     "__imagetype": "private", "updated_at": OLD_TIME},
    {"id": "img-4", "name": "gold-01", "status": "active", "min_ram": 0,
     "__imagetype": "gold", "updated_at": OLD_TIME},
    {"id": "img-5", "name": "web-01", "status": "active", "min_ram": 0,
     "__imagetype": "private", "updated_at": OLD_TIME},
]  # fmt: skip
ALL_IDS = [image["id"] for image in IMAGES]


def call(
    fake: FakeServer | str,
    method: str,
    path: str,
    body: object = None,
    *,
    raw: bytes | None = None,
    token: str | None = TOKEN,
) -> Reply:
    """One request to a fake (or its URL); any status is returned, never raised."""
    return request(
        method,
        url_of(fake, path),
        raw=raw if raw is not None else None if body is None else json.dumps(body).encode(),
        headers=token_headers(token),
    )


def patch(fake: FakeServer, image_id: str, ops: object, **kwargs: Any) -> Reply:
    return call(fake, "PATCH", f"/v2/cloudimages/{image_id}", ops, **kwargs)


def ims_code(reply: Reply) -> str:
    return str(reply.body["error"]["code"])


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    """One server for the tests that leave the images unchanged."""
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as server:
        yield server


@pytest.fixture
def fresh() -> Iterator[FakeServer]:
    """A server of its own, for tests that change images or read counters."""
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as server:
        yield server


# --- UpdateImage: refusals -------------------------------------------------------------------


def op(kind: str, attribute: str, *value: object) -> dict[str, object]:
    """``op("replace", "name", "x")``; leave the value out for remove or to test its absence."""
    return {"op": kind, "path": f"/{attribute}", **({"value": value[0]} if value else {})}


REFUSALS = [
    pytest.param("img-1", {"op": "replace", "path": "/name", "value": "x"}, "IMG.0001",
                 id="body-not-an-array"),
    pytest.param("img-1", None, "IMG.0007", id="body-absent"),
    pytest.param("img-1", [], "IMG.0007", id="empty-array"),
    pytest.param("img-1", ["replace"], "IMG.0001", id="operation-not-an-object"),
    pytest.param("img-1", [op("move", "name", "x")], "IMG.0001", id="unknown-op"),
    pytest.param("img-1", [{"path": "/name", "value": "x"}], "IMG.0001", id="op-missing"),
    pytest.param("img-1", [{"op": "replace", "path": "name", "value": "x"}], "IMG.0001",
                 id="path-without-slash"),
    pytest.param("img-1", [{"op": "replace", "path": 7, "value": "x"}], "IMG.0001",
                 id="path-not-a-string"),
    pytest.param("img-1", [{"op": "replace", "value": "x"}], "IMG.0001", id="path-missing"),
    pytest.param("img-1", [op("add", "", "x")], "IMG.0001", id="path-only-slash"),
    pytest.param("img-1", [op("add", "a/b", "x")], "IMG.0001", id="path-nested"),
    pytest.param("img-1", [op("add", "custom_x")], "IMG.0001", id="add-without-value"),
    pytest.param("img-1", [op("replace", "name")], "IMG.0001", id="replace-without-value"),
    pytest.param("img-missing", [op("replace", "name", "x")], "IMG.0027", id="unknown-image"),
    pytest.param("img-3", [op("replace", "name", "x")], "IMG.0046", id="image-not-active"),
    *(
        pytest.param("img-1", [op("replace", name, "x")], "IMG.0105", id=f"read-only-{name}")
        for name in ("id", "status", "visibility", "owner", "min_disk", "created_at",
                     "updated_at", "__os_type", "__platform", "__imagetype", "tags",
                     "protected", "__support_arm")
    ),
    pytest.param("img-1", [op("add", "checksum", "x")], "IMG.0105", id="read-only-add-absent"),
    pytest.param("img-1", [op("remove", "name")], "IMG.0105", id="remove-name"),
    pytest.param("img-1", [op("remove", "min_ram")], "IMG.0105", id="remove-min-ram"),
    pytest.param("img-1", [op("replace", "max_ram", "2048")], "IMG.0035",
                 id="replace-missing-attribute"),
    pytest.param("img-1", [op("remove", "custom_nope")], "IMG.0035",
                 id="remove-missing-attribute"),
    pytest.param("img-1", [op("replace", "name", "n" * 129)], "IMG.0002", id="name-129-chars"),
    pytest.param("img-1", [op("replace", "name", "")], "IMG.0003", id="name-empty"),
    pytest.param("img-1", [op("replace", "name", " web")], "IMG.0003", id="name-leading-space"),
    pytest.param("img-1", [op("replace", "name", "web ")], "IMG.0003",
                 id="name-trailing-space"),
    *(
        pytest.param("img-1", [op("replace", "name", f"web{char}01")], "IMG.0003",
                     id=f"name-char-{ord(char):04x}")
        for char in "/@:,;()+é\t\U0001f600"
    ),
    pytest.param("img-1", [op("replace", "name", 5)], "IMG.0001", id="name-not-a-string"),
    pytest.param("img-1", [op("replace", "__description", "d" * 1025)], "IMG.0004",
                 id="description-1025-chars"),
    *(
        pytest.param("img-1", [op("replace", "__description", f"a{char}b")], "IMG.0054",
                     id=f"description-char-{ord(char):02x}")
        for char in "\r\n<>"
    ),
    pytest.param("img-1", [op("replace", "hw_firmware_type", "efi")], "IMG.0141",
                 id="firmware-unknown"),
    pytest.param("img-1", [op("replace", "hw_firmware_type", "UEFI")], "IMG.0141",
                 id="firmware-upper-case"),
    pytest.param("img-1", [op("replace", "min_ram", "1024")], "IMG.0055", id="min-ram-string"),
    pytest.param("img-1", [op("replace", "min_ram", -1)], "IMG.0055", id="min-ram-negative"),
    pytest.param("img-1", [op("replace", "min_ram", 1.5)], "IMG.0055", id="min-ram-float"),
    pytest.param("img-1", [op("replace", "min_ram", True)], "IMG.0055", id="min-ram-bool"),
    pytest.param("img-1", [op("replace", "min_ram", None)], "IMG.0055", id="min-ram-null"),
    pytest.param("img-1", [op("add", "max_ram", 2048)], "IMG.0055", id="max-ram-int"),
    pytest.param("img-1", [op("add", "max_ram", "2g")], "IMG.0055", id="max-ram-not-digits"),
    pytest.param("img-1", [op("add", "max_ram", "")], "IMG.0055", id="max-ram-empty"),
    pytest.param("img-1", [op("replace", "__support_kvm", "yes")], "IMG.0001",
                 id="flag-not-true-false"),
    pytest.param("img-1", [op("replace", "__support_kvm", True)], "IMG.0001",
                 id="flag-json-bool"),
    pytest.param("img-1", [op("add", "__support_xen", "TRUE")], "IMG.0001",
                 id="flag-upper-case"),
    pytest.param("img-1", [op("add", "__is_config_init", "1")], "IMG.0001",
                 id="config-init-flag"),
    pytest.param("img-1", [op("add", "hw_vif_multiqueue_enabled", "on")], "IMG.0001",
                 id="multiqueue-flag"),
    pytest.param("img-1", [op("add", "Custom_Team", "x")], "IMG.0001",
                 id="extension-name-upper-case"),
    pytest.param("img-1", [op("add", "custom_size", 3)], "IMG.0001",
                 id="extension-value-not-a-string"),
    pytest.param("img-1", [op("add", "enterprise_project_id", 0)], "IMG.0001",
                 id="project-id-not-a-string"),
    pytest.param("img-1", [op("replace", "name", "ok"), op("replace", "hw_firmware_type", "x")],
                 "IMG.0141", id="later-op-fails"),
]  # fmt: skip


@pytest.mark.parametrize(("image_id", "ops", "code"), REFUSALS)
def test_refusals_have_the_service_code_and_change_nothing(
    fake: FakeServer, image_id: str, ops: object, code: str
) -> None:
    before = fake.store.images
    reply = patch(fake, image_id, ops)
    assert (reply.status, ims_code(reply)) == (404 if code == "IMG.0027" else 400, code)
    assert reply.body["error"]["message"].startswith(IMS_MESSAGES[code].rstrip("."))
    assert set(reply.body) == {"error"}
    assert fake.store.images == before


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"[{", id="truncated"),
        pytest.param(b"not json", id="text"),
        pytest.param(b'[{"op": "add", "path": "/custom_x", "value": NaN}]', id="nan"),
        pytest.param(b"\xff\xfe\x00", id="not-utf8"),
    ],
)
def test_a_body_that_is_not_json_is_img_0001(fake: FakeServer, raw: bytes) -> None:
    reply = patch(fake, "img-1", None, raw=raw)
    assert (reply.status, ims_code(reply)) == (400, "IMG.0001")


def test_a_whitespace_body_is_empty(fake: FakeServer) -> None:
    assert ims_code(patch(fake, "img-1", None, raw=b" \n")) == "IMG.0007"


def test_the_exact_messages_of_the_common_codes(fake: FakeServer) -> None:
    assert patch(fake, "img-nope", [op("replace", "name", "x")]).body == {
        "error": {"code": "IMG.0027", "message": "The image ID in the request does not exist."}
    }
    assert patch(fake, "img-1", [op("replace", "max_ram", "1")]).body == {
        "error": {
            "code": "IMG.0035",
            "message": "An attribute conflict occurred during the modification.",
        }
    }
    assert patch(fake, "img-3", [op("replace", "name", "x")]).body == {
        "error": {"code": "IMG.0046", "message": "The image is unavailable."}
    }


# --- UpdateImage: successes ------------------------------------------------------------------

GONE = None  # in SUCCESSES: the attribute is no longer on the image

SUCCESSES = [
    pytest.param([op("replace", "name", "web-01-new")], {"name": "web-01-new"}, id="name"),
    pytest.param([op("replace", "name", "n" * 128)], {"name": "n" * 128}, id="name-128-chars"),
    pytest.param([op("replace", "name", "镜像 web_01.v2-x")], {"name": "镜像 web_01.v2-x"},
                 id="name-cjk-and-every-allowed-char"),
    pytest.param([op("replace", "__description", "d" * 1024)], {"__description": "d" * 1024},
                 id="description-1024-chars"),
    pytest.param([op("replace", "__description", "")], {"__description": ""},
                 id="description-empty"),
    pytest.param([op("add", "__description", "new")], {"__description": "new"},
                 id="add-existing-replaces"),
    pytest.param([op("remove", "__description")], {"__description": GONE},
                 id="remove-description"),
    pytest.param([op("replace", "min_ram", 2048)], {"min_ram": 2048}, id="min-ram-int"),
    pytest.param([op("replace", "min_ram", 0)], {"min_ram": 0}, id="min-ram-zero"),
    pytest.param([op("add", "max_ram", "4096")], {"max_ram": "4096"}, id="add-max-ram"),
    pytest.param([op("replace", "hw_firmware_type", "uefi")], {"hw_firmware_type": "uefi"},
                 id="firmware-uefi"),
    pytest.param([op("replace", "__support_kvm", "false")], {"__support_kvm": "false"},
                 id="flag-false"),
    pytest.param([op("add", "__support_kvm_gpu_type", "V100_vGPU")],
                 {"__support_kvm_gpu_type": "V100_vGPU"}, id="gpu-type-free-string"),
    pytest.param([op("add", "hw_vif_multiqueue_enabled", "true")],
                 {"hw_vif_multiqueue_enabled": "true"}, id="multiqueue"),
    pytest.param([op("add", "enterprise_project_id", "0")], {"enterprise_project_id": "0"},
                 id="enterprise-project"),
    pytest.param([op("add", "custom_owner_2", "Alice <a>")], {"custom_owner_2": "Alice <a>"},
                 id="add-extension"),
    pytest.param([op("replace", "custom_team", "red")], {"custom_team": "red"},
                 id="replace-extension"),
    pytest.param([op("remove", "custom_team")], {"custom_team": GONE}, id="remove-extension"),
    pytest.param([op("add", "custom_x", "1"), op("replace", "custom_x", "2"),
                  op("replace", "name", "renamed"), op("remove", "custom_x")],
                 {"custom_x": None, "name": "renamed"}, id="ops-apply-in-order"),
    pytest.param([{**op("remove", "custom_team"), "value": "ignored"}], {"custom_team": GONE},
                 id="remove-ignores-value"),
]  # fmt: skip


@pytest.mark.parametrize(("ops", "changes"), SUCCESSES)
def test_a_valid_patch_answers_the_whole_updated_image(
    fresh: FakeServer, ops: list[dict[str, object]], changes: dict[str, object]
) -> None:
    reply = patch(fresh, "img-1", ops)
    assert reply.status == 200
    merged = {**IMAGES[0], **changes, "updated_at": reply.body["updated_at"]}
    expected = {key: value for key, value in merged.items() if value is not GONE}
    assert reply.body == expected
    assert TIMESTAMP.fullmatch(reply.body["updated_at"])
    assert reply.body["updated_at"] != OLD_TIME
    assert fresh.store.images["img-1"] == reply.body
    assert list(fresh.store.images) == ALL_IDS  # order kept
    assert all(fresh.store.images[other["id"]] == other for other in IMAGES[1:])


def test_min_ram_is_stored_as_an_integer(fresh: FakeServer) -> None:
    patch(fresh, "img-1", [op("replace", "min_ram", 512)])
    assert type(fresh.store.images["img-1"]["min_ram"]) is int


def test_a_list_with_one_bad_op_changes_nothing(fresh: FakeServer) -> None:
    ops = [
        op("replace", "name", "renamed"),
        op("add", "custom_new", "x"),
        op("remove", "custom_team"),
        op("replace", "__description", "bad <description>"),
    ]
    reply = patch(fresh, "img-1", ops)
    assert (reply.status, ims_code(reply)) == (400, "IMG.0054")
    assert fresh.store.images == {image["id"]: image for image in IMAGES}


def test_the_store_clock_sets_updated_at() -> None:
    store = ImageStore(IMAGES, clock=lambda: datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC))
    image = store.apply_patch("img-2", [op("replace", "name", "x")])
    assert image["updated_at"] == "2030-05-06T07:08:09Z"


def test_the_store_copies_what_it_is_given_and_what_it_hands_out() -> None:
    images: list[dict[str, Any]] = [{"id": "a", "status": "active", "nested": {"k": 1}}]
    store = ImageStore(images)
    images[0]["nested"]["k"] = 2
    store.images["a"]["nested"]["k"] = 3
    assert store.get("a") == {"id": "a", "status": "active", "nested": {"k": 1}}
    assert store.get("b") is None


@pytest.mark.parametrize(
    ("images", "problem"),
    [
        pytest.param([{"id": "a"}, {"id": "a"}], "image 2 repeats the id 'a'", id="duplicate"),
        pytest.param([{"name": "a"}], 'image 1 has no "id" string', id="no-id"),
        pytest.param([{"id": 7}], 'image 1 has no "id" string', id="id-not-string"),
        pytest.param([["id", "a"]], "image 1 is not a JSON object", id="not-an-object"),
    ],
)
def test_the_store_refuses_images_without_unique_ids(images: list[Any], problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        ImageStore(images)


# --- Gateway: authentication, unknown routes, request ids -------------------------------------


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        pytest.param(None, "x-auth-token not found", id="missing"),
        pytest.param("", "x-auth-token not found", id="empty"),
        pytest.param("another-token", "decrypt token fail", id="wrong"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("PATCH", "/v2/cloudimages/img-1", id="patch"),
        pytest.param("GET", "/v2/cloudimages", id="list"),
    ],
)
def test_a_bad_token_is_apigw_0301(
    fresh: FakeServer, method: str, path: str, token: str | None, reason: str
) -> None:
    reply = call(fresh, method, path, [op("replace", "name", "x")], token=token)
    request_id = reply.headers["X-Request-Id"]
    assert reply.status == 401
    assert reply.body == {
        "error_code": "APIGW.0301",
        "error_msg": f"Incorrect IAM authentication information: {reason}",
        "request_id": request_id,
    }
    assert fresh.store.images["img-1"] == IMAGES[0]
    assert fresh.stats.max_in_flight == 0  # refused before the handler


def test_any_token_is_accepted_when_none_is_configured() -> None:
    with running_fake(IMAGES) as server:
        assert call(server, "GET", "/v2/cloudimages", token="whatever").status == 200
        assert call(server, "GET", "/v2/cloudimages", token=None).status == 401


def test_the_token_is_not_echoed_or_shown(fresh: FakeServer) -> None:
    replies = [
        call(fresh, "GET", "/v2/cloudimages", token="secret-guess"),
        call(fresh, "GET", "/v2/cloudimages"),
        patch(fresh, "img-1", [op("replace", "name", "x")]),
    ]
    for reply in replies:
        assert "secret-guess" not in json.dumps(reply.body) + json.dumps(dict(reply.headers))
        assert TOKEN not in json.dumps(reply.body) + json.dumps(dict(reply.headers))
    assert TOKEN not in repr(fresh.config)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/", id="root"),
        pytest.param("GET", "/v2/cloudimages/img-1", id="get-one-image"),
        pytest.param("POST", "/v2/cloudimages", id="post-list"),
        pytest.param("PUT", "/v2/cloudimages/img-1", id="put-image"),
        pytest.param("DELETE", "/v2/cloudimages/img-1", id="delete-image"),
        pytest.param("PATCH", "/v2/cloudimages/", id="patch-without-id"),
        pytest.param("PATCH", "/v2/images/img-1", id="glance-path"),
        pytest.param("PATCH", "/v2/cloudimages/img-1/extra", id="longer-path"),
    ],
)
@pytest.mark.parametrize("token", [TOKEN, None], ids=["token", "no-token"])
def test_unknown_apis_are_apigw_0101(
    fake: FakeServer, method: str, path: str, token: str | None
) -> None:
    reply = call(fake, method, path, [op("replace", "name", "x")], token=token)
    assert reply.status == 404
    assert reply.body == {
        "error_code": "APIGW.0101",
        "error_msg": "The API does not exist or has not been published in the environment.",
        "request_id": reply.headers["X-Request-Id"],
    }


def test_a_body_over_12_mb_is_apigw_0201(fake: FakeServer) -> None:
    reply = patch(fake, "img-1", None, raw=b" " * (MAX_BODY_BYTES + 1))
    assert reply.status == 413
    assert reply.body["error_code"] == "APIGW.0201"
    assert reply.body["request_id"] == reply.headers["X-Request-Id"]


def test_every_response_has_its_own_request_id(fresh: FakeServer) -> None:
    replies = [
        patch(fresh, "img-1", [op("replace", "custom_team", "red")]),  # 200
        patch(fresh, "img-1", []),  # 400
        patch(fresh, "img-404", [op("replace", "name", "x")]),  # 404 IMS
        call(fresh, "GET", "/v2/cloudimages"),  # 200
        call(fresh, "GET", "/v2/cloudimages?limit=0"),  # 400
        call(fresh, "GET", "/v2/cloudimages", token=None),  # 401
        call(fresh, "GET", "/nowhere"),  # 404 gateway
    ]
    assert [reply.status for reply in replies] == [200, 400, 404, 200, 400, 401, 404]
    ids = [reply.headers["X-Request-Id"] for reply in replies]
    assert all(REQUEST_ID.fullmatch(request_id) for request_id in ids)
    assert len(set(ids)) == len(ids)


# --- ListImages ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        pytest.param("", ALL_IDS, id="all-in-insertion-order"),
        pytest.param("?name=web-01", ["img-1", "img-5"], id="name-exact"),
        pytest.param("?name=web", [], id="name-is-not-a-prefix-match"),
        pytest.param("?status=queued", ["img-3"], id="status"),
        pytest.param("?id=img-4", ["img-4"], id="id"),
        pytest.param("?id=img-1,img-2", [], id="id-comma-list-is-not-a-list"),
        pytest.param("?id=in:img-4,img-2,img-9", ["img-2", "img-4"], id="id-in-form"),
        pytest.param("?__imagetype=gold", ["img-4"], id="imagetype"),
        pytest.param("?min_ram=1024", ["img-2"], id="integer-attribute"),
        pytest.param("?protected=false", ["img-1"], id="boolean-attribute"),
        pytest.param("?name=web-01&status=active&__imagetype=private", ["img-1", "img-5"],
                     id="filters-combine"),
        pytest.param("?enterprise_project_id=all_granted_eps", ALL_IDS, id="all-granted-eps"),
        pytest.param("?limit=2", ["img-1", "img-2"], id="limit"),
        pytest.param("?limit=500", ALL_IDS, id="limit-above-count"),
        pytest.param("?marker=img-2", ["img-3", "img-4", "img-5"], id="marker"),
        pytest.param("?marker=img-2&limit=1", ["img-3"], id="marker-and-limit"),
        pytest.param("?marker=img-5", [], id="marker-last"),
        pytest.param("?marker=img-1&name=web-01", ["img-5"], id="marker-then-filter"),
    ],
)  # fmt: skip
def test_list_filters_and_pages(fake: FakeServer, query: str, ids: list[str]) -> None:
    reply = call(fake, "GET", "/v2/cloudimages" + query)
    assert reply.status == 200
    assert set(reply.body) == {"images"}
    assert [image["id"] for image in reply.body["images"]] == ids
    assert all(image == fake.store.images[image["id"]] for image in reply.body["images"])


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("?limit=0", id="limit-zero"),
        pytest.param("?limit=-1", id="limit-negative"),
        pytest.param("?limit=ten", id="limit-text"),
        pytest.param("?limit=", id="limit-empty"),
        pytest.param("?marker=img-nope", id="unknown-marker"),
        pytest.param("?sort_key=name", id="unsupported-sort"),
        pytest.param("?flavor_id=s3.small.1", id="unsupported-flavor"),
    ],
)
def test_list_refusals_are_img_0001(fake: FakeServer, query: str) -> None:
    reply = call(fake, "GET", "/v2/cloudimages" + query)
    assert (reply.status, ims_code(reply)) == (400, "IMG.0001")


def test_paging_with_limit_and_marker_visits_every_image_once(fake: FakeServer) -> None:
    seen: list[str] = []
    query = "?limit=2"
    while True:
        page = call(fake, "GET", "/v2/cloudimages" + query).body["images"]
        seen += [image["id"] for image in page]
        if len(page) < 2:
            break
        query = f"?limit=2&marker={page[-1]['id']}"
    assert seen == ALL_IDS


# --- Instrumentation -------------------------------------------------------------------------


def test_counters_and_log_record_every_request_in_arrival_order(fresh: FakeServer) -> None:
    patch(fresh, "img-1", [op("replace", "name", "a")])
    patch(fresh, "img-1", [op("replace", "name", "b")])
    patch(fresh, "img-3", [op("replace", "name", "c")])
    call(fresh, "GET", "/v2/cloudimages?limit=1")
    patch(fresh, "img-2", [op("replace", "name", "d")], token=None)
    call(fresh, "GET", "/elsewhere")
    snap = fresh.stats.snapshot()
    assert snap.log == (
        ("PATCH", "/v2/cloudimages/img-1", "img-1", 200),
        ("PATCH", "/v2/cloudimages/img-1", "img-1", 200),
        ("PATCH", "/v2/cloudimages/img-3", "img-3", 400),
        ("GET", "/v2/cloudimages", None, 200),
        ("PATCH", "/v2/cloudimages/img-2", "img-2", 401),
        ("GET", "/elsewhere", None, 404),
    )
    assert (snap.total_requests, snap.patch_requests, snap.list_requests) == (6, 4, 1)
    assert snap.patches_by_image == Counter({"img-1": 2, "img-3": 1, "img-2": 1})
    assert (snap.in_flight, snap.max_in_flight, snap.overlaps) == (0, 1, 0)
    assert fresh.stats.log == list(snap.log)
    assert fresh.stats.patches_by_image == snap.patches_by_image


def _concurrent_patches(fake: FakeServer, image_ids: list[str]) -> list[Reply]:
    """Fire one PATCH per id from its own thread, all released at once."""
    start = threading.Barrier(len(image_ids))

    def one(image_id: str) -> Reply:
        start.wait()
        return patch(fake, image_id, [op("add", "custom_seen", "yes")])

    with ThreadPoolExecutor(len(image_ids)) as pool:
        return list(pool.map(one, image_ids))


@pytest.mark.parametrize(
    ("image_ids", "max_in_flight", "overlaps"),
    [
        pytest.param(["img-1", "img-2", "img-4", "img-5"], 4, 0, id="distinct-images"),
        pytest.param(["img-1", "img-1", "img-1", "img-2"], 4, 2, id="same-image-thrice"),
        pytest.param(["img-1", "img-1", "img-2", "img-2"], 4, 2, id="two-pairs"),
    ],
)
def test_concurrent_patches_are_measured(
    image_ids: list[str], max_in_flight: int, overlaps: int
) -> None:
    # The latency keeps every request in flight long enough for all of them to arrive.
    with running_fake(IMAGES, FakeConfig(latency=0.4)) as server:
        replies = _concurrent_patches(server, image_ids)
        snap = server.stats.snapshot()
    assert [reply.status for reply in replies] == [200] * len(image_ids)
    assert (snap.max_in_flight, snap.overlaps, snap.in_flight) == (max_in_flight, overlaps, 0)
    assert snap.patches_by_image == Counter(image_ids)


def test_sequential_patches_never_overlap() -> None:
    with running_fake(IMAGES, FakeConfig(latency=0.05)) as server:
        for _ in range(3):
            assert patch(server, "img-1", [op("replace", "name", "x")]).status == 200
        snap = server.stats.snapshot()
    assert (snap.max_in_flight, snap.overlaps, snap.patch_requests) == (1, 0, 3)


def test_failed_patches_leave_flight_too(fresh: FakeServer) -> None:
    patch(fresh, "img-1", [])
    patch(fresh, "img-nope", [op("replace", "name", "x")])
    patch(fresh, "img-1", None, raw=b"{")
    assert fresh.stats.snapshot().in_flight == 0


# --- Harness and configuration ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_serving_fake_runs_on_the_callers_loop() -> None:
    async with serving_fake(IMAGES, FakeConfig(token=TOKEN)) as server:
        assert server.url.startswith("http://127.0.0.1:")
        async with new_session() as session:
            reply = await fakeclient.send(
                session,
                "PATCH",
                f"{server.url}/v2/cloudimages/img-2",
                json_body=[op("replace", "name", "renamed")],
                headers={"X-Auth-Token": TOKEN},
            )
        assert reply.status == 200
        assert REQUEST_ID.fullmatch(reply.headers["X-Request-Id"])
        assert reply.body["name"] == "renamed"
    assert server.store.images["img-2"]["name"] == "renamed"


def test_running_fake_accepts_a_store_and_stops_on_exit() -> None:
    store = ImageStore(IMAGES)
    with running_fake(store) as server:
        assert server.store is store
        url = server.url
    with pytest.raises(aiohttp.ClientConnectorError):
        request("GET", url + "/v2/cloudimages", timeout=2)


def test_running_fake_raises_when_the_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use"), running_fake(IMAGES, port=port):
            pass


def test_fake_config_refuses_a_negative_latency() -> None:
    with pytest.raises(ValueError, match="latency"):
        FakeConfig(latency=-1)


# --- Images files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [pytest.param(IMAGES, id="list"), pytest.param({"images": IMAGES}, id="object")],
)
def test_load_images_reads_both_shapes(tmp_path: Path, content: object) -> None:
    path = tmp_path / "images.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    assert load_images(path) == IMAGES


BAD_FILES = [
    pytest.param(None, "cannot read the file", id="missing"),
    pytest.param("[{", "not valid JSON", id="bad-json"),
    pytest.param('"images"', "expected a JSON list of images", id="scalar"),
    pytest.param('{"image": []}', "expected a JSON list of images", id="wrong-key"),
    pytest.param('[{"id": "a"}, 3]', "image 2 is not a JSON object", id="entry-not-object"),
    pytest.param('[{"name": "a"}]', 'image 1 has no "id" string', id="entry-without-id"),
    pytest.param('[{"id": "a"}, {"id": "a"}]', "repeats the id 'a'", id="duplicate-id"),
]


@pytest.mark.parametrize(("text", "problem"), BAD_FILES)
def test_load_images_names_the_file_and_the_problem(
    tmp_path: Path, text: str | None, problem: str
) -> None:
    path = tmp_path / "images.json"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(ImageFileError, match=re.escape(problem)) as caught:
        load_images(path)
    assert str(caught.value).startswith(f"{path}: ")


@pytest.mark.parametrize(("text", "problem"), BAD_FILES)
def test_fake_ims_main_exits_2_on_a_bad_images_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, problem: str
) -> None:
    path = tmp_path / "images.json"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    assert main(["--port", "0", "--images", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"Error: {path}: ")
    assert problem in err
    assert "Traceback" not in err


def test_fake_ims_main_exits_2_when_the_token_variable_is_unset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "images.json"
    path.write_text(json.dumps(IMAGES), encoding="utf-8")
    monkeypatch.delenv("FAKE_IMS_TEST_TOKEN", raising=False)
    argv = ["--images", str(path), "--token-env", "FAKE_IMS_TEST_TOKEN"]
    assert main(argv) == 2
    assert "FAKE_IMS_TEST_TOKEN" in capsys.readouterr().err


@pytest.mark.parametrize("latency", ["-1", "soon", "nan"])
def test_fake_ims_main_refuses_a_bad_latency(tmp_path: Path, latency: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--images", str(tmp_path / "x.json"), "--latency", latency])
    assert exited.value.code == 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_fake_ims_as_a_subprocess_prints_its_url_first_and_stops_on_a_signal(
    tmp_path: Path, signum: signal.Signals
) -> None:
    path = tmp_path / "images.json"
    path.write_text(json.dumps({"images": IMAGES}), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FAKE_IMS_TOKEN": TOKEN}
    command = [sys.executable, "-m", "batchpatch.fake", "--port", "0", "--images", str(path),
               "--token-env", "FAKE_IMS_TOKEN", "--latency", "0.01"]  # fmt: skip
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            assert select.select([process.stdout], [], [], 20)[0], "no URL line within 20 s"
            first = process.stdout.readline()
            match = re.fullmatch(r"URL (http://127\.0\.0\.1:(\d+))\n", first)
            assert match, first
            assert int(match[2]) > 0
            url = match[1]
            assert call(url, "GET", "/v2/cloudimages?limit=1").body == {"images": IMAGES[:1]}
            assert call(url, "GET", "/v2/cloudimages", token="wrong").status == 401
            process.send_signal(signum)
            out, err = process.communicate(timeout=10)
        finally:
            process.kill()
    assert process.returncode == 0, err
    assert out == ""
    assert "Traceback" not in err


# --- Package hygiene -------------------------------------------------------------------------


def test_the_fake_imports_nothing_else_from_batchpatch() -> None:
    for source in (ROOT / "batchpatch" / "fake").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "batchpatch":
                    assert name.startswith("batchpatch.fake"), f"{source.name} imports {name}"


def test_the_public_names_are_sorted_and_exported() -> None:
    assert batchpatch.fake.__all__ == sorted(batchpatch.fake.__all__)
    assert all(hasattr(batchpatch.fake, name) for name in batchpatch.fake.__all__)
