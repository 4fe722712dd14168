"""Vanilla knowledge distillation (Hinton et al., 2015)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ckd_tune.methods.base import (
    Method,
    MethodParams,
    Term,
    register,
    require_finite,
    require_fraction,
)
from ckd_tune.methods.standardize import distillation_logits, require_switch

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class KDParams(MethodParams):
    """``alpha``: the labels' weight; ``temperature``: the softmax temperature of both models;
    ``standardize``: z-score both models' logits first (:mod:`ckd_tune.methods.standardize`)."""

    alpha: float = 0.5
    temperature: float = 4.0
    standardize: bool = False

    def __post_init__(self) -> None:
        require_fraction(self.alpha, "alpha")
        require_finite(self.temperature, "temperature", 0, strict=True)
        require_switch(self.standardize, "standardize")


@register
class KD(Method):
    """``L = alpha CE(z_s, y) + (1 - alpha) T^2 KL(softmax(z_t / T) || softmax(z_s / T))``.

    For regression (one logit) the soft term is ``MSE(z_s, z_t)``. With ``standardize`` the KL
    term compares the standardized logits (Sun et al., CVPR 2024); the CE term keeps the raw ones.
    """

    name = "kd"
    params_type = KDParams
    params: KDParams

    def schedule(self, progress: float) -> dict[str, float]:
        return {"T": self.params.temperature}  # constant; logged like the annealed methods' T

    def loss_terms(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor | None,
        labels: Tensor,
        values: dict[str, float],
    ) -> dict[str, Term]:
        from ckd_tune import losses

        assert teacher_logits is not None
        alpha = self.params.alpha
        z_s, z_t = distillation_logits(student_logits, teacher_logits, self.params.standardize)
        return {
            "ce": Term(alpha, losses.hard_label_loss(student_logits, labels)),
            "kd": Term(1.0 - alpha, losses.soft_target_loss(z_s, z_t, values["T"])),
        }
