"""Detection AP as the ActivityNet toolkit: hand-checkable cases, input rules and real-data parity."""
from __future__ import annotations

import json

import numpy as np
import pytest

from t3al.evaluate import Detections, EvaluationError, GroundTruth, evaluate_detections, summarize_splits


def _gt(*rows) -> GroundTruth:
    return GroundTruth.from_records({"video": v, "start": s, "end": e, "label": lab} for v, s, e, lab in rows)


def _det(*rows) -> Detections:
    return Detections.from_records({"video": v, "start": s, "end": e, "score": c, "label": lab}
                                   for v, s, e, c, lab in rows)


def test_perfect_detection_has_ap_100():
    gt = _gt(("v", 0, 10, "A"), ("v", 20, 30, "A"), ("w", 5, 6, "B"))
    dets = _det(("v", 0, 10, 0.9, "A"), ("v", 20, 30, 0.8, "A"), ("w", 5, 6, 0.5, "B"))
    result = evaluate_detections(dets, gt, ["A", "B"], tious=[0.5, 0.9])
    np.testing.assert_allclose(result.map, [100.0, 100.0])
    assert result.avg == pytest.approx(100.0)


def test_false_positive_ahead_of_true_positive_halves_ap():
    gt = _gt(("v", 0, 10, "A"))
    dets = _det(("v", 50, 60, 0.9, "A"), ("v", 0, 10, 0.8, "A"))
    assert evaluate_detections(dets, gt, ["A"], tious=[0.5]).map[0] == pytest.approx(50.0)


def test_duplicate_detection_is_a_false_positive():
    gt = _gt(("v", 0, 10, "A"), ("v", 20, 30, "A"))
    dets = _det(("v", 0, 10, 0.9, "A"), ("v", 0, 10, 0.8, "A"))
    # TP then FP: recall reaches 0.5 at precision 1, then stays; AP = 0.5.
    assert evaluate_detections(dets, gt, ["A"], tious=[0.5]).map[0] == pytest.approx(50.0)


def test_tiou_exactly_at_threshold_counts_as_match():
    gt = _gt(("v", 0, 10, "A"))
    dets = _det(("v", 0, 5, 0.9, "A"))  # tIoU = 5 / 10 = 0.5
    np.testing.assert_allclose(evaluate_detections(dets, gt, ["A"], tious=[0.5, 0.6]).map, [100.0, 0.0])


def test_class_without_detections_scores_zero_and_counts():
    gt = _gt(("v", 0, 10, "A"), ("v", 20, 30, "B"))
    result = evaluate_detections(_det(("v", 0, 10, 0.9, "A")), gt, ["A", "B"], tious=[0.5])
    assert result.per_class["B"][0] == 0.0
    assert result.map[0] == pytest.approx(50.0)
    assert result.classes_without_detections == ["B"]


def test_detection_takes_the_unmatched_ground_truth_with_highest_tiou():
    gt = _gt(("v", 0, 10, "A"), ("v", 4, 14, "A"))
    # The first detection overlaps the second instance best (tIoU 0.8 vs 0.5) and takes it,
    # leaving the first instance for the second detection.
    dets = _det(("v", 3, 13, 0.9, "A"), ("v", 0, 9, 0.8, "A"))
    assert evaluate_detections(dets, gt, ["A"], tious=[0.5]).map[0] == pytest.approx(100.0)


def test_greedy_matching_follows_score_order_not_the_optimal_assignment():
    gt = _gt(("v", 0, 10, "A"), ("v", 2, 12, "A"))
    # The first detection takes the first instance (tIoU 0.95 vs 0.71); the second one could only
    # have matched the first instance (0.62; 0.4 with the other), so it is a false positive.
    dets = _det(("v", 0, 10.5, 0.9, "A"), ("v", -3, 8, 0.8, "A"))
    result = evaluate_detections(dets, gt, ["A"], tious=[0.5])
    assert result.map[0] == pytest.approx(50.0)


def test_detection_matches_only_ground_truth_of_its_class_and_video():
    gt = _gt(("v", 0, 10, "A"), ("w", 0, 10, "B"))
    dets = _det(("v", 0, 10, 0.9, "B"), ("w", 0, 10, 0.8, "A"))
    np.testing.assert_allclose(evaluate_detections(dets, gt, ["A", "B"], tious=[0.5]).map, [0.0])


def test_equal_scores_keep_input_order():
    gt = _gt(("v", 0, 10, "A"))
    fp_first = _det(("v", 50, 60, 0.5, "A"), ("v", 0, 10, 0.5, "A"))
    tp_first = _det(("v", 0, 10, 0.5, "A"), ("v", 50, 60, 0.5, "A"))
    assert evaluate_detections(fp_first, gt, ["A"], tious=[0.5]).map[0] == pytest.approx(50.0)
    assert evaluate_detections(tp_first, gt, ["A"], tious=[0.5]).map[0] == pytest.approx(100.0)


def test_round_ap_rounds_each_class_to_a_tenth_of_a_percent():
    gt = _gt(("v", 0, 10, "A"))
    dets = _det(("v", 30, 40, 0.9, "A"), ("v", 50, 60, 0.8, "A"), ("v", 0, 10, 0.7, "A"))
    assert evaluate_detections(dets, gt, ["A"], tious=[0.5]).map[0] == pytest.approx(100 / 3)
    assert evaluate_detections(dets, gt, ["A"], tious=[0.5], round_ap=True).map[0] == pytest.approx(33.3)


def test_ground_truth_of_other_classes_is_ignored():
    gt = _gt(("v", 0, 10, "A"), ("v", 20, 30, "Seen"), ("u", 0, 5, "Seen"))
    result = evaluate_detections(_det(("v", 0, 10, 0.9, "A")), gt, ["A"], tious=[0.5])
    assert (result.map[0], result.n_ground_truth, result.n_videos) == (pytest.approx(100.0), 1, 1)


def test_detections_outside_the_evaluated_videos_are_dropped_and_counted():
    gt = _gt(("v", 0, 10, "A"), ("u", 0, 5, "Seen"))
    dets = _det(("v", 0, 10, 0.5, "A"), ("x", 0, 10, 0.9, "A"), ("u", 0, 5, 0.9, "A"))
    result = evaluate_detections(dets, gt, ["A"], tious=[0.5])
    assert (result.map[0], result.n_dropped, result.n_detections) == (pytest.approx(100.0), 2, 1)


def test_label_outside_the_class_list_is_an_error():
    with pytest.raises(EvaluationError, match="'C'"):
        evaluate_detections(_det(("v", 0, 10, 0.5, "C")), _gt(("v", 0, 10, "A")), ["A"], tious=[0.5])


def test_class_without_ground_truth_is_an_error():
    with pytest.raises(EvaluationError, match="B have no ground-truth"):
        evaluate_detections(_det(("v", 0, 10, 0.5, "A")), _gt(("v", 0, 10, "A")), ["A", "B"], tious=[0.5])


def test_end_before_start_is_an_error():
    with pytest.raises(EvaluationError, match="row 0 \\(video v\\): t-end 1.0 < t-start 2.0"):
        _det(("v", 2, 1, 0.5, "A"))


def test_csv_with_nan_score_names_file_and_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("video-id,t-start,t-end,score,label\nv,0,1,0.5,A\nv,0,1,nan,A\n")
    with pytest.raises(EvaluationError, match="d.csv: line 3 \\(video v\\): score 'nan'"):
        Detections.read(path)


def test_csv_with_missing_column_is_an_error(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("video-id,t-start,t-end,label\nv,0,1,A\n")
    with pytest.raises(EvaluationError, match="missing column\\(s\\) score"):
        Detections.read(path)


def test_detections_round_trip_through_csv_and_activitynet_json(tmp_path):
    dets = _det(("v", 0.5, 10, 0.9, "A"), ("w", 1, 2, 0.25, "B"), ("v", 3, 4, 0.1, "B"))
    dets.write_csv(tmp_path / "d.csv")
    dets.write_json(tmp_path / "d.json")
    for path in (tmp_path / "d.csv", tmp_path / "d.json"):
        back = Detections.read(path)
        assert sorted(zip(back.video, back.start, back.score, back.label)) == \
            sorted(zip(dets.video, dets.start, dets.score, dets.label))


def test_ground_truth_reads_activitynet_json(tmp_path):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"version": "1.3", "database": {
        "v": {"subset": "validation", "annotations": [{"segment": [1.0, 2.0], "label": "A"}]},
        "t": {"subset": "testing", "annotations": []}}}))
    gt = GroundTruth.read(path)
    assert (gt.video.tolist(), gt.start.tolist(), gt.label.tolist()) == (["v"], [1.0], ["A"])


def test_summary_gives_mean_and_sample_std_over_splits():
    gt = _gt(("v", 0, 10, "A"))
    good = evaluate_detections(_det(("v", 0, 10, 0.9, "A")), gt, ["A"], tious=[0.5])
    half = evaluate_detections(_det(("v", 30, 40, 0.9, "A"), ("v", 0, 10, 0.8, "A")), gt, ["A"], tious=[0.5])
    summary = summarize_splits([good, half])
    assert summary["mean"]["avg"] == pytest.approx(75.0)
    assert summary["std"]["map"][0] == pytest.approx(np.std([100, 50], ddof=1))


def test_reproduces_freezad_thumos14_75_25_reference(shared_dir):
    root = shared_dir / "data" / "freezad-thumos14"
    expected = json.loads((root / "expected_75.json").read_text())
    results = []
    for i in range(10):
        reference = expected[f"75/{i}"]
        result = evaluate_detections(Detections.read(root / "pred" / "75" / f"{i}.csv"),
                                     GroundTruth.read(root / "gt" / "75" / f"{i}.csv"), reference["classes"])
        np.testing.assert_allclose(result.map, reference["map_per_threshold"], atol=1e-3, err_msg=f"split {i}")
        assert result.avg == pytest.approx(reference["avg"], abs=1e-3)
        assert (result.n_detections, result.n_ground_truth) == (reference["n_pred"], reference["n_gt"])
        results.append(result)
    summary = summarize_splits(results)
    np.testing.assert_allclose(summary["mean"]["map"], expected["75/mean"]["map_per_threshold"], atol=1e-3)
    assert summary["mean"]["avg"] == pytest.approx(expected["75/mean"]["avg"], abs=1e-3)


def test_no_detections_at_all_gives_zero_for_every_class():
    result = evaluate_detections(_det(), _gt(("v", 0, 10, "A"), ("v", 20, 30, "B")), ["A", "B"], tious=[0.5])
    assert result.map.tolist() == [0.0] and result.classes_without_detections == ["A", "B"]


def _reference_ap(dets: list, gts: list, threshold: float) -> float:
    """The protocol's definition, one detection at a time (single class), for comparison."""
    used = set()
    flags = []
    for video, start, end, _ in sorted(dets, key=lambda d: -d[3]):
        best, best_iou = None, -1.0
        for j, (gv, gs, ge) in enumerate(gts):
            inter = max(0.0, min(end, ge) - max(start, gs))
            iou = inter / ((end - start) + (ge - gs) - inter)
            if gv == video and j not in used and iou > best_iou:
                best, best_iou = j, iou
        hit = best is not None and best_iou >= threshold
        used |= {best} if hit else set()
        flags.append(hit)
    tp = np.cumsum(flags)
    precision, recall = tp / np.arange(1, len(flags) + 1), tp / len(gts)
    ap, level = 0.0, 0.0
    for k in range(len(flags) - 1, -1, -1):  # area under the monotone envelope, right to left
        level = max(level, precision[k])
        ap += (recall[k] - (recall[k - 1] if k else 0.0)) * level
    return 100 * ap


def test_vectorised_matching_equals_the_one_by_one_definition_on_random_data():
    rng = np.random.default_rng(7)
    gts = [(f"v{rng.integers(4)}", s, s + rng.uniform(1, 8)) for s in rng.uniform(0, 60, 25)]
    dets = [(f"v{rng.integers(5)}", s, s + rng.uniform(0.5, 10), c)
            for s, c in zip(rng.uniform(0, 60, 300), rng.permutation(300) / 300)]
    result = evaluate_detections(_det(*[(v, s, e, c, "A") for v, s, e, c in dets]),
                                 _gt(*[(v, s, e, "A") for v, s, e in gts]), ["A"], tious=[0.1, 0.3, 0.5, 0.7])
    expected = [_reference_ap([d for d in dets if d[0] != "v4"], gts, t) for t in (0.1, 0.3, 0.5, 0.7)]
    np.testing.assert_allclose(result.map, expected, atol=1e-9)
