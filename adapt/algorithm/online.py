"""The online protocol (docs/online.md): a video consumed in chunks, in order, never looking ahead;
T3AL's adaptation carried from chunk to chunk; each detection emitted once its end is certain, with
the stream time it was emitted at, and never changed afterwards."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from t3al.cache import Head

from ..config import AdaptConfig
from .adapter import AdaptationInput, Adapted, Adapter, batch_params, make_optimizer
from .localizer import T3AL
from .ops import l2norm, moving_average
from .video import VideoInput, VideoResult


@dataclass(frozen=True)
class Emission:
    """One detection as the stream emits it: frames first..last, their times, label, score, and
    the stream time (the newest frame's timestamp) it was emitted at."""

    first: int
    last: int
    start: float
    end: float
    label: int
    score: float
    emitted_at: float

    def row(self, video_id: str, classes: Sequence[str]) -> dict:
        """The detection as a record: video, label, start, end, score, emitted_at."""
        return {"video": video_id, "label": classes[self.label], "start": float(self.start), "end": float(self.end),
                "score": float(self.score), "emitted_at": float(self.emitted_at)}


class _Growing:
    """Rows appended as they arrive, stored in a buffer that doubles when full (no copy per chunk)."""

    def __init__(self, width: int, dtype: torch.dtype) -> None:
        self.data = torch.zeros((64, width), dtype=dtype)
        self.size = 0

    def append(self, rows: torch.Tensor) -> None:
        if self.size + len(rows) > len(self.data):
            grown = torch.zeros((max(2 * len(self.data), self.size + len(rows)), self.data.shape[1]),
                                dtype=self.data.dtype)
            grown[:self.size] = self.data[:self.size]
            self.data = grown
        self.data[self.size:self.size + len(rows)] = rows
        self.size += len(rows)

    def rows(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        return self.data[start:self.size if stop is None else stop]


class OnlineT3AL:
    """T3AL on one video as its frames arrive (docs/online.md). ``feed`` frames and captions in any
    pieces: the state is updated once per ``config.chunk`` frames, so the detections do not depend
    on how the frames were delivered. Each update uses only the frames received so far and returns
    the detections it makes certain; ``finish`` ends the stream (the last partial chunk, then the
    segment still open). Emitted detections are never changed."""

    def __init__(self, config: AdaptConfig, head: Head, class_features: torch.Tensor, generator: torch.Generator,
                 video_id: str = "") -> None:
        self.config, self.video_id, self.generator = config, video_id, generator
        self.localizer = T3AL(config)
        self.class_features = class_features
        self.params = batch_params(head, config, 1)
        self.optimizer = make_optimizer(self.params, config) if config.chunk_steps else None
        self.adapter = Adapter(config.replace(steps=config.chunk_steps))
        self.label_embeddings = (class_features @ self.params.text_projection[0]).detach()  # the model's own
        self.frames = _Growing(head.visual_proj.shape[0], torch.float32)
        self.times: list[float] = []
        self.caption_frames: list[int] = []
        self.captions = _Growing(head.text_projection.shape[0], torch.float32)
        self.used = 0  # frames the state has been updated with
        self.curve: list[float] = []  # each frame's committed (smoothed) curve value
        self.open: list[int] | None = None  # [first, last] of the segment that may still grow
        self.candidates: list[tuple[int, int]] = []  # every closed segment, suppressed or not
        self.emissions: list[Emission] = []
        self.label, self.probabilities, self.losses = -1, np.zeros(0), []
        self.finished = False

    @property
    def seen(self) -> int:
        """Frames received so far."""
        return self.frames.size

    def feed(self, features: torch.Tensor, timestamps: Sequence[float], caption_frames: Sequence[int] = (),
             caption_features: torch.Tensor | None = None) -> list[Emission]:
        """Receive frames (their features and timestamps) and the captions of frames received
        (frame index in the video, features); update once per complete chunk; the new detections."""
        if self.finished:
            raise ValueError(f"video {self.video_id}: the stream has ended")
        if len(features) != len(timestamps):
            raise ValueError(f"{len(features)} frame features but {len(timestamps)} timestamps")
        if len(caption_frames) and max(caption_frames) >= self.seen + len(features):
            raise ValueError(f"a caption of frame {max(caption_frames)} arrived before its frame")
        self.frames.append(torch.as_tensor(features, dtype=torch.float32))
        self.times.extend(float(t) for t in timestamps)
        if len(caption_frames):
            self.caption_frames.extend(int(f) for f in caption_frames)
            self.captions.append(torch.as_tensor(caption_features, dtype=torch.float32))
        new: list[Emission] = []
        while self.seen - self.used >= self.config.chunk:
            new += self._update(self.used + self.config.chunk, end=False)
        return new

    def finish(self) -> list[Emission]:
        """End of the stream: update with the frames of the last partial chunk, commit every frame,
        close the open segment; the new detections."""
        if self.finished:
            return []
        self.finished = True
        return self._update(self.seen, end=True) if self.seen else []

    def _update(self, n: int, end: bool) -> list[Emission]:
        """One chunk: step 1 and ``chunk_steps`` adaptation steps on the window of frames before
        ``n``, then every frame whose smoothed curve value is now final is committed, kept or not,
        and the segments it closes are suppressed or emitted."""
        cfg = self.config
        start = max(0, n - cfg.online_window)
        window = VideoInput(self.video_id, self.frames.rows(start, n), np.asarray(self.times[start:n]),
                            torch.zeros(0, dtype=torch.long), self.captions.rows(0, 0))
        self.label, self.probabilities, background = self.localizer.pseudo_label(window, self.params.row(0),
                                                                                 self.class_features,
                                                                                 self.label_embeddings)
        adaptation_input = AdaptationInput(window, self.class_features[self.label], background, self.generator)
        adapted = self.adapter.adapt([adaptation_input], self.params, self.optimizer)[0]
        self.losses += adapted.adaptation.losses
        self.used = n
        with torch.no_grad():
            e = l2norm(self.class_features[self.label] @ adapted.params.text_projection)
            smooth = moving_average(adapted.params.logit_scale.exp() * (l2norm(adapted.residual) @ e), cfg.window)
        final = n if end else n - cfg.window // 2
        new = []
        for i in range(len(self.curve), final):
            new += self._commit(i, float(smooth[i - start]), adapted, background, n)
        if end and self.open is not None:
            new += self._close(adapted, background, n)
        return new

    def _commit(self, i: int, value: float, adapted: Adapted, background: torch.Tensor, n: int) -> list[Emission]:
        """Frame ``i``'s curve value, final: kept when above the threshold of the window's committed
        values (min-max normalised by them, as the offline curve is by the video's); a kept frame
        extends the open segment, which closes once ``stride`` frames after its last are not kept."""
        cfg = self.config
        self.curve.append(value)
        recent = np.asarray(self.curve[max(0, i + 1 - cfg.online_window):])
        low, high = recent.min(), recent.max()
        if cfg.normalize:
            recent = (recent - low) / (high - low) if high > low else np.zeros_like(recent)
        threshold = recent.mean() if cfg.threshold is None else cfg.threshold
        if recent[-1] > threshold:
            self.open = [self.open[0] if self.open else i, i]
        if self.open is not None and i - self.open[1] >= cfg.stride:
            return self._close(adapted, background, n)
        return []

    def _close(self, adapted: Adapted, background: torch.Tensor, n: int) -> list[Emission]:
        """The open segment is final: dropped when one frame long or when its captions disagree with
        the closed segments' (suppression), else labelled, scored and emitted at stream time ``n``."""
        first, last = self.open
        self.open = None
        if first == last:
            return []
        self.candidates.append((first, last))
        text_projection = adapted.adaptation.before_last["text_projection"]
        if self.config.suppression and len(self.candidates) >= 2 and (first, last) not in self.localizer._suppress(
                self._captioned(), self.candidates, text_projection):
            return []
        with torch.no_grad():
            r = (self.frames.rows(first, last) @ adapted.adaptation.before_last["visual_proj"]).mean(dim=0) - background
            label, score = self.localizer.label_and_score(r, self.class_features @ adapted.params.text_projection,
                                                          adapted.params.logit_scale, self.label)
        emission = Emission(first, last, self.times[first], self.times[last], label, score, self.times[n - 1])
        self.emissions.append(emission)
        return [emission]

    def _captioned(self) -> VideoInput:
        """The captions received so far, as the suppression reads them."""
        return VideoInput(self.video_id, self.frames.rows(0, 0), np.zeros(0),
                          torch.as_tensor(self.caption_frames, dtype=torch.long), self.captions.rows())

    def result(self) -> VideoResult:
        """The stream's detections as a video result: last pseudo-label, the committed curve, every
        emitted segment with its label, score and emission time."""
        emitted = self.emissions
        return VideoResult(self.video_id, self.label, self.probabilities, np.asarray(self.curve, dtype=np.float32),
                           np.asarray(self.times[:len(self.curve)]), [(e.first, e.last) for e in emitted],
                           [e.label for e in emitted], [e.score for e in emitted], self.losses,
                           emitted=[e.emitted_at for e in emitted])


def localize_online(video: VideoInput, config: AdaptConfig, head: Head, class_features: torch.Tensor,
                    generator: torch.Generator) -> VideoResult:
    """A cached video played as a stream: its frames and captions fed in order, then the end."""
    stream = OnlineT3AL(config, head, class_features, generator, video.video_id)
    for start in range(0, video.n_frames, config.chunk):
        stop = min(start + config.chunk, video.n_frames)
        inside = (video.caption_frames >= start) & (video.caption_frames < stop)
        stream.feed(video.features[start:stop], video.timestamps[start:stop], video.caption_frames[inside].tolist(),
                    video.caption_features[inside])
    stream.finish()
    return stream.result()


def emission_rows(results: Sequence[VideoResult], classes: list[str]) -> list[dict]:
    """Every emitted detection as a record (video, label, start, end, score, emitted_at), in the
    order each video's stream emitted them."""
    return [Emission(first, last, r.timestamps[first], r.timestamps[last], label, score, at).row(r.video_id, classes)
            for r in results for (first, last), label, score, at in zip(r.segments, r.labels, r.scores, r.emitted)]


def delay_summary(results: Sequence[VideoResult]) -> dict:
    """Emission delay (emitted at minus segment end, seconds) over ``results``: count, median, 95th
    percentile and maximum (None without detections)."""
    delays = np.asarray([at - r.timestamps[last] for r in results for (_, last), at in zip(r.segments, r.emitted)])
    if not delays.size:
        return {"detections": 0, "delay_median_s": None, "delay_p95_s": None, "delay_max_s": None}
    return {"detections": int(delays.size), "delay_median_s": float(np.median(delays)),
            "delay_p95_s": float(np.percentile(delays, 95)), "delay_max_s": float(delays.max())}
