"""No file a run writes is another file the run reads: the fake's images file (``--fake``),
the config file in use (``--config``, else ``$BATCHPATCH_CONFIG``, else the default path), or
the ``--ca-bundle`` file.  Refused with exit 2 before anything is read or sent, like the
clashes with the sheet and the plan (tests/test_outputs.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from batchpatch.fake import FakeConfig, running_fake
from tests.e2e import TOKEN, quiet_environment, run_main, sample_images
from tests.sheets import write_sheet
from tests.test_outputs import dotted, hardlink_to, plain, symlink_to

IMAGES = sample_images()
CONFIG = """\
[profiles.p]
credentials_file = "creds.toml"

[profiles.default]
ca_bundle = "pca.pem"
"""

#: (command and options, "{url}" for the fake's; what the output is; the output's option)
INPUT_CLASHES = [
    pytest.param(
        ["apply", "s.csv", "--fake", "--fake-images", "im2.json", "--summary"],
        plain("im2.json"),
        "--summary im2.json is the images file of --fake itself",
        id="summary-fake-images",
    ),
    pytest.param(
        ["apply", "s.csv", "--fake", "--summary"],
        symlink_to("images.json"),
        "--summary link.json is the images file of --fake images.json itself",
        id="summary-default-fake-images-symlink",
    ),
    pytest.param(
        ["apply", "s.csv", "--endpoint", "{url}", "--config", "cfg.toml", "--summary"],
        plain("cfg.toml"),
        "--summary cfg.toml is the config file itself",
        id="summary-config",
    ),
    pytest.param(
        ["apply", "s.csv", "--endpoint", "{url}", "--config", "cfg.toml", "--summary"],
        hardlink_to("cfg.toml"),
        "--summary hard.json is the config file cfg.toml itself",
        id="summary-config-hardlink",
    ),
    pytest.param(
        ["apply", "s.csv", "--endpoint", "{url}", "--ca-bundle", "ca.pem", "--summary"],
        dotted("ca.pem"),
        "--summary sub/../ca.pem is the CA bundle ca.pem itself",
        id="summary-ca-bundle",
    ),
    pytest.param(
        [
            "apply",
            "s.csv",
            "--endpoint",
            "{url}",
            "--config",
            "cfg.toml",
            "--profile",
            "p",
            "--summary",
        ],
        plain("creds.toml"),
        "--summary creds.toml is the credentials file itself",
        id="summary-profile-credentials-file",
    ),
    pytest.param(
        ["apply", "s.csv", "--endpoint", "{url}", "--config", "cfg.toml", "--summary"],
        symlink_to("pca.pem"),
        "--summary link.json is the CA bundle pca.pem itself",
        id="summary-default-profile-ca-bundle",
    ),
    pytest.param(
        ["plan", "s.csv", "--fake", "--out"],
        plain("images.json"),
        "--out images.json is the images file of --fake itself",
        id="plan-out-default-fake-images",
    ),
    pytest.param(
        ["plan", "s.csv", "--endpoint", "{url}", "--config", "cfg.toml", "--out"],
        plain("cfg.toml"),
        "--out cfg.toml is the config file itself",
        id="plan-out-config",
    ),
]


@pytest.fixture
def folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A sheet and every input a run may read, in the current folder."""
    quiet_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)
    write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[IMAGES[0]["id"], "renamed"]])
    for name in ("images.json", "im2.json"):
        (tmp_path / name).write_text(json.dumps(IMAGES))
    (tmp_path / "cfg.toml").write_text(CONFIG)
    (tmp_path / "creds.toml").write_text("access_key = 'x'\n")
    (tmp_path / "pca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    return tmp_path


def refused(
    capsys: pytest.CaptureFixture[str], folder: Path, args: list[str]
) -> tuple[str, dict[Path, bytes]]:
    """Run ``args`` against a fake; check nothing was sent or written; return stderr."""
    files = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        code, _, err = run_main(capsys, [arg.format(url=fake.url) for arg in args])
        stats = fake.stats.snapshot()
    assert code == 2, err
    assert stats.total_requests == 0
    assert not (folder / "s.results.csv").exists()
    return err, files


@pytest.mark.parametrize(("args", "output", "message"), INPUT_CLASHES)
def test_an_output_that_is_another_input_of_the_run_is_refused(
    capsys: pytest.CaptureFixture[str],
    folder: Path,
    args: list[str],
    output: Callable[[Path], str],
    message: str,
) -> None:
    path = output(folder)
    err, files = refused(capsys, folder, [*args, path])
    option = args[-1]
    assert err.startswith(f"Error: {message} — give {option} another path"), err
    assert {name: name.read_bytes() for name in files} == files


def test_the_config_named_by_the_environment_is_an_input(
    capsys: pytest.CaptureFixture[str], folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCHPATCH_CONFIG", str(folder / "cfg.toml"))
    err, _ = refused(
        capsys, folder, ["apply", "s.csv", "--endpoint", "{url}", "--summary", "cfg.toml"]
    )
    assert "--summary cfg.toml is the config file" in err
    assert (folder / "cfg.toml").read_text() == CONFIG


def test_a_config_that_is_not_a_file_clashes_with_nothing(
    capsys: pytest.CaptureFixture[str], folder: Path
) -> None:
    """``BATCHPATCH_CONFIG=/dev/null`` (no config) takes no output path away."""
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        code, _, err = run_main(
            capsys, ["apply", "s.csv", "--endpoint", fake.url, "--summary", "summary.json"]
        )
    assert code == 0, err
    assert json.loads((folder / "summary.json").read_text())
