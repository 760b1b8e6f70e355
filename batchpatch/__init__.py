"""batchpatch: apply a sheet of metadata changes to many Huawei Cloud IMS images at once."""

from batchpatch.auth import AkSkAuth, Auth, PasswordAuth, TokenAuth
from batchpatch.errors import (
    BatchpatchError,
    InputError,
    OptionsError,
    Problem,
    RunAborted,
    SheetError,
)
from batchpatch.job import RunResult, apply_sheet, make_plan
from batchpatch.models import ImagePatch, Limits, Operation, Outcome, Status
from batchpatch.plan import ImagePlan
from batchpatch.planfile import load_plan
from batchpatch.retry import RetryPolicy
from batchpatch.runner import Safeguards
from batchpatch.sheet import Sheet, read_sheet

__all__ = [
    "AkSkAuth",
    "Auth",
    "BatchpatchError",
    "ImagePatch",
    "ImagePlan",
    "InputError",
    "Limits",
    "Operation",
    "OptionsError",
    "Outcome",
    "PasswordAuth",
    "Problem",
    "RetryPolicy",
    "RunAborted",
    "RunResult",
    "Safeguards",
    "Sheet",
    "SheetError",
    "Status",
    "TokenAuth",
    "apply_sheet",
    "load_plan",
    "make_plan",
    "read_sheet",
]
