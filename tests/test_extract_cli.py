"""`t3al-extract` end to end on generated videos and tiny models: cache content, resume, shards,
bad input, prompts, import of published features, and stage two reading the result."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from extract_helpers import VFR_SETPTS, ffmpeg_children, make_audio, make_damaged_videos, make_video, vfr_times
from t3al.cache import CacheInfo, CacheReader, ModelIdentity, safe_video_id, terminated_cleanly
from t3al.extract.cli import main
from t3al.extract.ffmpeg_frames import DecodeError, FrameGeometry
from t3al.extract.importer import read_caption_file
from t3al.extract.extractor import FrameNormalizer, caption_rows
from t3al.extract.listing import in_shard, list_videos, parse_shard
from t3al.extract.provenance import settings_mismatch
from t3al.extract.reading import decode_videos
from t3al.manifests import Manifest

COCA, CLIP = "t3al_test_tiny_coca", "t3al_test_tiny_clip"
CLASSES = ["BaseballPitch", "CliffDiving"]


@pytest.fixture(scope="module")
def good_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    make_video(root / "v25.mp4", frames=20, rate="25", size="97x61")
    make_video(root / "ntsc.mp4", frames=16, rate="30000/1001", size="64x48")
    make_video(root / "vfr.mp4", frames=14, rate="25", setpts=VFR_SETPTS)
    return root


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _extract(models, videos, cache, *extra, model=COCA):
    folder, checkpoints = models
    args = [str(videos), str(cache), "--model", model, "--pretrained", str(checkpoints[model]),
            "--model-config", str(folder), "--caption-fps", "2", "--caption-length", "6", "--batch-size", "8",
            *[str(a) for a in extra]]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _failures(cache):
    return {entry["video_id"]: entry["reason"] for entry in CacheReader(cache).failures()}


def test_extract_writes_a_cache_that_stage_two_reads(models, good_videos, tmp_path):
    result = _extract(models, good_videos, tmp_path / "cache", "--classes", ",".join(CLASSES))
    assert result.exit_code == 0, result.output
    assert "3 done, 0 skipped, 0 failed" in result.output
    reader = CacheReader(tmp_path / "cache")
    assert reader.video_ids() == ["ntsc", "v25", "vfr"]
    assert reader.info.model.checkpoint_sha256 and reader.info.preprocess["mode"] == "model"
    head = reader.head()
    assert head.class_names == CLASSES and head.prompts[0] == "a video of action Baseball Pitch"
    v25 = reader.video("v25")
    assert v25.features.shape == (20, head.visual_proj.shape[0]) and v25.fps == 25.0
    np.testing.assert_allclose(v25.timestamps, np.arange(20) / 25, atol=1e-6)
    assert v25.caption_frames.tolist() == [0, 13]  # first frames at or after 0 s and 0.5 s
    assert v25.caption_features.shape == (2, head.text_projection.shape[0])
    assert all(isinstance(t, str) and "<" not in t for t in v25.caption_texts)
    assert reader.video("ntsc").fps == pytest.approx(30000 / 1001)
    np.testing.assert_allclose(reader.video("vfr").timestamps, vfr_times(14), atol=1e-6)


def test_stage_two_runs_on_a_cache_stage_one_wrote(models, good_videos, tmp_path):
    from t3al.adapt.cli import main as adapt

    manifest = Manifest("toy", CLASSES, {v: {"subset": "test", "duration": None, "fps": None}
                                         for v in ("v25", "ntsc", "vfr")},
                        [{"video": "v25", "start": 0.1, "end": 0.5, "label": "BaseballPitch"},
                         {"video": "ntsc", "start": 0.1, "end": 0.4, "label": "CliffDiving"}],
                        {"50_50": [["BaseballPitch"], ["CliffDiving"]]}, [0.3, 0.5])
    manifest.save(tmp_path / "manifest.json")
    result = _extract(models, good_videos, tmp_path / "cache", "--manifest", tmp_path / "manifest.json")
    assert result.exit_code == 0, result.output
    assert CacheReader(tmp_path / "cache").manifest_path is not None
    out = tmp_path / "out"
    result = CliRunner().invoke(adapt, [str(tmp_path / "cache"), "--split", "50_50", "--out", str(out),
                                        "--steps", "2", "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert [s["index"] for s in json.loads((out / "results.json").read_text())["splits"]] == [0, 1]


def test_rerun_skips_complete_videos_and_redoes_changed_ones(models, good_videos, tmp_path):
    videos = _copy(good_videos, tmp_path / "videos")
    cache = tmp_path / "cache"
    assert _extract(models, videos, cache, "--caption-fps", "0").exit_code == 0
    before = (cache / "videos" / "ntsc.h5").stat().st_mtime_ns
    stat = (videos / "v25.mp4").stat()
    os.utime(videos / "v25.mp4", (stat.st_atime, stat.st_mtime + 10))
    result = _extract(models, videos, cache, "--caption-fps", "0")
    assert result.exit_code == 0 and "1 done, 2 skipped, 0 failed" in result.output
    assert (cache / "videos" / "ntsc.h5").stat().st_mtime_ns == before
    assert CacheReader(cache).video("v25").source_mtime == stat.st_mtime + 10


# t3al-extract in a subprocess whose decoder stops in the middle of v25 (the second video in name
# order) once ntsc (the first) is in the cache: a marker file then says the kill lands mid-video.
HELD_DECODER = """
import sys, time
from pathlib import Path
from t3al.extract import ffmpeg_frames

batches, cache, marker = ffmpeg_frames.FrameStream.batches, Path(sys.argv[1]), Path(sys.argv[2])

def held(self, batch_size=64):
    for n, batch in enumerate(batches(self, batch_size)):
        yield batch
        while self.info.path.stem == "v25" and n == 0:
            if (cache / "videos" / "ntsc.h5").exists():
                marker.touch()
            time.sleep(0.01)

ffmpeg_frames.FrameStream.batches = held
from t3al.extract.cli import main
main(sys.argv[3:])
"""


def test_kill_9_loses_only_the_video_in_flight(models, good_videos, tmp_path):
    folder, checkpoints = models
    videos, cache, marker = _copy(good_videos, tmp_path / "videos"), tmp_path / "cache", tmp_path / "held"
    command = [sys.executable, "-c", HELD_DECODER, str(cache), str(marker), str(videos), str(cache),
               "--model", COCA, "--pretrained", str(checkpoints[COCA]), "--model-config", str(folder),
               "--caption-fps", "0", "--batch-size", "8"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marker.exists(), "the decoder never held v25 after ntsc was cached"
    process.send_signal(signal.SIGKILL)
    process.wait()
    reader = CacheReader(cache)
    assert reader.video_ids() == ["ntsc"]  # v25 was in flight, vfr not started
    assert reader.video("ntsc").n_frames == 16
    result = _extract(models, videos, cache, "--caption-fps", "0")
    assert result.exit_code == 0 and "2 done, 1 skipped, 0 failed" in result.output
    assert CacheReader(cache).video_ids() == ["ntsc", "v25", "vfr"]


def test_shards_split_the_videos_without_overlap(models, good_videos, tmp_path):
    cache = tmp_path / "cache"
    ids = ["ntsc", "v25", "vfr"]
    for i in range(2):
        assert _extract(models, good_videos, cache, "--shard", f"{i}/2", "--caption-fps", "0").exit_code == 0
    assert CacheReader(cache).video_ids() == ids
    shards = [{v for v in ids if in_shard(v, (i, 2))} for i in range(2)]
    assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == set(ids)


def test_a_cache_refuses_frames_sampled_differently(models, good_videos, tmp_path):
    assert _extract(models, good_videos, tmp_path / "cache", "--caption-fps", "0").exit_code == 0
    result = _extract(models, good_videos, tmp_path / "cache", "--caption-fps", "0", "--fps", "5")
    assert result.exit_code == 1 and "sampling fps = None, this run asks for 5.0" in result.output


def test_shard_spec_is_checked():
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_bad_inputs_each_get_one_reason_and_the_rest_is_processed(models, good_videos, tmp_path):
    videos = _copy(good_videos, tmp_path / "videos")
    (videos / "notes.txt").write_text("hello\n")
    (videos / "empty.mp4").touch()
    data = (videos / "v25.mp4").read_bytes()
    (videos / "cut.mp4").write_bytes(data[: len(data) // 3])
    make_audio(videos / "sound.m4a")
    shutil.copy(videos / "ntsc.mp4", videos / "ntsc.mkv")
    result = _extract(models, videos, tmp_path / "cache", "--caption-fps", "0")
    assert result.exit_code == 1
    assert "2 done, 0 skipped, 6 failed" in result.output
    reasons = _failures(tmp_path / "cache")
    assert set(reasons) == {"notes", "empty", "cut", "sound", "ntsc"}
    assert "audio only" in reasons["sound"] and "name clash" in reasons["ntsc"]
    assert "not a readable video" in reasons["notes"] and "cut.mp4" in reasons["cut"]
    assert CacheReader(tmp_path / "cache").video_ids() == ["v25", "vfr"]
    assert not list((tmp_path / "cache" / "videos").glob(".*"))  # no temporary file left behind


def test_missing_and_empty_folders_are_clear_errors(models, tmp_path):
    result = _extract(models, tmp_path / "nowhere", tmp_path / "cache")
    assert result.exit_code != 0 and "nowhere: no such folder" in result.output
    (tmp_path / "empty").mkdir()
    result = _extract(models, tmp_path / "empty", tmp_path / "cache")
    assert result.exit_code != 0 and "no files to extract" in result.output


def test_clip_model_extracts_without_captions(models, good_videos, tmp_path):
    result = _extract(models, good_videos, tmp_path / "cache", model=CLIP)
    assert result.exit_code == 0, result.output
    video = CacheReader(tmp_path / "cache").video("v25")
    assert video.features.shape == (20, 32) and video.caption_texts == []


def test_t3al_public_preprocessing_is_recorded(models, good_videos, tmp_path):
    result = _extract(models, good_videos, tmp_path / "cache", "--preprocess", "t3al-public", "--caption-fps", "0")
    assert result.exit_code == 0
    info = CacheReader(tmp_path / "cache").info
    assert info.preprocess["mode"] == "t3al-public" and info.preprocess["channels"] == "BGR"


def test_offline_default_model_gives_one_message_without_traceback(good_videos, tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(main, [str(good_videos), str(tmp_path / "cache"), "--model", "coca_ViT-B-32"])
    assert result.exit_code == 1 and "--pretrained /path/to/" in result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit


def test_prompts_command_adds_classes_and_refuses_another_model(models, good_videos, tmp_path):
    folder, checkpoints = models
    cache = tmp_path / "cache"
    assert _extract(models, good_videos, cache, "--classes", "BaseballPitch", "--caption-fps", "0").exit_code == 0
    base = ["prompts", str(cache), "--model-config", str(folder), "--model", COCA]
    result = CliRunner().invoke(main, base + ["--pretrained", str(checkpoints[COCA]), "--classes", "Diving,Shotput"])
    assert result.exit_code == 0, result.output
    assert CacheReader(cache).head().class_names == ["BaseballPitch", "Diving", "Shotput"]
    other = tmp_path / "other.pt"
    state = torch.load(checkpoints[COCA], weights_only=True)
    state["logit_scale"] = state["logit_scale"] + 1
    torch.save(state, other)
    result = CliRunner().invoke(main, base + ["--pretrained", str(other), "--classes", "Diving"])
    assert result.exit_code == 1 and "refusing" in result.output


def test_import_builds_a_cache_from_published_features_and_captions(models, tmp_path):
    folder, checkpoints = models
    features, captions = tmp_path / "features", tmp_path / "captions"
    features.mkdir(), captions.mkdir()
    rng = np.random.default_rng(0)
    np.save(features / "video_test_0000001.npy", rng.standard_normal((10, 24)).astype(np.float32))
    (captions / "video_test_0000001.txt").write_text("0.jpg-a man throws a ball\n1.jpg-a crowd\n4.jpg-too late\n")
    np.save(features / "broken.npy", rng.standard_normal((10, 7)).astype(np.float32))
    result = CliRunner().invoke(main, ["import", str(features), str(tmp_path / "cache"), "--captions", str(captions),
                                       "--model", COCA, "--pretrained", str(checkpoints[COCA]),
                                       "--model-config", str(folder), "--fps", "30", "--classes", "Diving"])
    assert result.exit_code == 1 and "1 done, 0 skipped, 1 failed" in result.output
    reader = CacheReader(tmp_path / "cache")
    video = reader.video("video_test_0000001")
    assert video.caption_frames.tolist() == [0, 3] and video.caption_texts == ["a man throws a ball", "a crowd"]
    np.testing.assert_allclose(video.timestamps, np.arange(10) / 30)
    assert reader.info.preprocess["mode"] == "t3al-public" and reader.head().class_names == ["Diving"]
    assert "N x 24" in _failures(tmp_path / "cache")["broken"]


def test_public_caption_reading_keeps_the_text_between_the_first_and_second_dash(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("0.jpg-a man in a t-shirt jumps\n2.jpg- a blue sky \n5.jpg-x-ray-scan\n")
    frames, full = read_caption_file(path, 3, 100)
    _, public = read_caption_file(path, 3, 100, text="public")
    assert frames.tolist() == [0, 6, 15]  # caption i describes frame 3 i
    assert full == ["a man in a t-shirt jumps", "a blue sky", "x-ray-scan"]
    assert public == ["a man in a t", "a blue sky", "x"]


def test_import_records_the_public_caption_reading(models, tmp_path):
    folder, checkpoints = models
    features, captions = tmp_path / "features", tmp_path / "captions"
    features.mkdir(), captions.mkdir()
    np.save(features / "v.npy", np.random.default_rng(0).standard_normal((10, 24)).astype(np.float32))
    (captions / "v.txt").write_text("0.jpg-a t-shirt\n")
    result = CliRunner().invoke(main, ["import", str(features), str(tmp_path / "cache"), "--captions", str(captions),
                                       "--caption-text", "public", "--model", COCA, "--pretrained",
                                       str(checkpoints[COCA]), "--model-config", str(folder), "--fps", "30",
                                       "--classes", "Diving"])
    assert result.exit_code == 0, result.output
    reader = CacheReader(tmp_path / "cache")
    assert reader.video("v").caption_texts == ["a t"] and reader.info.captions["text"] == "public"


def test_decode_videos_yields_each_video_in_order_with_the_next_one_started_early(good_videos, tmp_path):
    for path in good_videos.iterdir():
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "broken.mp4").write_text("not a video\n")
    videos, _ = list_videos(tmp_path)
    decoded = decode_videos([(v, v.stat) for v in videos], FrameGeometry(16), batch_size=8)
    video, _, info, frames, _ = next(decoded)
    assert video.video_id == "broken" and isinstance(info, DecodeError) and frames is None
    video, _, _, frames, _ = next(decoded)
    assert video.video_id == "ntsc" and len(frames) == 8
    assert len(ffmpeg_children()) == 2  # this video's ffmpeg and the next one's
    counts: dict[str, int] = {"ntsc": 8}
    for video, _, info, frames, _ in decoded:
        assert not isinstance(info, DecodeError)
        counts[video.video_id] = counts.get(video.video_id, 0) + (0 if frames is None else len(frames))
    assert list(counts) == ["ntsc", "v25", "vfr"] and counts == {"ntsc": 16, "v25": 20, "vfr": 14}
    assert not ffmpeg_children()


def test_stopping_decode_videos_early_stops_its_ffmpeg_processes(good_videos):
    videos, _ = list_videos(good_videos)
    decoded = decode_videos([(v, v.stat) for v in videos], FrameGeometry(16), batch_size=4)
    next(decoded)
    decoded.close()
    assert not ffmpeg_children()


@pytest.mark.parametrize("layout", ["packed", "planar"])
def test_frame_normalizer_gives_open_clip_model_input(layout):
    frames = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    if layout == "planar":
        frames = np.ascontiguousarray(frames.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    expected = (torch.from_numpy(frames).permute(0, 3, 1, 2) / 255 - torch.tensor(mean).view(1, 3, 1, 1)) \
        / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(FrameNormalizer(mean, std, torch.device("cpu"))(frames), expected)


def test_caption_rows_take_the_first_frame_of_each_interval():
    times = np.arange(12) / 30
    rows, last = caption_rows(times, 10.0, -1)
    assert rows.tolist() == [0, 3, 6, 9] and last == 3
    rows, _ = caption_rows(np.arange(12, 15) / 30, 10.0, last)
    assert rows.tolist() == [0]  # frame 12 opens the interval [0.4, 0.5)
    assert caption_rows(times, 0.0, -1)[0].size == 0


def test_real_videos_extract_with_a_tiny_model(models, shared_dir, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    os.symlink(shared_dir / "data" / "videos" / "video_validation_0000986.mp4", videos / "video_validation_0000986.mp4")
    result = _extract(models, videos, tmp_path / "cache", "--fps", "2", "--caption-fps", "0.5")
    assert result.exit_code == 0, result.output
    video = CacheReader(tmp_path / "cache").video("video_validation_0000986")
    assert video.fps == 2.0 and video.features.shape[0] == pytest.approx(40, abs=1)
    assert video.caption_frames.tolist() == list(range(0, video.features.shape[0], 4))


@pytest.mark.parametrize("policy", ["fail", "keep"])
def test_partial_decodes_fail_by_default_and_are_kept_with_their_warnings_on_request(models, tmp_path, policy):
    videos = tmp_path / "videos"
    videos.mkdir()
    make_damaged_videos(videos)
    cache = tmp_path / "cache"
    result = _extract(models, videos, cache, "--caption-fps", "0", *(["--on-decode-error", "keep"] if policy == "keep"
                                                                      else []))
    lines = [json.loads(line) for line in (cache / "failures.jsonl").read_text().splitlines()]
    assert {line["video_id"] for line in lines} == {"cut", "noise"}
    assert all("Invalid NAL unit size" in line["reason"] for line in lines)
    reader = CacheReader(cache)
    if policy == "fail":
        assert result.exit_code == 1 and "0 done, 0 skipped, 2 failed" in result.output
        assert reader.video_ids() == [] and set(_failures(cache)) == {"cut", "noise"}
        assert all("partial decode" in line["reason"] and "--on-decode-error keep" in line["reason"] for line in lines)
    else:
        assert result.exit_code == 0 and "2 done (2 kept with decode warnings), 0 skipped, 0 failed" in result.output
        assert reader.video_ids() == ["cut", "noise"] and _failures(cache) == {}
        assert all(line["kept"] for line in lines)
        cut = reader.video("cut")
        assert cut.n_frames < 40 and cut.duration == 4.0
        assert any("partial file" in w for w in cut.decode_warnings)
        assert cut.decode_warnings[-1].startswith(f"decoded {cut.n_frames} frames")
        assert reader.video("noise").decode_warnings


def test_a_source_that_no_longer_decodes_loses_its_cached_features(models, good_videos, tmp_path):
    videos = _copy(good_videos, tmp_path / "videos")
    cache = tmp_path / "cache"
    assert _extract(models, videos, cache, "--caption-fps", "0").exit_code == 0
    (videos / "v25.mp4").write_bytes(b"garbage" * 100)
    result = _extract(models, videos, cache, "--caption-fps", "0")
    assert result.exit_code == 1 and "0 done, 2 skipped, 1 failed" in result.output
    assert CacheReader(cache).video_ids() == ["ntsc", "vfr"] and "v25" not in CacheReader(cache)
    assert "cached from an earlier version of this file were removed" in _failures(cache)["v25"]


def _disk_full_on_hdf5_write(number: int):
    """A byte writer whose ``number``-th HDF5 file (the head is the first) meets a full disk half-way."""
    seen = [0]

    def write(fd: int, data: bytes) -> None:
        seen[0] += bytes(data[:4]) == b"\x89HDF"
        if seen[0] == number:
            os.write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        os.write(fd, bytes(data))

    return write


def test_a_full_disk_stops_the_run_with_one_line_and_keeps_complete_videos(models, good_videos, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setattr("t3al.cache.files.write_all", _disk_full_on_hdf5_write(3))
    result = _extract(models, good_videos, cache, "--caption-fps", "0")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "1 done, 0 skipped, 0 failed before the disk filled up" in result.output
    errors = [line for line in result.output.splitlines() if "no space left on device" in line]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {cache / 'videos'}: no space left on device")
    assert [p.name for p in (cache / "videos").iterdir()] == ["ntsc.h5"]  # no temporary file left behind
    assert not (cache / "failures.jsonl").exists()
    monkeypatch.undo()
    result = _extract(models, good_videos, cache, "--caption-fps", "0")
    assert result.exit_code == 0 and "2 done, 1 skipped, 0 failed" in result.output


@pytest.mark.parametrize("option, value", [("--batch-size", "0"), ("--batch-size", "-1"), ("--fps", "0"),
                                           ("--fps", "nan"), ("--caption-fps", "-1"), ("--caption-fps", "inf"),
                                           ("--caption-batch-size", "-2"), ("--caption-length", "4"),
                                           ("--caption-length", "500")])
def test_numeric_options_are_checked_before_anything_runs(models, good_videos, tmp_path, option, value):
    result = _extract(models, good_videos, tmp_path / "cache", option, value)
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "cache").exists()


def test_import_numeric_options_are_checked(tmp_path):
    for option, value in (("--caption-stride", "0"), ("--fps", "-30"), ("--fps", "nan")):
        result = CliRunner().invoke(main, ["import", str(tmp_path), str(tmp_path / "cache"), option, value])
        assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output


@pytest.mark.parametrize("content", [None, "{broken", "[1, 2, 3]"])
def test_a_cache_path_that_is_a_file_or_a_malformed_cache_json_is_one_line(models, good_videos, tmp_path, content):
    cache = tmp_path / "cache"
    if content is None:
        cache.write_text("")
    else:
        cache.mkdir()
        (cache / "cache.json").write_text(content)
    result = _extract(models, good_videos, cache)
    expected = "not a directory" if content is None else "cache.json: not"
    assert result.exit_code == 1 and expected in result.output and "Traceback" not in result.output


def test_a_cache_refuses_captions_of_another_length(models, good_videos, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(good_videos / "v25.mp4", videos)
    assert _extract(models, videos, tmp_path / "cache", "--caption-length", "7").exit_code == 0
    result = _extract(models, videos, tmp_path / "cache", "--caption-length", "6")
    assert result.exit_code == 1 and "captions seq_len = 7, this run asks for 6" in result.output


def test_stored_settings_ignore_the_ffmpeg_path_and_caption_settings_without_captions():
    base = CacheInfo(ModelIdentity("m"), sampling={"fps": None, "ffmpeg": "/usr/bin/ffmpeg"},
                     captions={"fps": 0.0, "seq_len": 30})
    assert settings_mismatch(base, CacheInfo(ModelIdentity("m"), sampling={"fps": None, "ffmpeg": "/opt/ffmpeg"},
                                             captions={"fps": 0.0, "seq_len": 8})) is None
    other = CacheInfo(ModelIdentity("m"), preprocess={"resizer": "swscale"}, sampling={"fps": None},
                      captions={"fps": 0.0})
    assert "preprocess resizer = None, this run asks for 'swscale'" in settings_mismatch(base, other)
    imported = CacheInfo(ModelIdentity("m"), captions={"fps": None, "frame_stride": 3})
    assert "captions frame_stride = 3, this run asks for 2" in settings_mismatch(
        imported, CacheInfo(ModelIdentity("m"), captions={"fps": None, "frame_stride": 2}))
    assert "preprocess precision = 'fp16', this run asks for 'fp32'" in settings_mismatch(
        CacheInfo(ModelIdentity("m"), preprocess={"precision": "fp16"}),
        CacheInfo(ModelIdentity("m"), preprocess={"precision": "fp32"}))


def test_unusual_entries_get_one_line_each_and_unsafe_names_a_safe_id(models, good_videos, tmp_path, caplog):
    from t3al.adapt.cli import main as adapt

    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(good_videos / "v25.mp4", videos / "clip été 1.mp4")
    shutil.copy(good_videos / "ntsc.mp4", videos / "ntsc.mp4")
    os.symlink(tmp_path / "gone.mp4", videos / "dangling.mp4")
    (videos / "frames.mp4").mkdir()
    (videos / "annotations").mkdir()
    cache = tmp_path / "cache"
    result = _extract(models, videos, cache, "--caption-fps", "2", "--classes", ",".join(CLASSES))
    assert result.exit_code == 1 and "2 done, 0 skipped, 2 failed" in result.output
    reasons = _failures(cache)
    assert "dangling symbolic link" in reasons["dangling"] and "folder named like a video" in reasons["frames"]
    assert sum("annotations: a folder, not searched" in r.message for r in caplog.records) == 1
    safe = safe_video_id("clip été 1")
    assert CacheReader(cache).video_ids() == [safe, "ntsc"] and CacheReader(cache).video(safe).name == "clip été 1"
    manifest = Manifest("toy", CLASSES, {v: {"subset": "test", "duration": None, "fps": None}
                                         for v in ("clip été 1", "ntsc")},
                        [{"video": "clip été 1", "start": 0.1, "end": 0.5, "label": "BaseballPitch"},
                         {"video": "ntsc", "start": 0.1, "end": 0.4, "label": "CliffDiving"}],
                        {"50_50": [["BaseballPitch", "CliffDiving"]]}, [0.3, 0.5])
    manifest.save(tmp_path / "manifest.json")
    result = CliRunner().invoke(adapt, [str(cache), "--manifest", str(tmp_path / "manifest.json"), "--split", "50_50",
                                        "--out", str(tmp_path / "out"), "--steps", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    detected = json.loads((tmp_path / "out" / "split_0" / "detections.json").read_text())["results"]
    assert set(detected) == {"clip été 1", "ntsc"}


def test_sigterm_ends_a_run_as_an_exception_so_cleanup_runs():
    cleaned, before = [], signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        with terminated_cleanly("t3al-extract"):
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            finally:
                cleaned.append(True)
    assert stopped.value.code == 128 + signal.SIGTERM and cleaned == [True]
    assert signal.getsignal(signal.SIGTERM) is before


def test_caption_decoding_is_chosen_on_the_command_line_and_recorded(models, good_videos, tmp_path):
    result = _extract(models, good_videos, tmp_path / "cache", "--caption-decoding", "greedy")
    assert result.exit_code == 0, result.output
    reader = CacheReader(tmp_path / "cache")
    assert reader.info.captions["decoding"] == "greedy" and reader.info.captions["generation_type"] == "top_k"
    assert len(reader.video("v25").caption_texts) == 2
    again = _extract(models, good_videos, tmp_path / "cache", "--caption-decoding", "beam")
    assert again.exit_code != 0 and "captions decoding = 'greedy', this run asks for 'beam'" in again.output
    short = _extract(models, good_videos, tmp_path / "other", "--caption-length", "3")
    assert short.exit_code != 0 and "--caption-length" in short.output and "Traceback" not in short.output


def test_a_250_character_file_name_is_cached_under_a_short_id_keeping_its_name(models, good_videos, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    name = "a" * 250  # legal on Linux; ".<name>.h5.<pid>.<hex>.tmp" would not be
    shutil.copy(good_videos / "v25.mp4", videos / f"{name}.mp4")
    result = _extract(models, videos, tmp_path / "cache", "--caption-fps", "0")
    assert result.exit_code == 0 and "1 done, 0 skipped, 0 failed" in result.output, result.output
    (video_id,) = CacheReader(tmp_path / "cache").video_ids()
    assert video_id == safe_video_id(name) == f"{'a' * 191}-{video_id[-8:]}" and len(video_id) == 200
    assert CacheReader(tmp_path / "cache").video(name).name == name
    assert "1 skipped" in _extract(models, videos, tmp_path / "cache", "--caption-fps", "0").output


def test_a_read_only_cache_is_one_line_before_the_model_loads(models, good_videos, tmp_path, monkeypatch):
    from t3al.cache import store
    from t3al.extract import folder

    assert _extract(models, good_videos, tmp_path / "cache", "--caption-fps", "0").exit_code == 0

    def read_only(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    def no_model(*args):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(store, "_write_new", read_only)
    monkeypatch.setattr(folder, "load", no_model)
    for cache in (tmp_path / "cache", tmp_path / "new" / "cache"):
        result = _extract(models, good_videos, cache, "--caption-fps", "0")
        folder = cache if cache.exists() else tmp_path
        assert result.exit_code == 1 and result.output.splitlines() == [
            f"Error: {cache}: cannot write into {folder} (Read-only file system); give a writable cache directory"]


def test_hidden_entries_get_one_line_and_the_summary_adds_up(models, good_videos, tmp_path, caplog):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("v25.mp4", "ntsc.mp4", ".hidden.mp4", "..mp4"):
        shutil.copy(good_videos / "v25.mp4", videos / name)
    os.symlink(tmp_path / "gone.mp4", videos / "dangling.mp4")
    (videos / "frames.mp4").mkdir()
    result = _extract(models, videos, tmp_path / "cache", "--caption-fps", "0")
    assert "2 done, 0 skipped, 2 failed (shard 0/1: 4 of the folder's 4 entries)" in result.output
    assert [r.message for r in caplog.records if "hidden entr" in r.message] == [
        f"{videos}: 2 hidden entries skipped: ..mp4, .hidden.mp4"]
    assert CacheReader(tmp_path / "cache").video_ids() == ["ntsc", "v25"]
