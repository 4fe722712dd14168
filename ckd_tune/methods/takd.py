"""Teacher-assistant KD (TAKD; Mirzadeh et al., AAAI 2020): vanilla KD from a teacher assistant.

The assistant, a model between the teacher and the student in size, is distilled from the
teacher once per bench (vanilla KD at fixed settings, see :mod:`ckd_tune.benches`); the student
then learns from the assistant's logits with vanilla KD's loss and parameters.
"""

from __future__ import annotations

from ckd_tune.methods.base import register
from ckd_tune.methods.kd import KD


@register
class TAKD(KD):
    """``L = alpha CE(z_s, y) + (1 - alpha) T^2 KL(softmax(z_a / T) || softmax(z_s / T))``, ``z_a``
    the assistant's logits (MSE for regression): :class:`~ckd_tune.methods.kd.KD` on them."""

    name = "takd"
    signal = "assistant"
