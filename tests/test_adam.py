"""Adam's numerics, worked by hand: two steps of torch.optim.Adam's documented update with L2 weight decay,

    g' = g + wd p;  m = 0.9 m + 0.1 g';  v = 0.999 v + 0.001 g'^2;
    p -= lr (m / (1 - 0.9^t)) / (sqrt(v / (1 - 0.999^t)) + eps),  eps = 1e-8,

so that a variant (eps inside the root, no bias correction, decoupled decay, swapped betas) fails here
and not only in the bit-equality test against torch.optim.Adam."""
from __future__ import annotations

import pytest
import torch

from t3al.adapt.algorithm.adam import Adam, AdamGroup


def _two_steps(adam: Adam, params: list[torch.Tensor], grads: list[tuple[float, float]]) -> list[list[float]]:
    """Each parameter's value after each of two steps with the given gradients."""
    seen = [[] for _ in params]
    for step in range(2):
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g[step])
        adam.step()
        for values, p in zip(seen, params):
            values.append(float(p))
    return seen


def test_two_steps_with_weight_decay_are_the_update_worked_by_hand():
    fast, slow = torch.tensor(1.0), torch.tensor(-2.0)
    adam = Adam([AdamGroup([fast], lr=0.1), AdamGroup([slow], lr=0.01)], weight_decay=0.1)
    fast_values, slow_values = _two_steps(adam, [fast, slow], [(0.5, -0.25), (0.5, -0.25)])
    # fast, step 1: g' = 0.5 + 0.1 * 1 = 0.6, m = 0.06, v = 0.00036, m^ = 0.6, sqrt(v^) = 0.6: p = 1 - 0.1 = 0.9.
    # step 2: g' = -0.25 + 0.1 * 0.9 = -0.16, m = 0.054 - 0.016 = 0.038, v = 0.00035964 + 0.0000256 = 0.00038524,
    # m^ = 0.038 / 0.19 = 0.2, v^ = 0.00038524 / 0.001999 = 0.192716, p = 0.9 - 0.1 * 0.2 / 0.438995 = 0.854441.
    assert fast_values == pytest.approx([0.9, 0.854441367], rel=1e-6)
    # slow, step 1: g' = 0.5 - 0.2 = 0.3, a full step of lr the other way: p = -2.01.
    # step 2: g' = -0.25 - 0.201 = -0.451, m = 0.027 - 0.0451 = -0.0181, m^ = -0.095263,
    # v = 0.00008991 + 0.000203401 = 0.000293311, v^ = 0.146729, p = -2.01 + 0.01 * 0.095263 / 0.383052 = -2.007513.
    assert slow_values == pytest.approx([-2.01, -2.007513049], rel=1e-6)


def test_eps_is_added_to_the_root_of_the_second_moment():
    """A gradient of 1e-8 has sqrt(v^) = 1e-8 = eps: each step moves by lr * 1e-8 / (1e-8 + 1e-8) = lr / 2
    (eps inside the root would move it by lr * 1e-4, eps before the bias correction by lr * 0.03)."""
    p = torch.tensor(0.0)
    values, = _two_steps(Adam([AdamGroup([p], lr=0.1)]), [p], [(1e-8, 1e-8)])
    assert values == pytest.approx([-0.05, -0.1], rel=1e-5)
