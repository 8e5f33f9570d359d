"""Open-set figures: the presences a run wrote, and how well they and its detections say which
video holds which action (every video of the ground truth counted).

Presences travel beside the detections: ``"presence": {video: {action: p}}`` in the ActivityNet
JSON, and ``presence.csv`` (``video-id,label,presence``) next to the detection CSV.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from t3al.cache import write_atomically
from t3al.manifests import read_text

from .results import Detections
from .tables import EvaluationError, GroundTruth, csv_text

PRESENCE_COLUMNS = ("video-id", "label", "presence")
Presences = dict[str, dict[str, float]]  # video -> action -> presence in [0, 1]


def write_presence_csv(path: str | Path, presences: Presences) -> None:
    """One row per (video, action), written whole."""
    write_atomically(path, csv_text(PRESENCE_COLUMNS, ((video, label, f"{p:.6f}") for video, row in presences.items()
                                                       for label, p in row.items())))


def read_presences(path: str | Path) -> Presences:
    """The presences of a detection JSON (its ``presence`` object) or of a presence CSV."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        rows = list(csv.reader(read_text(path, EvaluationError).splitlines()))
        if not rows or tuple(rows[0]) != PRESENCE_COLUMNS:
            raise EvaluationError(f"{path}: a presence CSV starts with {','.join(PRESENCE_COLUMNS)}")
        presences: Presences = {}
        for number, row in enumerate(rows[1:], start=2):
            try:
                video, label, value = row
                presences.setdefault(video, {})[label] = float(value)
            except ValueError:
                raise EvaluationError(f"{path}: row {number} is not video-id,label,presence: {row!r}") from None
        return presences
    try:
        data = json.loads(read_text(path, EvaluationError))
    except json.JSONDecodeError as error:
        raise EvaluationError(f"{path}: invalid JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("presence"), dict):
        raise EvaluationError(f"{path}: no 'presence' object (written by t3al-localize's open-set rule)")
    return {video: {label: float(p) for label, p in row.items()} for video, row in data["presence"].items()}


def _held(ground_truth: GroundTruth, classes: Sequence[str]) -> dict[str, set[str]]:
    """The evaluated classes each video of the ground truth holds (possibly none)."""
    held: dict[str, set[str]] = {str(v): set() for v in ground_truth.video}
    for video, label in zip(ground_truth.video, ground_truth.label):
        if label in classes:
            held[str(video)].add(str(label))
    return held


def presence_quality(presences: Mapping[str, Mapping[str, float]], ground_truth: GroundTruth,
                     classes: Sequence[str]) -> dict:
    """Average precision and ROC AUC (percent) of the presences over (video, action) pairs of every
    video of the ground truth; a pair without a presence counts as presence 0."""
    held = _held(ground_truth, classes)
    truth = np.array([c in held[v] for v in held for c in classes])
    scores = np.array([float(presences.get(v, {}).get(c, 0.0)) for v in held for c in classes])
    if truth.all() or not truth.any():
        raise EvaluationError("presence AP and AUC need video-action pairs both with and without the action")
    return {"pairs": int(truth.size), "positive_pairs": int(truth.sum()),
            "ap": 100.0 * float(average_precision_score(truth, scores)),
            "auc": 100.0 * float(roc_auc_score(truth, scores))}


def video_flags(detections: Detections, ground_truth: GroundTruth, classes: Sequence[str]) -> dict:
    """How the detections flag whole videos: the share (percent) of the videos holding none of the
    classes that got a detection anyway, and of those holding one that got a detection of a class
    they hold."""
    held = _held(ground_truth, classes)
    detected: dict[str, set[str]] = {}
    for video, label in zip(detections.video, detections.label):
        detected.setdefault(str(video), set()).add(str(label))
    empty = [v for v in held if not held[v]]
    holding = [v for v in held if held[v]]
    return {"videos_without": len(empty), "videos_with": len(holding),
            "flagged_without": 100.0 * sum(bool(detected.get(v)) for v in empty) / len(empty) if empty else None,
            "found_with": 100.0 * sum(bool(detected.get(v, set()) & held[v]) for v in holding) / len(holding)
            if holding else None}
