"""`t3al-adapt` end to end on a cache and manifest written by the test."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from t3al.adapt.cli import main
from t3al.cache import CacheInfo, CacheReader, CacheWriter, ModelIdentity, VideoRecord
from t3al.manifests import Manifest

from conftest import write_toy_world

CLASSES = ["Jump", "Throw", "Swim", "Run"]
FPS = 10.0


def _world(tmp_path, broken: str | None = None):
    """Eight videos, each with one action of one class; splits of two unseen classes."""
    actions = {f"v{i}": (240, 40 + 5 * i, 120 + 5 * i, i % 4) for i in range(8)}
    return write_toy_world(tmp_path, CLASSES, actions, [["Jump", "Throw"], ["Swim", "Run"]], FPS, broken)


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args] + ["--no-progress"], catch_exceptions=False)


def test_adapt_writes_detections_curves_and_results(tmp_path):
    cache = _world(tmp_path)
    out = tmp_path / "out"
    result = _invoke(cache, "--split", "75_25", "--out", out, "--steps", "3")
    assert result.exit_code == 0, result.output
    assert "t3al_steps=3_" in result.output and "mAP@0.5" in result.output
    document = json.loads((out / "results.json").read_text())
    assert [s["index"] for s in document["splits"]] == [0, 1]
    assert len(document["mean"]["map"]) == 3 and np.isfinite(document["mean"]["avg"])
    assert document["run"]["config"]["steps"] == 3 and document["run"]["cache"]["model"] == "test-model|random|"
    detections = json.loads((out / "split_0" / "detections.json").read_text())["results"]
    assert set(detections) <= {"v0", "v1", "v4", "v5"}  # split 0 evaluates the Jump and Throw videos
    for items in detections.values():
        for item in items:
            assert 0.0 <= item["segment"][0] < item["segment"][1] <= 24.0 and 0 < item["score"] <= 1
            assert item["label"] in ("Jump", "Throw")
    curve = np.load(out / "split_0" / "curves" / "v0.npz")
    assert curve["similarity"].shape == (240,) and str(curve["pseudo_label"]) == "Jump"


def test_clean_synthetic_actions_are_found_well(tmp_path):
    cache = _world(tmp_path)
    result = _invoke(cache, "--out", tmp_path / "out", "--steps", "0", "--split-index", "0")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["splits"][0]["map"][0] > 90.0  # mAP@0.3 on actions drawn to be obvious


def test_a_broken_video_is_reported_and_the_split_goes_on(tmp_path):
    cache = _world(tmp_path, broken="v0")
    result = _invoke(cache, "--out", tmp_path / "out", "--steps", "1", "--split-index", "0")
    assert result.exit_code == 1
    assert "video v0: 1 frame feature(s) contain NaN" in result.output
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["splits"][0]["problems"] == [{"video": "v0", "reason": "1 frame feature(s) contain NaN or infinity"}]
    assert _invoke(cache, "--out", tmp_path / "out", "--steps", "1", "--split-index", "0",
                   "--allow-failures").exit_code == 0


def test_a_class_without_prompt_is_a_clear_error(tmp_path):
    cache = _world(tmp_path)
    manifest = Manifest.load(tmp_path / "manifest.json")
    manifest.classes.append("Dance")
    manifest.splits["75_25"][0] = ["Jump", "Dance"]
    manifest.save(tmp_path / "other.json")
    result = _invoke(cache, "--manifest", tmp_path / "other.json", "--out", tmp_path / "out", "--split-index", "0")
    assert result.exit_code == 1 and "no class prompt for Dance" in result.output


def test_missing_cache_and_bad_values_are_one_line_errors(tmp_path):
    result = _invoke(tmp_path / "nowhere")
    assert result.exit_code == 1 and "no such cache directory" in result.output
    cache = _world(tmp_path)
    result = _invoke(cache, "--k", "1")
    assert result.exit_code == 1 and "k must be a number >= 2" in result.output


def test_naive_baseline_runs_from_the_same_cache(tmp_path):
    cache = _world(tmp_path)
    result = _invoke(cache, "--method", "naive", "--out", tmp_path / "naive", "--split-index", "1")
    assert result.exit_code == 0, result.output
    assert "naive_" in result.output


def test_features_of_the_wrong_width_are_a_problem_naming_the_video(tmp_path):
    cache = _world(tmp_path)
    writer = CacheWriter(cache, CacheInfo(model=ModelIdentity("test-model", "random"), feature_dtype="float32"))
    writer.write_video(VideoRecord("v0", np.ones((50, 5), dtype=np.float32), np.arange(50) / FPS, FPS))
    result = _invoke(cache, "--out", tmp_path / "out", "--steps", "1", "--split-index", "0")
    assert result.exit_code == 1
    assert "video v0: features have width 5, the head's visual_proj expects 8" in result.output


def test_videos_stage_one_kept_despite_decode_warnings_are_named_in_a_note(tmp_path):
    cache = _world(tmp_path)
    CacheWriter(cache, CacheReader(cache).info).record_failure("v3", "/x/v3.mp4", "decoder: partial file", kept=True)
    result = _invoke(cache, "--split", "75_25", "--split-index", "0", "--out", tmp_path / "out", "--steps", "1")
    assert result.exit_code == 0, result.output
    assert "note: 1 cached video(s) may be partial" in result.output and ": v3; reasons in" in result.output


def _rewrite_timestamps(cache, video_id: str, timestamps: np.ndarray) -> None:
    reader = CacheReader(cache)
    record = reader.video(video_id)
    record.timestamps = timestamps
    CacheWriter(cache, reader.info).write_video(record)


@pytest.mark.parametrize("defect, reason", [("nan", "timestamps are not all finite numbers (frame 7)"),
                                            ("decreasing", "timestamps decrease at frame 8 (0.650 s after 0.700 s)")])
def test_a_video_with_bad_timestamps_is_that_videos_problem_only(tmp_path, defect, reason):
    cache = _world(tmp_path)
    times = np.arange(240) / FPS
    if defect == "nan":
        times[7] = np.nan
    else:
        times[8] = 0.65
    _rewrite_timestamps(cache, "v0", times)
    result = _invoke(cache, "--out", tmp_path / "out", "--steps", "1", "--split-index", "0")
    assert result.exit_code == 1 and f"video v0: {reason}" in result.output
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["splits"][0]["problems"] == [{"video": "v0", "reason": reason}]
    detected = json.loads((tmp_path / "out" / "split_0" / "detections.json").read_text())["results"]
    assert "v0" not in detected and {"v1", "v4", "v5"} <= set(detected)


@pytest.mark.parametrize("option, value, message", [("--jobs", "0", "--jobs must be at least 1, got 0"),
                                                     ("--jobs", "-3", "--jobs must be at least 1, got -3"),
                                                     ("--lr", "nan", "lr must be a number >= 0.0, got nan"),
                                                     ("--beta", "nan", "beta must be in [-1, 1] (a cosine threshold), got nan"),
                                                     ("--weight-decay", "inf", "weight_decay must be a number >= 0.0"),
                                                     ("--threshold", "nan", "threshold must be a finite number"),
                                                     ("--naive-threshold", "nan", "naive_threshold must be")])
def test_bad_numbers_are_one_line_errors(tmp_path, option, value, message):
    cache = _world(tmp_path)
    result = CliRunner().invoke(main, [str(cache), "--out", str(tmp_path / "out"), option, value, "--no-progress"])
    assert result.exit_code in (1, 2) and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", ["{oops", "[]", '"cache"', '{"schema_version": 1, "model": {"name": "m"}, '
                                                            '"preprocess": "big"}'])
def test_a_malformed_cache_json_is_one_line(tmp_path, content):
    cache = _world(tmp_path)
    (cache / "cache.json").write_text(content)
    result = CliRunner().invoke(main, [str(cache), "--no-progress"])
    assert result.exit_code == 1 and "cache.json" in result.output and "Traceback" not in result.output


def test_freezad_runs_as_a_method_with_its_own_settings_and_logit_scores(tmp_path):
    cache = _world(tmp_path)
    out = tmp_path / "out"
    result = _invoke(cache, "--method", "freezad", "--split", "75_25", "--out", out)
    assert result.exit_code == 0, result.output
    # the row is the run name: the method alone, since every setting is the method's own
    assert re.search(r"^freezad_[0-9a-f]{6} ", result.output, re.M) and "unpublished" not in result.output
    config = json.loads((out / "results.json").read_text())["run"]["config"]
    assert (config["method"], config["steps"], config["scoring"], config["suppression"]) == ("freezad", 0, "logoic",
                                                                                            False)
    scores = [item["score"] for items in json.loads((out / "split_0" / "detections.json").read_text())["results"]
              .values() for item in items]
    assert scores and max(scores) > 1.0  # LogOIC x actionness is in logit units, not a probability


def test_adazad_results_say_its_optimiser_settings_are_unpublished(tmp_path):
    cache = _world(tmp_path)
    result = _invoke(cache, "--method", "adazad", "--steps", "2", "--split-index", "0", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert re.search(r"^adazad_steps=2_[0-9a-f]{6} ", result.output, re.M)
    assert "optimiser settings and step count are unpublished" in result.output
    assert "unpublished" in json.loads((tmp_path / "out" / "results.json").read_text())["run"]["note"]


def test_a_named_tiou_set_replaces_the_manifests_thresholds_and_is_printed(tmp_path):
    cache = _world(tmp_path)
    out = tmp_path / "out"
    result = _invoke(cache, "--steps", "0", "--split-index", "0", "--tiou", "activitynet-public", "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "results.json").read_text())["tiou"] == [0.5, 0.75, 0.95]
    assert "tIoU set activitynet-public: 0.5, 0.75, 0.95" in result.output
    default = _invoke(cache, "--steps", "0", "--split-index", "0", "--out", tmp_path / "default")
    assert "tIoU set custom: 0.3, 0.5, 0.7" in default.output  # the toy manifest's own thresholds


def test_a_video_failing_in_two_splits_is_one_failed_video(tmp_path):
    actions = {f"v{i}": (240, 40 + 5 * i, 120 + 5 * i, i % 4) for i in range(8)}
    cache = write_toy_world(tmp_path, CLASSES, actions, [["Jump", "Throw"], ["Jump", "Swim"]], FPS, broken="v0")
    result = _invoke(cache, "--out", tmp_path / "out", "--steps", "0")
    assert result.exit_code == 1
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [len(s["problems"]) for s in document["splits"]] == [1, 1]  # v0 (Jump) is in both splits
    assert [line for line in result.output.splitlines() if line.startswith("failed:")] == [
        "failed: video v0: 1 frame feature(s) contain NaN or infinity"]
    assert "1 video(s) failed; rerun with --allow-failures to accept" in result.output


def test_a_device_without_memory_for_one_video_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    from t3al.adapt.algorithm import adapter

    def no_memory(*args):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(adapter, "_adapt_batch", no_memory)
    cache = _world(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [str(cache), "--out", str(out), "--steps", "2", "--device", "cpu", "--jobs", "1",
                                       "--no-progress"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "out of memory adapting video" in result.output and "use fewer --jobs" in result.output
    assert not out.exists()
