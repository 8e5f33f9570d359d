"""Stage two on a vocabulary and a list of cached videos, without manifest, splits or ground truth.

``t3al-localize`` builds a ``VocabularySpec`` with ``build_vocabulary_spec``; ``localize_vocabulary``
runs it through the same configs, run names, folder rule, processes, Dask and device paths as
``t3al-adapt`` (``localize_splits`` on one split whose classes are the vocabulary) and writes the
detections, the curves and the run record instead of evaluating.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from t3al.cache import CacheError, CacheReader, safe_video_id

from .cluster import dask_backend
from .config import DEFAULT_PRESET, AdaptConfig, ConfigError
from .output import claimed
from .pipeline import SettingRun, code_version, split_detections
from .runner import Plan, SplitWork, localize_splits
from .spec import check_execution, resolve_configs
from .video import VideoProblem


@dataclass(frozen=True)
class VocabularySpec:
    """A resolved run of one config over ``videos`` with the class vocabulary ``classes``."""

    reader: CacheReader
    classes: tuple[str, ...]
    videos: tuple[str, ...]
    preset: str
    configs: dict[str, AdaptConfig]
    seed: int = 0
    jobs: int = 1
    scheduler: str | None = None
    device: str | None = None

    @property
    def name(self) -> str:
        """The run's name (method, changed settings, hash), as t3al-adapt names it."""
        return next(iter(self.configs))

    @property
    def config(self) -> AdaptConfig:
        return self.configs[self.name]


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


def build_vocabulary_spec(cache: str | os.PathLike, classes: Sequence[str], *, videos: Sequence[str] = (),
                          preset: str | None = None, config_file: str | os.PathLike | None = None,
                          options: Mapping[str, Any] | None = None, seed: int = 0, jobs: int | None = None,
                          scheduler: str | None = None, device: str | None = None) -> VocabularySpec:
    """Open the cache, check the vocabulary's prompts and the videos, resolve the one config.

    Settings resolve as for ``t3al-adapt`` (``preset``, default thumos14's, then the method,
    ``config_file`` and ``options``); oracles need ground truth and are refused.
    """
    reader = CacheReader(cache)
    preset = preset or DEFAULT_PRESET
    configs = resolve_configs(preset, config_file, options, seed=seed)
    config = next(iter(configs.values()))
    if config.oracle:
        raise ConfigError("--oracle needs ground truth; localizing a vocabulary has none", "oracle")
    jobs, scheduler, device = check_execution(jobs, scheduler, device)
    reader.head().prompt_index(list(classes))
    return VocabularySpec(reader, tuple(classes), chosen_videos(reader, videos), preset, configs, seed, jobs,
                          scheduler, device)


def vocabulary_record(spec: VocabularySpec) -> dict:
    """Everything needed to rerun a vocabulary run exactly: config, seed, vocabulary, videos, cache."""
    return {"config": spec.config.to_dict(), "seed": spec.seed, "preset": spec.preset,
            "vocabulary": list(spec.classes), "videos": list(spec.videos),
            "cache": {"path": str(spec.reader.root.resolve()), "model": spec.reader.info.model.key(),
                      "schema_version": spec.reader.info.schema_version},
            "code_version": code_version()}


def localize_vocabulary(spec: VocabularySpec, folder: str | os.PathLike, *, overwrite: bool = False,
                        on_video: Callable[[int], None] = lambda n: None,
                        pages: Callable[[Path, Path], None] | None = None) -> SettingRun:
    """Localize every video of ``spec`` with its vocabulary into ``folder``: config.json,
    detections.json (ActivityNet results) and detections.csv, and curves/<video>.npz.

    A folder holding another run is refused before any work unless ``overwrite``; a rerun of the
    same run replaces its own files; ``pages(temporary, folder)`` adds files written from these
    (the viewer) before the folder is put in place, so it holds all of them or none. Videos run
    under their cache ids (the curves' file names) and are reported under their own names (the
    detections, the problems).
    """
    folder = Path(folder)
    record = vocabulary_record(spec)
    with claimed({spec.name: folder}, {spec.name: record}, overwrite) as outputs:
        output = outputs[spec.name]
        work = SplitWork(list(spec.videos), list(spec.classes))
        with dask_backend(spec.scheduler):
            outcome = localize_splits(Plan(spec.reader, [work], [spec.config], spec.seed, spec.jobs, spec.device),
                                      on_video)[0][0]
        names = {v: spec.reader.video_name(v) for v in spec.videos}
        named = [replace(result, video_id=names[result.video_id]) for result in outcome.results]
        detections = split_detections(named, list(spec.classes), str(folder / "detections.json"))
        output.write_split(None, detections, outcome.results, list(spec.classes), names=names)
        if pages is not None:
            output.add(pages)
        output.commit()
    return SettingRun(document={"run": record, "n_videos": len(outcome.results), "n_detections": len(detections)},
                      problems=[VideoProblem(names[p.video_id], p.reason) for p in outcome.problems],
                      warnings=[w for r in named for w in r.warning_lines()], replaced=output.replaced)
