"""Sheets are decoded only in an encoding that is certain (issue 8, point 1).

Every file is written here, byte for byte as Excel or a text editor would save it, and read
through ``read_sheet`` or ``batchpatch.cli.main`` in-process; the reports are read back as
bytes.
"""

from __future__ import annotations

import codecs
import csv
import io
import shutil
from pathlib import Path

import pytest

from batchpatch.cli import main
from batchpatch.errors import OptionsError, SheetError
from batchpatch.sheet import read_sheet
from batchpatch.textfile import detect_legacy
from tests.e2e import ROOT, SAMPLES, sample_images

A, B, C = (image["id"] for image in sample_images()[:3])
IMAGES = ["--fake", "--fake-images", str(SAMPLES / "images.json"), "--quiet"]
ZURICH = f"image_id,name,__description\n{A},zurich-build,Zürich build server\n"
CHINESE = (
    f"image_id,name,__description,#备注\n"
    f"{A},构建服务器,北京数据中心的构建服务器镜像,内部使用\n"
    f"{B},数据库-主,上海机房的数据库主节点镜像,运维组维护\n"
    f"{C},网关,华南区域的接入网关镜像,请勿删除\n"
)


def _values(path: Path, **options: str) -> list[str]:
    sheet = read_sheet(path, **options)  # type: ignore[arg-type]
    return [str(op.value) for patch in sheet.patches for op in patch.operations]


def _problems(path: Path, **options: str) -> list[str]:
    with pytest.raises(SheetError) as caught:
        read_sheet(path, **options)  # type: ignore[arg-type]
    return str(caught.value).splitlines()


@pytest.mark.parametrize(
    ("encoding", "mark", "label"),
    [
        pytest.param("utf-8", b"", "utf-8", id="utf-8"),
        pytest.param("utf-8", codecs.BOM_UTF8, "utf-8 (BOM)", id="utf-8-bom"),
        pytest.param("utf-16-le", codecs.BOM_UTF16_LE, "utf-16-le (BOM)", id="utf-16-le"),
        pytest.param("utf-16-be", codecs.BOM_UTF16_BE, "utf-16-be (BOM)", id="utf-16-be"),
    ],
)
def test_unicode_files_are_read_as_such(
    tmp_path: Path, encoding: str, mark: bytes, label: str
) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(mark + CHINESE.encode(encoding))
    sheet = read_sheet(path)
    assert sheet.encoding_label == label
    assert list(sheet.frame.columns) == ["image_id", "name", "__description", "#备注"]
    assert _values(path)[:2] == ["构建服务器", "北京数据中心的构建服务器镜像"]


@pytest.mark.parametrize("mark", [codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE], ids=["le", "be"])
def test_excel_unicode_text_applies_and_reports_in_utf16_tab_separated(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mark: bytes,
) -> None:
    """Excel's "Unicode Text": UTF-16 with a BOM, tab-separated, CRLF, saved as .txt."""
    codec = "utf-16-le" if mark == codecs.BOM_UTF16_LE else "utf-16-be"
    text = CHINESE.replace(",", "\t").replace("\n", "\r\n")
    sheet = tmp_path / "changes.txt"
    sheet.write_bytes(mark + text.encode(codec))  # full of NUL bytes, and fine
    assert main(["apply", str(sheet), *IMAGES]) == 0
    summary = capsys.readouterr().out.splitlines()[-1]
    assert f"encoding: {codec} (BOM)" in summary
    raw = (tmp_path / "changes.results.txt").read_bytes()
    assert raw.startswith(mark)  # Excel needs the mark to open UTF-16 text
    rows = list(csv.reader(io.StringIO(raw[2:].decode(codec)), delimiter="\t"))
    assert rows[0][:4] == ["image_id", "name", "__description", "#备注"]
    assert rows[1][:2] == [A, "构建服务器"]
    assert rows[1][rows[0].index("status")] == "succeeded"


def test_a_utf8_bom_report_keeps_its_bom(tmp_path: Path) -> None:
    sheet = tmp_path / "s.csv"
    sheet.write_bytes(codecs.BOM_UTF8 + CHINESE.encode())
    assert main(["apply", str(sheet), *IMAGES]) == 0
    assert (tmp_path / "s.results.csv").read_bytes().startswith(codecs.BOM_UTF8 + b"image_id,")


def test_cp1252_is_detected_never_read_as_gb18030(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(ZURICH.encode("cp1252"))
    assert detect_legacy(path.read_bytes()) == "cp1252"
    assert _values(path) == ["zurich-build", "Zürich build server"]
    assert main(["validate", str(path)]) == 0
    assert "encoding: cp1252 (detected)" in capsys.readouterr().out


def test_a_cp1252_run_sends_zurich_and_reports_in_cp1252(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sheet = tmp_path / "s.csv"
    sheet.write_bytes((ZURICH + f"{B},cafe,Café für Bäcker \u2013 Größe “groß”\n").encode("cp1252"))
    assert main(["apply", str(sheet), *IMAGES]) == 0
    assert "encoding: cp1252 (detected)" in capsys.readouterr().out
    report = (tmp_path / "s.results.csv").read_bytes()
    rows = list(csv.reader(io.StringIO(report.decode("cp1252"))))
    assert rows[1][2] == "Zürich build server"
    assert rows[2][2] == "Café für Bäcker \u2013 Größe “groß”"
    assert '"__description":"Zürich build server"' in rows[1][-1]  # what was sent


def test_real_gbk_chinese_is_detected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(CHINESE.encode("gbk"))
    assert _values(path)[:2] == ["构建服务器", "北京数据中心的构建服务器镜像"]
    assert read_sheet(path).encoding_label == "gb18030 (detected)"
    assert main(["plan", str(path), *IMAGES[:3]]) == 0
    assert "encoding: gb18030 (detected)" in capsys.readouterr().out


def test_the_gbk_sample_still_auto_detects(tmp_path: Path) -> None:
    """An operator on Chinese Windows saves "CSV" in GBK and expects it to just work."""
    path = Path(shutil.copy(ROOT / "tests" / "data" / "wide-gbk.csv", tmp_path / "w.csv"))
    assert read_sheet(path).encoding_label == "gb18030 (detected)"
    assert "构建-runner" in _values(path)


def test_an_uncertain_encoding_is_refused_naming_the_first_line(tmp_path: Path) -> None:
    # "ÄÖÜ" is three accented capitals in a row (unlike Western words) and "Zürich" read
    # as GBK glues a rare character between Latin letters: neither reading is certain.
    path = tmp_path / "s.csv"
    path.write_bytes(f"image_id,name,__description\n{A},x,ok\n{B},y,ÄÖÜ Zürich\n".encode("cp1252"))
    lines = _problems(path)
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}:3:: the line is not UTF-8")
    assert "encoding=gb18030" in lines[0]
    assert "encoding=cp1252" in lines[0]
    assert _values(path, encoding="cp1252")[-1] == "ÄÖÜ Zürich"
    assert read_sheet(path, encoding="cp1252").encoding_label == "cp1252 (given)"


def test_cli_exit_2_for_an_uncertain_encoding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(f"image_id,__description\n{A},ÄÖÜ Zürich\n".encode("cp1252"))
    assert main(["validate", str(path)]) == 2
    assert f"{path}:2:: the line is not UTF-8" in capsys.readouterr().err
    assert main(["validate", str(path), "--encoding", "cp1252"]) == 0
    assert "encoding: cp1252 (given)" in capsys.readouterr().out


def test_a_utf8_file_with_some_other_lines_is_refused_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(
        f"image_id,name,__description\n{A},构建,中文描述\n".encode()
        + f"{B},zurich,Zürich build server\n".encode("cp1252")
        + f"{C},网关,接入网关\n".encode()
        + f"{C.replace('3', '4')},x,Größe\n".encode("cp1252")
    )
    lines = _problems(path)
    assert [line.split(" — ")[0] for line in lines] == [
        f"{path}:3:: this line is not UTF-8, but the rest of the file is",
        f"{path}:5:: this line is not UTF-8, but the rest of the file is",
    ]


def test_a_forced_encoding_that_does_not_fit_is_a_located_problem(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(f"image_id,name\n{A},x\n".encode() + b"\x81\x81,y\n")
    lines = _problems(path, encoding="cp1252")  # 0x81 is not a cp1252 character
    assert lines[0].startswith(f"{path}:3:: the line is not valid cp1252 text (byte 0x81)")


@pytest.mark.parametrize(
    ("content", "encoding", "message"),
    [
        pytest.param(b"image_id\n", "klingon", "not an encoding Python knows", id="unknown"),
        pytest.param(
            codecs.BOM_UTF16_LE + "image_id\n".encode("utf-16-le"),
            "cp1252",
            "byte-order mark",
            id="contradicts-bom",
        ),
        pytest.param(CHINESE.encode(), "gb18030", "the file is UTF-8 text", id="is-utf-8"),
    ],
)
def test_a_wrong_encoding_option_is_refused(
    tmp_path: Path, content: bytes, encoding: str, message: str
) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(content)
    with pytest.raises(OptionsError, match=message):
        read_sheet(path, encoding=encoding)


def test_encoding_and_delimiter_do_not_apply_to_workbooks(tmp_path: Path) -> None:
    path = Path(shutil.copy(ROOT / "tests" / "data" / "wide.xlsx", tmp_path / "w.xlsx"))
    with pytest.raises(OptionsError, match="only to CSV and TSV"):
        read_sheet(path, encoding="cp1252")


def test_a_report_a_legacy_encoding_cannot_hold_falls_back_to_utf8_with_bom(
    tmp_path: Path,
) -> None:
    """The images' current names (read back into ``before``) may be Chinese."""
    from batchpatch.textfile import encode_report

    assert encode_report("Zürich", "cp1252") == "Zürich".encode("cp1252")
    assert encode_report("Zürich 构建", "cp1252") == codecs.BOM_UTF8 + "Zürich 构建".encode()
