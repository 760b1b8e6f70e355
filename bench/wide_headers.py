"""Time and peak memory of validating very wide CSV files (issue 8, point 6).

    .venv/bin/python bench/wide_headers.py            # every case
    .venv/bin/python bench/wide_headers.py columns    # one case

Cases: a header that ends in 300 and in 1,000 empty cells (as Excel exports), with every
data row ending in as many empty cells; and a sheet of 10**5 attribute columns with one
and with three rows, every cell filled (10**5 and 3 * 10**5 changes); and three identical
rows of 10**5 columns (one warning per repeated row, not 2 * 10**5).  Each case
runs in a fresh process, so the peak RSS (``ru_maxrss``) is that case's alone.  The bar:
under 5 s and under 1 GB each.

Measured (2 shared cores, load ~4): ``same3`` 3.7 s and 300 MB in ``read_sheet``; the CLI,
``/usr/bin/time batchpatch validate`` on the same file, 3.5 s elapsed (2.6 s user), 300 MB,
two warning lines.  Before warnings were per row: 7.2 s and 200,001 lines.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMAGE = "{:08x}-5f0d-4a53-9c1e-2f6d8a1b7c01"
ROWS = 1000


def trailing_empty(path: Path, empty: int, rows: int = ROWS) -> Path:
    """A wide sheet of two columns whose header and rows end in ``empty`` empty cells."""
    tail = "," * empty
    lines = [f"image_id,name{tail}"]
    lines += [f"{IMAGE.format(row)},name-{row}{tail}" for row in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def many_columns(path: Path, columns: int = 10**5, rows: int = 3, *, same: bool = False) -> Path:
    """``image_id`` and ``columns - 1`` custom-key columns, every cell filled; with
    ``same``, every row is the first one again (one image, each change repeated)."""
    keys = [f"k{number:06d}" for number in range(1, columns)]
    lines = [",".join(["image_id", *keys])]
    lines += [
        ",".join([IMAGE.format(0 if same else row), *(["v"] * len(keys))]) for row in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


CASES = {
    "empty300": lambda folder: trailing_empty(folder / "empty300.csv", 300),
    "empty1000": lambda folder: trailing_empty(folder / "empty1000.csv", 1000),
    "columns": lambda folder: many_columns(folder / "columns.csv", rows=1),
    "columns3": lambda folder: many_columns(folder / "columns3.csv", rows=3),
    "same3": lambda folder: many_columns(folder / "same3.csv", rows=3, same=True),
}


def measure(case: str) -> None:
    from batchpatch.sheet import read_sheet

    with tempfile.TemporaryDirectory() as folder:
        path = CASES[case](Path(folder))
        started = time.perf_counter()
        sheet = read_sheet(path)
        seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    operations = sum(len(patch.operations) for patch in sheet.patches)
    print(
        f"{case:10} {seconds:6.2f} s  {peak_mb:7.0f} MB peak  "
        f"{sheet.row_count} rows, {len(sheet.frame.columns)} columns, {operations} changes"
    )


def main(argv: list[str]) -> None:
    if argv:
        measure(argv[0])
        return
    for case in CASES:
        subprocess.run([sys.executable, __file__, case], check=True)


if __name__ == "__main__":
    main(sys.argv[1:])
