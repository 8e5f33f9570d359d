"""The Python API gives the command lines' results: ``t3al.extract.extract_folder`` as
``t3al-extract run``, ``t3al.localize.localize`` as ``t3al-localize``, with errors as exceptions."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import synthetic_features, write_tiny_cache
from t3al.cache import CacheReader
from t3al.extract import ExtractError, ExtractUsageError, extract_folder
from t3al.extract.cli import main as extract_main
from t3al.localize import Detection, LocalizeError, LocalizeUsageError, localize
from t3al.localize.cli import main as localize_main

COCA = "t3al_test_tiny_coca"
CLASSES = ["pole vault", "high jump"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    from extract_helpers import make_video

    folder = tmp_path_factory.mktemp("videos")
    make_video(folder / "clip.mp4", frames=20, rate="10")
    return folder


def _same_cache(a: Path, b: Path) -> None:
    first, second = CacheReader(a), CacheReader(b)
    assert first.video_ids() == second.video_ids() == ["clip"]
    assert first.head().class_names == second.head().class_names == CLASSES
    np.testing.assert_array_equal(first.head().prompt_features, second.head().prompt_features)
    one, two = first.video("clip"), second.video("clip")
    np.testing.assert_array_equal(one.features, two.features)
    np.testing.assert_array_equal(one.timestamps, two.timestamps)
    np.testing.assert_array_equal(one.caption_features, two.caption_features)
    assert one.caption_texts == two.caption_texts and len(one.caption_texts) == 2


def test_extract_folder_writes_the_cache_the_command_writes(models, videos, tmp_path):
    folder, checkpoints = models
    options = dict(model=COCA, pretrained=str(checkpoints[COCA]), model_configs=[str(folder)], device="cpu",
                   caption_fps=1.0, caption_length=6, batch_size=8)
    done = extract_folder(videos, tmp_path / "api", classes=CLASSES, **options)
    assert (done.summary.done, done.failed, done.entries, done.total) == (["clip"], 0, 1, 1)
    assert done.lines() == [f"t3al-extract: {done.summary.line()} (shard 0/1: 1 of the folder's 1 entries) -> "
                            f"{tmp_path / 'api'}"]
    result = CliRunner().invoke(extract_main, [
        str(videos), str(tmp_path / "cli"), "--model", COCA, "--pretrained", str(checkpoints[COCA]),
        "--model-config", str(folder), "--device", "cpu", "--caption-fps", "1", "--caption-length", "6",
        "--batch-size", "8", "--classes", ", ".join(CLASSES)])
    assert result.exit_code == 0, result.output
    _same_cache(tmp_path / "api", tmp_path / "cli")


def test_extract_folder_errors_are_exceptions_with_the_commands_messages(tmp_path):
    with pytest.raises(ExtractError, match="no such folder"):
        extract_folder(tmp_path / "nowhere", tmp_path / "cache")
    (tmp_path / "videos").mkdir()
    with pytest.raises(ExtractUsageError) as error:
        extract_folder(tmp_path / "videos", tmp_path / "cache", shard="3/2")
    assert error.value.option == "--shard"
    with pytest.raises(ExtractError, match="no files to extract"):
        extract_folder(tmp_path / "videos", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def _cache(tmp_path: Path) -> Path:
    """Two videos: v1 holds class 0 on frames 30-70, v2 class 1 on frames 10-50 (120 frames each)."""
    return write_tiny_cache(tmp_path / "cache", {"v1": synthetic_features(120, actions=((30, 70, 0),), seed=1),
                                                 "v2": synthetic_features(120, actions=((10, 50, 1),), seed=2)},
                            CLASSES, fps=10.0, distractors=True)


@pytest.mark.parametrize("rule", [[], ["--closed-world"]])
def test_localize_gives_the_commands_detections_and_writes_them_alike(tmp_path, rule):
    cache = _cache(tmp_path)
    result = localize(cache, CLASSES, out=tmp_path / "api", jobs=1, thumbnails=0, closed_world=bool(rule))
    command = CliRunner().invoke(localize_main, [str(cache), "--actions", ", ".join(CLASSES), "--out",
                                                 str(tmp_path / "cli"), "--jobs", "1", "--no-progress",
                                                 "--thumbnails", "0", *rule])
    assert command.exit_code == 0, command.output
    for name in ("detections.json", "detections.csv", "config.json") + (() if rule else ("presence.csv",)):
        assert (tmp_path / "api" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    assert (tmp_path / "api" / "index.html").is_file() and result.folder == tmp_path / "api"
    document = json.loads((tmp_path / "cli" / "detections.json").read_text())
    assert result.detections == [Detection(video, item["label"], item["segment"][0], item["segment"][1],
                                           item["score"]) for video, items in document["results"].items()
                                 for item in items]
    assert len(result.detections) == result.run.document["n_detections"] > 0
    assert result.presences == document.get("presence") and (result.presences is None) == bool(rule)
    result.write_json(tmp_path / "again.json")
    result.write_csv(tmp_path / "again.csv")
    result.write_viewer(tmp_path / "page" / "index.html", thumbnails=0)
    assert (tmp_path / "again.json").read_bytes() == (tmp_path / "cli" / "detections.json").read_bytes()
    assert (tmp_path / "again.csv").read_bytes() == (tmp_path / "cli" / "detections.csv").read_bytes()
    assert "t3al-localize: " + result.spec.name in (tmp_path / "page" / "index.html").read_text(encoding="utf-8")


def test_localize_takes_the_actions_as_one_string_and_reports_notes(tmp_path):
    notes: list[str] = []
    result = localize(_cache(tmp_path), "pole vault", out=tmp_path / "run", jobs=1, thumbnails=0,
                      settings={"labels_per_video": 2}, closed_world=True, note=notes.append)
    assert result.spec.classes == ("pole vault",)
    assert notes == ["note: --labels-per-video 2 is more than the 1 action(s): each video gets at most 1 label(s)"]


def test_localize_errors_are_exceptions(tmp_path):
    cache = _cache(tmp_path)
    with pytest.raises(LocalizeUsageError, match="no actions to localize"):
        localize(cache, [])
    with pytest.raises(LocalizeUsageError, match="leave out --presence-threshold"):
        localize(cache, CLASSES, closed_world=True, settings={"presence_threshold": 0.5})
    with pytest.raises(LocalizeUsageError, match="the open set .* --closed-world .*: protocol online has no open-set"):
        localize(tmp_path / "no videos", CLASSES, settings={"protocol": "online"})
    assert not (tmp_path / "no videos").exists()  # refused before stage one
    with pytest.raises(LocalizeError, match="--videos: not in cache"):
        localize(cache, CLASSES, videos=["v9"], out=tmp_path / "x", jobs=1)
    assert not (tmp_path / "x").exists()
