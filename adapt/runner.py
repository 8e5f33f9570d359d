"""Localize a split's videos from the cache: both protocols, joblib across videos, per-video seeds."""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import joblib
import numpy as np
import torch

from t3al.cache import CacheError, CacheReader, Head

from .adam import Adam
from .adapter import AdaptationInput, Projections, adapt_inputs, batch_bytes, batch_params, head_tensors, make_optimizer
from .cluster import parallel_videos
from .config import AdaptConfig, ConfigError
from .distractors import distractors_for
from .localizer import T3AL, NaiveBaseline, Pending, chosen_labels, localizer_for, merged, split_dependent
from .online import localize_online_chunk
from .presence import open_set, present_labels, presence
from .video import GroundTruthHint, VideoInput, VideoProblem, VideoResult

CHUNK = {None: 4, "batched": 32}  # videos per joblib task, video by video (a live progress bar) or batched


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


def _check_widths(head: Head, configs: Sequence[AdaptConfig]) -> None:
    """Raw pre-projection features stand in for X only when they have the joint width E."""
    dv, e = head.visual_proj.shape
    if dv != e and any(not c.project_visual for c in configs):
        raise ConfigError(f"project_visual = false compares raw {dv}-wide features with {e}-wide text "
                          f"embeddings: it needs a model whose Dv equals E", "project_visual")


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


Truths = dict[str, list[tuple[float, float, int]]]  # video -> (start s, end s, class index) instances


def _hint(configs: Sequence[AdaptConfig], video: VideoInput, truths: Truths) -> GroundTruthHint | None:
    if not any(c.oracle for c in configs) or video.video_id not in truths:
        return None
    return hint_for(video, truths[video.video_id])


def _groups(configs: Sequence[AdaptConfig]) -> list[list[int]]:
    """Positions of configs that share one adaptation per video (naive configs: identical ones)."""
    groups: dict[object, list[int]] = {}
    for i, config in enumerate(configs):
        groups.setdefault(localizer_for(config).share_key(), []).append(i)
    return list(groups.values())


def _class_features(head: Head, classes: list[str]) -> torch.Tensor:
    return torch.from_numpy(head.prompt_features[head.prompt_index(classes)])


def _check_distractors(head: Head, splits: Sequence["SplitWork"], configs: Sequence[AdaptConfig]) -> None:
    """The open-set rule compares each action with the distractor prompts: the cache must hold them."""
    if all(c.presence_threshold is None for c in configs):
        return
    needed = dict.fromkeys(d for split in splits for d in distractors_for(split.classes))
    missing = [d for d in needed if d not in head.class_names]
    if missing:
        raise ConfigError(f"presence_threshold compares each action with {len(needed)} distractor actions "
                          f"(t3al.adapt.distractors.DISTRACTORS) and the cache lacks the prompts of {len(missing)} "
                          f"(e.g. {missing[0]!r}): add them with t3al-extract prompts CACHE_DIR --classes "
                          f"\"{','.join(missing)}\"", "presence_threshold")


def video_presence(head: Head, video: VideoInput, classes: list[str], config: AdaptConfig) -> np.ndarray:
    """The presence of each class of ``classes`` in ``video`` with the model's own projections."""
    visual, text, scale = head_tensors(head, config)
    return presence(video.features, video.timestamps, visual, text, scale, _class_features(head, classes),
                    _class_features(head, distractors_for(classes)))


def _open_set(head: Head, video: VideoInput, classes: list[str], configs: Sequence[AdaptConfig],
              results: list[VideoResult]) -> list[VideoResult]:
    """``results`` (one per config) with the open-set rule applied where a config asks for it (the
    stream protocol's: its pseudo-label is kept or dropped, no other label is localized)."""
    if all(c.presence_threshold is None for c in configs):
        return results
    presences = video_presence(head, video, classes, configs[0])
    return [r if c.presence_threshold is None else open_set(r, presences, c.presence_threshold)
            for c, r in zip(configs, results)]


@dataclass
class SplitWork:
    """One split to localize: its videos in order, its class vocabulary and (for oracles) truths."""

    video_ids: list[str]
    classes: list[str]
    truths: Truths = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """What ``localize_splits`` runs: the splits of one cache with every config, the run's seed,
    and where: ``jobs`` worker processes, each adapting video by video or, with a ``device``,
    in batches there."""

    reader: CacheReader
    splits: Sequence[SplitWork]
    configs: Sequence[AdaptConfig]
    seed: int = 0
    jobs: int = 1
    device: str | None = None


def _localize_chunk(cache: str, video_ids: list[str], splits: list[list[tuple[list[str], Truths]]],
                    configs: Sequence[AdaptConfig], seed: int, device: str | None = None,
                    workers: int = 1) -> list[list[list[VideoResult]] | VideoProblem]:
    """Per-video reset protocol on a few videos, each read once for all its splits and configs:
    per config group, pseudo-labels first, then the distinct adaptations (video by video, or in
    batches on ``device``, which ``workers`` processes share), then every proposal."""
    reader = CacheReader(cache)
    head = reader.head()
    out: list = [None] * len(video_ids)
    videos: dict[int, VideoInput] = {}
    for i, video_id in enumerate(video_ids):
        try:
            videos[i] = _load(reader, video_id)
            out[i] = [[None] * len(configs) for _ in splits[i]]
        except VideoProblem as problem:
            out[i] = problem
    budget = None if device is None else batch_bytes(torch.device(device), workers)
    with single_thread():
        for group in _groups(configs):
            _localize_group(head, videos, splits, [configs[j] for j in group], group, seed, device or "cpu", budget,
                            out)
    return out


def _label_pendings(localizer: "T3AL | NaiveBaseline", config: AdaptConfig, video: VideoInput, classes: list[str],
                    params: Projections, class_features: torch.Tensor, hint: GroundTruthHint | None, seed: int,
                    presences: np.ndarray | None) -> list[Pending]:
    """Step 1 of each video-level label localized: the pseudo-label, then (``labels_per_video``) the
    next most probable classes; under the open-set rule (``presences``) the present classes instead,
    most present first, and the pseudo-label when none is (its detections are then dropped)."""
    generator = torch.Generator().manual_seed(video_seed(seed, video.video_id))
    first = localizer.start(video, params, class_features, generator, hint)
    if presences is not None and localizer.adapts:
        labels = present_labels(presences, config.presence_threshold, config.labels_per_video) or [first.label]
    elif config.labels_per_video > 1:
        labels = chosen_labels(first.probabilities, first.label, config.labels_per_video, config.label_threshold)
    else:
        return [first]
    pendings = []
    for rank, label in enumerate(labels):
        if rank == 0 and label == first.label:
            pendings.append(first)
            continue
        generator = torch.Generator().manual_seed(video_seed(seed, video.video_id if rank == 0
                                                             else f"{video.video_id}/{classes[label]}"))
        pendings.append(first.relabelled(label, class_features, generator))
    return pendings


def _localize_group(head: Head, videos: dict[int, VideoInput], splits: list[list[tuple[list[str], Truths]]],
                    chosen: list[AdaptConfig], positions: list[int], seed: int, device: str, budget: int | None,
                    out: list) -> None:
    """One config group on a chunk's videos, results written into ``out[video][split][config]``.
    Splits that give a video the same pseudo-label share its adaptation, since with per-video reset
    and a per-video seed nothing else it depends on changes; oracle-steered ones are not shared.
    Each further label of a video (``labels_per_video``) is one more adaptation, its results merged;
    under the open-set rule the labels are the present ones, and absent ones lose their detections."""
    first = chosen[0]
    localizer = localizer_for(first)
    params = Projections(*head_tensors(head, first))
    inputs: dict[tuple, AdaptationInput] = {}
    pending = []
    presences: dict[tuple[int, int], np.ndarray] = {}
    for i, video in videos.items():
        for s, (classes, truths) in enumerate(splits[i]):
            class_features = _class_features(head, classes)
            hint = _hint(chosen, video, truths)
            if first.presence_threshold is not None:
                presences[i, s] = video_presence(head, video, classes, first)
            for rank, one in enumerate(_label_pendings(localizer, first, video, classes, params, class_features, hint,
                                                       seed, presences.get((i, s)))):
                key = (i, classes[one.label], rank, s if split_dependent(first) else None)
                if one.adaptation_input is not None:
                    inputs.setdefault(key, one.adaptation_input)
                pending.append((i, s, key, class_features, one, hint))
    adapted = dict(zip(inputs, adapt_inputs(first, head, list(inputs.values()), device, budget)))
    for i, s, key, class_features, started, hint in pending:
        for j, result in zip(positions, localizer.finish(videos[i], started, adapted.get(key), class_features, chosen,
                                                         hint)):
            out[i][s][j] = result if out[i][s][j] is None else merged([out[i][s][j], result])
    for (i, s), video_presences in presences.items():
        for j in positions:
            out[i][s][j] = open_set(out[i][s][j], video_presences, first.presence_threshold)


@dataclass
class _Stream:
    """One public-code stream: parameters (a batch of one), optimiser and generator carried from
    video to video; after each video the parameters go back to before its last step (T3AL, which
    also leaves the logit scale frozen from then on) or stay as adapted (``restore = "none"``, AdaZAD)."""

    positions: list[int]
    configs: list[AdaptConfig]
    params: Projections
    optimizer: Adam
    generator: torch.Generator

    def localize(self, video: VideoInput, class_features: torch.Tensor, label_embeddings: torch.Tensor,
                 truths: Truths) -> list[VideoResult]:
        results, adapted = T3AL(self.configs[0]).localize_variants(
            video, self.params, self.optimizer, class_features, self.generator, self.configs, label_embeddings,
            _hint(self.configs, video, truths))
        if self.configs[0].restore == "before_last":
            self.params.restore_row(0, adapted.adaptation.before_last)
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
        params = batch_params(head, configs[group[0]], 1)
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
                    localized = stream.localize(video, class_features, label_embeddings, truths)
                    for i, result in zip(stream.positions, _open_set(head, video, classes, stream.configs, localized)):
                        results[i] = result
                out.append(results)
            except VideoProblem as problem:
                out.append(problem)
            on_video(len(configs))
    return out


def localize_splits(plan: Plan, on_video: Callable[[int], None] = lambda n: None) -> list[list[SplitOutcome]]:
    """Localize every split of ``plan`` with every config: ``outcomes[split][config]``.

    Per-video-reset configs read each video once for all its splits and configs (videos spread
    over the plan's jobs); configs that differ only in proposal settings, and splits that give a
    video the same pseudo-label, share one adaptation. Stream configs run split by split, in
    order, in this process. Videos missing from the cache, or unusable, become problems.
    ``on_video(n)`` is called as (video, split, config) triples complete (for a progress bar).
    """
    reader, configs = plan.reader, list(plan.configs)
    _check_widths(reader.head(), configs)
    _check_distractors(reader.head(), plan.splits, configs)
    outcomes = [[SplitOutcome(problems=[VideoProblem(v, f"not in cache {reader.root}") for v in split.video_ids
                                        if v not in reader]) for _ in configs] for split in plan.splits]
    on_video(sum(len(o[0].problems) for o in outcomes) * len(configs))
    stream = [i for i, c in enumerate(configs) if c.protocol == "stream" and localizer_for(c).adapts]
    online = [i for i, c in enumerate(configs) if c.protocol == "online"]
    reset = [i for i in range(len(configs)) if i not in stream + online]
    for split, split_outcomes in zip(plan.splits, outcomes):
        if stream:
            present = [v for v in split.video_ids if v in reader]
            items = _localize_stream(reader, present, split.classes, [configs[i] for i in stream], plan.seed,
                                     split.truths, on_video)
            _collect(split_outcomes, stream, items)
    if reset:
        _localize_reset(plan, outcomes, reset, on_video)
    if online:
        _localize_reset(plan, outcomes, online, on_video, localize_online_chunk)
    return outcomes


def _localize_reset(plan: Plan, outcomes: list[list[SplitOutcome]], positions: list[int],
                    on_video: Callable[[int], None], task: Callable | None = None) -> None:
    """The per-video-reset configs over all splits, one task per few videos (the cache's path made
    absolute, as tasks may run on other machines' workers): ``_localize_chunk``, or ``task`` (the
    online protocol's, whose videos are independent too)."""
    reader, splits, configs = plan.reader, plan.splits, [plan.configs[i] for i in positions]
    membership: dict[str, list[int]] = {}
    for s, split in enumerate(splits):
        for video_id in split.video_ids:
            if video_id in reader:
                membership.setdefault(video_id, []).append(s)
    videos = list(membership)
    size = CHUNK[None if plan.device is None else "batched"]
    chunks = [videos[i:i + size] for i in range(0, len(videos), size)]

    def work(video_id: str) -> list[tuple[list[str], Truths]]:
        return [(splits[s].classes, {video_id: splits[s].truths[video_id]} if video_id in splits[s].truths else {})
                for s in membership[video_id]]

    cache = str(reader.root.resolve())
    task = task or _localize_chunk
    tasks = ((chunk, joblib.delayed(task)(cache, chunk, [work(v) for v in chunk], configs, plan.seed, plan.device,
                                          plan.jobs)) for chunk in chunks)
    done_videos = iter(videos)
    for done in parallel_videos(tasks, plan.jobs):
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
    plan = Plan(CacheReader(cache), [SplitWork(video_ids, classes, truths or {})], [config], seed, jobs)
    return localize_splits(plan, on_video)[0][0]


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
