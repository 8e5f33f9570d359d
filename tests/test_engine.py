"""The engine: a request of tasks (split, video, vocabulary, truths) and named configs, answered
with results keyed by (config name, split, video), whatever order the work ran in."""
from __future__ import annotations

import numpy as np

from t3al.adapt.algorithm.adapter import Adapter
from t3al.adapt.config import AdaptConfig
from t3al.adapt.algorithm.localizer import job_key
from t3al.adapt.engine.request import Execution, Request, Task
from t3al.adapt.engine.runner import localize_split, run_request
from t3al.adapt.algorithm.video import VideoProblem, VideoResult
from t3al.cache import CacheReader

from conftest import synthetic_features, write_tiny_cache

CLASSES = ["a", "b", "c", "d"]
CONFIGS = {"reset": AdaptConfig(steps=2, suppression=False),
           "stream": AdaptConfig(steps=2, suppression=False, protocol="stream"),
           "naive": AdaptConfig(method="naive")}


def _cache(tmp_path):
    videos = {f"v{i}": synthetic_features(80 + 20 * i, actions=((20, 60, i % 3),), seed=i) for i in range(3)}
    return CacheReader(write_tiny_cache(tmp_path / "cache", videos, CLASSES))


def _tasks() -> tuple[Task, ...]:
    """Split 0: v0, v1, ghost (not cached), v2 with a, b, c; split 1: v2, v0 with b, c, d."""
    first = tuple(Task(0, v, ("a", "b", "c")) for v in ("v0", "v1", "ghost", "v2"))
    return first + tuple(Task(1, v, ("b", "c", "d")) for v in ("v2", "v0"))


def test_results_are_keyed_by_config_split_and_video_and_listed_in_each_splits_order(tmp_path):
    results = run_request(Request(_cache(tmp_path), _tasks(), CONFIGS, seed=3, execution=Execution(jobs=2)))
    assert set(results.entries) == {(name, task.split, task.video) for name in CONFIGS for task in _tasks()}
    for name in CONFIGS:
        zero, one = results.outcome(name, 0), results.outcome(name, 1)
        assert [r.video_id for r in zero.results] == ["v0", "v1", "v2"]
        assert [(p.video_id, p.reason) for p in zero.problems] == [("ghost", f"not in cache {tmp_path / 'cache'}")]
        assert [r.video_id for r in one.results] == ["v2", "v0"] and not one.problems
        assert all(isinstance(results.entries[name, 0, v], VideoResult) for v in ("v0", "v1", "v2"))
    assert isinstance(results.entries["reset", 0, "ghost"], VideoProblem)


def test_a_request_gives_each_config_what_it_gives_alone(tmp_path):
    reader = _cache(tmp_path)
    together = run_request(Request(reader, _tasks(), CONFIGS, seed=3))
    for name, config in CONFIGS.items():
        for split, classes in ((0, ["a", "b", "c"]), (1, ["b", "c", "d"])):
            videos = [t.video for t in _tasks() if t.split == split]
            alone = localize_split(str(reader.root), videos, classes, config, seed=3).results
            for a, b in zip(alone, together.outcome(name, split).results, strict=True):
                assert (a.video_id, a.pseudo_label, a.segments, a.labels, a.scores) == \
                    (b.video_id, b.pseudo_label, b.segments, b.labels, b.scores)
                np.testing.assert_array_equal(a.similarity, b.similarity)


def test_tasks_with_equal_job_keys_share_one_adaptation(tmp_path, monkeypatch):
    reader = _cache(tmp_path)
    adapted = []
    adapt = Adapter.adapt
    monkeypatch.setattr(Adapter, "adapt", lambda self, problems, *rest: adapted.extend(
        p.video.video_id for p in problems) or adapt(self, problems, *rest))
    same = tuple(Task(split, "v1", ("a", "b", "c")) for split in (0, 1))  # the same vocabulary in two splits
    run_request(Request(reader, same, {"reset": CONFIGS["reset"]}))
    assert adapted == ["v1"]


def test_a_job_key_reads_the_truths_only_when_an_oracle_steers_the_adaptation():
    truths, other = ((1.0, 4.0, 0),), ((2.0, 5.0, 0),)
    plain, steered = AdaptConfig(), AdaptConfig(oracle=("selection",))
    assert job_key(plain, "v", "a", "v", truths) == job_key(plain, "v", "a", "v", other)
    assert job_key(steered, "v", "a", "v", truths) != job_key(steered, "v", "a", "v", other)
    assert job_key(AdaptConfig(oracle=("count",)), "v", "a", "v", truths) == job_key(plain, "v", "a", "v", other)
    assert job_key(plain, "v", "a", "v", truths) != job_key(plain, "v", "a", "v/a", truths)  # other draws
    assert job_key(plain, "v", "a", "v", ()) == job_key(plain.replace(beta=0.2), "v", "a", "v", ())  # proposals


def test_the_execution_hands_a_worker_few_videos_one_by_one_and_many_to_batch():
    assert (Execution().videos_per_task, Execution(device="cpu").videos_per_task) == (4, 32)
