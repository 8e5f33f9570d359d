"""The adaptation loss: values worked out by hand from docs/method.md, and closed-form gradients equal to autograd's."""
from __future__ import annotations

import math

import pytest
import torch

from t3al.adapt.config import AdaptConfig
from t3al.adapt.algorithm.losses import adaptation_loss, loss_gradients
from t3al.adapt.algorithm.ops import l2norm

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


# Values worked out by hand from docs/method.md (step 2, the loss), checked on both the
# autograd expression (direct path) and the closed form (fast and batched paths).

def _both_values(chosen: list[list[float]], e: list[float], log_scale: float, config: AdaptConfig) -> tuple[float, float]:
    chosen_t = torch.tensor(chosen, dtype=torch.float64)
    e_t = torch.tensor(e, dtype=torch.float64)
    scale = torch.tensor(log_scale, dtype=torch.float64)
    direct = float(adaptation_loss(l2norm(chosen_t), l2norm(e_t), scale.exp(), config))
    return direct, loss_gradients(chosen_t, e_t, scale, config).loss


def test_text_representation_is_byol_of_the_positives_against_the_repeated_prompt():
    # positives norm([3, 4]) = [0.6, 0.8] and [1, 0]; e = [1, 0]; t~ = 0.8 e + 0.2 / 2 = [0.9, 0.1] per row;
    # sum over rows of norm(Xp) * t~ = [0.54 + 0.9, 0.08 + 0] = [1.44, 0.08]; mean over E = 0.76 -> 2 - 1.52
    config = AdaptConfig(k=2, separation="none", representation="text")
    values = _both_values([[3.0, 4.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]], [2.0, 0.0], 0.0, config)
    assert values == pytest.approx((0.48, 0.48), abs=1e-12)


def test_pairwise_representation_is_eq_7_the_mean_distance_over_pairs_of_positives():
    # positives [1, 0], [0, 1], norm([3, 4]): cosines 0, 0.6, 0.8 -> (2 + 0.8 + 0.4) / 3 pairs = 16 / 15
    config = AdaptConfig(k=3, separation="none", representation="pairwise")
    chosen = [[1.0, 0.0], [0.0, 2.0], [3.0, 4.0], [1.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]
    assert _both_values(chosen, [1.0, 0.0], 0.0, config) == pytest.approx((16 / 15, 16 / 15), abs=1e-12)


def test_bce_separation_is_the_mean_binary_cross_entropy_of_the_scaled_scores():
    # exp(s) = ln 3; cosines to e: positives 1, 1 (logit ln 3, sigmoid 3/4), negatives -1 (sigmoid 1/4)
    # and 0 (sigmoid 1/2): -(log 3/4 + log 3/4 + log 3/4 + log 1/2) / 4
    config = AdaptConfig(k=2, separation="bce", representation="none")
    chosen = [[2.0, 0.0], [1.0, 0.0], [-3.0, 0.0], [0.0, 1.0]]
    expected = (3 * math.log(4 / 3) + math.log(2)) / 4
    values = _both_values(chosen, [1.0, 0.0], math.log(math.log(3.0)), config)
    assert values == pytest.approx((expected, expected), abs=1e-12)


def test_default_loss_is_byol_separation_plus_text_representation():
    # separation: scores exp(0) * cos = [1, 1, 0, 0] proportional to the target: 2 - 2 * (0.8 + 0.2 / 4 * 2 / sqrt 2)
    # representation: positives [1, 0] twice against e = [1, 0]: 2 - 2 * mean([0.9 * 2, 0]) = 0.2
    config = AdaptConfig(k=2)
    chosen = [[1.0, 0.0], [4.0, 0.0], [0.0, 1.0], [0.0, 3.0]]
    separation = 2 - 2 * (0.8 + 0.1 / math.sqrt(2))
    values = _both_values(chosen, [1.0, 0.0], 0.0, config)
    assert values == pytest.approx((separation + 0.2, separation + 0.2), abs=1e-12)
