"""Promises the project makes about itself: the public API, the README, module boundaries."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import typing
from pathlib import Path

import batchpatch
from batchpatch.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_public_api_is_pinned_and_sorted() -> None:
    assert batchpatch.__all__ == sorted(batchpatch.__all__)
    assert batchpatch.__all__ == [
        "AkSkAuth",
        "AsWritten",
        "Auth",
        "AuthFailed",
        "BatchpatchError",
        "Change",
        "ImagePatch",
        "ImagePlan",
        "ImageService",
        "InputError",
        "Ledger",
        "Limits",
        "Operation",
        "OptionsError",
        "Outcome",
        "PasswordAuth",
        "PlanSource",
        "Problem",
        "ReadFailed",
        "ReadPass",
        "ReadStopped",
        "RetryPolicy",
        "RowResult",
        "RunAborted",
        "RunResult",
        "Safeguards",
        "SavedPlan",
        "Sheet",
        "SheetError",
        "Status",
        "StopReason",
        "TokenAuth",
        "WriteFailed",
        "__version__",
        "apply_sheet",
        "load_plan",
        "make_plan",
        "read_sheet",
    ]
    for name in batchpatch.__all__:
        value = getattr(batchpatch, name)
        assert name in dir(batchpatch)
        if name == "__version__":
            assert value == importlib.metadata.version("batchpatch")
        elif name == "PlanSource":  # the union of the three plan sources
            assert set(typing.get_args(value)) == {
                batchpatch.ReadPass,
                batchpatch.SavedPlan,
                batchpatch.AsWritten,
            }
        else:
            assert value.__name__ == name, name  # the object itself, not a stand-in


def test_every_apply_option_is_in_the_readme_table() -> None:
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command")
    apply = subcommands.choices["apply"]  # type: ignore[attr-defined]
    options = {
        s
        for action in apply._actions
        for s in action.option_strings
        if s.startswith("--") and s != "--help"
    }
    documented = set(re.findall(r"^\| `(--[a-z-]+)", README, flags=re.MULTILINE))
    assert options == documented


def test_readme_has_the_two_fresh_machine_commands() -> None:
    assert "pip install . && .venv/bin/batchpatch apply samples/changes.csv --fake" in README
    assert "pip install '.[test]' && .venv/bin/python -m pytest" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install --quiet '.[test]'" in ci
    assert ".venv/bin/python -m pytest" in ci


def test_the_fake_imports_nothing_from_the_client_side() -> None:
    for path in (ROOT / "batchpatch" / "fake").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert not name.startswith("batchpatch") or name.startswith("batchpatch.fake"), (
                    f"{path.name} imports {name}"
                )


def test_pandas_and_aiohttp_client_stay_in_their_modules() -> None:
    # pandas: the sheet stage (its readers, the grid, the checks) and the report.
    sheet_stage = {"sheet.py", "grid.py", "textfile.py", "xlsx.py", "checks.py"}
    owners = {"pandas": {*sheet_stage, "report.py"}, "aiohttp": {"client.py"}}
    for path in (ROOT / "batchpatch").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        for library, allowed in owners.items():
            imported = re.search(rf"^\s*(import|from) {library}\b", source, flags=re.MULTILINE)
            assert not imported or path.name in allowed, f"{path.name} imports {library}"
