"""`t3al-localize --live`: a demo video played into a named pipe at its frame rate (``ffmpeg -re``)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from t3al.demo.model import CHECKPOINT, MODEL_NAME
from t3al.demo.world import generate_world
from t3al.extract.ffmpeg_frames import ffmpeg_binary
from t3al.localize.cli import main
from t3al.localize.live import live_video_id

pytestmark = pytest.mark.slow


def _watch(path, consumer, producer, timeout: float = 400.0):
    """Poll ``path`` until ``consumer`` exits: each change of its text with the wall time it was
    seen, and the wall time ``producer`` exited."""
    seen, producer_end, started = [], None, time.monotonic()
    while consumer.poll() is None and time.monotonic() - started < timeout:
        if producer_end is None and producer.poll() is not None:
            producer_end = time.monotonic()
        text = path.read_text() if path.exists() else ""
        if not seen or text != seen[-1][1]:
            seen.append((time.monotonic(), text))
        time.sleep(0.05)
    if producer_end is None:
        producer.wait(timeout=30)
        producer_end = time.monotonic()
    seen.append((time.monotonic(), path.read_text() if path.exists() else ""))
    return seen, producer_end


def test_a_stream_in_a_named_pipe_is_localized_while_it_plays(tmp_path):
    world = tmp_path / "world"
    generate_world(world, 7, 2, 2, (20.0, 20.0))
    manifest = json.loads((world / "manifest.json").read_text())
    feed = tmp_path / "feed"
    os.mkfifo(feed)
    out = tmp_path / "out"
    consumer = subprocess.Popen(
        [sys.executable, "-c", "from t3al.localize.cli import main; main()", "--live", str(feed), "--actions",
         ", ".join(manifest["classes"]), "--cache", str(tmp_path / "cache"), "--out", str(out), "--model", MODEL_NAME,
         "--pretrained", str(CHECKPOINT), "--extract-device", "cpu", "--caption-fps", "0", "--no-suppression",
         "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    playing = time.monotonic()  # the stream starts once the consumer opens the pipe: no earlier than this
    producer = subprocess.Popen([ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-re", "-i",
                                 str(world / "videos" / "world_7_000.mp4"), "-c", "copy", "-f", "mpegts", "-y",
                                 str(feed)])
    seen, producer_end = _watch(out / "detections.jsonl", consumer, producer)
    output = consumer.stdout.read().decode()
    assert consumer.wait() == 0, output
    texts = [text for _, text in seen]
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))  # only ever appended
    final = [json.loads(line) for line in texts[-1].splitlines()]
    assert final, output
    assert any(when < producer_end and text.strip() for when, text in seen)  # detections while it still played
    for item in final:
        first_seen = next(when for when, text in seen if json.dumps(item) in text)
        assert item["end"] <= item["emitted_at"] <= 20.0
        assert first_seen - playing >= item["end"] - 1.0  # not before its end was played (-re's first burst aside)
        assert item["video"] == live_video_id(str(feed)) == "feed"
    written = json.loads((out / "detections.json").read_text())["results"]["feed"]
    assert [(d["segment"], d["label"], d["score"]) for d in written] == \
        [([i["start"], i["end"]], i["label"], i["score"]) for i in final]
    assert (out / "index.html").is_file() and (tmp_path / "cache" / "videos" / "feed.h5").is_file()
    later = CliRunner().invoke(main, [str(tmp_path / "cache"), "--actions", ", ".join(manifest["classes"]),
                                      "--videos", "feed", "--protocol", "online", "--no-suppression", "--closed-world", "--out",
                                      str(tmp_path / "later"), "--thumbnails", "0", "--no-progress"])
    assert later.exit_code == 0, later.output  # the cached stream, localized offline later: the same detections
    assert json.loads((tmp_path / "later" / "detections.json").read_text())["results"]["feed"] == written


def test_a_signal_ends_the_stream_with_whole_lines_and_the_usual_outputs(tmp_path):
    world = tmp_path / "world"
    generate_world(world, 7, 2, 2, (20.0, 20.0))
    feed = tmp_path / "feed"
    os.mkfifo(feed)
    out = tmp_path / "out"
    consumer = subprocess.Popen(
        [sys.executable, "-c", "from t3al.localize.cli import main; main()", "--live", str(feed), "--actions",
         "BallBounce, SquareSpin", "--cache", str(tmp_path / "cache"), "--out", str(out), "--model", MODEL_NAME,
         "--pretrained", str(CHECKPOINT), "--extract-device", "cpu", "--caption-fps", "0", "--no-suppression",
         "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    producer = subprocess.Popen([ffmpeg_binary(), "-hide_banner", "-loglevel", "quiet", "-re", "-i",
                                 str(world / "videos" / "world_7_000.mp4"), "-c", "copy", "-f", "mpegts", "-y",
                                 str(feed)])
    lines = out / "detections.jsonl"
    started = time.monotonic()
    while not (lines.exists() and lines.read_text().strip()) and time.monotonic() - started < 300:
        time.sleep(0.05)
    consumer.send_signal(signal.SIGTERM)
    output = consumer.communicate(timeout=120)[0].decode()
    producer.wait(timeout=30)
    assert consumer.returncode == 0 and "stopped by a signal" in output, output
    emitted = [json.loads(line) for line in lines.read_text().splitlines()]  # every line whole JSON
    written = json.loads((out / "detections.json").read_text())["results"]["feed"]
    assert emitted and len(written) == len(emitted)
    assert all(item["emitted_at"] < 20.0 for item in emitted)


def test_live_needs_a_cache_and_no_folder_beside_it(tmp_path):
    result = CliRunner().invoke(main, ["--live", "x.ts", "--actions", "a"])
    assert result.exit_code == 2 and "--live needs --cache DIR" in result.output
    result = CliRunner().invoke(main, [str(tmp_path), "--live", "x.ts", "--actions", "a", "--cache", "c"])
    assert result.exit_code == 2 and "not both" in result.output
    result = CliRunner().invoke(main, ["--actions", "a"])
    assert result.exit_code == 2 and "or --live SOURCE" in result.output
    result = CliRunner().invoke(main, ["--live", "x.ts", "--actions", "a", "--cache", str(tmp_path / "c"), "--model",
                                       MODEL_NAME, "--pretrained", str(CHECKPOINT), "--extract-device", "cpu",
                                       "--caption-fps", "0"])
    assert result.exit_code == 1 and "suppression needs captions" in result.output
    result = CliRunner().invoke(main, ["--live", "x.ts", "--actions", "a", "--cache", "c", "--protocol", "reset"])
    assert result.exit_code == 2 and "leave out --protocol" in result.output


@pytest.mark.parametrize("source, video_id", [("/tmp/feed", "feed"), ("cam 1.ts", "cam_1"),
                                              ("rtsp://host:554/live/main", "main"),
                                              ("udp://127.0.0.1:1234", "127.0.0.1_1234")])
def test_a_stream_is_cached_under_its_stem_or_host(source, video_id):
    assert live_video_id(source) == video_id
