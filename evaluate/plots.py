"""Pictures of saved outputs (matplotlib, Agg): one video's curve and segments, AP per class of a split.

Plots draw what ``t3al-adapt`` saved (a ``results.Curve``, read from ``split_<i>/curves/<video>.npz``)
and never recompute anything.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .results import Curve  # noqa: E402

GT_COLOR, PRED_COLOR, CURVE_COLOR = "#2ca02c", "#ff7f0e", "#1f77b4"


def plot_video(curve: Curve, ground_truth: Sequence[Mapping], out: str | Path, duration: float | None = None,
               note: str = "") -> Path:
    """PNG of the similarity curve over time with ground-truth and predicted segments shaded.

    ``ground_truth`` holds this video's instances ``{"start", "end", "label"}`` (already restricted to
    the split's classes); the title names the true classes, the predicted (pseudo) label and ``note``
    (e.g. why this video was chosen).
    """
    out = Path(out)
    fig, (ax, track) = plt.subplots(2, 1, figsize=(10, 3.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for a in ground_truth:
        ax.axvspan(a["start"], a["end"], color=GT_COLOR, alpha=0.18, lw=0)
    for (start, end), label in zip(curve.segments, curve.labels):
        ax.axvspan(start, end, color=PRED_COLOR, alpha=0.25, lw=0)
    ax.plot(curve.timestamps, curve.similarity, color=CURVE_COLOR, lw=1.2, label=f"similarity to '{curve.pseudo_label}'")
    ax.set_ylabel("similarity")
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    track.broken_barh([(a["start"], a["end"] - a["start"]) for a in ground_truth], (1.1, 0.8), color=GT_COLOR)
    track.broken_barh([(s, e - s) for s, e in curve.segments], (0.1, 0.8), color=PRED_COLOR)
    track.set_yticks([0.5, 1.5], ["predicted", "ground truth"], fontsize=8)
    track.set_ylim(0, 2)
    track.set_xlabel("time (s)")
    end = duration or max([curve.timestamps[-1] if len(curve.timestamps) else 0.0]
                          + [a["end"] for a in ground_truth] + [float(e) for _, e in curve.segments])
    track.set_xlim(0, end if end > 0 else 1.0)
    truth = ", ".join(sorted({a["label"] for a in ground_truth})) or "none"
    ax.set_title(f"{curve.video}   true: {truth}   predicted: {curve.pseudo_label}   "
                 f"({len(curve.segments)} segments{'; ' + note if note else ''})", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def plot_class_ap(per_class: Mapping[str, Sequence[float]], tious: Sequence[float], out: str | Path,
                  title: str = "") -> Path:
    """Horizontal bar chart of each class's AP (%), averaged over the thresholds, with AP@first tIoU."""
    out = Path(out)
    names = list(per_class)
    avg = np.array([float(np.mean(per_class[c])) for c in names])
    first = np.array([float(per_class[c][0]) for c in names])
    order = np.argsort(avg)
    height = 1.8 + 0.3 * len(names)
    fig, ax = plt.subplots(figsize=(6, height))
    y = np.arange(len(names))
    ax.barh(y + 0.2, first[order], height=0.4, color="#aec7e8", label=f"AP@{tious[0]:g}")
    ax.barh(y - 0.2, avg[order], height=0.4, color=CURVE_COLOR, label="Avg AP")
    ax.set_yticks(y, [names[i] for i in order], fontsize=8)
    ax.set_xlabel("AP (%)")
    ax.set_xlim(0, max(1.0, float(first.max(initial=0)), float(avg.max(initial=0))) * 1.1)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
