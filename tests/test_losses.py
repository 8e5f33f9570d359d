"""The closed-form loss gradients of the fast path equal autograd's on the written-out loss."""
from __future__ import annotations

import pytest
import torch

from t3al.adapt.config import AdaptConfig
from t3al.adapt.losses import adaptation_loss, loss_gradients
from t3al.adapt.ops import l2norm

VARIANTS = [(s, r) for s in ("byol", "bce", "none") for r in ("text", "pairwise", "none") if (s, r) != ("none", "none")]


def _autograd(projected, u, log_scale, config):
    projected, u, log_scale = (x.clone().requires_grad_(True) for x in (projected, u, log_scale))
    loss = adaptation_loss(l2norm(projected), l2norm(u), log_scale.exp(), config)
    loss.backward()
    return loss.item(), projected.grad, u.grad, log_scale.grad


@pytest.mark.parametrize("separation,representation", VARIANTS)
def test_closed_form_gradients_match_autograd(separation, representation):
    config = AdaptConfig(k=3, separation=separation, representation=representation)
    generator = torch.Generator().manual_seed(0)
    projected = torch.randn(6, 5, generator=generator, dtype=torch.float64) * 3
    u = torch.randn(5, generator=generator, dtype=torch.float64) * 2
    log_scale = torch.tensor(1.5, dtype=torch.float64)
    loss, d_projected, d_u, d_scale = _autograd(projected, u, log_scale, config)
    closed = loss_gradients(projected, u, log_scale, config)
    assert closed.loss == pytest.approx(loss, abs=1e-12)
    torch.testing.assert_close(closed.projected, d_projected, rtol=1e-10, atol=1e-12)
    if separation == "none":  # nothing reaches the prompt or the scale: autograd leaves them unset
        assert closed.text is None and closed.log_scale is None and d_u is None and d_scale is None
    else:
        torch.testing.assert_close(closed.text, d_u, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(closed.log_scale, d_scale, rtol=1e-10, atol=1e-12)


def test_byol_separation_of_perfectly_separated_scores_is_the_smoothing_gap():
    # scores proportional to the target: only the label smoothing keeps the loss above 0
    config = AdaptConfig(k=2, separation="byol", representation="none")
    projected = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    u = torch.tensor([1.0, 0.0], dtype=torch.float64)
    closed = loss_gradients(projected, u, torch.tensor(0.0, dtype=torch.float64), config)
    soft = 0.8 * torch.tensor([1, 1, 0, 0.0], dtype=torch.float64) / 2 ** 0.5 + 0.2 / 4
    expected = 2 - 2 * (torch.tensor([1, 1, 0, 0.0], dtype=torch.float64) / 2 ** 0.5) @ soft
    assert closed.loss == pytest.approx(float(expected))
