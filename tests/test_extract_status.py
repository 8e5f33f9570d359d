"""`t3al-extract status`: every video of a cache being filled sorted into one state, with reasons."""
from __future__ import annotations

import json
import os
import time

import h5py
import numpy as np
from click.testing import CliRunner

from t3al.cache import CacheInfo, CacheWriter, ModelIdentity, VideoRecord, safe_video_id
from t3al.extract.cli import main
from t3al.extract.status import Entry, cache_status, format_status

from conftest import write_toy_world


def _record(video_id: str, source) -> VideoRecord:
    stat = source.stat()
    return VideoRecord(video_id, np.ones((3, 4), dtype=np.float32), np.arange(3) / 10.0, 10.0,
                       source_path=str(source), source_size=stat.st_size, source_mtime=stat.st_mtime)


def _job_array_midway(tmp_path):
    """A cache as jobs leave it midway: a done, b done but its video since re-encoded, c failed,
    d being written, e not started, f's writer killed two hours ago, a video whose name needs a
    safe id, and a file run will refuse."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a", "b", "c", "d", "e", "f", "bad name"):
        (videos / f"{name}.mp4").write_bytes(b"video " + name.encode())
    (videos / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    writer = CacheWriter(tmp_path / "cache", CacheInfo(ModelIdentity("m", "t"), feature_dtype="float32"))
    writer.record_failure("a", str(videos / "a.mp4"), "out of memory")  # a later rerun made it
    for video_id in ("a", "b"):
        writer.write_video(_record(video_id, videos / f"{video_id}.mp4"))
    (videos / "b.mp4").write_bytes(b"re-encoded, longer")
    writer.record_failure("c", str(videos / "c.mp4"), f"{videos / 'c.mp4'}: no video stream")
    (tmp_path / "cache" / "videos" / ".d.h5.4242.0a1b2c3d.tmp").write_bytes(b"partial")
    killed = tmp_path / "cache" / "videos" / ".f.h5.4243.9e8f7a6b.tmp"
    killed.write_bytes(b"partial")
    os.utime(killed, (time.time() - 7200, time.time() - 7200))
    return tmp_path / "cache", videos


def test_each_video_gets_one_state_and_its_reason(tmp_path):
    cache, videos = _job_array_midway(tmp_path)
    status = cache_status(cache, videos)
    assert status.counts() == {"done": 1, "stale": 1, "in_progress": 1, "failed": 1, "missing": 4}
    assert status.expected == 8
    assert [e.video_id for e in status.done] == ["a"]
    assert status.stale[0].video_id == "b" and "source changed since extraction (size 7 -> 18 bytes" in \
        status.stale[0].detail
    assert status.failed[0].video_id == "c" and status.failed[0].detail.endswith("c.mp4: no video stream")
    in_progress = {e.video_id: e.detail for e in status.in_progress}
    assert in_progress["d"].startswith("being extracted, started 0 s ago")
    missing = {e.video_id: e.detail for e in status.missing}
    assert missing["f"].startswith("left by a stopped job (no write for 2.0 h; the next run removes")
    assert missing["e"] == "" and missing["gone"].startswith("dangling symbolic link")
    assert Entry(safe_video_id("bad name"), "", "bad name") in status.missing


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
    assert lines[0] == f"{cache}: 1 done, 1 stale, 1 in progress, 1 failed, 4 missing of 8 expected"
    assert "  ... and 3 more (--limit 0 lists all, --json for scripts)" in lines
    document = json.loads(CliRunner().invoke(main, ["status", str(cache), str(videos), "--json"]).output)
    assert document["counts"]["missing"] == 4 and document["failed"][0]["video_id"] == "c"
    missing = CliRunner().invoke(main, ["status", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "no such cache directory" in missing.output


def test_odd_names_and_videos_kept_with_warnings_are_done_under_the_writers_rules(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("my clip", "ok"):
        (videos / f"{name}.mp4").write_bytes(b"video")
    writer = CacheWriter(tmp_path / "cache", CacheInfo(ModelIdentity("m", "t"), feature_dtype="float32"))
    clip = safe_video_id("my clip")
    record = _record(clip, videos / "my clip.mp4")
    record.name = "my clip"
    writer.write_video(record)
    kept = _record("ok", videos / "ok.mp4")
    kept.decode_warnings = ["frame 2: corrupt macroblock"]
    writer.write_video(kept)
    writer.record_failure("ok", str(videos / "ok.mp4"), "decode warnings", kept=True)
    status = cache_status(tmp_path / "cache", videos)
    assert status.counts() == {"done": 2, "stale": 0, "in_progress": 0, "failed": 0, "missing": 0}
    assert Entry(clip, "", "my clip") in status.done
    assert Entry("ok", "kept with decode warnings: frame 2: corrupt macroblock") in status.done
    assert "done, kept with decode warnings:\n  ok: kept with decode warnings" in format_status(status)


def test_a_writer_removes_exactly_the_temporaries_status_calls_left_behind(tmp_path):
    cache, videos = _job_array_midway(tmp_path)
    left = {e.video_id for e in cache_status(cache, videos).missing if "left by a stopped job" in e.detail}
    CacheWriter(cache, CacheInfo(ModelIdentity("m", "t"), feature_dtype="float32"))
    assert left == {"f"} and {e.video_id for e in cache_status(cache, videos).in_progress} == {"d"}
    assert not [e for e in cache_status(cache, videos).missing if "left by a stopped job" in e.detail]


def _cache_of(tmp_path, *video_ids):
    videos = tmp_path / "videos"
    videos.mkdir()
    writer = CacheWriter(tmp_path / "cache", CacheInfo(ModelIdentity("m", "t"), feature_dtype="float32"))
    for video_id in video_ids:
        (videos / f"{video_id}.mp4").write_bytes(b"video " + video_id.encode())
        writer.write_video(_record(video_id, videos / f"{video_id}.mp4"))
    return writer, videos


def test_a_damaged_video_file_is_stale_and_rerun_redoes_it(tmp_path):
    writer, videos = _cache_of(tmp_path, "a", "b")
    path = writer.video_path("b")
    data = bytearray(path.read_bytes())
    data[len(data) // 3: 2 * len(data) // 3] = b"\xff" * (len(data) // 3)  # bytes overwritten mid-file
    path.write_bytes(bytes(data))
    status = cache_status(tmp_path / "cache", videos)
    assert [e.video_id for e in status.done] == ["a"] and [e.video_id for e in status.stale] == ["b"]
    assert status.stale[0].detail.startswith(f"unreadable file {path}")
    stat = (videos / "b.mp4").stat()
    assert not writer.is_complete("b", stat.st_size, stat.st_mtime)  # so a rerun extracts it again


def test_verify_reads_every_array_and_finds_what_opening_cannot(tmp_path):
    writer, videos = _cache_of(tmp_path, "a", "b")
    with h5py.File(writer.video_path("b"), "r+") as f:
        f["features"][1, 2] = np.nan
    assert cache_status(tmp_path / "cache", videos).counts()["done"] == 2  # the quick check opens arrays only
    status = cache_status(tmp_path / "cache", videos, verify=True)
    assert [e.video_id for e in status.stale] == ["b"]
    assert status.stale[0].detail == (f"damaged file {writer.video_path('b')} (features hold NaN or infinity; "
                                      "delete it, then rerun)")
    result = CliRunner().invoke(main, ["status", str(tmp_path / "cache"), str(videos), "--verify"])
    assert result.exit_code == 0 and "1 done, 1 stale" in result.output


def test_a_truncated_head_gets_a_line(tmp_path):
    cache = write_toy_world(tmp_path, ["Jump", "Swim"], {"v0": (60, 10, 30, 0)}, [["Jump"], ["Swim"]])
    head = cache / "head.h5"
    head.write_bytes(head.read_bytes()[: head.stat().st_size // 2])
    status = cache_status(cache)
    assert status.head.startswith(f"{head}: unreadable head (") and status.head.endswith(
        "; delete it, then rerun t3al-extract to write it again")
    assert format_status(status).splitlines()[1] == f"head: {status.head}"
    assert json.loads(status.to_json())["head"] == status.head


def test_the_video_being_extracted_is_in_progress(tmp_path):
    writer, videos = _cache_of(tmp_path, "a")
    for name in ("b", "c"):
        (videos / f"{name}.mp4").write_bytes(b"video")

    def states():
        status = cache_status(tmp_path / "cache", videos)
        return [e.video_id for e in status.in_progress], [e.video_id for e in status.missing]

    with writer.in_progress(["b", "c"]) as next_video:
        assert states() == (["b"], ["c"])
        writer.write_video(_record("b", videos / "b.mp4"))
        assert states() == ([], ["c"])  # done, not in progress
        next_video()
        assert states() == (["c"], [])
    assert states() == ([], ["c"])
    assert not list((tmp_path / "cache" / "videos").glob(".*"))


def test_a_writer_killed_with_sigkill_is_not_in_progress_and_its_mark_goes_at_the_next_run(tmp_path):
    import signal
    import subprocess
    import sys

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"video a")
    cache = tmp_path / "cache"
    CacheWriter(cache, CacheInfo(ModelIdentity("m", "t"), feature_dtype="float32"))
    code = ("import sys, time; from t3al.cache import CacheInfo, CacheWriter, ModelIdentity\n"
            "writer = CacheWriter(sys.argv[1], CacheInfo(ModelIdentity('m', 't'), feature_dtype='float32'))\n"
            "with writer.in_progress(['a']):\n    print('working', flush=True); time.sleep(60)\n")
    job = subprocess.Popen([sys.executable, "-c", code, str(cache)], stdout=subprocess.PIPE, text=True)
    assert job.stdout.readline() == "working\n"
    assert [e.video_id for e in cache_status(cache, videos).in_progress] == ["a"]
    job.send_signal(signal.SIGKILL)
    job.wait()
    (mark,) = (cache / "videos").glob(".*.tmp")  # what kill -9 leaves
    status = cache_status(cache, videos)
    assert status.in_progress == [] and status.missing[0].video_id == "a"
    assert status.missing[0].detail.startswith("left by a stopped job (its process has ended; the next run removes")
    CacheWriter(cache, CacheInfo(ModelIdentity("m", "t"), feature_dtype="float32"))
    assert not mark.exists()


def test_a_folders_other_files_are_not_expected_videos(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.MKV", "readme.txt", "cover.jpg"):
        (videos / name).write_bytes(b"bytes")
    CacheWriter(tmp_path / "cache", CacheInfo(ModelIdentity("m", "t"), feature_dtype="float32")) \
        .write_video(_record("a", videos / "a.mp4"))
    status = cache_status(tmp_path / "cache", videos)
    assert status.expected == 2 and status.counts() == {"done": 1, "stale": 0, "in_progress": 0, "failed": 0,
                                                        "missing": 1}
    assert status.missing == [Entry("b")]
    result = CliRunner().invoke(main, ["status", str(tmp_path / "cache"), str(videos)])
    assert result.output.splitlines()[0].endswith(": 1 done, 0 stale, 0 in progress, 0 failed, 1 missing of 2 expected")
