"""Stage one over a folder: list and shard videos, decode, encode, caption and write the cache.

Decoding runs in a background thread (and ffmpeg in its own process) while the model encodes the
previous batch; each finished video is written atomically through ``CacheWriter``, so an
interrupted run loses at most the video in flight and a rerun skips what is complete.
"""
from __future__ import annotations

import logging
import math
import os
import queue
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from t3al.cache import (CacheError, CacheInfo, CacheReader, CacheWriter, DiskFullError, VideoRecord, check_video_name,
                        safe_video_id)

from .decode import DecodeError, FrameGeometry, FrameStream, VideoInfo, ffmpeg_binary, has_zscale, probe
from .captions import CaptionGenerator, CaptionSettings
from .defaults import DECODE_ERROR_POLICIES
from .models import PROMPT_TEMPLATE, LoadedModel, encode_frames, encode_texts

log = logging.getLogger("t3al.extract")
TOOL_VERSION = "t3al-extract 1"
VIDEO_SUFFIXES = frozenset(".3g2 .3gp .asf .avi .flv .m2ts .m4v .mkv .mov .mp4 .mpeg .mpg .mts .ogv .ts .webm "
                           ".wmv".split())


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


@dataclass(frozen=True)
class VideoFile:
    """One input file, its name (the file's stem) and the id it gets in the cache (``safe_video_id``)."""

    path: Path
    video_id: str
    name: str = ""

    @property
    def stat(self) -> os.stat_result:
        return self.path.stat()


@dataclass
class Summary:
    """What a run did, for the final line and the exit code."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    warned: list[str] = field(default_factory=list)  # done, but kept with decode warnings

    def line(self) -> str:
        kept = f" ({len(self.warned)} kept with decode warnings)" if self.warned else ""
        return f"{len(self.done)} done{kept}, {len(self.skipped)} skipped, {len(self.failed)} failed"


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return index, count


def in_shard(video_id: str, shard: tuple[int, int]) -> bool:
    """Deterministic split by a hash of the id: stable when videos are added or listed differently."""
    index, count = shard
    return zlib.crc32(video_id.encode("utf-8")) % count == index


def list_videos(folder: Path) -> tuple[list[VideoFile], list[tuple[str, Path, str]]]:
    """Candidate files of ``folder`` (sorted; hidden ones are skipped with one log line) and the ones
    refused before decoding.

    Refused: dangling symbolic links, folders named like video files, names that cannot name a
    video and names that give several files one id (which file would the cache key mean?). Other
    folders are not searched (one log line each). A file named ``my clip.mp4`` gets the id
    ``safe_video_id("my clip")``; its name stays in the cache.
    """
    by_id: dict[str, list[Path]] = {}
    refused = []
    entries = sorted(folder.iterdir())
    hidden = [p.name for p in entries if p.name.startswith(".")]
    if hidden:
        log.info("%s: %d hidden entr%s skipped: %s", folder, len(hidden), "y" if len(hidden) == 1 else "ies",
                 ", ".join(hidden[:5]) + (f" and {len(hidden) - 5} more" if len(hidden) > 5 else ""))
    for path in (p for p in entries if not p.name.startswith(".")):
        reason = _not_a_file(path)
        if reason is None:
            try:
                by_id.setdefault(safe_video_id(path.stem), []).append(path)
            except CacheError as err:
                refused.append((path.name, path, str(err)))
        elif reason:
            refused.append((_id_of(path.stem), path, reason))
    videos = []
    for video_id, paths in sorted(by_id.items()):
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            refused.extend((video_id, p, f"name clash: {names} share the video id {video_id!r}; rename one")
                           for p in paths)
        else:
            videos.append(VideoFile(paths[0], video_id, check_video_name(paths[0].stem)))
    return videos, refused


def _not_a_file(path: Path) -> str | None:
    """None for a regular file (or a link to one); why it is refused; "" for a folder left out."""
    if path.is_file():
        return None
    if path.is_symlink() and not path.exists():
        return f"dangling symbolic link (to {os.readlink(path)})"
    if path.is_dir():
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return "a folder named like a video file, not a video"
        log.info("%s: a folder, not searched", path)
        return ""
    return "not a regular file"


def _id_of(name: str) -> str:
    """``safe_video_id(name)``, or the name itself when it cannot name a video."""
    try:
        return safe_video_id(name)
    except CacheError:
        return name


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
            x = x.pin_memory().to(self.device, non_blocking=True)
        out = torch.empty(x.shape, device=self.device)
        out.copy_(x)  # one pass: layout change (if any) and conversion to float
        return out.sub_(self.mean).div_(self.std)


def decode_videos(todo: list[tuple[VideoFile, os.stat_result]], geometry: FrameGeometry, batch_size: int,
                  fps: float | None = None) -> Iterator[tuple]:
    """``(video, stat, info, frames, times)`` per batch; ``frames`` None closes a video (``times``
    then holds its decode warnings), ``info`` is a DecodeError when the video cannot be decoded.

    The next video's ffmpeg is started as soon as the current one is, so that it has frames ready
    when the current video ends (one more ffmpeg process in memory, mostly waiting on its pipe).
    """
    started = _started_streams(todo, geometry, fps)
    current = next(started, None)
    ahead = None
    try:
        while current is not None:
            ahead = next(started, None)
            video, stat, stream = current
            try:
                if isinstance(stream, DecodeError):
                    raise stream
                for frames, times in stream.batches(batch_size):
                    yield video, stat, stream.info, frames, times
                yield video, stat, stream.info, None, stream.warnings
            except DecodeError as err:
                yield video, stat, err, None, None
            current, ahead = ahead, None
    finally:
        for item in (current, ahead):
            if item is not None and isinstance(item[2], FrameStream):
                item[2].close()


def _started_streams(todo: list[tuple[VideoFile, os.stat_result]], geometry: FrameGeometry,
                     fps: float | None) -> Iterator[tuple]:
    """``(video, stat, FrameStream or DecodeError)`` per video, its ffmpeg started when yielded."""
    for video, stat in todo:
        try:
            yield video, stat, FrameStream(probe(video.path), geometry, fps)
        except DecodeError as err:
            yield video, stat, err


def prefetch(items: Iterator, depth: int) -> Iterator:
    """Run ``items`` in a thread, ``depth`` items ahead; exceptions surface in the consumer."""
    done = object()
    box: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                box.put(("item", item))
        except BaseException as err:  # handed to the consumer
            box.put(("error", err))
        box.put(("done", done))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            kind, item = box.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                box.get(timeout=0.05)
            except queue.Empty:
                pass


class VideoAccumulator:
    """Features, times and captions of one video, gathered batch by batch."""

    def __init__(self, extractor: "Extractor", video: VideoFile, stat: os.stat_result, info: VideoInfo) -> None:
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
            fps=fps if math.isfinite(fps) and fps > 0 else _rate_from(timestamps),
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

    def records(self, todo: list[tuple[VideoFile, os.stat_result]]) -> Iterator[tuple[VideoFile, VideoRecord | Exception]]:
        """One ``(video, record or error)`` per video of ``todo``, in order.

        The next batches (of this or the next video) are decoded while the model works.
        """
        current: VideoAccumulator | None = None
        failed: VideoFile | None = None
        decoded = decode_videos(todo, self.geometry, self.settings.batch_size, self.settings.fps)
        for video, stat, info, frames, times in prefetch(decoded, self.settings.prefetch):
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
                    continue
                if times and self.settings.on_decode_error == "fail":
                    raise DecodeError(f"{video.path}: partial decode ({'; '.join(times)}); nothing cached: "
                                      "repair or re-download the file, or pass --on-decode-error keep")
                record = current.finish(times)
            except (RuntimeError, ValueError, CacheError, DecodeError) as err:  # e.g. out of memory on this video
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


def _rate_from(timestamps: np.ndarray) -> float:
    """Frame rate from presentation times, when the container states none."""
    span = float(timestamps[-1] - timestamps[0]) if len(timestamps) > 1 else 0.0
    return (len(timestamps) - 1) / span if span > 0 else 1.0


def cache_info(loaded: LoadedModel, settings: Settings, feature_dtype: str) -> CacheInfo:
    """``cache.json`` for this model and these settings."""
    geometry = FrameGeometry(loaded.image_size, settings.preprocess)
    return CacheInfo(
        model=loaded.identity,
        feature_dtype=feature_dtype,
        preprocess={
            "mode": geometry.mode,
            "size": loaded.image_size,
            "resize": "shortest side, centre crop" if geometry.mode == "model" else "squash to size x size",
            "channels": geometry.channels,
            "interpolation": loaded.interpolation,
            "resizer": f"ffmpeg {'zscale' if has_zscale(ffmpeg_binary()) else 'swscale'} bicubic (Catmull-Rom, a=-0.5)",
            "mean": list(loaded.mean),
            "std": list(loaded.std),
            "precision": loaded.precision if loaded.device.type == "cuda" else "fp32",  # autocast runs on CUDA only
        },
        sampling={"policy": "every frame" if not settings.fps else "resampled", "fps": settings.fps,
                  "decoder": "ffmpeg", "ffmpeg": ffmpeg_binary()},
        captions={"fps": settings.caption_fps if loaded.can_caption else 0.0,
                  **(settings.captioning().describe() if loaded.can_caption else {"generation": "none"})},
        prompt_template=PROMPT_TEMPLATE,
        tool_version=TOOL_VERSION,
    )


PROVENANCE = {("sampling", "ffmpeg")}  # recorded, but not a setting: the same build may live at another path


def stored_settings(info: CacheInfo) -> dict[tuple[str, str], object]:
    """Every recorded setting that changes the stored numbers: preprocessing (and the model's
    precision), sampling, captions (only their rate when there are none) and the prompt template."""
    settings: dict[tuple[str, str], object] = {("prompt", "template"): info.prompt_template}
    for section in ("preprocess", "sampling", "captions"):
        values = getattr(info, section)
        if section == "captions" and values.get("fps") == 0:
            values = {"fps": values.get("fps")}
        settings.update({(section, key): value for key, value in values.items() if (section, key) not in PROVENANCE})
    return settings


def settings_mismatch(cached: CacheInfo, wanted: CacheInfo) -> str | None:
    """Why features made with ``wanted`` must not join a cache made with ``cached``, if they must not."""
    old, new = stored_settings(cached), stored_settings(wanted)
    for section, key in sorted(old.keys() | new.keys()):
        if old.get((section, key)) != new.get((section, key)):
            return (f"the cache was made with {section} {key} = {old.get((section, key))!r}, this run asks for "
                    f"{new.get((section, key))!r}")
    return None


def check_cache_dir(cache_dir: Path) -> None:
    """Refuse, before any model is loaded, a cache path that is a file or holds a malformed cache.json."""
    if cache_dir.exists() and not cache_dir.is_dir():
        raise CacheError(f"{cache_dir}: not a directory; give a cache directory (new or existing)")
    if (cache_dir / "cache.json").exists():
        CacheReader(cache_dir)


def open_cache(cache_dir: Path, wanted: CacheInfo) -> CacheWriter:
    """A writer of ``cache_dir`` for features made as ``wanted`` says; CacheError when the cache was
    made by another model or with other settings."""
    writer = CacheWriter(cache_dir, wanted)
    mismatch = settings_mismatch(writer.info, wanted)
    if mismatch:
        raise CacheError(f"{cache_dir}: {mismatch}; use the same settings or another cache directory")
    if writer.removed_temporaries:
        log.info("removed %d temporary file(s) left by killed writers", len(writer.removed_temporaries))
    return writer


def run_folder(videos: list[VideoFile], writer: CacheWriter, extractor: Extractor,
               summary: Summary) -> Summary:
    """Extract every video not already complete; failures are logged and recorded, never fatal,
    except a full disk (DiskFullError), which stops the run."""
    todo = []
    for video in videos:
        try:
            stat = video.stat
        except OSError as err:
            fail(writer, summary, video.video_id, video.path, f"unreadable ({err.strerror})")
            continue
        if writer.is_complete(video.video_id, stat.st_size, stat.st_mtime):
            summary.skipped.append(video.video_id)
        else:
            todo.append((video, stat))
    if summary.skipped:
        log.info("%d videos already complete in the cache, skipped", len(summary.skipped))
    with tqdm(total=len(todo), unit="video", desc="extract", dynamic_ncols=True) as bar, \
            writer.in_progress([video.video_id for video, _ in todo]) as next_video:
        for video, outcome in extractor.records(todo):
            bar.set_postfix_str(video.video_id)
            try:
                if isinstance(outcome, Exception):
                    raise outcome
                writer.write_video(outcome)
                summary.done.append(video.video_id)
                if outcome.decode_warnings:
                    keep_warned(writer, summary, video, outcome.decode_warnings)
            except DiskFullError:
                raise
            except (DecodeError, CacheError, OSError, RuntimeError, ValueError) as err:
                fail(writer, summary, video.video_id, video.path, str(err))
            bar.update()
            next_video()
    return summary


def keep_warned(writer: CacheWriter, summary: Summary, video: VideoFile, warnings: list[str]) -> None:
    """One log line and one failures.jsonl entry (``kept``) for a video cached with decode warnings."""
    reason = f"{video.path}: cached with decode warnings ({'; '.join(warnings)})"
    log.warning("warning: %s", reason)
    writer.record_failure(video.video_id, str(video.path), reason, kept=True)
    summary.warned.append(video.video_id)


def fail(writer: CacheWriter, summary: Summary, video_id: str, path: Path, reason: str) -> None:
    """One log line and one failures.jsonl entry for a video that could not be processed.

    Features cached from an earlier version of the file are removed: stage two must not read them
    as the video's.
    """
    if not reason.startswith(str(path)):
        reason = f"{path}: {reason}"
    try:
        removed = writer.remove_video(video_id)
    except CacheError:
        removed = False
    if removed:
        reason += "; the features cached from an earlier version of this file were removed"
    log.error("failed: %s", reason)
    writer.record_failure(video_id, str(path), reason)
    summary.failed.append((video_id, reason))
