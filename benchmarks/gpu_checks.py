"""The checks of ``gpu_check.sh``: each prints one line, writes its figures as JSON and exits 1 when
its check fails, so that the script's exit status is the checks' verdict.

    python benchmarks/gpu_checks.py environment --device cuda --json-out OUT/environment.json
    python benchmarks/gpu_checks.py imports --json-out OUT/imports.json
    python benchmarks/gpu_checks.py features DEVICE_CACHE CPU_CACHE --precision fp16 --min-cosine 0.999
    python benchmarks/gpu_checks.py agreement bench_adapt_batched.txt --min-share 0.95
    python benchmarks/gpu_checks.py target bench_adapt_setting.txt --what setting --seconds 20
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

# What the stage-two benchmarks print, and the figure each check reads from it.
AGREEMENT = re.compile(r"same segments and labels on (\d+) of (\d+) video-splits.*?largest score difference on "
                       r"those (\S+)")
# What the checks import (module: distribution), from the image or from the carried wheels.
IMPORTS = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy", "open_clip": "open_clip_torch",
           "ftfy": "ftfy", "ffmpeg": "ffmpeg-python", "imageio_ffmpeg": "imageio-ffmpeg", "h5py": "h5py",
           "sklearn": "scikit-learn", "joblib": "joblib", "click": "click", "tqdm": "tqdm", "matplotlib": "matplotlib",
           "jinja2": "jinja2", "cv2": "opencv-python-headless", "transformers": "transformers",
           "t3al.extract": "t3al"}  # its folder: the checkout t3al is imported from
TIMINGS = {"setting": re.compile(r"video-splits .* in ([\d.]+) s with --jobs"),
           "sweep": re.compile(r"video-rows in ([\d.]+) s wall")}


def environment(args: argparse.Namespace) -> bool:
    """The machine: Python, torch and its CUDA, the device's name, CPUs and load; False when CUDA is
    asked for and torch finds none (torch alone is imported, so that the refusal comes at once)."""
    import platform

    import torch

    cuda = torch.cuda.is_available()
    figures = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
               "cpus": os.cpu_count(), "cuda": cuda, "device": args.device,
               "device_name": torch.cuda.get_device_name(torch.device(args.device)) if cuda and args.device != "cpu"
               else "cpu", "load": os.getloadavg()[0]}
    _write(args.json_out, figures)
    print(" ".join(f"{key} {value}" for key, value in figures.items()))
    if args.device.startswith("cuda") and not cuda:
        print(f"--device {args.device}: torch finds no CUDA device (torch.cuda.is_available() is False; "
              f"torch {torch.__version__} built for CUDA {torch.version.cuda})")
        return False
    return True


def imports(args: argparse.Namespace) -> bool:
    """Every package the checks import, its version and the folder it came from (the image's or the
    carried wheels'; t3al's checkout); False when one is missing."""
    import importlib
    from importlib.metadata import PackageNotFoundError, version

    figures, missing = {}, []
    for module, distribution in IMPORTS.items():
        try:
            where = Path(importlib.import_module(module).__file__).resolve().parent
            figures[distribution] = {"version": version(distribution), "from": str(where.parent)}
        except (ImportError, PackageNotFoundError) as err:
            missing.append(f"{distribution} ({err})")
    _write(args.json_out, {"packages": figures, "missing": missing})
    for name, found in figures.items():
        print(f"{name} {found['version']} from {found['from']}")
    if missing:
        print("MISSING: " + ", ".join(missing))
    return not missing


def features(args: argparse.Namespace) -> bool:
    """The device's cache against the CPU's: the precision it records, the same videos, captions,
    and every frame's feature within the cosine tolerance of the CPU's."""
    import numpy as np

    from t3al.cache import CacheReader

    device, cpu = CacheReader(args.cache), CacheReader(args.reference)
    precision = device.info.preprocess.get("precision")
    ids = device.video_ids()
    worst, largest, captions = 1.0, 0.0, 0
    for video_id in ids:
        a, b = device.video(video_id), cpu.video(video_id)
        x, y = a.features.astype(np.float64), b.features.astype(np.float64)
        cosine = (x * y).sum(1) / np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), 1e-12)
        worst = min(worst, float(cosine.min()))
        largest = max(largest, float(np.abs(x - y).max() / np.abs(y).max()))
        captions += len(a.caption_texts)
    checks = {"precision": precision == args.precision, "videos": ids == cpu.video_ids() and len(ids) > 0,
              "no_failures": not device.failures(), "captions": captions > 0, "cosine": worst >= args.min_cosine}
    figures = {"precision": precision, "videos": len(ids), "captions": captions, "min_cosine": worst,
               "max_abs_difference_over_max": largest, "min_cosine_required": args.min_cosine, "checks": checks}
    _write(args.json_out, figures)
    print(f"{len(ids)} videos, {captions} captions, recorded precision {precision} (expected {args.precision}); "
          f"features against the CPU's: min cosine {worst:.6f} (required >= {args.min_cosine}), largest "
          f"difference {largest:.2e} of the largest value; " + ("all checks passed" if all(checks.values()) else
                                                                 "FAILED: " + ", ".join(k for k, v in checks.items()
                                                                                        if not v)))
    return all(checks.values())


def agreement(args: argparse.Namespace) -> bool:
    """The share of video-splits whose batched detections on the device equal the CPU's video-by-video
    ones (``bench_adapt.py batched``), against ``--min-share``."""
    match = AGREEMENT.search(args.output.read_text())
    if match is None:
        print(f"{args.output}: no agreement line (did bench_adapt.py batched finish?)")
        return False
    same, total, worst = int(match.group(1)), int(match.group(2)), float(match.group(3))
    share = same / total if total else 0.0
    _write(args.json_out, {"same": same, "video_splits": total, "share": share, "min_share": args.min_share,
                           "largest_score_difference": worst, "met": share >= args.min_share})
    print(f"batched on the device against video by video on the CPU: {same} of {total} video-splits agree "
          f"({share:.1%}, required {args.min_share:.0%}): {'met' if share >= args.min_share else 'MISSED'}")
    return share >= args.min_share


def target(args: argparse.Namespace) -> bool:
    """A timing of ``bench_adapt.py setting`` or ``bench_sweep.py`` against its target."""
    match = TIMINGS[args.what].search(args.output.read_text())
    if match is None:
        print(f"{args.output}: no {args.what} timing (did the benchmark finish?)")
        return False
    seconds = float(match.group(1))
    _write(args.json_out, {"what": args.what, "seconds": seconds, "target_seconds": args.seconds,
                           "met": seconds <= args.seconds})
    print(f"{args.what}: {seconds:.1f} s, target under {args.seconds:g} s: "
          f"{'met' if seconds <= args.seconds else 'MISSED'}")
    return seconds <= args.seconds


def _write(path: Path | None, figures: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="check", required=True)
    env = sub.add_parser("environment")
    env.add_argument("--device", default="cuda")
    found = sub.add_parser("imports")
    feats = sub.add_parser("features")
    feats.add_argument("cache", help="the cache extracted on the device")
    feats.add_argument("reference", help="the same videos extracted on the CPU")
    feats.add_argument("--precision", default="fp16", help="the precision the device's cache must record")
    feats.add_argument("--min-cosine", type=float, default=0.999, help="lowest cosine of a frame to its CPU twin")
    agree = sub.add_parser("agreement")
    agree.add_argument("output", type=Path, help="what bench_adapt.py batched printed")
    agree.add_argument("--min-share", type=float, default=0.95)
    timing = sub.add_parser("target")
    timing.add_argument("output", type=Path, help="what the benchmark printed")
    timing.add_argument("--what", choices=sorted(TIMINGS), required=True)
    timing.add_argument("--seconds", type=float, required=True)
    for each in (env, found, feats, agree, timing):
        each.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    checks = {"environment": environment, "imports": imports, "features": features, "agreement": agreement, "target": target}
    sys.exit(0 if checks[args.check](args) else 1)


if __name__ == "__main__":
    main()
