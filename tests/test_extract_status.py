"""`t3al-extract status`: every video of a cache being filled sorted into one state, with reasons."""
from __future__ import annotations

import json
import os
import time

import numpy as np
from click.testing import CliRunner

from t3al.cache import CacheInfo, CacheWriter, ModelIdentity, VideoRecord
from t3al.extract.cli import main
from t3al.extract.status import Entry, cache_status

from conftest import write_toy_world


def _record(video_id: str, source) -> VideoRecord:
    stat = source.stat()
    return VideoRecord(video_id, np.ones((3, 4), dtype=np.float32), np.arange(3) / 10.0, 10.0,
                       source_path=str(source), source_size=stat.st_size, source_mtime=stat.st_mtime)


def _job_array_midway(tmp_path):
    """A cache as jobs leave it midway: a done, b done but its video since re-encoded, c failed,
    d being written, e not started, f's writer killed an hour ago, and a file run will refuse."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a", "b", "c", "d", "e", "f", "bad name"):
        (videos / f"{name}.mp4").write_bytes(b"video " + name.encode())
    writer = CacheWriter(tmp_path / "cache", CacheInfo(ModelIdentity("m", "t"), feature_dtype="float32"))
    writer.record_failure("a", str(videos / "a.mp4"), "out of memory")  # a later rerun made it
    for video_id in ("a", "b"):
        writer.write_video(_record(video_id, videos / f"{video_id}.mp4"))
    (videos / "b.mp4").write_bytes(b"re-encoded, longer")
    writer.record_failure("c", str(videos / "c.mp4"), f"{videos / 'c.mp4'}: no video stream")
    (tmp_path / "cache" / "videos" / ".d.h5.k2j4.tmp").write_bytes(b"partial")
    killed = tmp_path / "cache" / "videos" / ".f.h5.x9q1.tmp"
    killed.write_bytes(b"partial")
    os.utime(killed, (time.time() - 3600, time.time() - 3600))
    return tmp_path / "cache", videos


def test_each_video_gets_one_state_and_its_reason(tmp_path):
    cache, videos = _job_array_midway(tmp_path)
    status = cache_status(cache, videos)
    assert status.counts() == {"done": 1, "stale": 1, "in_progress": 2, "failed": 1, "missing": 2}
    assert status.expected == 7
    assert [e.video_id for e in status.done] == ["a"]
    assert status.stale[0].video_id == "b" and "source changed since extraction (size 7 -> 18 bytes" in \
        status.stale[0].detail
    assert status.failed[0].video_id == "c" and status.failed[0].detail.endswith("c.mp4: no video stream")
    in_progress = {e.video_id: e.detail for e in status.in_progress}
    assert in_progress["d"].startswith("being written, last write 0 s ago")
    assert in_progress["f"].startswith("no write for 60 min: left by a stopped job")
    missing = {e.video_id: e.detail for e in status.missing}
    assert missing["e"] == "" and "invalid video id 'bad name'" in missing["bad name"]


def test_without_a_videos_folder_the_manifest_says_what_is_missing(tmp_path):
    actions = {f"v{i}": (40, 5, 20, 0) for i in range(3)}
    cache = write_toy_world(tmp_path, ["Jump", "Run"], actions, [["Jump"]])
    (cache / "videos" / "v1.h5").unlink()
    status = cache_status(cache)
    assert status.expected == 3 and status.counts()["done"] == 2
    assert status.missing == [Entry("v1")]


def test_status_command_prints_a_summary_lists_and_json(tmp_path):
    cache, videos = _job_array_midway(tmp_path)
    result = CliRunner().invoke(main, ["status", str(cache), str(videos), "--limit", "1"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{cache}: 1 done, 1 stale, 2 in progress, 1 failed, 2 missing of 7 expected"
    assert "  ... and 1 more (--limit 0 lists all, --json for scripts)" in lines
    document = json.loads(CliRunner().invoke(main, ["status", str(cache), str(videos), "--json"]).output)
    assert document["counts"]["missing"] == 2 and document["failed"][0]["video_id"] == "c"
    missing = CliRunner().invoke(main, ["status", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "no such cache directory" in missing.output
