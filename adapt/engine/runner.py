"""The engine: runs a request's tasks from the cache with every config, spreading the videos over
processes or Dask workers (the work on them is ``work``'s), and returns the results keyed by
(config name, split, video)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterable, Sequence

import joblib

from t3al.cache import CacheReader, Head

from ..algorithm.distractors import distractors_for
from ..algorithm.localizer import localizer_for
from ..algorithm.video import VideoProblem, VideoResult
from ..config import AdaptConfig, ConfigError
from .cluster import parallel_videos
from .request import Execution, Request, Task
from .work import Entries, run_chunk, run_streams


def _check_widths(head: Head, configs: Iterable[AdaptConfig]) -> None:
    """Raw pre-projection features stand in for X only when they have the joint width E."""
    dv, e = head.visual_proj.shape
    if dv != e and any(not c.project_visual for c in configs):
        raise ConfigError(f"project_visual = false compares raw {dv}-wide features with {e}-wide text "
                          f"embeddings: it needs a model whose Dv equals E", "project_visual")


def _check_distractors(head: Head, tasks: Sequence[Task], configs: Iterable[AdaptConfig]) -> None:
    """The open-set rule compares each action with the distractor prompts: the cache must hold them."""
    if all(c.presence_threshold is None for c in configs):
        return
    vocabularies = dict.fromkeys(task.classes for task in tasks)
    needed = dict.fromkeys(d for classes in vocabularies for d in distractors_for(list(classes)))
    missing = [d for d in needed if d not in head.class_names]
    if missing:
        raise ConfigError(f"presence_threshold compares each action with {len(needed)} distractor actions "
                          f"(t3al.adapt.algorithm.distractors.DISTRACTORS) and the cache lacks the prompts of "
                          f"{len(missing)} (e.g. {missing[0]!r}): add them with t3al-extract prompts CACHE_DIR "
                          f"--classes \"{','.join(missing)}\"", "presence_threshold")


@dataclass(frozen=True)
class Outcome:
    """One config's results on one split, in the split's order, and the problems of the videos
    that could not be localized."""

    results: list[VideoResult] = field(default_factory=list)
    problems: list[VideoProblem] = field(default_factory=list)


@dataclass
class Results:
    """A request's results: a video result or a problem per (config name, split, video)."""

    tasks: tuple[Task, ...]
    entries: Entries = field(default_factory=dict)

    def outcome(self, name: str, split: Hashable = None) -> Outcome:
        """Config ``name``'s results and problems on ``split``, in the order of its tasks."""
        done = [self.entries[name, task.split, task.video] for task in self.tasks if task.split == split]
        return Outcome([d for d in done if isinstance(d, VideoResult)],
                       [d for d in done if isinstance(d, VideoProblem)])


def run_request(request: Request, on_video: Callable[[int], None] = lambda n: None) -> Results:
    """Run every task of ``request`` with every config; the results by (config name, split, video).

    Per-video-reset and online configs read each video once for all its tasks and configs
    (videos spread over the execution's processes, Dask workers or device batches), and jobs with
    equal keys (``job_key``) share one adaptation. Stream configs consume each split's tasks in
    order, in this process. Videos missing from the cache, or unusable, become problems.
    ``on_video(n)`` is called as (video, split, config) triples complete (for a progress bar).
    """
    reader, configs = request.reader, dict(request.configs)
    _check_widths(reader.head(), configs.values())
    _check_distractors(reader.head(), request.tasks, configs.values())
    results = Results(request.tasks)
    present = [task for task in request.tasks if task.video in reader]
    for task in request.tasks:
        if task.video not in reader:
            problem = VideoProblem(task.video, f"not in cache {reader.root}")
            results.entries.update(((name, task.split, task.video), problem) for name in configs)
    on_video((len(request.tasks) - len(present)) * len(configs))
    stream = {name: c for name, c in configs.items() if c.protocol == "stream" and localizer_for(c).adapts}
    per_video = {name: c for name, c in configs.items() if name not in stream}
    if per_video:
        _run_per_video(request, present, per_video, results.entries, on_video)
    if stream:
        for split in dict.fromkeys(task.split for task in present):
            run_streams(reader, [t for t in present if t.split == split], stream, request.seed, results.entries,
                        on_video)
    return results


def _run_per_video(request: Request, tasks: list[Task], configs: dict[str, AdaptConfig], entries: Entries,
                   on_video: Callable[[int], None]) -> None:
    """The per-video configs on every task, one worker task per few videos (the cache's path made
    absolute, as tasks may run on other machines' workers)."""
    by_video: dict[str, list[Task]] = {}
    for task in tasks:
        by_video.setdefault(task.video, []).append(task)
    videos = list(by_video)
    execution = request.execution
    size = execution.videos_per_task
    chunks = [videos[i:i + size] for i in range(0, len(videos), size)]
    cache = str(request.reader.root.resolve())
    calls = ((chunk, joblib.delayed(run_chunk)(cache, chunk, [by_video[v] for v in chunk], configs, request.seed,
                                               execution)) for chunk in chunks)
    for chunk, done in zip(chunks, parallel_videos(calls, execution.jobs, execution.scheduler)):
        entries.update(done)
        on_video(sum(len(by_video[v]) for v in chunk) * len(configs))


def localize_split(
    cache: str,
    video_ids: list[str],
    classes: list[str],
    config: AdaptConfig,
    seed: int = 0,
    jobs: int = 1,
    truths: dict[str, list[tuple[float, float, int]]] | None = None,
    on_video: Callable[[int], None] = lambda n: None,
) -> Outcome:
    """Localize ``video_ids`` (in this order) with the class vocabulary ``classes``: the request
    of one config on one split."""
    truths = truths or {}
    tasks = tuple(Task(0, v, tuple(classes), tuple(truths.get(v, ()))) for v in video_ids)
    return run_request(Request(CacheReader(cache), tasks, {"": config}, seed, Execution(jobs)), on_video).outcome("", 0)


