"""One self-contained HTML report of a ``t3al-adapt`` output folder (images embedded, PNGs kept aside).

Layout read (see the brief of t3al-adapt): ``OUT/results.json``, optional ``OUT/config.json`` and
``OUT/split_<i>/curves/<video>.npz``. Written: ``OUT/report/index.html`` and ``OUT/report/img/*.png``.
"""
from __future__ import annotations

import html
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from tqdm import tqdm

from t3al.cache import write_atomically, write_problem
from t3al.manifests import Manifest, read_text

from .detection import evaluate_detections
from .pages import data_uri, render
from .plots import plot_class_ap, plot_video
from .results import Detections, read_curve
from .report import table_cells
from .tables import EvaluationError, GroundTruth

SOURCE = re.compile(r'name="t3al-report-of" content="([^"]*)"')  # the folder a report shows (its meta tag)


def _image(path: Path, report_dir: Path, alt: str) -> dict[str, str]:
    """A PNG embedded in the page, linking its file."""
    return {"link": path.relative_to(report_dir).as_posix(), "alt": alt, "src": data_uri(path, "image/png")}


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
                   setting: str, n_plots: int, videos: Sequence[str]) -> dict:
    """What the page shows of one split: its classes, table, AP bars and chosen videos' plots."""
    index = split["index"]
    img = report_dir / "img"
    bars = plot_class_ap(split["per_class"], tious, img / f"split_{index}_ap.png", f"split {index}: AP per class")
    truth: dict[str, list] = {}
    ground_truth = None
    if manifest is not None:
        evaluation = manifest.evaluation_set(setting, index)
        ground_truth = GroundTruth.from_records(evaluation.annotations, f"split {index}")
        for a in evaluation.annotations:
            truth.setdefault(a["video"], []).append(a)
    curves, rule = _chosen_curves(out_dir, index, tious, ground_truth, n_plots, videos)
    plots = []
    for path, why in tqdm(curves, desc=f"plots split {index}", leave=False, disable=len(curves) < 20):
        curve = read_curve(path)
        duration = manifest.videos.get(curve.video, {}).get("duration") if manifest else None
        png = plot_video(curve, truth.get(curve.video, []), img / f"split_{index}" / f"{curve.video}.png", duration,
                         why)
        plots.append(_image(png, report_dir, curve.video))
    return {"index": index, "classes": [str(c) for c in split["classes"]],
            "n_videos": split.get("n_videos", "?"), "n_detections": split.get("n_detections", "?"),
            "table": table_cells({f"split {index}": {"tiou": tious, "map": split["map"], "avg": split["avg"]}}),
            "bars": _image(bars, report_dir, f"AP per class, split {index}"), "videos": plots, "rule": rule}


def _reports_other_folder(html_path: Path, out_dir: Path) -> bool:
    """Whether the file at ``html_path`` is something other than a report of ``out_dir``."""
    if not html_path.is_file():
        return False
    shown = SOURCE.search(html_path.read_text(errors="replace"))
    return shown is None or html.unescape(shown.group(1)) != str(out_dir.resolve())


def write_report(out_dir: str | Path, manifest: Manifest | None = None, n_plots: int = 8,
                 html_path: str | Path | None = None, videos: Sequence[str] = (), overwrite: bool = False) -> Path:
    """Write the HTML report of ``out_dir``: table, AP per class per split, and per split ``n_plots``
    videos spread over the ranking by per-video AP (or the listed ``videos``). A file at
    ``html_path`` reporting another folder is replaced only with ``overwrite``."""
    out_dir = Path(out_dir)
    document = _load_results(out_dir)
    html_path = Path(html_path) if html_path else out_dir / "report" / "index.html"
    if _reports_other_folder(html_path, out_dir) and not overwrite:
        raise EvaluationError(f"{html_path} holds another report; choose another --html, or pass --overwrite "
                              "to replace it")
    report_dir = html_path.parent
    made = [folder for folder in (report_dir, report_dir / "img") if not folder.exists()]
    try:
        report_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=report_dir).close()  # a folder that cannot take the report is found before any plot
        write_atomically(html_path, _page(out_dir, document, report_dir, manifest, n_plots, videos))
    except BaseException as err:
        for folder in reversed(made):
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(err, OSError):
            raise EvaluationError(f"{html_path}: cannot write the report ({write_problem(err)}); "
                                  "nothing was left behind") from None
        raise
    return html_path


def _page(out_dir: Path, document: dict, report_dir: Path, manifest: Manifest | None, n_plots: int,
          videos: Sequence[str]) -> str:
    """The report's HTML, its PNGs written under ``report_dir/img``."""
    tious = document["tiou"]
    setting = document.get("setting", "")
    rows = {f"split {s['index']}": {"tiou": tious, "map": s["map"], "avg": s["avg"]} for s in document["splits"]}
    rows["mean ± std"] = document
    config = out_dir / "config.json"
    return render(
        "report.html", source=str(out_dir.resolve()), name=out_dir.name, setting=str(setting),
        summary=table_cells(rows), has_manifest=manifest is not None,
        splits=[_split_section(out_dir, report_dir, s, tious, manifest, setting, n_plots, videos)
                for s in document["splits"]],
        config=config.read_text(errors="replace") if config.is_file() else None)
