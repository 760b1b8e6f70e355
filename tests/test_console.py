"""The installed console script and ``python -m batchpatch`` as real processes: the one
place the CLI is not run in-process for a test that is about the CLI's behaviour."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e import SAMPLES, cli_environment, run_cli
from tests.test_cli import read_report

#: Real processes: run by `.ci/run` (`pytest -m process`), not by the README's quick command.
pytestmark = pytest.mark.process


def test_the_readme_demo_runs_as_the_console_script(tmp_path: Path) -> None:
    script = shutil.which("batchpatch", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the console script is not installed beside this interpreter")
    # A copy of the samples: the run locks its sheet, and test_cli runs the same sample.
    for name in ("changes.csv", "images.json"):
        shutil.copy(SAMPLES / name, tmp_path / name)
    done = subprocess.run(
        [script, "apply", "changes.csv", "--fake"],
        cwd=tmp_path, env=cli_environment(None), capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("8 rows: 8 succeeded | 16 requests in ")
    assert set(read_report(tmp_path / "changes.results.csv")["status"]) == {"succeeded"}


def test_python_dash_m_batchpatch_is_the_same_cli(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,name\nnot-a-uuid,x\n")
    done = run_cli(["validate", str(bad)], token=None, in_process=False)
    assert done.returncode == 2
    assert done.stderr.startswith(f"{bad}:2:image_id: ")
    assert "Traceback" not in done.stderr
