"""Library errors speak in parameter names (``encoding=``, ``ca_bundle=`` ...); the CLI says
the same with its flags (``--encoding``, ``--ca-bundle`` ...).  Each case is asked twice: of
the library directly, and of ``batchpatch`` through ``run_cli``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from batchpatch.cli import in_flags
from batchpatch.credentials import Settings, resolve, safe_endpoint
from batchpatch.errors import OptionsError, ReadFailed, SheetError
from batchpatch.planfile import load_plan
from batchpatch.sheet import read_sheet
from tests.e2e import TOKEN, run_cli
from tests.sheets import write_sheet

A = "8f1e2d3c-0000-4000-8000-000000000001"
B = "8f1e2d3c-0000-4000-8000-000000000002"
#: A flag as the CLI spells it: what no library message may hold.
FLAG = re.compile(r"--[a-z]")
NOWHERE = "http://127.0.0.1:9"
ENVIRON = {"BATCHPATCH_CONFIG": os.devnull, "BATCHPATCH_AUTH_TOKEN": TOKEN}


def _sheet(tmp_path: Path) -> Path:
    return write_sheet(tmp_path / "s.csv", ["image_id", "team"], [[A, "x"]])


def _uncertain(tmp_path: Path) -> Path:
    """A cp1252 file whose encoding cannot be told for certain (see test_encodings)."""
    path = tmp_path / "u.csv"
    path.write_bytes(f"image_id,name,__description\n{A},x,ok\n{B},y,ÄÖÜ Zürich\n".encode("cp1252"))
    return path


def _options_error(call: object, *args: object, **kwargs: object) -> OptionsError:
    with pytest.raises(OptionsError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    message = str(caught.value)
    assert not FLAG.search(message), message
    assert message == caught.value.text()
    return caught.value


def test_an_uncertain_encoding_suggests_the_encoding_parameter_or_flag(tmp_path: Path) -> None:
    path = _uncertain(tmp_path)
    with pytest.raises(SheetError) as caught:
        read_sheet(path)
    (problem,) = caught.value.problems
    library = "give encoding=gb18030 (Chinese Excel) or encoding=cp1252 (Western Excel)"
    assert str(problem).endswith(library)
    assert problem.fix.endswith(library)  # the reason alone, printable without a namer
    assert not FLAG.search(str(caught.value))

    done = run_cli(["validate", str(path)])
    assert done.returncode == 2
    flags = "give --encoding gb18030 (Chinese Excel) or --encoding cp1252 (Western Excel)"
    assert f"{path}:3:: the line is not UTF-8" in done.stderr
    assert flags in done.stderr
    assert "encoding=" not in done.stderr
    assert in_flags(problem).endswith(flags)


@pytest.mark.parametrize(
    ("options", "argv", "library", "cli"),
    [
        pytest.param(
            {"encoding": "klingon"},
            ["--encoding", "klingon"],
            "encoding='klingon' is not an encoding Python knows",
            "Error: --encoding 'klingon' is not an encoding Python knows",
            id="unknown-encoding",
        ),
        pytest.param(
            {"delimiter": ":"},
            ["--delimiter", ":"],
            "delimiter=':' is not one batchpatch reads — use , ; tab or |",
            "Error: --delimiter ':' is not one batchpatch reads — use , ; tab or |",
            id="unknown-delimiter",
        ),
        pytest.param(
            {"sheet_name": "Data"},
            ["--sheet", "Data"],
            "sheet_name='Data' applies only to Excel workbooks",
            "Error: --sheet 'Data' applies only to Excel workbooks",
            id="sheet-of-a-csv",
        ),
        pytest.param(
            {"encoding": "utf-16"},
            ["--encoding", "utf-16"],
            "encoding=utf-16: the file is UTF-8 text — drop encoding, UTF-8 is read as such",
            "Error: --encoding utf-16: the file is UTF-8 text — drop --encoding, UTF-8 is read "
            "as such",
            id="encoding-of-utf8",
        ),
    ],
)
def test_sheet_options_are_named_as_parameters_or_flags(
    tmp_path: Path, options: dict[str, str], argv: list[str], library: str, cli: str
) -> None:
    path = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[A, "Zürich"]])
    error = _options_error(read_sheet, path, **options)
    assert library in str(error)

    done = run_cli(["validate", str(path), *argv])
    assert done.returncode == 2
    assert cli in done.stderr


def test_no_service_names_endpoint_region_and_the_fake(tmp_path: Path) -> None:
    error = _options_error(resolve, Settings(), ENVIRON)
    assert str(error) == (
        "no service to talk to — give endpoint=URL or region=REGION, set endpoint or region "
        "in the profile, or use batchpatch.fake to try the embedded fake IMS"
    )
    done = run_cli(["apply", str(_sheet(tmp_path))])
    assert done.returncode == 2
    assert (
        "Error: no service to talk to — give --endpoint URL or --region REGION, set endpoint "
        "or region in the profile, or use --fake to try the embedded fake IMS"
    ) in done.stderr


def test_plain_http_to_another_machine_names_the_switch() -> None:
    error = _options_error(safe_endpoint, "http://ims.example.com", "endpoint")
    assert str(error).endswith("or pass allow_insecure_http=True if you really mean it")
    assert error.parameter == "allow_insecure_http"

    done = run_cli(["whoami", "--endpoint", "http://ims.example.com"])
    assert done.returncode == 2
    assert "or pass --allow-insecure-http if you really mean it" in done.stderr


def test_an_unreadable_ca_bundle_names_the_parameter_or_flag(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    error = _options_error(resolve, Settings(endpoint=NOWHERE, ca_bundle=str(missing)), ENVIRON)
    assert str(error).startswith(f"ca_bundle={missing}: not a readable PEM file")

    done = run_cli(["whoami", "--endpoint", NOWHERE, "--ca-bundle", str(missing)])
    assert done.returncode == 2
    assert f"Error: --ca-bundle {missing}: not a readable PEM file" in done.stderr


def test_a_missing_plan_file_says_how_to_make_one(tmp_path: Path) -> None:
    sheet, plan = _sheet(tmp_path), tmp_path / "p.json"
    error = _options_error(load_plan, plan, read_sheet(sheet), NOWHERE)
    assert (
        str(error) == f"{plan}: no such plan file — make one with make_plan(SHEET, out=PLAN.json)"
    )

    done = run_cli(["apply", str(sheet), "--endpoint", NOWHERE, "--plan", str(plan)])
    assert done.returncode == 2
    assert (
        f"Error: {plan}: no such plan file — make one with 'batchpatch plan SHEET --out PLAN.json'"
    ) in done.stderr


def test_a_refused_certificate_points_at_ca_bundle_in_either_words() -> None:
    read = ReadFailed(None, "tls_failed", "TLS failed at 127.0.0.1:1: …; nothing was sent", "")
    assert str(read).endswith(
        " — if it is signed by a private CA, pass that CA with ca_bundle=PATH"
    )
    assert in_flags(read).endswith(
        " — if it is signed by a private CA, pass that CA with --ca-bundle PATH"
    )
    assert "--no-plan" not in in_flags(read)  # sending blind does not help a refused certificate
