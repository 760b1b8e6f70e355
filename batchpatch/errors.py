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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: How a message names one of the library's parameters, given its value: the library says
#: ``max_failures=3`` or "the report path r.csv"; the CLI passes a namer that says
#: ``--max-failures 3`` or ``--report r.csv`` instead (``cli.flag_name``).
Namer = Callable[[str, str], str]
#: A message written against a namer.
Wording = Callable[[Namer], str]

#: Parameters the library names in words rather than as ``name=value``; ``fake`` is no
#: parameter but the fake IMS the CLI starts with a flag of its own.
_PARAMETER_WORDS = {
    "report_path": "report path",
    "summary_path": "summary path",
    "fake": "batchpatch.fake",
}
#: Things to do that are a call in the library (and a command in the CLI), given a value.
_CALLS = {"make_plan": "make_plan(SHEET, out={value})"}


def library_name(parameter: str, value: str) -> str:
    """How the library names ``parameter`` set to ``value`` in its own messages."""
    if parameter in _CALLS:
        return _CALLS[parameter].format(value=value)
    words = _PARAMETER_WORDS.get(parameter)
    if words is not None:
        return f"the {words} {value}" if value else words
    return f"{parameter}={value}" if value else parameter


def trust_private_ca(name: Namer) -> str:
    """The fix for a service certificate that could not be verified, worded by ``name``."""
    return f"if it is signed by a private CA, pass that CA with {name('ca_bundle', 'PATH')}"


class Worded:
    """A message that names parameters: ``str()`` in the library's words, ``text(namer)``
    in a caller's (the CLI's flag names)."""

    wording: Wording | None = None

    def text(self, name: Namer = library_name) -> str:
        return self.wording(name) if self.wording is not None else str(self)


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
    #: ``fix`` written against a namer, when it names a parameter (``fix`` is then its
    #: library wording); made by ``Reason.worded``.
    fix_wording: Wording | None = field(default=None, compare=False, repr=False)

    @classmethod
    def worded(cls, what: str, fix: Wording) -> Reason:
        """A reason whose fix names parameters: the library's words by default, a caller's
        (the CLI's flags) through ``text(namer)``."""
        return cls(what, fix(library_name), fix)

    def text(self, name: Namer = library_name) -> str:
        fix = self.fix if self.fix_wording is None else self.fix_wording(name)
        return f"{self.what} — {fix}"

    def __str__(self) -> str:
        return self.text()


@dataclass(frozen=True, order=True)
class Problem(Worded):
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

    def text(self, name: Namer = library_name) -> str:
        return f"{self.file}:{self.row}:{shown_column(self.column)}: {self.reason.text(name)}"

    def __str__(self) -> str:
        return self.text()


def shown_column(column: str) -> str:
    """``column`` as it may be printed: control and format characters (a NUL, an escape, a
    bidirectional override) escaped as ``\\x00``, ``\\u202e``, never written raw."""
    if column.isprintable():
        return column
    return "".join(
        character if character.isprintable() else ascii(character)[1:-1] for character in column
    )


class SheetError(InputError):
    """One or more located problems in a sheet, sorted by row, each said once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems), key=lambda p: (p.row, p.column, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class OptionsError(InputError, Worded):
    """An option (a parameter of the library, a flag of the CLI) or a setting is invalid or
    missing.  ``parameter`` names it when the error is about one."""

    def __init__(
        self, message: str = "", *, parameter: str = "", wording: Wording | None = None
    ) -> None:
        self.parameter = parameter
        self.wording = wording
        super().__init__(message if wording is None else wording(library_name))

    @classmethod
    def about(
        cls, parameter: str, value: str, say: Callable[[str], str], *, value_shown: bool = True
    ) -> OptionsError:
        """An error about ``parameter`` set to ``value``: ``say`` gets how it is named."""
        return cls(
            parameter=parameter,
            wording=lambda name: say(
                name(parameter, value) if value_shown else name(parameter, "")
            ),
        )

    def text(self, name: Namer = library_name) -> str:
        return Worded.text(self, name)


class RunAborted(BatchpatchError):
    """The run stopped before every row was attempted."""


class ReadFailed(RunAborted, Worded):
    """Reading the current images failed; without them no plan can be trusted.

    ``kind`` is the service's ``AnswerKind`` of the answer, when one was judged.
    ``export`` says the read was an export's listing: its advice is the export's own (a
    run's plan pass may instead be skipped, which means nothing to an export).
    """

    def __init__(
        self,
        status: int | None,
        code: str,
        message: str,
        request_id: str,
        *,
        kind: Any = None,
        export: bool = False,
    ) -> None:
        self.status, self.code, self.message, self.request_id = status, code, message, request_id
        self.kind, self.export = kind, export
        super().__init__(self.text())

    def for_export(self) -> ReadFailed:
        """This failure as the export's (its advice is to run the export again)."""
        return ReadFailed(
            self.status, self.code, self.message, self.request_id, kind=self.kind, export=True
        )

    @property
    def refused_credentials(self) -> bool:
        return (
            self.status in (401, 403)
            or self.code == "iam_login_failed"
            or getattr(self.kind, "value", "") in ("auth_failed", "forbidden")
        )

    @property
    def certificate_refused(self) -> bool:
        return self.code == "tls_failed" or getattr(self.kind, "value", "") == "tls_failed"

    def wording(self, name: Namer) -> str:
        answer = f"HTTP {self.status}" if self.status is not None else "no answer"
        detail = " ".join(part for part in (self._code_unless_said(), self.message) if part)
        reference = f" (request id {self.request_id})" if self.request_id else ""
        fix = self._fix(name)
        what = "could not list the images to export" if self.export else "could not read the"
        what += "" if self.export else " current images"
        return str(Reason(f"{what}: {answer} {detail}{reference}", fix))

    def _code_unless_said(self) -> str:
        """The code, unless the message already opens with it ("unparseable answer: …")."""
        said = self.message.lower().startswith(self.code.replace("_", " ").lower())
        return "" if said else self.code

    def _fix(self, name: Namer) -> str:
        if self.refused_credentials:
            return "check the credentials (batchpatch whoami shows which are used)"
        if self.certificate_refused:
            return trust_private_ca(name)
        if self.export:
            return "fix the cause and run the export again"
        return (
            f"fix the cause and run again, or send the sheet's changes as written "
            f"({name('plan', 'AS_WRITTEN')})"
        )


class AuthFailed(RunAborted):
    """Credentials could not be turned into a working token (for example IAM said no)."""


class ReadStopped(RunAborted):
    """A signal stopped the run while the current images were being read."""


@dataclass(frozen=True)
class StopReason(Worded):
    """Why a run stopped early: ``kind`` for a program (``max_failures``, ``auth``,
    ``signal`` …), ``str()`` for a person, ``text(namer)`` in a caller's words."""

    kind: str
    message: str
    wording: Wording | None = None

    def __str__(self) -> str:
        return self.message if self.wording is None else self.wording(library_name)

    def __bool__(self) -> bool:
        return True


class WriteFailed(RunAborted):
    """The journal or the report could not be written (a full disk, a file size limit);
    the message says which file still holds every outcome."""
