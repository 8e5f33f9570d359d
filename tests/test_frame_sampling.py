"""Which frames are sampled: clips whose frames show their own index (16 black or white cells, one bit
each), decoded at several --fps and compared with the frames ffmpeg's own fps filter picks, and the
frame rate inferred from the timestamps of a stream that reports none."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from extract_helpers import VFR_SETPTS, make_video, vfr_times
from t3al.cache import CacheReader
from t3al.extract import ffmpeg_frames
from t3al.extract.cli import main as extract_main
from t3al.extract.ffmpeg_frames import FrameGeometry, ffmpeg_binary, probe, stream_frames

SIZE = 64  # pixels of a clip's side: a 4 x 4 grid of 16-pixel cells
BITS = 16
CLIPS = {"c25": (63, "25"), "ntsc": (61, "30000/1001")}  # frames, rate: 2.52 s and 2.04 s


def _indexed_frames(n: int) -> np.ndarray:
    """``n`` grey frames, cell b (row-major) white when bit b of the frame's index is set."""
    bits = (np.arange(n)[:, None] >> np.arange(BITS)) & 1
    cells = (255 * bits).astype(np.uint8).reshape(n, 4, 4)
    cell = SIZE // 4
    return cells.repeat(cell, axis=1).repeat(cell, axis=2)


def _write_clip(path: Path, n: int, rate: str) -> Path:
    subprocess.run([ffmpeg_binary(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{SIZE}x{SIZE}",
                    "-r", rate, "-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)],
                   input=_indexed_frames(n).tobytes(), check=True)
    return path


def _indices(frames: np.ndarray) -> list[int]:
    """The index each frame shows, read at its cells' centres: frames (N, H, W) grey or (N, H, W, 3)."""
    grey = frames.mean(axis=3) if frames.ndim == 4 else frames
    cell = grey.shape[1] // 4
    bits = grey[:, cell // 2::cell, cell // 2::cell].reshape(len(grey), BITS) > 128
    return (bits * (1 << np.arange(BITS))).sum(axis=1).tolist()


def _ffmpeg_frames(path: Path, *options: str) -> list[int]:
    """The indices of the frames ffmpeg decodes from ``path`` with ``options`` (e.g. a filter)."""
    out = subprocess.run([ffmpeg_binary(), "-v", "error", "-i", str(path), *options, "-f", "rawvideo",
                          "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout
    return _indices(np.frombuffer(out, np.uint8).reshape(-1, SIZE, SIZE))


def _ffmpeg_fps_filter(path: Path, fps: float) -> list[int]:
    """The frames ffmpeg's fps filter, with its default options, keeps of ``path`` at ``fps``."""
    return _ffmpeg_frames(path, "-vf", f"fps={fps}")


def _decoded(path: Path, fps: float | None) -> tuple[list[int], np.ndarray]:
    """The indices and times of the frames ``stream_frames`` gives at model size (32: cells of 8 pixels)."""
    batches = list(stream_frames(probe(path), FrameGeometry(32), batch_size=16, fps=fps))
    return _indices(np.concatenate([f for f, _ in batches])), np.concatenate([t for _, t in batches])


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("indexed")
    for name, (n, rate) in CLIPS.items():
        _write_clip(root / f"{name}.mp4", n, rate)
    return {name: root / f"{name}.mp4" for name in CLIPS}


def test_the_clips_show_their_frame_indices(clips):
    for name, (n, _) in CLIPS.items():
        assert _ffmpeg_frames(clips[name]) == list(range(n))


def test_without_fps_every_frame_is_decoded_once_in_order(clips):
    indices, times = _decoded(clips["c25"], None)
    assert indices == list(range(63))
    np.testing.assert_allclose(times, np.arange(63) / 25, atol=1e-6)


@pytest.mark.parametrize("fps", [2, 7, 10, 12.5])
@pytest.mark.parametrize("clip", list(CLIPS))
def test_resampled_frames_are_the_ones_ffmpegs_fps_filter_picks(clips, clip, fps):
    indices, times = _decoded(clips[clip], fps)
    assert indices == _ffmpeg_fps_filter(clips[clip], fps)
    np.testing.assert_allclose(times, np.arange(len(indices)) / fps, atol=1e-6)


def test_the_picks_at_2_and_7_fps_are_those_worked_by_hand(clips):
    """25 fps to 2 fps: frame i (at i/25 s) falls in output slot round(2 i / 25), each slot shows the last
    frame in it (slot 0: frames 0-6, slot 1: 7-18, ...), and the 2.52 s clip fills round(2.52 * 2) = 5
    slots; at 7 fps, round(2.52 * 7) = round(17.64) = 18 (rounding down would give 17)."""
    assert _decoded(clips["c25"], 2)[0] == [6, 18, 31, 43, 56]
    assert len(_decoded(clips["c25"], 7)[0]) == 18


_parse_probe = ffmpeg_frames.parse_probe


def _without_rate(path: Path, stderr: str) -> ffmpeg_frames.VideoInfo:
    """What ``ffmpeg -i`` says of a stream that states no frame rate: its text with the rates taken out."""
    return _parse_probe(path, re.sub(r", [\d.]+k? (fps|tbr)", "", stderr))


def test_a_stream_stating_no_rate_is_probed_as_none(clips, monkeypatch):
    monkeypatch.setattr(ffmpeg_frames, "parse_probe", _without_rate)
    assert np.isnan(probe(clips["c25"]).fps)


def test_the_rate_of_a_stream_stating_none_is_inferred_from_its_frame_times(models, clips, tmp_path, monkeypatch):
    """(frames - 1) / (last time - first time): 62 / 2.48 s = 25, 60 / (60 * 1001 / 30000 s) = 29.97, and for
    a variable rate the mean rate, 19 / 1.48 s = 12.84 (not 25, the rate of its first frames)."""
    monkeypatch.setattr(ffmpeg_frames, "parse_probe", _without_rate)
    folder, checkpoints = models
    videos = tmp_path / "videos"
    videos.mkdir()
    for name, path in clips.items():
        (videos / path.name).symlink_to(path)
    make_video(videos / "vfr.mp4", frames=20, rate="25", setpts=VFR_SETPTS)
    result = CliRunner().invoke(extract_main, [str(videos), str(tmp_path / "cache"), "--model", "t3al_test_tiny_clip",
                                               "--pretrained", str(checkpoints["t3al_test_tiny_clip"]),
                                               "--model-config", str(folder), "--caption-fps", "0"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    reader = CacheReader(tmp_path / "cache")
    assert reader.video("c25").fps == pytest.approx(25.0, rel=1e-9)
    assert reader.video("ntsc").fps == pytest.approx(30000 / 1001, rel=1e-6)
    assert reader.video("vfr").fps == pytest.approx(19 / 1.48, rel=1e-6)
    np.testing.assert_allclose(reader.video("c25").timestamps, np.arange(63) / 25, atol=1e-6)
    np.testing.assert_allclose(reader.video("vfr").timestamps, vfr_times(20), atol=1e-6)
