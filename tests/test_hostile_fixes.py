"""Fixes of the hostile review of issue 8: an ambiguous GBK/cp1252 file is refused, never
guessed as cp1252; a codec that is no text encoding is an option error; a copied row warns
once, not once per cell; UTF-16 without a byte-order mark is named as such; and no control
character is ever printed raw in a problem's column."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchpatch.cli import main
from batchpatch.errors import OptionsError, SheetError
from batchpatch.sheet import read_sheet
from batchpatch.textfile import detect_legacy
from tests.e2e import SAMPLES, sample_images

A, B = (image["id"] for image in sample_images()[:2])
FAKE = ["--fake", "--fake-images", str(SAMPLES / "images.json")]


def _write(tmp_path: Path, text: str, encoding: str) -> Path:
    path = tmp_path / "s.csv"
    path.write_bytes(text.encode(encoding))
    return path


def _problems(path: Path, **options: str) -> list[str]:
    with pytest.raises(SheetError) as caught:
        read_sheet(path, **options)  # type: ignore[arg-type]
    return str(caught.value).splitlines()


# ---------------------------------------------------------------- GBK or cp1252: refuse


@pytest.mark.parametrize("description", ["x中y", "A区B", "tomcat版v2"])
def test_gbk_that_also_reads_as_cp1252_is_refused_not_guessed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], description: str
) -> None:
    """Each Chinese character alone between Latin letters is also two cp1252 accents."""
    path = _write(tmp_path, f"image_id,name,__description\n{A},web,{description}\n", "gbk")
    assert detect_legacy(path.read_bytes()) is None
    lines = _problems(path)
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:2:: the line is not UTF-8")
    assert "encoding=gb18030" in lines[0]
    assert "encoding=cp1252" in lines[0]

    assert main(["plan", str(path), *FAKE]) == 2
    captured = capsys.readouterr()
    assert "--encoding gb18030" in captured.err
    assert "--encoding cp1252" in captured.err
    assert "cp1252 (detected)" not in captured.out
    assert read_sheet(path, encoding="gb18030").patches[0].body()[-1]["value"] == description


def test_a_german_file_with_a_telling_word_is_still_cp1252(tmp_path: Path) -> None:
    """``Größe`` alone is also GB2312, but ``Zürich`` read as GBK is a rare character."""
    path = _write(
        tmp_path, f"image_id,name,__description\n{A},web,Zürich\n{B},db,Größe\n", "cp1252"
    )
    assert read_sheet(path).encoding_label == "cp1252 (detected)"
    assert [op.value for patch in read_sheet(path).patches for op in patch.operations] == [
        "web",
        "Zürich",
        "db",
        "Größe",
    ]


def test_two_chinese_characters_together_are_gbk(tmp_path: Path) -> None:
    path = _write(tmp_path, f"image_id,__description\n{A},中文镜像 tomcat版v2\n", "gbk")
    assert read_sheet(path).encoding_label == "gb18030 (detected)"


# ------------------------------------------------------------------- non-text codecs


@pytest.mark.parametrize("codec", ["rot13", "hex", "base64", "undefined"])
def test_a_codec_that_is_no_text_encoding_is_an_option_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], codec: str
) -> None:
    path = _write(tmp_path, f"image_id,name\n{A},web\n", "utf-8")
    with pytest.raises(OptionsError) as caught:
        read_sheet(path, encoding=codec)
    assert str(caught.value).startswith(f"encoding={codec!r} is a codec but not a text encoding")

    assert main(["validate", str(path), "--encoding", codec]) == 2
    err = capsys.readouterr().err
    assert f"--encoding {codec!r} is a codec but not a text encoding" in err
    assert "Traceback" not in err
    assert "LookupError" not in err


# ------------------------------------------------------------------ repeated wide rows


def _wide(tmp_path: Path, columns: int, rows: list[list[str]]) -> Path:
    keys = [f"k{number:04d}" for number in range(1, columns)]
    lines = [",".join(["image_id", *keys]), *(",".join(row) for row in rows)]
    path = tmp_path / "wide.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_copied_wide_row_is_one_warning_per_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    row = [A, *(["v"] * 999)]
    path = _wide(tmp_path, 1000, [row, row, row])
    sheet = read_sheet(path)
    assert [str(warning) for warning in sheet.warnings] == [
        f"{path}:{number}:: warning: the same changes as row 2, in 999 cells — they are sent "
        "once; delete one of the two rows"
        for number in (3, 4)
    ]
    assert len(sheet.patches[0].operations) == 999

    assert main(["validate", str(path)]) == 0
    assert len(capsys.readouterr().err.splitlines()) == 2


def test_a_row_repeating_one_cell_names_that_cell(tmp_path: Path) -> None:
    path = _wide(tmp_path, 3, [[A, "v", "w"], [A, "", "w"], [A, "v", ""]])
    assert [str(warning) for warning in read_sheet(path).warnings] == [
        f"{path}:3:k0002: warning: the same change as row 2 — it is sent once; delete one "
        "of the two rows",
        f"{path}:4:k0001: warning: the same change as row 2 — it is sent once; delete one "
        "of the two rows",
    ]


def test_a_row_repeating_some_cells_and_adding_others_says_to_clear_them(
    tmp_path: Path,
) -> None:
    path = _wide(tmp_path, 4, [[A, "v", "w", ""], [A, "v", "w", "new"]])
    assert [str(warning) for warning in read_sheet(path).warnings] == [
        f"{path}:3:: warning: the same changes as row 2, in 2 cells — they are sent once; "
        "clear them in one of the two rows"
    ]


# ----------------------------------------------------- UTF-16 without a byte-order mark


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_is_named_not_reported_as_nul_cells(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], codec: str
) -> None:
    path = _write(tmp_path, f"image_id,name,__description\n{A},web,构建服务器\n", codec)
    assert _problems(path) == [
        f"{path}:0:: the file looks like UTF-16 without a byte-order mark (every other byte "
        "is NUL) — save it again as 'CSV UTF-8' or 'Unicode Text'"
    ]
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "looks like UTF-16 without a byte-order mark" in err
    assert "\x00" not in err
    assert "NUL character" not in err


# ------------------------------------------------------------ control characters shown


@pytest.mark.parametrize(
    ("header", "shown"),
    [("n\x00ame", "n\\x00ame"), ("na\x1bme", "na\\x1bme"), ("team\u202e", "team\\u202e")],
    ids=["nul", "escape", "bidi"],
)
def test_a_control_character_in_a_column_name_is_printed_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], header: str, shown: str
) -> None:
    path = _write(tmp_path, f"image_id,{header}\n{A},web\n", "utf-8")
    message = "\n".join(_problems(path))
    assert f"{path}:1:{shown}:" in message  # a header cell: row 1
    assert header not in message
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert shown in err
    assert not any((ord(c) < 0x20 and c != "\n") or c == "\u202e" for c in err)
