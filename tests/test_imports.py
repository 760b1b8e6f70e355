"""What importing a part of batchpatch costs: the fake, the throttle and the schema stand
alone, and the package's public names load only when asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from aiohttp import web

import batchpatch
from batchpatch import TokenAuth, make_plan
from tests.local_server import serving

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("pandas", "aiohttp", "batchpatch.client", "batchpatch.job", "batchpatch.sheet")


def modules_loaded_by(statement: str) -> set[str]:
    """The heavy modules (and their submodules) a fresh interpreter holds after ``statement``."""
    probe = (
        f"import sys; {statement}; import json; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return {
        name.partition(".")[0] if name.startswith(("pandas", "aiohttp")) else name
        for name in json.loads(done.stdout)
    }


def test_the_fake_loads_neither_pandas_nor_the_client() -> None:
    loaded = modules_loaded_by("import batchpatch.fake")
    assert "pandas" not in loaded
    assert "batchpatch.client" not in loaded
    assert "batchpatch.job" not in loaded
    assert "aiohttp" in loaded  # the probe sees what it should: the fake serves with aiohttp.web


@pytest.mark.parametrize("module", ["batchpatch.throttle", "batchpatch.schema"])
def test_throttle_and_schema_load_neither_aiohttp_nor_pandas(module: str) -> None:
    assert modules_loaded_by(f"import {module}") == set()


def test_importing_the_package_loads_nothing_heavy_until_a_name_is_used() -> None:
    assert modules_loaded_by("import batchpatch") == set()
    assert "pandas" in modules_loaded_by("import batchpatch; batchpatch.read_sheet")


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = batchpatch.no_such_thing  # type: ignore[attr-defined]


def test_the_version_is_the_installed_distribution_version() -> None:
    assert batchpatch.__version__ == version("batchpatch")
    assert batchpatch.__version__ != "0+unknown"


@pytest.mark.anyio
async def test_the_user_agent_carries_the_package_version(tmp_path: Path) -> None:
    seen: list[str] = []

    async def list_images(request: web.Request) -> web.Response:
        seen.append(request.headers.get("User-Agent", ""))
        return web.json_response({"images": []})

    app = web.Application()
    app.router.add_get("/v2/cloudimages", list_images)
    sheet = tmp_path / "changes.csv"
    sheet.write_text("image_id,name\n0b1c6a3e-5f0d-4a53-9c1e-2f6d8a1b7c01,web\n")
    async with serving(app) as url:
        await make_plan(sheet, endpoint=url, auth=TokenAuth("t"))
    assert seen
    assert set(seen) == {f"batchpatch/{version('batchpatch')}"}


def test_the_cli_starts_without_openpyxl_or_yaml() -> None:
    """A CSV run never needs them: openpyxl is imported for the first workbook, PyYAML for
    ``--os-cloud`` (together a fifth of the CLI's start-up)."""
    probe = "import sys, batchpatch.cli; print(sorted({'openpyxl', 'yaml'} & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
