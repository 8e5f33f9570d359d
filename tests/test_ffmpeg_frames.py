"""Decoding: probing without ffprobe, streamed batches, presentation times, resizing and bad files."""
from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from extract_helpers import VFR_SETPTS, make_audio, make_damaged_videos, make_video, vfr_times
from t3al.extract.ffmpeg_frames import (MAX_WARNINGS, DecodeError, FrameGeometry, FrameStream, VideoInfo, _read_pts,
                                        decode_warnings, ffmpeg_binary, probe, stream_frames)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    return {
        "25": make_video(root / "v25.mp4", frames=30, rate="25", size="97x61"),
        "ntsc": make_video(root / "ntsc.mp4", frames=31, rate="30000/1001", size="64x48"),
        "vfr": make_video(root / "vfr.mp4", frames=20, rate="25", setpts=VFR_SETPTS),
        "red": make_video(root / "red.mp4", frames=3, rate="25", size="40x30", source="color=c=red"),
        "smooth": make_video(root / "smooth.mp4", frames=4, rate="25", size="320x240", source="gradients"),
        "smooth_rgb": _make_rgb_video(root / "smooth_rgb.mp4"),
        "audio": make_audio(root / "audio.m4a"),
    }


def _make_rgb_video(path):
    """An H.264 video coded in RGB (libx264rgb): decoded frames need no YUV to RGB conversion."""
    subprocess.run([ffmpeg_binary(), "-v", "error", "-f", "lavfi", "-i", "gradients=size=320x240:rate=25",
                    "-frames:v", "4", "-c:v", "libx264rgb", "-pix_fmt", "rgb24", str(path)], check=True)
    return path


def _all(info, geometry, batch_size=8, fps=None):
    batches = list(stream_frames(info, geometry, batch_size, fps))
    return batches, np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def test_probe_reads_size_rate_and_duration_without_ffprobe(videos):
    info = probe(videos["25"])
    assert (info.width, info.height, info.fps) == (97, 61, 25.0)
    assert info.duration == pytest.approx(1.2, abs=0.05)


def test_probe_reads_the_pixel_format(videos):
    assert probe(videos["25"]).pix_fmt == "yuv444p" and probe(videos["ntsc"]).pix_fmt == "yuv420p"
    assert probe(videos["smooth_rgb"]).pix_fmt == "gbrp"


def test_probe_makes_ntsc_rates_exact(videos):
    assert probe(videos["ntsc"]).fps == pytest.approx(30000 / 1001, abs=1e-9)


def test_frames_come_in_fixed_size_batches_with_presentation_times(videos):
    batches, frames, times = _all(probe(videos["25"]), FrameGeometry(32), batch_size=8)
    assert [len(b[0]) for b in batches] == [8, 8, 8, 6]
    assert frames.shape == (30, 32, 32, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(times, np.arange(30) / 25, atol=1e-6)


def test_ntsc_timestamps_follow_the_stream(videos):
    _, frames, times = _all(probe(videos["ntsc"]), FrameGeometry(32))
    assert len(frames) == 31
    np.testing.assert_allclose(times, np.arange(31) * 1001 / 30000, atol=1e-4)


def test_variable_frame_rate_keeps_every_frame_at_its_own_time(videos):
    _, frames, times = _all(probe(videos["vfr"]), FrameGeometry(32))
    assert len(frames) == 20
    np.testing.assert_allclose(times, vfr_times(20), atol=1e-6)


def test_fps_option_resamples_to_a_regular_grid(videos):
    _, frames, times = _all(probe(videos["25"]), FrameGeometry(32), fps=5)
    assert len(frames) == 6
    np.testing.assert_allclose(times, np.arange(6) / 5, atol=1e-6)


def test_geometry_matches_torchvision_resize_and_center_crop():
    geometry = FrameGeometry(224)
    assert geometry.resized(2500, 2000) == (280, 224)
    assert geometry.crop_offset(2500, 2000) == (28, 0)
    assert FrameGeometry(32).resized(97, 61) == (50, 32)
    assert FrameGeometry(32).crop_offset(97, 61) == (9, 0)
    assert FrameGeometry(32, "t3al-public").resized(97, 61) == (32, 32)


@pytest.mark.parametrize("source", ["smooth", "smooth_rgb"], ids=["yuv", "rgb"])
@pytest.mark.parametrize("zimg", [True, False], ids=["zscale", "swscale"])
def test_resize_in_ffmpeg_is_close_to_open_clip_pil_transform(videos, zimg, source, monkeypatch):
    monkeypatch.setattr("t3al.extract.ffmpeg_frames.has_zscale", lambda binary: zimg)
    info = probe(videos[source])
    raw = subprocess.run([ffmpeg_binary(), "-v", "error", "-i", str(info.path), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    full = np.frombuffer(raw, np.uint8).reshape(-1, info.height, info.width, 3)
    transform = open_clip.image_transform(64, is_train=False)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    reference = torch.stack([transform(Image.fromarray(frame)) for frame in full])
    _, ours, _ = _all(info, FrameGeometry(64))
    ours = (torch.from_numpy(ours.copy()).permute(0, 3, 1, 2).float() / 255 - mean) / std
    levels = ((ours - reference) * std * 255).abs()  # differences in 8-bit grey levels
    assert levels.mean() < 2.0 and levels.max() <= 16


def test_frames_are_channel_planar_in_memory_as_the_model_takes_them(videos):
    frames, _ = next(stream_frames(probe(videos["25"]), FrameGeometry(32), batch_size=8))
    assert frames.shape == (8, 32, 32, 3) and frames.transpose(0, 3, 1, 2).flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("tags", [["-colorspace", "bt709", "-color_range", "tv"], ["-color_range", "pc"]])
def test_colour_tagged_streams_decode_with_their_tags(tmp_path, tags):
    path = tmp_path / "tagged.mp4"
    subprocess.run([ffmpeg_binary(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25",
                    "-frames:v", "3", "-pix_fmt", "yuv420p", *tags, str(path)], check=True)
    info = probe(path)
    assert tags[-1] in info.colour
    _, frames, _ = _all(info, FrameGeometry(32))
    assert frames.shape == (3, 32, 32, 3) and 20 < frames.mean() < 235


def test_t3al_public_mode_squashes_and_returns_bgr(videos):
    _, frames, _ = _all(probe(videos["red"]), FrameGeometry(24, "t3al-public"))
    assert frames.shape == (3, 24, 24, 3)
    blue, green, red = frames[..., 0].mean(), frames[..., 1].mean(), frames[..., 2].mean()
    assert red > 200 and blue < 40 and green < 40


def _opencv_pil_reference(path, size):
    """The public T3AL loader: OpenCV's BGR frames, each squashed to size x size by PIL's bicubic."""
    import cv2  # opencv-python-headless, in the test extra: the public loader reads frames with it

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(np.asarray(Image.fromarray(frame).resize((size, size), Image.BICUBIC)))
    capture.release()
    return np.stack(frames)


@pytest.mark.parametrize("source", ["smooth", "25"])
def test_t3al_public_mode_is_close_to_opencv_frames_resized_by_pil(videos, source):
    reference = _opencv_pil_reference(videos[source], 32)
    _, ours, _ = _all(probe(videos[source]), FrameGeometry(32, "t3al-public"))
    assert ours.shape == reference.shape  # same frames, same order, BGR as the public loader gives them
    levels = np.abs(ours.astype(np.int16) - reference.astype(np.int16))
    assert levels.mean() < 0.5 and levels.max() <= 16  # before converting as OpenCV: mean 1.3-1.6, max up to 25


def test_audio_only_file_is_refused_with_its_reason(videos):
    with pytest.raises(DecodeError, match="audio only"):
        probe(videos["audio"])


def test_non_video_file_is_refused(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video\n")
    with pytest.raises(DecodeError, match="notes.mp4: not a readable video"):
        probe(path)


def test_zero_length_file_is_refused(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(DecodeError, match="empty.mp4"):
        probe(path)


def test_video_with_zero_frames_is_refused(tmp_path):
    with pytest.raises(DecodeError, match="zero.mp4: no video stream"):
        probe(make_video(tmp_path / "zero.mp4", frames=0))


def test_truncated_mp4_is_refused(tmp_path, videos):
    data = videos["25"].read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match="cut.mp4"):
        info = probe(path)
        list(stream_frames(info, FrameGeometry(32)))


def test_unreadable_file_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "locked.mp4"
    path.write_bytes(b"x")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(DecodeError, match="locked.mp4: unreadable"):
        probe(path)


def test_real_video_decodes_every_frame_at_30_fps(shared_dir):
    info = probe(shared_dir / "data" / "videos" / "video_validation_0000986.mp4")
    assert (info.width, info.height, info.fps) == (2500, 2000, 30.0)
    _, frames, times = _all(info, FrameGeometry(32), batch_size=256)
    assert len(frames) == round(info.duration * 30)
    np.testing.assert_allclose(times, np.arange(len(frames)) / 30, atol=1e-4)


def _warnings(path, fps=None):
    stream = FrameStream(probe(path), FrameGeometry(16), fps)
    n = sum(len(frames) for frames, _ in stream.batches(32))
    return n, stream.warnings


def test_partial_decodes_report_decoder_errors_and_missing_frames(tmp_path):
    damaged = make_damaged_videos(tmp_path)
    n, warnings = _warnings(damaged["cut"])
    assert n < 40 and any("partial file" in w for w in warnings)
    assert warnings[-1] == f"decoded {n} frames ({n / 25:.2f} s) of the 100 (4.00 s) the container declares"
    n, warnings = _warnings(damaged["noise"])
    assert n < 100 and any(w.startswith("decoder: Invalid NAL unit size") for w in warnings)
    assert len(warnings) <= 2 * MAX_WARNINGS + 1  # demuxer's, decoder's, the frame count


def test_a_flood_of_decoder_errors_cannot_hide_the_demuxers_message():
    lines = [f"[h264 @ 0x{i:x}] [error] Invalid NAL unit size ({i} > 9).\n" for i in range(MAX_WARNINGS + 3)]
    lines += ["[mov,mp4,m4a,3gp,3g2,mj2 @ 0x5f00] [error] stream 0, offset 0x30: partial file\n",
              "[h264 @ 0x7] [warning] Invalid NAL unit size (1 > 9).\n"]
    errors: list[str] = []
    _read_pts(io.BytesIO("".join(lines).encode()), [], [], errors)
    assert errors == [f"decoder: Invalid NAL unit size ({i} > 9)." for i in range(MAX_WARNINGS)] + \
        ["demuxer: stream 0, offset 0x30: partial file"]


def test_messages_are_capped_per_source_and_labelled_by_it():
    lines = [f"[h264 @ 0x{i:x}] [error] Invalid NAL unit size ({i} > 9).\n" for i in range(4)]
    lines += [f"[error] Error while decoding stream #0:0: Invalid data {i}\n" for i in range(4)]
    lines += [f"[in#0/mov,mp4,m4a,3gp,3g2,mj2 @ 0x5f00] [error] stream 0, offset 0x{i}: partial file\n"
              for i in range(7)]
    errors: list[str] = []
    _read_pts(io.BytesIO("".join(lines).encode()), [], [], errors)
    assert [e.split(":")[0] for e in errors] == ["decoder"] * MAX_WARNINGS + ["demuxer"] * MAX_WARNINGS
    assert errors[MAX_WARNINGS - 1] == "decoder: Error while decoding stream #0:0: Invalid data 0"


def test_complete_decodes_have_no_warnings(videos):
    for name in ("25", "ntsc", "vfr", "smooth_rgb"):
        assert _warnings(videos[name]) == (_warnings(videos[name])[0], []), name
    assert _warnings(videos["25"], fps=10)[1] == []


def test_the_frame_count_rule_allows_a_second_or_two_percent():
    info = VideoInfo(Path("v.mp4"), 64, 48, 25.0, 100.0)
    assert decode_warnings(info, 25.0, 2500 - 50, []) == []  # 2 s short of 100 s: 2%
    assert decode_warnings(info, 25.0, 2500 - 51, []) == ["decoded 2449 frames (97.96 s) of the 2500 (100.00 s) "
                                                         "the container declares"]
    assert decode_warnings(VideoInfo(Path("v.mp4"), 64, 48, 25.0, 4.0), 25.0, 75, []) == []  # 1 s short
    assert decode_warnings(VideoInfo(Path("v.mp4"), 64, 48, float("nan"), float("nan")), 25.0, 3, ["decoder: x"]) \
        == ["decoder: x"]
