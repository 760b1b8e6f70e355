"""The fast path through the worksheet XML (``batchpatch.xlsx_scan``) reads every workbook
exactly as the expat handlers alone do: the same cells, kinds, problems and merged ranges,
the same errors worded the same way.  Workbooks are generated in many shapes (openpyxl's,
Excel's, pretty-printed, hostile) and read both ways."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchpatch import xlsx, xlsx_scan
from batchpatch.errors import OptionsError, SheetError
from batchpatch.xlsx import column_letters
from bench.sheets import wide_xlsx
from tests.xlsx_parts import MAIN, STYLES, build

A = "0b1c6a3e-5f0d-4a53-9c1e-2f6d8a1b7c01"


def _cells(path: Path) -> object:
    """What reading the worksheet's cells gives: its name and cells, or the error."""
    try:
        with zipfile.ZipFile(path) as archive:
            name, cells = xlsx._worksheet_cells(path, xlsx._Parts(archive), None)
    except (xlsx._Unreadable, SheetError, OptionsError) as error:
        return (type(error).__name__, str(error))
    return (name, cells)


def _worksheet(path: Path) -> object:
    """What ``read_worksheet`` gives: the worksheet, or the problems it raises."""
    try:
        return xlsx.read_worksheet(path, None)
    except SheetError as error:
        return [str(problem) for problem in error.problems]
    except OptionsError as error:
        return str(error)


def _both(path: Path, monkeypatch: pytest.MonkeyPatch, read: object = _cells) -> list[object]:
    """[fast path, handlers alone] of ``read(path)``."""
    fast = read(path)  # type: ignore[operator]
    with monkeypatch.context() as patched:
        patched.setattr(xlsx_scan, "scanned_cells", lambda *_: None)
        slow = read(path)  # type: ignore[operator]
    return [fast, slow]


def _took_fast_path(path: Path, monkeypatch: pytest.MonkeyPatch) -> bool:
    results: list[object] = []
    original = xlsx_scan.scanned_cells

    def spy(*arguments: object) -> object:
        results.append(original(*arguments))  # type: ignore[arg-type]
        return results[-1]

    with monkeypatch.context() as patched:
        patched.setattr(xlsx_scan, "scanned_cells", spy)
        _cells(path)
    return bool(results) and results[0] is not None


# ------------------------------------------------------------------ generated workbooks

_TEXT = st.lists(
    st.sampled_from([*"aZ09 -_.é中😀&<>\"'\t\n\r", "_x000D_", "_x0041_", "]]", "\u00a0"]),
    max_size=12,
).map("".join)


@dataclass(frozen=True)
class _Cell:
    column: int
    with_reference: bool
    kind: str
    value: str
    style: int
    formula: str | None
    spelling: str  # how text is written: escaped, references, cdata, rich, phonetic, space


_KINDS = ["inline", "shared", "number", "bool", "error", "str", "date", "empty", "iso"]
_NUMBERS = [
    "2048",
    "-3",
    "0",
    "1.5",
    "1e3",
    "007",
    " 5 ",
    "",
    "abc",
    "-0",
    "45000.25",
    "12345678901234567",
]


@st.composite
def _cell(draw: st.DrawFn, column: int) -> _Cell:
    kind = draw(st.sampled_from(_KINDS))
    value = {
        "inline": _TEXT,
        "str": _TEXT,
        "shared": st.sampled_from(["0", "1", "2", "5", "-1", "x", ""]),
        "number": st.sampled_from(_NUMBERS),
        "date": st.sampled_from(["45000", "45000.5", "0.25", "-1", "60"]),
        "bool": st.sampled_from(["1", "0", "true", " 1"]),
        "error": st.sampled_from(["#N/A", "#DIV/0!"]),
        "empty": st.just(""),
        "iso": st.sampled_from(["2024-01-02T03:04:05", "2024-01-02", "nope"]),
    }[kind]
    return _Cell(
        column,
        draw(st.booleans()) or column == 0,
        kind,
        draw(value),
        draw(st.integers(0, 7)) if kind in ("number", "date", "empty") else 0,
        draw(st.none() | st.sampled_from(["1+1", "A1&amp;B1"])),
        draw(
            st.sampled_from(
                ["escaped", "escaped", "references", "cdata", "rich", "phonetic", "space"]
            )
        ),
    )


def _characters(text: str, spelling: str) -> str:
    if spelling == "references":
        return "".join(f"&#x{ord(character):x};" for character in text)
    if spelling == "cdata" and "]]" not in text:
        return f"<![CDATA[{text}]]>"
    return escape(text)


def _inline(text: str, spelling: str) -> str:
    if spelling == "rich" and len(text) > 1:
        half = len(text) // 2
        return (
            f"<is><r><rPr><b/></rPr><t>{escape(text[:half])}</t></r>"
            f"<r><t>{escape(text[half:])}</t></r></is>"
        )
    if spelling == "phonetic":
        return f"<is><t>{escape(text)}</t><rPh sb='0' eb='1'><t>ヨミ</t></rPh></is>"
    if spelling == "space":
        return f'<is><t xml:space="preserve">{_characters(text, "escaped")}</t></is>'
    return f"<is><t>{_characters(text, spelling)}</t></is>"


_TYPES = {"shared": "s", "bool": "b", "error": "e", "str": "str", "iso": "d", "inline": "inlineStr"}


def _cell_xml(cell: _Cell, row: int, excel_order: bool) -> str:
    reference = f' r="{column_letters(cell.column + 1)}{row}"' if cell.with_reference else ""
    kind = _TYPES.get(cell.kind, "")
    attributes = [f' t="{kind}"'] if kind else []
    if cell.style:
        attributes.insert(0 if excel_order else len(attributes), f' s="{cell.style}"')
    opening = f"<c{reference}{''.join(attributes)}"
    formula = f"<f>{cell.formula}</f>" if cell.formula else ""
    if cell.kind == "empty" and not formula:
        return opening + "/>"
    if cell.kind == "inline":
        inner = _inline(cell.value, cell.spelling)
    else:
        inner = f"<v>{_characters(cell.value, cell.spelling)}</v>" if cell.value else ""
    return f"{opening}>{formula}{inner}</c>"


@st.composite
def _sheet_xml(draw: st.DrawFn) -> str:
    """A worksheet's XML: a header row, then rows of generated cells, in one writer's style."""
    style = draw(st.sampled_from(["lean", "excel", "pretty"]))
    gap = "\n  " if style == "pretty" else ""
    rows = [f'<row r="1">{gap}<c r="A1" t="inlineStr"><is><t>image_id</t></is></c></row>']
    number = 1
    for _ in range(draw(st.integers(0, 6))):
        number += draw(st.sampled_from([1, 1, 1, 2, 5]))
        columns = sorted(set(draw(st.lists(st.integers(0, 4), max_size=5))))
        cells = [draw(_cell(column)) for column in columns]
        attributes = draw(
            st.sampled_from(
                [f' r="{number}"', f' r="{number}" spans="1:4"', "", f' r="{number}" ht="15"']
            )
        )
        if draw(st.booleans()) and not cells:
            rows.append(f"<row{attributes}/>")
            continue
        inner = gap.join(_cell_xml(cell, number, style == "excel") for cell in cells)
        rows.append(f"<row{attributes}>{gap}{inner}{gap}</row>")
        if draw(st.integers(0, 9)) == 0:
            rows.append(draw(st.sampled_from(["<!-- a note -->", "<?pi x?>", "\r\n"])))
    after = draw(
        st.sampled_from(["", '<mergeCells count="1"><mergeCell ref="A2:B3"/></mergeCells>'])
    )
    prolog = draw(
        st.sampled_from(
            [
                "",
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n',
                "<?xml version='1.0'?>",
            ]
        )
    )
    return (
        f'{prolog}<worksheet xmlns="{MAIN}"><dimension ref="A1"/>{gap}'
        f"<sheetData>{gap}{gap.join(rows)}{gap}</sheetData>{gap}{after}</worksheet>"
    )


_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@_SETTINGS
@given(sheet=_sheet_xml(), date1904=st.booleans())
def test_generated_workbooks_read_the_same_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sheet: str, date1904: bool
) -> None:
    path = build(
        tmp_path / "s.xlsx",
        [("Changes", sheet)],
        shared=["web", "a &amp; b_x000D_", "  padded  "],
        date1904=date1904,
    )
    fast, slow = _both(path, monkeypatch)
    assert fast == slow
    fast, slow = _both(path, monkeypatch, _worksheet)
    assert fast == slow


@_SETTINGS
@given(sheet=_sheet_xml(), data=st.data())
def test_damaged_workbooks_read_or_fail_the_same_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sheet: str, data: st.DataObject
) -> None:
    xml = sheet.encode()
    position = data.draw(st.integers(0, len(xml) - 1))
    replacement = data.draw(
        st.binary(max_size=6)
        | st.sampled_from(
            [
                b"<",
                b">",
                b'"',
                b"&",
                b"\x01",
                b"&#0;",
                b"]]>",
                b"<!DOCTYPE x>",
                b' r="A1"',
                b' t="s"',
                b"</row>",
                b"<row>",
                b"<c>",
                b"</c>",
                b"<v>",
                b"\r",
                b"\xef\xbf\xbe",
            ]
        )
    )
    damaged = xml[:position] + replacement + xml[position + data.draw(st.integers(0, 6)) :]
    path = tmp_path / "s.xlsx"
    build(path, [("Changes", "")], shared=["web"])
    _replace_part(path, "xl/worksheets/sheet1.xml", damaged)
    fast, slow = _both(path, monkeypatch)
    assert fast == slow


def _replace_part(path: Path, part: str, data: bytes) -> None:
    with zipfile.ZipFile(path) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    contents[part] = data
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in contents.items():
            archive.writestr(name, content)


# ------------------------------------------------------------------ the shapes in use


def _excel_like(path: Path, rows: int) -> Path:
    """What Excel writes: shared strings, styles before types, spans and row heights."""
    shared = ["image_id", "name", "min_ram", *(f"image-{row}" for row in range(rows))]
    data = "".join(
        f'<row r="{row + 2}" spans="1:3" x14ac:dyDescent="0.25">'
        f'<c r="A{row + 2}" t="s"><v>{row + 3}</v></c>'
        f'<c r="B{row + 2}" s="0" t="s"><v>{row + 3}</v></c>'
        f'<c r="C{row + 2}" s="2"><v>{45000 + row}</v></c>'
        f'<c r="D{row + 2}" s="3"/></row>'
        for row in range(rows)
    )
    header = (
        '<row r="1" spans="1:3"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c>'
        '<c r="C1" t="s"><v>2</v></c></row>'
    )
    sheet = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n'
        f'<worksheet xmlns="{MAIN}" xmlns:x14ac="http://schemas.microsoft.com/office/'
        'spreadsheetml/2009/9/ac"><dimension ref="A1:C9"/><sheetViews><sheetView '
        'workbookViewId="0"/></sheetViews><sheetData>'
        f"{header}{data}</sheetData>"
        '<mergeCells count="1"><mergeCell ref="D2:D3"/></mergeCells></worksheet>'
    )
    return build(path, [("Sheet1", sheet)], shared=shared, styles=STYLES)


@pytest.mark.parametrize("write", [wide_xlsx, _excel_like], ids=["openpyxl-write-only", "excel"])
def test_the_usual_shapes_take_the_fast_path_and_read_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write: object
) -> None:
    path = write(tmp_path / "s.xlsx", 3000)  # type: ignore[operator]
    assert _took_fast_path(path, monkeypatch)
    fast, slow = _both(path, monkeypatch)
    assert fast == slow
    fast, slow = _both(path, monkeypatch, _worksheet)
    assert fast == slow


def test_an_unusual_row_goes_to_the_handlers_and_the_rest_stays_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [
        '<row r="1"><c r="A1" t="inlineStr"><is><t>image_id</t></is></c>'
        '<c r="B1" t="inlineStr"><is><t>name</t></is></c></row>',
        f'<row r="2"><c r="A2" t="inlineStr"><is><t>{A}</t></is></c>'
        '<c r="B2" t="inlineStr"><is><r><t>we</t></r><r><t>b</t></r></is></c></row>',
        f'<row r="3"><c r="A3" t="inlineStr"><is><t>{A}</t></is></c>'
        '<c r="B3" t="inlineStr"><is><t><![CDATA[<b>]]></t></is></c></row>',
        f'<row r="4"><c r="A4" t="inlineStr"><is><t>{A}</t></is></c><!-- x --></row>',
        f'<row r="5"><c r="A5" t="inlineStr"><is><t>{A}</t></is></c>'
        '<c r="B5" t="inlineStr"><is><t>&#x41;&amp;</t></is></c></row>',
    ]
    sheet = f'<worksheet xmlns="{MAIN}"><sheetData>{"".join(rows)}</sheetData></worksheet>'
    path = build(tmp_path / "s.xlsx", [("Changes", sheet)])
    fast, slow = _both(path, monkeypatch)
    assert fast == slow
    _, cells = fast  # type: ignore[misc]
    assert cells.texts[-4:] == ["<b>", A, A, "A&"]
    assert cells.texts[3] == "web"


@pytest.mark.parametrize(
    "prolog",
    [
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]>',
        '<?xml version="1.0" encoding="ISO-8859-1"?>',
        "\ufeff",
    ],
    ids=["dtd", "latin-1", "bom"],
)
def test_a_part_the_fast_path_cannot_take_is_read_by_the_handlers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prolog: str
) -> None:
    sheet = (
        f'{prolog}<worksheet xmlns="{MAIN}"><sheetData><row r="1">'
        '<c r="A1" t="inlineStr"><is><t>image_id</t></is></c></row></sheetData></worksheet>'
    )
    path = build(tmp_path / "s.xlsx", [("Changes", sheet)])
    assert not _took_fast_path(path, monkeypatch)
    fast, slow = _both(path, monkeypatch, _worksheet)
    assert fast == slow


_REGULAR = f'<row r="2"><c r="A2" t="inlineStr"><is><t>{A}</t></is></c><c r="B2"><v>7</v></c></row>'


@pytest.mark.parametrize(
    ("row", "well_formed"),
    [
        pytest.param('<row r="3"><c r="A3" r="A4"><v>1</v></c></row>', False, id="cell-r-twice"),
        pytest.param('<row r="3"><c r="A3" t="s" t="n"><v>1</v></c></row>', False, id="t-twice"),
        pytest.param('<row r="3" r="4"><c r="A3"><v>1</v></c></row>', False, id="row-r-twice"),
        pytest.param('<row r="3" ht="1" ht="2"><c r="A3"><v>1</v></c></row>', False, id="ht-twice"),
        pytest.param('<row r="3"><c r="A3" t="str"><v>a]]>b</v></c></row>', False, id="cdata-end"),
        pytest.param('<row r="3"><c r="A3" t="str"><v>a\x01b</v></c></row>', False, id="control"),
        pytest.param('<row r="3"><c r="A3" t="str"><v>a&nbsp;</v></c></row>', False, id="entity"),
        pytest.param('<row r="3"><c r="A3" t="str"><v>&#0;</v></c></row>', False, id="nul-ref"),
        pytest.param('<row r="3"><c r="A3" t="str"><v>a&b</v></c></row>', False, id="ampersand"),
        pytest.param(
            '<row r="3"><c r="A3"><f>A1&B1</f><v>1</v></c></row>', False, id="formula-amp"
        ),
        pytest.param('<row r="3"><c r="A3"><v>1</v></c>', False, id="unclosed-row"),
        pytest.param('<row r="3"><row r="4"><c r="A4"><v>1</v></c></row></row>', True, id="nested"),
        pytest.param('<c r="A3"><v>1</v></c>', True, id="cell-outside-rows"),
        pytest.param('<row r="3"><c r="A3"><v>1</v></c></row><x/>', True, id="stranger"),
        pytest.param('<row r="0"><c r="A3"><v>1</v></c></row>', True, id="row-zero"),
        pytest.param('<row r="3"><c r="A9999999"><v>1</v></c></row>', True, id="cell-row-beyond"),
        pytest.param('<row r="3"><c r="XFE3"><v>1</v></c></row>', True, id="column-beyond"),
        pytest.param('<row r="3"><c r="A3" t="s"><v>99</v></c></row>', True, id="no-such-string"),
        pytest.param('<row r="3"><c r="A3" t="e"><v>#REF!</v></c></row>', True, id="error"),
        pytest.param('<row r="3"><c r="A3"><f>1+1</f></c></row>', True, id="formula-no-value"),
        pytest.param("<row><c><v>1</v></c><c><v>2</v></c></row>", True, id="no-references"),
        pytest.param(
            f'<row r="3"><!-- x --><c r="A3" t="str"><v>{"x" * 40000}</v></c></row>',
            True,
            id="long-text-for-the-handlers",
        ),
        pytest.param(
            f'<row r="3"><c r="A3" t="str"><v>{"x" * 40000}</v></c></row>', True, id="long-text"
        ),
        pytest.param(
            '<row r="1048576"/><row><c r="A3"><v>1</v></c></row>', True, id="row-after-last"
        ),
    ],
)
def test_odd_and_broken_rows_read_or_fail_the_same_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, row: str, well_formed: bool
) -> None:
    header = '<row r="1"><c r="A1" t="inlineStr"><is><t>image_id</t></is></c></row>'
    sheet = (
        f'<worksheet xmlns="{MAIN}"><sheetData>{header}{_REGULAR * 3}{row}{_REGULAR}'
        "</sheetData></worksheet>"
    )
    path = build(tmp_path / "s.xlsx", [("Changes", sheet)], shared=["web"])
    fast, slow = _both(path, monkeypatch)
    assert fast == slow
    if not well_formed:
        assert fast[0] == "_Unreadable"  # type: ignore[index]
        assert "not well-formed XML" in fast[1]  # type: ignore[index]


@pytest.mark.parametrize("part", ["xl/worksheets/sheet1.xml", "xl/sharedStrings.xml"])
def test_a_part_declaring_an_unknown_encoding_is_refused_in_words(
    tmp_path: Path, part: str
) -> None:
    """Expat answers an unknown encoding with ``LookupError``, not ``ExpatError``: it is
    a part that cannot be read (exit 2, FILE: what is wrong), never a traceback."""
    path = tmp_path / "s.xlsx"
    rows = '<row r="1"><c r="A1" t="inlineStr"><is><t>image_id</t></is></c></row>'
    build(path, [("Changes", rows)], shared=["web"])
    with zipfile.ZipFile(path) as archive:
        xml = archive.read(part)
    declared = b'<?xml version="1.0" encoding="U-TF-8"?>'
    _replace_part(
        path,
        part,
        declared + xml.split(b"?>", 1)[-1] if xml.startswith(b"<?xml") else declared + xml,
    )
    with pytest.raises(SheetError) as refused:
        xlsx.read_worksheet(path, None)
    assert "unknown encoding" in str(refused.value.problems[0])
