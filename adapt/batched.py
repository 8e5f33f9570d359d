"""Per-video-reset adaptations many at a time: stacked parameters, padded frames, one Adam.

One video's adaptation is a few small products per step, too little work for a GPU. Here B
adaptations step together: their frames are padded to one length (padded frames are masked out
of the selection and never reach the smoothing's edges), the products are batched, the loss
gradients are ``torch.func.vmap``-ed over the closed-form ones (on the CPU the matrix-vector
products run row by row: faster there), and one Adam steps the stacked
(B, ...) parameters; Adam is elementwise, so this is B per-video Adams. Every adaptation draws
its sample moves from its own per-video generator in the per-video order, so both paths give
the same detections (up to float rounding; tests/test_batched.py). Only the per-video reset
protocol batches: the stream protocol carries parameters from one video to the next.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Sequence

import torch

from t3al.cache import CacheReader, Head

from .config import AdaptConfig
from .localizer import (T3AL, Adaptation, Adapted, Projections, _chain, make_optimizer, naive_localize,
                        split_dependent)
from .losses import loss_terms
from .ops import index_moves, l2norm
from .runner import Truths, _class_features, _groups, _head_tensors, _hint, _load, single_thread, video_seed
from .video import GroundTruthHint, VideoInput, VideoProblem, VideoResult

BATCH_FRAMES = {"cpu": 1 << 17, "cuda": 1 << 22}  # padded frames (batch size x longest video) per batch
CHUNK = 32  # videos per task on the batched path: enough adaptations to fill batches
ROW_BY_ROW = ("cpu",)  # device types whose matrix-vector products run one row at a time


def batchable(config: AdaptConfig) -> bool:
    """Whether ``config``'s adaptations can step together: early stopping ends them at different
    steps, and peak positives and raw features (no Pv) have only the per-video form."""
    return (config.method == "t3al" and config.implementation == "fast" and not config.patience
            and config.positives == "pool" and config.project_visual)


@dataclass
class Problem:
    """One adaptation: a video, the prompt of its pseudo-label, its background and its seed."""

    video: VideoInput
    prompt: torch.Tensor  # (Dt,) pre-projection prompt features
    background: torch.Tensor  # (E,)
    seed: int
    hint: GroundTruthHint | None = None


def sample_moves(config: AdaptConfig, seed: int) -> torch.Tensor:
    """(T, 2, K) moves of one adaptation's samples, positives' then negatives' at each step, drawn
    from its per-video generator in the order the per-video path draws them (zeros when r = 0)."""
    if not config.radius:
        return torch.zeros(config.steps, 2, config.k, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    draws = [index_moves(config.k, config.radius, generator) for _ in range(2 * config.steps)]
    return torch.stack(draws).view(config.steps, 2, config.k) if draws else torch.zeros(0, 2, config.k,
                                                                                          dtype=torch.long)


def padded_moving_average(x: torch.Tensor, lengths: torch.Tensor, window: int) -> torch.Tensor:
    """``moving_average`` of each row's first ``lengths`` values (B, N), the last valid value
    standing in for the frames after it as for those after a video's end."""
    if window <= 1:
        return x
    left, right = (window - 1) // 2, window // 2
    last = x.gather(1, (lengths - 1)[:, None])
    x = torch.where(torch.arange(x.shape[1], device=x.device) < lengths[:, None], x, last)
    padded = torch.cat([x[:, :1].expand(-1, left), x, last.expand(-1, right)], dim=1)
    sums = torch.cumsum(torch.cat([padded.new_zeros(len(x), 1), padded.double()], dim=1), dim=1)
    return ((sums[:, window:] - sums[:, :-window]) / window).to(x.dtype)


def padded_highest(x: torch.Tensor, count: int, valid: torch.Tensor, ties_late: bool = False) -> torch.Tensor:
    """Mask of each row's ``count`` largest valid values, ties at the cut taken as ``ops.highest``
    takes them (earliest frames, or latest with ``ties_late``)."""
    x = x.masked_fill(~valid, float("-inf"))
    cut = torch.topk(x, count, dim=1, sorted=False).values.min(dim=1, keepdim=True).values
    above, tied = x > cut, x == cut
    missing = count - above.sum(dim=1, keepdim=True)
    rank = tied.flip(1).cumsum(1).flip(1) if ties_late else tied.cumsum(1)
    return above | (tied & (rank <= missing))


def padded_spread(mask: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) frames spread evenly over each row's candidates (``mask``), as ``ops.pick_samples``
    spreads them: every step-th in time order, each repeated when there are fewer than k."""
    count = mask.sum(dim=1, keepdim=True)
    j = torch.arange(k, device=mask.device)
    rank = torch.where(count < k, j // (k // count + 1), j * ((count - 1) // (k - 1)))
    return torch.searchsorted(mask.cumsum(dim=1), rank + 1)


def _each(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a[i] @ b[i] for every i, where one of the two is a vector: one batched product on a GPU; B
    products on the CPU, where a batched matrix-vector product is several times slower than B."""
    if a.device.type in ROW_BY_ROW:
        return torch.stack([x @ y for x, y in zip(a, b)])
    if b.dim() == 2:
        return torch.bmm(a, b[:, :, None]).squeeze(-1)
    return torch.bmm(a[:, None, :], b).squeeze(1)


def _curves(frames: torch.Tensor, lengths: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """(B, N) frames @ direction of every row (padded frames give 0; on the CPU they are skipped)."""
    if frames.device.type not in ROW_BY_ROW:
        return _each(frames, direction)
    out = frames.new_zeros(frames.shape[:2])
    for b, n in enumerate(lengths.tolist()):
        out[b, :n] = frames[b, :n] @ direction[b]
    return out


class BatchedAdapter:
    """Adapts B problems of one config together on ``device``, from the head's parameters."""

    def __init__(self, config: AdaptConfig, head: Head, device: torch.device) -> None:
        if not batchable(config):
            raise ValueError("early stopping and the direct implementation adapt video by video")
        self.config = config
        self.head = [t.to(device) if isinstance(t, torch.Tensor) else t for t in _head_tensors(head, config)]
        self.device = device

    def adapt(self, problems: Sequence[Problem]) -> list[Adapted]:
        """Step 2 of every problem, then its residual; results on the CPU, in order."""
        cfg, device = self.config, self.device
        lengths = torch.tensor([p.video.n_frames for p in problems], device=device)
        frames = torch.zeros(len(problems), int(lengths.max()), problems[0].video.features.shape[1], device=device)
        for b, p in enumerate(problems):
            frames[b, :p.video.n_frames] = p.video.features.to(device)
        prompts = torch.stack([p.prompt for p in problems]).to(device)
        background = torch.stack([p.background for p in problems]).to(device)
        moves = torch.stack([sample_moves(cfg, p.seed) for p in problems]).to(device)
        inside, oracle = self._oracle_masks(problems, frames.shape[1])
        visual, text, scale = self.head
        params = Projections(visual.expand(len(problems), -1, -1), text.expand(len(problems), -1, -1),
                             torch.full((len(problems),), scale, device=device))
        optimizer = make_optimizer(params, cfg) if cfg.steps else None
        terms = torch.func.vmap(partial(loss_terms, config=cfg))
        before, losses = params.snapshot(), []
        for t in range(cfg.steps):
            if t == cfg.steps - 1:
                before = params.snapshot()
            with torch.no_grad():
                u = _each(prompts, params.text_projection)
                e = l2norm(u)
                sim = params.logit_scale.exp()[:, None] * (_curves(frames, lengths, _each(params.visual_proj, e))
                                                            - (background * e).sum(dim=-1, keepdim=True))
                samples = self._samples(sim, lengths, moves[:, t], inside, oracle)
                rows = frames.gather(1, samples[:, :, None].expand(-1, -1, frames.shape[2]))
                projected = torch.bmm(rows, params.visual_proj)
                separation, representation, d_projected, *rest = terms(projected, u, params.logit_scale.detach())
            d_text, d_log_scale = rest or (None, None)
            _chain(params.visual_proj, d_projected, lambda g: torch.bmm(rows.transpose(1, 2), g))
            _chain(params.text_projection, d_text, lambda g: prompts[:, :, None] * g[:, None, :])
            _chain(params.logit_scale, d_log_scale, lambda g: g)
            losses.append(separation.double() + representation.double())
            optimizer.step()
        per_step = torch.stack(losses, dim=1).tolist() if losses else [[] for _ in problems]
        return [self._adapted(frames[b, :p.video.n_frames], p.background.to(device), params, before, b, per_step[b])
                for b, p in enumerate(problems)]

    def _oracle_masks(self, problems: Sequence[Problem], n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each row's true-action frames, and which rows select by them (None: no row does)."""
        inside = torch.zeros(len(problems), n, dtype=torch.bool, device=torch.device("cpu"))  # filled on the host
        oracle = torch.zeros(len(problems), dtype=torch.bool, device=torch.device("cpu"))
        for b, p in enumerate(problems):
            if p.hint is not None and "selection" in self.config.oracle:
                inside[b, :p.video.n_frames], oracle[b] = p.hint.inside, True
        return inside.to(self.device), oracle.to(self.device) if oracle.any() else None

    def _samples(self, sim: torch.Tensor, lengths: torch.Tensor, moves: torch.Tensor, inside: torch.Tensor,
                 oracle: torch.Tensor | None) -> torch.Tensor:
        """(B, 2K) sampled frames, positives first: ``T3AL._samples`` on every row at once."""
        cfg = self.config
        valid = torch.arange(sim.shape[1], device=sim.device) < lengths[:, None]
        positives = negatives = valid
        count = cfg.pool * cfg.k
        if count < sim.shape[1]:
            sim = padded_moving_average(sim, lengths, cfg.window)
            every = (lengths <= count)[:, None]
            positives = valid & (every | padded_highest(sim, count, valid))
            negatives = valid & (every | padded_highest(-sim, count, valid, ties_late=True))
        if oracle is not None:
            inside = inside & valid
            outside = valid & ~inside
            action = torch.where(inside.any(dim=1, keepdim=True), inside, valid)
            rest = torch.where(outside.any(dim=1, keepdim=True), outside, valid)
            positives = torch.where(oracle[:, None], action, positives)
            negatives = torch.where(oracle[:, None], rest, negatives)
        picks = torch.stack([padded_spread(positives, cfg.k), padded_spread(negatives, cfg.k)], dim=1)
        if cfg.radius:
            picks = torch.minimum((picks + moves).clamp_min(0), (lengths - 1)[:, None, None])
        return picks.flatten(1)

    @staticmethod
    def _adapted(features: torch.Tensor, background: torch.Tensor, params: Projections,
                 before: dict[str, torch.Tensor], b: int, losses: list[float]) -> Adapted:
        """Row ``b``'s parameters and residual (its frames @ Pv at the last step's start - b), on the CPU."""
        with torch.no_grad():
            residual = features @ before["visual_proj"][b] - background
        final = Projections(*(p[b].detach().cpu() for p in params.parameters()))
        return Adapted(final, Adaptation({name: value[b].cpu() for name, value in before.items()}, losses),
                       residual.cpu())


def adapt_problems(config: AdaptConfig, head: Head, problems: Sequence[Problem], device: torch.device) -> list[Adapted]:
    """Every problem's adaptation, in order: in batches of similar length under the device's frame
    budget, or (configs that cannot batch) one by one with the per-video code."""
    if not batchable(config):
        return [_adapt_one(config, head, p) for p in problems]
    adapter = BatchedAdapter(config, head, device)
    budget = BATCH_FRAMES.get(device.type, BATCH_FRAMES["cuda"])
    order = sorted(range(len(problems)), key=lambda i: problems[i].video.n_frames)
    done: dict[int, Adapted] = {}
    while order:
        batch = [order.pop(0)]
        while order and problems[order[0]].video.n_frames * (len(batch) + 1) <= budget:
            batch.append(order.pop(0))
        done.update(zip(batch, adapter.adapt([problems[i] for i in batch])))
    return [done[i] for i in range(len(problems))]


def _adapt_one(config: AdaptConfig, head: Head, problem: Problem) -> Adapted:
    params = Projections(*_head_tensors(head, config))
    optimizer = make_optimizer(params, config) if config.steps else None
    generator = torch.Generator().manual_seed(problem.seed)
    return T3AL(config).adapted(problem.video, params, optimizer, problem.prompt, problem.background, generator,
                                problem.hint)


def localize_chunk(root: str, video_ids: list[str], splits: list[list[tuple[list[str], Truths]]],
                   configs: Sequence[AdaptConfig], seed: int,
                   device: str = "cpu") -> list[list[list[VideoResult]] | VideoProblem]:
    """``runner._localize_chunk`` with the chunk's adaptations of each config group batched on
    ``device``: pseudo-labels first, then the distinct (video, pseudo-label) adaptations, then the
    proposals of every video, split and config."""
    reader = CacheReader(root)
    head = reader.head()
    out: list = [None] * len(video_ids)
    videos: dict[int, VideoInput] = {}
    for i, video_id in enumerate(video_ids):
        try:
            videos[i] = _load(reader, video_id)
        except VideoProblem as problem:
            out[i] = problem
    for i in videos:
        out[i] = [[None] * len(configs) for _ in splits[i]]
    with single_thread():
        for group in _groups(configs):
            _localize_group(head, videos, splits, [configs[j] for j in group], group, seed, torch.device(device), out)
    return out


def _localize_group(head: Head, videos: dict[int, VideoInput], splits: list[list[tuple[list[str], Truths]]],
                    chosen: list[AdaptConfig], positions: list[int], seed: int, device: torch.device,
                    out: list) -> None:
    """One config group on the chunk's videos, results written into ``out[video][split][config]``."""
    first = chosen[0]
    method = T3AL(first)
    params = Projections(*_head_tensors(head, first))
    problems: dict[tuple, Problem] = {}
    plans = []
    for i, video in videos.items():
        for s, (classes, truths) in enumerate(splits[i]):
            class_features = _class_features(head, classes)
            hint = _hint(chosen, video, truths)
            if first.method == "naive":
                naive = naive_localize(video, params, class_features, first.naive_threshold)
                for j in positions:
                    out[i][s][j] = naive
                continue
            label, probabilities, background = method.pseudo_label(video, params, class_features, hint=hint)
            key = (i, classes[label], s if split_dependent(first) else None)
            if key not in problems:
                problems[key] = Problem(video, class_features[label], background, video_seed(seed, video.video_id),
                                        hint)
            plans.append((i, s, key, class_features, label, probabilities, hint))
    adapted = dict(zip(problems, adapt_problems(first, head, list(problems.values()), device)))
    for i, s, key, class_features, label, probabilities, hint in plans:
        done = adapted[key]
        results = method.propose_variants(videos[i], done.params, done.adaptation, done.residual, class_features,
                                          label, probabilities, chosen, hint)
        for j, result in zip(positions, results):
            out[i][s][j] = result
