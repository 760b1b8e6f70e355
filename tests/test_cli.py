"""The CLI end to end: real files, the CLI in process, the fake IMS over real sockets."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from batchpatch.fake import FakeConfig, running_fake
from tests.e2e import TOKEN, run_cli, sample_images
from tests.sheets import write_sheet

IMAGES = sample_images()
A, B, C, D = (image["id"] for image in IMAGES[:4])
FORMATS = [
    pytest.param(".csv", id="csv"),
    pytest.param(".tsv", id="tsv"),
    pytest.param(".xlsx", id="xlsx"),
]
RESULT_COLUMNS = [
    "status",
    "http_status",
    "error_code",
    "error_message",
    "request_id",
    "attempts",
    "elapsed_ms",
    "before",
    "after",
]


def read_report(path: Path) -> pd.DataFrame:
    if path.suffix == ".xlsx":
        return pd.read_excel(path, dtype=str, keep_default_na=False, engine="calamine")
    return pd.read_csv(
        path, dtype=str, keep_default_na=False, sep="\t" if path.suffix == ".tsv" else ","
    )


def images_with(**changes: dict[str, object]) -> list[dict[str, object]]:
    """The sample images, with some images' attributes overridden (by id)."""
    return [{**image, **changes.get(image["id"], {})} for image in IMAGES]


@pytest.mark.parametrize("suffix", FORMATS)
def test_long_sheet_is_applied_and_reported(tmp_path: Path, suffix: str) -> None:
    sheet = write_sheet(
        tmp_path / f"changes{suffix}",
        ["image_id", "op", "path", "value"],
        [
            [A, "replace", "/name", "web-2026"],
            [B, "add", "__description", "db tier"],
            [A, "replace", "min_ram", "2048"],
            [A, "add", "/cost_center", "cc-1"],
        ],
    )
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(["apply", str(sheet), "--endpoint", fake.url])
        state = {image["id"]: image for image in list(fake.store.images.values())}
        stats = fake.stats.snapshot()
    assert done.returncode == 0, done.stderr
    assert state[A]["name"] == "web-2026"
    assert state[A]["min_ram"] == 2048
    assert state[A]["cost_center"] == "cc-1"
    assert state[B]["__description"] == "db tier"
    assert stats.patch_requests == 2  # one PATCH per image
    report = read_report(tmp_path / f"changes.results{suffix}")
    assert list(report.columns) == ["image_id", "op", "path", "value", *RESULT_COLUMNS]
    assert report["image_id"].tolist() == [A, B, A, A]
    assert report["status"].tolist() == ["succeeded"] * 4
    assert report["http_status"].tolist() == ["200"] * 4
    assert report["attempts"].tolist() == ["1"] * 4
    assert all(len(request_id) == 32 for request_id in report["request_id"])
    assert "4 rows: 4 succeeded" in done.stdout


@pytest.mark.parametrize("suffix", FORMATS)
def test_wide_sheet_is_applied_and_reported(tmp_path: Path, suffix: str) -> None:
    sheet = write_sheet(
        tmp_path / f"wide{suffix}",
        ["image_id", "name", "min_ram", "hw_firmware_type", "owner_team"],
        [
            [A, "web-2026", 1024, "uefi", "<remove>"],
            [B, "", "", "", ""],
            [C, "ci-2026", "", "", "ci"],
        ],
    )
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(
            [
                "apply",
                str(sheet),
                "--endpoint",
                fake.url,
                "--report",
                str(tmp_path / f"out{suffix}"),
            ]
        )
        state = {image["id"]: image for image in list(fake.store.images.values())}
        stats = fake.stats.snapshot()
    assert done.returncode == 0, done.stderr
    assert (state[A]["name"], state[A]["min_ram"], state[A]["hw_firmware_type"]) == (
        "web-2026",
        1024,
        "uefi",
    )
    assert "owner_team" not in state[A]
    assert state[B] == next(image for image in IMAGES if image["id"] == B)
    assert (state[C]["name"], state[C]["owner_team"]) == ("ci-2026", "ci")
    assert stats.patch_requests == 2
    report = read_report(tmp_path / f"out{suffix}")
    assert report["status"].tolist() == ["succeeded", "unchanged", "succeeded"]
    assert report["min_ram"].tolist() == ["1024", "", ""]


MISSING = "99999999-9999-4999-8999-999999999999"
MIXED_ROWS = [
    [A, "replace", "/name", "ok-name"],
    [B, "replace", "/never_set", "x"],
    [C, "replace", "/name", "frozen"],
    [MISSING, "replace", "/name", "ghost"],
    [D, "remove", "/never_there", ""],
]


def test_without_plan_server_errors_are_reported_and_img0035_falls_back_to_add(
    tmp_path: Path,
) -> None:
    sheet = write_sheet(tmp_path / "mixed.csv", ["image_id", "op", "path", "value"], MIXED_ROWS)
    images = images_with(**{C: {"status": "saving"}})
    with running_fake(images, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(["apply", str(sheet), "--endpoint", fake.url, "--no-plan"])
        state = fake.store.images
        stats = fake.stats.snapshot()
    assert done.returncode == 1, done.stderr
    report = read_report(tmp_path / "mixed.results.csv")
    # IMG.0035 is answered by reading the image back: the replace goes again as add, and
    # the remove of a missing attribute is already as asked.
    assert report["status"].tolist() == ["succeeded", "succeeded", "skipped", "failed", "unchanged"]
    assert report["http_status"].tolist() == ["200", "200", "400", "404", ""]
    assert report["error_code"].tolist() == ["", "", "IMG.0046", "IMG.0027", ""]
    assert report["attempts"].tolist() == ["1", "2", "1", "1", "0"]
    assert report["before"].tolist() == [""] * 5  # nothing was read before sending
    assert stats.list_requests == 2  # the two read-backs after IMG.0035
    assert (state[A]["name"], state[B]["never_set"]) == ("ok-name", "x")
    assert state[D] == next(i for i in IMAGES if i["id"] == D)


def test_the_plan_keeps_doomed_and_needless_requests_off_the_wire(tmp_path: Path) -> None:
    sheet = write_sheet(tmp_path / "mixed.csv", ["image_id", "op", "path", "value"], MIXED_ROWS)
    images = images_with(**{C: {"status": "saving"}})
    with running_fake(images, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(["apply", str(sheet), "--endpoint", fake.url])
        state = fake.store.images
        stats = fake.stats.snapshot()
    assert done.returncode == 1, done.stderr
    report = read_report(tmp_path / "mixed.results.csv")
    assert report["status"].tolist() == ["succeeded", "succeeded", "skipped", "failed", "unchanged"]
    assert report["error_code"].tolist() == ["", "", "not_active", "not_found", ""]
    assert "'saving'" in report.loc[2, "error_message"]
    assert report["before"].tolist() == [IMAGES[0]["name"], "", "", "", ""]
    assert report["after"].tolist() == ["ok-name", "x", "frozen", "ghost", ""]
    assert stats.patches_by_image == {A: 1, B: 1}
    patches = [entry for entry in stats.log if entry.method == "PATCH"]
    assert all(entry.status == 200 for entry in patches)  # no IMG.0035 ever reached the server
    assert state[B]["never_set"] == "x"


def test_rerunning_the_same_sheet_sends_no_patch(tmp_path: Path) -> None:
    sheet = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "name", "min_ram", "team"],
        [[A, "again", 512, "ops"], [B, "twice", "", "<remove>"]],
    )
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        first = run_cli(["apply", str(sheet), "--endpoint", fake.url])
        after_first = fake.stats.snapshot().patch_requests
        second = run_cli(["apply", str(sheet), "--endpoint", fake.url])
        stats = fake.stats.snapshot()
    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert after_first == 2
    assert stats.patch_requests == 2  # the rerun sent none
    report = read_report(tmp_path / "s.results.csv")
    assert report["status"].tolist() == ["unchanged", "unchanged"]
    assert report["before"].tolist() == [
        '{"name":"again","min_ram":512,"team":"ops"}',
        '{"name":"twice","team":null}',
    ]


def test_gateway_error_body_is_recorded_and_bad_credentials_stop_after_one_request(
    tmp_path: Path,
) -> None:
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[A, "x1"], [B, "x2"]])
    with running_fake(IMAGES, FakeConfig(token="the-right-token")) as fake:
        done = run_cli(
            ["apply", str(sheet), "--endpoint", fake.url, "--no-plan"], token="a-wrong-token"
        )
        assert list(fake.store.images.values()) == IMAGES
        assert fake.stats.total_requests == 1  # the first request goes alone
    assert done.returncode == 3
    assert (
        "Stopped early: authentication failed using token from environment variable "
        "BATCHPATCH_AUTH_TOKEN (401 APIGW.0301"
    ) in done.stderr
    report = read_report(tmp_path / "s.results.csv")
    assert report["status"].tolist() == ["failed", "not_attempted"]
    assert report["http_status"].tolist() == ["401", ""]
    assert report["error_code"].tolist() == ["APIGW.0301", ""]
    assert report.loc[0, "error_message"].startswith("Incorrect IAM authentication")
    assert len(report.loc[0, "request_id"]) == 32
    assert "a-wrong-token" not in done.stdout + done.stderr
    assert "a-wrong-token" not in (tmp_path / "s.results.csv").read_text()


@pytest.mark.parametrize(
    "concurrency", [pytest.param(1, id="serial"), pytest.param(3, id="3"), pytest.param(6, id="6")]
)
def test_concurrency_cap_holds_at_the_server(tmp_path: Path, concurrency: int) -> None:
    rows = [[image["id"], "op", f"renamed-{n}"] for n, image in enumerate(IMAGES)]
    rows = [[image_id, "replace", "/name", name] for image_id, _, name in rows]
    rows += [[image["id"], "add", "/wave", "2"] for image in IMAGES]  # same images again
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "op", "path", "value"], rows)
    with running_fake(IMAGES, FakeConfig(token=TOKEN, latency=0.2)) as fake:
        done = run_cli(
            [
                "apply",
                str(sheet),
                "--endpoint",
                fake.url,
                "--concurrency",
                str(concurrency),
                "--rate",
                "1000",
            ]
        )
        stats = fake.stats.snapshot()
    assert done.returncode == 0, done.stderr
    assert stats.patch_requests == len(IMAGES)
    assert set(stats.patches_by_image.values()) == {1}
    assert stats.overlaps == 0
    assert stats.max_in_flight == min(concurrency, len(IMAGES))


def test_gb18030_sheet_gets_a_gb18030_report_with_formulas_neutralised(tmp_path: Path) -> None:
    sheet = tmp_path / "中文.csv"
    sheet.write_bytes(f"image_id,name,note\n{A},镜像-web,=HYPERLINK(1)\n".encode("gb18030"))
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        done = run_cli(["apply", str(sheet), "--endpoint", fake.url])
        state = {image["id"]: image for image in list(fake.store.images.values())}
    assert done.returncode == 0, done.stderr
    assert state[A]["note"] == "=HYPERLINK(1)"  # sent exactly as written
    text = (tmp_path / "中文.results.csv").read_bytes().decode("gb18030")
    rows = list(csv.reader(text.splitlines()))
    assert rows[1][:3] == [A, "镜像-web", "'=HYPERLINK(1)"]


@pytest.mark.parametrize(
    ("args", "token", "message"),
    [
        pytest.param(
            ["apply", "{sheet}"], TOKEN, "give --endpoint URL or --region", id="no-target"
        ),
        pytest.param(
            ["apply", "{sheet}", "--endpoint", "http://127.0.0.1:9"],
            None,
            "no credentials: set HUAWEICLOUD_SDK_AK",
            id="no-token",
        ),
        pytest.param(
            ["apply", "{sheet}", "--region", "mars-1"], TOKEN, "unknown region", id="bad-region"
        ),
        pytest.param(
            ["apply", "{sheet}", "--endpoint", "ftp://x"],
            TOKEN,
            "not an http(s) URL",
            id="bad-endpoint",
        ),
        pytest.param(
            ["apply", "{sheet}", "--endpoint", "http://127.0.0.1:9", "--concurrency", "0"],
            TOKEN,
            "at least 1",
            id="bad-concurrency",
        ),
        pytest.param(
            ["apply", "{sheet}", "--endpoint", "http://127.0.0.1:9", "--rate", "-1"],
            TOKEN,
            "greater than 0",
            id="bad-rate",
        ),
        pytest.param(
            ["apply", "{bad}", "--endpoint", "http://127.0.0.1:9"],
            TOKEN,
            "bad.csv:3:min_ram: min_ram must be a whole number",
            id="bad-sheet",
        ),
        pytest.param(
            ["apply", "{dir}/missing.csv", "--endpoint", "http://127.0.0.1:9"],
            TOKEN,
            "no such file",
            id="missing-file",
        ),
        pytest.param(
            ["apply", "{sheet}", "--endpoint", "http://127.0.0.1:9", "--report", "{sheet}"],
            TOKEN,
            "is the sheet itself",
            id="report-over-sheet",
        ),
        pytest.param(
            ["apply", "{sheet}", "--endpoint", "http://127.0.0.1:9", "--report", "{dir}/r.xlsx"],
            TOKEN,
            "must have the sheet's extension",
            id="report-format",
        ),
        pytest.param(
            ["apply", "{sheet}", "--endpoint", "http://127.0.0.1:9", "--report", "/proc/r.csv"],
            TOKEN,
            "cannot write in /proc",
            id="report-unwritable",
        ),
        pytest.param(
            [
                "apply",
                "{sheet}",
                "--endpoint",
                "http://127.0.0.1:9",
                "--ca-bundle",
                "{dir}/none.pem",
            ],
            TOKEN,
            "not a readable PEM file",
            id="ca-bundle",
        ),
        pytest.param(
            ["apply", "{sheet}", "--endpoint", "http://[::1"],
            TOKEN,
            "is not an http(s) URL",
            id="broken-url",
        ),
        pytest.param(
            ["apply", "{sheet}", "--fake", "--fake-images", "{bad}"],
            None,
            "fix the images file",
            id="bad-fake-images",
        ),
        pytest.param(
            ["apply", "{sheet}", "--endpoint", "http://127.0.0.1:9", "--summary", "{dir}"],
            TOKEN,
            "is a folder",
            id="summary-folder",
        ),
    ],
)
def test_invalid_input_exits_2_with_a_message_and_sends_nothing(
    tmp_path: Path, args: list[str], token: str | None, message: str
) -> None:
    sheet = write_sheet(tmp_path / "ok.csv", ["image_id", "name"], [[A, "x"]])
    bad = write_sheet(tmp_path / "bad.csv", ["image_id", "min_ram"], [[A, "1"], [B, "lots"]])
    filled = [a.format(sheet=sheet, bad=bad, dir=tmp_path) for a in args]
    with running_fake(IMAGES) as fake:
        filled = [a.replace("http://127.0.0.1:9", fake.url) for a in filled]
        done = run_cli(filled, token=token, cwd=tmp_path)
        assert fake.stats.total_requests == 0
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.glob("*.results.*"))


@pytest.mark.parametrize("sample", ["samples/changes.csv", "samples/renames-long.csv"])
def test_fake_flag_runs_the_samples_end_to_end(tmp_path: Path, sample: str) -> None:
    report = tmp_path / "report.csv"
    done = run_cli(["apply", sample, "--fake", "--report", str(report)], token=None)
    assert done.returncode == 0, done.stderr
    assert "fake IMS at http://127.0.0.1:" in done.stderr
    frame = read_report(report)
    assert set(frame["status"]) == {"succeeded"}
    assert f"report: {report}" in done.stdout
