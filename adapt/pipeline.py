"""A resolved run end to end from the cache: localize every split, write detections, evaluate."""
from __future__ import annotations

import functools
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from t3al.evaluate import Detections
from t3al.evaluate.splits import evaluate_setting

from .cluster import dask_backend
from .config import UNPUBLISHED, AdaptConfig
from .runner import SplitWork, Truths, detection_rows, localize_splits
from .spec import RunSpec
from .video import VideoProblem, VideoResult


VOCABULARY_OUTPUTS = ("detections.json", "detections.csv", "curves", "index.html")  # a vocabulary run's own files


class OutputError(ValueError):
    """An output folder that holds another configuration's results (never replaced silently)."""


@dataclass
class SettingRun:
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


def run_record(spec: RunSpec, config: AdaptConfig) -> dict:
    """Everything needed to rerun a results file exactly (and, for AdaZAD, what is not published)."""
    record = {"config": config.to_dict(), "seed": spec.seed, "setting": spec.setting,
              "cache": {"path": str(spec.cache.resolve()), "model": spec.reader.info.model.key(),
                        "schema_version": spec.reader.info.schema_version},
              "manifest": spec.manifest.dataset, "code_version": code_version()}
    if config.method in UNPUBLISHED:
        record["note"] = UNPUBLISHED[config.method]
    return record


def _identity(record: dict) -> dict:
    """What makes two runs the same configuration: config, seed, setting, model, dataset."""
    cache = record.get("cache") or {}
    return {"config": record.get("config"), "seed": record.get("seed"), "setting": record.get("setting"),
            "model": cache.get("model"), "manifest": record.get("manifest"), "vocabulary": record.get("vocabulary"),
            "videos": record.get("videos")}


def claim_folder(folder: Path, record: dict, overwrite: bool) -> str | None:
    """What writing the run of ``record`` into ``folder`` would replace (None: nothing).

    An earlier run of the same configuration may be replaced; a folder holding anything else is
    refused unless ``overwrite``.
    """
    if not folder.exists() or not any(folder.iterdir()):
        return None
    try:
        earlier = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        earlier = None
    same = isinstance(earlier, dict) and _identity(earlier) == _identity(record)
    if not same and not overwrite:
        what = "another configuration's results" if isinstance(earlier, dict) else "files that are not a t3al run"
        raise OutputError(f"{folder} holds {what}; choose another --out, or pass --overwrite to replace them")
    return ("replaced the earlier results of the same configuration" if same
            else "replaced another configuration's results (--overwrite)")


def clear_run(folder: Path) -> None:
    """Remove a replaced run's files (config, results, splits, report; a vocabulary run's detections,
    curves and viewer), so no stale output outlives it; other files are left alone."""
    for path in [folder / "config.json", folder / "results.json", folder / "report", *folder.glob("split_*"),
                 *(folder / name for name in VOCABULARY_OUTPUTS)]:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _truths(evaluation) -> Truths:
    position = {name: i for i, name in enumerate(evaluation.classes)}
    truths: Truths = {}
    for a in evaluation.annotations:
        truths.setdefault(a["video"], []).append((float(a["start"]), float(a["end"]), position[a["label"]]))
    return truths


def external_data(record: dict) -> dict:
    """What produced a run's detections, for the ActivityNet results' ``external_data``."""
    config = record["config"]
    return {"used": True, "details": f"model {record['cache']['model']}; method {config['method']} (t3al "
                                     f"{record['code_version']}, seed {record['seed']})",
            "model": record["cache"]["model"], "method": config["method"], "config": config}


def split_detections(results: list[VideoResult], classes: list[str], source: str) -> Detections:
    """The scored segments of ``results`` as Detections (labels by name)."""
    return Detections.from_records(({"video": v, "start": s, "end": e, "score": c, "label": lab}
                                    for v, s, e, c, lab in detection_rows(results, classes)), source=source)


def write_split(folder: Path, detections: Detections, results: list[VideoResult], classes: list[str],
                curves: bool = True, record: dict | None = None) -> None:
    """Detections as ActivityNet JSON (naming the model and method of ``record``) and CSV, and
    (``curves``) each video's curve and segments for plots."""
    folder.mkdir(parents=True, exist_ok=True)
    detections.write_json(folder / "detections.json", external_data(record) if record else None)
    detections.write_csv(folder / "detections.csv")
    if not curves:
        return
    (folder / "curves").mkdir(exist_ok=True)
    for result in results:
        np.savez_compressed(
            folder / "curves" / f"{result.video_id}.npz",
            timestamps=result.timestamps,
            similarity=result.similarity,
            pseudo_label=np.array(classes[result.pseudo_label]),
            segments=result.seconds(),
            labels=np.array([classes[i] for i in result.labels], dtype=str),
            scores=np.asarray(result.scores, dtype=np.float64),
        )


def run(spec: RunSpec, folders: Mapping[str, Path | None] | None = None, *, curves: bool = True,
        overwrite: bool = False, on_video: Callable[[int], None] = lambda n: None) -> dict[str, SettingRun]:
    """Localize and evaluate every config of ``spec`` on its splits: one run per config name.

    ``folders`` (config name -> folder) get config.json, each split's detections (and ``curves``)
    and results.json. A folder holding another configuration's results is refused before any
    work unless ``overwrite``. All splits and configs run together, so a video is read once and
    configs and splits share adaptations where the results are the same.
    """
    folders = {name: Path(f) for name, f in (folders or {}).items() if f is not None}
    records = {name: run_record(spec, config) for name, config in spec.configs.items()}
    runs = {name: SettingRun(document={}) for name in spec.configs}
    for name, folder in folders.items():
        runs[name].replaced = claim_folder(folder, records[name], overwrite)
    for name, folder in folders.items():
        if runs[name].replaced:
            clear_run(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(records[name], indent=2) + "\n")
    evaluations = {index: spec.evaluation(index) for index in spec.indices}
    oracles = any(c.oracle for c in spec.configs.values())
    order = list(spec.manifest.videos)
    works = [SplitWork([v for v in order if v in set(e.videos)], e.classes, _truths(e) if oracles else {})
             for e in evaluations.values()]
    with dask_backend(spec.scheduler):
        outcomes = localize_splits(spec.reader, works, list(spec.configs.values()), spec.seed, spec.jobs, on_video,
                                   spec.device)
    for position, (name, run_) in enumerate(runs.items()):
        detections = {}
        for index, split_outcomes in zip(spec.indices, outcomes):
            outcome = split_outcomes[position]
            classes = evaluations[index].classes
            detections[index] = split_detections(outcome.results, classes, f"split {index}")
            run_.problems.extend(outcome.problems)
            run_.warnings.extend(w for r in outcome.results for w in r.warnings)
            if name in folders:
                write_split(folders[name] / f"split_{index}", detections[index], outcome.results, classes, curves,
                            records[name])
        run_.document = evaluate_setting(spec.manifest, spec.setting, detections.__getitem__, spec.tious,
                                         spec.round_ap, spec.indices)
        for split, split_outcomes in zip(run_.document["splits"], outcomes):
            split["problems"] = [{"video": p.video_id, "reason": p.reason} for p in split_outcomes[position].problems]
        run_.document["run"] = records[name]
        if name in folders:
            (folders[name] / "results.json").write_text(json.dumps(run_.document, indent=2) + "\n")
    return runs
