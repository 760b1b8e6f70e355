"""batchpatch: apply a sheet of metadata changes to many Huawei Cloud IMS images at once."""

from batchpatch.auth import Auth, TokenAuth
from batchpatch.errors import (
    BatchpatchError,
    InputError,
    OptionsError,
    Problem,
    RunAborted,
    SheetError,
)
from batchpatch.job import RunResult, apply_sheet
from batchpatch.models import ImagePatch, Limits, Operation, Outcome, Status
from batchpatch.sheet import Sheet, read_sheet

__all__ = [
    "Auth",
    "BatchpatchError",
    "ImagePatch",
    "InputError",
    "Limits",
    "Operation",
    "OptionsError",
    "Outcome",
    "Problem",
    "RunAborted",
    "RunResult",
    "Sheet",
    "SheetError",
    "Status",
    "TokenAuth",
    "apply_sheet",
    "read_sheet",
]
