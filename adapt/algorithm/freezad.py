"""FreeZAD's segment scores and AdaZAD's positive samples (docs/freezad.md), as pure functions.

A segment ``(first, last)`` covers frames first..last-1 (the end frame excluded, as everywhere in
stage two); ``h`` is the raw curve exp(s) * cos(F_i, e), neither smoothed nor normalised.
"""
from __future__ import annotations

import numpy as np
import torch

from .ops import candidates, pick_samples

OUTER = 0.25  # each outer window is this fraction of the segment's length
OUTER_WEIGHT = 0.2


def log_weights(n: int) -> np.ndarray:
    """w_i = (1 / ln(i + 1)) / sum_k (1 / ln(k + 1)) for i = 1..n: largest first, summing to 1."""
    raw = 1.0 / np.log(np.arange(2, n + 2, dtype=np.float64))
    return raw / raw.sum() if n else raw


def outer_windows(first: int, last: int, n_frames: int) -> tuple[slice, slice]:
    """The frames just before ``first`` and from ``last`` on, each a quarter of the segment's
    length L = last - first, clipped to the video (``int`` truncates toward zero, as in the public code)."""
    length = last - first
    return (slice(max(int(first - OUTER * length), 0), first),
            slice(last, min(int(last + OUTER * length), n_frames)))


def logoic(h: np.ndarray, first: int, last: int) -> float:
    """mean + max of the curve inside, minus 0.2 x the log-weighted curve of the outer windows,
    whose largest weights sit next to the segment on both sides."""
    inner = h[first:last]
    left, right = (h[window] for window in outer_windows(first, last, len(h)))
    outer = float(left @ log_weights(len(left))[::-1]) + float(right @ log_weights(len(right)))
    return float(inner.mean() + inner.max()) - OUTER_WEIGHT * outer


def actionness(residual: torch.Tensor) -> float:
    """sigmoid of the mean over the E dimensions of the FFT power of F over time; by Parseval
    this is sigmoid((L / E) * sum_t |F_t|^2), computed in float64 as the public code does."""
    rows = residual.double()
    length, width = rows.shape
    return float(torch.sigmoid(length / width * (rows * rows).sum()))


def freezad_scores(h: torch.Tensor, residual: torch.Tensor, segments: list[tuple[int, int]]) -> list[float]:
    """LogOIC x actionness of every segment; ``residual`` is F (N x E) before normalisation."""
    curve = h.double().numpy()
    return [logoic(curve, first, last) * actionness(residual[first:last]) for first, last in segments]


def peak_window(sim: torch.Tensor, half_width: int) -> tuple[torch.Tensor, int]:
    """Frames argmax - half_width ... argmax + half_width of the curve, clipped to the video,
    and the argmax (the first one when tied)."""
    peak = int(torch.argmax(sim))
    return torch.arange(max(peak - half_width, 0), min(peak + half_width, sim.numel() - 1) + 1), peak


def peak_positives(sim: torch.Tensor, k: int, half_width: int, draw: bool,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """K positives from the window around the curve's peak, in frame order: drawn uniformly
    without replacement (``draw``), else the K nearest the peak, ties to the earlier frame.
    A window shorter than K is repeated as short candidate lists are."""
    window, peak = peak_window(sim, half_width)
    if len(window) < k:
        return window.repeat_interleave(k // len(window) + 1)[:k]
    if draw:
        chosen = window[torch.randperm(len(window), generator=generator)[:k]]
    else:
        distance = (window - peak).abs() * 2 + (window > peak).long()  # equal distance: earlier first
        chosen = window[torch.argsort(distance)[:k]]
    return torch.sort(chosen).values


def peak_samples(sim: torch.Tensor, k: int, pool: int, half_width: int, radius: int = 0,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """AdaZAD's samples: positives around the peak (drawn when ``radius`` > 0, else the nearest),
    negatives as T3AL's (the pool of lowest frames, spread, moved by up to ``radius``)."""
    positives = peak_positives(sim, k, half_width, radius > 0, generator)
    negatives = pick_samples(candidates(-sim, pool * k, ties_late=True), k, sim.numel(), radius, generator)
    return positives, negatives

