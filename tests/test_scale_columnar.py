"""The columnar paths of a million-row sheet agree with the plain ones, cell for cell.

The CSV report is built column by column in pyarrow (cells checked by their bytes,
constant columns joined once, the rows' buffer written as it is): it must be byte for
byte what pandas' ``to_csv`` writes of ``report_frame``, in every encoding and delimiter.
Ids told unchanged by one match, first positions told without a sort and groups sized
without ranges must be what the plain computations give.
"""

from __future__ import annotations

import codecs
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpatch.checks import distinct, first_positions, grouped_order, grouped_sizes
from batchpatch.models import ImagePatch, Operation, Outcome, Status
from batchpatch.report import RowResult, report_frame, write_report
from batchpatch.sheet import Sheet, _trimmed, read_sheet
from batchpatch.textfile import encode_report

A = "0b1c6a3e-5f0d-4a53-9c1e-2f6d8a1b7c01"
B = "3c4d5e6f-8091-4b2c-8d3e-4f5a6b7c8d04"
CELL = st.text(
    st.characters(codec="utf-8")
    | st.sampled_from([*"=+-@\t\r\n\",;|' \x00\x01\x1f\x7f中é", "a", "7"]),
    max_size=8,
)
NUMBER = st.none() | st.integers(min_value=-5, max_value=10**6)


def _sheet(tmp_path: Path, delimiter: str, encoding: str) -> Sheet:
    path = tmp_path / "sheet.csv"
    text = f"image_id{delimiter}name\n{A}{delimiter}x\n"
    path.write_bytes(text.encode(encoding))
    return read_sheet(path, delimiter=delimiter)


def _outcome(status: Status, http: int | None, text: str, number: int | None) -> Outcome:
    return Outcome(A, status, http, text, text, text, 1, number)


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    height=st.integers(min_value=0, max_value=12),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]),
    constant=st.booleans(),
)
def test_the_csv_report_is_what_to_csv_writes_of_the_report_frame(
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
    height: int,
    delimiter: str,
    encoding: str,
    constant: bool,
) -> None:
    folder = tmp_path_factory.mktemp("report")
    sheet = _sheet(folder, delimiter, encoding)
    frame = pd.DataFrame(
        {
            "image_id": data.draw(st.lists(CELL, min_size=height, max_size=height)),
            "name": [data.draw(CELL)] * height
            if constant
            else data.draw(st.lists(CELL, min_size=height, max_size=height)),
        },
        dtype=str,
    )
    sheet = dataclasses.replace(sheet, frame=frame)
    statuses = st.sampled_from(list(Status))
    if constant:
        one = RowResult(_outcome(data.draw(statuses), None, data.draw(CELL), 5), "b", "")
        rows = [one] * height
    else:
        rows = [
            RowResult(
                _outcome(
                    data.draw(statuses), data.draw(NUMBER), data.draw(CELL), data.draw(NUMBER)
                ),
                data.draw(CELL),
                data.draw(CELL),
            )
            for _ in range(height)
        ]
    written = write_report(sheet, rows, folder / "report.csv").read_bytes()
    expected = report_frame(sheet, rows).to_csv(index=False, sep=delimiter)
    assert written == encode_report(expected, sheet.encoding)


def test_a_report_of_a_cell_pyarrow_cannot_hold_is_still_written(tmp_path: Path) -> None:
    sheet = _sheet(tmp_path, ",", "utf-8")
    rows = [RowResult(_outcome(Status.FAILED, 500, "bad \ud800 text", None))]
    written = write_report(sheet, rows, tmp_path / "report.csv").read_text(encoding="utf-8-sig")
    assert "bad \ufffd text" in written


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(st.sampled_from([*"aZ9- \t\u00a0É_/[~"]), max_size=5), max_size=8))
def test_ids_told_unchanged_at_once_are_trimmed_and_lowered_as_before(cells: list[str]) -> None:
    column = pd.Series(cells, dtype=str)
    expected = column.str.strip().str.lower()
    assert _trimmed(column).tolist() == expected.tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["x", "y", "z", ""]), max_size=30), st.data())
def test_groups_and_first_positions_are_what_a_sort_gives(
    values: list[str], data: st.DataObject
) -> None:
    others = data.draw(st.lists(st.sampled_from("ab"), min_size=len(values), max_size=len(values)))
    codes, firsts = distinct(pd.Series(values, dtype=str), pd.Series(others, dtype=str))
    assert firsts.tolist() == np.unique(codes, return_index=True)[1].tolist()
    assert first_positions(codes).tolist() == firsts.tolist()
    order, groups = grouped_order(codes)
    assert order.tolist() == np.argsort(codes, kind="stable").tolist()
    sizes = grouped_sizes(codes)[1].tolist()
    assert sizes == [len(group) for group in groups] == np.bincount(codes).tolist()


def test_a_long_sheet_with_untidy_ids_groups_as_a_tidy_one(tmp_path: Path) -> None:
    """Ids with capitals and spaces take the full trim; each image still gets one patch of
    its changes in sheet order, made like the constructors make them."""
    path = tmp_path / "long.csv"
    path.write_text(
        "image_id,op,path,value\n"
        f" {A.upper()} ,replace,/name,one\n"
        f"{B},add,team,ops\n"
        f"{A},add,min_ram,1024\n",
        encoding="utf-8",
    )
    sheet = read_sheet(path)
    assert sheet.patches == (
        ImagePatch(
            A, (Operation("replace", "/name", "one"), Operation("add", "/min_ram", 1024)), (2, 4)
        ),
        ImagePatch(B, (Operation("add", "/team", "ops"),), (3,)),
    )


def test_a_report_joined_slice_by_slice_is_the_same_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows are joined a slice at a time (one pyarrow array may not pass 2 GiB of text):
    the slices end to end are the report, whatever the slice's length."""
    from batchpatch import report

    sheet = _sheet(tmp_path, ",", "utf-8")
    height = 23
    frame = pd.DataFrame(
        {
            "image_id": [f"id-{n}" for n in range(height)],
            "name": [f'n,"{n}' for n in range(height)],
        },
        dtype=str,
    )
    sheet = dataclasses.replace(sheet, frame=frame)
    rows = [
        RowResult(
            _outcome(Status.SUCCEEDED if n % 3 else Status.FAILED, 200 + n, f"m{n}", n), "b", ""
        )
        for n in range(height)
    ]
    expected = encode_report(report_frame(sheet, rows).to_csv(index=False), sheet.encoding)
    for slice_rows in (1, 5, height, 10_000):
        monkeypatch.setattr(report, "SLICE_ROWS", slice_rows)
        assert write_report(sheet, rows, tmp_path / f"r{slice_rows}.csv").read_bytes() == expected


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252", "utf-16"])
def test_a_cell_pyarrow_cannot_hold_in_a_later_slice_still_gives_the_whole_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoding: str
) -> None:
    """Slices are made as they are written (or, for a legacy encoding, joined before):
    one that fails after others leaves no part-report — the csv writer writes it whole."""
    from batchpatch import report

    path = tmp_path / "sheet.csv"
    path.write_bytes(f"image_id,name\n{A},x\n".encode(encoding))
    sheet = read_sheet(path, encoding=encoding)
    height = 23
    frame = pd.DataFrame({"image_id": [f"id-{n}" for n in range(height)]}, dtype=str)
    sheet = dataclasses.replace(sheet, frame=frame)
    rows = [
        RowResult(_outcome(Status.FAILED, 500, "bad \ud800 text" if n == 20 else f"m{n}", n))
        for n in range(height)
    ]
    monkeypatch.setattr(report, "SLICE_ROWS", 5)
    data = write_report(sheet, rows, tmp_path / "report.csv").read_bytes()
    # a cp1252 report that cannot hold U+FFFD is UTF-8 with a BOM (``encode_report``)
    written = data.decode("utf-8-sig" if data.startswith(codecs.BOM_UTF8) else encoding)
    lines = written.lstrip("\ufeff").splitlines()
    assert len(lines) == height + 1
    assert "bad \ufffd text" in lines[21]
    assert [line.split(",")[0] for line in lines[1:]] == [f"id-{n}" for n in range(height)]
