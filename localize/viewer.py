"""The viewer: one self-contained ``index.html`` of a vocabulary run, built from its saved outputs.

Per video: a timeline of the detections coloured by action (score on hover, a click plays the
segment when the source video is reachable), the frame-score curve of each detected action, the
captions along the time axis, and thumbnails (start, middle, end) of the best detections taken
with ffmpeg from the source video. The data travel as JSON inside the page and a script builds
one page of videos at a time, so a run of thousands of videos opens at once.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import quote

import numpy as np

from t3al.cache import CacheReader, VideoRecord, write_atomically
from t3al.evaluate.pages import bytes_uri, render
from t3al.evaluate.results import Curve, read_curve
from t3al.extract.ffmpeg_frames import ffmpeg_binary

CURVE_POINTS = 300  # points per curve in the page: enough for its shape, small for 1,000 videos
THUMBNAIL_WIDTH = 160
THUMBNAIL_TIMEOUT_S = 30
PAGE_SIZE = 20  # videos built per page of the viewer
LAST_FRAME_S = 0.05  # the end thumbnail is taken this much before a segment's end, inside the video


def _rounded(values: np.ndarray, digits: int = 3) -> list[float]:
    return [round(float(v), digits) for v in values]


def _curve_points(times: np.ndarray, values: np.ndarray) -> tuple[list[float], list[float]]:
    """At most CURVE_POINTS samples of a curve, evenly over its frames."""
    n = len(times)
    index = np.unique(np.linspace(0, n - 1, min(n, CURVE_POINTS)).round().astype(int)) if n else np.zeros(0, int)
    return _rounded(times[index]), _rounded(values[index], 4)


def caption_runs(record: VideoRecord, end: float) -> list[list]:
    """The captions as runs [start s, end s, text]: a caption holds until the next different one."""
    times = record.timestamps[record.caption_frames] if len(record.caption_frames) else np.zeros(0)
    runs: list[list] = []
    for time, text in zip(times, record.caption_texts):
        if runs and runs[-1][2] == text:
            continue
        if runs:
            runs[-1][1] = round(float(time), 3)
        runs.append([round(float(time), 3), round(float(end), 3), text])
    return runs


def thumbnail(source: Path, time: float) -> bytes:
    """One JPEG frame of ``source`` at ``time`` seconds, THUMBNAIL_WIDTH pixels wide (b"" if none)."""
    command = [ffmpeg_binary(), "-v", "error", "-nostdin", "-ss", f"{max(time, 0.0):.3f}", "-i", str(source),
               "-frames:v", "1", "-vf", f"scale={THUMBNAIL_WIDTH}:-2", "-q:v", "6", "-f", "image2pipe",
               "-c:v", "mjpeg", "pipe:1"]
    try:
        return subprocess.run(command, capture_output=True, timeout=THUMBNAIL_TIMEOUT_S, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return b""


def source_url(source: Path, page_dir: Path) -> str:
    """The relative URL of ``source`` from the page's folder, percent-encoded: a file name holding
    ``#``, ``?``, ``%`` or spaces is one path, not a path cut by a fragment or a query."""
    return quote(Path(os.path.relpath(source, page_dir)).as_posix())


def video_view(curve: Curve, record: VideoRecord, classes: Sequence[str], page_dir: Path,
               thumbnails: int, presence: Mapping[str, float] | None = None) -> dict:
    """What the viewer shows of one video: detections (best first, the first ``thumbnails`` with
    frames at start, middle and end), the curves, the captions and the source, when still there,
    and (open set) the presence of each action."""
    end = float(record.duration) if np.isfinite(record.duration) else float(curve.timestamps[-1])
    source = Path(record.source_path) if record.source_path else None
    reachable = source is not None and source.is_file()
    order = np.argsort(-curve.scores, kind="stable")
    detections = []
    for rank, i in enumerate(order):
        start, stop = (float(x) for x in curve.segments[i])
        frames = []
        if reachable and rank < thumbnails:
            shots = (thumbnail(source, t) for t in (start, (start + stop) / 2, max(start, stop - LAST_FRAME_S)))
            frames = [bytes_uri(shot, "image/jpeg") if shot else None for shot in shots]
        detections.append([round(start, 3), round(stop, 3), round(float(curve.scores[i]), 4),
                           classes.index(curve.labels[i]), frames])
    return {"id": record.name, "duration": round(end, 3),
            "source": source_url(source, page_dir) if reachable else None,
            "missing": None if reachable else (str(source) if source else "no source recorded"),
            "detections": detections,
            "curves": [[classes.index(label), *_curve_points(curve.timestamps, values)]
                       for label, values in curve.curves.items()],
            "captions": caption_runs(record, end), "n_captions": len(record.caption_texts),
            # unrounded, as the page compares them with the threshold as the rule did
            "presence": None if presence is None else [float(presence[c]) for c in classes]}


def collect_views(run_dir: Path, reader: CacheReader, classes: Sequence[str], videos: Sequence[str],
                  thumbnails: int, presences: Mapping[str, Mapping[str, float]] | None = None,
                  page_dir: Path | None = None) -> list[dict]:
    """The view of every localized video of a run (those with a saved curve in ``run_dir``), in the
    run's order, for a page in ``page_dir`` (default ``run_dir``); ``presences``: the open set's."""
    views = []
    for video in videos:
        record = reader.video(video)
        path = run_dir / "curves" / f"{record.video_id}.npz"
        if path.is_file():
            presence = None if presences is None else presences[record.name]
            views.append(video_view(read_curve(path), record, classes, page_dir or run_dir, thumbnails, presence))
    return views


def write_viewer(path: Path, views: list[dict], classes: Sequence[str], title: str, details: Sequence[str],
                 presence_threshold: float | None = None) -> Path:
    """Write the viewer page of ``views`` to ``path`` whole (everything inside the page; the video
    files it plays are reached by their relative paths); ``presence_threshold``: the open-set rule's.
    An OSError leaves ``path`` as it was."""
    data = {"classes": list(classes), "videos": views, "page_size": PAGE_SIZE, "threshold": presence_threshold}
    return write_atomically(path, render("viewer.html", "t3al.localize", title=title, details=list(details),
                                         data=data))
