"""What stage two is asked to do, by content rather than by position (no torch: the command lines
build it before their work starts).

A ``Request`` lists tasks (a video, the class vocabulary it is localized with, its true instances
for the oracles) with the configs to run on each and where the work runs (``Execution``). The
engine (``runner.run_request``) answers with one result per (config name, split, video).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Mapping

from t3al.cache import CacheReader

from ..config import AdaptConfig

Instances = tuple[tuple[float, float, int], ...]  # (start s, end s, class index in the vocabulary) of a video


@dataclass(frozen=True)
class Execution:
    """Where the per-video work runs: ``jobs`` local processes, or the workers of a Dask
    ``scheduler``; each adapting video by video, or with a ``device`` in batches there."""

    jobs: int = 1
    scheduler: str | None = None  # a Dask scheduler's address
    device: str | None = None  # None: video by video on the CPU

    @property
    def videos_per_task(self) -> int:
        """Videos handed to a worker at once: few video by video (a live progress bar), many for batches."""
        return 4 if self.device is None else 32


@dataclass(frozen=True)
class Task:
    """One video to localize with the vocabulary ``classes``, as part of ``split`` (a split's index,
    None outside the zero-shot protocol); ``truths``, the video's true instances, steer the oracles."""

    split: Hashable
    video: str
    classes: tuple[str, ...]
    truths: Instances = ()


@dataclass(frozen=True)
class Request:
    """Every task with every config (name -> config), the run's seed, and where the work runs.

    Tasks of one split are listed in the order the stream protocol consumes them.
    """

    reader: CacheReader
    tasks: tuple[Task, ...]
    configs: Mapping[str, AdaptConfig]
    seed: int = 0
    execution: Execution = Execution()
