"""The fast paths a million-row sheet takes give exactly what the plain ones gave.

The schema's ``plain_text`` patterns may only pass values ``check_value`` accepts; the CSV
report joined by pyarrow must be byte for byte what pandas' ``to_csv`` writes; a sheet's
patches, problems and warnings must not depend on how many rows share a value.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpatch.errors import SheetError
from batchpatch.report import columns_csv, csv_text, neutralise, neutralised
from batchpatch.schema import IMS_SCHEMA, ImsSchema, UntypedValue
from batchpatch.sheet import read_sheet
from batchpatch.sheetwrite import unquoted

ATTRIBUTES = [
    "name",
    "__description",
    "hw_firmware_type",
    "max_ram",
    "min_ram",
    "team",
    "tag:env",
    "__support_kvm",
    "Name",
]
CHARACTERS = st.characters(codec="utf-8") | st.sampled_from(
    [*" '<>=+-@\t\r\n\x00\x01\x7f\u200b\ufeff中.", "a", "B", "7", "_"]
)


@settings(max_examples=400, deadline=None)
@given(attribute=st.sampled_from(ATTRIBUTES), text=st.text(CHARACTERS, max_size=140))
def test_a_plain_cell_is_one_check_value_accepts(attribute: str, text: str) -> None:
    schema = ImsSchema()
    pattern = schema.plain_text(attribute)
    assert pattern is not None
    by_python = re.fullmatch(pattern, text) is not None
    by_re2 = pc.match_substring_regex(pa.array([text]), rf"\A(?:{pattern})\z")[0].as_py()
    assert by_python == by_re2
    tag = attribute.startswith("tag:")
    if by_python and (tag or text.strip()):  # a blank cell is typed as no value: not asked
        try:
            typed = schema.typed_value(attribute, text if tag else unquoted(text))
        except UntypedValue:
            return  # refused as untyped before its value is checked
        assert schema.check_value(attribute, typed) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(CHARACTERS, max_size=12), min_size=1, max_size=30))
def test_neutralised_is_neutralise_of_each_cell(cells: list[str]) -> None:
    assert neutralised(cells) == [neutralise(cell) for cell in cells]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_the_csv_report_text_is_what_to_csv_writes(delimiter: str) -> None:
    frame = pd.DataFrame(
        {
            "image_id": ["a", "b,c", 'say "hi"', "line\nbreak", "", "cr\rx", "tab\tx", "p|q;r"],
            "name, quoted": ["x"] * 8,
        }
    )
    frame["http_status"] = pd.array([200, None, 404, None, 1, 2, 3, 4], dtype="Int64")
    assert csv_text(frame, delimiter) == frame.to_csv(index=False, sep=delimiter)
    empty = frame.head(0)
    assert csv_text(empty, delimiter) == empty.to_csv(index=False, sep=delimiter)


def test_a_lone_surrogate_is_written_by_the_csv_writer() -> None:
    columns = {"a": ["x\ud800y", "plain"], "b": [None, 7]}
    assert columns_csv(columns, ",").splitlines() == ["a,b", "x\ud800y,", "plain,7"]


def _read(path: Path) -> tuple[str, object]:
    try:
        sheet = read_sheet(path, schema=IMS_SCHEMA)
    except SheetError as error:
        return "error", [str(problem) for problem in error.problems]
    return "ok", (sheet.patches, sheet.idle_rows, [str(w) for w in sheet.warnings])


def test_many_images_sharing_values_read_as_few_do(tmp_path: Path) -> None:
    """Typed values and operations are made once per (op, attribute): a sheet of 4,000
    rows gives each image the same patch as a sheet of that image's rows alone."""
    rows = ["image_id,op,path,value"]
    for number in range(1000):
        image = f"{number:08x}-5f0d-4a53-9c1e-2f6d8a1b7c01"
        rows += [
            f"{image},replace,/name,image-{number}",
            f"{image},replace,/min_ram,2048",
            f"{image},add,/__description,'=d{number}",
            f"{image},add,tag:env,prod",
        ]
    big = tmp_path / "big.csv"
    big.write_text("\n".join(rows) + "\n", encoding="utf-8")
    kind, (patches, idle, warnings) = _read(big)  # type: ignore[misc]
    assert kind == "ok"
    assert idle == ()
    assert warnings == []
    for number in (0, 517, 999):
        small = tmp_path / f"small{number}.csv"
        small.write_text("\n".join([rows[0], *rows[1 + 4 * number : 5 + 4 * number]]) + "\n")
        _, (alone, _, _) = _read(small)  # type: ignore[misc]
        assert patches[number].operations == alone[0].operations
        assert patches[number].sources == tuple(row + 4 * number for row in alone[0].sources)
    assert patches[3].operations[2].value == "=d3"  # the apostrophe taken off, as one by one


def test_a_bad_value_among_many_plain_ones_is_found(tmp_path: Path) -> None:
    rows = ["image_id,op,path,value"]
    for number in range(2000):
        rows.append(f"{number:08x}-5f0d-4a53-9c1e-2f6d8a1b7c01,replace,/name,image-{number}")
    rows[1500] = rows[1500].replace("image-1499", "bad<name>")
    sheet = tmp_path / "one-bad.csv"
    sheet.write_text("\n".join(rows) + "\n", encoding="utf-8")
    kind, problems = _read(sheet)
    assert kind == "error"
    assert problems == [
        f"{sheet}:1501:value: name may hold only letters, digits, - . _, spaces and Chinese "
        "characters — remove the other characters"
    ]
