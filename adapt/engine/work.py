"""The work on videos, in whichever process runs it: a worker's few videos, each read once for all its
tasks and per-video configs (pseudo-labels, shared adaptations, proposals, the open-set rule), and the
stream protocol's videos in order. Results come back keyed by (config name, split, video)."""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Hashable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from t3al.cache import CacheError, CacheReader, Head

from ..algorithm.adam import Adam
from ..algorithm.adapter import (AdaptationInput, Projections, adapt_inputs, batch_bytes, batch_params, head_tensors,
                                 make_optimizer)
from ..algorithm.distractors import distractors_for
from ..algorithm.localizer import (T3AL, NaiveBaseline, Pending, chosen_labels, job_key, localizer_for, merged,
                                   shared_adaptations)
from ..algorithm.online import localize_online
from ..algorithm.presence import open_set, present_labels, presence
from ..algorithm.video import GroundTruthHint, VideoInput, VideoProblem, VideoResult
from ..config import AdaptConfig
from .request import Execution, Instances, Task

Entries = dict[tuple[str, Hashable, str], VideoResult | VideoProblem]  # (config name, split, video) -> result


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


def _load(reader: CacheReader, video_id: str) -> VideoInput:
    """A cached video checked against the head's widths, known by ``video_id`` as the split lists it
    (its own name or its cache id), so results come back under the key they were asked by; any
    defect becomes a VideoProblem."""
    try:
        video = VideoInput.from_record(reader.video(video_id), video_id)
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


def _hint(configs: Iterable[AdaptConfig], video: VideoInput, truths: Instances) -> GroundTruthHint | None:
    if not truths or not any(c.oracle for c in configs):
        return None
    return hint_for(video, list(truths))


def _class_features(head: Head, classes: Sequence[str]) -> torch.Tensor:
    return torch.from_numpy(head.prompt_features[head.prompt_index(list(classes))])


def video_presence(head: Head, video: VideoInput, classes: Sequence[str], config: AdaptConfig) -> np.ndarray:
    """The presence of each class of ``classes`` in ``video`` with the model's own projections."""
    visual, text, scale = head_tensors(head, config)
    return presence(video.features, video.timestamps, visual, text, scale, _class_features(head, classes),
                    _class_features(head, distractors_for(list(classes))))


def _open_set(head: Head, video: VideoInput, classes: Sequence[str], configs: Mapping[str, AdaptConfig],
              results: Sequence[VideoResult]) -> list[VideoResult]:
    """``results`` (one per config) with the open-set rule applied where a config asks for it (the
    stream protocol's: its pseudo-label is kept or dropped, no other label is localized)."""
    if all(c.presence_threshold is None for c in configs.values()):
        return list(results)
    presences = video_presence(head, video, classes, next(iter(configs.values())))
    return [r if c.presence_threshold is None else open_set(r, presences, c.presence_threshold)
            for c, r in zip(configs.values(), results)]


def run_chunk(cache: str, video_ids: list[str], tasks: list[list[Task]], configs: dict[str, AdaptConfig],
              seed: int, execution: Execution) -> Entries:
    """A few videos, each read once for all its tasks and configs: per group of configs that share
    adaptations, pseudo-labels first, then the distinct adaptations (video by video, or in batches
    on the execution's device, which its processes share), then every proposal; the online configs
    stream each task's video on its own."""
    reader = CacheReader(cache)
    head = reader.head()
    entries: Entries = {}
    work: list[tuple[VideoInput, list[Task]]] = []
    for video_id, video_tasks in zip(video_ids, tasks):
        try:
            work.append((_load(reader, video_id), video_tasks))
        except VideoProblem as problem:
            entries.update(((name, task.split, video_id), problem) for task in video_tasks for name in configs)
    online = {name: c for name, c in configs.items() if c.protocol == "online"}
    reset = {name: c for name, c in configs.items() if name not in online}
    budget = None if execution.device is None else batch_bytes(torch.device(execution.device), execution.jobs)
    with single_thread():
        for group in shared_adaptations(reset):
            _run_group(head, work, group, seed, execution.device or "cpu", budget, entries)
        for name, config in online.items():
            for video, video_tasks in work:
                for task in video_tasks:
                    entries[name, task.split, video.video_id] = localize_online(
                        video, config, head, _class_features(head, task.classes),
                        torch.Generator().manual_seed(video_seed(seed, video.video_id)))
    return entries


def _label_pendings(localizer: "T3AL | NaiveBaseline", config: AdaptConfig, video: VideoInput, classes: Sequence[str],
                    params: Projections, class_features: torch.Tensor, hint: GroundTruthHint | None, seed: int,
                    presences: np.ndarray | None) -> list[tuple[str, Pending]]:
    """Step 1 of each video-level label localized, with the name its samples are drawn by: the
    pseudo-label, then (``labels_per_video``) the next most probable classes; under the open-set
    rule (``presences``) the present classes instead, most present first, and the pseudo-label when
    none is (its detections are then dropped)."""
    generator = torch.Generator().manual_seed(video_seed(seed, video.video_id))
    first = localizer.start(video, params, class_features, generator, hint)
    if presences is not None and localizer.adapts:
        labels = present_labels(presences, config.presence_threshold, config.labels_per_video) or [first.label]
    elif config.labels_per_video > 1:
        labels = chosen_labels(first.probabilities, first.label, config.labels_per_video, config.label_threshold)
    else:
        return [(video.video_id, first)]
    pendings = []
    for rank, label in enumerate(labels):
        draws = video.video_id if rank == 0 else f"{video.video_id}/{classes[label]}"
        if rank == 0 and label == first.label:
            pendings.append((draws, first))
            continue
        generator = torch.Generator().manual_seed(video_seed(seed, draws))
        pendings.append((draws, first.relabelled(label, class_features, generator)))
    return pendings


def _run_group(head: Head, work: list[tuple[VideoInput, list[Task]]], group: dict[str, AdaptConfig], seed: int,
               device: str, budget: int | None, entries: Entries) -> None:
    """One group of configs that share adaptations on a chunk's videos, every task of each: the
    distinct jobs (``job_key``) adapted once, then each config's proposals from them. Tasks that
    give a video the same pseudo-label share its adaptation, since with per-video reset and a
    per-video seed nothing else it depends on changes. Each further label of a video
    (``labels_per_video``) is one more job, its results merged; under the open-set rule the labels
    are the present ones, and absent ones lose their detections."""
    first = next(iter(group.values()))
    localizer = localizer_for(first)
    params = batch_params(head, first, 1).row(0)  # the model's own, for the pseudo-labels
    jobs: dict[tuple, AdaptationInput] = {}  # job key -> the adaptation it asks for
    pending = []
    presences: dict[tuple[Hashable, str], np.ndarray] = {}
    for video, tasks in work:
        for task in tasks:
            class_features = _class_features(head, task.classes)
            hint = _hint(group.values(), video, task.truths)
            if first.presence_threshold is not None:
                presences[task.split, video.video_id] = video_presence(head, video, task.classes, first)
            for draws, one in _label_pendings(localizer, first, video, task.classes, params, class_features, hint,
                                              seed, presences.get((task.split, video.video_id))):
                key = job_key(first, video.video_id, task.classes[one.label], draws, task.truths)
                if one.adaptation_input is not None:
                    jobs.setdefault(key, one.adaptation_input)
                pending.append((video, task, key, class_features, one, hint))
    adapted = dict(zip(jobs, adapt_inputs(first, head, list(jobs.values()), device, budget)))
    for video, task, key, class_features, started, hint in pending:
        results = localizer.finish(video, started, adapted.get(key), class_features, list(group.values()), hint)
        for name, result in zip(group, results):
            where = (name, task.split, video.video_id)
            entries[where] = merged([entries[where], result]) if where in entries else result
    for (split, video_id), video_presences in presences.items():
        for name in group:
            entries[name, split, video_id] = open_set(entries[name, split, video_id], video_presences,
                                                      first.presence_threshold)


@dataclass
class _Stream:
    """One public-code stream: parameters (a batch of one), optimiser and generator carried from
    video to video; after each video the parameters go back to before its last step (T3AL, which
    also leaves the logit scale frozen from then on) or stay as adapted (``restore = "none"``, AdaZAD)."""

    configs: dict[str, AdaptConfig]
    params: Projections
    optimizer: Adam
    generator: torch.Generator

    @classmethod
    def start(cls, head: Head, configs: dict[str, AdaptConfig], seed: int) -> "_Stream":
        """A stream from the model's own parameters and the run's seed."""
        first = next(iter(configs.values()))
        params = batch_params(head, first, 1)
        return cls(configs, params, make_optimizer(params, first), torch.Generator().manual_seed(seed))

    def localize(self, video: VideoInput, class_features: torch.Tensor, label_embeddings: torch.Tensor,
                 truths: Instances) -> list[VideoResult]:
        first = next(iter(self.configs.values()))
        results, adapted = T3AL(first).localize_variants(
            video, self.params, self.optimizer, class_features, self.generator, list(self.configs.values()),
            label_embeddings, _hint(self.configs.values(), video, truths))
        if first.restore == "before_last":
            self.params.restore_row(0, adapted.adaptation.before_last)
            self.params.logit_scale.requires_grad_(False)
        return results


def run_streams(reader: CacheReader, tasks: list[Task], configs: dict[str, AdaptConfig], seed: int,
                entries: Entries, on_video: Callable[[int], None]) -> None:
    """The public code's protocol on one split's tasks, in order: one optimiser over the videos,
    parameters carried over. Several stream configs advance together, each video read once."""
    head = reader.head()
    streams = [_Stream.start(head, group, seed) for group in shared_adaptations(configs)]
    vocabularies: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = {}
    with single_thread():
        for task in tasks:
            if task.classes not in vocabularies:
                class_features = _class_features(head, task.classes)
                vocabularies[task.classes] = (class_features,
                                              (class_features @ torch.from_numpy(head.text_projection)).detach())
            class_features, label_embeddings = vocabularies[task.classes]
            try:
                video = _load(reader, task.video)
                for stream in streams:
                    localized = stream.localize(video, class_features, label_embeddings, task.truths)
                    entries.update(((name, task.split, task.video), result) for name, result in
                                   zip(stream.configs, _open_set(head, video, task.classes, stream.configs, localized)))
            except VideoProblem as problem:
                entries.update(((name, task.split, task.video), problem) for name in configs)
            on_video(len(configs))


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
