"""Videos whatever their names: reported under their own names, played from the viewer (issue 25)."""
from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import synthetic_features, write_tiny_cache
from t3al.cache import CacheInfo, CacheWriter, ModelIdentity, VideoRecord, safe_video_id
from t3al.localize.cli import main
from test_pages_browser import FLAGS, TIMEOUT_S, chromium  # noqa: F401  (the fixture)

COCA = "t3al_test_tiny_coca"
HOSTILE = ["my clip", "clip#1", "100%25 done", "what?", "Sprung über Hürden 跳高", "quote's \"x\" <b>",
           "long " + "x" * 225]


def _named_cache(root: Path, names: list[str]) -> Path:
    """A tiny cache whose videos are known by ``names`` (their ids made safe, as stage one makes them)."""
    features = {name: synthetic_features(120, actions=((30, 70, i % 2),), seed=i) for i, name in enumerate(names)}
    cache = write_tiny_cache(root, {"first": features[names[0]]}, ["pole vault", "high jump"], fps=10.0,
                             distractors=True)
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
    document = json.loads((out / "detections.json").read_text())
    assert set(document["results"]) == set(document["presence"]) == set(HOSTILE)
    from t3al.evaluate import Detections
    assert set(Detections.read(out / "detections.csv").video.tolist()) == set(HOSTILE)
    assert sorted(p.stem for p in (out / "curves").iterdir()) == sorted(safe_video_id(n) for n in HOSTILE)
    assert sorted(json.loads((out / "config.json").read_text())["videos"]) == sorted(map(safe_video_id, HOSTILE))
    chosen = CliRunner().invoke(main, [str(cache), "--actions", "pole vault", "--videos", "my clip,what?",
                                       "--out", str(tmp_path / "two"), "--jobs", "1", "--no-progress"])
    assert chosen.exit_code == 0, chosen.output
    assert set(json.loads((tmp_path / "two" / "detections.json").read_text())["presence"]) == {"my clip", "what?"}


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


FILE_NAMES = ["my clip", "clip#1", "100%25 done", "what?", "Sprung über Hürden 跳高", "l" * 230]


@pytest.fixture(scope="module")
def hostile_folder(tmp_path_factory):
    """Small H.264 videos named with spaces, #, %, ?, non-ASCII letters and 230 characters."""
    from extract_helpers import make_video

    folder = tmp_path_factory.mktemp("hostile") / "videos"
    folder.mkdir()
    for i, name in enumerate(FILE_NAMES):
        make_video(folder / f"{name}.mp4", frames=30 + 5 * i, rate="10", size="64x48")
    return folder


def _localize_folder(models, folder, cache, *extra):
    model_folder, checkpoints = models
    return CliRunner().invoke(main, [str(folder), "--actions", "pole vault, high jump", "--cache", str(cache),
                                     "--model", COCA, "--pretrained", str(checkpoints[COCA]), "--model-config",
                                     str(model_folder), "--extract-device", "cpu", "--caption-fps", "1",
                                     "--jobs", "1", "--no-progress", "--thumbnails", "1", "--closed-world", *extra])


@pytest.fixture(scope="module")
def localized(models, hostile_folder, tmp_path_factory) -> Path:
    """The run folder of t3al-localize on the hostile folder (stage one with the tiny CoCa)."""
    root = tmp_path_factory.mktemp("localized")
    result = _localize_folder(models, hostile_folder, root / "cache", "--out", str(root / "run"))
    assert result.exit_code == 0, result.output
    return root / "run"


def test_a_folder_of_any_names_is_extracted_and_localized_under_each_name(hostile_folder, localized):
    out = localized
    assert set(json.loads((out / "detections.json").read_text())["results"]) == set(FILE_NAMES)
    page = (out / "index.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r'<script id="t3al-data" type="application/json">(.*?)</script>', page, re.S).group(1))
    assert sorted(v["id"] for v in data["videos"]) == sorted(FILE_NAMES)
    for video in data["videos"]:
        assert (out / unquote(video["source"])).resolve() == (hostile_folder / f"{video['id']}.mp4").resolve()


def test_sigterm_in_stage_one_stops_with_143_before_stage_two_and_a_rerun_completes(models, hostile_folder, tmp_path,
                                                                                  monkeypatch):
    from t3al.cache import CacheWriter as Writer

    write_video = Writer.write_video

    def killed_after_the_first(self, record):
        path = write_video(self, record)
        os.kill(os.getpid(), signal.SIGTERM)
        return path

    monkeypatch.setattr(Writer, "write_video", killed_after_the_first)
    monkeypatch.chdir(tmp_path)
    stopped = _localize_folder(models, hostile_folder, tmp_path / "cache")
    assert stopped.exit_code == 143 and "some videos failed" not in stopped.output
    assert len(list((tmp_path / "cache" / "videos").glob("*.h5"))) == 1 and not (tmp_path / "runs").exists()
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    again = _localize_folder(models, hostile_folder, tmp_path / "cache")
    assert again.exit_code == 0, again.output
    (run,) = (tmp_path / "runs" / "cache" / "localize").iterdir()
    assert set(json.loads((run / "detections.json").read_text())["results"]) == set(FILE_NAMES)


HARNESS = """<!DOCTYPE html><html><body><ul id="log"></ul>
<iframe id="viewer" src="run/index.html" width="1100" height="900"></iframe>
<script>
// Clicks each video's best detection in the viewer and notes whether its player then plays.
var log = document.getElementById("log");
function note(id, state) {
  var item = log.appendChild(document.createElement("li"));
  item.setAttribute("data-video", id); item.setAttribute("data-state", state);
}
function start() {  // once the viewer has drawn its page (data-ready), however early its frame loaded
  var page = document.getElementById("viewer").contentDocument;
  if (!page || page.documentElement.getAttribute("data-ready") !== "1") { setTimeout(start, 50); return; }
  page.querySelectorAll("section.video").forEach(function (section) {
    var id = section.getAttribute("data-video"), player = section.querySelector("video");
    var bar = section.querySelector(".detection"), done = false;
    function once(state) { if (!done) { done = true; note(id, state); } }
    if (!player || !bar) { once("no player"); return; }
    player.addEventListener("playing", function () { once("played"); });
    player.addEventListener("error", function () { once("error " + player.error.code); });
    bar.dispatchEvent(new MouseEvent("click", {bubbles: true}));
  });
}
start();
</script></body></html>
"""


def test_every_video_plays_from_the_viewer_in_chromium(chromium, localized, tmp_path):
    (localized.parent / "harness.html").write_text(HARNESS, encoding="utf-8")
    dom = subprocess.run([chromium, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
                          "--autoplay-policy=no-user-gesture-required", "--virtual-time-budget=15000", "--dump-dom",
                          (localized.parent / "harness.html").as_uri()],
                         capture_output=True, text=True, timeout=TIMEOUT_S, check=True).stdout
    states = {html.unescape(video): state for video, state in
              re.findall(r'<li data-video="([^"]*)" data-state="([^"]*)">', dom)}
    assert states == {name: "played" for name in FILE_NAMES}


def test_stage_two_warnings_name_the_video_as_its_file_is_named(tmp_path):
    name = "my clip #1"
    cache = _named_cache(tmp_path / "cache", [name])
    writer = CacheWriter(cache, CacheInfo(model=ModelIdentity("test-model", "random"), feature_dtype="float32"))
    writer.video_path(safe_video_id(name)).unlink()
    frames = np.tile(np.eye(8, dtype=np.float32)[0], (120, 1))  # every frame alike: a constant similarity curve
    writer.write_video(VideoRecord(safe_video_id(name), frames, np.arange(120) / 10.0, 10.0,
                                   caption_frames=np.arange(0, 120, 5), caption_texts=["c"] * 24,
                                   caption_features=frames[::5], duration=12.0, name=name))
    result = CliRunner().invoke(main, [str(cache), "--actions", "pole vault, high jump", "--out", str(tmp_path / "run"),
                                       "--closed-world", "--jobs", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: video {name}: constant similarity curve, no proposal"]
