"""t3al-evaluate: one file, a whole setting from a manifest, tables, and clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from t3al.evaluate.cli import main
from t3al.manifests import Manifest

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def files(tmp_path):
    gt = _write(tmp_path / "gt.csv", "video-id,t-start,t-end,label\nv,0,10,A\nv,20,30,B\nw,0,5,A\n")
    dets = _write(tmp_path / "d.csv", "video-id,t-start,t-end,score,label\n"
                                      "v,0,10,0.9,A\nw,50,60,0.8,A\nw,0,5,0.7,A\nx,0,1,0.9,A\n")
    classes = _write(tmp_path / "classes.txt", "A\nB\n")
    return gt, dets, classes


def _score(files, *options):
    """``t3al-evaluate`` (its default command, score) on the fixture's files with ``options``."""
    gt, dets, classes = files
    return CliRunner().invoke(main, [str(dets), "--ground-truth", str(gt), "--classes", str(classes), *options])


def test_score_is_the_default_command_and_writes_json(files, tmp_path):
    out = tmp_path / "r.json"
    result = _score(files, "--tiou", "0.5,0.7", "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    # A: TP, FP, TP over 2 instances -> AP = 0.5 * 1 + 0.5 * 2/3; B has no detections -> 0.
    assert data["tiou"] == [0.5, 0.7]
    assert data["per_class"]["A"][0] == pytest.approx(100 * (0.5 + 0.5 * 2 / 3))
    assert data["map"][0] == pytest.approx(50 * (0.5 + 0.5 * 2 / 3))
    assert data["avg"] == pytest.approx(sum(data["map"]) / 2)
    assert "1 detections on videos without ground truth" in result.output
    assert "no detections for B" in result.output


def test_public_activitynet_set_averages_over_three_thresholds_and_is_named(files, tmp_path):
    out = tmp_path / "r.json"
    result = _score(files, "--tiou", "activitynet-public", "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["tiou"] == [0.5, 0.75, 0.95] and data["avg"] == pytest.approx(sum(data["map"]) / 3)
    assert "tIoU set activitynet-public: 0.5, 0.75, 0.95" in result.output
    custom = _score(files, "--tiou", "0.5,0.7")
    assert "tIoU set custom: 0.5, 0.7" in custom.output


def test_round_flag_rounds_class_ap(files, tmp_path):
    gt, dets, classes = files
    out = tmp_path / "r.json"
    CliRunner().invoke(main, ["score", str(dets), "-g", str(gt), "--classes", str(classes), "--tiou", "0.5",
                              "--round", "--json", str(out)])
    assert json.loads(out.read_text())["per_class"]["A"] == [83.3]


def test_malformed_detections_give_one_line_error(files, tmp_path):
    gt, _, classes = files
    bad = _write(tmp_path / "bad.csv", "video-id,t-start,t-end,score,label\nv,5,1,0.9,A\n")
    result = CliRunner().invoke(main, [str(bad), "-g", str(gt), "--classes", str(classes)])
    assert result.exit_code == 1
    assert "bad.csv: row 0 (video v): t-end 1.0 < t-start 5.0" in result.output
    assert "Traceback" not in result.output


def test_setting_averages_splits_from_a_directory(tmp_path):
    manifest = Manifest("toy", ["A", "B"], {"v": {"subset": "test", "duration": 40.0, "fps": None}},
                        [{"video": "v", "start": 0.0, "end": 10.0, "label": "A"},
                         {"video": "v", "start": 20.0, "end": 30.0, "label": "B"}],
                        {"75_25": [["A"], ["B"]]}, [0.5])
    manifest.save(tmp_path / "m.json")
    for i, rows in enumerate(["v,0,10,0.9,A\n", "v,0,10,0.9,B\nv,20,30,0.5,B\n"]):
        (tmp_path / "out" / f"split_{i}").mkdir(parents=True)
        _write(tmp_path / "out" / f"split_{i}" / "detections.csv", "video-id,t-start,t-end,score,label\n" + rows)
    out = tmp_path / "results.json"
    result = CliRunner().invoke(main, ["setting", str(tmp_path / "out"), "-m", str(tmp_path / "m.json"),
                                       "--split", "75_25", "--json", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert [s["map"] for s in document["splits"]] == [[100.0], [50.0]]
    assert document["mean"]["avg"] == pytest.approx(75.0)
    assert document["std"]["avg"] == pytest.approx(35.355339, abs=1e-5)
    assert "mean ± std" in result.output


def test_setting_reproduces_freezad_reference_from_the_committed_manifest(shared_dir, tmp_path):
    root = shared_dir / "data" / "freezad-thumos14"
    expected = json.loads((root / "expected_75.json").read_text())
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["setting", str(root / "pred" / "75" / "{i}.csv"), "--manifest",
                                       str(REPO / "manifests" / "thumos14.json"), "--split", "75_25",
                                       "--json", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert document["mean"]["map"] == pytest.approx(expected["75/mean"]["map_per_threshold"], abs=1e-3)
    assert document["mean"]["avg"] == pytest.approx(expected["75/mean"]["avg"], abs=1e-3)
    assert [s["n_ground_truth"] for s in document["splits"]] == [expected[f"75/{i}"]["n_gt"] for i in range(10)]


def test_table_renders_markdown_and_csv(tmp_path):
    _write(tmp_path / "a.json", json.dumps({"tiou": [0.3, 0.5], "mean": {"map": [20.0, 10.0], "avg": 15.0},
                                            "std": {"map": [2.0, 1.0], "avg": 1.5}}))
    _write(tmp_path / "b.json", json.dumps({"tiou": [0.3, 0.5], "map": [8.0, 4.0], "avg": 6.0}))
    runner = CliRunner()
    markdown = runner.invoke(main, ["table", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                                    "--name", "T3AL", "--name", "T=0", "--format", "markdown"]).output
    assert "| T3AL | 20.00 ± 2.00 | 10.00 ± 1.00 | 15.00 ± 1.50 |" in markdown
    csv_text = runner.invoke(main, ["table", str(tmp_path / "a.json"), "--format", "csv", "--columns", "0.5"]).output
    assert csv_text.splitlines() == ["method,mAP@0.5,mAP@0.5_std,Avg,Avg_std", "a,10.0000,1.0000,15.0000,1.5000"]
    terminal = runner.invoke(main, ["table", str(tmp_path / "a.json")]).output
    assert terminal.rstrip().endswith("tIoU set custom: 0.3, 0.5")  # the set Avg is over, under the table


def test_help_explains_the_modes():
    text = CliRunner().invoke(main, ["--help"]).output
    assert "setting" in text and "--round" in text and "report" in text


@pytest.mark.parametrize("content, message", [
    (bytes(range(256)) * 4, "not a UTF-8 text file"),
    (b"video-id,t-start,t-end,score,label\nv,0,10,0.9,A\x00\n", "not a text CSV"),
    (b"video-id,t-start,t-end,score,label\nv,0,10,0.9,A\nw,0,5,0.7,A,extra\n", "line 3: 6 fields, the header has 5"),
    (b"video-id,t-start,t-end,score,label\nv,0,10,0.9\n", "line 2: 4 fields, the header has 5"),
], ids=["binary", "nul", "extra-field", "missing-field"])
def test_detection_files_that_are_not_clean_csv_are_one_line_errors(files, tmp_path, content, message):
    gt, _, classes = files
    dets = tmp_path / "bad.csv"
    dets.write_bytes(content)
    result = CliRunner().invoke(main, [str(dets), "--ground-truth", str(gt), "--classes", str(classes)])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_negative_split_indices_and_plot_counts_are_refused(tmp_path):
    for args in (["setting", str(tmp_path), "-m", str(REPO / "manifests" / "thumos14.json"), "--split", "75_25",
                  "--split-index", "-1"], ["report", str(tmp_path), "--plots", "-2"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2 and "Invalid value for" in result.output
