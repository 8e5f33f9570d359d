"""t3al-localize: action names, stage two on a vocabulary without ground truth, outputs, viewer, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import synthetic_features, write_tiny_cache
from t3al.cache import CacheInfo, CacheWriter, ModelIdentity, VideoRecord
from t3al.evaluate.cli import main as evaluate_main
from t3al.localize.actions import ActionsError, parse_actions
from t3al.localize.cli import main

CLASSES = ["pole vault", "high jump", "Sprung über Hürden"]
FPS = 10.0


def _cache(tmp_path: Path, classes=CLASSES) -> Path:
    """Two videos: v1 holds class 0 on frames 30-70, v2 class 1 on frames 10-50 (120 frames each)."""
    videos = {"v1": synthetic_features(120, actions=((30, 70, 0),), seed=1),
              "v2": synthetic_features(120, actions=((10, 50, 1),), seed=2)}
    return write_tiny_cache(tmp_path / "cache", videos, classes, fps=FPS, distractors=True)


def _rewrite(cache: Path, record: VideoRecord) -> None:
    """Replace a cached video by ``record`` (captions chosen by the test)."""
    writer = CacheWriter(cache, CacheInfo(model=ModelIdentity("test-model", "random"), feature_dtype="float32"))
    writer.video_path(record.video_id).unlink()
    writer.write_video(record)


def _localize(*args: str):
    return CliRunner().invoke(main, [*args, "--jobs", "1", "--no-progress"])


def test_action_names_are_trimmed_and_repeats_and_empty_names_dropped_with_notes():
    actions = parse_actions(" pole  vault, high jump,, pole vault ,")
    assert actions.names == ["pole vault", "high jump"]
    assert actions.notes == ["2 empty action name(s) ignored", "repeated action name(s) localized once: pole vault"]


def test_action_names_come_from_text_then_file_and_keep_non_ascii(tmp_path):
    (tmp_path / "a.txt").write_text("\ufeffSprung über Hürden\n跳高\n\nhigh jump\n", encoding="utf-8")
    actions = parse_actions("high jump", tmp_path / "a.txt")
    assert actions.names == ["high jump", "Sprung über Hürden", "跳高"]
    assert actions.notes == ["1 empty action name(s) ignored", "repeated action name(s) localized once: high jump"]


@pytest.mark.parametrize("text", [None, "", " , ,"])
def test_no_action_names_is_an_error(text):
    with pytest.raises(ActionsError, match="no actions to localize"):
        parse_actions(text)


def test_localize_a_cache_writes_activitynet_results_read_back_by_evaluate(tmp_path):
    cache = _cache(tmp_path)
    out = tmp_path / "run"
    result = _localize(str(cache), "--actions", "pole vault, high jump", "--out", str(out), "--thumbnails", "0")
    assert result.exit_code == 0, result.output
    document = json.loads((out / "detections.json").read_text())
    assert document["version"] == "VERSION 1.3" and set(document["results"]) == {"v1", "v2"}
    assert document["external_data"]["used"] is True
    assert document["external_data"]["model"] == "test-model|random|"
    assert document["external_data"]["method"] == "t3al"
    for video, items in document["results"].items():
        for item in items:
            assert set(item) == {"label", "score", "segment"} and item["label"] in CLASSES[:2]
            assert 0 <= item["segment"][0] <= item["segment"][1] <= 11.9
    best = {v: max(items, key=lambda i: i["score"]) for v, items in document["results"].items()}
    assert best["v1"]["label"] == "pole vault" and best["v2"]["label"] == "high jump"
    header = (out / "detections.csv").read_text().splitlines()[0]
    assert header == "video-id,t-start,t-end,score,label"
    config = json.loads((out / "config.json").read_text())
    assert config["vocabulary"] == ["pole vault", "high jump"] and config["videos"] == ["v1", "v2"]
    assert config["config"]["method"] == "t3al" and sorted(p.name for p in (out / "curves").iterdir()) == [
        "v1.npz", "v2.npz"]
    (tmp_path / "gt.csv").write_text("video-id,t-start,t-end,label\nv1,3.0,6.9,pole vault\nv2,1.0,4.9,high jump\n")
    for detections in ("detections.json", "detections.csv"):
        scored = CliRunner().invoke(evaluate_main, ["score", str(out / detections), "-g", str(tmp_path / "gt.csv"),
                                                    "--tiou", "0.3", "--json", str(tmp_path / f"{detections}.out")])
        assert scored.exit_code == 0, scored.output
        assert json.loads((tmp_path / f"{detections}.out").read_text())["map"] == [100.0]


def test_localize_runs_the_chosen_videos_and_refuses_another_run_in_its_folder(tmp_path):
    cache = _cache(tmp_path)
    out = tmp_path / "run"
    first = _localize(str(cache), "--actions", "pole vault", "--videos", "v2", "--out", str(out))
    assert first.exit_code == 0, first.output
    assert set(json.loads((out / "detections.json").read_text())["results"]) <= {"v2"}
    again = _localize(str(cache), "--actions", "pole vault", "--videos", "v2", "--out", str(out))
    assert again.exit_code == 0 and "replaced the earlier results of the same configuration" in again.output
    other = _localize(str(cache), "--actions", "high jump", "--videos", "v2", "--out", str(out))
    assert other.exit_code == 1 and "holds another configuration's results" in other.output
    assert json.loads((out / "config.json").read_text())["vocabulary"] == ["pole vault"]
    missing = _localize(str(cache), "--actions", "pole vault", "--videos", "v9", "--out", str(tmp_path / "x"))
    assert missing.exit_code == 1 and "--videos: not in cache" in missing.output
    assert not (tmp_path / "x").exists()


def test_localize_default_folder_is_named_after_the_run(tmp_path, monkeypatch):
    cache = _cache(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = _localize(str(cache), "--actions", "pole vault", "--steps", "0")
    assert result.exit_code == 0, result.output
    runs = list((tmp_path / "runs" / "cache" / "localize").iterdir())
    assert [r.name for r in runs] == [json.loads((runs[0] / "config.json").read_text()) and runs[0].name]
    assert runs[0].name.startswith("t3al_steps=0_") and (runs[0] / "index.html").is_file()


def test_markup_and_non_ascii_in_names_and_captions_are_escaped_in_the_viewer(tmp_path):
    evil = "<script>alert(1)</script>"
    classes = [f"jump {evil}", "Sprung über Hürden"]
    features = synthetic_features(120, actions=((30, 70, 0),), seed=1)
    cache = write_tiny_cache(tmp_path / "cache", {"v1": features}, classes, fps=FPS, distractors=True)
    _rewrite(cache, VideoRecord("v1", features, np.arange(120) / FPS, FPS, caption_frames=np.array([0, 60]),
                                   caption_texts=[f"a caption {evil}", "über"], caption_features=features[[0, 60]],
                                   duration=12.0))
    (tmp_path / "names.txt").write_text("\n".join(classes) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    result = _localize(str(cache), "--actions-file", str(tmp_path / "names.txt"), "--out", str(out))
    assert result.exit_code == 0, result.output
    page = (out / "index.html").read_text(encoding="utf-8")
    assert evil not in page and "alert(1)" in page  # present, only as escaped text
    assert "Sprung über Hürden" in page and "\\u003cscript\\u003e" in page
    labels = {i["label"] for items in json.loads((out / "detections.json").read_text())["results"].values()
              for i in items}
    assert labels <= set(classes)


def test_suppression_without_captions_names_the_option_and_writes_nothing(tmp_path):
    cache = _cache(tmp_path)
    for video in ("v1", "v2"):
        _rewrite(cache, VideoRecord(video, synthetic_features(120), np.arange(120) / FPS, FPS, duration=12.0))
    out = tmp_path / "run"
    result = _localize(str(cache), "--actions", "pole vault", "--out", str(out))
    assert result.exit_code == 1 and not out.exists()
    assert "suppression needs captions" in result.output and "--no-suppression" in result.output
    assert len(result.output.strip().splitlines()) == 1
    fine = _localize(str(cache), "--actions", "pole vault", "--out", str(out), "--no-suppression")
    assert fine.exit_code == 0, fine.output


@pytest.mark.parametrize("args, message", [
    ([], "no actions to localize"),
    (["--actions", " , "], "no actions to localize"),
    (["--actions", "run, \u200b"], "action name '\\u200b' has no visible character"),
])
def test_bad_action_names_are_one_line_and_nothing_is_written(tmp_path, args, message):
    cache = _cache(tmp_path)
    before = sorted(p.relative_to(cache) for p in cache.rglob("*"))
    result = _localize(str(cache), *args, "--out", str(tmp_path / "run"))
    assert result.exit_code == 2 and message in result.output
    assert [line for line in result.output.splitlines() if line.startswith("Error")] == [
        line for line in result.output.splitlines() if message in line]
    assert not (tmp_path / "run").exists() and sorted(p.relative_to(cache) for p in cache.rglob("*")) == before


def test_a_folder_without_videos_is_one_line_and_nothing_is_written(tmp_path, monkeypatch):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("no videos here")
    monkeypatch.chdir(tmp_path)
    result = _localize(str(folder), "--actions", "pole vault")
    assert result.exit_code == 1 and "notes: no videos here" in result.output and "not a t3al cache" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]


def test_a_cache_of_another_model_is_refused_before_stage_one_writes(tmp_path, monkeypatch):
    from t3al.demo.model import CHECKPOINT, MODEL_NAME

    cache = _cache(tmp_path)
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"\0" * 64)  # never decoded: the cache is refused first
    before = sorted(p.relative_to(cache) for p in cache.rglob("*"))
    result = _localize(str(videos), "--actions", "pole vault", "--cache", str(cache), "--model", MODEL_NAME,
                       "--pretrained", str(CHECKPOINT), "--extract-device", "cpu")
    assert result.exit_code == 1 and "stage one:" in result.output and "test-model" in result.output
    assert sorted(p.relative_to(cache) for p in cache.rglob("*")) == before


def test_localize_batched_on_a_device_gives_the_per_video_detections(tmp_path):
    cache = _cache(tmp_path)
    runs = {}
    for name, extra in (("per_video", []), ("batched", ["--device", "cpu"])):
        result = _localize(str(cache), "--actions", "pole vault, high jump", "--out", str(tmp_path / name),
                           "--thumbnails", "0", *extra)
        assert result.exit_code == 0, result.output
        runs[name] = json.loads((tmp_path / name / "detections.json").read_text())["results"]
    assert runs["batched"].keys() == runs["per_video"].keys() and runs["per_video"]
    for video, items in runs["per_video"].items():
        assert [i["label"] for i in runs["batched"][video]] == [i["label"] for i in items]
        assert np.allclose([i["segment"] for i in runs["batched"][video]], [i["segment"] for i in items])
        assert np.allclose([i["score"] for i in runs["batched"][video]], [i["score"] for i in items], atol=1e-5)


def test_the_viewer_draws_the_curve_of_each_localized_label(tmp_path):
    from t3al.evaluate.results import read_curve
    from t3al.localize.viewer import video_view

    t = np.arange(10) / 2.0
    np.savez(tmp_path / "v.npz", timestamps=t, similarity=t, pseudo_label=np.array("a"),
             segments=np.array([[1.0, 2.0], [3.0, 4.5]]), labels=np.array(["a", "b"]), scores=np.array([0.5, 0.9]),
             curve_labels=np.array(["a", "b"]), curves=np.stack([t, 10 - t]))
    record = VideoRecord("v", np.ones((10, 2)), t, 2.0, caption_frames=np.array([0, 4, 6]),
                         caption_texts=["x", "x", "y"], caption_features=np.ones((3, 2)), duration=5.0)
    view = video_view(read_curve(tmp_path / "v.npz"), record, ["a", "b"], tmp_path, thumbnails=0)
    assert [c[0] for c in view["curves"]] == [0, 1] and view["curves"][1][2] == [10 - x for x in t.tolist()]
    assert view["detections"] == [[3.0, 4.5, 0.9, 1, []], [1.0, 2.0, 0.5, 0, []]]  # best first
    assert view["captions"] == [[0.0, 3.0, "x"], [3.0, 5.0, "y"]] and view["source"] is None


@pytest.mark.parametrize("args, message", [
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--beta", "2"], "beta must be in"),
    (["--caption-fps", "0"], "add --no-suppression"),
])
def test_bad_settings_are_refused_before_stage_one_runs(tmp_path, monkeypatch, args, message):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"\0" * 64)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [str(videos), "--actions", "pole vault", "--no-progress", *args])
    assert result.exit_code == 2 and message in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["videos"]


def test_localize_is_open_set_by_default_and_closed_world_on_request(tmp_path):
    videos = {"v1": synthetic_features(120, actions=((30, 70, 0),), seed=1),
              "v2": synthetic_features(120, actions=((10, 50, 2),), seed=2)}  # v2: a third, unnamed action
    cache = write_tiny_cache(tmp_path / "cache", videos, CLASSES, fps=FPS, distractors=True)
    opened = _localize(str(cache), "--actions", "pole vault, high jump", "--out", str(tmp_path / "open"),
                       "--thumbnails", "0")
    assert opened.exit_code == 0, opened.output
    assert "1 of 2 video(s) hold none of the named actions (presence below 0.5)" in opened.output
    document = json.loads((tmp_path / "open" / "detections.json").read_text())
    assert set(document["results"]) == {"v1"} and document["external_data"]["config"]["presence_threshold"] == 0.5
    assert document["presence"]["v1"]["pole vault"] > 0.99 and max(document["presence"]["v2"].values()) < 0.5
    assert (tmp_path / "open" / "presence.csv").read_text().splitlines()[0] == "video-id,label,presence"
    assert '"threshold": 0.5' in (tmp_path / "open" / "index.html").read_text(encoding="utf-8")
    closed = _localize(str(cache), "--actions", "pole vault, high jump", "--out", str(tmp_path / "closed"),
                       "--thumbnails", "0", "--closed-world")
    assert closed.exit_code == 0, closed.output
    document = json.loads((tmp_path / "closed" / "detections.json").read_text())
    assert set(document["results"]) == {"v1", "v2"} and "presence" not in document
    assert "presence_threshold" not in document["external_data"]["config"]
    assert not (tmp_path / "closed" / "presence.csv").exists()
    stricter = _localize(str(cache), "--actions", "pole vault, high jump", "--out", str(tmp_path / "strict"),
                         "--thumbnails", "0", "--presence-threshold", "1")
    assert stricter.exit_code == 0, stricter.output
    assert "2 of 2 video(s) hold none of the named actions (presence below 1)" in stricter.output
    (tmp_path / "strict.toml").write_text("presence_threshold = 1.0\n")  # a config file's threshold is kept
    configured = _localize(str(cache), "--actions", "pole vault, high jump", "--out", str(tmp_path / "configured"),
                           "--thumbnails", "0", "--config", str(tmp_path / "strict.toml"))
    assert "2 of 2 video(s) hold none of the named actions (presence below 1)" in configured.output


def test_a_cache_without_the_distractors_and_without_its_model_says_why_the_model_is_needed(tmp_path):
    videos = {"v1": synthetic_features(120, actions=((30, 70, 0),), seed=1)}
    cache = write_tiny_cache(tmp_path / "cache", videos, CLASSES, fps=FPS)  # the names, no distractor
    result = _localize(str(cache), "--actions", "pole vault", "--out", str(tmp_path / "run"))
    assert result.exit_code == 1 and "stage one: unknown model 'test-model'" in result.output
    assert "distractor actions whose prompts the cache lacks; --closed-world needs none" in result.output
    closed = _localize(str(cache), "--actions", "pole vault", "--out", str(tmp_path / "run"), "--closed-world")
    assert closed.exit_code == 0, closed.output  # no prompt to encode, no model loaded


def test_closed_world_and_a_presence_threshold_together_are_refused(tmp_path):
    result = _localize(str(_cache(tmp_path)), "--actions", "pole vault", "--closed-world", "--presence-threshold",
                       "0.5", "--out", str(tmp_path / "run"))
    assert result.exit_code == 2 and "--closed-world gives every video its most likely action" in result.output
    assert not (tmp_path / "run").exists()
