"""The XLSX report of a workbook with other sheets: the input's parts, the read worksheet's
XML alone written anew.

A workbook is a zip of parts.  The report copies every part of the input as it is — the
other worksheets (formulas with their saved values, formatting, merged cells, charts),
shared strings, defined names, hidden sheets, sheet order — except:

- the read worksheet's XML, replaced by the results, streamed row by row (strings inline,
  so the shared strings stay the input's), under its name and at its place;
- the styles part, to which the few cell formats the results use (a bold header, the
  status colours, wrapped text, text format) are appended: every index the other sheets
  use still means what it meant;
- the workbook part, whose active tab becomes the results' (another sheet's "selected"
  mark is taken off, so Excel does not open with several sheets grouped for editing);
- the calculation chain, dropped (it may list the read sheet's formulas, which are gone;
  Excel rebuilds it), and the read worksheet's relationships (its old comments, drawings
  and tables no longer belong to any sheet).

Memory does not grow with the rows of either the results or the other sheets: parts are
copied through a buffer, and the styles and workbook parts (small) are read whole.  A
workbook this cannot handle (no styles part, Strict Open XML, a worksheet name the report
must change) raises ``CannotCopy``: the caller writes it another way.
"""

from __future__ import annotations

import math
import re
import shutil
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any
from xml.sax.saxutils import escape, quoteattr

from batchpatch.xlsx import _book, _parser, _Parts, _relations, _Unreadable, column_letters

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
#: Rows written to the zip at a time.
_BATCH = 100
#: Bytes of another worksheet looked at for its sheet view (its start tag comes first).
_HEAD = 1 << 16
#: What XML 1.0 cannot hold at all: shown as U+FFFD (the report has already done so).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_TAB_SELECTED = re.compile(rb"""(<(?:\w+:)?sheetView\b[^>]*?)\s+tabSelected=["'](?:1|true)["']""")


class CannotCopy(Exception):
    """The workbook's parts cannot be carried over this way (the message says why)."""


@dataclass(frozen=True)
class Style:
    """A cell format the results use: bold, a solid fill and a font colour (``RRGGBB``),
    wrapped text, text format (``@``)."""

    bold: bool = False
    fill: str = ""
    colour: str = ""
    wrap: bool = False
    text: bool = False


@dataclass(frozen=True)
class Results:
    """The results worksheet: header, column widths, rows of values (None: blank), the
    header's style and each data cell's (``style_of(column, value)``)."""

    columns: Sequence[str]
    widths: Sequence[float]
    rows: Iterable[Sequence[Any]]
    height: int
    header: Style
    style_of: Callable[[str, Any], Style | None]
    styles: Sequence[Style] = field(default_factory=tuple)  # every style style_of gives


@dataclass(frozen=True)
class _Plan:
    """What changes in the copy: the parts replaced, the parts dropped."""

    sheet_part: str
    place: int
    visible: bool
    namespace: str
    replaced: dict[str, bytes]
    dropped: set[str]
    other_sheets: set[str]


def check_parts(source: Path, sheet_name: str) -> None:
    """Stream every XML part but the read worksheet's (already read) through the reader's
    parser (DTDs refused, sizes capped): the report copies them.  ``ValueError`` says which
    part is unsafe."""
    try:
        with zipfile.ZipFile(source) as archive:
            parts = _Parts(archive)
            skip = _sheet_part(parts, sheet_name)[0].lower()
            for info in archive.infolist():
                name = info.filename
                if name.lower() != skip and name.lower().endswith((".xml", ".rels", ".vml")):
                    parts.parse(name, _parser(_ignore, _ignore))
    except _Unreadable as error:
        raise ValueError(str(error)) from None


def _ignore(*_: object) -> None:
    """Nothing to collect: the parse alone is the check."""


def write_into(source: Path, sheet_name: str, results: Results, target: Path) -> None:
    """Write ``source`` with its worksheet ``sheet_name`` replaced by ``results`` to
    ``target`` (see the module docstring).  Raises ``CannotCopy``."""
    with zipfile.ZipFile(source) as archive:
        parts = _Parts(archive)
        plan, style_ids = _plan(parts, sheet_name, results)
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
            for info in archive.infolist():
                name = info.filename
                if name in plan.dropped:
                    continue
                copy = zipfile.ZipInfo(name, info.date_time)
                copy.compress_type = zipfile.ZIP_DEFLATED
                copy.external_attr = info.external_attr
                if name == plan.sheet_part:
                    with out.open(copy, "w", force_zip64=True) as stream:
                        _write_sheet(stream, plan, results, style_ids)
                elif name in plan.replaced:
                    out.writestr(copy, plan.replaced[name])
                else:
                    _copy_part(archive, info, out, copy, unselect=name in plan.other_sheets)


def _copy_part(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    out: zipfile.ZipFile,
    copy: zipfile.ZipInfo,
    *,
    unselect: bool,
) -> None:
    """Copy one part through a buffer; another worksheet loses its "selected" mark."""
    with archive.open(info) as reader, out.open(copy, "w", force_zip64=True) as writer:
        if unselect:
            writer.write(_TAB_SELECTED.sub(rb"\1", reader.read(_HEAD), count=1))
        shutil.copyfileobj(reader, writer, 1 << 20)


# ------------------------------------------------------------------------ the plan


def _sheet_part(parts: _Parts, sheet_name: str) -> tuple[str, int, bool]:
    """The read worksheet's part, its place among the sheets, and whether it is visible."""
    book = _book(parts)
    for place, entry in enumerate(book.entries):
        if entry.name == sheet_name and entry.part is not None:
            return _stored_name(parts, entry.part), place, entry.state == "visible"
    raise CannotCopy(f"no worksheet named {sheet_name!r}")


def _stored_name(parts: _Parts, name: str) -> str:
    """A part's name as the zip spells it (parts are found case-insensitively)."""
    return parts.names[name.lower()].filename


def _plan(parts: _Parts, sheet_name: str, results: Results) -> tuple[_Plan, dict[Style, int]]:
    sheet_part, place, visible = _sheet_part(parts, sheet_name)
    root = {kind: target for target, kind in _relations(parts, "").values()}
    workbook = _stored_name(parts, root.get("officeDocument", "xl/workbook.xml"))
    relations = _relations(parts, workbook)
    by_kind = {kind: target for target, kind in relations.values()}
    styles = by_kind.get("styles")
    if styles is None or not parts.has(styles):
        raise CannotCopy("the workbook has no styles part")
    styles = _stored_name(parts, styles)
    book_xml = parts.archive.read(workbook)
    namespace = _root_namespace(book_xml)
    if namespace != _MAIN:
        raise CannotCopy("the workbook is not Transitional Open XML")
    wanted = list(dict.fromkeys([results.header, *results.styles]))
    styles_xml, style_ids = _merged_styles(parts.archive.read(styles), wanted)
    replaced = {styles: styles_xml}
    if visible:
        replaced[workbook] = _active_tab(book_xml, place)
    dropped = {_sheet_relations(parts, sheet_part)} if _has_relations(parts, sheet_part) else set()
    calc = by_kind.get("calcChain")
    if calc is not None and parts.has(calc):
        dropped |= _drop_calc_chain(parts, workbook, _stored_name(parts, calc), replaced)
    others = {
        _stored_name(parts, entry.part)
        for entry in _book(parts).entries
        if entry.part is not None and entry.name != sheet_name
    }
    plan = _Plan(
        sheet_part, place, visible, namespace, replaced, dropped, others if visible else set()
    )
    return plan, style_ids


def _root_namespace(xml: bytes) -> str:
    found: list[str] = []

    def start(tag: str, _: dict[str, str]) -> None:
        if not found:
            found.append(tag.rpartition("\x01")[0])

    parser = _parser(start, _ignore)
    parser.Parse(xml, True)
    return found[0] if found else ""


def _sheet_relations(parts: _Parts, sheet_part: str) -> str:
    path = PurePosixPath(sheet_part)
    return str(path.parent / "_rels" / (path.name + ".rels"))


def _has_relations(parts: _Parts, sheet_part: str) -> bool:
    return parts.has(_sheet_relations(parts, sheet_part))


def _drop_calc_chain(
    parts: _Parts, workbook: str, calc: str, replaced: dict[str, bytes]
) -> set[str]:
    """Drop the calculation chain, its relationship and its content type."""
    rels = _sheet_relations(parts, workbook)
    rels = _stored_name(parts, rels)
    text = parts.archive.read(rels).decode("utf-8")
    replaced[rels] = re.sub(
        r"<(?:\w+:)?Relationship\b[^>]*?/calcChain[\"'][^>]*?/>", "", text
    ).encode("utf-8")
    if parts.has("[Content_Types].xml"):
        types = _stored_name(parts, "[Content_Types].xml")
        text = parts.archive.read(types).decode("utf-8")
        pattern = r"<(?:\w+:)?Override\b[^>]*?PartName=[\"']/" + re.escape(calc) + r"[\"'][^>]*?/>"
        replaced[types] = re.sub(pattern, "", text, flags=re.IGNORECASE).encode("utf-8")
    return {calc}


def _active_tab(book_xml: bytes, place: int) -> bytes:
    """The workbook part with ``place`` as its active tab (the first view's)."""
    view = re.search(rb"<(?:\w+:)?workbookView\b[^>]*?(/?)>", book_xml)
    if view is None:
        return book_xml
    tag = view.group(0)
    if re.search(rb"\sactiveTab=", tag):
        new = re.sub(rb"""\sactiveTab=["'][^"']*["']""", b' activeTab="%d"' % place, tag)
    else:
        end = len(tag) - (2 if tag.endswith(b"/>") else 1)
        new = tag[:end] + b' activeTab="%d"' % place + tag[end:]
    return book_xml[: view.start()] + new + book_xml[view.end() :]


# ------------------------------------------------------------------------ the styles


@dataclass
class _Section:
    """One list of the styles part (``fonts``, ``fills``, ``cellXfs`` …): where it is, as
    what name, and how many entries it holds."""

    qname: str
    start: int
    end: int
    closed: bool  # True: ``<fonts/>``, no end tag
    count: int = 0


_SECTIONS = ("fonts", "fills", "borders", "cellStyleXfs", "cellXfs")


def _sections(xml: bytes) -> tuple[dict[str, _Section], dict[str, str]]:
    """The styles part's sections, and the first font's size, name, family and scheme
    (the new fonts look like the workbook's default one)."""
    found: dict[str, _Section] = {}
    font: dict[str, str] = {}
    stack: list[str] = []
    parser = _parser(lambda tag, attrs: None, lambda tag: None, namespaces=False)

    def start(tag: str, attributes: dict[str, str]) -> None:
        local = tag.rpartition(":")[2]
        if len(stack) == 1 and local in _SECTIONS and local not in found:
            found[local] = _Section(tag, parser.CurrentByteIndex, -1, False)
        elif len(stack) == 2 and stack[1].rpartition(":")[2] in _SECTIONS:
            found[stack[1].rpartition(":")[2]].count += 1
        elif len(stack) == 3 and stack[1].endswith("fonts") and found["fonts"].count == 1:
            font.setdefault(local, attributes.get("val", ""))
        stack.append(tag)

    def end(tag: str) -> None:
        stack.pop()
        section = found.get(tag.rpartition(":")[2])
        if len(stack) == 1 and section is not None and section.end < 0:
            section.end = parser.CurrentByteIndex
            section.closed = not xml.startswith(b"</", section.end)

    parser.StartElementHandler, parser.EndElementHandler = start, end
    try:
        parser.Parse(xml, True)
    except Exception as error:  # expat's or the DTD refusal: not a part to splice
        raise CannotCopy(f"the styles part cannot be read ({error})") from None
    return found, font


def _merged_styles(xml: bytes, wanted: Sequence[Style]) -> tuple[bytes, dict[Style, int]]:
    """The styles part with a font, fill and cell format appended for each of ``wanted``;
    each style's index among the cell formats."""
    sections, default_font = _sections(xml)
    for name in _SECTIONS:
        if name not in sections or not sections[name].count:
            raise CannotCopy(f"the styles part has no {name}")
    prefix = sections["fonts"].qname.rpartition(":")[0]
    p = prefix + ":" if prefix else ""
    fonts = [_font(p, style, default_font) for style in wanted]
    fills = [_fill(p, style) for style in wanted if style.fill]
    first_font, first_fill = sections["fonts"].count, sections["fills"].count
    formats, ids, fill_index = [], {}, first_fill
    for number, style in enumerate(wanted):
        fill_id = 0
        if style.fill:
            fill_id, fill_index = fill_index, fill_index + 1
        formats.append(_format(p, style, first_font + number, fill_id))
        ids[style] = sections["cellXfs"].count + number
    added = {"fonts": fonts, "fills": fills, "cellXfs": formats}
    for name in sorted(added, key=lambda n: sections[n].start, reverse=True):
        xml = _appended(xml, sections[name], added[name])
    return xml, ids


def _appended(xml: bytes, section: _Section, entries: list[str]) -> bytes:
    """``xml`` with ``entries`` appended to ``section`` and its count updated."""
    if not entries:
        return xml
    body = "".join(entries).encode("utf-8")
    count = section.count + len(entries)
    if section.closed:  # only a section with entries gets here: never self-closing
        raise CannotCopy(f"the styles part's {section.qname} is empty")
    tag_end = xml.index(b">", section.start) + 1
    tag = xml[section.start : tag_end]
    if re.search(rb"\scount=", tag):
        tag = re.sub(rb"""\scount=["'][^"']*["']""", b' count="%d"' % count, tag)
    else:
        tag = tag[:-1] + b' count="%d">' % count
    return xml[: section.start] + tag + xml[tag_end : section.end] + body + xml[section.end :]


def _font(p: str, style: Style, default: dict[str, str]) -> str:
    parts = [f"<{p}b/>" if style.bold else ""]
    if default.get("sz"):
        parts.append(f"<{p}sz val={quoteattr(default['sz'])}/>")
    if style.colour:
        parts.append(f'<{p}color rgb="FF{style.colour}"/>')
    for name in ("name", "family", "scheme"):
        if default.get(name):
            parts.append(f"<{p}{name} val={quoteattr(default[name])}/>")
    return f"<{p}font>{''.join(parts)}</{p}font>"


def _fill(p: str, style: Style) -> str:
    return (
        f'<{p}fill><{p}patternFill patternType="solid"><{p}fgColor rgb="FF{style.fill}"/>'
        f'<{p}bgColor indexed="64"/></{p}patternFill></{p}fill>'
    )


def _format(p: str, style: Style, font_id: int, fill_id: int) -> str:
    number_format = 49 if style.text else 0  # 49: the built-in text format, "@"
    applied = ' applyFont="1"' + (' applyFill="1"' if fill_id else "")
    applied += ' applyNumberFormat="1"' if style.text else ""
    attributes = (
        f'numFmtId="{number_format}" fontId="{font_id}" fillId="{fill_id}" borderId="0" '
        f'xfId="0"{applied}'
    )
    if style.wrap:
        return (
            f'<{p}xf {attributes} applyAlignment="1">'
            f'<{p}alignment vertical="top" wrapText="1"/></{p}xf>'
        )
    return f"<{p}xf {attributes}/>"


# ------------------------------------------------------------------------ the worksheet


def _write_sheet(
    stream: IO[bytes], plan: _Plan, results: Results, style_ids: dict[Style, int]
) -> None:
    """The results worksheet: frozen header, filter, widths, inline strings, row by row."""
    letters = [column_letters(n) for n in range(1, len(results.columns) + 1)]
    last = f"{letters[-1]}{results.height + 1}"
    selected = ' tabSelected="1"' if plan.visible else ""
    cols = "".join(
        f'<col min="{n}" max="{n}" width="{width:g}" customWidth="1"/>'
        for n, width in enumerate(results.widths, start=1)
    )
    stream.write(
        (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            f'<worksheet xmlns="{plan.namespace}"><dimension ref="A1:{last}"/>'
            f'<sheetViews><sheetView{selected} workbookViewId="0">'
            '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
            '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/></sheetView></sheetViews>'
            f'<sheetFormatPr defaultRowHeight="15"/><cols>{cols}</cols><sheetData>'
        ).encode()
    )
    header = style_ids[results.header]
    columns, styler = results.columns, _styler(results, style_ids)
    batch = [_row(1, letters, columns, columns, lambda column, value: header)]
    for number, row in enumerate(results.rows, start=2):
        batch.append(_row(number, letters, columns, row, styler))
        if len(batch) >= _BATCH:
            stream.write("".join(batch).encode("utf-8"))
            batch.clear()
    batch.append(f'</sheetData><autoFilter ref="A1:{last}"/></worksheet>')
    stream.write("".join(batch).encode("utf-8"))


def _styler(results: Results, style_ids: dict[Style, int]) -> Callable[[str, Any], int | None]:
    def style(column: str, value: Any) -> int | None:
        found = results.style_of(column, value)
        return None if found is None else style_ids[found]

    return style


def _row(
    number: int,
    letters: Sequence[str],
    columns: Sequence[str],
    values: Sequence[Any],
    style: Callable[[str, Any], int | None],
) -> str:
    cells = [
        _cell(f"{letter}{number}", value, style(column, value))
        for letter, column, value in zip(letters, columns, values, strict=True)
        if value is not None
    ]
    return f'<row r="{number}">{"".join(cells)}</row>'


def _cell(reference: str, value: Any, style: int | None) -> str:
    styled = "" if style is None else f' s="{style}"'
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value):
            return f'<c r="{reference}"{styled}><v>{value!r}</v></c>'
        value = str(value)
    text = escape(_NOT_XML.sub("\ufffd", str(value)))
    return (
        f'<c r="{reference}"{styled} t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'
    )
