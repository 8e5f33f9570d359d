"""The per-video cost of the presence (adapt/algorithm/presence.py), beside the per-video cost of stage two.

Times ``video_presence`` on every video of a cache with the given action names (default: the
cache's first two prompts that are not distractors), one torch thread, as stage two's workers run
it; and on a synthetic video of CoCa ViT-L/14's widths (768) and a THUMOS14-long 5,000 frames.
The cache needs the distractor prompts (t3al-localize adds them).

    python benchmarks/bench_presence.py --cache demo_out/cache --actions BallBounce SquareSpin
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from t3al.adapt.config import AdaptConfig
from t3al.adapt.algorithm.distractors import DISTRACTORS
from t3al.adapt.algorithm.presence import presence
from t3al.adapt.engine.work import _load, single_thread, video_presence
from t3al.cache import CacheReader


def _seconds(run, repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--actions", nargs="+")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    reader = CacheReader(args.cache)
    head = reader.head()
    actions = args.actions or [c for c in head.class_names if c not in DISTRACTORS][:2]
    config = AdaptConfig(presence_threshold=0.5)
    with single_thread():
        videos = [_load(reader, v) for v in reader.video_ids()]
        per_video = [_seconds(lambda: video_presence(head, video, actions, config), args.repeats) for video in videos]
        frames = sum(v.n_frames for v in videos) / len(videos)
        print(f"cache {args.cache}: {1000 * np.mean(per_video):.2f} ms per video (max {1000 * max(per_video):.2f}), "
              f"{len(videos)} videos of {frames:.0f} frames on average, {len(actions)} actions + "
              f"{len(DISTRACTORS)} distractors, width {head.visual_proj.shape[0]}")
        generator = torch.Generator().manual_seed(0)
        features = torch.randn(5000, 768, generator=generator)
        eye, prompts = torch.eye(768), torch.randn(len(DISTRACTORS) + 5, 768, generator=generator)
        seconds = _seconds(lambda: presence(features, np.arange(5000) / 30.0, eye, eye, np.log(100.0), prompts[:5],
                                            prompts[5:]), args.repeats)
        print(f"synthetic: {1000 * seconds:.1f} ms per video of 5000 frames x 768, 5 actions + {len(DISTRACTORS)} "
              "distractors, one thread")


if __name__ == "__main__":
    main()
