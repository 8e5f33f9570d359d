"""One self-contained HTML report of a ``t3al-adapt`` output folder (images embedded, PNGs kept aside).

Layout read (see the brief of t3al-adapt): ``OUT/results.json``, optional ``OUT/config.json`` and
``OUT/split_<i>/curves/<video>.npz``. Written: ``OUT/report/index.html`` and ``OUT/report/img/*.png``.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from tqdm import tqdm

from t3al.manifests import Manifest

from .plots import plot_class_ap, plot_video, read_curve
from .report import format_table
from .tables import EvaluationError

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
    try:
        document = json.loads(path.read_text())
    except OSError:
        raise EvaluationError(f"{path}: not found (is {out_dir} a t3al-adapt output folder?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
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


def _split_section(out_dir: Path, report_dir: Path, split: dict, tious: list, manifest: Manifest | None,
                   setting: str, n_plots: int) -> str:
    index = split["index"]
    img = report_dir / "img"
    parts = [f'<h2 id="split-{index}">Split {index}</h2>',
             f"<p>Unseen classes: {html.escape(', '.join(map(str, split['classes'])))}. "
             f"{html.escape(str(split.get('n_videos', '?')))} videos, "
             f"{html.escape(str(split.get('n_detections', '?')))} detections.</p>",
             format_table({f"split {index}": {"tiou": tious, "map": split["map"], "avg": split["avg"]}}, "html")]
    bars = plot_class_ap(split["per_class"], tious, img / f"split_{index}_ap.png", f"split {index}: AP per class")
    parts.append(_image(bars, report_dir, f"AP per class, split {index}"))
    curves = sorted((out_dir / f"split_{index}" / "curves").glob("*.npz"))[:max(n_plots, 0)]
    truth: dict[str, list] = {}
    if manifest is not None:
        for a in manifest.evaluation_set(setting, index).annotations:
            truth.setdefault(a["video"], []).append(a)
    elif curves:
        parts.append('<p class="note">No manifest given: ground-truth segments are not shown.</p>')
    for path in tqdm(curves, desc=f"plots split {index}", leave=False, disable=len(curves) < 20):
        curve = read_curve(path)
        duration = manifest.videos.get(curve.video, {}).get("duration") if manifest else None
        png = plot_video(curve, truth.get(curve.video, []), img / f"split_{index}" / f"{curve.video}.png", duration)
        parts.append(_image(png, report_dir, curve.video))
    return "\n".join(parts)


def write_report(out_dir: str | Path, manifest: Manifest | None = None, n_plots: int = 8,
                 html_path: str | Path | None = None) -> Path:
    """Write the HTML report of ``out_dir`` (table, AP per class per split, ``n_plots`` videos per split)."""
    out_dir = Path(out_dir)
    document = _load_results(out_dir)
    html_path = Path(html_path) if html_path else out_dir / "report" / "index.html"
    report_dir = html_path.parent
    report_dir.mkdir(parents=True, exist_ok=True)
    tious = document["tiou"]
    setting = document.get("setting", "")
    rows = {f"split {s['index']}": {"tiou": tious, "map": s["map"], "avg": s["avg"]} for s in document["splits"]}
    rows["mean ± std"] = document
    toc = " · ".join(f'<a href="#split-{s["index"]}">split {s["index"]}</a>' for s in document["splits"])
    config = out_dir / "config.json"
    sections = [_split_section(out_dir, report_dir, s, tious, manifest, setting, n_plots) for s in document["splits"]]
    body = [f"<h1>t3al report: {html.escape(out_dir.name)} ({html.escape(setting)})</h1>",
            "<p>mAP (%) per tIoU threshold; mean ± sample standard deviation over the splits. "
            "Per-video plots: similarity to the pseudo-label over time, ground truth (green) and "
            "predicted segments (orange).</p>",
            format_table(rows, "html"), f"<p>{toc}</p>", *sections]
    if config.is_file():
        body.append(f"<h2>Configuration</h2><pre>{html.escape(config.read_text(errors='replace'))}</pre>")
    html_path.write_text("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>t3al report</title>"
                         f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    return html_path
