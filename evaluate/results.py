"""What stage two writes and the reports read: the detections table and the per-video curve file.

``Detections`` is one row per detected segment (video, start, end, score, label), written and read
as ActivityNet results JSON or CSV. A curve file, ``curves/<video>.npz``, is one video's ``Curve``:
its per-frame similarity, the segments cut from it with their labels and scores, each localized
label's curve and (open set) every class's presence. ``t3al-adapt`` and ``t3al-localize`` write
them (``adapt/engine/output.py``); ``t3al-evaluate``, its plots and the viewer read them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from t3al.cache import write_atomically

from .tables import (EvaluationError, check_segments, csv_text, float_column, read_csv_columns, read_json_object,
                     read_segment, string_column)

DETECTION_COLUMNS = ("video-id", "t-start", "t-end", "score", "label")
ACTIVITYNET_VERSION = "VERSION 1.3"  # the results format of the ActivityNet detection toolkit
CURVE_KEYS = ("timestamps", "similarity", "pseudo_label", "segments", "labels", "scores")
LABEL_CURVE_KEYS = ("curve_labels", "curves")  # each localized label's curve


@dataclass(frozen=True)
class Detections:
    """Detected segments: one row per (video, start, end, score, label)."""

    video: np.ndarray
    start: np.ndarray
    end: np.ndarray
    score: np.ndarray
    label: np.ndarray
    source: str = "detections"

    def __post_init__(self) -> None:
        if not len(self.video) == len(self.start) == len(self.end) == len(self.score) == len(self.label):
            raise EvaluationError(f"{self.source}: columns have different lengths")
        check_segments(self.video, self.start, self.end, self.source)
        bad = np.flatnonzero(~np.isfinite(self.score))
        if bad.size:
            raise EvaluationError(f"{self.source}: row {bad[0]} (video {self.video[bad[0]]}): score is not a "
                                  "finite number")

    def __len__(self) -> int:
        return len(self.video)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], source: str = "detections") -> "Detections":
        """Rows as dicts with keys video, start, end, score, label."""
        rows = list(records)
        return cls(string_column(r["video"] for r in rows), float_column(r["start"] for r in rows),
                   float_column(r["end"] for r in rows), float_column(r["score"] for r in rows),
                   string_column(r["label"] for r in rows), source)

    @classmethod
    def read(cls, path: str | Path) -> "Detections":
        """Read a CSV ``video-id,t-start,t-end,score,label`` or an ActivityNet detection JSON."""
        path = Path(path)
        if path.suffix.lower() == ".csv":
            c = read_csv_columns(path, DETECTION_COLUMNS)
            return cls(c["video-id"], c["t-start"], c["t-end"], c["score"], c["label"], str(path))
        data = read_json_object(path)
        if not isinstance(data.get("results"), dict):
            raise EvaluationError(f"{path}: not an ActivityNet detection JSON (no 'results' object)")
        return cls.from_records(_activitynet_detections(data["results"], path), str(path))

    def select(self, mask: np.ndarray) -> "Detections":
        return Detections(self.video[mask], self.start[mask], self.end[mask], self.score[mask], self.label[mask],
                          self.source)

    def write_csv(self, path: str | Path) -> None:
        write_atomically(path, csv_text(DETECTION_COLUMNS, zip(
            self.video, (f"{s:.6f}" for s in self.start), (f"{e:.6f}" for e in self.end),
            (f"{s:.6f}" for s in self.score), self.label)))

    def to_activitynet(self, external_data: Mapping[str, Any] | None = None,
                       presence: Mapping[str, Mapping[str, float]] | None = None) -> dict:
        """The ActivityNet results object (videos in first-seen order, segments in seconds);
        ``external_data`` says what produced them (the toolkit's ``used`` and ``details``);
        ``presence`` (video -> action -> presence, the open-set rule's) goes beside the results."""
        results: dict[str, list] = {}
        for v, s, e, c, lab in zip(self.video, self.start, self.end, self.score, self.label):
            results.setdefault(v, []).append({"label": lab, "score": float(c), "segment": [float(s), float(e)]})
        document = {"version": ACTIVITYNET_VERSION, "results": results, "external_data": dict(external_data or {})}
        if presence is not None:
            document["presence"] = {video: dict(row) for video, row in presence.items()}
        return document

    def write_json(self, path: str | Path, external_data: Mapping[str, Any] | None = None,
                   presence: Mapping[str, Mapping[str, float]] | None = None) -> None:
        write_atomically(path, json.dumps(self.to_activitynet(external_data, presence)))



def _activitynet_detections(results: Mapping, path: Path) -> Iterable[dict]:
    for video, items in results.items():
        for item in items:
            if "label" not in item or "score" not in item:
                raise EvaluationError(f"{path}: video {video}: detection without 'label' or 'score': {item!r}")
            start, end = read_segment(item, path, video)
            yield {"video": video, "start": start, "end": end, "score": item["score"], "label": item["label"]}


@dataclass(frozen=True)
class Curve:
    """One video's saved stage-two output: the per-frame similarity and the segments cut from it."""

    video: str
    timestamps: np.ndarray
    similarity: np.ndarray
    pseudo_label: str
    segments: np.ndarray
    labels: list[str]
    scores: np.ndarray
    curves: dict[str, np.ndarray] = field(default_factory=dict)  # each localized label's curve
    presence: np.ndarray | None = None  # every class's presence (the open-set rule), in the run's class order


def write_curve(path: str | Path, curve: Curve) -> None:
    """Save ``curve`` as ``path`` (.npz, compressed); arrays keep their dtypes, names are str arrays."""
    extra = {} if curve.presence is None else {"presence": np.asarray(curve.presence, dtype=np.float64)}
    np.savez_compressed(
        path,
        **extra,
        timestamps=curve.timestamps,
        similarity=curve.similarity,
        pseudo_label=np.array(curve.pseudo_label),
        segments=curve.segments,
        labels=np.array(curve.labels, dtype=str),
        scores=np.asarray(curve.scores, dtype=np.float64),
        curve_labels=np.array(list(curve.curves), dtype=str),
        curves=np.stack(list(curve.curves.values())),
    )


def read_curve(path: str | Path) -> Curve:
    """Load ``curves/<video>.npz``; a missing key or mismatched lengths is an error naming the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in CURVE_KEYS if k not in data.files]
            if missing:
                raise EvaluationError(f"{path}: missing array(s) {', '.join(missing)}")
            arrays = {k: data[k] for k in CURVE_KEYS}
            extra = {k: data[k] for k in LABEL_CURVE_KEYS if k in data.files}
            presence = np.asarray(data["presence"], dtype=np.float64) if "presence" in data.files else None
    except (OSError, ValueError) as error:
        raise EvaluationError(f"{path}: not a readable .npz ({error})") from None
    segments = np.asarray(arrays["segments"], dtype=np.float64).reshape(-1, 2)
    labels = [str(x) for x in np.atleast_1d(arrays["labels"])] if segments.size else []
    if len(arrays["timestamps"]) != len(arrays["similarity"]) or len(labels) != len(segments):
        raise EvaluationError(f"{path}: timestamps/similarity or segments/labels have different lengths")
    timestamps = np.asarray(arrays["timestamps"], dtype=np.float64)
    similarity = np.asarray(arrays["similarity"], dtype=np.float64)
    curves = {str(arrays["pseudo_label"]): similarity}
    if len(extra) == len(LABEL_CURVE_KEYS):
        stacked = np.asarray(extra["curves"], dtype=np.float64).reshape(len(extra["curve_labels"]), -1)
        if stacked.shape[1] != len(timestamps):
            raise EvaluationError(f"{path}: curves and timestamps have different lengths")
        curves = {str(label): row for label, row in zip(np.atleast_1d(extra["curve_labels"]), stacked)}
    return Curve(path.stem, timestamps, similarity, str(arrays["pseudo_label"]), segments, labels,
                 np.asarray(arrays["scores"], dtype=np.float64).reshape(-1), curves, presence)
