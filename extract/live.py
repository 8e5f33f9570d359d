"""Stage one on a live stream: ffmpeg reads any source it can (a named pipe, a growing file, udp://,
rtsp://, http://) and the frames are encoded, and captioned at the chosen rate, as they arrive."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from t3al.cache import VideoRecord

from .ffmpeg_frames import DecodeError, FrameGeometry, FrameStream, _last_error, _timestamps, ffmpeg_binary
from .extractor import Extractor, caption_rows, rate_from
from .models import encode_frames, encode_texts

FALLBACK_FPS = 30.0  # a frame's time when ffmpeg reports none (showinfo gives every frame's in practice)


def live_command(source: str, geometry: FrameGeometry, fps: float | None = None) -> list[str]:
    """ffmpeg reading ``source`` as a stream, writing model-ready planar frames to stdout: the
    shortest side to the model's size and the centre crop (or the squash of ``t3al-public``) by
    ffmpeg's own expressions, since a stream cannot be probed for its size beforehand."""
    size = geometry.size
    filters = [f"fps={fps:g}"] if fps else []
    if geometry.mode == "model":
        filters += [f"scale={size}:{size}:force_original_aspect_ratio=increase:flags=bicubic", f"crop={size}:{size}"]
    else:
        filters += [f"scale={size}:{size}:flags=bicubic"]
    order = {"RGB": "2:0:1", "BGR": "1:0:2"}[geometry.channels]
    filters += ["format=gbrp", f"shuffleplanes={order}", "showinfo"]
    return [ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "level+info", "-i", source,
            "-vf", ",".join(filters), "-f", "rawvideo", "-pix_fmt", "gbrp", "-fps_mode", "passthrough", "pipe:"]


class LiveDecoder(FrameStream):
    """ffmpeg decoding a stream into a pipe; ``pieces`` yields the frames as they come."""

    def __init__(self, source: str, geometry: FrameGeometry, fps: float | None = None) -> None:
        self.source = source
        self._start(live_command(source, geometry, fps), geometry, fps)

    def pieces(self, frames_per_piece: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(frames, timestamps)``: uint8 (B, size, size, 3) and seconds, ``frames_per_piece`` at a
        time (fewer at the end of the stream); DecodeError when the stream gives no frame."""
        size = self.geometry.size
        frame_bytes = size * size * 3
        sent = 0
        while True:
            buffer = bytearray(frame_bytes * frames_per_piece)
            got = self.process.stdout.readinto(buffer)
            n = got // frame_bytes
            if n:
                planes = np.frombuffer(buffer, np.uint8, count=n * frame_bytes)
                yield (planes.reshape(n, 3, size, size).transpose(0, 2, 3, 1),
                       _timestamps(self.times, self.reader, sent, n, self.fps or FALLBACK_FPS))
                sent += n
            if got < len(buffer):
                break
        code = self.close()
        if sent == 0:
            raise DecodeError(f"{self.source}: no video frames (ffmpeg: {_last_error(self.log)}, exit {code})")


@dataclass
class LivePiece:
    """What stage one made of one piece of the stream: every frame's features and the captions of
    the frames it chose, with their frame index in the video and their text features."""

    features: np.ndarray
    timestamps: np.ndarray
    caption_frames: np.ndarray
    caption_texts: list[str]
    caption_features: np.ndarray


@dataclass
class LiveVideo:
    """A stream's features and captions so far, encoded piece by piece with ``extractor`` (every
    piece's captions at once, so that each is there as soon as its frame)."""

    extractor: Extractor
    pieces: list[LivePiece] = field(default_factory=list)
    n_frames: int = 0
    last_bin: int = -1

    def add(self, frames: np.ndarray, times: np.ndarray) -> LivePiece:
        extractor = self.extractor
        features, tokens = encode_frames(extractor.loaded, extractor.normalize(frames))
        rows, texts = np.zeros(0, dtype=np.int64), []
        if extractor.generator is not None:
            rows, self.last_bin = caption_rows(times, extractor.settings.caption_fps, self.last_bin)
            texts = extractor.caption(list(tokens[torch.from_numpy(rows).to(tokens.device)]), final=True)
        piece = LivePiece(features.numpy(), times, rows + self.n_frames, texts,
                          encode_texts(extractor.loaded, texts) if texts else np.zeros((0, 0), dtype=np.float32))
        self.pieces.append(piece)
        self.n_frames += len(frames)
        return piece

    def record(self, video_id: str, source: str) -> VideoRecord:
        """Everything received so far as the cache's record of the video."""
        times = np.concatenate([p.timestamps for p in self.pieces])
        captions = [p.caption_features for p in self.pieces if len(p.caption_texts)]
        return VideoRecord(
            video_id=video_id,
            features=np.concatenate([p.features for p in self.pieces]),
            timestamps=times,
            fps=self.extractor.settings.fps or rate_from(times, FALLBACK_FPS),
            caption_frames=np.concatenate([p.caption_frames for p in self.pieces]),
            caption_texts=[t for p in self.pieces for t in p.caption_texts],
            caption_features=np.concatenate(captions) if captions else np.zeros((0, 0), dtype=np.float32),
            duration=float(times[-1]),
            source_path=source,
        )
