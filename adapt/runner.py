"""Localize a split's videos from the cache: both protocols, joblib across videos, per-video seeds."""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import joblib
import numpy as np
import torch

from t3al.cache import CacheError, CacheReader, Head

from .config import AdaptConfig
from .localizer import T3AL, Projections, make_optimizer, naive_localize
from .video import GroundTruthHint, VideoInput, VideoProblem, VideoResult

CHUNK = 4  # videos per joblib task: few enough for a live progress bar, enough to amortise set-up


@dataclass
class SplitOutcome:
    """Results of the videos that could be localized, and the problems of those that could not."""

    results: list[VideoResult] = field(default_factory=list)
    problems: list[VideoProblem] = field(default_factory=list)


def video_seed(seed: int, video_id: str) -> int:
    """A per-video seed that depends on nothing but the run seed and the video's id."""
    digest = hashlib.sha256(f"{seed}:{video_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread, so a video's numbers do not depend on how many jobs run."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _head_tensors(head: Head) -> tuple[torch.Tensor, torch.Tensor, float]:
    return torch.from_numpy(head.visual_proj), torch.from_numpy(head.text_projection), head.logit_scale


def _load(reader: CacheReader, video_id: str) -> VideoInput:
    try:
        return VideoInput.from_record(reader.video(video_id))
    except CacheError as err:
        raise VideoProblem(video_id, str(err)) from err


Truths = dict[str, list[tuple[float, float, int]]]  # video -> (start s, end s, class index) instances


def _hint(config: AdaptConfig, video: VideoInput, truths: Truths) -> GroundTruthHint | None:
    if not config.oracle or video.video_id not in truths:
        return None
    return hint_for(video, truths[video.video_id])


def _localize_chunk(root: str, video_ids: list[str], classes: list[str], config: AdaptConfig, seed: int,
                    truths: Truths) -> list[VideoResult | VideoProblem]:
    """Per-video reset protocol on a few videos (runs in a joblib worker)."""
    reader = CacheReader(root)
    head = reader.head()
    class_features = torch.from_numpy(head.prompt_features[head.prompt_index(classes)])
    visual, text, scale = _head_tensors(head)
    method = T3AL(config)
    out: list[VideoResult | VideoProblem] = []
    with single_thread():
        for video_id in video_ids:
            try:
                video = _load(reader, video_id)
                params = Projections(visual, text, scale)
                if config.method == "naive":
                    out.append(naive_localize(video, params, class_features, config.naive_threshold))
                    continue
                generator = torch.Generator().manual_seed(video_seed(seed, video_id))
                optimizer = make_optimizer(params, config) if config.steps else None
                result, _ = method.localize(video, params, optimizer, class_features, generator,
                                            hint=_hint(config, video, truths))
                out.append(result)
            except VideoProblem as problem:
                out.append(problem)
    return out


def _localize_stream(reader: CacheReader, video_ids: list[str], classes: list[str], config: AdaptConfig,
                     seed: int, truths: Truths,
                     on_video: Callable[[int], None]) -> list[VideoResult | VideoProblem]:
    """The public code's protocol: one optimiser over the videos in order, parameters carried over."""
    head = reader.head()
    class_features = torch.from_numpy(head.prompt_features[head.prompt_index(classes)])
    params = Projections(*_head_tensors(head))
    optimizer = make_optimizer(params, config)
    label_embeddings = (class_features @ params.text_projection).detach()
    generator = torch.Generator().manual_seed(seed)
    method = T3AL(config)
    out: list[VideoResult | VideoProblem] = []
    with single_thread():
        for video_id in video_ids:
            try:
                video = _load(reader, video_id)
                result, adaptation = method.localize(video, params, optimizer, class_features, generator,
                                                     label_embeddings, _hint(config, video, truths))
                params.restore(adaptation.before_last)
                params.logit_scale.requires_grad_(False)
                out.append(result)
            except VideoProblem as problem:
                out.append(problem)
            on_video(1)
    return out


def localize_split(
    cache: str,
    video_ids: list[str],
    classes: list[str],
    config: AdaptConfig,
    seed: int = 0,
    jobs: int = 1,
    truths: Truths | None = None,
    on_video: Callable[[int], None] = lambda n: None,
) -> SplitOutcome:
    """Localize ``video_ids`` (in this order) with the split's class vocabulary ``classes``.

    Videos missing from the cache, or unusable, become problems; the others are localized.
    ``truths`` (ground-truth instances per video) are read only by the oracles of ``config.oracle``.
    ``on_video(n)`` is called as videos complete (for a progress bar).
    """
    reader = CacheReader(cache)
    reader.head().prompt_index(classes)
    truths = truths or {}
    missing = [v for v in video_ids if v not in reader]
    present = [v for v in video_ids if v in reader]
    outcome = SplitOutcome(problems=[VideoProblem(v, f"not in cache {cache}") for v in missing])
    on_video(len(missing))
    if config.protocol == "stream" and config.method == "t3al":
        items = _localize_stream(reader, present, classes, config, seed, truths, on_video)
    else:
        chunks = [present[i:i + CHUNK] for i in range(0, len(present), CHUNK)]
        tasks = (joblib.delayed(_localize_chunk)(str(cache), chunk, classes, config, seed,
                                                 {v: truths[v] for v in chunk if v in truths})
                 for chunk in chunks)
        items = []
        for done in joblib.Parallel(n_jobs=jobs, return_as="generator")(tasks):
            items.extend(done)
            on_video(len(done))
    for item in items:
        (outcome.problems if isinstance(item, VideoProblem) else outcome.results).append(item)
    return outcome


def detection_rows(results: list[VideoResult], classes: list[str]) -> list[tuple[str, float, float, float, str]]:
    """(video, start s, end s, score, label) for every scored segment."""
    rows = []
    for result in results:
        for (start, end), label, score in zip(result.seconds(), result.labels, result.scores):
            rows.append((result.video_id, float(start), float(end), float(score), classes[label]))
    return rows


def hint_for(video: VideoInput, instances: list[tuple[float, float, int]]) -> GroundTruthHint:
    """Oracle knowledge of a video: its most frequent true class, that class's instance count and
    the frames inside its instances."""
    classes = [c for _, _, c in instances]
    true_class = max(set(classes), key=lambda c: (classes.count(c), -c))
    times = video.timestamps
    inside = np.zeros(video.n_frames, dtype=bool)
    for start, end, c in instances:
        if c == true_class:
            inside |= (times >= start) & (times <= end)
    return GroundTruthHint(true_class, classes.count(true_class), torch.from_numpy(inside))
