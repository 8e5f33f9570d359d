"""Step 2 of docs/method.md written once, over a batch of adaptations: stacked parameters, one
Adam over the stack, each row its own video, prompt, generator and stop. One video, and the
public code's stream, are a batch of one; the device only chooses the kernels (``kernels_for``)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import torch

from t3al.cache import Head, T3alError

from ..config import AdaptConfig
from .adam import Adam, AdamGroup
from .freezad import peak_samples
from .losses import adaptation_loss, loss_terms
from .ops import l2norm, moving_average, pick_samples, select_samples
from .video import GroundTruthHint, VideoInput

_PARAMETER_NAMES = {"visual": "visual_proj", "text": "text_projection", "scale": "logit_scale"}
ROW_BY_ROW = ("cpu",)  # device types whose matrix-vector products run one row at a time
CPU_BATCH_BYTES = 1 << 29  # memory of one batch of adaptations on the CPU


class Projections(torch.nn.Module):
    """The only trainable parameters of stage two: Pv (Dv x E), Pt (Dt x E) and s = log scale of
    one model, or B of each stacked, (B, Dv, E), (B, Dt, E) and (B,): the rows the adapter trains."""

    def __init__(self, visual_proj: torch.Tensor, text_projection: torch.Tensor,
                 logit_scale: float | torch.Tensor) -> None:
        super().__init__()
        self.visual_proj = torch.nn.Parameter(torch.as_tensor(visual_proj, dtype=torch.float32).clone())
        self.text_projection = torch.nn.Parameter(torch.as_tensor(text_projection, dtype=torch.float32).clone())
        self.logit_scale = torch.nn.Parameter(torch.as_tensor(logit_scale, dtype=torch.float32).clone())

    @classmethod
    def stacked(cls, visual: torch.Tensor, text: torch.Tensor, scale: float | torch.Tensor,
                count: int = 1) -> "Projections":
        """``count`` rows, each a copy of one model's Pv, Pt and s."""
        return cls(visual.expand(count, -1, -1), text.expand(count, -1, -1),
                   torch.as_tensor(scale, dtype=torch.float32, device=visual.device).expand(count))

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in self.named_parameters()}

    def restore_row(self, b: int, values: dict[str, torch.Tensor]) -> None:
        """Row ``b`` of stacked parameters set to ``values`` (one model's, as ``row`` gives them)."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                p[b] = values[name]

    def row(self, b: int) -> "Projections":
        """Row ``b`` of stacked parameters, detached, on the CPU."""
        return Projections(*(p[b].detach().cpu() for p in self.parameters()))


def head_tensors(head: Head, config: AdaptConfig) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The model's Pv, Pt and s; without ``project_visual`` an identity Pv, so that X = V exactly."""
    visual = torch.from_numpy(head.visual_proj)
    if not config.project_visual:
        visual = torch.eye(visual.shape[0], dtype=visual.dtype)
    return visual, torch.from_numpy(head.text_projection), head.logit_scale


def batch_params(head: Head, config: AdaptConfig, count: int, device: torch.device | str = "cpu") -> Projections:
    """The start of a batch of ``count`` adaptations: the head's parameters (``head_tensors``) in
    every row, on ``device``. The stream is such a batch of one, carried from video to video."""
    return Projections.stacked(*head_tensors(head, config), count).to(device)


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
class AdaptationInput:
    """What one adaptation starts from: a video, the prompt of its pseudo-label, its background,
    the generator of its samples (a per-video seed, or the stream's) and what an oracle may know."""

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


class RowByRow:
    """The kernels of a device whose batched matrix-vector products are several times slower than
    B single ones (the CPU): every product row by row, on each video's own frames (no padded copy)."""

    @staticmethod
    def frames(inputs: Sequence[AdaptationInput], device: torch.device) -> list[torch.Tensor]:
        """Each row's (N_b, Dv) frames on the device."""
        return [one.video.features.to(device) for one in inputs]

    @staticmethod
    def each(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a[i] @ b[i] for every row i."""
        return torch.stack([x @ y for x, y in zip(a, b)])

    @staticmethod
    def curves(frames: list[torch.Tensor], lengths: list[int], direction: torch.Tensor) -> torch.Tensor:
        """(B, N) frames @ direction of every row, 0 after each video's end."""
        out = direction.new_zeros(len(lengths), max(lengths))
        for b, n in enumerate(lengths):
            out[b, :n] = frames[b] @ direction[b]
        return out

    @staticmethod
    def rows(function: Callable[..., tuple], *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``function`` of every row of ``args``, its outputs stacked."""
        return tuple(torch.stack(list(values)) for values in zip(*map(function, *args)))


class Batched:
    """The kernels of any other device (a GPU): one batched call per product."""

    @staticmethod
    def frames(inputs: Sequence[AdaptationInput], device: torch.device) -> torch.Tensor:
        """(B, N, Dv) frames on the device, zero after each video's end."""
        lengths = [one.video.n_frames for one in inputs]
        frames = torch.zeros(len(inputs), max(lengths), inputs[0].video.features.shape[1], device=device)
        for b, one in enumerate(inputs):
            frames[b, :lengths[b]] = one.video.features.to(device)
        return frames

    @staticmethod
    def each(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a[i] @ b[i] for every row i."""
        if a.dim() == 2 and b.dim() == 2:
            return (a * b).sum(dim=-1)
        if b.dim() == 2:
            return torch.bmm(a, b[:, :, None]).squeeze(-1)
        if a.dim() == 2:
            return torch.bmm(a[:, None, :], b).squeeze(1)
        return torch.bmm(a, b)

    @staticmethod
    def curves(frames: torch.Tensor, lengths: list[int], direction: torch.Tensor) -> torch.Tensor:
        """(B, N) frames @ direction of every row (padded frames give 0)."""
        return Batched.each(frames, direction)

    @staticmethod
    def rows(function: Callable[..., tuple], *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``function`` of every row of ``args``, vectorised."""
        return torch.func.vmap(function)(*args)


def kernels_for(device: torch.device) -> type[RowByRow] | type[Batched]:
    """The one place the device chooses how a step runs: row by row on ``ROW_BY_ROW`` devices."""
    return RowByRow if device.type in ROW_BY_ROW else Batched


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
    """Adapts a batch of one config's adaptations on ``device``, in place on their stacked
    parameters (B rows, one per adaptation)."""

    def __init__(self, config: AdaptConfig, device: torch.device | str = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)
        self.kernels = kernels_for(self.device)

    def adapt(self, inputs: Sequence[AdaptationInput], params: Projections, optimizer: Adam | None) -> list[Adapted]:
        """T steps of the separation + representation loss on every row (rows that stop early are
        frozen while the others go on); then each row's parameters, adaptation and residual."""
        if params.logit_scale.shape != (len(inputs),):
            raise ValueError(f"{len(inputs)} adaptation(s) need stacked parameters of as many rows "
                             f"(Projections.stacked), got a logit scale of shape {tuple(params.logit_scale.shape)}")
        cfg, device = self.config, self.device
        lengths = [one.video.n_frames for one in inputs]
        frames = self.kernels.frames(inputs, device)  # row b's frames are frames[b][:n]
        prompts = torch.stack([one.prompt for one in inputs]).to(device)
        background = torch.stack([one.background for one in inputs]).to(device)
        step = self._autograd_step if cfg.implementation == "direct" else self._closed_form_step
        before, losses = params.snapshot(), [[] for _ in inputs]
        best, stale, active = [float("inf")] * len(inputs), [0] * len(inputs), [True] * len(inputs)
        for t in range(cfg.steps):
            if cfg.patience or t == cfg.steps - 1:
                before = _keep_stopped(before, params.snapshot(), active)
            values = step(frames, lengths, prompts, background, params, inputs)
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
        with torch.no_grad():
            residuals = [frames[b][:n] @ before["visual_proj"][b] - background[b] for b, n in enumerate(lengths)]
        return [Adapted(params.row(b), Adaptation({name: v[b].cpu() for name, v in before.items()}, losses[b]),
                        residuals[b].cpu()) for b in range(len(inputs))]

    def _picks(self, sim: torch.Tensor, lengths: list[int], inputs: Sequence[AdaptationInput]) -> torch.Tensor:
        """(B, 2K) frames of every row, drawn on the CPU from each row's curve and generator."""
        sim = sim.cpu()
        picks = [samples(self.config, sim[b, :n], one.generator, one.hint)
                 for b, (n, one) in enumerate(zip(lengths, inputs))]
        return torch.stack(picks).to(self.device)

    def _closed_form_step(self, frames, lengths, prompts, background, params, inputs) -> list[float]:
        """One step, re-associated: the curve is V @ (Pv e), only the 2K sampled frames are
        projected, and the gradients follow by the chain rule from the loss's closed-form ones:
        Pv's is rows^T @ (gradient to rows @ Pv), Pt's the outer product of the prompt and the
        gradient to prompt @ Pt."""
        each, visual, log_scale = self.kernels.each, params.visual_proj, params.logit_scale
        with torch.no_grad():
            u = each(prompts, params.text_projection)
            e = l2norm(u)
            sim = log_scale.exp()[:, None] * (self.kernels.curves(frames, lengths, each(visual, e))
                                              - each(background, e)[:, None])
            picks = self._picks(sim, lengths, inputs)
            chosen = torch.stack([frames[b][picks[b]] for b in range(len(inputs))])
            terms = partial(loss_terms, config=self.config)
            separation, representation, d_projected, *rest = self.kernels.rows(terms, each(chosen, visual), u,
                                                                               log_scale.detach())
        d_text, d_log_scale = rest or (None, None)
        _chain(params.visual_proj, d_projected, lambda g: each(chosen.transpose(1, 2), g))
        _chain(params.text_projection, d_text, lambda g: prompts[:, :, None] * g[:, None, :])
        _chain(params.logit_scale, d_log_scale, lambda g: g)
        return (separation.double() + representation.double()).tolist()

    def _autograd_step(self, frames, lengths, prompts, background, params, inputs) -> list[float]:
        """One step as the public code writes it, row by row: the full V @ Pv with gradient,
        autograd throughout."""
        for p in params.parameters():
            p.grad = None
        losses = []
        for b, (n, one) in enumerate(zip(lengths, inputs)):
            visual, text, log_scale = (p[b] for p in params.parameters())
            e = l2norm(prompts[b] @ text)
            scale = log_scale.exp()
            X = frames[b][:n] @ visual
            curve = scale.detach() * ((X.detach() - background[b]) @ e.detach())
            chosen = samples(self.config, curve.cpu(), one.generator, one.hint).to(self.device)
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


def _batch_size(inputs: Sequence[AdaptationInput], budget: int) -> int:
    """How many of ``inputs`` (shortest first) fit ``budget`` bytes: padded frames, and per row its
    parameters, their gradients, Adam's two moments and the snapshot."""
    first = inputs[0]
    width, text, joint = first.video.features.shape[1], first.prompt.shape[0], first.background.shape[0]
    per_row = 5 * (width + text) * joint
    count = 1
    while count < len(inputs) and (count + 1) * (inputs[count].video.n_frames * width + per_row) * 4 <= budget:
        count += 1
    return count


class OutOfMemory(T3alError, RuntimeError):
    """The device cannot hold even one adaptation (every command line reports it in one line)."""


def adapt_inputs(config: AdaptConfig, head: Head, inputs: Sequence[AdaptationInput],
                 device: torch.device | str = "cpu", budget: int | None = None) -> list[Adapted]:
    """Every input's adaptation from the head's parameters, in order: one by one (``budget``
    None), or in batches of similar length within ``budget`` bytes (``batch_bytes``); a batch the
    device finds no memory for is split in two, one video that does not fit is one line."""
    device = torch.device(device)
    order = sorted(range(len(inputs)), key=lambda i: inputs[i].video.n_frames)
    done: dict[int, Adapted] = {}
    while order:
        count = 1 if budget is None else _batch_size([inputs[i] for i in order], budget)
        batch, order = order[:count], order[count:]
        try:
            done.update(zip(batch, _adapt_batch(config, head, [inputs[i] for i in batch], device)))
        except torch.OutOfMemoryError:
            if count == 1:
                raise OutOfMemory(f"{device}: out of memory adapting video {inputs[batch[0]].video.video_id} "
                                  f"alone; use fewer --jobs, or leave --device out") from None
            budget //= 2
            order = batch + order
    return [done[i] for i in range(len(inputs))]


def _adapt_batch(config: AdaptConfig, head: Head, inputs: Sequence[AdaptationInput],
                 device: torch.device) -> list[Adapted]:
    params = batch_params(head, config, len(inputs), device)
    return Adapter(config, device).adapt(inputs, params, make_optimizer(params, config) if config.steps else None)
