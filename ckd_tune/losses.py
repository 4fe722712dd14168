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


def standardize_logits(logits: Tensor) -> Tensor:
    """Logit standardization (Sun et al., "Logit Standardization in Knowledge Distillation",
    CVPR 2024): each row z-scored, ``(z - mean(z)) / (std(z) + 1e-7)``.

    ``std`` is the unbiased sample standard deviation over the row's logits (torch's default,
    as in the paper's code), so a standardized row has mean 0 and squared norm ``K - 1``
    (``K`` logits). Needs at least two logits per row (one has no spread): ``ValueError``.
    Nothing is detached here: the loss that receives the teacher's row detaches it.
    """
    _require_classes(logits, "standardize_logits")
    mean = logits.mean(dim=-1, keepdim=True)
    std = logits.std(dim=-1, keepdim=True)
    return (logits - mean) / (std + 1e-7)


def dkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    labels: Tensor,
    *,
    alpha: float,
    beta: float,
    temperature: float,
) -> Tensor:
    """Decoupled KD (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022), batch mean.

    ``T^2 (alpha TCKD + beta NCKD)`` with ``p = softmax(z / T)``: ``TCKD = KL(b_t || b_s)``,
    ``b = [p_y, 1 - p_y]`` (the target class against the rest); ``NCKD = KL(q_t || q_s)``, ``q``
    the softmax of ``z / T`` over the non-target classes only. ``1 - p_y`` is computed from
    log-sum-exps (no cancellation when ``p_y`` is close to 1). With two classes ``q`` has a
    single entry, so NCKD is 0 and the loss is ``alpha`` times Hinton's KD term. Needs class
    logits (at least two): ``ValueError`` for one (regression).
    """
    _require_classes(student_logits, "dkd_loss")
    z_s = student_logits / temperature
    z_t = teacher_logits.detach() / temperature
    target = F.one_hot(labels, z_s.size(-1)).bool()
    tckd = _kl(_target_vs_rest(z_s, target), _target_vs_rest(z_t, target))
    nckd = _kl(_non_target(z_s, target), _non_target(z_t, target))
    return temperature**2 * (alpha * tckd + beta * nckd)


def dist_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    *,
    beta: float,
    gamma: float,
    temperature: float,
) -> Tensor:
    """DIST (Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022).

    ``T^2 (beta inter + gamma intra)`` with ``p = softmax(z / T)``: ``inter = 1 - mean_i
    pearson(p_s[i, :], p_t[i, :])`` (each example's class distribution), ``intra = 1 - mean_c
    pearson(p_s[:, c], p_t[:, c])`` (each class's probabilities across the batch); ``pearson``
    is the cosine similarity of the mean-centred vectors, ``a.b / (|a| |b| + 1e-8)`` (the
    paper's code). The intra term needs a batch of two or more examples (one gives 1, with no
    gradient). With two classes each centred row is ``(d, -d)``, so the inter term is 1 - sign
    agreement, flat almost everywhere. Needs class logits: ``ValueError`` for one (regression).
    """
    _require_classes(student_logits, "dist_loss")
    p_s = F.softmax(student_logits / temperature, dim=-1)
    p_t = F.softmax(teacher_logits.detach() / temperature, dim=-1)
    inter = 1.0 - _pearson(p_s, p_t).mean()
    intra = 1.0 - _pearson(p_s.T, p_t.T).mean()
    return temperature**2 * (beta * inter + gamma * intra)


def _require_classes(logits: Tensor, name: str) -> None:
    if logits.size(-1) < 2:
        raise ValueError(
            f"{name} needs two or more logits per example (classification), got "
            f"{logits.size(-1)}; a regression task's one logit has no distribution"
        )


def _kl(student_log_probs: Tensor, teacher_log_probs: Tensor) -> Tensor:
    """``KL(teacher || student)`` per row, batch mean, from log-probabilities."""
    return F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)


def _target_vs_rest(z: Tensor, target: Tensor) -> Tensor:
    """``log [p_y, 1 - p_y]`` of ``softmax(z)``: a log-softmax over ``[z_y, logsumexp(z_rest)]``."""
    z_y = z[target]  # one target per row: (batch,)
    z_rest = z.masked_fill(target, -torch.inf).logsumexp(dim=-1)
    return F.log_softmax(torch.stack([z_y, z_rest], dim=-1), dim=-1)


def _non_target(z: Tensor, target: Tensor) -> Tensor:
    """The log-softmax of each row's non-target logits, ``(batch, num_logits - 1)``."""
    return F.log_softmax(z[~target].view(z.size(0), z.size(-1) - 1), dim=-1)


def _pearson(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """Per row, the cosine similarity of ``a`` and ``b`` centred on their row means."""
    a = a - a.mean(dim=-1, keepdim=True)
    b = b - b.mean(dim=-1, keepdim=True)
    return (a * b).sum(dim=-1) / (a.norm(dim=-1) * b.norm(dim=-1) + eps)
