"""Stage two on a vocabulary and a list of cached videos, without manifest, splits or ground truth.

``t3al-localize`` builds a ``RunSpec`` without manifest with ``build_vocabulary_spec``;
``localize_vocabulary`` runs it through the same configs, run names, folder rule, processes, Dask
and device paths as ``t3al-adapt`` (``run_request`` with one task per video, the vocabulary its
classes) and writes the detections, the curves and the run record instead of evaluating.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

from t3al.cache import CacheError, CacheReader, safe_video_id

from ..algorithm.video import VideoProblem
from ..config import DEFAULT_PRESET, AdaptConfig, ConfigError
from .output import claimed
from .pipeline import ConfigRun, run_record, split_detections
from .request import Execution, Task
from .runner import run_request
from .spec import RunSpec


def chosen_videos(reader: CacheReader, videos: Sequence[str]) -> tuple[str, ...]:
    """The cache ids of the listed videos (ids or own names; default: every cached video), each
    checked to be cached."""
    if not videos:
        cached = tuple(reader.video_ids())
        if not cached:
            raise CacheError(f"{reader.root}: the cache holds no videos")
        return cached
    missing = [v for v in videos if v not in reader]
    if missing:
        raise CacheError(f"--videos: not in cache {reader.root}: {', '.join(missing)}")
    return tuple(dict.fromkeys(safe_video_id(v) for v in videos))


def build_vocabulary_spec(cache: str | os.PathLike, classes: Sequence[str], configs: dict[str, AdaptConfig], *,
                          videos: Sequence[str] = (), preset: str | None = None, seed: int = 0,
                          execution: Execution = Execution()) -> RunSpec:
    """Open the cache, check the vocabulary's prompts and the videos, for ``configs`` resolved as
    for ``t3al-adapt`` (``spec.resolve_configs``, ``preset`` default thumos14's); oracles need
    ground truth and are refused."""
    reader = CacheReader(cache)
    if next(iter(configs.values())).oracle:
        raise ConfigError("--oracle needs ground truth; localizing a vocabulary has none", "oracle")
    reader.head().prompt_index(list(classes))
    return vocabulary_spec(reader, classes, chosen_videos(reader, videos), preset or DEFAULT_PRESET, configs, seed,
                           execution)


def vocabulary_spec(reader: CacheReader, classes: Sequence[str], videos: Sequence[str], preset: str,
                    configs: dict[str, AdaptConfig], seed: int = 0, execution: Execution = Execution()) -> RunSpec:
    """A vocabulary run: one task per video (its cache id), ``classes`` its vocabulary, no ground truth."""
    return RunSpec(reader, preset, configs, tuple(Task(None, video, tuple(classes)) for video in videos), seed,
                   execution)


def localize_vocabulary(spec: RunSpec, folder: str | os.PathLike, *, overwrite: bool = False,
                        on_video: Callable[[int], None] = lambda n: None,
                        pages: Callable[[Path, Path], None] | None = None) -> ConfigRun:
    """Localize every video of ``spec`` with its vocabulary into ``folder``: config.json,
    detections.json (ActivityNet results) and detections.csv, and curves/<video>.npz.

    A folder holding another run is refused before any work unless ``overwrite``; a rerun of the
    same run replaces its own files; ``pages(temporary, folder)`` adds files written from these
    (the viewer) before the folder is put in place, so it holds all of them or none. Videos run
    under their cache ids (the curves' file names) and are reported under their own names (the
    detections, the problems).
    """
    folder = Path(folder)
    record = run_record(spec, spec.name)
    with claimed({spec.name: folder}, {spec.name: record}, overwrite) as outputs:
        output = outputs[spec.name]
        outcome = run_request(spec.request(), on_video).outcome(spec.name)
        names = {v: spec.reader.video_name(v) for v in spec.videos}
        named = [replace(result, video_id=names[result.video_id]) for result in outcome.results]
        detections = split_detections(named, list(spec.classes), str(folder / "detections.json"))
        output.write_split(None, detections, outcome.results, list(spec.classes), names=names)
        if pages is not None:
            output.add(pages)
        output.commit()
    return ConfigRun(document={"run": record, "n_videos": len(outcome.results), "n_detections": len(detections)},
                      problems=[VideoProblem(names[p.video_id], p.reason) for p in outcome.problems],
                      warnings=[w for r in named for w in r.warning_lines()], replaced=output.replaced)
