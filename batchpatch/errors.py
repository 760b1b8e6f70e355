"""The one error tree of batchpatch.

    BatchpatchError                 every error the library raises on purpose
    ├── InputError                  the sheet or the options are wrong; nothing was sent (exit 2)
    │   ├── SheetError              located problems in a sheet (file, row, column), all at once
    │   └── OptionsError            a bad option or a missing setting (endpoint, token, file)
    └── RunAborted                  the run stopped early; the report was still written (exit 3)
        ├── ReadFailed              the current images could not be read, so nothing was planned
        ├── ReadStopped             a signal came while the current images were being read
        ├── AuthFailed              no credentials could be had (IAM refused the login)
        └── WriteFailed             the journal or the report could not be written (disk full)

A failed *row* is never an exception: it is data (see ``models.Outcome``).  Only
problems that stop the whole run are raised, and every message says what went wrong and
how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass


class BatchpatchError(Exception):
    """Base class of every error batchpatch raises on purpose."""


class InputError(BatchpatchError):
    """The input or the options are invalid; nothing was sent."""


@dataclass(frozen=True, order=True)
class Reason:
    """Why something cannot be used, and how to fix it: kept apart so that callers can
    reword or extend either half (``Reason(what, fix + ", or ...")``); joined as
    ``what — fix`` only when printed."""

    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what} — {self.fix}"


@dataclass(frozen=True, order=True)
class Problem:
    """One located problem in a sheet: where (``file``, ``row``, ``column``) and its
    ``reason``; printed as ``FILE:ROW:COLUMN: what — how to fix``.

    ``row`` is the spreadsheet row number a person sees (the header is row 1), or 0 when
    the problem concerns the whole file.  ``column`` is the header name, or "" for a row
    or file as a whole.
    """

    file: str
    row: int
    column: str
    reason: Reason

    @property
    def message(self) -> str:
        """What is wrong."""
        return self.reason.what

    @property
    def fix(self) -> str:
        """How to fix it."""
        return self.reason.fix

    def __str__(self) -> str:
        return f"{self.file}:{self.row}:{self.column}: {self.reason}"


class SheetError(InputError):
    """One or more located problems in a sheet, sorted by row, each said once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems), key=lambda p: (p.row, p.column, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class OptionsError(InputError):
    """A command-line option or a setting is invalid or missing."""


class RunAborted(BatchpatchError):
    """The run stopped before every row was attempted."""


class ReadFailed(RunAborted):
    """Reading the current images failed; without them no plan can be trusted."""

    def __init__(self, status: int | None, code: str, message: str, request_id: str) -> None:
        self.status, self.code, self.message, self.request_id = status, code, message, request_id
        answer = f"HTTP {status}" if status is not None else "no answer"
        detail = " ".join(part for part in (code, message) if part)
        reference = f" (request id {request_id})" if request_id else ""
        fix = ("check the credentials (batchpatch whoami shows which are used)"
               if status in (401, 403) or code == "iam_login_failed" else
               "fix the cause and run again, or use --no-plan to send the sheet's changes "
               "as written")
        super().__init__(f"could not read the current images: {answer} {detail}{reference}"
                         f" — {fix}")


class AuthFailed(RunAborted):
    """Credentials could not be turned into a working token (for example IAM said no)."""


class ReadStopped(RunAborted):
    """A signal stopped the run while the current images were being read."""


class WriteFailed(RunAborted):
    """The journal or the report could not be written (a full disk, a file size limit);
    the message says which file still holds every outcome."""
