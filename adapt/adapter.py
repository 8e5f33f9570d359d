"""Step 2 of docs/method.md written once, over a batch of adaptations: stacked parameters, one
Adam over the stack, each row its own video, prompt, generator and stop. One video is a batch of
one; the device only chooses the kernels (row-by-row products on a CPU, ``bmm`` on a GPU)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import torch

from t3al.cache import Head

from .adam import Adam, AdamGroup
from .config import AdaptConfig
from .freezad import peak_samples
from .losses import adaptation_loss, loss_terms
from .memory import OutOfMemory
from .ops import l2norm, moving_average, pick_samples, select_samples
from .video import GroundTruthHint, VideoInput

_PARAMETER_NAMES = {"visual": "visual_proj", "text": "text_projection", "scale": "logit_scale"}
ROW_BY_ROW = ("cpu",)  # device types whose matrix-vector products run one row at a time
CPU_BATCH_BYTES = 1 << 29  # memory of one batch of adaptations on the CPU


class Projections(torch.nn.Module):
    """The only trainable parameters of stage two: Pv (Dv x E), Pt (Dt x E) and s = log scale
    (or B of each stacked, (B, Dv, E), (B, Dt, E) and (B,), for a batch of adaptations)."""

    def __init__(self, visual_proj: torch.Tensor, text_projection: torch.Tensor,
                 logit_scale: float | torch.Tensor) -> None:
        super().__init__()
        self.visual_proj = torch.nn.Parameter(torch.as_tensor(visual_proj, dtype=torch.float32).clone())
        self.text_projection = torch.nn.Parameter(torch.as_tensor(text_projection, dtype=torch.float32).clone())
        self.logit_scale = torch.nn.Parameter(torch.as_tensor(logit_scale, dtype=torch.float32).clone())

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in self.named_parameters()}

    def restore(self, values: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, p in self.named_parameters():
                p.copy_(values[name])

    def row(self, b: int) -> "Projections":
        """Row ``b`` of stacked parameters, detached, on the CPU."""
        return Projections(*(p[b].detach().cpu() for p in self.parameters()))


def head_tensors(head: Head, config: AdaptConfig) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The model's Pv, Pt and s; without ``project_visual`` an identity Pv, so that X = V exactly."""
    visual = torch.from_numpy(head.visual_proj)
    if not config.project_visual:
        visual = torch.eye(visual.shape[0], dtype=visual.dtype)
    return visual, torch.from_numpy(head.text_projection), head.logit_scale


def make_optimizer(params: Projections, config: AdaptConfig) -> Adam:
    """Adam with L2 weight decay: lr for Pt and s, lr * visual_lr_scale for Pv (torch.optim.Adam's update)."""
    chosen = {_PARAMETER_NAMES[name] for name in config.adapt if name != "visual" or config.project_visual}
    for name, p in params.named_parameters():
        p.requires_grad_(name in chosen)
    return Adam([AdamGroup([params.text_projection, params.logit_scale], config.lr),
                 AdamGroup([params.visual_proj], config.lr * config.visual_lr_scale)], config.weight_decay)


@dataclass
class Adaptation:
    """What adaptation leaves for the proposal step: the parameters at the start of the last
    step (the public code's proposals and its stream use those) and the loss of every step."""

    before_last: dict[str, torch.Tensor]
    losses: list[float]


@dataclass
class Adapted:
    """A video's adaptation ready for proposals: the parameters as it left them, the adaptation,
    and the residual V @ Pv (start of the last step) - b the proposal curve is cut from."""

    params: Projections
    adaptation: Adaptation
    residual: torch.Tensor


@dataclass
class Problem:
    """One adaptation: a video, the prompt of its pseudo-label, its background, the generator of
    its samples (a per-video seed, or the stream's) and what an oracle may know."""

    video: VideoInput
    prompt: torch.Tensor  # (Dt,) pre-projection prompt features
    background: torch.Tensor  # (E,)
    generator: torch.Generator
    hint: GroundTruthHint | None = None


def samples(config: AdaptConfig, sim: torch.Tensor, generator: torch.Generator,
            hint: GroundTruthHint | None) -> torch.Tensor:
    """The 2K frames one step trains on, positives first, from one video's curve: by the selection
    oracle, else from the smoothed curve by the positives rule (pool or peak)."""
    if hint is not None and "selection" in config.oracle:
        return torch.cat(oracle_samples(hint.inside, config.k, config.radius, generator))
    sim = moving_average(sim, config.window)
    if config.positives == "peak":
        return torch.cat(peak_samples(sim, config.k, config.pool, config.peak_window, config.radius, generator))
    return torch.cat(select_samples(sim, config.k, config.pool, config.radius, generator))


def oracle_samples(inside: torch.Tensor, k: int, radius: int, generator: torch.Generator):
    """Positives spread over the true action frames, negatives over the other frames."""
    n = inside.numel()
    frames = torch.arange(n)
    positives = frames[inside] if inside.any() else frames
    negatives = frames[~inside] if not inside.all() else frames
    return pick_samples(positives, k, n, radius, generator), pick_samples(negatives, k, n, radius, generator)


def _stack(values: list[torch.Tensor]) -> torch.Tensor:
    """Stacked along a new first axis; one value is viewed, not copied."""
    return values[0][None] if len(values) == 1 else torch.stack(values)


def _each(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a[i] @ b[i] for every row i: B products on the CPU (where a batched matrix-vector product is
    several times slower), one batched product elsewhere."""
    if a.device.type in ROW_BY_ROW:
        return _stack([x @ y for x, y in zip(a, b)])
    if a.dim() == 2 and b.dim() == 2:
        return (a * b).sum(dim=-1)
    if b.dim() == 2:
        return torch.bmm(a, b[:, :, None]).squeeze(-1)
    if a.dim() == 2:
        return torch.bmm(a[:, None, :], b).squeeze(1)
    return torch.bmm(a, b)


def _curves(frames: torch.Tensor, lengths: list[int], direction: torch.Tensor) -> torch.Tensor:
    """(B, N) frames @ direction of every row (padded frames give 0; on the CPU they are skipped)."""
    if frames.device.type not in ROW_BY_ROW:
        return _each(frames, direction)
    if len(lengths) == 1:
        return (frames[0, :lengths[0]] @ direction[0])[None]
    out = frames.new_zeros(frames.shape[:2])
    for b, n in enumerate(lengths):
        out[b, :n] = frames[b, :n] @ direction[b]
    return out


def _keep_stopped(before: dict[str, torch.Tensor], now: dict[str, torch.Tensor],
                  active: list[bool]) -> dict[str, torch.Tensor]:
    """The parameters at the start of this step, except for rows that stopped: theirs from the
    start of their last step."""
    for b, going in enumerate(active):
        if not going:
            for name, value in now.items():
                value[b] = before[name][b]
    return now


def _chain(parameter: torch.nn.Parameter, upstream: torch.Tensor | None,
           gradient: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Set ``parameter``'s gradient to ``gradient(upstream)`` when it adapts and the loss reaches it;
    otherwise None, as autograd leaves it (Adam then skips the parameter)."""
    adapts = parameter.requires_grad and upstream is not None
    parameter.grad = gradient(upstream).view(parameter.shape) if adapts else None


class Adapter:
    """Adapts a batch of problems of one config on ``device``, in place on their parameters:
    stacked (B, ...) ones, or one video's own (a batch of one)."""

    def __init__(self, config: AdaptConfig, device: torch.device | str = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)

    def adapt(self, problems: Sequence[Problem], params: Projections, optimizer: Adam | None) -> list[Adapted]:
        """T steps of the separation + representation loss on every problem (rows that stop early
        are frozen while the others go on); then each row's parameters, adaptation and residual."""
        cfg, device = self.config, self.device
        stacked = params.logit_scale.dim() == 1
        lengths = [p.video.n_frames for p in problems]
        frames = self._frames(problems, lengths)
        prompts = _stack([p.prompt for p in problems]).to(device)
        background = _stack([p.background for p in problems]).to(device)
        step = self._autograd_step if cfg.implementation == "direct" else self._closed_form_step
        before, losses = params.snapshot(), [[] for _ in problems]
        best, stale, active = [float("inf")] * len(problems), [0] * len(problems), [True] * len(problems)
        for t in range(cfg.steps):
            if cfg.patience or t == cfg.steps - 1:
                before = _keep_stopped(before, params.snapshot(), active)
            rows = [p if stacked else p[None] for p in params.parameters()]
            values = step(frames, lengths, prompts, background, params, rows, problems)
            optimizer.step(None if all(active) else torch.tensor([not a for a in active], device=device))
            for b, value in enumerate(values):
                if not active[b]:
                    continue
                losses[b].append(value)
                if cfg.patience:
                    best[b], stale[b] = (value, 0) if value < best[b] else (best[b], stale[b] + 1)
                    active[b] = stale[b] < cfg.patience
            if not any(active):
                break
        visual = before["visual_proj"] if stacked else before["visual_proj"][None]
        with torch.no_grad():
            residuals = [frames[b, :n] @ visual[b] - background[b] for b, n in enumerate(lengths)]
        if not stacked:
            return [Adapted(params, Adaptation(before, losses[0]), residuals[0])]
        return [Adapted(params.row(b), Adaptation({name: v[b].cpu() for name, v in before.items()}, losses[b]),
                        residuals[b].cpu()) for b in range(len(problems))]

    def _frames(self, problems: Sequence[Problem], lengths: list[int]) -> torch.Tensor:
        """(B, N, Dv) frames on the device, zero after each video's end (one video: a view)."""
        if len(problems) == 1:
            return problems[0].video.features.to(self.device)[None]
        frames = torch.zeros(len(problems), max(lengths), problems[0].video.features.shape[1], device=self.device)
        for b, p in enumerate(problems):
            frames[b, :lengths[b]] = p.video.features.to(self.device)
        return frames

    def _picks(self, sim: torch.Tensor, lengths: list[int], problems: Sequence[Problem]) -> torch.Tensor:
        """(B, 2K) frames of every row, drawn on the CPU from each row's curve and generator."""
        sim = sim.cpu()
        picks = [samples(self.config, sim[b, :n], p.generator, p.hint) for b, (n, p) in enumerate(zip(lengths, problems))]
        return _stack(picks).to(self.device)

    def _loss_terms(self, projected: torch.Tensor, u: torch.Tensor, log_scale: torch.Tensor) -> tuple:
        """``loss_terms`` of every row: one call per row on the CPU, one vectorised call elsewhere."""
        terms = partial(loss_terms, config=self.config)
        if self.device.type not in ROW_BY_ROW:
            return torch.func.vmap(terms)(projected, u, log_scale)
        return tuple(_stack(list(values)) for values in zip(*map(terms, projected, u, log_scale)))

    def _closed_form_step(self, frames, lengths, prompts, background, params, rows, problems) -> list[float]:
        """One step, re-associated: the curve is V @ (Pv e), only the 2K sampled frames are
        projected, and the gradients follow by the chain rule from the loss's closed-form ones:
        Pv's is rows^T @ (gradient to rows @ Pv), Pt's the outer product of the prompt and the
        gradient to prompt @ Pt."""
        visual, text, log_scale = rows
        with torch.no_grad():
            u = _each(prompts, text)
            e = l2norm(u)
            sim = log_scale.exp()[:, None] * (_curves(frames, lengths, _each(visual, e)) - _each(background, e)[:, None])
            picks = self._picks(sim, lengths, problems)
            chosen = _stack([frames[b][picks[b]] for b in range(len(problems))])
            separation, representation, d_projected, *rest = self._loss_terms(_each(chosen, visual), u,
                                                                              log_scale.detach())
        d_text, d_log_scale = rest or (None, None)
        _chain(params.visual_proj, d_projected, lambda g: _each(chosen.transpose(1, 2), g))
        _chain(params.text_projection, d_text, lambda g: prompts[:, :, None] * g[:, None, :])
        _chain(params.logit_scale, d_log_scale, lambda g: g)
        return (separation.double() + representation.double()).tolist()

    def _autograd_step(self, frames, lengths, prompts, background, params, rows, problems) -> list[float]:
        """One step as the public code writes it, row by row: the full V @ Pv with gradient,
        autograd throughout."""
        for p in params.parameters():
            p.grad = None
        losses = []
        for b, (n, problem) in enumerate(zip(lengths, problems)):
            visual, text, log_scale = (p[b] for p in rows)
            e = l2norm(prompts[b] @ text)
            scale = log_scale.exp()
            X = frames[b, :n] @ visual
            curve = scale.detach() * ((X.detach() - background[b]) @ e.detach())
            chosen = samples(self.config, curve.cpu(), problem.generator, problem.hint).to(self.device)
            loss = adaptation_loss(l2norm(X[chosen]), e, scale, self.config)
            loss.backward()
            losses.append(loss.item())
        return losses


def batch_bytes(device: torch.device, workers: int = 1) -> int:
    """Memory one batch of adaptations may take: a fixed amount on the CPU; on a GPU half of this
    worker's share of the free memory (the other half for the step's temporaries)."""
    if device.type != "cuda":
        return CPU_BATCH_BYTES
    free, _ = torch.cuda.mem_get_info(device)
    return free // (2 * workers)


def _batch_size(problems: Sequence[Problem], budget: int) -> int:
    """How many of ``problems`` (shortest first) fit ``budget`` bytes: padded frames, and per row its
    parameters, their gradients, Adam's two moments and the snapshot."""
    first = problems[0]
    width, text, joint = first.video.features.shape[1], first.prompt.shape[0], first.background.shape[0]
    per_row = 5 * (width + text) * joint
    count = 1
    while count < len(problems) and (count + 1) * (problems[count].video.n_frames * width + per_row) * 4 <= budget:
        count += 1
    return count


def adapt_problems(config: AdaptConfig, head: Head, problems: Sequence[Problem], device: torch.device | str = "cpu",
                   budget: int | None = None) -> list[Adapted]:
    """Every problem's adaptation from the head's parameters, in order: one by one (``budget``
    None), or in batches of similar length within ``budget`` bytes (``batch_bytes``); a batch the
    device finds no memory for is split in two, one video that does not fit is one line."""
    device = torch.device(device)
    order = sorted(range(len(problems)), key=lambda i: problems[i].video.n_frames)
    done: dict[int, Adapted] = {}
    while order:
        count = 1 if budget is None else _batch_size([problems[i] for i in order], budget)
        batch, order = order[:count], order[count:]
        try:
            done.update(zip(batch, _adapt_batch(config, head, [problems[i] for i in batch], device)))
        except torch.OutOfMemoryError:
            if count == 1:
                raise OutOfMemory(f"{device}: out of memory adapting video {problems[batch[0]].video.video_id} "
                                  f"alone; use fewer --jobs, or leave --device out") from None
            budget //= 2
            order = batch + order
    return [done[i] for i in range(len(problems))]


def _adapt_batch(config: AdaptConfig, head: Head, problems: Sequence[Problem], device: torch.device) -> list[Adapted]:
    visual, text, scale = head_tensors(head, config)
    count = len(problems)
    params = Projections(visual.expand(count, -1, -1), text.expand(count, -1, -1),
                         torch.full((count,), scale, device=visual.device)).to(device)
    return Adapter(config, device).adapt(problems, params, make_optimizer(params, config) if config.steps else None)
