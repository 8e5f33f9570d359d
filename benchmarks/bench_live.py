"""Real-time factor of ``t3al-localize --live`` on this machine with the demo's tiny CoCa.

Makes a 320x240 H.264 copy of a generated demo video (20 s, 30 fps), then runs the live path
(``localize_live``: ffmpeg decoding, frame features, captions, causal T3AL, detections.jsonl, the
cache and the outputs) on it once per caption rate, with the frames available as fast as ffmpeg
reads them, and prints seconds of stream per second of wall time (the real-time factor: at 1 or
more the path keeps up with the stream at its frame rate; the model's loading left out) and the
CPU seconds it used.

    python benchmarks/bench_live.py                      # caption rates 0 and 1 per second
    python benchmarks/bench_live.py --caption-fps 0 1 10
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from t3al.demo.model import CHECKPOINT, MODEL_NAME
from t3al.demo.world import generate_world
from t3al.extract.ffmpeg_frames import ffmpeg_binary
from t3al.localize.live import localize_live


def stream_file(folder: Path) -> Path:
    """A 20 s, 30 fps demo video scaled to 320x240 (H.264), as a camera might send it."""
    generate_world(folder / "world", 7, 2, 2, (20.0, 20.0))
    out = folder / "stream_320x240.mp4"
    subprocess.run([ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-i",
                    str(folder / "world" / "videos" / "world_7_000.mp4"), "-vf", "scale=320:240", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-y", str(out)], check=True)
    return out


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (ffmpeg)."""
    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caption-fps", type=float, nargs="+", default=[0.0, 1.0])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="t3al-bench-live-") as folder:
        folder = Path(folder)
        source = stream_file(folder)
        print(f"stream {source.name}; load average {os.getloadavg()[0]:.1f} at the start")
        for rate in args.caption_fps:
            options = {"suppression": rate > 0}
            started, cpu = time.perf_counter(), cpu_seconds()
            run, _ = localize_live(str(source), ["BallBounce", "SquareSpin"], folder / f"cache_{rate:g}",
                                   folder / f"out_{rate:g}", options,
                                   preset="thumos14", config_file=None, seed=0, model_name=MODEL_NAME,
                                   pretrained=str(CHECKPOINT), model_configs=(), extract_device="cpu",
                                   caption_fps=rate, overwrite=False, progress=False)
            wall = time.perf_counter() - started
            print(f"captions {rate:g}/s: {run.stream_s:.1f} s of stream ({run.frames} frames) in {run.wall_s:.1f} s "
                  f"from the first frame ({wall:.1f} s with the model's loading): real-time factor "
                  f"{run.stream_s / run.wall_s:.2f}, {cpu_seconds() - cpu:.1f} CPU s, "
                  f"{run.detections} detection(s); load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
