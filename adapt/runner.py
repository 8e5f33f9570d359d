"""Localize a split's videos from the cache: both protocols, joblib across videos, per-video seeds."""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterator, Sequence

import joblib
import numpy as np
import torch

from t3al.cache import CacheError, CacheReader, Head

from .cluster import parallel_videos
from .config import AdaptConfig, ConfigError
from .localizer import T3AL, Projections, adaptation_key, make_optimizer, naive_localize, split_dependent
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


def _head_tensors(head: Head, config: AdaptConfig) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The model's Pv, Pt and s; without ``project_visual`` an identity Pv, so that X = V exactly."""
    visual = torch.from_numpy(head.visual_proj)
    if not config.project_visual:
        visual = torch.eye(visual.shape[0], dtype=visual.dtype)
    return visual, torch.from_numpy(head.text_projection), head.logit_scale


def _check_widths(head: Head, configs: Sequence[AdaptConfig]) -> None:
    """Raw pre-projection features stand in for X only when they have the joint width E."""
    dv, e = head.visual_proj.shape
    if dv != e and any(not c.project_visual for c in configs):
        raise ConfigError(f"project_visual = false compares raw {dv}-wide features with {e}-wide text "
                          f"embeddings: it needs a model whose Dv equals E", "project_visual")


def _load(reader: CacheReader, video_id: str) -> VideoInput:
    """A cached video checked against the head's widths; any defect becomes a VideoProblem."""
    try:
        video = VideoInput.from_record(reader.video(video_id))
    except CacheError as err:
        raise VideoProblem(video_id, str(err)) from err
    head = reader.head()
    if video.features.shape[1] != head.visual_proj.shape[0]:
        raise VideoProblem(video_id, f"features have width {video.features.shape[1]}, the head's visual_proj "
                                     f"expects {head.visual_proj.shape[0]}")
    if len(video.caption_frames) and video.caption_features.shape[1] != head.text_projection.shape[0]:
        raise VideoProblem(video_id, f"caption features have width {video.caption_features.shape[1]}, the head's "
                                     f"text_projection expects {head.text_projection.shape[0]}")
    return video


Truths = dict[str, list[tuple[float, float, int]]]  # video -> (start s, end s, class index) instances


def _hint(configs: Sequence[AdaptConfig], video: VideoInput, truths: Truths) -> GroundTruthHint | None:
    if not any(c.oracle for c in configs) or video.video_id not in truths:
        return None
    return hint_for(video, truths[video.video_id])


def _groups(configs: Sequence[AdaptConfig]) -> list[list[int]]:
    """Positions of configs that share one adaptation per video (naive configs: identical ones)."""
    groups: dict[object, list[int]] = {}
    for i, config in enumerate(configs):
        key = adaptation_key(config) if config.method != "naive" else ("naive", config.naive_threshold,
                                                                          config.project_visual)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _class_features(head: Head, classes: list[str]) -> torch.Tensor:
    return torch.from_numpy(head.prompt_features[head.prompt_index(classes)])


@dataclass
class SplitWork:
    """One split to localize: its videos in order, its class vocabulary and (for oracles) truths."""

    video_ids: list[str]
    classes: list[str]
    truths: Truths = field(default_factory=dict)


def _reset_video(video: VideoInput, configs: Sequence[AdaptConfig], head: Head,
                 splits: Sequence[tuple[list[str], Truths]], seed: int) -> list[list[VideoResult]]:
    """Every config on one loaded video in each of its splits (vocabulary, truths): one result list
    per split. Splits in which a config group gives the video the same pseudo-label share one
    adaptation, since with per-video reset and a per-video seed nothing else it depends on changes;
    adaptations steered by an oracle are not shared."""
    results = [[None] * len(configs) for _ in splits]
    for group in _groups(configs):
        first = configs[group[0]]
        chosen = [configs[i] for i in group]
        method = T3AL(first)
        shared: dict = {}
        for s, (classes, truths) in enumerate(splits):
            class_features = _class_features(head, classes)
            params = Projections(*_head_tensors(head, first))
            if first.method == "naive":
                outputs = [naive_localize(video, params, class_features, first.naive_threshold)] * len(group)
            else:
                optimizer = make_optimizer(params, first) if first.steps else None
                generator = torch.Generator().manual_seed(video_seed(seed, video.video_id))
                outputs, _ = method.localize_variants(
                    video, params, optimizer, class_features, generator, chosen, hint=_hint(chosen, video, truths),
                    shared=None if split_dependent(first) else shared, share_as=classes.__getitem__)
            for i, output in zip(group, outputs):
                results[s][i] = output
    return results


def _localize_chunk(root: str, video_ids: list[str], splits: list[list[tuple[list[str], Truths]]],
                    configs: Sequence[AdaptConfig], seed: int) -> list[list[list[VideoResult]] | VideoProblem]:
    """Per-video reset protocol on a few videos, each read once for all its splits and configs."""
    reader = CacheReader(root)
    head = reader.head()
    out: list[list[list[VideoResult]] | VideoProblem] = []
    with single_thread():
        for video_id, video_splits in zip(video_ids, splits):
            try:
                out.append(_reset_video(_load(reader, video_id), configs, head, video_splits, seed))
            except VideoProblem as problem:
                out.append(problem)
    return out


@dataclass
class _Stream:
    """One public-code stream: parameters, optimiser and generator carried from video to video;
    after each video the parameters go back to before its last step (T3AL, which also leaves the
    logit scale frozen from then on) or stay as adapted (``restore = "none"``, AdaZAD)."""

    positions: list[int]
    configs: list[AdaptConfig]
    params: Projections
    optimizer: torch.optim.Optimizer
    generator: torch.Generator

    def localize(self, video: VideoInput, class_features: torch.Tensor, label_embeddings: torch.Tensor,
                 truths: Truths) -> list[VideoResult]:
        results, adapted = T3AL(self.configs[0]).localize_variants(
            video, self.params, self.optimizer, class_features, self.generator, self.configs, label_embeddings,
            _hint(self.configs, video, truths))
        if self.configs[0].restore == "before_last":
            self.params.restore(adapted.adaptation.before_last)
            self.params.logit_scale.requires_grad_(False)
        return results


def _localize_stream(reader: CacheReader, video_ids: list[str], classes: list[str], configs: Sequence[AdaptConfig],
                     seed: int, truths: Truths,
                     on_video: Callable[[int], None]) -> list[list[VideoResult] | VideoProblem]:
    """The public code's protocol: one optimiser over the videos in order, parameters carried over.

    Several stream configs advance together, each video read once for all of them."""
    head = reader.head()
    class_features = _class_features(head, classes)
    streams = []
    for group in _groups(configs):
        params = Projections(*_head_tensors(head, configs[group[0]]))
        streams.append(_Stream(group, [configs[i] for i in group], params, make_optimizer(params, configs[group[0]]),
                               torch.Generator().manual_seed(seed)))
    label_embeddings = (class_features @ torch.from_numpy(head.text_projection)).detach()
    out: list[list[VideoResult] | VideoProblem] = []
    with single_thread():
        for video_id in video_ids:
            try:
                video = _load(reader, video_id)
                results: list[VideoResult | None] = [None] * len(configs)
                for stream in streams:
                    for i, result in zip(stream.positions, stream.localize(video, class_features, label_embeddings,
                                                                           truths)):
                        results[i] = result
                out.append(results)
            except VideoProblem as problem:
                out.append(problem)
            on_video(len(configs))
    return out


def localize_splits(
    reader: CacheReader,
    splits: Sequence[SplitWork],
    configs: Sequence[AdaptConfig],
    seed: int = 0,
    jobs: int = 1,
    on_video: Callable[[int], None] = lambda n: None,
    device: str | None = None,
) -> list[list[SplitOutcome]]:
    """Localize every split with every config: ``outcomes[split][config]``.

    Per-video-reset configs read each video once for all its splits and configs (videos spread
    over ``jobs`` workers); configs that differ only in proposal settings, and splits that give a
    video the same pseudo-label, share one adaptation. Stream configs run split by split, in
    order, in this process. Videos missing from the cache, or unusable, become problems.
    ``on_video(n)`` is called as (video, split, config) triples complete (for a progress bar).
    With a ``device`` (cpu, cuda, ...), the per-video-reset adaptations run batched there (batched.py).
    """
    _check_widths(reader.head(), configs)
    outcomes = [[SplitOutcome(problems=[VideoProblem(v, f"not in cache {reader.root}") for v in split.video_ids
                                        if v not in reader]) for _ in configs] for split in splits]
    on_video(sum(len(o[0].problems) for o in outcomes) * len(configs))
    stream = [i for i, c in enumerate(configs) if c.protocol == "stream" and c.method != "naive"]
    reset = [i for i in range(len(configs)) if i not in stream]
    for split, split_outcomes in zip(splits, outcomes):
        if stream:
            present = [v for v in split.video_ids if v in reader]
            items = _localize_stream(reader, present, split.classes, [configs[i] for i in stream], seed,
                                     split.truths, on_video)
            _collect(split_outcomes, stream, items)
    if reset:
        _localize_reset(str(reader.root.resolve()), reader, splits, outcomes, reset, [configs[i] for i in reset], seed,
                        jobs, on_video, device)
    return outcomes


def _localize_reset(cache: str, reader: CacheReader, splits: Sequence[SplitWork], outcomes: list[list[SplitOutcome]],
                    positions: list[int], configs: list[AdaptConfig], seed: int, jobs: int,
                    on_video: Callable[[int], None], device: str | None = None) -> None:
    """The per-video-reset configs over all splits, one task per few videos (``cache`` absolute, as
    tasks may run on other machines' workers)."""
    membership: dict[str, list[int]] = {}
    for s, split in enumerate(splits):
        for video_id in split.video_ids:
            if video_id in reader:
                membership.setdefault(video_id, []).append(s)
    videos = list(membership)
    task, size = _localize_chunk, CHUNK
    if device is not None:
        from . import batched  # it builds on this module
        task, size = partial(batched.localize_chunk, device=device), batched.CHUNK
    chunks = [videos[i:i + size] for i in range(0, len(videos), size)]

    def work(video_id: str) -> list[tuple[list[str], Truths]]:
        return [(splits[s].classes, {video_id: splits[s].truths[video_id]} if video_id in splits[s].truths else {})
                for s in membership[video_id]]

    tasks = ((chunk, joblib.delayed(task)(cache, chunk, [work(v) for v in chunk], configs, seed)) for chunk in chunks)
    done_videos = iter(videos)
    for done in parallel_videos(tasks, jobs):
        for item in done:
            video_id = next(done_videos)
            for j, s in enumerate(membership[video_id]):
                _collect(outcomes[s], positions, [item if isinstance(item, VideoProblem) else item[j]])
            on_video(len(membership[video_id]) * len(configs))
    for split, split_outcomes in zip(splits, outcomes):
        order = {v: i for i, v in enumerate(split.video_ids)}
        for outcome in split_outcomes:
            outcome.results.sort(key=lambda r: order[r.video_id])
            outcome.problems.sort(key=lambda p: order.get(p.video_id, -1))


def _collect(outcomes: list[SplitOutcome], positions: list[int], items: list[list[VideoResult] | VideoProblem]) -> None:
    """Spread per-video items (one result per config, or one problem for all) over the outcomes."""
    for item in items:
        for j, i in enumerate(positions):
            if isinstance(item, VideoProblem):
                outcomes[i].problems.append(item)
            else:
                outcomes[i].results.append(item[j])


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
    """Localize ``video_ids`` (in this order) with the split's class vocabulary ``classes``: the
    one-split, one-config case of ``localize_splits``."""
    return localize_splits(CacheReader(cache), [SplitWork(video_ids, classes, truths or {})], [config], seed, jobs, on_video)[0][0]


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
