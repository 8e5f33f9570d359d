"""The small numerical steps of T3AL (docs/method.md), each a pure function on torch tensors."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def l2norm(x: torch.Tensor) -> torch.Tensor:
    """L2-normalise along the last axis (zero vectors stay zero instead of becoming NaN)."""
    return F.normalize(x, dim=-1)


def moving_average(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean of x[i-(w-1)//2 ... i+w//2] for every i, frames outside taking the first/last value.

    For w = 20 this is frames i-9 ... i+10, the public code's window; w <= 1 returns x.
    """
    if window <= 1 or x.numel() == 0:
        return x
    left, right = (window - 1) // 2, window // 2
    padded = torch.cat([x[:1].expand(left), x, x[-1:].expand(right)])
    sums = torch.cumsum(torch.cat([padded.new_zeros(1), padded.double()]), dim=0)
    return ((sums[window:] - sums[:-window]) / window).to(x.dtype)


def min_max(x: torch.Tensor) -> torch.Tensor:
    """Rescale to [0, 1]; a constant curve (min = max) maps to zeros."""
    low, high = x.min(), x.max()
    if high <= low:
        return torch.zeros_like(x)
    return (x - low) / (high - low)


def _spread(candidates: torch.Tensor, k: int) -> torch.Tensor:
    """Sort candidates by time, repeat them when fewer than k, and keep k evenly spaced ones."""
    candidates = torch.sort(candidates).values
    if len(candidates) < k:
        candidates = candidates.repeat_interleave(k // len(candidates) + 1)[:k]
    step = (len(candidates) - 1) // (k - 1)
    return candidates[::step][:k]


def pick_samples(
    candidates: torch.Tensor, k: int, n: int, radius: int = 0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """k candidates spread evenly in time, each moved by an integer in [-radius, radius - 1]
    (no move when radius is 0) and clamped to the video's n frames."""
    picks = _spread(candidates, k)
    if radius > 0:
        picks = (picks + index_moves(k, radius, generator)).clamp(0, n - 1)
    return picks


def index_moves(k: int, radius: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The k random moves in [-radius, radius - 1] of one side's samples (one draw of ``generator``)."""
    return torch.randint(-radius, radius, (k,), generator=generator, device=torch.device("cpu"))  # CPU generators


def select_samples(
    sim: torch.Tensor,
    k: int,
    pool: int = 100,
    radius: int = 0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """k positive and k negative frame indices from a similarity curve (docs/method.md, step 2).

    Candidates are the ``pool * k`` most (least) similar frames, or every frame when the video
    is that short.
    """
    n = sim.numel()
    positives, negatives = candidates(sim, pool * k), candidates(-sim, pool * k, ties_late=True)
    return pick_samples(positives, k, n, radius, generator), pick_samples(negatives, k, n, radius, generator)


def candidates(x: torch.Tensor, count: int, ties_late: bool = False) -> torch.Tensor:
    """The ``count`` highest frames of x in frame order (see ``highest``), or every frame when
    the video has no more than ``count``."""
    return torch.arange(x.numel(), device=x.device) if count >= x.numel() else highest(x, count, ties_late)


def highest(x: torch.Tensor, count: int, ties_late: bool = False) -> torch.Tensor:
    """Indices of the ``count`` largest values, in frame order; values tied at the cut are taken
    from the earliest frames (the latest with ``ties_late``), as the first (last) ``count`` of a
    stable descending sort take them. A partial selection: no full sort of the curve."""
    cut = torch.topk(x, count, sorted=False).values.min()
    above = torch.nonzero(x > cut).flatten()
    tied = torch.nonzero(x == cut).flatten()
    missing = count - above.numel()
    tied = tied[tied.numel() - missing:] if ties_late else tied[:missing]
    return torch.sort(torch.cat([above, tied])).values


def byol_loss(pred: torch.Tensor, target: torch.Tensor, smoothing: float = 0.2) -> torch.Tensor:
    """2 - 2 * mean(sum over the first axis of norm(pred) * smoothed norm(target)); no grad to target."""
    soft = ((1.0 - smoothing) * l2norm(target) + smoothing / target.shape[-1]).detach()
    return 2.0 - 2.0 * (l2norm(pred) * soft).sum(dim=0).mean()


def group_segments(kept: torch.Tensor, stride: int) -> list[tuple[int, int]]:
    """Group sorted frame indices into [first, last] runs split where a gap exceeds ``stride``.

    Runs of a single frame (first == last) are dropped.
    """
    if kept.numel() == 0:
        return []
    breaks = torch.nonzero(torch.diff(kept) > stride).flatten() + 1
    starts = torch.cat([torch.zeros(1, dtype=torch.long), breaks]).tolist()
    ends = torch.cat([breaks - 1, torch.tensor([kept.numel() - 1])]).tolist()
    values = kept.tolist()
    return [(values[s], values[e]) for s, e in zip(starts, ends) if values[s] != values[e]]


def consensus_keep(directions: torch.Tensor, beta: float) -> torch.Tensor:
    """Which segments agree with the majority: row j of the cosine matrix has more than
    floor(S / 2) entries above ``beta`` (diagonal included)."""
    unit = l2norm(directions)
    votes = (unit @ unit.T > beta).sum(dim=1)
    return votes > directions.shape[0] // 2
