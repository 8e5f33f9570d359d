"""Sweep speed: the rows of shipped sweeps (default Table 5 + Table 6) on a THUMOS14-sized cache.

    python benchmarks/bench_sweep.py [--tables table5 table6 --split 75_25 --jobs 2]
                                     [--split-index 0 ...] [--cache DIR] [--separate] [--device cuda]

Writes bench_adapt's 413-video random cache (or reuses --cache DIR, kept after the run), then
times the run of all rows together: what `t3al-sweep` runs, without writing files.
``--separate`` also times the same rows one run at a time (each row's own seconds), for
comparison: ``--tables methods --separate`` gives FreeZAD's cost next to T3AL_0's. ``--device``
adapts batched there (``t3al-sweep --device``).
"""
from __future__ import annotations

import argparse
import time

from bench_adapt import with_bench_cache

from t3al.adapt.engine.pipeline import run
from t3al.adapt.engine.spec import build_spec
from t3al.adapt.engine.sweep import load_sweep


def sweep_rows(tables: list[str]) -> dict:
    """The rows (settings) of the named sweeps, names prefixed by table."""
    return {f"{table}: {name}": settings for table in tables for name, settings in load_sweep(table).rows.items()}


def time_sweep(cache: str, args: argparse.Namespace) -> None:
    rows = sweep_rows(args.tables)
    spec = build_spec(cache, args.split, indices=args.indices or (), rows=rows, jobs=args.jobs, device=args.device)
    count = [0]
    start, cpu = time.perf_counter(), time.process_time()
    runs = run(spec, on_video=lambda n: count.__setitem__(0, count[0] + n))
    elapsed = time.perf_counter() - start
    where = f" --device {spec.execution.device}" if spec.execution.device else ""
    print(f"{len(rows)} rows x {len(spec.indices)} splits of {spec.setting}: {count[0]} video-rows in "
          f"{elapsed:.1f} s wall with --jobs {args.jobs}{where} "
          f"({elapsed / count[0] * args.jobs:.3f} core-s per video-row)"
          + _cpu(cpu, args.jobs))
    for name, result in runs.items():
        print(f"  {name:45s} avg mAP {result.document['mean']['avg']:.2f}")
    if args.separate:
        start, cpu = time.perf_counter(), time.process_time()
        for name, settings in rows.items():
            row_start, row_cpu = time.perf_counter(), time.process_time()
            run(build_spec(cache, args.split, indices=args.indices or (), rows={name: settings}, jobs=args.jobs,
                           device=args.device))
            print(f"  alone: {name:45s} {time.perf_counter() - row_start:8.1f} s wall" + _cpu(row_cpu, args.jobs))
        print(f"the same rows one run at a time: {time.perf_counter() - start:.1f} s wall" + _cpu(cpu, args.jobs))


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
