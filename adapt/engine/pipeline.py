"""A resolved run end to end from the cache: localize every split, write detections, evaluate."""
from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from t3al.evaluate import Detections, EvaluationError, GroundTruth
from t3al.evaluate.presence import presence_quality
from t3al.evaluate.splits import evaluate_setting

from ..algorithm.online import delay_summary, emission_rows
from ..algorithm.video import VideoProblem, VideoResult
from ..config import UNPUBLISHED
from .output import RunOutput, claimed, result_presences
from .runner import Outcome, run_request
from .spec import RunSpec


@dataclass
class ConfigRun:
    """The results document of one config, what went wrong on the way, and what its folder held
    before (``replaced``: None when it was new or empty)."""

    document: dict
    problems: list[VideoProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    replaced: str | None = None


@functools.cache
def code_version() -> str:
    """The installed t3al version, plus the git commit when run from a checkout."""
    version = metadata.version("t3al")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}"


def run_record(spec: RunSpec, name: str) -> dict:
    """Everything needed to rerun config ``name``'s results exactly: config, seed, cache and code
    version, with the setting and manifest it was evaluated on (and, for AdaZAD, what is not
    published), or a vocabulary run's preset, vocabulary and videos."""
    config = spec.configs[name]
    cache = {"path": str(spec.cache.resolve()), "model": spec.reader.info.model.key(),
             "schema_version": spec.reader.info.schema_version}
    if spec.manifest is None:
        return {"config": config.to_dict(), "seed": spec.seed, "preset": spec.preset, "vocabulary": list(spec.classes),
                "videos": list(spec.videos), "cache": cache, "code_version": code_version()}
    record = {"config": config.to_dict(), "seed": spec.seed, "setting": spec.setting, "cache": cache,
              "manifest": spec.manifest.dataset, "code_version": code_version()}
    if config.method in UNPUBLISHED:
        record["note"] = UNPUBLISHED[config.method]
    return record


def _add_presence_quality(document: dict, spec: RunSpec, outcomes: list[Outcome]) -> None:
    """Under the open-set rule, each split's presence AP and ROC AUC over its (video, class) pairs,
    and their mean over the splits that have pairs both with and without the class (a split of one
    class whose videos all hold it has none: its figures are null)."""
    qualities = []
    for split, index, outcome in zip(document["splits"], spec.indices, outcomes):
        evaluation = spec.evaluation(index)
        presences = result_presences(outcome.results, evaluation.classes, {}) or {}
        try:
            split["presence"] = presence_quality(presences, GroundTruth.from_records(evaluation.annotations),
                                                 evaluation.classes)
            qualities.append(split["presence"])
        except EvaluationError:
            split["presence"] = None
    document["presence"] = {key: float(np.mean([q[key] for q in qualities])) if qualities else None
                            for key in ("ap", "auc")}


def split_detections(results: list[VideoResult], classes: list[str], source: str) -> Detections:
    """The scored segments of ``results`` as Detections (labels by name, times in seconds)."""
    return Detections.from_records(({"video": r.video_id, "start": float(start), "end": float(end),
                                     "score": float(score), "label": classes[label]}
                                    for r in results for (start, end), label, score in
                                    zip(r.seconds(), r.labels, r.scores)), source=source)


def run(spec: RunSpec, folders: Mapping[str, Path | None] | None = None, *, curves: bool = True,
        overwrite: bool = False, on_video: Callable[[int], None] = lambda n: None) -> dict[str, ConfigRun]:
    """Localize and evaluate every config of ``spec`` on its splits: one run per config name.

    ``folders`` (config name -> folder) get config.json, each split's detections (and ``curves``)
    and results.json. A folder holding another configuration's results is refused before any
    work unless ``overwrite``. All splits and configs run together, so a video is read once and
    configs and splits share adaptations where the results are the same.
    """
    folders = {name: Path(f) for name, f in (folders or {}).items() if f is not None}
    records = {name: run_record(spec, name) for name in spec.configs}
    runs = {name: ConfigRun(document={}) for name in spec.configs}
    with claimed(folders, records, overwrite) as outputs:
        for name, output in outputs.items():
            runs[name].replaced = output.replaced
        _run_claimed(spec, runs, records, outputs, curves, on_video)
    return runs


def _run_claimed(spec: RunSpec, runs: dict[str, ConfigRun], records: dict[str, dict],
                 outputs: dict[str, RunOutput], curves: bool, on_video: Callable[[int], None]) -> None:
    """The work of ``run`` once its output folders are claimed: each output is committed complete."""
    results = run_request(spec.request(), on_video)
    for name, run_ in runs.items():
        online = spec.configs[name].protocol == "online"
        outcomes = {index: results.outcome(name, index) for index in spec.indices}
        detections = {}
        for index, outcome in outcomes.items():
            classes = spec.evaluation(index).classes
            detections[index] = split_detections(outcome.results, classes, f"split {index}")
            run_.problems.extend(outcome.problems)
            run_.warnings.extend(w for r in outcome.results for w in r.warning_lines())
            if name in outputs:
                outputs[name].write_split(index, detections[index], outcome.results, classes, curves)
                if online:
                    outputs[name].write_emissions(index, emission_rows(outcome.results, classes))
        run_.document = evaluate_setting(spec.manifest, spec.setting, detections.__getitem__, spec.tious,
                                         spec.round_ap, spec.indices)
        if online:
            run_.document["online"] = delay_summary([r for o in outcomes.values() for r in o.results])
        for split, outcome in zip(run_.document["splits"], outcomes.values()):
            split["problems"] = [{"video": p.video_id, "reason": p.reason} for p in outcome.problems]
        if spec.configs[name].presence_threshold is not None:
            _add_presence_quality(run_.document, spec, list(outcomes.values()))
        run_.document["run"] = records[name]
        if name in outputs:
            outputs[name].commit(run_.document)
