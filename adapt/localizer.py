"""T3AL on one video (docs/method.md, steps 1-5) and the naive per-frame baseline."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable, Sequence

import numpy as np
import torch

from .config import AdaptConfig
from .freezad import freezad_scores, peak_samples
from .losses import adaptation_loss, loss_gradients
from .ops import (
    consensus_keep,
    group_segments,
    l2norm,
    min_max,
    moving_average,
    pick_samples,
    select_samples,
)
from .video import GroundTruthHint, VideoInput, VideoResult

_PARAMETER_NAMES = {"visual": "visual_proj", "text": "text_projection", "scale": "logit_scale"}
# Settings read only after adaptation (steps 3-5); configs differing only in these share it.
PROPOSAL_FIELDS = ("normalize", "threshold", "stride", "suppression", "beta", "label_rule", "naive_threshold",
                   "scoring")
_PROPOSAL_DEFAULTS = {name: getattr(AdaptConfig(), name) for name in PROPOSAL_FIELDS}


def adaptation_key(config: AdaptConfig) -> AdaptConfig:
    """``config`` with its proposal-only settings (and the count oracle) reset: configs with the
    same key adapt identically on a video, so one adaptation serves them all. The method's name
    only labels its settings, and the stream's restore rule does not matter with per-video reset."""
    return config.replace(**_PROPOSAL_DEFAULTS, oracle=tuple(o for o in config.oracle if o != "count"),
                          method="naive" if config.method == "naive" else "t3al",
                          restore=config.restore if config.protocol == "stream" else "before_last")


def split_dependent(config: AdaptConfig) -> bool:
    """Whether a video's adaptation depends on the split's ground truth (the class or selection
    oracle), so that splits giving it the same pseudo-label cannot share it."""
    return bool(adaptation_key(config).oracle)


class Projections(torch.nn.Module):
    """The only trainable parameters of stage two: Pv (Dv x E), Pt (Dt x E) and s = log scale
    (or B of each stacked, (B, Dv, E), (B, Dt, E) and (B,), for batched adaptation)."""

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


def make_optimizer(params: Projections, config: AdaptConfig) -> torch.optim.Adam:
    """torch's Adam with L2 weight decay: lr for Pt and s, lr * visual_lr_scale for Pv.

    The fused kernel applies the same update as the loop version, about three times faster.
    """
    chosen = {_PARAMETER_NAMES[name] for name in config.adapt if name != "visual" or config.project_visual}
    for name, p in params.named_parameters():
        p.requires_grad_(name in chosen)
    groups = [
        {"params": [params.text_projection, params.logit_scale], "lr": config.lr},
        {"params": [params.visual_proj], "lr": config.lr * config.visual_lr_scale},
    ]
    return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay, fused=True)


def class_probabilities(x: torch.Tensor, class_embeddings: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """softmax over classes of exp(s) * cos(x, class embedding); x is (E,) or (N, E)."""
    return torch.softmax(scale.exp() * l2norm(x) @ l2norm(class_embeddings).T, dim=-1)


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


class T3AL:
    """Localizes actions in one video at test time, adapting the projections to that video.

    ``localize`` runs the steps 1-5 of docs/method.md with a given parameter set and optimiser, so the same
    code serves the per-video reset protocol and the public code's stream.
    """

    def __init__(self, config: AdaptConfig) -> None:
        self.config = config

    def localize(
        self,
        video: VideoInput,
        params: Projections,
        optimizer: torch.optim.Optimizer | None,
        class_features: torch.Tensor,
        generator: torch.Generator,
        label_embeddings: torch.Tensor | None = None,
        hint: GroundTruthHint | None = None,
    ) -> tuple[VideoResult, Adaptation]:
        """Adapt ``params`` in place on ``video``; return its scored segments and the adaptation.

        ``class_features`` are the split's pre-projection prompt features (C x Dt);
        ``label_embeddings`` (C x E), when given, replace them @ Pt for the pseudo-label (stream).
        """
        results, adapted = self.localize_variants(video, params, optimizer, class_features, generator,
                                                  [self.config], label_embeddings, hint)
        return results[0], adapted.adaptation

    def localize_variants(
        self,
        video: VideoInput,
        params: Projections,
        optimizer: torch.optim.Optimizer | None,
        class_features: torch.Tensor,
        generator: torch.Generator,
        variants: Sequence[AdaptConfig],
        label_embeddings: torch.Tensor | None = None,
        hint: GroundTruthHint | None = None,
        shared: dict[Hashable, Adapted] | None = None,
        share_as: Callable[[int], Hashable] = int,
    ) -> tuple[list[VideoResult], Adapted]:
        """Like ``localize``, but one adaptation serves several configs that differ from this one
        only in proposal settings (same ``adaptation_key``): one result per variant.

        With ``shared``, an adaptation already in it under ``share_as(pseudo-label)`` is reused
        instead of adapting ``params`` again (the per-video reset protocol's splits), and a new
        one is stored there.
        """
        key = adaptation_key(self.config)
        if any(adaptation_key(v) != key for v in variants):
            raise ValueError("variants must differ from the adapting config only in PROPOSAL_FIELDS")
        label, probabilities, background = self.pseudo_label(video, params, class_features,
                                                             label_embeddings, hint)
        adapted = shared.get(share_as(label)) if shared is not None else None
        if adapted is None:
            adapted = self.adapted(video, params, optimizer, class_features[label], background, generator, hint)
            if shared is not None:
                shared[share_as(label)] = adapted
        results = self.propose_variants(video, adapted.params, adapted.adaptation, adapted.residual, class_features,
                                        label, probabilities, variants, hint)
        return results, adapted

    def adapted(self, video, params, optimizer, prompt, background, generator, hint=None) -> Adapted:
        """Step 2 on ``params``, then the residual the proposals are cut from."""
        adaptation = self.adapt(video, params, optimizer, prompt, background, generator, hint)
        with torch.no_grad():
            residual = video.features @ adaptation.before_last["visual_proj"] - background
        return Adapted(params, adaptation, residual)

    def propose_variants(self, video, params, adaptation, residual, class_features, label, probabilities,
                         variants: Sequence[AdaptConfig], hint=None) -> list[VideoResult]:
        """Steps 3-5 of each variant from one adaptation (``params`` as adaptation left them)."""
        results = []
        for variant in variants:
            result = T3AL(variant).propose(video, params, adaptation, class_features, label, residual, hint)
            result.probabilities = probabilities
            result.losses = adaptation.losses
            results.append(result)
        return results

    @torch.no_grad()
    def pseudo_label(self, video, params, class_features, label_embeddings=None, hint=None):
        """Step 1: the video-level class y*, its probabilities, and the background vector b."""
        x_mean = video.features.mean(dim=0) @ params.visual_proj
        if label_embeddings is None:
            label_embeddings = class_features @ params.text_projection
        probabilities = class_probabilities(x_mean, label_embeddings, params.logit_scale)
        oracle = hint is not None and "class" in self.config.oracle
        label = hint.true_class if oracle else int(probabilities.argmax())
        background = x_mean if self.config.remove_background else torch.zeros_like(x_mean)
        return label, probabilities.numpy(), background

    def adapt(self, video, params, optimizer, prompt, background, generator, hint=None) -> Adaptation:
        """Step 2: T steps of the separation + representation loss on the selected frames."""
        cfg = self.config
        step = self._direct_step if cfg.implementation == "direct" else self._fast_step
        before = params.snapshot()
        losses: list[float] = []
        best, stale = float("inf"), 0
        for t in range(cfg.steps):
            if cfg.patience or t == cfg.steps - 1:
                before = params.snapshot()
            losses.append(step(video.features, params, prompt, background, generator, hint))
            optimizer.step()
            if cfg.patience:
                best, stale = (losses[-1], 0) if losses[-1] < best else (best, stale + 1)
                if stale >= cfg.patience:
                    break
        return Adaptation(before, losses)

    def _direct_step(self, V, params, prompt, background, generator, hint) -> float:
        """One step as the public code writes it: the full V @ Pv with gradient, autograd throughout."""
        for p in params.parameters():
            p.grad = None
        e = l2norm(prompt @ params.text_projection)
        scale = params.logit_scale.exp()
        X = V @ params.visual_proj
        samples = torch.cat(self._samples(scale.detach() * ((X.detach() - background) @ e.detach()), generator, hint))
        loss = adaptation_loss(l2norm(X[samples]), e, scale, self.config)
        loss.backward()
        return loss.item()

    def _fast_step(self, V, params, prompt, background, generator, hint) -> float:
        """The same step re-associated: the curve is V @ (Pv e), only the 2K sampled frames are
        projected, and the gradients follow by the chain rule from the loss's closed-form ones:
        Pv's is rows^T @ (gradient to rows @ Pv), Pt's the outer product of the prompt and the
        gradient to prompt @ Pt."""
        with torch.no_grad():
            u = prompt @ params.text_projection
            e = l2norm(u)
            sim = params.logit_scale.exp() * (V @ (params.visual_proj @ e) - background @ e)
            rows = V[torch.cat(self._samples(sim, generator, hint))]
            projected = rows @ params.visual_proj
        gradients = loss_gradients(projected, u, params.logit_scale.detach(), self.config)
        _chain(params.visual_proj, gradients.projected, lambda g: rows.T @ g)
        _chain(params.text_projection, gradients.text, lambda g: torch.outer(prompt, g))
        _chain(params.logit_scale, gradients.log_scale, lambda g: g)
        return gradients.loss

    def _samples(self, sim, generator, hint) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        if hint is not None and "selection" in cfg.oracle:
            return _oracle_samples(hint.inside, cfg.k, cfg.radius, generator)
        sim = moving_average(sim, cfg.window)
        if cfg.positives == "peak":
            return peak_samples(sim, cfg.k, cfg.pool, cfg.peak_window, cfg.radius, generator)
        return select_samples(sim, cfg.k, cfg.pool, cfg.radius, generator)

    @torch.no_grad()
    def propose(self, video, params, adaptation, class_features, label, residual, hint=None) -> VideoResult:
        """Steps 3-5: cut the similarity curve into segments, suppress, label and score them.

        ``residual`` is F before normalisation, V @ Pv (start of the last step) - b.
        """
        cfg = self.config
        class_embeddings = class_features @ params.text_projection
        e = l2norm(class_embeddings[label])
        scale = params.logit_scale.exp()
        raw = scale * (l2norm(residual) @ e)
        sim = moving_average(raw, cfg.window)
        warnings = []
        if cfg.normalize:
            if sim.max() <= sim.min():
                warnings.append(f"video {video.video_id}: constant similarity curve, no proposal")
            sim = min_max(sim)
        threshold = sim.mean() if cfg.threshold is None else cfg.threshold
        segments = group_segments(torch.nonzero(sim > threshold).flatten(), cfg.stride)
        if cfg.suppression and len(segments) >= 2:
            segments = self._suppress(video, segments, adaptation.before_last["text_projection"])
        means = [residual[first:last].mean(dim=0) for first, last in segments]
        if hint is not None and "count" in cfg.oracle and means:
            similarity = l2norm(torch.stack(means)) @ e
            order = torch.argsort(similarity, descending=True, stable=True)[: hint.count]
            segments = [segments[i] for i in sorted(order.tolist())]
            means = [means[i] for i in sorted(order.tolist())]
        labels, scores = [], []
        for r in means:
            q = class_probabilities(r, class_embeddings, params.logit_scale)
            chosen = label if cfg.label_rule == "pseudo" else int(q.argmax())
            labels.append(chosen)
            scores.append(float(q[chosen]))
        if cfg.scoring == "logoic":
            scores = freezad_scores(raw, residual, segments)
        return VideoResult(
            video_id=video.video_id,
            pseudo_label=label,
            probabilities=np.zeros(0),
            similarity=sim.numpy(),
            timestamps=video.timestamps,
            segments=segments,
            labels=labels,
            scores=scores,
            warnings=warnings,
        )

    def _suppress(self, video: VideoInput, segments, text_projection) -> list[tuple[int, int]]:
        """Keep segments whose captions agree with the majority of segments (docs/method.md, step 4)."""
        frames = video.caption_frames
        kept, directions = [], []
        for first, last in segments:
            inside = (frames >= first) & (frames <= last)
            if inside.any():
                kept.append((first, last))
                directions.append(l2norm(video.caption_features[inside] @ text_projection).mean(dim=0))
        if not kept:
            return []
        agree = consensus_keep(torch.stack(directions), self.config.beta)
        return [segment for segment, keep in zip(kept, agree.tolist()) if keep]


def _chain(parameter: torch.nn.Parameter, upstream: torch.Tensor | None, gradient) -> None:
    """Set ``parameter``'s gradient to ``gradient(upstream)`` when it adapts and the loss reaches it;
    otherwise None, as autograd leaves it (the optimiser then skips the parameter)."""
    parameter.grad = gradient(upstream) if parameter.requires_grad and upstream is not None else None


def _oracle_samples(inside: torch.Tensor, k: int, radius: int, generator: torch.Generator):
    """Positives spread over the true action frames, negatives over the other frames."""
    n = inside.numel()
    frames = torch.arange(n)
    positives = frames[inside] if inside.any() else frames
    negatives = frames[~inside] if not inside.all() else frames
    return pick_samples(positives, k, n, radius, generator), pick_samples(negatives, k, n, radius, generator)


def naive_localize(video: VideoInput, params: Projections, class_features: torch.Tensor,
                   threshold: float) -> VideoResult:
    """The naive VLM baseline: frames whose top class probability exceeds ``threshold``,
    grouped into runs of consecutive frames, each scored by its mean class probabilities."""
    with torch.no_grad():
        X = video.features @ params.visual_proj
        q = class_probabilities(X, class_features @ params.text_projection, params.logit_scale)
        top = q.max(dim=1).values
        segments = group_segments(torch.nonzero(top > threshold).flatten(), stride=1)
        means = [q[first:last].mean(dim=0) for first, last in segments]
        labels = [int(m.argmax()) for m in means]
        video_probabilities = q.mean(dim=0)
    return VideoResult(
        video_id=video.video_id,
        pseudo_label=int(video_probabilities.argmax()),
        probabilities=video_probabilities.numpy(),
        similarity=top.numpy(),
        timestamps=video.timestamps,
        segments=segments,
        labels=labels,
        scores=[float(m[label]) for m, label in zip(means, labels)],
    )
