"""The zero-shot protocol's split loop: ground truth of a split from a manifest, ten splits, one document.

The results document is the layout of ``t3al-adapt``'s ``OUT/results.json``::

    {"setting", "tiou", "splits": [{"index", "classes", "map", "avg", "per_class", "n_videos",
     "n_detections", ...}], "mean": {"map", "avg"}, "std": {"map", "avg"}}
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from t3al.manifests import Manifest, dataset_rules, setting_name

from .detection import MAPResult, evaluate_detections, summarize_splits
from .results import Detections
from .tables import EvaluationError, GroundTruth


def split_ground_truth(manifest: Manifest, setting: str, index: int) -> tuple[list[str], GroundTruth]:
    """Unseen classes of split ``index`` and their ground truth, as PROTOCOL.md defines them."""
    evaluation = manifest.evaluation_set(setting, index)
    return evaluation.classes, GroundTruth.from_records(evaluation.annotations, f"{manifest.dataset} {setting}/{index}")


def manifest_tious(manifest: Manifest) -> tuple[float, ...]:
    """The manifest's thresholds, or the protocol's default for its dataset."""
    return tuple(manifest.tiou) if manifest.tiou else dataset_rules(manifest.dataset).tious


def results_document(setting: str, results: Sequence[MAPResult], indices: Sequence[int] | None = None) -> dict:
    """The ``results.json`` layout: per-split results plus mean and std across splits."""
    indices = list(indices) if indices is not None else list(range(len(results)))
    splits = [{"index": i, "classes": list(r.per_class), **r.to_dict()} for i, r in zip(indices, results)]
    return {"setting": setting_name(setting), "splits": splits, **summarize_splits(results)}


def detections_path(pattern: str | Path, index: int) -> Path:
    """Detections of split ``index``: ``pattern`` with ``{i}`` substituted, or found in a directory.

    A directory is searched for ``split_<i>/detections.json``, ``split_<i>/detections.csv``,
    ``<i>.json`` and ``<i>.csv`` (t3al-adapt's layout, then one file per split).
    """
    text = str(pattern)
    if "{i}" in text:
        return Path(text.replace("{i}", str(index)))
    folder = Path(text)
    candidates = [folder / f"split_{index}" / "detections.json", folder / f"split_{index}" / "detections.csv",
                  folder / f"{index}.json", folder / f"{index}.csv"]
    for path in candidates:
        if path.is_file():
            return path
    raise EvaluationError(f"{folder}: no detections for split {index} (looked for "
                          f"{', '.join(str(p.relative_to(folder)) for p in candidates)})")


def evaluate_setting(manifest: Manifest, setting: str, load: Callable[[int], Detections],
                     tious: Sequence[float] | None = None, round_ap: bool = False,
                     indices: Sequence[int] | None = None) -> dict:
    """Evaluate every split of ``setting`` (``load(i)`` gives its detections); the results document."""
    key = setting_name(setting)
    if key not in manifest.splits:
        raise EvaluationError(f"manifest of {manifest.dataset} has no split setting {key!r} "
                              f"(has: {', '.join(manifest.splits) or 'none'})")
    indices = list(indices) if indices is not None else list(range(len(manifest.splits[key])))
    tious = tuple(tious) if tious else manifest_tious(manifest)
    results = []
    for i in indices:
        classes, gt = split_ground_truth(manifest, key, i)
        results.append(evaluate_detections(load(i), gt, classes, tious, round_ap=round_ap))
    return results_document(key, results, indices)

