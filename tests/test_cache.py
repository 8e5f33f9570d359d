"""The cache contract: atomic per-video files, schema and model checks, lazy typed reading."""
from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import time
import unicodedata

import numpy as np
import pytest

from t3al.cache import (CacheError, CacheInfo, CacheReader, CacheWriter, DiskFullError, ModelIdentity, VideoRecord,
                        check_video_id, safe_video_id)
from t3al.cache.store import STALE_TEMPORARY_S

from conftest import write_tiny_cache


def _record(video_id: str = "v1", n: int = 6, width: int = 4) -> VideoRecord:
    features = np.arange(n * width, dtype=np.float32).reshape(n, width)
    return VideoRecord(video_id, features, np.arange(n) / 2.0, fps=2.0,
                       caption_frames=[0, 3], caption_texts=["a man", "a ball"],
                       caption_features=np.ones((2, width)), duration=3.0,
                       source_path="/x/v1.mp4", source_size=10, source_mtime=5.0)


def test_video_round_trips_with_types(tmp_path):
    writer = CacheWriter(tmp_path, CacheInfo(model=ModelIdentity("m", "tag")))
    writer.write_video(_record())
    video = CacheReader(tmp_path).video("v1")
    assert video.features.dtype == np.float32
    np.testing.assert_array_equal(video.features, _record().features)  # small ints survive float16
    np.testing.assert_array_equal(video.timestamps, np.arange(6) / 2.0)
    assert video.caption_texts == ["a man", "a ball"]
    assert list(video.caption_frames) == [0, 3]
    assert (video.fps, video.n_frames, video.source_size) == (2.0, 6, 10)


def test_unicode_captions_survive(tmp_path):
    writer = CacheWriter(tmp_path, CacheInfo(model=ModelIdentity("m")))
    record = _record()
    record.caption_texts = ["un homme saute à la perche", "跳高"]
    writer.write_video(record)
    assert CacheReader(tmp_path).video("v1").caption_texts == record.caption_texts


def test_no_temporary_file_is_listed_or_left(tmp_path):
    writer = CacheWriter(tmp_path, CacheInfo(model=ModelIdentity("m")))
    writer.write_video(_record("a"))
    (tmp_path / "videos" / ".b.h5.123.tmp").write_bytes(b"partial")
    assert CacheReader(tmp_path).video_ids() == ["a"]
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == [".b.h5.123.tmp", "a.h5"]


def test_is_complete_detects_a_changed_source(tmp_path):
    writer = CacheWriter(tmp_path, CacheInfo(model=ModelIdentity("m")))
    writer.write_video(_record())
    assert writer.is_complete("v1", 10, 5.0)
    assert not writer.is_complete("v1", 11, 5.0)
    assert not writer.is_complete("v2", 10, 5.0)


def test_unknown_schema_version_is_refused(tmp_path):
    CacheWriter(tmp_path, CacheInfo(model=ModelIdentity("m")))
    info = json.loads((tmp_path / "cache.json").read_text())
    info["schema_version"] = 99
    (tmp_path / "cache.json").write_text(json.dumps(info))
    with pytest.raises(CacheError, match="unknown cache schema version 99"):
        CacheReader(tmp_path)


def test_a_second_model_cannot_write_into_the_cache(tmp_path):
    CacheWriter(tmp_path, CacheInfo(model=ModelIdentity("m", "a")))
    with pytest.raises(CacheError, match="refusing to add"):
        CacheWriter(tmp_path, CacheInfo(model=ModelIdentity("m", "b")))


def test_head_from_another_model_is_refused(tmp_path):
    write_tiny_cache(tmp_path / "one", {"v": np.eye(3, dtype=np.float32)}, ["A", "B"])
    write_tiny_cache(tmp_path / "two", {"v": np.eye(3, dtype=np.float32)}, ["A", "B"])
    info = json.loads((tmp_path / "two" / "cache.json").read_text())
    info["model"]["name"] = "other"
    (tmp_path / "two" / "cache.json").write_text(json.dumps(info))
    with pytest.raises(CacheError, match="cannot be mixed"):
        CacheReader(tmp_path / "two").head()


def test_missing_and_foreign_directories_get_clear_errors(tmp_path):
    with pytest.raises(CacheError, match="no such cache directory"):
        CacheReader(tmp_path / "absent")
    with pytest.raises(CacheError, match="not a t3al cache"):
        CacheReader(tmp_path)


def test_prompts_can_be_added_and_replaced(tmp_path):
    write_tiny_cache(tmp_path, {"v": np.eye(3, dtype=np.float32)}, ["A", "B"])
    writer = CacheWriter(tmp_path, CacheInfo(model=ModelIdentity("test-model", "random"), feature_dtype="float32"))
    writer.add_prompts(["B", "C"], ["new B", "new C"], np.ones((2, 3)))
    head = CacheReader(tmp_path).head()
    assert head.class_names == ["A", "B", "C"]
    assert head.prompts[1:] == ["new B", "new C"]
    assert list(head.prompt_index(["C", "A"])) == [2, 0]
    with pytest.raises(CacheError, match="no class prompt for D"):
        head.prompt_index(["A", "D"])


def test_failures_report_only_videos_still_missing(tmp_path):
    writer = CacheWriter(tmp_path, CacheInfo(model=ModelIdentity("m")))
    writer.record_failure("v1", "/x/v1.mp4", "corrupt")
    writer.record_failure("v2", "/x/v2.mp4", "no video stream")
    writer.write_video(_record("v1"))
    assert [f["video_id"] for f in CacheReader(tmp_path).failures()] == ["v2"]


def test_videos_kept_with_decode_warnings_are_listed_apart_from_failures(tmp_path):
    writer = CacheWriter(tmp_path, CacheInfo(model=ModelIdentity("m")))
    writer.record_failure("v1", "/x/v1.mp4", "decoder: partial file", kept=True)
    writer.record_failure("v2", "/x/v2.mp4", "decoder: partial file", kept=True)  # never written: not in the cache
    writer.write_video(_record("v1"))
    reader = CacheReader(tmp_path)
    assert [f["video_id"] for f in reader.kept_with_warnings()] == ["v1"] and reader.failures() == []


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "-opt"])
def test_unsafe_video_ids_are_refused(bad):
    with pytest.raises(CacheError, match="invalid video id"):
        _record(bad)


def test_caption_frames_must_be_inside_the_video():
    with pytest.raises(CacheError, match="caption frame index"):
        VideoRecord("v", np.zeros((3, 2)), np.arange(3.0), 1.0, caption_frames=[5],
                    caption_texts=["x"], caption_features=np.zeros((1, 2)))


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_cache_files_follow_the_process_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        write_tiny_cache(tmp_path, {"v": np.eye(3, dtype=np.float32)}, ["A", "B"])
        CacheWriter(tmp_path, CacheInfo(model=ModelIdentity("test-model", "random"), feature_dtype="float32")) \
            .record_failure("w", "/x/w.mp4", "corrupt")
    finally:
        os.umask(previous)
    for name in ("cache.json", "head.h5", "videos/v.h5", "failures.jsonl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def _full_disk_after(limit: int):
    """A stand-in for the byte writer that fails with ENOSPC once ``limit`` bytes are written."""
    written = [0]

    def write(fd: int, data: bytes) -> None:
        room = limit - written[0]
        os.write(fd, bytes(data[:max(room, 0)]))
        written[0] += min(len(data), max(room, 0))
        if len(data) > room:
            raise OSError(errno.ENOSPC, "No space left on device")

    return write


def test_a_full_disk_is_one_error_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    writer = CacheWriter(tmp_path, CacheInfo(model=ModelIdentity("m")))
    writer.write_video(_record("a"))
    monkeypatch.setattr("t3al.cache.files.write_all", _full_disk_after(500))
    with pytest.raises(DiskFullError, match="no space left on device"):
        writer.write_video(_record("b"))
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == ["a.h5"]
    assert CacheReader(tmp_path).video("a").n_frames == 6


def test_a_write_that_cannot_fit_is_refused_before_it_starts(tmp_path, monkeypatch):
    writer = CacheWriter(tmp_path, CacheInfo(model=ModelIdentity("m")))
    monkeypatch.setattr("shutil.disk_usage", lambda path: shutil._ntuple_diskusage(10 << 20, 10 << 20, 1000))
    with pytest.raises(DiskFullError, match=r"1.0 kB free"):
        writer.write_video(_record("b"))
    assert not list((tmp_path / "videos").iterdir())


def test_temporary_files_older_than_a_write_are_removed_on_reopening(tmp_path):
    CacheWriter(tmp_path, CacheInfo(model=ModelIdentity("m")))
    old, fresh = tmp_path / "videos" / ".a.h5.123.ab.tmp", tmp_path / ".head.h5.123.cd.tmp"
    old.write_bytes(b"partial")
    fresh.write_bytes(b"being written")
    os.utime(old, (time.time() - 2 * STALE_TEMPORARY_S,) * 2)
    writer = CacheWriter(tmp_path, CacheInfo(model=ModelIdentity("m")))
    assert writer.removed_temporaries == [old] and not old.exists() and fresh.exists()


@pytest.mark.parametrize("content", ["[1, 2]", "{not json", "\"text\"", '{"schema_version": 1, "model": {"name": "m"}, '
                                                                       '"captions": [16]}'])
def test_a_malformed_cache_json_is_a_cache_error_for_readers_and_writers(tmp_path, content):
    (tmp_path / "videos").mkdir()
    (tmp_path / "cache.json").write_text(content)
    with pytest.raises(CacheError, match="cache.json"):
        CacheReader(tmp_path)
    with pytest.raises(CacheError, match="cache.json"):
        CacheWriter(tmp_path, CacheInfo(model=ModelIdentity("m")))


def test_a_cache_directory_that_is_a_file_is_a_cache_error(tmp_path):
    (tmp_path / "cache").write_text("")
    with pytest.raises(CacheError, match="not a directory"):
        CacheWriter(tmp_path / "cache", CacheInfo(model=ModelIdentity("m")))
    with pytest.raises(CacheError, match="not a directory"):
        CacheReader(tmp_path / "cache")


@pytest.mark.parametrize("name", ["my video", "été à Paris", "-dash", "x.tmp"])
def test_unsafe_names_map_to_a_safe_id_and_are_found_by_their_name(tmp_path, name):
    video_id = safe_video_id(name)
    assert check_video_id(video_id) == video_id and video_id != name
    assert safe_video_id(unicodedata.normalize("NFD", name)) == video_id  # macOS spells names decomposed
    writer = CacheWriter(tmp_path, CacheInfo(model=ModelIdentity("m")))
    record = _record(video_id)
    record.name = name
    writer.write_video(record)
    reader = CacheReader(tmp_path)
    assert name in reader and reader.video_ids() == [video_id]
    assert reader.video(name).name == name and reader.video(name).video_id == video_id


def test_safe_ids_keep_valid_names_and_tell_similar_names_apart():
    assert safe_video_id("video_test_0000004") == "video_test_0000004"
    assert safe_video_id("été à Paris").startswith("ete_a_Paris-")
    assert safe_video_id("a b") != safe_video_id("a  b") != safe_video_id("a_b")
    with pytest.raises(CacheError, match="invalid video name"):
        safe_video_id("a/b")


def test_an_interrupted_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    writer = CacheWriter(tmp_path, CacheInfo(model=ModelIdentity("m")))

    def interrupted(fd, data):
        os.write(fd, bytes(data[:100]))
        raise KeyboardInterrupt

    monkeypatch.setattr("t3al.cache.files.write_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        writer.write_video(_record("b"))
    assert not list((tmp_path / "videos").iterdir())


def test_ids_stay_within_the_file_name_limit_and_distinct():
    assert safe_video_id("a" * 200) == "a" * 200  # short enough: its own id
    long_a, long_b = safe_video_id("a" * 250), safe_video_id("a" * 249)
    assert long_a != long_b and len(long_a) == len(long_b) == 200 and long_a.startswith("a" * 191 + "-")
    assert len(safe_video_id("é" * 250)) == 80 + 9
    with pytest.raises(CacheError, match="201 characters, at most 200"):
        check_video_id("a" * 201)
