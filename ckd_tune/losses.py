"""Distillation loss terms, one pure function each; teacher logits never get gradients.

Shapes: ``student_logits`` and ``teacher_logits`` are ``(batch, num_logits)``; ``labels`` are
class indices ``(batch,)`` or, for regression (``num_logits == 1``), float targets ``(batch,)``.
A method (``ckd_tune/methods/``) weighs these terms; its parameters are validated there, once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def hard_label_loss(student_logits: Tensor, labels: Tensor) -> Tensor:
    """Batch-mean cross-entropy with the labels, or MSE to the label for regression."""
    if student_logits.size(-1) == 1:
        return F.mse_loss(student_logits.squeeze(-1), labels.to(student_logits.dtype))
    return F.cross_entropy(student_logits, labels)


def soft_target_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton et al. (2015): ``T^2 KL(softmax(z_t / T) || softmax(z_s / T))``, batch mean.

    For regression (one logit): ``MSE(z_s, z_t)``.
    """
    z_t = teacher_logits.detach()
    if student_logits.size(-1) == 1:
        return F.mse_loss(student_logits, z_t)
    kl = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(z_t / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return kl * temperature**2


def annealing_mse(student_logits: Tensor, teacher_logits: Tensor, phi: float) -> Tensor:
    """Annealing-KD phase 1 (Jafari et al., EACL 2021): ``MSE(z_s, phi z_t)``, mean over elements."""
    return F.mse_loss(student_logits, phi * teacher_logits.detach())


def hinge_mse(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    phi: float,
    margin: float,
    reduction: str = "sum",
) -> Tensor:
    """Continuation-KD's distillation term (arXiv 2212.05998, eq. 3-5).

    ``mean_i max(0, ||z_s_i - phi z_t_i||^2 - margin phi)``: the squared error per example summed
    over the logits (``"sum"``; ``"mean"`` divides by the number of logits), hinged per example.
    """
    sq = (student_logits - phi * teacher_logits.detach()).pow(2)
    sq = sq.sum(dim=-1) if reduction == "sum" else sq.mean(dim=-1)
    return torch.clamp(sq - margin * phi, min=0.0).mean()
