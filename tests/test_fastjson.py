"""``fastjson`` reads and writes what the standard library reads and writes: every value,
every error, integers of any size and non-finite numbers included; end to end, an image
holding an integer beyond 64 bits is patched, planned and undone as before."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchpatch import fastjson
from batchpatch.fake import FakeConfig, running_fake
from tests.e2e import TOKEN, main_exit_code
from tests.sheets import write_sheet
from tests.test_cli import read_report
from tests.wire import account

BIG = 18446744073709551617  # 2**64 + 1

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN, and of the same type (an int is not a float)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if type(a) is not type(b) and not (isinstance(a, float) and isinstance(b, float)):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@settings(max_examples=150, deadline=None)
@given(values)
def test_what_the_standard_library_writes_reads_back_the_same(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert same(fastjson.loads(text.encode("utf-8")), json.loads(text))


@settings(max_examples=150, deadline=None)
@given(values)
def test_what_is_written_the_standard_library_reads_as_it_reads_its_own(value: Any) -> None:
    """A value read from JSON (so any non-finite float is a ``NonFinite``) is written so the
    standard library reads it back as it reads its own writing."""
    read = fastjson.loads(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    written = fastjson.dumps(read).decode("utf-8")
    assert same(json.loads(written), json.loads(json.dumps(read)))


@settings(max_examples=100, deadline=None)
@given(values)
def test_a_journal_line_is_the_value_written_then_one_line_break(value: Any) -> None:
    read = fastjson.loads(json.dumps(value, ensure_ascii=False).encode("utf-8"))
    line = fastjson.dumps_line(read)
    assert line == fastjson.dumps(read) + b"\n"
    assert line.count(b"\n") == 1  # a line break inside a text is escaped


@pytest.mark.parametrize(
    "payload",
    [
        b"18446744073709551617",
        b"-9223372036854775809",
        b"123456789012345678901234567890",
        b'{"min_ram": 18446744073709551617}',
        b"[NaN, Infinity, -Infinity, 1e400, -1e400]",
    ],
)
def test_numbers_orjson_would_change_are_read_as_the_standard_library_reads_them(
    payload: bytes,
) -> None:
    assert same(fastjson.loads(payload), json.loads(payload))
    assert fastjson.dumps(fastjson.loads(payload)) == json.dumps(
        json.loads(payload), separators=(",", ":")
    ).encode("utf-8")


@pytest.mark.parametrize("payload", [b"{", b"[1,]", b"\xff", b"[" * 100_000])
def test_errors_are_the_standard_librarys(payload: bytes) -> None:
    with pytest.raises((ValueError, RecursionError)) as ours:
        fastjson.loads(payload)
    with pytest.raises((ValueError, RecursionError)) as theirs:
        json.loads(payload)
    assert type(ours.value) is type(theirs.value)


def test_an_integer_beyond_64_bits_is_sent_read_back_and_undone_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = account(2)
    images[1]["min_ram"] = BIG
    rows = [[images[0]["id"], str(BIG)], [images[1]["id"], "1024"]]
    sheet = write_sheet(tmp_path / "s.csv", ["image_id", "min_ram"], rows)
    with running_fake(images, FakeConfig(token=TOKEN)) as fake:
        args = ["apply", str(sheet), "--endpoint", fake.url, "--quiet"]
        code = main_exit_code(monkeypatch, args, {"BATCHPATCH_AUTH_TOKEN": TOKEN})
        patches = fake.stats.snapshot().log
        held = {i: image.get("min_ram") for i, image in fake.store.images.items()}
    report = read_report(tmp_path / "s.results.csv")
    assert code == 0
    assert list(report["status"]) == ["succeeded", "succeeded"]
    assert list(report["attempts"]) == ["1", "1"]
    assert held == {images[0]["id"]: BIG, images[1]["id"]: 1024}
    assert sum(entry.method == "PATCH" for entry in patches) == 2
    undo = (tmp_path / "s.undo.csv").read_text(encoding="utf-8-sig")
    assert str(BIG) in undo


def test_a_non_finite_value_read_from_an_answer_survives_two_journals(tmp_path: Path) -> None:
    """Read from an answer, written to a journal, restored by a rerun and carried into its
    fresh journal: still ``NaN`` and ``Infinity``, never ``null``."""
    from batchpatch.journal import Journal
    from batchpatch.ledger import Ledger
    from batchpatch.models import Operation, Outcome, Status
    from batchpatch.plan import Change, ImagePlan, plan_to_json

    image_id = "0b1c6a3e-5f0d-4a53-9c1e-2f6d8a1b7c01"
    answer = fastjson.loads(b'{"score": NaN, "ratio": Infinity}')
    changes = tuple(
        Change(2, key, Operation("replace", f"/{key}", "x"), None, answer[key], True)
        for key in ("score", "ratio")
    )
    path = tmp_path / "s.csv.journal"
    journal = Journal(path, Ledger(), sheet_sha256="s", endpoint="e")
    journal.outcome(
        Outcome(image_id, Status.UNCHANGED), plan_to_json(ImagePlan(image_id, None, "", changes))
    )
    journal.close(finished=False)
    for _ in range(2):  # each rerun restores the journal and writes it afresh
        ledger = Ledger()
        Journal(path, ledger, sheet_sha256="s", endpoint="e").close(finished=False)
        entry = ledger.get(image_id)
        assert entry is not None
        assert entry.plan is not None
        befores = [change.before for change in entry.plan.changes]
        assert isinstance(befores[0], float)
        assert math.isnan(befores[0])
        assert befores[1] == math.inf
    assert '"before":NaN' in path.read_text(encoding="utf-8")
    assert '"before":Infinity' in path.read_text(encoding="utf-8")


LONE_SURROGATE = "caf\ud83d"  # what the standard library reads of "caf\ud83d" in an answer


def test_text_utf8_cannot_hold_is_written_escaped_and_read_back_the_same() -> None:
    value = {"note": LONE_SURROGATE, "name": "café"}
    for written in (fastjson.dumps(value), fastjson.dumps_line(value).rstrip(b"\n")):
        written.decode("ascii")  # escaped: valid UTF-8 (and ASCII) whatever the text held
        assert fastjson.loads(written) == value


flat_values = st.dictionaries(
    st.text(max_size=8),
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(exclude_categories=()), max_size=8),
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(flat_values)
def test_flat_text_is_the_standard_librarys_text(values: dict[str, Any]) -> None:
    """Report cells of a wide sheet: exactly what ``json.dumps`` writes, floats, integers
    beyond 64 bits and lone surrogates included."""
    assert fastjson.flat_text(values) == json.dumps(
        values, ensure_ascii=False, separators=(",", ":")
    )
    assert fastjson.flat_text({"note": LONE_SURROGATE}) == '{"note":"caf\ud83d"}'
