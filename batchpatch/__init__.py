"""batchpatch: apply a sheet of metadata changes to many Huawei Cloud IMS images at once.

The public names below are loaded on first use, not at import: ``import batchpatch.fake``
(or ``batchpatch.throttle``, ``batchpatch.schema``) must not drag in pandas or the HTTP
client just because this package's ``__init__`` runs first.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("batchpatch")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

#: Each public name and the module that defines it.
_HOMES = {
    "AkSkAuth": "batchpatch.auth",
    "AsWritten": "batchpatch.job",
    "Auth": "batchpatch.auth",
    "AuthFailed": "batchpatch.errors",
    "BatchpatchError": "batchpatch.errors",
    "Change": "batchpatch.plan",
    "ImagePatch": "batchpatch.models",
    "ImagePlan": "batchpatch.plan",
    "ImageService": "batchpatch.service",
    "InputError": "batchpatch.errors",
    "Ledger": "batchpatch.ledger",
    "Limits": "batchpatch.models",
    "Operation": "batchpatch.models",
    "OptionsError": "batchpatch.errors",
    "Outcome": "batchpatch.models",
    "PasswordAuth": "batchpatch.auth",
    "PlanSource": "batchpatch.job",
    "Problem": "batchpatch.errors",
    "ReadFailed": "batchpatch.errors",
    "ReadPass": "batchpatch.job",
    "ReadStopped": "batchpatch.errors",
    "RetryPolicy": "batchpatch.retry",
    "RowResult": "batchpatch.report",
    "RunAborted": "batchpatch.errors",
    "RunResult": "batchpatch.job",
    "Safeguards": "batchpatch.runner",
    "SavedPlan": "batchpatch.job",
    "Sheet": "batchpatch.sheet",
    "SheetError": "batchpatch.errors",
    "Status": "batchpatch.models",
    "StopReason": "batchpatch.errors",
    "TokenAuth": "batchpatch.auth",
    "WriteFailed": "batchpatch.errors",
    "apply_sheet": "batchpatch.job",
    "load_plan": "batchpatch.planfile",
    "make_plan": "batchpatch.job",
    "read_sheet": "batchpatch.sheet",
}

#: The same names, sorted (``_HOMES`` says where each lives).
__all__ = [
    "AkSkAuth",
    "AsWritten",
    "Auth",
    "AuthFailed",
    "BatchpatchError",
    "Change",
    "ImagePatch",
    "ImagePlan",
    "ImageService",
    "InputError",
    "Ledger",
    "Limits",
    "Operation",
    "OptionsError",
    "Outcome",
    "PasswordAuth",
    "PlanSource",
    "Problem",
    "ReadFailed",
    "ReadPass",
    "ReadStopped",
    "RetryPolicy",
    "RowResult",
    "RunAborted",
    "RunResult",
    "Safeguards",
    "SavedPlan",
    "Sheet",
    "SheetError",
    "Status",
    "StopReason",
    "TokenAuth",
    "WriteFailed",
    "__version__",
    "apply_sheet",
    "load_plan",
    "make_plan",
    "read_sheet",
]

if TYPE_CHECKING:  # what type checkers and editors see; at run time, __getattr__ below
    from batchpatch.auth import AkSkAuth, Auth, PasswordAuth, TokenAuth
    from batchpatch.errors import (
        AuthFailed,
        BatchpatchError,
        InputError,
        OptionsError,
        Problem,
        ReadFailed,
        ReadStopped,
        RunAborted,
        SheetError,
        StopReason,
        WriteFailed,
    )
    from batchpatch.job import (
        AsWritten,
        PlanSource,
        ReadPass,
        RunResult,
        SavedPlan,
        apply_sheet,
        make_plan,
    )
    from batchpatch.ledger import Ledger
    from batchpatch.models import ImagePatch, Limits, Operation, Outcome, Status
    from batchpatch.plan import Change, ImagePlan
    from batchpatch.planfile import load_plan
    from batchpatch.report import RowResult
    from batchpatch.retry import RetryPolicy
    from batchpatch.runner import Safeguards
    from batchpatch.service import ImageService
    from batchpatch.sheet import Sheet, read_sheet


def __getattr__(name: str) -> Any:
    """Import a public name's module the first time the name is asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'batchpatch' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
