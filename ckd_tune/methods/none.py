"""Fine-tuning on the labels alone: the no-teacher baseline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ckd_tune.methods.base import Method, Term, register

if TYPE_CHECKING:
    from torch import Tensor


@register
class FineTune(Method):
    """``L = CE(z_s, y)`` (MSE to the label for regression)."""

    name = "none"
    needs_teacher = False

    def loss_terms(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor | None,
        labels: Tensor,
        values: dict[str, float],
    ) -> dict[str, Term]:
        from ckd_tune import losses

        return {"ce": Term(1.0, losses.hard_label_loss(student_logits, labels))}
