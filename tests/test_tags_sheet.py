"""Tags in sheets, checked locally: the strict key and value rules, the tag limit, renames."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchpatch.errors import SheetError
from batchpatch.sheet import read_sheet
from tests.sheets import write_sheet
from tests.tagfixtures import LONG_HEADER as LONG
from tests.tagfixtures import A, B


def problems(path: Path) -> list[str]:
    with pytest.raises(SheetError) as raised:
        read_sheet(path)
    return [str(problem) for problem in raised.value.problems]


def test_wide_tag_columns_become_tag_changes(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "name", "tag:env", "tag:old", "tag:环境"],
        [[A, "web", "prod-1.2", "<remove>", "生产"], [B, "", "", "", ""]],
    )
    sheet = read_sheet(path)
    (patch,) = sheet.patches
    assert [(o.op, o.path, o.value) for o in patch.operations] == [
        ("replace", "/name", "web"),
        ("add", "tag:env", "prod-1.2"),
        ("remove", "tag:old", None),
        ("add", "tag:环境", "生产"),
    ]
    assert sheet.idle_rows == (3,)


@pytest.mark.parametrize(
    ("header", "cell", "expected"),
    [
        pytest.param("tag:" + "k" * 37, "v", "is 37 characters long", id="key-too-long"),
        pytest.param("tag:a.b", "v", "tag key 'a.b' may hold only", id="key-dot"),
        pytest.param("tag:", "v", "the tag key after tag: is empty", id="key-empty"),
        pytest.param("tag:env", "v" * 44, "value is 44 characters long", id="value-too-long"),
        pytest.param("tag:env", "a/b", "value 'a/b' may hold only", id="value-slash"),
        pytest.param("Tag:env", "v", "tag: must be written in lower case", id="prefix-case"),
        pytest.param("tags", "x", "write one column tag:KEY per tag", id="tags-column"),
    ],
)
def test_tag_rules_are_located_with_a_fix(
    tmp_path: Path, header: str, cell: str, expected: str
) -> None:
    path = write_sheet(tmp_path / "s.csv", ["image_id", header], [[A, cell]])
    found = problems(path)
    assert len(found) == 1
    assert expected in found[0]
    assert found[0].startswith(f"{path}:")
    assert " — " in found[0]


def test_the_tags_column_no_longer_says_ims_forbids_it(tmp_path: Path) -> None:
    path = write_sheet(tmp_path / "s.csv", LONG, [[A, "add", "tags", "x"]])
    (found,) = problems(path)
    assert "IMS does not let users change it" not in found
    assert f"{path}:2:path: tags cannot be changed as one attribute" in found


def test_long_tag_rows_allow_an_empty_value_and_refuse_a_bad_one(tmp_path: Path) -> None:
    good = write_sheet(
        tmp_path / "g.csv", LONG, [[A, "add", "tag:flag", ""], [A, "remove", "tag:old", ""]]
    )
    (patch,) = read_sheet(good).patches
    assert [(o.op, o.path, o.value) for o in patch.operations] == [
        ("add", "tag:flag", ""),
        ("remove", "tag:old", None),
    ]
    bad = write_sheet(tmp_path / "b.csv", LONG, [[A, "add", "tag:env", "x y"]])
    assert problems(bad) == [
        f"{bad}:2:value: tag:env value 'x y' may hold only letters A-Z a-z, digits, _ - and "
        "Chinese characters and . — remove the other characters"
    ]


def test_more_than_ten_tags_from_the_sheet_alone_is_a_warning_at_the_last(tmp_path: Path) -> None:
    # The sheet may only restate tags the image carries (an export of legacy tags past the
    # limit): the plan, which knows the image's tags, refuses what adds one past 10.
    rows = [[A, "add", f"tag:k{n}", "v"] for n in range(11)]
    path = write_sheet(tmp_path / "s.csv", LONG, [*rows, [B, "add", "tag:k0", "v"]])
    assert [str(w) for w in read_sheet(path).warnings] == [
        f"{path}:12:value: warning: the sheet sets 11 tags on this image; an image may carry "
        "10 at most — the plan refuses it unless the image carries those tags already; set 10 "
        "tags at most per image"
    ]
    ten = write_sheet(tmp_path / "t.csv", LONG, rows[:10])
    assert len(read_sheet(ten).patches[0].operations) == 10


def test_one_tag_changed_twice_is_a_clash(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv", LONG, [[A, "add", "tag:env", "a"], [A, "add", "tag:env", "b"]]
    )
    (found,) = problems(path)
    assert found.startswith(f"{path}:3:value: conflicts with row 2")


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        pytest.param(["rename", "tag:a", ""], "2:value: rename needs the new key", id="no-new"),
        pytest.param(["rename", "tag:a", "b"], "rename moves a tag to a tag", id="tag-to-key"),
        pytest.param(["rename", "/a", "/a"], "rename of a to itself", id="itself"),
        pytest.param(["rename", "/name", "title"], "name cannot be renamed", id="system"),
        pytest.param(["rename", "tag:a", "tag:b c"], "tag key 'b c' may hold only", id="bad"),
        pytest.param(["move", "/a", "b"], "op must be add, replace, remove or rename", id="op"),
    ],
)
def test_rename_rows_are_checked(tmp_path: Path, row: list[str], expected: str) -> None:
    path = write_sheet(tmp_path / "s.csv", LONG, [[A, *row]])
    (found,) = problems(path)
    assert expected in found


def test_a_rename_onto_a_key_another_row_changes_is_refused(tmp_path: Path) -> None:
    path = write_sheet(
        tmp_path / "s.csv",
        LONG,
        [[A, "add", "tag:new", "x"], [A, "rename", "tag:old", "tag:new"]],
    )
    assert problems(path) == [
        f"{path}:3:value: row 2 also changes tag:new of the same image — keep only one of "
        "the two changes"
    ]
