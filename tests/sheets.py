"""Writing test sheets in every supported format from a header and rows of text."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import openpyxl


def write_sheet(
    path: Path, header: list[str], rows: list[list[object]], encoding: str = "utf-8"
) -> Path:
    """Write ``rows`` under ``header`` as CSV, TSV or XLSX, chosen by ``path``'s suffix."""
    if path.suffix == ".xlsx":
        workbook = openpyxl.Workbook()
        sheet = workbook.active
        assert sheet is not None
        sheet.title = "changes"
        sheet.append(header)
        for row in rows:
            sheet.append([None if cell == "" else cell for cell in row])
        workbook.save(path)
        return path
    buffer = io.StringIO()
    writer = csv.writer(
        buffer, delimiter="\t" if path.suffix == ".tsv" else ",", lineterminator="\n"
    )
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path
