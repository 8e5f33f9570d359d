"""Detection mAP of the zero-shot TAL protocol, split summaries, tables, plots and HTML reports.

Public API (what t3al-adapt and users call)::

    Detections.read(path) / .from_records(rows) / .write_csv(path) / .write_json(path)
    GroundTruth.read(path) / .from_records(rows) / ground_truth_for_split(manifest, setting, index)
    evaluate_detections(detections, ground_truth, classes, tious=THUMOS14_TIOUS, round_ap=False) -> MAPResult
    summarize_splits([MAPResult, ...]) -> {"tiou", "mean": {"map", "avg"}, "std": {"map", "avg"}}
    split_ground_truth(manifest, setting, index) -> (unseen classes, GroundTruth)   # PROTOCOL.md
    results_document(setting, [MAPResult, ...], indices=None) -> the results.json layout
    evaluate_setting(manifest, setting, load=lambda i: Detections, tious=None, round_ap=False) -> document
    format_table({name: results document or MAPResult.to_dict()}, fmt="terminal"|"markdown"|"csv"|"html")
    pages.render(template, package="t3al.evaluate", **context) -> HTML from an autoescaping jinja2 template
    manifest_tious(manifest) -> tuple of thresholds (the manifest's, else its dataset family's)
    results.read_curve(npz) -> Curve; results.write_curve(npz, curve); plots.plot_video(curve, gt_rows, png, duration=None);
    plots.plot_class_ap(per_class, tious, png); html.write_report(out_dir, manifest=None, n_plots=8, videos=())
    html.video_ap(detections, ground_truth, tious) -> {video: AP}; html.pick_videos(ap, n) -> [(video, rank)]

All figures are percent. Bad input raises EvaluationError with a message naming file, row or video.
"""
from .detection import (
    ACTIVITYNET_TIOUS,
    THUMOS14_TIOUS,
    MAPResult,
    evaluate_detections,
    interpolated_average_precision,
    segment_tiou,
    summarize_splits,
)
from .report import format_table
from .splits import detections_path, evaluate_setting, manifest_tious, results_document, split_ground_truth
from .results import Detections
from .tables import EvaluationError, GroundTruth

__all__ = [
    "ACTIVITYNET_TIOUS",
    "THUMOS14_TIOUS",
    "Detections",
    "EvaluationError",
    "GroundTruth",
    "MAPResult",
    "detections_path",
    "evaluate_detections",
    "evaluate_setting",
    "format_table",
    "manifest_tious",
    "results_document",
    "split_ground_truth",
    "interpolated_average_precision",
    "segment_tiou",
    "summarize_splits",
]
