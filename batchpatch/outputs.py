"""The files a run writes never overwrite the files it reads, nor each other.

Before anything is sent, every output of a run (the report, its journal, the run lock, the
summary, a saved plan, the undo sheet) is compared with the run's inputs (the sheet, the
plan being applied, and what the caller reads besides: the config file, a CA bundle, a
fake's images file) and with the other outputs.  Two paths are the same file when they
resolve to it through ``./``, ``..``, symbolic links or hard links: existing files are
compared by device and inode, files not written yet by their fully resolved path.

The library names files in its own words ("the summary path … is the sheet itself"); the
CLI passes flag names instead (``--summary``), so each says what its reader typed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from batchpatch.errors import OptionsError, Reason
from batchpatch.files import remove_stale_temporaries
from batchpatch.journal import journal_path
from batchpatch.lock import lock_path


@dataclass(frozen=True, slots=True)
class RunFile:
    """One file a run reads or writes.

    ``role`` says what it is ("the report"); ``label`` the option the user gave its path
    with ("--report"; by default a message says "the report path"); ``subject`` how a
    message names the file, path included, when neither reads right (a path the user never
    typed: "the HTML page x.html (beside --summary x.json)"); ``fix`` what to do when it
    clashes (by default: give the option another path, or write it to another file).
    """

    role: str
    path: Path
    label: str = ""
    fix: str = ""
    subject: str = ""

    @property
    def named(self) -> str:
        """The file as a message's subject: ``--report r.csv``, ``the report path r.csv``."""
        return self.subject or f"{self.label or f'{self.role} path'} {self.path}"


Identity = tuple[int, int] | str


def file_identity(path: Path) -> Identity:
    """Device and inode of an existing file (through every link), else the resolved path."""
    try:
        status = path.stat()
    except OSError:
        return os.path.realpath(path)
    return (status.st_dev, status.st_ino)


def check_outputs(inputs: Sequence[RunFile], outputs: Sequence[RunFile]) -> None:
    """Raise ``OptionsError`` naming both paths when an output is an input or an earlier
    output of the same run."""
    seen = [(known, file_identity(known.path)) for known in inputs]
    for output in outputs:
        identity = file_identity(output.path)
        for known, known_identity in seen:
            if identity == known_identity:
                raise OptionsError(_clash(output, known))
        seen.append((output, identity))


def _clash(output: RunFile, known: RunFile) -> str:
    same_name = output.path == known.path
    what = f"{known.role} itself" if same_name else f"{known.role} {known.path} itself"
    fix = output.fix or (
        f"give {output.label} another path"
        if output.label
        else f"write {output.role} to another file"
    )
    return str(Reason(f"{output.named} is {what}", fix))


def default_undo_file(undo: Path, *, flags: bool) -> RunFile:
    """The undo sheet at its default path, ``<sheet stem>.undo.<ext>`` beside the report: a
    path the user never typed, so a clash names it as the default and says how to move it."""
    option, report = ("--undo PATH", "--report") if flags else ("an undo path", "report path")
    return RunFile(
        "the undo sheet",
        undo,
        subject=f"the default undo path {undo} (<sheet stem>.undo.<ext> beside the report)",
        fix=f"give {option}, or another {report}",
    )


def apply_files(
    sheet: Path,
    report: Path,
    *,
    dry_run: bool,
    plan_file: Path | None = None,
    summary: Path | None = None,
    flags: bool = False,
    other_inputs: Sequence[RunFile] = (),
    undo: Path | None = None,
    undo_default: bool = False,
) -> tuple[list[RunFile], list[RunFile]]:
    """The inputs and outputs of ``apply``: what it reads, then what it writes, the files the
    user named last (so a clash is reported against the file they chose).  ``flags`` names
    the paths by their command-line options; ``other_inputs`` are what the caller reads
    besides the sheet and the plan; ``undo`` the undo sheet a run that changes something
    writes (a dry run writes none), ``undo_default`` True when that is its default path,
    not one the user gave."""
    inputs = [RunFile("the sheet", sheet), *other_inputs]
    if plan_file is not None:
        inputs.append(RunFile("the plan", plan_file))
    report_option = "--report" if flags else "the report path"
    # The lock is keyed by the sheet's identity, so it exists only once the sheet does.
    outputs = [RunFile("the run lock", lock_path(sheet))] if sheet.is_file() else []
    outputs.append(RunFile("the report", report, "--report" if flags else ""))
    if not dry_run:
        outputs.append(
            RunFile("the journal", journal_path(report), fix=f"choose another {report_option}")
        )
    if undo is not None and not dry_run:
        outputs.append(
            default_undo_file(undo, flags=flags)
            if undo_default
            else RunFile("the undo sheet", undo, "--undo" if flags else "")
        )
    if summary is not None:
        outputs.append(RunFile("the summary", summary, "--summary" if flags else ""))
    return inputs, outputs


def check_plan_files(
    sheet: Path, out: Path, *, flags: bool = False, other_inputs: Sequence[RunFile] = ()
) -> None:
    """``check_outputs`` for ``plan --out``: the saved plan is never the sheet, nor another
    file the run reads (``other_inputs``)."""
    check_outputs(
        [RunFile("the sheet", sheet), *other_inputs],
        [RunFile("the plan file", out, "--out" if flags else "")],
    )


def clear_stale_temporaries(
    outputs: Sequence[RunFile], *, started: float | None = None
) -> list[Path]:
    """Remove the temporary files killed writes of these outputs left behind (older than
    ``started``, a ``time.time()`` reading, by default now).  Returns what was removed."""
    moment = time.time() if started is None else started
    removed: list[Path] = []
    for output in outputs:
        removed += remove_stale_temporaries(output.path, older_than=moment)
    return removed
