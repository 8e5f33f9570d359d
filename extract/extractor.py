"""The model loop of stage one: frames to features, image tokens to captions, one VideoRecord per video.

A fault of the device itself (a sticky CUDA error) is not a fault of the video in flight: every
later video would fail the same way, so it stops the run as a ``DeviceFault`` instead of failing
the video.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from t3al.cache import CacheError, T3alError, VideoRecord

from .captions import CaptionGenerator, CaptionSettings
from .ffmpeg_frames import DecodeError, FrameGeometry, VideoInfo
from .defaults import DECODE_ERROR_POLICIES
from .listing import VideoFile
from .models import LoadedModel, encode_frames, encode_texts
from .reading import decode_videos, prefetch

Progress = Callable[[VideoFile, float, float], None]  # (video, seconds done, its duration) after each batch

# Messages of the errors CUDA and its libraries raise once the device (its context) is unusable.
DEVICE_FAULT_MARKERS = ("CUDA error", "cudaError", "CUBLAS_STATUS", "CUDNN_STATUS", "cuDNN error",
                        "device-side assert", "illegal memory access", "unspecified launch failure")


class DeviceFault(T3alError):
    """The device failed (a sticky CUDA error): no later video could be processed, so the run stops."""


def is_device_fault(err: BaseException) -> bool:
    """Whether ``err`` is a fault of the device rather than of the video: ``torch.AcceleratorError``
    or a RuntimeError with a CUDA error message (``CUDA error: an illegal memory access ...``)."""
    if isinstance(err, getattr(torch, "AcceleratorError", ())):  # torch >= 2.8
        return True
    return isinstance(err, RuntimeError) and any(marker in str(err) for marker in DEVICE_FAULT_MARKERS)


@dataclass(frozen=True)
class Settings:
    """How frames are sampled, batched and captioned."""

    batch_size: int = 64
    fps: float | None = None
    caption_fps: float = 10.0
    caption_batch_size: int = 0  # 0: 128 on CUDA, 16 elsewhere (more rows per decoder step amortise its weights)
    caption_length: int = 30
    caption_decoding: str = "beam"
    preprocess: str = "model"
    prefetch: int = 2
    on_decode_error: str = "fail"  # a partial decode fails the video, or ("keep") is cached with its warnings

    def __post_init__(self) -> None:
        if self.on_decode_error not in DECODE_ERROR_POLICIES:
            raise ValueError(f"on_decode_error must be one of {DECODE_ERROR_POLICIES}, got {self.on_decode_error!r}")

    def captioning(self) -> CaptionSettings:
        """How captions are decoded (open_clip's ``generate`` defaults but for length and decoding)."""
        return CaptionSettings(decoding=self.caption_decoding, seq_len=self.caption_length)


def caption_rows(timestamps: np.ndarray, caption_fps: float, start_bin: int) -> tuple[np.ndarray, int]:
    """Rows that get a caption: the first frame of each 1/caption_fps interval (every 3rd at 30 fps, 10/s)."""
    if caption_fps <= 0 or len(timestamps) == 0:
        return np.zeros(0, dtype=np.int64), start_bin
    bins = np.floor(np.round(timestamps * caption_fps, 6)).astype(np.int64)
    rows = []
    last = start_bin
    for row, b in enumerate(bins):
        if b > last:
            rows.append(row)
            last = b
    return np.array(rows, dtype=np.int64), last


class FrameNormalizer:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) normalised with the model's mean and std, on its device."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> None:
        self.device = device
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255.0

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(frames).permute(0, 3, 1, 2)  # contiguous when the frames are planar
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)  # pinned for the current device, set at load
        out = torch.empty(x.shape, device=self.device)
        out.copy_(x)  # one pass: layout change (if any) and conversion to float
        return out.sub_(self.mean).div_(self.std)


class VideoAccumulator:
    """Features, times and captions of one video, gathered batch by batch."""

    def __init__(self, extractor: Extractor, video: VideoFile, stat: os.stat_result, info: VideoInfo) -> None:
        self.extractor, self.video, self.stat, self.info = extractor, video, stat, info
        self.features: list[np.ndarray] = []
        self.stamps: list[np.ndarray] = []
        self.caption_frames: list[int] = []
        self.caption_texts: list[str] = []
        self.pending: list[torch.Tensor] = []
        self.last_bin = -1
        self.n_frames = 0

    def add(self, frames: np.ndarray, times: np.ndarray) -> None:
        extractor = self.extractor
        features, tokens = encode_frames(extractor.loaded, extractor.normalize(frames))
        self.features.append(features.numpy())
        self.stamps.append(times)
        if extractor.generator is not None:
            rows, self.last_bin = caption_rows(times, extractor.settings.caption_fps, self.last_bin)
            self.caption_frames.extend((rows + self.n_frames).tolist())
            self.pending.extend(tokens[torch.from_numpy(rows).to(tokens.device)])
            self.caption_texts.extend(extractor.caption(self.pending, final=False))
        self.n_frames += len(frames)

    def finish(self, warnings: list[str]) -> VideoRecord:
        texts = self.caption_texts + self.extractor.caption(self.pending, final=True)
        timestamps = np.concatenate(self.stamps)
        fps = self.extractor.settings.fps or self.info.fps
        duration = self.info.duration
        return VideoRecord(
            video_id=self.video.video_id,
            name=self.video.name,
            features=np.concatenate(self.features),
            timestamps=timestamps,
            fps=fps if math.isfinite(fps) and fps > 0 else rate_from(timestamps),
            caption_frames=np.array(self.caption_frames, dtype=np.int64),
            caption_texts=texts,
            caption_features=encode_texts(self.extractor.loaded, texts) if texts else np.zeros((0, 0)),
            duration=duration if math.isfinite(duration) else float(timestamps[-1]),
            source_path=str(self.video.path.resolve()),
            source_size=self.stat.st_size,
            source_mtime=self.stat.st_mtime,
            decode_warnings=warnings,
        )


class Extractor:
    """Turns video files into VideoRecords with the loaded model, decoding ahead in a thread."""

    def __init__(self, loaded: LoadedModel, settings: Settings) -> None:
        self.loaded = loaded
        self.settings = settings
        self.geometry = FrameGeometry(loaded.image_size, settings.preprocess)
        self.normalize = FrameNormalizer(loaded.mean, loaded.std, loaded.device)
        captions = settings.caption_fps > 0 and loaded.can_caption
        self.generator = CaptionGenerator(loaded.model, settings.captioning()) if captions else None

    def records(self, todo: list[tuple[VideoFile, os.stat_result]], on_batch: Progress = lambda *_: None
                ) -> Iterator[tuple[VideoFile, VideoRecord | Exception]]:
        """One ``(video, record or error)`` per video of ``todo``, in order; a device fault raises
        ``DeviceFault`` and ends the iteration. ``on_batch(video, seconds done, duration)`` follows
        the work within a video.

        The next batches (of this or the next video) are decoded while the model works.
        """
        decoded = decode_videos(todo, self.geometry, self.settings.batch_size, self.settings.fps)
        batches = prefetch(decoded, self.settings.prefetch)
        try:
            yield from self._records(batches, on_batch)
        finally:  # at once, even while an error's traceback keeps this frame alive
            batches.close()

    def _records(self, batches: Iterator[tuple], on_batch: Progress
                 ) -> Iterator[tuple[VideoFile, VideoRecord | Exception]]:
        """``records`` over the decoded batches."""
        current: VideoAccumulator | None = None
        failed: VideoFile | None = None
        for video, stat, info, frames, times in batches:
            if isinstance(info, DecodeError):
                current = None
                yield video, info
                continue
            if video is failed:
                continue
            try:
                if current is None or current.video is not video:
                    current = VideoAccumulator(self, video, stat, info)
                if frames is not None:
                    current.add(frames, times)
                    on_batch(video, float(times[-1]), info.duration)
                    continue
                if times and self.settings.on_decode_error == "fail":
                    raise DecodeError(f"{video.path}: partial decode ({'; '.join(times)}); nothing cached: "
                                      "repair or re-download the file, or pass --on-decode-error keep")
                record = current.finish(times)
            except (RuntimeError, ValueError, CacheError, DecodeError) as err:  # e.g. out of memory on this video
                if is_device_fault(err):
                    raise DeviceFault(f"{self.loaded.device} failed on {video.path}: {_first_line(err)}; the run "
                                      "stops here, no cache file was changed for it") from err
                current, failed = None, video
                yield video, err
                continue
            current = None
            yield video, record

    def caption(self, pending: list[torch.Tensor], final: bool) -> list[str]:
        """Caption full batches of pending image tokens (all of them when ``final``), emptying ``pending``."""
        size = self.settings.caption_batch_size or (128 if self.loaded.device.type == "cuda" else 16)
        texts: list[str] = []
        while len(pending) >= size or (final and pending):
            chunk, pending[:] = pending[:size], pending[size:]
            with self.loaded.autocast():
                texts.extend(self.generator.texts(torch.stack(chunk)))
        return texts


def _first_line(err: BaseException) -> str:
    """The first line of an error's message (CUDA errors add lines of debugging advice)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def rate_from(timestamps: np.ndarray, fallback: float = 1.0) -> float:
    """Frame rate from presentation times, when the container states none (``fallback`` when the
    times span nothing)."""
    span = float(timestamps[-1] - timestamps[0]) if len(timestamps) > 1 else 0.0
    return (len(timestamps) - 1) / span if span > 0 else fallback
