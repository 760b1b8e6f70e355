"""Time and peak memory of writing a 100,000-row XLSX report, alone and beside another sheet.

Run: PYTHONPATH=. .venv/bin/python bench/report_xlsx.py [ROWS [alone|other]...]
Each case runs in a fresh process, so its peak RSS is its own.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path


def make_input(path: Path, rows: int, *, other_sheet: bool) -> None:
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    if other_sheet:
        notes = book.create_sheet("Notes")
        notes.append(["written by hand"])
    sheet = book.create_sheet("Changes")
    sheet.append(["image_id", "name", "min_ram", "#ticket"])
    for n in range(rows):
        sheet.append([str(uuid.UUID(int=n + 1, version=4)), f"img-{n}", 1024, f"T-{n}"])
    book.save(path)


def measure(path: Path) -> None:
    from batchpatch.models import Outcome, Status
    from batchpatch.report import RowResult, write_report
    from batchpatch.sheet import read_sheet

    sheet = read_sheet(path, sheet_name="Changes")
    rows = [
        RowResult(Outcome("", Status.SUCCEEDED, 200, "", "", "f" * 32, 1, 5), '{"name":"a"}', "{}")
    ] * sheet.row_count
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.process_time()
    write_report(sheet, rows, path.with_name("out.xlsx"))
    seconds = time.process_time() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"{seconds:.1f} CPU s, peak RSS {peak / 1024:.0f} MB "
        f"(after reading the sheet: {before.ru_maxrss / 1024:.0f} MB)"
    )


def main() -> None:
    if sys.argv[1:2] == ["--measure"]:
        measure(Path(sys.argv[2]))
        return
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    cases = [case == "other" for case in sys.argv[2:]] or [False, True]
    with tempfile.TemporaryDirectory() as folder:
        for other in cases:
            path = Path(folder) / f"in-{other}.xlsx"
            make_input(path, rows, other_sheet=other)
            label = "with another sheet" if other else "alone"
            print(f"{rows:,} rows, {label}: ", end="", flush=True)
            subprocess.run([sys.executable, __file__, "--measure", str(path)], check=True)


if __name__ == "__main__":
    main()
