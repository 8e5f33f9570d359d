"""The open-set rule: presence of each named action on hand-checkable curves, the threshold rule in
stage two, and presences beside the detections."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import synthetic_features, write_tiny_cache
from t3al.adapt.config import AdaptConfig, ConfigError
from t3al.adapt.algorithm.distractors import DISTRACTORS, distractors_for
from t3al.adapt.algorithm.presence import open_set, peak_window, present_labels, presence
from t3al.adapt.engine.runner import localize_split
from t3al.adapt.algorithm.video import VideoResult


def _unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def _presence(frames: list[list[float]], classes: list[list[float]], distractors: list[list[float]],
              fps: float = 1.0, scale: float = 10.0) -> np.ndarray:
    eye = torch.eye(2)
    return presence(torch.tensor(frames), np.arange(len(frames)) / fps, eye, eye, math.log(scale),
                    torch.tensor(classes), torch.tensor(distractors))


def test_presence_is_the_two_way_probability_of_the_action_over_the_best_distractor_at_their_peaks():
    # 1 frame per second, a 2-second window: peaks are the best mean of a frame and the next one
    frames = [_unit(90), _unit(90), _unit(0), _unit(0)]
    action, distractors = [_unit(0)], [_unit(60), _unit(90)]
    peak_action = 1.0  # frames 2-3
    peak_distractor = 1.0  # the 90-degree distractor on frames 0-1
    expected = 1 / (1 + math.exp(-10.0 * (peak_action - peak_distractor)))
    assert _presence(frames, action, distractors) == pytest.approx([expected])  # 0.5: a tie
    frames[1] = _unit(60)  # both distractors now peak at (1 + cos 30) / 2 over frames 0-1
    peak_distractor = (1 + math.cos(math.radians(30))) / 2
    expected = 1 / (1 + math.exp(-10.0 * (1.0 - peak_distractor)))
    assert _presence(frames, action, distractors) == pytest.approx([expected])


def test_presence_reads_a_stretch_not_a_single_frame():
    # one frame pointing at the action between frames pointing at the distractor: at 1 fps the
    # 2-frame window averages it with a neighbour (cos 90 = 0), so the distractor wins
    frames = [_unit(90), _unit(0), _unit(90), _unit(90), _unit(90)]
    p = _presence(frames, [_unit(0)], [_unit(90)])
    assert p[0] == pytest.approx(1 / (1 + math.exp(-10.0 * (0.5 - 1.0))))
    assert p[0] < 0.01


def test_presence_is_shift_free_and_in_the_models_logit_units():
    frames = [_unit(10), _unit(20), _unit(80), _unit(85)]
    classes, distractors = [_unit(0), _unit(45)], [_unit(90)]
    low, high = _presence(frames, classes, distractors, scale=5.0), _presence(frames, classes, distractors, scale=50.0)
    assert np.all((low > 0) & (low < 1)) and np.all((high >= 0) & (high <= 1))
    # the log-odds scale with the model's logit scale: the same cosine gaps, ten times the units
    assert np.log(high / (1 - high)) == pytest.approx(10 * np.log(low / (1 - low)), rel=1e-6)


def test_peak_window_is_two_seconds_of_frames_at_the_videos_rate():
    assert peak_window(np.arange(100) / 30.0) == 60
    assert peak_window(np.arange(10) / 1.0) == 2
    assert peak_window(np.array([0.0])) == 2  # one frame: no rate, the window of 1 frame per second


def test_distractors_leave_out_the_named_actions_whatever_their_case():
    assert "running" in DISTRACTORS and "walking" in DISTRACTORS
    kept = distractors_for(["Running", "pole vault"])
    assert "running" not in kept and "walking" in kept and len(kept) == len(DISTRACTORS) - 1


def test_present_labels_are_those_at_or_above_the_threshold_most_present_first():
    presences = np.array([0.2, 0.9, 0.5, 0.7])
    assert present_labels(presences, 0.5, 3) == [1, 3, 2]
    assert present_labels(presences, 0.5, 1) == [1]
    assert present_labels(presences, 0.95, 3) == []


def test_open_set_keeps_present_labels_and_scores_them_presence_times_segment_score():
    result = VideoResult("v", 0, np.zeros(2), np.zeros(5), np.arange(5.0), segments=[(0, 1), (2, 3), (3, 4)],
                         labels=[0, 1, 0], scores=[0.5, 0.9, 1.0])
    gated = open_set(result, np.array([0.8, 0.3]), 0.5)
    assert gated.segments == [(0, 1), (3, 4)] and gated.labels == [0, 0]
    assert gated.scores == pytest.approx([0.4, 0.8])
    assert gated.presence.tolist() == [0.8, 0.3]
    assert result.labels == [0, 1, 0] and result.presence is None  # the input is left as it was


def test_presence_threshold_is_off_by_default_and_checked():
    assert AdaptConfig().presence_threshold is None
    assert "presence_threshold" not in AdaptConfig().to_dict()  # closed-world records as before the rule
    assert AdaptConfig(presence_threshold=0.5).to_dict()["presence_threshold"] == 0.5
    for bad, message in ((1.5, r"in \[0, 1\]"), ("high", "must be a number"), (True, "must be a number")):
        with pytest.raises(ConfigError, match=message):
            AdaptConfig(presence_threshold=bad)


CLASSES = ["pole vault", "high jump", "long jump"]


def _world(tmp_path):
    """v1 holds class 0, v2 class 1, v3 none of the classes (background only)."""
    videos = {"v1": synthetic_features(120, actions=((30, 70, 0),), seed=1),
              "v2": synthetic_features(120, actions=((10, 50, 1),), seed=2),
              "v3": synthetic_features(120, actions=(), seed=3)}
    return write_tiny_cache(tmp_path / "cache", videos, CLASSES, distractors=True)


def test_the_open_set_rule_localizes_present_actions_only(tmp_path):
    cache = _world(tmp_path)
    config = AdaptConfig(steps=2, suppression=False, radius=0)
    closed = localize_split(str(cache), ["v1", "v2", "v3"], CLASSES, config)
    opened = localize_split(str(cache), ["v1", "v2", "v3"], CLASSES, config.replace(presence_threshold=0.5))
    by_video = {r.video_id: r for r in opened.results}
    assert by_video["v1"].presence[0] > 0.99 and by_video["v1"].presence[1:].max() < 0.01
    assert by_video["v2"].presence[1] > 0.99
    assert by_video["v3"].presence.max() < 0.01 and not by_video["v3"].segments  # none of the actions
    assert {r.video_id for r in closed.results if r.segments} == {"v1", "v2", "v3"}  # closed world: every video
    for video in ("v1", "v2"):
        shut = next(r for r in closed.results if r.video_id == video)
        assert by_video[video].labels == shut.labels  # the present action is the pseudo-label here
        assert by_video[video].scores == pytest.approx([by_video[video].presence[lab] * s
                                                        for lab, s in zip(shut.labels, shut.scores)])
    assert all(r.presence is None for r in closed.results)


def test_the_open_set_rule_localizes_a_present_action_that_is_not_the_pseudo_label(tmp_path):
    # every frame leans a little towards high jump (axis 1), so the video's mean makes it the
    # pseudo-label; only pole vault (axis 0, frames 20-60) is ever the frames' best description
    features = synthetic_features(200, actions=((20, 60, 0),), seed=4)
    features[:, 1] += 0.5
    cache = write_tiny_cache(tmp_path / "cache", {"v1": features}, CLASSES, distractors=True)
    vocabulary = ["high jump", "pole vault"]
    config = AdaptConfig(steps=2, suppression=False, radius=0)
    closed = localize_split(str(cache), ["v1"], vocabulary, config).results[0]
    assert closed.pseudo_label == 0
    result = localize_split(str(cache), ["v1"], vocabulary, config.replace(presence_threshold=0.5)).results[0]
    assert result.presence[1] > 0.99 and result.presence[0] < 0.01
    assert result.pseudo_label == 1 and result.segments and set(result.labels) == {1}


def test_several_labels_follow_the_rule_each_present_or_not(tmp_path):
    features = synthetic_features(200, actions=((20, 60, 0), (120, 160, 1)), seed=5)
    cache = write_tiny_cache(tmp_path / "cache", {"v1": features}, CLASSES, distractors=True)
    config = AdaptConfig(steps=2, suppression=False, radius=0, presence_threshold=0.5, labels_per_video=3)
    result = localize_split(str(cache), ["v1"], CLASSES, config).results[0]
    assert result.presence[:2].min() > 0.99 and result.presence[2] < 0.01
    assert set(result.labels) == {0, 1}  # two present labels localized, the absent third not


def test_the_rule_needs_the_distractor_prompts_in_the_cache(tmp_path):
    cache = write_tiny_cache(tmp_path / "cache", {"v1": synthetic_features(60, seed=1)}, CLASSES)
    with pytest.raises(ConfigError, match="distractor actions .* t3al-extract prompts"):
        localize_split(str(cache), ["v1"], CLASSES, AdaptConfig(steps=0, presence_threshold=0.5))


def test_presences_go_beside_the_detections_of_a_vocabulary_run(tmp_path):
    from t3al.adapt.engine.spec import resolve_configs
    from t3al.adapt.engine.vocabulary import build_vocabulary_spec, localize_vocabulary
    from t3al.evaluate.presence import read_presences

    cache = _world(tmp_path)
    spec = build_vocabulary_spec(cache, CLASSES, resolve_configs("thumos14", options={
        "presence_threshold": 0.5, "suppression": False, "steps": 2}))
    localize_vocabulary(spec, tmp_path / "run")
    document = json.loads((tmp_path / "run" / "detections.json").read_text())
    assert set(document["presence"]) == {"v1", "v2", "v3"}
    assert set(document["presence"]["v3"]) == set(CLASSES)
    table = read_presences(tmp_path / "run" / "presence.csv")  # six decimals
    assert all(table[v][c] == pytest.approx(p, abs=1e-6) for v, row in document["presence"].items()
               for c, p in row.items())
    with np.load(tmp_path / "run" / "curves" / "v1.npz") as curve:
        assert curve["presence"].shape == (3,)


def test_the_open_set_rule_and_the_class_oracle_are_refused_together():
    with pytest.raises(ConfigError, match="use one of them"):
        AdaptConfig(presence_threshold=0.5, oracle=("class",))


def test_an_evaluated_run_under_the_rule_reports_each_splits_presence_quality(tmp_path):
    from conftest import write_toy_world
    from t3al.adapt.engine.pipeline import run
    from t3al.adapt.engine.spec import build_spec

    classes = ["Jump", "Throw", "Swim"]
    actions = {"v0": (100, 20, 60, 0), "v1": (100, 30, 70, 1), "v2": (100, 10, 50, 2), "v3": (100, 40, 90, 0)}
    cache = write_toy_world(tmp_path, classes, actions, [["Jump", "Throw"], ["Swim"]], distractors=True)
    rows = {"closed": {"steps": 2, "suppression": False}, "open": {"steps": 2, "suppression": False,
                                                                    "presence_threshold": 0.5}}
    runs = run(build_spec(cache, "75_25", rows=rows, jobs=1))
    opened, closed = runs["open"].document, runs["closed"].document
    # split 0: v0, v1, v3 x Jump, Throw, each video holding its one class, the presences perfect
    assert opened["splits"][0]["presence"] == {"pairs": 6, "positive_pairs": 3, "ap": 100.0, "auc": 100.0}
    assert opened["splits"][1]["presence"] is None  # one class that its one video holds: no negative pair
    assert opened["presence"] == {"ap": 100.0, "auc": 100.0}
    assert "presence" not in closed and all("presence" not in s for s in closed["splits"])
