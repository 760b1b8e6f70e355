"""The large sheets ``python -m bench`` validates (also read by the XLSX reader's tests)."""

from __future__ import annotations

import csv
from pathlib import Path


def long_csv(path: Path, rows: int) -> Path:
    """A long sheet of ``rows`` rows, four changes per image."""
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["image_id", "op", "path", "value"])
        paths = ("/name", "/min_ram", "/__description", "/team")
        for row in range(rows):
            image = f"{row // 4:08x}-5f0d-4a53-9c1e-2f6d8a1b7c01"
            value = f"image-{row}" if row % 4 == 0 else ("2048" if row % 4 == 1 else f"v{row}")
            writer.writerow([image, "replace", paths[row % 4], value])
    return path


def wide_xlsx(path: Path, rows: int) -> Path:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet()
    sheet.append(["image_id", "name", "min_ram", "__description"])
    for row in range(rows):
        sheet.append([f"{row:08x}-5f0d-4a53-9c1e-2f6d8a1b7c01", f"image-{row}", 2048, f"d{row}"])
    workbook.save(path)
    return path
