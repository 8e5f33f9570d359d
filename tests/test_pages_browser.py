"""The pages in a real browser: the viewer and the report open in headless Chromium, render their
content without a JavaScript error, and give a screenshot."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import synthetic_features, write_tiny_cache
from t3al.evaluate.cli import main as evaluate_main
from t3al.localize.cli import main as localize_main
from test_report import out_dir  # noqa: F401  (the fixture: a t3al-adapt output folder written by hand)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
TIMEOUT_S = 120


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; skipped when missing, but a failure in CI (T3AL_SHARED set), where .ci/run installs it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("T3AL_SHARED"):
            pytest.fail("chromium is not installed (.ci/run installs it: apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return found


def browse(chromium: str, page: Path, profile: Path, screenshot: Path, fragment: str = "") -> str:
    """The page's DOM after its scripts ran (opened at ``#fragment`` when given), and a screenshot of it."""
    common = [chromium, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000"]
    address = page.resolve().as_uri() + (f"#{fragment}" if fragment else "")
    dom = subprocess.run([*common, "--dump-dom", address], capture_output=True, text=True,
                         timeout=TIMEOUT_S, check=True).stdout
    subprocess.run([*common, "--window-size=1100,1300", f"--screenshot={screenshot}", address],
                   capture_output=True, timeout=TIMEOUT_S, check=True)
    return dom


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_viewer_shows_every_video_and_detection_without_script_errors(chromium, tmp_path):
    videos = {f"v{i}": synthetic_features(120, actions=((20 + 5 * i, 70, i % 2),), seed=i) for i in range(3)}
    cache = write_tiny_cache(tmp_path / "cache", videos, ["pole vault", "high <jump>"], fps=10.0, distractors=True)
    out = tmp_path / "run"
    result = CliRunner().invoke(localize_main, [str(cache), "--actions", "pole vault, high <jump>", "--out", str(out),
                                                "--jobs", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "detections.json").read_text())["results"]
    dom = browse(chromium, out / "index.html", tmp_path / "profile", tmp_path / "viewer.png")
    root = re.search(r"<html[^>]*>", dom).group(0)  # the page's script marks it ready, its error hook records errors
    assert 'data-ready="1"' in root and "data-errors" not in root
    assert sorted(re.findall(r'<section class="video" data-video="([^"]+)"', dom)) == ["v0", "v1", "v2"]
    assert dom.count('class="detection"') == sum(len(items) for items in results.values()) > 0
    assert "page 1 of 1 (3 of 3 videos)" in dom and "high &lt;jump&gt;" in dom
    assert dom.count('class="caption"') > 0 and dom.count("<polyline") == 3
    assert "Source video not found" in dom  # the tiny cache records no source file
    assert _png_size(tmp_path / "viewer.png") == (1100, 1300)


def test_report_renders_tables_and_plots_in_the_browser(chromium, out_dir, tmp_path):  # noqa: F811
    out, manifest = out_dir
    result = CliRunner().invoke(evaluate_main, ["report", str(out), "--manifest", str(manifest), "--plots", "2"])
    assert result.exit_code == 0, result.output
    dom = browse(chromium, out / "report" / "index.html", tmp_path / "profile", tmp_path / "report.png")
    assert dom.count("<table>") == 3 and "mean ± std" in dom and "<script" not in dom
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', dom)) == 5
    assert re.findall(r'<h2 id="split-(\d)">', dom) == ["0", "1"]
    assert _png_size(tmp_path / "report.png") == (1100, 1300)


def test_a_script_error_in_the_viewer_is_recorded_in_the_page(chromium, tmp_path):
    """The check above can fail: a view the script cannot draw (a score that is not a number) leaves
    the page not ready and its error in the root's data-errors."""
    from t3al.localize.viewer import write_viewer

    view = {"id": "v", "duration": 10.0, "source": None, "missing": "gone.mp4", "captions": [],
            "detections": [[1.0, 2.0, "not a number", 0, []]], "curves": []}
    page = write_viewer(tmp_path / "index.html", [view], ["a"], "broken", [])
    root = re.search(r"<html[^>]*>", browse(chromium, page, tmp_path / "profile", tmp_path / "shot.png")).group(0)
    assert "data-errors=" in root and "toFixed" in root and "data-ready" not in root


def _presence_page(tmp_path: Path) -> Path:
    """Four videos, two actions, threshold 0.5: v-low holds neither, v-mid and v-high one each, v-both both."""
    from t3al.localize.viewer import write_viewer

    def view(video, presence, detections, curves=()):
        return {"id": video, "duration": 10.0, "source": None, "missing": "gone.mp4", "captions": [],
                "detections": detections, "curves": list(curves), "presence": presence}

    rising = [0.0, 5.0, 10.0], [0.1, 0.9, 0.2]
    views = [view("v-mid", [0.6, 0.1], [[1.0, 2.0, 0.3, 0, []]], [[0, *rising]]),
             view("v-low", [0.2, 0.4], [], [[1, *rising]]),
             view("v-high", [0.1, 0.9], [[3.0, 5.0, 0.45, 1, []]]),
             view("v-both", [0.8, 0.7], [[1.0, 3.0, 0.8, 0, []]])]
    return write_viewer(tmp_path / "index.html", views, ["pole vault", "high jump"], "open set", [], 0.5)


def test_viewer_shows_each_videos_presences_and_says_when_none_passed(chromium, tmp_path):
    dom = browse(chromium, _presence_page(tmp_path), tmp_path / "profile", tmp_path / "shot.png")
    root = re.search(r"<html[^>]*>", dom).group(0)
    assert 'data-ready="1"' in root and "data-errors" not in root
    cards = re.findall(r'<section class="video" data-video="([^"]+)">(.*?)</section>', dom, re.S)
    assert [video for video, _ in cards] == ["v-mid", "v-low", "v-high", "v-both"]  # run order by default
    text = dict(cards)
    assert "none of the named actions" in text["v-low"] and "none of the named actions" not in text["v-mid"]
    assert re.findall(r'class="presence present" data-label="([^"]+)"', text["v-mid"]) == ["pole vault"]
    assert "pole vault 0.600" in text["v-mid"] and "high jump 0.100" in text["v-mid"]
    # the hover text of a detection gives the combined score and its two factors
    assert "score 0.450 = presence 0.900 × segment 0.500" in text["v-high"]
    # the curve of an action that is not present is drawn faint and says why it has no detections
    assert re.findall(r'<polyline[^>]*class="absent"[^>]*>', text["v-low"])
    assert "(not present: no detections)" in text["v-low"]
    assert 'class="absent"' not in text["v-mid"] and "pole vault: frame score</title>" in text["v-mid"]
    assert 'id="open-set">' in dom  # the presence filter and sort are shown (not hidden) in an open-set run


def test_viewer_sorts_and_filters_by_presence(chromium, tmp_path):
    page = _presence_page(tmp_path)
    order = lambda dom: re.findall(r'<section class="video" data-video="([^"]+)"', dom)  # noqa: E731
    assert order(browse(chromium, page, tmp_path / "p1", tmp_path / "s1.png", "sort=presence")) == [
        "v-high", "v-both", "v-mid", "v-low"]  # by each video's highest presence
    assert order(browse(chromium, page, tmp_path / "p2", tmp_path / "s2.png", "sort=presence&action=0")) == [
        "v-both", "v-mid"]  # the videos with pole vault, by its presence
    assert order(browse(chromium, page, tmp_path / "p3", tmp_path / "s3.png", "presence=none")) == ["v-low"]
    dom = browse(chromium, page, tmp_path / "p4", tmp_path / "s4.png", "presence=present")
    assert order(dom) == ["v-mid", "v-high", "v-both"] and "(3 of 4 videos)" in dom
