"""The user's text files: a file that is not UTF-8 is one line naming it, in every command that
reads one, and a UTF-8 byte-order mark (as spreadsheet programs save CSVs) is read as if absent."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from t3al.adapt.cli import main as adapt_main
from t3al.evaluate import Detections, GroundTruth
from t3al.evaluate.cli import main as evaluate_main
from t3al.extract.cli import main as extract_main
from t3al.manifests import ManifestError, read_class_list, read_text

from conftest import write_toy_world

BINARY = b"\x89PNG\r\n\x1a\n\xff\xfe binary"
BOM = b"\xef\xbb\xbf"
NOT_UTF8 = "not a UTF-8 text file (byte 0x89 at offset 0); save it as UTF-8"


def _binary(path):
    path.write_bytes(BINARY)
    return path


def _one_line(result, prefix: str, path) -> None:
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert result.output.splitlines() == [f"{prefix}{path}: {NOT_UTF8}"]


def test_read_text_drops_a_byte_order_mark_and_names_a_file_that_is_not_utf8(tmp_path):
    (tmp_path / "bom.txt").write_bytes(BOM + "Jump\nÉlan\n".encode("utf-8"))
    assert read_text(tmp_path / "bom.txt") == "Jump\nÉlan\n"
    with pytest.raises(ManifestError) as raised:
        read_text(_binary(tmp_path / "x.txt"), ManifestError)
    assert str(raised.value) == f"{tmp_path / 'x.txt'}: {NOT_UTF8}"
    with pytest.raises(ValueError, match="cannot read"):
        read_text(tmp_path / "missing.txt")


def test_csvs_with_a_byte_order_mark_are_read(tmp_path):
    (tmp_path / "d.csv").write_bytes(BOM + b"video-id,t-start,t-end,score,label\nv,0,10,0.9,A\n")
    (tmp_path / "gt.csv").write_bytes(BOM + b"video-id,t-start,t-end,label\nv,0,10,A\n")
    (tmp_path / "classes.csv").write_bytes(BOM + b"name\nA\n")
    detections = Detections.read(tmp_path / "d.csv")
    assert detections.video.tolist() == ["v"] and detections.score.tolist() == [0.9]
    assert GroundTruth.read(tmp_path / "gt.csv").label.tolist() == ["A"]
    assert read_class_list(tmp_path / "classes.csv") == ["A"]
    result = CliRunner().invoke(evaluate_main, [str(tmp_path / "d.csv"), "--ground-truth", str(tmp_path / "gt.csv")])
    assert result.exit_code == 0 and "100.00" in result.output, result.output


def test_evaluate_names_a_class_file_that_is_not_utf8(tmp_path):
    (tmp_path / "d.csv").write_text("video-id,t-start,t-end,score,label\nv,0,10,0.9,A\n")
    (tmp_path / "gt.csv").write_text("video-id,t-start,t-end,label\nv,0,10,A\n")
    classes = _binary(tmp_path / "classes.txt")
    result = CliRunner().invoke(evaluate_main, [str(tmp_path / "d.csv"), "--ground-truth", str(tmp_path / "gt.csv"),
                                                "--classes", str(classes)])
    _one_line(result, "t3al-evaluate: error: ", classes)


@pytest.mark.parametrize("option", ["--config", "--manifest"])
def test_adapt_names_a_config_or_manifest_that_is_not_utf8(tmp_path, option):
    cache = write_toy_world(tmp_path, ["Jump", "Swim"], {"v0": (60, 10, 30, 0), "v1": (60, 20, 40, 1)},
                            [["Jump"], ["Swim"]])
    path = _binary(tmp_path / ("settings.toml" if option == "--config" else "manifest.json"))
    result = CliRunner().invoke(adapt_main, [str(cache), option, str(path), "--out", str(tmp_path / "out")])
    _one_line(result, "Error: ", path)


@pytest.mark.parametrize("option", ["--manifest", "--class-file"])
def test_extract_names_a_manifest_or_class_file_that_is_not_utf8(tmp_path, option):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"")
    path = _binary(tmp_path / ("manifest.json" if option == "--manifest" else "classes.txt"))
    result = CliRunner().invoke(extract_main, [str(videos), str(tmp_path / "cache"), option, str(path)])
    _one_line(result, "Error: ", path)
