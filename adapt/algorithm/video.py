"""What stage two needs of one video, taken from the cache and checked, and what it returns."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from t3al.cache import T3alError, VideoRecord


class VideoProblem(T3alError):
    """A video that cannot be localized (reported, the rest of the split goes on)."""

    def __init__(self, video_id: str, reason: str) -> None:
        super().__init__(f"video {video_id}: {reason}")
        self.video_id = video_id
        self.reason = reason

    def __reduce__(self):
        """Rebuilt from (video, reason), so a problem found in a worker process reaches the parent."""
        return VideoProblem, (self.video_id, self.reason)


@dataclass
class VideoInput:
    """Pre-projection frame and caption features of one video, as float32 tensors."""

    video_id: str
    features: torch.Tensor  # (N, Dv)
    timestamps: np.ndarray  # (N,) seconds
    caption_frames: torch.Tensor  # (M,) frame index of each caption
    caption_features: torch.Tensor  # (M, Dt)

    @property
    def n_frames(self) -> int:
        return int(self.features.shape[0])

    @classmethod
    def from_record(cls, record: VideoRecord, video_id: str | None = None) -> "VideoInput":
        """Check a cached video and turn it into tensors, known as ``video_id`` (the id or name the
        caller asked for: results and problems carry it; default the video's own name)."""
        video_id = video_id or record.name
        features = np.ascontiguousarray(record.features, dtype=np.float32)
        if record.n_frames < 2:
            raise VideoProblem(video_id, f"has {record.n_frames} frame(s); at least 2 are needed")
        _check_timestamps(video_id, np.asarray(record.timestamps, dtype=np.float64))
        if not np.isfinite(features).all():
            bad = int((~np.isfinite(features).all(axis=1)).sum())
            raise VideoProblem(video_id, f"{bad} frame feature(s) contain NaN or infinity")
        zero = int((np.abs(features).sum(axis=1) == 0).sum())
        if zero:
            raise VideoProblem(video_id, f"{zero} frame feature(s) are all zeros (zero norm)")
        captions = np.asarray(record.caption_features, dtype=np.float32)
        if captions.size and not np.isfinite(captions).all():
            raise VideoProblem(video_id, "caption features contain NaN or infinity")
        return cls(
            video_id=video_id,
            features=torch.from_numpy(features),
            timestamps=np.asarray(record.timestamps, dtype=np.float64),
            caption_frames=torch.from_numpy(np.asarray(record.caption_frames, dtype=np.int64)),
            caption_features=torch.from_numpy(np.ascontiguousarray(captions)),
        )


def _check_timestamps(name: str, times: np.ndarray) -> None:
    """Segments are cut in time from the frames' timestamps: they must be finite and never decrease."""
    bad = np.flatnonzero(~np.isfinite(times))
    if bad.size:
        raise VideoProblem(name, f"timestamps are not all finite numbers (frame {bad[0]})")
    back = np.flatnonzero(np.diff(times) < 0)
    if back.size:
        i = back[0] + 1
        raise VideoProblem(name, f"timestamps decrease at frame {i} ({times[i]:.3f} s after {times[i - 1]:.3f} s)")


@dataclass
class GroundTruthHint:
    """What the oracles may know of a video: its true class, instance count and action frames."""

    true_class: int
    count: int
    inside: torch.Tensor  # (N,) bool, frames inside a true instance


@dataclass
class VideoResult:
    """One video's output: pseudo-label, the proposal curve, and the scored segments (frames)."""

    video_id: str
    pseudo_label: int
    probabilities: np.ndarray  # (C,) video-level class probabilities
    similarity: np.ndarray  # (N,) the curve proposals were cut from
    timestamps: np.ndarray  # (N,)
    segments: list[tuple[int, int]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what is odd about the result, without the video's id
    curves: dict[int, np.ndarray] = field(default_factory=dict)  # label -> curve, when several labels were localized
    emitted: list[float] = field(default_factory=list)  # online protocol: stream time each segment was emitted at
    presence: np.ndarray | None = None  # (C,) presence of every class, under the open-set rule (presence.py)

    def seconds(self) -> np.ndarray:
        """Segments as (S, 2) start/end times from the decoder's timestamps."""
        if not self.segments:
            return np.zeros((0, 2))
        return self.timestamps[np.asarray(self.segments, dtype=np.int64)]

    def warning_lines(self) -> list[str]:
        """The warnings as a run reports them, under the id this result carries (t3al-localize's
        results carry the video's own name, as its detections and problems do)."""
        return [f"video {self.video_id}: {warning}" for warning in self.warnings]
