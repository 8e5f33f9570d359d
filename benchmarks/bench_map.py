"""Time the evaluator on the ten FreeZAD THUMOS14 75:25 splits (2,000-3,000 detections each).

Usage: python3 benchmarks/bench_map.py [--repeat 5]   (data from $T3AL_SHARED, default ../shared)
Prints the median seconds for reading the CSVs, for the mAP computation, and their total, over
all ten splits, and the mean mAP as a check against expected_75.json.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import click

from t3al.evaluate import Detections, GroundTruth, evaluate_detections, summarize_splits

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    shared = Path(os.environ.get("T3AL_SHARED", REPO.parent / "shared"))
    return (shared if shared.is_absolute() else REPO / shared) / "data" / "freezad-thumos14"


@click.command()
@click.option("--repeat", default=5, show_default=True, help="Timed repetitions (the median is printed).")
def main(repeat: int) -> None:
    """Median wall time of reading + evaluating all ten splits."""
    root = _data_root()
    expected = json.loads((root / "expected_75.json").read_text())
    reads, evals = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        inputs = [(Detections.read(root / "pred" / "75" / f"{i}.csv"), GroundTruth.read(root / "gt" / "75" / f"{i}.csv"),
                   expected[f"75/{i}"]["classes"]) for i in range(10)]
        middle = time.perf_counter()
        results = [evaluate_detections(d, g, c) for d, g, c in inputs]
        reads.append(middle - start)
        evals.append(time.perf_counter() - middle)
    summary = summarize_splits(results)
    n_dets = sum(len(d) for d, _, _ in inputs)
    print(f"ten splits, {n_dets} detections, {repeat} repeats (median):")
    print(f"  read CSV   {statistics.median(reads):.3f} s")
    print(f"  mAP        {statistics.median(evals):.3f} s")
    print(f"  total      {statistics.median(r + e for r, e in zip(reads, evals)):.3f} s  (target < 1 s)")
    print(f"  mean avg mAP {summary['mean']['avg']:.4f}  (expected {expected['75/mean']['avg']})")


if __name__ == "__main__":
    main()
