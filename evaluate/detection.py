"""Temporal detection AP exactly as the ActivityNet detection toolkit, vectorised over classes.

Per class: detections sorted by score (descending, stable for ties), each matched to the unmatched
ground-truth instance of the same video and class with the highest tIoU if that tIoU >= threshold,
else a false positive; AP = area under the interpolated (monotone) precision/recall curve (VOC 2011).

Documented rules for imperfect input:
- ground truth of classes outside the evaluated list is ignored (the zero-shot protocol);
- the evaluated videos are those with ground truth of an evaluated class; detections on other videos
  are dropped and counted in ``MAPResult.n_dropped`` (the CLI prints the count); with ``open_set``
  every video of the ground truth is evaluated, so a detection in a video without that action is a
  false positive (only detections on videos the ground truth does not list are dropped);
- a detection label outside the evaluated classes is an error, as is an evaluated class without any
  ground-truth instance (its AP would be undefined);
- an evaluated class without detections has AP 0, counts in the mean and is listed in
  ``MAPResult.classes_without_detections``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from t3al.manifests.datasets import ACTIVITYNET, THUMOS14, tiou_set_name

from .results import Detections
from .tables import EvaluationError, GroundTruth

THUMOS14_TIOUS = THUMOS14.tious
ACTIVITYNET_TIOUS = ACTIVITYNET.tious


def describe_tious(tious: Sequence[float]) -> str:
    """The thresholds a table averages over, with the name of their set when they form one."""
    return f"tIoU set {tiou_set_name(tuple(tious))}: {', '.join(f'{float(t):g}' for t in tious)}"


@dataclass
class MAPResult:
    """mAP in percent per threshold, its mean over thresholds, per-class AP and bookkeeping counts."""

    tiou: tuple[float, ...]
    map: np.ndarray
    avg: float
    per_class: dict[str, np.ndarray]
    n_detections: int
    n_ground_truth: int
    n_videos: int
    n_dropped: int = 0
    classes_without_detections: list[str] = field(default_factory=list)
    rounded: bool = False

    def to_dict(self) -> dict:
        """JSON-ready: ``{"tiou", "map", "avg", "per_class", ...counts}`` with figures in percent."""
        return {"tiou": list(self.tiou), "map": self.map.tolist(), "avg": self.avg,
                "per_class": {c: ap.tolist() for c, ap in self.per_class.items()},
                "n_detections": self.n_detections, "n_ground_truth": self.n_ground_truth,
                "n_videos": self.n_videos, "n_dropped": self.n_dropped,
                "classes_without_detections": list(self.classes_without_detections), "rounded": self.rounded}


def interpolated_average_precision(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """VOC 2011 AP of each row: area under the monotone envelope of precision over recall."""
    rows = precision.shape[0]
    mprec = np.hstack([np.zeros((rows, 1)), precision, np.zeros((rows, 1))])
    mrec = np.hstack([np.zeros((rows, 1)), recall, np.ones((rows, 1))])
    mprec = np.maximum.accumulate(mprec[:, ::-1], axis=1)[:, ::-1]
    return np.sum(np.diff(mrec, axis=1) * mprec[:, 1:], axis=1)


def segment_tiou(start_a: np.ndarray, end_a: np.ndarray, start_b: np.ndarray, end_b: np.ndarray) -> np.ndarray:
    """Elementwise temporal IoU of segments a and b (0 where the union is empty)."""
    inter = np.clip(np.minimum(end_a, end_b) - np.maximum(start_a, start_b), 0.0, None)
    union = (end_a - start_a) + (end_b - start_b) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _candidate_pairs(det_key: np.ndarray, gt_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (detection, ground truth) index pairs that share a (video, class) key."""
    gt_order = np.argsort(gt_key, kind="stable")
    sorted_keys = gt_key[gt_order]
    first = np.searchsorted(sorted_keys, det_key, side="left")
    count = np.searchsorted(sorted_keys, det_key, side="right") - first
    det_idx = np.repeat(np.arange(len(det_key)), count)
    offsets = np.arange(len(det_idx)) - np.repeat(np.cumsum(count) - count, count)
    return det_idx, gt_order[np.repeat(first, count) + offsets]


def match_detections(det_key: np.ndarray, det_start: np.ndarray, det_end: np.ndarray, gt_key: np.ndarray,
                     gt_start: np.ndarray, gt_end: np.ndarray, tious: Sequence[float]) -> np.ndarray:
    """True-positive flags (T x N) of detections already in score order, greedy as the toolkit.

    Keys are integer (video, class) codes; a detection can only match ground truth with its key.
    """
    tp = np.zeros((len(tious), len(det_key)), dtype=bool)
    det_idx, gt_idx = _candidate_pairs(det_key, gt_key)
    iou = segment_tiou(det_start[det_idx], det_end[det_idx], gt_start[gt_idx], gt_end[gt_idx])
    keep = iou >= min(tious)
    det_idx, gt_idx, iou = det_idx[keep], gt_idx[keep], iou[keep]
    order = np.lexsort((-iou, det_idx))  # by detection (score order), then tIoU descending
    det_idx, gt_idx, iou = det_idx[order], gt_idx[order].tolist(), iou[order].tolist()
    starts = np.flatnonzero(np.r_[True, det_idx[1:] != det_idx[:-1]]) if len(det_idx) else np.zeros(0, int)
    ends = np.r_[starts[1:], len(det_idx)]
    locked = [set() for _ in tious]
    for i, j in zip(starts.tolist(), ends.tolist()):
        for t, threshold in enumerate(tious):
            for k in range(i, j):
                if iou[k] < threshold:
                    break
                if gt_idx[k] not in locked[t]:
                    locked[t].add(gt_idx[k])
                    tp[t, det_idx[i]] = True
                    break
    return tp


def _codes(*columns: np.ndarray) -> list[np.ndarray]:
    """Shared integer codes for string columns that must be compared with each other."""
    _, inverse = np.unique(np.concatenate(columns).astype(str), return_inverse=True)
    return np.split(inverse, np.cumsum([len(c) for c in columns])[:-1])


def _check_labels(detections: Detections, classes: Sequence[str]) -> None:
    unknown = sorted(set(detections.label.tolist()) - set(classes))
    if unknown:
        raise EvaluationError(f"{detections.source}: label(s) {', '.join(map(repr, unknown[:5]))} are not among "
                              f"the evaluated classes {list(classes)}")


def evaluate_detections(detections: Detections, ground_truth: GroundTruth, classes: Sequence[str],
                        tious: Sequence[float] = THUMOS14_TIOUS, round_ap: bool = False,
                        open_set: bool = False) -> MAPResult:
    """mAP (percent) of ``detections`` over ``classes`` at each tIoU threshold.

    ``round_ap`` rounds each class AP to 0.1 percent before averaging, like the public T3AL/FreeZAD
    scripts, for comparison with printed tables; the default is the unrounded figure. ``open_set``
    evaluates every video of the ground truth, not only those holding an evaluated class.
    """
    classes = list(dict.fromkeys(classes))
    tious = tuple(float(t) for t in tious)
    if not classes or not tious:
        raise EvaluationError("need at least one class and one tIoU threshold")
    gt = ground_truth.select(np.isin(ground_truth.label.astype(str), classes))
    empty = sorted(set(classes) - set(gt.label.tolist()))
    if empty:
        raise EvaluationError(f"{ground_truth.source}: class(es) {', '.join(empty)} have no ground-truth instance; "
                              "their AP is undefined")
    _check_labels(detections, classes)
    evaluated = np.unique((ground_truth if open_set else gt).video.astype(str))
    dets = detections.select(np.isin(detections.video.astype(str), evaluated))

    class_code = {c: i for i, c in enumerate(classes)}
    det_class = np.array([class_code[c] for c in dets.label.tolist()], dtype=np.int64)
    gt_class = np.array([class_code[c] for c in gt.label.tolist()], dtype=np.int64)
    det_video, gt_video = _codes(dets.video, gt.video)
    n_videos = int(max(det_video.max(initial=-1), gt_video.max(initial=-1))) + 1
    order = np.lexsort((-dets.score, det_class))  # by class, then score descending; lexsort is stable
    det_class = det_class[order]
    tp = match_detections(det_class * n_videos + det_video[order], dets.start[order], dets.end[order],
                          gt_class * n_videos + gt_video, gt.start, gt.end, tious)

    ap = np.zeros((len(classes), len(tious)))
    n_gt = np.bincount(gt_class, minlength=len(classes))
    bounds = np.searchsorted(det_class, np.arange(len(classes) + 1))
    for c in range(len(classes)):
        hits = tp[:, bounds[c]:bounds[c + 1]]
        if hits.shape[1]:
            tp_cum = np.cumsum(hits, axis=1)
            precision = tp_cum / np.arange(1, hits.shape[1] + 1)
            ap[c] = interpolated_average_precision(precision, tp_cum / n_gt[c])
    ap *= 100.0
    if round_ap:
        ap = np.round(ap, 1)
    per_threshold = ap.mean(axis=0)
    return MAPResult(
        tiou=tious, map=per_threshold, avg=float(per_threshold.mean()),
        per_class={c: ap[i] for i, c in enumerate(classes)},
        n_detections=len(dets), n_ground_truth=len(gt), n_videos=len(evaluated),
        n_dropped=len(detections) - len(dets),
        classes_without_detections=[c for i, c in enumerate(classes) if bounds[i] == bounds[i + 1]],
        rounded=round_ap,
    )


def summarize_splits(results: Sequence[MAPResult]) -> dict:
    """Mean and standard deviation (ddof=1, 0 for one split) of mAP and Avg across splits."""
    if not results:
        raise EvaluationError("no split results to summarise")
    maps = np.stack([r.map for r in results])
    avgs = np.array([r.avg for r in results])
    ddof = 1 if len(results) > 1 else 0
    return {"tiou": list(results[0].tiou),
            "mean": {"map": maps.mean(axis=0).tolist(), "avg": float(avgs.mean())},
            "std": {"map": maps.std(axis=0, ddof=ddof).tolist(), "avg": float(avgs.std(ddof=ddof))}}
