"""The PyTorch parts of CTKD (:mod:`ckd_tune.methods.ctkd`): a gradient-reversal layer and the
global temperature learned through it.

The temperature is trained by the same optimizer step as the student, but *adversarially*: the
gradient reaching ``theta`` is reversed (times ``-lambda``), so the step that lowers the
distillation loss for the student moves the temperature to raise it (Li et al., AAAI 2023).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``-strength``
    (Ganin & Lempitsky, 2015)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, strength: float) -> Tensor:
        ctx.strength = strength
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.strength * grad, None


def reverse_gradient(x: Tensor, strength: float) -> Tensor:
    """``x`` unchanged, with its gradient multiplied by ``-strength`` on the way back."""
    return GradientReversal.apply(x, strength)


class GlobalTemperature(nn.Module):
    """``T = t_start + t_range sigmoid(theta)``: one learned scalar ``theta`` for all examples.

    ``theta`` starts at 1, as the official code's ``Global_T`` (``T = t_start + 0.73 t_range``).
    """

    def __init__(self, t_start: float, t_range: float) -> None:
        super().__init__()
        self.t_start, self.t_range = t_start, t_range
        self.theta = nn.Parameter(torch.ones(()))

    def forward(self, strength: float) -> Tensor:
        """``T`` (a 0-dim tensor); the gradient reaching ``theta`` is reversed, times ``strength``."""
        return self.t_start + self.t_range * torch.sigmoid(reverse_gradient(self.theta, strength))

    def value(self) -> float:
        """The current ``T`` as a number."""
        with torch.no_grad():
            return float(self.t_start + self.t_range * torch.sigmoid(self.theta))
