"""Open-set evaluation: every video of the ground truth counted, presence AP and ROC AUC, video flags,
checked against figures computed by hand."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from t3al.evaluate import Detections, EvaluationError, GroundTruth, evaluate_detections
from t3al.evaluate.cli import main
from t3al.evaluate.presence import presence_quality, read_presences, video_flags, write_presence_csv

# a holds A, b holds B only, c holds A and B; only A is evaluated
GT = GroundTruth.from_records([{"video": "a", "start": 0, "end": 10, "label": "A"},
                               {"video": "b", "start": 0, "end": 10, "label": "B"},
                               {"video": "c", "start": 0, "end": 10, "label": "A"},
                               {"video": "c", "start": 20, "end": 30, "label": "B"}])


def _detections(rows):
    return Detections.from_records({"video": v, "start": s, "end": e, "score": c, "label": "A"} for v, s, e, c in rows)


def test_a_detection_in_a_video_without_the_action_is_a_false_positive_in_the_open_set():
    # score order: b (no A: false positive), a (true), c (true)
    dets = _detections([("b", 0, 10, 0.9), ("a", 0, 10, 0.8), ("c", 0, 10, 0.7)])
    protocol = evaluate_detections(dets, GT, ["A"], [0.5])
    assert protocol.avg == pytest.approx(100.0) and protocol.n_dropped == 1 and protocol.n_videos == 2
    opened = evaluate_detections(dets, GT, ["A"], [0.5], open_set=True)
    # precision 0, 1/2, 2/3 at recall 0, 1/2, 1: interpolated AP = 1/2 * 2/3 + 1/2 * 2/3 = 2/3
    assert opened.avg == pytest.approx(100 * 2 / 3) and opened.n_dropped == 0 and opened.n_videos == 3


def test_the_open_set_still_drops_videos_the_ground_truth_does_not_list():
    dets = _detections([("z", 0, 10, 0.95), ("a", 0, 10, 0.8), ("b", 0, 10, 0.5)])
    opened = evaluate_detections(dets, GT, ["A"], [0.5], open_set=True)
    # z dropped; a true (precision 1 at recall 1/2), b false: AP = 1/2 * 1 + 1/2 * 0 = 1/2
    assert opened.n_dropped == 1 and opened.avg == pytest.approx(50.0)


def test_presence_ap_and_auc_over_video_action_pairs():
    # pairs (a, A)+ 0.9, (b, A)- 0.6, (c, A)+ 0.4: ranked +, -, +
    quality = presence_quality({"a": {"A": 0.9}, "b": {"A": 0.6}, "c": {"A": 0.4}}, GT, ["A"])
    # AP = 1/2 * 1 + 1/2 * 2/3; AUC: of the 2 positive-negative pairs one is ordered right
    assert quality["ap"] == pytest.approx(100 * (0.5 + 1 / 3))
    assert quality["auc"] == pytest.approx(50.0)
    assert quality["pairs"] == 3 and quality["positive_pairs"] == 2


def test_a_pair_without_a_presence_counts_as_absent_and_one_sided_pairs_are_an_error():
    quality = presence_quality({"a": {"A": 0.9}, "c": {"A": 0.8}}, GT, ["A"])
    assert quality["ap"] == pytest.approx(100.0) and quality["auc"] == pytest.approx(100.0)
    with pytest.raises(EvaluationError, match="both with and without"):
        presence_quality({}, GT.select(GT.label == "A"), ["A"])


def test_video_flags_count_action_less_videos_with_detections_and_videos_found():
    flags = video_flags(_detections([("b", 0, 10, 0.9), ("a", 50, 60, 0.8)]), GT, ["A"])
    # b holds no A and got one: flagged 1 of 1; a and c hold A and a got one (even a wrong segment)
    assert flags == {"videos_without": 1, "videos_with": 2, "flagged_without": 100.0, "found_with": 50.0}


def test_presences_read_back_from_csv_and_json(tmp_path):
    presences = {"a": {"A": 0.25, "B": 1.0}, "b": {"A": 0.0, "B": 0.5}}
    write_presence_csv(tmp_path / "presence.csv", presences)
    assert read_presences(tmp_path / "presence.csv") == presences
    _detections([("a", 0, 10, 0.9)]).write_json(tmp_path / "d.json", presence=presences)
    assert read_presences(tmp_path / "d.json") == presences
    assert Detections.read(tmp_path / "d.json").video.tolist() == ["a"]
    (tmp_path / "bad.csv").write_text("video-id,label,presence\na,A,high\n")
    with pytest.raises(EvaluationError, match="row 2"):
        read_presences(tmp_path / "bad.csv")


def test_score_open_set_prints_and_writes_every_figure(tmp_path):
    GT.write_csv(tmp_path / "gt.csv")
    (tmp_path / "classes.txt").write_text("A\n")
    _detections([("b", 0, 10, 0.9), ("a", 0, 10, 0.8), ("c", 0, 10, 0.7)]).write_json(
        tmp_path / "d.json", presence={"a": {"A": 0.9}, "b": {"A": 0.6}, "c": {"A": 0.4}})
    args = [str(tmp_path / "d.json"), "-g", str(tmp_path / "gt.csv"), "--classes", str(tmp_path / "classes.txt"),
            "--tiou", "0.5"]
    result = CliRunner().invoke(main, [*args, "--open-set", "--json", str(tmp_path / "out.json")])
    assert result.exit_code == 0, result.output
    assert "every video of the ground truth counted" in result.output
    assert "videos without any of the classes: 1, with detections: 100.0 %" in result.output
    assert "AP 83.3, ROC AUC 50.0" in result.output
    document = json.loads((tmp_path / "out.json").read_text())
    assert document["avg"] == pytest.approx(100 * 2 / 3)
    assert document["open_set"]["presence"]["auc"] == pytest.approx(50.0)
    protocol = CliRunner().invoke(main, args)
    assert "100.00" in protocol.output and "presence" not in protocol.output
    refused = CliRunner().invoke(main, [*args, "--presence", str(tmp_path / "d.json")])
    assert refused.exit_code == 1 and "--presence is read with --open-set" in refused.output
    Detections.read(tmp_path / "d.json").write_csv(tmp_path / "d.csv")  # a CSV has no presences of its own
    write_presence_csv(tmp_path / "presence.csv", {"a": {"A": 0.9}, "b": {"A": 0.6}, "c": {"A": 0.4}})
    csv_args = [str(tmp_path / "d.csv"), *args[1:], "--open-set"]
    bare = CliRunner().invoke(main, csv_args)
    assert bare.exit_code == 0 and "note: no presences" in bare.output
    given = CliRunner().invoke(main, [*csv_args, "--presence", str(tmp_path / "presence.csv")])
    assert given.exit_code == 0 and "AP 83.3, ROC AUC 50.0" in given.output
