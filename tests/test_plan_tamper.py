"""A saved plan sends what its sheet asks and nothing else: operations edited into the plan
file are refused before anything is sent, and every operation passes the local checks."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from batchpatch import TokenAuth, apply_sheet, load_plan
from batchpatch.errors import OptionsError
from batchpatch.fake import FakeConfig, FakeServer, running_fake
from batchpatch.models import ImagePatch, Operation
from batchpatch.plan import plan_image
from batchpatch.sheet import read_sheet
from tests.e2e import TOKEN, quiet_environment, run_main, sample_images
from tests.sheets import write_sheet

IMAGES = sample_images()
A, B, C = (image["id"] for image in IMAGES[:3])
Document = dict[str, Any]


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    quiet_environment(monkeypatch)


def planned(tmp_path: Path, capsys: pytest.CaptureFixture[str], fake: FakeServer) -> Path:
    """A sheet renaming A (and setting its min_ram and team) and B, and its saved plan."""
    sheet = write_sheet(
        tmp_path / "s.csv",
        ["image_id", "name", "min_ram", "team"],
        [[A, "planned-name", "1024", "x"], [B, "b-name", "", ""]],
    )
    code, _, err = run_main(
        capsys, ["plan", str(sheet), "--endpoint", fake.url, "--out", str(tmp_path / "p.json")]
    )
    assert code == 0, err
    return sheet


def changes_of(document: Document, image: int = 0) -> list[Document]:
    changes: list[Document] = document["images"][image]["changes"]
    return changes


def set_planned(index: int, **fields: object) -> Callable[[Document], None]:
    def tamper(document: Document) -> None:
        changes_of(document)[index]["planned"].update(fields)

    return tamper


def set_both(index: int, **fields: object) -> Callable[[Document], None]:
    def tamper(document: Document) -> None:
        change = changes_of(document)[index]
        change["requested"].update(fields)
        change["planned"].update(fields)

    return tamper


def extra_change(document: Document) -> None:
    operation = {"op": "add", "path": "/owner_team", "value": "evil"}
    changes_of(document).append(
        {
            "row": 2,
            "attribute": "owner_team",
            "requested": operation,
            "planned": operation,
            "before": None,
            "exists": False,
        }
    )


def drop_change(index: int) -> Callable[[Document], None]:
    def tamper(document: Document) -> None:
        changes_of(document)[index]["planned"] = None  # its before still says otherwise

    return tamper


def reordered(document: Document) -> None:
    changes_of(document).reverse()


def moved_row(document: Document) -> None:
    changes_of(document)[2]["row"] = 3  # B's row


def extra_image(document: Document) -> None:
    extra = json.loads(json.dumps(document["images"][1]))
    extra["image_id"] = C
    document["images"].append(extra)


TAMPERS = [
    pytest.param(
        set_planned(0, value="evil-name"),
        'would send {"op": "replace", "path": "/name", "value": "evil-name"}',
        id="planned-value",
    ),
    pytest.param(set_both(0, value="evil-name"), "change 1 (", id="requested-and-planned-value"),
    pytest.param(set_planned(2, op="remove"), "change 3 would send", id="add-made-remove"),
    pytest.param(set_planned(2, path="/owner_team"), "change 3 would send", id="other-path"),
    pytest.param(set_planned(1, value="1024"), "change 2 would send", id="number-made-text"),
    pytest.param(set_planned(1, value=True), "change 2 would send", id="number-made-bool"),
    pytest.param(extra_change, "holds 4 changes where the sheet asks 3", id="extra-change"),
    pytest.param(reordered, "change 1 (", id="reordered"),
    pytest.param(moved_row, "change 3 (", id="moved-to-another-row"),
    pytest.param(extra_image, "the plan's images do not match", id="extra-image"),
    pytest.param(drop_change(0), "change 1 (", id="a-change-dropped"),
    pytest.param(
        lambda document: document["images"][0].update(status="unchanged"),
        "it is marked unchanged, but its own changes say some are not in place",
        id="marked-unchanged",
    ),
    pytest.param(drop_change(2), "is left out as already in place", id="an-add-dropped"),
]


@pytest.mark.parametrize(("tamper", "message"), TAMPERS)
def test_a_plan_edited_by_hand_is_refused_and_nothing_is_sent(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tamper: Callable[[Document], None],
    message: str,
) -> None:
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        sheet = planned(tmp_path, capsys, fake)
        plan_file = tmp_path / "p.json"
        document = json.loads(plan_file.read_text())
        tamper(document)
        plan_file.write_text(json.dumps(document))
        before = fake.stats.snapshot().total_requests
        code, _, err = run_main(
            capsys, ["apply", str(sheet), "--endpoint", fake.url, "--plan", str(plan_file)]
        )
        stats = fake.stats.snapshot()
        state = fake.store.images
    assert code == 2, err
    assert message in err
    assert "make it again with 'batchpatch plan SHEET --out PLAN.json'" in err
    assert stats.total_requests == before
    assert [state[image["id"]] for image in IMAGES] == IMAGES


def swap_to_add(document: Document) -> None:
    changes_of(document)[0]["planned"]["op"] = "add"


def leave_out_team(document: Document) -> None:
    # Consistent with itself: the plan read team = "x", so the change is already in place.
    changes_of(document)[2].update(planned=None, before="x", exists=True)


@pytest.mark.parametrize(
    ("edit", "sent"),
    [
        pytest.param(None, {"name": "planned-name", "min_ram": 1024, "team": "x"}, id="as-saved"),
        pytest.param(
            swap_to_add,
            {"name": "planned-name", "min_ram": 1024, "team": "x"},
            id="add-for-replace",
        ),
        pytest.param(
            leave_out_team,
            {"name": "planned-name", "min_ram": 1024, "team": None},
            id="left-out-as-in-place",
        ),
    ],
)
def test_the_plans_own_choices_are_accepted(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edit: Callable[[Document], None] | None,
    sent: dict[str, object],
) -> None:
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        sheet = planned(tmp_path, capsys, fake)
        plan_file = tmp_path / "p.json"
        if edit is not None:
            document = json.loads(plan_file.read_text())
            edit(document)
            plan_file.write_text(json.dumps(document))
        code, out, err = run_main(
            capsys,
            ["apply", str(sheet), "--endpoint", fake.url, "--plan", str(plan_file), "--dry-run"],
        )
        assert code == 0, err
        code, _, err = run_main(
            capsys, ["apply", str(sheet), "--endpoint", fake.url, "--plan", str(plan_file)]
        )
        stats = fake.stats.snapshot()
        state = fake.store.images
    assert code == 0, err
    assert stats.patches_by_image == {A: 1, B: 1}
    assert {key: state[A].get(key) for key in sent} == sent
    first_op = "add" if edit is swap_to_add else "replace"
    assert f'[{{"op":"{first_op}","path":"/name","value":"planned-name"}}' in out


@pytest.mark.parametrize(
    ("operation", "reason"),
    [
        pytest.param(
            Operation("replace", "/name", "bad<name>"), "name may hold only", id="bad-value"
        ),
        pytest.param(
            Operation("replace", "/status", "queued"), "status is read-only", id="read-only"
        ),
        pytest.param(
            Operation("remove", "/min_ram"), "min_ram cannot be removed", id="not-removable"
        ),
    ],
)
def test_every_operation_a_plan_sends_passes_the_local_checks(
    tmp_path: Path, operation: Operation, reason: str
) -> None:
    """A library caller may hand over a sheet and plans it built itself: what would be sent
    is checked like a sheet's cells all the same."""
    sheet = read_sheet(write_sheet(tmp_path / "s.csv", ["image_id", "name"], [[A, "x"]]))
    forged = dataclasses.replace(sheet, patches=(ImagePatch(A, (operation,), (2,)),))
    plans = [plan_image(forged.patches[0], IMAGES[0])]

    async def apply() -> None:
        await apply_sheet(
            forged,
            endpoint=fake.url,
            auth=TokenAuth(TOKEN),
            plan=plans,
            report_path=tmp_path / "r.csv",
        )

    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        with pytest.raises(OptionsError, match=reason):
            anyio.run(apply)
        stats = fake.stats.snapshot()
    assert stats.total_requests == 0


def test_load_plan_takes_a_str_path_like_read_sheet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_fake(IMAGES, FakeConfig(token=TOKEN)) as fake:
        sheet = planned(tmp_path, capsys, fake)
        plans = load_plan(str(tmp_path / "p.json"), read_sheet(sheet), fake.url)
    assert [plan.image_id for plan in plans] == [A, B]
