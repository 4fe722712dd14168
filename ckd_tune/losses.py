"""Distillation losses, one function each. Pure PyTorch; teacher logits never get gradients.

Shapes: ``student_logits`` and ``teacher_logits`` are ``(batch, num_logits)``; ``labels`` are
class indices ``(batch,)`` or, for regression (``num_logits == 1``), float targets ``(batch,)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def hard_label_loss(student_logits: Tensor, labels: Tensor) -> Tensor:
    """Finetuning loss (no KD): batch-mean cross-entropy, or MSE to the label for regression."""
    if student_logits.size(-1) == 1:
        return F.mse_loss(student_logits.squeeze(-1), labels.to(student_logits.dtype))
    return F.cross_entropy(student_logits, labels)


def vanilla_kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    *,
    alpha: float,
    temperature: float,
) -> Tensor:
    """Hinton et al. (2015).

    ``alpha CE(z_s, y) + (1 - alpha) T^2 KL(softmax(z_t/T) || softmax(z_s/T))``.

    For regression (one logit) the KL term is replaced by ``MSE(z_s, z_t)``.
    """
    _check_unit("alpha", alpha)
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature: must be a finite number > 0, got {temperature}")
    z_t = teacher_logits.detach()
    hard = hard_label_loss(student_logits, labels)
    if student_logits.size(-1) == 1:
        soft = F.mse_loss(student_logits, z_t)
    else:
        soft = (
            F.kl_div(
                F.log_softmax(student_logits / temperature, dim=-1),
                F.log_softmax(z_t / temperature, dim=-1),
                reduction="batchmean",
                log_target=True,
            )
            * temperature**2
        )
    return alpha * hard + (1.0 - alpha) * soft


def annealing_kd_loss(student_logits: Tensor, teacher_logits: Tensor, *, phi: float) -> Tensor:
    """Annealing-KD phase 1 (Jafari et al., EACL 2021).

    ``MSE(z_s, phi(T) z_t)``, mean over elements.
    """
    _check_phi(phi)
    return F.mse_loss(student_logits, phi * teacher_logits.detach())


def continuation_kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    *,
    phi: float,
    psi: float,
    margin: float,
    mse_reduction: str = "sum",
) -> Tensor:
    """Continuation-KD (Jafari et al., arXiv 2212.05998, eq. 3-5).

    ``L = psi CE(z_s, y) + (1 - psi) mean_i max(0, ||z_s_i - phi z_t_i||^2 - margin phi)``

    The squared norm is per example over the logits (``"sum"``; ``"mean"`` divides by the
    number of logits); the hinge is per example. The CE term is the batch-mean cross-entropy
    (MSE to the label for regression). ``margin=0`` with a 0/1 ``psi`` is Annealing-KD.
    """
    _check_phi(phi)
    _check_unit("psi", psi)
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin: must be a finite number >= 0, got {margin}")
    if mse_reduction not in ("sum", "mean"):
        raise ValueError(f"mse_reduction: must be 'sum' or 'mean', got {mse_reduction!r}")
    sq = (student_logits - phi * teacher_logits.detach()).pow(2)
    sq = sq.sum(dim=-1) if mse_reduction == "sum" else sq.mean(dim=-1)
    kd = torch.clamp(sq - margin * phi, min=0.0).mean()
    if psi == 0.0:
        return kd
    hard = hard_label_loss(student_logits, labels)
    if psi == 1.0:
        return hard
    return psi * hard + (1.0 - psi) * kd


def _check_unit(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: must be in [0, 1], got {value}")


def _check_phi(phi: float) -> None:
    if not 0.0 < phi <= 1.0:
        raise ValueError(f"phi: must be in (0, 1], got {phi}")
