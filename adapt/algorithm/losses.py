"""The adaptation loss (docs/method.md, step 2): each loss written once, its value as an autograd
expression (the direct path) beside its value and gradient in closed form (the fast path: on
2K x E inputs autograd's cost per operation outweighs the arithmetic). Tests check the two against
each other for every variant. A new loss is one class here, named in its registry below and in
``config.py``'s choices.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import AdaptConfig
from .ops import byol_loss, l2norm


def _targets(k: int, like: torch.Tensor) -> torch.Tensor:
    """K ones (positives) then K zeros (negatives)."""
    return torch.cat([like.new_ones(k), like.new_zeros(k)])


def _unit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    length = x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return x / length, length


def _through_norm(grad: torch.Tensor, unit: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """Gradient to x from the gradient to x / |x|: the part orthogonal to x, over |x|."""
    return (grad - unit * (unit * grad).sum(dim=-1, keepdim=True)) / length


# Separation losses: on the 2K scores exp(s) * cos(x, e), positives first. ``closed_form`` gives the
# value and the gradient to the scores, None when the loss does not reach them (as autograd leaves it).

class ByolSeparation:
    """BYOL between the scores and the smoothed targets (K ones, K zeros)."""

    @staticmethod
    def value(scores: torch.Tensor, config: AdaptConfig) -> torch.Tensor:
        return byol_loss(scores, _targets(config.k, scores), config.smoothing)

    @staticmethod
    def closed_form(scores: torch.Tensor, config: AdaptConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
        target = _targets(config.k, scores)
        soft = (1.0 - config.smoothing) * target / target.norm() + config.smoothing / len(target)
        unit, length = _unit(scores)
        return 2.0 - 2.0 * unit @ soft, _through_norm(-2.0 * soft, unit, length)


class BceSeparation:
    """Mean binary cross-entropy of the scores as logits against the targets."""

    @staticmethod
    def value(scores: torch.Tensor, config: AdaptConfig) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(scores, _targets(config.k, scores))

    @staticmethod
    def closed_form(scores: torch.Tensor, config: AdaptConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
        target = _targets(config.k, scores)
        return BceSeparation.value(scores, config), (torch.sigmoid(scores) - target) / len(target)


class NoSeparation:
    """No separation loss: 0, and no gradient to the scores."""

    @staticmethod
    def value(scores: torch.Tensor, config: AdaptConfig) -> torch.Tensor:
        return scores.new_zeros(())

    @staticmethod
    def closed_form(scores: torch.Tensor, config: AdaptConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
        return scores.new_zeros(()), None


# Representation losses: on the K positives among ``chosen`` (2K x E unit rows) and the unit prompt
# e. ``closed_form`` gives the value and the gradient to all 2K rows (0 after the positives).

class TextRepresentation:
    """BYOL of each positive against the smoothed prompt (the public code's)."""

    @staticmethod
    def value(positives: torch.Tensor, e: torch.Tensor, config: AdaptConfig) -> torch.Tensor:
        return byol_loss(positives, e.expand_as(positives), config.smoothing)

    @staticmethod
    def closed_form(chosen: torch.Tensor, e: torch.Tensor, config: AdaptConfig) -> tuple[torch.Tensor, torch.Tensor]:
        k, grad = config.k, torch.zeros_like(chosen)
        soft = (1.0 - config.smoothing) * e + config.smoothing / len(e)
        grad[:k] = -2.0 / len(e) * soft
        return 2.0 - 2.0 / len(e) * (chosen[:k] @ soft).sum(), grad


class PairwiseRepresentation:
    """The mean distance 2 - 2 cos over pairs of positives (the paper's Eq. 7)."""

    @staticmethod
    def value(positives: torch.Tensor, e: torch.Tensor, config: AdaptConfig) -> torch.Tensor:
        unit = l2norm(positives)
        i, j = torch.triu_indices(len(unit), len(unit), offset=1)
        return (2.0 - 2.0 * (unit[i] * unit[j]).sum(dim=-1)).mean()

    @staticmethod
    def closed_form(chosen: torch.Tensor, e: torch.Tensor, config: AdaptConfig) -> tuple[torch.Tensor, torch.Tensor]:
        k, grad = config.k, torch.zeros_like(chosen)
        positives = chosen[:k]
        pairs = k * (k - 1) / 2
        total = positives.sum(dim=0)
        grad[:k] = -2.0 / pairs * (total - positives)
        agreement = ((total @ total) - (positives * positives).sum()) / 2
        return 2.0 - 2.0 * agreement / pairs, grad


class NoRepresentation:
    """No representation loss: 0, and a zero gradient."""

    @staticmethod
    def value(positives: torch.Tensor, e: torch.Tensor, config: AdaptConfig) -> torch.Tensor:
        return positives.new_zeros(())

    @staticmethod
    def closed_form(chosen: torch.Tensor, e: torch.Tensor, config: AdaptConfig) -> tuple[torch.Tensor, torch.Tensor]:
        return chosen.new_zeros(()), torch.zeros_like(chosen)


SEPARATIONS = {"byol": ByolSeparation, "bce": BceSeparation, "none": NoSeparation}
REPRESENTATIONS = {"text": TextRepresentation, "pairwise": PairwiseRepresentation, "none": NoRepresentation}


def adaptation_loss(chosen: torch.Tensor, e: torch.Tensor, scale: torch.Tensor, config: AdaptConfig) -> torch.Tensor:
    """Separation of the 2K scores ``scale * chosen @ e`` plus representation of the K positives;
    ``chosen`` holds the normalised projected samples, positives first, ``e`` the normalised prompt."""
    return (SEPARATIONS[config.separation].value(scale * chosen @ e, config)
            + REPRESENTATIONS[config.representation].value(chosen[: config.k], e, config))


@dataclass
class LossGradients:
    """The loss and its gradients to the projected samples, to ``u`` and to the log scale
    (None where the loss does not depend on them, as autograd would leave them)."""

    loss: float
    projected: torch.Tensor
    text: torch.Tensor | None
    log_scale: torch.Tensor | None


def loss_terms(projected: torch.Tensor, u: torch.Tensor, log_scale: torch.Tensor,
               config: AdaptConfig) -> tuple[torch.Tensor, ...]:
    """``loss_gradients`` as tensors only (so ``torch.func.vmap`` batches it over adaptations):
    separation, representation, then the gradients to ``projected``, ``u`` and the log scale,
    the last two only when the separation loss is on."""
    chosen, lengths = _unit(projected)
    e, u_length = _unit(u)
    scale = log_scale.exp()
    scores = scale * (chosen @ e)
    separation, d_scores = SEPARATIONS[config.separation].closed_form(scores, config)
    representation, d_chosen = REPRESENTATIONS[config.representation].closed_form(chosen, e, config)
    if d_scores is None:
        return separation, representation, _through_norm(d_chosen, chosen, lengths)
    d_chosen = d_chosen + scale * d_scores[:, None] * e
    d_text = _through_norm(scale * (d_scores @ chosen), e, u_length)
    return separation, representation, _through_norm(d_chosen, chosen, lengths), d_text, d_scores @ scores


@torch.no_grad()
def loss_gradients(projected: torch.Tensor, u: torch.Tensor, log_scale: torch.Tensor,
                   config: AdaptConfig) -> LossGradients:
    """The loss of the 2K ``projected`` samples (rows @ Pv) against ``u`` (prompt @ Pt), and its
    gradients to each of the three; the same value as ``adaptation_loss`` on their normalisations."""
    separation, representation, d_projected, *rest = loss_terms(projected, u, log_scale, config)
    d_text, d_log_scale = rest or (None, None)
    return LossGradients(float(separation) + float(representation), d_projected, d_text, d_log_scale)
