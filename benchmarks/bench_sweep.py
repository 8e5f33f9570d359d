"""Sweep speed: the rows of shipped sweeps (default Table 5 + Table 6) on a THUMOS14-sized cache.

    python benchmarks/bench_sweep.py [--tables table5 table6 --split 75_25 --jobs 2]
                                     [--split-index 0 ...] [--cache DIR] [--separate] [--device cuda]

Writes bench_adapt's 413-video random cache (or reuses --cache DIR, kept after the run), then
times `run_settings` over all rows together: what `t3al-sweep` runs, without writing files.
``--separate`` also times the same rows one `run_setting` at a time, for comparison; ``--device``
adapts batched there (``t3al-sweep --device``).
"""
from __future__ import annotations

import argparse
import time

from bench_adapt import with_bench_cache

from t3al.adapt.cli import resolve_config
from t3al.adapt.pipeline import run_setting, run_settings
from t3al.adapt.sweep import load_sweep, resolve_rows
from t3al.manifests import setting_name


def sweep_rows(tables: list[str]) -> dict:
    """The rows of the named sweeps, resolved with the THUMOS14 preset, names prefixed by table."""
    rows = {}
    for table in tables:
        configs = resolve_rows(load_sweep(table), lambda values: resolve_config(None, None, "thumos14", values), {})
        rows.update({f"{table}: {name}": config for name, config in configs.items()})
    return rows


def time_sweep(cache: str, args: argparse.Namespace) -> None:
    rows = sweep_rows(args.tables)
    indices = args.indices or None
    count = [0]
    start, cpu = time.perf_counter(), time.process_time()
    runs = run_settings(cache, args.split, rows, indices=indices, jobs=args.jobs,
                        on_video=lambda n: count.__setitem__(0, count[0] + n), device=args.device)
    elapsed = time.perf_counter() - start
    splits = len(next(iter(runs.values())).document["splits"])
    where = f" --device {args.device}" if args.device else ""
    print(f"{len(rows)} rows x {splits} splits of {setting_name(args.split)}: {count[0]} video-rows in "
          f"{elapsed:.1f} s wall with --jobs {args.jobs}{where} "
          f"({elapsed / count[0] * args.jobs:.3f} core-s per video-row)"
          + _cpu(cpu, args.jobs))
    for name, run in runs.items():
        print(f"  {name:45s} avg mAP {run.document['mean']['avg']:.2f}")
    if args.separate:
        start, cpu = time.perf_counter(), time.process_time()
        for config in rows.values():
            run_setting(cache, args.split, config, indices=indices, jobs=args.jobs)
        print(f"the same rows one run_setting at a time: {time.perf_counter() - start:.1f} s wall" + _cpu(cpu, args.jobs))


def _cpu(start: float, jobs: int) -> str:
    """CPU seconds of this process: all the work with --jobs 1, so other load on the machine barely counts."""
    return f"; {time.process_time() - start:.1f} CPU-s" if jobs == 1 else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="+", default=["table5", "table6"])
    parser.add_argument("--split", default="75_25")
    parser.add_argument("--split-index", dest="indices", type=int, action="append")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", help="existing bench cache to reuse, or where to write and keep it")
    parser.add_argument("--separate", action="store_true")
    parser.add_argument("--device", help="adapt batched on this device (cpu, cuda); default: video by video")
    parser.add_argument("--tmp", default=None, help="folder for the temporary cache (about 5 GB)")
    args = parser.parse_args()
    with_bench_cache(args, lambda cache: time_sweep(cache, args))


if __name__ == "__main__":
    main()
