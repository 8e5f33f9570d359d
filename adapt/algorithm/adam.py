"""Adam with L2 weight decay as one function over parameter tensors: torch.optim.Adam's update
(the fused kernel it runs with ``fused=True``) without torch.optim, whose first use imports
torch._dynamo (seconds per process). Parameters may be stacked (B, ...): rows can be frozen."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults
EPS = 1e-8


@dataclass
class AdamGroup:
    """Parameters sharing one learning rate."""

    params: list[torch.Tensor]
    lr: float


@dataclass
class Adam:
    """Adam over ``groups`` with L2 ``weight_decay`` and bias corrections; a parameter whose
    ``grad`` is None is skipped (its step count does not advance), as torch.optim.Adam skips it."""

    groups: Sequence[AdamGroup]
    weight_decay: float = 0.0
    state: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for group in self.groups:
            if not group.lr >= 0.0:
                raise ValueError(f"learning rate must be >= 0, got {group.lr}")
        if not self.weight_decay >= 0.0:
            raise ValueError(f"weight decay must be >= 0, got {self.weight_decay}")

    def _state(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(first moment, second moment, step count) of ``p``, zeros at its first step."""
        if id(p) not in self.state:
            self.state[id(p)] = (torch.zeros_like(p), torch.zeros_like(p),
                                 torch.zeros((), dtype=torch.float32, device=p.device))
        return self.state[id(p)]

    @torch.no_grad()
    def step(self, frozen: torch.Tensor | None = None) -> None:
        """One update of every parameter with a gradient; rows where ``frozen`` (B,) is true keep
        their values and moments (stacked parameters only)."""
        for group in self.groups:
            params = [p for p in group.params if p.grad is not None]
            if not params:
                continue
            states = [self._state(p) for p in params]
            kept = [(p, s, p[frozen].clone(), s[0][frozen].clone(), s[1][frozen].clone())
                    for p, s in zip(params, states)] if frozen is not None and frozen.any() else []
            steps = [s[2] for s in states]
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(params, [p.grad for p in params], [s[0] for s in states], [s[1] for s in states], [],
                               steps, lr=group.lr, beta1=BETAS[0], beta2=BETAS[1], weight_decay=self.weight_decay,
                               eps=EPS, amsgrad=False, maximize=False)
            for p, s, value, first, second in kept:
                p[frozen], s[0][frozen], s[1][frozen] = value, first, second
