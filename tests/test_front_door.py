"""t3al-localize as a new user meets it (issue 25): one cache per folder, stage one's rates, progress
within a video, files that are not videos."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from t3al.cache import CacheReader
from t3al.extract import extract_folder
from t3al.extract.cli import main as extract_main
from t3al.extract.listing import VIDEO_SUFFIXES
from t3al.localize.cli import default_cache, main
from test_pages_browser import chromium  # noqa: F401  (the fixture)

COCA = "t3al_test_tiny_coca"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from extract_helpers import make_video

    return make_video(tmp_path_factory.mktemp("clip") / "my clip.mp4", frames=40, rate="10")


def _localize(models, folder: Path, *extra: str):
    model_folder, checkpoints = models
    return CliRunner().invoke(main, [str(folder), "--actions", "pole vault, high jump", "--model", COCA,
                                     "--pretrained", str(checkpoints[COCA]), "--model-config", str(model_folder),
                                     "--extract-device", "cpu", "--jobs", "1", "--no-progress", "--thumbnails", "0",
                                     "--closed-world", *extra])


def test_two_folders_of_one_name_get_two_caches_and_other_files_are_skipped_with_a_note(models, clip, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    for parent in ("a", "b"):
        folder = tmp_path / parent / "videos"
        folder.mkdir(parents=True)
        (folder / clip.name).symlink_to(clip)
        (folder / "readme.txt").write_text("my clips\n")
        result = _localize(models, folder)
        assert result.exit_code == 0, result.output
        assert "note: 1 file(s) skipped, not videos by their extension: readme.txt" in result.output
    caches = sorted((tmp_path / "caches").iterdir())
    assert caches == sorted([default_cache(tmp_path / "a" / "videos").resolve(),
                             default_cache(tmp_path / "b" / "videos").resolve()])
    assert all(len(CacheReader(cache).video_ids()) == 1 for cache in caches)
    assert all(CacheReader(cache).failures() == [] for cache in caches)


def test_stage_one_rates_are_options_with_cpu_defaults(models, clip, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / clip.name).symlink_to(clip)
    result = _localize(models, folder, "--cache", str(tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    info = CacheReader(tmp_path / "cache").info
    assert info.sampling["fps"] == 2.0 and info.captions["fps"] == 1.0
    record = CacheReader(tmp_path / "cache").video("my clip")
    assert record.n_frames == 8 and len(record.caption_texts) == 4  # 4 s of video at 2 frames and 1 caption per s
    faster = _localize(models, folder, "--cache", str(tmp_path / "other"), "--fps", "1", "--caption-fps", "0.5")
    assert faster.exit_code == 0, faster.output
    assert CacheReader(tmp_path / "other").video("my clip").n_frames == 4


def test_progress_names_the_video_being_extracted_and_how_far_into_it(models, clip, tmp_path):
    model_folder, checkpoints = models
    result = CliRunner().invoke(extract_main, [str(clip.parent), str(tmp_path / "cache"), "--model", COCA,
                                               "--pretrained", str(checkpoints[COCA]), "--model-config",
                                               str(model_folder), "--caption-fps", "0", "--batch-size", "10"])
    assert result.exit_code == 0, result.output
    shown = re.findall(r"my clip\.mp4: (\d+)(/\d+)? s", result.output)
    assert shown[0] == ("0", "") and ("1", "/4") in shown and ("3", "/4") in shown


def test_help_names_every_video_extension_and_imports_no_torch():
    import subprocess
    import sys

    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and all(suffix in result.output for suffix in VIDEO_SUFFIXES)
    code = "import sys; from t3al.localize.cli import main; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_the_viewer_shows_a_score_axis_the_model_and_the_cached_caption_count(chromium, tmp_path):
    import numpy as np

    from conftest import synthetic_features, write_tiny_cache
    from t3al.cache import CacheInfo, CacheWriter, ModelIdentity, VideoRecord
    from test_pages_browser import browse

    features = synthetic_features(120, actions=((30, 70, 0),), seed=1)
    cache = write_tiny_cache(tmp_path / "cache", {"v1": features}, ["pole vault", "high jump"], distractors=True)
    writer = CacheWriter(cache, CacheInfo(model=ModelIdentity("test-model", "random"), feature_dtype="float32"))
    writer.video_path("v1").unlink()
    frames = np.arange(0, 120, 2)  # 60 captions, in 3 runs of one text each
    writer.write_video(VideoRecord("v1", features, np.arange(120) / 10.0, 10.0, caption_frames=frames,
                                   caption_texts=["a"] * 20 + ["b"] * 20 + ["c"] * 20,
                                   caption_features=features[frames], duration=12.0))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [str(cache), "--actions", "pole vault, high jump", "--out", str(out),
                                       "--jobs", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    dom = browse(chromium, out / "index.html", tmp_path / "profile", tmp_path / "viewer.png")
    assert "model test-model, pretrained random" in dom and "test-model|random|" not in dom
    assert "60 caption(s) in 3 run(s) of one text" in dom
    view = json.loads(re.search(r'<script id="t3al-data" type="application/json">(.*?)</script>', dom, re.S).group(1))
    values = [v for curve in view["videos"][0]["curves"] for v in curve[2]]
    curves_svg = re.search(r'<svg[^>]*class="curves".*?</svg>', dom, re.S).group(0)
    ticks = re.findall(r'<text[^>]*class="axis"[^>]*>([-\d.]+)</text>', curves_svg)
    assert ticks == [f"{min(values):.2f}", f"{(min(values) + max(values)) / 2:.2f}", f"{max(values):.2f}"]
    assert ">score<" in curves_svg


def test_a_symbolic_link_loop_is_called_a_loop_not_dangling(tmp_path):
    import os

    from t3al.extract.listing import list_videos

    os.symlink(tmp_path / "b.mp4", tmp_path / "a.mp4")
    os.symlink(tmp_path / "a.mp4", tmp_path / "b.mp4")
    os.symlink(tmp_path / "gone.mp4", tmp_path / "c.mp4")
    reasons = {path.name: reason for _, path, reason in list_videos(tmp_path)[1]}
    assert reasons["a.mp4"].startswith("symbolic link loop") and reasons["b.mp4"].startswith("symbolic link loop")
    assert reasons["c.mp4"].startswith("dangling symbolic link")


def test_more_labels_per_video_than_actions_is_said(tmp_path):
    from conftest import synthetic_features, write_tiny_cache

    cache = write_tiny_cache(tmp_path / "cache", {"v1": synthetic_features(120, actions=((30, 70, 0),), seed=1)},
                             ["pole vault", "high jump"], distractors=True)
    result = CliRunner().invoke(main, [str(cache), "--actions", "pole vault, high jump", "--labels-per-video", "3",
                                       "--out", str(tmp_path / "run"), "--jobs", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert ("note: --labels-per-video 3 is more than the 2 action(s): each video gets at most 2 label(s)"
            in result.output)


def test_ctrl_c_in_localize_exits_130_and_leaves_no_run(tmp_path, monkeypatch):
    from conftest import synthetic_features, write_tiny_cache

    cache = write_tiny_cache(tmp_path / "cache", {"v1": synthetic_features(120, actions=((30, 70, 0),), seed=1)},
                             ["pole vault", "high jump"], distractors=True)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("t3al.adapt.engine.vocabulary.run_request", interrupted)
    result = CliRunner().invoke(main, [str(cache), "--actions", "pole vault", "--out", str(tmp_path / "run"),
                                       "--jobs", "1", "--no-progress"])
    assert result.exit_code == 130 and not (tmp_path / "run").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run")]


def test_a_run_lets_go_of_the_videos_it_extracted_before_it_waits_for_another_runs(models, tmp_path):
    """Two runs whose claims interleave (each took some of the folder's videos) must not wait for
    each other: while this run waits for "a", held by another run, its own "b" is already free."""
    import threading

    from filelock import FileLock, Timeout

    from extract_helpers import make_video

    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a", "b"):
        make_video(folder / f"{name}.mp4", frames=20, rate="10")
    cache = tmp_path / "cache"
    model_folder, checkpoints = models
    options = dict(model=COCA, pretrained=str(checkpoints[COCA]), model_configs=[str(model_folder)], device="cpu",
                   caption_fps=1.0, caption_length=6, batch_size=8, classes=["pole vault"])
    extract_folder(folder, cache, **options)  # the cache exists, without its videos
    for name in ("a", "b"):
        (cache / "videos" / f"{name}.h5").unlink()
    held, b_was_free = threading.Event(), []

    def other_run() -> None:  # holds "a" until this run has written "b", then checks that "b" is free
        with FileLock(cache / "videos" / ".a.h5.claim"):
            held.set()
            while not (cache / "videos" / "b.h5").exists():
                time.sleep(0.05)
            try:
                with FileLock(cache / "videos" / ".b.h5.claim", timeout=20):
                    b_was_free.append(True)
            except Timeout:
                b_was_free.append(False)

    other = threading.Thread(target=other_run)
    other.start()
    held.wait(10)
    done = extract_folder(folder, cache, **options)
    other.join(30)
    assert b_was_free == [True]
    assert sorted(done.summary.done) == ["a", "b"]  # "a" extracted once the other run let go without it


def test_two_runs_on_one_folder_extract_each_video_once(models, tmp_path):
    import subprocess
    import sys

    from extract_helpers import make_video

    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(3):
        make_video(folder / f"clip {i}.mp4", frames=40, rate="10")
    model_folder, checkpoints = models
    code = "import sys; from t3al.localize.cli import main; sys.exit(main())"
    runs = [subprocess.Popen([sys.executable, "-c", code, str(folder), "--actions", "pole vault", "--cache",
                              str(tmp_path / "cache"), "--out", str(tmp_path / f"run{i}"), "--model", COCA,
                              "--pretrained", str(checkpoints[COCA]), "--model-config", str(model_folder),
                              "--extract-device", "cpu", "--jobs", "1", "--no-progress", "--thumbnails", "0",
                              "--closed-world"],
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) for i in range(2)]
    outputs = [run.communicate(timeout=300)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    done = [int(re.search(r"t3al-extract: (\d+) done, (\d+) skipped", out).group(1)) for out in outputs]
    assert sum(done) == 3, outputs  # each video extracted by one run, reused by the other
    for i in range(2):
        assert len(json.loads((tmp_path / f"run{i}" / "detections.json").read_text())["results"]) == 3
    assert sorted(p.name for p in (tmp_path / "cache" / "videos").iterdir() if p.name.startswith(".")) == []
