"""Decoupled knowledge distillation (Zhao et al., CVPR 2022).

The KD loss split into the target class against the rest (TCKD, weight ``alpha``) and the
distribution over the non-target classes (NCKD, weight ``beta``), plus the hard labels; the
decoupled term warms up linearly over the first ``warmup`` fraction of training.
"""

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
from ckd_tune.methods.standardize import distillation_logits, regression_kd, require_switch

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class DKDParams(MethodParams):
    """TCKD's weight ``alpha``, NCKD's weight ``beta``, the temperature, the warm-up (a fraction
    of training) and the standardization switch. Defaults: the paper's CIFAR-100 setting
    (``T = 4``, ``alpha = 1``, ``beta = 8``, warm-up 20 of 240 epochs)."""

    alpha: float = 1.0
    beta: float = 8.0
    temperature: float = 4.0
    warmup: float = 20 / 240
    standardize: bool = False

    def __post_init__(self) -> None:
        require_finite(self.alpha, "alpha", 0)
        require_finite(self.beta, "beta", 0)
        require_finite(self.temperature, "temperature", 0, strict=True)
        require_fraction(self.warmup, "warmup")
        require_switch(self.standardize, "standardize")


@register
class DKD(Method):
    """``L = CE(z_s, y) + w T^2 (alpha TCKD + beta NCKD)``, ``w`` the warm-up factor ``kd_warmup``.

    ``kd_warmup`` is the paper's ``min(epoch / warmup_epochs, 1)`` with epochs counted from 1
    and ``warmup_epochs = warmup * epochs``: ``min(1, (progress + 1 / epochs) / warmup)``, the
    epoch in progress counted as done. The first epoch already gets ``1 / warmup_epochs``, and a
    warm-up of one epoch or less has no effect (as in the paper's code); with ``schedule_unit:
    step`` the factor grows linearly between those epoch values, reaching 1 at the start of the
    warm-up's last epoch (``warmup = 0``: 1 throughout).

    Binary tasks have one non-target class, so NCKD is 0 there and ``dkd`` is ``alpha`` times
    Hinton's KD term. A regression task (one logit) has no classes to decouple: the method falls
    back to kd's regression term ``MSE(z_s, z_t)``, logged as ``kd`` (warmed up like ``dkd``).
    """

    name = "dkd"
    params_type = DKDParams
    annealing_fields = ("warmup",)
    params: DKDParams

    def schedule(self, progress: float) -> dict[str, float]:
        p = self.params
        ramp = 1.0 if p.warmup == 0 else min(1.0, (progress + 1 / self.epochs) / p.warmup)
        return {"T": p.temperature, "kd_warmup": ramp}

    def loss_terms(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor | None,
        labels: Tensor,
        values: dict[str, float],
    ) -> dict[str, Term]:
        from ckd_tune import losses

        assert teacher_logits is not None
        p, ramp = self.params, values["kd_warmup"]
        ce = Term(1.0, losses.hard_label_loss(student_logits, labels))
        if student_logits.size(-1) == 1:
            kd = regression_kd(student_logits, teacher_logits, values["T"])
            return {"ce": ce, "kd": Term(ramp, kd)}
        z_s, z_t = distillation_logits(student_logits, teacher_logits, p.standardize)
        dkd = losses.dkd_loss(z_s, z_t, labels, alpha=p.alpha, beta=p.beta, temperature=values["T"])
        return {"ce": ce, "dkd": Term(ramp, dkd)}
