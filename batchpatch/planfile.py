"""Saving a plan to JSON and loading it back, so ``apply --plan`` sends exactly what was seen.

A plan is bound to the sheet it was made from (by SHA-256) and to the endpoint: applying it
with another sheet or against another service is refused, nothing sent.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchpatch.errors import OptionsError
from batchpatch.files import atomic_write
from batchpatch.plan import ImagePlan, plan_from_json, plan_to_json
from batchpatch.sheet import Sheet

FORMAT = "batchpatch-plan/1"


def sheet_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_plan(path: Path, sheet: Sheet, endpoint: str, plans: list[ImagePlan]) -> Path:
    """Write the plan atomically; it holds no credentials."""
    document = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sheet": str(sheet.path),
        "sheet_name": sheet.sheet_name,
        "sheet_sha256": sheet_digest(sheet.path),
        "endpoint": endpoint,
        "images": [_plan_json(plan) for plan in plans],
    }
    return atomic_write(path, lambda temporary: temporary.write_text(
        json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8"))


def load_plan(path: Path, sheet: Sheet, endpoint: str) -> list[ImagePlan]:
    """The plans saved in ``path``, checked against ``sheet`` and ``endpoint``."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OptionsError(f"{path}: no such plan file — make one with "
                           "'batchpatch plan SHEET --out PLAN.json'") from None
    except (OSError, ValueError) as error:
        raise OptionsError(f"{path}: not a readable plan ({error}) — make it again with "
                           "'batchpatch plan SHEET --out PLAN.json'") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise OptionsError(f"{path}: not a batchpatch plan ({FORMAT}) — make it again with "
                           "'batchpatch plan SHEET --out PLAN.json'")
    if document.get("sheet_sha256") != sheet_digest(sheet.path):
        raise OptionsError(f"{path}: the plan was made from another version of "
                           f"{sheet.path} — plan the sheet again")
    if document.get("sheet_name") != sheet.sheet_name:
        raise OptionsError(f"{path}: the plan was made from worksheet "
                           f"{document.get('sheet_name')!r} — use --sheet to match it")
    if document.get("endpoint") != endpoint:
        raise OptionsError(f"{path}: the plan was made against {document.get('endpoint')} — "
                           "apply it to the same endpoint, or plan again")
    try:
        plans = [_plan_from(entry) for entry in document["images"]]
    except (KeyError, TypeError, ValueError) as error:
        raise OptionsError(f"{path}: the plan is damaged ({error!r}) — make it again") from None
    expected = {patch.image_id: set(patch.sources) for patch in sheet.patches}
    found = {plan.image_id: {change.source for change in plan.changes} for plan in plans}
    if found != expected or len(found) != len(plans):
        raise OptionsError(f"{path}: the plan's images and rows do not match {sheet.path} — "
                           "it was edited; make it again with 'batchpatch plan --out'")
    return plans


def _plan_json(plan: ImagePlan) -> dict[str, Any]:
    return plan_to_json(plan)


def _plan_from(entry: dict[str, Any]) -> ImagePlan:
    return plan_from_json(entry)
