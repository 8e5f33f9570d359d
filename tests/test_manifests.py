"""Manifest format, validation, builders, split lists and the protocol's evaluation sets."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from t3al.manifests import (
    Manifest,
    ManifestError,
    from_activitynet_json,
    from_t3al_json,
    from_thumos14_official,
    read_class_list,
    read_split_lists,
)
from t3al.manifests.cli import main

REPO = Path(__file__).resolve().parents[1]


def _manifest() -> Manifest:
    return Manifest(
        dataset="toy", classes=["A", "B", "C"],
        videos={"v1": {"subset": "validation", "duration": 10.0, "fps": 30.0},
                "v2": {"subset": "test", "duration": None, "fps": None},
                "v3": {"subset": "test", "duration": 5.0, "fps": 25.0}},
        annotations=[{"video": "v1", "start": 1.0, "end": 2.0, "label": "A"},
                     {"video": "v1", "start": 3.0, "end": 4.0, "label": "B"},
                     {"video": "v2", "start": 0.0, "end": 1.0, "label": "B"},
                     {"video": "v3", "start": 0.0, "end": 1.0, "label": "C"}],
        splits={"75_25": [["A"], ["B", "A"]]}, tiou=[0.3, 0.5])


def test_manifest_round_trips_through_json(tmp_path):
    _manifest().save(tmp_path / "m.json")
    assert Manifest.load(tmp_path / "m.json") == _manifest()


def test_evaluation_set_keeps_videos_with_an_unseen_instance_from_every_subset():
    evaluation = _manifest().evaluation_set("75_25", 1)
    assert evaluation.classes == ["B", "A"]
    assert evaluation.videos == ["v1", "v2"]
    assert [(a["video"], a["label"]) for a in evaluation.annotations] == [("v1", "A"), ("v1", "B"), ("v2", "B")]


def test_evaluation_set_ignores_instances_of_other_classes():
    evaluation = _manifest().evaluation_set("75:25", 0)
    assert (evaluation.videos, len(evaluation.annotations)) == (["v1"], 1)


def test_unknown_setting_or_index_is_an_error():
    with pytest.raises(ManifestError, match="no split setting '50_50'"):
        _manifest().split_classes("50_50", 0)
    with pytest.raises(ManifestError, match="splits 0..1, not 2"):
        _manifest().split_classes("75_25", 2)


@pytest.mark.parametrize("field, value, message", [
    ("annotations", [{"video": "v9", "start": 0, "end": 1, "label": "A"}], "annotations\\[0\\]: video 'v9'"),
    ("annotations", [{"video": "v1", "start": 2, "end": 1, "label": "A"}], "start <= end"),
    ("annotations", [{"video": "v1", "start": 0, "end": 1, "label": "Z"}], "label 'Z' is not in 'classes'"),
    ("videos", {"v1": {"subset": "x", "duration": -1, "fps": None}}, "videos\\['v1'\\].duration"),
    ("classes", ["A", "A"], "repeats A"),
    ("splits", {"75_25": [["A", "Q"]]}, "unknown class\\(es\\) Q"),
    ("tiou", [1.5], "'tiou'"),
])
def test_invalid_manifest_names_file_and_field(tmp_path, field, value, message):
    data = _manifest().to_dict()
    data[field] = value
    if field in ("videos", "classes"):
        data["annotations"], data["splits"] = [], {}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=f"bad.json: .*{message}"):
        Manifest.load(path)


def test_thumos14_official_files_skip_ambiguous(tmp_path):
    (tmp_path / "HighJump_val.txt").write_text("video_validation_0000001 1.0 2.5\nvideo_validation_0000002 3 4\n")
    (tmp_path / "Diving_test.txt").write_text("video_test_0000007  0.5  1.5\n\n")
    (tmp_path / "Ambiguous_val.txt").write_text("video_validation_0000001 9 10\nvideo_validation_0000009 1 2\n")
    manifest = from_thumos14_official(tmp_path)
    assert manifest.classes == ["Diving", "HighJump"]
    assert sorted(manifest.videos) == ["video_test_0000007", "video_validation_0000001", "video_validation_0000002"]
    assert manifest.videos["video_test_0000007"]["subset"] == "test"
    assert len(manifest.annotations) == 3


def test_activitynet_json_keeps_training_and_validation_and_prefixes_ids(tmp_path):
    path = tmp_path / "anet.json"
    path.write_text(json.dumps({"version": "VERSION 1.3", "database": {
        "--abc": {"subset": "training", "duration": 20.0, "annotations": [{"segment": [1, 4], "label": "Zumba"}]},
        "xyz": {"subset": "validation", "duration": 10.0, "annotations": [{"segment": [2, 3], "label": "Polishing shoes"}]},
        "tst": {"subset": "testing", "duration": 9.0, "annotations": []}}}))
    manifest = from_activitynet_json(path, subsets=["training", "validation"], video_prefix="v_",
                                     classes=["Polishing shoes", "Zumba", "Yoga"])
    assert sorted(manifest.videos) == ["v_--abc", "v_xyz"]
    assert manifest.tiou[0] == 0.5 and manifest.tiou[-1] == 0.95 and len(manifest.tiou) == 10


def test_split_list_with_unknown_class_names_class_and_file(tmp_path):
    folder = tmp_path / "train_75_test_25" / "THUMOS14" / "test"
    folder.mkdir(parents=True)
    for i in range(10):
        (folder / f"split_{i}.list").write_text("A\nB\n" if i != 3 else "A\nNoSuchClass\n")
    with pytest.raises(ManifestError, match="split_3.list: class 'NoSuchClass'"):
        read_split_lists(tmp_path, "THUMOS14", ["A", "B"])


def test_split_files_beyond_the_ten_are_ignored_with_a_warning(tmp_path):
    folder = tmp_path / "train_50_test_50" / "THUMOS14" / "test"
    folder.mkdir(parents=True)
    for i in range(11):
        (folder / f"split_{i}.list").write_text(f"{'AB'[i % 2]}\n")
    with pytest.warns(UserWarning, match="ignored split_10.list"):
        splits = read_split_lists(tmp_path, "THUMOS14", ["A", "B"])
    assert splits == {"50_50": [["A"], ["B"]] * 5}


def test_thumos14_from_shared_data_matches_the_protocol_counts(shared_dir):
    data = shared_dir / "data"
    manifest = from_t3al_json(data / "thumos14" / "thumos_anno_action.json")
    with pytest.warns(UserWarning, match="split_10"):
        manifest.splits = read_split_lists(data / "splits", "THUMOS14", manifest.classes)
    expected = json.loads((data / "freezad-thumos14" / "expected_75.json").read_text())
    assert len(manifest.videos) == 413 and len(manifest.classes) == 20
    for i in range(10):
        evaluation = manifest.evaluation_set("75_25", i)
        assert sorted(evaluation.classes) == expected[f"75/{i}"]["classes"]
        assert len(evaluation.annotations) == expected[f"75/{i}"]["n_gt"]
    assert len(manifest.splits["50_50"]) == 10


def test_committed_thumos14_manifest_is_what_the_cli_builds(shared_dir, tmp_path):
    data = shared_dir / "data"
    result = CliRunner().invoke(main, [
        "thumos14", "--annotations", str(data / "thumos14" / "thumos_anno_action.json"),
        "--info", str(data / "thumos14" / "thumos_fps.json"), "--splits", str(data / "splits"),
        "-o", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert "413 videos" in result.output
    assert (tmp_path / "m.json").read_text() == (REPO / "manifests" / "thumos14.json").read_text()


def test_cli_reports_a_bad_file_without_traceback(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    result = CliRunner().invoke(main, ["show", str(path)])
    assert result.exit_code == 1
    assert "broken.json: invalid JSON" in result.output


def test_activitynet_split_lists_use_the_200_class_vocabulary(shared_dir):
    data = shared_dir / "data"
    classes = read_class_list(data / "activitynet" / "action_name.csv")
    splits = read_split_lists(data / "splits", "ActivityNet", classes)
    assert len(classes) == 200
    assert [len(s) for s in splits["75_25"]] == [50] * 10 and [len(s) for s in splits["50_50"]] == [100] * 10


def test_activitynet_cli_fills_fps_from_video_info(tmp_path):
    (tmp_path / "anet.json").write_text(json.dumps({"database": {
        "abc": {"subset": "validation", "duration": 20.0, "annotations": [{"segment": [1, 4], "label": "Zumba"}]}}}))
    (tmp_path / "info.csv").write_text("video,numFrame,seconds,fps,rfps,subset,featureFrame\n"
                                       "v_abc,600,20.0,30.0,29.9,validation,592\n")
    (tmp_path / "classes.csv").write_text("action\nYoga\nZumba\n")
    result = CliRunner().invoke(main, ["activitynet", "--annotations", str(tmp_path / "anet.json"), "--classes",
                                       str(tmp_path / "classes.csv"), "--video-info", str(tmp_path / "info.csv"),
                                       "-o", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    manifest = Manifest.load(tmp_path / "m.json")
    assert manifest.classes == ["Yoga", "Zumba"]
    assert manifest.videos == {"v_abc": {"subset": "validation", "duration": 20.0, "fps": 30.0}}


def test_thumos14_official_cli_merges_validation_and_test_folders(tmp_path):
    (tmp_path / "val").mkdir()
    (tmp_path / "test").mkdir()
    (tmp_path / "val" / "HighJump_val.txt").write_text("video_validation_0000001 1.0 2.5\n")
    (tmp_path / "test" / "Diving_test.txt").write_text("video_test_0000007 0.5 1.5\n")
    result = CliRunner().invoke(main, ["thumos14-official", str(tmp_path / "val"), str(tmp_path / "test"),
                                       "-o", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    manifest = Manifest.load(tmp_path / "m.json")
    assert manifest.classes == ["Diving", "HighJump"] and len(manifest.videos) == 2
