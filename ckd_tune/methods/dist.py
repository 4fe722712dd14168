"""DIST: knowledge distillation from a stronger teacher (Huang et al., NeurIPS 2022).

The student matches the teacher's class probabilities by correlation rather than exactly: per
example across the classes (inter-class relation, weight ``beta``) and per class across the
batch (intra-class relation, weight ``gamma``), plus the hard labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ckd_tune.methods.base import Method, MethodParams, Term, register, require_finite
from ckd_tune.methods.standardize import distillation_logits, regression_kd, require_switch

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class DISTParams(MethodParams):
    """The inter- and intra-class weights, the temperature and the standardization switch.
    Defaults: the paper's ImageNet setting (``beta = gamma = 1``, ``T = 1``; CIFAR-100: 2, 2, 4)."""

    beta: float = 1.0
    gamma: float = 1.0
    temperature: float = 1.0
    standardize: bool = False

    def __post_init__(self) -> None:
        require_finite(self.beta, "beta", 0)
        require_finite(self.gamma, "gamma", 0)
        require_finite(self.temperature, "temperature", 0, strict=True)
        require_switch(self.standardize, "standardize")


@register
class DIST(Method):
    """``L = CE(z_s, y) + T^2 (beta inter + gamma intra)`` (:func:`ckd_tune.losses.dist_loss`).

    With two classes the inter-class term only sees whether the two models prefer the same
    class (flat almost everywhere); the intra-class term carries the signal. A regression task
    (one logit) has no class distribution: the method falls back to kd's regression term
    ``MSE(z_s, z_t)``, logged as ``kd``.
    """

    name = "dist"
    params_type = DISTParams
    params: DISTParams

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
        p = self.params
        ce = Term(1.0, losses.hard_label_loss(student_logits, labels))
        if student_logits.size(-1) == 1:
            kd = regression_kd(student_logits, teacher_logits, values["T"])
            return {"ce": ce, "kd": Term(1.0, kd)}
        z_s, z_t = distillation_logits(student_logits, teacher_logits, p.standardize)
        dist = losses.dist_loss(z_s, z_t, beta=p.beta, gamma=p.gamma, temperature=values["T"])
        return {"ce": ce, "dist": Term(1.0, dist)}
