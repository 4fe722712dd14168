"""The logit-standardization switch (Sun et al., CVPR 2024) that kd, dkd, dist and ckd share.

With ``standardize: true`` the method's distillation term sees both models' logits z-scored per
example (:func:`ckd_tune.losses.standardize_logits`), before its temperature or ``phi``; the
hard-label term keeps the student's raw logits, as in the paper. A regression task has one logit
per example, with no spread to standardize: the switch leaves it alone. With two logits
(binary tasks) a standardized row is ``+-(1, -1) / sqrt(2)``: only the sign of ``z_1 - z_2``
survives, so the distillation term is flat in the student's logits and, in effect, off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ckd_tune.methods.base import require

if TYPE_CHECKING:
    from torch import Tensor


def require_switch(value: object, name: str) -> None:
    """``value`` is ``True`` or ``False`` (not a number, not a string like ``"yes"``)."""
    require(isinstance(value, bool), name, f"must be true or false, got {value!r}")


def distillation_logits(
    student_logits: Tensor, teacher_logits: Tensor, standardize: bool
) -> tuple[Tensor, Tensor]:
    """The logits a distillation term receives: both standardized with ``standardize`` (and
    two or more logits per example), else unchanged."""
    if not standardize or student_logits.size(-1) == 1:
        return student_logits, teacher_logits
    from ckd_tune.losses import standardize_logits

    return standardize_logits(student_logits), standardize_logits(teacher_logits)


def regression_kd(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """What a class-distribution method (dkd, dist) distils on a regression task (one logit):
    kd's regression term ``MSE(z_s, z_t)``, logged as ``kd`` (it means what ``kd`` means there)."""
    from ckd_tune.losses import soft_target_loss

    return soft_target_loss(student_logits, teacher_logits, temperature)
