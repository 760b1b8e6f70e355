"""Local checks, rule by rule: the pure schema functions, the same rules located in real
sheets, sheet-level checks, ``skip_invalid``, and properties that any sheet either validates
or yields only located problems, never a crash."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from batchpatch.checks import passive_columns
from batchpatch.errors import Problem, Reason, SheetError
from batchpatch.models import JsonValue, Operation
from batchpatch.schema import (
    OPS,
    check_attribute,
    check_combination,
    check_image_id,
    check_value,
    typed_value,
)
from batchpatch.sheet import Sheet, read_sheet
from tests.sheets import write_sheet

A = "0b1c6a3e-5f0d-4a53-9c1e-2f6d8a1b7c01"
B = "1f2e3d4c-6b5a-4987-8a6b-5c4d3e2f1a02"
C = "2a3b4c5d-7e8f-4a0b-9c1d-6e7f8a9b0c03"
LONG = ["image_id", "op", "path", "value"]
WHAT_AND_FIX = re.compile(r".+ — .+", re.DOTALL)


def assert_reason(found: Reason | None, expected: str | None, *, at_start: bool = False) -> None:
    """None when nothing is expected; else a "what — fix" reason holding ``expected``."""
    if expected is None:
        assert found is None
        return
    assert found is not None
    reason = str(found)
    assert reason.startswith(expected) if at_start else expected in reason
    assert WHAT_AND_FIX.fullmatch(reason)


@dataclass(frozen=True)
class Refused:
    """An expected refusal: ``text`` must appear in the message."""

    text: str


# --------------------------------------------------------------------------- pure functions

NAME_AND_DESCRIPTION = [
    pytest.param("name", "web-01", None, id="name-ascii"),
    pytest.param("name", "镜像 A_b.c", None, id="name-cjk-space-punctuation"),
    pytest.param("name", "a" * 128, None, id="name-128"),
    pytest.param("name", "镜" * 128, None, id="name-128-cjk"),
    pytest.param("name", "x", None, id="name-1"),
    pytest.param("name", "a" * 129, "129 characters", id="name-129"),
    pytest.param("name", "镜" * 129, "129 characters", id="name-129-cjk"),
    pytest.param("name", " x", "starts or ends with a space", id="name-leading-space"),
    pytest.param("name", "x ", "starts or ends with a space", id="name-trailing-space"),
    pytest.param("name", "a/b", "may hold only", id="name-slash"),
    pytest.param("name", "é", "may hold only", id="name-accented-letter"),
    pytest.param("name", "\uff21", "may hold only", id="name-fullwidth-letter"),
    pytest.param("name", "a<b", "may hold only", id="name-angle"),
    pytest.param("name", "a\tb", "invisible control character (U+0009)", id="name-tab"),
    pytest.param("name", "", "may hold only", id="name-empty"),
    pytest.param("__description", "x" * 1024, None, id="description-1024"),
    pytest.param(
        "__description", "中文描述, with (punctuation) & 'quotes'!", None, id="description-text"
    ),
    pytest.param("__description", "x" * 1025, "1025 characters", id="description-1025"),
    pytest.param("__description", "a\nb", "line break", id="description-lf"),
    pytest.param("__description", "a\rb", "line break", id="description-cr"),
    pytest.param("__description", "a<b", "< or >", id="description-lt"),
    pytest.param("__description", "a>b", "< or >", id="description-gt"),
    pytest.param("__description", "<remove>", "< or >", id="description-remove-marker"),
]
OTHER_VALUES = [
    pytest.param("hw_firmware_type", "bios", None, id="firmware-bios"),
    pytest.param("hw_firmware_type", "uefi", None, id="firmware-uefi"),
    pytest.param("hw_firmware_type", "UEFI", "bios or uefi", id="firmware-upper"),
    pytest.param("hw_firmware_type", "legacy", "bios or uefi", id="firmware-other"),
    pytest.param("max_ram", "0", None, id="max-ram-0"),
    pytest.param("max_ram", "65536", None, id="max-ram-digits"),
    pytest.param("max_ram", "-1", "whole number", id="max-ram-negative"),
    pytest.param("max_ram", "1.5", "whole number", id="max-ram-fraction"),
    pytest.param("max_ram", "abc", "whole number", id="max-ram-text"),
    pytest.param("min_ram", 1024, None, id="min-ram-typed"),
    pytest.param("__support_kvm", "true", None, id="flag-typed"),
    pytest.param("team", "anything <at> all", None, id="custom-anything"),
    pytest.param("team", "two\nlines", "control character (U+000A)", id="custom-line-break"),
    pytest.param("team", "bell\x07", "Excel shows it as _x0007_", id="custom-control"),
    pytest.param(
        "__description", "bell\x07", "control character (U+0007)", id="description-control"
    ),
    pytest.param("enterprise_project_id", "0", None, id="eps-default"),
]


@pytest.mark.parametrize(("attribute", "value", "expected"), NAME_AND_DESCRIPTION + OTHER_VALUES)
def test_check_value(attribute: str, value: JsonValue, expected: str | None) -> None:
    reason = check_value(attribute, value)
    assert_reason(reason, expected)


@pytest.mark.parametrize(
    ("attribute", "text", "expected"),
    [
        pytest.param("min_ram", "1024", 1024, id="min-ram-digits"),
        pytest.param("min_ram", "0", 0, id="min-ram-zero"),
        pytest.param("min_ram", " 2048 ", 2048, id="min-ram-spaces"),
        pytest.param("min_ram", "1024.0", 1024, id="min-ram-excel-float"),
        pytest.param("min_ram", "007", 7, id="min-ram-leading-zeros"),
        pytest.param("min_ram", "-1", Refused("whole number"), id="min-ram-negative"),
        pytest.param("min_ram", "1.5", Refused("whole number"), id="min-ram-fraction"),
        pytest.param("min_ram", "1024.5", Refused("whole number"), id="min-ram-float"),
        pytest.param("min_ram", "abc", Refused("whole number"), id="min-ram-text"),
        pytest.param("min_ram", "1e3", Refused("whole number"), id="min-ram-scientific"),
        pytest.param("min_ram", "1,024", Refused("whole number"), id="min-ram-separator"),
        pytest.param("min_ram", ".0", Refused("whole number"), id="min-ram-bare-point"),
        pytest.param("min_ram", "", Refused("whole number"), id="min-ram-empty"),
        *(
            pytest.param("__support_kvm", text, "true", id=f"flag-{text.strip()}")
            for text in ("true", "TRUE", "True", "yes", "YES", "1", " Yes ")
        ),
        *(
            pytest.param("__is_config_init", text, "false", id=f"flag-{text}")
            for text in ("false", "FALSE", "no", "No", "0")
        ),
        pytest.param(
            "hw_vif_multiqueue_enabled", "maybe", Refused("true or false"), id="flag-maybe"
        ),
        pytest.param("__support_xen", "2", Refused("true or false"), id="flag-2"),
        pytest.param("__support_amd", "on", Refused("true or false"), id="flag-on"),
        pytest.param("__support_amd", "", Refused("true or false"), id="flag-empty"),
        pytest.param("name", " kept as is ", " kept as is ", id="text-verbatim"),
        pytest.param("max_ram", "1024", "1024", id="max-ram-is-a-string"),
        pytest.param("hw_firmware_type", "uefi", "uefi", id="firmware-text"),
        pytest.param("team", "TRUE", "TRUE", id="custom-not-a-flag"),
    ],
)
def test_typed_value(attribute: str, text: str, expected: JsonValue | Refused) -> None:
    if isinstance(expected, Refused):
        with pytest.raises(ValueError, match=re.escape(expected.text)) as caught:
            typed_value(attribute, text)
        assert WHAT_AND_FIX.fullmatch(str(caught.value))
    else:
        typed = typed_value(attribute, text)
        assert typed == expected
        assert type(typed) is type(expected)


@pytest.mark.parametrize(
    ("attribute", "op", "expected"),
    [
        pytest.param("name", "replace", None, id="name"),
        pytest.param("__description", "add", None, id="description"),
        pytest.param("__description", "remove", None, id="remove-description"),
        pytest.param("max_ram", "remove", None, id="remove-max-ram"),
        pytest.param("__support_kvm_gpu_type", "add", None, id="gpu-type"),
        pytest.param("hw_vif_multiqueue_enabled", "add", None, id="flag"),
        pytest.param("team", "add", None, id="custom"),
        pytest.param("team", "remove", None, id="remove-custom"),
        pytest.param("my.key:v-1_2", "add", None, id="custom-punctuation"),
        pytest.param("_private", "add", None, id="custom-underscore"),
        *(
            pytest.param(attribute, "add", "is read-only", id=f"read-only-{attribute}")
            for attribute in (
                "status",
                "id",
                "__os_type",
                "checksum",
                "owner",
                "__support_arm",
                "visibility",
            )
        ),
        pytest.param("status", "remove", "is read-only", id="read-only-remove"),
        pytest.param("name", "remove", "cannot be removed", id="remove-name"),
        pytest.param("min_ram", "remove", "cannot be removed", id="remove-min-ram"),
        pytest.param("Name", "replace", "did you mean 'name'?", id="did-you-mean-name"),
        pytest.param(
            "__Description", "add", "did you mean '__description'?", id="did-you-mean-description"
        ),
        pytest.param(
            "HW_FIRMWARE_TYPE",
            "add",
            "did you mean 'hw_firmware_type'?",
            id="did-you-mean-firmware",
        ),
        pytest.param("Team", "add", "must be lower-case", id="custom-upper"),
        pytest.param("Owner", "add", "owner is read-only", id="custom-upper-read-only"),
        pytest.param("a b", "add", "must be lower-case", id="custom-space"),
        pytest.param("a/b", "add", "must be lower-case", id="custom-slash"),
        pytest.param("__bogus", "add", "unknown system attribute", id="unknown-system"),
    ],
)
def test_check_attribute(attribute: str, op: str, expected: str | None) -> None:
    reason = check_attribute(attribute, op)
    assert_reason(reason, expected)
    if reason is not None and expected is not None and "did you mean" not in expected:
        assert "did you mean" not in str(reason)


@pytest.mark.parametrize(
    ("image_id", "expected"),
    [
        pytest.param(A, None, id="uuid"),
        pytest.param("00000000-0000-0000-0000-000000000000", None, id="zero-uuid"),
        pytest.param("1.23e+18", "scientific notation", id="excel-scientific"),
        pytest.param("1.23457e+18", "scientific notation", id="excel-scientific-long"),
        pytest.param("1e+18", "scientific notation", id="excel-scientific-short"),
        pytest.param("1.23e18", "scientific notation", id="scientific-no-plus"),
        pytest.param("abc", "is not an image id", id="text"),
        pytest.param(A.replace("-", ""), "is not an image id", id="no-hyphens"),
        pytest.param(A + "0", "is not an image id", id="too-long"),
        pytest.param(A[:-1], "is not an image id", id="too-short"),
        pytest.param(A.replace("0", "g", 1), "is not an image id", id="not-hex"),
        pytest.param("1230000000000000000", "is not an image id", id="plain-number"),
    ],
)
def test_check_image_id(image_id: str, expected: str | None) -> None:
    reason = check_image_id(image_id)
    assert_reason(reason, expected)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        pytest.param(set(), None, id="nothing"),
        pytest.param({"__support_kvm_gpu_type"}, None, id="gpu-alone"),
        pytest.param({"__support_kvm", "__support_xen"}, None, id="kvm-and-xen"),
        pytest.param(
            {"__support_kvm_gpu_type", "__support_xen_gpu_type"}, None, id="two-gpu-types"
        ),
        pytest.param(
            {"__support_kvm_gpu_type", "name", "__support_largememory"}, None, id="gpu-with-others"
        ),
        pytest.param(
            {"__support_kvm_gpu_type", "__support_kvm"},
            "__support_kvm_gpu_type cannot coexist with __support_kvm",
            id="kvm-gpu-kvm",
        ),
        pytest.param(
            {"__support_kvm_gpu_type", "__support_xen"},
            "__support_kvm_gpu_type cannot coexist with __support_xen",
            id="kvm-gpu-xen",
        ),
        pytest.param(
            {"__support_xen_gpu_type", "__support_xen"},
            "__support_xen_gpu_type cannot coexist with __support_xen",
            id="xen-gpu-xen",
        ),
        pytest.param(
            {"__support_xen_gpu_type", "__support_kvm_gpu_type", "__support_kvm", "__support_xen"},
            "__support_kvm_gpu_type, __support_xen_gpu_type cannot coexist with "
            "__support_kvm, __support_xen",
            id="all-four",
        ),
    ],
)
def test_check_combination(attributes: set[str], expected: str | None) -> None:
    reason = check_combination(attributes)
    assert_reason(reason, expected, at_start=True)


# --------------------------------------------------------------------- rules, located in sheets


def problems_of(path: Path, *, skip_invalid: bool = False) -> list[Problem]:
    """The problems ``read_sheet`` raises for ``path``, each checked for its printed form."""
    with pytest.raises(SheetError) as caught:
        read_sheet(path, skip_invalid=skip_invalid)
    problems = caught.value.problems
    assert problems
    assert str(caught.value).splitlines() == [
        f"{path}:{p.row}:{p.column}: {p.message} — {p.fix}" for p in problems
    ]
    for problem in problems:
        assert problem.file == str(path)
        assert problem.message
        assert problem.fix
    return problems


def where(problems: list[Problem]) -> list[tuple[int, str]]:
    return [(problem.row, problem.column) for problem in problems]


def op_for(attribute: str) -> str:
    return "replace" if attribute in ("name", "min_ram") else "add"


VALUE_RULES = [
    pytest.param("name", "web-01", "web-01", id="name"),
    pytest.param("name", "镜像 A_b.c", "镜像 A_b.c", id="name-cjk"),
    pytest.param("name", "a" * 128, "a" * 128, id="name-128"),
    pytest.param("name", "a" * 129, Refused("name is 129 characters long"), id="name-129"),
    pytest.param("name", " x", Refused("starts or ends with a space"), id="name-leading-space"),
    pytest.param("name", "x ", Refused("starts or ends with a space"), id="name-trailing-space"),
    pytest.param("name", "a/b", Refused("may hold only"), id="name-slash"),
    pytest.param("name", "é", Refused("may hold only"), id="name-accent"),
    pytest.param("__description", "中文描述 (db)", "中文描述 (db)", id="description"),
    pytest.param("__description", "x" * 1024, "x" * 1024, id="description-1024"),
    pytest.param("__description", "x" * 1025, Refused("1025 characters"), id="description-1025"),
    pytest.param("__description", "a\nb", Refused("line break"), id="description-lf"),
    pytest.param("__description", "a\r\nb", Refused("line break"), id="description-crlf"),
    pytest.param("__description", "a <b>", Refused("< or >"), id="description-angles"),
    pytest.param("hw_firmware_type", "uefi", "uefi", id="firmware-uefi"),
    pytest.param("hw_firmware_type", "bios", "bios", id="firmware-bios"),
    pytest.param("hw_firmware_type", "efi", Refused("bios or uefi"), id="firmware-other"),
    pytest.param("min_ram", "1024", 1024, id="min-ram"),
    pytest.param("min_ram", "0", 0, id="min-ram-zero"),
    pytest.param("min_ram", "1024.0", 1024, id="min-ram-excel-float"),
    pytest.param("min_ram", "-1", Refused("whole number"), id="min-ram-negative"),
    pytest.param("min_ram", "1.5", Refused("whole number"), id="min-ram-fraction"),
    pytest.param("min_ram", "abc", Refused("whole number"), id="min-ram-text"),
    pytest.param("max_ram", "4096", "4096", id="max-ram"),
    pytest.param("max_ram", "4 GB", Refused("whole number"), id="max-ram-text"),
    pytest.param("__support_kvm", "TRUE", "true", id="flag-upper"),
    pytest.param("__support_kvm", "yes", "true", id="flag-yes"),
    pytest.param("__support_kvm", "1", "true", id="flag-1"),
    pytest.param("__support_xen", "no", "false", id="flag-no"),
    pytest.param("__support_xen", "0", "false", id="flag-0"),
    pytest.param("__support_xen", "maybe", Refused("true or false"), id="flag-maybe"),
    pytest.param("enterprise_project_id", "0", "0", id="eps"),
    pytest.param("team", "Ops <core>", "Ops <core>", id="custom-anything"),
]


@pytest.mark.parametrize(("attribute", "cell", "expected"), VALUE_RULES)
@pytest.mark.parametrize("shape", ["long", "wide"])
def test_value_rules_in_a_sheet(
    tmp_path: Path, shape: str, attribute: str, cell: str, expected: JsonValue | Refused
) -> None:
    op = op_for(attribute)
    if shape == "long":
        path = write_sheet(
            tmp_path / "s.csv", LONG, [[B, "add", "/other", "ok"], [A, op, "/" + attribute, cell]]
        )
        column = "value"
    else:
        path = write_sheet(
            tmp_path / "s.csv", ["image_id", "other", attribute], [[B, "ok", ""], [A, "", cell]]
        )
        column = attribute
    if isinstance(expected, Refused):
        problems = problems_of(path)
        assert where(problems) == [(3, column)]
        assert expected.text in problems[0].message
    else:
        sheet = read_sheet(path)
        assert sheet.patches[1].image_id == A
        assert sheet.patches[1].operations == (Operation(op, "/" + attribute, expected),)
        assert sheet.patches[1].rows == (3,)


@pytest.mark.parametrize(
    ("attribute", "op", "expected"),
    [
        *(
            pytest.param(attribute, "add", "is read-only", id=f"read-only-{attribute}")
            for attribute in ("status", "id", "__os_type", "min_disk")
        ),
        pytest.param("name", "remove", "name cannot be removed", id="remove-name"),
        pytest.param("min_ram", "remove", "min_ram cannot be removed", id="remove-min-ram"),
        pytest.param("Name", "replace", "did you mean 'name'?", id="did-you-mean"),
        pytest.param("Team", "add", "must be lower-case", id="custom-upper"),
        pytest.param("Owner", "add", "owner is read-only", id="custom-upper-read-only"),
        pytest.param("__bogus", "add", "unknown system attribute", id="unknown-system"),
    ],
)
def test_attribute_rules_in_a_long_sheet(
    tmp_path: Path, attribute: str, op: str, expected: str
) -> None:
    value = "" if op == "remove" else "x"
    path = write_sheet(
        tmp_path / "s.csv", LONG, [[A, "add", "/team", "ok"], [A, op, "/" + attribute, value]]
    )
    problems = problems_of(path)
    assert where(problems) == [(3, "path")]
    assert expected in str(problems[0])


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        *(
            pytest.param(column, "is read-only", id=f"read-only-{column}")
            for column in ("id", "__os_type", "checksum")
        ),
        pytest.param("Name", "did you mean 'name'?", id="did-you-mean"),
        pytest.param("Team", "must be lower-case", id="custom-upper"),
        pytest.param("__bogus", "unknown system attribute", id="unknown-system"),
    ],
)
def test_attribute_rules_in_a_wide_header(tmp_path: Path, column: str, expected: str) -> None:
    path = write_sheet(tmp_path / "s.csv", ["image_id", "ok_key", column], [[A, "ok", "x"]])
    problems = problems_of(path)
    assert where(problems) == [(1, column)]
    assert expected in str(problems[0])
    assert problems[0].fix.endswith("or start the header with # for a comment")


def test_wide_remove_marker_cannot_remove_base_attributes(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "name", "min_ram", "team"],
        [[A, "<remove>", " <remove> ", "<remove>"]],
    )
    problems = problems_of(path)
    assert where(problems) == [(2, "min_ram"), (2, "name")]
    assert all("cannot be removed" in problem.message for problem in problems)


def test_add_and_replace_need_a_value(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv",
        LONG,
        [
            [A, "add", "/team", ""],
            [A, "replace", "/name", ""],
            [A, "remove", "/other", ""],
        ],
    )
    problems = problems_of(path)
    assert where(problems) == [(2, "value"), (3, "value")]
    assert all(problem.message == "add and replace need a value" for problem in problems)


def test_a_long_sheet_without_value_column_may_only_remove(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "op", "path"],
        [[A, "remove", "/team"], [A, "add", "/other"]],
    )
    problems = problems_of(path)
    assert where(problems) == [(3, "value")]


def test_remove_takes_no_value(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "s.csv", LONG, [[A, "remove", "/team", "ops"]])
    problems = problems_of(path)
    assert where(problems) == [(2, "value")]
    assert "remove" in problems[0].message


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        pytest.param(f"  {A.upper()}  ", A, id="trimmed-and-lower-cased"),
        pytest.param(A.upper(), A, id="upper-case"),
        pytest.param("1.23E+18", Refused("scientific notation"), id="excel-scientific"),
        pytest.param("abc", Refused("is not an image id"), id="not-a-uuid"),
        pytest.param(A.replace("-", ""), Refused("is not an image id"), id="no-hyphens"),
        pytest.param("", Refused("image_id is empty"), id="empty"),
        pytest.param("   ", Refused("image_id is empty"), id="blank"),
    ],
)
@pytest.mark.parametrize("shape", ["long", "wide"])
def test_image_ids_in_a_sheet(
    tmp_path: Path, shape: str, cell: str, expected: str | Refused
) -> None:
    if shape == "long":
        path = write_sheet(
            tmp_path / "s.csv", LONG, [[B, "add", "/team", "x"], [cell, "add", "/team", "y"]]
        )
    else:
        path = write_sheet(tmp_path / "s.csv", ["image_id", "team"], [[B, "x"], [cell, "y"]])
    if isinstance(expected, Refused):
        problems = problems_of(path)
        assert where(problems) == [(3, "image_id")]
        assert expected.text in problems[0].message
    else:
        sheet = read_sheet(path)
        assert [patch.image_id for patch in sheet.patches] == [B, expected]
        assert sheet.frame.loc[1, "image_id"] == cell  # the frame keeps the text as read


def test_excel_scientific_id_message_says_how_to_fix(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "s.csv", ["image_id", "team"], [["1.23E+18", "x"]])
    (problem,) = problems_of(path)
    assert "Excel" in problem.message
    assert problem.fix == "format the column as Text and paste the ids again"


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param(
            [[A, "add", "/__support_kvm", "true"], [A, "add", "/__support_kvm_gpu_type", "V100"]],
            [(3, "value")],
            id="kvm-then-gpu",
        ),
        pytest.param(
            [
                [A, "add", "/__support_xen_gpu_type", "M60_vGPU"],
                [A, "add", "/__support_xen", "YES"],
            ],
            [(3, "value")],
            id="gpu-then-xen-normalised",
        ),
        pytest.param(
            [
                [A, "replace", "/__support_kvm", "1"],
                [A, "add", "/__support_xen_gpu_type", "M60_vGPU"],
            ],
            [(3, "value")],
            id="replace-counts-too",
        ),
        pytest.param(
            [[A, "add", "/__support_kvm", "false"], [A, "add", "/__support_kvm_gpu_type", "V100"]],
            [],
            id="flag-false-may-coexist",
        ),
        pytest.param(
            [
                [A, "add", "/__support_kvm", "no"],
                [A, "add", "/__support_xen", "0"],
                [A, "add", "/__support_kvm_gpu_type", "V100"],
            ],
            [],
            id="normalised-false-may-coexist",
        ),
        pytest.param(
            [[A, "remove", "/__support_kvm", ""], [A, "add", "/__support_kvm_gpu_type", "V100"]],
            [],
            id="removing-the-flag",
        ),
        pytest.param(
            [[A, "add", "/__support_kvm", "true"], [B, "add", "/__support_kvm_gpu_type", "V100"]],
            [],
            id="different-images",
        ),
        pytest.param(
            [[A, "add", "/__support_kvm", "true"], [A, "add", "/__support_xen", "true"]],
            [],
            id="kvm-and-xen",
        ),
    ],
)
def test_gpu_types_cannot_coexist_with_kvm_or_xen(
    tmp_path: Path, rows: list[list[object]], expected: list[tuple[int, str]]
) -> None:
    path = write_sheet(tmp_path / "s.csv", LONG, rows)
    if expected:
        problems = problems_of(path)
        assert where(problems) == expected
        assert "cannot coexist" in problems[0].message
    else:
        assert read_sheet(path).patches


def test_gpu_combination_in_a_wide_row_is_located_at_its_last_column(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "__support_kvm", "name", "__support_kvm_gpu_type"],
        [[A, "TRUE", "web", "V100"], [B, "false", "db", "V100"]],
    )
    problems = problems_of(path)
    assert where(problems) == [(2, "__support_kvm_gpu_type")]
    assert problems[0].message == (
        "__support_kvm_gpu_type cannot coexist with __support_kvm on one image"
    )


def test_rows_without_an_image_id_are_not_one_image(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv",
        LONG,
        [
            ["", "add", "/__support_kvm", "true"],
            ["", "add", "/__support_kvm_gpu_type", "V100"],
        ],
    )
    problems = problems_of(path)
    assert [problem.message for problem in problems] == ["image_id is empty"] * 2


# ------------------------------------------------------------------------ sheet-level checks


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param(
            [[A, "add", "/team", "ops"], [A, "add", "/team", "dev"]],
            ["3:value: conflicts with row 2, which changes the same attribute"],
            id="different-value",
        ),
        pytest.param(
            [[A, "add", "/team", "ops"], [A, "remove", "/team", ""]],
            ["3:value: conflicts with row 2"],
            id="add-then-remove",
        ),
        pytest.param(
            [[A, "replace", "/name", "x"], [f" {A.upper()}", "replace", "/name", "y"]],
            ["3:value: conflicts with row 2"],
            id="same-image-other-spelling",
        ),
        pytest.param(
            [[A, "add", "/team", "a"], [A, "add", "/team", "b"], [A, "add", "/team", "a"]],
            ["3:value: conflicts with row 2"],  # row 4 repeats row 2: a warning
            id="three-rows-point-at-the-first",
        ),
    ],
)
def test_changes_to_one_attribute_of_one_image_clash(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rows: list[list[object]],
    expected: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    write_sheet(tmp_path / "s.csv", LONG, rows)
    with pytest.raises(SheetError) as caught:
        read_sheet("s.csv")
    lines = str(caught.value).splitlines()
    assert len(lines) == len(expected)
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(f"s.csv:{start}")


def test_wide_rows_clash_in_the_attribute_column(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "name", "team"],
        [[A, "web", "ops"], [B, "db", ""], [A, "", "ops"], [A, "web2", ""]],
    )
    problems = problems_of(path)
    assert where(problems) == [(5, "name")]  # row 4's team repeats row 2's: a warning
    assert problems[0].message.startswith("conflicts with row 2")


def test_unknown_columns_in_a_long_sheet(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv", [*LONG, "extra", "Note"], [[A, "add", "/team", "x", "1", "2"]]
    )
    problems = problems_of(path)
    assert where(problems) == [(1, "Note"), (1, "extra")]
    assert problems[1].message == "unknown column 'extra'"
    assert "start its header with #" in problems[1].fix


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
@pytest.mark.parametrize("shape", ["long", "wide"])
def test_comment_and_result_columns_are_carried_not_sent(
    tmp_path: Path, suffix: str, shape: str
) -> None:
    passive = [
        "#note",
        "# who asked",
        "status",
        "HTTP_STATUS",
        "error_code",
        "error_message",
        "request_id",
        "attempts",
        "elapsed_ms",
        "before",
        "after",
    ]
    filler = [
        "see ticket",
        "alice",
        "failed",
        "400",
        "IMG.0001",
        "boom",
        "r-1",
        "2",
        "15",
        "{}",
        "{}",
    ]
    if shape == "long":
        header, row = [*LONG, *passive], [A, "add", "/team", "ops", *filler]
    else:
        header, row = ["image_id", "team", *passive], [A, "ops", *filler]
    sheet = read_sheet(write_sheet(tmp_path / f"s{suffix}", header, [row]))
    assert sheet.shape == shape
    assert list(sheet.frame.columns) == header
    assert sheet.frame.loc[0, "#note"] == "see ticket"
    assert sheet.frame.loc[0, "status"] == "failed"
    assert sheet.patches[0].operations == (Operation("add", "/team", "ops"),)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_duplicate_header_columns(tmp_path: Path, suffix: str) -> None:
    path = write_sheet(
        tmp_path / f"s{suffix}", ["image_id", "name", "team", "name"], [[A, "x", "t", "y"]]
    )
    problems = problems_of(path)
    assert where(problems) == [(1, "name")]
    assert problems[0].message == "column 'name' appears more than once"


@pytest.mark.parametrize(
    ("header", "row"),
    [
        pytest.param(["image_id", "name", " name"], [A, "x", "y"], id="padded"),
        pytest.param(["image_id", "name", "/name"], [A, "x", "x"], id="slash"),
        pytest.param(["image_id", "IMAGE_ID", "name"], [A, B, "x"], id="id-in-two-cases"),
        pytest.param([*LONG, "OP"], [A, "add", "/team", "x", "remove"], id="op-in-two-cases"),
    ],
)
def test_columns_that_mean_the_same_are_duplicates(
    tmp_path: Path, header: list[str], row: list[object]
) -> None:
    path = write_sheet(tmp_path / "s.csv", header, [row])
    problems = problems_of(path)
    assert [problem.row for problem in problems] == [1]
    assert "appears more than once" in problems[0].message


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_column_without_header(tmp_path: Path, suffix: str) -> None:
    path = write_sheet(tmp_path / f"s{suffix}", ["image_id", "", "name"], [[A, "x", "web"]])
    problems = problems_of(path)
    assert where(problems) == [(1, "#2")]
    assert problems[0].message == "a column has no header"


def _xlsx(
    path: Path,
    rows: list[list[object]],
    edit: Callable[[openpyxl.worksheet.worksheet.Worksheet], None] | None = None,
) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    if edit is not None:
        edit(sheet)
    workbook.save(path)
    return path


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        pytest.param("s.csv", b"", "the sheet is empty", id="empty-csv"),
        pytest.param("s.csv", b" \n\n", "the sheet is empty", id="blank-csv"),
        pytest.param(
            "s.csv", b"image_id,name\n", "the sheet has a header but no rows", id="header-only-csv"
        ),
        pytest.param(
            "s.tsv",
            b"image_id\tname\r\n",
            "the sheet has a header but no rows",
            id="header-only-tsv",
        ),
        pytest.param("s.csv", b"\x00\x01\x02\xff PK binary", "not a text sheet", id="binary"),
        pytest.param(
            "s.xlsx",
            b"PK\x03\x04 not really a zip",
            "not a readable Excel workbook",
            id="junk-xlsx",
        ),
        pytest.param("s.xlsx", b"", "not a readable Excel workbook", id="empty-xlsx-file"),
    ],
)
def test_whole_file_problems(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    for skip_invalid in (False, True):
        problems = problems_of(path, skip_invalid=skip_invalid)
        assert where(problems) == [(0, "")]
        assert message in problems[0].message


def test_empty_and_header_only_workbooks(tmp_path: Path) -> None:
    empty = problems_of(_xlsx(tmp_path / "empty.xlsx", []))
    assert where(empty) == [(0, "")]
    assert empty[0].message == "the sheet is empty"
    header_only = problems_of(_xlsx(tmp_path / "header.xlsx", [["image_id", "name"]]))
    assert where(header_only) == [(0, "")]
    assert header_only[0].message == "the sheet has a header but no rows"


@pytest.mark.parametrize(
    ("merge", "expected"),
    [
        pytest.param(
            "B2:B3",
            [(2, "name", "merged cells B2:B3"), (3, "name", "merged cells B2:B3")],
            id="data-rows",
        ),
        pytest.param(
            "A2:A3",
            [
                (2, "image_id", "merged cells A2:A3"),
                (3, "image_id", "image_id is empty"),
                (3, "image_id", "merged cells A2:A3"),
            ],
            id="id-column",
        ),
        pytest.param(
            "B1:C1",
            [(1, "#3", "a column has no header"), (1, "name", "merged cells B1:C1")],
            id="header",
        ),
    ],
)
def test_merged_cells_in_xlsx(
    tmp_path: Path, merge: str, expected: list[tuple[int, str, str]]
) -> None:
    path = _xlsx(
        tmp_path / "s.xlsx",
        [["image_id", "name", "team"], [A, "web", "ops"], [B, None, "dev"]],
        lambda sheet: sheet.merge_cells(merge),
    )
    problems = problems_of(path)
    assert [(p.row, p.column, p.message) for p in problems] == expected


def test_formula_cell_in_xlsx(tmp_path: Path) -> None:
    path = _xlsx(
        tmp_path / "s.xlsx", [["image_id", "name", "min_ram"], [A, "web", "=1+2"], [B, "db", 1024]]
    )
    problems = problems_of(path)
    assert where(problems) == [(2, "min_ram")]
    assert problems[0].message == "cell C2 holds a formula with no saved value"
    assert "Paste Special" in problems[0].fix


def test_excel_number_cells(tmp_path: Path) -> None:
    path = _xlsx(
        tmp_path / "s.xlsx",
        [
            ["image_id", "min_ram", "max_ram", "__support_kvm", "team"],
            [A, 1024.0, 2048, 1, 42],
            [B, 1024.5, None, 2, None],
        ],
    )
    problems = problems_of(path)
    assert where(problems) == [(3, "__support_kvm"), (3, "min_ram")]
    assert problems[1].message == "min_ram must be a whole number of MB, got '1024.5'"
    (patch,) = read_sheet(path, skip_invalid=True).patches
    assert patch.body() == [
        {"op": "replace", "path": "/min_ram", "value": 1024},
        {"op": "add", "path": "/max_ram", "value": "2048"},
        {"op": "add", "path": "/__support_kvm", "value": "true"},
        {"op": "add", "path": "/team", "value": "42"},
    ]


def test_all_problems_at_once_sorted_by_row(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv",
        [*LONG, "extra"],
        [
            [A, "add", "/team", "ok", ""],
            ["abc", "set", "/name", "", ""],
            [B, "replace", "/min_ram", "lots", ""],
            [B, "add", "/status", "x", ""],
            ["", "remove", "/name", "", ""],
        ],
    )
    problems = problems_of(path)
    assert where(problems) == [
        (1, "extra"),
        (3, "image_id"),
        (3, "op"),
        (4, "value"),
        (5, "path"),
        (6, "image_id"),
        (6, "path"),
    ]
    assert problems == sorted(problems, key=lambda p: (p.row, p.column, p.message))


@pytest.mark.parametrize(
    ("text", "row"),
    [
        pytest.param(f"image_id,name\n{A},web\n\n{B},a/b\n", 4, id="blank-line-between"),
        pytest.param(f"\nimage_id,name\n{A},a/b\n", 3, id="blank-line-before-header"),
    ],
)
def test_rows_are_numbered_as_a_spreadsheet_shows_them(tmp_path: Path, text: str, row: int) -> None:
    path = tmp_path / "s.csv"
    path.write_text(text, encoding="utf-8")
    assert where(problems_of(path)) == [(row, "name")]


# ---------------------------------------------------------------------------- skip_invalid


def test_skip_invalid_leaves_out_whole_images(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv",
        LONG,
        [
            [A, "replace", "/name", "web"],
            [B, "add", "/team", "ops"],
            [C, "add", "/team", "dev"],
            [B, "replace", "/min_ram", "lots"],
            ["", "add", "/team", "x"],
            [A, "add", "/team", "ops"],
        ],
    )
    sheet = read_sheet(path, skip_invalid=True)
    assert [(patch.image_id, patch.rows) for patch in sheet.patches] == [(A, (2, 7)), (C, (4,))]
    assert sheet.patches[0].operations == (
        Operation("replace", "/name", "web"),
        Operation("add", "/team", "ops"),
    )
    assert sheet.idle_rows == ()
    assert dict(sheet.invalid) == {
        3: "row 5 of the same image is invalid; an image's changes are sent together or not at all",
        5: "value: min_ram must be a whole number of MB, got 'lots' — write digits only, e.g. 1024",
        6: "image_id: image_id is empty — fill in the image's id, or delete the row",
    }


def test_skip_invalid_names_the_first_culprit_of_an_image(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "name", "min_ram"],
        [
            [A, "ok", ""],
            [A, "", "x"],
            [B, "b", ""],
            [A, "a/b", "1"],
        ],
    )
    sheet = read_sheet(path, skip_invalid=True)
    assert [patch.image_id for patch in sheet.patches] == [B]
    assert sorted(sheet.invalid) == [2, 3, 5]
    assert sheet.invalid[2].startswith("row 3 of the same image is invalid")
    assert sheet.invalid[3].startswith("min_ram: min_ram must be a whole number")
    assert sheet.invalid[5].startswith("name: name may hold only")


def test_skip_invalid_with_clashes_and_combinations(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv",
        LONG,
        [
            [A, "add", "/team", "a"],
            [A, "add", "/team", "b"],
            [B, "add", "/__support_xen", "true"],
            [B, "add", "/__support_xen_gpu_type", "M60"],
            [C, "add", "/team", "c"],
        ],
    )
    sheet = read_sheet(path, skip_invalid=True)
    assert [patch.image_id for patch in sheet.patches] == [C]
    assert sorted(sheet.invalid) == [2, 3, 4, 5]
    assert "conflicts with row 2" in sheet.invalid[3]
    assert "cannot coexist" in sheet.invalid[5]
    assert sheet.invalid[4].startswith("row 5 of the same image is invalid")


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_wide_sheet_asking_for_nothing_is_all_idle(tmp_path: Path, suffix: str) -> None:
    path = write_sheet(
        tmp_path / f"s{suffix}", ["image_id", "name", "team"], [[A, "", ""], [B, " ", ""]]
    )
    sheet = read_sheet(path)
    assert sheet.patches == ()
    assert sheet.idle_rows == (2, 3)


def test_skip_invalid_with_nothing_wrong_changes_nothing(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[A, "x"], [B, ""]])
    strict, lenient = read_sheet(path), read_sheet(path, skip_invalid=True)
    assert lenient.patches == strict.patches
    assert lenient.idle_rows == strict.idle_rows == (3,)
    assert dict(lenient.invalid) == {}


@pytest.mark.parametrize(
    ("header", "rows", "expected"),
    [
        pytest.param(
            [*LONG, "extra"], [[A, "add", "/team", "x", ""]], (1, "extra"), id="unknown-long-column"
        ),
        pytest.param(["image_id", "Name"], [[A, "x"]], (1, "Name"), id="bad-wide-column"),
        pytest.param(
            ["image_id", "name", "name"], [[A, "x", "y"]], (1, "name"), id="duplicate-column"
        ),
        pytest.param(["id", "name"], [[A, "x"]], (1, ""), id="no-image-id"),
        pytest.param(["image_id", "#note"], [[A, "x"]], (1, ""), id="no-attribute-columns"),
        pytest.param(["image_id", "name"], [], (0, ""), id="header-only"),
    ],
)
def test_skip_invalid_still_raises_for_the_header(
    tmp_path: Path, header: list[str], rows: list[list[object]], expected: tuple[int, str]
) -> None:
    path = write_sheet(tmp_path / "s.csv", header, rows)
    assert expected in where(problems_of(path, skip_invalid=True))


def test_skip_invalid_with_a_formula_leaves_out_its_row(tmp_path: Path) -> None:
    path = _xlsx(tmp_path / "s.xlsx", [["image_id", "name"], [A, "=1+2"], [B, "db"]])
    sheet = read_sheet(path, skip_invalid=True)
    assert [patch.image_id for patch in sheet.patches] == [B]
    assert sheet.invalid == {
        2: "name: cell B2 holds a formula with no saved value — open the "
        "workbook in Excel and save it (Excel saves the value), or "
        "paste the values only (Paste Special → Values)"
    }


def test_skip_invalid_leaves_out_every_row_of_a_merged_range(tmp_path: Path) -> None:
    path = _xlsx(
        tmp_path / "s.xlsx",
        [["image_id", "name", "team"], [A, "web", "ops"], [B, None, "dev"], [C, "db", "dev"]],
        lambda sheet: sheet.merge_cells("B2:B3"),
    )
    sheet = read_sheet(path, skip_invalid=True)
    assert [patch.image_id for patch in sheet.patches] == [C]
    assert sorted(sheet.invalid) == [2, 3]


@pytest.mark.parametrize(
    ("edit", "rows"),
    [
        # A merged range below the data covers no data row: it is reported once, at its corner.
        pytest.param(lambda sheet: sheet.merge_cells("D6:E7"), [6], id="merged"),
        pytest.param(lambda sheet: sheet.__setitem__("D9", "=1+1"), [9], id="formula"),
    ],
)
def test_skip_invalid_with_problems_below_the_data(
    tmp_path: Path,
    edit: Callable[[openpyxl.worksheet.worksheet.Worksheet], None],
    rows: list[int],
) -> None:
    # A workbook problem is not a row to skip: it is refused, located where it is.
    path = _xlsx(tmp_path / "s.xlsx", [["image_id", "name"], [A, "web"]], edit)
    with pytest.raises(SheetError) as refused:
        read_sheet(path, skip_invalid=True)
    assert [problem.row for problem in refused.value.problems] == rows


# ------------------------------------------------------------------------------- properties

UUIDS = (
    A,
    B,
    C,
    "3c4d5e6f-8091-4b2c-8d3e-7f8091a2b304",
    "4d5e6f70-91a2-4c3d-9e4f-8091a2b3c405",
    "5e6f7081-a2b3-4d4e-8f50-91a2b3c4d506",
)


def _spelled(image_id: str) -> st.SearchStrategy[str]:
    return st.sampled_from([image_id, image_id.upper(), f"  {image_id} "])


# Valid cells: (text in the sheet, the JSON value to send).
_NAME_TEXT = st.from_regex(
    r"[A-Za-z0-9\-._镜像中文]([A-Za-z0-9\-._ 镜像中文]{0,20}"
    r"[A-Za-z0-9\-._镜像中文])?",
    fullmatch=True,
)
_FREE_TEXT = st.text(
    st.characters(categories=("L", "N", "P", "S"), exclude_characters="<>="),
    min_size=1,
    max_size=30,
)


def _as_is(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, JsonValue]]:
    return strategy.map(lambda text: (text, text))


def _flag(value: bool) -> st.SearchStrategy[tuple[str, JsonValue]]:
    words = ("true", "yes", "1") if value else ("false", "no", "0")
    return st.sampled_from(
        [spelling(word) for word in words for spelling in (str, str.upper, str.title)]
    ).map(lambda text: (text, "true" if value else "false"))


def _whole(n: int) -> st.SearchStrategy[tuple[str, JsonValue]]:
    return st.sampled_from([str(n), f"{n}.0", f" {n} "]).map(lambda text: (text, n))


GOOD: dict[str, st.SearchStrategy[tuple[str, JsonValue]]] = {
    "name": _as_is(_NAME_TEXT),
    "__description": _as_is(_FREE_TEXT),
    "min_ram": st.integers(0, 10**6).flatmap(_whole),
    "max_ram": _as_is(st.integers(0, 10**6).map(str)),
    "hw_firmware_type": _as_is(st.sampled_from(["bios", "uefi"])),
    "__support_kvm": st.booleans().flatmap(_flag),
    "__support_xen": st.booleans().flatmap(_flag),
    "__is_config_init": st.booleans().flatmap(_flag),
    "__support_kvm_gpu_type": _as_is(st.sampled_from(["V100", "P100"])),
    "__support_xen_gpu_type": _as_is(st.just("M60_vGPU")),
    "enterprise_project_id": _as_is(st.sampled_from(["0", C])),
    "team": _as_is(_FREE_TEXT),
    "cost.centre:2": _as_is(_FREE_TEXT),
}
ATTRIBUTES = list(GOOD)
ODD_COLUMNS = ["Name", "Team", "status", "id", "tags", "__os_type", "__bogus", "", "a b", "extra"]
PASSIVE = ["#note", "status", "error_message"]
GARBAGE = st.one_of(
    st.text(max_size=12),
    st.text(alphabet="0123456789.-eE+ ", max_size=8),
    st.sampled_from(
        [
            "",
            " ",
            "=1+2",
            "=A1",
            "<remove>",
            "TRUE",
            "nan",
            "NULL",
            "#N/A",
            "None",
            "1.23E+18",
            "镜像",
            "\r\n",
            '"',
            "a,b",
            "a\tb",
            "\x00",
            "add",
            "/name",
        ]
    ),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)


def _same_column(column: str) -> str:
    return column.strip().lower().lstrip("/")


@st.composite
def sheets(draw: st.DrawFn) -> tuple[str, list[str], list[list[object]]]:
    """A shape, a header and rows: valid cells, with some garbage in some sheets."""
    mess = draw(st.sampled_from([0, 0, 1, 3, 10]))  # in ten: how often a cell is garbage
    odd = mess > 0 and draw(st.integers(0, 3)) == 0  # a header with odd columns
    shape = draw(st.sampled_from(["long", "wide"]))
    if shape == "long":
        extra = draw(st.lists(st.sampled_from(PASSIVE + (ODD_COLUMNS if odd else [])), max_size=2))
        base = LONG[:3] if odd and draw(st.booleans()) else LONG
        header = draw(st.permutations([*base, *extra]))
    else:
        pool = ATTRIBUTES + PASSIVE + (ODD_COLUMNS if odd else [])
        header = [
            "image_id",
            *draw(st.lists(st.sampled_from(pool), min_size=1, max_size=5, unique=not odd)),
        ]
    # Columns that mean the same (" name" / "/name" / "Name") are a known bug, tested apart:
    # spell them alike, so pandas marks them as duplicates.
    spelling: dict[str, str] = {}
    header = [
        spelling.setdefault(_same_column(column), column) if column else column for column in header
    ]

    def cell(good: object) -> object:
        return draw(GARBAGE) if draw(st.integers(0, 9)) < mess else good

    rows = []
    images = draw(st.permutations(UUIDS))  # a wide sheet mostly has one row an image
    for index in range(draw(st.integers(0 if odd else 1, 6))):
        if shape == "long":
            attribute = draw(st.sampled_from(ATTRIBUTES))
            op = draw(st.sampled_from(["add", "replace", "remove"]))
            good: dict[str, object] = {
                "image_id": draw(st.sampled_from(UUIDS).flatmap(_spelled)),
                "op": op,
                "path": draw(st.sampled_from([attribute, "/" + attribute])),
                "value": "" if op == "remove" else draw(GOOD[attribute])[0],
            }
        else:
            good = {"image_id": draw(_spelled(images[index]))}
            for column in header[1:]:
                if column not in GOOD:
                    choices = [_FREE_TEXT]
                else:
                    choices = [st.just(""), GOOD[column].map(lambda pair: pair[0])]
                    if column not in ("name", "min_ram"):
                        choices.append(st.just("<remove>"))
                good[column] = draw(st.one_of(*choices))
        rows.append([cell(good.get(column, "")) for column in header])
    return shape, header, rows


def _read_back(suffix: str, rows: list[list[object]]) -> list[list[object]]:
    """``rows`` as they can be written: a workbook cannot hold control characters."""
    if suffix != ".xlsx":
        return rows
    return [
        [ILLEGAL_CHARACTERS_RE.sub("", cell) if isinstance(cell, str) else cell for cell in row]
        for row in rows
    ]


def _write(directory: Path, suffix: str, header: list[str], rows: list[list[object]]) -> Path:
    return write_sheet(directory / f"s{suffix}", header, _read_back(suffix, rows))


def _asking_rows(sheet: Sheet) -> set[int]:
    """Spreadsheet rows that ask for a change: a long row with an image_id, op, path or value
    (comment and result cells do not count), a wide row with a non-blank attribute cell."""
    frame = sheet.frame
    if sheet.shape == "long":
        cells = frame[[column for column in frame.columns if column.lower() in LONG]]
        blank = (cells.apply(lambda column: column.str.strip().str.lstrip("/")) == "").all(axis=1)
        return {sheet.first_row + int(row) for row in (~blank).to_numpy().nonzero()[0]}
    id_column = {column.lower(): column for column in frame.columns}["image_id"]
    passive = passive_columns(list(frame.columns))
    attributes = [
        column for column in frame.columns if column != id_column and column not in passive
    ]
    blank = (frame[attributes].apply(lambda column: column.str.strip()) == "").all(axis=1)
    return {sheet.first_row + int(row) for row in (~blank).to_numpy().nonzero()[0]}


def _outcome(path: Path, *, skip_invalid: bool) -> Sheet | SheetError:
    """``read_sheet``'s result, checked: a consistent Sheet, or only located problems."""
    try:
        sheet = read_sheet(path, skip_invalid=skip_invalid)
    except SheetError as error:
        caught = error
    else:
        return _checked(sheet, skip_invalid=skip_invalid)
    assert caught.problems
    for problem in caught.problems:
        assert problem.file == str(path)
        assert problem.row >= 0
        assert problem.message.strip()
        assert problem.fix.strip()
    return caught


def _checked(sheet: Sheet, *, skip_invalid: bool) -> Sheet:
    """``sheet``, once every row is in exactly one place and every patch is well formed."""
    rows = [row for patch in sheet.patches for row in patch.rows]
    assert len(rows) == len(set(rows))
    assert set(rows).isdisjoint(sheet.idle_rows)
    assert set(rows).isdisjoint(sheet.invalid)
    assert set(sheet.idle_rows).isdisjoint(sheet.invalid)
    data_rows = range(sheet.first_row, sheet.first_row + sheet.row_count)
    assert sorted([*rows, *sheet.idle_rows, *sheet.invalid]) == list(data_rows)
    repeats = {warning.row for warning in sheet.warnings}  # sent once
    assert set(rows) == _asking_rows(sheet) - set(sheet.invalid) - repeats
    assert len({patch.image_id for patch in sheet.patches}) == len(sheet.patches)
    for patch in sheet.patches:
        assert check_image_id(patch.image_id) is None
        assert patch.operations
        for operation in patch.operations:
            assert operation.op in OPS
            assert operation.path.startswith("/")
            assert (operation.value is None) == (operation.op == "remove")
    if not skip_invalid:
        assert not sheet.invalid
    return sheet


def _any_sheet_is_read_or_located(
    suffix: str, sheet: tuple[str, list[str], list[list[object]]]
) -> None:
    _, header, rows = sheet
    with tempfile.TemporaryDirectory() as directory:
        path = _write(Path(directory), suffix, header, rows)
        strict = _outcome(path, skip_invalid=False)
        lenient = _outcome(path, skip_invalid=True)
    event(
        f"{sheet[0]}: "
        + (
            "valid"
            if isinstance(strict, Sheet)
            else "header problem"
            if any(p.row < 2 for p in strict.problems)
            else "row problems"
        )
    )
    if isinstance(strict, Sheet):
        assert isinstance(lenient, Sheet)
        assert lenient.patches == strict.patches
        assert not lenient.invalid
    elif any(problem.row < 2 for problem in strict.problems):
        assert isinstance(lenient, SheetError)
        assert lenient.problems == strict.problems
    elif isinstance(lenient, Sheet):
        assert {problem.row for problem in strict.problems} <= set(lenient.invalid)
    else:  # a problem below the rows read (a formula or merged cell in a blank row)
        assert lenient.problems == strict.problems
        assert max(problem.row for problem in strict.problems) > 2


@settings(max_examples=15, deadline=None)
@given(sheet=sheets())
def test_any_csv_is_read_or_yields_located_problems(
    sheet: tuple[str, list[str], list[list[object]]],
) -> None:
    _any_sheet_is_read_or_located(".csv", sheet)


@settings(max_examples=12, deadline=None)
@given(sheet=sheets())
def test_any_xlsx_is_read_or_yields_located_problems(
    sheet: tuple[str, list[str], list[list[object]]],
) -> None:
    _any_sheet_is_read_or_located(".xlsx", sheet)


@settings(max_examples=20, deadline=None)
@given(content=st.binary(max_size=200))
def test_any_bytes_are_read_or_yield_located_problems(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "s.csv"
        path.write_bytes(b"image_id,op,path,value\n" + content)
        _outcome(path, skip_invalid=False)
        _outcome(path, skip_invalid=True)


@st.composite
def valid_changes(draw: st.DrawFn) -> list[tuple[str, str, str, str, Operation]]:
    """Rows ``(image_id cell, op, path cell, value cell, expected operation)``: at most one
    change per attribute of an image, and no gpu type beside a true __support_kvm/xen."""
    keys = draw(
        st.lists(
            st.tuples(st.sampled_from(UUIDS), st.sampled_from(ATTRIBUTES)),
            min_size=1,
            max_size=12,
            unique=True,
        )
    )
    rows = []
    for image_id, attribute in keys:
        spelled = draw(st.sampled_from([image_id, image_id.upper(), f" {image_id} "]))
        path = draw(st.sampled_from([attribute, "/" + attribute, f" /{attribute} "]))
        removable = attribute not in ("name", "min_ram")
        op = draw(
            st.sampled_from(["add", "replace", "remove"] if removable else ["add", "replace"])
        )
        if op == "remove":
            rows.append((spelled, op, path, "", Operation(op, "/" + attribute)))
        else:
            text, value = draw(GOOD[attribute])
            rows.append(
                (
                    spelled,
                    draw(st.sampled_from([op, op.upper()])),
                    path,
                    text,
                    Operation(op, "/" + attribute, value),
                )
            )
    for image_id in UUIDS:
        setting = {
            operation.path
            for spelled, *_, operation in rows
            if spelled.strip().lower() == image_id
            and operation.op != "remove"
            and operation.value != "false"
        }
        assume(
            not (
                {"/__support_kvm_gpu_type", "/__support_xen_gpu_type"} & setting
                and {"/__support_kvm", "/__support_xen"} & setting
            )
        )
    return rows


def _expected_patches(
    rows: list[tuple[str, str, str, str, Operation]],
) -> list[tuple[str, list[Operation], list[int]]]:
    grouped: dict[str, tuple[list[Operation], list[int]]] = {}
    for index, (image_id, *_, operation) in enumerate(rows, start=2):  # below the header
        operations, positions = grouped.setdefault(image_id.strip().lower(), ([], []))
        operations.append(operation)
        positions.append(index)
    return [
        (image_id, operations, positions) for image_id, (operations, positions) in grouped.items()
    ]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=valid_changes())
def test_valid_long_sheets_round_trip(
    tmp_path: Path, suffix: str, rows: list[tuple[str, str, str, str, Operation]]
) -> None:
    path = write_sheet(tmp_path / f"s{suffix}", LONG, [list(row[:4]) for row in rows])
    sheet = read_sheet(path)
    assert sheet.shape == "long"
    assert sheet.idle_rows == ()
    assert dict(sheet.invalid) == {}
    assert [
        (patch.image_id, list(patch.operations), list(patch.rows)) for patch in sheet.patches
    ] == _expected_patches(rows)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=valid_changes())
def test_valid_wide_sheets_round_trip(
    tmp_path: Path, rows: list[tuple[str, str, str, str, Operation]]
) -> None:
    """The same changes, one image a row and one attribute a column: ``<remove>`` removes,
    name and min_ram are replaced, everything else is added."""
    attributes = sorted({row[4].path[1:] for row in rows})
    images = list(dict.fromkeys(row[0].strip().lower() for row in rows))
    table = {image_id: [image_id] + [""] * len(attributes) for image_id in images}
    expected: dict[str, list[Operation]] = {image_id: [] for image_id in images}
    for image_id, _, _, text, operation in rows:
        attribute = operation.path[1:]
        table[image_id.strip().lower()][1 + attributes.index(attribute)] = (
            "<remove>" if operation.op == "remove" else text
        )
    for image_id in images:
        for attribute, cell in zip(attributes, table[image_id][1:], strict=True):
            if cell == "<remove>":
                expected[image_id].append(Operation("remove", "/" + attribute))
            elif cell.strip():
                op = "replace" if attribute in ("name", "min_ram") else "add"
                typed = next(
                    row[4].value
                    for row in rows
                    if row[0].strip().lower() == image_id and row[4].path[1:] == attribute
                )
                expected[image_id].append(Operation(op, "/" + attribute, typed))
    path = write_sheet(tmp_path / "s.csv", ["image_id", *attributes], list(table.values()))
    sheet = read_sheet(path)
    assert sheet.shape == "wide"
    assert [(patch.image_id, list(patch.operations)) for patch in sheet.patches] == [
        (image_id, operations) for image_id, operations in expected.items() if operations
    ]
    assert set(sheet.idle_rows) == {
        row for row, image_id in enumerate(images, start=2) if not expected[image_id]
    }


@pytest.mark.parametrize(
    ("attributes", "refused"),
    [
        pytest.param({"__support_xen_hana", "__support_kvm"}, True, id="hana-with-kvm"),
        pytest.param({"__support_xen_hana", "__support_xen"}, True, id="hana-with-xen"),
        pytest.param({"__support_kvm_infiniband", "__support_xen"}, True, id="infiniband-with-xen"),
        pytest.param(
            {"__support_kvm_infiniband", "__support_kvm"}, False, id="infiniband-with-kvm"
        ),
        pytest.param({"__support_xen_hana"}, False, id="hana-alone"),
    ],
)
def test_more_attributes_that_cannot_coexist(attributes: set[str], refused: bool) -> None:
    assert (check_combination(attributes) is not None) is refused


def test_spellings_that_mean_the_same_are_normalised(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv", ["image_id", "hw_firmware_type", "team"], [[A, " UEFI ", "<REMOVE>"]]
    )
    assert read_sheet(path).patches[0].body() == [
        {"op": "add", "path": "/hw_firmware_type", "value": "uefi"},
        {"op": "remove", "path": "/team"},
    ]


def test_a_repeat_in_another_spelling_is_a_duplicate_not_a_conflict(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv",
        LONG,
        [[A, "add", "/__support_kvm", "TRUE"], [A, "add", "/__support_kvm", "true"]],
    )
    warnings = read_sheet(path).warnings
    assert [warning.message for warning in warnings] == ["warning: the same change as row 2"]
