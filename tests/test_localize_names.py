"""Videos whatever their names: reported under their own names, played from the viewer (issue 25)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from conftest import synthetic_features, write_tiny_cache
from t3al.cache import CacheInfo, CacheWriter, ModelIdentity, VideoRecord, safe_video_id
from t3al.localize.cli import main

HOSTILE = ["my clip", "clip#1", "100%25 done", "what?", "Sprung über Hürden 跳高", "quote's \"x\" <b>",
           "long " + "x" * 225]


def _named_cache(root: Path, names: list[str]) -> Path:
    """A tiny cache whose videos are known by ``names`` (their ids made safe, as stage one makes them)."""
    features = {name: synthetic_features(120, actions=((30, 70, i % 2),), seed=i) for i, name in enumerate(names)}
    cache = write_tiny_cache(root, {"first": features[names[0]]}, ["pole vault", "high jump"], fps=10.0)
    writer = CacheWriter(cache, CacheInfo(model=ModelIdentity("test-model", "random"), feature_dtype="float32"))
    writer.video_path("first").unlink()
    for name, frames in features.items():
        writer.write_video(VideoRecord(safe_video_id(name), frames, np.arange(120) / 10.0, 10.0,
                                       caption_frames=np.arange(0, 120, 5), caption_texts=["c"] * 24,
                                       caption_features=frames[::5], duration=12.0, name=name))
    return cache


def test_videos_of_any_name_are_localized_and_reported_under_their_own_names(tmp_path):
    cache = _named_cache(tmp_path / "cache", HOSTILE)
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [str(cache), "--actions", "pole vault, high jump", "--out", str(out),
                                       "--jobs", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert set(json.loads((out / "detections.json").read_text())["results"]) == set(HOSTILE)
    from t3al.evaluate import Detections
    assert set(Detections.read(out / "detections.csv").video.tolist()) == set(HOSTILE)
    assert sorted(p.stem for p in (out / "curves").iterdir()) == sorted(safe_video_id(n) for n in HOSTILE)
    assert sorted(json.loads((out / "config.json").read_text())["videos"]) == sorted(map(safe_video_id, HOSTILE))
    chosen = CliRunner().invoke(main, [str(cache), "--actions", "pole vault", "--videos", "my clip,what?",
                                       "--out", str(tmp_path / "two"), "--jobs", "1", "--no-progress"])
    assert chosen.exit_code == 0, chosen.output
    assert set(json.loads((tmp_path / "two" / "detections.json").read_text())["results"]) == {"my clip", "what?"}


def test_adapt_reports_a_video_under_the_manifests_key_when_that_is_the_cache_id_of_a_long_name(tmp_path):
    from conftest import write_toy_world
    from t3al.adapt.cli import main as adapt_main
    from t3al.cache import CacheReader

    long_name = "a very long name " + "x" * 213
    key = safe_video_id(long_name)  # the manifest lists the video by its cache id
    actions = {f"v{i}": (120, 30, 70, i % 2) for i in range(3)} | {key: (120, 20, 60, 1)}
    cache = write_toy_world(tmp_path, ["Jump", "Throw"], actions, [["Jump", "Throw"]])
    record = CacheReader(cache).video(key)
    writer = CacheWriter(cache, CacheInfo(model=ModelIdentity("test-model", "random"), feature_dtype="float32"))
    writer.video_path(key).unlink()
    record.name = long_name
    writer.write_video(record)
    result = CliRunner().invoke(adapt_main, [str(cache), "--out", str(tmp_path / "out"), "--split-index", "0",
                                             "--jobs", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert key in json.loads((tmp_path / "out" / "split_0" / "detections.json").read_text())["results"]
