"""One setting end to end from the cache: localize every split, write detections, evaluate."""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from t3al.cache import CacheError, CacheReader
from t3al.evaluate import Detections, evaluate_detections
from t3al.evaluate.splits import manifest_tious, results_document, split_ground_truth
from t3al.manifests import Manifest, setting_name

from .config import AdaptConfig
from .runner import SplitWork, Truths, detection_rows, localize_splits
from .video import VideoProblem, VideoResult


@dataclass
class SettingRun:
    """The results document of a setting and what went wrong on the way."""

    document: dict
    problems: list[VideoProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def load_manifest(reader: CacheReader, path: str | os.PathLike | None) -> Manifest:
    """The manifest given on the command line, else the copy recorded in the cache."""
    source = path or reader.manifest_path
    if source is None:
        raise CacheError(f"{reader.root}: the cache records no manifest; pass --manifest FILE")
    return Manifest.load(source)


def code_version() -> str:
    """The installed t3al version, plus the git commit when run from a checkout."""
    version = metadata.version("t3al")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}"


def run_record(reader: CacheReader, config: AdaptConfig, seed: int, manifest: Manifest) -> dict:
    """Everything needed to rerun a results file exactly."""
    return {"config": config.to_dict(), "seed": seed, "cache": {"path": str(reader.root.resolve()),
            "model": reader.info.model.key(), "schema_version": reader.info.schema_version},
            "manifest": manifest.dataset, "code_version": code_version()}


def _truths(manifest: Manifest, setting: str, index: int) -> Truths:
    evaluation = manifest.evaluation_set(setting, index)
    position = {name: i for i, name in enumerate(evaluation.classes)}
    truths: Truths = {}
    for a in evaluation.annotations:
        truths.setdefault(a["video"], []).append((float(a["start"]), float(a["end"]), position[a["label"]]))
    return truths


def write_split(folder: Path, detections: Detections, results: list[VideoResult], classes: list[str],
                curves: bool = True) -> None:
    """Detections as ActivityNet JSON and CSV, and (``curves``) each video's curve and segments for plots."""
    folder.mkdir(parents=True, exist_ok=True)
    detections.write_json(folder / "detections.json")
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


def run_setting(
    cache: str | os.PathLike,
    setting: str,
    config: AdaptConfig,
    manifest_path: str | os.PathLike | None = None,
    indices: Sequence[int] | None = None,
    seed: int = 0,
    jobs: int = 1,
    out: str | os.PathLike | None = None,
    round_ap: bool = False,
    on_video: Callable[[int], None] = lambda n: None,
    device: str | None = None,
) -> SettingRun:
    """Localize and evaluate splits of ``setting``; write outputs under ``out`` when given.

    All splits run together, so a video's splits can share work; the files are written at the end.
    ``device``: adapt in batches there (``localize_splits``).
    """
    return _run_many(cache, setting, [config], [out], manifest_path, indices, seed, jobs, round_ap, on_video,
                     device=device)[0]


def run_settings(
    cache: str | os.PathLike,
    setting: str,
    configs: Mapping[str, AdaptConfig],
    manifest_path: str | os.PathLike | None = None,
    indices: Sequence[int] | None = None,
    seed: int = 0,
    jobs: int = 1,
    out: str | os.PathLike | None = None,
    round_ap: bool = False,
    on_video: Callable[[int], None] = lambda n: None,
    curves: bool = True,
    device: str | None = None,
) -> dict[str, SettingRun]:
    """``run_setting`` for several named configs at once, each video read once for all splits and
    configs; config ``name`` writes its files under ``out/name``."""
    folders = [Path(out) / name if out is not None else None for name in configs]
    runs = _run_many(cache, setting, list(configs.values()), folders, manifest_path, indices, seed, jobs, round_ap,
                     on_video, curves, device)
    return dict(zip(configs, runs))


def _run_many(cache: str | os.PathLike, setting: str, configs: list[AdaptConfig], folders: list,
              manifest_path: str | os.PathLike | None, indices: Sequence[int] | None, seed: int, jobs: int,
              round_ap: bool, on_video: Callable[[int], None], curves: bool = True,
              device: str | None = None) -> list[SettingRun]:
    """The split loop shared by ``run_setting`` and ``run_settings``."""
    reader = CacheReader(cache)
    manifest = load_manifest(reader, manifest_path)
    key = setting_name(setting)
    indices = list(indices) if indices is not None else list(range(len(manifest.splits.get(key, []))))
    tious = manifest_tious(manifest)
    folders = [Path(f) if f is not None else None for f in folders]
    for config, folder in zip(configs, folders):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "config.json").write_text(json.dumps(run_record(reader, config, seed, manifest), indent=2) + "\n")
    runs = [SettingRun(document={}) for _ in configs]
    results: list[list] = [[] for _ in configs]
    problems_per_split: list[list] = [[] for _ in configs]
    order = list(manifest.videos)
    evaluations = [manifest.evaluation_set(key, index) for index in indices]
    oracles = any(c.oracle for c in configs)
    works = [SplitWork([v for v in order if v in set(evaluation.videos)], evaluation.classes,
                       _truths(manifest, key, index) if oracles else {})
             for index, evaluation in zip(indices, evaluations)]
    all_outcomes = localize_splits(str(cache), works, configs, seed, jobs, on_video, device)
    for index, evaluation, outcomes in zip(indices, evaluations, all_outcomes):
        classes, ground_truth = split_ground_truth(manifest, key, index)
        for i, (outcome, run, folder) in enumerate(zip(outcomes, runs, folders)):
            detections = Detections.from_records(
                ({"video": v, "start": s, "end": e, "score": c, "label": lab}
                 for v, s, e, c, lab in detection_rows(outcome.results, evaluation.classes)),
                source=f"split {index}")
            results[i].append(evaluate_detections(detections, ground_truth, classes, tious, round_ap=round_ap))
            run.problems.extend(outcome.problems)
            run.warnings.extend(w for r in outcome.results for w in r.warnings)
            problems_per_split[i].append([{"video": p.video_id, "reason": p.reason} for p in outcome.problems])
            if folder is not None:
                write_split(folder / f"split_{index}", detections, outcome.results, evaluation.classes, curves)
    for config, run, folder, result, problems in zip(configs, runs, folders, results, problems_per_split):
        run.document = results_document(key, result, indices)
        for split, split_problems in zip(run.document["splits"], problems):
            split["problems"] = split_problems
        run.document["run"] = run_record(reader, config, seed, manifest)
        if folder is not None:
            (folder / "results.json").write_text(json.dumps(run.document, indent=2) + "\n")
    return runs
