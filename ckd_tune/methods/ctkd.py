"""CTKD: Curriculum Temperature for Knowledge Distillation (Li et al., AAAI 2023).

Vanilla KD whose temperature is learned, adversarially: ``T = t_start + t_range sigmoid(theta)``
(one global ``theta``) is updated in the student's optimizer step through a gradient-reversal
layer (:mod:`ckd_tune.learned_temperature`), so it moves to *raise* the distillation loss that the
student lowers. The reversal strength ``lambda`` follows a cosine curriculum, the paper's
``lambda_n = lambda_min + (lambda_max - lambda_min) (1 - cos(pi min(n, E) / E)) / 2`` with ``E``
the first ``curriculum_fraction`` of training (the paper: 0 -> 1 over 10 of 240 epochs), then
stays at ``lambda_max``: the distillation gets harder as the student learns.

As the official code (github.com/zhengli97/CTKD, ``--distill kd -r 0.1 -a 0.9 --t_start 1
--t_end 20 --decay_loops 10``): the labels' weight ``alpha = 0.1`` and the KD term's ``0.9``; the
KD term is ``T^2 KL`` with the gradient reaching ``theta`` through both softmaxes and ``T^2``;
``theta`` starts at 1 and has no optimizer of its own (the student's SGD, with its lr, momentum,
weight decay and lr decay, there as here). ``lambda`` follows the loop's schedule progress
(epoch ``n`` counted from 0 by default, ``lambda = lambda_min`` in the first epoch); the official
script counts epochs from 1, one epoch further along the curriculum.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from ckd_tune.methods.base import (
    Method,
    MethodParams,
    Term,
    register,
    require,
    require_finite,
    require_fraction,
)
from ckd_tune.schedules import schedule_value

if TYPE_CHECKING:
    from torch import Tensor

    from ckd_tune.learned_temperature import GlobalTemperature


@dataclass(frozen=True)
class CTKDParams(MethodParams):
    """``alpha``: the labels' weight; the temperature's range; the ``lambda`` curriculum."""

    alpha: float = 0.1
    t_start: float = 1.0  # the lowest T (theta -> -inf)
    t_range: float = 20.0  # T in (t_start, t_start + t_range)
    lambda_min: float = 0.0  # the reversal strength at the start of training ...
    lambda_max: float = 1.0  # ... rising to this at curriculum_fraction, then held
    curriculum_fraction: float = 10 / 240  # the paper's 10 of 240 epochs

    def __post_init__(self) -> None:
        require_fraction(self.alpha, "alpha")
        require_finite(self.t_start, "t_start", 0, strict=True)
        require_finite(self.t_range, "t_range", 0, strict=True)
        require_finite(self.lambda_min, "lambda_min", 0)
        require_finite(self.lambda_max, "lambda_max", 0)
        require(
            self.lambda_min <= self.lambda_max,
            "lambda_min",
            f"must be <= lambda_max ({self.lambda_max!r}), got {self.lambda_min!r}",
        )
        require_fraction(self.curriculum_fraction, "curriculum_fraction", open_low=True)


@register
class CTKD(Method):
    """``L = alpha CE(z_s, y) + (1 - alpha) T^2 KL(softmax(z_t / T) || softmax(z_s / T))`` with the
    learned ``T`` (:class:`~ckd_tune.learned_temperature.GlobalTemperature`).

    :meth:`schedule` gives ``lambda``; :meth:`learned` the current ``T`` (logged per epoch). For
    regression (one logit) the soft term is ``MSE(z_s, z_t)``: ``T`` plays no part and stays put.
    """

    name = "ctkd"
    params_type = CTKDParams
    annealing_fields = ("curriculum_fraction",)
    params: CTKDParams

    @cached_property
    def temperature(self) -> GlobalTemperature:
        """This run's learned temperature (built on first use)."""
        from ckd_tune.learned_temperature import GlobalTemperature

        return GlobalTemperature(self.params.t_start, self.params.t_range)

    def schedule(self, progress: float) -> dict[str, float]:
        p = self.params
        done = progress / p.curriculum_fraction  # clipped to [0, 1] by the shape
        return {"lambda": schedule_value("cosine", done, p.lambda_min, p.lambda_max)}

    def trainable(self) -> GlobalTemperature:
        return self.temperature

    def learned(self) -> dict[str, float]:
        return {"T": self.temperature.value()}

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
        # a 0-dim tensor (soft_target_loss computes with it as with a float): theta's gradient,
        # through both softmaxes and T^2, reaches the reversal layer
        temperature = self.temperature(values["lambda"])
        if teacher_logits.is_inference():  # a live teacher's: T's backward needs z_t / T saved
            teacher_logits = teacher_logits.clone()
        return {
            "ce": Term(alpha, losses.hard_label_loss(student_logits, labels)),
            "kd": Term(
                1.0 - alpha, losses.soft_target_loss(student_logits, teacher_logits, temperature)
            ),
        }
