"""T3AL on one video (docs/method.md, steps 1 and 3-5; step 2 is the adapter's) and the naive
per-frame baseline: localizer objects, one chosen per config by ``localizer_for``."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np
import torch

from ..config import PROPOSAL_FIELDS, AdaptConfig
from .adam import Adam
from .adapter import Adaptation, AdaptationInput, Adapted, Adapter, Projections
from .freezad import freezad_scores
from .ops import consensus_keep, group_segments, l2norm, min_max, moving_average
from .video import GroundTruthHint, VideoInput, VideoResult

_PROPOSAL_DEFAULTS = {name: getattr(AdaptConfig(), name) for name in PROPOSAL_FIELDS}


def adaptation_key(config: AdaptConfig) -> AdaptConfig:
    """``config`` with the settings declared not to change the adaptation (``PROPOSAL_FIELDS``) and
    the count oracle reset: configs with the same key adapt identically on a video, so one
    adaptation serves them all. The method's name only labels its settings, and the stream's
    restore rule does not matter with per-video reset."""
    return config.replace(**_PROPOSAL_DEFAULTS, oracle=tuple(o for o in config.oracle if o != "count"),
                          method=AdaptConfig.method,
                          restore=config.restore if config.protocol == "stream" else "before_last")


def split_dependent(config: AdaptConfig) -> bool:
    """Whether a video's adaptation depends on the split's ground truth (the class or selection
    oracle), so that splits giving it the same pseudo-label cannot share it."""
    return bool(adaptation_key(config).oracle)


def shared_adaptations(configs: Mapping[str, AdaptConfig]) -> list[dict[str, AdaptConfig]]:
    """The configs (by name) grouped so that each group needs one adaptation per video (equal
    ``share_key``: configs that differ in proposal settings, or identical naive configs)."""
    groups: dict[object, dict[str, AdaptConfig]] = {}
    for name, config in configs.items():
        groups.setdefault(localizer_for(config).share_key(), {})[name] = config
    return list(groups.values())


def job_key(config: AdaptConfig, video: str, label: str, draws: str, truths: tuple) -> tuple:
    """What one adaptation of ``video`` depends on, so that equal keys share it: the group's
    ``share_key``, the label adapted to, the name its samples are drawn by (``draws``), and the
    video's ``truths`` where an oracle steers the adaptation."""
    return localizer_for(config).share_key(), video, label, draws, truths if split_dependent(config) else None


def class_probabilities(x: torch.Tensor, class_embeddings: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """softmax over classes of exp(s) * cos(x, class embedding); x is (E,) or (N, E)."""
    return torch.softmax(scale.exp() * l2norm(x) @ l2norm(class_embeddings).T, dim=-1)


def chosen_labels(probabilities: np.ndarray, first: int, count: int, threshold: float = 0.0) -> list[int]:
    """The video-level labels localized: ``first`` (the pseudo-label), then the next most probable
    classes up to ``count`` labels in all, leaving out those whose probability is below ``threshold``."""
    order = [first] + [int(c) for c in np.argsort(-probabilities, kind="stable") if c != first]
    return [first] + [c for c in order[1:count] if probabilities[c] >= threshold]


def merged(results: Sequence[VideoResult]) -> VideoResult:
    """One video's results for several labels as one: the first label's curve and pseudo-label,
    every label's segments, labels and scores, and each label's curve in ``curves``."""
    first = results[0]
    curves: dict[int, np.ndarray] = {}
    for result in results:
        curves.update(result.curves or {result.pseudo_label: result.similarity})
    return VideoResult(first.video_id, first.pseudo_label, first.probabilities, first.similarity, first.timestamps,
                       [s for r in results for s in r.segments], [c for r in results for c in r.labels],
                       [x for r in results for x in r.scores], first.losses, [w for r in results for w in r.warnings],
                       curves)


@dataclass
class Pending:
    """A video between step 1 and its proposals: its pseudo-label and class probabilities and the
    adaptation it needs (T3AL), or its result already (a localizer that does not adapt)."""

    label: int = -1
    probabilities: np.ndarray | None = None
    adaptation_input: AdaptationInput | None = None
    result: VideoResult | None = None

    def relabelled(self, label: int, class_features: torch.Tensor, generator: torch.Generator) -> "Pending":
        """The same video's adaptation for another ``label`` (a further label of ``labels_per_video``):
        step 1's probabilities and background kept, that label's prompt, its own ``generator``."""
        return Pending(label, self.probabilities,
                       replace(self.adaptation_input, prompt=class_features[label], generator=generator))


def localizer_for(config: AdaptConfig) -> "T3AL | NaiveBaseline":
    """The localizer of ``config``: the naive baseline's own, or T3AL's for every other method."""
    return T3AL(config) if config.runs_t3al_steps else NaiveBaseline(config)


class T3AL:
    """Localizes actions in one video at test time, adapting the projections to that video.

    ``localize`` runs the steps 1-5 of docs/method.md with a given parameter set and optimiser, so the same
    code serves the per-video reset protocol and the public code's stream.
    """

    adapts = True

    def __init__(self, config: AdaptConfig) -> None:
        self.config = config

    def share_key(self) -> AdaptConfig:
        """Configs with equal keys share one adaptation of a video (``adaptation_key``)."""
        return adaptation_key(self.config)

    def localize(
        self,
        video: VideoInput,
        params: Projections,
        optimizer: Adam | None,
        class_features: torch.Tensor,
        generator: torch.Generator,
        label_embeddings: torch.Tensor | None = None,
        hint: GroundTruthHint | None = None,
    ) -> tuple[VideoResult, Adaptation]:
        """Adapt ``params`` (a stacked batch of one, ``Projections.stacked``) in place on ``video``;
        return its scored segments and the adaptation.

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
        optimizer: Adam | None,
        class_features: torch.Tensor,
        generator: torch.Generator,
        variants: Sequence[AdaptConfig],
        label_embeddings: torch.Tensor | None = None,
        hint: GroundTruthHint | None = None,
    ) -> tuple[list[VideoResult], Adapted]:
        """Like ``localize``, but one adaptation serves several configs that differ from this one
        only in proposal settings (same ``adaptation_key``): one result per variant."""
        key = adaptation_key(self.config)
        if any(adaptation_key(v) != key for v in variants):
            raise ValueError("variants must differ from the adapting config only in PROPOSAL_FIELDS")
        pending = self.start(video, params.row(0), class_features, generator, hint, label_embeddings)
        adapted = Adapter(self.config).adapt([pending.adaptation_input], params, optimizer)[0]
        return self.finish(video, pending, adapted, class_features, variants, hint), adapted

    def start(self, video: VideoInput, params: Projections, class_features: torch.Tensor,
              generator: torch.Generator, hint: GroundTruthHint | None = None,
              label_embeddings: torch.Tensor | None = None) -> Pending:
        """Step 1, and the adaptation it asks for (``generator`` draws its samples)."""
        label, probabilities, background = self.pseudo_label(video, params, class_features, label_embeddings, hint)
        return Pending(label, probabilities, AdaptationInput(video, class_features[label], background, generator, hint))

    def finish(self, video: VideoInput, pending: Pending, adapted: Adapted, class_features: torch.Tensor,
               variants: Sequence[AdaptConfig], hint: GroundTruthHint | None = None) -> list[VideoResult]:
        """Steps 3-5 of each variant from the video's adaptation."""
        results = []
        for variant in variants:
            result = T3AL(variant).propose(video, adapted.params, adapted.adaptation, class_features, pending.label,
                                           adapted.residual, hint)
            result.probabilities = pending.probabilities
            result.losses = adapted.adaptation.losses
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
                warnings.append("constant similarity curve, no proposal")
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
            chosen, score = self.label_and_score(r, class_embeddings, params.logit_scale, label)
            labels.append(chosen)
            scores.append(score)
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

    def label_and_score(self, r: torch.Tensor, class_embeddings: torch.Tensor, logit_scale: torch.Tensor,
                        label: int) -> tuple[int, float]:
        """Step 5 for one segment of region mean ``r``: its label (the pseudo-label, or the argmax by
        ``label_rule``) and that label's probability."""
        q = class_probabilities(r, class_embeddings, logit_scale)
        chosen = label if self.config.label_rule == "pseudo" else int(q.argmax())
        return chosen, float(q[chosen])

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


class NaiveBaseline:
    """The paper's naive VLM baseline, without adaptation: frames whose top class probability
    exceeds ``naive_threshold``, grouped into runs of consecutive frames, each scored by its mean
    class probabilities."""

    adapts = False

    def __init__(self, config: AdaptConfig) -> None:
        self.config = config

    def share_key(self) -> tuple:
        """Configs with equal keys give a video the same result: those of the settings it reads."""
        return "naive", self.config.naive_threshold, self.config.project_visual

    def start(self, video: VideoInput, params: Projections, class_features: torch.Tensor,
              generator: torch.Generator | None = None, hint: GroundTruthHint | None = None,
              label_embeddings: torch.Tensor | None = None) -> Pending:
        """The video's result, at once: nothing to adapt."""
        return Pending(result=self.localize(video, params, class_features))

    def finish(self, video: VideoInput, pending: Pending, adapted: Adapted | None, class_features: torch.Tensor,
               variants: Sequence[AdaptConfig], hint: GroundTruthHint | None = None) -> list[VideoResult]:
        """The result of ``start`` for every variant (naive variants differ in nothing it reads)."""
        return [pending.result] * len(variants)

    @torch.no_grad()
    def localize(self, video: VideoInput, params: Projections, class_features: torch.Tensor) -> VideoResult:
        """The baseline's segments of ``video`` with the vocabulary ``class_features``."""
        X = video.features @ params.visual_proj
        q = class_probabilities(X, class_features @ params.text_projection, params.logit_scale)
        top = q.max(dim=1).values
        segments = group_segments(torch.nonzero(top > self.config.naive_threshold).flatten(), stride=1)
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
