"""Load time of the t3al-localize viewer with many videos, in headless Chromium.

Writes viewer pages of N synthetic videos (detections, a 300-point curve, caption runs, and with
--thumbnails three JPEG frames for the three best detections of each video) and opens each in
headless Chromium: prints the page size, the time to write it, the page's own time from
navigation to its first page of videos built (``data-ready-ms``), and the wall time of the
browser process against that of an empty page (browser start-up).

    python benchmarks/bench_viewer.py --videos 1000
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from t3al.evaluate.pages import bytes_uri
from t3al.extract.ffmpeg_frames import ffmpeg_binary
from t3al.localize.viewer import CURVE_POINTS, write_viewer

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CLASSES = ["pole vault", "high jump", "long jump", "shot put"]


def test_frame() -> str:
    """One 160 x 120 JPEG of ffmpeg's test pattern, as the viewer embeds a thumbnail."""
    command = [ffmpeg_binary(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120", "-frames:v", "1",
               "-q:v", "6", "-f", "image2pipe", "-c:v", "mjpeg", "pipe:1"]
    return bytes_uri(subprocess.run(command, capture_output=True, check=True).stdout, "image/jpeg")


def synthetic_views(n: int, thumbnails: bool, seed: int = 0) -> list[dict]:
    """``n`` videos of 60-300 s with 2-8 detections, one curve and a caption every 3-6 s."""
    rng = np.random.default_rng(seed)
    frame = test_frame() if thumbnails else None
    views = []
    for i in range(n):
        duration = float(rng.uniform(60, 300))
        starts = np.sort(rng.uniform(0, duration - 10, rng.integers(2, 9)))
        detections = [[round(s, 3), round(s + float(rng.uniform(2, 10)), 3), round(float(rng.uniform()), 4),
                       int(rng.integers(len(CLASSES))), [frame] * 3 if thumbnails and rank < 3 else []]
                      for rank, s in enumerate(starts)]
        times = np.linspace(0, duration, CURVE_POINTS)
        curve = [int(rng.integers(len(CLASSES))), np.round(times, 3).tolist(),
                 np.round(rng.uniform(size=CURVE_POINTS), 4).tolist()]
        cuts = np.cumsum(rng.uniform(3, 6, int(duration // 3)))
        cuts = cuts[cuts < duration]
        captions = [[round(a, 3), round(b, 3), f"a person doing something {j}"]
                    for j, (a, b) in enumerate(zip(cuts[:-1], cuts[1:]))]
        views.append({"id": f"video_{i:05d}", "duration": round(duration, 3), "source": None,
                      "missing": "/data/videos/video.mp4", "detections": detections, "curves": [curve],
                      "captions": captions, "n_captions": len(captions)})
    return views


def open_page(chromium: str, page: Path) -> tuple[float, str]:
    """Wall seconds of a headless Chromium dumping ``page``'s DOM, and the DOM's root tag."""
    with tempfile.TemporaryDirectory() as profile:
        started = time.perf_counter()
        dom = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()],
                             capture_output=True, text=True, check=True, timeout=600).stdout
        return time.perf_counter() - started, re.search(r"<html[^>]*>", dom).group(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as folder:
        empty = Path(folder) / "empty.html"
        empty.write_text("")  # an empty document: the browser's own start-up
        baseline = min(open_page(chromium, empty)[0] for _ in range(args.repeats))
        print(f"empty page: browser wall {baseline:.2f} s (start-up, best of {args.repeats})")
        for thumbnails in (False, True):
            started = time.perf_counter()
            page = write_viewer(Path(folder) / f"viewer_{thumbnails}.html", synthetic_views(args.videos, thumbnails),
                                CLASSES, "bench", [])
            written = time.perf_counter() - started
            runs = [open_page(chromium, page) for _ in range(args.repeats)]
            ready = [float(re.search(r'data-ready-ms="([\d.]+)"', root).group(1)) for _, root in runs]
            assert all("data-errors" not in root for _, root in runs)
            print(f"{args.videos} videos, thumbnails {'on (3 detections x 3 frames)' if thumbnails else 'off'}: "
                  f"page {page.stat().st_size / 1e6:.1f} MB written in {written:.2f} s; first page of videos "
                  f"built {min(ready) / 1000:.2f} s after navigation (best of {args.repeats}; all: "
                  f"{', '.join(f'{r / 1000:.2f}' for r in ready)}); browser wall "
                  f"{min(w for w, _ in runs):.2f} s")


if __name__ == "__main__":
    main()
