"""Online against offline localization on a cache: mAP, emission delay and stage two's time.

For each zero-shot setting, runs T3AL and T3AL_0 with the per-video reset protocol (offline: the
whole video first) and with the online protocol (docs/online.md), all ten splits, and prints one
Markdown table: average mAP (mean ± std over splits), mAP@0.5, detections, the emission delay
(emitted at minus segment end, seconds: median and 95th percentile over every detection of the ten
splits) and the seconds each run took.

    python benchmarks/bench_online.py --cache demo_out/cache --jobs 2
    python benchmarks/bench_online.py --cache demo_out/cache --online chunk_steps=10 --online online_window=300
"""
from __future__ import annotations

import argparse
import time

from t3al.adapt.engine.pipeline import run
from t3al.adapt.engine.spec import build_spec

METHODS = {"T3AL": {}, "T3AL_0": {"steps": 0, "chunk_steps": 0, "suppression": False}}


def _value(text: str):
    """A setting's value from the command line: an integer, a number, true/false, or a name."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text, text)


def _row(setting: str, method: str, protocol: str, document: dict, seconds: float) -> str:
    mean, std = document["mean"], document["std"]
    half = document["tiou"].index(0.5) if 0.5 in document["tiou"] else 0
    online = document.get("online")
    delay = ("-", "-") if not online or online["delay_median_s"] is None else (
        f"{online['delay_median_s']:.2f}", f"{online['delay_p95_s']:.2f}")
    detections = sum(s["n_detections"] for s in document["splits"])
    return (f"| {setting} | {method} | {protocol} | {mean['avg']:.1f} ± {std['avg']:.1f} | {mean['map'][half]:.1f} | "
            f"{detections} | {delay[0]} | {delay[1]} | {seconds:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--settings", nargs="+", default=["75_25", "50_50"])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--online", action="append", default=[], metavar="NAME=VALUE",
                        help="An online setting for the online rows (repeat), e.g. chunk=60.")
    args = parser.parse_args()
    extra = {name: _value(value) for name, value in (item.split("=", 1) for item in args.online)}
    print("| setting | method | protocol | avg mAP | mAP@0.5 | detections | delay median (s) | delay p95 (s) | "
          "time (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for setting in args.settings:
        for method, settings in METHODS.items():
            for protocol in ("reset", "online"):
                options = {**settings, "protocol": protocol, **(extra if protocol == "online" else {})}
                spec = build_spec(args.cache, setting, options=options, jobs=args.jobs)
                started = time.perf_counter()
                outcome = next(iter(run(spec).values()))
                print(_row(setting, method, protocol, outcome.document, time.perf_counter() - started), flush=True)


if __name__ == "__main__":
    main()
