"""Stage two's seconds per video with one and with several labels per video (``labels_per_video``).

Localizes every video of a cache once with the vocabulary of all its prompts (T3AL, per-video
reset, one process), for each count of labels, and prints the seconds per video and the number
of adaptations and detections.

    python benchmarks/bench_labels.py --cache demo_out/cache --labels 1 2
"""
from __future__ import annotations

import argparse
import time

from t3al.adapt.config import AdaptConfig
from t3al.adapt.engine.request import Execution, Request, Task
from t3al.adapt.engine.runner import run_request
from t3al.cache import CacheReader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--labels", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    reader = CacheReader(args.cache)
    videos, classes = reader.video_ids(), reader.head().class_names
    for count in args.labels:
        request = Request(reader, tuple(Task(None, v, tuple(classes)) for v in videos),
                          {"": AdaptConfig(labels_per_video=count)}, 0, Execution(args.jobs, device=args.device))
        started = time.perf_counter()
        outcome = run_request(request).outcome("")
        seconds = time.perf_counter() - started
        labels = sum(len(r.curves) or 1 for r in outcome.results)
        detections = sum(len(r.labels) for r in outcome.results)
        print(f"labels_per_video {count}: {seconds / len(videos):.3f} s per video ({len(videos)} videos, "
              f"{len(classes)} classes, {labels} adaptations, {detections} detections, jobs {args.jobs}, "
              f"device {args.device or 'none (video by video)'})")


if __name__ == "__main__":
    main()
