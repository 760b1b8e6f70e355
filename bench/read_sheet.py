"""How long reading, checking and grouping a large sheet takes (CSV and XLSX, both shapes).

    PYTHONPATH=. .venv/bin/python bench/read_sheet.py [--rows 100000]

Writes the sheets to a temporary folder first (not timed).  Not a test: numbers vary.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
import uuid
from pathlib import Path

from batchpatch.sheet import read_sheet


def write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    if path.suffix == ".xlsx":
        from openpyxl import Workbook

        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet()
        sheet.append(header)
        for row in rows:
            sheet.append(row)
        workbook.save(path)
        return path
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    options = parser.parse_args()
    n = options.rows
    ids = [str(uuid.UUID(int=i + 1, version=4)) for i in range(n)]
    wide = (
        ["image_id", "name", "min_ram", "__description", "team"],
        [
            [ids[i], f"image-{i}", str(1024 * (i % 8)), f"image {i}", "ops" if i % 3 else ""]
            for i in range(n)
        ],
    )
    long = (
        ["image_id", "op", "path", "value"],
        [
            [
                ids[i // 2],
                "replace",
                "/name" if i % 2 else "/min_ram",
                f"image-{i}" if i % 2 else "2048",
            ]
            for i in range(n)
        ],
    )
    with tempfile.TemporaryDirectory() as folder:
        for shape, (header, rows) in (("wide", wide), ("long", long)):
            for suffix in (".csv", ".xlsx"):
                path = write(Path(folder) / f"{shape}{suffix}", header, rows)
                started = time.perf_counter()
                sheet = read_sheet(path)
                seconds = time.perf_counter() - started
                changes = sum(len(patch.operations) for patch in sheet.patches)
                print(
                    f"{shape:>4} {suffix:>5}: {n:,} rows, {changes:,} changes, "
                    f"{len(sheet.patches):,} images in {seconds:.2f} s"
                )


if __name__ == "__main__":
    main()
