"""Annealing-KD (Jafari et al., EACL 2021).

Phase 1 (the first ``anneal_fraction`` of the epochs, at least one): the student regresses the
teacher's logits scaled by ``phi(T)`` while ``T`` anneals ``t_max -> 1``. Phase 2: from phase 1's
best weights, with a fresh optimizer and lr schedule (as the official code), cross-entropy on the
labels. The labels' weight ``psi`` is 0 in phase 1 and 1 in phase 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ckd_tune.methods.base import Method, Term, register
from ckd_tune.methods.temperature import AnnealedTemperature

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class AnnealingKDParams(AnnealedTemperature):
    """The annealed temperature; ``anneal_fraction`` is also where phase 2 starts."""


@register
class AnnealingKD(Method):
    """``L = MSE(z_s, phi(T) z_t)`` (mean over elements) in phase 1, ``CE(z_s, y)`` in phase 2."""

    name = "annealing_kd"
    params_type = AnnealingKDParams
    annealing_fields = ("anneal_fraction",)
    params: AnnealingKDParams

    def boundary(self) -> int:
        """Phase 1's length in epochs: ``round(anneal_fraction * epochs)``, at least one."""
        return max(1, round(self.params.anneal_fraction * self.epochs))

    def schedule(self, progress: float) -> dict[str, float]:
        if progress >= self.boundary() / self.epochs:
            return {"T": 1.0, "phi": 1.0, "psi": 1.0}
        # T reaches 1 at the boundary epoch, not at the (unrounded) anneal_fraction
        window = self.params.anneal_fraction * self.epochs / self.boundary()
        return {**self.params.temperature_at(progress * window), "psi": 0.0}

    def loss_terms(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor | None,
        labels: Tensor,
        values: dict[str, float],
    ) -> dict[str, Term]:
        from ckd_tune import losses

        assert teacher_logits is not None
        psi = values["psi"]
        return {
            "ce": Term(psi, losses.hard_label_loss(student_logits, labels)),
            "mse": Term(
                1.0 - psi, losses.annealing_mse(student_logits, teacher_logits, values["phi"])
            ),
        }

    def phase2_epoch(self) -> int | None:
        boundary = self.boundary()
        return boundary if boundary < self.epochs else None
