"""Several actions per video: the labels chosen, one adaptation each, detections merged."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import synthetic_features, write_tiny_cache
from t3al.adapt.config import AdaptConfig, ConfigError
from t3al.adapt.algorithm.localizer import chosen_labels
from t3al.adapt.engine.request import Execution, Request, Task
from t3al.adapt.engine.runner import run_request
from t3al.cache import CacheReader

CLASSES = ["a", "b", "c", "d"]


def test_the_pseudo_label_comes_first_then_the_next_most_probable():
    p = np.array([0.1, 0.5, 0.3, 0.1])
    assert chosen_labels(p, 1, 1) == [1]
    assert chosen_labels(p, 1, 2) == [1, 2]
    assert chosen_labels(p, 1, 3) == [1, 2, 0]  # ties keep class order
    assert chosen_labels(p, 1, 9) == [1, 2, 0, 3]
    assert chosen_labels(p, 3, 2) == [3, 1]  # an oracle's or forced first label leads


def test_further_labels_below_the_threshold_are_left_out_but_never_the_first():
    p = np.array([0.1, 0.5, 0.3, 0.1])
    assert chosen_labels(p, 1, 4, threshold=0.2) == [1, 2]
    assert chosen_labels(p, 1, 4, threshold=0.6) == [1]
    assert chosen_labels(p, 0, 4, threshold=0.1) == [0, 1, 2, 3]


@pytest.mark.parametrize("changes", [{"protocol": "stream"}, {"oracle": ("class",)}, {"method": "naive"}])
def test_several_labels_need_per_video_adaptations_without_oracles(changes):
    with pytest.raises(ConfigError, match="labels_per_video above 1"):
        AdaptConfig(labels_per_video=2, **changes)
    with pytest.raises(ConfigError, match="label_threshold must be in"):
        AdaptConfig(label_threshold=1.5)


@pytest.fixture
def two_action_cache(tmp_path):
    """v1 holds class a on frames 20-60 and class c on frames 120-170; v2 only class b."""
    videos = {"v1": synthetic_features(200, actions=((20, 60, 0), (120, 170, 2)), seed=1),
              "v2": synthetic_features(200, actions=((50, 110, 1),), seed=2)}
    return CacheReader(write_tiny_cache(tmp_path / "cache", videos, CLASSES, fps=10.0))


def _results(reader, config, device=None):
    tasks = tuple(Task(None, v, tuple(CLASSES)) for v in ("v1", "v2"))
    outcome = run_request(Request(reader, tasks, {"c": config}, execution=Execution(device=device))).outcome("c")
    assert not outcome.problems
    return {r.video_id: r for r in outcome.results}


def test_two_labels_localize_both_actions_of_a_video_each_with_its_own_curve(two_action_cache):
    one = _results(two_action_cache, AdaptConfig(suppression=False))
    two = _results(two_action_cache, AdaptConfig(suppression=False, labels_per_video=2))
    v1 = two["v1"]
    first = one["v1"]
    assert v1.pseudo_label == first.pseudo_label and np.array_equal(v1.similarity, first.similarity)
    assert v1.segments[:len(first.segments)] == first.segments  # the first label's detections are kept as they were
    assert {CLASSES[c] for c in v1.labels} == {"a", "c"} and set(v1.curves) == {0, 2}
    seconds = v1.seconds()
    for label, (start, end) in zip(v1.labels, seconds):
        if CLASSES[label] == "c":
            assert start < 17.0 and end > 12.0  # the c segment overlaps its true action, frames 120-170
    assert len(two["v2"].labels) > len(one["v2"].labels) and set(two["v2"].curves) == {1, two["v2"].labels[-1]}


def test_a_threshold_keeps_only_likely_further_labels(two_action_cache):
    strict = _results(two_action_cache, AdaptConfig(suppression=False, labels_per_video=4, label_threshold=0.999))
    one = _results(two_action_cache, AdaptConfig(suppression=False))
    assert {v: r.segments for v, r in strict.items()} == {v: r.segments for v, r in one.items()}


def test_batched_and_per_video_give_the_same_merged_detections(two_action_cache):
    config = AdaptConfig(suppression=False, labels_per_video=3)
    video, batched = _results(two_action_cache, config), _results(two_action_cache, config, device="cpu")
    for name in video:
        assert video[name].segments == batched[name].segments and video[name].labels == batched[name].labels
        assert np.allclose(video[name].scores, batched[name].scores, atol=1e-5)
