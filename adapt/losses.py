"""The adaptation loss (docs/method.md, step 2) and its gradients in closed form.

``adaptation_loss`` is the loss as autograd expressions (the direct path). The fast path calls
``loss_gradients``: on 2K x E inputs autograd's cost per operation outweighs the arithmetic, so
the value and the gradients are written out; tests check them against autograd for every variant.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import AdaptConfig
from .ops import byol_loss, l2norm


def _targets(k: int, like: torch.Tensor) -> torch.Tensor:
    """K ones (positives) then K zeros (negatives)."""
    return torch.cat([like.new_ones(k), like.new_zeros(k)])


def _separation(scores: torch.Tensor, config: AdaptConfig) -> torch.Tensor:
    target = _targets(config.k, scores)
    if config.separation == "byol":
        return byol_loss(scores, target, config.smoothing)
    if config.separation == "bce":
        return F.binary_cross_entropy_with_logits(scores, target)
    return scores.new_zeros(())


def _representation(positives: torch.Tensor, text: torch.Tensor, config: AdaptConfig) -> torch.Tensor:
    if config.representation == "text":
        return byol_loss(positives, text.expand_as(positives), config.smoothing)
    if config.representation == "pairwise":
        unit = l2norm(positives)
        i, j = torch.triu_indices(len(unit), len(unit), offset=1)
        return (2.0 - 2.0 * (unit[i] * unit[j]).sum(dim=-1)).mean()
    return positives.new_zeros(())


def adaptation_loss(chosen: torch.Tensor, e: torch.Tensor, scale: torch.Tensor, config: AdaptConfig) -> torch.Tensor:
    """Separation of the 2K scores ``scale * chosen @ e`` plus representation of the K positives;
    ``chosen`` holds the normalised projected samples, positives first, ``e`` the normalised prompt."""
    return _separation(scale * chosen @ e, config) + _representation(chosen[: config.k], e, config)


@dataclass
class LossGradients:
    """The loss and its gradients to the projected samples, to ``u`` and to the log scale
    (None where the loss does not depend on them, as autograd would leave them)."""

    loss: float
    projected: torch.Tensor
    text: torch.Tensor | None
    log_scale: torch.Tensor | None


def _unit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    length = x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return x / length, length


def _through_norm(grad: torch.Tensor, unit: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """Gradient to x from the gradient to x / |x|: the part orthogonal to x, over |x|."""
    return (grad - unit * (unit * grad).sum(dim=-1, keepdim=True)) / length


def _separation_gradient(scores: torch.Tensor, config: AdaptConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    target = _targets(config.k, scores)
    if config.separation == "byol":
        soft = (1.0 - config.smoothing) * target / target.norm() + config.smoothing / len(target)
        unit, length = _unit(scores)
        return 2.0 - 2.0 * unit @ soft, _through_norm(-2.0 * soft, unit, length)
    if config.separation == "bce":
        value = F.binary_cross_entropy_with_logits(scores, target)
        return value, (torch.sigmoid(scores) - target) / len(target)
    return scores.new_zeros(()), None


def _representation_gradient(chosen: torch.Tensor, e: torch.Tensor,
                             config: AdaptConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Value and gradient to ``chosen`` (2K x E, unit rows; the rows after the K positives get 0)."""
    k = config.k
    grad = torch.zeros_like(chosen)
    positives = chosen[:k]
    if config.representation == "text":
        soft = (1.0 - config.smoothing) * e + config.smoothing / len(e)
        grad[:k] = -2.0 / len(e) * soft
        return 2.0 - 2.0 / len(e) * (positives @ soft).sum(), grad
    if config.representation == "pairwise":
        pairs = k * (k - 1) / 2
        total = positives.sum(dim=0)
        grad[:k] = -2.0 / pairs * (total - positives)
        agreement = ((total @ total) - (positives * positives).sum()) / 2
        return 2.0 - 2.0 * agreement / pairs, grad
    return chosen.new_zeros(()), grad


def loss_terms(projected: torch.Tensor, u: torch.Tensor, log_scale: torch.Tensor,
               config: AdaptConfig) -> tuple[torch.Tensor, ...]:
    """``loss_gradients`` as tensors only (so ``torch.func.vmap`` batches it over adaptations):
    separation, representation, then the gradients to ``projected``, ``u`` and the log scale,
    the last two only when the separation loss is on."""
    chosen, lengths = _unit(projected)
    e, u_length = _unit(u)
    scale = log_scale.exp()
    scores = scale * (chosen @ e)
    separation, d_scores = _separation_gradient(scores, config)
    representation, d_chosen = _representation_gradient(chosen, e, config)
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
