"""One self-contained HTML report of a ``t3al-adapt`` output folder (images embedded, PNGs kept aside).

Layout read (see the brief of t3al-adapt): ``OUT/results.json``, optional ``OUT/config.json`` and
``OUT/split_<i>/curves/<video>.npz``. Written: ``OUT/report/index.html`` and ``OUT/report/img/*.png``.
"""
from __future__ import annotations

import base64
import contextlib
import html
import json
import os
import shutil
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from tqdm import tqdm

from t3al.manifests import Manifest, read_text

from .detection import evaluate_detections
from .plots import plot_class_ap, plot_video, read_curve
from .report import format_table
from .tables import Detections, EvaluationError, GroundTruth

_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee;margin:4px 0}
.note{color:#666;font-size:90%}pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:80%}"""


def _image(path: Path, report_dir: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    link = path.relative_to(report_dir).as_posix()
    return f'<a href="{html.escape(link)}"><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></a>'


def _load_results(out_dir: Path) -> dict:
    path = out_dir / "results.json"
    if not path.is_file():
        raise EvaluationError(f"{path}: not found (is {out_dir} a t3al-adapt output folder?)")
    try:
        document = json.loads(read_text(path, EvaluationError))
    except json.JSONDecodeError as error:
        raise EvaluationError(f"{path}: invalid JSON ({error})") from None
    if not isinstance(document, dict) or not {"tiou", "splits", "mean"} <= set(document):
        raise EvaluationError(f"{path}: needs 'tiou', 'splits' and 'mean'")
    _check_splits(document["splits"], path)
    return document


def _check_splits(splits: object, path: Path) -> None:
    """Split entries the report can trust: an integer index (it names files), class lists and AP tables."""
    if not isinstance(splits, list) or not all(isinstance(s, dict) for s in splits):
        raise EvaluationError(f"{path}: 'splits' must be a list of objects")
    for position, split in enumerate(splits):
        index = split.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise EvaluationError(f"{path}: splits[{position}]: split index must be a non-negative integer, "
                                  f"got {index!r}")
        if not isinstance(split.get("classes"), list) or not isinstance(split.get("per_class"), dict):
            raise EvaluationError(f"{path}: splits[{position}] needs a 'classes' list and a 'per_class' object")


def video_ap(detections: Detections, ground_truth: GroundTruth, tious: Sequence[float]) -> dict[str, float]:
    """Each ground-truth video's AP (%): the mean over ``tious`` and over the video's own true classes
    of the AP of its detections of those classes."""
    scores = {}
    for video in sorted(set(ground_truth.video.tolist())):
        truth = ground_truth.select(ground_truth.video == video)
        classes = sorted(set(truth.label.tolist()))
        mine = detections.select((detections.video == video) & np.isin(detections.label, classes))
        scores[video] = evaluate_detections(mine, truth, classes, tious).avg
    return scores


def pick_videos(ap: Mapping[str, float], n: int) -> list[tuple[str, str]]:
    """``n`` videos spread evenly over the ranking by AP, best first, each with its rank as a word:
    one gives the median, two the best and worst, three best, median and worst, and so on."""
    ranked = sorted(ap, key=lambda v: (-ap[v], v))
    n = min(n, len(ranked))
    if n <= 0:
        return []
    if n == 1:
        positions = [(len(ranked) - 1) // 2]
    else:
        positions = sorted({round(i * (len(ranked) - 1) / (n - 1)) for i in range(n)})
    names = {0: "best", len(ranked) - 1: "worst", (len(ranked) - 1) // 2: "median"}
    return [(ranked[p], names.get(p, f"rank {p + 1} of {len(ranked)}")) for p in positions]


def _chosen_curves(out_dir: Path, index: int, tious: Sequence[float], truth: GroundTruth | None, n_plots: int,
                   videos: Sequence[str]) -> tuple[list[tuple[Path, str]], str]:
    """The curves a split plots and the rule that chose them (for the report)."""
    folder = out_dir / f"split_{index}" / "curves"
    if videos:
        chosen = [(folder / f"{v}.npz", "listed") for v in videos if (folder / f"{v}.npz").is_file()]
        return chosen, "the videos listed with --plot-videos"
    detections_file = out_dir / f"split_{index}" / "detections.json"
    if truth is None or not detections_file.is_file():
        return ([(p, "") for p in sorted(folder.glob("*.npz"))[:max(n_plots, 0)]],
                "the first videos by name (no manifest: per-video AP unknown)")
    ap = video_ap(Detections.read(detections_file), truth, tious)
    chosen = [(folder / f"{v}.npz", f"{rank}, AP {ap[v]:.1f}") for v, rank in pick_videos(ap, n_plots)
              if (folder / f"{v}.npz").is_file()]
    return chosen, "spread over the ranking by per-video AP (best, median, worst, ...)"


def _split_section(out_dir: Path, report_dir: Path, split: dict, tious: list, manifest: Manifest | None,
                   setting: str, n_plots: int, videos: Sequence[str]) -> str:
    index = split["index"]
    img = report_dir / "img"
    parts = [f'<h2 id="split-{index}">Split {index}</h2>',
             f"<p>Unseen classes: {html.escape(', '.join(map(str, split['classes'])))}. "
             f"{html.escape(str(split.get('n_videos', '?')))} videos, "
             f"{html.escape(str(split.get('n_detections', '?')))} detections.</p>",
             format_table({f"split {index}": {"tiou": tious, "map": split["map"], "avg": split["avg"]}}, "html")]
    bars = plot_class_ap(split["per_class"], tious, img / f"split_{index}_ap.png", f"split {index}: AP per class")
    parts.append(_image(bars, report_dir, f"AP per class, split {index}"))
    truth: dict[str, list] = {}
    ground_truth = None
    if manifest is not None:
        evaluation = manifest.evaluation_set(setting, index)
        ground_truth = GroundTruth.from_records(evaluation.annotations, f"split {index}")
        for a in evaluation.annotations:
            truth.setdefault(a["video"], []).append(a)
    curves, rule = _chosen_curves(out_dir, index, tious, ground_truth, n_plots, videos)
    if curves:
        parts.append(f'<p class="note">Videos plotted: {html.escape(rule)}.</p>')
        if manifest is None:
            parts.append('<p class="note">No manifest given: ground-truth segments are not shown.</p>')
    for path, why in tqdm(curves, desc=f"plots split {index}", leave=False, disable=len(curves) < 20):
        curve = read_curve(path)
        duration = manifest.videos.get(curve.video, {}).get("duration") if manifest else None
        png = plot_video(curve, truth.get(curve.video, []), img / f"split_{index}" / f"{curve.video}.png", duration,
                         why)
        parts.append(_image(png, report_dir, curve.video))
    return "\n".join(parts)


def write_report(out_dir: str | Path, manifest: Manifest | None = None, n_plots: int = 8,
                 html_path: str | Path | None = None, videos: Sequence[str] = (), overwrite: bool = False) -> Path:
    """Write the HTML report of ``out_dir``: table, AP per class per split, and per split ``n_plots``
    videos spread over the ranking by per-video AP (or the listed ``videos``). A file at
    ``html_path`` reporting another folder is replaced only with ``overwrite``."""
    out_dir = Path(out_dir)
    document = _load_results(out_dir)
    html_path = Path(html_path) if html_path else out_dir / "report" / "index.html"
    source = f'<meta name="t3al-report-of" content="{html.escape(str(out_dir.resolve()))}">'
    if html_path.is_file() and source not in html_path.read_text(errors="replace") and not overwrite:
        raise EvaluationError(f"{html_path} holds another report; choose another --html, or pass --overwrite "
                              "to replace it")
    report_dir = html_path.parent
    made = [folder for folder in (report_dir, report_dir / "img") if not folder.exists()]
    temporary = html_path.with_name(f".{html_path.name}.{os.getpid()}.tmp")
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        temporary.write_text("")  # a folder that cannot take the report is found before any plot
        page = _page(out_dir, document, report_dir, manifest, n_plots, videos, source)
        temporary.write_text(page, encoding="utf-8")
        os.replace(temporary, html_path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        for folder in reversed(made):
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(err, OSError):
            raise EvaluationError(f"{html_path}: cannot write the report ({err.strerror or err}); "
                                  "nothing was left behind") from None
        raise
    return html_path


def _page(out_dir: Path, document: dict, report_dir: Path, manifest: Manifest | None, n_plots: int,
          videos: Sequence[str], source: str) -> str:
    """The report's HTML, its PNGs written under ``report_dir/img``."""
    tious = document["tiou"]
    setting = document.get("setting", "")
    rows = {f"split {s['index']}": {"tiou": tious, "map": s["map"], "avg": s["avg"]} for s in document["splits"]}
    rows["mean ± std"] = document
    toc = " · ".join(f'<a href="#split-{s["index"]}">split {s["index"]}</a>' for s in document["splits"])
    config = out_dir / "config.json"
    sections = [_split_section(out_dir, report_dir, s, tious, manifest, setting, n_plots, videos)
                for s in document["splits"]]
    body = [f"<h1>t3al report: {html.escape(out_dir.name)} ({html.escape(setting)})</h1>",
            "<p>mAP (%) per tIoU threshold; mean ± sample standard deviation over the splits. "
            "Per-video plots: similarity to the pseudo-label over time, ground truth (green) and "
            "predicted segments (orange).</p>",
            format_table(rows, "html"), f"<p>{toc}</p>", *sections]
    if config.is_file():
        body.append(f"<h2>Configuration</h2><pre>{html.escape(config.read_text(errors='replace'))}</pre>")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">{source}<title>t3al report</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
