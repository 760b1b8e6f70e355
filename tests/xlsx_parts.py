"""Building XLSX workbooks by hand, part by part, for cells and files openpyxl cannot write
(saved formula values, the 1904 date system, hostile XML, stray cells, zip bombs)."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
RELATIONSHIPS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PACKAGE = "http://schemas.openxmlformats.org/package/2006/relationships"

#: Cell styles 0..: General, then a few number formats (see ``STYLES``).
GENERAL, PERCENT, DATE, DATETIME, DURATION, CUSTOM_DATE, CUSTOM_PERCENT, TIME = range(8)
STYLES = (
    f'<styleSheet xmlns="{MAIN}"><numFmts count="2">'
    '<numFmt numFmtId="164" formatCode="yyyy/mm/dd;@"/>'
    '<numFmt numFmtId="165" formatCode="0.0&quot;pts&quot;%"/></numFmts>'
    '<cellXfs count="8"><xf numFmtId="0"/><xf numFmtId="9"/><xf numFmtId="14"/>'
    '<xf numFmtId="22"/><xf numFmtId="46"/><xf numFmtId="164"/><xf numFmtId="165"/>'
    '<xf numFmtId="21"/></cellXfs></styleSheet>'
)


def text(reference: str, value: str) -> str:
    """An inline-string cell."""
    return f'<c r="{reference}" t="inlineStr"><is><t>{escape(value)}</t></is></c>'


def cell(
    reference: str, value: str, *, kind: str = "", style: int = GENERAL, formula: str = ""
) -> str:
    """A cell with a raw ``<v>``: a number by default, ``kind`` ``b``, ``e``, ``str``..."""
    attributes = (
        f' r="{reference}"' + (f' t="{kind}"' if kind else "") + (f' s="{style}"' if style else "")
    )
    inner = (f"<f>{escape(formula)}</f>" if formula else "") + (
        f"<v>{escape(value)}</v>" if value else ""
    )
    return f"<c{attributes}>{inner}</c>"


def rows(*cells_by_row: Sequence[str], start: int = 1) -> str:
    """``<row>`` elements holding the given cells, numbered from ``start``."""
    return "".join(
        f'<row r="{number}">{"".join(cells)}</row>'
        for number, cells in enumerate(cells_by_row, start=start)
    )


def worksheet(sheet_data: str, after: str = "", prolog: str = "") -> str:
    return (
        f'{prolog}<worksheet xmlns="{MAIN}"><sheetData>{sheet_data}</sheetData>{after}</worksheet>'
    )


def build(
    path: Path,
    sheets: Sequence[tuple[str, str]],
    *,
    states: Sequence[str] = (),
    active: int = 0,
    date1904: bool = False,
    styles: str = STYLES,
    shared: Sequence[str] = (),
    workbook_prolog: str = "",
) -> Path:
    """Write a workbook of ``sheets`` (name, worksheet XML) to ``path``."""
    entries = "".join(
        f'<sheet name="{escape(name)}" sheetId="{index + 1}" r:id="rId{index + 1}"'
        + (f' state="{states[index]}"' if index < len(states) else "")
        + "/>"
        for index, (name, _) in enumerate(sheets)
    )
    workbook = (
        f'{workbook_prolog}<workbook xmlns="{MAIN}" xmlns:r="{RELATIONSHIPS}">'
        + ('<workbookPr date1904="1"/>' if date1904 else "<workbookPr/>")
        + f'<bookViews><workbookView activeTab="{active}"/></bookViews>'
        + f"<sheets>{entries}</sheets></workbook>"
    )
    relations = "".join(
        f'<Relationship Id="rId{index + 1}" Type="{RELATIONSHIPS}/worksheet" '
        f'Target="worksheets/sheet{index + 1}.xml"/>'
        for index in range(len(sheets))
    )
    relations += (
        f'<Relationship Id="rIdS" Type="{RELATIONSHIPS}/styles" Target="styles.xml"/>'
        f'<Relationship Id="rIdT" Type="{RELATIONSHIPS}/sharedStrings" '
        'Target="sharedStrings.xml"/>'
    )
    strings = "".join(f"<si><t>{escape(value)}</t></si>" for value in shared)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "_rels/.rels",
            f'<Relationships xmlns="{PACKAGE}"><Relationship Id="rId1" '
            f'Type="{RELATIONSHIPS}/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>",
        )
        archive.writestr("xl/workbook.xml", workbook)
        archive.writestr(
            "xl/_rels/workbook.xml.rels",
            f'<Relationships xmlns="{PACKAGE}">{relations}</Relationships>',
        )
        archive.writestr("xl/styles.xml", styles)
        archive.writestr(
            "xl/sharedStrings.xml", f'<sst xmlns="{MAIN}" count="{len(shared)}">{strings}</sst>'
        )
        for index, (_, xml) in enumerate(sheets):
            archive.writestr(f"xl/worksheets/sheet{index + 1}.xml", xml)
    return path


def one_sheet(path: Path, sheet_data: str, **options: object) -> Path:
    """A workbook with one worksheet, ``Changes``, holding ``sheet_data``."""
    return build(path, [("Changes", worksheet(sheet_data))], **options)  # type: ignore[arg-type]
